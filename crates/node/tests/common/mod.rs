//! Test harness: a fresh Postgres database per test (dropped by a guard), the simulator
//! in-process, a config written to a temporary directory, and waiting on conditions.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use driftless_core::config::Config;
use driftless_node::StatusDoc;

pub const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const TOKEN: &str = "test-admin-token";

pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("driftless_test_{}", uuid::Uuid::new_v4().simple());
        let client = connect(ADMIN).await;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        TestDb {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await; a thread with its own runtime does the DROP.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(ADMIN, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("postgres on 127.0.0.1:5432");
    tokio::spawn(conn);
    client
}

pub struct Setup {
    /// Inject HTTP 503s and latency on the Salesforce API during the workload.
    pub faults: bool,
    pub bulk_threshold: u64,
    pub secondary_enabled: bool,
    pub db_pool_size: u32,
}

pub fn write_config(db: &TestDb, sim: &sfsim::SimInfo, setup: &Setup) -> Config {
    write_config_with(db, sim, setup, DEFAULT_MAPPINGS)
}

/// Lines added to the config's tables beyond what [`Setup`] sets.
#[derive(Debug, Clone, Default)]
pub struct ConfigExtra {
    /// TOML lines for `[connection.salesforce]`, e.g. `request_timeout_secs = 3`.
    pub salesforce: String,
    /// TOML lines for `[connection.sync]`, e.g. `batch_rows = 500`.
    pub sync: String,
}

/// Account and Contact, read only, polled every 2 s.
pub const DEFAULT_MAPPINGS: &str = r#"{"mappings":[
      {"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":2,"sf_notify_enabled":false,
        "sf_max_daily_api_calls":30000,
        "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"CreatedDate":{},"Name":{},"Type":{},"Industry":{},
                  "AnnualRevenue":{},"NumberOfEmployees":{},"Phone":{},"BillingCity":{},"Description":{}},
        "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false},"Name":{"unique":false}}}},
      {"object_name":"Contact","config":{"access":"read_only","sf_polling_seconds":2,"sf_notify_enabled":false,
        "sf_max_daily_api_calls":30000,
        "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"AccountId":{},"FirstName":{},"LastName":{},
                  "Email":{},"Birthdate":{},"HasOptedOutOfEmail":{}},
        "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}
    ],"version":1}"#;

/// Writes `mappings` (Heroku Connect's format) and a driftless.toml to a temporary directory.
pub fn write_config_with(
    db: &TestDb,
    sim: &sfsim::SimInfo,
    setup: &Setup,
    mappings: &str,
) -> Config {
    write_config_ext(db, sim, setup, mappings, &ConfigExtra::default())
}

/// [`write_config_with`] plus `extra` lines.
pub fn write_config_ext(
    db: &TestDb,
    sim: &sfsim::SimInfo,
    setup: &Setup,
    mappings: &str,
    extra: &ConfigExtra,
) -> Config {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("driftless-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mappings.json"), mappings).unwrap();
    let toml = format!(
        r#"[coordinator]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"

[[connection]]
name = "acme"
database_url = "{db}"
db_pool_size = {pool}
mappings = "mappings.json"

[connection.salesforce]
login_url = "{login}"
auth = "password"
username = "{user}"
password = "${{SF_PASSWORD}}"
client_id = "{cid}"
client_secret = "{secret}"
{sf_extra}
[connection.sync]
poll_interval_secs = 2
secondary_delay_secs = 6
secondary_concurrency = 2
bulk_threshold = {bulk}
secondary_enabled = {secondary}
poll_margin_secs = 1
{sync_extra}
"#,
        db = db.url,
        pool = setup.db_pool_size,
        login = sim.login_url,
        user = sim.username,
        cid = sim.client_id,
        secret = sim.client_secret,
        bulk = setup.bulk_threshold,
        secondary = setup.secondary_enabled,
        sf_extra = extra.salesforce,
        sync_extra = extra.sync,
    );
    let path = dir.join("driftless.toml");
    std::fs::write(&path, &toml).unwrap();
    let env = HashMap::from([("SF_PASSWORD".to_owned(), sim.password.clone())]);
    Config::parse(&toml, &path, env).expect("valid config")
}

/// Polls `cond` every 200 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn mapping<'a>(doc: &'a StatusDoc, object: &str) -> &'a driftless_node::status::MappingDoc {
    doc.mappings
        .iter()
        .find(|m| m.object == object)
        .unwrap_or_else(|| panic!("{object} in status"))
}

