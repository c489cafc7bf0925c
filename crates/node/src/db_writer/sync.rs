//! The data path: a mapping's table, rows read from Salesforce with the progress they close (one
//! fenced transaction each), and row counts.

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use driftless_core::describe::ObjectDescribe;
use driftless_core::dml;
use driftless_core::ident::{Ident, QualifiedName};
use driftless_core::mapping::{Mapping, ResolvedMapping};
use driftless_core::migrate::{self, SchemaChanges};
use driftless_core::state::rejects::{self, Reject};
use driftless_core::state::{self, MappingKey, PrimaryCommit, SecondaryCommit};
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::DbWriter;
use crate::error::{NodeError, Result};
use crate::rows::{sfid, stamp, Row};

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
    /// Records named by change events: every event up to this replay id has been acted on.
    Notify {
        replay_id: Vec<u8>,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    pub deleted: i64,
    pub changed: i64,
    /// The window row a primary commit created.
    pub window_id: Option<i64>,
    /// Records Postgres would not take, quarantined in `_driftless_rejects`; the rest committed.
    pub rejected: Vec<Reject>,
}

/// Creates the mapping's table or adds what it lacks.
#[derive(Message)]
#[rtype(result = "Result<SchemaChanges>")]
pub struct EnsureSchema {
    pub schema: Ident,
    pub mapping: Mapping,
    pub describe: ObjectDescribe,
}

impl Handler<EnsureSchema> for DbWriter {
    type Result = ResponseFuture<Result<SchemaChanges>>;
    fn handle(&mut self, msg: EnsureSchema, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |mut session| async move {
            let client: &mut tokio_postgres::Client = &mut session;
            migrate::ensure_schema(client, &msg.schema, &msg.mapping, &msg.describe)
                .await
                .map_err(|e| match e {
                    migrate::MigrateError::Db(db) => NodeError::Db(db),
                    other => NodeError::config_caused(other),
                })
        })
    }
}

/// Rows of one read and what they close, committed as one fenced transaction.
#[derive(Message)]
#[rtype(result = "Result<Applied>")]
pub struct ApplyRows {
    pub key: MappingKey,
    pub epoch: i64,
    pub mapping: Arc<ResolvedMapping>,
    pub rows: Vec<Row>,
    pub progress: Progress,
    /// The load's fresh-table path ([`super::fresh`]): COPY straight into the table, and the
    /// batch that finishes the load builds the indexes.
    pub fresh: bool,
}

impl Handler<ApplyRows> for DbWriter {
    type Result = ResponseFuture<Result<Applied>>;
    fn handle(&mut self, msg: ApplyRows, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |mut session| async move { apply(&mut session, msg).await })
    }
}

