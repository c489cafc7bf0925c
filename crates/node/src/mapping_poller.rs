//! The MappingPoller: one per mapping. Loads the table once, then reads one primary window after
//! another, hands each closed window to the connection's SecondaryPollPool, and retries a failed
//! poll with backoff as the error's kind says, keeping the window until it succeeds.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use driftless_core::ident::QualifiedName;
use driftless_core::state::WindowRecord;

use crate::db_writer::{
    CheckTable, CountRows, PendingWindows, Prune, Pruned, SetState, TruncateForReload,
};
use crate::error::{NodeError, Result, Retry};
use crate::formula_refresh::FormulaRefresher;
use crate::initial_load::{load_all, LoadPlan};
use crate::mapping_ctx::MappingCtx;
use crate::primary_poll::{poll, PollOutcome};
use crate::secondary_pool::SecondaryQueue;
use crate::shutdown::{run_loop, Running, Shutdown, StopSignal, Tick};
use crate::status::SyncState;
use salesforce::Backoff;

/// Window polls asked for before the interval is up: change events that name no record (gap and
/// overflow events) wake the poller, which then polls every [`REQUESTED_POLL_EVERY`] until its
/// windows have passed the latest such event's commit.
#[derive(Default)]
pub struct WindowPollRequest {
    wake: tokio::sync::Notify,
    through: parking_lot::Mutex<Option<DateTime<Utc>>>,
}

impl WindowPollRequest {
    /// Asks for window polls until the windows cover `through`.
    pub fn request(&self, through: DateTime<Utc>) {
        {
            let mut t = self.through.lock();
            *t = Some(t.map_or(through, |old| old.max(through)));
        }
        self.wake.notify_one();
    }

    /// Whether windows that reach `synced_through` still leave a request open.
    fn outstanding(&self, synced_through: Option<DateTime<Utc>>) -> bool {
        let mut t = self.through.lock();
        match (*t, synced_through) {
            (Some(want), Some(have)) if have > want => {
                *t = None;
                false
            }
            (Some(_), _) => true,
            (None, _) => false,
        }
    }
}

/// How soon a requested window poll is tried again while its windows have not reached the
/// event yet (primary windows wait for `latestDateCovered`, which moves in whole minutes).
const REQUESTED_POLL_EVERY: Duration = Duration::from_secs(2);

/// What a MappingPoller keeps between ticks.
pub struct MappingPoller {
    ctx: Arc<MappingCtx>,
    /// Set for `sf_notify_enabled` mappings: the change-event subscription's wake-ups.
    requests: Option<Arc<WindowPollRequest>>,
    secondary: Option<SecondaryQueue>,
    synced_through: Option<DateTime<Utc>>,
    needs_resync: bool,
    persisted_state: SyncState,
    failures: u32,
    /// Shrunk after QUERY_TIMEOUT, grown back after each success.
    max_window: chrono::Duration,
    last_prune: Option<std::time::Instant>,
    load_plan: LoadPlan,
    force_bulk: bool,
    /// Whether the current step reads everything (load or backfill) or one window.
    loading: bool,
    /// What a load shows: INITIAL, or RELOAD_TABLE when `ctl reload` truncated the table.
    load_state: SyncState,
    /// Windows left from an earlier process were handed to the secondary pool (first tick).
    rescheduled: bool,
    /// Keeps formula columns fresh; `None` for a mapping without formula fields.
    formula: Option<FormulaRefresher>,
}

/// Retry delays of a failed poll: 1 s, 2 s, 4 s... (half of each), at least 500 ms.
const POLL_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(256),
    max_attempts: u32::MAX,
};

