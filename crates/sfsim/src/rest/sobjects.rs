//! sObject create, read, update, delete and upsert (reference section 2.6).

use super::{is_lock_error, object_or_404, Ctx, Reply, Result};
use crate::error::SfError;
use crate::ids;
use crate::schema::{ObjectDef, F_ID};
use crate::store::input::{from_json, from_text, writable_field};
use crate::store::{is_deleted, record_id, Org, Record};
use crate::value::Value;
use actix_web::http::{Method, StatusCode};
use serde_json::{json, Map, Value as Json};

/// Versions from which upsert answers an update with 200 and `created` (older ones: 204).
const UPSERT_CREATED_SINCE: f64 = 46.0;

/// Field values of a record body for a write. `attributes` is metadata, not a field; an Id is
/// refused because the record's identity comes from the URL (or is minted on create).
pub(super) fn values_from_json(
    def: &ObjectDef,
    body: &Map<String, Json>,
    creating: bool,
) -> std::result::Result<Vec<(usize, Value)>, SfError> {
    let mut values = Vec::with_capacity(body.len());
    for (k, v) in body {
        if k == "attributes" {
            continue;
        }
        if k.eq_ignore_ascii_case("Id") {
            return Err(SfError::new(
                "INVALID_FIELD",
                "The Id field should not be specified in the sobject data.",
            ));
        }
        let idx = writable_field(def, k, creating)?;
        values.push((idx, from_json(&def.fields[idx], v)?));
    }
    Ok(values)
}

/// The JSON object of a request body, or the error Salesforce gives for another JSON value.
pub(super) fn object_body(ctx: &Ctx) -> Result<Map<String, Json>> {
    match ctx.json_body()? {
        Json::Object(m) => Ok(m),
        _ => Err(Reply::bad(SfError::new(
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of sObject from START_ARRAY value",
        ))),
    }
}

/// A store error on a single-record call: missing and deleted records are 404, the rest 400.
pub(super) fn store_error(e: SfError) -> Reply {
    match e.code {
        "NOT_FOUND" | "ENTITY_IS_DELETED" => Reply::error(StatusCode::NOT_FOUND, &e),
        _ => Reply::bad(e),
    }
}

/// A path segment that is not an Id is read by Salesforce as an external-id field name.
fn not_an_id(segment: &str) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        &SfError::new(
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {segment}"),
        ),
    )
}

pub(super) fn save_result(id: &str) -> Json {
    json!({"id": id, "success": true, "errors": []})
}

pub(super) fn create(ctx: &Ctx, obj: &str) -> Result {
    let object = object_or_404(ctx, obj)?;
    let org = ctx.org();
    let body = object_body(ctx)?;
    let values = values_from_json(&org.schema.objects[object], &body, true)?;
    let mut txn = org.begin();
    // A create locks nothing another transaction could hold: no lock wait needed.
    match org.create(&mut txn, object, values) {
        Ok(id) => {
            ctx.finish(txn);
            Ok(Reply::json(StatusCode::CREATED, &save_result(&id)))
        }
        Err(e) => {
            org.rollback(txn);
            Err(Reply::bad(e))
        }
    }
}

/// The live committed record with this Id; 404 otherwise.
fn live_record(org: &Org, object: usize, id: &str) -> Result<Record> {
    let id18 = ids::normalize(id).ok_or_else(|| not_an_id(id))?;
    match org.get_by_id(object, &id18) {
        Some(r) if !is_deleted(&r) => Ok(r),
        _ => Err(Reply::not_found()),
    }
}

/// Field indices `?fields=a,b` asks for; every field without it.
pub(super) fn selected_fields(ctx: &Ctx, def: &ObjectDef) -> Result<Vec<usize>> {
    field_list(def, ctx.param("fields"))
}

/// Field indices of a comma-separated list; every field for none.
pub(super) fn field_list(def: &ObjectDef, list: Option<&str>) -> Result<Vec<usize>> {
    match list.map(str::trim).filter(|f| !f.is_empty()) {
        None => Ok((0..def.fields.len()).collect()),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(|f| {
                def.field_index(f).ok_or_else(|| {
                    Reply::bad(SfError::new(
                        "INVALID_FIELD",
                        format!(
                            "No such column '{f}' on entity '{}'. If you are attempting to use a custom field, be \
                             sure to append the '__c' after the custom field name. Please reference your WSDL or the \
                             describe call for the appropriate names.",
                            def.name
                        ),
                    ))
                })
            })
            .collect(),
    }
}

