//! Protobuf over HTTP: one POST per rpc at the path its `Rpc` marker names, body and reply in
//! `application/x-protobuf`, `Authorization: Bearer <token>`.

use std::path::Path;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use driftless_core::cluster::bearer_matches;
use driftless_core::secret::Secret;
use driftless_proto::{decode, encode, Rpc, CONTENT_TYPE};

use crate::error::{ClusterError, Result};

/// The calling side: a base URL, a token, and one reqwest client.
#[derive(Clone)]
pub struct RpcClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

/// The HTTP client of workers and ctl: the platform's roots, plus `ca_cert` (a PEM file) for a
/// coordinator whose certificate a private CA signed.
pub fn http_client(
    timeout: Option<Duration>,
    ca_cert: Option<&Path>,
) -> std::result::Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .map_err(|e| format!("--ca-cert: cannot read {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("--ca-cert: {}: not a PEM certificate: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "--ca-cert: {} holds no certificate",
                path.display()
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| format!("http client: {e}"))
}

impl RpcClient {
    pub fn new(
        base: &str,
        token: Secret,
        timeout: Duration,
        ca_cert: Option<&Path>,
    ) -> Result<RpcClient> {
        let http = http_client(Some(timeout), ca_cert).map_err(ClusterError::Config)?;
        Ok(RpcClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub async fn call<R: Rpc>(&self, request: &R::Request) -> Result<R::Reply> {
        let resp = self
            .http
            .post(format!("{}{}", self.base, R::PATH))
            .header("content-type", CONTENT_TYPE)
            .header("accept", CONTENT_TYPE)
            .bearer_auth(self.token.expose())
            .body(encode(request))
            .send()
            .await
            .map_err(|e| ClusterError::Unreachable(without_url(e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClusterError::Unreachable(without_url(e)))?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(ClusterError::Unauthorized);
        }
        if status.is_server_error() {
            return Err(ClusterError::Unreachable(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        if !status.is_success() {
            return Err(ClusterError::Refused {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        decode(&body).map_err(|e| ClusterError::Decode(e.to_string()))
    }
}

/// reqwest's message and its cause, without the URL, to keep log lines short.
fn without_url(e: reqwest::Error) -> String {
    let cause = std::error::Error::source(&e).map(ToString::to_string);
    let mut s = e.without_url().to_string();
    if let Some(cause) = cause {
        s.push_str(": ");
        s.push_str(&cause);
    }
    s
}

/// The most a worker rpc's body may hold: a heartbeat carries stats for each of its mappings.
pub const MAX_WORKER_BODY: usize = 1 << 20;

/// The serving side: the bearer check (constant time) from the headers, then the body (read
/// only once the caller is authorized, at most [`MAX_WORKER_BODY`]), then the decoded request.
pub async fn accept<R: Rpc>(
    req: &HttpRequest,
    payload: actix_web::web::Payload,
    token: &Secret,
) -> std::result::Result<R::Request, Box<HttpResponse>> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if !bearer_matches(auth, token) {
        return Err(Box::new(
            HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer"))
                .body("missing or wrong bearer token"),
        ));
    }
    let body = driftless_node::admin::service::read_body(payload, MAX_WORKER_BODY)
        .await
        .map_err(Box::new)?;
    decode(&body).map_err(|e| {
        Box::new(HttpResponse::BadRequest().body(format!("malformed {} request: {e}", R::PATH)))
    })
}

/// A reply body for `R`.
pub fn reply<R: Rpc>(msg: &R::Reply) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(encode(msg))
}

/// An error answer with a plain-text explanation (never a secret).
pub fn refuse(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).body(message.into())
}
