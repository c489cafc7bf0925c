//! Initial-load benchmark: driftless against the user's own `psql \copy` of the same rows, and
//! against the ceiling (binary COPY into a bare table, then the same indexes).
//!
//! ```text
//! cargo build --release -p driftless            # the simulator binary
//! cargo run --release -p driftless-node --example bench_load -- [--accounts N] [--fields 7|all]
//! ```
//!
//! The simulator runs as a child process (`target/release/driftless sim`, or `--sim-bin PATH`), so
//! this process holds only the engine (plus a status poll): its peak resident set (`VmHWM` from
//! `/proc/self/status`, read as soon as the load is done and before the baselines start) is
//! driftless's own memory.
//!
//! Steps, in one run, on a fresh database on 127.0.0.1:5432:
//! 1. the engine loads N Accounts with the mapped fields (7 by default, `--fields all` for every
//!    Account field), timed from `run` until status shows all N rows DATA_SYNCED: the Bulk job,
//!    its download, the COPY and the index builds are all inside the figure;
//! 2. `\copy`: the same rows as CSV, taken from the simulator's ground-truth export
//!    (`/_sim/export/Account?fields=...`) into a file before the timing starts, loaded by `psql -c
//!    "\copy ..."` into a table `LIKE` the engine's (same columns, defaults and indexes), timed
//!    around the psql process;
//! 3. the ceiling: the engine's rows as a COPY BINARY file (made before the timing), loaded by
//!    `psql` into a bare copy of the table (no index, no primary key), then the primary key and
//!    the same indexes built, timed together.
//!
//! The database and the files are removed at the end.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use driftless_core::config::Config;
use driftless_node::{run, RunOptions};
use futures::StreamExt;

const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

struct Args {
    accounts: u64,
    /// Mapped fields: 7, or every Account field.
    all_fields: bool,
    sim_bin: PathBuf,
    keep_db: bool,
}

/// The 7-field mapping: the three system fields every mapping has, and four others.
const SEVEN_FIELDS: [&str; 7] = [
    "Id",
    "IsDeleted",
    "SystemModstamp",
    "Name",
    "Industry",
    "AnnualRevenue",
    "BillingCity",
];

