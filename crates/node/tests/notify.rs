//! Accelerated polling end to end: the simulator's Pub/Sub API over TLS, a fresh Postgres
//! database, and the engine in-process, with mappings that poll only every 600 s.
//!
//! The simulator sends a keepalive every second, so the subscription commits its position soon
//! after it opens; the tests wait for that before changing anything, since a first subscription
//! starts at the latest event.

use driftless_testkit as common;

use std::time::Duration;

use common::*;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, RunOptions};
use sfsim::value::Value as SfValue;

const ACCOUNTS: u64 = 50;

fn mappings(polling_secs: u64) -> String {
    format!(
        r#"{{"mappings":[{{"object_name":"Account","config":{{"access":"read_only",
  "sf_polling_seconds":{polling_secs},"sf_notify_enabled":true,
  "fields":{{"Id":{{}},"Name":{{}},"SystemModstamp":{{}},"IsDeleted":{{}}}},
  "indexes":{{"Id":{{"unique":true}},"SystemModstamp":{{"unique":false}}}}}}}}],"version":1}}"#
    )
}

fn sim_config() -> sfsim::SimConfig {
    sfsim::SimConfig {
        dataset: vec![("Account".into(), ACCOUNTS)],
        pubsub_keepalive: Duration::from_secs(1),
        ..Default::default()
    }
}

fn builder(sim: &SimThread) -> ConfigBuilder {
    let ca = sim
        .info
        .ca_cert
        .as_deref()
        .expect("the simulator reports its CA");
    ConfigBuilder::new().salesforce_lines(&format!(
        "pubsub_endpoint = \"{}\"\nca_cert = \"{ca}\"\n",
        sim.pubsub_endpoint
    ))
}

fn options() -> RunOptions {
    RunOptions {
        honor_latest_date_covered: false,
        batch_rows: 1000,
        ..RunOptions::default()
    }
}

/// Renames the first `n` live Accounts, one transaction each; returns (id, new name).
fn rename_accounts(sim: &SimThread, n: usize, tag: &str) -> Vec<(String, String)> {
    let org = &sim.org;
    let a = org.schema.object_index("Account").unwrap();
    let name = org.schema.objects[a].field_index("Name").unwrap();
    let ids: Vec<String> = org.read(|tables| {
        tables[a]
            .iter()
            .filter(|r| !sfsim::store::is_deleted(r))
            .map(|r| sfsim::store::record_id(r).to_owned())
            .collect()
    });
    ids.iter()
        .take(n)
        .enumerate()
        .map(|(i, id)| {
            let new = format!("{tag}-{i}");
            let mut txn = org.begin();
            org.update(&mut txn, a, id, vec![(name, SfValue::text(&new))])
                .unwrap();
            org.commit(txn);
            (id.clone(), new)
        })
        .collect()
}

async fn names_match(pg: &tokio_postgres::Client, want: &[(String, String)]) -> bool {
    for (id, name) in want {
        let row = pg
            .query_opt("SELECT name FROM salesforce.account WHERE sfid = $1", &[id])
            .await
            .unwrap();
        if row.map(|r| r.get::<_, Option<String>>(0)) != Some(Some(name.clone())) {
            return false;
        }
    }
    true
}

async fn stored_replay_id(pg: &tokio_postgres::Client) -> Option<Vec<u8>> {
    pg.query_opt(
        "SELECT notify_replay_id FROM salesforce._driftless_mapping_state \
         WHERE object_name = 'Account'",
        &[],
    )
    .await
    .unwrap()
    .and_then(|r| r.get(0))
}

async fn start_synced(
    config: &driftless_core::config::Config,
    pg: &tokio_postgres::Client,
) -> driftless_node::NodeHandle {
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_until("initial load", Duration::from_secs(60), || async {
        let s = engine.status().await;
        mapping(&s, "Account").state == "DATA_SYNCED"
    })
    .await;
    wait_until(
        "the subscription's first position",
        Duration::from_secs(30),
        || async { stored_replay_id(pg).await.is_some() },
    )
    .await;
    engine
}

