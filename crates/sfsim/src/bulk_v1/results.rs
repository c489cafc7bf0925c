//! `GET …/batch/{id}/result` (the result ids) and `GET …/result/{id}` (one result file,
//! streamed in the job's content type).

use super::batches::find;
use super::serialize::{Body, Format};
use super::{error, format, BatchResults, BatchState, ContentType, Job};
use crate::http::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use std::sync::Arc;

fn completed(
    req: &HttpRequest,
    job: &Job,
    batch: &super::Batch,
) -> Result<Arc<BatchResults>, Box<HttpResponse>> {
    let b = batch.inner.lock();
    match (&b.results, b.state) {
        (Some(r), BatchState::Completed) => Ok(r.clone()),
        (_, state) => Err(Box::new(error(
            req,
            StatusCode::BAD_REQUEST,
            "InvalidBatch",
            &format!(
                "Batch {} of job {} is {}: results are available once it is Completed",
                batch.id,
                job.id,
                state.name()
            ),
        ))),
    }
}

pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (_, job_id, batch_id) = path.into_inner();
    let (job, batch) = match find(&state, &req, &job_id, &batch_id) {
        Ok(found) => found,
        Err(resp) => return *resp,
    };
    match completed(&req, &job, &batch) {
        Ok(results) => format::result_list(&job, &results),
        Err(resp) => *resp,
    }
}

pub async fn fetch(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, String, String)>,
) -> HttpResponse {
    let (_, job_id, batch_id, result_id) = path.into_inner();
    let (job, batch) = match find(&state, &req, &job_id, &batch_id) {
        Ok(found) => found,
        Err(resp) => return *resp,
    };
    let results = match completed(&req, &job, &batch) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let wanted = crate::ids::normalize(&result_id);
    let Some((_, range)) = results
        .parts
        .iter()
        .find(|(id, _)| Some(id) == wanted.as_ref())
    else {
        return error(
            &req,
            StatusCode::BAD_REQUEST,
            "InvalidBatch",
            &format!("Unable to find result {result_id} of batch {}", batch.id),
        );
    };
    let (format, content_type) = match job.content_type {
        ContentType::Csv => (
            Format::Csv {
                delimiter: ',',
                line_ending: "\n",
            },
            "text/csv",
        ),
        ContentType::Xml => (Format::Xml, "application/xml"),
        ContentType::Json => (
            Format::Json {
                api_version: job.api_version.clone(),
            },
            "application/json",
        ),
    };
    let body = Body {
        state: state.clone(),
        plan: results.plan.clone(),
        rows: results.rows.clone(),
        range: range.clone(),
        format,
        empty_csv_sentence: true,
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .streaming(body.stream())
}
