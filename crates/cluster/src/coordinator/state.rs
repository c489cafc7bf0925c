//! The active coordinator's state: the configured connections, the cluster store, the last stats
//! each worker reported, and the reconciliation that turns live workers into assignments.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::Pool;
use driftless_core::cluster::{
    assign, Assignment, ClusterStore, ConnectionMappings, StoredAssignment, WorkerSlot,
};
use driftless_core::config::Config;
use driftless_core::mapping::MappingFile;
use driftless_core::secret::Secret;
use driftless_node::status::{StatusDoc, WorkerDoc};
use driftless_proto::cluster::{ConnectionSpec, MappingStats};
use parking_lot::{Mutex, RwLock};

use crate::error::{ClusterError, Result};
use crate::spec::connection_specs;
use crate::stats;

/// A mapping handed to a worker that has not reported it yet.
pub const ASSIGNED: &str = "ASSIGNED";

/// Lease and heartbeat timing, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a worker keeps its mappings without a heartbeat.
    pub lease: Duration,
    /// How often workers are asked to heartbeat; well below the lease.
    pub heartbeat_interval: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(3),
        }
    }
}

pub struct Coordinator {
    pub(crate) config: Config,
    /// What each connection ships to its worker, and its mappings: both change on `ctl import`.
    pub(crate) specs: RwLock<BTreeMap<String, ConnectionSpec>>,
    pub(crate) mappings: RwLock<Vec<ConnectionMappings>>,
    pub(crate) store: ClusterStore,
    pub(crate) pool: Pool,
    pub(crate) timing: Timing,
    pub(crate) worker_token: Secret,
    pub(crate) admin_token: Option<Secret>,
    /// The last figures of each mapping, from the worker that ran it with its current epoch.
    /// Kept when the mapping moves or pauses: the counters are cumulative anyway.
    pub(crate) reports: Mutex<HashMap<(String, String), MappingStats>>,
    /// Worker id to name, filled by registrations and, after a restart, from the store.
    pub(crate) names: Mutex<HashMap<i64, String>>,
    reconcile_lock: tokio::sync::Mutex<()>,
    /// What the /status page and /metrics show beyond the status document (drift over time,
    /// pool sizes).
    pub(crate) telemetry: driftless_node::metrics::Telemetry,
}

impl Coordinator {
    pub(crate) fn new(config: Config, pool: Pool, timing: Timing) -> Result<Coordinator> {
        let worker_token = config
            .coordinator
            .effective_worker_token()
            .cloned()
            .ok_or_else(|| {
                ClusterError::Config(format!(
                    "{}: coordinator.admin_token (or worker_token, or DRIFTLESS_ADMIN_TOKEN) is \
                     required: workers must present a token",
                    config.path.display()
                ))
            })?;
        let telemetry = driftless_node::metrics::Telemetry::default();
        for c in &config.connections {
            telemetry.set_db_pool_size(&c.name, c.db_pool_size);
        }
        Ok(Coordinator {
            specs: RwLock::new(connection_specs(&config)?),
            mappings: RwLock::new(load_mappings(&config)?),
            admin_token: config.coordinator.admin_token.clone(),
            config,
            store: ClusterStore::default(),
            pool,
            timing,
            worker_token,
            reports: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            reconcile_lock: tokio::sync::Mutex::new(()),
            telemetry,
        })
    }

    /// Drops workers whose lease ran out, then makes the stored assignment the one `assign`
    /// computes for the live workers and the unpaused connections. Moves nothing when nothing
    /// changed (a restarted coordinator finds its own answer in the store).
    pub(crate) async fn reconcile(&self) -> Result<Vec<StoredAssignment>> {
        let _one_at_a_time = self.reconcile_lock.lock().await;
        let mut client = self.pool.get().await?;
        let expired = self.store.remove_expired_workers(&**client).await?;
        if !expired.is_empty() {
            tracing::warn!(workers = ?expired, "lease expired; their mappings move");
        }
        let live: Vec<WorkerSlot> = self
            .store
            .live_workers(&**client)
            .await?
            .into_iter()
            .map(|w| WorkerSlot {
                name: w.name,
                capacity: w.capacity,
            })
            .collect();
        let stored = self.store.load_assignments(&**client).await?;
        let current: Vec<Assignment> = stored.iter().map(StoredAssignment::assignment).collect();
        let paused: BTreeSet<String> = self
            .store
            .paused_connections(&**client)
            .await?
            .into_iter()
            .collect();
        let wanted: Vec<ConnectionMappings> = self
            .mappings
            .read()
            .iter()
            .filter(|c| !paused.contains(&c.connection))
            .cloned()
            .collect();
        let next = assign(&live, &wanted, &current);
        if next == current {
            return Ok(stored);
        }
        let client: &mut tokio_postgres::Client = &mut client;
        let now = self.store.persist_assignments(client, &next).await?;
        for a in &now {
            let before = stored
                .iter()
                .find(|s| s.connection == a.connection && s.object == a.object);
            if before.map(|b| &b.worker) != Some(&a.worker) {
                tracing::info!(connection = %a.connection, object = %a.object, worker = %a.worker,
                    owner_epoch = a.owner_epoch, from = ?before.map(|b| &b.worker), "mapping assigned");
            }
        }
        Ok(now)
    }