/// A record as REST returns it: `attributes` first, then fields in the order asked.
pub(super) fn record_json(ctx: &Ctx, def: &ObjectDef, rec: &Record, fields: &[usize]) -> String {
    let mut out = String::with_capacity(64 + fields.len() * 24);
    out.push_str(r#"{"attributes":{"type":"#);
    out.push_str(&Json::String(def.name.clone()).to_string());
    out.push_str(r#","url":"#);
    out.push_str(
        &Json::String(format!(
            "{}/sobjects/{}/{}",
            ctx.base(),
            def.name,
            record_id(rec)
        ))
        .to_string(),
    );
    out.push('}');
    for &f in fields {
        out.push(',');
        out.push_str(&Json::String(def.fields[f].name.clone()).to_string());
        out.push(':');
        out.push_str(&rec[f].to_rest_json().to_string());
    }
    out.push('}');
    out
}

pub(super) fn by_id(ctx: &Ctx, obj: &str, id: &str) -> Result {
    let object = object_or_404(ctx, obj)?;
    let org = ctx.org();
    let def = &org.schema.objects[object];
    match ctx.method {
        // `POST /sobjects/{obj}/Id` with no value is a create (v37+).
        Method::POST if id.eq_ignore_ascii_case("Id") => create(ctx, obj),
        Method::GET | Method::HEAD => {
            let rec = live_record(org, object, id)?;
            let fields = selected_fields(ctx, def)?;
            Ok(Reply::raw(
                StatusCode::OK,
                record_json(ctx, def, &rec, &fields),
            ))
        }
        Method::PATCH => {
            ids::normalize(id).ok_or_else(|| not_an_id(id))?;
            let body = object_body(ctx)?;
            let values = values_from_json(def, &body, false)?;
            let (txn, staged) =
                ctx.stage(|t| org.update(t, object, id, values.clone()), is_lock_error);
            match staged {
                Ok(()) => {
                    ctx.finish(txn);
                    Ok(Reply::no_content())
                }
                Err(e) => {
                    org.rollback(txn);
                    Err(store_error(e))
                }
            }
        }
        Method::DELETE => {
            ids::normalize(id).ok_or_else(|| not_an_id(id))?;
            let (txn, staged) = ctx.stage(|t| org.delete(t, object, id), is_lock_error);
            match staged {
                Ok(()) => {
                    ctx.finish(txn);
                    Ok(Reply::no_content())
                }
                Err(e) => {
                    org.rollback(txn);
                    Err(store_error(e))
                }
            }
        }
        _ => Err(Reply::method_not_allowed(
            &ctx.method,
            "GET,HEAD,PATCH,DELETE",
        )),
    }
}

/// The field a `/sobjects/{obj}/{field}/{value}` path names: `Id` or an External ID field.
pub(super) fn external_id_field(def: &ObjectDef, field: &str) -> Option<usize> {
    def.field_index(field)
        .filter(|&i| i == F_ID || def.fields[i].external_id)
}

/// Live committed records whose external id equals `value`. Unique fields use the store's index;
/// non-unique ones are scanned, which is how more than one can match (HTTP 300).
pub(super) fn find_by_external_id(
    org: &Org,
    object: usize,
    field: usize,
    value: &str,
) -> Vec<Record> {
    let live = |r: Option<&Record>| r.filter(|r| !is_deleted(r)).cloned();
    if field == F_ID {
        return ids::normalize(value)
            .and_then(|id| live(org.get_by_id(object, &id).as_ref()))
            .into_iter()
            .collect();
    }
    let def = &org.schema.objects[object];
    if def.fields[field].unique {
        return org
            .find_by_external_id(object, field, value)
            .and_then(|seq| org.read(|t| live(t[object].get(seq))))
            .into_iter()
            .collect();
    }
    org.read(|t| {
        t[object]
            .iter()
            .filter(|r| !is_deleted(r))
            .filter(|r| {
                r[field]
                    .to_bulk_text()
                    .is_some_and(|v| v.eq_ignore_ascii_case(value))
            })
            .cloned()
            .collect()
    })
}

/// HTTP 300: the URLs of every record an external id matched.
fn multiple_choices(ctx: &Ctx, def: &ObjectDef, matches: &[Record]) -> Reply {
    let urls: Vec<Json> = matches
        .iter()
        .map(|r| {
            Json::String(format!(
                "{}/sobjects/{}/{}",
                ctx.base(),
                def.name,
                record_id(r)
            ))
        })
        .collect();
    Reply::json(StatusCode::MULTIPLE_CHOICES, &Json::Array(urls))
}

/// What an upsert did to one record.
pub(super) enum Upserted {
    Created(String),
    Updated(String),
}

/// Stages one upsert in `txn`: update the single match, or create with the external id set.
pub(super) fn stage_upsert(
    org: &Org,
    txn: &mut crate::store::Txn,
    object: usize,
    field: usize,
    value: &str,
    mut values: Vec<(usize, Value)>,
    update_only: bool,
) -> std::result::Result<Upserted, SfError> {
    let def = &org.schema.objects[object];
    let matches = find_by_external_id(org, object, field, value);
    match matches.as_slice() {
        [one] => {
            let id = record_id(one).to_string();
            org.update(txn, object, &id, values)?;
            Ok(Upserted::Updated(id))
        }
        [] if update_only || field == F_ID => Err(SfError::not_found()),
        [] => {
            let fdef = &def.fields[field];
            if !values.iter().any(|(i, _)| *i == field) {
                values.push((field, from_text(fdef, value)?));
            }
            Ok(Upserted::Created(org.create(txn, object, values)?))
        }
        many => Err(SfError::new(
            "DUPLICATE_EXTERNAL_ID",
            format!(
                "{}: more than one record found for external id field: {:?}",
                def.fields[field].name,
                many.iter().map(record_id).collect::<Vec<_>>()
            ),
        )
        .with_fields(vec![def.fields[field].name.clone()])),
    }
}

pub(super) fn by_external_id(ctx: &Ctx, obj: &str, field: &str, value: &str) -> Result {
    let object = object_or_404(ctx, obj)?;
    let org = ctx.org();
    let def = &org.schema.objects[object];
    let field = external_id_field(def, field).ok_or_else(Reply::not_found)?;
    match ctx.method {
        Method::GET | Method::HEAD => {
            let matches = find_by_external_id(org, object, field, value);
            match matches.as_slice() {
                [] => Err(Reply::not_found()),
                [one] => {
                    let fields = selected_fields(ctx, def)?;
                    Ok(Reply::raw(
                        StatusCode::OK,
                        record_json(ctx, def, one, &fields),
                    ))
                }
                many => Ok(multiple_choices(ctx, def, many)),
            }
        }
        Method::DELETE => {
            let matches = find_by_external_id(org, object, field, value);
            match matches.as_slice() {
                [] => Err(Reply::not_found()),
                [one] => {
                    let (txn, staged) =
                        ctx.stage(|t| org.delete(t, object, record_id(one)), is_lock_error);
                    match staged {
                        Ok(()) => {
                            ctx.finish(txn);
                            Ok(Reply::no_content())
                        }
                        Err(e) => {
                            org.rollback(txn);
                            Err(store_error(e))
                        }
                    }
                }
                many => Ok(multiple_choices(ctx, def, many)),
            }
        }
        Method::PATCH | Method::POST => upsert(ctx, object, field, value),
        _ => Err(Reply::method_not_allowed(
            &ctx.method,
            "GET,HEAD,PATCH,DELETE",
        )),
    }
}

fn upsert(ctx: &Ctx, object: usize, field: usize, value: &str) -> Result {
    let org = ctx.org();
    let def = &org.schema.objects[object];
    let mut body = object_body(ctx)?;
    // The external id may be repeated in the body; it must then agree with the URL.
    if let Some(k) = body
        .keys()
        .find(|k| k.eq_ignore_ascii_case(&def.fields[field].name))
        .cloned()
    {
        let given = body.remove(&k).unwrap_or(Json::Null);
        let same = match &given {
            Json::String(s) => s == value,
            Json::Number(n) => n.to_string() == value,
            _ => false,
        };
        if !same {
            return Err(Reply::bad(
                SfError::new(
                    "INVALID_FIELD",
                    format!("The value of the external ID field {} in the request body does not match the value in the URL", def.fields[field].name),
                )
                .with_fields(vec![def.fields[field].name.clone()]),
            ));
        }
    }
    let matches = find_by_external_id(org, object, field, value);
    if matches.len() > 1 {
        return Ok(multiple_choices(ctx, def, &matches));
    }
    let creating = matches.is_empty();
    let values = values_from_json(def, &body, creating)?;
    let update_only = ctx
        .param("updateOnly")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let (txn, staged) = ctx.stage(
        |t| stage_upsert(org, t, object, field, value, values.clone(), update_only),
        is_lock_error,
    );
    match staged {
        Ok(Upserted::Created(id)) => {
            ctx.finish(txn);
            let mut body = save_result(&id);
            if ctx.version_num() >= UPSERT_CREATED_SINCE {
                body["created"] = Json::Bool(true);
            }
            Ok(Reply::json(StatusCode::CREATED, &body))
        }
        Ok(Upserted::Updated(id)) => {
            ctx.finish(txn);
            if ctx.version_num() >= UPSERT_CREATED_SINCE {
                let mut body = save_result(&id);
                body["created"] = Json::Bool(false);
                Ok(Reply::json(StatusCode::OK, &body))
            } else {
                Ok(Reply::no_content())
            }
        }
        Err(e) => {
            org.rollback(txn);
            Err(store_error(e))
        }
    }
}
