//! Sync under Salesforce faults: 5% HTTP 503s, 1% requests that never answer, 5% failed Bulk
//! batches and a session that expires every 3 s (harsher than the 20 s), during the
//! initial load and a workload with long transactions. Ends with 0 differences.
//!
//! The hung requests are cut by `connection.salesforce.request_timeout_secs = 3`: with the default
//! 120 s, each of them would stall its mapping for two minutes, past this test's waits.

use driftless_testkit as common;

use std::time::Duration;

use common::*;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, RunOptions};

const ACCOUNTS: u64 = 3000;
const CONTACTS: u64 = 1000;

#[actix_rt::test]
async fn sync_under_503s_failed_bulk_batches_and_expiring_sessions_ends_without_differences() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), ACCOUNTS), ("Contact".into(), CONTACTS)],
        ..Default::default()
    })
    .await;
    let setup = Setup {
        faults: true,
        // Initial loads and the busier Account windows go through Bulk, the rest through REST.
        bulk_threshold: 200,
        secondary_enabled: true,
        db_pool_size: 4,
    };
    let config = write_config_ext(
        &db,
        &sim.info,
        &setup,
        DEFAULT_MAPPINGS,
        &ConfigExtra {
            salesforce: "request_timeout_secs = 3\n".into(),
            ..ConfigExtra::default()
        },
    );
    assert_eq!(config.connections[0].salesforce.request_timeout_secs, 3);
    sim_post(
        &sim.info,
        "/_sim/faults",
        serde_json::json!({
            "http_error_rate": 0.05, "http_error_status": 503, "timeout_rate": 0.01,
            "bulk_batch_failure_rate": 0.05, "session_expiry_secs": 3
        }),
    )
    .await;
    let started = std::time::Instant::now();
    let engine = run(
        config.clone(),
        RunOptions {
            honor_latest_date_covered: false,
            batch_rows: 1000,
            ..RunOptions::default()
        },
    )
    .await
    .expect("engine starts");

    wait_until(
        "initial load under faults",
        Duration::from_secs(120),
        || async {
            let s = engine.status().await;
            s.mappings
                .iter()
                .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some())
        },
    )
    .await;
    let load_secs = started.elapsed().as_secs_f64();
    let s = engine.status().await;
    assert_eq!(mapping(&s, "Account").rows, ACCOUNTS as i64);
    assert_eq!(mapping(&s, "Contact").rows, CONTACTS as i64);

    let stopped = run_workload(&sim.info, &sync_test_workloads(), Duration::from_secs(8)).await;

    let pg = db.client().await;
    wait_synced_past(&engine, stopped, Duration::from_secs(90)).await;
    wait_secondary_done(&pg, "salesforce", stopped, Duration::from_secs(90)).await;

    // What the faults did, from the simulator's own counters.
    let faults_seen = reqwest::get(format!("{}/_sim/stats", sim.info.instance_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eprintln!("sim stats: {faults_seen}");
    let status = engine.status().await;
    eprintln!("status: {}", serde_json::to_string(&status).unwrap());
    let bulk_windows: i64 = pg
        .query_one(
            "SELECT count(*) FROM salesforce._driftless_windows WHERE kind = 'bulk'",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    // Verify on a healthy API: the faults are what sync had to survive, not verify.
    sim_delete(&sim.info, "/_sim/faults").await;
    let reports = verify(
        &config,
        &VerifyOptions {
            max_listed: 5,
            batch_rows: 1000,
            ..VerifyOptions::default()
        },
    )
    .await
    .expect("verify");
    for r in &reports {
        eprintln!(
            "verify {}/{}: {} records, {:?} examples {:?}",
            r.connection, r.object, r.salesforce_records, r.counts, r.examples
        );
    }
    engine.stop().await;
    sim.stop().await;
    eprintln!(
        "summary: initial load {load_secs:.1}s, bulk windows {bulk_windows}, total {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        reports.iter().all(|r| r.differences() == 0),
        "differences after sync under faults: {reports:?}"
    );
}
