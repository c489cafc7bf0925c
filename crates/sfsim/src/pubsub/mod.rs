//! The Pub/Sub API endpoint (gRPC `eventbus.v1.PubSub`, always TLS) on its own listener:
//! topics and schemas of change events, and Subscribe streams fed from the [`ChangeLog`].
//!
//! [`ChangeLog`]: crate::cdc::ChangeLog

// Every rpc answers `tonic::Status` on error, so the helpers that build one return it as is.
#![allow(clippy::result_large_err)]

mod auth;
mod service;
mod subscribe;

pub use service::PubSubService;

/// Messages and service stubs of /proto/pubsub_api.proto (`driftless-pubsub-proto`).
pub use driftless_pubsub_proto as proto;

use crate::http::AppState;
use actix_web::web;
use std::time::Duration;
use tokio::sync::oneshot;

/// The serving Pub/Sub listener; dropping the sender stops it.
pub struct PubSubServer {
    pub endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    /// Tells open Subscribe streams to end, so the graceful shutdown has nothing to wait for.
    stopping: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PubSubServer {
    pub async fn stop(mut self) {
        self.stopping.send_replace(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            // Clients may keep their connections open; they do not hold the simulator up.
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

/// Binds `listen` and serves the Pub/Sub API over TLS with the given certificate chain and key.
pub async fn serve(
    listen: &str,
    cert_pem: &str,
    key_pem: &str,
    state: web::Data<AppState>,
) -> anyhow::Result<PubSubServer> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding --pubsub-listen {listen}"))?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let stopping = tokio::sync::watch::channel(false).0;
    let identity = tonic::transport::Identity::from_pem(cert_pem, key_pem);
    let server = tonic::transport::Server::builder()
        .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
        .context("Pub/Sub TLS configuration")?
        .add_service(proto::pub_sub_server::PubSubServer::new(
            PubSubService::new(state, stopping.subscribe()),
        ));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stop_rx.await;
        };
        if let Err(e) = server
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(error = %e, "Pub/Sub listener stopped");
        }
    });
    Ok(PubSubServer {
        endpoint: format!("{host}:{}", addr.port()),
        stop: Some(stop_tx),
        stopping,
        task: Some(task),
    })
}
