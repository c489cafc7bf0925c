//! What `ctl` prints: aligned tables for people, JSON documents (SPEC.md §6) for scripts.

use chrono::{DateTime, SecondsFormat, Utc};
use driftless_proto::admin;
use serde_json::{json, Value};

/// Columns are as wide as their widest cell and two spaces apart; every cell is left-aligned,
/// so each column starts at the same offset on every line.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        // An empty cell would leave a hole where the column should start.
        let cells = cells
            .into_iter()
            .map(|c| if c.is_empty() { "-".to_owned() } else { c })
            .collect();
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for line in std::iter::once(&header).chain(&self.rows) {
            let mut text = String::new();
            for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
                if i + 1 == line.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

pub fn rfc3339(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn primary(m: &admin::MappingStatus) -> admin::PrimaryCounters {
    m.primary.unwrap_or_default()
}

fn secondary(m: &admin::MappingStatus) -> admin::SecondaryCounters {
    m.secondary.unwrap_or_default()
}

/// A mapping in the shape of SPEC.md §6's `ctl status --json`.
pub fn mapping_json(m: &admin::MappingStatus) -> Value {
    let p = primary(m);
    let s = secondary(m);
    let w = m.writes.clone().unwrap_or_default();
    let n = m.notify.clone().unwrap_or_default();
    let mut notify = json!({"enabled": n.enabled, "events": n.events,
                            "polls_triggered": n.polls_triggered, "gaps": n.gaps});
    if let Some(ms) = n.latency_p50_ms {
        notify["latency_p50_ms"] = json!(ms);
    }
    if let Some(ms) = n.latency_p95_ms {
        notify["latency_p95_ms"] = json!(ms);
    }
    if !n.unavailable.is_empty() {
        notify["unavailable"] = json!(n.unavailable);
    }
    json!({
        "connection": m.connection,
        "object": m.object,
        "state": m.state,
        "worker": m.worker,
        "rows": m.rows,
        "synced_through": m.synced_through_ms.and_then(rfc3339),
        "primary": {"polls": p.polls, "records": p.records, "bulk_jobs": p.bulk_jobs,
                    "bulk_batches": p.bulk_batches, "rest_queries": p.rest_queries},
        "secondary": {"polls": s.polls, "records": s.records, "drift_records": s.drift_records,
                      "bulk_jobs": s.bulk_jobs, "bulk_batches": s.bulk_batches,
                      "rest_queries": s.rest_queries},
        "api_calls": m.api_calls,
        "db_connections_in_use": m.db_connections_in_use,
        "errors": m.errors,
        "last_error": m.last_error,
        "writes": {"pending": w.pending, "sent": w.sent, "failed": w.failed, "merged": w.merged,
                   "mode": w.mode, "path": w.path},
        "notify": notify,
        "formula_refreshed": m.formula_refreshed,
    })
}

pub fn worker_json(w: &admin::WorkerStatus, full: bool) -> Value {
    let mut v = json!({
        "name": w.name,
        "mappings": w.mappings,
        "last_heartbeat_ms_ago": w.last_heartbeat_ms_ago,
    });
    if full {
        v["version"] = json!(w.version);
        v["capacity"] = json!(w.capacity);
        v["lease_expires_in_ms"] = json!(w.lease_expires_in_ms);
    }
    v
}

pub fn status_json(r: &admin::StatusReply) -> Value {
    json!({
        "workers": r.workers.iter().map(|w| worker_json(w, false)).collect::<Vec<_>>(),
        "mappings": r.mappings.iter().map(mapping_json).collect::<Vec<_>>(),
    })
}

pub fn mappings_table(mappings: &[admin::MappingStatus]) -> String {
    let mut t = Table::new(&[
        "MAPPING",
        "STATE",
        "WORKER",
        "ROWS",
        "SYNCED THROUGH",
        "POLLS",
        "RECORDS",
        "DRIFT",
        "API CALLS",
        "ERRORS",
        "WRITES P/S/F",
    ]);
    for m in mappings {
        let p = primary(m);
        let w = m.writes.clone().unwrap_or_default();
        t.row(vec![
            format!("{}/{}", m.connection, m.object),
            m.state.clone(),
            m.worker.clone().unwrap_or_default(),
            m.rows.to_string(),
            m.synced_through_ms.and_then(rfc3339).unwrap_or_default(),
            p.polls.to_string(),
            p.records.to_string(),
            secondary(m).drift_records.to_string(),
            m.api_calls.to_string(),
            m.errors.to_string(),
            format!("{}/{}/{}", w.pending, w.sent, w.failed),
        ]);
    }
    let mut out = t.render();
    // A mapping in an error state says why, one line each, under the table.
    for m in mappings.iter().filter(|m| m.state.contains("ERROR")) {
        let why = m.last_error.as_deref().unwrap_or("no error recorded");
        out.push_str(&format!(
            "{}/{} {}: {why}\n",
            m.connection, m.object, m.state
        ));
    }
    // So does a mapping whose change events cannot come (it still polls on its interval).
    for m in mappings {
        if let Some(n) = m.notify.as_ref().filter(|n| !n.unavailable.is_empty()) {
            out.push_str(&format!(
                "{}/{} notify: {}\n",
                m.connection, m.object, n.unavailable
            ));
        }
    }
    out
}

pub fn workers_table(workers: &[admin::WorkerStatus]) -> String {
    let mut t = Table::new(&["WORKER", "VERSION", "MAPPINGS", "LAST HEARTBEAT"]);
    for w in workers {
        t.row(vec![
            w.name.clone(),
            w.version.clone(),
            w.mappings.join(","),
            format!("{} ms ago", w.last_heartbeat_ms_ago),
        ]);
    }
    t.render()
}

pub fn detail_json(d: &admin::MappingDetail) -> Value {
    let mut v = d
        .status
        .as_ref()
        .map(mapping_json)
        .unwrap_or_else(|| json!({}));
    v["access"] = json!(d.access);
    v["sf_polling_seconds"] = json!(d.sf_polling_seconds);
    v["fields"] = json!(d.fields);
    v["owner_epoch"] = json!(d.owner_epoch);
    v["last_error"] = json!(d.last_error);
    if let Some(s) = &d.status {
        v["formula_notes"] = json!(s.formula_notes);
    }
    v
}

/// One mapping as `key  value` lines: details are too wide for a row.
pub fn detail_text(d: &admin::MappingDetail) -> String {
    let status = d.status.clone().unwrap_or_default();
    let p = primary(&status);
    let s = secondary(&status);
    let mut t = Table::new(&["FIELD", "VALUE"]);
    let rows: Vec<(&str, String)> = vec![
        (
            "mapping",
            format!("{}/{}", status.connection, status.object),
        ),
        ("state", status.state.clone()),
        ("worker", status.worker.clone().unwrap_or_default()),
        ("access", d.access.clone()),
        ("sf_polling_seconds", d.sf_polling_seconds.to_string()),
        ("owner_epoch", d.owner_epoch.to_string()),
        ("rows", status.rows.to_string()),
        (
            "synced_through",
            status
                .synced_through_ms
                .and_then(rfc3339)
                .unwrap_or_default(),
        ),
        ("primary polls", p.polls.to_string()),
        ("primary records", p.records.to_string()),
        ("secondary polls", s.polls.to_string()),
        ("drift records", s.drift_records.to_string()),
        ("formula refreshed", status.formula_refreshed.to_string()),
        ("api calls", status.api_calls.to_string()),
        ("errors", status.errors.to_string()),
        ("last error", d.last_error.clone().unwrap_or_default()),
        ("fields", d.fields.join(",")),
    ];
    for (k, v) in rows {
        t.row(vec![k.to_owned(), v]);
    }
    // An unsupported formula is not an error: the timer refreshes it, and this line says why.
    for note in &status.formula_notes {
        t.row(vec!["formula note".to_owned(), note.clone()]);
    }
    t.render()
}

pub fn drift_json(r: &admin::DriftReply) -> Value {
    json!({"mappings": r.mappings.iter().map(|d| json!({
        "connection": d.connection, "object": d.object, "drift_records": d.drift_records,
        "secondary_polls": d.secondary_polls, "secondary_records": d.secondary_records,
    })).collect::<Vec<_>>()})
}

pub fn drift_table(r: &admin::DriftReply) -> String {
    let mut t = Table::new(&[
        "MAPPING",
        "DRIFT RECORDS",
        "SECONDARY POLLS",
        "SECONDARY RECORDS",
    ]);
    for d in &r.mappings {
        t.row(vec![
            format!("{}/{}", d.connection, d.object),
            d.drift_records.to_string(),
            d.secondary_polls.to_string(),
            d.secondary_records.to_string(),
        ]);
    }
    t.render()
}

pub fn errors_json(r: &admin::ErrorsReply) -> Value {
    json!({"errors": r.errors.iter().map(|e| json!({
        "connection": e.connection, "object": e.object, "count": e.count,
        "last_error": e.last_error, "at": e.at_ms.and_then(rfc3339),
    })).collect::<Vec<_>>()})
}

pub fn errors_table(r: &admin::ErrorsReply) -> String {
    let mut t = Table::new(&["MAPPING", "COUNT", "AT", "LAST ERROR"]);
    for e in &r.errors {
        t.row(vec![
            format!("{}/{}", e.connection, e.object),
            e.count.to_string(),
            e.at_ms.and_then(rfc3339).unwrap_or_default(),
            e.last_error.clone().unwrap_or_default(),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_start_at_the_same_offset_on_every_line() {
        let mut t = Table::new(&["A", "LONG HEADER", "C"]);
        t.row(vec!["wide cell here".into(), "x".into(), "".into()]);
        t.row(vec!["y".into(), "a much wider cell".into(), "z".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        for col in ["LONG HEADER", "C"] {
            let at = lines[0].find(col).unwrap();
            for line in &lines[1..] {
                assert_eq!(&line[at - 2..at], "  ", "{line:?}");
                assert_ne!(&line[at..at + 1], " ", "{line:?}");
            }
        }
        assert!(lines[1].ends_with('-'), "an empty cell shows as -");
    }

    #[test]
    fn a_mapping_in_error_says_why_in_one_line() {
        let m = |object: &str, state: &str, error: Option<&str>| admin::MappingStatus {
            connection: "acme".into(),
            object: object.into(),
            state: state.into(),
            last_error: error.map(str::to_owned),
            ..Default::default()
        };
        let text = mappings_table(&[
            m("Account", "DATA_SYNCED", Some("an old, recovered error")),
            m(
                "Contact",
                "SYSTEM_ERROR",
                Some("postgres: 42501: permission denied for table contact"),
            ),
        ]);
        let last = text.lines().last().unwrap();
        assert_eq!(
            last,
            "acme/Contact SYSTEM_ERROR: postgres: 42501: permission denied for table contact"
        );
        assert!(!text.contains("an old, recovered error"));
        let json = mapping_json(&m("Contact", "SYSTEM_ERROR", Some("why")));
        assert_eq!(json["last_error"], "why");
    }

    #[test]
    fn synced_through_is_rfc3339_in_whole_seconds() {
        assert_eq!(
            rfc3339(1_795_514_400_000).as_deref(),
            Some("2026-11-24T10:00:00Z")
        );
    }
}
