//! End to end: the simulator, a fresh Postgres database, and the engine in-process.
//!
//! The sync tests poll the way Heroku Connect's primary poll does (`honor_latest_date_covered =
//! false`): the simulator's getUpdated faithfully holds `latestDateCovered` back to the oldest
//! open transaction, truncated to the minute, so an engine that honours it never misses a long
//! transaction and windows close only once a minute. Without it, long transactions commit behind
//! closed windows, which is the drift secondary polls exist to repair and these tests measure.
//!
//! Long transactions last up to 3 s; the secondary delay is 6 s rather than 4 so that a second or
//! two of scheduling lag on a loaded machine cannot let a commit land after its window's secondary
//! poll (which would be real, unrepaired drift: the delay must exceed the longest transaction).

use driftless_testkit as common;

use std::time::Duration;

use common::*;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, RunOptions};

const ACCOUNTS: u64 = 2000;
const CONTACTS: u64 = 1500;

fn options() -> RunOptions {
    RunOptions {
        honor_latest_date_covered: false,
        batch_rows: 1000,
        ..RunOptions::default()
    }
}

fn verify_options(repair: bool) -> VerifyOptions {
    VerifyOptions {
        repair,
        max_listed: 5,
        batch_rows: 1000,
        ..VerifyOptions::default()
    }
}

/// Shows both sides of each listed difference, to tell a sync bug from a representation one.
async fn explain(
    pg: &tokio_postgres::Client,
    sim: &sfsim::SimInfo,
    reports: &[driftless_node::verify::MappingReport],
) {
    for r in reports {
        for (_, sfid) in &r.examples {
            let table = r.object.to_lowercase();
            let row = pg
                .query_opt(
                    &format!(
                        "SELECT row_to_json(t)::text FROM salesforce.{table} t WHERE sfid = $1"
                    ),
                    &[sfid],
                )
                .await
                .unwrap()
                .map(|r| r.get::<_, String>(0));
            let export = reqwest::get(format!("{}/_sim/export/{}", sim.instance_url, r.object))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let header = export.lines().next().unwrap_or_default().to_owned();
            let line = export
                .lines()
                .find(|l| l.contains(sfid.as_str()))
                .unwrap_or_default()
                .to_owned();
            eprintln!("difference {sfid}\n  postgres:   {row:?}\n  salesforce: {header}\n              {line}");
        }
    }
}

struct Outcome {
    differences: i64,
    account_drift: i64,
    peak_connections: i64,
    status: driftless_node::StatusDoc,
    /// Account windows read by Bulk whose secondary poll is done, and their primary batches.
    bulk_windows: i64,
    bulk_window_batches: i64,
    /// What `verify --repair` fixed (only without secondary polls), and what verify found after.
    repaired: Option<i64>,
    after_repair: i64,
    /// drift_records in the bookkeeping, secondary polls and repairs together.
    repaired_drift: i64,
    /// Rows in `_trigger_log`: the sync's own writes are never captured, so always 0.
    captured: i64,
}

