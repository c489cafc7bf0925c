//! Format negotiation and the jobInfo / batchInfo / result-list documents.
//!
//! Job create and close answer in the format of the request's Content-Type; batch info, batch
//! lists and result lists answer in the job's contentType (CSV and XML jobs → XML, JSON jobs →
//! JSON). Content-Types are exactly `application/xml` and `application/json`: salesforce-bulk
//! compares them verbatim.

use super::{Batch, BatchResults, ContentType, Job};
use crate::value::{format_bulk_datetime, format_rest_datetime};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use std::collections::HashMap;

const NS: &str = "http://www.force.com/2009/06/asyncapi/dataload";
const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

pub fn request_is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"))
}

/// A scalar of a jobInfo document, whichever format it came in.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    Number(f64),
}

impl Scalar {
    pub fn as_text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Number(n) => {
                if n.fract() == 0.0 {
                    format!("{}", *n as i64)
                } else {
                    n.to_string()
                }
            }
        }
    }
}

/// The top-level fields of a `<jobInfo>` XML body or a JSON object body.
pub fn parse_job_body(
    body: &[u8],
    json: bool,
) -> Result<HashMap<String, Scalar>, (&'static str, String)> {
    let looks_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if json || looks_json {
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ("InvalidJob", format!("Unable to parse the JSON body: {e}")))?;
        let obj = v
            .as_object()
            .ok_or(("InvalidJob", "The JSON body must be an object".to_string()))?;
        Ok(obj
            .iter()
            .filter_map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => Scalar::Text(s.clone()),
                    serde_json::Value::Number(n) => Scalar::Number(n.as_f64()?),
                    serde_json::Value::Bool(b) => Scalar::Text(b.to_string()),
                    _ => return None,
                };
                Some((k.clone(), s))
            })
            .collect())
    } else {
        parse_xml_fields(body).map_err(|e| ("InvalidXML", e))
    }
}

/// Leaf elements directly under the root, by local name (namespaces are ignored).
fn parse_xml_fields(body: &[u8]) -> Result<HashMap<String, Scalar>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<String> = None;
    let mut out = HashMap::new();
    let mut saw_root = false;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                depth += 1;
                saw_root = true;
                current = (depth == 2)
                    .then(|| String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
            }
            Ok(Event::Empty(_)) => saw_root = true,
            Ok(Event::Text(t)) => {
                if let Some(name) = &current {
                    let text = t
                        .unescape()
                        .map_err(|e| format!("Unable to parse XML: {e}"))?;
                    out.insert(name.clone(), Scalar::Text(text.trim().to_string()));
                }
            }
            Ok(Event::CData(t)) => {
                if let Some(name) = &current {
                    out.insert(
                        name.clone(),
                        Scalar::Text(String::from_utf8_lossy(&t).trim().to_string()),
                    );
                }
            }
            Ok(Event::End(_)) => {
                depth = depth.saturating_sub(1);
                current = None;
            }
            Ok(Event::Eof) => break,
            Err(e) => return Err(format!("Unable to parse XML: {e}")),
            _ => {}
        }
        buf.clear();
    }
    if !saw_root {
        return Err("Unable to parse XML: the body is empty".into());
    }
    Ok(out)
}

pub fn xml_response(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/xml")
        .body(body)
}

pub fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body.to_string())
}

enum Field {
    Text(String),
    Int(u64),
    /// Rendered as a JSON number, as Salesforce does for apiVersion.
    Version(String),
    /// Epoch seconds: `…000Z` in XML, `…000+0000` in JSON.
    Time(i64),
}

fn render(
    root: &str,
    fields: Vec<(&'static str, Field)>,
    json: bool,
) -> (String, serde_json::Value) {
    if json {
        let mut map = serde_json::Map::new();
        for (k, v) in fields {
            let v = match v {
                Field::Text(s) => serde_json::Value::String(s),
                Field::Int(n) => n.into(),
                Field::Version(s) => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::String(s)),
                Field::Time(t) => serde_json::Value::String(format_rest_datetime(t)),
            };
            map.insert(k.to_string(), v);
        }
        (String::new(), serde_json::Value::Object(map))
    } else {
        let mut out = format!("<{root} xmlns=\"{NS}\">");
        append_xml_fields(&mut out, fields);
        out.push_str(&format!("</{root}>"));
        (out, serde_json::Value::Null)
    }
}

