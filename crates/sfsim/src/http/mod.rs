//! The simulator's HTTP surface: shared state, the guard every Salesforce-facing request passes
//! (faults, session, API accounting, `Sforce-Limit-Info`), and the response shapes errors take on
//! each API.

pub mod respond;
pub mod serve;
pub mod wire;

use crate::config::{SimConfig, SimInfo, DEFAULT_DAILY_API_REQUESTS};
use crate::error::SfError;
use crate::faults::{Faults, Injected};
use crate::sessions::{token_from_headers, Sessions};
use crate::stats::{route_label, Stats};
use crate::store::Org;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::Duration;

/// Everything handlers share. Held in `web::Data`.
pub struct AppState {
    pub org: Arc<Org>,
    pub info: SimInfo,
    pub config: SimConfig,
    pub stats: Stats,
    pub faults: RwLock<Faults>,
    pub sessions: Sessions,
    pub rest: crate::rest::RestState,
    pub bulk_v1: crate::bulk_v1::BulkV1State,
    pub bulk_v2: crate::bulk_v2::BulkV2State,
    pub workload: crate::workload::Workloads,
    pub cdc: Arc<crate::cdc::ChangeLog>,
}

impl AppState {
    /// The daily API allowance in force: the fault overrides the command line.
    pub fn api_quota(&self) -> u64 {
        match self.faults.read().api_quota {
            0 => self.config.api_quota.unwrap_or(DEFAULT_DAILY_API_REQUESTS),
            q => q,
        }
    }

    pub fn session_ttl(&self) -> Option<Duration> {
        match self.faults.read().session_expiry_secs {
            0 => self.config.session_ttl_secs.map(Duration::from_secs),
            s => Some(Duration::from_secs(s)),
        }
    }

    /// `api-usage=N/M`, exactly: tap-salesforce parses it with an anchored regex.
    pub fn limit_info(&self) -> String {
        format!("api-usage={}/{}", self.stats.used(), self.api_quota())
    }

    /// QUERY_TIMEOUT when a query's result is larger than the fault allows.
    pub fn query_timeout(&self, rows: usize) -> Option<SfError> {
        let above = self.faults.read().query_timeout_above_rows;
        (above > 0 && rows as u64 > above).then(|| {
            SfError::new(
                "QUERY_TIMEOUT",
                "Your query request was running for too long.",
            )
        })
    }
}

/// Which API a request addresses; each has its own error shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `/services/data/` and `/services/data/vNN.N` (no session needed).
    Versions,
    /// REST, composite, Bulk 2.0: JSON array errors, 401 for bad sessions.
    Rest,
    /// `/services/async/`: XML (or JSON) `<error>` bodies, 400 for bad sessions.
    BulkV1,
    /// OAuth token endpoints and SOAP login.
    Login,
    Control,
}

impl Api {
    pub fn of(path: &str) -> Api {
        if path.starts_with("/services/async/") {
            Api::BulkV1
        } else if let Some(rest) = path.strip_prefix("/services/data") {
            let rest = rest.trim_matches('/');
            if rest.is_empty() || !rest.contains('/') {
                Api::Versions
            } else {
                Api::Rest
            }
        } else if path.starts_with("/services/oauth2/")
            || path.starts_with("/services/Soap/")
            || path.starts_with("/id/")
        {
            Api::Login
        } else {
            Api::Control
        }
    }
}

/// The guard in front of the Salesforce-facing API: injected faults first (as a flaky network
/// or overloaded pod would), then the session, then the daily allowance; REST responses leave
/// with `Sforce-Limit-Info`.
pub async fn api_guard(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let api = Api::of(req.path());
    if api == Api::Control {
        return next.call(req).await;
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .expect("state")
        .clone();
    let json_body = is_json_request(&req);
    let faults = state.faults.read().clone();
    let (latency, injected) = {
        let mut rng = rand::thread_rng();
        (faults.latency(&mut rng), faults.draw(&mut rng))
    };
    if let Some(d) = latency {
        tokio::time::sleep(d).await;
    }
    match injected {
        Injected::None => {}
        Injected::Hang => {
            // Never answer: the client's timeout has to fire. The connection is dropped when the
            // client gives up, or after this bound so a forgotten request cannot pin a task forever.
            hang().await;
            return Ok(req.into_response(HttpResponse::GatewayTimeout().finish()));
        }
        Injected::LoseAnswer => {}
        Injected::Error(status) => {
            let err = if status == 503 {
                SfError::new(
                    "SERVER_UNAVAILABLE",
                    "Server temporarily unavailable, please try again later.",
                )
            } else {
                SfError::new("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)")
            };
            let status = actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
            let resp = match api {
                Api::BulkV1 => {
                    respond::bulk_v1_error(status, "ClientInputError", &err.message, json_body)
                }
                _ => respond::rest_error(status, &err),
            };
            return Ok(req.into_response(resp));
        }
    }
    if matches!(api, Api::Rest | Api::BulkV1) {
        let valid = token_from_headers(req.headers())
            .is_some_and(|t| state.sessions.is_valid(&t, state.session_ttl()));
        if !valid {
            let resp = match api {
                Api::BulkV1 => respond::bulk_v1_error(
                    actix_web::http::StatusCode::BAD_REQUEST,
                    "InvalidSessionId",
                    "Invalid session id",
                    json_body,
                ),
                _ => respond::rest_error(
                    actix_web::http::StatusCode::UNAUTHORIZED,
                    &SfError::new("INVALID_SESSION_ID", "Session expired or invalid"),
                ),
            };
            return Ok(req.into_response(resp));
        }
    }
    if matches!(api, Api::Rest | Api::BulkV1 | Api::Versions) {
        let used = state
            .stats
            .count_call(&route_label(req.method().as_str(), req.path()));
        if used > state.api_quota() {
            let resp = match api {
                Api::BulkV1 => respond::bulk_v1_error(
                    actix_web::http::StatusCode::FORBIDDEN,
                    "ExceededQuota",
                    "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.",
                    json_body,
                ),
                _ => respond::rest_error(
                    actix_web::http::StatusCode::FORBIDDEN,
                    &SfError::new("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
                ),
            };
            let mut resp = req.into_response(resp);
            add_limit_info(&state, &mut resp, api);
            return Ok(resp);
        }
    }
    let mut resp = next.call(req).await?;
    if injected == Injected::LoseAnswer {
        hang().await;
    }
    add_limit_info(&state, &mut resp, api);
    Ok(resp)
}

fn add_limit_info(state: &AppState, resp: &mut ServiceResponse<BoxBody>, api: Api) {
    if matches!(api, Api::Rest | Api::Versions) {
        if let Ok(v) = HeaderValue::from_str(&state.limit_info()) {
            resp.headers_mut()
                .insert(HeaderName::from_static("sforce-limit-info"), v);
        }
    }
}

/// Bulk 1.0 answers errors in JSON only to JSON requests; everything else gets XML.
fn is_json_request(req: &ServiceRequest) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"))
}

/// Keeps the unused-body type parameter of `Next` honest for the boxed services used here.
pub fn boxed<B: MessageBody + 'static>(r: ServiceResponse<B>) -> ServiceResponse<BoxBody> {
    r.map_into_boxed_body()
}

/// How long a request the fault layer keeps unanswered holds its task.
async fn hang() {
    tokio::time::sleep(Duration::from_secs(600)).await;
}
