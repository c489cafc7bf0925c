//! Messages about a mapping's bookkeeping (`_driftless_*` rows): its claim and owner epoch, its
//! state, the initial load's cursor, the secondary windows, the table's identity, and a reload's
//! truncate.

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use driftless_core::ident::QualifiedName;
use driftless_core::mapping::ResolvedMapping;
use driftless_core::migrate;
use driftless_core::state::table_identity::{self, TableCheck};
use driftless_core::state::{self, MappingKey, MappingState, WindowRecord};

use super::DbWriter;
use crate::error::{NodeError, Result};
use crate::status::SyncState;

/// Claims the mapping with the next epoch and returns its state as claimed.
#[derive(Message)]
#[rtype(result = "Result<MappingState>")]
pub struct Claim {
    pub key: MappingKey,
    pub owner: String,
    /// The coordinator's epoch for this mapping; None: the next one after the stored epoch.
    pub epoch: Option<i64>,
}

impl Handler<Claim> for DbWriter {
    type Result = ResponseFuture<Result<MappingState>>;
    fn handle(&mut self, msg: Claim, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            // Single-process `run`: each start is a new owner, which fences any zombie of an
            // earlier process still writing. In a cluster the coordinator's epoch decides.
            let epoch = match msg.epoch {
                Some(e) => e,
                None => state::load(&**session, &msg.key)
                    .await?
                    .map_or(1, |s| s.owner_epoch + 1),
            };
            if !state::claim(&**session, &msg.key, epoch, &msg.owner).await? {
                return Err(NodeError::Fenced(format!(
                    "{}/{}: a newer owner holds the mapping",
                    msg.key.connection, msg.key.object
                )));
            }
            state::load(&**session, &msg.key)
                .await?
                .ok_or_else(|| NodeError::State("mapping state vanished after claim".into()))
        })
    }
}

/// Persists the mapping's state (and its last error) under its owner epoch.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct SetState {
    pub key: MappingKey,
    pub epoch: i64,
    pub state: SyncState,
    pub error: Option<String>,
}

impl Handler<SetState> for DbWriter {
    type Result = ResponseFuture<Result<()>>;
    fn handle(&mut self, msg: SetState, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            state::set_state(
                &**session,
                &msg.key,
                msg.epoch,
                msg.state.as_str(),
                msg.error.as_deref(),
            )
            .await?;
            Ok(())
        })
    }
}

/// Starts or resumes an initial load (`state::begin_initial_load`).
#[derive(Message)]
#[rtype(result = "Result<LoadStart>")]
pub struct BeginLoad {
    pub key: MappingKey,
    pub epoch: i64,
    pub mark: DateTime<Utc>,
    pub mapping: Arc<ResolvedMapping>,
}

/// Where a load starts: its high-water mark (the first attempt's, on a resume) and the cursor
/// every committed Id is covered up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadStart {
    pub mark: DateTime<Utc>,
    pub cursor: Option<String>,
    /// The load takes the fresh-table path (`super::fresh`); its indexes are dropped.
    pub fresh: bool,
    /// Sessions the load may use at once: the pool but one, which stays for the connection's
    /// other work (other mappings, write-back, state).
    pub sessions: usize,
}

impl Handler<BeginLoad> for DbWriter {
    type Result = ResponseFuture<Result<LoadStart>>;
    fn handle(&mut self, msg: BeginLoad, _: &mut Self::Context) -> Self::Result {
        let sessions = self.pool.status().max_size.saturating_sub(1).max(1);
        self.with_session(move |mut session| async move {
            let (mark, cursor) =
                state::begin_initial_load(&**session, &msg.key, msg.epoch, msg.mark).await?;
            let fresh =
                super::fresh::prepare_fresh(&mut session, &msg.key, msg.epoch, &msg.mapping)
                    .await?;
            Ok(LoadStart {
                mark,
                cursor,
                fresh,
                sessions,
            })
        })
    }
}

/// Windows whose secondary poll has not been done, oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<WindowRecord>>")]
pub struct PendingWindows {
    pub key: MappingKey,
}

