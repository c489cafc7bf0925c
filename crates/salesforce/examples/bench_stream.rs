//! Streams a large Bulk result through the client and prints rows/s and the client's peak memory,
//! for Bulk 1.0 and Bulk 2.0, at 100,000 and 1,000,000 records.
//!
//! `cargo run --release -p salesforce --example bench_stream [-- --records 1000000]`
//!
//! How memory is measured: the simulator runs in-process in *this* (parent) process, with the
//! whole dataset; each stream runs in a *child* process that holds only the client and talks to
//! the simulator over loopback. The child's peak RSS (`VmHWM`) is therefore the client's alone,
//! with nothing of the simulator's memory in it. The child also reports its RSS just before the
//! stream starts, so the growth during the stream is printed separately. The parent's RSS (the
//! simulator: dataset plus the result it builds for each job) is printed for reference.

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use salesforce::{Client, ClientConfig, Credentials, QueryOperation, Secret};

const FIELDS: &str = "Id, Name, Type, Industry, AccountNumber, Phone, Website, AnnualRevenue, NumberOfEmployees, \
                      Rating, BillingStreet, BillingCity, BillingPostalCode, BillingCountry, Description, \
                      CreatedDate, SystemModstamp, IsDeleted";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], args[3].parse().expect("record count"));
        return;
    }
    let max: u64 = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--records N"))
        .unwrap_or(1_000_000);
    let sizes = [max / 10, max];

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    eprintln!("generating {max} Account records in the simulator...");
    let started = Instant::now();
    let sim = runtime
        .block_on(sfsim::start(sfsim::SimConfig {
            dataset: vec![("Account".into(), max)],
            ..Default::default()
        }))
        .expect("simulator starts");
    eprintln!(
        "simulator ready in {:.1}s, rss {} MiB",
        started.elapsed().as_secs_f64(),
        kib("VmRSS") / 1024
    );

    println!("client memory: peak RSS of a child process that runs only the client (the simulator lives in the parent)");
    println!(
        "{:<9} {:>9} {:>10} {:>11} {:>13} {:>16} {:>18} {:>21}",
        "api",
        "records",
        "seconds",
        "rows/s",
        "values MiB",
        "client peak MiB",
        "client before MiB",
        "growth in stream MiB"
    );
    let exe = std::env::current_exe().expect("own path");
    for api in ["bulk_v1", "bulk_v2"] {
        for &n in &sizes {
            let out = Command::new(&exe)
                .args(["--child", api, &n.to_string()])
                .env("BENCH_LOGIN_URL", &sim.info.login_url)
                .env("BENCH_USERNAME", &sim.info.username)
                .env("BENCH_PASSWORD", &sim.info.password)
                .env("BENCH_CLIENT_ID", &sim.info.client_id)
                .env("BENCH_CLIENT_SECRET", &sim.info.client_secret)
                .output()
                .expect("child runs");
            if !out.status.success() {
                eprintln!(
                    "{api} {n}: child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                std::process::exit(1);
            }
            let line = String::from_utf8_lossy(&out.stdout);
            let v: serde_json::Value = serde_json::from_str(line.trim()).expect("child result");
            let mib = |k: &str| v[k].as_u64().unwrap() as f64 / 1024.0;
            println!(
                "{:<9} {:>9} {:>10.2} {:>11.0} {:>13.1} {:>16.1} {:>18.1} {:>21.1}",
                api,
                v["records"],
                v["seconds"].as_f64().unwrap(),
                v["records"].as_u64().unwrap() as f64 / v["seconds"].as_f64().unwrap(),
                v["value_bytes"].as_u64().unwrap() as f64 / (1024.0 * 1024.0),
                mib("peak_kib"),
                mib("before_kib"),
                mib("peak_kib") - mib("before_kib"),
            );
        }
    }
    println!(
        "simulator (parent process) rss now {} MiB, peak {} MiB",
        kib("VmRSS") / 1024,
        kib("VmHWM") / 1024
    );
    runtime.block_on(sim.stop());
}

fn child(api: &str, n: u64) {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let credentials = Credentials::Password {
        username: env("BENCH_USERNAME"),
        password: Secret::new(env("BENCH_PASSWORD")),
        client_id: env("BENCH_CLIENT_ID"),
        client_secret: Secret::new(env("BENCH_CLIENT_SECRET")),
    };
    let mut config = ClientConfig::new(env("BENCH_LOGIN_URL"), credentials);
    config.poll.initial = Duration::from_millis(100);
    config.poll.max = Duration::from_secs(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let soql = format!("SELECT {FIELDS} FROM Account LIMIT {n}");
    let (records, seconds, before, value_bytes) = runtime.block_on(async {
        let client = Client::connect(config).await.expect("login");
        let before = kib("VmRSS");
        let started = Instant::now();
        let stream = match api {
            "bulk_v1" => client
                .bulk_v1_query(
                    "Account",
                    QueryOperation::Query,
                    &[soql],
                    &Default::default(),
                )
                .await
                .expect("job")
                .stream(),
            _ => client
                .bulk_v2_query(&soql, QueryOperation::Query)
                .await
                .expect("job")
                .stream(),
        };
        // Touch every value, as a consumer writing rows out would.
        let (records, bytes) = stream
            .fold((0u64, 0usize), |(n, b), r| {
                let r = r.expect("record");
                let len: usize = r.values().iter().flatten().map(String::len).sum();
                futures::future::ready((n + 1, b + len))
            })
            .await;
        assert!(bytes > 0);
        (records, started.elapsed().as_secs_f64(), before, bytes)
    });
    assert_eq!(records, n, "streamed every record");
    println!(
        "{}",
        serde_json::json!({
            "records": records, "seconds": seconds, "peak_kib": kib("VmHWM"), "before_kib": before,
            "value_bytes": value_bytes,
        })
    );
}

/// A `kB` line of /proc/self/status.
fn kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
