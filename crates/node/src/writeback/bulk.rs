//! The Bulk path of write-back: a claimed batch as Bulk API 2.0 ingest jobs, one per way of
//! sending (upsert on the upsert field, insert, update, delete), instead of composite calls.
//!
//! Idempotency: the job's row in `_driftless_writeback_job` (the job id, its CSV cells and the
//! trigger-log entry of each row) is committed after the job is created and before its upload
//! is closed, which is when Salesforce starts processing. A process killed after that finds the
//! row at start ([`resume`]), waits for the job and records its results: the rows are never sent
//! a second time. Killed before it, the job never ran (an Open job processes nothing) and the
//! entries are sent again like any claim in flight. Each row's outcome is recorded exactly as a
//! composite answer would be (the same [`send::judge`]).

use actix::Addr;
use driftless_core::ident::Ident;
use driftless_core::mapping::ResolvedMapping;
use driftless_core::writeback::{BulkJob, Retry};
use salesforce::{
    Cell, Client, ErrorKind, IngestCsv, IngestJob, IngestOperation, RowOutcome, SaveError,
    SaveResult,
};
use serde_json::Value;

use super::convert::{Kind, Writable};
use super::send::{self, backoff, Groups, Item, Outcome};
use crate::db_writer::{DbWriter, SaveBulkJob};

/// Sends `entries` as Bulk 2.0 jobs (one per kind of write that has entries).
pub async fn send(
    client: &Client,
    db: &Addr<DbWriter>,
    schema: &Ident,
    mapping: &ResolvedMapping,
    writable: &Writable,
    entries: Vec<driftless_core::writeback::ClaimedEntry>,
) -> Outcome {
    let (mut out, groups): (Outcome, Groups) = send::prepare(mapping, writable, entries);
    for (kind, items) in groups {
        if !items.is_empty() {
            out.extend(run_job(client, db, schema, mapping, kind, items).await);
        }
    }
    out
}

fn operation(kind: Kind, mapping: &ResolvedMapping) -> IngestOperation {
    match kind {
        Kind::Upsert => IngestOperation::Upsert {
            external_id_field: mapping.upsert_field.clone().unwrap_or_default(),
        },
        Kind::Create => IngestOperation::Insert,
        Kind::Update => IngestOperation::Update,
        Kind::Delete => IngestOperation::Delete,
    }
}

fn kind_of(operation: &str) -> Option<Kind> {
    match operation {
        "upsert" => Some(Kind::Upsert),
        "insert" => Some(Kind::Create),
        "update" => Some(Kind::Update),
        "delete" => Some(Kind::Delete),
        _ => None,
    }
}

fn operation_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Upsert => "upsert",
        Kind::Create => "insert",
        Kind::Update => "update",
        Kind::Delete => "delete",
    }
}

/// A field's JSON value (as a composite call would send it) as its CSV text; `None` is null.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The job's columns (the union of what its records set: `Id` first, then in mapping order) and
/// its CSV. A record that does not set a column leaves the field as it is.
fn csv_for(
    operation: &IngestOperation,
    mapping: &ResolvedMapping,
    items: &[Item],
) -> salesforce::Result<IngestCsv> {
    let present = |name: &str| {
        items
            .iter()
            .any(|(_, o)| o.as_ref().is_some_and(|o| o.fields.contains_key(name)))
    };
    let mut columns: Vec<&str> = Vec::new();
    if matches!(operation, IngestOperation::Delete) || present("Id") {
        columns.push("Id");
    }
    for f in &mapping.fields {
        if f.sf_name != "Id" && present(&f.sf_name) {
            columns.push(&f.sf_name);
        }
    }
    let mut csv = IngestCsv::new(operation, &columns);
    for (e, obj) in items {
        let Some(obj) = obj else {
            // A delete: the Id alone.
            csv.push_cells(&[e.sfid.as_deref().map_or(Cell::Null, Cell::Value)])?;
            continue;
        };
        // Outer `None`: the record does not set the column.
        let texts: Vec<Option<Option<String>>> = columns
            .iter()
            .map(|c| obj.fields.get(*c).map(text))
            .collect();
        let cells: Vec<Cell<'_>> = texts
            .iter()
            .map(|t| match t {
                None => Cell::Keep,
                Some(None) => Cell::Null,
                Some(Some(s)) => Cell::Value(s),
            })
            .collect();
        csv.push_cells(&cells)?;
    }
    Ok(csv)
}

