//! Bulk API 2.0 write-back jobs in flight, kept in `_driftless_writeback_job` so that a restart
//! after a crash reads what a job did instead of sending its rows a second time.
//!
//! A job's row is written after the job is created and *before* its upload is closed (the
//! moment Salesforce starts processing), with the CSV cells it uploads and the trigger-log entry
//! of each row: the results can then be matched back to entries by the same cells. It is
//! deleted once the job's outcomes are recorded; a crash in between records them again, which
//! changes nothing (outcomes only settle `PENDING` entries).

use tokio_postgres::GenericClient;

use super::WritebackError;
use crate::ident::{Ident, QualifiedName};

/// One Bulk 2.0 ingest job write-back started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkJob {
    /// Salesforce's job id.
    pub job_id: String,
    /// The mapped table whose entries it sends.
    pub table: String,
    /// `insert`, `update`, `upsert` or `delete`.
    pub operation: String,
    /// The upsert's `externalIdFieldName`.
    pub external_id_field: Option<String>,
    pub columns: Vec<String>,
    /// Each row's cells as uploaded, in row order.
    pub rows: Vec<Vec<String>>,
    /// The `_trigger_log` id of each row.
    pub log_ids: Vec<i32>,
    /// The record's sfid when the entry was claimed, for each row (an update or delete keeps it).
    pub sfids: Vec<Option<String>>,
    /// Claims of each row's entry so far (the backoff of a retry).
    pub attempts: Vec<i32>,
}

pub(crate) fn job_table(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema, &Ident::internal("_driftless_writeback_job"))
}

/// The job table, for [`super::capture`]'s schema statements.
pub(super) fn create_sql(schema: &Ident) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
    job_id text PRIMARY KEY,
    table_name text NOT NULL,
    operation text NOT NULL,
    external_id_field text,
    columns text[] NOT NULL,
    cells text[] NOT NULL,
    log_ids integer[] NOT NULL,
    sfids text[] NOT NULL,
    attempts integer[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)",
        job_table(schema)
    )
}

/// Remembers `job` (committed when this returns).
pub async fn save_bulk_job(
    client: &impl GenericClient,
    schema: &Ident,
    job: &BulkJob,
) -> Result<(), WritebackError> {
    // Flat: one text[] of rows × columns cells, split again by the column count.
    let cells: Vec<&str> = job.rows.iter().flatten().map(String::as_str).collect();
    client
        .execute(
            &format!(
                "INSERT INTO {} (job_id, table_name, operation, external_id_field, columns, cells,
                                 log_ids, sfids, attempts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                job_table(schema)
            ),
            &[
                &job.job_id,
                &job.table,
                &job.operation,
                &job.external_id_field,
                &job.columns,
                &cells,
                &job.log_ids,
                &job.sfids,
                &job.attempts,
            ],
        )
        .await?;
    Ok(())
}

/// The jobs of `table` still to be settled, oldest first.
pub async fn open_bulk_jobs(
    client: &impl GenericClient,
    schema: &Ident,
    table: &Ident,
) -> Result<Vec<BulkJob>, WritebackError> {
    let rows = client
        .query(
            &format!(
                "SELECT job_id, table_name, operation, external_id_field, columns, cells, log_ids,
                        sfids, attempts
                 FROM {} WHERE table_name = $1 ORDER BY created_at, job_id",
                job_table(schema)
            ),
            &[&table.as_str()],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let columns: Vec<String> = r.get(4);
        let cells: Vec<String> = r.get(5);
        let job_id: String = r.get(0);
        let log_ids: Vec<i32> = r.get(6);
        let width = columns.len().max(1);
        if cells.len() != log_ids.len() * columns.len() {
            return Err(WritebackError::BadEntry {
                id: log_ids.first().copied().unwrap_or_default(),
                message: format!("bulk job {job_id}: stored cells do not fit its columns"),
            });
        }
        out.push(BulkJob {
            job_id,
            table: r.get(1),
            operation: r.get(2),
            external_id_field: r.get(3),
            rows: cells.chunks(width).map(<[String]>::to_vec).collect(),
            columns,
            log_ids,
            sfids: r.get(7),
            attempts: r.get(8),
        });
    }
    Ok(out)
}

/// Forgets a job whose outcomes are recorded.
pub async fn drop_bulk_job(
    client: &impl GenericClient,
    schema: &Ident,
    job_id: &str,
) -> Result<(), WritebackError> {
    client
        .execute(
            &format!("DELETE FROM {} WHERE job_id = $1", job_table(schema)),
            &[&job_id],
        )
        .await?;
    Ok(())
}
