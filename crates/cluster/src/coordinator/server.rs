//! The coordinator's HTTP surface: the worker rpcs (worker token), the admin status (admin token),
//! `/metrics` (open, as SPEC.md §6 allows).

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use driftless_core::config::TlsFiles;
use driftless_node::admin::service::{self, AdminBackend, Guard};
use driftless_node::admin::start_listener;
use driftless_node::dashboard;
use driftless_proto::cluster::coordinator_service::{Deregister, Heartbeat, Register};
use driftless_proto::cluster::{
    Assignment, DeregisterReply, HeartbeatReply, LeaseStatus, RegisterReply,
};

use super::admin::ClusterBackend;
use super::state::Coordinator;
use crate::error::{ClusterError, Result};
use crate::rpc::{accept, refuse, reply};
use driftless_proto::Rpc;

type State = web::Data<Arc<Coordinator>>;

pub(crate) fn serve(
    listen: SocketAddr,
    tls: Option<&TlsFiles>,
    coordinator: Arc<Coordinator>,
) -> Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let guard = Guard::new(coordinator.admin_token.clone());
    let backend: Arc<dyn AdminBackend> = Arc::new(ClusterBackend {
        coordinator: coordinator.clone(),
    });
    let state = web::Data::new(coordinator);
    let (addr, handle) = start_listener(listen, tls, 2, move |cfg| {
        cfg.app_data(state.clone());
        service::configure(cfg, backend.clone(), guard.clone());
        cfg.route(Register::PATH, web::post().to(register))
            .route(Heartbeat::PATH, web::post().to(heartbeat))
            .route(Deregister::PATH, web::post().to(deregister))
            .route("/api/v1/status", web::get().to(status_json))
            .route("/status", web::get().to(status_page))
            .route("/metrics", web::get().to(metrics));
    })
    .map_err(ClusterError::Config)?;
    tracing::info!(%addr, "coordinator listening");
    Ok((addr, handle))
}

fn internal(e: ClusterError) -> HttpResponse {
    tracing::warn!(error = %e, "coordinator request failed");
    refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn register(req: HttpRequest, payload: web::Payload, c: State) -> HttpResponse {
    let msg = match accept::<Register>(&req, payload, &c.worker_token).await {
        Ok(m) => m,
        Err(r) => return *r,
    };
    if msg.name.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "a worker needs a name");
    }
    let lease = {
        let client = match c.pool.get().await {
            Ok(cl) => cl,
            Err(e) => return internal(e.into()),
        };
        match c
            .store
            .register(
                &**client,
                &msg.name,
                &msg.version,
                msg.capacity,
                c.timing.lease,
            )
            .await
        {
            Ok(l) => l,
            Err(e) => return internal(e.into()),
        }
    };
    c.names.lock().insert(lease.worker_id, msg.name.clone());
    tracing::info!(worker = %msg.name, worker_id = lease.worker_id, lease_epoch = lease.lease_epoch, "worker registered");
    // The newcomer gets its share in the reply to its first heartbeat.
    if let Err(e) = c.reconcile().await {
        return internal(e);
    }
    reply::<Register>(&RegisterReply {
        worker_id: lease.worker_id,
        lease_epoch: lease.lease_epoch,
        lease_expires_ms: millis(lease.expires_in),
        heartbeat_interval_ms: millis(c.timing.heartbeat_interval),
    })
}

async fn heartbeat(req: HttpRequest, payload: web::Payload, c: State) -> HttpResponse {
    let msg = match accept::<Heartbeat>(&req, payload, &c.worker_token).await {
        Ok(m) => m,
        Err(r) => return *r,
    };
    match heartbeat_reply(&c, msg).await {
        Ok(r) => reply::<Heartbeat>(&r),
        Err(e) => internal(e),
    }
}

