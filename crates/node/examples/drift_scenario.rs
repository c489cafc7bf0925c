//! The drift scenario of issue 4 at full size, with figures.
//!
//! ```text
//! cargo run --release -p driftless-node --example drift_scenario -- \
//!     [--accounts 100000] [--contacts 300000] [--seconds 60] [--only-on]
//! ```
//!
//! Twice, each time with a fresh simulator and database: load the Accounts and Contacts, run a
//! workload on both for `--seconds` with 5% long transactions of 2-8 s, primary polls every 5 s,
//! secondary delay 15 s; after the workload stops, wait until the windows are read past it and
//! one more secondary cycle re-read them; then `verify`. Run A has secondary polls on and must end
//! with 0 differences and drift_records > 0 on both mappings, and Bulk-polled windows must have had
//! exactly one secondary Bulk job each (secondary bulk_jobs = primary bulk_jobs minus the initial
//! load's job). Run B has them off and must end with differences: the drift is real and visible.
//!
//! Primary windows close at now minus the margin, as Heroku Connect's primary poll does
//! (`connection.sync.use_latest_date_covered = false`). With the default (true) windows never pass
//! getUpdated's latestDateCovered, long transactions are never missed, and there is no drift for
//! secondary polls to find.
//!
//! Exits 1 when a check fails. Postgres at 127.0.0.1:5432 (trust), databases dropped at the end.

use driftless_testkit as common;

use std::time::{Duration, Instant};

use common::*;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, RunOptions};

struct Args {
    accounts: u64,
    contacts: u64,
    seconds: u64,
    only_on: bool,
}

fn args() -> Args {
    let mut out = Args {
        accounts: 100_000,
        contacts: 300_000,
        seconds: 60,
        only_on: false,
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str| -> u64 {
        v.and_then(|v| v.replace('_', "").parse().ok())
            .unwrap_or_else(|| panic!("{what} N"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--accounts" => out.accounts = num(it.next(), "--accounts"),
            "--contacts" => out.contacts = num(it.next(), "--contacts"),
            "--seconds" => out.seconds = num(it.next(), "--seconds"),
            "--only-on" => out.only_on = true,
            other => panic!(
                "unknown argument {other}; usage: drift_scenario [--accounts N] [--contacts N] [--seconds N] [--only-on]"
            ),
        }
    }
    out
}

const MAPPINGS: &str = r#"{"mappings":[
  {"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":5,"sf_notify_enabled":false,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"CreatedDate":{},"Name":{},"Type":{},"Industry":{},
              "AnnualRevenue":{},"NumberOfEmployees":{},"Phone":{},"BillingCity":{},"Description":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}},
  {"object_name":"Contact","config":{"access":"read_only","sf_polling_seconds":5,"sf_notify_enabled":false,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"AccountId":{},"FirstName":{},"LastName":{},
              "Email":{},"Birthdate":{},"HasOptedOutOfEmail":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}
],"version":1}"#;

/// Busy enough that a 5 s window holds more changes than `bulk_threshold` (so windows go through
/// Bulk), with 5% long transactions of 2-8 s.
fn workloads() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"object": "Account", "inserts_per_sec": 20, "updates_per_sec": 200,
            "deletes_per_sec": 5, "long_txn_fraction": 0.05, "long_txn_ms": [2000, 8000]}),
        serde_json::json!({"object": "Contact", "inserts_per_sec": 20, "updates_per_sec": 150,
            "deletes_per_sec": 5, "long_txn_fraction": 0.05, "long_txn_ms": [2000, 8000]}),
    ]
}

const BULK_THRESHOLD: u64 = 500;

struct Figures {
    load_secs: f64,
    catch_up_secs: f64,
    verify_secs: f64,
    differences: i64,
    drift: Vec<(String, i64)>,
    primary_bulk_jobs: Vec<(String, i64)>,
    secondary_bulk_jobs: Vec<(String, i64)>,
    bulk_windows: Vec<(String, i64)>,
    api_calls: i64,
    peak_connections: i64,
    workload: serde_json::Value,
}

