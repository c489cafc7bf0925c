//! The SecondaryPollPool: one per connection. Re-reads every closed primary window
//! `secondary_delay_secs` after it closed, with at most `secondary_concurrency` polls in flight,
//! and repairs what the primary poll missed (drift).
//!
//! A secondary poll re-reads the window's exact bounds (a Bulk window: one job, one batch per
//! primary batch, same bounds — DESIGN.md invariant 5) and merges what it read; the merge rewrites
//! only rows that are missing, older, or differ, and those are the drift.
//!
//! Why full records and not Id + SystemModstamp first: SystemModstamp has whole-second precision,
//! so two versions of a record written in the same second (one committed before the primary read,
//! one by a long transaction committed after it) carry the same stamp. Comparing stamps cannot see
//! that drift; the end-to-end tests measured 1-3 such records per run left behind by a stamp-only
//! comparison. Comparing values is the only way, and the merge already does it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use driftless_core::state::{ReadKind, SecondaryCommit, WindowRecord};
use salesforce::QueryOperation;
use tokio::sync::Semaphore;

use crate::db_writer::Progress;
use crate::error::{Result, Retry};
use crate::mapping_ctx::{BatchWriter, MappingCtx};
use crate::sf::{self, ReadCost};

pub struct SecondaryPollPool {
    permits: Arc<Semaphore>,
    /// (connection/object, window id) scheduled or running, so a window is never polled twice
    /// at once.
    in_flight: Arc<parking_lot::Mutex<HashSet<(String, i64)>>>,
}

impl SecondaryPollPool {
    pub fn new(concurrency: u32) -> SecondaryPollPool {
        SecondaryPollPool {
            permits: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            in_flight: Default::default(),
        }
    }
}

impl Actor for SecondaryPollPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Schedule {
    pub ctx: Arc<MappingCtx>,
    pub window: WindowRecord,
}

impl Handler<Schedule> for SecondaryPollPool {
    type Result = ();

    fn handle(&mut self, msg: Schedule, _: &mut Self::Context) {
        let key = (
            format!("{}/{}", msg.ctx.key.connection, msg.ctx.key.object),
            msg.window.id,
        );
        if !self.in_flight.lock().insert(key.clone()) {
            return;
        }
        let permits = self.permits.clone();
        let in_flight = self.in_flight.clone();
        actix_rt::spawn(async move {
            run_window(&msg.ctx, &msg.window, &permits).await;
            in_flight.lock().remove(&key);
        });
    }
}

async fn run_window(ctx: &MappingCtx, window: &WindowRecord, permits: &Semaphore) {
    let wait = (window.secondary_due_at - Utc::now())
        .to_std()
        .unwrap_or_default();
    if ctx.sleep(wait).await {
        return;
    }
    let mut failures = 0u32;
    loop {
        let result = {
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            if ctx.stopped() {
                return;
            }
            let _counted = InFlightGuard::new(ctx);
            secondary_poll(ctx, window).await
        };
        let Err(e) = result else { return };
        failures += 1;
        let delay = match e.retry() {
            Retry::Stop => return,
            Retry::WaitForQuota(d) => d,
            _ => Duration::from_secs((1u64 << failures.min(8)).min(300)),
        };
        tracing::warn!(object = ctx.object(), window = window.id, error = %e, "secondary poll failed; retrying");
        ctx.registry
            .update(&ctx.key.connection, &ctx.key.object, |s| {
                s.counters.errors += 1
            });
        if ctx.sleep(delay).await {
            return;
        }
    }
}

/// Counts a poll holding a permit in the process's telemetry for as long as it lives, so the
/// in-flight figure stays right however the poll ends (error, stop, panic unwinding).
struct InFlightGuard<'a>(&'a MappingCtx);

impl<'a> InFlightGuard<'a> {
    fn new(ctx: &'a MappingCtx) -> InFlightGuard<'a> {
        ctx.registry
            .telemetry()
            .secondary_started(&ctx.key.connection);
        InFlightGuard(ctx)
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0
            .registry
            .telemetry()
            .secondary_finished(&self.0.key.connection);
    }
}

async fn secondary_poll(ctx: &MappingCtx, w: &WindowRecord) -> Result<()> {
    let started = std::time::Instant::now();
    let object = ctx.object().to_owned();
    let fields = ctx.mapping.soql_fields();
    let mut cost = ReadCost::default();
    let mut writer = BatchWriter::new(ctx);
    match w.kind {
        ReadKind::Bulk if !w.batches.is_empty() => {
            let soqls = sf::window_soqls(&fields, &object, &w.batches);
            sf::bulk_read(
                &ctx.client,
                &object,
                QueryOperation::QueryAll,
                &soqls,
                None,
                &mut cost,
                &mut writer,
            )
            .await?;
        }
        _ => {
            let soql = sf::select(&fields, &object, Some(&w.window.soql_condition()));
            sf::rest_read(
                &ctx.client,
                &soql,
                QueryOperation::QueryAll,
                &mut cost,
                &mut writer,
            )
            .await?;
        }
    }
    let records = writer.records;
    let commit = SecondaryCommit {
        window_id: w.id,
        records,
        drift_records: 0,
        bulk_jobs: cost.bulk_jobs,
        bulk_batches: cost.bulk_batches,
        rest_queries: cost.rest_queries,
        api_calls: ctx.take_api_calls(),
    };
    let (applied, _, _) = writer.finish(Progress::Secondary(commit.clone())).await?;
    let drift = applied.deleted + applied.changed;
    if drift > 0 {
        tracing::info!(object, window = w.id, start = %w.window.start, end = %w.window.end, drift, "secondary poll repaired drift");
    }
    ctx.registry
        .update(&ctx.key.connection, &ctx.key.object, |s| {
            let c = &mut s.counters;
            c.secondary_polls += 1;
            c.secondary_records += records;
            c.drift_records += drift;
            c.secondary_bulk_jobs += cost.bulk_jobs;
            c.secondary_bulk_batches += cost.bulk_batches;
            c.secondary_rest_queries += cost.rest_queries;
            c.api_calls += commit.api_calls;
        });
    ctx.registry.telemetry().observe_poll(
        &ctx.key.connection,
        &ctx.key.object,
        crate::metrics::PollKind::Secondary,
        started.elapsed(),
    );
    Ok(())
}
