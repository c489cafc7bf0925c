//! What `ctl status` shows (SPEC.md §6), kept in memory by the actors as they commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use driftless_core::state::Counters;
use parking_lot::RwLock;
use serde::Serialize;

use actix::Addr;
use std::collections::HashMap;

use crate::db_writer::{DbWriter, PoolInUse};

/// A mapping's state, with Heroku Connect's names (reference/heroku-connect.md §5.1). Rendered as
/// those names only at the edges: the bookkeeping row, status documents and metrics labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SyncState {
    #[default]
    Initial,
    DataSynced,
    PollingSfChanges,
    PollingSfBulk,
    Resync,
    SystemError,
    Aborted,
    ReloadTable,
    /// The connection is paused (`ctl pause`); persisted, so a restart stays paused.
    Paused,
}

impl SyncState {
    pub const ALL: [SyncState; 9] = [
        SyncState::Initial,
        SyncState::DataSynced,
        SyncState::PollingSfChanges,
        SyncState::PollingSfBulk,
        SyncState::Resync,
        SyncState::SystemError,
        SyncState::Aborted,
        SyncState::ReloadTable,
        SyncState::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Initial => "INITIAL",
            SyncState::DataSynced => "DATA_SYNCED",
            SyncState::PollingSfChanges => "POLLING_SF_CHANGES",
            SyncState::PollingSfBulk => "POLLING_SF_BULK",
            SyncState::Resync => "RESYNC",
            SyncState::SystemError => "SYSTEM_ERROR",
            SyncState::Aborted => "ABORTED",
            SyncState::ReloadTable => "RELOAD_TABLE",
            SyncState::Paused => "PAUSED",
        }
    }

    /// The state a bookkeeping row names; `None` for a name this engine never writes.
    pub fn from_name(name: &str) -> Option<SyncState> {
        SyncState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The state a stored row says, read as INITIAL when it names none of ours (an older
    /// engine's): the poller then writes its real state at its first step.
    pub fn from_row(name: &str) -> SyncState {
        SyncState::from_name(name).unwrap_or_default()
    }
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub struct MappingStatus {
    pub connection: String,
    pub object: String,
    pub state: SyncState,
    pub worker: String,
    pub rows: i64,
    pub synced_through: Option<DateTime<Utc>>,
    pub counters: Counters,
    pub last_error: Option<String>,
    /// When `last_error` happened in this process (`ctl errors`).
    pub last_error_at: Option<DateTime<Utc>>,
    /// Formula fields refreshed on the timer only, each `Field: reason` (`ctl mapping`).
    pub formula_notes: Vec<String>,
    /// Accelerated polling (`sf_notify_enabled`) in this process.
    pub notify: NotifyCounters,
}

/// What change events did for a mapping since this process started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyCounters {
    pub enabled: bool,
    /// Change events of the mapping's object received.
    pub events: i64,
    /// Reads the events caused: fetches of their records, and window polls started early.
    pub polls_triggered: i64,
    /// Gap events (ids without data) and overflow events (no ids).
    pub gaps: i64,
    pub overflows: i64,
    /// Subscription problems that leave the mapping to its interval polls (no topic, refused).
    pub unavailable: Option<String>,
    /// Commit in Salesforce to commit in Postgres, of the records events made us fetch.
    pub latency: RecentLatencies,
}

/// How many of the latest latencies the quantiles are taken over.
const RECENT_LATENCIES: usize = 1024;

/// The latest change-event latencies, in milliseconds: p50 and p95 of what is happening now,
/// which a cumulative histogram blurs after a long run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentLatencies {
    samples: std::collections::VecDeque<u32>,
}

impl RecentLatencies {
    pub fn push(&mut self, ms: u32) {
        if self.samples.len() == RECENT_LATENCIES {
            self.samples.pop_front();
        }
        self.samples.push_back(ms);
    }

    /// Nearest-rank quantile (`q` in 0..=1); None before the first sample.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<u32> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(u64::from(sorted[rank - 1]))
    }
}

/// EngineState by every actor of a process; cheap to clone.
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

    /// New counts and mode; the path stays what [`Registry::set_write_path`] last said.
    pub fn set_writes(&self, connection: &str, object: &str, writes: WritesDoc) {
        let mut all = self.writes.write();
        let doc = all
            .entry((connection.to_owned(), object.to_owned()))
            .or_default();
        *doc = WritesDoc {
            path: doc.path,
            ..writes
        };
    }

    pub fn set_write_path(&self, connection: &str, object: &str, path: WritePath) {
        self.writes
            .write()
            .entry((connection.to_owned(), object.to_owned()))
            .or_default()
            .path = path;
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
    /// Rows whose formula columns a formula refresh changed (drift no SystemModstamp shows).
    #[serde(default)]
    pub formula_refreshed: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub formula_notes: Vec<String>,
    /// Accelerated polling over change events (SPEC.md §6).
    #[serde(default)]
    pub notify: NotifyDoc,
}