/// Every item waits for a later attempt, or fails for good, as the job-level error says.
fn job_failed(items: &[Item], err: &salesforce::Error) -> Outcome {
    let mut out = Outcome::default();
    for (e, _) in items {
        out.retry.push(Retry {
            log_id: e.id,
            delay: match err.kind() {
                ErrorKind::QuotaExceeded => {
                    err.retry_after().unwrap_or_else(|| backoff(e.attempts))
                }
                _ => backoff(e.attempts),
            },
            message: format!("bulk write: {err}"),
        });
    }
    out
}

async fn run_job(
    client: &Client,
    db: &Addr<DbWriter>,
    schema: &Ident,
    mapping: &ResolvedMapping,
    kind: Kind,
    items: Vec<Item>,
) -> Outcome {
    let op = operation(kind, mapping);
    let csv = match csv_for(&op, mapping, &items) {
        Ok(c) => c,
        Err(e) => return job_failed(&items, &e),
    };
    let job = match client.create_ingest_job(&mapping.object_name, &op).await {
        Ok(j) => j,
        // Rejected as a whole (a field the job may not name...): the composite path finds the
        // record at fault and sends the others.
        Err(e) if e.action() == salesforce::Action::Fail => {
            tracing::warn!(object = %mapping.object_name, error = %e, "bulk write job refused; sending by composite calls");
            return send::send_groups(client, mapping, single_group(kind, items)).await;
        }
        Err(e) => return job_failed(&items, &e),
    };
    let record = BulkJob {
        job_id: job.id().to_owned(),
        table: mapping.table.as_str().to_owned(),
        operation: operation_name(kind).to_owned(),
        external_id_field: mapping
            .upsert_field
            .clone()
            .filter(|_| kind == Kind::Upsert),
        columns: csv.columns().to_vec(),
        rows: csv.rows().to_vec(),
        log_ids: items.iter().map(|(e, _)| e.id).collect(),
        sfids: items.iter().map(|(e, _)| e.sfid.clone()).collect(),
        attempts: items.iter().map(|(e, _)| e.attempts).collect(),
    };
    let saved = db
        .send(SaveBulkJob {
            schema: schema.clone(),
            job: record.clone(),
        })
        .await;
    if !matches!(saved, Ok(Ok(()))) {
        // Nothing remembers the job: it must never run.
        let _ = job.abort().await;
        let mut out = Outcome::default();
        out.unsent.extend(record.log_ids.iter().copied());
        tracing::warn!(object = %mapping.object_name, job_id = job.id(), "bulk write job not recorded; aborted");
        return out;
    }
    if let Err(e) = job.upload(&csv).await {
        let _ = job.abort().await;
        let mut out = if e.action() == salesforce::Action::Fail {
            tracing::warn!(object = %mapping.object_name, error = %e, "bulk write upload refused; sending by composite calls");
            send::send_groups(client, mapping, single_group(kind, items)).await
        } else {
            job_failed(&items, &e)
        };
        out.bulk_jobs.push(record.job_id);
        return out;
    }
    let closed = job.close().await.is_ok();
    settle(&job, &record, &csv, kind, !closed).await
}

fn single_group(kind: Kind, items: Vec<Item>) -> Groups {
    let mut groups: Groups = [
        (Kind::Upsert, Vec::new()),
        (Kind::Create, Vec::new()),
        (Kind::Update, Vec::new()),
        (Kind::Delete, Vec::new()),
    ];
    if let Some(g) = groups.iter_mut().find(|(k, _)| *k == kind) {
        g.1 = items;
    }
    groups
}

