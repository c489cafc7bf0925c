//! The admin service of `driftless run`: this process's engine. Reads come from the status
//! registry and the engine's [`Catalog`]; commands go to the [`Engine`] actor.

use std::collections::HashMap;
use std::sync::Arc;

use actix::Addr;
use driftless_core::mapping::Access;
use driftless_proto::admin;

use super::service::{AdminBackend, Reply};
use super::{views, AdminError};
use crate::engine::{Catalog, Engine, Import, Pause, Reload, Resume};
use crate::status::MappingStatus;
use crate::status::StatusView;

#[derive(Clone)]
pub struct LocalBackend {
    inner: Arc<Inner>,
}

struct Inner {
    view: StatusView,
    catalog: Catalog,
    engine: Addr<Engine>,
}

impl LocalBackend {
    pub fn new(view: StatusView, catalog: Catalog, engine: Addr<Engine>) -> LocalBackend {
        LocalBackend {
            inner: Arc::new(Inner {
                view,
                catalog,
                engine,
            }),
        }
    }

    fn check_connection(&self, connection: Option<&str>) -> Result<(), AdminError> {
        match connection {
            Some(c) if !self.inner.catalog.read().contains_key(c) => {
                Err(AdminError::not_found(format!("no connection named {c:?}")))
            }
            _ => Ok(()),
        }
    }

    /// Mapping statuses, of one connection when given.
    fn statuses(&self, connection: Option<&str>) -> Result<Vec<MappingStatus>, AdminError> {
        self.check_connection(connection)?;
        Ok(self
            .inner
            .view
            .registry()
            .snapshot()
            .into_iter()
            .filter(|s| connection.is_none_or(|c| s.connection == c))
            .collect())
    }

    async fn with_pools(&self, statuses: &[MappingStatus]) -> Vec<admin::MappingStatus> {
        let in_use: HashMap<String, u32> = self.inner.view.pools_in_use().await;
        statuses
            .iter()
            .map(|s| {
                let writes = self.inner.view.registry().writes(&s.connection, &s.object);
                views::mapping_status(s, in_use.get(&s.connection).copied().unwrap_or(0), &writes)
            })
            .collect()
    }

    fn worker(&self) -> admin::WorkerStatus {
        let statuses = self.inner.view.registry().snapshot();
        admin::WorkerStatus {
            name: self.inner.view.worker().to_owned(),
            mappings: statuses
                .iter()
                .map(|s| format!("{}/{}", s.connection, s.object))
                .collect(),
            // The worker is this process: it is always current and never loses its lease.
            last_heartbeat_ms_ago: 0,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capacity: statuses.len() as u32,
            lease_expires_in_ms: i64::MAX,
        }
    }

    fn mapping_detail(&self, s: &MappingStatus, in_use: u32) -> admin::MappingDetail {
        let catalog = self.inner.catalog.read();
        let conn = catalog.get(&s.connection);
        let mapping = conn.and_then(|c| c.file.mapping(&s.object));
        admin::MappingDetail {
            status: Some(views::mapping_status(
                s,
                in_use,
                &self.inner.view.registry().writes(&s.connection, &s.object),
            )),
            access: match mapping.map(|m| m.config.access) {
                Some(Access::ReadWrite) => "read_write",
                _ => "read_only",
            }
            .to_owned(),
            sf_polling_seconds: mapping
                .and_then(|m| m.config.sf_polling_seconds)
                .or(conn.map(|c| c.poll_interval_secs))
                .unwrap_or_default() as u32,
            fields: mapping
                .map(|m| m.config.fields.keys().cloned().collect())
                .unwrap_or_default(),
            owner_epoch: conn
                .and_then(|c| c.epochs.get(&s.object).copied())
                .unwrap_or_default(),
            last_error: s.last_error.clone(),
        }
    }

    /// Failed write-back entries of each connection (`_trigger_log` and its archive), one entry
    /// per mapped table: how many failed, the newest failure and when.
    async fn failed_writebacks(
        &self,
        connection: Option<&str>,
    ) -> Result<Vec<admin::ErrorEntry>, AdminError> {
        let targets: Vec<(String, driftless_core::ident::Ident, Vec<String>)> = self
            .inner
            .catalog
            .read()
            .iter()
            .filter(|(name, _)| connection.is_none_or(|c| c == name.as_str()))
            // Only read_write mappings write back; a read-only connection may have no log.
            .filter(|(_, c)| {
                c.file
                    .mappings
                    .iter()
                    .any(|m| m.config.access == Access::ReadWrite)
            })
            .map(|(name, c)| {
                let objects = c.file.mappings.iter().map(|m| m.object_name.clone());
                (name.clone(), c.schema.clone(), objects.collect())
            })
            .collect();
        let mut out = Vec::new();
        for (name, schema, objects) in targets {
            let Some(writer) = self.inner.view.writer(&name) else {
                continue;
            };
            let failed = crate::writeback::failed_writes(&writer, &schema, FAILED_WRITES_SHOWN)
                .await
                .map_err(AdminError::from)?;
            out.extend(views::failed_write_entries(&name, &objects, &failed));
        }
        Ok(out)
    }
}

