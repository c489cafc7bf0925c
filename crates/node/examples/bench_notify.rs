//! Accelerated-polling latency benchmark: a mapping with `sf_polling_seconds: 600` and
//! `sf_notify_enabled: true`; single-record REST updates at random intervals of 0.2 to 1.5 s,
//! each timed from its HTTP response (the commit) until its row in Postgres shows the new value.
//!
//! ```text
//! cargo run --release -p driftless-node --example bench_notify -- [--changes N] [--burst SECS]
//! ```
//!
//! Then, unless `--burst 0`, the simulator's workload updates Accounts at 500 changes/s for
//! `--burst` seconds (default 30): it prints the lag at the end (from the workload's stop until
//! the engine has acted on every change event published) and the API calls per change (target
//! at most 0.05).
//!
//! Prints the commit-to-row latency p50, p95 and max, and the API calls the engine made per
//! change: the simulator's count of every API call during the run, minus the benchmark's own
//! PATCHes. Targets: p50 <= 1 s, p95 <= 3 s, <= 2 calls per change. The simulator runs in-process
//! on a thread of its own; a fresh database on 127.0.0.1:5432 is dropped at the end.

use driftless_testkit as common;

use std::time::{Duration, Instant};

use common::*;
use driftless_node::{run, RunOptions};

const MAPPINGS: &str = r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only",
  "sf_polling_seconds":600,"sf_notify_enabled":true,
  "fields":{"Id":{},"Name":{},"SystemModstamp":{},"IsDeleted":{}},
  "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}],"version":1}"#;

fn arg(name: &str, default: u64) -> u64 {
    let mut it = std::env::args().skip(1);
    let mut n = default;
    while let Some(a) = it.next() {
        if a == name {
            n = it.next().and_then(|v| v.parse().ok()).expect("a number");
        }
    }
    n
}

async fn cdc_published(sim: &sfsim::SimInfo) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{}/_sim/stats", sim.instance_url))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    stats["cdc"]["published"].as_u64().unwrap_or(0)
}

async fn api_calls(sim: &sfsim::SimInfo) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{}/_sim/stats", sim.instance_url))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    stats["api_calls"]["total"].as_u64().unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[actix_rt::main]
async fn main() {
    let changes = arg("--changes", 60) as usize;
    let burst_secs = arg("--burst", 30);
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 200)],
        pubsub_keepalive: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let ca = sim.info.ca_cert.clone().expect("ca_cert");
    let config = ConfigBuilder::new()
        .salesforce_lines(&format!(
            "pubsub_endpoint = \"{}\"\nca_cert = \"{ca}\"\n",
            sim.pubsub_endpoint
        ))
        .write(&db, &sim.info, MAPPINGS);
    let pg = db.client().await;
    let engine = run(
        config,
        RunOptions {
            honor_latest_date_covered: false,
            ..RunOptions::default()
        },
    )
    .await
    .expect("engine starts");
    wait_until("initial load", Duration::from_secs(60), || async {
        mapping(&engine.status().await, "Account").state == "DATA_SYNCED"
    })
    .await;
    wait_until("subscription open", Duration::from_secs(30), || async {
        pg.query_one(
            "SELECT count(*) FROM salesforce._driftless_mapping_state WHERE notify_replay_id IS NOT NULL",
            &[],
        )
        .await
        .map(|r| r.get::<_, i64>(0) > 0)
        .unwrap_or(false)
    })
    .await;

    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/services/oauth2/token", sim.info.login_url))
        .form(&[
            ("grant_type", "password"),
            ("username", sim.info.username.as_str()),
            ("password", sim.info.password.as_str()),
            ("client_id", sim.info.client_id.as_str()),
            ("client_secret", sim.info.client_secret.as_str()),
        ])
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("token");
    let bearer = format!("Bearer {}", token["access_token"].as_str().expect("token"));
    let ids: Vec<String> = pg
        .query(
            "SELECT sfid FROM salesforce.account ORDER BY sfid LIMIT 60",
            &[],
        )
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();

    let calls_before = api_calls(&sim.info).await;
    let mut latencies = Vec::with_capacity(changes);
    for i in 0..changes {
        let pause = Duration::from_millis(200 + rand_ms(1300));
        tokio::time::sleep(pause).await;
        let id = &ids[i % ids.len()];
        let name = format!("bench-{i}");
        let resp = http
            .patch(format!(
                "{}/services/data/v62.0/sobjects/Account/{id}",
                sim.info.instance_url
            ))
            .header("Authorization", &bearer)
            .json(&serde_json::json!({ "Name": name }))
            .send()
            .await
            .expect("patch");
        assert!(resp.status().is_success(), "{}", resp.status());
        let committed = Instant::now();
        loop {
            let row = pg
                .query_one("SELECT name FROM salesforce.account WHERE sfid = $1", &[id])
                .await
                .expect("row");
            if row.get::<_, Option<String>>(0).as_deref() == Some(name.as_str()) {
                break;
            }
            if committed.elapsed() > Duration::from_secs(60) {
                panic!("change {i} did not arrive within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(committed.elapsed());
    }
    let calls = api_calls(&sim.info).await - calls_before - changes as u64;
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("changes:                {changes}");
    println!(
        "latency p50:            {:.0} ms",
        ms(percentile(&latencies, 0.50))
    );
    println!(
        "latency p95:            {:.0} ms",
        ms(percentile(&latencies, 0.95))
    );
    println!(
        "latency max:            {:.0} ms",
        ms(latencies[latencies.len() - 1])
    );
    println!("engine API calls:       {calls}");
    println!(
        "API calls per change:   {:.2}",
        calls as f64 / changes as f64
    );
    let s = engine.status().await;
    let n = &mapping(&s, "Account").notify;
    println!(
        "notify: events {} polls_triggered {} gaps {}",
        n.events, n.polls_triggered, n.gaps
    );

    if burst_secs > 0 {
        let events_before = mapping(&engine.status().await, "Account").notify.events;
        let published_before = cdc_published(&sim.info).await;
        let calls_before = api_calls(&sim.info).await;
        sim_post(
            &sim.info,
            "/_sim/workload",
            serde_json::json!({"object": "Account", "updates_per_sec": 500}),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(burst_secs)).await;
        sim_delete(&sim.info, "/_sim/workload").await;
        let stopped = Instant::now();
        let published = cdc_published(&sim.info).await - published_before;
        loop {
            let events = mapping(&engine.status().await, "Account").notify.events - events_before;
            if events as u64 >= published {
                break;
            }
            if stopped.elapsed() > Duration::from_secs(120) {
                panic!("{events} of {published} events acted on after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let lag = stopped.elapsed();
        let calls = api_calls(&sim.info).await - calls_before;
        println!(
            "burst: {published} changes in {burst_secs} s ({:.0}/s)",
            published as f64 / burst_secs as f64
        );
        println!("burst lag at the end:   {:.0} ms", ms(lag));
        println!("burst engine API calls: {calls}");
        println!(
            "burst API calls per change: {:.3}",
            calls as f64 / published.max(1) as f64
        );
    }
    engine.stop().await;
    sim.stop().await;
}

/// A pseudo-random number of milliseconds below `max` (no rand dependency needed for a pause).
fn rand_ms(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (nanos.wrapping_mul(6364136223846793005) >> 17) % max
}
