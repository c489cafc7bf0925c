//! The WriteBack actor: one per connection with read_write mappings, sending what the capture
//! triggers logged in `_trigger_log` to Salesforce (reference/heroku-connect.md §4, SPEC.md §5).
//!
//! It holds no database session: every statement is a message to the connection's DbWriter (whose
//! pool is the connection's whole Postgres budget; the LISTEN session is carved out of it, see
//! [`crate::db_writer::writeback`]). It follows the idempotency protocol of
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

mod bulk;
mod convert;
mod send;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use driftless_core::config::ConnectionConfig;
use driftless_core::ident::Ident;
use driftless_core::mapping::{Access, ResolvedMapping};
use driftless_core::writeback::{FailedEntry, WriteMode};
use tokio::sync::Notify;

pub use convert::{to_json, Writable};
pub use send::{backoff, Outcome, COLLECTION};

use crate::db_writer::{
    ClaimWrites, DbWriter, FailedWrites, Housekeeping, Housekept, Listener, OpenBulkJobs,
    OpenListener, PendingAbove, RecordOutcomes, RecoverInFlight, WriteCounts,
};
use crate::error::{NodeError, Result};
use crate::shutdown::{spawn_loop, Running, StopSignal, Tick};
use crate::status::{Registry, WritePath, WritesDoc};

/// Entries claimed per mapping per cycle on the composite path: ten full collection calls.
pub const CLAIM_LIMIT: i64 = 2000;
/// Entries claimed per cycle on the Bulk path: a job costs about eight calls (create, upload,
/// close, polls, two result reads) whatever its size, so big claims keep the cost per record low.
/// Claimed [`CLAIM_LIMIT`] at a time: one claim statement grows worse than linearly with its size.
pub const BULK_CLAIM_LIMIT: usize = 100_000;
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

struct Target {
    mapping: Arc<ResolvedMapping>,
    writable: Writable,
}

/// What a connection's write-back sends to, and with what.
struct Connection {
    conn: ConnectionConfig,
    schema: Ident,
    db: Addr<DbWriter>,
    client: salesforce::Client,
    targets: Vec<Target>,
    registry: Registry,
    retention: Duration,
}

/// The write-back loop of one connection; runs as a [`Tick`] loop until stopped.
pub struct WriteBack {
    connection: Connection,
    wake: Arc<Notify>,
    listener: Option<Listener>,
    recovered: bool,
    last_housekeeping: Option<Instant>,
    last_counts: Instant,
    busy_since_count: bool,
}

impl WriteBack {
    /// Starts the writer for `conn`'s read_write mappings among `mappings`; `None` when there are
    /// none. Reads each object's describe first (which fields a write may set). Stopping the
    /// returned task lets the cycle under way finish (an outcome is always recorded first).
    pub async fn start(
        conn: &ConnectionConfig,
        db: &Addr<DbWriter>,
        mappings: impl IntoIterator<Item = Arc<ResolvedMapping>>,
        registry: Registry,
    ) -> Result<Option<Running>> {
        let client = crate::salesforce_client::client(conn)?;
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
        let connection = Connection {
            schema: conn.schema.clone(),
            conn: conn.clone(),
            db: db.clone(),
            client,
            targets,
            registry,
            retention: Duration::from_secs(conn.sync.writeback_retention_days * 24 * 3600),
        };
        Ok(Some(spawn_loop(WriteBack {
            connection,
            wake: Arc::new(Notify::new()),
            listener: None,
            recovered: false,
            last_housekeeping: None,
            last_counts: Instant::now(),
            busy_since_count: true,
        })))
    }
}

/// Failed writes of one connection for `ctl errors`, newest first, live log and archive (within
/// its retention): object (table), record id and sfid, operation, Salesforce's message and time.
pub async fn failed_writes(
    db: &Addr<DbWriter>,
    schema: &Ident,
    limit: i64,
) -> Result<Vec<FailedEntry>> {
    db.send(FailedWrites {
        schema: schema.clone(),
        limit,
    })
    .await?
}

