//! `driftless run`: validate everything, then start one DbWriter and one SecondaryPollPool per
//! connection and one MappingPoller per mapping (the [`Engine`]), plus the admin endpoints.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use driftless_core::config::{Config, ConnectionConfig};
use driftless_core::describe::ObjectDescribe;
use driftless_core::mapping::{resolve, Mapping, MappingFile};

use crate::admin;
use crate::db_writer::{DbWriter, PoolInUse};
use crate::engine::{start_mapping, ConnRt, Engine, Shared, StopAll};
use crate::error::{NodeError, Result};
use crate::secondary_pool::SecondaryPollPool;
use crate::sf;
use crate::status::{Registry, StatusDoc, WorkerDoc};
use crate::RunOptions;

/// A running engine. [`NodeHandle::stop`] ends it.
pub struct NodeHandle {
    view: StatusView,
    engine: Addr<Engine>,
    admin: Option<(SocketAddr, actix_web::dev::ServerHandle)>,
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
    validate_file(conn, &file, &conn.mappings.display().to_string()).await
}

/// Checks every mapping of `file` against the org's describe; errors start with `origin`.
pub(crate) async fn validate_file(
    conn: &ConnectionConfig,
    file: &MappingFile,
    origin: &str,
) -> Result<Vec<Validated>> {
    let client = sf::client(conn)?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for m in &file.mappings {
        let d = match client.describe(&m.object_name).await {
            Ok(d) => d,
            Err(e) if e.kind() == salesforce::ErrorKind::NotFound => {
                errors.push(format!(
                    "{origin}: mapping {}: object_name: no such object in the Salesforce org",
                    m.object_name
                ));
                continue;
            }
            Err(e) => return Err(startup_error(conn, e)),
        };
        let describe = sf::to_core(&d);
        if let Err(errs) = resolve(m, &describe) {
            errors.extend(errs.into_iter().map(|e| format!("{origin}: {e}")));
            continue;
        }
        out.push(Validated {
            mapping: m.clone(),
            describe,
        });
    }
    if !errors.is_empty() {
        return Err(NodeError::Config(errors.join("\n")));
    }
    Ok(out)
}

/// Checks a mappings file against the org's describe without starting anything (a cluster
/// coordinator validating `ctl import` before it changes a thing).
pub async fn check_mappings(
    conn: &ConnectionConfig,
    file: &MappingFile,
    origin: &str,
) -> Result<()> {
    validate_file(conn, file, origin).await.map(|_| ())
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
        let file =
            MappingFile::load(&conn.mappings).map_err(|e| NodeError::Config(e.to_string()))?;
        let v = validate_file(conn, &file, &conn.mappings.display().to_string()).await?;
        validated.push((file, v));
    }
    let registry = Registry::default();
    let shared = Arc::new(Shared {
        registry: registry.clone(),
        options: options.clone(),
        catalog: Default::default(),
        conns: Default::default(),
    });
    let mut writers = Vec::new();
    {
        let mut conns = shared.conns.lock().await;
        for (conn, (file, mappings)) in config.connections.iter().zip(validated) {
            let writer = DbWriter::new(conn, "sync", conn.db_pool_size)?.start();
            registry
                .telemetry()
                .set_db_pool_size(&conn.name, conn.db_pool_size);
            writers.push((conn.name.clone(), writer.clone()));
            let mut c = ConnRt {
                conn: conn.clone(),
                writer,
                secondary: conn
                    .sync
                    .secondary_enabled
                    .then(|| SecondaryPollPool::new(conn.sync.secondary_concurrency).start()),
                paused: false,
                file,
                mappings: BTreeMap::new(),
                writeback: None,
            };
            for v in mappings {
                let object = v.mapping.object_name.clone();
                let rt = start_mapping(&shared, &c, v).await?;
                c.mappings.insert(object, rt);
            }
            // A connection whose mappings were all left paused by an earlier process is paused.
            c.paused = !c.mappings.is_empty() && c.mappings.values().all(|m| !m.is_running());
            c.restart_writeback(&registry).await?;
            conns.insert(conn.name.clone(), c);
        }
        shared.publish(&conns);
    }
    let engine = Engine::new(shared.clone()).start();
    let view = StatusView {
        registry,
        writers,
        worker: options.worker.clone(),
    };
    let mut handle = NodeHandle {
        view: view.clone(),
        engine: engine.clone(),
        admin: None,
    };
    if options.serve_admin {
        let backend = admin::local::LocalBackend::new(view.clone(), shared.catalog.clone(), engine);
        match admin::serve(
            config.coordinator.listen,
            config.coordinator.admin_token.clone(),
            view,
            Arc::new(backend),
        ) {
            Ok(server) => handle.admin = Some(server),
            Err(e) => {
                let _ = handle.engine.send(StopAll).await;
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

impl NodeHandle {
    pub async fn status(&self) -> StatusDoc {
        self.view.status().await
    }

    /// Truncates the mapping's table and loads it again (`ctl reload`, also as a cluster
    /// worker asked by its coordinator); the new state.
    pub async fn reload(
        &self,
        connection: &str,
        object: &str,
    ) -> std::result::Result<String, crate::admin::AdminError> {
        self.engine
            .send(crate::engine::Reload {
                connection: connection.to_owned(),
                object: object.to_owned(),
            })
            .await
            .map_err(|e| crate::admin::AdminError::internal(e.to_string()))?
    }

    /// Where the admin endpoints listen (the bound port when the config said port 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(a, _)| *a)
    }

    /// Stops the admin endpoints, then every poller (each finishes its current step: a commit
    /// is never cut in half), then the writers.
    pub async fn stop(self) {
        if let Some((_, server)) = &self.admin {
            server.stop(true).await;
        }
        let _ = self.engine.send(StopAll).await;
    }
}
