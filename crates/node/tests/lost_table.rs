//! The table is the truth of what is loaded: a mapped table dropped or truncated behind the
//! engine's back, while it runs or while it is stopped, is noticed and loaded again (state
//! RELOAD_TABLE on the way), ending with every record and 0 differences by verify.

use driftless_testkit as common;

use std::time::Duration;

use common::*;
use driftless_core::config::Config;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, NodeHandle, RunOptions};

const ACCOUNTS: u64 = 400;
const CONTACTS: u64 = 200;

async fn start(config: &Config) -> NodeHandle {
    run(
        config.clone(),
        RunOptions {
            honor_latest_date_covered: false,
            ..RunOptions::default()
        },
    )
    .await
    .expect("engine starts")
}

async fn accounts(pg: &tokio_postgres::Client) -> i64 {
    pg.query_one("SELECT count(*) FROM salesforce.account", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

/// Waits until the Account table holds every record again, and the mapping says so.
async fn wait_reloaded(engine: &NodeHandle, pg: &tokio_postgres::Client, what: &str) {
    wait_until(what, Duration::from_secs(90), || async {
        accounts(pg).await == ACCOUNTS as i64
            && mapping(&engine.status().await, "Account").state == "DATA_SYNCED"
    })
    .await;
}

async fn no_differences(config: &Config) {
    let reports = verify(
        config,
        &VerifyOptions {
            max_listed: 10,
            batch_rows: 1000,
            ..VerifyOptions::default()
        },
    )
    .await
    .expect("verify");
    assert!(
        reports.iter().all(|r| r.differences() == 0),
        "verify: {reports:?}"
    );
}

#[actix_rt::test]
async fn a_dropped_or_truncated_table_is_loaded_again_running_or_not() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), ACCOUNTS), ("Contact".into(), CONTACTS)],
        ..Default::default()
    })
    .await;
    let setup = Setup {
        faults: false,
        bulk_threshold: 100,
        secondary_enabled: true,
        db_pool_size: 3,
    };
    let config = write_config(&db, &sim.info, &setup);
    let pg = db.client().await;
    let mut engine = start(&config).await;
    wait_reloaded(&engine, &pg, "the initial load").await;

    for (change, while_running) in [
        ("DROP TABLE salesforce.account", true),
        ("TRUNCATE salesforce.account", true),
        ("DROP TABLE salesforce.account", false),
        ("TRUNCATE salesforce.account", false),
    ] {
        if while_running {
            pg.batch_execute(change).await.unwrap();
        } else {
            engine.stop().await;
            pg.batch_execute(change).await.unwrap();
            engine = start(&config).await;
        }
        wait_reloaded(
            &engine,
            &pg,
            &format!("{change} (while running: {while_running})"),
        )
        .await;
        no_differences(&config).await;
        // The other mapping was never touched.
        let contacts: i64 = pg
            .query_one("SELECT count(*) FROM salesforce.contact", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(contacts, CONTACTS as i64);
    }
    engine.stop().await;
    sim.stop().await;
}
