//! `driftless coordinator`: one active coordinator per state database (an advisory lock; others
//! wait as standbys), which assigns mappings to workers, renews their leases, and serves the admin
//! messages, `/metrics` and `/status`.

mod admin;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use driftless_core::cluster::{StandbyLock, TryLock};
use driftless_core::config::Config;
use driftless_node::StatusDoc;
use tokio_postgres::NoTls;

pub use state::{Coordinator, Timing};

use driftless_node::shutdown::{Shutdown, StopSignal};

use crate::error::{ClusterError, Result};

/// A running, active coordinator.
pub struct CoordinatorHandle {
    addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
    coordinator: Arc<Coordinator>,
    stop: Shutdown,
    watchdog: tokio::task::JoinHandle<Result<()>>,
}

impl CoordinatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn status(&self) -> Result<StatusDoc> {
        self.coordinator.status().await
    }

    /// Resolves when the coordinator stops being the active one (its lock session ended): the
    /// process must exit so that the standby that took over is the only one deciding.
    pub async fn lost_lock(&mut self) -> Result<()> {
        match (&mut self.watchdog).await {
            Ok(r) => r,
            Err(e) => Err(ClusterError::State(format!("watchdog task: {e}"))),
        }
    }

    pub async fn stop(self) {
        self.stop.trigger();
        self.server.stop(true).await;
        let _ = self.watchdog.await;
    }
}

fn state_url(config: &Config) -> Result<String> {
    config
        .coordinator
        .state_database_url
        .as_ref()
        .map(|s| s.expose().to_owned())
        .ok_or_else(|| {
            ClusterError::Config(format!(
                "{}: coordinator.state_database_url is required for `driftless coordinator` \
                 (cluster state lives there)",
                config.path.display()
            ))
        })
}

/// Waits (as a standby) until this process holds the coordinator lock, then starts serving.
/// `on_standby` runs once if another coordinator is active.
pub async fn start(
    config: Config,
    timing: Timing,
    on_standby: impl FnOnce(),
) -> Result<CoordinatorHandle> {
    let url = state_url(&config)?;
    let pg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| ClusterError::Config(format!("coordinator.state_database_url: {e}")))?;
    let (mut client, conn) = pg.connect(NoTls).await?;
    actix_rt::spawn(async move {
        let _ = conn.await;
    });
    let mut on_standby = Some(on_standby);
    // One session for the whole wait: the lock, once ours, lives exactly as long as it.
    let lock = loop {
        match StandbyLock::try_acquire(client).await? {
            TryLock::Acquired(lock) => break lock,
            TryLock::Busy(c) => {
                if let Some(f) = on_standby.take() {
                    f();
                }
                client = c;
                tokio::time::sleep(timing.heartbeat_interval.min(Duration::from_secs(1))).await;
            }
        }
    };
    let pool = Pool::builder(Manager::from_config(
        pg.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    ))
    .max_size(4)
    .build()
    .map_err(|e| ClusterError::State(e.to_string()))?;
    let coordinator = Arc::new(Coordinator::new(config, pool, timing)?);
    {
        let client = coordinator.pool.get().await?;
        coordinator.store.create_tables(&**client).await?;
        let workers = coordinator
            .store
            .extend_leases(&**client, coordinator.timing.lease)
            .await?;
        tracing::info!(workers, "leases extended for the takeover");
    }
    coordinator.reconcile().await?;
    let (addr, server) = server::serve(
        coordinator.config.coordinator.listen,
        coordinator.config.coordinator.tls.as_ref(),
        coordinator.clone(),
    )?;
    let stop = Shutdown::new();
    let watchdog = actix_rt::spawn(watchdog(
        lock,
        coordinator.clone(),
        server.clone(),
        stop.signal(),
    ));
    Ok(CoordinatorHandle {
        addr,
        server,
        coordinator,
        stop,
        watchdog,
    })
}

/// While active: keep checking the lock and reconcile on every tick (leases run out without
/// anyone calling). Returns Ok on stop, Err when the lock is gone.
async fn watchdog(
    lock: StandbyLock,
    coordinator: Arc<Coordinator>,
    server: actix_web::dev::ServerHandle,
    stop: StopSignal,
) -> Result<()> {
    let every = coordinator
        .timing
        .heartbeat_interval
        .min(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.stopped() => {
                let _ = lock.release().await;
                return Ok(());
            }
            _ = tokio::time::sleep(every) => {}
        }
        match lock.is_held().await {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                tracing::error!("lost the coordinator lock; stepping down");
                server.stop(false).await;
                return Err(ClusterError::State(
                    "lost the coordinator lock (state database session ended)".into(),
                ));
            }
        }
        if let Err(e) = coordinator.reconcile().await {
            tracing::warn!(error = %e, "reconcile failed; will retry");
        }
        if let Ok(doc) = coordinator.status().await {
            coordinator
                .telemetry
                .sample_drift(doc.mappings.iter().map(|m| m.secondary.drift_records).sum());
        }
    }
}
