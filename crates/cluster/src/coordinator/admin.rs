//! The admin messages (SPEC.md §6) answered for the whole cluster: reads from the state database
//! and the workers' last reports; pause and resume through the assignment (a paused connection is
//! assigned to nobody, so its worker stops it); import by rewriting the coordinator's mappings
//! file, which reaches the worker as new connection settings.

use std::sync::Arc;

use driftless_core::mapping::{Access, MappingFile};
use driftless_node::admin::service::{AdminBackend, Reply};
use driftless_node::admin::AdminError;
use driftless_proto::admin;
use driftless_proto::cluster::MappingStats;

use super::state::Coordinator;
use crate::error::ClusterError;

#[derive(Clone)]
pub struct ClusterBackend {
    pub(crate) coordinator: Arc<Coordinator>,
}

fn internal(e: ClusterError) -> AdminError {
    AdminError::internal(e.to_string())
}

fn wire_to_admin(s: &MappingStats, worker: Option<String>, state: &str) -> admin::MappingStatus {
    let p = s.primary.unwrap_or_default();
    let q = s.secondary.unwrap_or_default();
    admin::MappingStatus {
        connection: s.connection.clone(),
        object: s.object.clone(),
        state: state.to_owned(),
        worker,
        rows: s.rows,
        synced_through_ms: s.synced_through_ms,
        primary: Some(admin::PrimaryCounters {
            polls: p.polls,
            records: p.records,
            bulk_jobs: p.bulk_jobs,
            bulk_batches: p.bulk_batches,
            rest_queries: p.rest_queries,
        }),
        secondary: Some(admin::SecondaryCounters {
            polls: q.polls,
            records: q.records,
            drift_records: q.drift_records,
            bulk_jobs: q.bulk_jobs,
            bulk_batches: q.bulk_batches,
            rest_queries: q.rest_queries,
        }),
        api_calls: s.api_calls,
        db_connections_in_use: s.db_connections_in_use,
        errors: s.errors,
        writes: s.writes.as_ref().map(|w| admin::WriteCounters {
            pending: w.pending,
            sent: w.sent,
            failed: w.failed,
            merged: w.merged,
            mode: w.mode.clone(),
            path: w.path.clone(),
        }),
        last_error: s.last_error.clone(),
        notify: s.notify.as_ref().map(|n| admin::NotifyCounters {
            enabled: n.enabled,
            events: n.events,
            polls_triggered: n.polls_triggered,
            gaps: n.gaps,
            latency_p50_ms: n.latency_p50_ms,
            latency_p95_ms: n.latency_p95_ms,
            unavailable: n.unavailable.clone(),
        }),
        formula_refreshed: s.formula_refreshed,
        formula_notes: s.formula_notes.clone(),
    }
}

/// One mapping as the admin messages show it: its last report and its current owner.
struct Row {
    stats: MappingStats,
    worker: Option<String>,
    state: String,
    owner_epoch: i64,
}

impl ClusterBackend {
    fn check_connection(&self, connection: Option<&str>) -> Result<(), AdminError> {
        match connection {
            Some(c) if self.coordinator.config.connection(c).is_none() => {
                Err(AdminError::not_found(format!("no connection named {c:?}")))
            }
            _ => Ok(()),
        }
    }

    async fn rows(&self, connection: Option<&str>) -> Result<Vec<Row>, AdminError> {
        self.check_connection(connection)?;
        let doc = self.coordinator.status().await.map_err(internal)?;
        let client = self
            .coordinator
            .pool
            .get()
            .await
            .map_err(|e| internal(e.into()))?;
        let assignments = self
            .coordinator
            .store
            .load_assignments(&**client)
            .await
            .map_err(|e| internal(e.into()))?;
        let reports = self.coordinator.reports.lock();
        Ok(doc
            .mappings
            .into_iter()
            .filter(|m| connection.is_none_or(|c| m.connection == c))
            .map(|m| {
                let key = (m.connection.clone(), m.object.clone());
                let stats = reports.get(&key).cloned().unwrap_or_else(|| MappingStats {
                    connection: m.connection.clone(),
                    object: m.object.clone(),
                    ..Default::default()
                });
                let owner_epoch = assignments
                    .iter()
                    .find(|a| a.connection == m.connection && a.object == m.object)
                    .map_or(0, |a| a.owner_epoch);
                Row {
                    stats,
                    worker: (!m.worker.is_empty()).then(|| m.worker.clone()),
                    state: m.state,
                    owner_epoch,
                }
            })
            .collect())
    }

