//! Bulk API 1.0 query jobs: one job, several batches (one SOQL each, e.g. the sub-windows of a
//! poll), batch state polled with a growing interval, each batch's CSV results streamed record by
//! record.
//!
//! The job is created as a CSV job with a JSON request, so the job document comes back as JSON
//! while batch documents come back as XML (Salesforce answers batch calls in the job's content
//! type). Both parsers go by the response's Content-Type, not by assumption.

use std::collections::HashMap;
use std::time::Instant;

use futures::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};
use crate::http::{Auth, Call};
use crate::paged_csv::{PagedCsv, Pages};
use crate::{xml, Client, QueryOperation, RecordStream};

/// Options for a Bulk 1.0 query job.
#[derive(Clone, Debug, Default)]
pub struct BulkV1Options {
    /// `Sforce-Enable-PKChunking: chunkSize=N`. Salesforce then splits each submitted batch into
    /// Id-range batches and marks the original `NotProcessed`.
    pub pk_chunking: Option<u32>,
    /// `startRow=Id` with PK chunking: chunks begin at this Id (inclusive) instead of the
    /// object's first, so a resumed read does not run a batch per range it already has.
    pub pk_start_row: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchState {
    Queued,
    InProgress,
    Completed,
    Failed,
    NotProcessed,
    Other(String),
}

impl BatchState {
    fn parse(s: &str) -> BatchState {
        match s {
            "Queued" => BatchState::Queued,
            "InProgress" => BatchState::InProgress,
            "Completed" => BatchState::Completed,
            "Failed" => BatchState::Failed,
            "NotProcessed" | "Not Processed" => BatchState::NotProcessed,
            other => BatchState::Other(other.to_owned()),
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            BatchState::Completed | BatchState::Failed | BatchState::NotProcessed
        )
    }
}

#[derive(Clone, Debug)]
pub struct BatchInfo {
    pub id: String,
    pub job_id: String,
    pub state: BatchState,
    pub state_message: Option<String>,
    pub records_processed: u64,
}

impl BatchInfo {
    fn from_map(map: &HashMap<String, String>) -> Result<BatchInfo> {
        let get = |k: &str| map.get(k).cloned();
        Ok(BatchInfo {
            id: get("id").ok_or_else(|| Error::protocol("batchInfo without id"))?,
            job_id: get("jobId").unwrap_or_default(),
            state: BatchState::parse(map.get("state").map(String::as_str).unwrap_or("")),
            state_message: get("stateMessage").filter(|m| !m.is_empty()),
            records_processed: map
                .get("numberRecordsProcessed")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        })
    }

