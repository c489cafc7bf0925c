//! Protobuf over HTTP: one POST per rpc at the path its `Rpc` marker names, body and reply in
//! `application/x-protobuf`, `Authorization: Bearer <token>`.

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

impl RpcClient {
    pub fn new(base: &str, token: Secret, timeout: Duration) -> Result<RpcClient> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ClusterError::Config(format!("http client: {e}")))?;
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

/// The serving side: the bearer check (constant time), then the decoded request or a 400.
pub fn accept<R: Rpc>(
    req: &HttpRequest,
    body: &[u8],
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
    decode(body).map_err(|e| {
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
