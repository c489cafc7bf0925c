//! What a mapping's poller and its secondary polls share ([`MappingCtx`], with the settings
//! resolved once at launch), and the [`RowBatch`] both read into.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, Utc};
use driftless_core::config::SyncConfig;
use driftless_core::mapping::{MappingConfig, ResolvedMapping};
use driftless_core::state::MappingKey;
use parking_lot::Mutex;
use salesforce::{Client, Record};

use crate::db_writer::{Applied, ApplyRows, DbWriter, Progress};
use crate::error::Result;
use crate::rows::{Row, RowBuilder};
use crate::salesforce_client::RecordSink;
use crate::shutdown::StopSignal;
use crate::status::{Registry, SyncState};
use crate::RunOptions;

/// A mapping's settings as they apply, resolved once at launch from the connection's `sync`, the
/// mapping's own config and the engine's [`RunOptions`]: nothing downstream combines them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingSettings {
    pub poll_interval: std::time::Duration,
    pub max_daily_api_calls: Option<u64>,
    /// Rows per transaction: the connection's `sync.batch_rows` when set, else the engine's.
    pub batch_rows: usize,
    /// The longest window one primary poll reads.
    pub max_window: chrono::Duration,
    /// Never close a window past getUpdated's `latestDateCovered`: the engine option and the
    /// connection's `sync.use_latest_date_covered` together.
    pub stop_at_latest_date_covered: bool,
    pub poll_margin: chrono::Duration,
    pub bulk_threshold: u64,
    pub secondary_delay: chrono::Duration,
    /// The longest a due secondary poll waits for `latestDateCovered` to pass its window's end;
    /// zero when it need not wait (primary windows already stop there) or must not.
    pub secondary_max_hold: chrono::Duration,
}

impl MappingSettings {
    pub fn resolve(sync: &SyncConfig, mapping: &MappingConfig, options: &RunOptions) -> Self {
        let stop_at_latest_date_covered =
            options.honor_latest_date_covered && sync.use_latest_date_covered;
        MappingSettings {
            poll_interval: std::time::Duration::from_secs(
                mapping
                    .sf_polling_seconds
                    .unwrap_or(sync.poll_interval_secs),
            ),
            max_daily_api_calls: mapping.sf_max_daily_api_calls,
            batch_rows: sync
                .batch_rows
                .map_or(options.batch_rows, |n| n as usize)
                .max(1),
            max_window: chrono::Duration::seconds(options.max_window_secs),
            stop_at_latest_date_covered,
            poll_margin: chrono::Duration::seconds(sync.poll_margin_secs as i64),
            bulk_threshold: sync.bulk_threshold,
            secondary_delay: chrono::Duration::seconds(sync.secondary_delay_secs as i64),
            secondary_max_hold: if stop_at_latest_date_covered {
                chrono::Duration::zero()
            } else {
                chrono::Duration::seconds(sync.secondary_max_hold_secs as i64)
            },
        }
    }
}

/// Which mapping a poller runs, as claimed: its key, the owner epoch every commit is fenced
/// with, and the mapping resolved against the table.
pub struct Claimed {
    pub key: MappingKey,
    pub epoch: i64,
    pub mapping: Arc<ResolvedMapping>,
}

pub struct MappingCtx {
    pub key: MappingKey,
    pub epoch: i64,
    pub mapping: Arc<ResolvedMapping>,
    pub settings: MappingSettings,
    /// This mapping's own client: its usage counters are the mapping's API calls.
    pub client: Client,
    /// The connection's DbWriter.
    pub db: Addr<DbWriter>,
    pub registry: Registry,
    /// The mapping's stop switch, shared by its poller and its secondary polls.
    pub stop: StopSignal,
    /// Calls already added to a commit's `api_calls`, so concurrent polls never count one twice.
    accounted_calls: AtomicU64,
    /// (UTC day, calls at its start) for `sf_max_daily_api_calls`.
    day: Mutex<(chrono::NaiveDate, u64)>,
    /// The latest `latestDateCovered` getUpdated answered this mapping: windows ending before it
    /// need not ask again.
    covered: Mutex<Option<DateTime<Utc>>>,
}

impl MappingCtx {
    pub fn new(
        claimed: Claimed,
        settings: MappingSettings,
        client: Client,
        db: Addr<DbWriter>,
        registry: Registry,
        stop: StopSignal,
    ) -> MappingCtx {
        let Claimed {
            key,
            epoch,
            mapping,
        } = claimed;
        let calls = client.usage().calls;
        registry
            .telemetry()
            .watch_api_usage(&key.connection, &key.object, &client);
        MappingCtx {
            key,
            epoch,
            mapping,
            settings,
            client,
            db,
            registry,
            stop,
            accounted_calls: AtomicU64::new(0),
            day: Mutex::new((Utc::now().date_naive(), calls)),
            covered: Mutex::new(None),
        }
    }

