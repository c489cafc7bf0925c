//! `driftless ctl`: admin messages to the coordinator (SPEC.md §6). Only `status` so far.

use clap::{Args, Subcommand};
use driftless_node::StatusDoc;

use crate::UsageError;

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The coordinator's listen address
    #[arg(long, default_value = "http://127.0.0.1:7400")]
    coordinator: String,
    /// The admin token
    #[arg(long, env = "DRIFTLESS_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// One JSON document instead of a table
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Workers and mappings with their state and counters
    Status,
}

pub fn run(args: CtlArgs) -> anyhow::Result<()> {
    let token = args
        .token
        .ok_or_else(|| UsageError("ctl needs --token or DRIFTLESS_ADMIN_TOKEN".into()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let base = args.coordinator.trim_end_matches('/').to_owned();
    match args.command {
        CtlCommand::Status => {
            let doc: StatusDoc = rt.block_on(async {
                let resp = reqwest::Client::new()
                    .get(format!("{base}/api/v1/status"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    anyhow::bail!("coordinator answered {}", resp.status());
                }
                Ok(resp.json().await?)
            })?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print_status(&doc);
            }
        }
    }
    Ok(())
}

fn print_status(doc: &StatusDoc) {
    println!(
        "{:<24} {:<20} {:<6} {:>9} {:<21} {:>7} {:>9} {:>7} {:>6} {:>6}",
        "MAPPING",
        "STATE",
        "WORKER",
        "ROWS",
        "SYNCED THROUGH",
        "POLLS",
        "RECORDS",
        "DRIFT",
        "API",
        "ERRORS"
    );
    for m in &doc.mappings {
        println!(
            "{:<24} {:<20} {:<6} {:>9} {:<21} {:>7} {:>9} {:>7} {:>6} {:>6}",
            format!("{}/{}", m.connection, m.object),
            m.state,
            m.worker,
            m.rows,
            m.synced_through.as_deref().unwrap_or("-"),
            m.primary.polls,
            m.primary.records,
            m.secondary.drift_records,
            m.api_calls,
            m.errors
        );
    }
}
