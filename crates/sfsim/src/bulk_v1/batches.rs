//! Query batches: submission, status, and the background processing that takes each batch
//! Queued → InProgress → Completed | Failed (or NotProcessed once PK chunking split it).

use super::pk_chunking;
use super::{
    error, format, invalid_job, sf_error_message, Batch, BatchInner, BatchResults, BatchState, Job,
    JobState,
};
use crate::http::AppState;
use crate::soql::{self, Plan};
use crate::store::{now_secs, Record};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use parking_lot::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a batch sits in Queued before it starts: long enough that clients see the state,
/// short enough that small queries finish within a poll or two.
const QUEUE_DELAY: Duration = Duration::from_millis(25);
/// Rows per result file. Salesforce splits at about 1 GB; splitting by rows keeps the files of
/// large results apart the same way.
pub const ROWS_PER_RESULT: usize = 500_000;

pub async fn add(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (_, job_id) = path.into_inner();
    let Some(job) = state.bulk_v1.job(&job_id) else {
        return invalid_job(&req, &job_id);
    };
    let soql = match std::str::from_utf8(&body) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        Ok(_) => {
            return error(
                &req,
                StatusCode::BAD_REQUEST,
                "InvalidBatch",
                "The batch must contain a query",
            )
        }
        Err(_) => {
            return error(
                &req,
                StatusCode::BAD_REQUEST,
                "InvalidBatch",
                "The query is not valid UTF-8",
            )
        }
    };
    let now = now_secs();
    let batch = Arc::new(Batch {
        id: state.bulk_v1.batch_id(),
        job_id: job.id.clone(),
        soql,
        created: now,
        chunk_plan: None,
        inner: Mutex::new(BatchInner::queued(now)),
    });
    {
        let mut inner = job.inner.lock();
        if inner.state != JobState::Open {
            drop(inner);
            return error(
                &req,
                StatusCode::BAD_REQUEST,
                "InvalidJobState",
                &format!(
                    "Unable to add a batch to job {}: the job is not Open",
                    job.id
                ),
            );
        }
        inner.batches.push(batch.clone());
    }
    state.stats.bulk_v1_batches.fetch_add(1, Relaxed);
    spawn(state.clone(), job.clone(), batch.clone());
    format::batch_info(&job, &batch, StatusCode::CREATED)
}

pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (_, job_id) = path.into_inner();
    match state.bulk_v1.job(&job_id) {
        Some(job) => format::batch_list(&job),
        None => invalid_job(&req, &job_id),
    }
}

pub async fn info(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (_, job_id, batch_id) = path.into_inner();
    match find(&state, &req, &job_id, &batch_id) {
        Ok((job, batch)) => format::batch_info(&job, &batch, StatusCode::OK),
        Err(resp) => *resp,
    }
}

/// The query a batch was submitted with (or, for a PK chunk, the query it runs).
pub async fn request(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (_, job_id, batch_id) = path.into_inner();
    match find(&state, &req, &job_id, &batch_id) {
        Ok((_, batch)) => HttpResponse::Ok()
            .content_type("text/plain")
            .body(batch.soql.clone()),
        Err(resp) => *resp,
    }
}

pub(super) fn find(
    state: &AppState,
    req: &HttpRequest,
    job_id: &str,
    batch_id: &str,
) -> Result<(Arc<Job>, Arc<Batch>), Box<HttpResponse>> {
    let job = state
        .bulk_v1
        .job(job_id)
        .ok_or_else(|| invalid_job(req, job_id))?;
    let wanted = crate::ids::normalize(batch_id);
    let batch = job
        .inner
        .lock()
        .batches
        .iter()
        .find(|b| Some(&b.id) == wanted.as_ref())
        .cloned();
    match batch {
        Some(b) => Ok((job, b)),
        None => Err(Box::new(error(
            req,
            StatusCode::BAD_REQUEST,
            "InvalidBatch",
            &format!("Unable to find batch for id: {batch_id}"),
        ))),
    }
}

fn spawn(state: web::Data<AppState>, job: Arc<Job>, batch: Arc<Batch>) {
    tokio::spawn(process(state, job, batch));
}

/// What running a batch's query came to.
enum Outcome {
    Rows(Arc<Plan>, Vec<Record>),
    /// PK chunking: the Id ranges to run as separate batches.
    Chunks(Box<Plan>, Vec<(String, String)>),
    Failed(String),
}