    async fn workers(&self) -> Result<Vec<admin::WorkerStatus>, AdminError> {
        let doc = self.coordinator.status().await.map_err(internal)?;
        let client = self
            .coordinator
            .pool
            .get()
            .await
            .map_err(|e| internal(e.into()))?;
        let records = self
            .coordinator
            .store
            .workers(&**client)
            .await
            .map_err(|e| internal(e.into()))?;
        let now = chrono::Utc::now();
        Ok(doc
            .workers
            .into_iter()
            .map(|w| {
                let rec = records.iter().find(|r| r.name == w.name);
                admin::WorkerStatus {
                    name: w.name,
                    mappings: w.mappings,
                    last_heartbeat_ms_ago: w.last_heartbeat_ms_ago,
                    version: rec.map(|r| r.version.clone()).unwrap_or_default(),
                    capacity: rec.map_or(0, |r| r.capacity),
                    lease_expires_in_ms: rec
                        .map_or(0, |r| (r.lease_expires - now).num_milliseconds()),
                }
            })
            .collect())
    }

    async fn set_paused(&self, connection: &str, paused: bool) -> Result<Vec<String>, AdminError> {
        self.check_connection(Some(connection))?;
        {
            let client = self
                .coordinator
                .pool
                .get()
                .await
                .map_err(|e| internal(e.into()))?;
            self.coordinator
                .store
                .set_paused(&**client, connection, paused)
                .await
                .map_err(|e| internal(e.into()))?;
        }
        self.coordinator.reconcile().await.map_err(internal)?;
        tracing::info!(
            connection,
            paused,
            "connection {}",
            if paused { "paused" } else { "resumed" }
        );
        Ok(self
            .coordinator
            .mappings
            .read()
            .iter()
            .filter(|c| c.connection == connection)
            .flat_map(|c| c.objects.iter().map(|o| format!("{connection}/{o}")))
            .collect())
    }

    fn file(&self, connection: &str) -> Result<(std::path::PathBuf, MappingFile), AdminError> {
        let conn = self
            .coordinator
            .config
            .connection(connection)
            .ok_or_else(|| AdminError::not_found(format!("no connection named {connection:?}")))?;
        let file = MappingFile::load(&conn.mappings)
            .map_err(|e| AdminError::internal(format!("{}: {e}", conn.mappings.display())))?;
        Ok((conn.mappings.clone(), file))
    }
}

impl AdminBackend for ClusterBackend {
    fn status(&self) -> Reply<admin::StatusReply> {
        let this = self.clone();
        Box::pin(async move {
            let rows = this.rows(None).await?;
            Ok(admin::StatusReply {
                workers: this.workers().await?,
                mappings: rows
                    .iter()
                    .map(|r| wire_to_admin(&r.stats, r.worker.clone(), &r.state))
                    .collect(),
            })
        })
    }

    fn workers(&self) -> Reply<admin::WorkersReply> {
        let this = self.clone();
        Box::pin(async move {
            Ok(admin::WorkersReply {
                workers: this.workers().await?,
            })
        })
    }

    fn mappings(&self, req: admin::MappingsRequest) -> Reply<admin::MappingsReply> {
        let this = self.clone();
        Box::pin(async move {
            let rows = this.rows(req.connection.as_deref()).await?;
            Ok(admin::MappingsReply {
                mappings: rows
                    .iter()
                    .map(|r| wire_to_admin(&r.stats, r.worker.clone(), &r.state))
                    .collect(),
            })
        })
    }

    fn mapping(&self, req: admin::MappingRequest) -> Reply<admin::MappingReply> {
        let this = self.clone();
        Box::pin(async move {
            let rows: Vec<Row> = this
                .rows(req.connection.as_deref())
                .await?
                .into_iter()
                .filter(|r| r.stats.object.eq_ignore_ascii_case(&req.object))
                .collect();
            if rows.is_empty() {
                return Err(AdminError::not_found(format!(
                    "no mapping of {:?}",
                    req.object
                )));
            }
            let mut out = Vec::new();
            for r in rows {
                let (_, file) = this.file(&r.stats.connection)?;
                let conn = this.coordinator.config.connection(&r.stats.connection);
                let m = file.mapping(&r.stats.object);
                out.push(admin::MappingDetail {
                    status: Some(wire_to_admin(&r.stats, r.worker.clone(), &r.state)),
                    access: match m.map(|m| m.config.access) {
                        Some(Access::ReadWrite) => "read_write",
                        _ => "read_only",
                    }
                    .to_owned(),
                    sf_polling_seconds: m
                        .and_then(|m| m.config.sf_polling_seconds)
                        .or(conn.map(|c| c.sync.poll_interval_secs))
                        .unwrap_or_default() as u32,
                    fields: m
                        .map(|m| m.config.fields.keys().cloned().collect())
                        .unwrap_or_default(),
                    owner_epoch: r.owner_epoch,
                    last_error: r.stats.last_error.clone(),
                });
            }
            Ok(admin::MappingReply { mappings: out })
        })
    }

