//! The WriteBack actor: one per connection with read_write mappings, sending what the capture
//! triggers logged in `_trigger_log` to Salesforce (reference/heroku-connect.md §4, SPEC.md §5).
//!
//! It shares the DbWriter's pool (the connection's whole Postgres budget; the LISTEN session is
//! carved out of it, see [`listen`]) and follows the idempotency protocol of
//! [`driftless_core::writeback`]: claim (committed before any call), send, record the outcome. At
//! start it hands back every entry a dead predecessor left `PENDING`: a connection has one writer,
//! the process that runs it, so nothing else can be sending them. Resending them is safe because
//! inserts go as upserts on the mapping's upsert field.
//!
//! A cycle claims up to [`CLAIM_LIMIT`] entries per mapping and sends them as composite
//! collections; it runs again at once while there is work, else waits for a NOTIFY or the
//! [`FALLBACK_POLL`]. Every [`HOUSEKEEPING`] it archives settled entries and purges the archive
//! past `connection.sync.writeback_retention_days`. Counts for `ctl status` are refreshed into the
//! registry every [`COUNTS_EVERY`] and when the queue drains.

mod convert;
mod listen;
mod send;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use deadpool_postgres::Pool;
use driftless_core::config::ConnectionConfig;
use driftless_core::ident::Ident;
use driftless_core::mapping::{Access, ResolvedMapping};
use driftless_core::writeback::{self as core_wb, FailedEntry};
use tokio::sync::{watch, Notify};

pub use convert::{to_json, Writable};
pub use send::{backoff, COLLECTION};

use crate::db_writer::DbWriter;
use crate::error::{NodeError, Result};
use crate::status::{Registry, WritesDoc};

/// Entries claimed per mapping per cycle: ten full collection calls.
pub const CLAIM_LIMIT: i64 = 2000;
/// How often the log is read without a NOTIFY: retries whose backoff ran out, and every change
/// when there is no LISTEN session.
pub const FALLBACK_POLL: Duration = Duration::from_secs(2);
/// Status counts are refreshed at least this often.
const COUNTS_EVERY: Duration = Duration::from_secs(1);
/// Archive and purge this often.
pub const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// Settled entries stay in the live log this long, where the read side's no-flip-flop guard looks
/// for recent writes.
pub const ARCHIVE_AFTER: Duration = Duration::from_secs(300);
/// After a failed cycle (database or org down), wait this long before the next.
const ERROR_PAUSE: Duration = Duration::from_secs(2);

/// The DbWriter's pool, for actors that must share its budget.
#[derive(Message)]
#[rtype(result = "Pool")]
pub struct SharedPool;

impl Handler<SharedPool> for DbWriter {
    type Result = MessageResult<SharedPool>;
    fn handle(&mut self, _: SharedPool, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.pool().clone())
    }
}

struct Target {
    mapping: Arc<ResolvedMapping>,
    writable: Writable,
}

struct Inner {
    conn: ConnectionConfig,
    schema: Ident,
    pool: Pool,
    client: salesforce::Client,
    targets: Vec<Target>,
    registry: Registry,
    retention: Duration,
}

pub struct WriteBack {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
    done_tx: Option<watch::Sender<bool>>,
}

impl WriteBack {
    /// Starts the writer for `conn`'s read_write mappings among `mappings`; `None` when there are
    /// none. Reads each object's describe first (which fields a write may set).
    pub async fn start(
        conn: &ConnectionConfig,
        writer: &Addr<DbWriter>,
        mappings: impl IntoIterator<Item = Arc<ResolvedMapping>>,
        registry: Registry,
    ) -> Result<Option<Addr<WriteBack>>> {
        let client = crate::sf::client(conn)?;
        let mut targets = Vec::new();
        for mapping in mappings {
            if mapping.access != Access::ReadWrite {
                continue;
            }
            let d = client.describe(&mapping.object_name).await?;
            targets.push(Target {
                writable: Writable::from_describe(&d),
                mapping,
            });
        }
        if targets.is_empty() {
            return Ok(None);
        }
        let pool = writer.send(SharedPool).await?;
        let (stop, _) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        let inner = Arc::new(Inner {
            schema: conn.schema.clone(),
            conn: conn.clone(),
            pool,
            client,
            targets,
            registry,
            retention: Duration::from_secs(conn.sync.writeback_retention_days * 24 * 3600),
        });
        Ok(Some(
            WriteBack {
                inner,
                stop,
                done,
                done_tx: Some(done_tx),
            }
            .start(),
        ))
    }
}

impl Actor for WriteBack {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let inner = self.inner.clone();
        let stop = self.stop.subscribe();
        let done = self.done_tx.take().expect("started once");
        ctx.spawn(actix::fut::wrap_future(async move {
            inner.run(stop).await;
            let _ = done.send(true);
        }));
    }
}

/// Finishes the cycle under way (an outcome is always recorded before stopping) and stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for WriteBack {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Stop, _: &mut Self::Context) -> Self::Result {
        self.stop.send_replace(true);
        let mut done = self.done.clone();
        Box::pin(
            actix::fut::wrap_future(async move {
                let _ = done.wait_for(|d| *d).await;
            })
            .map(|_, _, ctx: &mut Context<Self>| ctx.stop()),
        )
    }
}

/// Failed writes of one connection for `ctl errors`, newest first, live log and archive (within
/// its retention): object (table), record id and sfid, operation, Salesforce's message and time.
pub async fn failed_writes(
    writer: &Addr<DbWriter>,
    schema: &Ident,
    limit: i64,
) -> Result<Vec<FailedEntry>> {
    let pool = writer.send(SharedPool).await?;
    let client = pool.get().await?;
    core_wb::failed_entries(&**client, schema, limit)
        .await
        .map_err(wb_error)
}

