//! `driftless verify`: compares Salesforce and Postgres record by record.

use std::path::PathBuf;

use clap::Args;
use driftless_node::verify::{verify, VerifyOptions};

use crate::UsageError;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The driftless.toml whose connections to check
    #[arg(long)]
    config: PathBuf,
    /// Only this connection
    #[arg(long)]
    connection: Option<String>,
    /// Only this mapping (Salesforce object name)
    #[arg(long)]
    mapping: Option<String>,
    /// Fix the differences through the sync's merge (counted as drift_records)
    #[arg(long)]
    repair: bool,
    /// Differences listed by Id per mapping; all are counted
    #[arg(long, default_value_t = 20)]
    show: i64,
    /// Next to a running sync, changes still in flight show as differences: compare again
    /// every 5 s for up to SECS until none are left, and report the last comparison
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 0,
        conflicts_with = "repair"
    )]
    wait: u64,
}

/// How long `--wait` pauses between comparisons.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The differences left, as an error so the process exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{0} difference(s) between Salesforce and Postgres")]
pub struct Differences(pub i64);

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let config =
        driftless_core::Config::load(&args.config).map_err(|e| UsageError(e.to_string()))?;
    let opts = VerifyOptions {
        connection: args.connection,
        mapping: args.mapping,
        repair: args.repair,
        max_listed: args.show.max(0),
        batch_rows: 50_000,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.wait);
    actix_rt::System::new().block_on(async move {
        let reports = loop {
            let reports = verify(&config, &opts)
                .await
                .map_err(crate::run_cmd::node_error)?;
            let found: i64 = reports.iter().map(|r| r.differences()).sum();
            if found == 0 || std::time::Instant::now() + RECHECK_EVERY > deadline {
                break reports;
            }
            eprintln!(
                "{found} difference(s), comparing again in {} s (--wait)",
                RECHECK_EVERY.as_secs()
            );
            tokio::time::sleep(RECHECK_EVERY).await;
        };
        let mut remaining = 0;
        for r in &reports {
            let found = r.differences();
            if found == 0 {
                println!(
                    "{}/{}: {} records, no differences",
                    r.connection, r.object, r.salesforce_records
                );
                continue;
            }
            let kinds: Vec<String> = r.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!(
                "{}/{}: {} records, {found} difference(s): {}",
                r.connection,
                r.object,
                r.salesforce_records,
                kinds.join(", ")
            );
            for (kind, sfid) in &r.examples {
                println!("  {kind:<22} {sfid}");
            }
            if opts.repair {
                if let Some(e) = &r.repair_error {
                    println!("  repair wrote nothing: Postgres rejects a record: {e}");
                }
                println!(
                    "  repaired {} record(s), {} difference(s) left",
                    r.repaired, r.remaining
                );
            }
            remaining += r.remaining;
        }
        if remaining > 0 {
            return Err(Differences(remaining).into());
        }
        Ok(())
    })
}
