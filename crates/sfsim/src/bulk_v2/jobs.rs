//! Create, inspect, list, abort and delete query jobs, and the background run that takes a job
//! UploadComplete → InProgress → JobComplete | Failed.

use super::{csv_format, version_of, Inner, Job, State};
use crate::error::SfError;
use crate::http::respond::{rest_error, rest_json};
use crate::http::AppState;
use crate::soql;
use crate::store::now_secs;
use crate::value::format_rest_datetime;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use parking_lot::Mutex;
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a job sits in UploadComplete before it starts.
const QUEUE_DELAY: Duration = Duration::from_millis(25);

pub(super) fn bad_request(code: &'static str, message: impl Into<String>) -> HttpResponse {
    rest_error(StatusCode::BAD_REQUEST, &SfError::new(code, message))
}

pub(super) fn not_found() -> HttpResponse {
    rest_error(StatusCode::NOT_FOUND, &SfError::not_found())
}

fn invalid_version() -> HttpResponse {
    rest_error(
        StatusCode::NOT_FOUND,
        &SfError::new("NOT_FOUND", "The requested resource does not exist"),
    )
}

pub async fn create(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(api_version) = version_of(&path) else {
        return invalid_version();
    };
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            return bad_request(
                "JSON_PARSER_ERROR",
                "The request body must be a JSON object",
            )
        }
        Err(e) => {
            return bad_request(
                "JSON_PARSER_ERROR",
                format!("Unable to parse the request body: {e}"),
            )
        }
    };
    let text = |k: &str| v.get(k).and_then(|x| x.as_str());
    let operation = match text("operation") {
        Some("query") => "query",
        Some("queryAll") => "queryAll",
        Some(other) => {
            return bad_request(
                "INVALIDJOB",
                format!("Invalid operation for a query job: {other}"),
            )
        }
        None => return bad_request("INVALIDJOB", "The job must specify an operation"),
    };
    let Some(query) = text("query").filter(|q| !q.trim().is_empty()) else {
        return bad_request("INVALIDJOB", "The job must specify a query");
    };
    if let Some(ct) = text("contentType").filter(|c| *c != "CSV") {
        return bad_request(
            "INVALIDJOB",
            format!("Invalid contentType: {ct}; query jobs support only CSV"),
        );
    }
    let (delimiter, line_ending) =
        match csv_format::parse(text("columnDelimiter"), text("lineEnding")) {
            Ok(f) => f,
            Err(message) => return bad_request("INVALIDJOB", message),
        };
    let plan = match soql::plan(&state.org, query) {
        Ok(p) => p,
        Err(e) => return rest_error(StatusCode::BAD_REQUEST, &e),
    };
    if plan.is_count {
        return bad_request(
            "INVALIDJOB",
            "Aggregate queries such as COUNT() are not supported by Bulk API 2.0",
        );
    }
    if plan.offset.is_some() {
        return bad_request(
            "INVALIDJOB",
            "OFFSET is not supported by Bulk API 2.0 query jobs",
        );
    }
    let now = now_secs();
    let object = plan.object;
    let job = state.bulk_v2.insert(|id| Job {
        id,
        operation,
        object,
        plan: Arc::new(plan),
        api_version,
        delimiter,
        line_ending,
        created: now,
        inner: Mutex::new(Inner {
            state: State::UploadComplete,
            modstamp: now,
            error_message: None,
            processing_ms: 0,
            rows: None,
        }),
    });
    state.stats.bulk_v2_jobs.fetch_add(1, Relaxed);
    tokio::spawn(process(state.clone(), job.clone()));
    // Always JSON, whatever Accept says: simple-salesforce asks for text/csv and parses JSON.
    rest_json(StatusCode::OK, &info_json(&state, &job, false))
}

/// The job document; `full` adds the fields the job-info GET returns.
fn info_json(state: &AppState, job: &Job, full: bool) -> serde_json::Value {
    let inner = job.inner.lock();
    let version = job
        .api_version
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(serde_json::Value::Number)
        .unwrap_or_else(|| json!(job.api_version));
    let mut v = json!({
        "id": job.id,
        "operation": job.operation,
        "object": state.org.schema.objects[job.object].name,
        "createdById": state.org.admin_user_id,
        "createdDate": format_rest_datetime(job.created),
        "systemModstamp": format_rest_datetime(inner.modstamp),
        "state": inner.state.name(),
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": version,
        "lineEnding": job.line_ending.0,
        "columnDelimiter": job.delimiter.0,
    });
    if full {
        let obj = v.as_object_mut().expect("object");
        obj.insert("jobType".into(), json!("V2Query"));
        obj.insert(
            "numberRecordsProcessed".into(),
            json!(inner.rows.as_ref().map_or(0, |r| r.len())),
        );
        obj.insert("retries".into(), json!(0));
        obj.insert("totalProcessingTime".into(), json!(inner.processing_ms));
        // Salesforce disables PK chunking for queries with ORDER BY or LIMIT.
        obj.insert(
            "isPkChunkingSupported".into(),
            json!(!job.plan.has_order_by && job.plan.limit.is_none()),
        );
        if let Some(m) = &inner.error_message {
            obj.insert("errorMessage".into(), json!(m));
        }
    }
    v
}