fn wb_error(e: core_wb::WritebackError) -> NodeError {
    match e {
        core_wb::WritebackError::Db(db) => NodeError::Db(db),
        other => NodeError::State(other.to_string()),
    }
}

impl Inner {
    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        let mut listener: Option<listen::Listener> = None;
        let mut recovered = false;
        let mut last_housekeeping: Option<Instant> = None;
        let mut last_counts = Instant::now();
        let mut busy_since_count = true;
        while !*stop.borrow() {
            if listener
                .as_ref()
                .is_none_or(|l| l.closed.load(std::sync::atomic::Ordering::Relaxed))
            {
                listener = None;
                match listen::open(&self.conn, &self.pool, wake.clone()).await {
                    Ok(l) => listener = l,
                    Err(e) => {
                        tracing::warn!(connection = %self.conn.name, error = %e, "write-back LISTEN failed; polling")
                    }
                }
            }
            let cycle = async {
                if !recovered {
                    self.recover().await?;
                    recovered = true;
                }
                if last_housekeeping.is_none_or(|t| t.elapsed() >= HOUSEKEEPING) {
                    self.housekeeping().await?;
                    last_housekeeping = Some(Instant::now());
                }
                let mut busy = false;
                for t in &self.targets {
                    busy |= self.cycle(t).await? > 0;
                }
                Ok::<bool, NodeError>(busy)
            };
            let pause = match cycle.await {
                Ok(true) => None,
                Ok(false) => Some(FALLBACK_POLL),
                Err(e) => {
                    tracing::warn!(connection = %self.conn.name, error = %e, "write-back cycle failed");
                    Some(ERROR_PAUSE)
                }
            };
            // Counting scans the log: once a second while busy, and once more when the queue
            // drains so status ends on the final figures.
            let drained = pause.is_some() && busy_since_count;
            busy_since_count |= pause.is_none();
            if drained || last_counts.elapsed() >= COUNTS_EVERY {
                busy_since_count = false;
                if let Err(e) = self.refresh_counts().await {
                    tracing::warn!(connection = %self.conn.name, error = %e, "write-back counts");
                }
                last_counts = Instant::now();
            }
            if let Some(d) = pause {
                tokio::select! {
                    _ = wake.notified() => {
                        // A burst of inserts notifies per row: let it land so one claim takes
                        // many rows rather than one.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ = tokio::time::sleep(d) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            }
        }
        drop(listener);
        let _ = self.refresh_counts().await;
    }

    async fn recover(&self) -> Result<()> {
        let client = self.pool.get().await?;
        for t in &self.targets {
            let n = core_wb::recover_in_flight(&**client, &self.schema, &t.mapping.table)
                .await
                .map_err(wb_error)?;
            if n > 0 {
                tracing::info!(connection = %self.conn.name, object = %t.mapping.object_name, entries = n, "resending writes in flight when the last process stopped");
            }
        }
        Ok(())
    }

    async fn housekeeping(&self) -> Result<()> {
        let client = self.pool.get().await?;
        let archived = core_wb::archive_processed(&**client, &self.schema, ARCHIVE_AFTER)
            .await
            .map_err(wb_error)?;
        let purged = core_wb::purge_archive(&**client, &self.schema, self.retention)
            .await
            .map_err(wb_error)?;
        tracing::debug!(connection = %self.conn.name, archived, purged, "write-back housekeeping");
        Ok(())
    }

    /// One claim, its sends and their outcomes; the number of entries claimed.
    async fn cycle(&self, t: &Target) -> Result<usize> {
        let entries = {
            let client = self.pool.get().await?;
            core_wb::claim_pending(&**client, &self.schema, &t.mapping, CLAIM_LIMIT)
                .await
                .map_err(wb_error)?
        };
        if entries.is_empty() {
            return Ok(0);
        }
        let n = entries.len();
        // No pooled connection is held while Salesforce answers.
        let out = send::send(&self.client, &t.mapping, &t.writable, entries).await;
        let mut obj = self.pool.get().await?;
        let client: &mut tokio_postgres::Client = &mut obj;
        if !out.sent.is_empty() {
            core_wb::mark_success(client, &self.schema, &t.mapping, &out.sent)
                .await
                .map_err(wb_error)?;
        }
        if !out.failed.is_empty() {
            for f in &out.failed {
                tracing::warn!(connection = %self.conn.name, object = %t.mapping.object_name, log_id = f.log_id, message = %f.message, "write rejected");
            }
            core_wb::mark_failed(client, &self.schema, &t.mapping, &out.failed)
                .await
                .map_err(wb_error)?;
        }
        if !out.retry.is_empty() {
            tracing::info!(connection = %self.conn.name, object = %t.mapping.object_name, entries = out.retry.len(), first = %out.retry[0].message, "writes will be retried");
            core_wb::retry_later(&*client, &self.schema, &t.mapping, &out.retry)
                .await
                .map_err(wb_error)?;
        }
        Ok(n)
    }

    async fn refresh_counts(&self) -> Result<()> {
        let client = self.pool.get().await?;
        for t in &self.targets {
            let c = core_wb::counts(&**client, &self.schema, &t.mapping.table)
                .await
                .map_err(wb_error)?;
            self.registry.set_writes(
                &self.conn.name,
                &t.mapping.object_name,
                WritesDoc {
                    pending: c.pending,
                    sent: c.sent,
                    failed: c.failed,
                },
            );
        }
        Ok(())
    }
}