/// Waits for `job` and turns its results into outcomes for `record`'s entries. `check_open`: the
/// job may never have been closed (a close whose answer was lost, a crash before it): an Open job
/// is aborted and its rows go back unsent. When Salesforce cannot be asked, the job stays
/// recorded and `unsettled_jobs` says so.
async fn settle(
    job: &IngestJob,
    record: &BulkJob,
    csv: &IngestCsv,
    kind: Kind,
    check_open: bool,
) -> Outcome {
    let unsettled = |e: &salesforce::Error| {
        tracing::warn!(job_id = %record.job_id, error = %e, "bulk write job not settled yet");
        Outcome {
            unsettled_jobs: 1,
            ..Outcome::default()
        }
    };
    let all_unsent = || Outcome {
        unsent: record.log_ids.clone(),
        bulk_jobs: vec![record.job_id.clone()],
        ..Outcome::default()
    };
    if check_open {
        match job.info().await {
            Ok(info) if info.state == "Open" => {
                let aborted = job.abort().await.map(|i| i.state == "Aborted");
                if matches!(aborted, Ok(true)) {
                    return all_unsent();
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return forgotten(record),
            Err(e) => return unsettled(&e),
        }
    }
    let info = match job.wait().await {
        Ok(i) => i,
        Err(e) if e.kind() == ErrorKind::NotFound => return forgotten(record),
        Err(e) => return unsettled(&e),
    };
    if info.state == "Aborted" {
        // Someone else aborted it mid-way: what it did is not readable. Sending again is safe for
        // upserts, updates and deletes; a create is caught by the claim's attempt count.
        return forgotten(record);
    }
    let rows = match job.outcomes(csv).await {
        Ok(r) => r,
        Err(e) => return unsettled(&e),
    };
    let mut out = Outcome {
        bulk_jobs: vec![record.job_id.clone()],
        ..Outcome::default()
    };
    for (i, row) in rows.into_iter().enumerate() {
        let (log_id, sfid, attempts) = (
            record.log_ids[i],
            record.sfids.get(i).cloned().flatten(),
            record.attempts.get(i).copied().unwrap_or(1),
        );
        let result = match row {
            RowOutcome::Success { id, created } => SaveResult {
                id: Some(id).filter(|s| !s.is_empty()),
                success: true,
                created: Some(created),
                errors: Vec::new(),
            },
            RowOutcome::Failed { id, code, message } => SaveResult {
                id,
                success: false,
                created: None,
                errors: vec![SaveError {
                    status_code: code,
                    message,
                    fields: Vec::new(),
                }],
            },
            RowOutcome::Unprocessed => {
                out.unsent.push(log_id);
                continue;
            }
        };
        out.extend(send::judge(
            log_id,
            sfid.as_deref(),
            attempts,
            kind,
            &result,
        ));
    }
    if let Some(m) = info.error_message.filter(|m| !m.is_empty()) {
        tracing::warn!(job_id = %record.job_id, message = %m, "bulk write job ended {}", info.state);
    }
    out
}

/// The job is gone from Salesforce, or was aborted by someone else: its rows are tried again.
fn forgotten(record: &BulkJob) -> Outcome {
    Outcome {
        retry: record
            .log_ids
            .iter()
            .zip(&record.attempts)
            .map(|(id, a)| Retry {
                log_id: *id,
                delay: backoff(*a),
                message: format!("bulk job {} ended without readable results", record.job_id),
            })
            .collect(),
        bulk_jobs: vec![record.job_id.clone()],
        ..Outcome::default()
    }
}

/// Settles a job a previous run recorded (module docs).
pub async fn resume(client: &Client, record: &BulkJob) -> Outcome {
    let Some(kind) = kind_of(&record.operation) else {
        return forgotten(record);
    };
    let op = match kind {
        Kind::Upsert => IngestOperation::Upsert {
            external_id_field: record.external_id_field.clone().unwrap_or_default(),
        },
        Kind::Create => IngestOperation::Insert,
        Kind::Update => IngestOperation::Update,
        Kind::Delete => IngestOperation::Delete,
    };
    let csv = IngestCsv::from_cells(&op, record.columns.clone(), record.rows.clone());
    let job = client.ingest_job(&record.job_id);
    settle(&job, record, &csv, kind, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_operations_read_back() {
        for k in [Kind::Upsert, Kind::Create, Kind::Update, Kind::Delete] {
            assert_eq!(kind_of(operation_name(k)), Some(k));
        }
        assert_eq!(kind_of("hardDelete"), None);
    }
}
