//! kill -9 of the real `driftless run` in the middle of write-back: after a restart every row
//! written in Postgres exists in Salesforce exactly once (no duplicate from a resend, none lost),
//! rows written while it was down follow, and `driftless verify` finds no difference. Once on the
//! composite path, and once in the middle of a Bulk API 2.0 ingest job, whose results the restart
//! reads back instead of sending its rows again.

use driftless_testkit as common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_driftless");
const ROWS: i64 = 6_000;
const LATE_ROWS: i64 = 500;
const TABLE: &str = "salesforce.invoice__c";

fn write_files(db: &TestDb, sim: &sfsim::SimInfo) -> PathBuf {
    // Composite calls only, however long the queue.
    write_files_with(db, sim, Some("External_Id__c"), Some(1_000_000_000))
}

fn write_files_with(
    db: &TestDb,
    sim: &sfsim::SimInfo,
    upsert_field: Option<&str>,
    bulk_write_threshold: Option<u64>,
) -> PathBuf {
    let upsert = upsert_field
        .map(|f| format!(r#","upsert_field":"{f}""#))
        .unwrap_or_default();
    let mut builder = ConfigBuilder::new();
    if let Some(t) = bulk_write_threshold {
        builder = builder.sync("bulk_write_threshold", t);
    }
    builder
        .pool(3)
        .sync("poll_interval_secs", 1)
        .sync("secondary_delay_secs", 3)
        .sync("use_latest_date_covered", false)
        .without("secondary_concurrency")
        .without("bulk_threshold")
        .without("secondary_enabled")
        .write(
            db,
            sim,
            &format!(
                r#"{{"mappings":[
  {{"object_name":"Invoice__c","config":{{"access":"read_write","sf_polling_seconds":1,"sf_notify_enabled":false,
    "fields":{{"Id":{{}},"IsDeleted":{{}},"SystemModstamp":{{}},"Name":{{}},"External_Id__c":{{}},"Amount__c":{{}},"Notes__c":{{}}}},
    "indexes":{{"Id":{{"unique":true}},"SystemModstamp":{{"unique":false}},"External_Id__c":{{"unique":true}}}}{upsert}}}}}],"version":1}}"#
            ),
        )
        .path
}

fn driftless(args: &[&str], config: &Path, sim: &sfsim::SimInfo, log: &str) -> Command {
    driftless_testkit::driftless_command(BIN, args, config, sim, log)
}

fn start(config: &Path, sim: &sfsim::SimInfo, n: u32) -> Child {
    driftless(&["run"], config, sim, &format!("run-{n}.log"))
        .spawn()
        .expect("driftless run")
}

async fn count(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.map(|r| r.get(0)).unwrap_or(-1)
}

