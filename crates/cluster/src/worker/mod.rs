//! `driftless worker`: registers with the coordinator, heartbeats, and runs what it is assigned.
//!
//! The lease is the worker's own rule as much as the coordinator's: when a lease runs out without
//! a renewal (coordinator unreachable, or this process frozen), the worker stops every mapping
//! before the coordinator hands them to someone else. Fencing in the target databases covers the
//! case it cannot: a process frozen *between* its check and its commit.

mod runtime;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use driftless_core::secret::Secret;
use driftless_node::shutdown::StopSignal;
use driftless_proto::cluster::coordinator_service::{Deregister, Heartbeat, Register};
use driftless_proto::cluster::{DeregisterRequest, HeartbeatRequest, LeaseStatus, RegisterRequest};

pub use runtime::Runtime;

use crate::error::{ClusterError, Result};
use crate::rpc::RpcClient;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub coordinator: String,
    pub name: String,
    pub token: Secret,
    /// Relative weight in the assignment (0 drains the worker).
    pub capacity: u32,
    /// Where the connections' shipped files go (owner-only).
    pub dir: PathBuf,
    /// Rows per transaction and the like: the engine settings that are not in the config.
    pub run: driftless_node::RunOptions,
    /// A CA (PEM) to trust for an HTTPS coordinator, besides the platform's roots.
    pub ca_cert: Option<PathBuf>,
}

/// Runs until `stop` is triggered (then deregisters, so its connections move at once) or the
/// coordinator refuses the token.
pub async fn run(options: WorkerOptions, stop: StopSignal) -> Result<()> {
    let client = RpcClient::new(
        &options.coordinator,
        options.token.clone(),
        Duration::from_secs(10),
        options.ca_cert.as_deref(),
    )?;
    let mut runtime = Runtime::start(&options)?;
    let result = serve(&options, &client, &mut runtime, &stop).await;
    runtime.stop_all().await;
    result
}

struct Lease {
    worker_id: i64,
    lease_epoch: i64,
    /// Past this instant without a renewal, the worker must not write.
    deadline: Instant,
    interval: Duration,
}

async fn serve(
    options: &WorkerOptions,
    client: &RpcClient,
    runtime: &mut Runtime,
    stop: &StopSignal,
) -> Result<()> {
    loop {
        let Some(mut lease) = register(options, client, stop).await? else {
            return Ok(());
        };
        loop {
            tokio::select! {
                _ = stop.stopped() => {
                    runtime.stop_all().await;
                    let _ = client
                        .call::<Deregister>(&DeregisterRequest {
                            worker_id: lease.worker_id,
                            lease_epoch: lease.lease_epoch,
                        })
                        .await;
                    tracing::info!("worker deregistered");
                    return Ok(());
                }
                _ = tokio::time::sleep(lease.interval) => {}
            }
            if Instant::now() >= lease.deadline && runtime.is_running() {
                tracing::warn!("lease ran out without a renewal; stopping every mapping");
                runtime.stop_all().await;
            }
            let sent = Instant::now();
            let request = HeartbeatRequest {
                worker_id: lease.worker_id,
                lease_epoch: lease.lease_epoch,
                mappings: runtime.stats().await,
            };
            match client.call::<Heartbeat>(&request).await {
                Ok(reply) if reply.status == LeaseStatus::Active as i32 => {
                    lease.deadline = sent + Duration::from_millis(reply.lease_expires_ms);
                    if reply.heartbeat_interval_ms > 0 {
                        lease.interval = Duration::from_millis(reply.heartbeat_interval_ms);
                    }
                    // A renewal that arrives after its own deadline renews nothing.
                    if Instant::now() < lease.deadline {
                        runtime.apply(&reply.assignments, &reply.connections).await;
                    }
                }
                Ok(_) => {
                    tracing::warn!(
                        "the coordinator says this worker's lease is lost; registering again"
                    );
                    runtime.stop_all().await;
                    break;
                }
                Err(ClusterError::Unauthorized) => return Err(ClusterError::Unauthorized),
                Err(e) => tracing::warn!(error = %e, "heartbeat failed; will retry"),
            }
        }
    }
}

/// Registers, retrying while the coordinator is unreachable. None when stopped meanwhile.
async fn register(
    options: &WorkerOptions,
    client: &RpcClient,
    stop: &StopSignal,
) -> Result<Option<Lease>> {
    const RETRY: salesforce::Backoff = salesforce::Backoff {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(5),
        max_attempts: u32::MAX,
    };
    let mut attempt = 0;
    loop {
        let sent = Instant::now();
        match client
            .call::<Register>(&RegisterRequest {
                name: options.name.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                capacity: options.capacity,
            })
            .await
        {
            Ok(r) => {
                tracing::info!(worker = %options.name, worker_id = r.worker_id, lease_epoch = r.lease_epoch, "registered with the coordinator");
                return Ok(Some(Lease {
                    worker_id: r.worker_id,
                    lease_epoch: r.lease_epoch,
                    deadline: sent + Duration::from_millis(r.lease_expires_ms),
                    interval: Duration::from_millis(r.heartbeat_interval_ms.max(100)),
                }));
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "cannot register yet; retrying");
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = stop.stopped() => return Ok(None),
            _ = tokio::time::sleep(RETRY.ceiling(attempt)) => {}
        }
        attempt += 1;
    }
}
