//! `driftless.toml` (SPEC.md §3).
//!
//! Keys beyond SPEC.md's example, with their defaults:
//! - `[coordinator]` may be omitted; `listen` defaults to `127.0.0.1:7400`. Without `admin_token` the
//!   environment's `DRIFTLESS_ADMIN_TOKEN` is used (SPEC.md §1); `worker_token` defaults to it.
//! - `connection.db_pool_size` defaults to 4 (what the DbWriter may hold: writes plus secondary polls).
//! - `connection.salesforce.login_url` defaults to `https://login.salesforce.com`; `api_version` to
//!   `62.0`. `auth = "jwt"` (JWT bearer flow) needs `client_id`, `username` and one of
//!   `private_key` (PEM text) or `private_key_file` (path relative to this file). `ca_cert` is a path
//!   relative to this file.
//! - `connection.sync.secondary_enabled` (default true): turn secondary polls off, e.g. to measure
//!   the drift they catch. `connection.sync.poll_margin_secs` (default 5): how far behind now a
//!   window must end, for clock skew between this host and Salesforce.
//! - `connection.sync.use_latest_date_covered` (default false): on, primary windows never end past
//!   getUpdated's `latestDateCovered`, which Salesforce moves in whole minutes (a change then takes
//!   up to about 70 s to arrive). Off, primary polls read up to now minus the margin, and what a
//!   long transaction commits late is read by the window's secondary poll, which waits for
//!   `latestDateCovered` to pass the window's end (below).
//! - `connection.sync.secondary_max_hold_secs` (default 1,800): the longest a due secondary poll
//!   waits for `latestDateCovered` to reach its window's end; past it the poll runs anyway and the
//!   mapping counts a warning (a transaction open that long may still escape both reads until the
//!   next reload or verify). 0 turns the wait off.
//! - `connection.salesforce.request_timeout_secs` (default 120): the longest wait for a Salesforce
//!   response's headers before the request is retried. A hung request stalls its mapping this long.
//! - `connection.sync.batch_rows` (default: the engine's, 50,000): rows per Postgres transaction on
//!   the data path. Smaller batches commit progress more often and hold less memory.
//! - `connection.sync.writeback_retention_days` (default 31, Heroku Connect's paid-plan retention):
//!   how long settled write-back entries stay in `_trigger_log_archive` before they are purged.
//! - `connection.sync.write_mode` (default `"merged"`): Heroku Connect's write algorithm,
//!   `"merged"` (a record's pending changes go as one write) or `"ordered"` (each change in log
//!   order; a failed insert holds its table's queue), see [`crate::writeback::WriteMode`].
//! - `connection.sync.bulk_write_threshold` (default 2,000): more pending changes than this for a
//!   mapping and write-back sends them as Bulk API 2.0 ingest jobs instead of composite calls.
//! - `connection.sync.formula_refresh_secs` (default 3,600): how often the mapped formula fields of
//!   a mapping are re-read on a timer (Id plus those fields only); a mapping overrides it with the
//!   `formula_refresh_secs` key of its config in the mapping file.

mod error;
mod raw;

pub use error::{ConfigError, Invalid};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::ident::Ident;
use crate::secret::Secret;
use crate::writeback::WriteMode;
use error::Source;
use raw::{RawConnection, RawSalesforce, RawSync, S};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";
pub const DEFAULT_SCHEMA: &str = "salesforce";
pub const DEFAULT_DB_POOL_SIZE: u32 = 4;
pub const DEFAULT_LOGIN_URL: &str = "https://login.salesforce.com";
/// Salesforce's Pub/Sub API (the client crate's `DEFAULT_PUBSUB_ENDPOINT`; core does not depend on it).
pub const DEFAULT_PUBSUB_ENDPOINT: &str = "api.pubsub.salesforce.com:7443";
pub const DEFAULT_API_VERSION: &str = "62.0";
pub const DEFAULT_POLL_INTERVAL_SECS: u64 = 600;
pub const DEFAULT_SECONDARY_DELAY_SECS: u64 = 300;
pub const DEFAULT_SECONDARY_CONCURRENCY: u32 = 2;
pub const DEFAULT_SECONDARY_MAX_HOLD_SECS: u64 = 1_800;
pub const DEFAULT_BULK_THRESHOLD: u64 = 10_000;
pub const DEFAULT_POLL_MARGIN_SECS: u64 = 5;
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 120;
pub const DEFAULT_WRITEBACK_RETENTION_DAYS: u64 = 31;
pub const DEFAULT_BULK_WRITE_THRESHOLD: u64 = 2_000;
pub const DEFAULT_FORMULA_REFRESH_SECS: u64 = 3_600;
/// Environment fallback for `coordinator.admin_token` (SPEC.md §1).
pub const ADMIN_TOKEN_ENV: &str = "DRIFTLESS_ADMIN_TOKEN";

