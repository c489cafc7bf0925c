//! What a mapping's poller and its secondary polls share, and the batch writer both read into.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, Utc};
use driftless_core::config::SyncConfig;
use driftless_core::mapping::ResolvedMapping;
use driftless_core::state::MappingKey;
use parking_lot::Mutex;
use salesforce::{Client, Record};

use crate::db_writer::{Applied, ApplyRows, DbWriter, Progress};
use crate::error::Result;
use crate::rows::{Row, RowBuilder};
use crate::sf::RecordSink;
use crate::status::Registry;
use crate::RunOptions;

pub struct MappingCtx {
    pub key: MappingKey,
    pub epoch: i64,
    pub mapping: Arc<ResolvedMapping>,
    /// This mapping's own client: its usage counters are the mapping's API calls.
    pub client: Client,
    pub writer: Addr<DbWriter>,
    pub registry: Registry,
    pub sync: SyncConfig,
    pub poll_interval_secs: u64,
    pub max_daily_api_calls: Option<u64>,
    pub options: Arc<RunOptions>,
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Calls already added to a commit's `api_calls`, so concurrent polls never count one twice.
    accounted_calls: AtomicU64,
    /// (UTC day, calls at its start) for `sf_max_daily_api_calls`.
    day: Mutex<(chrono::NaiveDate, u64)>,
}

