//! What `driftless sim` is started with, and what it announces once it serves.

use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub listen: String,
    /// Records to generate per object, e.g. `[("Account", 100000)]`.
    pub dataset: Vec<(String, u64)>,
    pub seed: u64,
    pub tls: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_sans: Vec<String>,
    /// Daily API request allowance; calls past it fail with REQUEST_LIMIT_EXCEEDED.
    pub api_quota: Option<u64>,
    /// Access tokens expire this long after issue (Salesforce's default session timeout is 2 h).
    pub session_ttl_secs: Option<u64>,
    /// How fast bulk batches process; a batch stays InProgress for rows / this many seconds.
    pub bulk_rows_per_sec: Option<u64>,
    /// Where a generated self-signed certificate is written; a temporary file when unset.
    pub cert_dir: Option<PathBuf>,
    /// The URL clients are told to use (login and instance URL) when it differs from the
    /// listen address, e.g. a container's service name behind `--listen 0.0.0.0:8443`.
    pub public_url: Option<String>,
    /// Where the Pub/Sub API (gRPC, TLS) listens; port 0 picks a free port.
    pub pubsub_listen: String,
    /// How long change events are retained for replay.
    pub cdc_retention_secs: u64,
    /// An idle Subscribe stream gets an empty keepalive response this often (Salesforce: within
    /// 270 s).
    pub pubsub_keepalive: std::time::Duration,
    /// Describe JSON files whose objects are added to the org (`--objects`).
    pub objects: Vec<PathBuf>,
    /// Objects without Change Data Capture (`--no-cdc`): no `/data/<Object>ChangeEvent` topic and
    /// no events on `/data/ChangeEvents`.
    pub no_cdc: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: "127.0.0.1:0".into(),
            dataset: vec![],
            seed: 1,
            tls: false,
            tls_cert: None,
            tls_key: None,
            tls_sans: vec![],
            api_quota: None,
            session_ttl_secs: None,
            bulk_rows_per_sec: None,
            cert_dir: None,
            public_url: None,
            pubsub_listen: "127.0.0.1:0".into(),
            cdc_retention_secs: crate::cdc::DEFAULT_RETENTION_SECS,
            pubsub_keepalive: std::time::Duration::from_secs(60),
            objects: vec![],
            no_cdc: vec![],
        }
    }
}

/// Daily API allowance when no quota is set: a large Enterprise org's.
pub const DEFAULT_DAILY_API_REQUESTS: u64 = 5_000_000;

/// The one JSON line `driftless sim` prints when it is ready (SPEC.md section 2).
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct SimInfo {
    pub instance_url: String,
    pub login_url: String,
    pub org_id: String,
    pub username: String,
    pub password: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    pub ca_cert: Option<String>,
}

impl SimInfo {
    /// The `[connection.salesforce]` table of a driftless.toml that logs in to this simulator,
    /// with the password as `${SF_PASSWORD}` so that it stays in the environment, as a real
    /// config keeps it, and `client_secret` as given (the value, or a `${VAR}` of its own).
    pub fn salesforce_toml(&self, client_secret: &str) -> String {
        format!(
            r#"[connection.salesforce]
login_url = "{}"
auth = "password"
username = "{}"
password = "${{SF_PASSWORD}}"
client_id = "{}"
client_secret = "{}"
"#,
            self.login_url, self.username, self.client_id, client_secret
        )
    }
}

pub const USERNAME: &str = "admin@driftless.sim";
pub const PASSWORD: &str = "driftless";
pub const CLIENT_ID: &str = "driftless-sim";
pub const CLIENT_SECRET: &str = "driftless-sim-secret";

/// Parses `Account=100000,Contact=300000`.
pub fn parse_dataset(spec: &str) -> Result<Vec<(String, u64)>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|part| {
            let (object, count) = part
                .split_once('=')
                .ok_or_else(|| format!("dataset entry '{part}' is not Object=count"))?;
            let count = count.trim().replace('_', "").parse::<u64>().map_err(|_| {
                format!("dataset entry '{part}': count '{count}' is not a whole number")
            })?;
            Ok((object.trim().to_string(), count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_spec_parses_and_rejects() {
        assert_eq!(
            parse_dataset("Account=100000, Contact=300_000").unwrap(),
            vec![
                ("Account".to_string(), 100000),
                ("Contact".to_string(), 300000)
            ]
        );
        assert!(parse_dataset("Account")
            .unwrap_err()
            .contains("Object=count"));
        assert!(parse_dataset("Account=lots").unwrap_err().contains("lots"));
    }
}