fn args() -> Args {
    let mut out = Args {
        accounts: 300_000,
        all_fields: false,
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
            "--fields" => {
                out.all_fields = match it.next().as_deref() {
                    Some("all") => true,
                    Some("7") => false,
                    _ => panic!("--fields 7|all"),
                }
            }
            "--sim-bin" => out.sim_bin = PathBuf::from(it.next().expect("--sim-bin PATH")),
            "--keep-db" => out.keep_db = true,
            other => panic!("unknown argument {other}; usage: bench_load [--accounts N] [--fields 7|all] [--sim-bin PATH] [--keep-db]"),
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

/// The Salesforce fields the benchmark maps, in the export's order.
fn mapped_fields(all: bool) -> Vec<String> {
    let def = sfsim::schema::Schema::standard();
    let account = def.object("Account").expect("Account in the schema");
    account
        .fields
        .iter()
        .map(|f| f.name.clone())
        .filter(|f| all || SEVEN_FIELDS.contains(&f.as_str()))
        .collect()
}

fn write_config(db_url: &str, sim: &sfsim::SimInfo, mapped: &[String]) -> Config {
    let fields: serde_json::Map<String, serde_json::Value> = mapped
        .iter()
        .map(|f| (f.clone(), serde_json::json!({})))
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

/// The engine's column for an export header (`Id` is `sfid`, the rest lowercased).
fn column_of(field: &str) -> String {
    if field == "Id" {
        "sfid".to_owned()
    } else {
        field.to_lowercase()
    }
}

/// Writes the simulator's export of `fields` to `path` (outside any timing); returns its bytes.
async fn export_csv(sim: &sfsim::SimInfo, fields: &[String], path: &std::path::Path) -> u64 {
    let resp = reqwest::get(format!(
        "{}/_sim/export/Account?fields={}",
        sim.instance_url,
        fields.join(",")
    ))
    .await
    .expect("export");
    assert!(resp.status().is_success(), "export: {}", resp.status());
    let mut body = resp.bytes_stream();
    let mut file = std::fs::File::create(path).expect("csv file");
    let mut bytes = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("export body");
        bytes += chunk.len() as u64;
        std::io::Write::write_all(&mut file, &chunk).expect("write csv");
    }
    bytes
}

/// Runs one psql command against `db_url`; returns its seconds.
fn psql(db_url: &str, command: &str) -> f64 {
    let started = Instant::now();
    let out = Command::new("psql")
        .args([db_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", command])
        .output()
        .expect("psql on PATH");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "psql {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

/// `\copy` of the CSV into a table like the engine's, indexes included: (rows, seconds).
async fn copy_baseline(
    pg: &tokio_postgres::Client,
    db_url: &str,
    fields: &[String],
    csv: &std::path::Path,
) -> (i64, f64) {
    pg.batch_execute(
        "CREATE TABLE salesforce.account_copy (LIKE salesforce.account INCLUDING ALL)",
    )
    .await
    .expect("baseline table");
    let cols: Vec<String> = fields
        .iter()
        .map(|f| format!("\"{}\"", column_of(f)))
        .collect();
    // The export writes nulls as `""`; Salesforce has no empty strings, so those are NULL.
    let secs = psql(
        db_url,
        &format!(
            "\\copy salesforce.account_copy ({cols}) FROM '{}' WITH (FORMAT csv, HEADER true, FORCE_NULL ({cols}))",
            csv.display(),
            cols = cols.join(", ")
        ),
    );
    let rows: i64 = pg
        .query_one("SELECT count(*) FROM salesforce.account_copy", &[])
        .await
        .unwrap()
        .get(0);
    (rows, secs)
}

/// Binary COPY of the engine's rows into a bare table, then its primary key and the engine's
/// indexes: (rows, seconds of COPY and index builds together).
async fn ceiling(pg: &tokio_postgres::Client, db_url: &str, bin: &std::path::Path) -> (i64, f64) {
    let cols: Vec<String> = pg
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'salesforce' AND table_name = 'account' AND column_name <> 'id' \
             ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| format!("\"{}\"", r.get::<_, String>(0)))
        .collect();
    let cols = cols.join(", ");
    psql(
        db_url,
        &format!(
            "\\copy (SELECT {cols} FROM salesforce.account) TO '{}' WITH (FORMAT binary)",
            bin.display()
        ),
    );
    pg.batch_execute(
        "CREATE TABLE salesforce.account_bare (LIKE salesforce.account INCLUDING DEFAULTS)",
    )
    .await
    .expect("bare table");
    let indexes: Vec<String> = pg
        .query(
            "SELECT replace(replace(indexdef, ' ON salesforce.account ', ' ON salesforce.account_bare '), \
             'INDEX ', 'INDEX bare_') FROM pg_indexes \
             WHERE schemaname = 'salesforce' AND tablename = 'account' AND indexname NOT LIKE '%pkey'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let started = Instant::now();
    psql(
        db_url,
        &format!(
            "\\copy salesforce.account_bare ({cols}) FROM '{}' WITH (FORMAT binary)",
            bin.display()
        ),
    );
    pg.batch_execute("ALTER TABLE salesforce.account_bare ADD PRIMARY KEY (id)")
        .await
        .expect("primary key");
    for sql in &indexes {
        pg.batch_execute(sql).await.expect("index");
    }
    let secs = started.elapsed().as_secs_f64();
    let rows: i64 = pg
        .query_one("SELECT count(*) FROM salesforce.account_bare", &[])
        .await
        .unwrap()
        .get(0);
    (rows, secs)
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
    let fields = mapped_fields(args.all_fields);
    let config = write_config(&db_url, &sim.info, &fields);
    let dir = std::env::temp_dir().join(format!("{db_name}_files"));
    std::fs::create_dir_all(&dir).expect("bench directory");
    let (csv, bin) = (dir.join("accounts.csv"), dir.join("accounts.bin"));
    let csv_bytes = export_csv(&sim.info, &fields, &csv).await;
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
    let (copy_rows, copy_secs) = copy_baseline(&pg, &db_url, &fields, &csv).await;
    let (bare_rows, bare_secs) = ceiling(&pg, &db_url, &bin).await;
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
    let bare_rate = bare_rows as f64 / bare_secs;
    let calls = |s: &serde_json::Value| s["api_calls"]["total"].as_u64().unwrap_or(0);
    println!(
        "bench_load: {n} Accounts, {} mapped fields ({})",
        fields.len(),
        fields.join(", ")
    );
    println!(
        "  driftless initial load: {loaded} rows in {load_secs:.2}s = {engine_rate:.0} rows/s"
    );
    println!(
        "  psql \\copy (CSV file):  {copy_rows} rows ({:.0} MB CSV) in {copy_secs:.2}s = {copy_rate:.0} rows/s",
        csv_bytes as f64 / 1e6
    );
    println!(
        "  ratio driftless/\\copy:  {:.2} (target >= 1.2)",
        engine_rate / copy_rate
    );
    println!(
        "  ceiling (binary COPY into a bare table, then the indexes): {bare_rows} rows in {bare_secs:.2}s = {bare_rate:.0} rows/s; driftless is at {:.2} of it, \\copy at {:.2}",
        engine_rate / bare_rate,
        copy_rate / bare_rate
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
        "  table sizes:            engine {:.0} MB, \\copy {:.0} MB",
        sizes.0 as f64 / 1e6,
        sizes.1 as f64 / 1e6
    );

    let _ = std::fs::remove_dir_all(&dir);
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
