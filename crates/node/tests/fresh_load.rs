//! The fresh-table initial load end to end (simulator, Postgres, the engine in-process): PK chunks
//! copied in parallel straight into the empty table within the connection's pool, the indexes
//! built at the end (also by a restart that finds them missing), and a workload during the load.
//! Awkward values through both the fresh path (the initial load) and the merge (the polls after
//! it) are `bad_data.rs`'s round trips; kill -9 of the binary is `crates/driftless/tests`.

use driftless_testkit as common;

use std::time::Duration;

use common::*;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, RunOptions};

const ACCOUNTS: i64 = 12_000;

const MAPPINGS: &str = r#"{"mappings":[
  {"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":1,"sf_notify_enabled":false,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"Industry":{},"AnnualRevenue":{},"Description":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false},"Name":{"unique":false}}}}
],"version":1}"#;

fn options() -> RunOptions {
    RunOptions {
        honor_latest_date_covered: false,
        batch_rows: 1000,
        ..RunOptions::default()
    }
}

fn config(db: &TestDb, sim: &sfsim::SimInfo, pool: u32) -> driftless_core::config::Config {
    ConfigBuilder::new()
        .pool(pool)
        .sync("bulk_threshold", 100)
        .sync("secondary_enabled", false)
        .sync("use_latest_date_covered", false)
        .write(db, sim, MAPPINGS)
}

async fn wait_loaded(engine: &driftless_node::NodeHandle) {
    wait_until("initial load", Duration::from_secs(120), || async {
        let s = engine.status().await;
        s.mappings
            .iter()
            .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some())
    })
    .await;
}

