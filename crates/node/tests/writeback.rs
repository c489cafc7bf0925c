//! Write-back end to end: rows written in Postgres reach the simulator through the WriteBack actor
//! (composite collections, upsert on External_Id__c), with the read side running as in production.
//!
//! The crash test stops the engine's whole actix System in the middle of a batch (its thread's
//! runtime is dropped, so every task dies at its next await and Postgres rolls back whatever was
//! open), which is what kill -9 does to the process as far as Postgres and Salesforce can tell.

use driftless_testkit as common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use common::*;
use driftless_core::config::Config;
use driftless_node::db_writer::DbWriter;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, RunOptions};

const MAPPINGS: &str = r#"{"mappings":[
  {"object_name":"Invoice__c","config":{"access":"read_write","sf_polling_seconds":1,"sf_notify_enabled":false,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"External_Id__c":{},"Amount__c":{},
              "Status__c":{},"Paid__c":{},"Account__c":{},"Notes__c":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false},"External_Id__c":{"unique":true}},
    "upsert_field":"External_Id__c"}}
],"version":1}"#;

const TABLE: &str = "salesforce.invoice__c";

fn setup() -> Setup {
    Setup {
        faults: false,
        bulk_threshold: 2000,
        secondary_enabled: true,
        db_pool_size: 3,
    }
}

fn options() -> RunOptions {
    RunOptions {
        honor_latest_date_covered: false,
        batch_rows: 2000,
        serve_admin: false,
        ..RunOptions::default()
    }
}

/// Live (not deleted) Invoice__c records in the simulator: External_Id__c → (Id, Notes__c, Amount__c).
fn live_invoices(sim: &SimThread) -> Vec<(String, String, Option<String>, Option<f64>)> {
    let org = &sim.org;
    let object = org.object_index("Invoice__c").unwrap();
    let def = &org.schema.objects[object];
    let ext = def.field_index("External_Id__c").unwrap();
    let notes = def.field_index("Notes__c").unwrap();
    let amount = def.field_index("Amount__c").unwrap();
    org.read(|tables| {
        tables[object]
            .iter()
            .filter(|r| !sfsim::store::is_deleted(r))
            .map(|r| {
                let amount = match &r[amount] {
                    sfsim::value::Value::Double(d) => Some(*d),
                    sfsim::value::Value::Int(i) => Some(*i as f64),
                    _ => None,
                };
                (
                    r[ext].as_str().unwrap_or_default().to_owned(),
                    sfsim::store::record_id(r).to_owned(),
                    r[notes].as_str().map(str::to_owned),
                    amount,
                )
            })
            .collect()
    })
}

async fn count(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.unwrap().get(0)
}

async fn differences(config: &Config) -> i64 {
    let reports = verify(
        config,
        &VerifyOptions {
            max_listed: 5,
            batch_rows: 2000,
            ..VerifyOptions::default()
        },
    )
    .await
    .expect("verify");
    let n = reports.iter().map(|r| r.differences()).sum();
    if n > 0 {
        eprintln!("verify: {reports:?}");
    }
    n
}

async fn start_sim() -> SimThread {
    SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 20)],
        ..Default::default()
    })
    .await
}

async fn wait_synced(engine: &driftless_node::NodeHandle) {
    wait_until("initial load", Duration::from_secs(60), || async {
        let s = engine.status().await;
        s.mappings.iter().all(|m| m.state == "DATA_SYNCED")
    })
    .await;
}

async fn wait_no_pending(pg: &tokio_postgres::Client, timeout: Duration) {
    wait_until("write-back queue empty", timeout, || async {
        count(
            pg,
            "SELECT count(*) FROM salesforce._trigger_log WHERE state IN ('NEW', 'PENDING')",
        )
        .await
            == 0
    })
    .await;
}

