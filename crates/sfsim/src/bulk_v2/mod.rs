//! Bulk API 2.0 query jobs under `/services/data/vNN.N/jobs/query`, and ingest jobs under
//! `/jobs/ingest` ([`ingest`]).
//!
//! A job's query runs once, in the background, when it leaves UploadComplete; the matching
//! committed records are kept as shared pointers (the snapshot) and every results page is
//! serialised from them on the fly, so pages can be fetched again by locator.

mod csv_format;
pub mod ingest;
mod ingest_csv;
mod jobs;
mod results;

use crate::ids;
use crate::soql::Plan;
use crate::store::Record;
use actix_web::web;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Jobs kept before the oldest are forgotten; bounds the memory their snapshots pin.
const MAX_JOBS: usize = 1_000;
/// Jobs older than this are forgotten once a newer one is created.
const MAX_JOB_AGE_SECS: i64 = 3_600;

#[derive(Default)]
pub struct BulkV2State {
    jobs: Mutex<Registry>,
    pub ingest: ingest::IngestState,
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<String, Arc<Job>>,
    order: VecDeque<(String, i64)>,
    next: u64,
}

impl BulkV2State {
    fn insert(&self, make: impl FnOnce(String) -> Job) -> Arc<Job> {
        let mut reg = self.jobs.lock();
        reg.next += 1;
        // Bulk 2.0 query jobs share the 750 key prefix with Bulk 1.0 jobs; the high range keeps
        // the two simulators' ids apart.
        let job = Arc::new(make(ids::make("750", (1 << 40) + reg.next)));
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

    fn get(&self, id: &str) -> Option<Arc<Job>> {
        let id = ids::normalize(id)?;
        self.jobs.lock().by_id.get(&id).cloned()
    }

    fn remove(&self, id: &str) -> Option<Arc<Job>> {
        let id = ids::normalize(id)?;
        let mut reg = self.jobs.lock();
        reg.order.retain(|(j, _)| *j != id);
        reg.by_id.remove(&id)
    }

    fn all(&self) -> Vec<Arc<Job>> {
        let reg = self.jobs.lock();
        reg.order
            .iter()
            .filter_map(|(id, _)| reg.by_id.get(id).cloned())
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    UploadComplete,
    InProgress,
    JobComplete,
    Failed,
    Aborted,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::UploadComplete => "UploadComplete",
            State::InProgress => "InProgress",
            State::JobComplete => "JobComplete",
            State::Failed => "Failed",
            State::Aborted => "Aborted",
        }
    }

    fn is_terminal(self) -> bool {
        matches!(self, State::JobComplete | State::Failed | State::Aborted)
    }
}

struct Job {
    id: String,
    operation: &'static str,
    object: usize,
    plan: Arc<Plan>,
    /// As in the path it was created under, without the `v`: `58.0`.
    api_version: String,
    delimiter: (&'static str, char),
    line_ending: (&'static str, &'static str),
    created: i64,
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    modstamp: i64,
    error_message: Option<String>,
    processing_ms: u64,
    rows: Option<Arc<Vec<Record>>>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    ingest::routes(cfg);
    // Plain resources rather than a scope: a scope on /services/data/{v} would swallow the REST
    // routes registered after it.
    cfg.service(
        web::resource("/services/data/{version}/jobs/query")
            .route(web::post().to(jobs::create))
            .route(web::get().to(jobs::list)),
    )
    .service(
        web::resource("/services/data/{version}/jobs/query/{id}")
            .route(web::get().to(jobs::info))
            .route(web::patch().to(jobs::update))
            .route(web::delete().to(jobs::delete)),
    )
    .service(
        web::resource("/services/data/{version}/jobs/query/{id}/results")
            .route(web::get().to(results::fetch)),
    );
}

/// `v58.0` → `58.0`; None when the segment is not an API version.
fn version_of(segment: &str) -> Option<String> {
    let v = segment.strip_prefix('v')?;
    let (major, minor) = v.split_once('.')?;
    (major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok()).then(|| v.to_string())
}