async fn scenario(a: &Args, secondary: bool) -> Figures {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![
            ("Account".into(), a.accounts),
            ("Contact".into(), a.contacts),
        ],
        ..Default::default()
    })
    .await;
    let setup = Setup {
        faults: false,
        bulk_threshold: BULK_THRESHOLD,
        secondary_enabled: secondary,
        db_pool_size: 4,
    };
    let config = write_config_ext(
        &db,
        &sim.info,
        &setup,
        MAPPINGS,
        &ConfigExtra {
            sync: "use_latest_date_covered = false\n".into(),
            ..ConfigExtra::default()
        },
    );
    // The issue's timings, over the test template's quicker ones.
    let mut config = config;
    config.connections[0].sync.poll_interval_secs = 5;
    config.connections[0].sync.secondary_delay_secs = 15;
    let sampler = ConnectionSampler::start(&db, "driftless/acme/sync").await;
    let started = Instant::now();
    let engine = run(config.clone(), RunOptions::default())
        .await
        .expect("engine starts");
    wait_until("initial load", Duration::from_secs(1800), || async {
        let s = engine.status().await;
        s.mappings
            .iter()
            .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some())
    })
    .await;
    let load_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "secondary={secondary}: loaded in {load_secs:.1}s; workload for {}s",
        a.seconds
    );

    let stopped = run_workload(&sim.info, &workloads(), Duration::from_secs(a.seconds)).await;
    let workload = reqwest::get(format!("{}/_sim/workload", sim.info.instance_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let caught = Instant::now();
    let pg = db.client().await;
    wait_synced_past(&engine, stopped, Duration::from_secs(600)).await;
    if secondary {
        wait_secondary_done(&pg, "salesforce", stopped, Duration::from_secs(600)).await;
    }
    let catch_up_secs = caught.elapsed().as_secs_f64();
    let status = engine.status().await;
    let windows = pg
        .query(
            "SELECT object_name, count(*) FROM salesforce._driftless_windows WHERE kind = 'bulk' \
             GROUP BY object_name ORDER BY object_name",
            &[],
        )
        .await
        .unwrap();
    engine.stop().await;
    let peak_connections = sampler.peak();
    drop(sampler);

    let v = Instant::now();
    let reports = verify(
        &config,
        &VerifyOptions {
            max_listed: 3,
            ..VerifyOptions::default()
        },
    )
    .await
    .expect("verify");
    let verify_secs = v.elapsed().as_secs_f64();
    for r in &reports {
        eprintln!(
            "verify {}: {} records, {:?}",
            r.object, r.salesforce_records, r.counts
        );
    }
    sim.stop().await;
    let per = |f: fn(&driftless_node::status::MappingDoc) -> i64| -> Vec<(String, i64)> {
        status
            .mappings
            .iter()
            .map(|m| (m.object.clone(), f(m)))
            .collect()
    };
    Figures {
        load_secs,
        catch_up_secs,
        verify_secs,
        differences: reports.iter().map(|r| r.differences()).sum(),
        drift: per(|m| m.secondary.drift_records),
        primary_bulk_jobs: per(|m| m.primary.bulk_jobs),
        secondary_bulk_jobs: per(|m| m.secondary.bulk_jobs),
        bulk_windows: windows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect(),
        api_calls: status.mappings.iter().map(|m| m.api_calls).sum(),
        peak_connections,
        workload,
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name}: load {:.1}s, caught up {:.1}s after the workload, verify {:.1}s, differences {}, \
         drift_records {:?}, primary bulk_jobs {:?}, secondary bulk_jobs {:?}, bulk windows {:?}, \
         api calls {}, peak pg sessions {}",
        f.load_secs,
        f.catch_up_secs,
        f.verify_secs,
        f.differences,
        f.drift,
        f.primary_bulk_jobs,
        f.secondary_bulk_jobs,
        f.bulk_windows,
        f.api_calls,
        f.peak_connections
    );
    println!("{name}: workload {}", f.workload);
}

#[actix_rt::main]
async fn main() {
    let a = args();
    println!(
        "drift scenario: {} Accounts, {} Contacts, {} s workload, 5% long transactions of 2-8 s, \
         primary interval 5 s, secondary delay 15 s, bulk_threshold {BULK_THRESHOLD}, \
         use_latest_date_covered = false",
        a.accounts, a.contacts, a.seconds
    );
    let on = scenario(&a, true).await;
    print("secondary on", &on);
    let mut failures = Vec::new();
    if on.differences != 0 {
        failures.push(format!(
            "{} differences with secondary polls",
            on.differences
        ));
    }
    if on.drift.len() != 2 || on.drift.iter().any(|(_, d)| *d == 0) {
        failures.push(format!("drift_records not > 0 on both: {:?}", on.drift));
    }
    for (object, windows) in &on.bulk_windows {
        let secondary = on
            .secondary_bulk_jobs
            .iter()
            .find(|(o, _)| o == object)
            .map_or(0, |(_, n)| *n);
        let primary = on
            .primary_bulk_jobs
            .iter()
            .find(|(o, _)| o == object)
            .map_or(0, |(_, n)| *n);
        // The initial load is one more primary Bulk job, with no window and no secondary poll.
        if secondary != *windows || primary != windows + 1 {
            failures.push(format!(
                "{object}: {windows} bulk windows, primary bulk_jobs {primary}, secondary {secondary}"
            ));
        }
    }
    if on.bulk_windows.is_empty() {
        failures.push("no window was read through Bulk".into());
    }
    if !a.only_on {
        let off = scenario(&a, false).await;
        print("secondary off", &off);
        if off.differences == 0 {
            failures.push("no differences without secondary polls: drift not visible".into());
        }
    }
    if failures.is_empty() {
        println!("all checks passed");
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        std::process::exit(1);
    }
}
