//! The unauthenticated `/_sim/` control plane (SPEC.md section 2): workload, faults, stats and
//! the ground-truth export.

use crate::faults::Faults;
use crate::http::respond::csv_field_into;
use crate::http::AppState;
use crate::store::Record;
use crate::workload::WorkloadSpec;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde_json::json;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_sim")
            .route("/workload", web::post().to(start_workload))
            .route("/workload", web::delete().to(stop_workload))
            .route("/workload", web::get().to(workload_counts))
            .route("/faults", web::post().to(set_faults))
            .route("/faults", web::delete().to(clear_faults))
            .route("/faults", web::get().to(get_faults))
            .route("/stats", web::get().to(stats))
            .route("/cdc", web::get().to(cdc_events))
            .route("/clock", web::post().to(set_clock))
            .route("/clock", web::get().to(get_clock))
            .route("/export/{object}", web::get().to(export)),
    );
}

fn bad_request(message: impl Into<String>) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": message.into()}))
}

async fn start_workload(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let spec: WorkloadSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return bad_request(format!("workload: {e}")),
    };
    match state.workload.start(&state.org, spec) {
        Ok(()) => HttpResponse::Ok().json(state.workload.to_json()),
        Err(e) => bad_request(format!("workload: {e}")),
    }
}

async fn stop_workload(state: web::Data<AppState>) -> HttpResponse {
    state.workload.stop_all(&state.org).await;
    HttpResponse::Ok().json(state.workload.to_json())
}

async fn workload_counts(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.workload.to_json())
}

/// Merges the given keys into the faults in force: "from now on", key by key.
async fn set_faults(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let given: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => return bad_request("faults: expected a JSON object"),
        Err(e) => return bad_request(format!("faults: {e}")),
    };
    let mut merged = serde_json::to_value(&*state.faults.read()).expect("faults serialise");
    for (k, v) in given.as_object().expect("object") {
        merged[k] = v.clone();
    }
    let faults: Faults = match serde_json::from_value(merged) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("faults: {e}")),
    };
    if let Err(e) = faults.validate() {
        return bad_request(format!("faults: {e}"));
    }
    *state.faults.write() = faults.clone();
    state.cdc.apply_faults(&faults);
    HttpResponse::Ok().json(faults)
}

async fn clear_faults(state: web::Data<AppState>) -> HttpResponse {
    *state.faults.write() = Faults::default();
    state.cdc.apply_faults(&Faults::default());
    HttpResponse::Ok().json(Faults::default())
}

async fn get_faults(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(&*state.faults.read())
}

async fn stats(state: web::Data<AppState>) -> HttpResponse {
    let mut body = state.stats.to_json(state.org.open_txn_count());
    body["cdc"] = state.cdc.counts_json();
    HttpResponse::Ok().json(body)
}

/// `{"offset_secs":N}` sets the formula clock N seconds ahead of real time, `{"advance_secs":N}`
/// moves it N seconds further, `{"now":"RFC 3339"}` sets it to that instant; `{}` reads it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRequest {
    offset_secs: Option<i64>,
    advance_secs: Option<i64>,
    now: Option<chrono::DateTime<chrono::Utc>>,
}

fn clock_json(state: &AppState, recomputed: usize) -> serde_json::Value {
    json!({
        "now": state.org.formula_now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "offset_secs": state.org.clock_offset_secs(),
        "recomputed_records": recomputed,
    })
}

async fn set_clock(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let req: ClockRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("clock: {e}")),
    };
    let current = state.org.clock_offset_secs();
    let offset = match (req.offset_secs, req.advance_secs, req.now) {
        (Some(o), None, None) => o,
        (None, Some(a), None) => current.saturating_add(a),
        (None, None, Some(t)) => (t - chrono::Utc::now()).num_seconds(),
        (None, None, None) => return HttpResponse::Ok().json(clock_json(&state, 0)),
        _ => return bad_request("clock: give one of offset_secs, advance_secs or now"),
    };
    let org = state.org.clone();
    // Recomputing every time-dependent formula holds the store's write lock: off the async workers.
    match web::block(move || org.set_clock_offset(offset)).await {
        Ok(n) => HttpResponse::Ok().json(clock_json(&state, n)),
        Err(e) => HttpResponse::InternalServerError().json(json!({"error": e.to_string()})),
    }
}

async fn get_clock(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(clock_json(&state, 0))
}

async fn cdc_events(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.cdc.to_json())
}

#[derive(serde::Deserialize)]
struct ExportQuery {
    /// `Id,Name,...`: only these fields, in this order (default: every field).
    fields: Option<String>,
}

/// Every committed record of the object, deleted ones included, as quoted CSV with a header of
/// every field (or of `?fields=`); streamed in chunks so a million records never sit in one
/// buffer.
async fn export(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ExportQuery>,
) -> HttpResponse {
    let org = state.org.clone();
    let object = match org.object_index(&path) {
        Ok(o) => o,
        Err(e) => return HttpResponse::NotFound().json(json!({"error": e.message})),
    };
    let def = &org.schema.objects[object];
    let columns: Vec<usize> = match &query.fields {
        None => (0..def.fields.len()).collect(),
        Some(list) => {
            let mut cols = Vec::new();
            for name in list.split(',').map(str::trim) {
                match def
                    .fields
                    .iter()
                    .position(|f| f.name.eq_ignore_ascii_case(name))
                {
                    Some(i) => cols.push(i),
                    None => {
                        return HttpResponse::BadRequest()
                            .json(json!({"error": format!("no field {name} on {}", def.name)}))
                    }
                }
            }
            cols
        }
    };
    let records: Vec<Record> = org.read(|t| t[object].iter().cloned().collect());
    let mut header = String::new();
    for (i, &c) in columns.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        csv_field_into(Some(&def.fields[c].name), &mut header);
    }
    header.push('\n');
    const ROWS_PER_CHUNK: usize = 2_000;
    let chunks = records
        .chunks(ROWS_PER_CHUNK)
        .map(|c| c.to_vec())
        .collect::<Vec<_>>()
        .into_iter()
        .map(move |chunk| {
            let mut out = String::with_capacity(chunk.len() * 256);
            let mut cell = String::new();
            for rec in chunk {
                for (i, v) in columns.iter().map(|&c| &rec[c]).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    cell.clear();
                    v.write_bulk_text(&mut cell);
                    csv_field_into((!v.is_null()).then_some(cell.as_str()), &mut out);
                }
                out.push('\n');
            }
            Ok::<_, actix_web::Error>(Bytes::from(out))
        });
    let body = futures::stream::iter(std::iter::once(Ok(Bytes::from(header))).chain(chunks));
    HttpResponse::Ok()
        .content_type("text/csv; charset=UTF-8")
        .streaming(body)
}