/// External_Id__c of every live Invoice__c in the simulator, with how many records carry it.
fn invoices_by_external_id(sim: &SimThread) -> HashMap<String, usize> {
    let org = &sim.org;
    let object = org.object_index("Invoice__c").unwrap();
    let ext = org.schema.objects[object]
        .field_index("External_Id__c")
        .unwrap();
    org.read(|tables| {
        let mut out: HashMap<String, usize> = HashMap::new();
        for r in tables[object]
            .iter()
            .filter(|r| !sfsim::store::is_deleted(r))
        {
            *out.entry(r[ext].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        out
    })
}

#[actix_rt::test]
async fn kill_9_during_write_back_neither_duplicates_nor_loses_a_write() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 10)],
        ..Default::default()
    })
    .await;
    let config = write_files(&db, &sim.info);
    let pg = db.client().await;
    let mut engine = start(&config, &sim.info, 1);
    wait_until("the mapping's table", Duration::from_secs(60), || async {
        count(
            &pg,
            "SELECT count(*) FROM salesforce._driftless_mapping_state WHERE initial_load_done",
        )
        .await
            == 1
    })
    .await;

    // Slow Salesforce down so the kill lands in the middle of the queue.
    sim_post(
        &sim.info,
        "/_sim/faults",
        serde_json::json!({"latency_ms": [250, 250]}),
    )
    .await;
    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c, amount__c)
         SELECT 'INV-' || g, 'ext-' || g, g FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();
    wait_until("write-back under way", Duration::from_secs(60), || async {
        count(
            &pg,
            &format!("SELECT count(*) FROM {TABLE} WHERE sfid IS NOT NULL"),
        )
        .await
            >= ROWS / 5
    })
    .await;
    engine.kill().expect("kill -9");
    engine.wait().unwrap();
    let synced_at_kill = count(
        &pg,
        &format!("SELECT count(*) FROM {TABLE} WHERE sfid IS NOT NULL"),
    )
    .await;
    assert!(
        synced_at_kill < ROWS,
        "write-back finished before the kill ({synced_at_kill} rows)"
    );

    // While it is down: more inserts, and updates of rows already sent.
    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c, amount__c)
         SELECT 'INV-' || g, 'ext-' || g, g FROM generate_series({}, {}) g;
         UPDATE {TABLE} SET notes__c = 'after the crash' WHERE external_id__c IN
           (SELECT 'ext-' || g FROM generate_series(1, 100) g)",
        ROWS + 1,
        ROWS + LATE_ROWS
    ))
    .await
    .unwrap();
    sim_delete(&sim.info, "/_sim/faults").await;

    let mut engine = start(&config, &sim.info, 2);
    wait_until("the queue drained", Duration::from_secs(120), || async {
        count(
            &pg,
            "SELECT count(*) FROM salesforce._trigger_log WHERE state IN ('NEW', 'PENDING')",
        )
        .await
            == 0
            && count(
                &pg,
                &format!("SELECT count(*) FROM {TABLE} WHERE sfid IS NULL"),
            )
            .await
                == 0
    })
    .await;

    let in_sf = invoices_by_external_id(&sim);
    let total = ROWS + LATE_ROWS;
    let duplicates: Vec<_> = in_sf.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicate records: {duplicates:?}");
    let missing: Vec<String> = (1..=total)
        .map(|g| format!("ext-{g}"))
        .filter(|e| !in_sf.contains_key(e))
        .collect();
    assert!(
        missing.is_empty(),
        "lost writes: {} e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(
        count(&pg, &format!("SELECT count(*) FROM {TABLE}")).await,
        total
    );
    let failed = count(
        &pg,
        "SELECT count(*) FROM salesforce._trigger_log WHERE state = 'FAILED'",
    )
    .await;
    assert_eq!(failed, 0);

    // Wait for the read side to see the last writes, then compare everything.
    tokio::time::sleep(Duration::from_secs(3)).await;
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
    engine.kill().unwrap();
    engine.wait().unwrap();
    let log = std::fs::read_to_string(config.with_file_name("verify.log")).unwrap();
    assert!(verify.success(), "verify: {log}");
    eprintln!("kill -9 after {synced_at_kill} of {ROWS} rows had their sfid");
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}