#[actix_rt::test]
async fn a_change_reaches_postgres_by_its_event_long_before_the_600_s_poll() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sim_config()).await;
    let config = builder(&sim).write(&db, &sim.info, &mappings(600));
    let pg = db.client().await;
    let engine = start_synced(&config, &pg).await;
    let before = engine.status().await;
    let polls_before = mapping(&before, "Account").primary.polls;

    let renamed = rename_accounts(&sim, 3, "evented");
    // Far below the 600 s interval: only the change events can bring these.
    wait_until(
        "renamed accounts in postgres",
        Duration::from_secs(30),
        || names_match(&pg, &renamed),
    )
    .await;

    let s = engine.status().await;
    let m = mapping(&s, "Account");
    assert!(m.notify.enabled);
    assert!(m.notify.events >= 3, "{:?}", m.notify);
    assert!(m.notify.polls_triggered >= 1, "{:?}", m.notify);
    assert_eq!(m.primary.polls, polls_before, "no interval poll ran");
    let metrics = driftless_node::metrics::render(&s, &engine.telemetry());
    assert!(
        metrics.contains(
            "driftless_notify_commit_latency_seconds_count{connection=\"acme\",object=\"Account\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("driftless_notify_events_total{connection=\"acme\",object=\"Account\"}")
    );
    engine.stop().await;
    sim.stop().await;
}

#[actix_rt::test]
async fn dropped_gapped_and_overflowed_events_lose_nothing() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sim_config()).await;
    // The interval poll is the backstop for dropped events, so it runs here, if slowly.
    let config = builder(&sim).write(&db, &sim.info, &mappings(5));
    let pg = db.client().await;
    let engine = start_synced(&config, &pg).await;
    sim_post(
        &sim.info,
        "/_sim/faults",
        serde_json::json!({
            "cdc_drop_rate": 0.2, "cdc_gap_rate": 0.1, "cdc_overflow_above": 5,
            "pubsub_stream_reset_secs": 2, "http_error_rate": 0.05, "http_error_status": 503
        }),
    )
    .await;
    let workload = serde_json::json!({
        "object": "Account", "inserts_per_sec": 5, "updates_per_sec": 30, "deletes_per_sec": 2,
        "long_txn_fraction": 0.05, "long_txn_ms": [1000, 3000]
    });
    // One transaction of 10 records: more than cdc_overflow_above, so one overflow event.
    {
        let org = &sim.org;
        let a = org.schema.object_index("Account").unwrap();
        let name = org.schema.objects[a].field_index("Name").unwrap();
        let mut txn = org.begin();
        for i in 0..10 {
            org.create(
                &mut txn,
                a,
                vec![(name, SfValue::text(format!("bulk-{i}")))],
            )
            .unwrap();
        }
        org.commit(txn);
    }
    let end = run_workload(&sim.info, &[workload], Duration::from_secs(6)).await;
    sim_delete(&sim.info, "/_sim/faults").await;
    wait_synced_past(&engine, end, Duration::from_secs(60)).await;
    wait_secondary_done(&pg, "salesforce", end, Duration::from_secs(60)).await;

    let reports = verify(
        &config,
        &VerifyOptions {
            repair: false,
            max_listed: 5,
            batch_rows: 1000,
            ..VerifyOptions::default()
        },
    )
    .await
    .expect("verify runs");
    let differences: i64 = reports.iter().map(|r| r.remaining).sum();
    assert_eq!(differences, 0, "{reports:?}");

    let s = engine.status().await;
    let m = mapping(&s, "Account");
    assert!(m.notify.events > 0, "{:?}", m.notify);
    assert!(
        m.notify.gaps > 0,
        "gap and overflow events were seen: {:?}",
        m.notify
    );
    let stats: serde_json::Value = reqwest::get(format!("{}/_sim/stats", sim.info.instance_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stats["cdc"]["dropped"].as_u64().unwrap() > 0, "{stats}");
    engine.stop().await;
    sim.stop().await;
}

