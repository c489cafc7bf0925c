//! Prometheus metrics (`GET /metrics`), and the figures the status document does not carry that
//! metrics and the dashboard need: poll durations, pool sizes, the org's API usage and the drift
//! history. The actors feed [`Telemetry`] through the [`crate::status::Registry`] they already
//! hold, so no new handle travels through the engine.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use parking_lot::Mutex;

use crate::dashboard::DriftHistory;
use crate::status::{MappingDoc, StatusDoc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PollKind {
    Primary,
    Secondary,
}

impl PollKind {
    pub fn label(self) -> &'static str {
        match self {
            PollKind::Primary => "primary",
            PollKind::Secondary => "secondary",
        }
    }
}

/// Upper bounds (seconds) of the poll duration buckets: a REST poll takes well under a second, a
/// Bulk window seconds to minutes.
pub const BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// A Prometheus histogram: cumulative counts are computed when rendering.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is +Inf.
    pub counts: [u64; BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, secs: f64) {
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[slot] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

/// The org's daily API usage as Salesforce last reported it (`Sforce-Limit-Info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    pub used: u64,
    pub max: u64,
}

type MappingId = (String, String);

/// Secondary polls of one connection holding a permit of its pool: now, and the high-water mark
/// that shows `secondary_concurrency` held over a whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InFlight {
    pub now: u32,
    pub peak: u32,
}

/// Secondary polls of one mapping that found `latestDateCovered` short of their window's end:
/// the times they were held back, and the holds that ran out (the poll ran anyway).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondaryHolds {
    pub held: u64,
    pub expired: u64,
}

#[derive(Default)]
struct Inner {
    polls: BTreeMap<(String, String, PollKind), Histogram>,
    notify_latency: BTreeMap<MappingId, Histogram>,
    secondary_holds: BTreeMap<MappingId, SecondaryHolds>,
    pool_sizes: BTreeMap<String, u32>,
    secondary_in_flight: BTreeMap<String, InFlight>,
    clients: BTreeMap<MappingId, salesforce::Client>,
    drift: DriftHistory,
}

/// EngineState by every actor of a process, through the registry; cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry {
    inner: Arc<Mutex<Inner>>,
}

/// What the renderers read, taken at once.
#[derive(Debug, Clone, Default)]
pub struct TelemetrySnapshot {
    pub polls: BTreeMap<(String, String, PollKind), Histogram>,
    /// Change events' commitTimestamp to the commit in Postgres of the records they named.
    pub notify_latency: BTreeMap<(String, String), Histogram>,
    pub secondary_holds: BTreeMap<(String, String), SecondaryHolds>,
    pub pool_sizes: BTreeMap<String, u32>,
    /// Secondary polls reading or writing now, and the most at once since start, per connection.
    pub secondary_in_flight: BTreeMap<String, InFlight>,
    pub api_usage: BTreeMap<String, ApiUsage>,
    pub drift: DriftHistory,
}

impl Telemetry {
    pub fn observe_poll(&self, connection: &str, object: &str, kind: PollKind, took: Duration) {
        self.inner
            .lock()
            .polls
            .entry((connection.to_owned(), object.to_owned(), kind))
            .or_default()
            .observe(took.as_secs_f64());
    }

    pub fn observe_notify_latency(&self, connection: &str, object: &str, secs: f64) {
        self.inner
            .lock()
            .notify_latency
            .entry((connection.to_owned(), object.to_owned()))
            .or_default()
            .observe(secs);
    }

    /// A due secondary poll was held back for `latestDateCovered` (`expired`: for too long, and
    /// it runs anyway).
    pub fn secondary_held(&self, connection: &str, object: &str, expired: bool) {
        let mut inner = self.inner.lock();
        let h = inner
            .secondary_holds
            .entry((connection.to_owned(), object.to_owned()))
            .or_default();
        if expired {
            h.expired += 1;
        } else {
            h.held += 1;
        }
    }

    pub fn set_db_pool_size(&self, connection: &str, size: u32) {
        self.inner
            .lock()
            .pool_sizes
            .insert(connection.to_owned(), size);
    }

    /// A secondary poll of `connection` took a permit; [`Telemetry::secondary_finished`] undoes it.
    pub fn secondary_started(&self, connection: &str) {
        let mut inner = self.inner.lock();
        let f = inner
            .secondary_in_flight
            .entry(connection.to_owned())
            .or_default();
        f.now += 1;
        f.peak = f.peak.max(f.now);
    }

