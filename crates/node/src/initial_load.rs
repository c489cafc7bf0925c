//! The initial load (Heroku Connect's INITIAL) and the backfill of newly mapped fields (RESYNC).
//!
//! Count first; above `bulk_threshold` one Bulk job with PK chunking, else one REST query. Rows go
//! to Postgres in bounded batches, each its own transaction with its progress. `queryAll` rather
//! than `query`, so records deleted since an earlier, interrupted load leave the table too.
//!
//! An interrupted load resumes: each batch commits a cursor, an Id up to which every record is
//! in the table (REST reads `ORDER BY Id`; Bulk reads advance it only at the end of a PK chunk,
//! whose rows come unordered). The next attempt reads only `Id > cursor` (Bulk: PK chunks from
//! `startRow`), and keeps the first attempt's high-water mark, so windows re-read every change
//! made to the rows already committed since then.

use chrono::{DateTime, Utc};
use driftless_core::window::floor_second;
use salesforce::{BulkV1Options, QueryOperation};

use crate::db_writer::{BeginLoad, Progress};
use crate::error::Result;
use crate::mapping_ctx::{BatchWriter, CursorMode, MappingCtx};
use crate::sf::{self, ReadCost};

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
    if commit_progress {
        (done_through, cursor) = ctx
            .writer
            .send(BeginLoad {
                key: ctx.key.clone(),
                epoch: ctx.epoch,
                mark: done_through,
            })
            .await??;
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
    let mut writer = BatchWriter::new(ctx);
    let mut cost = ReadCost::default();
    if plan.force_bulk || count > ctx.sync.bulk_threshold {
        let chunk = plan
            .chunk
            .unwrap_or_else(|| (count / 4).clamp(1_000, 100_000) as u32);
        tracing::info!(
            object,
            count,
            chunk,
            resume_after = cursor.as_deref(),
            "initial read via bulk with pk chunking"
        );
        if commit_progress {
            writer.cursor_mode = CursorMode::BatchEnds;
        }
        let options = BulkV1Options {
            pk_chunking: Some(chunk),
            pk_start_row: after.as_ref().and(cursor.clone()),
        };
        sf::bulk_read_with(
            &ctx.client,
            &object,
            QueryOperation::QueryAll,
            &[soql],
            &options,
            &mut cost,
            &mut writer,
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
            writer.cursor_mode = CursorMode::RowOrder;
            format!("{soql} ORDER BY Id")
        } else {
            soql
        };
        sf::rest_read(
            &ctx.client,
            &soql,
            QueryOperation::QueryAll,
            &mut cost,
            &mut writer,
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
    let (_, records, bad) = writer.finish(progress).await?;
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

/// `now - margin`, and not past getUpdated's `latestDateCovered` unless told not to use it.
pub async fn safe_high_water_mark(ctx: &MappingCtx) -> Result<DateTime<Utc>> {
    let now = Utc::now();
    let mut mark = now - chrono::Duration::seconds(ctx.sync.poll_margin_secs as i64);
    if ctx.options.honor_latest_date_covered && ctx.sync.use_latest_date_covered {
        mark = mark.min(latest_date_covered(ctx, now).await?);
    }
    Ok(floor_second(mark))
}

/// getUpdated over the last few minutes, only for its `latestDateCovered` (Salesforce truncates
/// the window to minutes and wants start before end, hence the span).
pub async fn latest_date_covered(ctx: &MappingCtx, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let start = now - chrono::Duration::minutes(2);
    let updated = ctx.client.get_updated(ctx.object(), start, now).await?;
    Ok(updated.latest_date_covered)
}
