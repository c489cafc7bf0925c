//! Formula refresh benchmark: what keeping Contact.Account_Summary__c (`Account.Name & ' / ' &
//! TEXT(Account.Industry)`) fresh costs in API calls.
//!
//! ```text
//! cargo run --release -p driftless-node --example bench_formula -- [--accounts N] [--contacts N]
//! ```
//!
//! Defaults: 1,000 Accounts, 100,000 Contacts; only Contact is mapped, so changed parents are
//! found by the SystemModstamp query on Account (a mapped parent costs nothing there). Prints:
//! - API calls per idle poll cycle, with and without the formula field mapped, for Contact alone
//!   and for Contact with Account mapped too (the difference is the parent check; the timed
//!   refresh is an hour away and does not run);
//! - API calls of refreshing the children of every Account after all of them are renamed: the
//!   calls of the cycles that did it, less what those cycles cost idle.
//!
//! API calls are the simulator's count; polls are the engine's; secondary polls are off so that
//! an idle cycle always costs the same. A fresh database on
//! 127.0.0.1:5432 per engine, dropped at the end.

use driftless_testkit as common;

use std::time::{Duration, Instant};

use common::*;
use driftless_node::{run, NodeHandle, RunOptions};
use sfsim::value::Value;

fn mappings(with_formula: bool, with_account: bool) -> String {
    let account = r#"{"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":2,
    "sf_notify_enabled":false,"fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"Industry":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}},"#;
    format!(
        r#"{{"mappings":[{}
  {{"object_name":"Contact","config":{{"access":"read_only","sf_polling_seconds":2,"sf_notify_enabled":false,
    "fields":{{"Id":{{}},"IsDeleted":{{}},"SystemModstamp":{{}},"AccountId":{{}},"LastName":{{}}{}}},
    "indexes":{{"Id":{{"unique":true}},"SystemModstamp":{{"unique":false}}}}}}}}
],"version":1}}"#,
        if with_account { account } else { "" },
        if with_formula {
            r#","Account_Summary__c":{}"#
        } else {
            ""
        }
    )
}

fn args() -> (u64, u64) {
    let mut it = std::env::args().skip(1);
    let (mut accounts, mut contacts) = (1_000, 100_000);
    let num = |v: Option<String>| -> u64 {
        v.and_then(|v| v.replace('_', "").parse().ok())
            .expect("a number")
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--accounts" => accounts = num(it.next()),
            "--contacts" => contacts = num(it.next()),
            other => panic!(
                "unknown argument {other}; usage: bench_formula [--accounts N] [--contacts N]"
            ),
        }
    }
    (accounts, contacts)
}

async fn api_calls(sim: &sfsim::SimInfo) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{}/_sim/stats", sim.instance_url))
        .await
        .expect("sim stats")
        .json()
        .await
        .expect("stats JSON");
    stats["api_calls"]["total"].as_u64().unwrap_or(0)
}

async fn polls(engine: &NodeHandle) -> i64 {
    mapping(&engine.status().await, "Contact").primary.polls
}

async fn start(db: &TestDb, sim: &SimThread, with_formula: bool, with_account: bool) -> NodeHandle {
    // Secondary polls off: their re-reads would blur the per-cycle figures.
    let config = ConfigBuilder::new()
        .sync("bulk_threshold", 10_000)
        .sync("secondary_enabled", false)
        .write(db, &sim.info, &mappings(with_formula, with_account));
    let engine = run(
        config,
        RunOptions {
            honor_latest_date_covered: false,
            ..RunOptions::default()
        },
    )
    .await
    .expect("engine starts");
    wait_until("initial load", Duration::from_secs(600), || async {
        let s = engine.status().await;
        s.mappings
            .iter()
            .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some())
    })
    .await;
    engine
}

/// API calls per poll cycle over `cycles` idle cycles.
async fn idle_cost(sim: &sfsim::SimInfo, engine: &NodeHandle, cycles: i64) -> f64 {
    let (c0, p0) = (api_calls(sim).await, polls(engine).await);
    wait_until("idle poll cycles", Duration::from_secs(120), || async {
        polls(engine).await >= p0 + cycles
    })
    .await;
    let (c1, p1) = (api_calls(sim).await, polls(engine).await);
    (c1 - c0) as f64 / (p1 - p0) as f64
}

#[actix_rt::main]
async fn main() {
    let (accounts, contacts) = args();
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), accounts), ("Contact".into(), contacts)],
        ..Default::default()
    })
    .await;

    // A mapped parent: its table says what changed, so the formula costs nothing while idle.
    let mut mapped_parent = Vec::new();
    for with_formula in [false, true] {
        let db = TestDb::create().await;
        let engine = start(&db, &sim, with_formula, true).await;
        mapped_parent.push(idle_cost(&sim.info, &engine, 5).await);
        engine.stop().await;
    }

    let plain_db = TestDb::create().await;
    let plain = start(&plain_db, &sim, false, false).await;
    let plain_idle = idle_cost(&sim.info, &plain, 5).await;
    plain.stop().await;

    let db = TestDb::create().await;
    let engine = start(&db, &sim, true, false).await;
    let idle = idle_cost(&sim.info, &engine, 5).await;

    let org = &sim.org;
    let account = org.schema.object_index("Account").unwrap();
    let name = org.schema.objects[account].field_index("Name").unwrap();
    let ids: Vec<String> = org.read(|t| {
        t[account]
            .iter()
            .map(|r| sfsim::store::record_id(r).to_owned())
            .collect()
    });
    let contact = org.schema.object_index("Contact").unwrap();
    let lookup = org.schema.objects[contact]
        .field_index("AccountId")
        .unwrap();
    let children = org.read(|t| t[contact].iter().filter(|r| !r[lookup].is_null()).count());
    let (c0, p0) = (api_calls(&sim.info).await, polls(&engine).await);
    let refreshed0 = mapping(&engine.status().await, "Contact").formula_refreshed;
    let started = Instant::now();
    let mut txn = org.begin();
    for (i, id) in ids.iter().enumerate() {
        org.update(
            &mut txn,
            account,
            id,
            vec![(name, Value::text(format!("Renamed account {i}")))],
        )
        .unwrap();
    }
    org.commit(txn);
    wait_until("children refreshed", Duration::from_secs(600), || async {
        mapping(&engine.status().await, "Contact").formula_refreshed - refreshed0 >= children as i64
    })
    .await;
    let elapsed = started.elapsed();
    let (c1, p1) = (api_calls(&sim.info).await, polls(&engine).await);
    let cycles = p1 - p0;
    let refresh_calls = (c1 - c0) as f64 - idle * cycles as f64;
    let refreshed = mapping(&engine.status().await, "Contact").formula_refreshed - refreshed0;
    println!(
        "bench_formula: {accounts} accounts, {contacts} contacts ({children} with an account)"
    );
    println!(
        "idle poll cycle, Account and Contact mapped: {:.2} API calls without the formula field, \
         {:.2} with it (parent check: {:.2})",
        mapped_parent[0],
        mapped_parent[1],
        mapped_parent[1] - mapped_parent[0]
    );
    println!(
        "idle poll cycle, Contact alone: {plain_idle:.2} API calls without the formula field, \
         {idle:.2} with it (parent check: {:.2})",
        idle - plain_idle
    );
    println!(
        "refresh after renaming {} accounts: {refresh_calls:.0} API calls beyond idle polling \
         ({} calls over {cycles} cycles), {refreshed} rows changed, {:.1} s",
        ids.len(),
        c1 - c0,
        elapsed.as_secs_f64()
    );
    engine.stop().await;
    sim.stop().await;
}