#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from; relative paths inside it were resolved against its directory.
    pub path: PathBuf,
    pub coordinator: CoordinatorConfig,
    pub connections: Vec<ConnectionConfig>,
}

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub worker_token: Option<Secret>,
    /// Cluster state; `run` may do without it.
    pub state_database_url: Option<Secret>,
    /// `tls_cert`/`tls_key`: the listener serves HTTPS with this certificate chain and key.
    pub tls: Option<TlsFiles>,
}

/// PEM files of a TLS server: the certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CoordinatorConfig {
    /// What workers must present: `worker_token`, else `admin_token`.
    pub fn effective_worker_token(&self) -> Option<&Secret> {
        self.worker_token.as_ref().or(self.admin_token.as_ref())
    }
}

#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub name: String,
    /// A URL may embed a password, so it is a secret too.
    pub database_url: Secret,
    pub schema: Ident,
    pub db_pool_size: u32,
    /// The mappings file, resolved against the config file's directory.
    pub mappings: PathBuf,
    pub salesforce: SalesforceConfig,
    pub sync: SyncConfig,
}

#[derive(Debug, Clone)]
pub struct SalesforceConfig {
    pub login_url: String,
    pub api_version: String,
    pub ca_cert: Option<PathBuf>,
    pub auth: Credentials,
    pub request_timeout_secs: u64,
    /// `host:port` of the Pub/Sub API (change events for `sf_notify_enabled` mappings).
    pub pubsub_endpoint: String,
}

/// The login flow and its inputs: the client's own type (crate `driftless-secret`), so what the
/// file says reaches the client unchanged.
pub use driftless_secret::{Credentials, PrivateKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    pub poll_interval_secs: u64,
    pub secondary_delay_secs: u64,
    pub secondary_concurrency: u32,
    pub bulk_threshold: u64,
    pub secondary_enabled: bool,
    pub poll_margin_secs: u64,
    pub use_latest_date_covered: bool,
    pub secondary_max_hold_secs: u64,
    /// Rows per transaction; `None` leaves it to the engine's `RunOptions`.
    pub batch_rows: Option<u64>,
    /// Days a settled write-back entry stays in `_trigger_log_archive`.
    pub writeback_retention_days: u64,
    pub write_mode: WriteMode,
    /// Pending changes of a mapping above which write-back uses Bulk API 2.0.
    pub bulk_write_threshold: u64,
    /// How often mapped formula fields are re-read on a timer (see `crate::formula`).
    pub formula_refresh_secs: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            poll_interval_secs: DEFAULT_POLL_INTERVAL_SECS,
            secondary_delay_secs: DEFAULT_SECONDARY_DELAY_SECS,
            secondary_concurrency: DEFAULT_SECONDARY_CONCURRENCY,
            bulk_threshold: DEFAULT_BULK_THRESHOLD,
            secondary_enabled: true,
            poll_margin_secs: DEFAULT_POLL_MARGIN_SECS,
            use_latest_date_covered: false,
            secondary_max_hold_secs: DEFAULT_SECONDARY_MAX_HOLD_SECS,
            batch_rows: None,
            writeback_retention_days: DEFAULT_WRITEBACK_RETENTION_DAYS,
            write_mode: WriteMode::default(),
            bulk_write_threshold: DEFAULT_BULK_WRITE_THRESHOLD,
            formula_refresh_secs: DEFAULT_FORMULA_REFRESH_SECS,
        }
    }
}

impl Config {
    /// Reads and validates `path`, expanding `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Config::parse(&text, path, env)
    }

    /// Parses `text` as if read from `path` (for errors and relative paths), with `env` as the
    /// environment.
    pub fn parse(
        text: &str,
        path: &Path,
        env: HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let src = Source { path, text };
        raw::with_env(env, || {
            let raw: raw::RawConfig = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
            build(&src, raw)
        })
    }

    pub fn connection(&self, name: &str) -> Option<&ConnectionConfig> {
        self.connections.iter().find(|c| c.name == name)
    }
}