impl MappingPoller {
    pub fn new(
        ctx: Arc<MappingCtx>,
        secondary: Option<SecondaryQueue>,
        synced_through: Option<DateTime<Utc>>,
        persisted_state: SyncState,
        needs_resync: bool,
    ) -> MappingPoller {
        let max_window = ctx.settings.max_window;
        let load_state = if persisted_state == SyncState::ReloadTable {
            SyncState::ReloadTable
        } else {
            SyncState::Initial
        };
        MappingPoller {
            ctx,
            requests: None,
            secondary,
            synced_through,
            needs_resync,
            persisted_state,
            failures: 0,
            max_window,
            last_prune: None,
            load_plan: LoadPlan::default(),
            force_bulk: false,
            loading: false,
            load_state,
            rescheduled: false,
            formula: None,
        }
    }

    /// Lets change events wake this poller for a window poll before its interval is up.
    pub fn with_requests(mut self, requests: Arc<WindowPollRequest>) -> MappingPoller {
        self.requests = Some(requests);
        self
    }

    pub fn with_formula_refresh(mut self, formula: Option<FormulaRefresher>) -> MappingPoller {
        self.formula = formula;
        self
    }

    /// Runs the poller until `shutdown` (the mapping's switch, which its ctx watches) says stop.
    pub fn spawn(self, shutdown: Shutdown) -> Running {
        let stop = shutdown.signal();
        Running::spawn_with(shutdown, run_loop(self, stop))
    }
}

impl Tick for MappingPoller {
    async fn tick(&mut self, _: &StopSignal) -> Option<Duration> {
        if !self.rescheduled {
            self.rescheduled = true;
            if let Err(e) = self.reschedule_pending().await {
                tracing::warn!(object = self.ctx.object(), error = %e, "could not reschedule pending secondary polls");
            }
        }
        if let Some(wait) = self.ctx.api_budget_wait() {
            tracing::warn!(
                object = self.ctx.object(),
                "sf_max_daily_api_calls reached; waiting for the next day"
            );
            return Some(wait);
        }
        match self.step().await {
            Ok(delay) => {
                self.failures = 0;
                self.force_bulk = false;
                self.max_window = (self.max_window * 2).min(self.ctx.settings.max_window);
                let requested = !self.loading
                    && self
                        .requests
                        .as_ref()
                        .is_some_and(|r| r.outstanding(self.synced_through));
                Some(if requested {
                    delay.min(REQUESTED_POLL_EVERY)
                } else {
                    delay
                })
            }
            Err(e) => self.on_error(e).await,
        }
    }

    async fn woken(&self) {
        match &self.requests {
            Some(r) => r.wake.notified().await,
            None => std::future::pending().await,
        }
    }

    async fn finish(&mut self) {
        tracing::info!(object = self.ctx.object(), "poller stopped");
    }
}

