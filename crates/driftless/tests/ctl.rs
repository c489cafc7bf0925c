//! `driftless ctl`, the real binary, against a real `driftless run` child process (which syncs a
//! simulator into a fresh Postgres database): JSON in SPEC.md §6's shape, aligned tables, and the
//! exit codes.

use driftless_testkit as common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_driftless");

/// Kills the engine when the test ends, however it ends.
struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_engine(db: &TestDb, sim: &sfsim::SimInfo) -> (Engine, PathBuf) {
    let config = write_config(
        db,
        sim,
        &Setup {
            faults: false,
            bulk_threshold: 10_000,
            secondary_enabled: true,
            db_pool_size: 2,
        },
    );
    let path = config.connections[0]
        .mappings
        .with_file_name("driftless.toml");
    let log = path.with_file_name("run.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .env("SF_PASSWORD", &sim.password)
        .env("RUST_LOG", "info")
        .env("DRIFTLESS_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("driftless run");
    (Engine(child), log)
}

/// The admin address the engine logged once it listened.
fn admin_addr(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "admin endpoints listening")
        .and_then(|v| v["fields"]["addr"].as_str().map(str::to_owned))
}

fn ctl(addr: &str, token: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("ctl")
        .args(["--coordinator", addr])
        .args(args)
        .env("DRIFTLESS_ADMIN_TOKEN", token)
        .stdin(Stdio::null())
        .output()
        .expect("driftless ctl")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Offsets where the header's columns start: after a run of two or more spaces.
fn column_starts(header: &str) -> Vec<usize> {
    let b = header.as_bytes();
    let mut starts = vec![0];
    for i in 2..b.len() {
        if b[i] != b' ' && b[i - 1] == b' ' && b[i - 2] == b' ' {
            starts.push(i);
        }
    }
    starts
}

/// Every line of the table has a cell starting exactly where each header column starts.
fn assert_aligned(table: &str) {
    let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 2, "a header and rows: {table}");
    let starts = column_starts(lines[0]);
    assert!(starts.len() >= 2, "columns in {:?}", lines[0]);
    for line in &lines[1..] {
        for &at in &starts[1..] {
            let b = line.as_bytes();
            assert!(
                at < b.len() && b[at] != b' ' && b[at - 1] == b' ',
                "column at {at} misaligned in {line:?}\n{table}"
            );
        }
    }
}

#[actix_rt::test]
async fn ctl_speaks_to_a_running_engine() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 250), ("Contact".into(), 150)],
        ..Default::default()
    })
    .await;
    let (_engine, log) = start_engine(&db, &sim.info);
    let mut addr = None;
    wait_until("the admin listener", Duration::from_secs(60), || {
        addr = admin_addr(&log);
        std::future::ready(addr.is_some())
    })
    .await;
    let addr = addr.unwrap();

    wait_until("both mappings synced", Duration::from_secs(120), || {
        let out = ctl(&addr, TOKEN, &["--json", "status"]);
        let synced = out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|v| {
                v["mappings"].as_array().is_some_and(|m| {
                    m.len() == 2
                        && m.iter()
                            .all(|m| m["state"] == "DATA_SYNCED" && m["synced_through"].is_string())
                })
            });
        std::future::ready(synced)
    })
    .await;

    // `status --json`: SPEC.md §6's keys, synced_through in RFC 3339 whole seconds.
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&ctl(&addr, TOKEN, &["status", "--json"]))).unwrap();
    let w = &v["workers"][0];
    assert_eq!(w["name"], "w1");
    assert_eq!(
        w["mappings"],
        serde_json::json!(["acme/Account", "acme/Contact"])
    );
    assert!(w["last_heartbeat_ms_ago"].is_u64());
    let m = &v["mappings"][0];
    for key in [
        "connection",
        "object",
        "state",
        "worker",
        "rows",
        "synced_through",
        "primary",
        "secondary",
        "api_calls",
        "db_connections_in_use",
        "errors",
    ] {
        assert!(m.get(key).is_some(), "{key} in {m}");
    }
    for key in [
        "polls",
        "records",
        "bulk_jobs",
        "bulk_batches",
        "rest_queries",
    ] {
        assert!(m["primary"][key].is_u64(), "primary.{key}");
    }
    for key in [
        "polls",
        "records",
        "drift_records",
        "bulk_jobs",
        "bulk_batches",
        "rest_queries",
    ] {
        assert!(m["secondary"][key].is_u64(), "secondary.{key}");
    }
    assert_eq!(
        (&m["connection"], &m["object"]),
        (&"acme".into(), &"Account".into())
    );
    assert_eq!(m["rows"], 250);
    let synced = m["synced_through"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(synced).is_ok()
            && synced.ends_with('Z')
            && synced.len() == "2026-11-24T10:00:00Z".len(),
        "{synced}"
    );

    // Tables for people: every line's columns start at the header's offsets.
    let status = stdout(&ctl(&addr, TOKEN, &["status"]));
    let (workers, mappings) = status.split_once("\n\n").expect("two tables");
    assert_aligned(mappings);
    assert!(workers.starts_with("WORKER"), "{workers}");
    assert_aligned(&stdout(&ctl(&addr, TOKEN, &["mappings"])));
    assert_aligned(&stdout(&ctl(&addr, TOKEN, &["drift"])));
    assert_aligned(&stdout(&ctl(&addr, TOKEN, &["mapping", "Contact"])));

    // Commands that change things, and their JSON.
    let paused: serde_json::Value =
        serde_json::from_str(&stdout(&ctl(&addr, TOKEN, &["--json", "pause", "acme"]))).unwrap();
    assert_eq!(
        paused["paused"],
        serde_json::json!(["acme/Account", "acme/Contact"])
    );
    assert!(stdout(&ctl(&addr, TOKEN, &["mappings"])).contains("PAUSED"));
    stdout(&ctl(&addr, TOKEN, &["resume", "acme"]));
    let export = stdout(&ctl(&addr, TOKEN, &["export", "acme"]));
    let file = log.with_file_name("exported.json");
    std::fs::write(&file, &export).unwrap();
    let imported: serde_json::Value = serde_json::from_str(&stdout(&ctl(
        &addr,
        TOKEN,
        &["--json", "import", "acme", file.to_str().unwrap()],
    )))
    .unwrap();
    assert_eq!(
        imported,
        serde_json::json!({"added": [], "changed": [], "removed": []})
    );

    // Exit codes: a wrong token and an unreachable coordinator are runtime failures (1), a
    // command line ctl cannot use is a usage error (2).
    let denied = ctl(&addr, "wrong-token", &["status"]);
    assert_eq!(denied.status.code(), Some(1));
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("401"), "{err}");
    let refused = ctl(&addr, TOKEN, &["reload", "acme", "Nope__c"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Nope__c"));
    let unreachable = ctl("127.0.0.1:9", TOKEN, &["status"]);
    assert_eq!(unreachable.status.code(), Some(1));
    assert_eq!(ctl(&addr, "", &["status"]).status.code(), Some(2));
    assert_eq!(
        ctl(&addr, TOKEN, &["reload", "acme"]).status.code(),
        Some(2)
    );
    assert_eq!(
        ctl(&addr, TOKEN, &["import", "acme", "/no/such/file.json"])
            .status
            .code(),
        Some(2)
    );

    // Every subcommand's help.
    for sub in [
        "status", "workers", "mappings", "mapping", "pause", "resume", "reload", "export",
        "import", "drift", "errors",
    ] {
        let help = ctl(&addr, TOKEN, &[sub, "--help"]);
        let text = stdout(&help);
        assert!(text.contains("Usage: driftless ctl"), "{sub}: {text}");
        assert!(text.contains("--coordinator"), "{sub}: {text}");
    }
    sim.stop().await;
}