#[actix_rt::test]
async fn ten_thousand_inserts_then_updates_and_deletes() {
    const ROWS: i64 = 10_000;
    let db = TestDb::create().await;
    let sim = start_sim().await;
    let config = write_config_with(&db, &sim.info, &setup(), MAPPINGS);
    let sampler = ConnectionSampler::start(&db, "driftless/acme/sync").await;
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_synced(&engine).await;
    let pg = db.client().await;

    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c, amount__c, status__c, paid__c)
         SELECT 'INV-' || g, 'ext-' || g, g, 'Draft', false FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();
    let started = std::time::Instant::now();
    wait_until(
        "every row has its sfid",
        Duration::from_secs(300),
        || async {
            count(
                &pg,
                &format!("SELECT count(*) FROM {TABLE} WHERE sfid IS NULL"),
            )
            .await
                == 0
        },
    )
    .await;
    eprintln!("{ROWS} inserts written back in {:?}", started.elapsed());

    // Exactly once in Salesforce, and each row holds the Id of its own record.
    let live = live_invoices(&sim);
    assert_eq!(live.len() as i64, ROWS, "records in Salesforce");
    let by_ext: HashMap<&str, &str> = live
        .iter()
        .map(|(e, id, _, _)| (e.as_str(), id.as_str()))
        .collect();
    assert_eq!(by_ext.len() as i64, ROWS, "one record per external id");
    let rows = pg
        .query(&format!("SELECT external_id__c, sfid FROM {TABLE}"), &[])
        .await
        .unwrap();
    assert_eq!(rows.len() as i64, ROWS, "no duplicate rows from the echo");
    for r in &rows {
        let ext: String = r.get(0);
        let sfid: String = r.get(1);
        assert_eq!(by_ext.get(ext.as_str()), Some(&sfid.as_str()), "{ext}");
    }
    // INSERTED, then SYNCED once the read side has seen the record.
    wait_until("rows SYNCED", Duration::from_secs(60), || async {
        count(
            &pg,
            &format!("SELECT count(*) FROM {TABLE} WHERE _hc_lastop IS DISTINCT FROM 'SYNCED'"),
        )
        .await
            == 0
    })
    .await;

    pg.batch_execute(&format!(
        "UPDATE {TABLE} SET amount__c = amount__c + 0.5, status__c = 'Sent' WHERE id % 2 = 0;
         DELETE FROM {TABLE} WHERE id % 10 = 1;"
    ))
    .await
    .unwrap();
    wait_no_pending(&pg, Duration::from_secs(300)).await;
    let live = live_invoices(&sim);
    assert_eq!(
        live.len() as i64,
        ROWS - ROWS / 10,
        "deletes reached Salesforce"
    );
    let updated = live
        .iter()
        .filter(|(_, _, _, a)| a.is_some_and(|a| a.fract() == 0.5))
        .count() as i64;
    assert_eq!(updated, ROWS / 2, "updates reached Salesforce");

    wait_until(
        "verify finds no difference",
        Duration::from_secs(120),
        || {
            let config = config.clone();
            async move { differences(&config).await == 0 }
        },
    )
    .await;
    let failed = count(
        &pg,
        "SELECT count(*) FROM salesforce._trigger_log WHERE state = 'FAILED'",
    )
    .await;
    assert_eq!(failed, 0);
    // The sync's own writes (sfid back-fill, echoes) were never captured.
    let captured = count(&pg, "SELECT count(*) FROM salesforce._trigger_log").await;
    assert_eq!(
        captured,
        ROWS + ROWS / 2 + ROWS / 10,
        "one entry per user change"
    );

    wait_until(
        "status counts the writes",
        Duration::from_secs(10),
        || async {
            let s = engine.status().await;
            let w = mapping(&s, "Invoice__c").writes;
            w.pending == 0 && w.sent == ROWS + ROWS / 2 + ROWS / 10 && w.failed == 0
        },
    )
    .await;
    assert!(
        sampler.peak() <= 3,
        "sessions {} above db_pool_size",
        sampler.peak()
    );
    engine.stop().await;
    sim.stop().await;
}