    /// The latest `latestDateCovered` seen for this mapping's object, if any.
    pub fn covered_through(&self) -> Option<DateTime<Utc>> {
        *self.covered.lock()
    }

    /// Remembers a `latestDateCovered` getUpdated answered (it never moves back).
    pub fn note_covered(&self, at: DateTime<Utc>) {
        let mut covered = self.covered.lock();
        *covered = Some(covered.map_or(at, |c| c.max(at)));
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
        let max = self.settings.max_daily_api_calls?;
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
        self.stop.is_stopping()
    }

    /// Sleeps `d` unless asked to stop first; true when stopping.
    pub async fn sleep(&self, d: std::time::Duration) -> bool {
        self.stop.sleep(d).await
    }

    pub fn set_status_state(&self, state: SyncState, error: Option<String>) {
        self.registry
            .update(&self.key.connection, &self.key.object, |s| {
                s.state = state;
                if error.is_some() {
                    s.last_error = error;
                    s.last_error_at = Some(Utc::now());
                }
            });
    }

    /// Records Postgres would not take: the batch committed without them; they are in
    /// `_driftless_rejects` and `ctl errors`, and are written again when they change.
    pub fn report_rejects(&self, n: usize, first: &driftless_core::state::rejects::Reject) {
        let line = format!(
            "{n} record(s) quarantined in _driftless_rejects, e.g. {} (field {}): {}",
            first.sfid,
            first.field.as_deref().unwrap_or("unknown"),
            first.error
        );
        tracing::warn!(object = %self.key.object, "{line}");
        self.registry
            .update(&self.key.connection, &self.key.object, |s| {
                s.counters.errors += n as i64;
                s.last_error = Some(line.clone());
                s.last_error_at = Some(Utc::now());
            });
    }

    pub fn secondary_due(&self) -> DateTime<Utc> {
        Utc::now() + self.settings.secondary_delay
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

/// What a finished [`RowBatch`] committed over all its batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub applied: Applied,
    pub records: i64,
    /// Values that did not parse as their column's type and were stored as null.
    pub bad_values: u64,
}

/// Rows read from Salesforce go here; every `batch_rows` they are committed as one transaction.
/// The last batch carries the read's progress (see [`RowBatch::finish`]).
pub struct RowBatch<'a> {
    ctx: &'a MappingCtx,
    builder: RowBuilder,
    buf: Vec<Row>,
    pub records: i64,
    pub applied: Applied,
    /// Initial load: commit a cursor with each batch, and stop between batches when asked to.
    pub cursor_mode: CursorMode,
    /// Initial load into an empty table: COPY straight in, indexes built by the last batch.
    pub fresh: bool,
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

impl<'a> RowBatch<'a> {
    pub fn new(ctx: &'a MappingCtx) -> RowBatch<'a> {
        RowBatch {
            ctx,
            builder: RowBuilder::new(ctx.mapping.clone()),
            buf: Vec::new(),
            records: 0,
            applied: Applied::default(),
            cursor_mode: CursorMode::Off,
            fresh: false,
            covered_to: None,
            batch_max: None,
        }
    }

    pub fn push_row(&mut self, row: Row) {
        self.buf.push(row);
    }

    pub fn full(&self) -> bool {
        self.buf.len() >= self.ctx.settings.batch_rows
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
            .db
            .send(ApplyRows {
                key: self.ctx.key.clone(),
                epoch: self.ctx.epoch,
                mapping: self.ctx.mapping.clone(),
                rows,
                progress,
                fresh: self.fresh,
            })
            .await??;
        self.applied.deleted += applied.deleted;
        self.applied.changed += applied.changed;
        self.applied.window_id = applied.window_id.or(self.applied.window_id);
        if let Some(first) = applied.rejected.first() {
            self.ctx.report_rejects(applied.rejected.len(), first);
            self.applied
                .rejected
                .extend(applied.rejected.iter().cloned());
        }
        // A load can take hours: a stop takes effect between its commits, and the cursor just
        // committed is where the next start resumes.
        if self.cursor_mode != CursorMode::Off && self.ctx.stopped() {
            return Err(crate::error::NodeError::Stopped("initial load"));
        }
        Ok(applied)
    }

    pub async fn finish(mut self, progress: Progress) -> Result<Finished> {
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
        Ok(Finished {
            applied: total,
            records: self.records,
            bad_values: self.builder.bad_values,
        })
    }
}

impl RecordSink for RowBatch<'_> {
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
