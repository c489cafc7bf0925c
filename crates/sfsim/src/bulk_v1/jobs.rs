//! `POST /job` (create), `GET /job/{id}` (info), `POST /job/{id}` (close or abort).

use super::format::{self, Scalar};
use super::pk_chunking;
use super::{error, invalid_job, BatchState, ContentType, Job, JobInner, JobState, Operation};
use crate::http::AppState;
use crate::store::now_secs;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use parking_lot::Mutex;
use std::sync::atomic::Ordering::Relaxed;

const INGEST_OPERATIONS: [&str; 5] = ["insert", "update", "upsert", "delete", "hardDelete"];

pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let version = path.into_inner();
    let json = format::request_is_json(&req);
    let bad = |code: &str, message: &str| error(&req, StatusCode::BAD_REQUEST, code, message);
    let fields = match format::parse_job_body(&body, json) {
        Ok(f) => f,
        Err((code, message)) => return bad(code, &message),
    };
    let text = |k: &str| fields.get(k).map(Scalar::as_text);
    let operation = match text("operation").as_deref() {
        Some("query") => Operation::Query,
        Some("queryAll") => Operation::QueryAll,
        Some(op) if INGEST_OPERATIONS.contains(&op) => {
            return bad(
                "InvalidJob",
                &format!(
                    "Bulk API 1.0 {op} jobs are not supported by this simulator: only query and queryAll jobs are"
                ),
            )
        }
        // Operations are case-sensitive: `INSERT` or `Query` is as invalid as a typo.
        Some(op) => return bad("InvalidJob", &format!("Invalid operation: {op}")),
        None => return bad("InvalidJob", "Job must specify an operation"),
    };
    let Some(object_name) = text("object") else {
        return bad("InvalidJob", "Job must specify an object");
    };
    let Ok(object) = state.org.object_index(&object_name) else {
        return bad(
            "InvalidJob",
            &format!("Unable to find object: {object_name}"),
        );
    };
    // The documented default content type is XML.
    let content_type = match text("contentType").as_deref() {
        None | Some("XML") => ContentType::Xml,
        Some("CSV") => ContentType::Csv,
        Some("JSON") => ContentType::Json,
        Some(other) => return bad("InvalidJob", &format!("Invalid contentType: {other}")),
    };
    // simple-salesforce sends its use_serial flag as the integer 0/1.
    let concurrency = match text("concurrencyMode").as_deref() {
        None | Some("Parallel") | Some("0") => "Parallel",
        Some("Serial") | Some("1") => "Serial",
        Some(other) => return bad("InvalidJob", &format!("Invalid concurrencyMode: {other}")),
    };
    let pk_chunking = match req
        .headers()
        .get("sforce-enable-pkchunking")
        .map(|v| v.to_str())
    {
        None => None,
        Some(Err(_)) => return bad("InvalidJob", "Sforce-Enable-PKChunking is not valid text"),
        Some(Ok(v)) => match pk_chunking::parse_header(v) {
            Ok(pk) => pk,
            Err(message) => return bad("InvalidJob", &message),
        },
    };
    let now = now_secs();
    let job = state.bulk_v1.insert_job(|id| Job {
        id,
        object,
        operation,
        content_type,
        concurrency,
        api_version: version,
        created: now,
        pk_chunking,
        inner: Mutex::new(JobInner {
            state: JobState::Open,
            modstamp: now,
            batches: Vec::new(),
        }),
    });
    state.stats.bulk_v1_jobs.fetch_add(1, Relaxed);
    format::job_info(&job, &state.org, json, StatusCode::CREATED)
}

pub async fn info(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (_, job_id) = path.into_inner();
    match state.bulk_v1.job(&job_id) {
        Some(job) => format::job_info(
            &job,
            &state.org,
            format::request_is_json(&req),
            StatusCode::OK,
        ),
        None => invalid_job(&req, &job_id),
    }
}

/// Close (`Closed`) or abort (`Aborted`). Closing only stops new batches; queued batches still
/// run, since clients close right after submitting. Aborting stops batches that have not
/// started.
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (_, job_id) = path.into_inner();
    let json = format::request_is_json(&req);
    let Some(job) = state.bulk_v1.job(&job_id) else {
        return invalid_job(&req, &job_id);
    };
    let fields = match format::parse_job_body(&body, json) {
        Ok(f) => f,
        Err((code, message)) => return error(&req, StatusCode::BAD_REQUEST, code, &message),
    };
    let target = match fields.get("state").map(Scalar::as_text).as_deref() {
        Some("Closed") => JobState::Closed,
        Some("Aborted") => JobState::Aborted,
        Some(other) => {
            return error(
                &req,
                StatusCode::BAD_REQUEST,
                "InvalidJobState",
                &format!("Invalid state: {other}"),
            )
        }
        None => {
            return error(
                &req,
                StatusCode::BAD_REQUEST,
                "InvalidJobState",
                "The request must specify a state",
            )
        }
    };
    {
        let mut inner = job.inner.lock();
        match (inner.state, target) {
            (JobState::Open, _)
            | (JobState::Closed, JobState::Closed)
            | (JobState::Closed, JobState::Aborted) => {}
            (JobState::Aborted, JobState::Aborted) => {}
            (current, _) => {
                return error(
                    &req,
                    StatusCode::BAD_REQUEST,
                    "InvalidJobState",
                    &format!(
                        "Job {} is {}; it cannot be changed to {}",
                        job.id,
                        current.name(),
                        target.name()
                    ),
                )
            }
        }
        if inner.state != target {
            inner.state = target;
            inner.modstamp = now_secs();
        }
        if target == JobState::Aborted {
            for b in &inner.batches {
                let mut b = b.inner.lock();
                if b.state == BatchState::Queued {
                    b.state = BatchState::Failed;
                    b.message =
                        Some("InvalidBatch : Job aborted before the batch was processed".into());
                    b.modstamp = now_secs();
                }
            }
        }
    }
    format::job_info(&job, &state.org, json, StatusCode::OK)
}
