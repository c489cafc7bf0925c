//! Cluster throughput: the same multi-connection load synced by one worker, then by two.
//!
//! ```text
//! cargo build --release -p driftless
//! cargo run --release -p driftless-cluster --example bench_cluster -- [--records N] [--connections C]
//! ```
//!
//! Every process is the release binary (`target/release/driftless`): one simulator with N
//! Accounts and N Contacts, one coordinator, and one or two workers. C connections (default 4),
//! each its own schema in a fresh database, map Account and Contact, so a run loads `2 N C` rows.
//! Each phase is timed from the workers' start until every mapping reports its initial load done
//! (status from the coordinator), in a fresh database; both phases run in the same invocation so
//! their ratio is comparable even on a busy machine.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const TOKEN: &str = "bench-token";

struct Args {
    records: u64,
    connections: usize,
    bin: PathBuf,
}

fn args() -> Args {
    let mut out = Args {
        records: 100_000,
        connections: 4,
        bin: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/driftless"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().expect("a value");
        match a.as_str() {
            "--records" => out.records = value().replace('_', "").parse().expect("--records N"),
            "--connections" => out.connections = value().parse().expect("--connections C"),
            "--bin" => out.bin = PathBuf::from(value()),
            other => panic!(
                "unknown argument {other}; usage: bench_cluster [--records N] [--connections C] [--bin PATH]"
            ),
        }
    }
    out
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(bin: &Path, args: &[&str], log: &Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    Proc(
        Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .env("SF_PASSWORD", sfsim::config::PASSWORD)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (cargo build --release -p driftless)",
                    bin.display()
                )
            }),
    )
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("postgres at 127.0.0.1:5432");
    tokio::spawn(conn);
    client
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(
    dir: &Path,
    db_url: &str,
    sim: &sfsim::SimInfo,
    port: u16,
    conns: usize,
) -> PathBuf {
    std::fs::write(
        dir.join("mappings.json"),
        r#"{"mappings":[
 {"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":5,
  "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"CreatedDate":{},"Name":{},"Type":{},"Industry":{},
            "AnnualRevenue":{},"NumberOfEmployees":{},"Phone":{},"BillingCity":{},"Description":{}},
  "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}},
 {"object_name":"Contact","config":{"access":"read_only","sf_polling_seconds":5,
  "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"FirstName":{},"LastName":{},"Email":{},"Phone":{},"AccountId":{}},
  "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}],"version":1}"#,
    )
    .unwrap();
    let mut toml = format!(
        "[coordinator]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"{TOKEN}\"\nstate_database_url = \"{db_url}\"\n"
    );
    for i in 1..=conns {
        toml.push_str(&format!(
            r#"
[[connection]]
name = "c{i}"
database_url = "{db_url}"
schema = "c{i}"
db_pool_size = 3
mappings = "mappings.json"
{salesforce}[connection.sync]
poll_interval_secs = 5
"#,
            salesforce = sim.salesforce_toml(&sim.client_secret),
        ));
    }
    let path = dir.join("driftless.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// One phase: a fresh database, a coordinator, `workers` workers; seconds until every mapping
/// finished its initial load.
async fn phase(a: &Args, dir: &Path, sim: &sfsim::SimInfo, workers: usize) -> f64 {
    let db = format!("driftless_bench_cluster_{}", std::process::id());
    let admin = pg(ADMIN).await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let port = free_port();
    let config = write_config(dir, &url, sim, port, a.connections);
    let config = config.to_str().unwrap();
    let _coordinator = spawn(
        &a.bin,
        &[
            "coordinator",
            "--config",
            config,
            "--lease-secs",
            "20",
            "--heartbeat-secs",
            "1",
        ],
        &dir.join(format!("coordinator-{workers}.log")),
    );
    let coordinator = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // The coordinator is up once it answers.
    let up = Instant::now();
    while http
        .get(format!("{coordinator}/metrics"))
        .send()
        .await
        .is_err()
    {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "coordinator did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let _workers: Vec<Proc> = (1..=workers)
        .map(|i| {
            let name = format!("w{i}");
            spawn(
                &a.bin,
                &[
                    "worker",
                    "--coordinator",
                    &coordinator,
                    "--name",
                    &name,
                    "--token",
                    TOKEN,
                ],
                &dir.join(format!("worker-{workers}-{name}.log")),
            )
        })
        .collect();
    let expected = 2 * a.connections;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(resp) = http
            .get(format!("{coordinator}/api/v1/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
        else {
            continue;
        };
        let Ok(doc) = resp.json::<serde_json::Value>().await else {
            continue;
        };
        let done = doc["mappings"].as_array().map_or(0, |ms| {
            ms.iter()
                .filter(|m| {
                    m["synced_through"].is_string() && m["rows"].as_u64() == Some(a.records)
                })
                .count()
        });
        if done == expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "phase with {workers} worker(s) did not finish; logs in {}",
            dir.display()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    drop(_workers);
    drop(_coordinator);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await
        .unwrap();
    secs
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = std::env::temp_dir().join(format!("driftless-bench-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dataset = format!("Account={n},Contact={n}", n = a.records);
    let mut sim = spawn(
        &a.bin,
        &["sim", "--dataset", &dataset],
        &dir.join("sim.err"),
    );
    // The simulator's one JSON line goes to the log file too; wait for it there.
    let _ = &mut sim;
    let info: sfsim::SimInfo = loop {
        let text = std::fs::read_to_string(dir.join("sim.err")).unwrap_or_default();
        if let Some(line) = BufReader::new(text.as_bytes())
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with('{'))
        {
            break serde_json::from_str(&line).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rows = 2 * a.records * a.connections as u64;
    println!(
        "cluster sync throughput: {} connections x (Account + Contact) = {rows} rows per phase",
        a.connections
    );
    let one = phase(&a, &dir, &info, 1).await;
    println!("1 worker : {one:8.1} s  {:>9.0} rows/s", rows as f64 / one);
    let two = phase(&a, &dir, &info, 2).await;
    println!("2 workers: {two:8.1} s  {:>9.0} rows/s", rows as f64 / two);
    println!("speed-up 2 vs 1 worker: {:.2}x (same run)", one / two);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}
