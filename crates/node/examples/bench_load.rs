//! Initial-load benchmark: driftless against a plain Postgres COPY of the same rows.
//!
//! ```text
//! cargo build --release -p driftless            # the simulator binary
//! cargo run --release -p driftless-node --example bench_load -- [--accounts N]
//! ```
//!
//! The simulator runs as a child process (`target/release/driftless sim`, or `--sim-bin PATH`), so
//! this process holds only the engine (plus a status poll): its peak resident set (`VmHWM` from
//! `/proc/self/status`, read as soon as the load is done and before the COPY baseline starts) is
//! driftless's own memory.
//!
//! Steps: a fresh database on 127.0.0.1:5432; the engine loads every Account field of N Accounts
//! (timed from `run` until status shows all N rows DATA_SYNCED); then a table `LIKE` the engine's
//! (same columns, types, defaults and indexes) takes the simulator's ground-truth export
//! (`GET /_sim/export/Account`) through `COPY … FROM STDIN (FORMAT csv)`, streamed from the HTTP
//! response and timed from the first byte to the COPY's end. The database is dropped at the end.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use driftless_core::config::Config;
use driftless_node::{run, RunOptions};
use futures::{SinkExt, StreamExt};

const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

struct Args {
    accounts: u64,
    sim_bin: PathBuf,
    keep_db: bool,
}

fn args() -> Args {
    let mut out = Args {
        accounts: 1_000_000,
        sim_bin: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/driftless"),
        keep_db: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--accounts" => {
                out.accounts = it
                    .next()
                    .and_then(|v| v.replace('_', "").parse().ok())
                    .expect("--accounts N")
            }
            "--sim-bin" => out.sim_bin = PathBuf::from(it.next().expect("--sim-bin PATH")),
            "--keep-db" => out.keep_db = true,
            other => panic!("unknown argument {other}; usage: bench_load [--accounts N] [--sim-bin PATH] [--keep-db]"),
        }
    }
    out
}

/// The simulator child; killed (by its own pid) when dropped.
struct Sim {
    child: Child,
    info: sfsim::SimInfo,
}

