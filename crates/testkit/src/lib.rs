//! The workspace's test kit (dev-only): a fresh Postgres database per test (dropped by a guard;
//! the server from `DRIFTLESS_TEST_DATABASE_URL`, default the local one), the simulator
//! in-process on port 0, a driftless.toml written for the test, the Postgres session sampler,
//! and waits on conditions rather than fixed sleeps.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use driftless_core::config::Config;
use driftless_node::session_sampler::SessionSampler;
use driftless_node::StatusDoc;

pub use driftless_testdb::{admin_url, connect, database_url, TestDb};

pub const TOKEN: &str = "test-admin-token";

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
    ConfigBuilder::new()
        .pool(setup.db_pool_size)
        .sync("bulk_threshold", setup.bulk_threshold)
        .sync("secondary_enabled", setup.secondary_enabled)
        .salesforce_lines(&extra.salesforce)
        .sync_lines(&extra.sync)
        .write(db, sim, mappings)
}

/// A driftless.toml for one test: the `acme` connection against `db` and `sim`, with the admin
/// endpoints on port 0 and the kit's token. Every `[connection.sync]` key can be overridden.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    /// `[coordinator].listen`'s port; 0 lets the OS pick.
    port: u16,
    pool: u32,
    sync: std::collections::BTreeMap<&'static str, String>,
    salesforce_lines: String,
    sync_lines: String,
}

impl Default for ConfigBuilder {
    fn default() -> ConfigBuilder {
        ConfigBuilder::new()
    }
}

impl ConfigBuilder {
    pub fn new() -> ConfigBuilder {
        let sync = [
            ("poll_interval_secs", "2"),
            ("secondary_delay_secs", "6"),
            ("secondary_concurrency", "2"),
            ("bulk_threshold", "2000"),
            ("secondary_enabled", "true"),
            ("poll_margin_secs", "1"),
            // Most tests want secondary polls soon after their delay; the secondary poll's wait
            // for latestDateCovered (the default) has its own tests.
            ("use_latest_date_covered", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
        ConfigBuilder {
            port: 0,
            pool: 3,
            sync,
            salesforce_lines: String::new(),
            sync_lines: String::new(),
        }
    }

    /// A fixed admin port, for a test that starts the binary and must know where it listens.
    pub fn listen_port(mut self, port: u16) -> ConfigBuilder {
        self.port = port;
        self
    }

    pub fn pool(mut self, db_pool_size: u32) -> ConfigBuilder {
        self.pool = db_pool_size;
        self
    }

    /// Sets `[connection.sync].key = value` (value as TOML: numbers and booleans as is).
    pub fn sync(mut self, key: &'static str, value: impl std::fmt::Display) -> ConfigBuilder {
        self.sync.insert(key, value.to_string());
        self
    }

    /// Leaves `[connection.sync].key` out: the engine's default applies.
    pub fn without(mut self, key: &'static str) -> ConfigBuilder {
        self.sync.remove(key);
        self
    }

    /// Raw TOML lines for `[connection.salesforce]`, e.g. `request_timeout_secs = 3`.
    pub fn salesforce_lines(mut self, lines: &str) -> ConfigBuilder {
        self.salesforce_lines.push_str(lines);
        self
    }

    /// Raw TOML lines for `[connection.sync]` with keys the builder does not set.
    pub fn sync_lines(mut self, lines: &str) -> ConfigBuilder {
        self.sync_lines.push_str(lines);
        self
    }

    /// The TOML text (`${SF_PASSWORD}` stands for the simulator's password).
    pub fn toml(&self, db: &TestDb, sim: &sfsim::SimInfo) -> String {
        let sync: String = self
            .sync
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        format!(
            r#"[coordinator]
listen = "127.0.0.1:{port}"
admin_token = "{TOKEN}"

[[connection]]
name = "acme"
database_url = "{db}"
db_pool_size = {pool}
mappings = "mappings.json"

{salesforce}{sf_extra}
[connection.sync]
{sync}{sync_extra}
"#,
            db = db.url,
            port = self.port,
            pool = self.pool,
            salesforce = sim.salesforce_toml(&sim.client_secret),
            sf_extra = self.salesforce_lines,
            sync_extra = self.sync_lines,
        )
    }

    /// Writes driftless.toml and `mappings` (mappings.json) to a fresh temporary directory and
    /// loads the config as the engine would (`config.path` is the file, for the binary).
    pub fn write(&self, db: &TestDb, sim: &sfsim::SimInfo, mappings: &str) -> Config {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("driftless-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mappings.json"), mappings).unwrap();
        let toml = self.toml(db, sim);
        let path = dir.join("driftless.toml");
        std::fs::write(&path, &toml).unwrap();
        let env = HashMap::from([("SF_PASSWORD".to_owned(), sim.password.clone())]);
        Config::parse(&toml, &path, env).expect("valid config")
    }
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
/// The engine's [`SessionSampler`] over a test database, sampling from the admin connection.
pub struct ConnectionSampler(SessionSampler);

impl ConnectionSampler {
    pub async fn start(db: &TestDb, application_name: &str) -> ConnectionSampler {
        let client = connect(&admin_url()).await;
        ConnectionSampler(SessionSampler::start(client, &db.name, application_name))
    }

    pub fn peak(&self) -> i64 {
        self.0.peak()
    }
}

/// The simulator on a thread and runtime of its own (the product's [`sfsim::thread::SimThread`],
/// which the demo uses too), started or the test fails.
pub struct SimThread(sfsim::thread::SimThread);

impl SimThread {
    pub async fn start(config: sfsim::SimConfig) -> SimThread {
        let sim = sfsim::thread::SimThread::start(config)
            .await
            .unwrap_or_else(|e| panic!("simulator: {e}"));
        SimThread(sim)
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

impl std::ops::Deref for SimThread {
    type Target = sfsim::thread::SimThread;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// `bin ARGS --config CONFIG` (the `driftless` binary under test, which only its own crate's
/// tests can name), with the simulator's password in its environment and its output in `log`
/// beside the config.
pub fn driftless_command(
    bin: &str,
    args: &[&str],
    config: &std::path::Path,
    sim: &sfsim::SimInfo,
    log: &str,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    let log = std::fs::File::create(config.with_file_name(log)).unwrap();
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env("SF_PASSWORD", &sim.password)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    cmd
}

/// SIGKILL (std's `Child::kill`), then reap.
pub fn kill_9(child: &mut std::process::Child) {
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
}

/// Sends the engine's logs to the test's output when `RUST_LOG` is set (`--nocapture` to see
/// them); a no-op otherwise, and when a subscriber is already installed.
pub fn log_from_env() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
