//! What a worker runs: one engine (`driftless_node::run`) per assigned connection, restarted when
//! the connection's settings or any of its owner epochs change.
//!
//! A whole connection is the unit because the coordinator places whole connections (its pool's
//! `db_pool_size` must hold cluster-wide), and because restarting it is how a worker takes on new
//! epochs: every mapping is claimed again with the coordinator's epoch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use driftless_core::config::{Config, CoordinatorConfig};
use driftless_node::SyncState;
use driftless_node::{NodeHandle, RunOptions};
use driftless_proto::cluster::{Assignment, ConnectionSpec, MappingStats};

use super::WorkerOptions;
use crate::error::{ClusterError, Result};
use crate::spec::materialize;
use crate::stats;

struct Running {
    handle: NodeHandle,
    fingerprint: String,
    epochs: BTreeMap<String, i64>,
    /// The reload counter of each mapping as last seen: growth means `ctl reload`.
    reloads: BTreeMap<String, i64>,
}

/// A connection that failed to start: shown in stats, retried with backoff.
struct Failed {
    error: String,
    epochs: BTreeMap<String, i64>,
    retry_at: Instant,
    /// Failed starts in a row before this one.
    failures: u32,
}

/// Delays between attempts to start a connection: 1 s, 2 s, 4 s... up to a minute.
const RESTART_BACKOFF: salesforce::Backoff = salesforce::Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(60),
    max_attempts: u32::MAX,
};

pub struct Runtime {
    options: WorkerOptions,
    running: BTreeMap<String, Running>,
    failed: BTreeMap<String, Failed>,
}

impl Runtime {
    pub(super) fn start(options: &WorkerOptions) -> Result<Runtime> {
        std::fs::create_dir_all(&options.dir).map_err(|e| {
            ClusterError::Config(format!("worker directory {}: {e}", options.dir.display()))
        })?;
        Ok(Runtime {
            options: options.clone(),
            running: BTreeMap::new(),
            failed: BTreeMap::new(),
        })
    }

    pub fn is_running(&self) -> bool {
        !self.running.is_empty()
    }

    /// Makes what runs match the coordinator's list: stops connections that are gone or changed,
    /// starts the new ones.
    pub async fn apply(&mut self, assignments: &[Assignment], specs: &[ConnectionSpec]) {
        let mut wanted: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for a in assignments {
            wanted
                .entry(a.connection.clone())
                .or_default()
                .insert(a.object.clone(), a.owner_epoch);
        }
        self.reload_requested(assignments).await;
        let spec_of = |name: &str| specs.iter().find(|s| s.name == name);
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| {
                wanted.get(*name) != Some(&r.epochs)
                    || spec_of(name).map(|s| &s.fingerprint) != Some(&r.fingerprint)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            let r = self.running.remove(&name).expect("listed above");
            tracing::info!(connection = %name, "stopping connection (moved, paused or changed)");
            r.handle.stop().await;
        }
        self.failed
            .retain(|name, f| wanted.get(name) == Some(&f.epochs));
        for (name, epochs) in wanted {
            if self.running.contains_key(&name) {
                continue;
            }
            if self
                .failed
                .get(&name)
                .is_some_and(|f| Instant::now() < f.retry_at)
            {
                continue;
            }
            let Some(spec) = spec_of(&name) else {
                tracing::warn!(connection = %name, "assigned without settings; waiting for them");
                continue;
            };
            match self.launch(spec, &epochs).await {
                Ok(handle) => {
                    tracing::info!(connection = %name, mappings = epochs.len(), "connection started");
                    self.failed.remove(&name);
                    self.running.insert(
                        name.clone(),
                        Running {
                            handle,
                            fingerprint: spec.fingerprint.clone(),
                            epochs,
                            reloads: assignments
                                .iter()
                                .filter(|a| a.connection == name)
                                .map(|a| (a.object.clone(), a.reload_requested))
                                .collect(),
                        },
                    );
                }
                Err(e) => {
                    let failures = self.failed.get(&name).map_or(0, |f| f.failures + 1);
                    let backoff = RESTART_BACKOFF.ceiling(failures);
                    tracing::error!(connection = %name, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot start connection");
                    self.failed.insert(
                        name,
                        Failed {
                            error: e.to_string(),
                            epochs,
                            retry_at: Instant::now() + backoff,
                            failures,
                        },
                    );
                }
            }
        }
    }

    /// Reloads every running mapping whose reload counter grew since the last heartbeat.
    async fn reload_requested(&mut self, assignments: &[Assignment]) {
        for a in assignments {
            let Some(r) = self.running.get_mut(&a.connection) else {
                continue;
            };
            let seen = r.reloads.insert(a.object.clone(), a.reload_requested);
            if seen.is_some_and(|s| a.reload_requested > s) {
                match r.handle.reload(&a.connection, &a.object).await {
                    Ok(state) => {
                        tracing::info!(connection = %a.connection, object = %a.object, state, "reload requested by the coordinator")
                    }
                    Err(e) => {
                        tracing::error!(connection = %a.connection, object = %a.object, error = %e, "reload failed")
                    }
                }
            }
        }
    }

    async fn launch(
        &self,
        spec: &ConnectionSpec,
        epochs: &BTreeMap<String, i64>,
    ) -> Result<NodeHandle> {
        let conn = materialize(spec, &self.options.dir)?;
        let config = Config {
            path: self.options.dir.join(&spec.name).join("driftless.toml"),
            coordinator: CoordinatorConfig {
                listen: "127.0.0.1:0".parse().expect("valid address"),
                admin_token: None,
                worker_token: None,
                state_database_url: None,
                tls: None,
            },
            connections: vec![conn],
        };
        let options = RunOptions {
            worker: self.options.name.clone(),
            serve_admin: false,
            assigned_epochs: epochs
                .iter()
                .map(|(o, e)| ((spec.name.clone(), o.clone()), *e))
                .collect(),
            ..self.options.run.clone()
        };
        Ok(driftless_node::run(config, options).await?)
    }

    /// Every mapping this worker runs (or failed to start), for the heartbeat.
    pub async fn stats(&self) -> Vec<MappingStats> {
        let mut out = Vec::new();
        for r in self.running.values() {
            for doc in r.handle.status().await.mappings {
                let epoch = r.epochs.get(&doc.object).copied().unwrap_or(0);
                out.push(stats::to_wire(&doc, epoch, None));
            }
        }
        for (name, f) in &self.failed {
            for (object, epoch) in &f.epochs {
                let mut doc = stats::placeholder(
                    name,
                    object,
                    SyncState::SystemError.as_str(),
                    &self.options.name,
                );
                doc.errors = 1;
                out.push(stats::to_wire(&doc, *epoch, Some(f.error.clone())));
            }
        }
        out
    }

    /// Stops every connection (lease lost or ran out, or shutdown); each poller finishes its
    /// current step first.
    pub async fn stop_all(&mut self) {
        for (name, r) in std::mem::take(&mut self.running) {
            tracing::info!(connection = %name, "stopping connection");
            r.handle.stop().await;
        }
        self.failed.clear();
    }
}