    pub fn secondary_finished(&self, connection: &str) {
        if let Some(f) = self.inner.lock().secondary_in_flight.get_mut(connection) {
            f.now = f.now.saturating_sub(1);
        }
    }

    /// Remembers a mapping's client: its usage counters carry the org's `Sforce-Limit-Info`.
    /// A restarted mapping replaces its old client.
    pub fn watch_api_usage(&self, connection: &str, object: &str, client: &salesforce::Client) {
        self.inner
            .lock()
            .clients
            .insert((connection.to_owned(), object.to_owned()), client.clone());
    }

    /// Records the process's total drift; called whenever a mapping's counters change.
    pub fn sample_drift(&self, total: i64) {
        self.inner.lock().drift.record(chrono::Utc::now(), total);
    }

    pub fn snapshot(&self) -> TelemetrySnapshot {
        let inner = self.inner.lock();
        let mut api_usage: BTreeMap<String, ApiUsage> = BTreeMap::new();
        for ((connection, _), client) in &inner.clients {
            let Some(u) = client.usage().api_usage else {
                continue;
            };
            // Every client of a connection sees the same org-wide figure; the highest is the
            // most recent one.
            let e = api_usage.entry(connection.clone()).or_insert(ApiUsage {
                used: u.used,
                max: u.max,
            });
            if u.used > e.used {
                *e = ApiUsage {
                    used: u.used,
                    max: u.max,
                };
            }
        }
        TelemetrySnapshot {
            polls: inner.polls.clone(),
            notify_latency: inner.notify_latency.clone(),
            secondary_holds: inner.secondary_holds.clone(),
            pool_sizes: inner.pool_sizes.clone(),
            secondary_in_flight: inner.secondary_in_flight.clone(),
            api_usage,
            drift: inner.drift.clone(),
        }
    }
}

/// A metric family: written with its HELP and TYPE once, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Label values escape backslash, double quote and newline (exposition format 0.0.4).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

type PerMapping = (
    &'static str,
    &'static str,
    &'static str,
    fn(&MappingDoc) -> i64,
);
type PerKind = (
    &'static str,
    &'static str,
    fn(&MappingDoc) -> i64,
    fn(&MappingDoc) -> i64,
);

/// The mapping figures alone, for callers without telemetry (a cluster coordinator).
pub fn metrics_text(docs: &[MappingDoc]) -> String {
    let doc = StatusDoc {
        workers: Vec::new(),
        mappings: docs.to_vec(),
    };
    render(&doc, &TelemetrySnapshot::default())
}

