//! A mapping's figures on the wire (`MappingStats`) and in the status document (`MappingDoc`):
//! workers report what their registry shows, the coordinator turns it back into SPEC.md §6.

use chrono::{DateTime, SecondsFormat, Utc};
use driftless_node::status::{
    MappingDoc, NotifyDoc, PrimaryDoc, SecondaryDoc, WriteModeDoc, WritePath, WritesDoc,
};
use driftless_proto::cluster::{
    MappingStats, NotifyCounters, PrimaryCounters, SecondaryCounters, WriteCounters,
};

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What a worker reports for one mapping it runs with `owner_epoch`.
pub fn to_wire(doc: &MappingDoc, owner_epoch: i64, last_error: Option<String>) -> MappingStats {
    MappingStats {
        connection: doc.connection.clone(),
        object: doc.object.clone(),
        state: doc.state.clone(),
        rows: u(doc.rows),
        synced_through_ms: doc
            .synced_through
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis()),
        primary: Some(PrimaryCounters {
            polls: u(doc.primary.polls),
            records: u(doc.primary.records),
            bulk_jobs: u(doc.primary.bulk_jobs),
            bulk_batches: u(doc.primary.bulk_batches),
            rest_queries: u(doc.primary.rest_queries),
        }),
        secondary: Some(SecondaryCounters {
            polls: u(doc.secondary.polls),
            records: u(doc.secondary.records),
            drift_records: u(doc.secondary.drift_records),
            bulk_jobs: u(doc.secondary.bulk_jobs),
            bulk_batches: u(doc.secondary.bulk_batches),
            rest_queries: u(doc.secondary.rest_queries),
        }),
        api_calls: u(doc.api_calls),
        db_connections_in_use: u32::try_from(doc.db_connections_in_use).unwrap_or(u32::MAX),
        errors: u(doc.errors),
        last_error,
        owner_epoch,
        writes: Some(WriteCounters {
            pending: u(doc.writes.pending),
            sent: u(doc.writes.sent),
            failed: u(doc.writes.failed),
            merged: u(doc.writes.merged),
            mode: doc.writes.mode.as_str().to_owned(),
            path: doc.writes.path.as_str().to_owned(),
        }),
        notify: Some(NotifyCounters {
            enabled: doc.notify.enabled,
            events: u(doc.notify.events),
            polls_triggered: u(doc.notify.polls_triggered),
            gaps: u(doc.notify.gaps),
            latency_p50_ms: doc.notify.latency_p50_ms,
            latency_p95_ms: doc.notify.latency_p95_ms,
            unavailable: doc.notify.unavailable.clone().unwrap_or_default(),
        }),
        formula_refreshed: u(doc.formula_refreshed),
        formula_notes: doc.formula_notes.clone(),
    }
}

/// The status row of a mapping as its worker last reported it.
pub fn from_wire(s: &MappingStats, worker: &str) -> MappingDoc {
    let p = s.primary.unwrap_or_default();
    let q = s.secondary.unwrap_or_default();
    MappingDoc {
        connection: s.connection.clone(),
        object: s.object.clone(),
        state: s.state.clone(),
        worker: worker.to_owned(),
        rows: i(s.rows),
        synced_through: s
            .synced_through_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        primary: PrimaryDoc {
            polls: i(p.polls),
            records: i(p.records),
            bulk_jobs: i(p.bulk_jobs),
            bulk_batches: i(p.bulk_batches),
            rest_queries: i(p.rest_queries),
        },
        secondary: SecondaryDoc {
            polls: i(q.polls),
            records: i(q.records),
            drift_records: i(q.drift_records),
            bulk_jobs: i(q.bulk_jobs),
            bulk_batches: i(q.bulk_batches),
            rest_queries: i(q.rest_queries),
        },
        api_calls: i(s.api_calls),
        db_connections_in_use: u64::from(s.db_connections_in_use),
        errors: i(s.errors),
        writes: {
            let w = s.writes.clone().unwrap_or_default();
            WritesDoc {
                pending: i(w.pending),
                sent: i(w.sent),
                failed: i(w.failed),
                merged: i(w.merged),
                mode: WriteModeDoc::parse(&w.mode).unwrap_or_default(),
                path: WritePath::parse(&w.path).unwrap_or_default(),
            }
        },
        notify: {
            let n = s.notify.clone().unwrap_or_default();
            NotifyDoc {
                enabled: n.enabled,
                events: i(n.events),
                polls_triggered: i(n.polls_triggered),
                gaps: i(n.gaps),
                latency_p50_ms: n.latency_p50_ms,
                latency_p95_ms: n.latency_p95_ms,
                unavailable: Some(n.unavailable).filter(|u| !u.is_empty()),
            }
        },
        formula_refreshed: i(s.formula_refreshed),
        formula_notes: s.formula_notes.clone(),
    }
}

/// A mapping no worker has reported yet: zeros and the given state.
pub fn placeholder(connection: &str, object: &str, state: &str, worker: &str) -> MappingDoc {
    from_wire(
        &MappingStats {
            connection: connection.to_owned(),
            object: object.to_owned(),
            state: state.to_owned(),
            ..Default::default()
        },
        worker,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_row_survives_the_wire() {
        let mut doc = placeholder("acme", "Account", "DATA_SYNCED", "w1");
        doc.rows = 100_000;
        doc.synced_through = Some("2026-11-24T10:00:00Z".into());
        doc.primary.bulk_batches = 10;
        doc.secondary.drift_records = 17;
        doc.api_calls = 61;
        doc.db_connections_in_use = 2;
        doc.writes.pending = 3;
        doc.writes.failed = 1;
        doc.formula_refreshed = 500;
        doc.formula_notes = vec!["Odd__c: function VLOOKUP is not supported".into()];
        let back = from_wire(&to_wire(&doc, 7, None), "w1");
        assert_eq!(back, doc);
    }
}
