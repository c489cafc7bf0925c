//! kill -9 of the real `driftless run` in the middle of write-back: after a restart every row
//! written in Postgres exists in Salesforce exactly once (no duplicate from a resend, none lost),
//! rows written while it was down follow, and `driftless verify` finds no difference.

#[path = "../../node/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_driftless");
const ROWS: i64 = 6_000;
const LATE_ROWS: i64 = 500;
const TABLE: &str = "salesforce.invoice__c";

fn write_files(db: &TestDb, sim: &sfsim::SimInfo) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "driftless-wbcrash-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mappings.json"),
        r#"{"mappings":[
  {"object_name":"Invoice__c","config":{"access":"read_write","sf_polling_seconds":1,"sf_notify_enabled":false,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"External_Id__c":{},"Amount__c":{},"Notes__c":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false},"External_Id__c":{"unique":true}},
    "upsert_field":"External_Id__c"}}],"version":1}"#,
    )
    .unwrap();
    let toml = format!(
        r#"[coordinator]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"

[[connection]]
name = "acme"
database_url = "{db}"
db_pool_size = 3
mappings = "mappings.json"

[connection.salesforce]
login_url = "{login}"
auth = "password"
username = "{user}"
password = "${{SF_PASSWORD}}"
client_id = "{cid}"
client_secret = "{secret}"

[connection.sync]
poll_interval_secs = 1
secondary_delay_secs = 3
poll_margin_secs = 1
use_latest_date_covered = false
"#,
        db = db.url,
        login = sim.login_url,
        user = sim.username,
        cid = sim.client_id,
        secret = sim.client_secret,
    );
    let path = dir.join("driftless.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn driftless(args: &[&str], config: &Path, sim: &sfsim::SimInfo, log: &str) -> Command {
    let mut cmd = Command::new(BIN);
    let log = std::fs::File::create(config.with_file_name(log)).unwrap();
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env("SF_PASSWORD", &sim.password)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    cmd
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
