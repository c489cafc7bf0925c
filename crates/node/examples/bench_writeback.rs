//! Write-back benchmark: N rows inserted in Postgres, then N updates, each timed until Salesforce
//! has taken them all; once on the composite path (sObject collections) and once on the Bulk path
//! (Bulk API 2.0 ingest jobs), each with a fresh simulator and database.
//!
//! ```text
//! cargo run --release -p driftless-node --example bench_writeback -- [--rows N]
//! ```
//!
//! The simulator runs in-process on a thread and runtime of its own; the engine runs as
//! `driftless run` would, read side included (it reads the inserted records back). A fresh
//! database on 127.0.0.1:5432 is dropped at the end. Inserts are timed from the INSERT's commit
//! until every row has its sfid back, updates until the trigger log has nothing pending. API calls
//! are the simulator's count of write calls during each phase: sObject collections
//! (`composite/sobjects...`) and every Bulk 2.0 ingest call (`jobs/ingest...`: create, upload,
//! close, polls, results), so the read side's polls are not counted.

use driftless_testkit as common;

use std::time::{Duration, Instant};

use common::*;
use driftless_node::{run, RunOptions};

const MAPPINGS: &str = r#"{"mappings":[
  {"object_name":"Invoice__c","config":{"access":"read_write","sf_polling_seconds":5,"sf_notify_enabled":false,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"External_Id__c":{},"Amount__c":{},
              "Status__c":{},"Paid__c":{},"Notes__c":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false},"External_Id__c":{"unique":true}},
    "upsert_field":"External_Id__c"}}
],"version":1}"#;

fn rows_arg() -> i64 {
    let mut it = std::env::args().skip(1);
    let mut rows = 100_000;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rows" => {
                rows = it
                    .next()
                    .and_then(|v| v.replace('_', "").parse().ok())
                    .expect("--rows N")
            }
            other => panic!("unknown argument {other}; usage: bench_writeback [--rows N]"),
        }
    }
    rows
}

async fn write_calls(sim: &sfsim::SimInfo) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{}/_sim/stats", sim.instance_url))
        .await
        .expect("sim stats")
        .json()
        .await
        .expect("stats JSON");
    stats["api_calls"]["by_route"]
        .as_object()
        .expect("by_route")
        .iter()
        .filter(|(route, _)| {
            route.contains(" composite/sobjects") || route.contains(" jobs/ingest")
        })
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum()
}

async fn scalar(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.expect(sql).get(0)
}

struct Phase {
    name: &'static str,
    secs: f64,
    calls: u64,
}

impl Phase {
    fn print(&self, path: &str, rows: i64) {
        println!(
            "{path:<9} {:<8} {rows} records in {:.1} s: {:.0} records/s, {} write calls, {:.2} API calls per 1,000 records",
            self.name,
            self.secs,
            rows as f64 / self.secs,
            self.calls,
            self.calls as f64 * 1000.0 / rows as f64
        );
    }
}

async fn timed(
    name: &'static str,
    sim: &sfsim::SimInfo,
    pg: &tokio_postgres::Client,
    sql: &str,
    done: &str,
) -> Phase {
    let calls = write_calls(sim).await;
    // The application's statement may deadlock with the engine writing back sfids and
    // outcomes to the same rows; like an application, it tries again.
    loop {
        match pg.batch_execute(sql).await {
            Ok(()) => break,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) => {
                eprintln!("{name}: deadlock with the engine; statement retried")
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
    let start = Instant::now();
    wait_until(name, Duration::from_secs(3600), || async {
        scalar(pg, done).await == 0
    })
    .await;
    Phase {
        name,
        secs: start.elapsed().as_secs_f64(),
        calls: write_calls(sim).await - calls,
    }
}

/// Inserts then updates of `rows` records with `bulk_write_threshold = threshold`.
async fn bench(rows: i64, threshold: u64) -> (Phase, Phase, i64) {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig::default()).await;
    let setup = Setup {
        faults: false,
        bulk_threshold: 10_000,
        secondary_enabled: true,
        db_pool_size: 4,
    };
    let config = write_config_ext(
        &db,
        &sim.info,
        &setup,
        MAPPINGS,
        &ConfigExtra {
            sync: format!("bulk_write_threshold = {threshold}\n"),
            ..ConfigExtra::default()
        },
    );
    let engine = run(
        config,
        RunOptions {
            serve_admin: false,
            ..RunOptions::default()
        },
    )
    .await
    .expect("engine starts");
    let pg = db.client().await;
    wait_until("initial load", Duration::from_secs(60), || async {
        let s = engine.status().await;
        s.mappings.iter().all(|m| m.state == "DATA_SYNCED")
    })
    .await;

    let table = "salesforce.invoice__c";
    let pending = "SELECT count(*) FROM salesforce._trigger_log WHERE state IN ('NEW', 'PENDING')";
    let inserts = timed(
        "inserts",
        &sim.info,
        &pg,
        &format!(
            "INSERT INTO {table} (name, external_id__c, amount__c, status__c, paid__c, notes__c)
             SELECT 'INV-' || g, 'bench-' || g, g, 'Draft', false, 'note ' || g
             FROM generate_series(1, {rows}) g"
        ),
        &format!("SELECT count(*) FROM {table} WHERE sfid IS NULL"),
    )
    .await;
    let updates = timed(
        "updates",
        &sim.info,
        &pg,
        &format!("UPDATE {table} SET amount__c = amount__c + 1, status__c = 'Sent'"),
        pending,
    )
    .await;
    let failed = scalar(
        &pg,
        "SELECT count(*) FROM salesforce._trigger_log WHERE state = 'FAILED'",
    )
    .await;
    engine.stop().await;
    sim.stop().await;
    (inserts, updates, failed)
}

#[actix_rt::main]
async fn main() {
    let rows = rows_arg();
    let composite = bench(rows, u64::MAX / 2).await;
    let bulk = bench(rows, driftless_core::config::DEFAULT_BULK_WRITE_THRESHOLD).await;
    for (path, (inserts, updates, failed)) in [("composite", composite), ("bulk", bulk)] {
        inserts.print(path, rows);
        updates.print(path, rows);
        println!("{path:<9} failed writes: {failed}");
    }
}
