//! `driftless run --config FILE`: coordinator and one worker in one process.

use std::path::PathBuf;

use clap::Args;
use driftless_node::{NodeError, RunOptions};

use crate::UsageError;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The driftless.toml to run
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config =
        driftless_core::Config::load(&args.config).map_err(|e| UsageError(e.to_string()))?;
    actix_rt::System::new().block_on(async move {
        let engine = driftless_node::run(config, RunOptions::default())
            .await
            .map_err(node_error)?;
        if let Some(addr) = engine.admin_addr() {
            tracing::info!(%addr, "running; admin endpoints at http://{addr}/status");
        }
        crate::sim_cmd::shutdown_signal().await;
        tracing::info!("stopping");
        engine.stop().await;
        Ok(())
    })
}

/// Configuration problems exit with 2, everything else with 1 (SPEC.md §1).
pub fn node_error(e: NodeError) -> anyhow::Error {
    match e {
        NodeError::Config { message, .. } => UsageError(message).into(),
        other => other.into(),
    }
}
