//! Bulk API 2.0 ingest jobs under `/services/data/vNN.N/jobs/ingest`: create (insert, update,
//! upsert with `externalIdFieldName`, delete), upload CSV with `PUT …/batches`, close with
//! `PATCH {"state":"UploadComplete"}`, then `InProgress → JobComplete | Failed`, or `Aborted`;
//! `successfulResults` (`sf__Id`, `sf__Created`), `failedResults` (`sf__Id`, `sf__Error`) and
//! `unprocessedrecords`, each followed by the row's uploaded fields.
//!
//! The upload is parsed strictly first ([`super::ingest_csv`]); a malformed upload or an unknown
//! header fails the job with Salesforce's message and leaves every row unprocessed. Rows are then
//! applied in batches of [`BATCH_RECORDS`], each one transaction: a batch's records share its
//! SystemModstamp and become visible when it commits, and a record's error fails only that row.

use super::{csv_format, ingest_csv};
use crate::error::SfError;
use crate::http::respond::{csv_field_into, rest_error, rest_json};
use crate::http::AppState;
use crate::ids;
use crate::schema::F_ID;
use crate::store::input::{from_text, writable_field};
use crate::store::{is_deleted, now_secs, record_id, Org};
use crate::value::{format_rest_datetime, Value};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records per internal batch, Salesforce's chunk size for ingest jobs: one transaction each.
pub const BATCH_RECORDS: usize = 10_000;
const MAX_JOBS: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Insert,
    Update,
    Upsert,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Upsert => "upsert",
            Op::Delete => "delete",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    UploadComplete,
    InProgress,
    JobComplete,
    Failed,
    Aborted,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Open => "Open",
            State::UploadComplete => "UploadComplete",
            State::InProgress => "InProgress",
            State::JobComplete => "JobComplete",
            State::Failed => "Failed",
            State::Aborted => "Aborted",
        }
    }
}