impl MappingPoller {
    /// One unit of work; returns how long to wait before the next.
    async fn step(&mut self) -> Result<Duration> {
        let ctx = self.ctx.clone();
        self.loading = self.synced_through.is_none() || self.needs_resync;
        let Some(synced_through) = self.synced_through else {
            self.persist_state(self.load_state, None).await?;
            ctx.set_status_state(self.load_state, None);
            let out = load_all(&ctx, true, self.load_plan).await?;
            let api_calls = ctx.take_api_calls();
            ctx.registry
                .update(&ctx.key.connection, &ctx.key.object, |s| {
                    s.counters.primary_records += out.records;
                    s.counters.primary_bulk_jobs += out.cost.bulk_jobs;
                    s.counters.primary_bulk_batches += out.cost.bulk_batches;
                    s.counters.primary_rest_queries += out.cost.rest_queries;
                    s.counters.api_calls += api_calls;
                    s.synced_through = Some(driftless_core::window::floor_second(out.done_through));
                });
            tracing::info!(
                object = ctx.object(),
                records = out.records,
                "initial load done"
            );
            self.synced_through = Some(driftless_core::window::floor_second(out.done_through));
            self.needs_resync = false;
            // Records the identity of the table just loaded (the first check does), before the
            // mapping says DATA_SYNCED, so a truncate right after the load is noticed too.
            if let Some(reason) = self.table_lost().await? {
                tracing::warn!(object = ctx.object(), "{reason} during the load");
            }
            self.synced().await?;
            return Ok(Duration::ZERO);
        };
        if self.needs_resync {
            self.persist_state(SyncState::Resync, None).await?;
            ctx.set_status_state(SyncState::Resync, None);
            let out = load_all(&ctx, false, self.load_plan).await?;
            tracing::info!(
                object = ctx.object(),
                records = out.records,
                "new columns backfilled"
            );
            self.needs_resync = false;
            self.synced().await?;
            return Ok(Duration::ZERO);
        }
        if let Some(reason) = self.table_lost().await? {
            // The table is the truth of what is loaded: one that lost rows behind the engine's
            // back is loaded again, visibly, rather than synced on incomplete.
            tracing::warn!(object = ctx.object(), "{reason}: reloading it");
            ctx.db
                .send(TruncateForReload {
                    key: ctx.key.clone(),
                    epoch: ctx.epoch,
                    mapping: ctx.mapping.clone(),
                })
                .await??;
            ctx.registry
                .update(&ctx.key.connection, &ctx.key.object, |s| {
                    s.rows = 0;
                    s.synced_through = None;
                });
            self.synced_through = None;
            self.load_state = SyncState::ReloadTable;
            self.load_plan = LoadPlan::default();
            return Ok(Duration::ZERO);
        }
        match poll(&ctx, synced_through, self.max_window, self.force_bulk).await? {
            PollOutcome::Idle => {
                self.refresh_formulas(synced_through).await?;
                self.synced().await?;
                Ok(self.interval())
            }
            PollOutcome::Committed { window, caught_up } => {
                let end = window.window.end;
                self.synced_through = Some(end);
                self.schedule_secondary(window).await;
                if caught_up {
                    self.refresh_formulas(end).await?;
                }
                self.synced().await?;
                self.prune().await;
                Ok(if caught_up {
                    self.interval()
                } else {
                    Duration::ZERO
                })
            }
        }
    }

    /// Why the mapped table must be loaded again, if it must (`state::table_identity`).
    async fn table_lost(&self) -> Result<Option<String>> {
        let check = self
            .ctx
            .db
            .send(CheckTable {
                key: self.ctx.key.clone(),
                epoch: self.ctx.epoch,
                table: QualifiedName::new(&self.ctx.key.schema, &self.ctx.mapping.table),
            })
            .await??;
        Ok(check.reload_reason())
    }

    /// Once per poll cycle, when the mapping has caught up: the formula refresh.
    async fn refresh_formulas(&mut self, synced_through: DateTime<Utc>) -> Result<()> {
        let Some(refresher) = self.formula.as_mut() else {
            return Ok(());
        };
        let out = refresher.run(&self.ctx, synced_through).await?;
        if out.read > 0 {
            tracing::debug!(
                object = self.ctx.object(),
                read = out.read,
                changed = out.changed,
                "formula fields refreshed"
            );
        }
        Ok(())
    }

    /// Keeps the bookkeeping bounded: once an hour, forgets re-read windows and tombstones older
    /// than a day plus the secondary delay and the longest window (nothing can re-read them).
    async fn prune(&mut self) {
        if self
            .last_prune
            .is_some_and(|t| t.elapsed() < Duration::from_secs(3600))
        {
            return;
        }
        self.last_prune = Some(std::time::Instant::now());
        let keep = chrono::Duration::days(1)
            + self.ctx.settings.secondary_delay
            + self.ctx.settings.max_window;
        let msg = Prune {
            key: self.ctx.key.clone(),
            before: Utc::now() - keep,
        };
        match self.ctx.db.send(msg).await {
            Ok(Ok(Pruned {
                windows,
                tombstones,
            })) if windows + tombstones > 0 => {
                tracing::debug!(
                    object = self.ctx.object(),
                    windows,
                    tombstones,
                    "bookkeeping pruned"
                )
            }
            Ok(Err(e)) => {
                tracing::warn!(object = self.ctx.object(), error = %e, "pruning bookkeeping failed")
            }
            _ => {}
        }
    }

