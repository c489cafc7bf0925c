//! The admin endpoints on `[coordinator].listen` (SPEC.md §6): status as JSON and as a page,
//! and Prometheus metrics. Everything but `/metrics` needs `Authorization: Bearer <admin_token>`.

use std::net::SocketAddr;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::error::{NodeError, Result};
use crate::run::StatusView;
use crate::status::metrics_text;

struct AdminState {
    token: Option<String>,
    view: StatusView,
}

/// Binds and starts serving in the background of the current actix system.
pub fn serve(
    listen: SocketAddr,
    token: Option<String>,
    view: StatusView,
) -> Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let state = web::Data::new(AdminState { token, view });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
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
    let Some(token) = &state.token else {
        return Some(HttpResponse::Forbidden().json(serde_json::json!({
            "error": "no admin_token is configured (coordinator.admin_token or DRIFTLESS_ADMIN_TOKEN)"
        })));
    };
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        None
    } else {
        Some(
            HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer"))
                .json(serde_json::json!({"error": "missing or wrong bearer token"})),
        )
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn status_json(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Some(denied) = authorized(&req, &state) {
        return denied;
    }
    HttpResponse::Ok().json(state.view.status().await)
}

async fn status_page(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Some(denied) = authorized(&req, &state) {
        return denied;
    }
    let doc = state.view.status().await;
    let mut rows = String::new();
    for m in &doc.mappings {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html(&m.connection),
            html(&m.object),
            html(&m.state),
            m.rows,
            html(m.synced_through.as_deref().unwrap_or("-")),
            m.primary.polls,
            m.secondary.drift_records,
            m.errors
        ));
    }
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><html><head><title>driftless status</title></head><body><h1>driftless</h1>\
         <table border=1><tr><th>connection</th><th>object</th><th>state</th><th>rows</th>\
         <th>synced through</th><th>primary polls</th><th>drift records</th><th>errors</th></tr>{rows}</table></body></html>"
    ))
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    let doc = state.view.status().await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics_text(&doc.mappings))
}