impl Sim {
    fn start(bin: &PathBuf, accounts: u64) -> Sim {
        let mut child = Command::new(bin)
            .args(["sim", "--dataset", &format!("Account={accounts}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (build it with `cargo build --release -p driftless`)",
                    bin.display()
                )
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("simulator's ready line");
        let info = serde_json::from_str(&line).expect("simulator info JSON");
        Sim { child, info }
    }

    fn rss_kb(&self, key: &str) -> Option<u64> {
        status_kb(&format!("/proc/{}/status", self.child.id()), key)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_kb(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("postgres on 127.0.0.1:5432");
    actix_rt::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn write_config(db_url: &str, sim: &sfsim::SimInfo) -> Config {
    let def = sfsim::schema::Schema::standard();
    let account = def.object("Account").expect("Account in the schema");
    let fields: serde_json::Map<String, serde_json::Value> = account
        .fields
        .iter()
        .map(|f| (f.name.clone(), serde_json::json!({})))
        .collect();
    let mappings = serde_json::json!({"mappings": [{
        "object_name": "Account",
        "config": {
            "access": "read_only", "sf_polling_seconds": 600, "sf_notify_enabled": false,
            "fields": fields,
            "indexes": {"Id": {"unique": true}, "SystemModstamp": {"unique": false}, "Name": {"unique": false}}
        }
    }], "version": 1});
    let dir =
        std::env::temp_dir().join(format!("driftless-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mappings.json"), mappings.to_string()).unwrap();
    let toml = format!(
        r#"[coordinator]
listen = "127.0.0.1:0"

[[connection]]
name = "bench"
database_url = "{db_url}"
mappings = "mappings.json"

[connection.salesforce]
login_url = "{login}"
auth = "password"
username = "{user}"
password = "${{SF_PASSWORD}}"
client_id = "{cid}"
client_secret = "{secret}"

[connection.sync]
secondary_enabled = false
"#,
        login = sim.login_url,
        user = sim.username,
        cid = sim.client_id,
        secret = sim.client_secret,
    );
    let path = dir.join("driftless.toml");
    std::fs::write(&path, &toml).unwrap();
    let env = HashMap::from([("SF_PASSWORD".to_owned(), sim.password.clone())]);
    Config::parse(&toml, &path, env).expect("valid config")
}

async fn sim_stats(sim: &sfsim::SimInfo) -> serde_json::Value {
    reqwest::get(format!("{}/_sim/stats", sim.instance_url))
        .await
        .expect("/_sim/stats")
        .json()
        .await
        .expect("stats JSON")
}

/// Loads the export into `copy_table` with COPY; returns (rows, bytes, seconds of the COPY).
async fn copy_baseline(
    pg: &tokio_postgres::Client,
    sim: &sfsim::SimInfo,
    copy_table: &str,
) -> (u64, u64, f64) {
    // Engine column names, to map the export's header (Id → sfid, else lowercased).
    let cols: Vec<String> = pg
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'salesforce' AND table_name = 'account'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let resp = reqwest::get(format!("{}/_sim/export/Account", sim.instance_url))
        .await
        .expect("export");
    assert!(resp.status().is_success(), "export: {}", resp.status());
    let mut body = resp.bytes_stream();
    // The header arrives first; the simulator has taken its snapshot by then.
    let mut first = body.next().await.expect("export header").expect("export");
    while !first.contains(&b'\n') {
        let more = body.next().await.expect("export header").expect("export");
        first = [first, more].concat().into();
    }
    let nl = first.iter().position(|b| *b == b'\n').unwrap();
    let header = std::str::from_utf8(&first[..nl]).unwrap();
    let mapped: Vec<String> = header
        .split(',')
        .map(|h| {
            let h = h.trim_matches('"');
            let c = if h == "Id" {
                "sfid".to_owned()
            } else {
                h.to_lowercase()
            };
            assert!(cols.contains(&c), "export column {h} has no column {c}");
            format!("\"{c}\"")
        })
        .collect();
    // The export writes nulls as `""`; Salesforce has no empty strings, so those are NULL.
    let rest = first.slice(nl + 1..);
    let started = Instant::now();
    let sink = pg
        .copy_in::<_, bytes::Bytes>(&format!(
            "COPY {copy_table} ({cols}) FROM STDIN WITH (FORMAT csv, FORCE_NULL ({cols}))",
            cols = mapped.join(", ")
        ))
        .await
        .expect("COPY");
    futures::pin_mut!(sink);
    let mut bytes = rest.len() as u64;
    sink.feed(rest).await.expect("copy data");
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("export body");
        bytes += chunk.len() as u64;
        sink.feed(chunk).await.expect("copy data");
    }
    let rows = sink.as_mut().finish().await.expect("COPY end");
    (rows, bytes, started.elapsed().as_secs_f64())
}

fn main() {
    let args = args();
    let t = Instant::now();
    let sim = Sim::start(&args.sim_bin, args.accounts);
    eprintln!(
        "simulator pid {} ready with {} Accounts in {:.1}s",
        sim.child.id(),
        args.accounts,
        t.elapsed().as_secs_f64()
    );
    actix_rt::System::new().block_on(bench(args, sim));
}

async fn bench(args: Args, sim: Sim) {
    let n = args.accounts;
    let db_name = format!("driftless_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = connect(ADMIN).await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db_name}\""))
        .await
        .expect("create database");
    let db_url = format!("postgres://postgres@127.0.0.1:5432/{db_name}");
    let config = write_config(&db_url, &sim.info);
    let stats_before = sim_stats(&sim.info).await;
    let hwm_before = status_kb("/proc/self/status", "VmHWM:").unwrap_or(0);

    let started = Instant::now();
    let engine = run(
        config,
        RunOptions {
            serve_admin: false,
            ..RunOptions::default()
        },
    )
    .await
    .expect("engine starts");
    let mut sim_peak_kb = 0;
    let mut last_report = Instant::now();
    let load_secs = loop {
        let s = engine.status().await;
        let m = s
            .mappings
            .iter()
            .find(|m| m.object == "Account")
            .expect("Account status");
        if m.state == "DATA_SYNCED" && m.rows >= n as i64 {
            break started.elapsed().as_secs_f64();
        }
        assert!(m.state != "SYSTEM_ERROR", "engine failed: {:?}", s.mappings);
        sim_peak_kb = sim_peak_kb.max(sim.rss_kb("VmRSS:").unwrap_or(0));
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {:>6.1}s {} rows={} rss={} MB",
                started.elapsed().as_secs_f64(),
                m.state,
                m.rows,
                status_kb("/proc/self/status", "VmRSS:").unwrap_or(0) / 1024
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let hwm_kb = status_kb("/proc/self/status", "VmHWM:").unwrap_or(0);
    let stats = sim_stats(&sim.info).await;
    engine.stop().await;

    let pg = connect(&db_url).await;
    let loaded: i64 = pg
        .query_one("SELECT count(*) FROM salesforce.account", &[])
        .await
        .unwrap()
        .get(0);
    pg.batch_execute(
        "CREATE TABLE salesforce.account_copy (LIKE salesforce.account INCLUDING ALL)",
    )
    .await
    .expect("baseline table");
    let (copy_rows, copy_bytes, copy_secs) =
        copy_baseline(&pg, &sim.info, "salesforce.account_copy").await;
    let sizes: (i64, i64) = {
        let r = pg
            .query_one(
                "SELECT pg_total_relation_size('salesforce.account'), \
                 pg_total_relation_size('salesforce.account_copy')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    drop(pg);

    let engine_rate = loaded as f64 / load_secs;
    let copy_rate = copy_rows as f64 / copy_secs;
    let calls = |s: &serde_json::Value| s["api_calls"]["total"].as_u64().unwrap_or(0);
    println!(
        "bench_load: {n} Accounts, every Account field ({} columns)",
        {
            sfsim::schema::Schema::standard()
                .object("Account")
                .unwrap()
                .fields
                .len()
        }
    );
    println!(
        "  driftless initial load: {loaded} rows in {load_secs:.1}s = {engine_rate:.0} rows/s"
    );
    println!(
        "  COPY baseline:          {copy_rows} rows ({:.0} MB CSV) in {copy_secs:.1}s = {copy_rate:.0} rows/s",
        copy_bytes as f64 / 1e6
    );
    println!(
        "  ratio driftless/COPY:   {:.2} (target >= 0.70)",
        engine_rate / copy_rate
    );
    println!(
        "  driftless peak memory:  {:.0} MB (VmHWM of the engine's process, the simulator being a child process; {:.0} MB before the engine started; target <= 250 MB)",
        hwm_kb as f64 / 1024.0,
        hwm_before as f64 / 1024.0
    );
    println!(
        "  simulator RSS (child):  {:.0} MB peak sampled",
        sim_peak_kb as f64 / 1024.0
    );
    println!(
        "  API calls:              {} ({} before the load) by route {}",
        calls(&stats) - calls(&stats_before),
        calls(&stats_before),
        stats["api_calls"]["by_route"]
    );
    println!(
        "  bulk v1 jobs/batches:   {}/{}, records served {}",
        stats["bulk_v1"]["jobs"], stats["bulk_v1"]["batches"], stats["records_served"]
    );
    println!(
        "  table sizes:            engine {:.0} MB, copy {:.0} MB",
        sizes.0 as f64 / 1e6,
        sizes.1 as f64 / 1e6
    );

    if args.keep_db {
        eprintln!("kept database {db_name}");
    } else {
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
            ))
            .await
            .expect("drop database");
    }
    drop(sim);
}