/// Loads, runs a workload with long transactions, stops it, waits until every window up to the
/// stop is read (and re-read when secondary polls are on), then verifies.
async fn load_then_workload(setup: Setup, run_options: RunOptions) -> Outcome {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), ACCOUNTS), ("Contact".into(), CONTACTS)],
        ..Default::default()
    })
    .await;
    let config = write_config(&db, &sim.info, &setup);
    let sampler = ConnectionSampler::start(&db, "driftless/acme/sync").await;
    let engine = run(config.clone(), run_options)
        .await
        .expect("engine starts");

    wait_until("initial load", Duration::from_secs(120), || async {
        let s = engine.status().await;
        s.mappings
            .iter()
            .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some())
    })
    .await;
    let s = engine.status().await;
    assert_eq!(mapping(&s, "Account").rows, ACCOUNTS as i64);
    assert_eq!(mapping(&s, "Contact").rows, CONTACTS as i64);
    let initial = verify(&config, &verify_options(false))
        .await
        .expect("verify");
    assert!(
        initial.iter().all(|r| r.differences() == 0),
        "after load: {initial:?}"
    );

    if setup.faults {
        sim_post(
            &sim.info,
            "/_sim/faults",
            serde_json::json!({"http_error_rate": 0.05, "http_error_status": 503, "latency_ms": [0, 30]}),
        )
        .await;
    }
    let stopped = run_workload(&sim.info, &sync_test_workloads(), Duration::from_secs(6)).await;

    let pg = db.client().await;
    wait_synced_past(&engine, stopped, Duration::from_secs(90)).await;
    if setup.secondary_enabled {
        wait_secondary_done(&pg, "salesforce", stopped, Duration::from_secs(90)).await;
    }

    let reports = verify(&config, &verify_options(false))
        .await
        .expect("verify");
    for r in &reports {
        eprintln!(
            "verify {}/{}: {:?} examples {:?}",
            r.connection, r.object, r.counts, r.examples
        );
    }
    if setup.secondary_enabled {
        explain(&pg, &sim.info, &reports).await;
    }
    let status = engine.status().await;
    eprintln!("status: {}", serde_json::to_string(&status).unwrap());

    // The admin endpoint serves the same document, behind the bearer token.
    let addr = engine.admin_addr().expect("admin listens");
    let http = reqwest::Client::new();
    let denied = http
        .get(format!("http://{addr}/api/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let served: driftless_node::StatusDoc = http
        .get(format!("http://{addr}/api/v1/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served.mappings.len(), 2);
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("driftless_drift_records_total{connection=\"acme\",object=\"Account\"}")
    );

    let windows = pg
        .query_one(
            "SELECT count(*) FILTER (WHERE kind = 'bulk'), \
             coalesce(sum(jsonb_array_length(batches)) FILTER (WHERE kind = 'bulk'), 0)::bigint \
             FROM salesforce._driftless_windows WHERE object_name = 'Account' AND secondary_done_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    let (bulk_windows, bulk_window_batches): (i64, i64) = (windows.get(0), windows.get(1));

    let repair = if setup.secondary_enabled {
        None
    } else {
        Some(
            verify(&config, &verify_options(true))
                .await
                .expect("verify --repair"),
        )
    };
    let after_repair = match &repair {
        Some(_) => verify(&config, &verify_options(false))
            .await
            .expect("verify"),
        None => vec![],
    };
    let repaired_drift: i64 = pg
        .query_one(
            "SELECT coalesce(sum(drift_records), 0)::bigint FROM salesforce._driftless_mapping_state",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    // The engine's own writes (loads, polls, repairs) must never reach the write-back capture.
    let captured: i64 = pg
        .query_one("SELECT count(*) FROM salesforce._trigger_log", &[])
        .await
        .unwrap()
        .get(0);

    engine.stop().await;
    let peak = sampler.peak();
    let a = mapping(&status, "Account");
    eprintln!(
        "summary: secondary={} bulk_threshold={} differences={} drift(Account)={} drift(Contact)={} \
         peak_connections={peak}/{} account_primary_polls={} account_secondary_polls={} \
         bulk_windows={bulk_windows} api_calls(Account)={}",
        setup.secondary_enabled,
        setup.bulk_threshold,
        reports.iter().map(|r| r.differences()).sum::<i64>(),
        a.secondary.drift_records,
        mapping(&status, "Contact").secondary.drift_records,
        setup.db_pool_size,
        a.primary.polls,
        a.secondary.polls,
        a.api_calls,
    );
    drop(sampler);
    sim.stop().await;
    Outcome {
        differences: reports.iter().map(|r| r.differences()).sum(),
        account_drift: mapping(&status, "Account").secondary.drift_records,
        peak_connections: peak,
        status,
        bulk_windows,
        bulk_window_batches,
        repaired: repair.map(|r| r.iter().map(|r| r.repaired).sum()),
        after_repair: after_repair.iter().map(|r| r.differences()).sum(),
        repaired_drift,
        captured,
    }
}

#[actix_rt::test]
async fn rest_sync_with_secondary_polls_ends_without_differences() {
    let out = load_then_workload(
        Setup {
            faults: true,
            bulk_threshold: 100_000,
            secondary_enabled: true,
            db_pool_size: 2,
        },
        options(),
    )
    .await;
    assert_eq!(out.differences, 0, "verify after secondary polls");
    assert_eq!(
        out.captured, 0,
        "the sync's own writes were captured for write-back"
    );
    assert!(out.account_drift > 0, "secondary polls repaired drift");
    assert!(
        out.peak_connections <= 2,
        "peak {} connections",
        out.peak_connections
    );
    let a = mapping(&out.status, "Account");
    assert!(a.secondary.polls > 0 && a.secondary.rest_queries > 0);
    assert_eq!(a.primary.bulk_jobs, 0);
}

#[actix_rt::test]
async fn bulk_sync_with_secondary_polls_ends_without_differences() {
    let out = load_then_workload(
        Setup {
            faults: false,
            bulk_threshold: 40,
            secondary_enabled: true,
            db_pool_size: 3,
        },
        options(),
    )
    .await;
    assert_eq!(out.differences, 0, "verify after secondary polls");
    assert_eq!(
        out.captured, 0,
        "the sync's own writes were captured for write-back"
    );
    assert!(
        out.peak_connections <= 3,
        "peak {} connections",
        out.peak_connections
    );
    let a = mapping(&out.status, "Account");
    assert!(
        a.primary.bulk_jobs >= 2,
        "initial load and busy windows via bulk: {a:?}"
    );
    // One secondary bulk job per primary bulk window, one batch per primary batch (invariant 5).
    assert!(out.bulk_windows >= 1, "some windows were read by bulk");
    assert_eq!(a.secondary.bulk_jobs, out.bulk_windows, "{a:?}");
    assert_eq!(a.secondary.bulk_batches, out.bulk_window_batches, "{a:?}");
}

#[actix_rt::test]
async fn without_secondary_polls_long_transactions_leave_differences() {
    let out = load_then_workload(
        Setup {
            faults: false,
            bulk_threshold: 100_000,
            secondary_enabled: false,
            db_pool_size: 2,
        },
        options(),
    )
    .await;
    assert!(out.differences > 0, "drift the primary poll cannot see");
    assert_eq!(mapping(&out.status, "Account").secondary.polls, 0);
    // verify --repair fixes them through the merge and counts them as drift.
    assert_eq!(out.repaired, Some(out.differences));
    assert_eq!(out.after_repair, 0);
    assert_eq!(out.repaired_drift, out.differences);
    assert_eq!(
        out.captured, 0,
        "verify --repair's writes were captured for write-back"
    );
}

#[actix_rt::test]
async fn a_mapping_that_does_not_match_the_describe_is_a_configuration_error() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig::default()).await;
    let config = write_config(
        &db,
        &sim.info,
        &Setup {
            faults: false,
            bulk_threshold: 10,
            secondary_enabled: true,
            db_pool_size: 1,
        },
    );
    let path = config.connections[0].mappings.clone();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"Phone\":{}", "\"Phone\":{},\"Bogus__c\":{}"),
    )
    .unwrap();
    let err = match run(config, options()).await {
        Ok(_) => panic!("engine started with a bad mapping"),
        Err(e) => e,
    };
    assert!(
        matches!(err, driftless_node::NodeError::Config { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("config.fields.Bogus__c: no such field on Account"),
        "{err}"
    );
    sim.stop().await;
}

/// A field added to the mapping file is a new column, filled from Salesforce on the next start
/// (Heroku Connect's RESYNC), while the window progress carries on from where it was.
#[actix_rt::test]
async fn a_restart_resumes_and_backfills_a_newly_mapped_field() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 300), ("Contact".into(), 200)],
        ..Default::default()
    })
    .await;
    let setup = Setup {
        faults: false,
        bulk_threshold: 100_000,
        secondary_enabled: true,
        db_pool_size: 2,
    };
    let config = write_config(&db, &sim.info, &setup);
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_until("initial load", Duration::from_secs(60), || async {
        let s = engine.status().await;
        s.mappings
            .iter()
            .all(|m| m.state == "DATA_SYNCED" && m.rows > 0)
    })
    .await;
    let first = engine.status().await;
    engine.stop().await;

    let path = config.connections[0].mappings.clone();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"Phone\":{}", "\"Phone\":{},\"Website\":{}"),
    )
    .unwrap();
    let engine = run(config.clone(), options())
        .await
        .expect("engine restarts");
    let pg = db.client().await;
    wait_until("website backfilled", Duration::from_secs(60), || async {
        let s = engine.status().await;
        if mapping(&s, "Account").state != "DATA_SYNCED" {
            return false;
        }
        let row = pg
            .query_one("SELECT count(website) FROM salesforce.account", &[])
            .await
            .unwrap();
        row.get::<_, i64>(0) > 0
    })
    .await;
    let second = engine.status().await;
    assert!(
        mapping(&second, "Account").synced_through >= mapping(&first, "Account").synced_through,
        "progress resumed, not restarted"
    );
    let epoch: i64 = pg
        .query_one(
            "SELECT owner_epoch FROM salesforce._driftless_mapping_state WHERE object_name = 'Account'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(epoch, 2, "each start is a new owner");
    let reports = verify(&config, &verify_options(false))
        .await
        .expect("verify");
    assert!(reports.iter().all(|r| r.differences() == 0), "{reports:?}");
    engine.stop().await;
    sim.stop().await;
}

