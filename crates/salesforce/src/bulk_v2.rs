//! Bulk API 2.0 query jobs: create, poll with a growing interval, stream the CSV result pages
//! by locator, record by record.

use std::time::Instant;

use reqwest::Method;
use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};
use crate::http::{Auth, Call};
use crate::paged_csv::{PagedCsv, Pages};
use crate::{Client, QueryOperation, RecordStream};

/// The job document of `GET /jobs/query/{id}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkV2JobInfo {
    pub id: String,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub object: String,
    pub state: String,
    #[serde(default)]
    pub number_records_processed: Option<u64>,
    #[serde(default)]
    pub error_message: Option<String>,
}

/// A Bulk 2.0 query job.
#[derive(Clone, Debug)]
pub struct BulkV2Job {
    client: Client,
    id: String,
}

impl Client {
    /// Creates a Bulk 2.0 `query`/`queryAll` job (CSV, comma, LF).
    pub async fn bulk_v2_query(&self, soql: &str, operation: QueryOperation) -> Result<BulkV2Job> {
        let body = serde_json::json!({
            "operation": operation.as_str(),
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        });
        let call = Call::new("bulk_v2.job", Auth::Bearer, self.data_path("jobs/query"))
            .json(Method::POST, &body)?
            .not_idempotent();
        let info: BulkV2JobInfo = self.json(&call).await?;
        tracing::info!(job_id = %info.id, "bulk v2 job created");
        Ok(BulkV2Job {
            client: self.clone(),
            id: info.id,
        })
    }

    /// A handle on an existing Bulk 2.0 query job, e.g. one created before a restart.
    pub fn bulk_v2_job(&self, id: &str) -> BulkV2Job {
        BulkV2Job {
            client: self.clone(),
            id: id.to_owned(),
        }
    }
}

impl BulkV2Job {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub async fn info(&self) -> Result<BulkV2JobInfo> {
        let path = self.client.data_path(&format!("jobs/query/{}", self.id));
        self.client
            .json(&Call::new("bulk_v2.job_info", Auth::Bearer, path))
            .await
    }

    /// Polls until `JobComplete`. `Failed` and `Aborted` are errors classified from the job's
    /// `errorMessage`.
    pub async fn wait(&self) -> Result<BulkV2JobInfo> {
        let config = self.client.config();
        let started = Instant::now();
        let mut poll = 0;
        loop {
            let info = self.info().await?;
            match info.state.as_str() {
                "JobComplete" => return Ok(info),
                "Failed" | "Aborted" => {
                    let message = info
                        .error_message
                        .clone()
                        .unwrap_or_else(|| format!("job {}", info.state));
                    return Err(Error::from_bulk_state_message(&message).with_route("bulk_v2.job"));
                }
                _ => {}
            }
            if started.elapsed() > config.bulk_timeout {
                return Err(Error::new(
                    ErrorKind::Transient,
                    format!("job {} still {}", self.id, info.state),
                )
                .with_route("bulk_v2.job"));
            }
            let wait = config.poll.interval(poll);
            tracing::trace!(job_id = %self.id, state = %info.state, wait_ms = wait.as_millis() as u64, "job not done");
            tokio::time::sleep(wait).await;
            poll += 1;
        }
    }

    /// Waits for the job, then streams every result page by locator.
    pub fn stream(&self) -> RecordStream {
        let job = self.clone();
        let page_size = self.client.config().bulk_v2_page_size.max(1);
        PagedCsv::after(self.client.clone(), async move {
            let info = job.wait().await?;
            Ok((
                Pages::V2 {
                    job_id: job.id.clone(),
                    locator: None,
                    page_size,
                    last: false,
                },
                info.number_records_processed,
            ))
        })
    }

    pub async fn abort(&self) -> Result<()> {
        let path = self.client.data_path(&format!("jobs/query/{}", self.id));
        let call = Call::new("bulk_v2.job_state", Auth::Bearer, path)
            .json(Method::PATCH, &serde_json::json!({"state": "Aborted"}))?;
        self.client.bytes(&call).await.map(|_| ())
    }

    /// Deletes the job and its results on the server.
    pub async fn delete(&self) -> Result<()> {
        let path = self.client.data_path(&format!("jobs/query/{}", self.id));
        let mut call = Call::new("bulk_v2.job_delete", Auth::Bearer, path);
        call.method = Method::DELETE;
        self.client.bytes(&call).await.map(|_| ())
    }
}
