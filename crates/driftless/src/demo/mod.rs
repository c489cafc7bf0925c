//! `driftless demo` (SPEC.md §7): a simulated org with a workload of long transactions, a
//! database of the demo's own, the engine in-process, and a report proven by a final verify.
//!
//! The engine polls the way Heroku Connect's primary poll does (`honor_latest_date_covered:
//! false`): a long transaction then commits behind a window already read, and the secondary poll
//! has visible drift to repair. Honouring `latestDateCovered` (the default of `driftless run`)
//! would hold windows back instead, and the demo would show no drift at all.

mod app;
mod phases;
mod postgres;
mod progress;
mod report;
mod scenario;
mod sim;

use std::time::Duration;

use driftless_node::NodeError;

pub use postgres::DEFAULT_DATABASE_URL;
pub use scenario::{parse_dataset, DEFAULT_DATASET};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    NoPostgres(String),
    #[error("postgres: {0}")]
    Postgres(String),
    #[error("{0}")]
    Setup(String),
    #[error("engine: {0}")]
    Engine(#[from] NodeError),
    #[error("{0}")]
    Timeout(String),
    #[error("interrupted")]
    Interrupted,
    #[error("verify found {0} difference(s) between Salesforce and Postgres")]
    Differences(i64),
}

/// What kind of failure, for callers that decide by kind rather than by message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoErrorKind {
    NoPostgres,
    Postgres,
    Setup,
    Engine,
    Timeout,
    Interrupted,
    Differences,
}

impl DemoError {
    pub fn kind(&self) -> DemoErrorKind {
        match self {
            DemoError::NoPostgres(_) => DemoErrorKind::NoPostgres,
            DemoError::Postgres(_) => DemoErrorKind::Postgres,
            DemoError::Setup(_) => DemoErrorKind::Setup,
            DemoError::Engine(_) => DemoErrorKind::Engine,
            DemoError::Timeout(_) => DemoErrorKind::Timeout,
            DemoError::Interrupted => DemoErrorKind::Interrupted,
            DemoError::Differences(_) => DemoErrorKind::Differences,
        }
    }
}

pub struct DemoOptions {
    pub seconds: u64,
    pub dataset: Vec<(String, u64)>,
    pub database_url: String,
    /// Adds a read_write mapping the demo writes to in Postgres.
    pub write_back: bool,
}

/// Runs the demo to its report. Whatever happens (an error, Ctrl-C), the engine and simulator
/// stop, the demo's database is dropped and a throwaway cluster is stopped and removed.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let out = progress::Out::new();
    out.say(&format!(
        "driftless demo: a simulated Salesforce org ({}), Postgres, and the sync between them",
        opts.dataset
            .iter()
            .map(|(o, n)| format!("{} {o}s", report::group(*n as i64)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let server = interruptible(postgres::connect(&opts.database_url, |l| out.say(l))).await?;
    let db = match interruptible(postgres::Database::create(&server)).await {
        Ok(db) => db,
        Err(e) => {
            server.shutdown();
            return Err(e);
        }
    };
    out.say(&format!(
        "postgres: database {} {}(dropped at the end)",
        db.name,
        if server.is_throwaway() {
            "in the throwaway cluster "
        } else {
            ""
        }
    ));
    let result = phases::run(&opts, &db, &out).await;
    let dropped = db.drop_now().await;
    server.shutdown();
    result?;
    dropped
}

/// Runs `f` unless Ctrl-C (or SIGTERM) comes first.
pub(crate) async fn interruptible<T>(
    f: impl std::future::Future<Output = Result<T, DemoError>>,
) -> Result<T, DemoError> {
    tokio::select! {
        r = f => r,
        _ = crate::sim_cmd::shutdown_signal() => Err(DemoError::Interrupted),
    }
}

/// A time limit on waiting for a condition, named for the error.
pub(crate) struct Deadline {
    what: &'static str,
    timeout: Duration,
    start: std::time::Instant,
}

impl Deadline {
    pub fn new(what: &'static str, timeout: Duration) -> Deadline {
        Deadline {
            what,
            timeout,
            start: std::time::Instant::now(),
        }
    }

    /// Sleeps `every` before the next look, or fails once the time is up.
    pub async fn tick(&self, every: Duration) -> Result<(), DemoError> {
        if self.start.elapsed() > self.timeout {
            return Err(DemoError::Timeout(format!(
                "timed out after {} s waiting for {}",
                self.timeout.as_secs(),
                self.what
            )));
        }
        tokio::time::sleep(every).await;
        Ok(())
    }
}
