//! With low-latency primary windows (the default: `use_latest_date_covered = false`) a secondary
//! poll does not re-read its window before getUpdated's `latestDateCovered` has passed the
//! window's end, so a transaction that stays open past the secondary delay and commits into an
//! already-read window is still found; and the wait is bounded by `secondary_max_hold_secs`.

use driftless_testkit as common;

use std::time::Duration;

use common::*;
use driftless_node::{run, RunOptions};
use sfsim::store::Txn;
use sfsim::value::Value;

const MAPPINGS: &str = r#"{"mappings":[
  {"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":1,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}
],"version":1}"#;

/// Stages one Account named `name` in `txn` (its SystemModstamp is the transaction's start).
fn stage(sim: &SimThread, txn: &mut Txn, name: &str) -> String {
    let org = &sim.org;
    let obj = org.object_index("Account").unwrap();
    let field = org.schema.objects[obj].field_index("Name").unwrap();
    org.create(txn, obj, vec![(field, Value::text(name))])
        .expect("create")
}

fn create(sim: &SimThread, name: &str) -> String {
    let mut txn = sim.org.begin();
    let id = stage(sim, &mut txn, name);
    sim.org.commit(txn);
    id
}

async fn has(pg: &tokio_postgres::Client, sfid: &str) -> bool {
    pg.query_one(
        "SELECT count(*) FROM salesforce.account WHERE sfid = $1",
        &[&sfid],
    )
    .await
    .unwrap()
    .get::<_, i64>(0)
        == 1
}

async fn start(
    max_hold_secs: u64,
) -> (
    TestDb,
    SimThread,
    driftless_node::NodeHandle,
    tokio_postgres::Client,
) {
    log_from_env();
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig::default()).await;
    let config = ConfigBuilder::new()
        .pool(2)
        .without("use_latest_date_covered")
        .sync("secondary_delay_secs", 2)
        .sync("secondary_max_hold_secs", max_hold_secs)
        .write(&db, &sim.info, MAPPINGS);
    assert!(!config.connections[0].sync.use_latest_date_covered);
    let engine = run(config, RunOptions::default())
        .await
        .expect("engine starts");
    let pg = db.client().await;
    (db, sim, engine, pg)
}

#[actix_rt::test]
async fn a_transaction_open_past_the_secondary_delay_is_found_by_the_secondary_poll() {
    let (_db, sim, engine, pg) = start(1_800).await;
    let mut long = sim.org.begin();
    let late = stage(&sim, &mut long, "committed late");
    // A later record arriving proves the primary windows have moved past the late one's stamp.
    let early = create(&sim, "committed at once");
    wait_until("the committed record", Duration::from_secs(30), || async {
        has(&pg, &early).await
    })
    .await;
    // Longer than the secondary delay and the margin: a secondary poll run on its delay alone
    // would re-read the window while the transaction is still open.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(!has(&pg, &late).await, "not committed yet");
    let held = engine
        .telemetry()
        .secondary_holds
        .values()
        .map(|h| h.held)
        .sum::<u64>();
    assert!(held >= 1, "the window's secondary poll waited");
    sim.org.commit(long);
    wait_until(
        "the late record, through the secondary poll",
        Duration::from_secs(150),
        || async { has(&pg, &late).await },
    )
    .await;
    let status = engine.status().await;
    assert!(
        status.mappings[0].secondary.drift_records >= 1,
        "repaired as drift: {:?}",
        status.mappings[0].secondary
    );
    let t = engine.telemetry();
    assert!(t.secondary_holds.values().all(|h| h.expired == 0));
    engine.stop().await;
    sim.stop().await;
}

#[actix_rt::test]
async fn the_wait_for_latest_date_covered_is_bounded() {
    let (_db, sim, engine, pg) = start(3).await;
    let mut long = sim.org.begin();
    stage(&sim, &mut long, "open for a long time");
    let early = create(&sim, "committed at once");
    wait_until("the committed record", Duration::from_secs(30), || async {
        has(&pg, &early).await
    })
    .await;
    wait_until(
        "a secondary poll whose hold ran out",
        Duration::from_secs(60),
        || async {
            engine
                .telemetry()
                .secondary_holds
                .values()
                .any(|h| h.expired >= 1)
        },
    )
    .await;
    wait_until("it ran anyway", Duration::from_secs(30), || async {
        engine.status().await.mappings[0].secondary.polls >= 1
    })
    .await;
    sim.org.commit(long);
    engine.stop().await;
    sim.stop().await;
}
