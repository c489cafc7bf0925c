//! The fresh-table load's writes ([`driftless_core::fresh_load`]): rows go by binary COPY
//! straight into the empty table, without staging or merge, and the indexes are built once at
//! the end.
//!
//! A PK-chunked load copies several chunks at once, each in its own transaction and session
//! ([`CopyChunk`]). The chunks commit in Id order, each with the cursor it closes: a chunk whose
//! COPY is done waits, its transaction open, for the one before it to commit. So the committed
//! cursor always covers every committed row and nothing after it, and a kill -9 at any point
//! leaves whole chunks and a cursor that a restart continues after, never a duplicate or a gap.
//!
//! Those transactions fence just before they commit, not first: the fence row-locks the mapping
//! state until COMMIT and would serialize the chunks' COPYs. A fenced writer's COPY is simply
//! rolled back, so nothing it wrote ever becomes visible.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use driftless_core::fresh_load::{self, BuiltIndexes};
use driftless_core::mapping::ResolvedMapping;
use driftless_core::state::{self, MappingKey};
use futures::{pin_mut, SinkExt};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::DbWriter;
use crate::error::{NodeError, Result};
use crate::fresh_copy;
use crate::rows::{Cell, Row};

/// A part of one chunk's rows, in order; the last is [`ChunkPart::End`].
#[derive(Debug)]
pub enum ChunkPart {
    /// Tuples in COPY BINARY format ([`fresh_copy::CopyEncoder`]).
    Tuples(Bytes),
    End(ChunkEnd),
}

#[derive(Debug, Default)]
pub struct ChunkEnd {
    /// Every record with an Id up to this one is in this chunk or an earlier one.
    pub cursor: Option<String>,
    /// Records read, deleted ones included.
    pub records: i64,
    /// Deleted records, whose tombstones the chunk's transaction records.
    pub deleted: Vec<Row>,
}

/// Copies one PK chunk into the fresh table and commits it with its cursor, after the chunk
/// before it (`after`) committed; then says so to the next (`then`). If the parts stop before
/// `End`, or `after` is dropped (an earlier chunk failed), nothing is committed.
#[derive(Message)]
#[rtype(result = "Result<i64>")]
pub struct CopyChunk {
    pub key: MappingKey,
    pub epoch: i64,
    pub mapping: Arc<ResolvedMapping>,
    pub parts: mpsc::Receiver<ChunkPart>,
    pub after: oneshot::Receiver<()>,
    pub then: oneshot::Sender<()>,
}

impl Handler<CopyChunk> for DbWriter {
    type Result = ResponseFuture<Result<i64>>;
    fn handle(&mut self, msg: CopyChunk, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |mut session| async move { copy_chunk(&mut session, msg).await })
    }
}

async fn copy_chunk(client: &mut tokio_postgres::Client, mut msg: CopyChunk) -> Result<i64> {
    let schema = &msg.key.schema;
    let tx = client.transaction().await?;
    tx.batch_execute(driftless_core::writeback::SUPPRESS_CAPTURE)
        .await?;
    let sink = tx
        .copy_in::<_, Bytes>(&fresh_load::copy_into_table(schema, &msg.mapping))
        .await?;
    pin_mut!(sink);
    sink.feed(Bytes::from_static(fresh_copy::HEADER)).await?;
    let mut end = None;
    while let Some(part) = msg.parts.recv().await {
        match part {
            ChunkPart::Tuples(bytes) => sink.feed(bytes).await?,
            ChunkPart::End(e) => {
                end = Some(e);
                break;
            }
        }
    }
    // Dropping the sink unfinished aborts the COPY, and the transaction rolls back.
    let end = end.ok_or(NodeError::Interrupted("load chunk"))?;
    sink.feed(Bytes::from_static(fresh_copy::TRAILER)).await?;
    let copied = sink.as_mut().finish().await? as i64;
    msg.after
        .await
        .map_err(|_| NodeError::Interrupted("an earlier load chunk"))?;
    state::fence(&tx, &msg.key, msg.epoch).await?;
    record_tombstones(&tx, &msg.key, &end.deleted).await?;
    state::commit_initial_load(
        &tx,
        &msg.key,
        msg.epoch,
        end.cursor.as_deref(),
        end.records,
        None,
    )
    .await?;
    tx.commit().await?;
    // The next chunk may be gone already (it failed); then there is nobody to tell.
    let _ = msg.then.send(());
    Ok(copied)
}

