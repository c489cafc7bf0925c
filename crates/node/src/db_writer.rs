//! The DbWriter: one per connection, the only code that touches the customer's database.
//!
//! It owns the connection's fixed pool of `db_pool_size` connections, so the limit is a property
//! of the topology (DESIGN.md invariant 4): whatever the number of mappings and secondary polls,
//! every statement waits for one of those connections. Each message is answered by a future that
//! runs on its own, so up to `db_pool_size` commits proceed at once; senders await the answer, so
//! each of them has at most one batch in flight.

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use driftless_core::config::ConnectionConfig;
use driftless_core::describe::ObjectDescribe;
use driftless_core::dml;
use driftless_core::ident::{Ident, QualifiedName};
use driftless_core::mapping::{Mapping, ResolvedMapping};
use driftless_core::migrate::{self, SchemaChanges};
use driftless_core::state::{
    self, MappingKey, MappingState, PrimaryCommit, SecondaryCommit, WindowRecord,
};
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::NoTls;

use crate::error::{NodeError, Result};
use crate::rows::Row;

/// Mailbox bound: senders wait (`send().await`) rather than queue without limit.
const MAILBOX: usize = 64;

pub struct DbWriter {
    pool: Pool,
}

impl DbWriter {
    /// Builds a pool of at most `pool_size` connections, never above `db_pool_size` (none is
    /// opened yet). Sessions are named `driftless/<connection>/<role>` so operators can find them
    /// in `pg_stat_activity`.
    pub fn new(conn: &ConnectionConfig, role: &str, pool_size: u32) -> Result<DbWriter> {
        let mut pg: tokio_postgres::Config = conn.database_url.expose().parse().map_err(|_| {
            NodeError::Config(format!(
                "connection {}: database_url is not a valid postgres URL",
                conn.name
            ))
        })?;
        pg.application_name(application_name(&conn.name, role));
        // `CREATE TEMP TABLE IF NOT EXISTS` for the staging table raises a NOTICE on every
        // transaction after the first; they are not worth a log line each.
        pg.options("-c client_min_messages=warning");
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.clamp(1, conn.db_pool_size) as usize)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| NodeError::Pool(e.to_string()))?;
        Ok(DbWriter { pool })
    }
}

pub fn application_name(connection: &str, role: &str) -> String {
    format!("driftless/{connection}/{role}")
}

impl Actor for DbWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.pool.close();
    }
}

/// What a batch of rows closes, committed in the same transaction as the rows (invariant 1).
#[derive(Debug, Clone)]
pub enum Progress {
    /// Rows only; progress comes with a later batch of the same read.
    None,
    InitialLoad {
        cursor: Option<String>,
        done_through: Option<DateTime<Utc>>,
    },
    Primary(PrimaryCommit),
    Secondary(SecondaryCommit),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub deleted: i64,
    pub changed: i64,
    /// The window row a primary commit created.
    pub window_id: Option<i64>,
}

#[derive(Message)]
#[rtype(result = "Result<SchemaChanges>")]
pub struct EnsureSchema {
    pub schema: Ident,
    pub mapping: Mapping,
    pub describe: ObjectDescribe,
}

/// Claims the mapping with the next epoch and returns its state as claimed.
#[derive(Message)]
#[rtype(result = "Result<MappingState>")]
pub struct Claim {
    pub key: MappingKey,
    pub owner: String,
    /// The coordinator's epoch for this mapping; None: the next one after the stored epoch.
    pub epoch: Option<i64>,
}

#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct SetState {
    pub key: MappingKey,
    pub epoch: i64,
    pub state: String,
    pub error: Option<String>,
}

/// Starts or resumes an initial load: answers the load's high-water mark and committed cursor
/// (`state::begin_initial_load`).
#[derive(Message)]
#[rtype(result = "Result<(DateTime<Utc>, Option<String>)>")]
pub struct BeginLoad {
    pub key: MappingKey,
    pub epoch: i64,
    pub mark: DateTime<Utc>,
}

