//! One primary poll: the next window after `synced_through`, read once, committed with its rows.

use chrono::{Duration, Utc};
use driftless_core::state::{PrimaryCommit, ReadKind, WindowRecord};
use driftless_core::window::{next_window, Window, WindowPolicy};

use crate::db_writer::Progress;
use crate::error::Result;
use crate::initial_load::latest_date_covered;
use crate::mapping_ctx::{Finished, MappingCtx, RowBatch};
use crate::rows::Cell;
use crate::salesforce_client::{self as sf, ReadCost};
use crate::status::SyncState;

pub enum PollOutcome {
    /// Nothing safe to read yet.
    Idle,
    /// A window was committed; `caught_up` is false when more lies behind now (poll again now).
    Committed {
        window: WindowRecord,
        caught_up: bool,
    },
}

/// `force_bulk`: a one-second window whose REST query timed out is read by Bulk instead.
pub async fn poll(
    ctx: &MappingCtx,
    synced_through: chrono::DateTime<Utc>,
    max_len: Duration,
    force_bulk: bool,
) -> Result<PollOutcome> {
    let now = Utc::now();
    let started = std::time::Instant::now();
    let covered = if ctx.settings.stop_at_latest_date_covered {
        Some(latest_date_covered(ctx, now).await?)
    } else {
        None
    };
    let policy = WindowPolicy {
        margin: ctx.settings.poll_margin,
        max_len,
    };
    let Some(window) = next_window(synced_through, now, covered, policy) else {
        return Ok(PollOutcome::Idle);
    };
    let unbounded = next_window(
        synced_through,
        now,
        covered,
        WindowPolicy {
            max_len: Duration::zero(),
            ..policy
        },
    );
    let caught_up = match unbounded {
        Some(w) => w.end == window.end,
        None => true,
    };

    let object = ctx.object().to_owned();
    let count = ctx
        .client
        .count(&format!(
            "SELECT COUNT() FROM {object} WHERE {}",
            window.soql_condition()
        ))
        .await?;
    let bulk = force_bulk || count > ctx.settings.bulk_threshold;
    let mut cost = ReadCost::default();
    let mut batch = RowBatch::new(ctx);
    let batches = if bulk {
        ctx.set_status_state(SyncState::PollingSfBulk, None);
        let per_batch = ctx.settings.bulk_threshold.max(1);
        window.split(count.div_ceil(per_batch).clamp(1, 20) as usize)
    } else {
        ctx.set_status_state(SyncState::PollingSfChanges, None);
        Vec::new()
    };
    sf::read_window(
        &ctx.client,
        &ctx.mapping,
        &window,
        &batches,
        &mut cost,
        &mut batch,
    )
    .await?;
    if ctx.mapping.has_is_deleted {
        add_deleted(ctx, &window, &mut batch).await;
    }

    let records = batch.records;
    let commit = PrimaryCommit {
        window,
        kind: if bulk { ReadKind::Bulk } else { ReadKind::Rest },
        batches: batches.clone(),
        records,
        bulk_jobs: cost.bulk_jobs,
        rest_queries: cost.rest_queries,
        api_calls: ctx.take_api_calls(),
        secondary_due_at: ctx.secondary_due(),
    };
    let Finished {
        applied,
        bad_values: bad,
        ..
    } = batch.finish(Progress::Primary(commit.clone())).await?;
    if bad > 0 {
        tracing::warn!(
            object,
            bad,
            "values that did not parse as their column type were stored as null"
        );
    }
    tracing::debug!(object, start = %window.start, end = %window.end, records, bulk, "primary window committed");
    ctx.registry
        .update(&ctx.key.connection, &ctx.key.object, |s| {
            let c = &mut s.counters;
            c.primary_polls += 1;
            c.primary_records += records;
            c.primary_bulk_jobs += cost.bulk_jobs;
            c.primary_bulk_batches += batches.len() as i64;
            c.primary_rest_queries += cost.rest_queries;
            c.api_calls += commit.api_calls;
            s.synced_through = Some(window.end);
        });
    ctx.registry.telemetry().observe_poll(
        &ctx.key.connection,
        &ctx.key.object,
        crate::metrics::PollKind::Primary,
        started.elapsed(),
    );
    let now = Utc::now();
    Ok(PollOutcome::Committed {
        window: WindowRecord {
            id: applied.window_id.unwrap_or_default(),
            window,
            kind: commit.kind,
            batches,
            primary_records: records,
            primary_done_at: now,
            secondary_due_at: commit.secondary_due_at,
            secondary_done_at: None,
            secondary_records: 0,
            drift_records: 0,
        },
        caught_up,
    })
}

/// getDeleted over the window: deletions whose records already left the recycle bin, which
/// queryAll no longer returns. Best effort: queryAll already carries the others, so a failure
/// here is logged, not fatal.
async fn add_deleted(ctx: &MappingCtx, window: &Window, batch: &mut RowBatch<'_>) {
    // Salesforce truncates these bounds to minutes and wants them more than a minute apart.
    let start = window.start - Duration::minutes(1);
    let end = (window.end + Duration::minutes(1)).min(Utc::now());
    match ctx.client.get_deleted(ctx.object(), start, end).await {
        Ok(deleted) => {
            let width = 3 + ctx.mapping.fields.len();
            for d in deleted.deleted_records {
                let mut row = vec![Cell::Null; width];
                row[0] = Cell::Text(d.id);
                row[1] = Cell::Timestamp(d.deleted_date.naive_utc());
                row[2] = Cell::Bool(true);
                batch.push_row(row);
            }
        }
        Err(e) => {
            tracing::warn!(object = ctx.object(), error = %e, "getDeleted failed; relying on queryAll for deletes")
        }
    }
}