#[actix_rt::test]
async fn rejected_records_fail_alone() {
    let db = TestDb::create().await;
    let sim = start_sim().await;
    let config = write_config_with(&db, &sim.info, &setup(), MAPPINGS);
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_synced(&engine).await;
    let pg = db.client().await;

    // One statement, so all land in the same claim and the same collection call.
    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c, amount__c, account__c)
         SELECT CASE WHEN g IN (3, 7) THEN NULL ELSE 'INV-' || g END, 'bad-' || g, g,
                CASE WHEN g = 5 THEN '001000000000999AAA' END
         FROM generate_series(1, 20) g"
    ))
    .await
    .unwrap();
    wait_no_pending(&pg, Duration::from_secs(60)).await;

    let rows = pg
        .query(
            &format!("SELECT external_id__c, sfid, _hc_lastop, _hc_err FROM {TABLE} ORDER BY id"),
            &[],
        )
        .await
        .unwrap();
    let mut failed = BTreeMap::new();
    for r in &rows {
        let ext: String = r.get(0);
        let sfid: Option<String> = r.get(1);
        let lastop: Option<String> = r.get(2);
        let err: Option<String> = r.get(3);
        if ["bad-3", "bad-5", "bad-7"].contains(&ext.as_str()) {
            assert_eq!(sfid, None, "{ext}");
            assert_eq!(lastop.as_deref(), Some("FAILED"), "{ext}");
            let err: serde_json::Value =
                serde_json::from_str(&err.expect("_hc_err set")).expect("_hc_err is JSON");
            failed.insert(ext, err);
        } else {
            assert!(sfid.is_some(), "{ext} was sent");
            assert_ne!(lastop.as_deref(), Some("FAILED"), "{ext}");
            assert_eq!(err, None, "{ext}");
        }
    }
    assert_eq!(failed["bad-3"]["code"], "REQUIRED_FIELD_MISSING");
    assert!(failed["bad-3"]["msg"]
        .as_str()
        .unwrap()
        .contains("REQUIRED_FIELD_MISSING"));
    assert_eq!(failed["bad-5"]["code"], "FIELD_INTEGRITY_EXCEPTION");
    assert_eq!(failed["bad-3"]["op"], "INSERT");
    assert_eq!(live_invoices(&sim).len(), 17);

    let messages: Vec<(String, String)> = pg
        .query(
            "SELECT state::text, sf_message FROM salesforce._trigger_log
             WHERE state = 'FAILED' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(messages.len(), 3, "{messages:?}");

    // What `ctl errors` lists.
    let writer = DbWriter::new(&config.connections[0], "test", 1)
        .unwrap()
        .start();
    let errors =
        driftless_node::writeback::failed_writes(&writer, &config.connections[0].schema, 100)
            .await
            .unwrap();
    assert_eq!(errors.len(), 3);
    assert!(errors.iter().all(|e| e.table_name == "invoice__c"
        && e.action.as_deref() == Some("INSERT")
        && e.message.as_deref().is_some_and(|m| !m.is_empty())
        && e.processed_at.is_some()));
    wait_until(
        "status counts the failures",
        Duration::from_secs(10),
        || async {
            let s = engine.status().await;
            let w = mapping(&s, "Invoice__c").writes;
            w.failed == 3 && w.sent == 17 && w.pending == 0
        },
    )
    .await;

    // Fixing the row in Postgres is the retry.
    pg.batch_execute(&format!(
        "UPDATE {TABLE} SET name = 'fixed' WHERE external_id__c = 'bad-3'"
    ))
    .await
    .unwrap();
    wait_no_pending(&pg, Duration::from_secs(60)).await;
    let sfid: Option<String> = pg
        .query_one(
            &format!("SELECT sfid FROM {TABLE} WHERE external_id__c = 'bad-3'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(sfid.is_some(), "the fixed row reached Salesforce");
    assert_eq!(live_invoices(&sim).len(), 18);
    engine.stop().await;
    sim.stop().await;
}

#[actix_rt::test]
async fn both_sides_at_once_converge_without_flip_flops() {
    const ROWS: i64 = 300;
    let db = TestDb::create().await;
    let sim = start_sim().await;
    let config = write_config_with(&db, &sim.info, &setup(), MAPPINGS);
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_synced(&engine).await;
    let pg = db.client().await;
    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c, amount__c)
         SELECT 'INV-' || g, 'ff-' || g, g FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();
    wait_no_pending(&pg, Duration::from_secs(120)).await;

    // Every value of notes__c written by Postgres is "pg-<seq>" with a rising seq; the observer
    // records each one it sees per row, and no row may ever show a lower seq after a higher one.
    let observed: Arc<parking_lot::Mutex<HashMap<i32, Vec<i64>>>> = Default::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let observer = {
        let observed = observed.clone();
        let client = db.client().await;
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                for r in client
                    .query(
                        &format!("SELECT id, notes__c FROM {TABLE} WHERE notes__c LIKE 'pg-%'"),
                        &[],
                    )
                    .await
                    .unwrap()
                {
                    let seq: i64 = r.get::<_, String>(1)[3..].parse().unwrap();
                    let mut o = observed.lock();
                    let seen = o.entry(r.get(0)).or_default();
                    if seen.last() != Some(&seq) {
                        seen.push(seq);
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(30)) => {}
                    _ = stop.changed() => break,
                }
            }
        })
    };

    sim_post(
        &sim.info,
        "/_sim/workload",
        serde_json::json!({"object": "Invoice__c", "inserts_per_sec": 0, "updates_per_sec": 60,
                           "deletes_per_sec": 0, "long_txn_fraction": 0.0}),
    )
    .await;
    let mut seq = 0i64;
    let deleted: Vec<i32> = (1..=10).map(|i| i * 7).collect();
    for round in 0..40 {
        // Quick successive writes to the same rows: the second lands while the first is in
        // flight, which is when Heroku Connect flip-flops.
        for _ in 0..2 {
            seq += 1;
            pg.execute(
                &format!("UPDATE {TABLE} SET notes__c = $1 WHERE id % 4 = $2"),
                &[&format!("pg-{seq:08}"), &(round % 4)],
            )
            .await
            .unwrap();
        }
        if round == 20 {
            pg.execute(
                &format!("DELETE FROM {TABLE} WHERE id = ANY($1)"),
                &[&deleted],
            )
            .await
            .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    sim_delete(&sim.info, "/_sim/workload").await;
    wait_no_pending(&pg, Duration::from_secs(120)).await;
    wait_until(
        "verify finds no difference",
        Duration::from_secs(120),
        || {
            let config = config.clone();
            async move { differences(&config).await == 0 }
        },
    )
    .await;
    let _ = stop_tx.send(true);
    observer.await.unwrap();

    let observed = observed.lock().clone();
    assert!(
        observed.len() as i64 > ROWS / 2,
        "the observer saw the writes"
    );
    for (id, seen) in observed.iter() {
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "row {id} went back to an older value: {seen:?}"
        );
    }
    // Deleted in Postgres stays deleted, on both sides.
    let revived = count(
        &pg,
        &format!(
            "SELECT count(*) FROM {TABLE} WHERE id IN ({})",
            deleted
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    )
    .await;
    assert_eq!(revived, 0, "a row deleted in Postgres came back");
    let live: HashSet<String> = live_invoices(&sim).into_iter().map(|l| l.0).collect();
    assert_eq!(live.len() as i64, ROWS - deleted.len() as i64);
    engine.stop().await;
    sim.stop().await;
}

#[actix_rt::test]
async fn transient_errors_are_retried_with_backoff_and_sent_once() {
    const ROWS: i64 = 600;
    let db = TestDb::create().await;
    let sim = start_sim().await;
    let config = write_config_with(&db, &sim.info, &setup(), MAPPINGS);
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_synced(&engine).await;
    let pg = db.client().await;
    // Every call fails until a retry is scheduled: the client's own retries run out and the
    // actor's backoff takes over; then the org comes back.
    sim_post(
        &sim.info,
        "/_sim/faults",
        serde_json::json!({"http_error_rate": 1.0, "http_error_status": 503}),
    )
    .await;
    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c, amount__c)
         SELECT 'INV-' || g, 'tr-' || g, g FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();
    wait_until("a retry scheduled", Duration::from_secs(60), || async {
        count(
            &pg,
            "SELECT count(*) FROM salesforce._driftless_writeback WHERE last_error IS NOT NULL",
        )
        .await
            > 0
    })
    .await;
    sim_delete(&sim.info, "/_sim/faults").await;
    wait_no_pending(&pg, Duration::from_secs(120)).await;
    let live = live_invoices(&sim);
    let exts: HashSet<&str> = live.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(live.len() as i64, ROWS);
    assert_eq!(exts.len() as i64, ROWS);
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM salesforce._trigger_log WHERE state = 'FAILED'"
        )
        .await,
        0
    );
    engine.stop().await;
    sim.stop().await;
}