    /// The error a Failed batch stands for.
    pub fn error(&self) -> Option<Error> {
        (self.state == BatchState::Failed).then(|| {
            Error::from_bulk_state_message(self.state_message.as_deref().unwrap_or("batch failed"))
                .with_route("bulk_v1.batch")
        })
    }
}

/// A Bulk 1.0 query job with its batches, in the order they were submitted.
#[derive(Clone, Debug)]
pub struct BulkV1Job {
    client: Client,
    id: String,
    object: String,
    batches: Vec<BatchInfo>,
    pk_chunked: bool,
}

#[derive(Deserialize)]
struct JobDoc {
    id: String,
}

impl Client {
    /// Creates a Bulk 1.0 `query`/`queryAll` job on `object` with one batch per SOQL, and closes
    /// it. Batches run in parallel on the server; read them with [`BulkV1Job::stream_batch`].
    pub async fn bulk_v1_query(
        &self,
        object: &str,
        operation: QueryOperation,
        soqls: &[String],
        options: &BulkV1Options,
    ) -> Result<BulkV1Job> {
        let body = serde_json::json!({
            "operation": operation.as_str(),
            "object": object,
            "contentType": "CSV",
            "concurrencyMode": "Parallel",
        });
        let mut call = Call::new("bulk_v1.job", Auth::Session, self.async_path("job"))
            .json(Method::POST, &body)?;
        call = call.not_idempotent();
        if let Some(size) = options.pk_chunking {
            let value = match &options.pk_start_row {
                Some(id) => format!("chunkSize={size}; startRow={id}"),
                None => format!("chunkSize={size}"),
            };
            call = call.header("sforce-enable-pkchunking", &value);
        }
        // A create whose answer was lost may have left an empty open job behind; failing the
        // poll would retry it with a new job all the same, so it is resent here. An empty job
        // holds no batch and reads nothing.
        let mut attempt = 1;
        let (headers, body) = loop {
            match self.bytes(&call).await {
                Err(err) if unanswered(&err) && attempt < UNANSWERED_ATTEMPTS => {
                    tracing::warn!(object, error = %err, "create-job unanswered; sending again");
                    attempt += 1;
                }
                answer => break answer?,
            }
        };
        let job_id = parse_job_id(&headers, &body)?;
        let mut job = BulkV1Job {
            client: self.clone(),
            id: job_id,
            object: object.to_owned(),
            batches: vec![],
            pk_chunked: options.pk_chunking.is_some(),
        };
        for soql in soqls {
            let batch = job.add_batch(soql).await?;
            job.batches.push(batch);
        }
        job.set_state("Closed").await?;
        tracing::info!(job_id = %job.id, object, batches = job.batches.len(), "bulk v1 job submitted");
        Ok(job)
    }
}

impl Client {
    /// A handle on an existing Bulk 1.0 job (e.g. one submitted before a restart), with its
    /// batches in the order the server lists them.
    pub async fn bulk_v1_job(&self, id: &str, object: &str) -> Result<BulkV1Job> {
        let mut job = BulkV1Job {
            client: self.clone(),
            id: id.to_owned(),
            object: object.to_owned(),
            batches: vec![],
            pk_chunked: false,
        };
        // Listed batches already include any PK chunks; NotProcessed originals stream nothing.
        job.batches = job.list_batches().await?;
        Ok(job)
    }
}

impl BulkV1Job {
    /// Adds one batch. Resending a batch would run its window twice, so an add whose answer was
    /// lost (a timeout, a dropped connection: the server may or may not have it) is settled by
    /// listing the job's batches: batches are added one at a time, so a batch beyond the ones
    /// already recorded is this one. Only a batch the server never got is sent again.
    async fn add_batch(&self, soql: &str) -> Result<BatchInfo> {
        let call = Call::new(
            "bulk_v1.batch",
            Auth::Session,
            self.client.async_path(&format!("job/{}/batch", self.id)),
        )
        .with_body(Method::POST, soql.to_owned(), "text/csv")
        .not_idempotent();
        let mut attempt = 0;
        loop {
            let err = match self.client.bytes(&call).await {
                Ok((headers, body)) => {
                    return parse_batches(&headers, &body)?
                        .into_iter()
                        .next()
                        .ok_or_else(|| Error::protocol("no batchInfo in add-batch answer"))
                }
                Err(err) => err,
            };
            attempt += 1;
            if !unanswered(&err) || attempt >= UNANSWERED_ATTEMPTS {
                return Err(err);
            }
            tracing::warn!(job_id = %self.id, error = %err, "add-batch unanswered; checking the job's batches");
            if let Some(arrived) = self
                .list_batches()
                .await?
                .into_iter()
                .nth(self.batches.len())
            {
                return Ok(arrived);
            }
        }
    }
}

/// How many times an unanswered create or add-batch is sent before the poll fails (and is retried
/// whole).
const UNANSWERED_ATTEMPTS: u32 = 4;

/// No answer came (a timeout, a dropped connection): the server may or may not have acted.
fn unanswered(err: &Error) -> bool {
    err.kind() == ErrorKind::Transient && err.status().is_none()
}

impl BulkV1Job {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn object(&self) -> &str {
        &self.object
    }

