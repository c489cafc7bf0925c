//! `driftless demo`: the first-run experience (SPEC.md §7). The work is in `demo/`.

use clap::Args;

use crate::demo::{self, DemoErrorKind, DemoOptions};
use crate::UsageError;

/// `driftless demo --help`.
pub const LONG_ABOUT: &str = "Starts a simulated Salesforce org with a workload that includes long-running \
transactions, creates a database of its own in the Postgres at DATABASE_URL (or, when nothing answers \
there and initdb/pg_ctl are on PATH or where Debian and RHEL install them, /usr/lib/postgresql/*/bin and \
/usr/pgsql-*/bin, or in DRIFTLESS_PG_BINDIRS, in a throwaway cluster in a temporary directory), loads every \
record with progress bars, syncs changes while the workload runs, waits for one more secondary poll \
cycle, and ends with a report and a record-by-record verify. Exits 0 only when verify finds 0 \
differences. Ctrl-C stops everything and drops the database.\n\n\
While it runs, the dashboard (/status) and Prometheus metrics (/metrics) are served on the address it \
prints.";

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How long the workload runs, in seconds
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Records the simulator generates, as Object=count (Account and Contact are mapped)
    #[arg(long, default_value = demo::DEFAULT_DATASET)]
    dataset: String,
    /// The Postgres where the demo creates (and drops) its database
    #[arg(long, env = "DATABASE_URL", default_value = demo::DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: String,
    /// Leave out the read_write mapping (Invoice__c) whose Postgres rows are written back
    #[arg(long)]
    no_write_back: bool,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dataset =
        demo::parse_dataset(&args.dataset).map_err(|e| UsageError(format!("--dataset: {e}")))?;
    if args.seconds == 0 {
        return Err(UsageError("--seconds: must be at least 1".into()).into());
    }
    let opts = DemoOptions {
        seconds: args.seconds,
        dataset,
        database_url: args.database_url,
        write_back: !args.no_write_back,
    };
    match actix_rt::System::new().block_on(demo::run(opts)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == DemoErrorKind::Interrupted => Err(anyhow::anyhow!(
            "demo interrupted: the engine and simulator stopped and the demo's database was dropped"
        )),
        Err(e) => Err(e.into()),
    }
}
