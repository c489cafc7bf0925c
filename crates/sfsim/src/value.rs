//! Field values as the org stores them, and their renderings on each wire format.

use chrono::{DateTime, NaiveDate, Utc};

/// One stored field value. Datetimes are whole epoch seconds because Salesforce stores and compares
/// SystemModstamp and friends at second precision.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Text(Box<str>),
    Date(NaiveDate),
    DateTime(i64),
}

impl Value {
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into().into_boxed_str())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_datetime(&self) -> Option<i64> {
        match self {
            Value::DateTime(t) => Some(*t),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// REST JSON: datetimes as `2013-05-20T20:49:32.000+0000`, dates as `YYYY-MM-DD`.
    pub fn to_rest_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Double(d) => serde_json::Number::from_f64(*d)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Text(s) => serde_json::Value::String(s.to_string()),
            Value::Date(d) => serde_json::Value::String(d.format("%Y-%m-%d").to_string()),
            Value::DateTime(t) => serde_json::Value::String(format_rest_datetime(*t)),
        }
    }

    /// Bulk 1.0 JSON results: datetimes as epoch milliseconds, everything else as in REST.
    pub fn to_bulk_json(&self) -> serde_json::Value {
        match self {
            Value::DateTime(t) => (*t * 1000).into(),
            other => other.to_rest_json(),
        }
    }

    /// The text Bulk CSV and XML results carry; None is written as an empty field.
    pub fn to_bulk_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Double(d) => Some(format_double(*d)),
            Value::Text(s) => Some(s.to_string()),
            Value::Date(d) => Some(d.format("%Y-%m-%d").to_string()),
            Value::DateTime(t) => Some(format_bulk_datetime(*t)),
        }
    }

    /// Appends the Bulk CSV/XML text of the value to `out` without an intermediate allocation
    /// for the common cases; this is the hot path of serving large results.
    pub fn write_bulk_text(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Value::Null => {}
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Double(d) => out.push_str(&format_double(*d)),
            Value::Text(s) => out.push_str(s),
            Value::Date(d) => {
                let _ = write!(out, "{}", d.format("%Y-%m-%d"));
            }
            Value::DateTime(t) => write_bulk_datetime(*t, out),
        }
    }
}

/// Doubles print without a trailing `.0` when integral, as Salesforce renders currency and numbers
/// in CSV (`1500` rather than `1500.0`).
pub fn format_double(d: f64) -> String {
    if d.fract() == 0.0 && d.abs() < 1e15 {
        format!("{}", d as i64)
    } else {
        format!("{d}")
    }
}

pub fn to_utc(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

/// `2013-05-20T20:49:32.000+0000`, the REST and getUpdated rendering.
pub fn format_rest_datetime(t: i64) -> String {
    to_utc(t).format("%Y-%m-%dT%H:%M:%S.000+0000").to_string()
}

/// `2019-03-21T17:30:19.000Z`, the Bulk CSV/XML and jobInfo rendering.
pub fn format_bulk_datetime(t: i64) -> String {
    let mut s = String::with_capacity(24);
    write_bulk_datetime(t, &mut s);
    s
}

fn write_bulk_datetime(t: i64, out: &mut String) {
    use std::fmt::Write;
    let dt = to_utc(t);
    let _ = write!(out, "{}", dt.format("%Y-%m-%dT%H:%M:%S.000Z"));
}

/// Parses the datetime forms clients send in JSON bodies and query strings: RFC 3339 with `Z`,
/// `±hh:mm` or `±hhmm`, with or without a fraction. The fraction is dropped: stored precision is
/// whole seconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.timestamp());
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp());
        }
    }
    None
}

pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_renderings() {
        let t = parse_datetime("2013-05-20T20:49:32.000+0000").unwrap();
        assert_eq!(format_rest_datetime(t), "2013-05-20T20:49:32.000+0000");
        assert_eq!(format_bulk_datetime(t), "2013-05-20T20:49:32.000Z");
        assert_eq!(
            Value::DateTime(t).to_bulk_json(),
            serde_json::json!(t * 1000)
        );
        for s in [
            "2013-05-20T20:49:32Z",
            "2013-05-20T20:49:32.123456Z",
            "2013-05-20T22:49:32+02:00",
            "2013-05-20T22:49:32.000+0200",
            "2013-05-20T20:49:32",
        ] {
            assert_eq!(parse_datetime(s), Some(t), "{s}");
        }
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn doubles_drop_integral_fraction() {
        assert_eq!(format_double(1500.0), "1500");
        assert_eq!(format_double(12.5), "12.5");
        assert_eq!(format_double(-0.25), "-0.25");
    }
}
