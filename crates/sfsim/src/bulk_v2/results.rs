//! `GET /jobs/query/{id}/results[?locator=…&maxRecords=…]`: one page of a completed job's
//! snapshot as CSV, with `Sforce-NumberOfRecords` and `Sforce-Locator` (the literal `null` on the
//! last page) always present, since jsforce loops until the locator reads `null` and
//! simple-salesforce converts the count with `int()`.

use super::jobs::{bad_request, not_found};
use super::{version_of, State};
use crate::bulk_v1::serialize::{Body, Format};
use crate::error::SfError;
use crate::http::respond::rest_error;
use crate::http::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use base64::Engine;
use serde::Deserialize;

/// Rows per page when the client gives no maxRecords. Salesforce fills pages up to a size
/// limit; a fixed row count gives large results several pages the same way.
const DEFAULT_PAGE_ROWS: usize = 500_000;
/// Locators are opaque from API version 49.0 on; before that they were plain row offsets.
const OPAQUE_LOCATORS_SINCE: f64 = 49.0;

#[derive(Deserialize)]
pub struct Params {
    locator: Option<String>,
    #[serde(rename = "maxRecords")]
    max_records: Option<String>,
}

fn encode_locator(offset: usize, api_version: &str) -> String {
    if api_version.parse::<f64>().unwrap_or(OPAQUE_LOCATORS_SINCE) >= OPAQUE_LOCATORS_SINCE {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(offset.to_string())
    } else {
        offset.to_string()
    }
}

fn decode_locator(locator: &str) -> Option<usize> {
    if let Ok(n) = locator.parse() {
        return Some(n);
    }
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(locator.trim_end_matches('='))
        .ok()?;
    std::str::from_utf8(&bytes).ok()?.parse().ok()
}

/// The status names the JOB_NOT_COMPLETE message uses.
fn upper_name(state: State) -> &'static str {
    match state {
        State::UploadComplete => "UPLOAD_COMPLETE",
        State::InProgress => "IN_PROGRESS",
        State::JobComplete => "JOB_COMPLETE",
        State::Failed => "FAILED",
        State::Aborted => "ABORTED",
    }
}

pub async fn fetch(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    params: web::Query<Params>,
) -> HttpResponse {
    let (version, id) = path.into_inner();
    let Some(job) = state.bulk_v2.get(&id) else {
        return not_found();
    };
    if version_of(&version).as_deref() != Some(job.api_version.as_str()) {
        return rest_error(
            StatusCode::CONFLICT,
            &SfError::new(
                "INVALIDJOB",
                format!(
                    "Query results must be retrieved with the API version the job was created with (v{}), not {version}",
                    job.api_version
                ),
            ),
        );
    }
    let rows = {
        let inner = job.inner.lock();
        match (&inner.rows, inner.state) {
            (Some(rows), State::JobComplete) => rows.clone(),
            (_, s) => {
                return rest_error(
                    StatusCode::PRECONDITION_FAILED,
                    &SfError::new(
                        "JOB_NOT_COMPLETE",
                        format!(
                            "can only download query results of successfully completed bulk job with status: \
                             JOB_COMPLETE. Current status: {}",
                            upper_name(s)
                        ),
                    ),
                )
            }
        }
    };
    let offset = match params
        .locator
        .as_deref()
        .filter(|l| !l.is_empty() && *l != "null")
    {
        None => 0,
        Some(l) => match decode_locator(l).filter(|o| *o <= rows.len()) {
            Some(o) => o,
            None => return bad_request("INVALID_LOCATOR", format!("Invalid locator: {l}")),
        },
    };
    let page = match params.max_records.as_deref() {
        None => DEFAULT_PAGE_ROWS,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return bad_request(
                    "INVALIDJOB",
                    format!("maxRecords must be a positive integer, not {m}"),
                )
            }
        },
    };
    let end = offset.saturating_add(page).min(rows.len());
    let locator = if end < rows.len() {
        encode_locator(end, &job.api_version)
    } else {
        "null".to_string()
    };
    let body = Body {
        state: state.clone(),
        plan: job.plan.clone(),
        rows,
        range: offset..end,
        format: Format::Csv {
            delimiter: job.delimiter.1,
            line_ending: job.line_ending.1,
        },
        empty_csv_sentence: false,
    };
    HttpResponse::Ok()
        .content_type("text/csv")
        .insert_header(("Sforce-NumberOfRecords", (end - offset).to_string()))
        .insert_header(("Sforce-Locator", locator))
        .streaming(body.stream())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_round_trip_in_both_forms() {
        assert_eq!(encode_locator(10000, "58.0"), "MTAwMDA");
        assert_eq!(encode_locator(10000, "48.0"), "10000");
        assert_eq!(decode_locator("MTAwMDA"), Some(10000));
        assert_eq!(decode_locator("MTAwMDA="), Some(10000));
        assert_eq!(decode_locator("10000"), Some(10000));
        assert_eq!(decode_locator("%%"), None);
    }
}
