//! Write-back's two write modes and its Bulk path end to end (real simulator, real Postgres):
//! above `bulk_write_threshold` pending rows go as Bulk API 2.0 ingest jobs, each row's outcome
//! recorded as for composite calls; Ordered Writes sends each change alone in log order and holds
//! a table's queue behind a failed insert.

use driftless_testkit as common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use driftless_core::config::Config;
use driftless_node::status::WritePath;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, RunOptions};

const MAPPINGS: &str = r#"{"mappings":[
  {"object_name":"Invoice__c","config":{"access":"read_write","sf_polling_seconds":1,"sf_notify_enabled":false,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"External_Id__c":{},"Amount__c":{},
              "Status__c":{},"Paid__c":{},"Notes__c":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false},"External_Id__c":{"unique":true}},
    "upsert_field":"External_Id__c"}}
],"version":1}"#;

const TABLE: &str = "salesforce.invoice__c";

fn config(db: &TestDb, sim: &sfsim::SimInfo, sync: &str) -> Config {
    write_config_ext(
        db,
        sim,
        &Setup {
            faults: false,
            bulk_threshold: 2000,
            secondary_enabled: false,
            db_pool_size: 3,
        },
        MAPPINGS,
        &ConfigExtra {
            sync: sync.to_owned(),
            ..ConfigExtra::default()
        },
    )
}

fn options() -> RunOptions {
    RunOptions {
        honor_latest_date_covered: false,
        batch_rows: 5000,
        serve_admin: false,
        ..RunOptions::default()
    }
}

async fn start_sim() -> SimThread {
    SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 5)],
        ..Default::default()
    })
    .await
}

async fn count(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.unwrap().get(0)
}

async fn wait_synced(engine: &driftless_node::NodeHandle) {
    wait_until("initial load", Duration::from_secs(60), || async {
        let s = engine.status().await;
        s.mappings.iter().all(|m| m.state == "DATA_SYNCED")
    })
    .await;
}

async fn wait_drained(pg: &tokio_postgres::Client) {
    wait_until(
        "write-back queue empty",
        Duration::from_secs(120),
        || async {
            count(
                pg,
                "SELECT count(*) FROM salesforce._trigger_log WHERE state IN ('NEW', 'PENDING')",
            )
            .await
                == 0
        },
    )
    .await;
}

/// Live Invoice__c in the simulator: External_Id__c → (how many records carry it, Notes__c).
fn invoices(sim: &SimThread) -> HashMap<String, (usize, Option<String>)> {
    let org = &sim.org;
    let object = org.object_index("Invoice__c").unwrap();
    let def = &org.schema.objects[object];
    let (ext, notes) = (
        def.field_index("External_Id__c").unwrap(),
        def.field_index("Notes__c").unwrap(),
    );
    org.read(|tables| {
        let mut out: HashMap<String, (usize, Option<String>)> = HashMap::new();
        for r in tables[object]
            .iter()
            .filter(|r| !sfsim::store::is_deleted(r))
        {
            let e = out
                .entry(r[ext].as_str().unwrap_or_default().to_owned())
                .or_default();
            e.0 += 1;
            e.1 = r[notes].as_str().map(str::to_owned);
        }
        out
    })
}

