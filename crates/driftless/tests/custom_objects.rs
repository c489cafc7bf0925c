//! A custom object that exists only in a describe file: `driftless sim --objects` serves it,
//! `driftless run` loads it and syncs it under a workload, and `driftless verify` finds 0
//! differences. Only the public surface is used: the two binaries, the control plane, Postgres.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use driftless_testkit::{wait_until, TestDb};
use sfsim::SimInfo;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_driftless");
const PROJECTS: i64 = 2_000;

fn describe_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../sfsim/tests/data/custom_objects_describe.json")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &Path, db_url: &str, sim: &SimInfo) -> PathBuf {
    std::fs::write(
        dir.join("mappings.json"),
        r#"{"mappings":[{"object_name":"Project__c","config":{"access":"read_only","sf_polling_seconds":1,
          "sf_notify_enabled":false,
          "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"CreatedDate":{},"Name":{},"Code__c":{},
                    "Client__c":{},"Status__c":{},"Budget__c":{},"Start__c":{}},
          "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}],"version":1}"#,
    )
    .unwrap();
    let toml = format!(
        r#"[coordinator]
listen = "127.0.0.1:0"
admin_token = "custom-objects-test"

[[connection]]
name = "acme"
database_url = "{db_url}"
db_pool_size = 3
mappings = "mappings.json"

{salesforce}
[connection.sync]
poll_interval_secs = 1
secondary_delay_secs = 2
secondary_concurrency = 1
bulk_threshold = 500
"#,
        salesforce = sim.salesforce_toml(&sim.client_secret),
    );
    let path = dir.join("driftless.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn driftless(dir: &Path, args: &[&str], password: &str, log: &str) -> Command {
    let mut cmd = Command::new(BIN);
    let log = std::fs::File::create(dir.join(log)).unwrap();
    cmd.args(args)
        .env("SF_PASSWORD", password)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_object_from_describe_loads_syncs_and_verifies() {
    let dir = std::env::temp_dir().join(format!(
        "driftless-custom-objects-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = TestDb::create().await;
    let db_url = db.url.clone();

    // The simulator, as a user runs it: the real binary with their describe file.
    let mut sim = Command::new(BIN)
        .args(["sim", "--objects"])
        .arg(describe_file())
        .args(["--dataset", &format!("Client__c=300,Project__c={PROJECTS}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("driftless sim");
    let mut line = String::new();
    std::io::BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _sim = Killed(sim);
    let info: SimInfo = serde_json::from_str(&line).expect("the ready line");
    let base = info.instance_url.clone();
    let password = info.password.clone();
    let config = write_config(&dir, &db_url, &info);
    let config_arg = config.to_str().unwrap();

    let engine = driftless(&dir, &["run", "--config", config_arg], &password, "run.log")
        .spawn()
        .expect("driftless run");
    let _engine = Killed(engine);
    let pg = db.client().await;
    let count = || async {
        pg.query_one("SELECT count(*) FROM salesforce.project__c", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
    };
    wait_until("the initial load", Duration::from_secs(120), || async {
        count().await >= PROJECTS
    })
    .await;

    // A workload on the custom object, then a quiet period for sync to catch up.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/_sim/workload"))
        .json(
            &serde_json::json!({"object": "Project__c", "inserts_per_sec": 10,
            "updates_per_sec": 40, "deletes_per_sec": 2, "long_txn_fraction": 0.05,
            "long_txn_ms": [500, 1500]}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    wait_until("workload operations", Duration::from_secs(60), || async {
        let w: serde_json::Value = http
            .get(format!("{base}/_sim/workload"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let done = |k: &str| {
            w.pointer(&format!("/objects/Project__c/{k}"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        done("updates") >= 100 && done("inserts") >= 20
    })
    .await;
    http.delete(format!("{base}/_sim/workload"))
        .send()
        .await
        .unwrap();

    // Verified with 0 differences once sync has caught up with the last change.
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = driftless(
            &dir,
            &["verify", "--config", config_arg],
            &password,
            "verify.log",
        )
        .status()
        .expect("driftless verify");
        last = std::fs::read_to_string(dir.join("verify.log")).unwrap_or(last);
        if status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "verify still finds differences:\n{last}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(count().await > PROJECTS, "inserts were synced");
    drop(_engine);
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
}