/// The default: windows never close past getUpdated's latestDateCovered, so long transactions are
/// never missed, even without secondary polls. Slower than the others: the simulator, like
/// Salesforce, truncates latestDateCovered to the minute, so the last window closes only after
/// the next minute starts.
#[actix_rt::test]
async fn honoring_latest_date_covered_misses_nothing_even_without_secondary_polls() {
    let out = load_then_workload(
        Setup {
            faults: false,
            bulk_threshold: 100_000,
            secondary_enabled: false,
            db_pool_size: 2,
        },
        RunOptions {
            batch_rows: 1000,
            ..RunOptions::default()
        },
    )
    .await;
    assert_eq!(out.differences, 0, "nothing missed");
    assert_eq!(out.repaired, Some(0));
}

/// QUERY_TIMEOUT on every result over 600 rows: the initial load's REST query falls back to Bulk
/// with PK chunking, and chunks shrink until they pass; the load still completes.
#[actix_rt::test]
async fn query_timeouts_fall_back_to_bulk_with_smaller_chunks() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 2000), ("Contact".into(), 300)],
        ..Default::default()
    })
    .await;
    sim_post(
        &sim.info,
        "/_sim/faults",
        serde_json::json!({"query_timeout_above_rows": 600}),
    )
    .await;
    let setup = Setup {
        faults: false,
        bulk_threshold: 100_000,
        secondary_enabled: true,
        db_pool_size: 2,
    };
    let config = write_config(&db, &sim.info, &setup);
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_until(
        "load despite timeouts",
        Duration::from_secs(120),
        || async {
            let s = engine.status().await;
            s.mappings
                .iter()
                .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some())
        },
    )
    .await;
    let s = engine.status().await;
    let a = mapping(&s, "Account");
    assert_eq!(a.rows, 2000);
    assert!(a.errors >= 1, "the timeouts were seen: {a:?}");
    assert!(a.primary.bulk_jobs >= 1, "fell back to bulk: {a:?}");
    sim_delete(&sim.info, "/_sim/faults").await;
    let reports = verify(&config, &verify_options(false))
        .await
        .expect("verify");
    explain(&db.client().await, &sim.info, &reports).await;
    assert!(reports.iter().all(|r| r.differences() == 0), "{reports:?}");
    engine.stop().await;
    sim.stop().await;
}

