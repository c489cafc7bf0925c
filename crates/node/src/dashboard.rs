//! The `/status` page for people: one self-contained HTML document (no external assets, inline
//! CSS and SVG) rendered from the status document and [`crate::metrics::TelemetrySnapshot`], and
//! refreshed by the browser every few seconds.
//!
//! A browser cannot send `Authorization: Bearer`, so the page also takes the admin token as
//! `?token=`; without one it answers with a small form that submits exactly that. Tokens in URLs
//! end up in browser history: use the page on trusted networks, as the admin listener itself.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::metrics::TelemetrySnapshot;
use crate::status::{MappingDoc, StatusDoc};

/// Seconds between page refreshes.
pub const REFRESH_SECS: u32 = 5;

/// Total drift caught over time, one sample per [`DriftHistory::BUCKET_SECS`] at most, the
/// newest [`DriftHistory::CAPACITY`] kept (20 minutes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriftHistory {
    samples: VecDeque<(DateTime<Utc>, i64)>,
}

impl DriftHistory {
    pub const CAPACITY: usize = 240;
    pub const BUCKET_SECS: i64 = 5;

    pub fn record(&mut self, at: DateTime<Utc>, total: i64) {
        if let Some(last) = self.samples.back_mut() {
            if last.0.timestamp().div_euclid(Self::BUCKET_SECS)
                == at.timestamp().div_euclid(Self::BUCKET_SECS)
            {
                last.1 = total;
                return;
            }
        }
        self.samples.push_back((at, total));
        if self.samples.len() > Self::CAPACITY {
            self.samples.pop_front();
        }
    }

    pub fn samples(&self) -> impl Iterator<Item = &(DateTime<Utc>, i64)> {
        self.samples.iter()
    }

    /// An inline SVG step line of the totals from the first sample to `now`.
    pub fn sparkline(&self, now: DateTime<Utc>) -> String {
        const W: f64 = 320.0;
        const H: f64 = 48.0;
        let mut svg = format!(
            "<svg class=\"spark\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"drift caught over time\">"
        );
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            svg.push_str("<text x=\"4\" y=\"28\">no samples yet</text></svg>");
            return svg;
        };
        let span = (now.max(last.0) - first.0).num_milliseconds().max(1) as f64;
        let max = self.samples.iter().map(|s| s.1).max().unwrap_or(0).max(1) as f64;
        let x = |t: DateTime<Utc>| (t - first.0).num_milliseconds() as f64 / span * (W - 2.0) + 1.0;
        let y = |v: i64| H - 2.0 - v as f64 / max * (H - 4.0);
        let mut points = String::new();
        let mut prev: Option<i64> = None;
        for (t, v) in &self.samples {
            if let Some(p) = prev {
                let _ = write!(points, "{:.1},{:.1} ", x(*t), y(p));
            }
            let _ = write!(points, "{:.1},{:.1} ", x(*t), y(*v));
            prev = Some(*v);
        }
        let _ = write!(points, "{:.1},{:.1}", x(now.max(last.0)), y(last.1));
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"#2a7\" stroke-width=\"2\" points=\"{points}\"/></svg>"
        );
        svg
    }
}