fn base_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn build(src: &Source<'_>, raw: raw::RawConfig) -> Result<Config, ConfigError> {
    let base = base_dir(src.path);
    let coordinator = match raw.coordinator {
        None => CoordinatorConfig {
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            admin_token: raw::env_var(ADMIN_TOKEN_ENV).map(Secret::new),
            worker_token: None,
            state_database_url: None,
            tls: None,
        },
        Some(c) => {
            let listen = match c.listen {
                None => DEFAULT_LISTEN.parse().expect("valid default"),
                Some(l) => l.get_ref().0.parse().map_err(|_| {
                    src.error(
                        Some(l.span()),
                        "coordinator.listen",
                        format!(
                            "expected an address such as 127.0.0.1:7400, got {:?}",
                            l.get_ref().0
                        ),
                    )
                })?,
            };
            let tls = match (c.tls_cert, c.tls_key) {
                (None, None) => None,
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: base.join(string(cert)),
                    key: base.join(string(key)),
                }),
                (Some(one), None) | (None, Some(one)) => {
                    return Err(src.error(
                        Some(one.span()),
                        "coordinator.tls_cert",
                        "expected tls_cert and tls_key together",
                    ))
                }
            };
            CoordinatorConfig {
                listen,
                admin_token: secret(c.admin_token)
                    .or_else(|| raw::env_var(ADMIN_TOKEN_ENV).map(Secret::new)),
                worker_token: secret(c.worker_token),
                state_database_url: secret(c.state_database_url),
                tls,
            }
        }
    };
    let mut connections: Vec<ConnectionConfig> = Vec::new();
    for rc in raw.connection {
        let name_span = rc.name.span();
        let c = connection(src, &base, rc)?;
        if connections.iter().any(|o| o.name == c.name) {
            return Err(src.error(
                Some(name_span),
                "connection.name",
                format!(
                    "expected a unique connection name, `{}` is used twice",
                    c.name
                ),
            ));
        }
        connections.push(c);
    }
    Ok(Config {
        path: src.path.to_owned(),
        coordinator,
        connections,
    })
}

fn secret(s: Option<S>) -> Option<Secret> {
    s.map(|s| Secret::new(s.into_inner().0))
}

fn string(s: S) -> String {
    s.into_inner().0
}

fn connection(
    src: &Source<'_>,
    base: &Path,
    rc: RawConnection,
) -> Result<ConnectionConfig, ConfigError> {
    let name = rc.name.get_ref().0.clone();
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(src.error(
            Some(rc.name.span()),
            "connection.name",
            format!("expected letters, digits, `_` or `-`, got {name:?}"),
        ));
    }
    let schema = match rc.schema {
        None => Ident::from_sf_name(DEFAULT_SCHEMA).expect("valid default"),
        Some(s) => Ident::from_sf_name(&s.get_ref().0).map_err(|e| {
            src.error(
                Some(s.span()),
                "connection.schema",
                format!("expected a schema name: {e}"),
            )
        })?,
    };
    let db_pool_size = match rc.db_pool_size {
        None => DEFAULT_DB_POOL_SIZE,
        Some(n) => positive(src, &n, "connection.db_pool_size")? as u32,
    };
    let mappings_str = rc.mappings.get_ref().0.clone();
    if mappings_str.is_empty() {
        return Err(src.error(
            Some(rc.mappings.span()),
            "connection.mappings",
            "expected the path of a mappings JSON file",
        ));
    }
    Ok(ConnectionConfig {
        name,
        database_url: Secret::new(string(rc.database_url)),
        schema,
        db_pool_size,
        mappings: base.join(mappings_str),
        salesforce: salesforce(src, base, rc.salesforce)?,
        sync: sync(src, rc.sync)?,
    })
}

fn positive(src: &Source<'_>, n: &Spanned<i64>, key: &str) -> Result<u64, ConfigError> {
    let v = *n.get_ref();
    if v < 1 || v > i64::from(u32::MAX) {
        return Err(src.error(
            Some(n.span()),
            key,
            format!("expected a positive integer, got {v}"),
        ));
    }
    Ok(v as u64)
}

