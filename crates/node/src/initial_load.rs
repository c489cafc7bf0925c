//! The initial load (Heroku Connect's INITIAL) and the backfill of newly mapped fields (RESYNC).
//!
//! Count first; above `bulk_threshold` one Bulk job with PK chunking, else one REST query. Rows go
//! to Postgres in bounded batches, each its own transaction with its progress. `queryAll` rather
//! than `query`, so records deleted since an earlier, interrupted load leave the table too.
//!
//! When the table is empty (new, or truncated by a reload) the load takes the fresh-table path
//! (`db_writer::fresh`): rows go by COPY straight into the table and its indexes are built once,
//! at the end; a Bulk load then copies its PK chunks in parallel (`parallel_load`).
//!
//! An interrupted load resumes: each batch commits a cursor, an Id up to which every record is
//! in the table (REST reads `ORDER BY Id`; Bulk reads advance it only at the end of a PK chunk,
//! whose rows come unordered). The next attempt reads only `Id > cursor` (Bulk: PK chunks from
//! `startRow`), and keeps the first attempt's high-water mark, so windows re-read every change
//! made to the rows already committed since then.

use chrono::{DateTime, Utc};
use driftless_core::window::floor_second;
use salesforce::{BulkV1Options, QueryOperation};

use crate::db_writer::{BeginLoad, FinishFreshLoad, Progress};
use crate::error::Result;
use crate::mapping_ctx::{CursorMode, Finished, MappingCtx, RowBatch};
use crate::parallel_load::load_chunked;
use crate::salesforce_client::{self as sf, ReadCost};

/// How to read everything, adjusted after QUERY_TIMEOUT: a REST query that times out is redone
/// as Bulk with PK chunking, and a chunk that times out is redone with chunks half as big.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadPlan {
    pub force_bulk: bool,
    pub chunk: Option<u32>,
}

impl LoadPlan {
    pub fn after_timeout(self) -> LoadPlan {
        if !self.force_bulk {
            return LoadPlan {
                force_bulk: true,
                chunk: self.chunk,
            };
        }
        LoadPlan {
            force_bulk: true,
            chunk: Some((self.chunk.unwrap_or(100_000) / 2).max(1)),
        }
    }
}

pub struct LoadOutcome {
    pub records: i64,
    pub done_through: DateTime<Utc>,
    pub cost: ReadCost,
}

