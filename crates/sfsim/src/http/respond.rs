//! Response shapes shared by the API modules.

use crate::error::SfError;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;

pub const JSON_UTF8: &str = "application/json;charset=UTF-8";

/// A REST error: the body is always a JSON array, which simple-salesforce indexes with `[0]`.
pub fn rest_error(status: StatusCode, err: &SfError) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(JSON_UTF8)
        .body(serde_json::Value::Array(vec![err.rest_json()]).to_string())
}

/// A REST JSON document.
pub fn rest_json(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(JSON_UTF8)
        .body(body.to_string())
}

/// A Bulk 1.0 error: `<error>` XML, or JSON with Content-Type exactly `application/json`
/// (salesforce-bulk compares it verbatim).
pub fn bulk_v1_error(status: StatusCode, code: &str, message: &str, json: bool) -> HttpResponse {
    if json {
        HttpResponse::build(status)
            .content_type("application/json")
            .body(
                serde_json::json!({"exceptionCode": code, "exceptionMessage": message}).to_string(),
            )
    } else {
        HttpResponse::build(status).content_type("application/xml").body(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error xmlns=\"http://www.force.com/2009/06/asyncapi/dataload\">\
             <exceptionCode>{}</exceptionCode><exceptionMessage>{}</exceptionMessage></error>",
            xml_escape(code),
            xml_escape(message)
        ))
    }
}

pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    xml_escape_into(s, &mut out);
    out
}

/// XML 1.0 cannot carry most control characters even escaped; Salesforce drops them.
pub fn xml_escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
}

/// Appends one CSV field, always quoted, with `"` doubled: the Bulk result format.
pub fn csv_field_into(value: Option<&str>, out: &mut String) {
    out.push('"');
    if let Some(v) = value {
        if v.contains('"') {
            out.push_str(&v.replace('"', "\"\""));
        } else {
            out.push_str(v);
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(xml_escape("a<b>&\"'\u{1}"), "a&lt;b&gt;&amp;&quot;&apos;");
        let mut s = String::new();
        csv_field_into(Some("say \"hi\", ok\nbye"), &mut s);
        s.push(',');
        csv_field_into(None, &mut s);
        assert_eq!(s, "\"say \"\"hi\"\", ok\nbye\",\"\"");
    }
}
