//! The fresh-table initial load of a PK-chunked Bulk job, several chunks at once.
//!
//! Per chunk, three stages run concurrently: the download (the chunk's result pages, streamed),
//! the encoding of its records into COPY BINARY tuples (on the blocking pool, in blocks of
//! [`BLOCK_RECORDS`], so CPU-bound work never stalls the runtime), and the COPY on one of the
//! DbWriter's sessions ([`CopyChunk`]). Between download and COPY sits a channel of
//! [`BUFFERED_BLOCKS`] blocks: the download runs ahead of the COPY that far and no further, so
//! memory stays flat whatever the chunk's size.
//!
//! At most `sessions` chunks are in flight (`LoadStart::sessions`: the pool but one), and they
//! commit in Id order, each with its cursor (see `db_writer::fresh`), so an interrupted load
//! resumes after the last committed chunk with nothing doubled and nothing missed.

use futures::StreamExt;
use salesforce::{BulkV1Job, BulkV1Options, QueryOperation, Record};
use tokio::sync::{mpsc, oneshot};

use crate::db_writer::{ChunkEnd, ChunkPart, CopyChunk};
use crate::error::{NodeError, Result};
use crate::fresh_copy::CopyEncoder;
use crate::mapping_ctx::MappingCtx;
use crate::salesforce_client::{pk_chunks, ReadCost};

/// Records encoded per trip to the blocking pool: big enough that the trip costs nothing,
/// small enough that a block is a few hundred kilobytes.
const BLOCK_RECORDS: usize = 2_000;
/// Encoded blocks a chunk's download may be ahead of its COPY.
const BUFFERED_BLOCKS: usize = 4;

#[derive(Debug, Default, Clone, Copy)]
pub struct Loaded {
    pub records: i64,
    pub bad_values: u64,
}

/// Reads `soql` as one PK-chunked Bulk job and copies its chunks into the (empty, unindexed)
/// table, at most `sessions` at a time. Does not build the indexes.
pub async fn load_chunked(
    ctx: &MappingCtx,
    soql: &str,
    options: &BulkV1Options,
    sessions: usize,
    cost: &mut ReadCost,
) -> Result<Loaded> {
    let job = ctx
        .client
        .bulk_v1_query(
            ctx.object(),
            QueryOperation::QueryAll,
            &[soql.to_owned()],
            options,
        )
        .await?;
    cost.bulk_jobs += 1;
    let chunks = pk_chunks(&job).await?;
    cost.bulk_batches += chunks.len() as i64;
    tracing::info!(
        object = ctx.object(),
        chunks = chunks.len(),
        sessions,
        "fresh load: copying pk chunks in parallel"
    );
    // The first chunk's turn to commit has come already.
    let (first, mut turn) = oneshot::channel();
    let _ = first.send(());
    let job = &job;
    let mut results = futures::stream::iter(chunks)
        .map(|id| {
            let (then, next) = oneshot::channel();
            let after = std::mem::replace(&mut turn, next);
            load_chunk(ctx, job, id, after, then)
        })
        .buffered(sessions.max(1));
    let mut total = Loaded::default();
    while let Some(chunk) = results.next().await {
        // The first failure in Id order is the cause; later chunks fail because of it and
        // nothing after it commits. Dropping `results` ends their reads.
        let chunk = chunk?;
        total.records += chunk.records;
        total.bad_values += chunk.bad_values;
        // A stop takes effect between commits; the cursor just committed is where the next
        // start resumes.
        if ctx.stopped() {
            return Err(NodeError::Stopped("initial load"));
        }
    }
    Ok(total)
}

async fn load_chunk(
    ctx: &MappingCtx,
    job: &BulkV1Job,
    id: String,
    after: oneshot::Receiver<()>,
    then: oneshot::Sender<()>,
) -> Result<Loaded> {
    let (parts, rx) = mpsc::channel(BUFFERED_BLOCKS);
    let copy = ctx.db.send(CopyChunk {
        key: ctx.key.clone(),
        epoch: ctx.epoch,
        mapping: ctx.mapping.clone(),
        parts: rx,
        after,
        then,
    });
    let read = read_chunk(ctx, job, &id, parts);
    let (copied, read) = futures::join!(copy, read);
    let copied = copied.map_err(NodeError::from).and_then(|r| r);
    match (read, copied) {
        (Ok(loaded), Ok(_)) => Ok(loaded),
        // A read that stopped because the COPY failed reports the COPY's error.
        (Err(NodeError::Interrupted(_)), Err(e)) => Err(e),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

/// Streams one chunk's records, encodes them off the runtime and hands the blocks to its COPY.
async fn read_chunk(
    ctx: &MappingCtx,
    job: &BulkV1Job,
    id: &str,
    parts: mpsc::Sender<ChunkPart>,
) -> Result<Loaded> {
    let mut stream = job.stream_batch(id);
    let mut encoder = CopyEncoder::new(ctx.mapping.clone());
    let mut block: Vec<Record> = Vec::with_capacity(BLOCK_RECORDS);
    let mut end = ChunkEnd::default();
    loop {
        let next = stream.next().await;
        let done = next.is_none();
        if let Some(record) = next {
            block.push(record?);
            end.records += 1;
        }
        if block.len() >= BLOCK_RECORDS || (done && !block.is_empty()) {
            let records = std::mem::replace(&mut block, Vec::with_capacity(BLOCK_RECORDS));
            let (enc, encoded) = tokio::task::spawn_blocking(move || {
                let encoded = encoder.encode(&records);
                (encoder, encoded)
            })
            .await
            .map_err(|_| NodeError::Interrupted("row encoding"))?;
            encoder = enc;
            let encoded = encoded.map_err(|e| NodeError::State(e.to_string()))?;
            end.deleted.extend(encoded.deleted);
            if !encoded.bytes.is_empty()
                && parts.send(ChunkPart::Tuples(encoded.bytes)).await.is_err()
            {
                return Err(NodeError::Interrupted("the chunk's COPY"));
            }
        }
        if done {
            break;
        }
    }
    end.cursor = encoder.max_id.clone();
    let loaded = Loaded {
        records: end.records,
        bad_values: encoder.bad_values(),
    };
    parts
        .send(ChunkPart::End(end))
        .await
        .map_err(|_| NodeError::Interrupted("the chunk's COPY"))?;
    Ok(loaded)
}