fn non_negative(src: &Source<'_>, n: &Spanned<i64>, key: &str) -> Result<u64, ConfigError> {
    let v = *n.get_ref();
    if v < 0 {
        return Err(src.error(
            Some(n.span()),
            key,
            format!("expected zero or a positive integer, got {v}"),
        ));
    }
    Ok(v as u64)
}

fn sync(src: &Source<'_>, rs: Option<RawSync>) -> Result<SyncConfig, ConfigError> {
    let d = SyncConfig::default();
    let Some(rs) = rs else { return Ok(d) };
    let k = |name: &str| format!("connection.sync.{name}");
    Ok(SyncConfig {
        poll_interval_secs: match &rs.poll_interval_secs {
            Some(n) => positive(src, n, &k("poll_interval_secs"))?,
            None => d.poll_interval_secs,
        },
        secondary_delay_secs: match &rs.secondary_delay_secs {
            Some(n) => non_negative(src, n, &k("secondary_delay_secs"))?,
            None => d.secondary_delay_secs,
        },
        secondary_concurrency: match &rs.secondary_concurrency {
            Some(n) => positive(src, n, &k("secondary_concurrency"))? as u32,
            None => d.secondary_concurrency,
        },
        bulk_threshold: match &rs.bulk_threshold {
            Some(n) => non_negative(src, n, &k("bulk_threshold"))?,
            None => d.bulk_threshold,
        },
        secondary_enabled: rs.secondary_enabled.unwrap_or(d.secondary_enabled),
        use_latest_date_covered: rs
            .use_latest_date_covered
            .unwrap_or(d.use_latest_date_covered),
        secondary_max_hold_secs: match &rs.secondary_max_hold_secs {
            Some(n) => non_negative(src, n, &k("secondary_max_hold_secs"))?,
            None => d.secondary_max_hold_secs,
        },
        poll_margin_secs: match &rs.poll_margin_secs {
            Some(n) => non_negative(src, n, &k("poll_margin_secs"))?,
            None => d.poll_margin_secs,
        },
        batch_rows: match &rs.batch_rows {
            Some(n) => Some(positive(src, n, &k("batch_rows"))?),
            None => d.batch_rows,
        },
        writeback_retention_days: match &rs.writeback_retention_days {
            Some(n) => positive(src, n, &k("writeback_retention_days"))?,
            None => d.writeback_retention_days,
        },
        write_mode: match &rs.write_mode {
            Some(v) => WriteMode::parse(&v.get_ref().0).ok_or_else(|| {
                src.error(
                    Some(v.span()),
                    &k("write_mode"),
                    format!(
                        "expected \"merged\" or \"ordered\", got {:?}",
                        v.get_ref().0
                    ),
                )
            })?,
            None => d.write_mode,
        },
        bulk_write_threshold: match &rs.bulk_write_threshold {
            Some(n) => non_negative(src, n, &k("bulk_write_threshold"))?,
            None => d.bulk_write_threshold,
        },
        formula_refresh_secs: match &rs.formula_refresh_secs {
            Some(n) => positive(src, n, &k("formula_refresh_secs"))?,
            None => d.formula_refresh_secs,
        },
    })
}

