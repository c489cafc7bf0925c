//! The limits are properties of the topology (DESIGN.md invariant 4): 20 mappings on one connection
//! with `db_pool_size = 3` load, poll and re-read under a workload, and all through the run
//! Postgres never sees more than 3 sessions from driftless (sampled from `pg_stat_activity` by
//! application_name every 50 ms) and never more than `secondary_concurrency` secondary polls run
//! at once (the pool's own high-water mark, served on `/metrics`).

use driftless_testkit as common;

use std::time::Duration;

use common::*;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, RunOptions};

const POOL: i64 = 3;
const SECONDARY_CONCURRENCY: i64 = 2;

/// Account, Contact, the four other standard objects and Sync01__c..Sync14__c: 20 objects.
fn objects() -> Vec<String> {
    let mut o: Vec<String> = [
        "Account",
        "Contact",
        "Opportunity",
        "Lead",
        "Case",
        "Invoice__c",
    ]
    .map(str::to_owned)
    .to_vec();
    o.extend((1..=sfsim::schema::SYNC_OBJECTS).map(|n| format!("Sync{n:02}__c")));
    o
}

fn mappings(objects: &[String]) -> String {
    let one = |o: &str| {
        format!(
            r#"{{"object_name":"{o}","config":{{"access":"read_only","sf_polling_seconds":2,"sf_notify_enabled":false,
            "fields":{{"Id":{{}},"IsDeleted":{{}},"SystemModstamp":{{}},"CreatedDate":{{}},"LastModifiedDate":{{}}}},
            "indexes":{{"Id":{{"unique":true}},"SystemModstamp":{{"unique":false}}}}}}}}"#
        )
    };
    let all: Vec<String> = objects.iter().map(|o| one(o)).collect();
    format!(r#"{{"mappings":[{}],"version":1}}"#, all.join(","))
}

/// The value of an unlabelled-but-for-connection gauge in a Prometheus exposition.
fn gauge(metrics: &str, name: &str) -> Option<i64> {
    let prefix = format!("{name}{{connection=\"acme\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[actix_rt::test]
async fn twenty_mappings_never_exceed_the_pool_or_the_secondary_concurrency() {
    let objects = objects();
    assert_eq!(objects.len(), 20);
    let db = TestDb::create().await;
    let dataset: Vec<(String, u64)> = objects
        .iter()
        .map(|o| (o.clone(), if o == "Account" { 3000 } else { 400 }))
        .collect();
    let sim = SimThread::start(sfsim::SimConfig {
        dataset,
        ..Default::default()
    })
    .await;
    let setup = Setup {
        faults: false,
        // The Account load and its busier windows go through Bulk, the rest through REST.
        bulk_threshold: 500,
        secondary_enabled: true,
        db_pool_size: POOL as u32,
    };
    let config = write_config_with(&db, &sim.info, &setup, &mappings(&objects));
    assert_eq!(
        config.connections[0].sync.secondary_concurrency as i64,
        SECONDARY_CONCURRENCY
    );
    let sampler = ConnectionSampler::start(&db, "driftless/acme/sync").await;
    let engine = run(
        config.clone(),
        RunOptions {
            honor_latest_date_covered: false,
            batch_rows: 200,
            ..RunOptions::default()
        },
    )
    .await
    .expect("engine starts");
    wait_until("20 initial loads", Duration::from_secs(180), || async {
        let s = engine.status().await;
        s.mappings.len() == 20
            && s.mappings
                .iter()
                .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some())
    })
    .await;

    // Every object changes, so every mapping has windows with records for secondary polls.
    let workloads: Vec<serde_json::Value> = objects
        .iter()
        .map(|o| {
            serde_json::json!({"object": o, "inserts_per_sec": 2, "updates_per_sec": 10, "deletes_per_sec": 1,
                               "long_txn_fraction": 0.1, "long_txn_ms": [500, 1500]})
        })
        .collect();
    let stopped = run_workload(&sim.info, &workloads, Duration::from_secs(8)).await;
    let pg = db.client().await;
    wait_synced_past(&engine, stopped, Duration::from_secs(120)).await;
    wait_secondary_done(&pg, "salesforce", stopped, Duration::from_secs(120)).await;

    let addr = engine.admin_addr().expect("admin listens");
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let secondary_peak = gauge(&metrics, "driftless_secondary_polls_in_flight_max")
        .expect("secondary in-flight high-water mark in /metrics");
    let secondary_now = gauge(&metrics, "driftless_secondary_polls_in_flight").unwrap();
    let status = engine.status().await;
    let secondary_polls: i64 = status.mappings.iter().map(|m| m.secondary.polls).sum();
    let mappings_re_read = status
        .mappings
        .iter()
        .filter(|m| m.secondary.polls > 0)
        .count();
    engine.stop().await;
    let peak = sampler.peak();
    drop(sampler);

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
    sim.stop().await;
    eprintln!(
        "summary: mappings=20 peak_pg_sessions={peak}/{POOL} secondary_in_flight_max={secondary_peak}/{SECONDARY_CONCURRENCY} \
         secondary_polls={secondary_polls} mappings_re_read={mappings_re_read} differences={}",
        reports.iter().map(|r| r.differences()).sum::<i64>()
    );
    assert!(peak <= POOL, "{peak} Postgres sessions, pool is {POOL}");
    assert!(peak >= 2, "the sampler saw the pool in use: {peak}");
    assert!(
        secondary_peak <= SECONDARY_CONCURRENCY,
        "{secondary_peak} secondary polls at once"
    );
    assert!(
        secondary_peak >= 1 && secondary_polls >= 20,
        "{secondary_polls} secondary polls"
    );
    assert_eq!(secondary_now, 0, "every secondary poll finished");
    assert_eq!(mappings_re_read, 20, "every mapping had secondary polls");
    assert!(reports.iter().all(|r| r.differences() == 0), "{reports:?}");
}
