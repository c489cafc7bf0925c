//! The real `driftless demo` binary: the report with every row and 0 differences against the
//! shared Postgres; a clear one-line error when there is no Postgres and no initdb; Ctrl-C stops
//! it and drops its database.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_driftless");

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn demo(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("demo")
        .args(args)
        .env("DATABASE_URL", database_url())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// The demo prints the database it created; it must be gone afterwards.
fn database_name(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("postgres: database "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the demo names its database")
        .to_owned()
}

async fn database_exists(name: &str) -> bool {
    let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("postgres");
    tokio::spawn(conn);
    client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        > 0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn demo_runs_to_a_report_with_zero_differences() {
    let started = Instant::now();
    let out = demo(&["--seconds", "8"]).output().expect("driftless demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(out.status.success(), "exit {:?}", out.status);
    for row in [
        "records loaded",
        "changes synced",
        "drift caught by secondary polls",
        "API calls",
        "bulk jobs, primary",
        "bulk jobs, secondary",
        "write-backs",
        "peak Postgres connections",
        "verify: differences",
    ] {
        assert!(stdout.contains(row), "report row '{row}' missing");
    }
    let row = |label: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap()
            .trim_start_matches(label)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let header: Vec<&str> = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("Account"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["Account", "Contact", "Invoice__c", "total"]);
    let number = |s: &str| -> i64 { s.replace(',', "").parse().unwrap() };
    assert_eq!(row("records loaded"), ["20,000", "50,000", "0", "70,000"]);
    assert_eq!(row("verify: differences"), ["0", "0", "0", "0"]);
    assert!(
        number(&row("changes synced")[3]) > 0,
        "the workload's changes were synced"
    );
    // The application's inserts went to Salesforce; the read-only objects write nothing back.
    let writes = row("write-backs");
    assert_eq!(&writes[..2], ["-", "-"]);
    assert!(number(&writes[2]) > 0, "{writes:?}");
    let primary_bulk: i64 = number(&row("bulk jobs, primary")[3]);
    assert!(primary_bulk >= 2, "the initial loads use Bulk");
    let pool = row("peak Postgres connections");
    let peak: i64 = pool[0].parse().unwrap();
    // Measured, not configured: the pool and write-back's LISTEN session together stay within
    // db_pool_size.
    assert!((1..=4).contains(&peak), "{pool:?}");
    assert_eq!(&pool[1..], ["of", "4", "(db_pool_size)"]);
    assert!(stdout.contains("0 differences"));
    // Not a terminal: plain lines, no bar redraws.
    assert!(!stdout.contains('\r') && !stdout.contains('\u{1b}'));
    assert!(!stdout.contains("driftless-sim-secret") && !stderr.contains("driftless-sim-secret"));
    assert!(
        !database_exists(&database_name(&stdout)).await,
        "database dropped"
    );
    eprintln!("demo took {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn no_postgres_and_no_initdb_is_one_clear_line_and_exit_1() {
    let empty = std::env::temp_dir().join(format!("demo-nopath-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = demo(&["--seconds", "1"])
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{}/postgres", free_port()),
        )
        .env("PATH", &empty)
        .env("DRIFTLESS_PG_BINDIRS", &empty)
        .output()
        .expect("driftless demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains("nothing answers at DATABASE_URL"),
        "{stderr}"
    );
    assert!(
        lines[0].contains("initdb/pg_ctl are not on PATH"),
        "{stderr}"
    );
    std::fs::remove_dir_all(empty).unwrap();
}

#[tokio::test]
async fn bad_arguments_are_usage_errors() {
    let out = demo(&["--dataset", "Lead=5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown object 'Lead'"));
    let help = demo(&["--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--seconds",
        "--dataset",
        "--database-url",
        "DATABASE_URL",
        "initdb",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}: {text}");
    }
}

#[tokio::test]
async fn ctrl_c_stops_everything_and_drops_the_database() {
    let mut child = demo(&["--seconds", "600", "--dataset", "Account=2000,Contact=2000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("driftless demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !seen.contains("workload: inserts") {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the demo reaches its workload");
        seen.push_str(&line);
        seen.push('\n');
    }
    let name = database_name(&seen);
    assert!(database_exists(&name).await);
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let signalled = Instant::now();
    let stopped_by = signalled + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < stopped_by,
            "the demo did not stop on SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "stopped {:.1} s after SIGINT",
        signalled.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(1), "interrupted is not success");
    assert!(!database_exists(&name).await, "database dropped on Ctrl-C");
}