impl LocalBackend {
    /// Records Postgres refused, one entry per object with the newest one's error.
    async fn quarantined(
        &self,
        connection: Option<&str>,
    ) -> Result<Vec<admin::ErrorEntry>, AdminError> {
        let targets: Vec<(String, driftless_core::ident::Ident)> = self
            .inner
            .catalog
            .read()
            .iter()
            .filter(|(name, _)| connection.is_none_or(|c| c == name.as_str()))
            .map(|(name, c)| (name.clone(), c.schema.clone()))
            .collect();
        let mut out = Vec::new();
        for (name, schema) in targets {
            let Some(writer) = self.inner.view.writer(&name) else {
                continue;
            };
            let entries = writer
                .send(crate::db_writer::ListRejects {
                    schema,
                    connection: name.clone(),
                    limit: FAILED_WRITES_SHOWN,
                })
                .await??;
            out.extend(views::reject_entries(&name, &entries));
        }
        Ok(out)
    }
}

/// The newest failed writes read per connection for `ctl errors`.
const FAILED_WRITES_SHOWN: i64 = 1000;

fn ready<T: 'static>(r: Result<T, AdminError>) -> Reply<T> {
    Box::pin(std::future::ready(r))
}

impl AdminBackend for LocalBackend {
    fn status(&self) -> Reply<admin::StatusReply> {
        let this = self.clone();
        Box::pin(async move {
            let statuses = this.statuses(None)?;
            Ok(admin::StatusReply {
                workers: vec![this.worker()],
                mappings: this.with_pools(&statuses).await,
            })
        })
    }

    fn workers(&self) -> Reply<admin::WorkersReply> {
        ready(Ok(admin::WorkersReply {
            workers: vec![self.worker()],
        }))
    }

    fn mappings(&self, req: admin::MappingsRequest) -> Reply<admin::MappingsReply> {
        let this = self.clone();
        Box::pin(async move {
            let statuses = this.statuses(req.connection.as_deref())?;
            Ok(admin::MappingsReply {
                mappings: this.with_pools(&statuses).await,
            })
        })
    }

    fn mapping(&self, req: admin::MappingRequest) -> Reply<admin::MappingReply> {
        let this = self.clone();
        Box::pin(async move {
            let statuses: Vec<MappingStatus> = this
                .statuses(req.connection.as_deref())?
                .into_iter()
                .filter(|s| s.object.eq_ignore_ascii_case(&req.object))
                .collect();
            if statuses.is_empty() {
                return Err(AdminError::not_found(format!(
                    "no mapping of {:?}{}",
                    req.object,
                    req.connection
                        .map(|c| format!(" in connection {c:?}"))
                        .unwrap_or_default()
                )));
            }
            let in_use = this.inner.view.pools_in_use().await;
            Ok(admin::MappingReply {
                mappings: statuses
                    .iter()
                    .map(|s| {
                        this.mapping_detail(s, in_use.get(&s.connection).copied().unwrap_or(0))
                    })
                    .collect(),
            })
        })
    }

    fn pause(&self, req: admin::PauseRequest) -> Reply<admin::PauseReply> {
        let engine = self.inner.engine.clone();
        Box::pin(async move {
            let mappings = engine
                .send(Pause {
                    connection: req.connection,
                })
                .await??;
            Ok(admin::PauseReply { mappings })
        })
    }

    fn resume(&self, req: admin::ResumeRequest) -> Reply<admin::ResumeReply> {
        let engine = self.inner.engine.clone();
        Box::pin(async move {
            let mappings = engine
                .send(Resume {
                    connection: req.connection,
                })
                .await??;
            Ok(admin::ResumeReply { mappings })
        })
    }

    fn reload(&self, req: admin::ReloadRequest) -> Reply<admin::ReloadReply> {
        let engine = self.inner.engine.clone();
        Box::pin(async move {
            let state = engine
                .send(Reload {
                    connection: req.connection,
                    object: req.object,
                })
                .await??;
            Ok(admin::ReloadReply { state })
        })
    }

    fn export(&self, req: admin::ExportRequest) -> Reply<admin::ExportReply> {
        let catalog = self.inner.catalog.read();
        ready(match catalog.get(&req.connection) {
            Some(c) => Ok(admin::ExportReply {
                mappings_json: c.file.to_json(),
            }),
            None => Err(AdminError::not_found(format!(
                "no connection named {:?}",
                req.connection
            ))),
        })
    }

    fn import(&self, req: admin::ImportRequest) -> Reply<admin::ImportReply> {
        let engine = self.inner.engine.clone();
        Box::pin(async move {
            let out = engine
                .send(Import {
                    connection: req.connection,
                    contents: req.contents,
                    replace: req.replace,
                })
                .await??;
            Ok(admin::ImportReply {
                added: out.added,
                changed: out.changed,
                removed: out.removed,
            })
        })
    }

    fn drift(&self, req: admin::DriftRequest) -> Reply<admin::DriftReply> {
        ready(
            self.statuses(req.connection.as_deref())
                .map(|statuses| admin::DriftReply {
                    mappings: statuses.iter().map(views::drift_entry).collect(),
                }),
        )
    }

    fn errors(&self, req: admin::ErrorsRequest) -> Reply<admin::ErrorsReply> {
        let this = self.clone();
        Box::pin(async move {
            let connection = req.connection.as_deref();
            let statuses = this.statuses(connection)?;
            let mut errors: Vec<admin::ErrorEntry> =
                statuses.iter().filter_map(views::error_entry).collect();
            errors.extend(this.failed_writebacks(connection).await?);
            errors.extend(this.quarantined(connection).await?);
            Ok(admin::ErrorsReply { errors })
        })
    }
}
