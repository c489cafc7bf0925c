//! Composite sObject collections and composite batch (reference sections 2.4 and 2.6).
//!
//! A collection call is one transaction: every record it writes gets the same SystemModstamp and
//! becomes visible at the same commit. With `allOrNone` a single failure rolls the transaction
//! back; without it the failed records are skipped and the rest commit.

use super::sobjects::{
    external_id_field, field_list, find_by_external_id, object_body, record_json, stage_upsert,
    values_from_json, Upserted,
};
use super::{dispatch, object_or_404, parse_version, pct_decode, Ctx, Reply, Result};
use crate::error::SfError;
use crate::ids;
use crate::store::{is_deleted, Txn};
use actix_web::http::{Method, StatusCode};
use serde_json::{json, Map, Value as Json};

/// Records one collection call may carry.
const MAX_RECORDS: usize = 200;
/// Subrequests one composite batch may carry.
const MAX_BATCH: usize = 25;

fn too_many() -> Reply {
    Reply::bad(SfError::new(
        "EXCEEDED_ID_LIMIT",
        format!(
            "record limit reached. cannot submit more than {MAX_RECORDS} records into this call"
        ),
    ))
}

/// The outcome of one record of a collection call.
struct Outcome {
    /// Known for updates and deletes even when they fail; for creates only on success.
    id: Option<String>,
    /// Upserts say whether they created.
    created: Option<bool>,
    error: Option<SfError>,
}

impl Outcome {
    fn ok(id: String) -> Outcome {
        Outcome {
            id: Some(id),
            created: None,
            error: None,
        }
    }

    fn failed(id: Option<String>, e: SfError) -> Outcome {
        Outcome {
            id,
            created: None,
            error: Some(e),
        }
    }

    fn to_json(&self) -> Json {
        let mut m = Map::new();
        if let Some(id) = &self.id {
            m.insert("id".into(), json!(id));
        }
        m.insert("success".into(), json!(self.error.is_none()));
        let errors: Vec<Json> = self.error.iter().map(SfError::save_result_json).collect();
        m.insert("errors".into(), Json::Array(errors));
        if let Some(c) = self.created {
            m.insert("created".into(), json!(c));
        }
        Json::Object(m)
    }
}

fn any_locked(outcomes: &[Outcome]) -> bool {
    outcomes.iter().any(|o| {
        o.error
            .as_ref()
            .is_some_and(|e| e.code == "UNABLE_TO_LOCK_ROW")
    })
}

/// Commits or rolls back a collection call's transaction and renders its SaveResults.
fn conclude(ctx: &Ctx, txn: Txn, mut outcomes: Vec<Outcome>, all_or_none: bool) -> Reply {
    let org = ctx.org();
    let failed = outcomes.iter().any(|o| o.error.is_some());
    if failed && all_or_none {
        org.rollback(txn);
        for o in outcomes.iter_mut().filter(|o| o.error.is_none()) {
            o.error = Some(SfError::new(
                "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "Record rolled back because not all records were valid and the request was using AllOrNone header",
            ));
            o.created = None;
        }
        // A rolled-back create never got a record: it has no Id to report.
    } else if txn.is_empty() {
        org.rollback(txn);
    } else {
        ctx.finish(txn);
    }
    Reply::ok(&Json::Array(
        outcomes.iter().map(Outcome::to_json).collect(),
    ))
}

/// `{"allOrNone":…,"records":[…]}`, checked for the record limit.
fn records_body(ctx: &Ctx) -> Result<(bool, Vec<Json>)> {
    let body = object_body(ctx)?;
    let all_or_none = body
        .get("allOrNone")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let records = match body.get("records") {
        Some(Json::Array(r)) => r.clone(),
        _ => {
            return Err(Reply::bad(SfError::new(
                "JSON_PARSER_ERROR",
                "The request body must contain a records array",
            )))
        }
    };
    if records.len() > MAX_RECORDS {
        return Err(too_many());
    }
    Ok((all_or_none, records))
}

