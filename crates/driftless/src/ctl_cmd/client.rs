//! The coordinator as `ctl` reaches it: one POST per rpc, protobuf both ways.

use driftless_proto::Rpc;
use std::path::Path;

/// Why a request got no reply. All of them exit 1: the command was fine, the call failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach the coordinator at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the coordinator at {url} refused the admin token (401 unauthorized): check --token or DRIFTLESS_ADMIN_TOKEN"
    )]
    Unauthorized { url: String },
    #[error("the coordinator answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("the coordinator's reply to {path} is not a protobuf {path} reply: {reason}")]
    BadReply { path: &'static str, reason: String },
}

pub struct Coordinator {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Coordinator {
    /// `url` may omit the scheme (`127.0.0.1:7400`), as a listen address is usually written; it is
    /// then https when a CA is given.
    pub fn new(url: &str, token: String, ca_cert: Option<&Path>) -> Result<Coordinator, String> {
        let url = url.trim_end_matches('/');
        let base = match (url.contains("://"), ca_cert.is_some()) {
            (true, _) => url.to_owned(),
            (false, true) => format!("https://{url}"),
            (false, false) => format!("http://{url}"),
        };
        Ok(Coordinator {
            base,
            token,
            http: driftless_cluster::rpc::http_client(None, ca_cert)?,
        })
    }

    pub async fn call<R: Rpc>(&self, req: &R::Request) -> Result<R::Reply, CtlError> {
        let resp = self
            .http
            .post(format!("{}{}", self.base, R::PATH))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, driftless_proto::CONTENT_TYPE)
            .header(reqwest::header::ACCEPT, driftless_proto::CONTENT_TYPE)
            .body(driftless_proto::encode(req))
            .send()
            .await
            .map_err(|e| CtlError::Unreachable {
                url: self.base.clone(),
                reason: root_cause(&e),
            })?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(CtlError::Unauthorized {
                url: self.base.clone(),
            });
        }
        let body = resp.bytes().await.map_err(|e| CtlError::Unreachable {
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        if !status.is_success() {
            let message = String::from_utf8_lossy(&body).trim().to_owned();
            return Err(CtlError::Refused {
                status: status.as_u16(),
                message: if message.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    message
                },
            });
        }
        driftless_proto::decode(&body).map_err(|e| CtlError::BadReply {
            path: R::PATH,
            reason: e.to_string(),
        })
    }
}

/// reqwest's top-level message ("error sending request") hides the useful part.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
