//! getUpdated / getDeleted: `GET /sobjects/{obj}/updated/` and `/deleted/` (reference 2.7).
//!
//! Both look at committed records by SystemModstamp in a minute-truncated, inclusive window.
//! `latestDateCovered` is the safe high-water mark: never past `end` or now, and never past the
//! start of the oldest open transaction, whose records carry a stamp from before they become
//! visible.
//!
//! `start`/`end` should arrive URL-encoded (`+` as `%2B`). Some clients send a literal `+`,
//! which form decoding turns into a space; a space is therefore read back as `+`.

use super::{object_or_404, Ctx, Reply, Result};
use crate::error::SfError;
use crate::store::{is_deleted, now_secs, record_id, system_modstamp};
use crate::value::{format_rest_datetime, parse_datetime};
use actix_web::http::StatusCode;
use serde_json::json;

const MAX_IDS: usize = 600_000;
const UPDATED_DAYS: i64 = 30;
const DELETED_DAYS: i64 = 15;

fn minute(t: i64) -> i64 {
    t - t.rem_euclid(60)
}

fn replication_error(message: impl Into<String>) -> Reply {
    Reply::bad(SfError::new("INVALID_REPLICATION_DATE", message))
}

/// The window `[start, end]`, both truncated to the minute.
fn window(ctx: &Ctx, max_days: i64, deleted: bool) -> Result<(i64, i64)> {
    let parse = |name: &str| -> Result<i64> {
        let raw = ctx.param(name).ok_or_else(|| {
            Reply::bad(SfError::new(
                "MISSING_ARGUMENT",
                format!("{name} parameter is required"),
            ))
        })?;
        parse_datetime(&raw.trim().replace(' ', "+"))
            .map(minute)
            .ok_or_else(|| replication_error(format!("{name} is not a valid date/time: {raw}")))
    };
    let (start, end) = (parse("start")?, parse("end")?);
    if start >= end {
        return Err(replication_error(if deleted {
            "startDate must chronologically precede endDate by more than one minute"
        } else {
            "startDate must chronologically precede endDate"
        }));
    }
    if start < minute(now_secs()) - max_days * 86_400 {
        return Err(replication_error(format!(
            "startDate cannot be more than {max_days} days ago"
        )));
    }
    Ok((start, end))
}

fn latest_date_covered(ctx: &Ctx, end: i64) -> i64 {
    let mut latest = end.min(minute(now_secs()));
    if let Some(open) = ctx.org().oldest_open_txn_start() {
        latest = latest.min(minute(open));
    }
    latest
}

fn exceeded() -> Reply {
    Reply::bad(SfError::new(
        "EXCEEDED_ID_LIMIT",
        format!("record limit reached. cannot submit more than {MAX_IDS} records into this call"),
    ))
}

pub(super) fn updated(ctx: &Ctx, obj: &str) -> Result {
    let object = object_or_404(ctx, obj)?;
    let (start, end) = window(ctx, UPDATED_DAYS, false)?;
    let latest = latest_date_covered(ctx, end);
    let ids: Vec<String> = ctx.org().read(|t| {
        t[object]
            .iter()
            .filter(|r| !is_deleted(r))
            .filter(|r| (start..=end).contains(&system_modstamp(r)))
            .map(|r| record_id(r).to_string())
            .collect()
    });
    if ids.len() > MAX_IDS {
        return Err(exceeded());
    }
    Ok(Reply::json(
        StatusCode::OK,
        &json!({"ids": ids, "latestDateCovered": format_rest_datetime(latest)}),
    ))
}

pub(super) fn deleted(ctx: &Ctx, obj: &str) -> Result {
    let object = object_or_404(ctx, obj)?;
    let (start, end) = window(ctx, DELETED_DAYS, true)?;
    let latest = latest_date_covered(ctx, end);
    let (records, earliest) = ctx.org().read(|t| {
        let table = &t[object];
        let records: Vec<serde_json::Value> = table
            .iter()
            .filter(|r| is_deleted(r))
            .filter(|r| (start..=end).contains(&system_modstamp(r)))
            .map(|r| json!({"id": record_id(r), "deletedDate": format_rest_datetime(system_modstamp(r))}))
            .collect();
        // Deletes are lost only by emptying the recycle bin; until then everything since the
        // oldest record is available.
        let earliest = table
            .purged_through
            .or_else(|| table.iter().map(system_modstamp).min())
            .unwrap_or_else(now_secs);
        (records, minute(earliest))
    });
    if records.len() > MAX_IDS {
        return Err(exceeded());
    }
    Ok(Reply::json(
        StatusCode::OK,
        &json!({
            "deletedRecords": records,
            "earliestDateAvailable": format_rest_datetime(earliest),
            "latestDateCovered": format_rest_datetime(latest),
        }),
    ))
}