    /// Reads the mapping files again (after `ctl import` wrote one): new specs go out with the
    /// next heartbeats, and the assignment follows the new set of mappings.
    pub(crate) fn reload_mappings(&self) -> Result<()> {
        let specs = connection_specs(&self.config)?;
        let mappings = load_mappings(&self.config)?;
        *self.specs.write() = specs;
        *self.mappings.write() = mappings;
        Ok(())
    }

    /// Keeps what a worker reports for the mappings it holds with their current epochs; a report
    /// from a fenced incarnation is dropped.
    pub(crate) fn record(&self, held: &[StoredAssignment], reported: Vec<MappingStats>) {
        let mut reports = self.reports.lock();
        for m in reported {
            let current = held.iter().any(|a| {
                a.connection == m.connection
                    && a.object == m.object
                    && a.owner_epoch == m.owner_epoch
            });
            if current {
                reports.insert((m.connection.clone(), m.object.clone()), m);
            }
        }
    }

    /// The worker's name for an id, asking the store after a coordinator restart.
    pub(crate) async fn worker_name(&self, id: i64) -> Result<Option<String>> {
        if let Some(n) = self.names.lock().get(&id) {
            return Ok(Some(n.clone()));
        }
        let client = self.pool.get().await?;
        let found = self
            .store
            .workers(&**client)
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .map(|w| w.name);
        if let Some(n) = &found {
            self.names.lock().insert(id, n.clone());
        }
        Ok(found)
    }

    /// SPEC.md §6 status for the whole cluster: workers from the store, mappings as their workers
    /// last reported them (or a placeholder while nobody has).
    pub async fn status(&self) -> Result<StatusDoc> {
        let client = self.pool.get().await?;
        let workers = self.store.workers(&**client).await?;
        let assignments = self.store.load_assignments(&**client).await?;
        let paused: BTreeSet<String> = self
            .store
            .paused_connections(&**client)
            .await?
            .into_iter()
            .collect();
        drop(client);
        let reports = self.reports.lock();
        let now = Utc::now();
        let worker_docs = workers
            .iter()
            .map(|w| WorkerDoc {
                name: w.name.clone(),
                mappings: assignments
                    .iter()
                    .filter(|a| a.worker == w.name)
                    .map(|a| format!("{}/{}", a.connection, a.object))
                    .collect(),
                last_heartbeat_ms_ago: u64::try_from((now - w.last_heartbeat).num_milliseconds())
                    .unwrap_or(0),
            })
            .collect();
        let mut mapping_docs = Vec::new();
        for c in self.mappings.read().iter() {
            for object in &c.objects {
                let assigned = assignments
                    .iter()
                    .find(|a| a.connection == c.connection && &a.object == object);
                let worker = assigned.map(|a| a.worker.as_str()).unwrap_or("");
                let reported = reports.get(&(c.connection.clone(), object.clone()));
                let mut doc = match reported {
                    Some(s) => stats::from_wire(s, worker),
                    None => stats::placeholder(&c.connection, object, "INITIAL", worker),
                };
                // Figures from a previous owner are still the mapping's (they are cumulative),
                // but its state is not: the new owner has not reported yet.
                if let (Some(a), Some(r)) = (assigned, reported) {
                    if r.owner_epoch != a.owner_epoch {
                        doc.state = ASSIGNED.to_owned();
                    }
                }
                if paused.contains(&c.connection) {
                    doc.state = "PAUSED".to_owned();
                }
                if assigned.is_none() {
                    doc.db_connections_in_use = 0;
                }
                mapping_docs.push(doc);
            }
        }
        Ok(StatusDoc {
            workers: worker_docs,
            mappings: mapping_docs,
        })
    }
}

fn load_mappings(config: &Config) -> Result<Vec<ConnectionMappings>> {
    let mut out = Vec::new();
    for c in &config.connections {
        let file = MappingFile::load(&c.mappings)
            .map_err(|e| ClusterError::Config(format!("{}: {e}", c.mappings.display())))?;
        out.push(ConnectionMappings {
            connection: c.name.clone(),
            objects: file
                .mappings
                .iter()
                .map(|m| m.object_name.clone())
                .collect(),
        });
    }
    Ok(out)
}