impl MappingCtx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: MappingKey,
        epoch: i64,
        mapping: Arc<ResolvedMapping>,
        client: Client,
        writer: Addr<DbWriter>,
        registry: Registry,
        sync: SyncConfig,
        poll_interval_secs: u64,
        max_daily_api_calls: Option<u64>,
        options: Arc<RunOptions>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> MappingCtx {
        let calls = client.usage().calls;
        registry
            .telemetry()
            .watch_api_usage(&key.connection, &key.object, &client);
        MappingCtx {
            key,
            epoch,
            mapping,
            client,
            writer,
            registry,
            sync,
            poll_interval_secs,
            max_daily_api_calls,
            options,
            stop,
            accounted_calls: AtomicU64::new(0),
            day: Mutex::new((Utc::now().date_naive(), calls)),
        }
    }

    pub fn object(&self) -> &str {
        &self.mapping.object_name
    }

    /// API calls made since the last call of this function.
    pub fn take_api_calls(&self) -> i64 {
        let now = self.client.usage().calls;
        let before = self.accounted_calls.swap(now, Ordering::Relaxed);
        now.saturating_sub(before) as i64
    }

    /// How long to hold off because today's `sf_max_daily_api_calls` is spent; `None` to go on.
    pub fn api_budget_wait(&self) -> Option<std::time::Duration> {
        let max = self.max_daily_api_calls?;
        let calls = self.client.usage().calls;
        let now = Utc::now();
        let mut day = self.day.lock();
        if day.0 != now.date_naive() {
            *day = (now.date_naive(), calls);
        }
        if calls.saturating_sub(day.1) < max {
            return None;
        }
        let tomorrow = (now.date_naive() + chrono::Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        (tomorrow - now).to_std().ok()
    }

    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d` unless asked to stop first; true when stopping.
    pub async fn sleep(&self, d: std::time::Duration) -> bool {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return true;
        }
        let stopped = tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        stopped || *self.stop.borrow()
    }

    pub fn set_status_state(&self, state: &str, error: Option<String>) {
        self.registry
            .update(&self.key.connection, &self.key.object, |s| {
                s.state = state.to_owned();
                if error.is_some() {
                    s.last_error = error;
                    s.last_error_at = Some(Utc::now());
                }
            });
    }

    /// Rows per transaction: the connection's `sync.batch_rows` when set, else the engine's.
    pub fn batch_rows(&self) -> usize {
        self.sync
            .batch_rows
            .map_or(self.options.batch_rows, |n| n as usize)
            .max(1)
    }

    pub fn secondary_due(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.sync.secondary_delay_secs as i64)
    }
}

/// How an initial load's commits say which Ids they cover, so a restart can resume after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorMode {
    /// Not a load (or a backfill): no cursor.
    Off,
    /// Records arrive in Id order (a REST query with `ORDER BY Id`): every committed row's Id
    /// covers all before it.
    RowOrder,
    /// PK-chunked Bulk batches, read in ascending Id ranges but unordered inside a batch: only a
    /// batch read to its end covers every Id up to the largest it held.
    BatchEnds,
}

/// Rows read from Salesforce go here; every `batch_rows` they are committed as one transaction.
/// The last batch carries the read's progress (see [`BatchWriter::finish`]).
pub struct BatchWriter<'a> {
    ctx: &'a MappingCtx,
    builder: RowBuilder,
    buf: Vec<Row>,
    pub records: i64,
    pub applied: Applied,
    /// Initial load: commit a cursor with each batch, and stop between batches when asked to.
    pub cursor_mode: CursorMode,
    /// Every record with an Id up to this one is in `buf` or committed.
    covered_to: Option<String>,
    /// The largest Id of the Bulk batch being read.
    batch_max: Option<String>,
}

/// Salesforce Ids order by their 15 case-sensitive characters; the 3-character suffix is a
/// checksum of them.
fn id_key(id: &str) -> &str {
    id.get(..15).unwrap_or(id)
}

impl<'a> BatchWriter<'a> {
    pub fn new(ctx: &'a MappingCtx) -> BatchWriter<'a> {
        BatchWriter {
            ctx,
            builder: RowBuilder::new(ctx.mapping.clone()),
            buf: Vec::new(),
            records: 0,
            applied: Applied::default(),
            cursor_mode: CursorMode::Off,
            covered_to: None,
            batch_max: None,
        }
    }

    pub fn push_row(&mut self, row: Row) {
        self.buf.push(row);
    }

    pub fn full(&self) -> bool {
        self.buf.len() >= self.ctx.batch_rows()
    }

    /// Commits what is buffered with `progress` (and the initial load's cursor).
    pub async fn flush(&mut self, progress: Progress) -> Result<Applied> {
        let rows = std::mem::take(&mut self.buf);
        let progress = match progress {
            Progress::None if self.cursor_mode != CursorMode::Off => Progress::InitialLoad {
                cursor: self.covered_to.clone(),
                done_through: None,
            },
            other => other,
        };
        let applied = self
            .ctx
            .writer
            .send(ApplyRows {
                key: self.ctx.key.clone(),
                epoch: self.ctx.epoch,
                mapping: self.ctx.mapping.clone(),
                rows,
                progress,
            })
            .await??;
        self.applied.deleted += applied.deleted;
        self.applied.changed += applied.changed;
        self.applied.window_id = applied.window_id.or(self.applied.window_id);
        // A load can take hours: a stop takes effect between its commits, and the cursor just
        // committed is where the next start resumes.
        if self.cursor_mode != CursorMode::Off && self.ctx.stopped() {
            return Err(crate::error::NodeError::Stopped("initial load"));
        }
        Ok(applied)
    }

    pub async fn finish(mut self, progress: Progress) -> Result<(Applied, i64, u64)> {
        // A secondary commit counts the drift of every batch of the poll, not just the last.
        let progress = match progress {
            Progress::Secondary(mut c) => {
                c.drift_records = self.applied.deleted + self.applied.changed;
                Progress::Secondary(c)
            }
            other => other,
        };
        let last = self.flush(progress).await?;
        let mut total = self.applied;
        total.window_id = last.window_id;
        Ok((total, self.records, self.builder.bad_values))
    }
}

impl RecordSink for BatchWriter<'_> {
    async fn push(&mut self, record: Record) -> Result<()> {
        let row = self.builder.build(&record);
        match (self.cursor_mode, crate::rows::sfid(&row)) {
            (CursorMode::RowOrder, Some(id)) => self.covered_to = Some(id.to_owned()),
            (CursorMode::BatchEnds, Some(id)) => {
                let larger = match self.batch_max.as_deref() {
                    Some(max) => id_key(id) > id_key(max),
                    None => true,
                };
                if larger {
                    self.batch_max = Some(id.to_owned());
                }
            }
            _ => {}
        }
        self.buf.push(row);
        self.records += 1;
        if self.full() {
            self.flush(Progress::None).await?;
        }
        Ok(())
    }

    fn batch_done(&mut self) {
        if self.cursor_mode == CursorMode::BatchEnds && self.batch_max.is_some() {
            self.covered_to = self.batch_max.clone();
        }
    }
}