/// (records served, Bulk 1.0 batches) so far, from the simulator's counters.
async fn served(sim: &sfsim::SimInfo) -> (i64, i64) {
    let stats: serde_json::Value = reqwest::get(format!("{}/_sim/stats", sim.instance_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        stats["records_served"].as_i64().unwrap(),
        stats["bulk_v1"]["batches"].as_i64().unwrap(),
    )
}

/// A stop in the middle of a Bulk initial load, then a start: the load resumes after the last
/// PK chunk it committed (PK chunking from `startRow`, `Id > cursor`), so the records already in
/// the table are not served again; windows start at the first attempt's high-water mark; and the
/// table ends equal to Salesforce. The rows per transaction come from `connection.sync.batch_rows`.
#[actix_rt::test]
async fn an_interrupted_bulk_load_resumes_after_its_committed_chunks() {
    interrupted_load_resumes(1000).await;
}

/// The same through a REST query, read `ORDER BY Id` so that every committed row is a cursor.
#[actix_rt::test]
async fn an_interrupted_rest_load_resumes_after_its_committed_rows() {
    interrupted_load_resumes(1_000_000).await;
}

async fn interrupted_load_resumes(bulk_threshold: u64) {
    const TOTAL: i64 = 40_000;
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), TOTAL as u64)],
        ..Default::default()
    })
    .await;
    let account_only = r#"{"mappings":[
      {"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":2,"sf_notify_enabled":false,
        "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"Industry":{},"AnnualRevenue":{},"Description":{}},
        "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}
    ],"version":1}"#;
    let setup = Setup {
        faults: false,
        bulk_threshold,
        secondary_enabled: true,
        db_pool_size: 2,
    };
    let config = write_config_ext(
        &db,
        &sim.info,
        &setup,
        account_only,
        &ConfigExtra {
            sync: "batch_rows = 400\n".into(),
            ..ConfigExtra::default()
        },
    );
    // The engine is told 1000 rows; the config file's 400 win.
    let engine = run(config.clone(), options()).await.expect("engine starts");
    let pg = db.client().await;
    let state_sql =
        "SELECT initial_load_cursor, synced_through, initial_load_done, primary_records \
                     FROM salesforce._driftless_mapping_state WHERE object_name = 'Account'";
    let mut cursor_seen = false;
    for _ in 0..3000 {
        if let Ok(Some(row)) = pg.query_opt(state_sql, &[]).await {
            if row.get::<_, Option<String>>(0).is_some() {
                cursor_seen = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cursor_seen, "the load committed a cursor");
    engine.stop().await;

    let row = pg.query_one(state_sql, &[]).await.unwrap();
    let cursor: String = row.get(0);
    let mark: chrono::DateTime<chrono::Utc> = row.get(1);
    assert!(!row.get::<_, bool>(2), "stopped before the load finished");
    let committed: i64 = row.get(3);
    let loaded: i64 = pg
        .query_one("SELECT count(*) FROM salesforce.account", &[])
        .await
        .unwrap()
        .get(0);
    let covered: i64 = pg
        .query_one(
            "SELECT count(*) FROM salesforce.account WHERE sfid COLLATE \"C\" <= $1",
            &[&cursor],
        )
        .await
        .unwrap()
        .get(0);
    assert!(loaded < TOTAL, "the stop came mid-load: {loaded} rows");
    assert!(covered > 0 && covered <= loaded, "{covered} of {loaded}");
    // Commits of 400 rows (REST: batch_rows from the config file, not the engine's 1000), or
    // whole PK chunks of 10,000 (the fresh Bulk load commits one chunk per transaction).
    assert_eq!(committed, loaded);
    assert_eq!(committed % 400, 0, "{committed} rows committed");

    let (served_before, batches_before) = served(&sim.info).await;
    let engine = run(config.clone(), options())
        .await
        .expect("engine restarts");
    wait_until("the resumed load", Duration::from_secs(120), || async {
        let s = engine.status().await;
        s.mappings
            .iter()
            .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some())
    })
    .await;
    let (served_now, batches_now) = served(&sim.info).await;
    let (served_after, batches_after) = (served_now - served_before, batches_now - batches_before);
    let first_window_sql = "SELECT min(window_start) FROM salesforce._driftless_windows";
    wait_until("a primary window", Duration::from_secs(30), || async {
        let row = pg.query_one(first_window_sql, &[]).await.unwrap();
        row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(0)
            .is_some()
    })
    .await;
    let first_window: chrono::DateTime<chrono::Utc> =
        pg.query_one(first_window_sql, &[]).await.unwrap().get(0);
    let reports = verify(&config, &verify_options(false))
        .await
        .expect("verify");
    engine.stop().await;
    sim.stop().await;
    eprintln!(
        "summary: bulk_threshold={bulk_threshold}: stopped with {loaded} rows ({committed} counted, {covered} under the cursor), \
         the restart was served {served_after} records of {TOTAL} in {batches_after} bulk batches"
    );
    if bulk_threshold < TOTAL as u64 {
        // The submitted batch and PK chunks of 7,500 (a quarter of the 30,000 left) over the
        // 30,001 Ids from startRow (the cursor's own Id included): 6. Chunked from the first Id
        // they would span all 40,000: 7.
        assert!(batches_after <= 6, "{batches_after} bulk batches");
    } else {
        assert_eq!(batches_after, 0);
    }
    assert!(
        served_after <= TOTAL - covered,
        "records under the committed cursor were read again: {served_after} served, {covered} covered"
    );
    assert_eq!(
        first_window, mark,
        "windows start at the first attempt's mark"
    );
    assert!(reports.iter().all(|r| r.differences() == 0), "{reports:?}");
}
