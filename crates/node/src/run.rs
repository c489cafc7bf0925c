//! `driftless run`: validate everything, then start one DbWriter and one SecondaryPollPool per
//! connection and one MappingPoller per mapping, plus the admin endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use driftless_core::config::{Config, ConnectionConfig};
use driftless_core::describe::ObjectDescribe;
use driftless_core::mapping::{resolve, Mapping, MappingFile};
use driftless_core::state::MappingKey;

use crate::admin;
use crate::db_writer::{Claim, DbWriter, EnsureSchema, PoolInUse};
use crate::error::{NodeError, Result};
use crate::mapping_ctx::MappingCtx;
use crate::mapping_poller::MappingPoller;
use crate::secondary_pool::SecondaryPollPool;
use crate::sf;
use crate::status::{states, MappingStatus, Registry, StatusDoc, WorkerDoc};
use crate::RunOptions;

/// A running engine. [`NodeHandle::stop`] ends it.
pub struct NodeHandle {
    registry: Registry,
    writers: Vec<(String, Addr<DbWriter>)>,
    pollers: Vec<Addr<MappingPoller>>,
    stop: tokio::sync::watch::Sender<bool>,
    admin: Option<(SocketAddr, actix_web::dev::ServerHandle)>,
    worker: String,
}

/// Everything `run` checks before it starts anything: a mapping and its describe.
pub(crate) struct Validated {
    pub mapping: Mapping,
    pub describe: ObjectDescribe,
}

/// Loads the connection's mapping file and checks every mapping against the org's describe.
/// All problems are reported at once, as configuration errors.
pub(crate) async fn validate(conn: &ConnectionConfig) -> Result<Vec<Validated>> {
    let file = MappingFile::load(&conn.mappings).map_err(|e| NodeError::Config(e.to_string()))?;
    let client = sf::client(conn)?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for m in file.mappings {
        let d = match client.describe(&m.object_name).await {
            Ok(d) => d,
            Err(e) if e.kind() == salesforce::ErrorKind::NotFound => {
                errors.push(format!(
                    "{}: mapping {}: object_name: no such object in the Salesforce org",
                    conn.mappings.display(),
                    m.object_name
                ));
                continue;
            }
            Err(e) => return Err(startup_error(conn, e)),
        };
        let describe = sf::to_core(&d);
        if let Err(errs) = resolve(&m, &describe) {
            errors.extend(
                errs.into_iter()
                    .map(|e| format!("{}: {e}", conn.mappings.display())),
            );
            continue;
        }
        out.push(Validated {
            mapping: m,
            describe,
        });
    }
    if !errors.is_empty() {
        return Err(NodeError::Config(errors.join("\n")));
    }
    Ok(out)
}

/// Bad credentials or an unusable client setting are configuration errors, not runtime ones.
fn startup_error(conn: &ConnectionConfig, e: salesforce::Error) -> NodeError {
    match e.kind() {
        salesforce::ErrorKind::Authentication | salesforce::ErrorKind::Config => NodeError::Config(
            format!("connection {}: salesforce login failed: {e}", conn.name),
        ),
        _ => NodeError::Salesforce(e),
    }
}

