//! What `ctl status` shows (SPEC.md §6), kept in memory by the actors as they commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use driftless_core::state::Counters;
use parking_lot::RwLock;
use serde::Serialize;

/// Heroku Connect's mapping state names (reference/heroku-connect.md §5.1).
pub mod states {
    pub const INITIAL: &str = "INITIAL";
    pub const DATA_SYNCED: &str = "DATA_SYNCED";
    pub const POLLING_SF_CHANGES: &str = "POLLING_SF_CHANGES";
    pub const POLLING_SF_BULK: &str = "POLLING_SF_BULK";
    pub const RESYNC: &str = "RESYNC";
    pub const SYSTEM_ERROR: &str = "SYSTEM_ERROR";
    pub const ABORTED: &str = "ABORTED";
}

#[derive(Debug, Clone, Default)]
pub struct MappingStatus {
    pub connection: String,
    pub object: String,
    pub state: String,
    pub worker: String,
    pub rows: i64,
    pub synced_through: Option<DateTime<Utc>>,
    pub counters: Counters,
    pub last_error: Option<String>,
}

/// Shared by every actor of a process; cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<BTreeMap<(String, String), MappingStatus>>>,
}

impl Registry {
    pub fn insert(&self, status: MappingStatus) {
        self.inner
            .write()
            .insert((status.connection.clone(), status.object.clone()), status);
    }

    pub fn update(&self, connection: &str, object: &str, f: impl FnOnce(&mut MappingStatus)) {
        if let Some(s) = self
            .inner
            .write()
            .get_mut(&(connection.to_owned(), object.to_owned()))
        {
            f(s);
        }
    }

    pub fn snapshot(&self) -> Vec<MappingStatus> {
        self.inner.read().values().cloned().collect()
    }

    pub fn get(&self, connection: &str, object: &str) -> Option<MappingStatus> {
        self.inner
            .read()
            .get(&(connection.to_owned(), object.to_owned()))
            .cloned()
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct StatusDoc {
    pub workers: Vec<WorkerDoc>,
    pub mappings: Vec<MappingDoc>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct WorkerDoc {
    pub name: String,
    pub mappings: Vec<String>,
    pub last_heartbeat_ms_ago: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct MappingDoc {
    pub connection: String,
    pub object: String,
    pub state: String,
    pub worker: String,
    pub rows: i64,
    pub synced_through: Option<String>,
    pub primary: PrimaryDoc,
    pub secondary: SecondaryDoc,
    pub api_calls: i64,
    pub db_connections_in_use: u64,
    pub errors: i64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct PrimaryDoc {
    pub polls: i64,
    pub records: i64,
    pub bulk_jobs: i64,
    pub bulk_batches: i64,
    pub rest_queries: i64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SecondaryDoc {
    pub polls: i64,
    pub records: i64,
    pub drift_records: i64,
    pub bulk_jobs: i64,
    pub bulk_batches: i64,
    pub rest_queries: i64,
}

impl MappingStatus {
    pub fn to_doc(&self, db_connections_in_use: u64) -> MappingDoc {
        let c = &self.counters;
        MappingDoc {
            connection: self.connection.clone(),
            object: self.object.clone(),
            state: self.state.clone(),
            worker: self.worker.clone(),
            rows: self.rows,
            synced_through: self
                .synced_through
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            primary: PrimaryDoc {
                polls: c.primary_polls,
                records: c.primary_records,
                bulk_jobs: c.primary_bulk_jobs,
                bulk_batches: c.primary_bulk_batches,
                rest_queries: c.primary_rest_queries,
            },
            secondary: SecondaryDoc {
                polls: c.secondary_polls,
                records: c.secondary_records,
                drift_records: c.drift_records,
                bulk_jobs: c.secondary_bulk_jobs,
                bulk_batches: c.secondary_bulk_batches,
                rest_queries: c.secondary_rest_queries,
            },
            api_calls: c.api_calls,
            db_connections_in_use,
            errors: c.errors,
        }
    }
}

/// A metric's name, help text and value per mapping.
type Series = (&'static str, &'static str, fn(&MappingDoc) -> i64);

/// Prometheus text exposition of the same figures.
pub fn metrics_text(docs: &[MappingDoc]) -> String {
    let mut out = String::new();
    let series: [Series; 14] = [
        ("driftless_mapping_rows", "rows in the mapped table", |d| {
            d.rows
        }),
        (
            "driftless_primary_polls_total",
            "primary polls committed",
            |d| d.primary.polls,
        ),
        (
            "driftless_primary_records_total",
            "records read by primary polls and the initial load",
            |d| d.primary.records,
        ),
        (
            "driftless_primary_bulk_jobs_total",
            "bulk jobs of primary polls",
            |d| d.primary.bulk_jobs,
        ),
        (
            "driftless_primary_bulk_batches_total",
            "bulk batches of primary polls",
            |d| d.primary.bulk_batches,
        ),
        (
            "driftless_primary_rest_queries_total",
            "REST queries of primary polls",
            |d| d.primary.rest_queries,
        ),
        (
            "driftless_secondary_polls_total",
            "secondary polls committed",
            |d| d.secondary.polls,
        ),
        (
            "driftless_secondary_records_total",
            "records read by secondary polls",
            |d| d.secondary.records,
        ),
        (
            "driftless_drift_records_total",
            "records secondary polls or verify --repair found missing or stale",
            |d| d.secondary.drift_records,
        ),
        (
            "driftless_secondary_bulk_jobs_total",
            "bulk jobs of secondary polls",
            |d| d.secondary.bulk_jobs,
        ),
        (
            "driftless_secondary_bulk_batches_total",
            "bulk batches of secondary polls",
            |d| d.secondary.bulk_batches,
        ),
        ("driftless_api_calls_total", "Salesforce API calls", |d| {
            d.api_calls
        }),
        (
            "driftless_db_connections_in_use",
            "connections of the connection's pool in use",
            |d| d.db_connections_in_use as i64,
        ),
        ("driftless_errors_total", "failed polls", |d| d.errors),
    ];
    for (name, help, get) in series {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for d in docs {
            out.push_str(&format!(
                "{name}{{connection=\"{}\",object=\"{}\"}} {}\n",
                d.connection,
                d.object,
                get(d)
            ));
        }
    }
    out.push_str("# HELP driftless_mapping_synced_through_seconds end of the last committed primary window\n# TYPE driftless_mapping_synced_through_seconds gauge\n");
    for d in docs {
        if let Some(t) = d
            .synced_through
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            out.push_str(&format!(
                "driftless_mapping_synced_through_seconds{{connection=\"{}\",object=\"{}\"}} {}\n",
                d.connection,
                d.object,
                t.timestamp()
            ));
        }
    }
    out
}
