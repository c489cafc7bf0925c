//! kill -9 of the real `driftless run`, during the initial load and again during incremental sync
//! under a workload: each restart resumes, `driftless verify` exits 0 once sync has caught up,
//! and the windows bookkeeping shows primary windows contiguous and non-overlapping, each window
//! committed once (its start is unique), so no committed window was read again by a primary poll.

use driftless_testkit as common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;

const ACCOUNTS: u64 = 30_000;
const BIN: &str = env!("CARGO_BIN_EXE_driftless");

fn write_files(db: &TestDb, sim: &sfsim::SimInfo) -> PathBuf {
    // Windows close up to now - margin rather than at getUpdated's minute-truncated
    // latestDateCovered, so sync catches up within seconds of the workload stopping; the workload
    // has no long transactions and secondary polls are on besides.
    ConfigBuilder::new()
        .pool(3)
        .sync("poll_interval_secs", 1)
        .sync("secondary_delay_secs", 3)
        .sync("secondary_concurrency", 1)
        .sync("bulk_threshold", 2000)
        .sync("use_latest_date_covered", false)
        .write(
            db,
            sim,
            r#"{"mappings":[
      {"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":1,"sf_notify_enabled":false,
        "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"CreatedDate":{},"Name":{},"Type":{},"Industry":{},
                  "AnnualRevenue":{},"NumberOfEmployees":{},"Phone":{},"BillingCity":{},"Description":{}},
        "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}
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

async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    pg: &tokio_postgres::Client,
    sql: &str,
) -> Option<T> {
    // Before the engine creates its tables the query fails: treat as "not yet".
    pg.query_one(sql, &[]).await.ok().map(|r| r.get(0))
}

async fn bulk_jobs_posted(sim: &sfsim::SimInfo) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{}/_sim/stats", sim.instance_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["bulk_v1"]["jobs"].as_u64().unwrap_or(0) + stats["bulk_v2"]["jobs"].as_u64().unwrap_or(0)
}

#[actix_rt::test]
async fn kill_9_during_load_and_sync_resumes_without_rereading_or_differences() {
    let started = Instant::now();
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), ACCOUNTS)],
        // A Bulk batch of 7,500 rows then takes 0.5 s to process: the load lasts long enough
        // to be killed in the middle.
        bulk_rows_per_sec: Some(15_000),
        ..Default::default()
    })
    .await;
    let config = write_files(&db, &sim.info);
    let pg = db.client().await;

    // 1. kill -9 in the middle of the initial load: once its Bulk job is running.
    let mut engine = start_engine(&config, &sim.info, 1);
    wait_until(
        "the initial load's bulk job",
        Duration::from_secs(60),
        || async { bulk_jobs_posted(&sim.info).await > 0 },
    )
    .await;
    let rows_at_kill: i64 = scalar(&pg, "SELECT count(*) FROM salesforce.account")
        .await
        .unwrap_or(0);
    let done: Option<bool> = scalar(
        &pg,
        "SELECT initial_load_done FROM salesforce._driftless_mapping_state",
    )
    .await;
    kill_9(&mut engine);
    assert_ne!(
        done,
        Some(true),
        "killed after the initial load, not during it"
    );

    // 2. Restart: the load starts over and completes.
    let mut engine = start_engine(&config, &sim.info, 2);
    wait_until(
        "initial load after the restart",
        Duration::from_secs(90),
        || async {
            scalar::<bool>(
                &pg,
                "SELECT initial_load_done FROM salesforce._driftless_mapping_state",
            )
            .await
                == Some(true)
        },
    )
    .await;
    let loaded: i64 = scalar(&pg, "SELECT count(*) FROM salesforce.account")
        .await
        .unwrap();
    assert_eq!(loaded, ACCOUNTS as i64);
    let load_secs = started.elapsed().as_secs_f64();

    // 3. A workload; kill -9 in the middle of it, once some windows are committed, and restart.
    sim_post(
        &sim.info,
        "/_sim/workload",
        serde_json::json!({"object": "Account", "inserts_per_sec": 20, "updates_per_sec": 100, "deletes_per_sec": 5}),
    )
    .await;
    wait_until(
        "windows committed under the workload",
        Duration::from_secs(30),
        || async {
            scalar::<i64>(
                &pg,
                "SELECT count(*) FROM salesforce._driftless_windows WHERE primary_records > 0",
            )
            .await
            .unwrap_or(0)
                >= 2
        },
    )
    .await;
    let windows_at_kill: i64 = scalar(&pg, "SELECT count(*) FROM salesforce._driftless_windows")
        .await
        .unwrap();
    kill_9(&mut engine);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut engine = start_engine(&config, &sim.info, 3);
    wait_until(
        "windows committed after the restart",
        Duration::from_secs(30),
        || async {
            scalar::<i64>(&pg, "SELECT count(*) FROM salesforce._driftless_windows")
                .await
                .unwrap_or(0)
                >= windows_at_kill + 2
        },
    )
    .await;
    sim_delete(&sim.info, "/_sim/workload").await;
    let stopped = Utc::now() + chrono::Duration::seconds(1);

    // 4. Catch up: primary windows past the stop, and their secondary polls done.
    wait_until("sync caught up", Duration::from_secs(60), || async {
        let through: Option<Option<DateTime<Utc>>> = scalar(
            &pg,
            "SELECT synced_through FROM salesforce._driftless_mapping_state",
        )
        .await;
        let pending: i64 = scalar(
            &pg,
            &format!(
                "SELECT count(*) FROM salesforce._driftless_windows \
                 WHERE window_start < '{}' AND secondary_done_at IS NULL",
                stopped.to_rfc3339()
            ),
        )
        .await
        .unwrap_or(1);
        through.flatten().is_some_and(|t| t > stopped) && pending == 0
    })
    .await;

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
    eprintln!("verify: {verify_log}");

    // 5. The windows: contiguous, non-overlapping, one row (one commit) per window start.
    let windows: Vec<(DateTime<Utc>, DateTime<Utc>, i64)> = pg
        .query(
            "SELECT window_start, window_end, primary_records FROM salesforce._driftless_windows \
             WHERE connection = 'acme' AND object_name = 'Account' ORDER BY window_start",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let primary_polls: i64 = scalar(
        &pg,
        "SELECT primary_polls FROM salesforce._driftless_mapping_state",
    )
    .await
    .unwrap();
    let drift: i64 = scalar(
        &pg,
        "SELECT drift_records FROM salesforce._driftless_mapping_state",
    )
    .await
    .unwrap();
    eprintln!(
        "summary: rows at the first kill {rows_at_kill}, load done at {load_secs:.1}s, \
         {} windows ({windows_at_kill} at the second kill, {} records), primary polls committed {primary_polls}, drift {drift}, verify {verify}, total {:.1}s",
        windows.len(),
        windows.iter().map(|w| w.2).sum::<i64>(),
        started.elapsed().as_secs_f64()
    );
    sim.stop().await;
    assert!(verify.success(), "driftless verify: {verify}\n{verify_log}");
    assert!(windows.len() > windows_at_kill as usize);
    // Every committed primary poll is its own window row: none committed a window twice.
    assert_eq!(windows.len() as i64, primary_polls, "windows {windows:?}");
    for pair in windows.windows(2) {
        let ((_, end, _), (next_start, _, _)) = (pair[0], pair[1]);
        assert_eq!(
            end, next_start,
            "windows neither contiguous nor disjoint: {:?} then {:?}",
            pair[0], pair[1]
        );
    }
}