fn salesforce(
    src: &Source<'_>,
    base: &Path,
    rs: Spanned<RawSalesforce>,
) -> Result<SalesforceConfig, ConfigError> {
    let table_span = rs.span();
    let rs = rs.into_inner();
    let kind = rs.auth.get_ref().0.clone();
    let auth_span = rs.auth.span();

    // Which keys each grant needs and which it may take; anything else set is a mistake worth
    // reporting (e.g. a password left behind after switching to client_credentials).
    let (required, optional): (&[&str], &[&str]) = match kind.as_str() {
        "password" => (&["username", "password", "client_id", "client_secret"], &[]),
        "client_credentials" => (&["client_id", "client_secret"], &[]),
        "refresh_token" => (&["client_id", "refresh_token"], &["client_secret"]),
        "jwt" => (
            &["client_id", "username"],
            &["private_key", "private_key_file"],
        ),
        other => {
            return Err(src.error(
                Some(auth_span),
                "connection.salesforce.auth",
                format!(
                    "expected password, client_credentials, refresh_token or jwt, got {other:?}"
                ),
            ))
        }
    };
    let present: [(&str, &Option<S>); 7] = [
        ("username", &rs.username),
        ("password", &rs.password),
        ("client_id", &rs.client_id),
        ("client_secret", &rs.client_secret),
        ("refresh_token", &rs.refresh_token),
        ("private_key", &rs.private_key),
        ("private_key_file", &rs.private_key_file),
    ];
    for (key, value) in present {
        let key_path = format!("connection.salesforce.{key}");
        match value {
            None if required.contains(&key) => {
                return Err(src.error(
                    Some(table_span.clone()),
                    &key_path,
                    format!("missing: auth = \"{kind}\" needs {}", required.join(", ")),
                ))
            }
            Some(v) if !required.contains(&key) && !optional.contains(&key) => {
                return Err(src.error(
                    Some(v.span()),
                    &key_path,
                    format!(
                        "not used by auth = \"{kind}\" (it takes {})",
                        [required, optional].concat().join(", ")
                    ),
                ))
            }
            _ => {}
        }
    }
    let req = |v: Option<S>| string(v.expect("checked above"));
    let auth = match kind.as_str() {
        "password" => Credentials::Password {
            username: req(rs.username),
            password: Secret::new(req(rs.password)),
            client_id: req(rs.client_id),
            client_secret: Secret::new(req(rs.client_secret)),
        },
        "client_credentials" => Credentials::ClientCredentials {
            client_id: req(rs.client_id),
            client_secret: Secret::new(req(rs.client_secret)),
        },
        "refresh_token" => Credentials::RefreshToken {
            client_id: req(rs.client_id),
            client_secret: secret(rs.client_secret),
            refresh_token: Secret::new(req(rs.refresh_token)),
        },
        _ => {
            let private_key = match (rs.private_key, rs.private_key_file) {
                (Some(k), None) => PrivateKey::Pem(Secret::new(string(k))),
                (None, Some(f)) => PrivateKey::File(base.join(string(f))),
                (Some(_), Some(f)) => {
                    return Err(src.error(
                        Some(f.span()),
                        "connection.salesforce.private_key_file",
                        "expected one of private_key or private_key_file, not both",
                    ))
                }
                (None, None) => {
                    return Err(src.error(
                        Some(table_span),
                        "connection.salesforce.private_key",
                        "missing: auth = \"jwt\" needs private_key or private_key_file",
                    ))
                }
            };
            Credentials::JwtBearer {
                client_id: req(rs.client_id),
                username: req(rs.username),
                private_key,
                audience: None,
            }
        }
    };
    let api_version = match rs.api_version {
        None => DEFAULT_API_VERSION.to_owned(),
        Some(v) => {
            let s = v.get_ref().0.clone();
            let ok = s.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && (a.to_owned() + b).chars().all(|c| c.is_ascii_digit())
            });
            if !ok {
                return Err(src.error(
                    Some(v.span()),
                    "connection.salesforce.api_version",
                    format!("expected a version such as \"62.0\", got {s:?}"),
                ));
            }
            s
        }
    };
    let login_url = match rs.login_url {
        None => DEFAULT_LOGIN_URL.to_owned(),
        Some(u) => {
            let s = u.get_ref().0.trim_end_matches('/').to_owned();
            if !(s.starts_with("http://") || s.starts_with("https://")) {
                return Err(src.error(
                    Some(u.span()),
                    "connection.salesforce.login_url",
                    format!("expected an http:// or https:// URL, got {s:?}"),
                ));
            }
            s
        }
    };
    let request_timeout_secs = match &rs.request_timeout_secs {
        Some(n) => positive(src, n, "connection.salesforce.request_timeout_secs")?,
        None => DEFAULT_REQUEST_TIMEOUT_SECS,
    };
    let pubsub_endpoint = match rs.pubsub_endpoint {
        None => DEFAULT_PUBSUB_ENDPOINT.to_owned(),
        Some(e) => {
            let s = e.get_ref().0.trim().to_owned();
            let port_ok = s
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok || s.contains('/') {
                return Err(src.error(
                    Some(e.span()),
                    "connection.salesforce.pubsub_endpoint",
                    format!("expected host:port, got {s:?}"),
                ));
            }
            s
        }
    };
    Ok(SalesforceConfig {
        login_url,
        api_version,
        ca_cert: rs.ca_cert.map(|c| base.join(string(c))),
        auth,
        request_timeout_secs,
        pubsub_endpoint,
    })
}

#[cfg(test)]
mod tests;