fn append_xml_fields(out: &mut String, fields: Vec<(&'static str, Field)>) {
    for (k, v) in fields {
        let text = match v {
            Field::Text(s) => crate::http::respond::xml_escape(&s),
            Field::Int(n) => n.to_string(),
            Field::Version(s) => s,
            Field::Time(t) => format_bulk_datetime(t),
        };
        out.push_str(&format!("<{k}>{text}</{k}>"));
    }
}

pub fn job_info(
    job: &Job,
    org: &crate::store::Org,
    json: bool,
    status: StatusCode,
) -> HttpResponse {
    let inner = job.inner.lock();
    let (mut queued, mut in_progress, mut completed, mut failed, mut processed, mut ms) =
        (0, 0, 0, 0, 0, 0);
    for b in &inner.batches {
        let b = b.inner.lock();
        match b.state {
            super::BatchState::Queued => queued += 1,
            super::BatchState::InProgress => in_progress += 1,
            super::BatchState::Completed => completed += 1,
            super::BatchState::Failed => failed += 1,
            super::BatchState::NotProcessed => {}
        }
        processed += b.processed;
        ms += b.processing_ms;
    }
    let fields = vec![
        ("id", Field::Text(job.id.clone())),
        ("operation", Field::Text(job.operation.name().into())),
        (
            "object",
            Field::Text(org.schema.objects[job.object].name.clone()),
        ),
        ("createdById", Field::Text(org.admin_user_id.clone())),
        ("createdDate", Field::Time(job.created)),
        ("systemModstamp", Field::Time(inner.modstamp)),
        ("state", Field::Text(inner.state.name().into())),
        ("concurrencyMode", Field::Text(job.concurrency.into())),
        ("contentType", Field::Text(job.content_type.name().into())),
        ("numberBatchesQueued", Field::Int(queued)),
        ("numberBatchesInProgress", Field::Int(in_progress)),
        ("numberBatchesCompleted", Field::Int(completed)),
        ("numberBatchesFailed", Field::Int(failed)),
        ("numberBatchesTotal", Field::Int(inner.batches.len() as u64)),
        ("numberRecordsProcessed", Field::Int(processed)),
        ("numberRetries", Field::Int(0)),
        ("apiVersion", Field::Version(job.api_version.clone())),
        ("numberRecordsFailed", Field::Int(0)),
        ("totalProcessingTime", Field::Int(ms)),
        ("apiActiveProcessingTime", Field::Int(ms)),
        ("apexProcessingTime", Field::Int(0)),
    ];
    drop(inner);
    let (xml, value) = render("jobInfo", fields, json);
    if json {
        json_response(status, &value)
    } else {
        xml_response(status, format!("{XML_DECL}{xml}"))
    }
}

fn batch_fields(batch: &Batch) -> Vec<(&'static str, Field)> {
    let b = batch.inner.lock();
    let mut fields = vec![
        ("id", Field::Text(batch.id.clone())),
        ("jobId", Field::Text(batch.job_id.clone())),
        ("state", Field::Text(b.state.name().into())),
    ];
    if let Some(m) = &b.message {
        fields.push(("stateMessage", Field::Text(m.clone())));
    }
    fields.extend([
        ("createdDate", Field::Time(batch.created)),
        ("systemModstamp", Field::Time(b.modstamp)),
        ("numberRecordsProcessed", Field::Int(b.processed)),
        ("numberRecordsFailed", Field::Int(0)),
        ("totalProcessingTime", Field::Int(b.processing_ms)),
        ("apiActiveProcessingTime", Field::Int(b.processing_ms)),
        ("apexProcessingTime", Field::Int(0)),
    ]);
    fields
}

pub fn batch_info(job: &Job, batch: &Batch, status: StatusCode) -> HttpResponse {
    let json = job.content_type == ContentType::Json;
    let (xml, value) = render("batchInfo", batch_fields(batch), json);
    if json {
        json_response(status, &value)
    } else {
        xml_response(status, format!("{XML_DECL}{xml}"))
    }
}

/// `<batchInfoList>` in XML; `{"batchInfo":[…]}` in JSON (salesforce-bulk reads that key).
pub fn batch_list(job: &Job) -> HttpResponse {
    let batches = job.inner.lock().batches.clone();
    if job.content_type == ContentType::Json {
        let list: Vec<serde_json::Value> = batches
            .iter()
            .map(|b| render("batchInfo", batch_fields(b), true).1)
            .collect();
        json_response(StatusCode::OK, &serde_json::json!({ "batchInfo": list }))
    } else {
        let mut out = format!("{XML_DECL}<batchInfoList xmlns=\"{NS}\">");
        for b in &batches {
            out.push_str("<batchInfo>");
            append_xml_fields(&mut out, batch_fields(b));
            out.push_str("</batchInfo>");
        }
        out.push_str("</batchInfoList>");
        xml_response(StatusCode::OK, out)
    }
}

/// `<result-list><result>752…</result></result-list>`, or `["752…"]` for JSON jobs.
pub fn result_list(job: &Job, results: &BatchResults) -> HttpResponse {
    if job.content_type == ContentType::Json {
        let ids: Vec<&str> = results.parts.iter().map(|(id, _)| id.as_str()).collect();
        json_response(StatusCode::OK, &serde_json::json!(ids))
    } else {
        let mut out = format!("{XML_DECL}<result-list xmlns=\"{NS}\">");
        for (id, _) in &results.parts {
            out.push_str(&format!("<result>{id}</result>"));
        }
        out.push_str("</result-list>");
        xml_response(StatusCode::OK, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_bodies_parse_in_both_formats() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<jobInfo  xmlns="http://www.force.com/2009/06/asyncapi/dataload">
  <operation>query</operation>
  <object>Account</object>
  <concurrencyMode>Parallel</concurrencyMode>
  <contentType>CSV</contentType>
</jobInfo>"#;
        let f = parse_job_body(xml, false).unwrap();
        assert_eq!(f["operation"], Scalar::Text("query".into()));
        assert_eq!(f["contentType"], Scalar::Text("CSV".into()));
        let f = parse_job_body(
            br#"{"operation":"queryAll","object":"Account","concurrencyMode":1}"#,
            true,
        )
        .unwrap();
        assert_eq!(f["concurrencyMode"].as_text(), "1");
        assert!(parse_job_body(b"", false).is_err());
        assert!(parse_job_body(b"{not json", true).is_err());
    }
}
