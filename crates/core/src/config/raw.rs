//! The file as written: serde structs with `deny_unknown_fields`, and `${VAR}` expansion.
//!
//! Expansion happens inside deserialization (in [`EnvString`]) rather than on the parsed values so
//! that a missing variable is reported by toml with the span of the value that names it, which gives
//! the error its line and key.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::{de, Deserialize, Deserializer};
use toml::Spanned;

thread_local! {
    /// The environment `${VAR}` reads from while one config is being parsed on this thread. A
    /// snapshot rather than `std::env` so tests can pass their own without touching the process.
    static ENV: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

/// Runs `f` with `env` as the environment for [`EnvString`].
pub(super) fn with_env<T>(env: HashMap<String, String>, f: impl FnOnce() -> T) -> T {
    let previous = ENV.with(|e| std::mem::replace(&mut *e.borrow_mut(), env));
    let out = f();
    ENV.with(|e| *e.borrow_mut() = previous);
    out
}

pub(super) fn env_var(name: &str) -> Option<String> {
    ENV.with(|e| e.borrow().get(name).cloned())
}

/// Replaces every `${NAME}` in `s`. A `$` not followed by `{` is kept as is.
pub(super) fn expand(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(close) = after.find('}') else {
            return Err("unterminated `${` (expected `${NAME}`)".to_owned());
        };
        let name = &after[..close];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "`${{{name}}}` is not a valid environment variable reference (expected `${{NAME}}`)"
            ));
        }
        match env_var(name) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A string value after `${VAR}` expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EnvString(pub String);

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand(&raw).map(EnvString).map_err(de::Error::custom)
    }
}

pub(super) type S = Spanned<EnvString>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub coordinator: Option<RawCoordinator>,
    #[serde(default)]
    pub connection: Vec<RawConnection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCoordinator {
    pub listen: Option<S>,
    pub admin_token: Option<S>,
    pub worker_token: Option<S>,
    pub state_database_url: Option<S>,
    pub tls_cert: Option<S>,
    pub tls_key: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnection {
    pub name: S,
    pub database_url: S,
    pub schema: Option<S>,
    pub db_pool_size: Option<Spanned<i64>>,
    pub mappings: S,
    pub salesforce: Spanned<RawSalesforce>,
    pub sync: Option<RawSync>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSalesforce {
    pub login_url: Option<S>,
    pub auth: S,
    pub username: Option<S>,
    pub password: Option<S>,
    pub client_id: Option<S>,
    pub client_secret: Option<S>,
    pub refresh_token: Option<S>,
    pub private_key: Option<S>,
    pub private_key_file: Option<S>,
    pub api_version: Option<S>,
    pub ca_cert: Option<S>,
    pub request_timeout_secs: Option<Spanned<i64>>,
    pub pubsub_endpoint: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub poll_interval_secs: Option<Spanned<i64>>,
    pub secondary_delay_secs: Option<Spanned<i64>>,
    pub secondary_concurrency: Option<Spanned<i64>>,
    pub bulk_threshold: Option<Spanned<i64>>,
    pub secondary_enabled: Option<bool>,
    pub use_latest_date_covered: Option<bool>,
    pub secondary_max_hold_secs: Option<Spanned<i64>>,
    pub poll_margin_secs: Option<Spanned<i64>>,
    pub batch_rows: Option<Spanned<i64>>,
    pub writeback_retention_days: Option<Spanned<i64>>,
    pub write_mode: Option<S>,
    pub bulk_write_threshold: Option<Spanned<i64>>,
    pub formula_refresh_secs: Option<Spanned<i64>>,
}