#[derive(Message)]
#[rtype(result = "Result<Applied>")]
pub struct ApplyRows {
    pub key: MappingKey,
    pub epoch: i64,
    pub mapping: Arc<ResolvedMapping>,
    pub rows: Vec<Row>,
    pub progress: Progress,
}

/// Windows whose secondary poll has not been done, oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<WindowRecord>>")]
pub struct PendingWindows {
    pub key: MappingKey,
}

#[derive(Message)]
#[rtype(result = "Result<i64>")]
pub struct CountRows {
    pub table: QualifiedName,
}

/// Forgets windows whose secondary poll is done and tombstones, both older than `before`.
#[derive(Message)]
#[rtype(result = "Result<(u64, u64)>")]
pub struct Prune {
    pub key: MappingKey,
    pub before: DateTime<Utc>,
}

impl Handler<Prune> for DbWriter {
    type Result = ResponseFuture<Result<(u64, u64)>>;
    fn handle(&mut self, msg: Prune, _: &mut Self::Context) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move {
            let obj = pool.get().await?;
            let windows = state::prune_windows(&**obj, &msg.key, msg.before).await?;
            let tombstones = state::prune_tombstones(&**obj, &msg.key, msg.before).await?;
            Ok((windows, tombstones))
        })
    }
}

/// Connections of the pool currently handed out.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct PoolInUse;

impl Handler<EnsureSchema> for DbWriter {
    type Result = ResponseFuture<Result<SchemaChanges>>;
    fn handle(&mut self, msg: EnsureSchema, _: &mut Self::Context) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut obj = pool.get().await?;
            let client: &mut tokio_postgres::Client = &mut obj;
            migrate::ensure_schema(client, &msg.schema, &msg.mapping, &msg.describe)
                .await
                .map_err(|e| match e {
                    migrate::MigrateError::Db(db) => NodeError::Db(db),
                    other => NodeError::Config(other.to_string()),
                })
        })
    }
}

impl Handler<Claim> for DbWriter {
    type Result = ResponseFuture<Result<MappingState>>;
    fn handle(&mut self, msg: Claim, _: &mut Self::Context) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move {
            let obj = pool.get().await?;
            // Single-process `run`: each start is a new owner, which fences any zombie of an
            // earlier process still writing. In a cluster the coordinator's epoch decides.
            let epoch = match msg.epoch {
                Some(e) => e,
                None => state::load(&**obj, &msg.key)
                    .await?
                    .map_or(1, |s| s.owner_epoch + 1),
            };
            if !state::claim(&**obj, &msg.key, epoch, &msg.owner).await? {
                return Err(NodeError::Fenced(format!(
                    "{}/{}: a newer owner holds the mapping",
                    msg.key.connection, msg.key.object
                )));
            }
            state::load(&**obj, &msg.key)
                .await?
                .ok_or_else(|| NodeError::State("mapping state vanished after claim".into()))
        })
    }
}

impl Handler<SetState> for DbWriter {
    type Result = ResponseFuture<Result<()>>;
    fn handle(&mut self, msg: SetState, _: &mut Self::Context) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move {
            let obj = pool.get().await?;
            state::set_state(
                &**obj,
                &msg.key,
                msg.epoch,
                &msg.state,
                msg.error.as_deref(),
            )
            .await?;
            Ok(())
        })
    }
}

impl Handler<BeginLoad> for DbWriter {
    type Result = ResponseFuture<Result<(DateTime<Utc>, Option<String>)>>;
    fn handle(&mut self, msg: BeginLoad, _: &mut Self::Context) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move {
            let obj = pool.get().await?;
            Ok(state::begin_initial_load(&**obj, &msg.key, msg.epoch, msg.mark).await?)
        })
    }
}

impl Handler<ApplyRows> for DbWriter {
    type Result = ResponseFuture<Result<Applied>>;
    fn handle(&mut self, msg: ApplyRows, _: &mut Self::Context) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut obj = pool.get().await?;
            let client: &mut tokio_postgres::Client = &mut obj;
            apply(client, msg).await
        })
    }
}