impl Tick for WriteBack {
    async fn tick(&mut self, _: &StopSignal) -> Option<Duration> {
        let c = &self.connection;
        if self.listener.as_ref().is_none_or(|l| l.is_closed()) {
            self.listener = None;
            match c
                .db
                .send(OpenListener {
                    wake: self.wake.clone(),
                })
                .await
                .map_err(NodeError::from)
                .and_then(|r| r)
            {
                Ok(l) => self.listener = l,
                Err(e) => {
                    tracing::warn!(connection = %c.conn.name, error = %e, "write-back LISTEN failed; polling")
                }
            }
        }
        let cycle = async {
            if !self.recovered {
                c.recover().await?;
                self.recovered = true;
            }
            if self
                .last_housekeeping
                .is_none_or(|t| t.elapsed() >= HOUSEKEEPING)
            {
                c.housekeeping().await?;
                self.last_housekeeping = Some(Instant::now());
            }
            let mut busy = false;
            let mut failed = None;
            // One mapping's trouble (its table altered under it...) does not hold the others up.
            for t in &c.targets {
                match c.cycle(t).await {
                    Ok(Cycle { claimed, unsettled }) => {
                        busy |= claimed > 0;
                        if unsettled {
                            // Settled from the database before anything else is claimed.
                            self.recovered = false;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(connection = %c.conn.name, object = %t.mapping.object_name, error = %e, "write-back of the mapping failed");
                        failed = Some(e);
                    }
                }
            }
            match failed {
                Some(e) if !busy => Err(e),
                _ => Ok::<bool, NodeError>(busy),
            }
        };
        let pause = match cycle.await {
            Ok(true) => None,
            Ok(false) => Some(FALLBACK_POLL),
            Err(e) => {
                tracing::warn!(connection = %c.conn.name, error = %e, "write-back cycle failed");
                Some(ERROR_PAUSE)
            }
        };
        // Counting scans the log: once a second while busy, and once more when the queue
        // drains so status ends on the final figures.
        let drained = pause.is_some() && self.busy_since_count;
        self.busy_since_count |= pause.is_none();
        if drained || self.last_counts.elapsed() >= COUNTS_EVERY {
            self.busy_since_count = false;
            if let Err(e) = c.refresh_counts().await {
                tracing::warn!(connection = %c.conn.name, error = %e, "write-back counts");
            }
            self.last_counts = Instant::now();
        }
        Some(pause.unwrap_or(Duration::ZERO))
    }

    async fn woken(&self) {
        self.wake.notified().await;
        // A burst of inserts notifies per row: let it land so one claim takes many rows rather
        // than one.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    async fn finish(&mut self) {
        self.listener = None;
        let _ = self.connection.refresh_counts().await;
    }
}

/// What one mapping's cycle did.
struct Cycle {
    claimed: usize,
    /// A Bulk job's results could not be read yet.
    unsettled: bool,
}

impl Connection {
    /// Settles the Bulk jobs a previous run (or a cycle that could not reach Salesforce) left,
    /// then hands back what is still `PENDING`: every job's entries are settled first, so none of
    /// them is sent twice.
    async fn recover(&self) -> Result<()> {
        for t in &self.targets {
            let jobs = self
                .db
                .send(OpenBulkJobs {
                    schema: self.schema.clone(),
                    table: t.mapping.table.clone(),
                })
                .await??;
            for job in jobs {
                tracing::info!(connection = %self.conn.name, object = %t.mapping.object_name, job_id = %job.job_id, rows = job.log_ids.len(), "reading the results of a bulk write job started before");
                let out = bulk::resume(&self.client, &job).await;
                if out.unsettled_jobs > 0 {
                    return Err(NodeError::State(format!(
                        "bulk write job {} of {} cannot be read yet",
                        job.job_id, t.mapping.object_name
                    )));
                }
                self.db
                    .send(RecordOutcomes {
                        schema: self.schema.clone(),
                        mapping: t.mapping.clone(),
                        outcome: out,
                    })
                    .await??;
            }
        }
        for t in &self.targets {
            let n = self
                .db
                .send(RecoverInFlight {
                    schema: self.schema.clone(),
                    table: t.mapping.table.clone(),
                })
                .await??;
            if n > 0 {
                tracing::info!(connection = %self.conn.name, object = %t.mapping.object_name, entries = n, "resending writes in flight when the last process stopped");
            }
        }
        Ok(())
    }