/// The `notify` block of a mapping's status (SPEC.md §6), with the latest latencies and why
/// events are not coming, when they are not.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct NotifyDoc {
    pub enabled: bool,
    pub events: i64,
    pub polls_triggered: i64,
    pub gaps: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p50_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p95_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// Trigger-log entries of one mapping's table: `pending` not yet accepted by Salesforce (NEW and
/// PENDING), `sent` accepted, `failed` rejected, `merged` folded into another entry's write;
/// live log and archive together. `mode` is the connection's `write_mode`, `path` how the last
/// batch went (composite calls or a Bulk API 2.0 job).
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct WritesDoc {
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
    #[serde(default)]
    pub merged: i64,
    #[serde(default)]
    pub mode: WriteModeDoc,
    #[serde(default)]
    pub path: WritePath,
}

/// `connection.sync.write_mode` as status documents show it.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WriteModeDoc {
    #[default]
    Merged,
    Ordered,
}

impl WriteModeDoc {
    pub fn parse(s: &str) -> Option<WriteModeDoc> {
        match s {
            "merged" => Some(WriteModeDoc::Merged),
            "ordered" => Some(WriteModeDoc::Ordered),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WriteModeDoc::Merged => "merged",
            WriteModeDoc::Ordered => "ordered",
        }
    }
}

impl From<driftless_core::writeback::WriteMode> for WriteModeDoc {
    fn from(m: driftless_core::writeback::WriteMode) -> WriteModeDoc {
        match m {
            driftless_core::writeback::WriteMode::Merged => WriteModeDoc::Merged,
            driftless_core::writeback::WriteMode::Ordered => WriteModeDoc::Ordered,
        }
    }
}

/// How write-back sent a mapping's last batch.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WritePath {
    #[default]
    Composite,
    Bulk,
}

impl WritePath {
    pub fn parse(s: &str) -> Option<WritePath> {
        match s {
            "composite" => Some(WritePath::Composite),
            "bulk" => Some(WritePath::Bulk),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WritePath::Composite => "composite",
            WritePath::Bulk => "bulk",
        }
    }
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
            state: self.state.as_str().to_owned(),
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
            notify: NotifyDoc {
                enabled: self.notify.enabled,
                events: self.notify.events,
                polls_triggered: self.notify.polls_triggered,
                gaps: self.notify.gaps + self.notify.overflows,
                latency_p50_ms: self.notify.latency.quantile(0.5),
                latency_p95_ms: self.notify.latency.quantile(0.95),
                unavailable: self.notify.unavailable.clone(),
            },
            formula_refreshed: c.formula_refreshed,
            formula_notes: self.formula_notes.clone(),
        }
    }
}

/// What the admin endpoints need to build status: cheap to clone, `Send`.
#[derive(Clone)]
pub struct StatusView {
    pub(crate) registry: Registry,
    pub(crate) writers: Vec<(String, Addr<DbWriter>)>,
    pub(crate) worker: String,
}

impl StatusView {
    /// What metrics and the dashboard show beyond the status document.
    pub fn telemetry(&self) -> &crate::metrics::Telemetry {
        self.registry.telemetry()
    }

    pub async fn status(&self) -> StatusDoc {
        let in_use = self.pools_in_use().await;
        let statuses = self.registry.snapshot();
        StatusDoc {
            workers: vec![WorkerDoc {
                name: self.worker.clone(),
                mappings: statuses
                    .iter()
                    .map(|s| format!("{}/{}", s.connection, s.object))
                    .collect(),
                last_heartbeat_ms_ago: 0,
            }],
            mappings: statuses
                .iter()
                .map(|s| {
                    let in_use = in_use.get(&s.connection).copied().unwrap_or(0) as u64;
                    self.registry.doc(s, in_use)
                })
                .collect(),
        }
    }

    /// Connections each connection's pool has handed out, by connection name.
    pub async fn pools_in_use(&self) -> HashMap<String, u32> {
        let mut in_use = HashMap::new();
        for (name, w) in &self.writers {
            in_use.insert(name.clone(), w.send(PoolInUse).await.unwrap_or(0) as u32);
        }
        in_use
    }

    /// The connection's DbWriter, for reads outside the data path (`ctl errors`).
    pub fn writer(&self, connection: &str) -> Option<Addr<DbWriter>> {
        self.writers
            .iter()
            .find(|(name, _)| name == connection)
            .map(|(_, w)| w.clone())
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }
}

/// Moved to [`crate::metrics`]; kept here for callers that render metrics from a status alone.
pub use crate::metrics::metrics_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_render_as_heroku_connect_names_and_read_back() {
        for s in SyncState::ALL {
            assert_eq!(SyncState::from_name(s.as_str()), Some(s));
        }
        assert_eq!(SyncState::DataSynced.to_string(), "DATA_SYNCED");
        assert_eq!(SyncState::from_name("SOMETHING_ELSE"), None);
        assert_eq!(SyncState::from_row("SOMETHING_ELSE"), SyncState::Initial);
    }
}
