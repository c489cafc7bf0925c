//! The DbWriter: one per connection, the only code that touches the customer's database.
//!
//! It owns the connection's fixed pool of `db_pool_size` connections, so the limit is a property
//! of the topology (DESIGN.md invariant 4): whatever the number of mappings, secondary polls and
//! write-back cycles, every statement waits for one of those connections. The pool never leaves
//! this module: every message the writer accepts is defined here, by what it is for —
//!
//! - [`sync`]: the data path (schema, rows with their progress, row counts);
//! - [`fresh`]: the initial load into an empty table (COPY straight in, indexes at the end);
//! - [`bookkeeping`]: the mapping's claim, state, load cursor, windows, reload;
//! - [`writeback`]: the write-back queue (claim, outcomes, housekeeping, counts, LISTEN);
//! - [`compare`]: `driftless verify`'s comparison and repair;
//! - [`formula`]: formula refreshes (formula columns only, SystemModstamp untouched).
//!
//! Each message is answered by a future that runs on its own ([`DbWriter::with_session`]), so up
//! to `db_pool_size` of them proceed at once; senders await the answer, so each of them has at
//! most one batch in flight.

pub mod bookkeeping;
pub mod compare;
pub mod formula;
pub mod fresh;
pub mod sync;
pub mod writeback;

use std::future::Future;

use std::sync::Arc;

use actix::prelude::*;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use driftless_core::config::ConnectionConfig;
use tokio_postgres::NoTls;

use crate::error::{NodeError, Result};

pub use bookkeeping::{
    BeginLoad, CheckTable, Claim, LoadStart, NotifyResumePoint, PendingWindows, Prune, Pruned,
    SetState, TruncateForReload,
};
pub use compare::{Batch, Compare};
pub use formula::{ChangedSfids, CountReferring, RefreshFormulas};
pub use fresh::{ChunkEnd, ChunkPart, CopyChunk, FinishFreshLoad};
pub use sync::{Applied, ApplyRows, CountRows, EnsureSchema, ListRejects, Progress};
pub use writeback::{
    ClaimWrites, FailedWrites, Housekeeping, Housekept, Listener, OpenBulkJobs, OpenListener,
    PendingAbove, RecordOutcomes, RecoverInFlight, SaveBulkJob, WriteCounts,
};

/// Mailbox bound: senders wait (`send().await`) rather than queue without limit.
const MAILBOX: usize = 64;

pub struct DbWriter {
    pool: Pool,
    /// How the pool's sessions connect, for the one session outside it (LISTEN, see
    /// [`writeback::OpenListener`]), which is carved out of the same budget.
    pg: tokio_postgres::Config,
    /// Set by [`DbWriter::reserve_listener_slot`]: the pool was made one smaller before any
    /// session existed, and the flag says whether the LISTEN session holds that slot now.
    listener_slot: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl DbWriter {
    /// [`DbWriter::new`] keeping one of the `pool_size` slots for write-back's LISTEN session
    /// from the start: the pool is built one smaller. Shrinking a pool later cannot be exact
    /// (deadpool's `resize` takes no permit back while its sessions are still being opened, as a
    /// load's parallel chunks do at startup).
    pub fn with_listener_slot(
        conn: &ConnectionConfig,
        role: &str,
        pool_size: u32,
    ) -> Result<DbWriter> {
        let size = pool_size.clamp(1, conn.db_pool_size);
        if size <= 1 {
            return DbWriter::new(conn, role, size);
        }
        let mut writer = DbWriter::new(conn, role, size - 1)?;
        writer.listener_slot = Some(Arc::default());
        Ok(writer)
    }

    /// Builds a pool of at most `pool_size` connections, never above `db_pool_size` (none is
    /// opened yet). Sessions are named `driftless/<connection>/<role>` so operators can find them
    /// in `pg_stat_activity`.
    pub fn new(conn: &ConnectionConfig, role: &str, pool_size: u32) -> Result<DbWriter> {
        let mut pg: tokio_postgres::Config = conn.database_url.expose().parse().map_err(|e| {
            NodeError::Config {
                // Not the parser's text: it may quote the URL, and the URL holds the password.
                message: format!(
                    "connection {}: database_url is not a valid postgres URL",
                    conn.name
                ),
                source: Some(Box::new(e)),
            }
        })?;
        pg.application_name(application_name(&conn.name, role));
        // `CREATE TEMP TABLE IF NOT EXISTS` for the staging table raises a NOTICE on every
        // transaction after the first; they are not worth a log line each.
        pg.options("-c client_min_messages=warning");
        let manager = Manager::from_config(
            pg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.clamp(1, conn.db_pool_size) as usize)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| NodeError::Pool(e.to_string()))?;
        Ok(DbWriter {
            pool,
            pg,
            listener_slot: None,
        })
    }

    /// The shape of every handler: take one session of the pool (waiting for one if all are
    /// out), run `f` on it, and answer with what it returns. The session goes back to the pool
    /// when `f` is done.
    fn with_session<T, F, Fut>(&self, f: F) -> ResponseFuture<Result<T>>
    where
        T: 'static,
        F: FnOnce(Object) -> Fut + 'static,
        Fut: Future<Output = Result<T>> + 'static,
    {
        let pool = self.pool.clone();
        Box::pin(async move {
            let session = pool.get().await?;
            f(session).await
        })
    }
}

pub fn application_name(connection: &str, role: &str) -> String {
    format!("driftless/{connection}/{role}")
}

impl Actor for DbWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.pool.close();
    }
}

/// Connections of the pool handed out right now (status: `db_connections_in_use`).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct PoolInUse;

impl Handler<PoolInUse> for DbWriter {
    type Result = usize;
    fn handle(&mut self, _: PoolInUse, _: &mut Self::Context) -> usize {
        let s = self.pool.status();
        s.size.saturating_sub(s.available)
    }
}

/// Stops the writer and closes its pool.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

impl Handler<Close> for DbWriter {
    type Result = ();
    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        self.pool.close();
        ctx.stop();
    }
}