pub struct IngestJob {
    id: String,
    op: Op,
    object: usize,
    external_id: Option<usize>,
    api_version: String,
    delimiter: (&'static str, char),
    line_ending: (&'static str, &'static str),
    created: i64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Results {
    header: Vec<String>,
    success: Vec<(String, bool, Vec<String>)>,
    failed: Vec<(Option<String>, String, Vec<String>)>,
    unprocessed: Vec<Vec<String>>,
}

struct Inner {
    state: State,
    modstamp: i64,
    error_message: Option<String>,
    uploads: Vec<Bytes>,
    processing_ms: u64,
    results: Arc<Results>,
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<String, Arc<IngestJob>>,
    order: VecDeque<String>,
    next: u64,
}

#[derive(Default)]
pub struct IngestState {
    jobs: Mutex<Registry>,
}

impl IngestState {
    fn get(&self, id: &str) -> Option<Arc<IngestJob>> {
        let id = ids::normalize(id)?;
        self.jobs.lock().by_id.get(&id).cloned()
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/services/data/{version}/jobs/ingest")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/services/data/{version}/jobs/ingest/{id}")
            .route(web::get().to(info))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .service(
        web::resource("/services/data/{version}/jobs/ingest/{id}/batches")
            .route(web::put().to(upload)),
    )
    .service(
        web::resource("/services/data/{version}/jobs/ingest/{id}/{kind}")
            .route(web::get().to(results)),
    );
}

fn bad(code: &'static str, message: impl Into<String>) -> HttpResponse {
    rest_error(StatusCode::BAD_REQUEST, &SfError::new(code, message))
}

fn not_found() -> HttpResponse {
    rest_error(StatusCode::NOT_FOUND, &SfError::not_found())
}

async fn create(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(api_version) = super::version_of(&path) else {
        return not_found();
    };
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => {
            return bad(
                "JSON_PARSER_ERROR",
                "The request body must be a JSON object",
            )
        }
    };
    let text = |k: &str| v.get(k).and_then(|x| x.as_str());
    let op = match text("operation") {
        Some("insert") => Op::Insert,
        Some("update") => Op::Update,
        Some("upsert") => Op::Upsert,
        Some("delete") => Op::Delete,
        Some(other) => return bad("INVALIDJOB", format!("Invalid operation: {other}")),
        None => return bad("INVALIDJOB", "The job must specify an operation"),
    };
    let Some(object_name) = text("object") else {
        return bad("INVALIDJOB", "The job must specify an object");
    };
    let Some(object) = state.org.schema.object_index(object_name) else {
        return bad(
            "INVALIDENTITY",
            format!("Entity '{object_name}' is not supported by the Bulk API."),
        );
    };
    let def = &state.org.schema.objects[object];
    if let Some(ct) = text("contentType").filter(|c| *c != "CSV") {
        return bad("INVALIDJOB", format!("Invalid contentType: {ct}"));
    }
    let (delimiter, line_ending) =
        match csv_format::parse(text("columnDelimiter"), text("lineEnding")) {
            Ok(f) => f,
            Err(message) => return bad("INVALIDJOB", message),
        };
    let external_id = match (op, text("externalIdFieldName")) {
        (Op::Upsert, None) | (Op::Upsert, Some("")) => {
            return bad(
                "INVALIDJOB",
                format!(
                    "External ID was blank for {}. An External ID must be specified for upsert.",
                    def.name
                ),
            )
        }
        (Op::Upsert, Some(f)) => match def.field_index(f) {
            Some(i) if i == F_ID || def.fields[i].external_id => Some(i),
            _ => {
                return bad(
                    "INVALIDJOB",
                    format!("Field name provided, {f} does not match an External ID, Salesforce Id, or indexed field for {}", def.name),
                )
            }
        },
        _ => None,
    };
    let now = now_secs();
    let job = {
        let mut reg = state.bulk_v2.ingest.jobs.lock();
        reg.next += 1;
        let job = Arc::new(IngestJob {
            id: ids::make("750", (1 << 41) + reg.next),
            op,
            object,
            external_id,
            api_version,
            delimiter,
            line_ending,
            created: now,
            inner: Mutex::new(Inner {
                state: State::Open,
                modstamp: now,
                error_message: None,
                uploads: vec![],
                processing_ms: 0,
                results: Arc::new(Results::default()),
            }),
        });
        if reg.order.len() >= MAX_JOBS {
            if let Some(old) = reg.order.pop_front() {
                reg.by_id.remove(&old);
            }
        }
        reg.order.push_back(job.id.clone());
        reg.by_id.insert(job.id.clone(), job.clone());
        job
    };
    state.stats.bulk_v2_jobs.fetch_add(1, Relaxed);
    rest_json(StatusCode::OK, &info_json(&state, &job, false))
}

fn info_json(state: &AppState, job: &IngestJob, full: bool) -> serde_json::Value {
    let inner = job.inner.lock();
    let def = &state.org.schema.objects[job.object];
    let version = job
        .api_version
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(serde_json::Value::Number)
        .unwrap_or_else(|| json!(job.api_version));
    let mut v = json!({
        "id": job.id,
        "operation": job.op.name(),
        "object": def.name,
        "createdById": state.org.admin_user_id,
        "createdDate": format_rest_datetime(job.created),
        "systemModstamp": format_rest_datetime(inner.modstamp),
        "state": inner.state.name(),
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": version,
        "contentUrl": format!("services/data/v{}/jobs/ingest/{}/batches", job.api_version, job.id),
        "lineEnding": job.line_ending.0,
        "columnDelimiter": job.delimiter.0,
    });
    let obj = v.as_object_mut().expect("object");
    if let Some(f) = job.external_id {
        obj.insert("externalIdFieldName".into(), json!(def.fields[f].name));
    }
    if full {
        let r = &inner.results;
        obj.insert("jobType".into(), json!("V2Ingest"));
        obj.insert(
            "numberRecordsProcessed".into(),
            json!(r.success.len() + r.failed.len()),
        );
        obj.insert("numberRecordsFailed".into(), json!(r.failed.len()));
        obj.insert("retries".into(), json!(0));
        obj.insert("totalProcessingTime".into(), json!(inner.processing_ms));
        obj.insert("apiActiveProcessingTime".into(), json!(inner.processing_ms));
        obj.insert("apexProcessingTime".into(), json!(0));
        if let Some(m) = &inner.error_message {
            obj.insert("errorMessage".into(), json!(m));
        }
    }
    v
}

async fn info(state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    match state.bulk_v2.ingest.get(&path.1) {
        Some(job) => rest_json(StatusCode::OK, &info_json(&state, &job, true)),
        None => not_found(),
    }
}

async fn list(state: web::Data<AppState>) -> HttpResponse {
    let jobs: Vec<Arc<IngestJob>> = {
        let reg = state.bulk_v2.ingest.jobs.lock();
        reg.order
            .iter()
            .filter_map(|id| reg.by_id.get(id).cloned())
            .collect()
    };
    let records: Vec<serde_json::Value> = jobs
        .iter()
        .map(|j| {
            let mut v = info_json(&state, j, false);
            v["jobType"] = json!("V2Ingest");
            v
        })
        .collect();
    rest_json(
        StatusCode::OK,
        &json!({"done": true, "records": records, "nextRecordsUrl": null}),
    )
}

async fn upload(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let Some(job) = state.bulk_v2.ingest.get(&path.1) else {
        return not_found();
    };
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("text/csv") {
        return bad(
            "INVALIDCONTENTTYPE",
            format!("Unsupported Content-Type {ct:?}: job data must be text/csv"),
        );
    }
    let mut inner = job.inner.lock();
    if inner.state != State::Open {
        return bad(
            "INVALIDJOBSTATE",
            format!(
                "Job {} is {}: data can only be uploaded to an Open job",
                job.id,
                inner.state.name()
            ),
        );
    }
    inner.uploads.push(body);
    HttpResponse::Created().finish()
}

async fn update(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(job) = state.bulk_v2.ingest.get(&path.1) else {
        return not_found();
    };
    let wanted = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_string));
    {
        let mut inner = job.inner.lock();
        match (wanted.as_deref(), inner.state) {
            (Some("UploadComplete"), State::Open) => {
                inner.state = State::UploadComplete;
                inner.modstamp = now_secs();
                drop(inner);
                tokio::spawn(process(state.clone(), job.clone()));
            }
            (Some("Aborted"), State::Open | State::UploadComplete | State::InProgress) => {
                inner.state = State::Aborted;
                inner.modstamp = now_secs();
            }
            (Some(s @ ("UploadComplete" | "Aborted")), current) => {
                return bad(
                    "INVALIDJOBSTATE",
                    format!("Job {} is {} and cannot be set to {s}", job.id, current.name()),
                )
            }
            (Some(other), _) => return bad("INVALIDJOBSTATE", format!("Invalid state: {other}")),
            (None, _) => {
                return bad(
                    "JSON_PARSER_ERROR",
                    "The request body must be {\"state\":\"UploadComplete\"} or {\"state\":\"Aborted\"}",
                )
            }
        }
    }
    rest_json(StatusCode::OK, &info_json(&state, &job, false))
}