/// Settled entries move to the archive, which keeps them `writeback_retention_days`.
#[actix_rt::test]
async fn settled_entries_are_archived_then_purged_after_the_retention() {
    let db = TestDb::create().await;
    let sim = start_sim().await;
    let mut config = write_config_with(&db, &sim.info, &setup(), MAPPINGS);
    config.connections[0].sync.writeback_retention_days = 7;
    // The first run makes the tables; the entries below are there when the second one starts.
    run(config.clone(), options())
        .await
        .expect("engine starts")
        .stop()
        .await;
    let pg = db.client().await;
    pg.batch_execute(
        "INSERT INTO salesforce._trigger_log_archive (id, created_at, state, action, table_name, record_id)
         VALUES (-1, now() - interval '10 days', 'SUCCESS', 'INSERT', 'invoice__c', 1),
                (-2, now() - interval '3 days', 'FAILED', 'INSERT', 'invoice__c', 2);
         INSERT INTO salesforce._trigger_log (created_at, processed_at, state, action, table_name, record_id)
         VALUES (now() - interval '1 hour', now() - interval '1 hour', 'SUCCESS', 'UPDATE', 'invoice__c', 3),
                (now(), now(), 'SUCCESS', 'UPDATE', 'invoice__c', 4);",
    )
    .await
    .unwrap();
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_until("housekeeping", Duration::from_secs(30), || async {
        count(
            &pg,
            "SELECT count(*) FROM salesforce._trigger_log_archive WHERE id = -1",
        )
        .await
            == 0
    })
    .await;
    let archived: Vec<i32> = pg
        .query(
            "SELECT record_id FROM salesforce._trigger_log_archive ORDER BY record_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        archived,
        vec![2, 3],
        "kept within the retention, and the hour-old entry moved"
    );
    let live: Vec<i32> = pg
        .query("SELECT record_id FROM salesforce._trigger_log", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        live,
        vec![4],
        "a fresh entry stays where the read side's guard looks"
    );
    engine.stop().await;
    sim.stop().await;
}