/// The whole exposition: per mapping (`connection`, `object`), per poll kind (`kind`), per
/// connection and per worker.
pub fn render(doc: &StatusDoc, t: &TelemetrySnapshot) -> String {
    let mut out = String::new();
    let per_mapping: [PerMapping; 5] = [
        (
            "driftless_mapping_rows",
            "gauge",
            "rows in the mapped table",
            |d| d.rows,
        ),
        (
            "driftless_drift_records_total",
            "counter",
            "records secondary polls or verify --repair found missing or stale",
            |d| d.secondary.drift_records,
        ),
        (
            "driftless_formula_refreshed_total",
            "counter",
            "rows whose formula columns a formula refresh changed",
            |d| d.formula_refreshed,
        ),
        (
            "driftless_api_calls_total",
            "counter",
            "Salesforce API calls",
            |d| d.api_calls,
        ),
        ("driftless_errors_total", "counter", "failed polls", |d| {
            d.errors
        }),
    ];
    for (name, kind, help, get) in per_mapping {
        let mut f = Family::new(&mut out, name, kind, help);
        for d in &doc.mappings {
            f.sample(name, &mapping_labels(d), get(d));
        }
    }
    let per_kind: [PerKind; 5] = [
        (
            "driftless_records_synced_total",
            "records read and merged, by poll kind (primary includes the initial load)",
            |d| d.primary.records,
            |d| d.secondary.records,
        ),
        (
            "driftless_polls_total",
            "polls committed, by poll kind",
            |d| d.primary.polls,
            |d| d.secondary.polls,
        ),
        (
            "driftless_bulk_jobs_total",
            "Bulk API jobs, by poll kind",
            |d| d.primary.bulk_jobs,
            |d| d.secondary.bulk_jobs,
        ),
        (
            "driftless_bulk_batches_total",
            "Bulk API batches, by poll kind",
            |d| d.primary.bulk_batches,
            |d| d.secondary.bulk_batches,
        ),
        (
            "driftless_rest_queries_total",
            "REST queries, by poll kind",
            |d| d.primary.rest_queries,
            |d| d.secondary.rest_queries,
        ),
    ];
    for (name, help, primary, secondary) in per_kind {
        let mut f = Family::new(&mut out, name, "counter", help);
        for d in &doc.mappings {
            for (kind, v) in [("primary", primary(d)), ("secondary", secondary(d))] {
                let mut labels = mapping_labels(d).to_vec();
                labels.push(("kind", kind));
                f.sample(name, &labels, v);
            }
        }
    }
    let name = "driftless_writeback_records";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "trigger-log entries of a read_write mapping, by outcome (pending, sent, failed, merged)",
    );
    for d in &doc.mappings {
        let w = &d.writes;
        for (outcome, v) in [
            ("pending", w.pending),
            ("sent", w.sent),
            ("failed", w.failed),
            ("merged", w.merged),
        ] {
            let mut labels = mapping_labels(d).to_vec();
            labels.push(("outcome", outcome));
            f.sample(name, &labels, v);
        }
    }
    let name = "driftless_writeback_info";
    let mut f = Family::new(
        &mut out,
        name,
        "gauge",
        "write-back of a read_write mapping: its write mode and the path its last batch took",
    );
    for d in &doc.mappings {
        let w = &d.writes;
        let mut labels = mapping_labels(d).to_vec();
        labels.push(("mode", w.mode.as_str()));
        labels.push(("path", w.path.as_str()));
        f.sample(name, &labels, 1);
    }
    render_states(&mut out, doc);
    render_durations(&mut out, t);
    render_notify(&mut out, doc, t);
    render_connections(&mut out, doc, t);
    render_workers(&mut out, doc);
    out
}

fn mapping_labels(d: &MappingDoc) -> [(&'static str, &str); 2] {
    [("connection", &d.connection), ("object", &d.object)]
}

fn render_states(out: &mut String, doc: &StatusDoc) {
    let name = "driftless_mapping_state";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "1 for the mapping's current state (Heroku Connect's names)",
    );
    for d in &doc.mappings {
        f.sample(
            name,
            &[
                ("connection", &d.connection),
                ("object", &d.object),
                ("state", &d.state),
            ],
            1,
        );
    }
    let name = "driftless_mapping_synced_through_seconds";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "end of the last committed primary window, in Unix seconds",
    );
    for d in &doc.mappings {
        if let Some(t) = d
            .synced_through
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            f.sample(name, &mapping_labels(d), t.timestamp());
        }
    }
}

fn render_durations(out: &mut String, t: &TelemetrySnapshot) {
    let name = "driftless_poll_duration_seconds";
    let mut f = Family::new(
        out,
        name,
        "histogram",
        "time from a poll's first request to its commit, by poll kind",
    );
    for ((connection, object, kind), h) in &t.polls {
        let base = [
            ("connection", connection.as_str()),
            ("object", object.as_str()),
            ("kind", kind.label()),
        ];
        let mut cumulative = 0;
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count;
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            let mut labels = base.to_vec();
            labels.push(("le", &le));
            f.sample(&format!("{name}_bucket"), &labels, cumulative);
        }
        f.sample(&format!("{name}_sum"), &base, h.sum);
        f.sample(&format!("{name}_count"), &base, h.count);
    }
}

/// (metric name, help, value) of one change-event counter.
type NotifyCounter = (&'static str, &'static str, fn(&MappingDoc) -> i64);