/// The most windows a restart hands back to the secondary pool at once.
pub const MAX_PENDING_WINDOWS: i64 = 100_000;

impl Handler<PendingWindows> for DbWriter {
    type Result = ResponseFuture<Result<Vec<WindowRecord>>>;
    fn handle(&mut self, msg: PendingWindows, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            let far = Utc::now() + chrono::Duration::days(36_500);
            Ok(
                state::due_secondary_windows(&**session, &msg.key, far, MAX_PENDING_WINDOWS)
                    .await?,
            )
        })
    }
}

/// Forgets windows whose secondary poll is done and tombstones, both older than `before`.
#[derive(Message)]
#[rtype(result = "Result<Pruned>")]
pub struct Prune {
    pub key: MappingKey,
    pub before: DateTime<Utc>,
}

/// What a [`Prune`] forgot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub windows: u64,
    pub tombstones: u64,
}

impl Handler<Prune> for DbWriter {
    type Result = ResponseFuture<Result<Pruned>>;
    fn handle(&mut self, msg: Prune, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            let windows = state::prune_windows(&**session, &msg.key, msg.before).await?;
            let tombstones = state::prune_tombstones(&**session, &msg.key, msg.before).await?;
            Ok(Pruned {
                windows,
                tombstones,
            })
        })
    }
}

/// The database half of `ctl reload`: empty the table and forget the mapping's progress, in one
/// fenced transaction.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct TruncateForReload {
    pub key: MappingKey,
    pub epoch: i64,
    /// What the table is made from when it is missing (dropped behind the engine's back).
    pub mapping: Arc<ResolvedMapping>,
}

impl Handler<TruncateForReload> for DbWriter {
    type Result = ResponseFuture<Result<()>>;
    fn handle(&mut self, msg: TruncateForReload, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |mut session| async move {
            let client: &mut tokio_postgres::Client = &mut session;
            let schema = msg.key.schema.clone();
            migrate::ensure_resolved(client, &schema, (*msg.mapping).clone())
                .await
                .map_err(|e| match e {
                    migrate::MigrateError::Db(db) => NodeError::Db(db),
                    other => NodeError::config_caused(other),
                })?;
            let table = QualifiedName::new(&schema, &msg.mapping.table);
            let tx = client.transaction().await?;
            // Emptying the table is the sync's own write: nothing of it goes to write-back.
            tx.batch_execute(driftless_core::writeback::SUPPRESS_CAPTURE)
                .await?;
            state::fence(&tx, &msg.key, msg.epoch).await?;
            tx.batch_execute(&format!("TRUNCATE {table}")).await?;
            state::reset_for_reload(&tx, &msg.key, msg.epoch).await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

/// Whether the mapped table is still the one the engine filled (`state::table_identity`).
#[derive(Message)]
#[rtype(result = "Result<TableCheck>")]
pub struct CheckTable {
    pub key: MappingKey,
    pub epoch: i64,
    pub table: QualifiedName,
}

impl Handler<CheckTable> for DbWriter {
    type Result = ResponseFuture<Result<TableCheck>>;
    fn handle(&mut self, msg: CheckTable, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            Ok(table_identity::check(&**session, &msg.key, msg.epoch, &msg.table).await?)
        })
    }
}

/// Where the connection's change-event subscription resumes (see
/// [`state::notify_resume_point`]); `None`: at the latest event.
#[derive(Message)]
#[rtype(result = "Result<Option<Vec<u8>>>")]
pub struct NotifyResumePoint {
    pub schema: driftless_core::ident::Ident,
    pub connection: String,
    pub objects: Vec<String>,
}

impl Handler<NotifyResumePoint> for DbWriter {
    type Result = ResponseFuture<Result<Option<Vec<u8>>>>;
    fn handle(&mut self, msg: NotifyResumePoint, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            Ok(
                state::notify_resume_point(&**session, &msg.schema, &msg.connection, &msg.objects)
                    .await?,
            )
        })
    }
}