    /// The batches as submitted (ids in submission order; states as of submission).
    pub fn batches(&self) -> &[BatchInfo] {
        &self.batches
    }

    /// Every batch of the job as the server lists it now (with PK chunking, the chunk batches).
    pub async fn list_batches(&self) -> Result<Vec<BatchInfo>> {
        let call = Call::new(
            "bulk_v1.batches",
            Auth::Session,
            self.client.async_path(&format!("job/{}/batch", self.id)),
        );
        let (headers, body) = self.client.bytes(&call).await?;
        parse_batches(&headers, &body)
    }

    pub async fn batch_info(&self, batch_id: &str) -> Result<BatchInfo> {
        let path = self
            .client
            .async_path(&format!("job/{}/batch/{batch_id}", self.id));
        let (headers, body) = self
            .client
            .bytes(&Call::new("bulk_v1.batch_info", Auth::Session, path))
            .await?;
        parse_batches(&headers, &body)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::protocol("no batchInfo"))
    }

    /// Polls the batch until it is Completed, Failed or NotProcessed. A Failed batch is an error
    /// classified from its `stateMessage` (`QUERY_TIMEOUT` means split the window).
    pub async fn wait_batch(&self, batch_id: &str) -> Result<BatchInfo> {
        let config = self.client.config();
        let started = Instant::now();
        let mut poll = 0;
        loop {
            let info = self.batch_info(batch_id).await?;
            if let Some(err) = info.error() {
                return Err(err);
            }
            if info.state.is_terminal() {
                return Ok(info);
            }
            if started.elapsed() > config.bulk_timeout {
                return Err(Error::new(
                    ErrorKind::Transient,
                    format!("batch {batch_id} still {:?}", info.state),
                )
                .with_route("bulk_v1.batch"));
            }
            let wait = config.poll.interval(poll);
            tracing::trace!(batch_id, state = ?info.state, wait_ms = wait.as_millis() as u64, "batch not done");
            tokio::time::sleep(wait).await;
            poll += 1;
        }
    }

    /// The result ids of a completed batch.
    pub async fn result_ids(&self, batch_id: &str) -> Result<Vec<String>> {
        let path = self
            .client
            .async_path(&format!("job/{}/batch/{batch_id}/result", self.id));
        let (headers, body) = self
            .client
            .bytes(&Call::new("bulk_v1.result_list", Auth::Session, path))
            .await?;
        let text =
            std::str::from_utf8(&body).map_err(|_| Error::protocol("result list is not utf-8"))?;
        if is_json(&headers) {
            serde_json::from_str(text).map_err(|e| Error::protocol(format!("bad result list: {e}")))
        } else {
            xml::leaves(text, "result")
        }
    }

    /// Waits for the batch, then streams its records, result after result. A NotProcessed
    /// batch (the original of a PK-chunked job) yields nothing.
    pub fn stream_batch(&self, batch_id: &str) -> RecordStream {
        let job = self.clone();
        let batch_id = batch_id.to_owned();
        PagedCsv::after(self.client.clone(), async move {
            let info = job.wait_batch(&batch_id).await?;
            let result_ids = if info.state == BatchState::Completed {
                job.result_ids(&batch_id).await?
            } else {
                vec![]
            };
            let expected = (info.state == BatchState::Completed).then_some(info.records_processed);
            Ok((
                Pages::V1 {
                    job_id: job.id.clone(),
                    batch_id,
                    result_ids,
                    idx: 0,
                },
                expected,
            ))
        })
    }

    /// Streams every batch in submission order. With PK chunking, waits for Salesforce to split
    /// the submitted batches and streams the chunk batches instead, in the order listed.
    pub fn stream(&self) -> RecordStream {
        let job = self.clone();
        let ids = futures::stream::once(async move {
            let ids: Result<Vec<String>> = if job.pk_chunked {
                job.chunk_batch_ids().await
            } else {
                Ok(job.batches.iter().map(|b| b.id.clone()).collect())
            };
            (job, ids)
        });
        let batches = ids.flat_map(|(job, ids)| match ids {
            Ok(ids) => {
                Box::pin(futures::stream::iter(ids).flat_map(move |id| job.stream_batch(&id)))
                    as RecordStream
            }
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        });
        crate::stop_after_error(Box::pin(batches))
    }

