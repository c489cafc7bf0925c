//! The cluster with real processes: `driftless coordinator` and `driftless worker` children, the
//! simulator in-process, one Postgres database holding the state schema and one schema per
//! connection. Tests run one at a time (a cluster of four processes per test on two cores).

use driftless_testkit as common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use driftless_node::StatusDoc;

const BIN: &str = env!("CARGO_BIN_EXE_driftless");
const LEASE_SECS: u64 = 4;

/// One cluster test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    dir: PathBuf,
    config: PathBuf,
    port: u16,
    sim: SimThread,
    db: TestDb,
    coordinators: Vec<Child>,
    workers: BTreeMap<String, Child>,
    /// The CA that signed the coordinator's certificate, when it serves HTTPS.
    ca_cert: Option<PathBuf>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_files(
    dir: &Path,
    db: &TestDb,
    sim: &sfsim::SimInfo,
    port: u16,
    conns: usize,
    tls: &str,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let fields = |extra: &str| {
        format!(
            r#""fields":{{"Id":{{}},"IsDeleted":{{}},"SystemModstamp":{{}},"Name":{{}}{extra}}},"indexes":{{"Id":{{"unique":true}},"SystemModstamp":{{"unique":false}}}}"#
        )
    };
    let mapping = |object: &str, f: String| {
        format!(
            r#"{{"object_name":"{object}","config":{{"access":"read_only","sf_polling_seconds":1,{f}}}}}"#
        )
    };
    let mappings = format!(
        r#"{{"mappings":[{},{},{}],"version":1}}"#,
        mapping("Account", fields(r#","Industry":{}"#)),
        mapping("Contact", fields(r#","Email":{},"AccountId":{}"#)),
        mapping("Opportunity", fields(r#","Amount":{},"StageName":{}"#)),
    );
    std::fs::write(dir.join("mappings.json"), mappings).unwrap();
    let mut toml = format!(
        r#"[coordinator]
listen = "127.0.0.1:{port}"
admin_token = "{TOKEN}"
state_database_url = "{db}"
{tls}"#,
        db = db.url
    );
    for i in 1..=conns {
        toml.push_str(&format!(
            r#"
[[connection]]
name = "c{i}"
database_url = "{db}"
schema = "c{i}"
db_pool_size = 2
mappings = "mappings.json"

{salesforce}
[connection.sync]
poll_interval_secs = 1
secondary_delay_secs = 3
secondary_concurrency = 1
poll_margin_secs = 1
use_latest_date_covered = false
"#,
            db = db.url,
            salesforce = sim.salesforce_toml(&sim.client_secret),
        ));
    }
    let path = dir.join("driftless.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

impl Cluster {
    async fn start(conns: usize) -> Cluster {
        Cluster::start_with(conns, false).await
    }

    /// With `tls`, the coordinator serves HTTPS with a certificate of a CA made for the test, and
    /// workers, ctl and the test trust that CA.
    async fn start_with(conns: usize, tls: bool) -> Cluster {
        let db = TestDb::create().await;
        let sim = SimThread::start(sfsim::SimConfig {
            dataset: vec![
                ("Account".into(), 300),
                ("Contact".into(), 300),
                ("Opportunity".into(), 200),
            ],
            ..Default::default()
        })
        .await;
        let dir = std::env::temp_dir().join(format!(
            "driftless-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let port = free_port();
        let (tls_lines, ca_cert) = if tls {
            // As an operator without a CA of their own would: `driftless cert`.
            let certs = dir.join("certs");
            let made = Command::new(BIN)
                .args(["cert", "--out"])
                .arg(&certs)
                .status()
                .expect("driftless cert");
            assert!(made.success(), "driftless cert");
            (
                "tls_cert = \"certs/cert.pem\"\ntls_key = \"certs/key.pem\"\n",
                Some(certs.join("ca.pem")),
            )
        } else {
            ("", None)
        };
        let config = write_files(&dir, &db, &sim.info, port, conns, tls_lines);
        Cluster {
            dir,
            config,
            port,
            sim,
            db,
            coordinators: Vec::new(),
            workers: BTreeMap::new(),
            ca_cert,
        }
    }

    fn command(&self, log: &str) -> Command {
        let mut cmd = Command::new(BIN);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(log))
            .unwrap();
        cmd.env("SF_PASSWORD", &self.sim.info.password)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        cmd
    }

    fn start_coordinator(&mut self) -> usize {
        let n = self.coordinators.len();
        let child = self
            .command(&format!("coordinator-{n}.log"))
            .args(["coordinator", "--lease-secs", &LEASE_SECS.to_string()])
            .args(["--heartbeat-secs", "1", "--config"])
            .arg(&self.config)
            .spawn()
            .expect("driftless coordinator");
        self.coordinators.push(child);
        n
    }

    fn start_worker(&mut self, name: &str) {
        let mut cmd = self.command(&format!("worker-{name}.log"));
        cmd.args(["worker", "--name", name, "--token", TOKEN])
            .args(["--coordinator", &self.url()]);
        if let Some(ca) = &self.ca_cert {
            cmd.arg("--ca-cert").arg(ca);
        }
        let child = cmd.spawn().expect("driftless worker");
        self.workers.insert(name.to_owned(), child);
    }

    fn url(&self) -> String {
        let scheme = if self.ca_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn http(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder();
        if let Some(ca) = &self.ca_cert {
            let pem = std::fs::read(ca).unwrap();
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    async fn status(&self) -> Option<StatusDoc> {
        let resp = self
            .http()
            .get(format!("{}/api/v1/status", self.url()))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// Every mapping runs on a live worker that has reported it, synced past `after`.
    async fn all_synced_after(&self, after: DateTime<Utc>, expected: usize) -> bool {
        let Some(doc) = self.status().await else {
            return false;
        };
        doc.mappings.len() == expected
            && doc.mappings.iter().all(|m| {
                !m.worker.is_empty()
                    && m.state != "ASSIGNED"
                    && m.synced_through
                        .as_deref()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| t > after)
            })
    }

    async fn assignments(&self) -> BTreeMap<(String, String), (String, i64)> {
        let pg = self.db.client().await;
        pg.query(
            "SELECT connection, object_name, worker, owner_epoch FROM driftless._driftless_assignments",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect()
    }

    fn verify(&self) -> std::process::ExitStatus {
        self.command("verify.log")
            .args(["verify", "--config"])
            .arg(&self.config)
            .status()
            .expect("driftless verify")
    }

    fn signal(&self, worker: &str, signal: &str) {
        let pid = self.workers[worker].id().to_string();
        let ok = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {signal} {worker}");
    }

    fn kill_9_worker(&mut self, name: &str) {
        let mut child = self.workers.remove(name).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn kill_9_coordinator(&mut self, n: usize) {
        self.coordinators[n].kill().unwrap();
        self.coordinators[n].wait().unwrap();
    }

    /// Stops the workload, then waits for every mapping to be synced past the stop.
    async fn settle(&self, expected: usize) {
        sim_delete(&self.sim.info, "/_sim/workload").await;
        let stopped = Utc::now() + chrono::Duration::seconds(2);
        wait_until(
            "every mapping synced past the workload",
            Duration::from_secs(90),
            || self.all_synced_after(stopped, expected),
        )
        .await;
        // One more secondary cycle (delay 3 s, then the re-read) for long transactions.
        tokio::time::sleep(Duration::from_secs(6)).await;
    }

    async fn workload(&self) {
        for object in ["Account", "Contact"] {
            sim_post(
                &self.sim.info,
                "/_sim/workload",
                serde_json::json!({"object": object, "inserts_per_sec": 5, "updates_per_sec": 20, "deletes_per_sec": 1}),
            )
            .await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self
            .workers
            .values_mut()
            .chain(self.coordinators.iter_mut())
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("cluster logs kept in {}", self.dir.display());
        }
    }
}

fn per_worker(doc: &StatusDoc) -> BTreeMap<String, usize> {
    doc.workers
        .iter()
        .map(|w| (w.name.clone(), w.mappings.len()))
        .collect()
}

#[actix_rt::test]
async fn three_workers_share_twelve_mappings_and_a_killed_worker_s_mappings_move() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(4).await;
    cluster.start_coordinator();
    for w in ["w1", "w2", "w3"] {
        cluster.start_worker(w);
    }
    let t0 = Utc::now();
    wait_until(
        "12 mappings loaded on 3 workers",
        Duration::from_secs(120),
        || cluster.all_synced_after(t0 - chrono::Duration::days(1), 12),
    )
    .await;

    // Every mapping on exactly one worker; whole connections; at most one connection's worth
    // (3 mappings) between the busiest and the idlest worker.
    let doc = cluster.status().await.unwrap();
    let listed: Vec<&String> = doc.workers.iter().flat_map(|w| &w.mappings).collect();
    let unique: BTreeSet<&String> = listed.iter().copied().collect();
    assert_eq!(listed.len(), 12, "{doc:?}");
    assert_eq!(unique.len(), 12, "a mapping on two workers: {doc:?}");
    let counts = per_worker(&doc);
    assert_eq!(counts.len(), 3);
    let (max, min) = (
        *counts.values().max().unwrap(),
        *counts.values().min().unwrap(),
    );
    assert!(max - min <= 3, "unbalanced: {counts:?}");
    for m in &doc.mappings {
        let owners: Vec<&str> = doc
            .mappings
            .iter()
            .filter(|o| o.connection == m.connection)
            .map(|o| o.worker.as_str())
            .collect();
        assert!(
            owners.iter().all(|o| *o == m.worker),
            "connection split: {doc:?}"
        );
    }

    // kill -9 the busiest worker during sync: its mappings run elsewhere within lease + 5 s.
    cluster.workload().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = counts
        .iter()
        .max_by_key(|(name, n)| (**n, std::cmp::Reverse((*name).clone())))
        .unwrap()
        .0
        .clone();
    let moved: Vec<(String, String)> = doc
        .mappings
        .iter()
        .filter(|m| m.worker == victim)
        .map(|m| (m.connection.clone(), m.object.clone()))
        .collect();
    cluster.kill_9_worker(&victim);
    let killed = Instant::now();
    let killed_at = Utc::now();
    wait_until(
        "the killed worker's mappings running elsewhere",
        Duration::from_secs(LEASE_SECS + 5),
        || async {
            let Some(doc) = cluster.status().await else {
                return false;
            };
            moved.iter().all(|(c, o)| {
                doc.mappings.iter().any(|m| {
                    &m.connection == c
                        && &m.object == o
                        && !m.worker.is_empty()
                        && m.worker != victim
                        && m.state != "ASSIGNED"
                })
            })
        },
    )
    .await;
    eprintln!(
        "mappings of {victim} ran elsewhere {:.1} s after kill -9 (lease {LEASE_SECS} s)",
        killed.elapsed().as_secs_f64()
    );
    let _ = killed_at;
    cluster.settle(12).await;
    let verify = cluster.verify();
    assert!(verify.success(), "verify: {}", cluster.log("verify.log"));
}

#[actix_rt::test]
async fn a_frozen_worker_is_fenced_when_it_wakes_and_then_rejoins() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(2).await;
    cluster.start_coordinator();
    cluster.start_worker("w1");
    cluster.start_worker("w2");
    let t0 = Utc::now();
    wait_until("6 mappings loaded", Duration::from_secs(120), || {
        cluster.all_synced_after(t0 - chrono::Duration::days(1), 6)
    })
    .await;
    cluster.workload().await;
    // Slow Salesforce down so that the frozen worker is caught in the middle of its reads, with a
    // commit to attempt when it wakes.
    sim_post(
        &cluster.sim.info,
        "/_sim/faults",
        serde_json::json!({"latency_ms": [1500, 1500]}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cluster.assignments().await;
    let frozen = before.values().next().unwrap().0.clone();
    let held: Vec<(String, String)> = before
        .iter()
        .filter(|(_, (w, _))| *w == frozen)
        .map(|(k, _)| k.clone())
        .collect();
    cluster.signal(&frozen, "-STOP");
    wait_until(
        "the frozen worker's mappings on the other worker",
        Duration::from_secs(LEASE_SECS + 20),
        || async {
            let now = cluster.assignments().await;
            held.iter()
                .all(|k| now.get(k).is_some_and(|(w, _)| *w != frozen))
        },
    )
    .await;
    // Let the new owner claim (and so fence) every moved mapping before the old one wakes.
    let after = cluster.assignments().await;
    let pg = cluster.db.client().await;
    wait_until("the new owner claims", Duration::from_secs(30), || async {
        let mut claimed = true;
        for (c, o) in &held {
            let sql = format!(
                "SELECT owner_epoch FROM {c}._driftless_mapping_state WHERE object_name = $1"
            );
            let epoch: Option<i64> = pg
                .query_opt(&sql, &[o])
                .await
                .ok()
                .flatten()
                .map(|r| r.get(0));
            claimed &= epoch == Some(after[&(c.clone(), o.clone())].1);
        }
        claimed
    })
    .await;
    cluster.signal(&frozen, "-CONT");

    // It wakes with reads in flight: their commits are rejected by the fence, it learns that its
    // lease is gone, stops, and registers again.
    let log = format!("worker-{frozen}.log");
    wait_until(
        "the fencing rejection in the woken worker's log",
        Duration::from_secs(30),
        || async { cluster.log(&log).contains("the mapping has a newer owner") },
    )
    .await;
    wait_until(
        "the woken worker registers again",
        Duration::from_secs(30),
        || async {
            cluster
                .log(&log)
                .matches("registered with the coordinator")
                .count()
                >= 2
        },
    )
    .await;
    // Its epochs stayed fenced: the moved mappings are still owned by the new owner's epochs.
    for (c, o) in &held {
        let sql =
            format!("SELECT owner_epoch FROM {c}._driftless_mapping_state WHERE object_name = $1");
        let epoch: i64 = pg.query_one(&sql, &[o]).await.unwrap().get(0);
        assert!(epoch >= after[&(c.clone(), o.clone())].1);
    }
    sim_delete(&cluster.sim.info, "/_sim/faults").await;
    cluster.settle(6).await;
    let verify = cluster.verify();
    assert!(verify.success(), "verify: {}", cluster.log("verify.log"));
}

#[actix_rt::test]
async fn a_restarted_coordinator_moves_nothing_and_a_standby_takes_over() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(2).await;
    let first = cluster.start_coordinator();
    cluster.start_worker("w1");
    cluster.start_worker("w2");
    let t0 = Utc::now();
    wait_until("6 mappings loaded", Duration::from_secs(120), || {
        cluster.all_synced_after(t0 - chrono::Duration::days(1), 6)
    })
    .await;
    cluster.workload().await;
    let before = cluster.assignments().await;

    // Restart: same assignments, same epochs (nobody was disturbed).
    cluster.kill_9_coordinator(first);
    let second = cluster.start_coordinator();
    wait_until(
        "the restarted coordinator answers",
        Duration::from_secs(20),
        || async { cluster.status().await.is_some() },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(LEASE_SECS)).await;
    assert_eq!(
        cluster.assignments().await,
        before,
        "a restart moved mappings"
    );

    // A standby waits while the active one lives, then takes over when it dies.
    let standby = cluster.start_coordinator();
    wait_until("the standby waiting", Duration::from_secs(20), || async {
        cluster
            .log(&format!("coordinator-{standby}.log"))
            .contains("waiting as a standby")
    })
    .await;
    cluster.kill_9_coordinator(second);
    wait_until("the standby active", Duration::from_secs(20), || async {
        cluster
            .log(&format!("coordinator-{standby}.log"))
            .contains("active coordinator")
            && cluster.status().await.is_some()
    })
    .await;
    let resumed = Utc::now();
    wait_until(
        "sync continuing under the standby",
        Duration::from_secs(60),
        || cluster.all_synced_after(resumed, 6),
    )
    .await;
    assert_eq!(
        cluster.assignments().await,
        before,
        "the takeover moved mappings"
    );
    cluster.settle(6).await;
    let verify = cluster.verify();
    assert!(verify.success(), "verify: {}", cluster.log("verify.log"));
}

fn ctl(cluster: &Cluster, token: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["ctl", "--coordinator", &cluster.url(), "--token", token]);
    if let Some(ca) = &cluster.ca_cert {
        cmd.arg("--ca-cert").arg(ca);
    }
    let out = cmd.args(args).output().expect("driftless ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[actix_rt::test]
async fn ctl_steers_the_cluster_and_a_wrong_token_changes_nothing() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(2).await;
    cluster.start_coordinator();
    cluster.start_worker("w1");
    cluster.start_worker("w2");
    let t0 = Utc::now();
    wait_until("6 mappings loaded", Duration::from_secs(120), || {
        cluster.all_synced_after(t0 - chrono::Duration::days(1), 6)
    })
    .await;

    // status --json: SPEC.md §6's document, with the workers of the cluster.
    let (ok, out, err) = ctl(&cluster, TOKEN, &["--json", "status"]);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let workers: BTreeSet<&str> = doc["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert!(w["last_heartbeat_ms_ago"].as_u64().unwrap() < 10_000, "{w}");
            w["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(workers, BTreeSet::from(["w1", "w2"]));
    let mappings = doc["mappings"].as_array().unwrap();
    assert_eq!(mappings.len(), 6);
    for m in mappings {
        for key in [
            "connection",
            "object",
            "state",
            "worker",
            "rows",
            "synced_through",
            "api_calls",
            "db_connections_in_use",
            "errors",
        ] {
            assert!(m.get(key).is_some(), "{key} missing in {m}");
        }
        for key in [
            "polls",
            "records",
            "bulk_jobs",
            "bulk_batches",
            "rest_queries",
        ] {
            assert!(
                m["primary"].get(key).is_some(),
                "primary.{key} missing in {m}"
            );
        }
        assert!(m["secondary"].get("drift_records").is_some(), "{m}");
        assert!(m["synced_through"].as_str().unwrap().ends_with('Z'), "{m}");
    }

    // A wrong token: 401, exit 1, and nothing paused.
    let before = cluster.assignments().await;
    let (ok, _, err) = ctl(&cluster, "wrong-token", &["pause", "c1"]);
    assert!(!ok);
    assert!(
        err.contains("401") || err.to_lowercase().contains("token"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cluster.assignments().await, before);

    // pause: c1 is assigned to nobody and shows PAUSED; resume brings it back in sync.
    let (ok, _, err) = ctl(&cluster, TOKEN, &["pause", "c1"]);
    assert!(ok, "{err}");
    let now = cluster.assignments().await;
    assert!(now.keys().all(|(c, _)| c != "c1"), "{now:?}");
    let (_, out, _) = ctl(
        &cluster,
        TOKEN,
        &["--json", "mappings", "--connection", "c1"],
    );
    let paused: serde_json::Value = serde_json::from_str(&out).unwrap();
    let states: Vec<&str> = paused["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["PAUSED"; 3], "{paused}");
    let (ok, _, err) = ctl(&cluster, TOKEN, &["resume", "c1"]);
    assert!(ok, "{err}");
    let resumed = Utc::now();
    wait_until("c1 syncing again", Duration::from_secs(60), || {
        cluster.all_synced_after(resumed, 6)
    })
    .await;

    // reload: the worker running c1/Account truncates and loads the table again.
    let (ok, out, err) = ctl(&cluster, TOKEN, &["reload", "c1", "Account"]);
    assert!(ok, "{err}");
    assert!(out.contains("RELOAD_TABLE"), "{out}");
    let owner = cluster.assignments().await[&("c1".to_owned(), "Account".to_owned())]
        .0
        .clone();
    wait_until("the worker reloading", Duration::from_secs(20), || async {
        cluster
            .log(&format!("worker-{owner}.log"))
            .contains("reload requested by the coordinator")
    })
    .await;
    let reloaded = Utc::now();
    wait_until("c1/Account loaded again", Duration::from_secs(60), || {
        cluster.all_synced_after(reloaded, 6)
    })
    .await;
    let pg = cluster.db.client().await;
    let rows: i64 = pg
        .query_one("SELECT count(*) FROM c1.account", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 300);

    // The coordinator's /metrics (open) and /status page (token) cover every mapping.
    let http = reqwest::Client::new();
    let metrics = http
        .get(format!("{}/metrics", cluster.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for c in ["c1", "c2"] {
        for o in ["Account", "Contact", "Opportunity"] {
            assert!(
                metrics.contains(&format!("connection=\"{c}\",object=\"{o}\"")),
                "{c}/{o} missing in /metrics"
            );
        }
    }
    let page = http
        .get(format!("{}/status?token={TOKEN}", cluster.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("Opportunity") && page.contains("w1"),
        "{page}"
    );
    let denied = http
        .get(format!("{}/status?token=wrong", cluster.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);

    // A worker with a wrong token is refused and exits 1 without taking anything.
    let refused = cluster
        .command("worker-intruder.log")
        .args(["worker", "--name", "intruder", "--token", "wrong-token"])
        .args(["--coordinator", &cluster.url()])
        .status()
        .expect("driftless worker");
    assert_eq!(
        refused.code(),
        Some(1),
        "{}",
        cluster.log("worker-intruder.log")
    );
    assert!(cluster
        .log("worker-intruder.log")
        .contains("refused the token"));
    assert!(cluster
        .assignments()
        .await
        .values()
        .all(|(w, _)| w != "intruder"));

    // export prints the Heroku Connect format of the coordinator's file.
    let (ok, out, err) = ctl(&cluster, TOKEN, &["export", "c2"]);
    assert!(ok, "{err}");
    let exported: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(exported["mappings"].as_array().unwrap().len(), 3);
    let verify = cluster.verify();
    assert!(verify.success(), "verify: {}", cluster.log("verify.log"));
}

#[actix_rt::test]
async fn a_cluster_over_tls_syncs_fails_over_and_refuses_plain_http() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start_with(1, true).await;
    cluster.start_coordinator();
    cluster.start_worker("w1");
    cluster.start_worker("w2");
    let t0 = Utc::now();
    wait_until(
        "3 mappings loaded over TLS",
        Duration::from_secs(120),
        || cluster.all_synced_after(t0 - chrono::Duration::days(1), 3),
    )
    .await;
    // ctl over HTTPS with the CA; without it the certificate is not trusted and nothing is sent.
    let (ok, out, err) = ctl(&cluster, TOKEN, &["--json", "status"]);
    assert!(ok, "ctl status over TLS: {err}");
    assert!(out.contains("\"mappings\""), "{out}");
    let untrusted = Command::new(BIN)
        .args([
            "ctl",
            "--coordinator",
            &cluster.url(),
            "--token",
            TOKEN,
            "status",
        ])
        .output()
        .unwrap();
    assert!(
        !untrusted.status.success(),
        "a certificate nobody trusts was accepted"
    );
    // Plain HTTP gets no answer from the TLS listener.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/api/v1/status", cluster.port))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP answered"
    );

    // kill -9 the worker that runs the connection: it moves to the other one, over TLS.
    let doc = cluster.status().await.unwrap();
    let victim = doc.mappings[0].worker.clone();
    cluster.workload().await;
    cluster.kill_9_worker(&victim);
    wait_until(
        "the connection running on the other worker",
        Duration::from_secs(LEASE_SECS + 30),
        || async {
            let Some(doc) = cluster.status().await else {
                return false;
            };
            doc.mappings.len() == 3
                && doc
                    .mappings
                    .iter()
                    .all(|m| !m.worker.is_empty() && m.worker != victim && m.state != "ASSIGNED")
        },
    )
    .await;
    cluster.settle(3).await;
    let verify = cluster.verify();
    assert!(verify.success(), "verify: {}", cluster.log("verify.log"));
}