/// The object a record's `attributes.type` names (or its Id's key prefix, for updates).
fn record_object(
    ctx: &Ctx,
    rec: &Map<String, Json>,
    id: Option<&str>,
) -> std::result::Result<usize, SfError> {
    let org = ctx.org();
    match rec
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Json::as_str)
    {
        Some(t) => org.object_index(t),
        None => id
            .and_then(|id| org.locate(id))
            .map(|(o, _)| o)
            .ok_or_else(|| {
                SfError::new(
                    "INVALID_TYPE",
                    "Must specify a type in the attributes of every record",
                )
            }),
    }
}

fn record_id_of(rec: &Map<String, Json>) -> Option<String> {
    rec.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("id"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}

fn without_id(rec: &Map<String, Json>) -> Map<String, Json> {
    rec.iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("id"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(super) fn collection(ctx: &Ctx) -> Result {
    match ctx.method {
        Method::POST => create_all(ctx),
        Method::PATCH => update_all(ctx),
        Method::DELETE => delete_all(ctx),
        _ => Err(Reply::method_not_allowed(&ctx.method, "POST,PATCH,DELETE")),
    }
}

fn create_all(ctx: &Ctx) -> Result {
    let (all_or_none, records) = records_body(ctx)?;
    let org = ctx.org();
    let (txn, outcomes) = ctx.stage(
        |txn| {
            records
                .iter()
                .map(|rec| {
                    let staged = (|| {
                        let rec = rec.as_object().ok_or_else(|| {
                            SfError::new("JSON_PARSER_ERROR", "Each record must be a JSON object")
                        })?;
                        if record_id_of(rec).is_some() {
                            return Err(SfError::new(
                                "INVALID_FIELD",
                                "cannot specify Id in an insert call",
                            )
                            .with_fields(vec!["Id".into()]));
                        }
                        let object = record_object(ctx, rec, None)?;
                        let values = values_from_json(&org.schema.objects[object], rec, true)?;
                        org.create(txn, object, values)
                    })();
                    match staged {
                        Ok(id) => Outcome::ok(id),
                        Err(e) => Outcome::failed(None, e),
                    }
                })
                .collect::<Vec<Outcome>>()
        },
        |o: &Vec<Outcome>| any_locked(o),
    );
    Ok(conclude(ctx, txn, outcomes, all_or_none))
}

fn update_all(ctx: &Ctx) -> Result {
    let (all_or_none, records) = records_body(ctx)?;
    let org = ctx.org();
    let (txn, outcomes) = ctx.stage(
        |txn| {
            records
                .iter()
                .map(|rec| {
                    let Some(rec) = rec.as_object() else {
                        return Outcome::failed(
                            None,
                            SfError::new("JSON_PARSER_ERROR", "Each record must be a JSON object"),
                        );
                    };
                    let Some(id) = record_id_of(rec) else {
                        return Outcome::failed(
                            None,
                            SfError::new("MISSING_ARGUMENT", "Id not specified in an update call"),
                        );
                    };
                    let staged = (|| {
                        let object = record_object(ctx, rec, Some(&id))?;
                        let values =
                            values_from_json(&org.schema.objects[object], &without_id(rec), false)?;
                        org.update(txn, object, &id, values)
                    })();
                    let id18 = ids::normalize(&id).unwrap_or(id);
                    match staged {
                        Ok(()) => Outcome::ok(id18),
                        Err(e) => Outcome::failed(Some(id18), e),
                    }
                })
                .collect::<Vec<Outcome>>()
        },
        |o: &Vec<Outcome>| any_locked(o),
    );
    Ok(conclude(ctx, txn, outcomes, all_or_none))
}

fn delete_all(ctx: &Ctx) -> Result {
    let ids_param = ctx.param("ids").unwrap_or_default();
    let list: Vec<&str> = ids_param
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(Reply::bad(SfError::new(
            "MISSING_ARGUMENT",
            "ids parameter is required",
        )));
    }
    if list.len() > MAX_RECORDS {
        return Err(too_many());
    }
    let all_or_none = ctx
        .param("allOrNone")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let org = ctx.org();
    let (txn, outcomes) = ctx.stage(
        |txn| {
            list.iter()
                .map(|id| {
                    let id18 = ids::normalize(id).unwrap_or_else(|| id.to_string());
                    let staged = match org.locate(id) {
                        Some((object, _)) => org.delete(txn, object, id),
                        None => Err(SfError::new(
                            "INVALID_CROSS_REFERENCE_KEY",
                            "invalid cross reference id",
                        )),
                    };
                    match staged {
                        Ok(()) => Outcome::ok(id18),
                        Err(e) => Outcome::failed(Some(id18), e),
                    }
                })
                .collect::<Vec<Outcome>>()
        },
        |o: &Vec<Outcome>| any_locked(o),
    );
    Ok(conclude(ctx, txn, outcomes, all_or_none))
}

/// `PATCH /composite/sobjects/{obj}/{extField}`: upsert each record by its external id.
pub(super) fn upsert(ctx: &Ctx, obj: &str, field: &str) -> Result {
    let object = object_or_404(ctx, obj)?;
    let org = ctx.org();
    let def = &org.schema.objects[object];
    let field = external_id_field(def, field).ok_or_else(Reply::not_found)?;
    let field_name = def.fields[field].name.clone();
    let (all_or_none, records) = records_body(ctx)?;
    let (txn, outcomes) = ctx.stage(
        |txn| {
            records
                .iter()
                .map(|rec| {
                    let staged = (|| {
                        let rec = rec.as_object().ok_or_else(|| {
                            SfError::new("JSON_PARSER_ERROR", "Each record must be a JSON object")
                        })?;
                        if record_object(ctx, rec, None).is_ok_and(|o| o != object) {
                            return Err(SfError::new(
                                "INVALID_TYPE",
                                format!("All records must be of type {}", def.name),
                            ));
                        }
                        let value = rec
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(&field_name))
                            .and_then(|(_, v)| match v {
                                Json::String(s) if !s.is_empty() => Some(s.clone()),
                                Json::Number(n) => Some(n.to_string()),
                                _ => None,
                            })
                            .ok_or_else(|| {
                                SfError::new(
                                    "MISSING_ARGUMENT",
                                    format!("{field_name} not specified"),
                                )
                                .with_fields(vec![field_name.clone()])
                            })?;
                        let body: Map<String, Json> = rec
                            .iter()
                            .filter(|(k, _)| {
                                !k.eq_ignore_ascii_case(&field_name)
                                    && !k.eq_ignore_ascii_case("id")
                            })
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        let creating = find_by_external_id(org, object, field, &value).is_empty();
                        let values = values_from_json(def, &body, creating)?;
                        stage_upsert(org, txn, object, field, &value, values, false)
                    })();
                    match staged {
                        Ok(Upserted::Created(id)) => Outcome {
                            id: Some(id),
                            created: Some(true),
                            error: None,
                        },
                        Ok(Upserted::Updated(id)) => Outcome {
                            id: Some(id),
                            created: Some(false),
                            error: None,
                        },
                        Err(e) => Outcome::failed(None, e),
                    }
                })
                .collect::<Vec<Outcome>>()
        },
        |o: &Vec<Outcome>| any_locked(o),
    );
    Ok(conclude(ctx, txn, outcomes, all_or_none))
}

/// `GET /composite/sobjects/{obj}?ids=…&fields=…`, or the same as a POST body
/// `{"ids":[…],"fields":[…]}` (jsforce's form, which keeps long id lists out of the URL): the
/// records, `null` for those not found.
pub(super) fn retrieve(ctx: &Ctx, obj: &str) -> Result {
    let object = object_or_404(ctx, obj)?;
    let org = ctx.org();
    let def = &org.schema.objects[object];
    let (ids_list, fields_list) = if ctx.method == Method::POST {
        let body = object_body(ctx)?;
        let join = |k: &str| {
            body.get(k).and_then(Json::as_array).map(|a| {
                a.iter()
                    .filter_map(Json::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
        };
        (join("ids").unwrap_or_default(), join("fields"))
    } else {
        (
            ctx.param("ids").unwrap_or_default().to_string(),
            ctx.param("fields").map(str::to_string),
        )
    };
    let fields = field_list(def, fields_list.as_deref())?;
    let list: Vec<&str> = ids_list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if list.len() > 2000 {
        return Err(too_many());
    }
    let rendered: Vec<String> = list
        .iter()
        .map(|id| {
            ids::normalize(id)
                .and_then(|id| org.get_by_id(object, &id))
                .filter(|r| !is_deleted(r))
                .map_or_else(
                    || "null".to_string(),
                    |r| record_json(ctx, def, &r, &fields),
                )
        })
        .collect();
    Ok(Reply::raw(
        StatusCode::OK,
        format!("[{}]", rendered.join(",")),
    ))
}

/// `POST /composite/batch`: up to 25 independent subrequests, each run as if sent alone.
pub(super) fn batch(ctx: &Ctx) -> Result {
    let body = object_body(ctx)?;
    let halt_on_error = body
        .get("haltOnError")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let requests = match body.get("batchRequests") {
        Some(Json::Array(r)) => r,
        _ => {
            return Err(Reply::bad(SfError::new(
                "JSON_PARSER_ERROR",
                "The request body must contain a batchRequests array",
            )))
        }
    };
    if requests.len() > MAX_BATCH {
        return Err(Reply::bad(SfError::new(
            "INVALID_BATCH_REQUEST",
            format!("A batch cannot contain more than {MAX_BATCH} requests"),
        )));
    }
    let mut has_errors = false;
    let mut halted = false;
    let mut results = Vec::with_capacity(requests.len());
    for sub in requests {
        let reply = if halted {
            Reply::error(
                StatusCode::PRECONDITION_FAILED,
                &SfError::new(
                    "BATCH_PROCESSING_HALTED",
                    "Batch processing halted per request",
                ),
            )
        } else {
            let reply = match subrequest(ctx, sub) {
                Ok(sub_ctx) => dispatch(&sub_ctx),
                Err(e) => e,
            };
            if reply.status.as_u16() >= 400 {
                has_errors = true;
                halted = halt_on_error;
            }
            reply
        };
        results.push(format!(
            r#"{{"result":{},"statusCode":{}}}"#,
            reply.body.as_deref().unwrap_or("null"),
            reply.status.as_u16()
        ));
    }
    Ok(Reply::raw(
        StatusCode::OK,
        format!(
            r#"{{"hasErrors":{has_errors},"results":[{}]}}"#,
            results.join(",")
        ),
    ))
}

/// A batch subrequest as a request of its own: `url` is `/services/data/vNN.N/…` or `vNN.N/…`.
fn subrequest(ctx: &Ctx, sub: &Json) -> Result<Ctx> {
    let bad = |m: &str| Reply::bad(SfError::new("INVALID_BATCH_REQUEST", m.to_string()));
    let method = sub
        .get("method")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("A subrequest needs a method"))?;
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| bad("Invalid method"))?;
    let url = sub
        .get("url")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("A subrequest needs a url"))?;
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("services/data/").unwrap_or(path);
    let mut segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(pct_decode)
        .collect();
    if segs.is_empty() {
        return Err(Reply::not_found());
    }
    let version = parse_version(&segs.remove(0)).ok_or_else(Reply::not_found)?;
    let body = match sub.get("richInput") {
        Some(v) if !v.is_null() => bytes::Bytes::from(v.to_string()),
        _ => bytes::Bytes::new(),
    };
    Ok(Ctx {
        state: ctx.state.clone(),
        method,
        version,
        segs,
        params: serde_urlencoded::from_str(query).unwrap_or_default(),
        headers: ctx.headers.clone(),
        body,
    })
}
