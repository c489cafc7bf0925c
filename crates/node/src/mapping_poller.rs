//! The MappingPoller: one per mapping. Loads the table once, then reads one primary window after
//! another, hands each closed window to the connection's SecondaryPollPool, and retries a failed
//! poll with backoff as the error's kind says, keeping the window until it succeeds.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use driftless_core::state::WindowRecord;

use crate::db_writer::{CountRows, PendingWindows, Prune, SetState};
use crate::error::{NodeError, Result, Retry};
use crate::initial_load::{load_all, LoadPlan};
use crate::mapping_ctx::MappingCtx;
use crate::primary_poll::{poll, PollOutcome};
use crate::secondary_pool::{Schedule, SecondaryPollPool};
use crate::status::states;

pub struct MappingPoller {
    task: Option<PollerTask>,
    /// True once the actor stopped: pause, reload and import wait for it, so no step of this
    /// poller overlaps the next owner's.
    finished: tokio::sync::watch::Sender<bool>,
}

struct PollerTask {
    ctx: Arc<MappingCtx>,
    secondary: Option<Addr<SecondaryPollPool>>,
    synced_through: Option<DateTime<Utc>>,
    needs_resync: bool,
    persisted_state: String,
    failures: u32,
    /// Shrunk after QUERY_TIMEOUT, grown back after each success.
    max_window: chrono::Duration,
    last_prune: Option<std::time::Instant>,
    load_plan: LoadPlan,
    force_bulk: bool,
    /// Whether the current step reads everything (load or backfill) or one window.
    loading: bool,
    /// What a load shows: INITIAL, or RELOAD_TABLE when `ctl reload` truncated the table.
    load_state: &'static str,
}

impl MappingPoller {
    pub fn new(
        ctx: Arc<MappingCtx>,
        secondary: Option<Addr<SecondaryPollPool>>,
        synced_through: Option<DateTime<Utc>>,
        persisted_state: String,
        needs_resync: bool,
    ) -> MappingPoller {
        let max_window = chrono::Duration::seconds(ctx.options.max_window_secs);
        let load_state = if persisted_state == states::RELOAD_TABLE {
            states::RELOAD_TABLE
        } else {
            states::INITIAL
        };
        MappingPoller {
            finished: tokio::sync::watch::channel(false).0,
            task: Some(PollerTask {
                ctx,
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
            }),
        }
    }

    /// Turns true once the poller has stopped; subscribe before starting the actor.
    pub fn finished(&self) -> tokio::sync::watch::Receiver<bool> {
        self.finished.subscribe()
    }
}

impl Actor for MappingPoller {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(task) = self.task.take() {
            ctx.spawn(task.run().into_actor(self).map(|_, _, ctx| ctx.stop()));
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.finished.send_replace(true);
    }
}

impl PollerTask {
    async fn run(mut self) {
        if let Err(e) = self.reschedule_pending().await {
            tracing::warn!(object = self.ctx.object(), error = %e, "could not reschedule pending secondary polls");
        }
        while !self.ctx.stopped() {
            if let Some(wait) = self.ctx.api_budget_wait() {
                tracing::warn!(
                    object = self.ctx.object(),
                    "sf_max_daily_api_calls reached; waiting for the next day"
                );
                if self.ctx.sleep(wait).await {
                    break;
                }
            }
            let result = self.step().await;
            let delay = match result {
                Ok(delay) => {
                    self.failures = 0;
                    self.force_bulk = false;
                    self.max_window = (self.max_window * 2)
                        .min(chrono::Duration::seconds(self.ctx.options.max_window_secs));
                    delay
                }
                Err(e) => match self.on_error(e).await {
                    Some(delay) => delay,
                    None => break,
                },
            };
            if self.ctx.sleep(delay).await {
                break;
            }
        }
        tracing::info!(object = self.ctx.object(), "poller stopped");
    }

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
            self.synced().await?;
            return Ok(Duration::ZERO);
        };
        if self.needs_resync {
            self.persist_state(states::RESYNC, None).await?;
            ctx.set_status_state(states::RESYNC, None);
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
        match poll(&ctx, synced_through, self.max_window, self.force_bulk).await? {
            PollOutcome::Idle => {
                self.synced().await?;
                Ok(self.interval())
            }
            PollOutcome::Committed { window, caught_up } => {
                self.synced_through = Some(window.window.end);
                self.schedule_secondary(window).await;
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
            + chrono::Duration::seconds(self.ctx.sync.secondary_delay_secs as i64)
            + chrono::Duration::seconds(self.ctx.options.max_window_secs);
        let msg = Prune {
            key: self.ctx.key.clone(),
            before: Utc::now() - keep,
        };
        match self.ctx.writer.send(msg).await {
            Ok(Ok((windows, tombstones))) if windows + tombstones > 0 => {
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
        Duration::from_secs(self.ctx.poll_interval_secs)
    }

    async fn synced(&mut self) -> Result<()> {
        self.persist_state(states::DATA_SYNCED, None).await?;
        let rows = self
            .ctx
            .writer
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
        self.ctx.set_status_state(states::DATA_SYNCED, None);
        Ok(())
    }

    /// Writes the state to the bookkeeping table when it changes (the per-poll POLLING_* states
    /// are shown in status only, to spare a transaction per poll).
    async fn persist_state(&mut self, state: &str, error: Option<String>) -> Result<()> {
        if self.persisted_state == state && error.is_none() {
            return Ok(());
        }
        self.ctx
            .writer
            .send(SetState {
                key: self.ctx.key.clone(),
                epoch: self.ctx.epoch,
                state: state.to_owned(),
                error,
            })
            .await??;
        self.persisted_state = state.to_owned();
        Ok(())
    }

    async fn schedule_secondary(&self, window: WindowRecord) {
        if let Some(pool) = &self.secondary {
            let msg = Schedule {
                ctx: self.ctx.clone(),
                window,
            };
            if pool.send(msg).await.is_err() {
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
            .writer
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
        let backoff = |n: u32| {
            let secs = (1u64 << n.min(8)).min(300);
            Duration::from_millis(500).max(Duration::from_secs(secs) / 2)
        };
        let delay = match e.retry() {
            Retry::Stop => {
                tracing::error!(object, error = %e, "stopping: mapping fenced or shutting down");
                self.ctx
                    .set_status_state(states::ABORTED, Some(e.to_string()));
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
            .set_status_state(states::SYSTEM_ERROR, Some(e.to_string()));
        // Counts the error in the bookkeeping too; a failure to record it changes nothing.
        let _ = self
            .persist_state(states::SYSTEM_ERROR, Some(e.to_string()))
            .await;
        Some(delay)
    }
}