async fn apply(client: &mut tokio_postgres::Client, msg: ApplyRows) -> Result<Applied> {
    let schema = &msg.key.schema;
    let tx = client.transaction().await?;
    state::fence(&tx, &msg.key, msg.epoch).await?;
    let mut applied = Applied::default();
    if !msg.rows.is_empty() {
        let (deleted, changed) =
            copy_and_merge(&tx, schema, &msg.mapping, &msg.key, &msg.rows).await?;
        applied.deleted = deleted;
        applied.changed = changed;
    }
    match &msg.progress {
        Progress::None => {}
        Progress::InitialLoad {
            cursor,
            done_through,
        } => {
            state::commit_initial_load(
                &tx,
                &msg.key,
                msg.epoch,
                cursor.as_deref(),
                msg.rows.len() as i64,
                *done_through,
            )
            .await?;
        }
        Progress::Primary(commit) => {
            applied.window_id =
                Some(state::commit_primary_window(&tx, &msg.key, msg.epoch, commit).await?);
        }
        Progress::Secondary(commit) => {
            let mut commit = commit.clone();
            commit.drift_records += applied.deleted + applied.changed;
            state::commit_secondary_window(&tx, &msg.key, msg.epoch, &commit).await?;
        }
    }
    tx.commit().await?;
    Ok(applied)
}

/// Binary COPY into the session's staging table, then the one idempotent, monotonic merge.
pub(crate) async fn copy_and_merge(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &Ident,
    mapping: &ResolvedMapping,
    key: &MappingKey,
    rows: &[Row],
) -> Result<(i64, i64)> {
    // The merge's writes are Salesforce's, not the application's: without this the capture
    // trigger logs every merged row to `_trigger_log` (dml.rs requires it of callers).
    tx.batch_execute(driftless_core::writeback::SUPPRESS_CAPTURE)
        .await?;
    copy_rows(tx, schema, mapping, rows).await?;
    let row = tx
        .query_one(
            &dml::merge_from_staging(schema, mapping),
            &[&key.connection, &key.object],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

pub(crate) async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &Ident,
    mapping: &ResolvedMapping,
    rows: &[Row],
) -> Result<()> {
    tx.batch_execute(&dml::create_staging_table(schema, mapping))
        .await?;
    let types: Vec<Type> = dml::staging_columns(mapping)
        .iter()
        .map(|(_, t)| t.postgres_type())
        .collect();
    let sink = tx.copy_in(&dml::copy_into_staging(schema, mapping)).await?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for row in rows {
        let refs: Vec<&(dyn ToSql + Sync)> = row.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        writer.as_mut().write(&refs).await?;
    }
    writer.finish().await?;
    Ok(())
}

impl Handler<PendingWindows> for DbWriter {
    type Result = ResponseFuture<Result<Vec<WindowRecord>>>;
    fn handle(&mut self, msg: PendingWindows, _: &mut Self::Context) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move {
            let obj = pool.get().await?;
            let far = Utc::now() + chrono::Duration::days(36_500);
            Ok(state::due_secondary_windows(&**obj, &msg.key, far, 100_000).await?)
        })
    }
}

impl Handler<CountRows> for DbWriter {
    type Result = ResponseFuture<Result<i64>>;
    fn handle(&mut self, msg: CountRows, _: &mut Self::Context) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move {
            let obj = pool.get().await?;
            let row = obj
                .query_one(&format!("SELECT count(*) FROM {}", msg.table), &[])
                .await?;
            Ok(row.get(0))
        })
    }
}

impl Handler<PoolInUse> for DbWriter {
    type Result = usize;
    fn handle(&mut self, _: PoolInUse, _: &mut Self::Context) -> usize {
        let s = self.pool.status();
        s.size.saturating_sub(s.available)
    }
}

/// Lets verify run its comparison on a pooled connection (see [`crate::verify`]).
impl DbWriter {
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Stops the writer and closes its pool.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for DbWriter {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        self.pool.close();
        ctx.stop();
    }
}
