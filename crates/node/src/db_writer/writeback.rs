//! Messages of the write-back queue (`_trigger_log`): what the WriteBack actor asks of the
//! database, so that it holds no session of its own, and the LISTEN session that wakes it.
//!
//! LISTEN budget: deadpool's pooled clients drop notifications (their connection task discards
//! them), so LISTEN needs a session of its own. It is taken *out of* `db_pool_size`: while the
//! [`Listener`] lives, the pool is shrunk by one, and grown back when it ends. With
//! `db_pool_size = 1` there is no slot to spare, so the writer polls on its timer only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use driftless_core::ident::Ident;
use driftless_core::mapping::ResolvedMapping;
use driftless_core::writeback::{
    self as core_wb, BulkJob, ClaimedEntry, Counts, FailedEntry, WriteMode, WritebackError,
    NOTIFY_CHANNEL,
};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use super::DbWriter;
use crate::error::{NodeError, Result};
use crate::writeback::Outcome;

fn wb_error(e: WritebackError) -> NodeError {
    match e {
        WritebackError::Db(db) => NodeError::Db(db),
        other => NodeError::State(other.to_string()),
    }
}

/// Hands back every entry a dead predecessor left `PENDING` in `table`'s log; how many.
#[derive(Message)]
#[rtype(result = "Result<u64>")]
pub struct RecoverInFlight {
    pub schema: Ident,
    pub table: Ident,
}

impl Handler<RecoverInFlight> for DbWriter {
    type Result = ResponseFuture<Result<u64>>;
    fn handle(&mut self, msg: RecoverInFlight, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            core_wb::recover_in_flight(&**session, &msg.schema, &msg.table)
                .await
                .map_err(wb_error)
        })
    }
}

/// Archives settled entries older than `archive_after` and purges the archive past `retention`.
#[derive(Message)]
#[rtype(result = "Result<Housekept>")]
pub struct Housekeeping {
    pub schema: Ident,
    pub archive_after: Duration,
    pub retention: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Housekept {
    pub archived: u64,
    pub purged: u64,
}

impl Handler<Housekeeping> for DbWriter {
    type Result = ResponseFuture<Result<Housekept>>;
    fn handle(&mut self, msg: Housekeeping, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            let archived = core_wb::archive_processed(&**session, &msg.schema, msg.archive_after)
                .await
                .map_err(wb_error)?;
            let purged = core_wb::purge_archive(&**session, &msg.schema, msg.retention)
                .await
                .map_err(wb_error)?;
            Ok(Housekept { archived, purged })
        })
    }
}

/// Claims up to `limit` entries of the mapping's table under `mode` (committed before anything
/// is sent).
#[derive(Message)]
#[rtype(result = "Result<Vec<ClaimedEntry>>")]
pub struct ClaimWrites {
    pub schema: Ident,
    pub mapping: Arc<ResolvedMapping>,
    pub mode: WriteMode,
    pub limit: i64,
}

impl Handler<ClaimWrites> for DbWriter {
    type Result = ResponseFuture<Result<Vec<ClaimedEntry>>>;
    fn handle(&mut self, msg: ClaimWrites, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            core_wb::claim(&**session, &msg.schema, &msg.mapping, msg.mode, msg.limit)
                .await
                .map_err(wb_error)
        })
    }
}

/// Whether more than `threshold` entries of `table` wait to be sent (the Bulk path's test).
#[derive(Message)]
#[rtype(result = "Result<bool>")]
pub struct PendingAbove {
    pub schema: Ident,
    pub table: Ident,
    pub threshold: u64,
}

impl Handler<PendingAbove> for DbWriter {
    type Result = ResponseFuture<Result<bool>>;
    fn handle(&mut self, msg: PendingAbove, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            core_wb::pending_above(&**session, &msg.schema, &msg.table, msg.threshold)
                .await
                .map_err(wb_error)
        })
    }
}

/// Remembers a Bulk write-back job before it starts processing.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct SaveBulkJob {
    pub schema: Ident,
    pub job: BulkJob,
}

impl Handler<SaveBulkJob> for DbWriter {
    type Result = ResponseFuture<Result<()>>;
    fn handle(&mut self, msg: SaveBulkJob, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            core_wb::save_bulk_job(&**session, &msg.schema, &msg.job)
                .await
                .map_err(wb_error)
        })
    }
}

/// The Bulk write-back jobs of `table` a previous run left unsettled.
#[derive(Message)]
#[rtype(result = "Result<Vec<BulkJob>>")]
pub struct OpenBulkJobs {
    pub schema: Ident,
    pub table: Ident,
}

impl Handler<OpenBulkJobs> for DbWriter {
    type Result = ResponseFuture<Result<Vec<BulkJob>>>;
    fn handle(&mut self, msg: OpenBulkJobs, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            core_wb::open_bulk_jobs(&**session, &msg.schema, &msg.table)
                .await
                .map_err(wb_error)
        })
    }
}

/// Records what Salesforce said of claimed entries: sent, rejected, or to be retried.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct RecordOutcomes {
    pub schema: Ident,
    pub mapping: Arc<ResolvedMapping>,
    pub outcome: Outcome,
}

