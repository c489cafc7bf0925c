//! `AdminService` over HTTP: one POST route per rpc (`driftless_proto::Rpc::PATH`), protobuf
//! bodies both ways, the bearer token checked in constant time before the body is even read.
//!
//! Failures answer with the status of their [`AdminErrorKind`], the kind in
//! `x-driftless-error-kind` and the message as `text/plain`, so `ctl` can say what went wrong.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use driftless_core::cluster::bearer_matches;
use driftless_core::secret::Secret;
use driftless_proto::admin::{self, admin_service as rpc};
use driftless_proto::Rpc;
use futures::future::LocalBoxFuture;

use super::{AdminError, AdminErrorKind};

/// A reply still to come. `'static` so a backend can clone what it needs and answer later.
pub type Reply<T> = LocalBoxFuture<'static, Result<T, AdminError>>;

/// "The engine" as the admin messages see it: the process's own ([`super::local`]) or a
/// cluster's, reached through its workers.
pub trait AdminBackend: Send + Sync + 'static {
    fn status(&self) -> Reply<admin::StatusReply>;
    fn workers(&self) -> Reply<admin::WorkersReply>;
    fn mappings(&self, req: admin::MappingsRequest) -> Reply<admin::MappingsReply>;
    fn mapping(&self, req: admin::MappingRequest) -> Reply<admin::MappingReply>;
    fn pause(&self, req: admin::PauseRequest) -> Reply<admin::PauseReply>;
    fn resume(&self, req: admin::ResumeRequest) -> Reply<admin::ResumeReply>;
    fn reload(&self, req: admin::ReloadRequest) -> Reply<admin::ReloadReply>;
    fn export(&self, req: admin::ExportRequest) -> Reply<admin::ExportReply>;
    fn import(&self, req: admin::ImportRequest) -> Reply<admin::ImportReply>;
    fn drift(&self, req: admin::DriftRequest) -> Reply<admin::DriftReply>;
    fn errors(&self, req: admin::ErrorsRequest) -> Reply<admin::ErrorsReply>;
}

/// Who may call: `None` when no admin token is configured, which refuses everyone.
#[derive(Clone)]
pub struct Guard {
    token: Option<Secret>,
}

impl Guard {
    pub fn new(token: Option<Secret>) -> Guard {
        Guard { token }
    }

    /// Whether `given` is the admin token (constant time): the /status page takes it from its
    /// query string, as browsers cannot send a bearer header.
    pub fn accepts(&self, given: &str) -> bool {
        self.token.as_ref().is_some_and(|t| {
            driftless_core::cluster::tokens_equal(given.as_bytes(), t.expose().as_bytes())
        })
    }

    /// `None` when the request may go on, else the answer that refuses it.
    pub fn deny(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let Some(token) = &self.token else {
            return Some(HttpResponse::Forbidden().content_type("text/plain").body(
                "no admin_token is configured (coordinator.admin_token or DRIFTLESS_ADMIN_TOKEN)",
            ));
        };
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if bearer_matches(given, token) {
            None
        } else {
            Some(
                HttpResponse::Unauthorized()
                    .insert_header(("WWW-Authenticate", "Bearer"))
                    .content_type("text/plain")
                    .body("missing or wrong bearer token"),
            )
        }
    }
}

struct Service {
    backend: Arc<dyn AdminBackend>,
    guard: Guard,
}

/// Import files can be large; every other request is a few bytes.
pub const MAX_IMPORT_BODY: usize = 16 << 20;
pub const MAX_RPC_BODY: usize = 64 << 10;

/// Reads a request body of at most `limit` bytes, or answers 413. Handlers call it only once the
/// caller is authorized, so an unauthenticated request never costs its body's size in memory.
pub async fn read_body(
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, HttpResponse> {
    use futures::StreamExt;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            HttpResponse::BadRequest()
                .content_type("text/plain")
                .body(format!("cannot read the request body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(HttpResponse::PayloadTooLarge()
                .content_type("text/plain")
                .body(format!("the request body is larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Adds every `AdminService` route to an actix-web app.
pub fn configure(cfg: &mut web::ServiceConfig, backend: Arc<dyn AdminBackend>, guard: Guard) {
    cfg.app_data(web::Data::new(Service { backend, guard }));
    route::<rpc::Status>(cfg, |b, _| b.status());
    route::<rpc::Workers>(cfg, |b, _| b.workers());
    route::<rpc::Mappings>(cfg, |b, r| b.mappings(r));
    route::<rpc::Mapping>(cfg, |b, r| b.mapping(r));
    route::<rpc::Pause>(cfg, |b, r| b.pause(r));
    route::<rpc::Resume>(cfg, |b, r| b.resume(r));
    route::<rpc::Reload>(cfg, |b, r| b.reload(r));
    route::<rpc::Export>(cfg, |b, r| b.export(r));
    route::<rpc::Import>(cfg, |b, r| b.import(r));
    route::<rpc::Drift>(cfg, |b, r| b.drift(r));
    route::<rpc::Errors>(cfg, |b, r| b.errors(r));
}

type Call<R> = fn(&dyn AdminBackend, <R as Rpc>::Request) -> Reply<<R as Rpc>::Reply>;

fn route<R: Rpc + 'static>(cfg: &mut web::ServiceConfig, call: Call<R>) {
    cfg.route(
        R::PATH,
        web::post().to(
            move |req: HttpRequest, payload: web::Payload, svc: web::Data<Service>| async move {
                if let Some(denied) = svc.guard.deny(&req) {
                    return denied;
                }
                let limit = if R::PATH == rpc::Import::PATH {
                    MAX_IMPORT_BODY
                } else {
                    MAX_RPC_BODY
                };
                let body = match read_body(payload, limit).await {
                    Ok(body) => body,
                    Err(refused) => return refused,
                };
                let msg = match driftless_proto::decode::<R::Request>(&body) {
                    Ok(msg) => msg,
                    Err(e) => {
                        return error_response(&AdminError::invalid(format!(
                            "{}: the body is not a protobuf request: {e}",
                            R::PATH
                        )))
                    }
                };
                match call(svc.backend.as_ref(), msg).await {
                    Ok(reply) => HttpResponse::Ok()
                        .content_type(driftless_proto::CONTENT_TYPE)
                        .body(driftless_proto::encode(&reply)),
                    Err(e) => error_response(&e),
                }
            },
        ),
    );
}

pub fn error_response(e: &AdminError) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(e.kind.http_status())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    if e.kind == AdminErrorKind::Internal {
        tracing::warn!(error = %e, "admin request failed");
    }
    HttpResponse::build(status)
        .insert_header(("x-driftless-error-kind", e.kind.as_str()))
        .content_type("text/plain; charset=utf-8")
        .body(e.message.clone())
}
