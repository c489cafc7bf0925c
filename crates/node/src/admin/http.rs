//! The listener: the rpcs of [`super::service`], `GET /api/v1/status` (JSON), `GET /status` (a
//! page for people) and `GET /metrics` (open, for scrapers).

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use driftless_core::config::TlsFiles;
use driftless_core::secret::Secret;

use super::service::{self, AdminBackend, Guard};
use crate::error::{NodeError, Result};
use crate::status::StatusView;

struct AdminState {
    guard: Guard,
    view: StatusView,
}

/// Binds and starts serving in the background of the current actix system.
pub fn serve(
    listen: SocketAddr,
    tls: Option<&TlsFiles>,
    token: Option<Secret>,
    view: StatusView,
    backend: Arc<dyn AdminBackend>,
) -> Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let guard = Guard::new(token);
    let state = web::Data::new(AdminState {
        guard: guard.clone(),
        view,
    });
    let (addr, handle) = start_listener(listen, tls, 1, move |cfg| {
        cfg.app_data(state.clone());
        service::configure(cfg, backend.clone(), guard.clone());
        cfg.route("/api/v1/status", web::get().to(status_json))
            .route("/status", web::get().to(status_page))
            .route("/metrics", web::get().to(metrics));
    })
    .map_err(NodeError::config)?;
    tracing::info!(%addr, "admin endpoints listening");
    Ok((addr, handle))
}

/// Connections one listener thread serves at once.
pub const MAX_CONNECTIONS_PER_WORKER: usize = 128;

/// The one HTTP bootstrap of the admin listeners (`driftless run` and the coordinator): binds
/// `listen` (`[coordinator].listen`; port 0 picks one), serves the routes `configure` sets with
/// `workers` threads in the background of the current actix system, and leaves signals to the
/// process. Answers the bound address, or why binding failed, naming the setting.
pub fn start_listener<F>(
    listen: SocketAddr,
    tls: Option<&TlsFiles>,
    workers: usize,
    configure: F,
) -> std::result::Result<(SocketAddr, actix_web::dev::ServerHandle), String>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let tls = tls.map(super::tls::server_config).transpose()?;
    if tls.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "the admin listener is plain HTTP off loopback: tokens and the connection settings sent to workers cross the network in the clear; set [coordinator] tls_cert and tls_key"
        );
    }
    let server = HttpServer::new(move || App::new().configure(configure.clone()))
        .workers(workers)
        // Bounded concurrency: an admin listener serves a few operators and workers, and each
        // connection beyond this waits in the backlog instead of costing memory.
        .max_connections(MAX_CONNECTIONS_PER_WORKER)
        .backlog(MAX_CONNECTIONS_PER_WORKER as u32)
        .client_request_timeout(std::time::Duration::from_secs(10))
        .disable_signals();
    let server = match tls {
        Some(tls) => server.bind_rustls_0_23(listen, tls),
        None => server.bind(listen),
    }
    .map_err(|e| format!("coordinator.listen: cannot listen on {listen}: {e}"))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| format!("coordinator.listen: {listen} bound no address"))?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
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