pub async fn run(config: Config, options: RunOptions) -> Result<NodeHandle> {
    let options = Arc::new(options);
    let mut validated = Vec::new();
    for conn in &config.connections {
        validated.push(validate(conn).await?);
    }
    let registry = Registry::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    let mut pollers = Vec::new();
    for (conn, mappings) in config.connections.iter().zip(validated) {
        let writer = DbWriter::new(conn, "sync", conn.db_pool_size)?.start();
        writers.push((conn.name.clone(), writer.clone()));
        let secondary = conn
            .sync
            .secondary_enabled
            .then(|| SecondaryPollPool::new(conn.sync.secondary_concurrency).start());
        for v in mappings {
            let changes = writer
                .send(EnsureSchema {
                    schema: conn.schema.clone(),
                    mapping: v.mapping.clone(),
                    describe: v.describe.clone(),
                })
                .await??;
            for (col, have, want) in &changes.type_mismatches {
                tracing::warn!(object = %v.mapping.object_name, column = %col, have = %have, want = %want, "column type differs from the describe; left as is");
            }
            let key = MappingKey::new(&conn.schema, &conn.name, &v.mapping.object_name);
            let state = writer
                .send(Claim {
                    key: key.clone(),
                    owner: options.worker.clone(),
                })
                .await??;
            registry.insert(MappingStatus {
                connection: conn.name.clone(),
                object: v.mapping.object_name.clone(),
                state: state.state.clone(),
                worker: options.worker.clone(),
                rows: 0,
                synced_through: state.synced_through,
                counters: state.counters.clone(),
                last_error: state.last_error.clone(),
            });
            let needs_resync = state.initial_load_done
                && (!changes.added_fields.is_empty() || state.state == states::RESYNC);
            let ctx = Arc::new(MappingCtx::new(
                key,
                state.owner_epoch,
                Arc::new(changes.mapping),
                sf::client(conn)?,
                writer.clone(),
                registry.clone(),
                conn.sync.clone(),
                v.mapping
                    .config
                    .sf_polling_seconds
                    .unwrap_or(conn.sync.poll_interval_secs),
                v.mapping.config.sf_max_daily_api_calls,
                options.clone(),
                stop_rx.clone(),
            ));
            let synced_through = state
                .initial_load_done
                .then_some(state.synced_through)
                .flatten();
            pollers.push(
                MappingPoller::new(
                    ctx,
                    secondary.clone(),
                    synced_through,
                    state.state,
                    needs_resync,
                )
                .start(),
            );
        }
    }
    let mut handle = NodeHandle {
        registry,
        writers,
        pollers,
        stop: stop_tx,
        admin: None,
        worker: options.worker.clone(),
    };
    if options.serve_admin {
        let token = config
            .coordinator
            .admin_token
            .as_ref()
            .map(|t| t.expose().to_owned());
        let view = handle.view();
        match admin::serve(config.coordinator.listen, token, view) {
            Ok(server) => handle.admin = Some(server),
            Err(e) => {
                handle.stop_actors().await;
                return Err(e);
            }
        }
    }
    Ok(handle)
}

/// What the admin endpoints need to build status: cheap to clone, `Send`.
#[derive(Clone)]
pub struct StatusView {
    registry: Registry,
    writers: Vec<(String, Addr<DbWriter>)>,
    worker: String,
}

impl StatusView {
    pub async fn status(&self) -> StatusDoc {
        let mut in_use = std::collections::HashMap::new();
        for (name, w) in &self.writers {
            in_use.insert(name.clone(), w.send(PoolInUse).await.unwrap_or(0) as u64);
        }
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
                .map(|s| s.to_doc(in_use.get(&s.connection).copied().unwrap_or(0)))
                .collect(),
        }
    }
}

impl NodeHandle {
    fn view(&self) -> StatusView {
        StatusView {
            registry: self.registry.clone(),
            writers: self.writers.clone(),
            worker: self.worker.clone(),
        }
    }

    pub async fn status(&self) -> StatusDoc {
        self.view().status().await
    }

    /// Where the admin endpoints listen (the bound port when the config said port 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(a, _)| *a)
    }

    async fn stop_actors(&self) {
        let _ = self.stop.send(true);
        // Pollers finish their current step (a commit is never cut in half) and stop.
        for _ in 0..600 {
            if self.pollers.iter().all(|p| !p.connected()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (_, w) in &self.writers {
            let _ = w.send(crate::db_writer::Shutdown).await;
        }
    }

    pub async fn stop(self) {
        if let Some((_, server)) = &self.admin {
            server.stop(true).await;
        }
        self.stop_actors().await;
    }
}