fn render_notify(out: &mut String, doc: &StatusDoc, t: &TelemetrySnapshot) {
    let counters: [NotifyCounter; 3] = [
        (
            "driftless_notify_events_total",
            "change events received for the mapping's object",
            |d| d.notify.events,
        ),
        (
            "driftless_notify_polls_triggered_total",
            "reads change events caused: record fetches and early window polls",
            |d| d.notify.polls_triggered,
        ),
        (
            "driftless_notify_gaps_total",
            "gap and overflow change events (a window poll reads what they name)",
            |d| d.notify.gaps,
        ),
    ];
    for (name, help, get) in counters {
        let mut f = Family::new(out, name, "counter", help);
        for d in doc
            .mappings
            .iter()
            .filter(|d| d.notify.enabled || d.notify.events > 0)
        {
            f.sample(name, &mapping_labels(d), get(d));
        }
    }
    let name = "driftless_notify_commit_latency_seconds";
    let mut f = Family::new(
        out,
        name,
        "histogram",
        "from a change event's commitTimestamp to the Postgres commit of the records it named",
    );
    for ((connection, object), h) in &t.notify_latency {
        let base = [
            ("connection", connection.as_str()),
            ("object", object.as_str()),
        ];
        let mut cumulative = 0;
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count;
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            let mut labels = base.to_vec();
            labels.push(("le", &le));
            f.sample(&format!("{name}_bucket"), &labels, cumulative);
        }
        f.sample(&format!("{name}_sum"), &base, h.sum);
        f.sample(&format!("{name}_count"), &base, h.count);
    }
}

fn render_connections(out: &mut String, doc: &StatusDoc, t: &TelemetrySnapshot) {
    // Every mapping of a connection reports the same pool figure: one sample per connection.
    let mut in_use: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &doc.mappings {
        in_use.insert(&d.connection, d.db_connections_in_use);
    }
    let name = "driftless_db_connections_in_use";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "connections of the connection's pool in use",
    );
    for (c, n) in &in_use {
        f.sample(name, &[("connection", c)], n);
    }
    let name = "driftless_db_pool_size";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "the most connections driftless holds to the connection's database",
    );
    for (c, n) in &t.pool_sizes {
        f.sample(name, &[("connection", c)], n);
    }
    let name = "driftless_secondary_polls_in_flight";
    let mut f = Family::new(out, name, "gauge", "secondary polls running now");
    for (c, n) in &t.secondary_in_flight {
        f.sample(name, &[("connection", c)], n.now);
    }
    let name = "driftless_secondary_polls_in_flight_max";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "the most secondary polls that ran at once since start (at most secondary_concurrency)",
    );
    for (c, n) in &t.secondary_in_flight {
        f.sample(name, &[("connection", c)], n.peak);
    }
    type Hold = (&'static str, &'static str, fn(&SecondaryHolds) -> u64);
    let holds: [Hold; 2] = [
        (
            "driftless_secondary_held_total",
            "times a due secondary poll waited for latestDateCovered to reach its window's end",
            |h| h.held,
        ),
        (
            "driftless_secondary_hold_expired_total",
            "secondary polls that ran after waiting secondary_max_hold_secs for latestDateCovered",
            |h| h.expired,
        ),
    ];
    for (name, help, value) in holds {
        let mut f = Family::new(out, name, "counter", help);
        for ((c, o), h) in &t.secondary_holds {
            f.sample(name, &[("connection", c), ("object", o)], value(h));
        }
    }
    let name = "driftless_api_usage";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "the org's API requests today, as Salesforce last reported them",
    );
    for (c, u) in &t.api_usage {
        f.sample(name, &[("connection", c)], u.used);
    }
    let name = "driftless_api_limit";
    let mut f = Family::new(out, name, "gauge", "the org's daily API request allowance");
    for (c, u) in &t.api_usage {
        f.sample(name, &[("connection", c)], u.max);
    }
}

