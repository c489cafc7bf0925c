//! `driftless coordinator` and `driftless worker`: the cluster roles (driftless-cluster).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use driftless_cluster::coordinator::{self, Timing};
use driftless_cluster::worker::{self, WorkerOptions};
use driftless_cluster::ClusterError;
use driftless_core::Secret;

use crate::UsageError;

#[derive(Args, Debug)]
pub struct CoordinatorArgs {
    /// The driftless.toml with [coordinator] state_database_url, tokens and every connection
    #[arg(long)]
    config: PathBuf,
    /// How long a worker keeps its mappings without a heartbeat before they move
    #[arg(long, default_value_t = 15)]
    lease_secs: u64,
    /// How often workers heartbeat (must be well below the lease)
    #[arg(long, default_value_t = 3)]
    heartbeat_secs: u64,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The coordinator's URL, e.g. http://127.0.0.1:7400 (https:// when it has tls_cert)
    #[arg(long)]
    coordinator: String,
    /// This worker's name, unique in the cluster [default: the host name]
    #[arg(long)]
    name: Option<String>,
    /// The worker token (coordinator.worker_token, else its admin_token)
    #[arg(long, env = "DRIFTLESS_WORKER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Relative share of the mappings this worker takes; 0 drains it
    #[arg(long, default_value_t = 1)]
    capacity: u32,
    /// Where the connection settings shipped by the coordinator are kept (owner-only)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for an https:// coordinator, besides the system roots
    #[arg(long, env = "DRIFTLESS_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

fn cluster_error(e: ClusterError) -> anyhow::Error {
    match e {
        ClusterError::Config(m) => UsageError(m).into(),
        other => other.into(),
    }
}

pub fn run_coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    let config =
        driftless_core::Config::load(&args.config).map_err(|e| UsageError(e.to_string()))?;
    if args.heartbeat_secs == 0 || args.heartbeat_secs * 2 > args.lease_secs {
        return Err(UsageError(
            "--heartbeat-secs must be at least 1 and at most half of --lease-secs".into(),
        )
        .into());
    }
    let timing = Timing {
        lease: Duration::from_secs(args.lease_secs),
        heartbeat_interval: Duration::from_secs(args.heartbeat_secs),
    };
    actix_rt::System::new().block_on(async move {
        let start = coordinator::start(config, timing, || {
            tracing::info!("another coordinator is active; waiting as a standby");
        });
        let mut handle = tokio::select! {
            h = start => h.map_err(cluster_error)?,
            _ = crate::sim_cmd::shutdown_signal() => return Ok(()),
        };
        tracing::info!(addr = %handle.addr(), "active coordinator");
        tokio::select! {
            lost = handle.lost_lock() => {
                lost.map_err(cluster_error)?;
                Ok(())
            }
            _ = crate::sim_cmd::shutdown_signal() => {
                tracing::info!("stopping");
                handle.stop().await;
                Ok(())
            }
        }
    })
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

pub fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let token = args
        .token
        .ok_or_else(|| UsageError("worker needs --token or DRIFTLESS_WORKER_TOKEN".into()))?;
    let name = args.name.unwrap_or_else(host_name);
    let dir = args.data_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("driftless-worker-{name}-{}", std::process::id()))
    });
    let options = WorkerOptions {
        coordinator: args.coordinator,
        name,
        token: Secret::new(token),
        capacity: args.capacity,
        dir: dir.clone(),
        run: driftless_node::RunOptions::default(),
        ca_cert: args.ca_cert,
    };
    let result = actix_rt::System::new().block_on(async move {
        let stop = driftless_node::shutdown::Shutdown::new();
        let signal = stop.signal();
        actix_rt::spawn(async move {
            crate::sim_cmd::shutdown_signal().await;
            tracing::info!("stopping");
            stop.trigger();
        });
        worker::run(options, signal).await.map_err(cluster_error)
    });
    // The shipped settings hold secrets: leave nothing behind.
    let _ = std::fs::remove_dir_all(&dir);
    result
}