async fn delete(state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let Some(id) = ids::normalize(&path.1) else {
        return not_found();
    };
    let mut reg = state.bulk_v2.ingest.jobs.lock();
    match reg.by_id.remove(&id) {
        Some(_) => {
            reg.order.retain(|j| *j != id);
            HttpResponse::NoContent().finish()
        }
        None => not_found(),
    }
}

async fn results(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (_, id, kind) = path.into_inner();
    let Some(job) = state.bulk_v2.ingest.get(&id) else {
        return not_found();
    };
    let (st, r) = {
        let inner = job.inner.lock();
        (inner.state, inner.results.clone())
    };
    if kind != "unprocessedrecords" && !matches!(st, State::JobComplete | State::Failed) {
        return bad(
            "INVALIDJOBSTATE",
            format!(
                "Job {} is {}: results are available once it is JobComplete or Failed",
                job.id,
                st.name()
            ),
        );
    }
    let (d, eol) = (job.delimiter.1, job.line_ending.1);
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = Option<&str>>| {
        for (i, c) in cells.enumerate() {
            if i > 0 {
                out.push(d);
            }
            csv_field_into(c, out);
        }
        out.push_str(eol);
    };
    let header = r.header.iter().map(|h| Some(h.as_str()));
    match kind.as_str() {
        "successfulResults" => {
            line(
                &mut out,
                &mut [Some("sf__Id"), Some("sf__Created")]
                    .into_iter()
                    .chain(header),
            );
            for (id, created, row) in &r.success {
                let created = if *created { "true" } else { "false" };
                line(
                    &mut out,
                    &mut [Some(id.as_str()), Some(created)]
                        .into_iter()
                        .chain(row.iter().map(|c| Some(c.as_str()))),
                );
            }
        }
        "failedResults" => {
            line(
                &mut out,
                &mut [Some("sf__Id"), Some("sf__Error")]
                    .into_iter()
                    .chain(header),
            );
            for (id, err, row) in &r.failed {
                line(
                    &mut out,
                    &mut [id.as_deref(), Some(err.as_str())]
                        .into_iter()
                        .chain(row.iter().map(|c| Some(c.as_str()))),
                );
            }
        }
        "unprocessedrecords" => {
            if !r.header.is_empty() {
                line(&mut out, &mut header.clone());
            }
            for row in &r.unprocessed {
                line(&mut out, &mut row.iter().map(|c| Some(c.as_str())));
            }
        }
        _ => return not_found(),
    }
    HttpResponse::Ok()
        .content_type("text/csv; charset=UTF-8")
        .body(out)
}

