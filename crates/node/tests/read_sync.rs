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

mod common;

use std::time::Duration;

use chrono::Utc;
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

    sim_post(&sim.info, "/_sim/workload", serde_json::json!({
        "object": "Account", "inserts_per_sec": 15, "updates_per_sec": 120, "deletes_per_sec": 8,
        "long_txn_fraction": 0.2, "long_txn_ms": [1000, 3000]
    }))
    .await;
    sim_post(
        &sim.info,
        "/_sim/workload",
        serde_json::json!({
            "object": "Contact", "inserts_per_sec": 5, "updates_per_sec": 40, "deletes_per_sec": 2,
            "long_txn_fraction": 0.2, "long_txn_ms": [1000, 3000]
        }),
    )
    .await;
    if setup.faults {
        sim_post(
            &sim.info,
            "/_sim/faults",
            serde_json::json!({"http_error_rate": 0.05, "http_error_status": 503, "latency_ms": [0, 30]}),
        )
        .await;
    }
    let workload_started = Utc::now();
    wait_until(
        "a few primary polls under load",
        Duration::from_secs(60),
        || async { Utc::now() - workload_started > chrono::Duration::seconds(6) },
    )
    .await;
    sim_delete(&sim.info, "/_sim/workload").await;
    let stopped = Utc::now() + chrono::Duration::seconds(1);

    let pg = db.client().await;
    wait_until(
        "windows past the workload read",
        Duration::from_secs(90),
        || async {
            let s = engine.status().await;
            s.mappings.iter().all(|m| {
                m.synced_through
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > stopped)
            })
        },
    )
    .await;
    if setup.secondary_enabled {
        wait_until(
            "secondary polls of those windows",
            Duration::from_secs(90),
            || async {
                let row = pg
                    .query_one(
                        "SELECT count(*) FROM salesforce._driftless_windows \
                     WHERE window_start < $1 AND secondary_done_at IS NULL",
                        &[&stopped],
                    )
                    .await
                    .unwrap();
                row.get::<_, i64>(0) == 0
            },
        )
        .await;
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
    assert!(matches!(err, driftless_node::NodeError::Config(_)), "{err}");
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