/// Reads every record. With `progress` the last batch commits `done_through` (initial load);
/// without it the rows are only merged (RESYNC: the windows' progress is untouched).
pub async fn load_all(
    ctx: &MappingCtx,
    commit_progress: bool,
    plan: LoadPlan,
) -> Result<LoadOutcome> {
    // Every record stamped before this is visible now, so windows can start there. Taken before
    // the read: later changes are the windows' business.
    let mut done_through = safe_high_water_mark(ctx).await?;
    let mut cursor = None;
    let (mut fresh, mut sessions) = (false, 1);
    if commit_progress {
        let start = ctx
            .db
            .send(BeginLoad {
                key: ctx.key.clone(),
                epoch: ctx.epoch,
                mark: done_through,
                mapping: ctx.mapping.clone(),
            })
            .await??;
        (done_through, cursor) = (start.mark, start.cursor);
        (fresh, sessions) = (start.fresh, start.sessions);
    }
    let object = ctx.object().to_owned();
    let fields = ctx.mapping.soql_fields();
    // Ids are validated by their shape before they reach SOQL.
    let after = cursor
        .as_deref()
        .filter(|c| c.len() >= 15 && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
        .map(|c| format!("Id > '{c}'"));
    let count_soql = match &after {
        Some(cond) => format!("SELECT COUNT() FROM {object} WHERE {cond}"),
        None => format!("SELECT COUNT() FROM {object}"),
    };
    // A count too big to finish in time says Bulk anyway.
    let count = match ctx.client.count(&count_soql).await {
        Err(e) if e.kind() == salesforce::ErrorKind::QueryTimeout => u64::MAX,
        other => other?,
    };
    let soql = sf::select(&fields, &object, after.as_deref());
    let mut batch = RowBatch::new(ctx);
    batch.fresh = fresh;
    let mut cost = ReadCost::default();
    if plan.force_bulk || count > ctx.settings.bulk_threshold {
        // A fresh load copies `sessions` chunks at once: four chunks per session keep every
        // session busy to the end (chunks commit in order, so the last ones run with fewer).
        let chunks = if fresh { 4 * sessions as u64 } else { 4 };
        let chunk = plan
            .chunk
            .unwrap_or_else(|| (count / chunks).clamp(1_000, 100_000) as u32);
        tracing::info!(
            object,
            count,
            chunk,
            resume_after = cursor.as_deref(),
            "initial read via bulk with pk chunking"
        );
        if commit_progress {
            batch.cursor_mode = CursorMode::BatchEnds;
        }
        let options = BulkV1Options {
            pk_chunking: Some(chunk),
            pk_start_row: after.as_ref().and(cursor.clone()),
        };
        if fresh {
            return fresh_bulk_load(ctx, &soql, &options, sessions, done_through, cost).await;
        }
        sf::bulk_read_with(
            &ctx.client,
            &object,
            QueryOperation::QueryAll,
            &[soql],
            &options,
            &mut cost,
            &mut batch,
        )
        .await?;
    } else {
        tracing::info!(
            object,
            count,
            resume_after = cursor.as_deref(),
            "initial read via rest query"
        );
        let soql = if commit_progress {
            batch.cursor_mode = CursorMode::RowOrder;
            format!("{soql} ORDER BY Id")
        } else {
            soql
        };
        sf::rest_read(
            &ctx.client,
            &soql,
            QueryOperation::QueryAll,
            &mut cost,
            &mut batch,
        )
        .await?;
    }
    let progress = if commit_progress {
        Progress::InitialLoad {
            cursor: None,
            done_through: Some(done_through),
        }
    } else {
        Progress::None
    };
    let Finished {
        records,
        bad_values: bad,
        ..
    } = batch.finish(progress).await?;
    if bad > 0 {
        tracing::warn!(
            object,
            bad,
            "values that did not parse as their column type were stored as null"
        );
    }
    Ok(LoadOutcome {
        records,
        done_through,
        cost,
    })
}

/// The fresh-table path of a Bulk load: the chunks in parallel, then the indexes, which also mark
/// the load done.
async fn fresh_bulk_load(
    ctx: &MappingCtx,
    soql: &str,
    options: &BulkV1Options,
    sessions: usize,
    done_through: DateTime<Utc>,
    mut cost: ReadCost,
) -> Result<LoadOutcome> {
    let loaded = load_chunked(ctx, soql, options, sessions, &mut cost).await?;
    let built = ctx
        .db
        .send(FinishFreshLoad {
            key: ctx.key.clone(),
            epoch: ctx.epoch,
            mapping: ctx.mapping.clone(),
            done_through,
        })
        .await??;
    if built.duplicates_removed > 0 {
        tracing::info!(
            object = ctx.object(),
            duplicates = built.duplicates_removed,
            "records read twice (moved between chunks) kept once, the newest version"
        );
    }
    if loaded.bad_values > 0 {
        tracing::warn!(
            object = ctx.object(),
            bad = loaded.bad_values,
            "values that did not parse as their column type were stored as null"
        );
    }
    Ok(LoadOutcome {
        records: loaded.records,
        done_through,
        cost,
    })
}

/// `now - margin`, and not past getUpdated's `latestDateCovered` unless told not to use it at all.
pub async fn safe_high_water_mark(ctx: &MappingCtx) -> Result<DateTime<Utc>> {
    let now = Utc::now();
    let mut mark = now - ctx.settings.poll_margin;
    // Also with low-latency windows: no secondary poll re-reads what the load covered, so a
    // transaction open over the mark must fall into the first window, which one does.
    if ctx.settings.stop_at_latest_date_covered || !ctx.settings.secondary_max_hold.is_zero() {
        mark = mark.min(latest_date_covered(ctx, now).await?);
    }
    Ok(floor_second(mark))
}

/// getUpdated over the last few minutes, only for its `latestDateCovered` (Salesforce truncates
/// the window to minutes and wants start before end, hence the span).
pub async fn latest_date_covered(ctx: &MappingCtx, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let start = now - chrono::Duration::minutes(2);
    let updated = ctx.client.get_updated(ctx.object(), start, now).await?;
    ctx.note_covered(updated.latest_date_covered);
    Ok(updated.latest_date_covered)
}