/// The Bulk CSV error text: `CODE:message:Field1,Field2 --`.
fn row_error(e: &SfError) -> String {
    format!("{}:{}:{} --", e.code, e.message, e.fields.join(","))
}

fn finish(
    job: &IngestJob,
    state: State,
    error: Option<String>,
    results: Results,
    started: Instant,
) {
    let mut inner = job.inner.lock();
    if inner.state == State::Aborted {
        // Keep what was done; everything else stays unprocessed.
        inner.results = Arc::new(results);
        return;
    }
    inner.state = state;
    inner.error_message = error;
    inner.modstamp = now_secs();
    inner.processing_ms = started.elapsed().as_millis() as u64;
    inner.results = Arc::new(results);
}

async fn process(state: web::Data<AppState>, job: Arc<IngestJob>) {
    {
        let mut inner = job.inner.lock();
        if inner.state != State::UploadComplete {
            return;
        }
        inner.state = State::InProgress;
        inner.modstamp = now_secs();
    }
    let started = Instant::now();
    let uploads = std::mem::take(&mut job.inner.lock().uploads);
    let parsed = {
        let job = job.clone();
        let state = state.clone();
        tokio::task::spawn_blocking(move || parse_uploads(&state.org, &job, &uploads))
            .await
            .unwrap_or_else(|e| Err((format!("InternalServerError : {e}"), Results::default())))
    };
    let (columns, mut rows, mut results) = match parsed {
        Ok(p) => p,
        Err((message, results)) => {
            finish(&job, State::Failed, Some(message), results, started);
            return;
        }
    };
    while !rows.is_empty() {
        if job.inner.lock().state == State::Aborted {
            break;
        }
        let batch: Vec<Vec<String>> = rows.drain(..rows.len().min(BATCH_RECORDS)).collect();
        if state.faults.read().batch_fails(&mut rand::thread_rng()) {
            results.unprocessed.extend(batch);
            results.unprocessed.append(&mut rows);
            finish(
                &job,
                State::Failed,
                Some("InternalServerError : Retried more than 15 times".into()),
                results,
                started,
            );
            return;
        }
        let n = batch.len();
        let applied = {
            let (state, job, columns) = (state.clone(), job.clone(), columns.clone());
            tokio::task::spawn_blocking(move || apply_batch(&state.org, &job, &columns, batch))
                .await
        };
        match applied {
            Ok((ok, failed)) => {
                results.success.extend(ok);
                results.failed.extend(failed);
            }
            Err(e) => {
                finish(
                    &job,
                    State::Failed,
                    Some(format!("InternalServerError : {e}")),
                    results,
                    started,
                );
                return;
            }
        }
        if let Some(rate) = state.config.bulk_rows_per_sec.filter(|r| *r > 0) {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
    }
    results.unprocessed.append(&mut rows);
    finish(&job, State::JobComplete, None, results, started);
}

/// How each header column is written: the field, or the record's Id (update, delete).
#[derive(Clone, Copy)]
enum Column {
    Id,
    Field(usize),
}

type Parsed = (Arc<Vec<Column>>, Vec<Vec<String>>, Results);

fn parse_uploads(
    org: &Org,
    job: &IngestJob,
    uploads: &[Bytes],
) -> Result<Parsed, (String, Results)> {
    let def = &org.schema.objects[job.object];
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    let mut unparsed = Results::default();
    for data in uploads {
        let mut parsed = match ingest_csv::parse(data, job.delimiter.1, job.line_ending.1) {
            Ok(p) => p,
            Err(message) => {
                unparsed.header = header.unwrap_or_default();
                return Err((message, unparsed));
            }
        };
        let h = parsed.remove(0);
        if header.as_ref().is_some_and(|prev| *prev != h) {
            return Err((
                "ClientInputError : Every upload of a job must have the same header".into(),
                unparsed,
            ));
        }
        header = Some(h);
        rows.extend(parsed);
    }
    let header = header.unwrap_or_default();
    let fail = |message: String, rows: Vec<Vec<String>>| {
        Err((
            message,
            Results {
                header: header.clone(),
                unprocessed: rows,
                ..Results::default()
            },
        ))
    };
    if header.is_empty() {
        return fail("ClientInputError : No data was uploaded".into(), rows);
    }
    let mut columns = Vec::with_capacity(header.len());
    let mut seen = std::collections::HashSet::new();
    for name in &header {
        if !seen.insert(name.to_ascii_lowercase()) {
            return fail(format!("InvalidBatch : Duplicate field name: {name}"), rows);
        }
        match def.field_index(name) {
            Some(F_ID) if matches!(job.op, Op::Update | Op::Delete) => columns.push(Column::Id),
            Some(i) if job.op != Op::Delete => columns.push(Column::Field(i)),
            Some(_) => {
                return fail(
                    format!("InvalidBatch : Field name not valid for delete: {name}; a delete job takes only Id"),
                    rows,
                )
            }
            None => return fail(format!("InvalidBatch : Field name not found : {name}"), rows),
        }
    }
    if matches!(job.op, Op::Update | Op::Delete) && !columns.iter().any(|c| matches!(c, Column::Id))
    {
        return fail("InvalidBatch : Field name not found : Id".into(), rows);
    }
    if let Some(ext) = job.external_id {
        if !columns
            .iter()
            .any(|c| matches!(c, Column::Field(i) if *i == ext))
        {
            return fail(
                format!(
                    "InvalidBatch : Field name not found : {}",
                    def.fields[ext].name
                ),
                rows,
            );
        }
    }
    Ok((
        Arc::new(columns),
        rows,
        Results {
            header,
            ..Results::default()
        },
    ))
}

type Applied = (
    Vec<(String, bool, Vec<String>)>,
    Vec<(Option<String>, String, Vec<String>)>,
);

/// One batch, one transaction: rows that fail are left out, the rest commit together.
fn apply_batch(org: &Org, job: &IngestJob, columns: &[Column], batch: Vec<Vec<String>>) -> Applied {
    let def = &org.schema.objects[job.object];
    let mut txn = org.begin();
    let mut ok = Vec::with_capacity(batch.len());
    let mut failed = Vec::new();
    for row in batch {
        let mut id: Option<String> = None;
        let staged = (|| -> Result<(String, bool), SfError> {
            let mut values = Vec::with_capacity(columns.len());
            let mut ext_value = None;
            for (col, cell) in columns.iter().zip(&row) {
                match col {
                    Column::Id => id = Some(cell.clone()),
                    Column::Field(i) => {
                        if Some(*i) == job.external_id {
                            ext_value = Some(cell.clone());
                        }
                        // Empty leaves the field as it is; `#N/A` sets it null.
                        if cell.is_empty() {
                            continue;
                        }
                        let creating = job.op != Op::Update;
                        let f = writable_field(def, &def.fields[*i].name, creating)?;
                        let v = if cell == "#N/A" {
                            Value::Null
                        } else {
                            from_text(&def.fields[f], cell)?
                        };
                        values.push((f, v));
                    }
                }
            }
            match job.op {
                Op::Insert => Ok((org.create(&mut txn, job.object, values)?, true)),
                Op::Update | Op::Delete => {
                    let Some(rid) = id.clone().filter(|s| !s.is_empty()) else {
                        return Err(SfError::new(
                            "MISSING_ARGUMENT",
                            "Id not specified in an update call",
                        )
                        .with_fields(vec!["Id".into()]));
                    };
                    let rid = ids::normalize(&rid).unwrap_or(rid);
                    id = Some(rid.clone());
                    if job.op == Op::Update {
                        org.update(&mut txn, job.object, &rid, values)?;
                    } else {
                        org.delete(&mut txn, job.object, &rid)?;
                    }
                    Ok((rid, false))
                }
                Op::Upsert => {
                    let ext = job.external_id.expect("upsert has an external id");
                    // `#N/A` nulls a field; a null key matches nothing and creates nothing.
                    let key = ext_value
                        .filter(|v| !v.is_empty() && v != "#N/A")
                        .ok_or_else(|| {
                            SfError::new(
                                "MISSING_ARGUMENT",
                                format!("{} not specified", def.fields[ext].name),
                            )
                            .with_fields(vec![def.fields[ext].name.clone()])
                        })?;
                    match find_live(org, job.object, ext, &key)? {
                        Some(existing) => {
                            org.update(&mut txn, job.object, &existing, values)?;
                            Ok((existing, false))
                        }
                        None => Ok((org.create(&mut txn, job.object, values)?, true)),
                    }
                }
            }
        })();
        match staged {
            Ok((rid, created)) => ok.push((rid, created, row)),
            Err(e) => failed.push((id.filter(|_| job.op != Op::Insert), row_error(&e), row)),
        }
    }
    if txn.is_empty() {
        org.rollback(txn);
    } else {
        org.commit(txn);
    }
    (ok, failed)
}

/// The one live record whose external id is `value` (Id upserts match by Id).
fn find_live(
    org: &Org,
    object: usize,
    field: usize,
    value: &str,
) -> Result<Option<String>, SfError> {
    if field == F_ID {
        return Ok(org
            .get_by_id(object, value)
            .filter(|r| !is_deleted(r))
            .map(|r| record_id(&r).to_string()));
    }
    let def = &org.schema.objects[object];
    let matches: Vec<String> = if def.fields[field].unique {
        org.find_by_external_id(object, field, value)
            .and_then(|seq| org.read(|t| t[object].get(seq).cloned()))
            .filter(|r| !is_deleted(r))
            .map(|r| vec![record_id(&r).to_string()])
            .unwrap_or_default()
    } else {
        org.read(|t| {
            t[object]
                .iter()
                .filter(|r| !is_deleted(r))
                .filter(|r| {
                    r[field]
                        .to_bulk_text()
                        .is_some_and(|v| v.eq_ignore_ascii_case(value))
                })
                .map(|r| record_id(r).to_string())
                .collect()
        })
    };
    match matches.len() {
        0 => Ok(None),
        1 => Ok(matches.into_iter().next()),
        _ => Err(SfError::new(
            "DUPLICATE_EXTERNAL_ID",
            format!(
                "{}: more than one record found for external id field: {matches:?}",
                def.fields[field].name
            ),
        )
        .with_fields(vec![def.fields[field].name.clone()])),
    }
}