    async fn housekeeping(&self) -> Result<()> {
        let Housekept { archived, purged } = self
            .db
            .send(Housekeeping {
                schema: self.schema.clone(),
                archive_after: ARCHIVE_AFTER,
                retention: self.retention,
            })
            .await??;
        tracing::debug!(connection = %self.conn.name, archived, purged, "write-back housekeeping");
        Ok(())
    }

    /// The way this cycle sends: Bulk when more is pending than `bulk_write_threshold`. Under
    /// Ordered Writes too (Connect's Bulk writes need them): its claim holds one change per
    /// record, all before the table's first blocking point, so the job's parallel batches cannot
    /// reorder a record's changes.
    async fn path(&self, t: &Target) -> Result<WritePath> {
        let above = self
            .db
            .send(PendingAbove {
                schema: self.schema.clone(),
                table: t.mapping.table.clone(),
                threshold: self.conn.sync.bulk_write_threshold,
            })
            .await??;
        Ok(if above {
            WritePath::Bulk
        } else {
            WritePath::Composite
        })
    }

    /// One claim, its sends and their outcomes.
    async fn cycle(&self, t: &Target) -> Result<Cycle> {
        let mode = self.conn.sync.write_mode;
        let path = self.path(t).await?;
        let claim = || {
            self.db.send(ClaimWrites {
                schema: self.schema.clone(),
                mapping: t.mapping.clone(),
                mode,
                limit: CLAIM_LIMIT,
            })
        };
        let mut entries = claim().await??;
        if path == WritePath::Bulk {
            // A record's entry claimed here is PENDING, so later claims skip its next change.
            let mut last = entries.len();
            while last >= CLAIM_LIMIT as usize && entries.len() < BULK_CLAIM_LIMIT {
                let more = claim().await??;
                last = more.len();
                entries.extend(more);
            }
        }
        if entries.is_empty() {
            return Ok(Cycle {
                claimed: 0,
                unsettled: false,
            });
        }
        let n = entries.len();
        self.registry
            .set_write_path(&self.conn.name, &t.mapping.object_name, path);
        // No database session is held while Salesforce answers.
        let out = match (path, mode) {
            (WritePath::Bulk, _) => {
                bulk::send(
                    &self.client,
                    &self.db,
                    &self.schema,
                    &t.mapping,
                    &t.writable,
                    entries,
                )
                .await
            }
            (WritePath::Composite, WriteMode::Ordered) => {
                send::send_ordered(&self.client, &t.mapping, &t.writable, entries).await
            }
            (WritePath::Composite, WriteMode::Merged) => {
                send::send(&self.client, &t.mapping, &t.writable, entries).await
            }
        };
        let unsettled = out.unsettled_jobs > 0;
        for f in &out.failed {
            tracing::warn!(connection = %self.conn.name, object = %t.mapping.object_name, log_id = f.log_id, message = %f.message, "write rejected");
        }
        if let Some(first) = out.retry.first() {
            tracing::info!(connection = %self.conn.name, object = %t.mapping.object_name, entries = out.retry.len(), first = %first.message, "writes will be retried");
        }
        self.db
            .send(RecordOutcomes {
                schema: self.schema.clone(),
                mapping: t.mapping.clone(),
                outcome: out,
            })
            .await??;
        Ok(Cycle {
            claimed: n,
            unsettled,
        })
    }

    async fn refresh_counts(&self) -> Result<()> {
        let counts = self
            .db
            .send(WriteCounts {
                schema: self.schema.clone(),
                tables: self
                    .targets
                    .iter()
                    .map(|t| t.mapping.table.clone())
                    .collect(),
            })
            .await??;
        for (t, c) in self.targets.iter().zip(counts) {
            self.registry.set_writes(
                &self.conn.name,
                &t.mapping.object_name,
                WritesDoc {
                    pending: c.pending,
                    sent: c.sent,
                    failed: c.failed,
                    merged: c.merged,
                    mode: self.conn.sync.write_mode.into(),
                    ..WritesDoc::default()
                },
            );
        }
        Ok(())
    }
}