#[actix_rt::test]
async fn a_restart_resumes_the_stream_from_the_stored_replay_id() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sim_config()).await;
    let config = builder(&sim).write(&db, &sim.info, &mappings(600));
    let pg = db.client().await;
    let engine = start_synced(&config, &pg).await;
    engine.stop().await;

    // While nothing runs: changes whose events only a resumed stream replays.
    let renamed = rename_accounts(&sim, 40, "while-down");
    let engine = run(config.clone(), options())
        .await
        .expect("engine restarts");
    wait_until("changes made while down", Duration::from_secs(60), || {
        names_match(&pg, &renamed)
    })
    .await;
    wait_until("their events replayed", Duration::from_secs(30), || async {
        let s = engine.status().await;
        mapping(&s, "Account").notify.events >= renamed.len() as i64
    })
    .await;
    engine.stop().await;
    sim.stop().await;
}

#[actix_rt::test]
async fn an_object_without_change_events_says_so_and_keeps_polling() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), ACCOUNTS), ("Lead".into(), 20)],
        no_cdc: vec!["Lead".into()],
        ..sim_config()
    })
    .await;
    let mappings = r#"{"mappings":[
 {"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":600,"sf_notify_enabled":true,
  "fields":{"Id":{},"Name":{},"SystemModstamp":{},"IsDeleted":{}},
  "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}},
 {"object_name":"Lead","config":{"access":"read_only","sf_polling_seconds":2,"sf_notify_enabled":true,
  "fields":{"Id":{},"LastName":{},"SystemModstamp":{},"IsDeleted":{}},
  "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}],"version":1}"#;
    let config = builder(&sim).write(&db, &sim.info, mappings);
    let pg = db.client().await;
    let engine = start_synced(&config, &pg).await;
    wait_until(
        "Lead reported without change events",
        Duration::from_secs(30),
        || async {
            let s = engine.status().await;
            mapping(&s, "Lead").notify.unavailable.is_some()
        },
    )
    .await;
    let s = engine.status().await;
    let lead = mapping(&s, "Lead");
    let why = lead.notify.unavailable.clone().unwrap();
    assert!(why.contains("/data/LeadChangeEvent"), "{why}");
    assert!(why.contains("polling"), "{why}");
    assert!(!lead.notify.enabled);
    let account = mapping(&s, "Account");
    assert!(account.notify.enabled, "{:?}", account.notify);
    assert_eq!(account.notify.unavailable, None);

    // The Lead still arrives, by its 2 s interval poll; the Account by its event.
    let org = &sim.org;
    let l = org.schema.object_index("Lead").unwrap();
    let last = org.schema.objects[l].field_index("LastName").unwrap();
    let lead_id = org.read(|t| sfsim::store::record_id(t[l].iter().next().unwrap()).to_owned());
    let mut txn = org.begin();
    org.update(&mut txn, l, &lead_id, vec![(last, SfValue::text("Polled"))])
        .unwrap();
    org.commit(txn);
    let renamed = rename_accounts(&sim, 2, "evented");
    wait_until("the Lead by polling", Duration::from_secs(30), || async {
        pg.query_opt(
            "SELECT 1 FROM salesforce.lead WHERE sfid = $1 AND lastname = 'Polled'",
            &[&lead_id],
        )
        .await
        .unwrap()
        .is_some()
    })
    .await;
    wait_until("the Accounts by events", Duration::from_secs(30), || {
        names_match(&pg, &renamed)
    })
    .await;
    wait_until("latency measured", Duration::from_secs(10), || async {
        let s = engine.status().await;
        mapping(&s, "Account").notify.latency_p50_ms.is_some()
    })
    .await;
    let s = engine.status().await;
    let n = &mapping(&s, "Account").notify;
    assert!(n.latency_p95_ms >= n.latency_p50_ms, "{n:?}");
    assert_eq!(mapping(&s, "Lead").notify.events, 0);
    // A stream that never names the Lead does not clear what status says about it.
    assert!(mapping(&s, "Lead").notify.unavailable.is_some());
    engine.stop().await;
    sim.stop().await;
}