async fn apply(client: &mut tokio_postgres::Client, msg: ApplyRows) -> Result<Applied> {
    let schema = &msg.key.schema;
    let mut tx = client.transaction().await?;
    state::fence(&tx, &msg.key, msg.epoch).await?;
    let mut applied = Applied::default();
    if !msg.rows.is_empty() {
        let merged =
            merge_isolating(&tx, schema, &msg.mapping, &msg.key, &msg.rows, msg.fresh).await?;
        applied.deleted = merged.deleted;
        applied.changed = merged.changed;
        applied.rejected = merged.rejected;
    }
    match &msg.progress {
        Progress::None => {}
        Progress::InitialLoad {
            cursor,
            done_through,
        } => {
            if msg.fresh && done_through.is_some() {
                driftless_core::fresh_load::build_indexes(&mut tx, schema, &msg.mapping).await?;
            }
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
        Progress::Notify { replay_id } => {
            state::commit_notify(&tx, &msg.key, msg.epoch, replay_id).await?;
        }
    }
    tx.commit().await?;
    Ok(applied)
}

/// [`copy_and_merge`] (or, on a load's fresh path, [`super::fresh::copy_rows_fresh`]), except
/// that a record whose values Postgres rejects
/// ([`rejects::is_record_error`]) does not fail the batch: the batch is halved until the
/// failing records stand alone (each attempt in a savepoint), those are quarantined in
/// `_driftless_rejects`, and every other record is merged. Records written release their
/// earlier quarantine. A batch without a bad record costs one savepoint.
pub(crate) async fn merge_isolating(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &Ident,
    mapping: &ResolvedMapping,
    key: &MappingKey,
    rows: &[Row],
    fresh: bool,
) -> Result<Applied> {
    let stage = dml::staging_table(schema, mapping);
    let mut applied = Applied::default();
    if !fresh {
        // Made before the first savepoint: made inside it, a rejected first part would roll the
        // table back and the next part's TRUNCATE would find no table.
        tx.batch_execute(&dml::create_staging_table(schema, mapping))
            .await?;
    }
    let mut pending: Vec<&[Row]> = vec![rows];
    let mut first = true;
    while let Some(part) = pending.pop() {
        tx.batch_execute("SAVEPOINT driftless_rows").await?;
        if !first && !fresh {
            // Rows a merged part left in the staging table must not be merged again.
            tx.batch_execute(&format!("TRUNCATE {stage}")).await?;
        }
        first = false;
        let attempt = if fresh {
            super::fresh::copy_rows_fresh(tx, key, mapping, part)
                .await
                .map(|()| (0, part.len() as i64))
        } else {
            copy_and_merge(tx, schema, mapping, key, part).await
        };
        match attempt {
            Ok((deleted, changed)) => {
                tx.batch_execute("RELEASE SAVEPOINT driftless_rows").await?;
                applied.deleted += deleted;
                applied.changed += changed;
            }
            Err(NodeError::Db(e)) if rejects::is_record_error(&e) => {
                tx.batch_execute(
                    "ROLLBACK TO SAVEPOINT driftless_rows; RELEASE SAVEPOINT driftless_rows",
                )
                .await?;
                if part.len() == 1 {
                    applied.rejected.push(Reject {
                        sfid: sfid(&part[0]).unwrap_or_default().to_owned(),
                        systemmodstamp: stamp(&part[0]),
                        field: e.as_db_error().and_then(|d| d.column()).map(str::to_owned),
                        error: driftless_core::pgerror::describe(&e),
                    });
                } else {
                    let (a, b) = part.split_at(part.len() / 2);
                    pending.push(b);
                    pending.push(a);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let written: Vec<&str> = if applied.rejected.is_empty() {
        rows.iter().filter_map(sfid).collect()
    } else {
        let bad: std::collections::HashSet<&str> =
            applied.rejected.iter().map(|r| r.sfid.as_str()).collect();
        rows.iter()
            .filter_map(sfid)
            .filter(|id| !bad.contains(id))
            .collect()
    };
    rejects::clear(tx, key, &written).await?;
    if !applied.rejected.is_empty() {
        rejects::record(tx, key, &applied.rejected).await?;
    }
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

/// The newest quarantined records of a connection (`ctl errors`).
#[derive(Message)]
#[rtype(result = "Result<Vec<rejects::RejectEntry>>")]
pub struct ListRejects {
    pub schema: Ident,
    pub connection: String,
    pub limit: i64,
}

impl Handler<ListRejects> for DbWriter {
    type Result = ResponseFuture<Result<Vec<rejects::RejectEntry>>>;
    fn handle(&mut self, msg: ListRejects, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            Ok(rejects::list(&**session, &msg.schema, &msg.connection, msg.limit).await?)
        })
    }
}

/// Rows in a table (status).
#[derive(Message)]
#[rtype(result = "Result<i64>")]
pub struct CountRows {
    pub table: QualifiedName,
}

impl Handler<CountRows> for DbWriter {
    type Result = ResponseFuture<Result<i64>>;
    fn handle(&mut self, msg: CountRows, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |session| async move {
            let row = session
                .query_one(&format!("SELECT count(*) FROM {}", msg.table), &[])
                .await?;
            Ok(row.get(0))
        })
    }
}