/// `db_pool_size = 1` leaves no slot for a LISTEN session: the writer polls, within the budget.
#[actix_rt::test]
async fn a_pool_of_one_polls_and_stays_within_budget() {
    let db = TestDb::create().await;
    let sim = start_sim().await;
    let setup = Setup {
        db_pool_size: 1,
        ..setup()
    };
    let config = write_config_with(&db, &sim.info, &setup, MAPPINGS);
    let sampler = ConnectionSampler::start(&db, "driftless/acme/sync").await;
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_synced(&engine).await;
    let pg = db.client().await;
    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c) SELECT 'INV-' || g, 'one-' || g
         FROM generate_series(1, 50) g"
    ))
    .await
    .unwrap();
    wait_until("rows sent", Duration::from_secs(30), || async {
        count(
            &pg,
            &format!("SELECT count(*) FROM {TABLE} WHERE sfid IS NULL"),
        )
        .await
            == 0
    })
    .await;
    assert_eq!(live_invoices(&sim).len(), 50);
    assert_eq!(sampler.peak(), 1, "sessions held at once");
    engine.stop().await;
    sim.stop().await;
}

/// The engine on a thread of its own, so its whole actix System can be dropped mid-flight.
struct EngineThread {
    stop: Option<tokio::sync::oneshot::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EngineThread {
    async fn start(config: Config) -> EngineThread {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<bool>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let engine = run(config, options()).await.expect("engine starts");
                let _ = ready_tx.send(());
                if let Ok(true) = stop_rx.await {
                    engine.stop().await;
                }
                // Otherwise return at once: the runtime drops every actor and task where it is.
            });
        });
        ready_rx.await.expect("engine started");
        EngineThread {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    async fn end(mut self, graceful: bool) {
        let _ = self.stop.take().unwrap().send(graceful);
        let thread = self.thread.take().unwrap();
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }
}

