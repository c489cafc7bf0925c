//! The mappings of a connection that take change events, and the one subscription serving them.

use std::collections::HashMap;
use std::sync::Arc;

use driftless_core::config::ConnectionConfig;
use parking_lot::{Mutex, RwLock};

use super::subscription::Subscription;
use crate::db_writer::DbWriter;
use crate::mapping_ctx::MappingCtx;
use crate::mapping_poller::WindowPollRequest;
use crate::shutdown::Running;

/// A mapping as the subscription serves it: its context (key, epoch, client, DbWriter) and the
/// wake-up of its poller.
#[derive(Clone)]
pub(crate) struct Target {
    pub ctx: Arc<MappingCtx>,
    pub wake: Arc<WindowPollRequest>,
}

/// By object name as change events spell it (`entityName`).
pub(crate) type Targets = Arc<RwLock<HashMap<String, Target>>>;

/// Per connection. The subscription starts with the first mapping that registers and runs
/// until [`NotifyHub::stop`]; mappings come and go (pause, reload, import) by their
/// [`Registration`].
pub(crate) struct NotifyHub {
    conn: ConnectionConfig,
    db: actix::Addr<DbWriter>,
    targets: Targets,
    task: Mutex<Option<Running>>,
}

/// Held by a running mapping; dropping it stops events reaching the mapping.
pub(crate) struct Registration {
    targets: Targets,
    object: String,
    epoch: i64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut targets = self.targets.write();
        // A restarted mapping may have registered again already, with a newer epoch.
        if targets
            .get(&self.object)
            .is_some_and(|t| t.ctx.epoch == self.epoch)
        {
            targets.remove(&self.object);
        }
    }
}

impl NotifyHub {
    pub fn new(conn: &ConnectionConfig, db: &actix::Addr<DbWriter>) -> NotifyHub {
        NotifyHub {
            conn: conn.clone(),
            db: db.clone(),
            targets: Targets::default(),
            task: Mutex::new(None),
        }
    }

    /// Routes the events of `ctx`'s object to it; starts the subscription if none runs.
    /// `notify_objects`: every mapping of the connection with notify on, whose stored replay
    /// ids decide where the stream resumes.
    pub fn register(
        &self,
        ctx: Arc<MappingCtx>,
        wake: Arc<WindowPollRequest>,
        notify_objects: Vec<String>,
    ) -> Registration {
        let object = ctx.object().to_owned();
        let epoch = ctx.epoch;
        self.targets
            .write()
            .insert(object.clone(), Target { ctx, wake });
        let mut task = self.task.lock();
        if task.as_ref().is_none_or(|t| t.is_finished()) {
            match crate::salesforce_client::client(&self.conn) {
                Ok(client) => {
                    let subscription = Subscription::new(
                        &self.conn,
                        client,
                        self.db.clone(),
                        self.targets.clone(),
                        notify_objects,
                    );
                    *task = Some(Running::spawn(move |stop| subscription.run(stop)));
                }
                Err(e) => {
                    tracing::error!(connection = %self.conn.name, error = %e, "cannot build a client for change events; polling only")
                }
            }
        }
        Registration {
            targets: self.targets.clone(),
            object,
            epoch,
        }
    }

    /// Ends the subscription (the batch under way is committed first).
    pub async fn stop(&self) {
        let task = self.task.lock().take();
        if let Some(task) = task {
            task.stop().await;
        }
    }
}
