//! The engine of one process: per connection its DbWriter, SecondaryPollPool and one poller per
//! mapping, and the commands that change what runs (pause, resume, reload, import, stop).
//!
//! Commands are messages to the [`Engine`] actor so that the pollers they start live on the
//! process's main arbiter whichever thread asked (the admin server runs threads of its own). One
//! command runs at a time (the `conns` mutex is held for the whole command): a pause and an
//! import of the same connection must never interleave. What readers need is published to a
//! [`Catalog`] after each command, so status and export never wait for a slow pause.

mod commands;
mod error;
mod import;
mod launch;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::db_writer::DbWriter;
use crate::secondary_pool::SecondaryPollPool;
use crate::shutdown::Running;
use crate::status::Registry;
use crate::writeback::WriteBack;
use crate::RunOptions;
use actix::prelude::*;
use driftless_core::config::ConnectionConfig;
use driftless_core::mapping::{Mapping, MappingFile, ResolvedMapping};
use driftless_core::state::MappingKey;
use parking_lot::RwLock;

pub use error::CommandError;
pub use import::{diff, write_atomically, ImportOutcome};
pub(crate) use launch::start_mapping;

/// One mapping as the engine runs it.
pub(crate) struct MappingRun {
    pub mapping: Mapping,
    pub resolved: Arc<ResolvedMapping>,
    pub key: MappingKey,
    pub epoch: i64,
    /// Columns were added while the connection was paused: the backfill runs on resume.
    pub pending_resync: bool,
    /// How its formula fields stay fresh (empty without any).
    pub formula: Arc<driftless_core::formula::FormulaPlan>,
    /// The running poller; `None` while not polling.
    poller: Option<Running>,
    /// Change events reach the mapping while this is held (`sf_notify_enabled`).
    notify: Option<crate::notify::Registration>,
}

impl MappingRun {
    /// Stops the poller and waits until its current step is done (a commit is never cut in
    /// half). Its secondary polls see the same switch and stop before their next read.
    pub async fn halt(&mut self) {
        self.notify = None;
        if let Some(poller) = self.poller.take() {
            poller.stop().await;
        }
    }

    /// Tells the poller to stop after its current step, without waiting.
    pub fn signal_stop(&self) {
        if let Some(poller) = &self.poller {
            poller.signal_stop();
        }
    }

    pub fn is_running(&self) -> bool {
        self.poller.is_some()
    }
}

/// One connection as the engine runs it.
pub(crate) struct ConnectionRun {
    pub conn: ConnectionConfig,
    /// The connection's DbWriter: every database statement of the connection goes through it.
    pub db: Addr<DbWriter>,
    pub secondary: Option<SecondaryPollPool>,
    pub paused: bool,
    /// The connection's mappings file as it is now (`ctl export`).
    pub file: MappingFile,
    /// By object name, as the mapping spells it.
    pub mappings: BTreeMap<String, MappingRun>,
    /// Sends the read_write mappings' changes to Salesforce; None while paused or when no
    /// mapping is read_write.
    pub writeback: Option<Running>,
    /// The change-event subscription of the mappings with `sf_notify_enabled`.
    pub notify: crate::notify::NotifyHub,
}

impl ConnectionRun {
    /// Stops write-back (its cycle under way finishes first).
    pub async fn stop_writeback(&mut self) {
        if let Some(w) = self.writeback.take() {
            w.stop().await;
        }
    }

    /// (Re)starts write-back for the mappings as they are now: after start, resume and import.
    /// A paused connection sends nothing, as Heroku Connect's pause stops both directions.
    pub async fn restart_writeback(&mut self, registry: &Registry) -> crate::Result<()> {
        self.stop_writeback().await;
        if self.paused {
            return Ok(());
        }
        let resolved = self.mappings.values().map(|m| m.resolved.clone());
        self.writeback = WriteBack::start(&self.conn, &self.db, resolved, registry.clone()).await?;
        Ok(())
    }
}

/// What admin reads need of a connection, published after every command.
#[derive(Debug, Clone)]
pub struct ConnView {
    pub paused: bool,
    pub file: MappingFile,
    /// Owner epoch per object name.
    pub epochs: BTreeMap<String, i64>,
    pub poll_interval_secs: u64,
    pub schema: driftless_core::ident::Ident,
}

/// Connection name -> what admin reads show of it. Cheap to clone, `Send`.
pub type Catalog = Arc<RwLock<BTreeMap<String, ConnView>>>;

/// What the engine's commands share: the process's registry and options, the published
/// catalog, and every connection's run (locked for the whole of a command).
pub(crate) struct EngineState {
    pub registry: Registry,
    pub options: Arc<RunOptions>,
    pub catalog: Catalog,
    pub conns: tokio::sync::Mutex<BTreeMap<String, ConnectionRun>>,
}

impl EngineState {
    pub fn publish(&self, conns: &BTreeMap<String, ConnectionRun>) {
        let views = conns
            .iter()
            .map(|(name, c)| {
                let view = ConnView {
                    paused: c.paused,
                    file: c.file.clone(),
                    epochs: c
                        .mappings
                        .iter()
                        .map(|(o, m)| (o.clone(), m.epoch))
                        .collect(),
                    poll_interval_secs: c.conn.sync.poll_interval_secs,
                    schema: c.conn.schema.clone(),
                };
                (name.clone(), view)
            })
            .collect();
        *self.catalog.write() = views;
    }
}

/// Runs the engine's commands on the arbiter it was started on.
pub struct Engine {
    shared: Arc<EngineState>,
}

impl Engine {
    pub(crate) fn new(shared: Arc<EngineState>) -> Engine {
        Engine { shared }
    }
}

impl Actor for Engine {
    type Context = Context<Self>;
}

pub(crate) type CmdResult<T> = std::result::Result<T, CommandError>;

/// Stops every poller of connection `connection` (`ctl pause`); replies "connection/Object" of each.
#[derive(Message)]
#[rtype(result = "CmdResult<Vec<String>>")]
pub struct Pause {
    pub connection: String,
}

/// Starts the connection's mappings again from committed progress (`ctl resume`).
#[derive(Message)]
#[rtype(result = "CmdResult<Vec<String>>")]
pub struct Resume {
    pub connection: String,
}

/// Truncates the mapping's table and loads it again (`ctl reload`); replies the new state.
#[derive(Message)]
#[rtype(result = "CmdResult<String>")]
pub struct Reload {
    pub connection: String,
    pub object: String,
}

/// Validates a mappings file, writes it and starts, restarts and stops mappings to match.
#[derive(Message)]
#[rtype(result = "CmdResult<ImportOutcome>")]
pub struct Import {
    pub connection: String,
    pub contents: Vec<u8>,
    pub replace: bool,
}

/// Stops every poller and every writer (process shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll;

macro_rules! command {
    ($msg:ty, $out:ty, $f:path) => {
        impl Handler<$msg> for Engine {
            type Result = ResponseFuture<$out>;
            fn handle(&mut self, msg: $msg, _: &mut Self::Context) -> Self::Result {
                let shared = self.shared.clone();
                Box::pin(async move { $f(&shared, msg).await })
            }
        }
    };
}

command!(Pause, CmdResult<Vec<String>>, commands::pause);
command!(Resume, CmdResult<Vec<String>>, commands::resume);
command!(Reload, CmdResult<String>, commands::reload);
command!(Import, CmdResult<ImportOutcome>, import::import);
command!(StopAll, (), commands::stop_all);