/// `?token=` from the query string, percent-decoded.
pub fn query_token(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// The page a browser gets without a valid token: one field that submits `?token=`.
pub fn login_page(wrong: bool) -> String {
    let note = if wrong {
        "<p class=\"err\">That is not the admin token.</p>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>driftless: sign in</title>\
         <style>{CSS}</style></head><body><h1>driftless</h1>{note}\
         <form method=\"get\" action=\"/status\"><label>admin token \
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus></label> \
         <button type=\"submit\">show status</button></form></body></html>"
    )
}

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
table{border-collapse:collapse}th,td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:right}\
th:first-child,td:first-child,td.l,th.l{text-align:left}.muted{color:#777}.err{color:#b22}\
.state{font-weight:600}.DATA_SYNCED{color:#2a7}.SYSTEM_ERROR,.ABORTED{color:#b22}\
meter{width:8em}.spark{border:1px solid #ddd;background:#fafafa}";

/// The whole page. `now` is when it was rendered (shown, and the sparkline's right edge).
pub fn render(doc: &StatusDoc, t: &TelemetrySnapshot, now: DateTime<Utc>) -> String {
    let mut p = String::with_capacity(8192);
    let _ = write!(
        p,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"><title>driftless status</title>\
         <style>{CSS}</style></head><body><h1>driftless</h1>\
         <p class=\"muted\">{} at {} · refreshes every {REFRESH_SECS} s</p>",
        plural(doc.mappings.len(), "mapping"),
        now.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    connections(&mut p, doc, t);
    drift(&mut p, doc, t, now);
    mappings(&mut p, doc);
    notify(&mut p, doc);
    workers(&mut p, doc);
    p.push_str("</body></html>");
    p
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn connections(p: &mut String, doc: &StatusDoc, t: &TelemetrySnapshot) {
    let mut by_conn: BTreeMap<&str, Vec<&MappingDoc>> = BTreeMap::new();
    for m in &doc.mappings {
        by_conn.entry(&m.connection).or_default().push(m);
    }
    p.push_str(
        "<h2>Connections</h2><table id=\"connections\"><tr><th class=\"l\">connection</th>\
         <th>mappings</th><th>Postgres connections in use</th><th>API usage today</th>\
         <th>drift caught</th><th>pending writes</th><th>failed writes</th><th>errors</th></tr>",
    );
    for (name, ms) in &by_conn {
        let in_use = ms.first().map_or(0, |m| m.db_connections_in_use);
        let pool = match t.pool_sizes.get(*name) {
            Some(size) => format!(
                "{in_use} of {size} <meter min=\"0\" max=\"{size}\" value=\"{in_use}\"></meter>"
            ),
            None => in_use.to_string(),
        };
        let api = match t.api_usage.get(*name) {
            Some(u) => format!(
                "{} of {} <meter min=\"0\" max=\"{}\" value=\"{}\" high=\"{}\"></meter>",
                u.used,
                u.max,
                u.max,
                u.used,
                u.max / 10 * 8
            ),
            None => "<span class=\"muted\">not reported yet</span>".into(),
        };
        let _ = write!(
            p,
            "<tr class=\"connection\" data-connection=\"{n}\"><td class=\"l\">{n}</td><td>{}</td>\
             <td class=\"pool\">{pool}</td><td class=\"api\">{api}</td><td>{}</td>\
             <td class=\"pending\">{}</td><td class=\"failed\">{}</td><td>{}</td></tr>",
            ms.len(),
            ms.iter().map(|m| m.secondary.drift_records).sum::<i64>(),
            ms.iter().map(|m| m.writes.pending).sum::<i64>(),
            ms.iter().map(|m| m.writes.failed).sum::<i64>(),
            ms.iter().map(|m| m.errors).sum::<i64>(),
            n = html(name),
        );
    }
    p.push_str("</table>");
}

fn drift(p: &mut String, doc: &StatusDoc, t: &TelemetrySnapshot, now: DateTime<Utc>) {
    let total: i64 = doc.mappings.iter().map(|m| m.secondary.drift_records).sum();
    let _ = write!(
        p,
        "<h2>Drift caught over time</h2><p>records secondary polls found missing or stale: \
         <strong id=\"drift-total\">{total}</strong></p>{}",
        t.drift.sparkline(now)
    );
}

fn mappings(p: &mut String, doc: &StatusDoc) {
    p.push_str(
        "<h2>Mappings</h2><table id=\"mappings\"><tr><th class=\"l\">connection</th>\
         <th class=\"l\">object</th><th class=\"l\">state</th><th class=\"l\">worker</th><th>rows</th>\
         <th class=\"l\">synced through</th><th>primary polls</th><th>primary records</th>\
         <th>secondary polls</th><th>drift records</th><th>formula refreshed</th>\
         <th>bulk jobs (primary / secondary)</th>\
         <th>API calls</th><th>writes (pending / sent / failed)</th><th>errors</th></tr>",
    );
    for m in &doc.mappings {
        let _ = write!(
            p,
            "<tr class=\"mapping\" data-connection=\"{c}\" data-object=\"{o}\" data-state=\"{s}\" \
             data-drift=\"{d}\"><td class=\"l\">{c}</td><td class=\"l\">{o}</td>\
             <td class=\"l state {s}\">{s}</td><td class=\"l\">{w}</td><td>{}</td><td class=\"l\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"drift\">{d}</td>\
             <td class=\"formula\">{}</td><td>{} / {}</td><td>{}</td>\
             <td class=\"writes\">{} / {} / {}</td><td>{}</td></tr>",
            m.rows,
            html(m.synced_through.as_deref().unwrap_or("-")),
            m.primary.polls,
            m.primary.records,
            m.secondary.polls,
            m.formula_refreshed,
            m.primary.bulk_jobs,
            m.secondary.bulk_jobs,
            m.api_calls,
            m.writes.pending,
            m.writes.sent,
            m.writes.failed,
            m.errors,
            c = html(&m.connection),
            o = html(&m.object),
            s = html(&m.state),
            w = html(&m.worker),
            d = m.secondary.drift_records,
        );
    }
    p.push_str("</table>");
}

/// Accelerated polling, for the mappings that asked for it (`sf_notify_enabled`).
fn notify(p: &mut String, doc: &StatusDoc) {
    let asked: Vec<_> = doc
        .mappings
        .iter()
        .filter(|m| m.notify.enabled || m.notify.unavailable.is_some() || m.notify.events > 0)
        .collect();
    if asked.is_empty() {
        return;
    }
    p.push_str(
        "<h2>Accelerated polling</h2><table id=\"notify\"><tr><th class=\"l\">connection</th>\
         <th class=\"l\">object</th><th>change events</th><th>reads triggered</th>\
         <th>gaps and overflows</th><th>latency p50</th><th>latency p95</th>\
         <th class=\"l\">events</th></tr>",
    );
    let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v} ms"));
    for m in asked {
        let n = &m.notify;
        let _ = write!(
            p,
            "<tr class=\"notify\" data-connection=\"{c}\" data-object=\"{o}\"><td class=\"l\">{c}</td>\
             <td class=\"l\">{o}</td><td class=\"events\">{}</td><td>{}</td><td>{}</td>\
             <td class=\"p50\">{}</td><td class=\"p95\">{}</td><td class=\"l reason\">{}</td></tr>",
            n.events,
            n.polls_triggered,
            n.gaps,
            ms(n.latency_p50_ms),
            ms(n.latency_p95_ms),
            html(n.unavailable.as_deref().unwrap_or("subscribed")),
            c = html(&m.connection),
            o = html(&m.object),
        );
    }
    p.push_str("</table>");
}

fn workers(p: &mut String, doc: &StatusDoc) {
    p.push_str(
        "<h2>Workers</h2><table id=\"workers\"><tr><th class=\"l\">worker</th><th>mappings</th>\
         <th>last heartbeat</th></tr>",
    );
    for w in &doc.workers {
        let _ = write!(
            p,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{} ms ago</td></tr>",
            html(&w.name),
            w.mappings.len(),
            w.last_heartbeat_ms_ago
        );
    }
    p.push_str("</table>");
}

/// Escapes text for element content and double-quoted attributes.
pub fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ApiUsage;
    use crate::status::{NotifyDoc, PrimaryDoc, SecondaryDoc, WorkerDoc, WritesDoc};

    fn mapping(object: &str, state: &str, drift: i64) -> MappingDoc {
        MappingDoc {
            connection: "acme".into(),
            object: object.into(),
            state: state.into(),
            worker: "w1".into(),
            rows: 10,
            synced_through: None,
            primary: PrimaryDoc {
                polls: 1,
                records: 10,
                bulk_jobs: 0,
                bulk_batches: 0,
                rest_queries: 1,
            },
            secondary: SecondaryDoc {
                polls: 1,
                records: 3,
                drift_records: drift,
                bulk_jobs: 0,
                bulk_batches: 0,
                rest_queries: 1,
            },
            api_calls: 5,
            db_connections_in_use: 1,
            errors: 0,
            writes: WritesDoc {
                pending: 2,
                sent: 7,
                failed: 1,
                ..WritesDoc::default()
            },
            notify: Default::default(),
            formula_refreshed: 11,
            formula_notes: Vec::new(),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_514_400 + secs, 0).unwrap()
    }

    #[test]
    fn history_keeps_one_sample_per_bucket_and_a_bounded_ring() {
        let mut h = DriftHistory::default();
        h.record(at(0), 1);
        h.record(at(2), 3);
        h.record(at(5), 4);
        let got: Vec<i64> = h.samples().map(|s| s.1).collect();
        assert_eq!(got, vec![3, 4]);
        for i in 0..1000 {
            h.record(at(10 + i * 5), i);
        }
        assert_eq!(h.samples().count(), DriftHistory::CAPACITY);
        assert_eq!(h.samples().last().unwrap().1, 999);
    }

    #[test]
    fn sparkline_spans_to_now_and_scales_to_the_maximum() {
        let mut h = DriftHistory::default();
        assert!(h.sparkline(at(0)).contains("no samples yet"));
        h.record(at(0), 0);
        h.record(at(10), 8);
        let svg = h.sparkline(at(20));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        // Starts at the bottom left, ends at the top right (the maximum, at `now`).
        assert!(svg.contains("points=\"1.0,46.0 "), "{svg}");
        assert!(svg.contains(" 319.0,2.0\""), "{svg}");
    }

    #[test]
    fn page_shows_every_mapping_state_drift_pool_and_api_usage() {
        let doc = StatusDoc {
            workers: vec![WorkerDoc {
                name: "w1".into(),
                mappings: vec!["acme/Account".into(), "acme/Contact".into()],
                last_heartbeat_ms_ago: 0,
            }],
            mappings: vec![
                mapping("Account", "DATA_SYNCED", 17),
                mapping("Contact", "INITIAL", 0),
            ],
        };
        let mut t = TelemetrySnapshot::default();
        t.pool_sizes.insert("acme".into(), 4);
        t.api_usage.insert(
            "acme".into(),
            ApiUsage {
                used: 120,
                max: 5000,
            },
        );
        let page = render(&doc, &t, at(0));
        assert!(
            page.contains("data-object=\"Account\" data-state=\"DATA_SYNCED\" data-drift=\"17\"")
        );
        assert!(page.contains("data-object=\"Contact\" data-state=\"INITIAL\" data-drift=\"0\""));
        assert!(page.contains("1 of 4 <meter"), "pool against db_pool_size");
        assert!(page.contains("120 of 5000"), "API usage against the limit");
        assert!(page.contains("<meta http-equiv=\"refresh\""));
        assert!(page.contains("id=\"drift-total\">17<"));
        assert!(
            page.contains("<td class=\"writes\">2 / 7 / 1</td>"),
            "writes per mapping"
        );
        assert!(page.contains("<td class=\"pending\">4</td><td class=\"failed\">2</td>"));
        assert!(
            page.contains("<td class=\"formula\">11</td>"),
            "formula refreshes per mapping"
        );
        assert!(
            !page.contains("src=") && !page.contains("href="),
            "no external assets"
        );
    }

    #[test]
    fn accelerated_polling_shows_latency_and_why_events_are_missing() {
        let mut on = mapping("Account", "DATA_SYNCED", 0);
        on.notify = NotifyDoc {
            enabled: true,
            events: 240,
            polls_triggered: 31,
            gaps: 2,
            latency_p50_ms: Some(180),
            latency_p95_ms: Some(920),
            unavailable: None,
        };
        let mut missing = mapping("Lead", "DATA_SYNCED", 0);
        missing.notify.unavailable = Some("no change events for Lead".into());
        let off = mapping("Contact", "DATA_SYNCED", 0);
        let doc = StatusDoc {
            workers: vec![],
            mappings: vec![on, missing, off],
        };
        let page = render(&doc, &TelemetrySnapshot::default(), at(0));
        assert!(page.contains("id=\"notify\""));
        assert!(page.contains("<td class=\"events\">240</td>"));
        assert!(page.contains("<td class=\"p50\">180 ms</td><td class=\"p95\">920 ms</td>"));
        assert!(page.contains("no change events for Lead"));
        assert!(
            !page.contains("class=\"notify\" data-connection=\"acme\" data-object=\"Contact\""),
            "a mapping without accelerated polling is not listed"
        );
        let quiet = StatusDoc {
            workers: vec![],
            mappings: vec![mapping("Contact", "DATA_SYNCED", 0)],
        };
        assert!(!render(&quiet, &TelemetrySnapshot::default(), at(0)).contains("id=\"notify\""));
    }

    #[test]
    fn values_are_escaped() {
        let mut m = mapping("Account", "<b>\"x\"", 0);
        m.connection = "a&b".into();
        let doc = StatusDoc {
            workers: vec![],
            mappings: vec![m],
        };
        let page = render(&doc, &TelemetrySnapshot::default(), at(0));
        assert!(page.contains("&lt;b&gt;&quot;x&quot;"));
        assert!(page.contains("a&amp;b"));
        assert!(!page.contains("<b>"));
    }

    #[test]
    fn token_comes_from_the_query_decoded() {
        assert_eq!(query_token("token=a%2Bb&x=1").as_deref(), Some("a+b"));
        assert_eq!(query_token("x=1"), None);
        assert_eq!(query_token(""), None);
        assert!(login_page(true).contains("not the admin token"));
        assert!(login_page(false).contains("name=\"token\""));
    }
}