/// Every index of the mapping, valid, and the sfid one unique: (name, unique, valid).
async fn account_indexes(pg: &tokio_postgres::Client) -> Vec<(String, bool, bool)> {
    pg.query(
        "SELECT c.relname::text, i.indisunique, i.indisvalid FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = 'salesforce.account'::regclass AND NOT i.indisprimary ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

fn expected_indexes() -> Vec<(String, bool, bool)> {
    vec![
        ("hc_idx_account_name".into(), false, true),
        ("hc_idx_account_systemmodstamp".into(), false, true),
        ("hcu_idx_account_sfid".into(), true, true),
    ]
}

async fn scalar_i64(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.unwrap().get(0)
}

async fn differences(config: &driftless_core::config::Config) -> i64 {
    let reports = verify(
        config,
        &VerifyOptions {
            max_listed: 5,
            batch_rows: 1000,
            ..VerifyOptions::default()
        },
    )
    .await
    .expect("verify");
    reports.iter().map(|r| r.differences()).sum()
}

/// A Bulk load into the new table: its PK chunks are copied by several sessions at once, never
/// more than `db_pool_size`; each chunk commits with its cursor, so the committed rows are
/// exactly the records up to the cursor; the indexes exist at the end; and a workload running
/// during the load (inserts, updates, deletes while the chunks are read) ends with no difference.
#[actix_rt::test]
async fn a_fresh_bulk_load_copies_chunks_in_parallel_within_the_pool() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), ACCOUNTS as u64)],
        // A chunk of 3,000 then takes 0.2 s to process: the chunks overlap.
        bulk_rows_per_sec: Some(15_000),
        ..Default::default()
    })
    .await;
    let config = config(&db, &sim.info, 3);
    let sampler = ConnectionSampler::start(&db, "driftless/acme/sync").await;
    sim_post(
        &sim.info,
        "/_sim/workload",
        serde_json::json!({"object": "Account", "inserts_per_sec": 20, "updates_per_sec": 150, "deletes_per_sec": 10}),
    )
    .await;
    let engine = run(config.clone(), options()).await.expect("engine starts");
    let pg = db.client().await;
    // Mid-load, whenever a chunk has committed: the rows are exactly those up to the cursor.
    let mut checked_mid_load = 0;
    for _ in 0..600 {
        let row = pg
            .query_opt(
                "SELECT initial_load_cursor, initial_load_done, primary_records, \
                 (SELECT count(*) FROM salesforce.account), \
                 (SELECT count(DISTINCT sfid) FROM salesforce.account), \
                 (SELECT count(*) FROM salesforce.account a WHERE a.sfid COLLATE \"C\" > s.initial_load_cursor) \
                 FROM salesforce._driftless_mapping_state s WHERE object_name = 'Account'",
                &[],
            )
            .await
            .ok()
            .flatten();
        if let Some(r) = row {
            let (cursor, done): (Option<String>, bool) = (r.get(0), r.get(1));
            if done {
                break;
            }
            if cursor.is_some() {
                let (records, rows, distinct, past): (i64, i64, i64, i64) =
                    (r.get(2), r.get(3), r.get(4), r.get(5));
                assert_eq!(rows, distinct, "a record copied twice mid-load");
                assert_eq!(past, 0, "rows past the committed cursor");
                // Deleted records are counted but not stored.
                assert!(rows <= records, "{rows} rows, {records} counted");
                checked_mid_load += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_error = pg
        .query_opt(
            "SELECT last_error FROM salesforce._driftless_mapping_state",
            &[],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.get::<_, Option<String>>(0));
    eprintln!("last error during the load: {last_error:?}");
    wait_loaded(&engine).await;
    sim_delete(&sim.info, "/_sim/workload").await;
    let stopped = chrono::Utc::now() + chrono::Duration::seconds(1);
    wait_synced_past(&engine, stopped, Duration::from_secs(60)).await;
    let peak = sampler.peak();
    let rows = scalar_i64(&pg, "SELECT count(*) FROM salesforce.account").await;
    let distinct = scalar_i64(&pg, "SELECT count(DISTINCT sfid) FROM salesforce.account").await;
    let diffs = differences(&config).await;
    let indexes = account_indexes(&pg).await;
    let batches = scalar_i64(
        &pg,
        "SELECT primary_bulk_batches FROM salesforce._driftless_mapping_state",
    )
    .await;
    engine.stop().await;
    sim.stop().await;
    eprintln!(
        "summary: {rows} rows, peak sessions {peak} of 3, {checked_mid_load} mid-load checks, \
         bulk batches {batches}, differences {diffs}"
    );
    assert!(peak <= 3, "peak sessions {peak} over db_pool_size 3");
    assert_eq!(rows, distinct);
    assert!(rows >= ACCOUNTS - 200, "{rows} rows");
    assert_eq!(indexes, expected_indexes());
    assert_eq!(diffs, 0);
}

/// A kill during the index build rolls its transaction back: the chunks are committed, the load is
/// not done, the table has no indexes. The next start sees the unindexed table, stays on the
/// fresh path, reads what is past the cursor, builds the indexes once, and the windows start at
/// the first attempt's high-water mark.
#[actix_rt::test]
async fn a_restart_after_a_crash_in_the_index_build_builds_them_and_keeps_the_mark() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 3_000)],
        ..Default::default()
    })
    .await;
    let config = config(&db, &sim.info, 3);
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_loaded(&engine).await;
    engine.stop().await;
    let pg = db.client().await;
    // What the rolled-back index build leaves: no index, no done flag. Plus a record copied twice
    // (the older copy first), as a chunk re-read would leave it.
    pg.batch_execute(
        "DROP INDEX salesforce.hcu_idx_account_sfid; \
         DROP INDEX salesforce.hc_idx_account_systemmodstamp; \
         DROP INDEX salesforce.hc_idx_account_name; \
         UPDATE salesforce._driftless_mapping_state SET initial_load_done = false, \
           initial_load_cursor = (SELECT max(sfid COLLATE \"C\") FROM salesforce.account); \
         DELETE FROM salesforce._driftless_windows; \
         INSERT INTO salesforce.account (sfid, systemmodstamp, isdeleted, name, _hc_lastop) \
           SELECT sfid, systemmodstamp - interval '1 day', false, 'stale copy', 'SYNCED' \
           FROM salesforce.account ORDER BY sfid LIMIT 1;",
    )
    .await
    .unwrap();
    let mark: chrono::DateTime<chrono::Utc> = pg
        .query_one(
            "SELECT synced_through FROM salesforce._driftless_mapping_state",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let engine = run(config.clone(), options())
        .await
        .expect("engine restarts");
    wait_loaded(&engine).await;
    let first_window_sql = "SELECT min(window_start) FROM salesforce._driftless_windows";
    wait_until("a primary window", Duration::from_secs(30), || async {
        let row = pg.query_one(first_window_sql, &[]).await.unwrap();
        row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(0)
            .is_some()
    })
    .await;
    let first_window: chrono::DateTime<chrono::Utc> =
        pg.query_one(first_window_sql, &[]).await.unwrap().get(0);
    let stale = scalar_i64(
        &pg,
        "SELECT count(*) FROM salesforce.account WHERE name = 'stale copy'",
    )
    .await;
    let diffs = differences(&config).await;
    let indexes = account_indexes(&pg).await;
    engine.stop().await;
    sim.stop().await;
    assert_eq!(indexes, expected_indexes());
    assert_eq!(stale, 0, "the older copy of a record read twice is removed");
    assert_eq!(first_window, mark, "windows start at the load's mark");
    assert_eq!(diffs, 0);
}
