//! A real browser (Debian's chromium, headless) loads `/status` from a running `driftless run`
//! and finds every mapping with its state and drift count, as the admin status document has them.
//! Needs `/usr/bin/chromium` (`apt-get install -y chromium`); `CHROMIUM` names another binary.

use driftless_testkit as common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_driftless");

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_files(db: &TestDb, sim: &sfsim::SimInfo, port: u16) -> PathBuf {
    ConfigBuilder::new()
        .listen_port(port)
        .pool(3)
        .sync("poll_interval_secs", 1)
        .sync("secondary_delay_secs", 3)
        .sync("use_latest_date_covered", false)
        .without("secondary_concurrency")
        .without("bulk_threshold")
        .without("secondary_enabled")
        .write(db, sim, DEFAULT_MAPPINGS)
        .path
}

fn start_engine(config: &Path, sim: &sfsim::SimInfo) -> Child {
    let log = std::fs::File::create(config.with_file_name("run.log")).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("SF_PASSWORD", &sim.password)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("driftless run")
}

/// The page as chromium rendered it (`--dump-dom`).
fn dump_dom(url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("chromium-{}", uuid::Uuid::new_v4().simple()));
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (apt-get install -y chromium)",
                chromium().display()
            )
        });
    let _ = std::fs::remove_dir_all(profile);
    assert!(out.status.success(), "chromium exit {:?}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

async fn status(addr: &str) -> Option<driftless_node::StatusDoc> {
    reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

#[tokio::test]
async fn chromium_finds_every_mapping_with_its_state_and_drift() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 500), ("Contact".into(), 300)],
        ..Default::default()
    })
    .await;
    let port = free_port();
    let config = write_files(&db, &sim.info, port);
    let mut engine = start_engine(&config, &sim.info);
    let addr = format!("127.0.0.1:{port}");
    // Settled: loaded, and each window read twice, so the figures hold still while the
    // workload-free org gives the polls nothing new.
    wait_until(
        "synced and secondary polls run",
        Duration::from_secs(120),
        || async {
            status(&addr).await.is_some_and(|s| {
                s.mappings.len() == 2
                    && s.mappings
                        .iter()
                        .all(|m| m.state == "DATA_SYNCED" && m.secondary.polls > 0)
            })
        },
    )
    .await;

    let dom = dump_dom(&format!("http://{addr}/status?token={TOKEN}"));
    let doc = status(&addr).await.unwrap();
    for m in &doc.mappings {
        let row = format!(
            "data-connection=\"{}\" data-object=\"{}\" data-state=\"{}\" data-drift=\"{}\"",
            m.connection, m.object, m.state, m.secondary.drift_records
        );
        assert!(dom.contains(&row), "{row} not in the page:\n{dom}");
    }
    assert!(dom.contains("id=\"drift-total\""), "drift over time");
    assert!(dom.contains("<svg"), "the sparkline renders inline");
    assert!(
        dom.contains(" of 3 <meter"),
        "connections against db_pool_size"
    );

    // Without the token the browser gets the sign-in form, not the figures.
    let denied = dump_dom(&format!("http://{addr}/status"));
    assert!(denied.contains("name=\"token\""), "{denied}");
    assert!(!denied.contains("data-object="), "{denied}");

    engine.kill().unwrap();
    engine.wait().unwrap();
    sim.stop().await;
}
