//! The engine's status in the admin protocol's shapes.

use driftless_proto::admin;

use driftless_core::state::rejects::RejectEntry;
use driftless_core::writeback::FailedEntry;

use crate::status::{MappingStatus, WritesDoc};

pub fn mapping_status(
    s: &MappingStatus,
    db_connections_in_use: u32,
    writes: &WritesDoc,
) -> admin::MappingStatus {
    let c = &s.counters;
    let n = |v: i64| v.max(0) as u64;
    admin::MappingStatus {
        connection: s.connection.clone(),
        object: s.object.clone(),
        state: s.state.as_str().to_owned(),
        worker: (!s.worker.is_empty()).then(|| s.worker.clone()),
        rows: n(s.rows),
        synced_through_ms: s.synced_through.map(|t| t.timestamp_millis()),
        primary: Some(admin::PrimaryCounters {
            polls: n(c.primary_polls),
            records: n(c.primary_records),
            bulk_jobs: n(c.primary_bulk_jobs),
            bulk_batches: n(c.primary_bulk_batches),
            rest_queries: n(c.primary_rest_queries),
        }),
        secondary: Some(admin::SecondaryCounters {
            polls: n(c.secondary_polls),
            records: n(c.secondary_records),
            drift_records: n(c.drift_records),
            bulk_jobs: n(c.secondary_bulk_jobs),
            bulk_batches: n(c.secondary_bulk_batches),
            rest_queries: n(c.secondary_rest_queries),
        }),
        api_calls: n(c.api_calls),
        db_connections_in_use,
        errors: n(c.errors),
        writes: Some(admin::WriteCounters {
            pending: n(writes.pending),
            sent: n(writes.sent),
            failed: n(writes.failed),
            merged: n(writes.merged),
            mode: writes.mode.as_str().to_owned(),
            path: writes.path.as_str().to_owned(),
        }),
        last_error: s.last_error.as_deref().map(one_line),
        notify: Some(admin::NotifyCounters {
            enabled: s.notify.enabled,
            events: n(s.notify.events),
            polls_triggered: n(s.notify.polls_triggered),
            gaps: n(s.notify.gaps + s.notify.overflows),
            latency_p50_ms: s.notify.latency.quantile(0.5),
            latency_p95_ms: s.notify.latency.quantile(0.95),
            unavailable: s.notify.unavailable.clone().unwrap_or_default(),
        }),
        formula_refreshed: n(c.formula_refreshed),
        formula_notes: s.formula_notes.clone(),
    }
}

/// An error as one line: its first line, whitespace runs folded.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn drift_entry(s: &MappingStatus) -> admin::DriftEntry {
    let c = &s.counters;
    admin::DriftEntry {
        connection: s.connection.clone(),
        object: s.object.clone(),
        drift_records: c.drift_records.max(0) as u64,
        secondary_polls: c.secondary_polls.max(0) as u64,
        secondary_records: c.secondary_records.max(0) as u64,
    }
}

/// `None` for a mapping that never failed.
pub fn error_entry(s: &MappingStatus) -> Option<admin::ErrorEntry> {
    if s.counters.errors <= 0 && s.last_error.is_none() {
        return None;
    }
    Some(admin::ErrorEntry {
        connection: s.connection.clone(),
        object: s.object.clone(),
        count: s.counters.errors.max(0) as u64,
        last_error: s.last_error.clone(),
        at_ms: s.last_error_at.map(|t| t.timestamp_millis()),
    })
}

/// Quarantined records grouped by object (newest first, as given).
pub fn reject_entries(connection: &str, rejects: &[RejectEntry]) -> Vec<admin::ErrorEntry> {
    let mut out: Vec<admin::ErrorEntry> = Vec::new();
    for r in rejects {
        if let Some(e) = out.iter_mut().find(|e| e.object == r.object) {
            e.count += 1;
            continue;
        }
        out.push(admin::ErrorEntry {
            connection: connection.to_owned(),
            object: r.object.clone(),
            count: 1,
            last_error: Some(format!(
                "record {} quarantined in _driftless_rejects{}: {}",
                r.reject.sfid,
                r.reject
                    .field
                    .as_deref()
                    .map(|f| format!(" (field {f})"))
                    .unwrap_or_default(),
                r.reject.error
            )),
            at_ms: Some(r.rejected_at.timestamp_millis()),
        });
    }
    out
}

/// Failed write-backs grouped by table (newest first, as given), named by the mapping's object.
pub fn failed_write_entries(
    connection: &str,
    objects: &[String],
    failed: &[FailedEntry],
) -> Vec<admin::ErrorEntry> {
    let mut out: Vec<admin::ErrorEntry> = Vec::new();
    for f in failed {
        let object = objects
            .iter()
            .find(|o| o.eq_ignore_ascii_case(&f.table_name))
            .cloned()
            .unwrap_or_else(|| f.table_name.clone());
        if let Some(e) = out.iter_mut().find(|e| e.object == object) {
            e.count += 1;
            continue;
        }
        let record = match (&f.sfid, f.record_id) {
            (Some(sfid), _) => format!("record {sfid}"),
            (None, Some(id)) => format!("row id {id}"),
            (None, None) => "a record".to_owned(),
        };
        out.push(admin::ErrorEntry {
            connection: connection.to_owned(),
            object,
            count: 1,
            last_error: Some(format!(
                "write-back {} of {record} failed: {}",
                f.action.as_deref().unwrap_or("write"),
                f.message.as_deref().unwrap_or("no message from Salesforce")
            )),
            at_ms: f
                .processed_at
                .or(f.created_at)
                .map(|t| t.timestamp_millis()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(table: &str, sfid: Option<&str>, message: &str, secs: i64) -> FailedEntry {
        FailedEntry {
            id: 1,
            table_name: table.into(),
            record_id: Some(7),
            sfid: sfid.map(str::to_owned),
            action: Some("UPDATE".into()),
            message: Some(message.into()),
            created_at: None,
            processed_at: chrono::DateTime::from_timestamp(secs, 0),
            archived: false,
        }
    }

    #[test]
    fn failed_writes_group_per_table_with_the_newest_message() {
        let objects = vec!["Account".to_owned(), "Contact".to_owned()];
        let entries = failed_write_entries(
            "acme",
            &objects,
            &[
                failed("account", Some("001A"), "newest", 20),
                failed("contact", None, "only", 15),
                failed("account", Some("001B"), "older", 10),
            ],
        );
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].object, "Account");
        assert_eq!(entries[0].count, 2);
        assert_eq!(
            entries[0].last_error.as_deref(),
            Some("write-back UPDATE of record 001A failed: newest")
        );
        assert_eq!(entries[0].at_ms, Some(20_000));
        assert_eq!(entries[1].object, "Contact");
        assert!(entries[1]
            .last_error
            .as_deref()
            .unwrap()
            .contains("row id 7"));
    }
}