#[actix_rt::test]
async fn crash_mid_batch_then_restart_loses_and_duplicates_nothing() {
    const ROWS: i64 = 3000;
    let db = TestDb::create().await;
    let sim = start_sim().await;
    // The composite path's crash: 3,000 pending rows would go by Bulk under the default
    // bulk_write_threshold, whose crash test is in crates/driftless/tests/writeback_crash.rs.
    let config = write_config_ext(
        &db,
        &sim.info,
        &setup(),
        MAPPINGS,
        &ConfigExtra {
            sync: "bulk_write_threshold = 1000000\n".into(),
            ..ConfigExtra::default()
        },
    );
    let engine = EngineThread::start(config.clone()).await;
    let pg = db.client().await;
    wait_until("initial load", Duration::from_secs(60), || async {
        count(
            &pg,
            "SELECT count(*) FROM salesforce._driftless_mapping_state WHERE initial_load_done",
        )
        .await
            == 1
    })
    .await;
    // Rows written while the engine is down; their row locks held by the test make recording
    // a batch's outcome wait, so the crash lands in the one window that matters: after
    // Salesforce created the records, before Postgres knew it.
    engine.end(true).await;
    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c, amount__c)
         SELECT 'INV-' || g, 'crash-' || g, g FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();
    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute(&format!("SELECT 1 FROM {TABLE} FOR UPDATE"))
        .await
        .unwrap();
    let engine = EngineThread::start(config.clone()).await;
    wait_until(
        "a batch accepted by Salesforce",
        Duration::from_secs(120),
        || async { !live_invoices(&sim).is_empty() },
    )
    .await;
    // Let the rest of the batch's calls come back too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    engine.end(false).await;
    lock.rollback().await.unwrap();

    let in_flight = count(
        &pg,
        "SELECT count(*) FROM salesforce._trigger_log WHERE state = 'PENDING'",
    )
    .await;
    let ext_in_sf: HashSet<String> = live_invoices(&sim).into_iter().map(|l| l.0).collect();
    let unrecorded = pg
        .query(
            &format!("SELECT external_id__c FROM {TABLE} WHERE sfid IS NULL"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .filter(|r| ext_in_sf.contains(&r.get::<_, String>(0)))
        .count();
    eprintln!(
        "at the crash: {in_flight} entries in flight, {} records in Salesforce, {unrecorded} of them not recorded in Postgres",
        ext_in_sf.len()
    );
    assert!(in_flight > 0, "the crash hit a batch in flight");
    assert!(
        unrecorded > 0,
        "the crash hit after Salesforce took records"
    );
    // Writes made while the engine is down are not lost either.
    pg.batch_execute(&format!(
        "UPDATE {TABLE} SET amount__c = amount__c + 0.25 WHERE id <= 100"
    ))
    .await
    .unwrap();

    let engine = EngineThread::start(config.clone()).await;
    wait_no_pending(&pg, Duration::from_secs(300)).await;
    let resent = count(
        &pg,
        "SELECT count(*) FROM salesforce._driftless_writeback WHERE attempts > 1",
    )
    .await;
    assert!(resent > 0, "entries in flight were sent again");

    let live = live_invoices(&sim);
    let exts: HashSet<&str> = live.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(live.len() as i64, ROWS, "no duplicate, no missing record");
    assert_eq!(exts.len() as i64, ROWS);
    let rows = pg
        .query(
            &format!("SELECT external_id__c, sfid FROM {TABLE} WHERE sfid IS NULL"),
            &[],
        )
        .await
        .unwrap();
    assert!(rows.is_empty(), "rows without sfid: {}", rows.len());
    let bumped = live
        .iter()
        .filter(|l| l.3.is_some_and(|a| a.fract() == 0.25))
        .count();
    assert_eq!(bumped, 100, "updates made while down reached Salesforce");
    wait_until(
        "verify finds no difference",
        Duration::from_secs(120),
        || {
            let config = config.clone();
            async move { differences(&config).await == 0 }
        },
    )
    .await;
    engine.end(true).await;
    sim.stop().await;
}