async fn ingest_jobs(sim: &sfsim::SimInfo) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{}/_sim/stats", sim.instance_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["api_calls"]["by_route"]
        .as_object()
        .map(|routes| {
            routes
                .iter()
                .filter(|(k, _)| k.as_str() == "POST jobs/ingest")
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

#[actix_rt::test]
async fn above_the_threshold_writes_go_as_bulk_jobs_and_each_row_gets_its_outcome() {
    const ROWS: i64 = 5_000;
    let db = TestDb::create().await;
    let sim = start_sim().await;
    let config = config(&db, &sim.info, "bulk_write_threshold = 500\n");
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_synced(&engine).await;
    let pg = db.client().await;

    // Inserts: 1% without a Name, which Salesforce requires.
    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c, amount__c, paid__c)
         SELECT CASE WHEN g % 100 = 0 THEN NULL ELSE 'INV-' || g END, 'ext-' || g, g, g % 2 = 0
         FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();
    wait_drained(&pg).await;
    let bad = ROWS / 100;
    assert_eq!(
        count(
            &pg,
            &format!("SELECT count(*) FROM {TABLE} WHERE sfid IS NOT NULL AND _hc_err IS NULL")
        )
        .await,
        ROWS - bad
    );
    let failed = pg
        .query(
            &format!(
                "SELECT t.external_id__c, t._hc_lastop, l.sf_message FROM {TABLE} t
                 JOIN salesforce._trigger_log l ON l.record_id = t.id AND l.state = 'FAILED'
                 ORDER BY t.id"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(failed.len() as i64, bad);
    for r in &failed {
        let ext: String = r.get(0);
        let n: i64 = ext.trim_start_matches("ext-").parse().unwrap();
        assert_eq!(n % 100, 0, "{ext} failed");
        assert_eq!(r.get::<_, Option<String>>(1).as_deref(), Some("FAILED"));
        let msg: String = r.get(2);
        assert!(msg.starts_with("REQUIRED_FIELD_MISSING"), "{msg}");
    }
    let in_sf = invoices(&sim);
    assert_eq!(in_sf.len() as i64, ROWS - bad);
    assert!(in_sf.values().all(|(n, _)| *n == 1), "a duplicate record");
    let jobs_after_inserts = ingest_jobs(&sim.info).await;
    assert!(
        jobs_after_inserts >= 1,
        "the inserts went as a Bulk job ({jobs_after_inserts})"
    );

    // Updates of every row sent, by Id, the same way.
    pg.batch_execute(&format!(
        "UPDATE {TABLE} SET notes__c = 'updated ' || external_id__c WHERE sfid IS NOT NULL"
    ))
    .await
    .unwrap();
    wait_drained(&pg).await;
    let in_sf = invoices(&sim);
    assert!(in_sf
        .iter()
        .all(|(ext, (n, notes))| *n == 1 && notes.as_deref() == Some(&format!("updated {ext}"))));
    assert!(ingest_jobs(&sim.info).await > jobs_after_inserts);
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM salesforce._driftless_writeback_job"
        )
        .await,
        0,
        "every job settled is forgotten"
    );
    wait_until(
        "status shows the Bulk path",
        Duration::from_secs(10),
        || async {
            let s = engine.status().await;
            let w = mapping(&s, "Invoice__c").writes;
            w.path == WritePath::Bulk && w.failed == bad && w.pending == 0
        },
    )
    .await;

    // Below the threshold: composite calls again.
    pg.batch_execute(&format!(
        "UPDATE {TABLE} SET notes__c = 'small' WHERE external_id__c IN ('ext-1', 'ext-2')"
    ))
    .await
    .unwrap();
    wait_drained(&pg).await;
    wait_until(
        "status shows the composite path",
        Duration::from_secs(10),
        || async {
            mapping(&engine.status().await, "Invoice__c").writes.path == WritePath::Composite
        },
    )
    .await;
    assert_eq!(invoices(&sim)["ext-2"].1.as_deref(), Some("small"));

    // The failed rows aside, nothing differs.
    pg.batch_execute(&format!("DELETE FROM {TABLE} WHERE sfid IS NULL"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reports = verify(
        &config,
        &VerifyOptions {
            max_listed: 5,
            batch_rows: 5000,
            ..VerifyOptions::default()
        },
    )
    .await
    .expect("verify");
    let differences: i64 = reports.iter().map(|r| r.differences()).sum();
    assert_eq!(differences, 0, "{reports:?}");
    engine.stop().await;
    sim.stop().await;
}

#[actix_rt::test]
async fn ordered_writes_send_each_change_and_a_failed_insert_holds_the_table() {
    let db = TestDb::create().await;
    let sim = start_sim().await;
    let config = config(&db, &sim.info, "write_mode = \"ordered\"\n");
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_synced(&engine).await;
    let pg = db.client().await;

    // Three changes of one record: each its own write, none merged.
    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c) VALUES ('A', 'ord-1');
         UPDATE {TABLE} SET notes__c = 'one' WHERE external_id__c = 'ord-1';
         UPDATE {TABLE} SET notes__c = 'two' WHERE external_id__c = 'ord-1';"
    ))
    .await
    .unwrap();
    wait_drained(&pg).await;
    let states: Vec<String> = pg
        .query(
            "SELECT state::text FROM salesforce._trigger_log ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(states, ["SUCCESS", "SUCCESS", "SUCCESS"]);
    assert_eq!(invoices(&sim)["ord-1"].1.as_deref(), Some("two"));

    // A rejected insert, then a good one: the good one waits behind it.
    pg.batch_execute(&format!(
        "INSERT INTO {TABLE} (name, external_id__c) VALUES (NULL, 'ord-2');
         INSERT INTO {TABLE} (name, external_id__c) VALUES ('C', 'ord-3');"
    ))
    .await
    .unwrap();
    wait_until("the insert failed", Duration::from_secs(30), || async {
        count(
            &pg,
            "SELECT count(*) FROM salesforce._trigger_log WHERE state = 'FAILED'",
        )
        .await
            == 1
    })
    .await;
    // Several cycles pass (the writer polls every 2 s at the latest) and ord-3 stays queued.
    let cycles_before = count(&pg, "SELECT count(*) FROM salesforce._trigger_log").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !invoices(&sim).contains_key("ord-3"),
        "ord-3 overtook the failed insert"
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM salesforce._trigger_log l JOIN salesforce.invoice__c t
             ON t.id = l.record_id WHERE t.external_id__c = 'ord-3' AND l.state = 'NEW'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&pg, "SELECT count(*) FROM salesforce._trigger_log").await,
        cycles_before
    );

    // Fix the row and re-send the failed entry as Connect documents it.
    pg.batch_execute(&format!(
        "UPDATE {TABLE} SET name = 'B' WHERE external_id__c = 'ord-2';
         UPDATE salesforce._trigger_log SET state = 'NEW' WHERE state = 'FAILED';"
    ))
    .await
    .unwrap();
    wait_drained(&pg).await;
    let in_sf = invoices(&sim);
    assert_eq!(in_sf["ord-2"].0, 1);
    assert_eq!(in_sf["ord-3"].0, 1);
    // Ids are minted in creation order: ord-2 reached Salesforce before ord-3.
    let sfids: Vec<String> = pg
        .query(
            &format!(
                "SELECT sfid FROM {TABLE} WHERE external_id__c IN ('ord-2', 'ord-3')
                 ORDER BY external_id__c"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(sfids[0] < sfids[1], "{sfids:?}");
    let s = engine.status().await;
    assert_eq!(
        mapping(&s, "Invoice__c").writes.mode,
        driftless_node::status::WriteModeDoc::Ordered
    );
    engine.stop().await;
    sim.stop().await;
}

#[actix_rt::test]
async fn merged_writes_fold_a_records_changes() {
    let db = TestDb::create().await;
    let sim = start_sim().await;
    let config = config(&db, &sim.info, "");
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_synced(&engine).await;
    let pg = db.client().await;
    // One transaction: the three changes are pending together when the writer claims.
    pg.batch_execute(&format!(
        "BEGIN;
         INSERT INTO {TABLE} (name, external_id__c) VALUES ('A', 'm-1');
         UPDATE {TABLE} SET notes__c = 'one' WHERE external_id__c = 'm-1';
         UPDATE {TABLE} SET notes__c = 'two' WHERE external_id__c = 'm-1';
         COMMIT;"
    ))
    .await
    .unwrap();
    wait_drained(&pg).await;
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM salesforce._trigger_log WHERE state = 'MERGED'"
        )
        .await,
        2
    );
    assert_eq!(invoices(&sim)["m-1"], (1, Some("two".into())));
    wait_until(
        "status counts the merged writes",
        Duration::from_secs(10),
        || async { mapping(&engine.status().await, "Invoice__c").writes.merged == 2 },
    )
    .await;

    // Connect's manual re-sends, as its documentation calls them, for writes the triggers did
    // not see (triggers off): each reaches Salesforce once.
    pg.batch_execute(&format!(
        "SET session_replication_role = replica;
         INSERT INTO {TABLE} (name, external_id__c, notes__c) VALUES ('R', 'rep-1', 'loaded');
         UPDATE {TABLE} SET notes__c = 'quiet', name = 'not sent' WHERE external_id__c = 'm-1';
         SET session_replication_role = origin;"
    ))
    .await
    .unwrap();
    pg.batch_execute(&format!(
        "SELECT salesforce.hc_capture_insert_from_row(hstore(t.*), 'invoice__c', ARRAY['notes__c'])
           FROM {TABLE} t WHERE external_id__c = 'rep-1';
         SELECT salesforce.hc_capture_update_from_row(hstore(t.*), 'invoice__c', ARRAY['notes__c'])
           FROM {TABLE} t WHERE external_id__c = 'm-1';"
    ))
    .await
    .unwrap();
    wait_drained(&pg).await;
    let in_sf = invoices(&sim);
    assert_eq!(
        in_sf["rep-1"],
        (1, None),
        "inserted once, notes__c left out"
    );
    assert_eq!(in_sf["m-1"], (1, Some("quiet".into())));
    let name_of_m1 = sim.org.read(|tables| {
        let object = sim.org.object_index("Invoice__c").unwrap();
        let def = &sim.org.schema.objects[object];
        let (ext, name) = (
            def.field_index("External_Id__c").unwrap(),
            def.field_index("Name").unwrap(),
        );
        tables[object]
            .iter()
            .find(|r| r[ext].as_str() == Some("m-1"))
            .and_then(|r| r[name].as_str().map(str::to_owned))
    });
    assert_eq!(
        name_of_m1.as_deref(),
        Some("A"),
        "only the columns asked for are sent"
    );
    engine.stop().await;
    sim.stop().await;
}
