//! Bulk API 2.0 ingest jobs (`/jobs/ingest`): build the CSV row by row ([`IngestCsv`]), create a
//! job, upload, close with `UploadComplete`, poll with the client's growing interval until the job
//! is `JobComplete`, `Failed` or `Aborted`, then match `successfulResults` and `failedResults` back
//! to the rows that were sent. A row in neither was not processed.
//!
//! Salesforce does not keep results in upload order, and echoes each row's uploaded fields after
//! `sf__Id`/`sf__Created` (or `sf__Error`): rows are matched by those fields. Rows with identical
//! fields are interchangeable, so matching them in any order gives each its true outcome.
//! A job survives the process that created it: [`Client::ingest_job`] with its id fetches the
//! same results again, which is how a caller that crashed mid-job learns what the job did.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use reqwest::Method;
use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};
use crate::http::{Auth, Call};
use crate::Client;

/// What a job does with its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOperation {
    Insert,
    Update,
    /// By this External ID (or `Id`) field, which must be one of the columns.
    Upsert {
        external_id_field: String,
    },
    Delete,
}

impl IngestOperation {
    fn name(&self) -> &'static str {
        match self {
            IngestOperation::Insert => "insert",
            IngestOperation::Update => "update",
            IngestOperation::Upsert { .. } => "upsert",
            IngestOperation::Delete => "delete",
        }
    }

    /// Inserts read an empty cell as null; updates and upserts read it as "leave as is", so a
    /// null is sent as `#N/A`.
    fn null_cell(&self) -> &'static str {
        match self {
            IngestOperation::Insert => "",
            _ => "#N/A",
        }
    }
}

/// One cell of a row pushed with [`IngestCsv::push_cells`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell<'a> {
    Value(&'a str),
    /// Sets the field null (`#N/A` for updates and upserts, empty for inserts).
    Null,
    /// Leaves the field as it is (an empty cell); on an insert the field stays unset.
    Keep,
}

/// The CSV of one job, built as rows are pushed (comma-delimited, LF, every field quoted); it
/// remembers each row's cells to match results back.
#[derive(Debug)]
pub struct IngestCsv {
    columns: Vec<String>,
    null: &'static str,
    buf: BytesMut,
    rows: Vec<Vec<String>>,
}

impl IngestCsv {
    pub fn new(operation: &IngestOperation, columns: &[&str]) -> IngestCsv {
        let mut csv = IngestCsv {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            null: operation.null_cell(),
            buf: BytesMut::with_capacity(64 * 1024),
            rows: Vec::new(),
        };
        let header = csv.columns.clone();
        csv.write_line(header.iter().map(String::as_str));
        csv
    }

    /// Appends a row; `values` are in column order, `None` is null. Returns the row's index.
    pub fn push(&mut self, values: &[Option<&str>]) -> Result<usize> {
        if values.len() != self.columns.len() {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "ingest row has {} values for {} columns",
                    values.len(),
                    self.columns.len()
                ),
            ));
        }
        let null = self.null;
        // Salesforce keeps no empty strings: an empty value is null.
        let cells: Vec<String> = values
            .iter()
            .map(|v| match v {
                Some(s) if !s.is_empty() => (*s).to_owned(),
                _ => null.to_owned(),
            })
            .collect();
        self.write_line(cells.iter().map(String::as_str));
        self.rows.push(cells);
        Ok(self.rows.len() - 1)
    }

    /// Appends a row whose cells may also leave a field as it is ([`Cell::Keep`]): one job can
    /// then carry records that change different fields. Returns the row's index.
    pub fn push_cells(&mut self, cells: &[Cell<'_>]) -> Result<usize> {
        if cells.len() != self.columns.len() {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "ingest row has {} values for {} columns",
                    cells.len(),
                    self.columns.len()
                ),
            ));
        }
        let null = self.null;
        let cells: Vec<String> = cells
            .iter()
            .map(|c| match c {
                Cell::Value(s) if !s.is_empty() => (*s).to_owned(),
                // Salesforce keeps no empty strings: an empty value is null.
                Cell::Value(_) | Cell::Null => null.to_owned(),
                Cell::Keep => String::new(),
            })
            .collect();
        self.write_line(cells.iter().map(String::as_str));
        self.rows.push(cells);
        Ok(self.rows.len() - 1)
    }

    /// The same CSV again from its columns and its rows' cells as [`IngestCsv::rows`] gives them
    /// (stored by a caller that must match a job's results after a restart).
    pub fn from_cells(
        operation: &IngestOperation,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    ) -> IngestCsv {
        let mut csv = IngestCsv {
            columns,
            null: operation.null_cell(),
            buf: BytesMut::with_capacity(64 * 1024),
            rows: Vec::with_capacity(rows.len()),
        };
        let header = csv.columns.clone();
        csv.write_line(header.iter().map(String::as_str));
        for cells in rows {
            csv.write_line(cells.iter().map(String::as_str));
            csv.rows.push(cells);
        }
        csv
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Each row's cells as uploaded.
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes of CSV so far, header included (Salesforce takes up to 100 MB per upload).
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    fn write_line<'a>(&mut self, cells: impl Iterator<Item = &'a str>) {
        for (i, c) in cells.enumerate() {
            if i > 0 {
                self.buf.put_u8(b',');
            }
            self.buf.put_u8(b'"');
            for part in c.split('"').enumerate() {
                if part.0 > 0 {
                    self.buf.put_slice(b"\"\"");
                }
                self.buf.put_slice(part.1.as_bytes());
            }
            self.buf.put_u8(b'"');
        }
        self.buf.put_u8(b'\n');
    }
}

