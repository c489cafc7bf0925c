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
}

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
    actix_rt::System::new().block_on(async move {
        let reports = verify(&config, &opts)
            .await
            .map_err(crate::run_cmd::node_error)?;
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
