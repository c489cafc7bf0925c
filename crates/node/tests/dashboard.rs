//! `/metrics` and `/status` of a running engine (real simulator, Postgres and HTTP): the metrics
//! parse as Prometheus text and agree with the status document; the page needs the token.

use driftless_testkit as common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use driftless_node::{run, RunOptions, StatusDoc};

/// `name{labels}` -> value, checking the exposition format on the way: every sample's family
/// declared once by HELP and TYPE before its samples.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps = std::collections::HashSet::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helps.insert(name.to_owned()), "HELP twice: {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {name}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{name}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "{name} before its TYPE");
        assert!(helps.contains(family), "{name} without HELP");
        samples.insert(series.to_owned(), value.parse::<f64>().expect("a number"));
    }
    samples
}

fn labels(conn: &str, object: &str, extra: &[(&str, &str)]) -> String {
    let mut s = format!("connection=\"{conn}\",object=\"{object}\"");
    for (k, v) in extra {
        s.push_str(&format!(",{k}=\"{v}\""));
    }
    s
}

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("admin endpoint")
}

#[actix_rt::test]
async fn metrics_agree_with_the_status_document_and_the_page_needs_the_token() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 400), ("Contact".into(), 300)],
        ..Default::default()
    })
    .await;
    let config = write_config(
        &db,
        &sim.info,
        &Setup {
            faults: false,
            bulk_threshold: 10_000,
            secondary_enabled: true,
            db_pool_size: 3,
        },
    );
    let engine = run(
        config,
        RunOptions {
            honor_latest_date_covered: false,
            ..RunOptions::default()
        },
    )
    .await
    .expect("engine starts");
    wait_until(
        "secondary polls on both",
        Duration::from_secs(90),
        || async {
            engine
                .status()
                .await
                .mappings
                .iter()
                .all(|m| m.state == "DATA_SYNCED" && m.secondary.polls > 0 && m.primary.polls > 0)
        },
    )
    .await;
    let base = format!("http://{}", engine.admin_addr().unwrap());

    // Counters only grow: a status taken between two scrapes lies between their values.
    let before = parse(
        &get(&format!("{base}/metrics"), None)
            .await
            .text()
            .await
            .unwrap(),
    );
    let doc: StatusDoc = get(&format!("{base}/api/v1/status"), Some(TOKEN))
        .await
        .json()
        .await
        .unwrap();
    let after = parse(
        &get(&format!("{base}/metrics"), None)
            .await
            .text()
            .await
            .unwrap(),
    );
    let between = |series: String, value: i64| {
        let (lo, hi) = (before[&series], after[&series]);
        assert!(
            lo <= value as f64 && value as f64 <= hi,
            "{series}: status {value} not within scrapes [{lo}, {hi}]"
        );
    };
    for m in &doc.mappings {
        let (c, o) = (m.connection.as_str(), m.object.as_str());
        let kinds = [
            (
                "primary",
                m.primary.records,
                m.primary.polls,
                m.primary.bulk_jobs,
            ),
            (
                "secondary",
                m.secondary.records,
                m.secondary.polls,
                m.secondary.bulk_jobs,
            ),
        ];
        for (kind, records, polls, bulk_jobs) in kinds {
            let l = labels(c, o, &[("kind", kind)]);
            between(format!("driftless_records_synced_total{{{l}}}"), records);
            between(format!("driftless_polls_total{{{l}}}"), polls);
            between(format!("driftless_bulk_jobs_total{{{l}}}"), bulk_jobs);
            // Each committed poll was timed once.
            between(
                format!("driftless_poll_duration_seconds_count{{{l}}}"),
                polls,
            );
            let inf = labels(c, o, &[("kind", kind), ("le", "+Inf")]);
            assert_eq!(
                after[&format!("driftless_poll_duration_seconds_bucket{{{inf}}}")],
                after[&format!("driftless_poll_duration_seconds_count{{{l}}}")]
            );
        }
        let l = labels(c, o, &[]);
        between(
            format!("driftless_drift_records_total{{{l}}}"),
            m.secondary.drift_records,
        );
        between(format!("driftless_api_calls_total{{{l}}}"), m.api_calls);
        assert_eq!(
            after[&format!("driftless_mapping_rows{{{l}}}")],
            m.rows as f64
        );
        let w = &m.writes;
        for (outcome, v) in [
            ("pending", w.pending),
            ("sent", w.sent),
            ("failed", w.failed),
        ] {
            let l = labels(c, o, &[("outcome", outcome)]);
            assert_eq!(
                after[&format!("driftless_writeback_records{{{l}}}")],
                v as f64
            );
        }
        // One state at a time; the state may move between the status request and the
        // scrapes around it, so the status's state is the one of either scrape.
        let prefix = format!("driftless_mapping_state{{{},", labels(c, o, &[]));
        let current: Vec<&String> = after
            .iter()
            .filter(|(k, v)| k.starts_with(&prefix) && **v == 1.0)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(current.len(), 1, "{current:?}");
        let state = format!(
            "driftless_mapping_state{{{}}}",
            labels(c, o, &[("state", &m.state)])
        );
        assert!(
            after.get(&state) == Some(&1.0) || before.get(&state) == Some(&1.0),
            "{state} in neither scrape"
        );
        let assigned = labels(c, o, &[("worker", &m.worker)]);
        assert_eq!(
            after[&format!("driftless_mapping_assigned{{{assigned}}}")],
            1.0
        );
    }
    assert_eq!(after["driftless_db_pool_size{connection=\"acme\"}"], 3.0);
    let in_use = after["driftless_db_connections_in_use{connection=\"acme\"}"];
    assert!((0.0..=3.0).contains(&in_use));
    let (used, limit) = (
        after["driftless_api_usage{connection=\"acme\"}"],
        after["driftless_api_limit{connection=\"acme\"}"],
    );
    assert!(used > 0.0 && used <= limit, "api usage {used} of {limit}");
    assert_eq!(after["driftless_worker_mappings{worker=\"w1\"}"], 2.0);

    // The page: a sign-in form without the token or with a wrong one; the figures with it.
    let denied = get(&format!("{base}/status"), None).await;
    assert_eq!(denied.status(), 401);
    assert!(denied.text().await.unwrap().contains("name=\"token\""));
    let wrong = get(&format!("{base}/status?token=nope"), None).await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("not the admin token"));
    for page in [
        get(&format!("{base}/status?token={TOKEN}"), None).await,
        get(&format!("{base}/status"), Some(TOKEN)).await,
    ] {
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        for m in &doc.mappings {
            assert!(html.contains(&format!("data-object=\"{}\"", m.object)));
        }
        assert!(html.contains(" of 3 <meter"), "pool against db_pool_size");
        assert!(
            html.contains(&format!(" of {limit} <meter")),
            "API usage against the limit"
        );
    }
    engine.stop().await;
    sim.stop().await;
}