async fn process(state: web::Data<AppState>, job: Arc<Job>, batch: Arc<Batch>) {
    tokio::time::sleep(QUEUE_DELAY).await;
    {
        let mut b = batch.inner.lock();
        if b.state != BatchState::Queued {
            return; // aborted while queued
        }
        b.state = BatchState::InProgress;
        b.modstamp = now_secs();
    }
    let started = Instant::now();
    let outcome = {
        let (state, job, batch) = (state.clone(), job.clone(), batch.clone());
        tokio::task::spawn_blocking(move || run(&state, &job, &batch))
            .await
            .unwrap_or_else(|e| Outcome::Failed(format!("InternalServerError : {e}")))
    };
    match outcome {
        Outcome::Failed(message) => {
            finish(&batch, started, BatchState::Failed, Some(message), 0, None)
        }
        Outcome::Chunks(plan, ranges) => split(&state, &job, &batch, plan, ranges, started),
        Outcome::Rows(plan, rows) => {
            let n = rows.len();
            if let Some(rate) = state.config.bulk_rows_per_sec.filter(|r| *r > 0) {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
            }
            let rows = Arc::new(rows);
            let parts = if n == 0 {
                vec![(state.bulk_v1.result_id(), 0..0)]
            } else {
                (0..n)
                    .step_by(ROWS_PER_RESULT)
                    .map(|lo| (state.bulk_v1.result_id(), lo..(lo + ROWS_PER_RESULT).min(n)))
                    .collect()
            };
            let results = Arc::new(BatchResults { plan, rows, parts });
            finish(
                &batch,
                started,
                BatchState::Completed,
                None,
                n as u64,
                Some(results),
            );
        }
    }
}

fn finish(
    batch: &Batch,
    started: Instant,
    state: BatchState,
    message: Option<String>,
    processed: u64,
    results: Option<Arc<BatchResults>>,
) {
    let mut b = batch.inner.lock();
    b.state = state;
    b.message = message;
    b.processed = processed;
    b.processing_ms = started.elapsed().as_millis() as u64;
    b.modstamp = now_secs();
    b.results = results;
}

/// Runs on a blocking thread: plans and executes the batch's query against committed data.
fn run(state: &AppState, job: &Job, batch: &Batch) -> Outcome {
    let failed = |code: &str, message: &str| {
        Outcome::Failed(format!(
            "InvalidBatch : Failed to process query: {code}: {message}"
        ))
    };
    if state.faults.read().batch_fails(&mut rand::thread_rng()) {
        return Outcome::Failed("InternalServerError : Retried more than 15 times".into());
    }
    let org = &*state.org;
    let plan = match &batch.chunk_plan {
        Some(p) => p.clone(),
        None => match soql::plan(org, &batch.soql) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::Failed(format!(
                    "InvalidBatch : Failed to process query: {}",
                    sf_error_message(&e)
                ))
            }
        },
    };
    if plan.object != job.object {
        return failed(
            "INVALID_TYPE",
            &format!(
                "The query is on {} but the job is on {}",
                plan.object_name(org),
                org.schema.objects[job.object].name
            ),
        );
    }
    if plan.is_count {
        return failed(
            "FUNCTIONALITY_NOT_ENABLED",
            "Aggregate queries are not supported by the Bulk API",
        );
    }
    if plan.offset.is_some() {
        return failed(
            "FUNCTIONALITY_NOT_ENABLED",
            "OFFSET is not supported by the Bulk API",
        );
    }
    if batch.chunk_plan.is_none() {
        if let Some(pk) = &job.pk_chunking {
            if plan.has_order_by || plan.limit.is_some() {
                return failed(
                    "FUNCTIONALITY_NOT_ENABLED",
                    "PK chunking supports only queries without ORDER BY or LIMIT",
                );
            }
            return Outcome::Chunks(Box::new(plan), pk_chunking::ranges(org, job.object, pk));
        }
    }
    let rows = plan.execute(org, job.operation == super::Operation::QueryAll);
    if let Some(e) = state.query_timeout(rows.len()) {
        return failed(e.code, &e.message);
    }
    Outcome::Rows(Arc::new(plan), rows)
}

/// Adds one batch per Id range and marks the submitted batch NotProcessed, in one step under
/// the job lock: a client listing batches never sees the original finished before its chunks
/// exist (tap-salesforce stops polling when nothing is Queued or InProgress).
fn split(
    state: &web::Data<AppState>,
    job: &Arc<Job>,
    original: &Batch,
    plan: Box<Plan>,
    ranges: Vec<(String, String)>,
    started: Instant,
) {
    let now = now_secs();
    let chunks: Vec<Arc<Batch>> = ranges
        .iter()
        .map(|(lo, hi)| {
            Arc::new(Batch {
                id: state.bulk_v1.batch_id(),
                job_id: job.id.clone(),
                soql: pk_chunking::chunk_query(&original.soql, lo, hi),
                created: now,
                chunk_plan: Some(plan.with_id_range(Some(lo), Some(hi))),
                inner: Mutex::new(BatchInner::queued(now)),
            })
        })
        .collect();
    {
        let mut inner = job.inner.lock();
        inner.batches.extend(chunks.iter().cloned());
        let message = format!(
            "Batch split into {} PK chunk batches; their results are the results of this query",
            chunks.len()
        );
        finish(
            original,
            started,
            BatchState::NotProcessed,
            Some(message),
            0,
            None,
        );
    }
    state
        .stats
        .bulk_v1_batches
        .fetch_add(chunks.len() as u64, Relaxed);
    for c in chunks {
        spawn(state.clone(), job.clone(), c);
    }
}