fn render_workers(out: &mut String, doc: &StatusDoc) {
    let name = "driftless_worker_mappings";
    let mut f = Family::new(out, name, "gauge", "mappings assigned to the worker");
    for w in &doc.workers {
        f.sample(name, &[("worker", &w.name)], w.mappings.len());
    }
    let name = "driftless_mapping_assigned";
    let mut f = Family::new(
        out,
        name,
        "gauge",
        "1 for the worker a mapping is assigned to",
    );
    for d in &doc.mappings {
        f.sample(
            name,
            &[
                ("connection", &d.connection),
                ("object", &d.object),
                ("worker", &d.worker),
            ],
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{PrimaryDoc, SecondaryDoc, WorkerDoc, WritesDoc};

    fn doc() -> StatusDoc {
        StatusDoc {
            workers: vec![WorkerDoc {
                name: "w1".into(),
                mappings: vec!["acme/Account".into()],
                last_heartbeat_ms_ago: 0,
            }],
            mappings: vec![MappingDoc {
                connection: "acme".into(),
                object: "Account".into(),
                state: "DATA_SYNCED".into(),
                worker: "w1".into(),
                rows: 100,
                synced_through: Some("2026-11-24T10:00:00Z".into()),
                primary: PrimaryDoc {
                    polls: 12,
                    records: 140,
                    bulk_jobs: 1,
                    bulk_batches: 10,
                    rest_queries: 11,
                },
                secondary: SecondaryDoc {
                    polls: 11,
                    records: 42,
                    drift_records: 17,
                    bulk_jobs: 0,
                    bulk_batches: 0,
                    rest_queries: 10,
                },
                api_calls: 61,
                db_connections_in_use: 2,
                errors: 0,
                writes: WritesDoc {
                    pending: 3,
                    sent: 40,
                    failed: 1,
                    merged: 2,
                    mode: crate::status::WriteModeDoc::Ordered,
                    path: crate::status::WritePath::Bulk,
                },
                notify: Default::default(),
                formula_refreshed: 500,
                formula_notes: Vec::new(),
            }],
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_inf() {
        let t = Telemetry::default();
        for ms in [10, 300, 400, 700_000] {
            t.observe_poll(
                "acme",
                "Account",
                PollKind::Primary,
                Duration::from_millis(ms),
            );
        }
        let text = render(&doc(), &t.snapshot());
        let line = |le: &str| {
            format!("driftless_poll_duration_seconds_bucket{{connection=\"acme\",object=\"Account\",kind=\"primary\",le=\"{le}\"}}")
        };
        assert!(text.contains(&format!("{} 1\n", line("0.05"))), "{text}");
        assert!(text.contains(&format!("{} 3\n", line("0.5"))), "{text}");
        assert!(text.contains(&format!("{} 3\n", line("300"))), "{text}");
        assert!(text.contains(&format!("{} 4\n", line("+Inf"))), "{text}");
        assert!(text.contains("driftless_poll_duration_seconds_count{connection=\"acme\",object=\"Account\",kind=\"primary\"} 4\n"));
    }

    #[test]
    fn help_and_type_once_per_family_and_every_sample_declared() {
        let t = Telemetry::default();
        t.observe_poll(
            "acme",
            "Account",
            PollKind::Secondary,
            Duration::from_millis(5),
        );
        t.set_db_pool_size("acme", 4);
        let text = render(&doc(), &t.snapshot());
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_owned()), "TYPE twice for {name}");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                    .unwrap_or(name);
                assert!(declared.contains(family), "{name} has no TYPE");
                assert!(name.starts_with("driftless_"), "{name}");
            }
        }
        assert_eq!(
            text.matches("# HELP driftless_records_synced_total ")
                .count(),
            1
        );
        assert!(text.contains("driftless_records_synced_total{connection=\"acme\",object=\"Account\",kind=\"secondary\"} 42\n"));
        assert!(text.contains(
            "driftless_drift_records_total{connection=\"acme\",object=\"Account\"} 17\n"
        ));
        assert!(text.contains(
            "driftless_formula_refreshed_total{connection=\"acme\",object=\"Account\"} 500\n"
        ));
        assert!(text.contains("driftless_db_connections_in_use{connection=\"acme\"} 2\n"));
        assert!(text.contains("driftless_db_pool_size{connection=\"acme\"} 4\n"));
        assert!(text.contains("driftless_worker_mappings{worker=\"w1\"} 1\n"));
        assert!(text.contains("driftless_writeback_records{connection=\"acme\",object=\"Account\",outcome=\"failed\"} 1\n"));
        assert!(text.contains("driftless_writeback_records{connection=\"acme\",object=\"Account\",outcome=\"sent\"} 40\n"));
        assert!(text.contains("driftless_writeback_records{connection=\"acme\",object=\"Account\",outcome=\"merged\"} 2\n"));
        assert!(text.contains("driftless_writeback_info{connection=\"acme\",object=\"Account\",mode=\"ordered\",path=\"bulk\"} 1\n"));
        assert!(text.contains("driftless_mapping_synced_through_seconds{connection=\"acme\",object=\"Account\"} 1795514400\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut d = doc();
        d.mappings[0].connection = "a\"b\\c".into();
        let text = metrics_text(&d.mappings);
        assert!(text.contains("connection=\"a\\\"b\\\\c\""), "{text}");
    }
}