pub async fn info(state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (_, id) = path.into_inner();
    match state.bulk_v2.get(&id) {
        Some(job) => rest_json(StatusCode::OK, &info_json(&state, &job, true)),
        None => not_found(),
    }
}

pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let records: Vec<serde_json::Value> = state
        .bulk_v2
        .all()
        .iter()
        .map(|j| {
            let mut v = info_json(&state, j, false);
            v["jobType"] = json!("V2Query");
            v
        })
        .collect();
    rest_json(
        StatusCode::OK,
        &json!({"done": true, "records": records, "nextRecordsUrl": null}),
    )
}

/// `PATCH {"state":"Aborted"}`: the only change a query job accepts.
pub async fn update(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (_, id) = path.into_inner();
    let Some(job) = state.bulk_v2.get(&id) else {
        return not_found();
    };
    let wanted = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_string));
    match wanted.as_deref() {
        Some("Aborted") => {}
        Some(other) => {
            return bad_request(
                "INVALIDJOBSTATE",
                format!("A query job cannot be set to {other}"),
            )
        }
        None => {
            return bad_request(
                "JSON_PARSER_ERROR",
                "The request body must be {\"state\":\"Aborted\"}",
            )
        }
    }
    {
        let mut inner = job.inner.lock();
        if inner.state.is_terminal() && inner.state != State::Aborted {
            return bad_request(
                "INVALIDJOBSTATE",
                format!(
                    "Job {} is {} and can no longer be aborted",
                    job.id,
                    inner.state.name()
                ),
            );
        }
        inner.state = State::Aborted;
        inner.modstamp = now_secs();
        inner.rows = None;
    }
    rest_json(StatusCode::OK, &info_json(&state, &job, false))
}

pub async fn delete(state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (_, id) = path.into_inner();
    match state.bulk_v2.remove(&id) {
        Some(job) => {
            // Release the snapshot now, even if a page download still holds the job.
            job.inner.lock().rows = None;
            HttpResponse::NoContent().finish()
        }
        None => not_found(),
    }
}

async fn process(state: web::Data<AppState>, job: Arc<Job>) {
    tokio::time::sleep(QUEUE_DELAY).await;
    {
        let mut inner = job.inner.lock();
        if inner.state != State::UploadComplete {
            return; // aborted before it started
        }
        inner.state = State::InProgress;
        inner.modstamp = now_secs();
    }
    let started = Instant::now();
    let outcome = {
        let (state, job) = (state.clone(), job.clone());
        tokio::task::spawn_blocking(move || {
            if state.faults.read().batch_fails(&mut rand::thread_rng()) {
                return Err("InternalServerError : Retried more than 15 times".to_string());
            }
            let rows = job.plan.execute(&state.org, job.operation == "queryAll");
            match state.query_timeout(rows.len()) {
                Some(e) => Err(format!("{}: {}", e.code, e.message)),
                None => Ok(rows),
            }
        })
        .await
        .unwrap_or_else(|e| Err(format!("InternalServerError : {e}")))
    };
    if let (Ok(rows), Some(rate)) = (&outcome, state.config.bulk_rows_per_sec.filter(|r| *r > 0)) {
        tokio::time::sleep(Duration::from_secs_f64(rows.len() as f64 / rate as f64)).await;
    }
    let mut inner = job.inner.lock();
    if inner.state != State::InProgress {
        return; // aborted (or deleted) while running
    }
    inner.processing_ms = started.elapsed().as_millis() as u64;
    inner.modstamp = now_secs();
    match outcome {
        Ok(rows) => {
            inner.rows = Some(Arc::new(rows));
            inner.state = State::JobComplete;
        }
        Err(message) => {
            inner.error_message = Some(message);
            inner.state = State::Failed;
        }
    }
}
