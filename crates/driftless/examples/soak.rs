//! The soak benchmark: 20 mappings on 2 connections under a steady workload with faults, for
//! `--minutes` (default 10), sampling the engine's resident memory, the Postgres sessions of each
//! target database and the sync's lag every 10 s, then stopping the workload and verifying.
//!
//! Everything runs as the user would run it: the release `driftless sim` and `driftless run`
//! binaries as child processes, `driftless ctl --json status` for lag, `driftless verify --wait`
//! at the end. Build them first:
//!
//! ```sh
//! cargo build --release -p driftless && cargo run --release -p driftless --example soak -- --minutes 10
//! ```
//!
//! Targets (issue 17): 0 differences, memory flat (the last minute's mean within 10% of the
//! second's), sessions at most `db_pool_size`. Figures are printed, never asserted.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const POOL: usize = 4;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Four custom objects beside the six built-in ones: ten mappings per connection.
const CUSTOM: [&str; 4] = ["Soak_1__c", "Soak_2__c", "Soak_3__c", "Soak_4__c"];
const BUILT_IN: [&str; 6] = [
    "Account",
    "Contact",
    "Opportunity",
    "Lead",
    "Case",
    "Invoice__c",
];

struct Args {
    minutes: u64,
    changes_per_sec: u64,
    records_per_object: u64,
}

fn args() -> Args {
    let mut a = Args {
        minutes: 10,
        changes_per_sec: 2000,
        records_per_object: 20_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--minutes" => a.minutes = value(),
            "--changes-per-sec" => a.changes_per_sec = value(),
            "--records" => a.records_per_object = value(),
            other => panic!("unknown flag {other} (--minutes N, --changes-per-sec N, --records N)"),
        }
    }
    a
}