/// Builds the indexes of a fresh load and marks the load done, in one fenced transaction: a
/// crash before its commit leaves the load unfinished (and unindexed), so the next start builds
/// them again.
#[derive(Message)]
#[rtype(result = "Result<BuiltIndexes>")]
pub struct FinishFreshLoad {
    pub key: MappingKey,
    pub epoch: i64,
    pub mapping: Arc<ResolvedMapping>,
    pub done_through: DateTime<Utc>,
}

impl Handler<FinishFreshLoad> for DbWriter {
    type Result = ResponseFuture<Result<BuiltIndexes>>;
    fn handle(&mut self, msg: FinishFreshLoad, _: &mut Self::Context) -> Self::Result {
        self.with_session(move |mut session| async move {
            let client: &mut tokio_postgres::Client = &mut session;
            let mut tx = client.transaction().await?;
            tx.batch_execute(driftless_core::writeback::SUPPRESS_CAPTURE)
                .await?;
            state::fence(&tx, &msg.key, msg.epoch).await?;
            let built = fresh_load::build_indexes(&mut tx, &msg.key.schema, &msg.mapping).await?;
            state::commit_initial_load(&tx, &msg.key, msg.epoch, None, 0, Some(msg.done_through))
                .await?;
            tx.commit().await?;
            Ok(built)
        })
    }
}

/// Whether the load takes the fresh path (the table is empty, or an earlier fresh load left it
/// unindexed); when it does, drops the indexes an empty table still has.
pub(crate) async fn prepare_fresh(
    client: &mut tokio_postgres::Client,
    key: &MappingKey,
    epoch: i64,
    mapping: &ResolvedMapping,
) -> Result<bool> {
    let schema = &key.schema;
    let row = client
        .query_one(&fresh_load::fresh_check(schema, mapping), &[])
        .await?;
    let (empty, unindexed): (bool, bool) = (row.get(0), row.get(1));
    if !empty && !unindexed {
        return Ok(false);
    }
    if !unindexed {
        let tx = client.transaction().await?;
        state::fence(&tx, key, epoch).await?;
        for sql in fresh_load::drop_indexes(schema, mapping) {
            tx.batch_execute(&sql).await?;
        }
        tx.commit().await?;
    }
    Ok(true)
}

/// A batch of a sequential load (REST, or rows outside PK chunks) on the fresh path: live rows
/// by COPY into the table, deleted ones as tombstones.
pub(crate) async fn copy_rows_fresh(
    tx: &tokio_postgres::Transaction<'_>,
    key: &MappingKey,
    mapping: &ResolvedMapping,
    rows: &[Row],
) -> Result<()> {
    let schema = &key.schema;
    tx.batch_execute(driftless_core::writeback::SUPPRESS_CAPTURE)
        .await?;
    let (deleted, live): (Vec<&Row>, Vec<&Row>) = rows
        .iter()
        .filter(|r| crate::rows::sfid(r).is_some() && crate::rows::stamp(r).is_some())
        .partition(|r| crate::rows::is_deleted(r));
    if !live.is_empty() {
        let types: Vec<Type> = fresh_load::copy_columns(mapping)
            .iter()
            .map(|(_, t)| t.postgres_type())
            .collect();
        let sink = tx
            .copy_in(&fresh_load::copy_into_table(schema, mapping))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        let synced = Cell::Text("SYNCED".to_owned());
        for row in live {
            let refs: Vec<&(dyn ToSql + Sync)> = row
                .iter()
                .chain(std::iter::once(&synced))
                .map(|c| c as &(dyn ToSql + Sync))
                .collect();
            writer.as_mut().write(&refs).await?;
        }
        writer.finish().await?;
    }
    let deleted: Vec<Row> = deleted.into_iter().cloned().collect();
    record_tombstones(tx, key, &deleted).await
}

/// Deleted records leave a tombstone, as the merge's do, so that a stale read can never bring
/// them back.
async fn record_tombstones(
    tx: &tokio_postgres::Transaction<'_>,
    key: &MappingKey,
    deleted: &[Row],
) -> Result<()> {
    let (sfids, stamps): (Vec<&str>, Vec<chrono::NaiveDateTime>) = deleted
        .iter()
        .filter_map(|r| Some((crate::rows::sfid(r)?, crate::rows::stamp(r)?)))
        .unzip();
    if sfids.is_empty() {
        return Ok(());
    }
    tx.execute(
        &fresh_load::record_tombstones(&key.schema),
        &[&key.connection, &key.object, &sfids, &stamps],
    )
    .await?;
    Ok(())
}