impl Handler<RecordOutcomes> for DbWriter {
    type Result = ResponseFuture<Result<()>>;
    fn handle(&mut self, msg: RecordOutcomes, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |mut session| async move {
            let client: &mut tokio_postgres::Client = &mut session;
            let (schema, mapping, out) = (&msg.schema, &msg.mapping, &msg.outcome);
            if !out.sent.is_empty() {
                core_wb::mark_success(client, schema, mapping, &out.sent)
                    .await
                    .map_err(wb_error)?;
            }
            if !out.failed.is_empty() {
                core_wb::mark_failed(client, schema, mapping, &out.failed)
                    .await
                    .map_err(wb_error)?;
            }
            if !out.retry.is_empty() {
                core_wb::retry_later(&*client, schema, mapping, &out.retry)
                    .await
                    .map_err(wb_error)?;
            }
            if !out.unsent.is_empty() {
                core_wb::release_unsent(&*client, schema, mapping, &out.unsent)
                    .await
                    .map_err(wb_error)?;
            }
            // Only once every outcome of its rows is recorded: a crash before this reads the
            // job's results again, which settles nothing twice.
            for job in &out.bulk_jobs {
                core_wb::drop_bulk_job(&*client, schema, job)
                    .await
                    .map_err(wb_error)?;
            }
            Ok(())
        })
    }
}

/// Write-back counts of each of `tables`, in their order (status).
#[derive(Message)]
#[rtype(result = "Result<Vec<Counts>>")]
pub struct WriteCounts {
    pub schema: Ident,
    pub tables: Vec<Ident>,
}

impl Handler<WriteCounts> for DbWriter {
    type Result = ResponseFuture<Result<Vec<Counts>>>;
    fn handle(&mut self, msg: WriteCounts, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            let mut out = Vec::with_capacity(msg.tables.len());
            for table in &msg.tables {
                out.push(
                    core_wb::counts(&**session, &msg.schema, table)
                        .await
                        .map_err(wb_error)?,
                );
            }
            Ok(out)
        })
    }
}

/// Failed writes for `ctl errors`, newest first, live log and archive.
#[derive(Message)]
#[rtype(result = "Result<Vec<FailedEntry>>")]
pub struct FailedWrites {
    pub schema: Ident,
    pub limit: i64,
}

impl Handler<FailedWrites> for DbWriter {
    type Result = ResponseFuture<Result<Vec<FailedEntry>>>;
    fn handle(&mut self, msg: FailedWrites, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            core_wb::failed_entries(&**session, &msg.schema, msg.limit)
                .await
                .map_err(wb_error)
        })
    }
}

/// Opens the LISTEN session out of the pool's budget, or `None` when the pool has no slot to
/// spare. Notifications wake `wake`.
#[derive(Message)]
#[rtype(result = "Result<Option<Listener>>")]
pub struct OpenListener {
    pub wake: Arc<Notify>,
}

/// A live LISTEN session; dropping it closes the session and gives the slot back to the pool.
pub struct Listener {
    _client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
    writer: Addr<DbWriter>,
    /// Set when the session ended (server restart, network): the writer opens a new one.
    closed: Arc<AtomicBool>,
}

impl Listener {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
        // A writer already gone has closed its pool: there is no slot left to give back.
        self.writer.do_send(ListenerClosed);
    }
}

/// The LISTEN session ended: the pool may use its slot again.
#[derive(Message)]
#[rtype(result = "()")]
struct ListenerClosed;

impl Handler<ListenerClosed> for DbWriter {
    type Result = ();
    fn handle(&mut self, _: ListenerClosed, _: &mut Self::Context) {
        match &self.listener_slot {
            Some(taken) => taken.store(false, Ordering::Relaxed),
            None => {
                let max = self.pool.status().max_size;
                self.pool.resize(max + 1);
            }
        }
    }
}

impl Handler<OpenListener> for DbWriter {
    type Result = ResponseFuture<Result<Option<Listener>>>;
    fn handle(&mut self, msg: OpenListener, ctx: &mut Self::Context) -> Self::Result {
        let pool = self.pool.clone();
        // The same name as the pool's sessions, so whoever counts the connection's sessions
        // counts this one too.
        let pg = self.pg.clone();
        let writer = ctx.address();
        let reserved = self.listener_slot.clone();
        Box::pin(async move {
            let give_back = || match &reserved {
                Some(taken) => taken.store(false, Ordering::Relaxed),
                None => pool.resize(pool.status().max_size + 1),
            };
            match &reserved {
                // The slot kept from the start: free unless a listener holds it.
                Some(taken) => {
                    if taken.swap(true, Ordering::Relaxed) {
                        return Ok(None);
                    }
                }
                None => {
                    let max = pool.status().max_size;
                    if max <= 1 {
                        return Ok(None);
                    }
                    // Shrink first, then wait until the pool really holds no more than the new
                    // size: deadpool cannot close a session that is checked out, it drops the
                    // excess one when it comes back.
                    pool.resize(max - 1);
                    while pool.status().size > max - 1 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            let (client, mut connection) = match pg.connect(NoTls).await {
                Ok(c) => c,
                Err(e) => {
                    give_back();
                    return Err(e.into());
                }
            };
            let closed = Arc::new(AtomicBool::new(false));
            let flag = closed.clone();
            let wake = msg.wake;
            let task = tokio::spawn(async move {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(m) = messages.next().await {
                    match m {
                        Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                flag.store(true, Ordering::Relaxed);
                // Whatever was notified while the session was down, a poll finds it.
                wake.notify_one();
            });
            // From here on, dropping the listener (on any error below too) gives the slot back.
            let listener = Listener {
                _client: client,
                task,
                writer,
                closed,
            };
            listener
                ._client
                .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
                .await?;
            Ok(Some(listener))
        })
    }
}
