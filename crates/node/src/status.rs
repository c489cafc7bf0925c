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
    pub const RELOAD_TABLE: &str = "RELOAD_TABLE";
    /// The connection is paused (`ctl pause`); persisted, so a restart stays paused.
    pub const PAUSED: &str = "PAUSED";
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
    /// When `last_error` happened in this process (`ctl errors`).
    pub last_error_at: Option<DateTime<Utc>>,
}

/// Shared by every actor of a process; cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<BTreeMap<(String, String), MappingStatus>>>,
    telemetry: crate::metrics::Telemetry,
    /// Write-back counts by (connection, object), refreshed by the WriteBack actor so a status
    /// request never queries the customer's database.
    writes: Arc<RwLock<BTreeMap<(String, String), WritesDoc>>>,
}

impl Registry {
    pub fn insert(&self, status: MappingStatus) {
        self.inner
            .write()
            .insert((status.connection.clone(), status.object.clone()), status);
    }

    pub fn update(&self, connection: &str, object: &str, f: impl FnOnce(&mut MappingStatus)) {
        let mut inner = self.inner.write();
        if let Some(s) = inner.get_mut(&(connection.to_owned(), object.to_owned())) {
            f(s);
            // Drift only changes here, so sampling on update is the dashboard's whole history.
            let drift = inner.values().map(|s| s.counters.drift_records).sum();
            self.telemetry.sample_drift(drift);
        }
    }

    /// Poll durations, pool sizes, API usage and drift history (metrics and dashboard).
    pub fn telemetry(&self) -> &crate::metrics::Telemetry {
        &self.telemetry
    }

    pub fn set_writes(&self, connection: &str, object: &str, writes: WritesDoc) {
        self.writes
            .write()
            .insert((connection.to_owned(), object.to_owned()), writes);
    }

    /// Zeros for a mapping without write-back (read_only, or not counted yet).
    pub fn writes(&self, connection: &str, object: &str) -> WritesDoc {
        self.writes
            .read()
            .get(&(connection.to_owned(), object.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// `s.to_doc` plus the mapping's write-back counts.
    pub fn doc(&self, s: &MappingStatus, db_connections_in_use: u64) -> MappingDoc {
        let mut doc = s.to_doc(db_connections_in_use);
        doc.writes = self.writes(&s.connection, &s.object);
        doc
    }

    pub fn remove(&self, connection: &str, object: &str) {
        self.inner
            .write()
            .remove(&(connection.to_owned(), object.to_owned()));
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
    /// Write-back (Postgres → Salesforce) of a read_write mapping; zeros otherwise.
    #[serde(default)]
    pub writes: WritesDoc,
}

/// Trigger-log entries of one mapping's table: `pending` not yet accepted by Salesforce (NEW and
/// PENDING), `sent` accepted, `failed` rejected; live log and archive together.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct WritesDoc {
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
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
            writes: WritesDoc::default(),
        }
    }
}

/// Moved to [`crate::metrics`]; kept here for callers that render metrics from a status alone.
pub use crate::metrics::metrics_text;