/// Kills a child process when dropped, however the benchmark ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/release/examples/soak -> target/release/driftless
    let bin = exe.parent().unwrap().parent().unwrap().join("driftless");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release -p driftless` first",
        bin.display()
    );
    bin
}

/// A describe body (`GET /sobjects/X/describe`) for one custom object with text, number, date
/// and picklist fields.
fn custom_describe(name: &str, prefix: &str) -> Value {
    let field = |n: &str, t: &str, extra: Value| {
        let mut f = json!({"name": n, "type": t, "label": n, "nillable": n != "Id",
            "createable": n != "Id" && !n.ends_with("Date") && n != "SystemModstamp" && n != "IsDeleted",
            "updateable": n != "Id" && !n.ends_with("Date") && n != "SystemModstamp" && n != "IsDeleted",
            "custom": n.ends_with("__c")});
        for (k, v) in extra.as_object().unwrap() {
            f[k] = v.clone();
        }
        f
    };
    json!({
        "name": name, "label": name, "keyPrefix": prefix, "custom": true, "queryable": true,
        "replicateable": true, "createable": true, "updateable": true, "deletable": true,
        "fields": [
            field("Id", "id", json!({"length": 18})),
            field("Name", "string", json!({"length": 80, "nameField": true})),
            field("CreatedDate", "datetime", json!({})),
            field("LastModifiedDate", "datetime", json!({})),
            field("SystemModstamp", "datetime", json!({})),
            field("IsDeleted", "boolean", json!({})),
            field("Amount__c", "currency", json!({"precision": 18, "scale": 2})),
            field("Due__c", "date", json!({})),
            field("Notes__c", "textarea", json!({"length": 32000})),
            field("Stage__c", "picklist", json!({"length": 40, "picklistValues": [
                {"value": "New", "active": true, "defaultValue": true},
                {"value": "Open", "active": true, "defaultValue": false},
                {"value": "Closed", "active": true, "defaultValue": false}]})),
        ]
    })
}

fn fields_of(object: &str) -> Vec<&'static str> {
    let mut f = vec!["Id", "SystemModstamp", "IsDeleted"];
    f.extend(match object {
        "Account" => &["Name", "Industry", "AnnualRevenue", "Phone"][..],
        "Contact" => &["AccountId", "FirstName", "LastName", "Email"][..],
        "Opportunity" => &["Name", "Amount", "StageName", "CloseDate"][..],
        "Lead" => &["FirstName", "LastName", "Company", "Status"][..],
        "Case" => &["Subject", "Status", "Priority"][..],
        "Invoice__c" => &["Name", "External_Id__c", "Amount__c"][..],
        _ => &["Name", "Amount__c", "Due__c", "Notes__c", "Stage__c"][..],
    });
    f
}

fn mappings_json() -> String {
    let objects = BUILT_IN.iter().chain(CUSTOM.iter());
    let mappings: Vec<Value> = objects
        .map(|o| {
            let fields: serde_json::Map<String, Value> = fields_of(o)
                .into_iter()
                .map(|f| (f.to_owned(), json!({})))
                .collect();
            json!({"object_name": o, "config": {"access": "read_only", "sf_polling_seconds": 5,
                "fields": fields,
                "indexes": {"Id": {"unique": true}, "SystemModstamp": {"unique": false}}}})
        })
        .collect();
    json!({"mappings": mappings, "version": 1}).to_string()
}

fn read_ready_line(child: &mut Child) -> Value {
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"))
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    tokio::spawn(conn);
    c
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Sample {
    at: Duration,
    rss_mb: f64,
    sessions: Vec<i64>,
    lag_secs: f64,
    states: String,
}

fn ctl_status(bin: &Path, admin: &str) -> Option<Value> {
    let out = Command::new(bin)
        .args([
            "ctl",
            "--coordinator",
            admin,
            "--token",
            "soak",
            "--json",
            "status",
        ])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Seconds between now and the oldest `synced_through`, and a count of mappings per state.
fn lag_and_states(status: &Value) -> (f64, String) {
    let now = chrono::Utc::now();
    let mut lag: f64 = 0.0;
    let mut states = std::collections::BTreeMap::<String, usize>::new();
    for m in status["mappings"].as_array().into_iter().flatten() {
        *states
            .entry(m["state"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
        if let Some(t) = m["synced_through"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        {
            lag = lag.max((now - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1e3);
        } else {
            lag = f64::INFINITY;
        }
    }
    let states = states
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    (lag, states)
}

#[tokio::main]
async fn main() {
    let args = args();
    let bin = binary();
    let dir =
        std::env::temp_dir().join(format!("driftless-soak-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let objects_file = dir.join("custom_objects.json");
    let sobjects: Vec<Value> = CUSTOM
        .iter()
        .enumerate()
        .map(|(i, o)| custom_describe(o, &format!("a0{i}")))
        .collect();
    std::fs::write(&objects_file, json!({"sobjects": sobjects}).to_string()).unwrap();

    let dataset: Vec<String> = BUILT_IN
        .iter()
        .chain(CUSTOM.iter())
        .map(|o| format!("{o}={}", args.records_per_object))
        .collect();
    let mut sim = Command::new(&bin);
    sim.args(["sim", "--dataset", &dataset.join(","), "--objects"])
        .arg(&objects_file)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("sim.log")).unwrap());
    let mut sim = sim.spawn().expect("driftless sim");
    let info = read_ready_line(&mut sim);
    let sim = Proc(sim);
    let sim_url = info["instance_url"].as_str().unwrap().to_owned();
    println!(
        "simulator ready at {sim_url} with {} objects",
        dataset.len()
    );

    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = pg(&admin_url).await;
    let base = admin_url.rsplit_once('/').unwrap().0.to_owned();
    let dbs: Vec<String> = (1..=2)
        .map(|i| format!("soak_{}_{i}", uuid::Uuid::new_v4().simple()))
        .collect();
    for db in &dbs {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
    }
    std::fs::write(dir.join("mappings.json"), mappings_json()).unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut toml = format!("[coordinator]\nlisten = \"{listen}\"\nadmin_token = \"soak\"\n");
    for (i, db) in dbs.iter().enumerate() {
        toml.push_str(&format!(
            "\n[[connection]]\nname = \"c{i}\"\ndatabase_url = \"{base}/{db}\"\ndb_pool_size = {POOL}\n\
             mappings = \"mappings.json\"\n\n[connection.salesforce]\nlogin_url = \"{}\"\n\
             auth = \"password\"\nusername = \"{}\"\npassword = \"{}\"\nclient_id = \"{}\"\n\
             client_secret = \"{}\"\n\n[connection.sync]\npoll_interval_secs = 5\n\
             secondary_delay_secs = 15\n",
            info["login_url"].as_str().unwrap(),
            info["username"].as_str().unwrap(),
            info["password"].as_str().unwrap(),
            info["client_id"].as_str().unwrap(),
            info["client_secret"].as_str().unwrap(),
        ));
    }
    let config = dir.join("driftless.toml");
    std::fs::write(&config, toml).unwrap();

    let started = Instant::now();
    let run = Command::new(&bin)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("run.log")).unwrap())
        .spawn()
        .expect("driftless run");
    let run = Proc(run);
    let pid = run.0.id();
    let admin_addr = format!("http://{listen}");
    loop {
        if let Some(status) = ctl_status(&bin, &admin_addr) {
            let all = status["mappings"].as_array().map_or(0, Vec::len);
            let synced = status["mappings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["state"] == "DATA_SYNCED")
                .count();
            if all == 2 * (BUILT_IN.len() + CUSTOM.len()) && synced == all {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the initial loads did not finish in 15 min; see {}",
            dir.join("run.log").display()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "initial load of {} mappings done in {:.1} s",
        2 * (BUILT_IN.len() + CUSTOM.len()),
        started.elapsed().as_secs_f64()
    );

    let http = reqwest::Client::new();
    let per_object = args.changes_per_sec / (BUILT_IN.len() + CUSTOM.len()) as u64;
    for o in BUILT_IN.iter().chain(CUSTOM.iter()) {
        let body = json!({"object": o, "inserts_per_sec": per_object / 10,
            "updates_per_sec": per_object - per_object / 10 - per_object / 20,
            "deletes_per_sec": per_object / 20, "long_txn_fraction": 0.05,
            "long_txn_ms": [2000, 8000]});
        let r = http
            .post(format!("{sim_url}/_sim/workload"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "workload on {o}: {}", r.status());
    }
    let faults =
        json!({"http_error_rate": 0.03, "http_error_status": 503, "session_expiry_secs": 60});
    let r = http
        .post(format!("{sim_url}/_sim/faults"))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "faults: {}", r.status());
    println!(
        "workload: {} changes/s over {} objects, 5% long transactions of 2-8 s; faults {faults}",
        per_object * (BUILT_IN.len() + CUSTOM.len()) as u64,
        BUILT_IN.len() + CUSTOM.len()
    );

    let soak_start = Instant::now();
    let clients: Vec<tokio_postgres::Client> = {
        let mut v = Vec::new();
        for _ in &dbs {
            v.push(pg(&admin_url).await);
        }
        v
    };
    let mut samples: Vec<Sample> = Vec::new();
    println!(
        "{:>6}  {:>8}  {:>12}  {:>8}  states",
        "t (s)", "rss MB", "sessions", "lag (s)"
    );
    while soak_start.elapsed() < Duration::from_secs(args.minutes * 60) {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let mut sessions = Vec::new();
        for (c, db) in clients.iter().zip(&dbs) {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[db],
                )
                .await
                .unwrap()
                .get(0);
            sessions.push(n);
        }
        let (lag_secs, states) = ctl_status(&bin, &admin_addr)
            .map(|s| lag_and_states(&s))
            .unwrap_or((f64::NAN, "status unavailable".into()));
        let s = Sample {
            at: soak_start.elapsed(),
            rss_mb: rss_mb(pid),
            sessions,
            lag_secs,
            states,
        };
        println!(
            "{:>6.0}  {:>8.1}  {:>12}  {:>8.1}  {}",
            s.at.as_secs_f64(),
            s.rss_mb,
            format!("{:?}", s.sessions),
            s.lag_secs,
            s.states
        );
        let _ = std::io::stdout().flush();
        samples.push(s);
    }

    http.delete(format!("{sim_url}/_sim/faults"))
        .send()
        .await
        .unwrap();
    http.delete(format!("{sim_url}/_sim/workload"))
        .send()
        .await
        .unwrap();
    let stats: Value = http
        .get(format!("{sim_url}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let verify_started = Instant::now();
    let verify = Command::new(&bin)
        .args(["verify", "--wait", "300", "--config"])
        .arg(&config)
        .output()
        .expect("driftless verify");
    let report = String::from_utf8_lossy(&verify.stdout);
    let differences: i64 = report
        .lines()
        .filter_map(|l| {
            l.split(" difference(s)")
                .next()?
                .rsplit(' ')
                .next()?
                .parse::<i64>()
                .ok()
        })
        .sum();

    let minute = |m: u64| -> f64 {
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| s.at.as_secs() / 60 == m)
            .map(|s| s.rss_mb)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let second = minute(1);
    let last = minute(args.minutes.saturating_sub(1));
    let peak_sessions = samples
        .iter()
        .flat_map(|s| s.sessions.iter().copied())
        .max()
        .unwrap_or(0);
    let max_lag = samples.iter().map(|s| s.lag_secs).fold(0.0, f64::max);
    println!();
    println!("soak: {} min, {} samples", args.minutes, samples.len());
    println!(
        "memory: second minute {second:.1} MB, last minute {last:.1} MB (ratio {:.3}; target within 10%)",
        last / second
    );
    println!("postgres sessions: peak {peak_sessions} per database of db_pool_size {POOL}");
    println!("lag: max {max_lag:.1} s (oldest synced_through behind now)");
    println!(
        "api calls: {}; verify (--wait 300) took {:.0} s: exit {}, {} difference(s)",
        stats["api_calls"]["total"],
        verify_started.elapsed().as_secs_f64(),
        verify.status.code().unwrap_or(-1),
        differences
    );
    print!("{report}");
    drop(run);
    drop(sim);
    for db in &dbs {
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
