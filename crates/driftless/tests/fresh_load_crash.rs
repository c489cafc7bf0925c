//! kill -9 of the real `driftless run` during a parallel fresh-table load, at three points:
//! before the first chunk commits, in the middle (chunks committed, more being copied), and while
//! the indexes are built. At every kill the table holds exactly the records up to the committed
//! cursor, each once; every restart continues after it; the load ends with every record once, the
//! unique sfid index valid, and `driftless verify` exiting 0.

use driftless_testkit as common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::*;

const ACCOUNTS: i64 = 30_000;
const BIN: &str = env!("CARGO_BIN_EXE_driftless");

fn write_files(db: &TestDb, sim: &sfsim::SimInfo) -> PathBuf {
    ConfigBuilder::new()
        .pool(3)
        .sync("poll_interval_secs", 1)
        .sync("secondary_enabled", false)
        .sync("bulk_threshold", 2000)
        .sync("use_latest_date_covered", false)
        .write(
            db,
            sim,
            r#"{"mappings":[
      {"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":1,"sf_notify_enabled":false,
        "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"Industry":{},"AnnualRevenue":{},"Description":{}},
        "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false},"Name":{"unique":false},"Description":{"unique":false}}}}
    ],"version":1}"#,
        )
        .path
}

fn driftless(args: &[&str], config: &Path, sim: &sfsim::SimInfo, log: &str) -> Command {
    driftless_testkit::driftless_command(BIN, args, config, sim, log)
}

fn start_engine(config: &Path, sim: &sfsim::SimInfo, n: u32) -> Child {
    driftless(&["run"], config, sim, &format!("run-{n}.log"))
        .spawn()
        .expect("driftless run")
}

use driftless_testkit::kill_9;

/// The load's state: (cursor, done, rows, distinct sfids, rows past the cursor).
async fn load_state(pg: &tokio_postgres::Client) -> Option<(Option<String>, bool, i64, i64, i64)> {
    let r = pg
        .query_opt(
            "SELECT initial_load_cursor, initial_load_done, \
             (SELECT count(*) FROM salesforce.account), \
             (SELECT count(DISTINCT sfid) FROM salesforce.account), \
             (SELECT count(*) FROM salesforce.account a \
              WHERE s.initial_load_cursor IS NULL OR a.sfid COLLATE \"C\" > s.initial_load_cursor) \
             FROM salesforce._driftless_mapping_state s WHERE object_name = 'Account'",
            &[],
        )
        .await
        .ok()??;
    Some((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
}

/// What a kill left must be whole chunks: each record once, nothing past the cursor.
async fn assert_exactly_once(pg: &tokio_postgres::Client, at: &str) -> i64 {
    let (cursor, done, rows, distinct, past) = load_state(pg).await.unwrap_or_default();
    eprintln!("after the kill {at}: cursor {cursor:?} done {done} rows {rows}");
    assert!(!done, "killed {at}, but the load was done");
    assert_eq!(rows, distinct, "a record twice after the kill {at}");
    assert_eq!(
        past, 0,
        "rows past the committed cursor after the kill {at}"
    );
    rows
}

async fn bulk_jobs_posted(sim: &sfsim::SimInfo) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{}/_sim/stats", sim.instance_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["bulk_v1"]["jobs"].as_u64().unwrap_or(0)
}

async fn creating_index(pg: &tokio_postgres::Client, db: &str) -> bool {
    pg.query_one(
        "SELECT count(*) FROM pg_stat_progress_create_index WHERE datname = $1",
        &[&db],
    )
    .await
    .map(|r| r.get::<_, i64>(0) > 0)
    .unwrap_or(false)
}

#[actix_rt::test]
async fn kill_9_during_a_parallel_fresh_load_leaves_every_record_exactly_once() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), ACCOUNTS as u64)],
        // A chunk of 7,500 takes 0.5 s to process: the load lasts long enough to be killed in it.
        bulk_rows_per_sec: Some(15_000),
        ..Default::default()
    })
    .await;
    let config = write_files(&db, &sim.info);
    let pg = db.client().await;
    let admin = connect(&admin_url()).await;

    // 1. Before the first commit: the load's Bulk job is posted, its first chunk not yet done.
    let mut engine = start_engine(&config, &sim.info, 1);
    wait_until("the load's bulk job", Duration::from_secs(60), || async {
        bulk_jobs_posted(&sim.info).await > 0
    })
    .await;
    kill_9(&mut engine);
    let rows_1 = assert_exactly_once(&pg, "before the first commit").await;

    // 2. Mid-load: a chunk committed, the load not done.
    let mut engine = start_engine(&config, &sim.info, 2);
    wait_until("a committed chunk", Duration::from_secs(60), || async {
        matches!(load_state(&pg).await, Some((Some(_), false, rows, _, _)) if rows > rows_1)
    })
    .await;
    kill_9(&mut engine);
    // Chunks commit in Id order, so a slow first chunk can let every later one commit at once
    // right after it: the kill may then find all rows in and the load still not done, which is
    // a point of its own (before the index build) and holds the same promise.
    let rows_2 = assert_exactly_once(&pg, "mid-load").await;
    eprintln!("mid-load kill with {rows_2} of {ACCOUNTS} rows committed");

    // 3. During the index build, seen in pg_stat_progress_create_index. The build is short, so
    // the sampling may miss it; the load then simply finished, which the end checks as well.
    let mut engine = start_engine(&config, &sim.info, 3);
    let mut killed_in_build = false;
    for _ in 0..60_000 {
        if creating_index(&admin, &db.name).await {
            kill_9(&mut engine);
            killed_in_build = true;
            break;
        }
        if matches!(load_state(&pg).await, Some((_, true, _, _, _))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if killed_in_build {
        assert_exactly_once(&pg, "during the index build").await;
        engine = start_engine(&config, &sim.info, 4);
    }
    wait_until("the load done", Duration::from_secs(90), || async {
        matches!(load_state(&pg).await, Some((_, true, _, _, _)))
    })
    .await;
    let (_, _, rows, distinct, _) = load_state(&pg).await.unwrap();
    let indexes: Vec<(String, bool, bool)> = pg
        .query(
            "SELECT c.relname::text, i.indisunique, i.indisvalid FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = 'salesforce.account'::regclass AND NOT i.indisprimary ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let verify = tokio::task::spawn_blocking({
        let (config, info) = (config.clone(), sim.info.clone());
        move || {
            driftless(&["verify"], &config, &info, "verify.log")
                .status()
                .expect("driftless verify")
        }
    })
    .await
    .unwrap();
    kill_9(&mut engine);
    let verify_log = std::fs::read_to_string(config.with_file_name("verify.log")).unwrap();
    eprintln!(
        "summary: rows at the kills {rows_1}, {rows_2}; killed during the index build: \
         {killed_in_build}; {rows} rows at the end; verify {verify}"
    );
    sim.stop().await;
    assert_eq!(rows, ACCOUNTS);
    assert_eq!(distinct, ACCOUNTS);
    assert_eq!(
        indexes,
        vec![
            ("hc_idx_account_description".to_owned(), false, true),
            ("hc_idx_account_name".to_owned(), false, true),
            ("hc_idx_account_systemmodstamp".to_owned(), false, true),
            ("hcu_idx_account_sfid".to_owned(), true, true),
        ]
    );
    assert!(verify.success(), "driftless verify: {verify}\n{verify_log}");
}
