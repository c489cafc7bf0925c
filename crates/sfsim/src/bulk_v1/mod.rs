//! Bulk API 1.0 under `/services/async/NN.N/`: query and queryAll jobs, their batches (PK
//! chunking included) and results in CSV, XML and JSON.
//!
//! A batch runs in the background: Queued, then InProgress while its query runs once against
//! committed data, then Completed with the matching records kept as shared pointers (the
//! snapshot), which result downloads serialise on the fly.

mod batches;
mod format;
mod jobs;
mod pk_chunking;
mod results;
pub mod serialize;

use crate::error::SfError;
use crate::ids;
use crate::soql::Plan;
use crate::store::Record;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

/// Jobs kept before the oldest are forgotten; bounds the memory their snapshots pin.
const MAX_JOBS: usize = 1_000;
/// Jobs older than this are forgotten once a newer one is created.
const MAX_JOB_AGE_SECS: i64 = 3_600;

#[derive(Default)]
pub struct BulkV1State {
    jobs: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<String, Arc<Job>>,
    order: VecDeque<(String, i64)>,
    next_job: u64,
    next_batch: u64,
    next_result: u64,
}

impl BulkV1State {
    fn insert_job(&self, make: impl FnOnce(String) -> Job) -> Arc<Job> {
        let mut reg = self.jobs.lock();
        reg.next_job += 1;
        let job = Arc::new(make(ids::make("750", reg.next_job)));
        let now = job.created;
        while let Some((id, created)) = reg.order.front().cloned() {
            if reg.order.len() < MAX_JOBS && now - created <= MAX_JOB_AGE_SECS {
                break;
            }
            reg.order.pop_front();
            reg.by_id.remove(&id);
        }
        reg.order.push_back((job.id.clone(), now));
        reg.by_id.insert(job.id.clone(), job.clone());
        job
    }

    /// Accepts the 15- and 18-character forms of the id.
    fn job(&self, id: &str) -> Option<Arc<Job>> {
        let id = ids::normalize(id)?;
        self.jobs.lock().by_id.get(&id).cloned()
    }

    fn batch_id(&self) -> String {
        let mut reg = self.jobs.lock();
        reg.next_batch += 1;
        ids::make("751", reg.next_batch)
    }

    fn result_id(&self) -> String {
        let mut reg = self.jobs.lock();
        reg.next_result += 1;
        ids::make("752", reg.next_result)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Query,
    QueryAll,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Query => "query",
            Operation::QueryAll => "queryAll",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ContentType {
    Csv,
    Xml,
    Json,
}

impl ContentType {
    fn name(self) -> &'static str {
        match self {
            ContentType::Csv => "CSV",
            ContentType::Xml => "XML",
            ContentType::Json => "JSON",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobState {
    Open,
    Closed,
    Aborted,
}

impl JobState {
    fn name(self) -> &'static str {
        match self {
            JobState::Open => "Open",
            JobState::Closed => "Closed",
            JobState::Aborted => "Aborted",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchState {
    Queued,
    InProgress,
    Completed,
    Failed,
    NotProcessed,
}

impl BatchState {
    fn name(self) -> &'static str {
        match self {
            BatchState::Queued => "Queued",
            BatchState::InProgress => "InProgress",
            BatchState::Completed => "Completed",
            BatchState::Failed => "Failed",
            BatchState::NotProcessed => "NotProcessed",
        }
    }
}

struct Job {
    id: String,
    object: usize,
    operation: Operation,
    content_type: ContentType,
    concurrency: &'static str,
    api_version: String,
    created: i64,
    pk_chunking: Option<pk_chunking::PkChunking>,
    inner: Mutex<JobInner>,
}

struct JobInner {
    state: JobState,
    modstamp: i64,
    batches: Vec<Arc<Batch>>,
}

struct Batch {
    id: String,
    job_id: String,
    soql: String,
    created: i64,
    /// Set for the batches PK chunking adds: the submitted query restricted to an Id range.
    chunk_plan: Option<Plan>,
    inner: Mutex<BatchInner>,
}

struct BatchInner {
    state: BatchState,
    message: Option<String>,
    processed: u64,
    processing_ms: u64,
    modstamp: i64,
    results: Option<Arc<BatchResults>>,
}

impl BatchInner {
    fn queued(now: i64) -> BatchInner {
        BatchInner {
            state: BatchState::Queued,
            message: None,
            processed: 0,
            processing_ms: 0,
            modstamp: now,
            results: None,
        }
    }
}

/// A completed query batch: its snapshot, and how the snapshot splits into result files.
struct BatchResults {
    plan: Arc<Plan>,
    rows: Arc<Vec<Record>>,
    parts: Vec<(String, Range<usize>)>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/services/async/{version}")
            .route("/job", web::post().to(jobs::create))
            .route("/job/{job}", web::get().to(jobs::info))
            .route("/job/{job}", web::post().to(jobs::update))
            .route("/job/{job}/batch", web::post().to(batches::add))
            .route("/job/{job}/batch", web::get().to(batches::list))
            .route("/job/{job}/batch/{batch}", web::get().to(batches::info))
            .route(
                "/job/{job}/batch/{batch}/request",
                web::get().to(batches::request),
            )
            .route(
                "/job/{job}/batch/{batch}/result",
                web::get().to(results::list),
            )
            .route(
                "/job/{job}/batch/{batch}/result/{result}",
                web::get().to(results::fetch),
            )
            .default_service(web::to(invalid_url)),
    );
}

/// A Bulk 1.0 error in the format of the request (JSON for JSON requests, XML otherwise).
fn error(req: &HttpRequest, status: StatusCode, code: &str, message: &str) -> HttpResponse {
    crate::http::respond::bulk_v1_error(status, code, message, format::request_is_json(req))
}

fn invalid_job(req: &HttpRequest, id: &str) -> HttpResponse {
    error(
        req,
        StatusCode::BAD_REQUEST,
        "InvalidJob",
        &format!("Unable to find job: {id}"),
    )
}

fn sf_error_message(e: &SfError) -> String {
    format!("{}: {}", e.code, e.message)
}

async fn invalid_url(req: HttpRequest) -> HttpResponse {
    error(
        &req,
        StatusCode::NOT_FOUND,
        "InvalidUrl",
        &format!("unknown resource: {} {}", req.method(), req.path()),
    )
}
