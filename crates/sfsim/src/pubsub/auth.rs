//! Pub/Sub authentication and the errors Salesforce answers with: a gRPC status plus the
//! `error-code` trailer its clients inspect.

use crate::http::AppState;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

pub const AUTH_ERROR: &str = "sfdc.platform.eventbus.grpc.service.auth.error";
pub const REPLAY_ID_CORRUPTED: &str =
    "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted";
pub const TOPIC_NOT_FOUND: &str = "sfdc.platform.eventbus.grpc.topic.notfound";
pub const INVALID_REQUEST: &str = "sfdc.platform.eventbus.grpc.subscription.fetch.invalid.request";
pub const PUBLISH_NOT_ALLOWED: &str = "sfdc.platform.eventbus.grpc.publish.permission.denied";

/// A status whose message ends with the rpc id, as Salesforce's do, and whose trailers carry
/// `error-code` and `rpc-id`.
pub fn error(code: Code, error_code: &str, message: &str, rpc_id: &str) -> Status {
    let mut md = MetadataMap::new();
    if let Ok(v) = error_code.parse() {
        md.insert("error-code", v);
    }
    if let Ok(v) = rpc_id.parse() {
        md.insert("rpc-id", v);
    }
    Status::with_metadata(code, format!("{message} rpcId: {rpc_id}"), md)
}

pub fn new_rpc_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Checks `accesstoken` against the org's sessions, `tenantid` against the org id and that
/// `instanceurl` is given.
pub fn authenticate(state: &AppState, md: &MetadataMap, rpc_id: &str) -> Result<(), Status> {
    let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let token_ok =
        get("accesstoken").is_some_and(|t| state.sessions.is_valid(t, state.session_ttl()));
    let tenant_ok = get("tenantid").is_some_and(|t| {
        let org = &state.org.org_id;
        (t.len() == 18 && t == org) || (t.len() == 15 && t == &org[..15])
    });
    let instance_ok = get("instanceurl").is_some_and(|u| !u.is_empty());
    if token_ok && tenant_ok && instance_ok {
        Ok(())
    } else {
        Err(error(
            Code::Unauthenticated,
            AUTH_ERROR,
            "An authentication exception occurred. Provide valid authentication via metadata headers.",
            rpc_id,
        ))
    }
}