async fn heartbeat_reply(
    c: &Coordinator,
    msg: driftless_proto::cluster::HeartbeatRequest,
) -> Result<HeartbeatReply> {
    let lost = HeartbeatReply {
        status: LeaseStatus::Lost as i32,
        heartbeat_interval_ms: millis(c.timing.heartbeat_interval),
        ..Default::default()
    };
    let Some(name) = c.worker_name(msg.worker_id).await? else {
        return Ok(lost);
    };
    let client = c.pool.get().await?;
    let lease = match c
        .store
        .heartbeat(&**client, msg.worker_id, msg.lease_epoch, c.timing.lease)
        .await
    {
        Ok(l) => l,
        Err(driftless_core::cluster::ClusterError::LeaseLost { .. }) => {
            tracing::info!(worker = %name, "heartbeat of a lost lease; the worker must register again");
            return Ok(lost);
        }
        Err(e) => return Err(e.into()),
    };
    let held = c.store.assignments_of(&**client, &name).await?;
    drop(client);
    c.record(&held, msg.mappings);
    let mut connections = Vec::new();
    for a in &held {
        if !connections
            .iter()
            .any(|s: &driftless_proto::cluster::ConnectionSpec| s.name == a.connection)
        {
            if let Some(spec) = c.specs.read().get(&a.connection) {
                connections.push(spec.clone());
            }
        }
    }
    Ok(HeartbeatReply {
        status: LeaseStatus::Active as i32,
        lease_expires_ms: millis(lease.expires_in),
        assignments: held
            .iter()
            .map(|a| Assignment {
                connection: a.connection.clone(),
                object: a.object.clone(),
                owner_epoch: a.owner_epoch,
                reload_requested: a.reload_requested,
            })
            .collect(),
        heartbeat_interval_ms: millis(c.timing.heartbeat_interval),
        connections,
    })
}

async fn deregister(req: HttpRequest, payload: web::Payload, c: State) -> HttpResponse {
    let msg = match accept::<Deregister>(&req, payload, &c.worker_token).await {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let removed = match c.pool.get().await {
        Ok(client) => c
            .store
            .deregister(&**client, msg.worker_id, msg.lease_epoch)
            .await
            .map_err(ClusterError::from),
        Err(e) => Err(e.into()),
    };
    match removed {
        Ok(true) => {
            tracing::info!(
                worker_id = msg.worker_id,
                "worker left; its mappings move now"
            );
            if let Err(e) = c.reconcile().await {
                return internal(e);
            }
        }
        Ok(false) => {}
        Err(e) => return internal(e),
    }
    reply::<Deregister>(&DeregisterReply {})
}

fn admin_denied(req: &HttpRequest, c: &Coordinator) -> Option<HttpResponse> {
    Guard::new(c.admin_token.clone()).deny(req)
}

async fn status_json(req: HttpRequest, c: State) -> HttpResponse {
    if let Some(denied) = admin_denied(&req, &c) {
        return denied;
    }
    match c.status().await {
        Ok(doc) => HttpResponse::Ok().json(doc),
        Err(e) => internal(e),
    }
}

/// The page for people; browsers cannot send a bearer header, so `?token=` works too.
async fn status_page(req: HttpRequest, c: State) -> HttpResponse {
    let guard = Guard::new(c.admin_token.clone());
    if let Some(denied) = guard.deny(&req) {
        let given = dashboard::query_token(req.query_string());
        if !given.as_deref().is_some_and(|t| guard.accepts(t)) {
            if denied.status() == StatusCode::FORBIDDEN {
                return denied;
            }
            return HttpResponse::Unauthorized()
                .content_type("text/html; charset=utf-8")
                .body(dashboard::login_page(given.is_some()));
        }
    }
    match c.status().await {
        Ok(doc) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body(dashboard::render(
                &doc,
                &c.telemetry.snapshot(),
                chrono::Utc::now(),
            )),
        Err(e) => internal(e),
    }
}

async fn metrics(c: State) -> HttpResponse {
    match c.status().await {
        Ok(doc) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(driftless_node::metrics::render(
                &doc,
                &c.telemetry.snapshot(),
            )),
        Err(e) => internal(e),
    }
}