    fn interval(&self) -> Duration {
        self.ctx.settings.poll_interval
    }

    async fn synced(&mut self) -> Result<()> {
        self.persist_state(SyncState::DataSynced, None).await?;
        let rows = self
            .ctx
            .db
            .send(CountRows {
                table: driftless_core::ident::QualifiedName::new(
                    &self.ctx.key.schema,
                    &self.ctx.mapping.table,
                ),
            })
            .await??;
        self.ctx
            .registry
            .update(&self.ctx.key.connection, &self.ctx.key.object, |s| {
                s.rows = rows
            });
        // Shown only once the row count is, so DATA_SYNCED never comes with a stale count.
        self.ctx.set_status_state(SyncState::DataSynced, None);
        Ok(())
    }

    /// Writes the state to the bookkeeping table when it changes (the per-poll POLLING_* states
    /// are shown in status only, to spare a transaction per poll).
    async fn persist_state(&mut self, state: SyncState, error: Option<String>) -> Result<()> {
        if self.persisted_state == state && error.is_none() {
            return Ok(());
        }
        self.ctx
            .db
            .send(SetState {
                key: self.ctx.key.clone(),
                epoch: self.ctx.epoch,
                state,
                error,
            })
            .await??;
        self.persisted_state = state;
        Ok(())
    }

    async fn schedule_secondary(&self, window: WindowRecord) {
        if let Some(queue) = &self.secondary {
            if !queue.schedule(self.ctx.clone(), window).await {
                tracing::warn!(object = self.ctx.object(), "secondary poll pool is gone");
            }
        }
    }

    async fn reschedule_pending(&self) -> Result<()> {
        if self.secondary.is_none() {
            return Ok(());
        }
        let pending = self
            .ctx
            .db
            .send(PendingWindows {
                key: self.ctx.key.clone(),
            })
            .await??;
        for w in pending {
            self.schedule_secondary(w).await;
        }
        Ok(())
    }

    /// Returns the delay before retrying, or `None` to stop polling this mapping.
    async fn on_error(&mut self, e: NodeError) -> Option<Duration> {
        let object = self.ctx.object().to_owned();
        self.failures += 1;
        let backoff = |n: u32| Duration::from_millis(500).max(POLL_BACKOFF.ceiling(n) / 2);
        let delay = match e.retry() {
            Retry::Stop => {
                tracing::error!(object, error = %e, "stopping: mapping fenced or shutting down");
                self.ctx
                    .set_status_state(SyncState::Aborted, Some(e.to_string()));
                return None;
            }
            Retry::Backoff => backoff(self.failures),
            Retry::SplitWindow if self.loading => {
                self.load_plan = self.load_plan.after_timeout();
                Duration::ZERO
            }
            Retry::SplitWindow => {
                // Halve what was actually read, not the configured maximum.
                let read = self
                    .synced_through
                    .map_or(self.max_window, |t| (Utc::now() - t).min(self.max_window));
                if read <= chrono::Duration::seconds(1) {
                    self.force_bulk = true;
                }
                self.max_window = (read / 2).max(chrono::Duration::seconds(1));
                Duration::ZERO
            }
            Retry::WaitForQuota(d) => d,
            Retry::Slow => backoff(self.failures + 4),
        };
        tracing::warn!(object, error = %e, retry_in_ms = delay.as_millis() as u64, "poll failed; window kept");
        self.ctx
            .registry
            .update(&self.ctx.key.connection, &self.ctx.key.object, |s| {
                s.counters.errors += 1;
            });
        self.ctx
            .set_status_state(SyncState::SystemError, Some(e.to_string()));
        // Counts the error in the bookkeeping too; a failure to record it changes nothing.
        let _ = self
            .persist_state(SyncState::SystemError, Some(e.to_string()))
            .await;
        Some(delay)
    }
}
