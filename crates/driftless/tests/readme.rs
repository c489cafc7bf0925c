//! README.md's walk-throughs run as written, so the README cannot drift from the product.
//!
//! Every fenced `sh` block that follows a `<!-- readme-test: NAME -->` line belongs to the script
//! NAME; the blocks of one script run in order, in one bash (`set -euo pipefail`), in a fresh
//! directory. The only changes made to what a reader would paste: the `cargo build --release` line
//! is dropped and `$PWD/target/release` is the directory of the binary under test (this test's
//! build), and the walk-through's `acme` (its database, connection and directory) gets a unique
//! name so the test never meets a database of the reader's. Background jobs the script leaves
//! running are ended with its process group.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_driftless");
const README: &str = include_str!("../../../README.md");

/// The `sh` blocks of script `name`, joined.
fn script(name: &str) -> String {
    let marker = format!("<!-- readme-test: {name} -->");
    let mut out = String::new();
    let mut lines = README.lines();
    while let Some(line) = lines.next() {
        if line.trim() != marker {
            continue;
        }
        assert_eq!(
            lines.next().map(str::trim),
            Some("```sh"),
            "{marker} must be followed by a ```sh block"
        );
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.is_empty(), "README.md has no {marker} block");
    out
}

/// Runs `text` in `dir` and returns what it printed; panics with the output when it fails.
fn run(text: &str, dir: &Path, limit: Duration) -> String {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let full = format!("set -euo pipefail\n{text}");
    let out_path = dir.join("script.out");
    let out_file = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&full)
        .current_dir(dir)
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .env_remove("DRIFTLESS_ADMIN_TOKEN")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().unwrap())
        .stderr(out_file)
        .process_group(0)
        .spawn()
        .expect("bash");
    let pgid = child.id();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // The simulator and the engine the script started in the background: the whole process
    // group, TERM first, then KILL for whatever is still there. `--` so that kill reads the
    // negative number as a process group, not as an option.
    let group = format!("-{pgid}");
    let _ = Command::new("kill")
        .args(["-s", "TERM", "--", &group])
        .status();
    let _ = child.wait();
    let gone = Instant::now() + Duration::from_secs(10);
    while Instant::now() < gone
        && Command::new("kill")
            .args(["-s", "0", "--", &group])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
    let mut output = String::new();
    std::fs::File::open(&out_path)
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    match status {
        Some(s) if s.success() => output,
        Some(s) => panic!("the script failed ({s}):\n{full}\n--- output ---\n{output}"),
        None => panic!("the script ran past {limit:?}:\n{full}\n--- output ---\n{output}"),
    }
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn the_sync_walkthrough_runs_as_written() {
    for port in [8443, 7400] {
        assert!(
            port_is_free(port),
            "the walk-through uses 127.0.0.1:{port}, which is taken"
        );
    }
    let name = format!("readme_{}", uuid::Uuid::new_v4().simple());
    let text = script("walkthrough")
        .lines()
        .filter(|l| l.trim() != "cargo build --release -p driftless")
        .map(|l| {
            l.replace(
                "$PWD/target/release",
                &Path::new(BIN).parent().unwrap().display().to_string(),
            )
            .replace("acme", &name)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = std::env::temp_dir().join(format!("{name}-cwd"));
    std::fs::create_dir_all(&dir).unwrap();
    let output = std::panic::catch_unwind(|| run(&text, &dir, Duration::from_secs(420)));
    let _ = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-qc"])
        .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .arg("postgres")
        .status();
    let _ = std::fs::remove_dir_all(format!("/tmp/{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    let output = output.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(
        output.contains("Account: ") && output.contains("no differences"),
        "verify reported on every mapping:\n{output}"
    );
}

#[test]
fn the_simulator_examples_run_as_written() {
    let dir = std::env::temp_dir().join(format!("readme-sim-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = run(&script("simulator"), &dir, Duration::from_secs(240));
    assert!(
        output.contains("\"totalSize\":5"),
        "the query answered:\n{output}"
    );
    assert!(
        output.contains("\"api_calls\""),
        "stats answered:\n{output}"
    );
    let export = std::fs::read_to_string(dir.join("accounts.csv")).unwrap();
    assert!(
        export.lines().count() > 10_000,
        "the export has every Account"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