/// Calls the simulator counted on routes starting with `prefix` (`GET jobs/ingest/`...).
async fn calls_on(sim: &sfsim::SimInfo, prefix: &str) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{}/_sim/stats", sim.instance_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["api_calls"]["by_route"]
        .as_object()
        .map(|r| {
            r.iter()
                .filter(|(k, _)| k.starts_with(prefix) && !k.contains("Results"))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

#[actix_rt::test]
async fn kill_9_during_a_bulk_write_job_reads_its_results_after_the_restart() {
    const BULK_ROWS: i64 = 20_000;
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 10)],
        ..Default::default()
    })
    .await;
    let config = write_files_with(&db, &sim.info, Some("External_Id__c"), Some(100));
    let pg = db.client().await;
    let mut engine = start(&config, &sim.info, 1);
    wait_until("the mapping's table", Duration::from_secs(60), || async {
        count(
            &pg,
            "SELECT count(*) FROM salesforce._driftless_mapping_state WHERE initial_load_done",
        )
        .await
            == 1
    })
    .await;
    sim_post(
        &sim.info,
        "/_sim/faults",
        serde_json::json!({"latency_ms": [200, 200]}),
    )
    .await;
    let polls_before = calls_on(&sim.info, "GET jobs/ingest/").await;
    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c, amount__c)
         SELECT 'INV-' || g, 'ext-' || g, g FROM generate_series(1, {BULK_ROWS}) g"
    ))
    .await
    .unwrap();
    // The job is closed (the writer polls it) and its results are not read yet.
    wait_until("the bulk job running", Duration::from_secs(120), || async {
        calls_on(&sim.info, "GET jobs/ingest/").await > polls_before
    })
    .await;
    engine.kill().expect("kill -9");
    engine.wait().unwrap();
    let jobs_at_kill = count(
        &pg,
        "SELECT count(*) FROM salesforce._driftless_writeback_job",
    )
    .await;
    let synced_at_kill = count(
        &pg,
        &format!("SELECT count(*) FROM {TABLE} WHERE sfid IS NOT NULL"),
    )
    .await;
    assert_eq!(
        jobs_at_kill, 1,
        "the kill landed while the job was recorded"
    );
    assert_eq!(
        synced_at_kill, 0,
        "the job's outcomes were not recorded yet"
    );

    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c, amount__c)
         SELECT 'INV-' || g, 'ext-' || g, g FROM generate_series({}, {}) g",
        BULK_ROWS + 1,
        BULK_ROWS + LATE_ROWS
    ))
    .await
    .unwrap();
    sim_delete(&sim.info, "/_sim/faults").await;

    let mut engine = start(&config, &sim.info, 2);
    wait_until("the queue drained", Duration::from_secs(180), || async {
        count(
            &pg,
            "SELECT count(*) FROM salesforce._trigger_log WHERE state IN ('NEW', 'PENDING')",
        )
        .await
            == 0
            && count(
                &pg,
                &format!("SELECT count(*) FROM {TABLE} WHERE sfid IS NULL"),
            )
            .await
                == 0
    })
    .await;
    let in_sf = invoices_by_external_id(&sim);
    let total = BULK_ROWS + LATE_ROWS;
    let duplicates: Vec<_> = in_sf.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(duplicates.is_empty(), "duplicate records: {duplicates:?}");
    let missing = (1..=total)
        .filter(|g| !in_sf.contains_key(&format!("ext-{g}")))
        .count();
    assert_eq!(missing, 0, "lost writes");
    assert_eq!(in_sf.len() as i64, total);
    assert_eq!(
        count(&pg, &format!("SELECT count(*) FROM {TABLE}")).await,
        total,
        "a row twice in Postgres"
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM salesforce._trigger_log WHERE state = 'FAILED'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM salesforce._driftless_writeback_job"
        )
        .await,
        0
    );
    // Not one of the job's rows was claimed again: the restart settled them from its results.
    assert_eq!(
        count(
            &pg,
            &format!(
                "SELECT count(*) FROM salesforce._driftless_writeback w
                 JOIN salesforce._trigger_log l ON l.id = w.log_id
                 JOIN {TABLE} t ON t.id = l.record_id
                 WHERE w.attempts > 1 AND t.amount__c <= {BULK_ROWS}"
            )
        )
        .await,
        0,
        "rows of the job were sent again"
    );
    assert_eq!(
        count(
            &pg,
            &format!(
                "SELECT count(*) FROM salesforce._driftless_writeback w
                 JOIN salesforce._trigger_log l ON l.id = w.log_id
                 JOIN {TABLE} t ON t.id = l.record_id
                 WHERE w.attempts = 1 AND t.amount__c <= {BULK_ROWS}"
            )
        )
        .await,
        BULK_ROWS,
        "each of the job's rows was claimed once"
    );
    let log = std::fs::read_to_string(config.with_file_name("run-2.log")).unwrap();
    assert!(
        log.contains("reading the results of a bulk write job started before"),
        "{log}"
    );
    engine.kill().unwrap();
    engine.wait().unwrap();
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}
