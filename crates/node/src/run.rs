//! `driftless run`: validate everything, then start one DbWriter and one SecondaryPollPool per
//! connection and one MappingPoller per mapping (the [`Engine`]), plus the admin endpoints.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use driftless_core::config::Config;
use driftless_core::mapping::MappingFile;

use crate::admin;
use crate::db_writer::DbWriter;
use crate::engine::{start_mapping, ConnectionRun, Engine, EngineState, StopAll};
use crate::error::{NodeError, Result};
use crate::secondary_pool::SecondaryPollPool;
use crate::status::{Registry, StatusDoc, StatusView};
use crate::validate::validate_file;
use crate::RunOptions;

/// A running engine. [`NodeHandle::stop`] ends it.
pub struct NodeHandle {
    view: StatusView,
    engine: Addr<Engine>,
    admin: Option<(SocketAddr, actix_web::dev::ServerHandle)>,
}

pub async fn run(config: Config, options: RunOptions) -> Result<NodeHandle> {
    let options = Arc::new(options);
    let mut validated = Vec::new();
    for conn in &config.connections {
        let file = MappingFile::load(&conn.mappings).map_err(NodeError::config_caused)?;
        let v = validate_file(conn, &file, &conn.mappings.display().to_string()).await?;
        validated.push((file, v));
    }
    let registry = Registry::default();
    let shared = Arc::new(EngineState {
        registry: registry.clone(),
        options: options.clone(),
        catalog: Default::default(),
        conns: Default::default(),
    });
    let mut writers = Vec::new();
    {
        let mut conns = shared.conns.lock().await;
        for (conn, (file, mappings)) in config.connections.iter().zip(validated) {
            let writes_back = file
                .mappings
                .iter()
                .any(|m| m.config.access == driftless_core::mapping::Access::ReadWrite);
            let db = if writes_back {
                DbWriter::with_listener_slot(conn, "sync", conn.db_pool_size)?
            } else {
                DbWriter::new(conn, "sync", conn.db_pool_size)?
            }
            .start();
            registry
                .telemetry()
                .set_db_pool_size(&conn.name, conn.db_pool_size);
            writers.push((conn.name.clone(), db.clone()));
            let notify = crate::notify::NotifyHub::new(conn, &db);
            let mut c = ConnectionRun {
                conn: conn.clone(),
                db,
                secondary: conn
                    .sync
                    .secondary_enabled
                    .then(|| SecondaryPollPool::start(conn.sync.secondary_concurrency)),
                paused: false,
                file,
                mappings: BTreeMap::new(),
                writeback: None,
                notify,
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
            config.coordinator.tls.as_ref(),
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

impl NodeHandle {
    pub async fn status(&self) -> StatusDoc {
        self.view.status().await
    }

    /// What `/metrics` shows beyond the status document (histograms, pool sizes, API usage).
    pub fn telemetry(&self) -> crate::metrics::TelemetrySnapshot {
        self.view.telemetry().snapshot()
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
            .map_err(crate::admin::AdminError::from)
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
