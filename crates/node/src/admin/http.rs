//! The listener: the rpcs of [`super::service`], `GET /api/v1/status` (JSON), `GET /status` (a
//! page for people) and `GET /metrics` (open, for scrapers).

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use driftless_core::secret::Secret;

use super::service::{self, AdminBackend, Guard};
use crate::error::{NodeError, Result};
use crate::run::StatusView;

struct AdminState {
    guard: Guard,
    view: StatusView,
}

/// Binds and starts serving in the background of the current actix system.
pub fn serve(
    listen: SocketAddr,
    token: Option<Secret>,
    view: StatusView,
    backend: Arc<dyn AdminBackend>,
) -> Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let guard = Guard::new(token);
    let state = web::Data::new(AdminState {
        guard: guard.clone(),
        view,
    });
    let server = HttpServer::new(move || {
        let (backend, guard) = (backend.clone(), guard.clone());
        App::new()
            .app_data(state.clone())
            .configure(move |cfg| service::configure(cfg, backend, guard))
            .route("/api/v1/status", web::get().to(status_json))
            .route("/status", web::get().to(status_page))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(listen)
    .map_err(|e| {
        NodeError::Config(format!(
            "coordinator.listen: cannot listen on {listen}: {e}"
        ))
    })?;
    let addr = server.addrs().first().copied().ok_or_else(|| {
        NodeError::Config(format!("coordinator.listen: {listen} bound no address"))
    })?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(%addr, "admin endpoints listening");
    Ok((addr, handle))
}

fn authorized(req: &HttpRequest, state: &AdminState) -> Option<HttpResponse> {
    state.guard.deny(req)
}

async fn status_json(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Some(denied) = authorized(&req, &state) {
        return denied;
    }
    HttpResponse::Ok().json(state.view.status().await)
}

async fn status_page(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    // Browsers cannot send a bearer header: the page also takes the token as `?token=`.
    if let Some(denied) = authorized(&req, &state) {
        let given = crate::dashboard::query_token(req.query_string());
        if !given.as_deref().is_some_and(|t| state.guard.accepts(t)) {
            if denied.status() == actix_web::http::StatusCode::FORBIDDEN {
                return denied;
            }
            return HttpResponse::Unauthorized()
                .content_type("text/html; charset=utf-8")
                .body(crate::dashboard::login_page(given.is_some()));
        }
    }
    let doc = state.view.status().await;
    let telemetry = state.view.telemetry().snapshot();
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(crate::dashboard::render(
            &doc,
            &telemetry,
            chrono::Utc::now(),
        ))
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    let doc = state.view.status().await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render(
            &doc,
            &state.view.telemetry().snapshot(),
        ))
}