pub async fn sim_post(sim: &sfsim::SimInfo, path: &str, body: serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", sim.instance_url))
        .json(&body)
        .send()
        .await
        .expect("sim control plane");
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

pub async fn sim_delete(sim: &sfsim::SimInfo, path: &str) {
    let r = reqwest::Client::new()
        .delete(format!("{}{path}", sim.instance_url))
        .send()
        .await
        .expect("sim control plane");
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

/// The workload of the sync tests: inserts, updates and deletes on Account and Contact, a fifth of
/// them in long transactions of 1-3 s that commit behind windows already read.
pub fn sync_test_workloads() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({
            "object": "Account", "inserts_per_sec": 15, "updates_per_sec": 120, "deletes_per_sec": 8,
            "long_txn_fraction": 0.2, "long_txn_ms": [1000, 3000]
        }),
        serde_json::json!({
            "object": "Contact", "inserts_per_sec": 5, "updates_per_sec": 40, "deletes_per_sec": 2,
            "long_txn_fraction": 0.2, "long_txn_ms": [1000, 3000]
        }),
    ]
}

/// Runs `workloads` for `run_for`, then stops them (the simulator answers once no transaction is
/// left open). Returns a time past every write the workload made: windows reaching beyond it
/// have seen everything.
pub async fn run_workload(
    sim: &sfsim::SimInfo,
    workloads: &[serde_json::Value],
    run_for: Duration,
) -> chrono::DateTime<chrono::Utc> {
    for w in workloads {
        sim_post(sim, "/_sim/workload", w.clone()).await;
    }
    tokio::time::sleep(run_for).await;
    sim_delete(sim, "/_sim/workload").await;
    chrono::Utc::now() + chrono::Duration::seconds(1)
}

/// Waits until every mapping's primary windows reach past `t`.
pub async fn wait_synced_past(
    engine: &driftless_node::NodeHandle,
    t: chrono::DateTime<chrono::Utc>,
    timeout: Duration,
) {
    wait_until("windows past the workload read", timeout, || async {
        let s = engine.status().await;
        s.mappings.iter().all(|m| {
            m.synced_through
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|s| s > t)
        })
    })
    .await;
}

/// Waits until every window of `schema` that starts before `t` has had its secondary poll.
pub async fn wait_secondary_done(
    pg: &tokio_postgres::Client,
    schema: &str,
    t: chrono::DateTime<chrono::Utc>,
    timeout: Duration,
) {
    let sql = format!(
        "SELECT count(*) FROM {schema}._driftless_windows \
         WHERE window_start < $1 AND secondary_done_at IS NULL"
    );
    wait_until("secondary polls of those windows", timeout, || async {
        let row = pg.query_one(&sql, &[&t]).await.unwrap();
        row.get::<_, i64>(0) == 0
    })
    .await;
}

/// Samples the most sessions the engine held at once, by application_name, until dropped.
pub struct ConnectionSampler {
    pub peak: std::sync::Arc<std::sync::atomic::AtomicI64>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl ConnectionSampler {
    pub async fn start(db: &TestDb, application_name: &str) -> ConnectionSampler {
        let client = connect(ADMIN).await;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let (p, dbname, app) = (peak.clone(), db.name.clone(), application_name.to_owned());
        tokio::spawn(async move {
            loop {
                if let Ok(row) = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
                        &[&dbname, &app],
                    )
                    .await
                {
                    p.fetch_max(row.get::<_, i64>(0), std::sync::atomic::Ordering::Relaxed);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = rx.changed() => break,
                }
            }
        });
        ConnectionSampler { peak, stop }
    }

    pub fn peak(&self) -> i64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for ConnectionSampler {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The simulator on a thread and runtime of its own, as Salesforce is a system of its own: its
/// workload's transactions then commit on time however busy the engine under test keeps the
/// test's runtime.
pub struct SimThread {
    pub info: sfsim::SimInfo,
    /// The simulator's org, for creating and reading records directly (`begin`/`create`/`commit`).
    pub org: std::sync::Arc<sfsim::store::Org>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimThread {
    pub async fn start(config: sfsim::SimConfig) -> SimThread {
        let (info_tx, info_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let sim = sfsim::start(config).await.expect("simulator");
                let _ = info_tx.send((sim.info.clone(), sim.state.org.clone()));
                let _ = stop_rx.await;
                sim.stop().await;
            });
        });
        let (info, org) = info_rx.await.expect("simulator started");
        SimThread {
            info,
            org,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