    fn pause(&self, req: admin::PauseRequest) -> Reply<admin::PauseReply> {
        let this = self.clone();
        Box::pin(async move {
            Ok(admin::PauseReply {
                mappings: this.set_paused(&req.connection, true).await?,
            })
        })
    }

    fn resume(&self, req: admin::ResumeRequest) -> Reply<admin::ResumeReply> {
        let this = self.clone();
        Box::pin(async move {
            Ok(admin::ResumeReply {
                mappings: this.set_paused(&req.connection, false).await?,
            })
        })
    }

    fn reload(&self, req: admin::ReloadRequest) -> Reply<admin::ReloadReply> {
        let this = self.clone();
        Box::pin(async move {
            this.check_connection(Some(&req.connection))?;
            let client = this
                .coordinator
                .pool
                .get()
                .await
                .map_err(|e| internal(e.into()))?;
            let requested = this
                .coordinator
                .store
                .request_reload(&**client, &req.connection, &req.object)
                .await
                .map_err(|e| internal(e.into()))?;
            match requested {
                Some(_) => Ok(admin::ReloadReply {
                    state: "RELOAD_TABLE".to_owned(),
                }),
                None => Err(AdminError::failed_precondition(format!(
                    "{}/{} is not running on any worker (unknown, or its connection is paused)",
                    req.connection, req.object
                ))),
            }
        })
    }

    fn export(&self, req: admin::ExportRequest) -> Reply<admin::ExportReply> {
        let r = self.file(&req.connection).map(|(_, f)| admin::ExportReply {
            mappings_json: f.to_json(),
        });
        Box::pin(std::future::ready(r))
    }

    fn import(&self, req: admin::ImportRequest) -> Reply<admin::ImportReply> {
        let this = self.clone();
        Box::pin(async move {
            let (path, old) = this.file(&req.connection)?;
            let text = String::from_utf8(req.contents)
                .map_err(|_| AdminError::invalid("the import file is not UTF-8"))?;
            let incoming = MappingFile::parse(&text)
                .map_err(|e| AdminError::invalid(format!("import file: {e}")))?;
            let conn = this
                .coordinator
                .config
                .connection(&req.connection)
                .expect("checked by file()")
                .clone();
            // Checked against the org's describe before anything changes, as at startup.
            driftless_node::check_mappings(&conn, &incoming, "import file")
                .await
                .map_err(AdminError::from)?;
            let next = if req.replace {
                incoming
            } else {
                let mut merged = old.clone();
                merged.merge(incoming);
                merged
            };
            let outcome = driftless_node::engine::diff(&old, &next);
            if !outcome.is_empty() {
                driftless_node::engine::write_atomically(&path, &next.to_json())
                    .map_err(|e| AdminError::internal(format!("{}: {e}", path.display())))?;
                this.coordinator.reload_mappings().map_err(internal)?;
                this.coordinator.reconcile().await.map_err(internal)?;
            }
            Ok(admin::ImportReply {
                added: outcome.added,
                changed: outcome.changed,
                removed: outcome.removed,
            })
        })
    }

    fn drift(&self, req: admin::DriftRequest) -> Reply<admin::DriftReply> {
        let this = self.clone();
        Box::pin(async move {
            let rows = this.rows(req.connection.as_deref()).await?;
            Ok(admin::DriftReply {
                mappings: rows
                    .iter()
                    .map(|r| {
                        let q = r.stats.secondary.unwrap_or_default();
                        admin::DriftEntry {
                            connection: r.stats.connection.clone(),
                            object: r.stats.object.clone(),
                            drift_records: q.drift_records,
                            secondary_polls: q.polls,
                            secondary_records: q.records,
                        }
                    })
                    .collect(),
            })
        })
    }

    fn errors(&self, req: admin::ErrorsRequest) -> Reply<admin::ErrorsReply> {
        let this = self.clone();
        Box::pin(async move {
            let rows = this.rows(req.connection.as_deref()).await?;
            Ok(admin::ErrorsReply {
                errors: rows
                    .iter()
                    .filter(|r| r.stats.errors > 0 || r.stats.last_error.is_some())
                    .map(|r| admin::ErrorEntry {
                        connection: r.stats.connection.clone(),
                        object: r.stats.object.clone(),
                        count: r.stats.errors,
                        last_error: r.stats.last_error.clone(),
                        at_ms: None,
                    })
                    .collect(),
            })
        })
    }
}
