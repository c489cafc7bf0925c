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
                }
            });
    }

    pub fn secondary_due(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.sync.secondary_delay_secs as i64)
    }
}

/// Rows read from Salesforce go here; every `batch_rows` they are committed as one transaction.
/// The last batch carries the read's progress (see [`BatchWriter::finish`]).
pub struct BatchWriter<'a> {
    ctx: &'a MappingCtx,
    builder: RowBuilder,
    buf: Vec<Row>,
    pub records: i64,
    pub applied: Applied,
    /// Initial load: commit the last sfid with each batch.
    pub track_cursor: bool,
}

impl<'a> BatchWriter<'a> {
    pub fn new(ctx: &'a MappingCtx) -> BatchWriter<'a> {
        BatchWriter {
            ctx,
            builder: RowBuilder::new(ctx.mapping.clone()),
            buf: Vec::new(),
            records: 0,
            applied: Applied::default(),
            track_cursor: false,
        }
    }

    pub fn push_row(&mut self, row: Row) {
        self.buf.push(row);
    }

    pub fn full(&self) -> bool {
        self.buf.len() >= self.ctx.options.batch_rows
    }

    /// Commits what is buffered with `progress` (and the rows' own initial-load cursor).
    pub async fn flush(&mut self, progress: Progress) -> Result<Applied> {
        let rows = std::mem::take(&mut self.buf);
        let progress = match progress {
            Progress::None if self.track_cursor => Progress::InitialLoad {
                cursor: rows
                    .last()
                    .and_then(|r| crate::rows::sfid(r).map(str::to_owned)),
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
        self.buf.push(row);
        self.records += 1;
        if self.full() {
            self.flush(Progress::None).await?;
        }
        Ok(())
    }
}