    /// The batches PK chunking made: every listed batch but the submitted ones, once those have
    /// become NotProcessed (a submitted batch that ran anyway is kept).
    async fn chunk_batch_ids(&self) -> Result<Vec<String>> {
        let mut keep = Vec::new();
        for batch in &self.batches {
            let info = self.wait_batch(&batch.id).await?;
            if info.state != BatchState::NotProcessed {
                keep.push(batch.id.clone());
            }
        }
        let submitted: std::collections::HashSet<&str> =
            self.batches.iter().map(|b| b.id.as_str()).collect();
        keep.extend(
            self.list_batches()
                .await?
                .into_iter()
                .filter(|b| !submitted.contains(b.id.as_str()))
                .map(|b| b.id),
        );
        Ok(keep)
    }

    pub async fn abort(&self) -> Result<()> {
        self.set_state("Aborted").await
    }

    async fn set_state(&self, state: &str) -> Result<()> {
        let call = Call::new(
            "bulk_v1.job_state",
            Auth::Session,
            self.client.async_path(&format!("job/{}", self.id)),
        )
        .json(Method::POST, &serde_json::json!({ "state": state }))?;
        self.client.bytes(&call).await?;
        Ok(())
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"))
}

fn parse_job_id(headers: &HeaderMap, body: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(body).map_err(|_| Error::protocol("job answer is not utf-8"))?;
    if is_json(headers) {
        let doc: JobDoc =
            serde_json::from_str(text).map_err(|e| Error::protocol(format!("bad jobInfo: {e}")))?;
        Ok(doc.id)
    } else {
        xml::groups(text, "jobInfo")?
            .into_iter()
            .find_map(|mut g| g.remove("id"))
            .ok_or_else(|| Error::protocol("jobInfo without id"))
    }
}

fn parse_batches(headers: &HeaderMap, body: &[u8]) -> Result<Vec<BatchInfo>> {
    let text =
        std::str::from_utf8(body).map_err(|_| Error::protocol("batch answer is not utf-8"))?;
    if is_json(headers) {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::protocol(format!("bad batchInfo: {e}")))?;
        let items = match value.get("batchInfo") {
            Some(serde_json::Value::Array(items)) => items.clone(),
            _ => vec![value],
        };
        items
            .iter()
            .map(|item| {
                let map: HashMap<String, String> = item
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), crate::record::scalar_text(v).unwrap_or_default()))
                    .collect();
                BatchInfo::from_map(&map)
            })
            .collect()
    } else {
        xml::groups(text, "batchInfo")?
            .iter()
            .map(BatchInfo::from_map)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_batch_info_in_both_formats() {
        let mut json = HeaderMap::new();
        json.insert(
            reqwest::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        let b = parse_batches(
            &json,
            br#"{"id":"751A","jobId":"750A","state":"Failed","stateMessage":"InvalidBatch : QUERY_TIMEOUT: too long","numberRecordsProcessed":0}"#,
        )
        .unwrap();
        assert_eq!(b[0].state, BatchState::Failed);
        assert_eq!(b[0].error().unwrap().kind(), ErrorKind::QueryTimeout);

        let xml = HeaderMap::new();
        let b = parse_batches(&xml, br#"<batchInfo xmlns="x"><id>751B</id><jobId>750A</jobId><state>Completed</state><numberRecordsProcessed>42</numberRecordsProcessed></batchInfo>"#).unwrap();
        assert_eq!(b[0].records_processed, 42);
        assert!(b[0].error().is_none());
    }
}