/// The job document of `GET /jobs/ingest/{id}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestJobInfo {
    pub id: String,
    pub state: String,
    #[serde(default)]
    pub number_records_processed: Option<u64>,
    #[serde(default)]
    pub number_records_failed: Option<u64>,
    #[serde(default)]
    pub error_message: Option<String>,
}

/// What became of one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowOutcome {
    Success {
        id: String,
        created: bool,
    },
    /// `code` is Salesforce's status code (`REQUIRED_FIELD_MISSING`...), `message` its text.
    Failed {
        id: Option<String>,
        code: String,
        message: String,
    },
    /// The job ended (failed or aborted) before the row was processed: safe to send again.
    Unprocessed,
}

/// A finished job and each row's outcome, in the order the rows were pushed.
#[derive(Clone, Debug)]
pub struct IngestReport {
    pub job: IngestJobInfo,
    pub rows: Vec<RowOutcome>,
}

/// A Bulk 2.0 ingest job.
#[derive(Clone, Debug)]
pub struct IngestJob {
    client: Client,
    id: String,
}

impl Client {
    /// Creates an ingest job for `object` (CSV, comma, LF).
    pub async fn create_ingest_job(
        &self,
        object: &str,
        operation: &IngestOperation,
    ) -> Result<IngestJob> {
        let mut body = serde_json::json!({
            "object": object,
            "operation": operation.name(),
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        });
        if let IngestOperation::Upsert { external_id_field } = operation {
            body["externalIdFieldName"] = serde_json::json!(external_id_field);
        }
        let call = Call::new(
            "bulk_v2.ingest",
            Auth::Bearer,
            self.data_path("jobs/ingest"),
        )
        .json(Method::POST, &body)?
        .not_idempotent();
        let info: IngestJobInfo = self.json(&call).await?;
        tracing::info!(job_id = %info.id, object, operation = operation.name(), "bulk v2 ingest job created");
        Ok(IngestJob {
            client: self.clone(),
            id: info.id,
        })
    }

    /// A handle on an existing ingest job, e.g. one created before a restart.
    pub fn ingest_job(&self, id: &str) -> IngestJob {
        IngestJob {
            client: self.clone(),
            id: id.to_owned(),
        }
    }

    /// One whole job: create, upload `csv`, close, wait, match results. A job that ends `Failed`
    /// or `Aborted` is not an error here: its rows come back `Unprocessed` (or with the outcome
    /// they got before it stopped) and `job.error_message` says why.
    pub async fn bulk_ingest(
        &self,
        object: &str,
        operation: &IngestOperation,
        csv: IngestCsv,
    ) -> Result<IngestReport> {
        let job = self.create_ingest_job(object, operation).await?;
        job.upload(&csv).await?;
        job.close().await?;
        let info = job.wait().await?;
        let rows = job.outcomes(&csv).await?;
        Ok(IngestReport { job: info, rows })
    }
}

impl IngestJob {
    pub fn id(&self) -> &str {
        &self.id
    }

    fn path(&self, tail: &str) -> String {
        self.client
            .data_path(&format!("jobs/ingest/{}{tail}", self.id))
    }

    /// `PUT …/batches` with the job's CSV. Safe to resend: the job is still Open until closed.
    pub async fn upload(&self, csv: &IngestCsv) -> Result<()> {
        let body: Bytes = csv.buf.clone().freeze();
        let call = Call::new("bulk_v2.ingest_upload", Auth::Bearer, self.path("/batches"))
            .with_body(Method::PUT, body, "text/csv");
        self.client.bytes(&call).await.map(|_| ())
    }

    async fn set_state(&self, state: &str) -> Result<IngestJobInfo> {
        let call = Call::new("bulk_v2.ingest_state", Auth::Bearer, self.path(""))
            .json(Method::PATCH, &serde_json::json!({ "state": state }))?;
        self.client.json(&call).await
    }

    /// `UploadComplete`: processing starts.
    pub async fn close(&self) -> Result<IngestJobInfo> {
        self.set_state("UploadComplete").await
    }

    pub async fn abort(&self) -> Result<IngestJobInfo> {
        self.set_state("Aborted").await
    }

    pub async fn info(&self) -> Result<IngestJobInfo> {
        self.client
            .json(&Call::new(
                "bulk_v2.ingest_info",
                Auth::Bearer,
                self.path(""),
            ))
            .await
    }

    /// Polls, with the client's growing interval, until the job is JobComplete, Failed or
    /// Aborted.
    pub async fn wait(&self) -> Result<IngestJobInfo> {
        let config = self.client.config();
        let started = Instant::now();
        let mut poll = 0;
        loop {
            let info = self.info().await?;
            if matches!(info.state.as_str(), "JobComplete" | "Failed" | "Aborted") {
                return Ok(info);
            }
            if started.elapsed() > config.bulk_timeout {
                return Err(Error::new(
                    ErrorKind::Transient,
                    format!("ingest job {} still {}", self.id, info.state),
                )
                .with_route("bulk_v2.ingest"));
            }
            tokio::time::sleep(config.poll.interval(poll)).await;
            poll += 1;
        }
    }

    async fn result_rows(&self, kind: &str) -> Result<Vec<csv::StringRecord>> {
        let call = Call::new(
            "bulk_v2.ingest_results",
            Auth::Bearer,
            self.path(&format!("/{kind}")),
        )
        .long_running();
        let (_, body) = self.client.bytes(&call).await?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(body.as_ref());
        reader
            .records()
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::protocol(format!("unreadable ingest {kind}")).with_source(e))
    }

    /// Each row of `csv` (the CSV this job was given) with its outcome, from the job's results.
    pub async fn outcomes(&self, csv: &IngestCsv) -> Result<Vec<RowOutcome>> {
        let mut by_cells: HashMap<&[String], VecDeque<usize>> = HashMap::new();
        for (i, cells) in csv.rows.iter().enumerate() {
            by_cells.entry(cells.as_slice()).or_default().push_back(i);
        }
        let mut out = vec![RowOutcome::Unprocessed; csv.rows.len()];
        let mut take = |r: &csv::StringRecord| -> Option<usize> {
            let cells: Vec<String> = r.iter().skip(2).map(str::to_owned).collect();
            by_cells.get_mut(cells.as_slice())?.pop_front()
        };
        for r in self.result_rows("successfulResults").await? {
            let Some(i) = take(&r) else {
                return Err(unmatched(&self.id, "successfulResults"));
            };
            out[i] = RowOutcome::Success {
                id: r.get(0).unwrap_or_default().to_owned(),
                created: r.get(1) == Some("true"),
            };
        }
        for r in self.result_rows("failedResults").await? {
            let Some(i) = take(&r) else {
                return Err(unmatched(&self.id, "failedResults"));
            };
            let (code, message) = split_error(r.get(1).unwrap_or_default());
            out[i] = RowOutcome::Failed {
                id: r.get(0).filter(|s| !s.is_empty()).map(str::to_owned),
                code,
                message,
            };
        }
        Ok(out)
    }
}

fn unmatched(job: &str, kind: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("ingest job {job}: a row of {kind} matches no row that was uploaded"),
    )
    .with_route("bulk_v2.ingest_results")
}

/// `CODE:message:Field1,Field2 --` → (code, message).
fn split_error(e: &str) -> (String, String) {
    let e = e.trim_end().trim_end_matches("--").trim_end();
    let Some((code, rest)) = e.split_once(':') else {
        return (String::new(), e.to_owned());
    };
    let message = match rest.rsplit_once(':') {
        // The trailing part lists fields (no spaces); a colon inside the message stays.
        Some((m, fields)) if !fields.contains(' ') => m,
        _ => rest,
    };
    (code.to_owned(), message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_quoted_and_nulls_follow_the_operation() {
        let mut c = IngestCsv::new(&IngestOperation::Update, &["Id", "Name"]);
        c.push(&[Some("001"), Some("say \"hi\", ok")]).unwrap();
        c.push(&[Some("002"), None]).unwrap();
        assert!(c.push(&[Some("003")]).is_err());
        assert_eq!(
            std::str::from_utf8(&c.buf).unwrap(),
            "\"Id\",\"Name\"\n\"001\",\"say \"\"hi\"\", ok\"\n\"002\",\"#N/A\"\n"
        );
        let mut s = IngestCsv::new(&IngestOperation::Update, &["Id", "Name", "Notes"]);
        s.push_cells(&[Cell::Value("001"), Cell::Keep, Cell::Null])
            .unwrap();
        assert!(s.push_cells(&[Cell::Keep]).is_err());
        assert_eq!(
            std::str::from_utf8(&s.buf).unwrap(),
            "\"Id\",\"Name\",\"Notes\"\n\"001\",\"\",\"#N/A\"\n"
        );
        let again = IngestCsv::from_cells(
            &IngestOperation::Update,
            s.columns().to_vec(),
            s.rows().to_vec(),
        );
        assert_eq!(again.buf, s.buf);
        let mut i = IngestCsv::new(&IngestOperation::Insert, &["Name"]);
        i.push(&[None]).unwrap();
        assert_eq!(i.rows[0], vec![String::new()]);
    }

    #[test]
    fn errors_split_into_code_and_message() {
        assert_eq!(
            split_error("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"),
            (
                "REQUIRED_FIELD_MISSING".into(),
                "Required fields are missing: [Name]".into()
            )
        );
        assert_eq!(
            split_error("FIELD_CUSTOM_VALIDATION_EXCEPTION:Amount must be positive: -1: --"),
            (
                "FIELD_CUSTOM_VALIDATION_EXCEPTION".into(),
                "Amount must be positive: -1".into()
            )
        );
    }
}
