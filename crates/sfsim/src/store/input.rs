//! Converting client-supplied field values (REST JSON, Bulk CSV text) into stored values, with the
//! errors Salesforce gives for each kind of bad input.

use crate::error::SfError;
use crate::ids;
use crate::schema::{FieldDef, FieldType, ObjectDef};
use crate::value::{parse_date, parse_datetime, Value};
use serde_json::Value as Json;

/// Resolves a field name sent by a client for a write, checking it exists and may be written.
pub fn writable_field(object: &ObjectDef, name: &str, creating: bool) -> Result<usize, SfError> {
    let idx = object.field_index(name).ok_or_else(|| {
        SfError::new(
            "INVALID_FIELD",
            format!("No such column '{name}' on sobject of type {}", object.name),
        )
        .with_fields(vec![name.to_string()])
    })?;
    let field = &object.fields[idx];
    let allowed = if creating {
        field.createable
    } else {
        field.updateable
    };
    if !allowed {
        let (code, verb) = if creating {
            ("INVALID_FIELD_FOR_INSERT_UPDATE", "create")
        } else {
            ("INVALID_FIELD_FOR_INSERT_UPDATE", "update")
        };
        return Err(
            SfError::new(code, format!("Unable to {verb} the field: {}", field.name))
                .with_fields(vec![field.name.clone()]),
        );
    }
    Ok(idx)
}

/// A JSON value from a REST body, as the field's type requires.
pub fn from_json(field: &FieldDef, v: &Json) -> Result<Value, SfError> {
    match v {
        Json::Null => Ok(Value::Null),
        Json::String(s) => from_text(field, s),
        Json::Bool(b) if field.ftype == FieldType::Boolean => Ok(Value::Bool(*b)),
        Json::Number(n) => match field.ftype {
            FieldType::Int => n
                .as_i64()
                .filter(|i| i32::try_from(*i).is_ok())
                .map(Value::Int)
                .ok_or_else(|| bad_value(field, &n.to_string())),
            FieldType::Double | FieldType::Currency | FieldType::Percent => n
                .as_f64()
                .map(Value::Double)
                .ok_or_else(|| bad_value(field, &n.to_string())),
            // Salesforce coerces numbers into text fields.
            t if t.is_textual() && t != FieldType::Id && t != FieldType::Reference => {
                from_text(field, &n.to_string())
            }
            FieldType::Datetime => n
                .as_i64()
                .map(|ms| Value::DateTime(ms.div_euclid(1000)))
                .ok_or_else(|| bad_value(field, &n.to_string())),
            _ => Err(bad_value(field, &n.to_string())),
        },
        other => Err(SfError::new(
            "JSON_PARSER_ERROR",
            format!(
                "Cannot deserialize instance of {} from {} value {other}",
                field.ftype.wire_name(),
                json_kind(other)
            ),
        )),
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Bool(_) => "VALUE_TRUE",
        Json::Array(_) => "START_ARRAY",
        Json::Object(_) => "START_OBJECT",
        _ => "VALUE_STRING",
    }
}

/// Text from a CSV cell or JSON string, as the field's type requires. Empty text is null:
/// Salesforce does not store empty strings.
pub fn from_text(field: &FieldDef, s: &str) -> Result<Value, SfError> {
    if s.is_empty() {
        return Ok(Value::Null);
    }
    match field.ftype {
        FieldType::Boolean => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(bad_value(field, s)),
        },
        FieldType::Int => s
            .trim()
            .parse::<i32>()
            .map(|i| Value::Int(i as i64))
            .map_err(|_| bad_value(field, s)),
        FieldType::Double | FieldType::Currency | FieldType::Percent => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite())
            .map(Value::Double)
            .ok_or_else(|| bad_value(field, s)),
        FieldType::Date => parse_date(s)
            .or_else(|| parse_datetime(s).map(|t| crate::value::to_utc(t).date_naive()))
            .map(Value::Date)
            .ok_or_else(|| bad_value(field, s)),
        FieldType::Datetime => parse_datetime(s)
            .map(Value::DateTime)
            .ok_or_else(|| bad_value(field, s)),
        FieldType::Id | FieldType::Reference => {
            ids::normalize(s).map(Value::text).ok_or_else(|| {
                SfError::new(
                    "MALFORMED_ID",
                    format!("{}: id value of incorrect type: {s}", field.label),
                )
                .with_fields(vec![field.name.clone()])
            })
        }
        _ => {
            let len = s.chars().count();
            if len as u32 > field.length {
                return Err(SfError::new(
                    "STRING_TOO_LONG",
                    format!(
                        "{}: data value too large: {} (max length={})",
                        field.label,
                        preview(s),
                        field.length
                    ),
                )
                .with_fields(vec![field.name.clone()]));
            }
            if field.ftype == FieldType::Email && !looks_like_email(s) {
                return Err(SfError::new(
                    "INVALID_EMAIL_ADDRESS",
                    format!("{}: invalid email address: {s}", field.label),
                )
                .with_fields(vec![field.name.clone()]));
            }
            Ok(Value::text(s))
        }
    }
}

fn preview(s: &str) -> String {
    s.chars().take(40).collect::<String>() + if s.chars().count() > 40 { "..." } else { "" }
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !s.contains(' ')
        }
        None => false,
    }
}

fn bad_value(field: &FieldDef, s: &str) -> SfError {
    let what = match field.ftype {
        FieldType::Boolean => "boolean",
        FieldType::Int => "integer",
        FieldType::Date => "date",
        FieldType::Datetime => "datetime",
        _ => "number",
    };
    SfError::new(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        format!(
            "{}: value not of required type: {s} ({what} expected)",
            field.label
        ),
    )
    .with_fields(vec![field.name.clone()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    #[test]
    fn coerces_and_rejects_like_salesforce() {
        let schema = Schema::standard();
        let inv = schema.object("Invoice__c").unwrap();
        let amount = inv.field("Amount__c").unwrap();
        assert_eq!(
            from_json(amount, &serde_json::json!(12.5)).unwrap(),
            Value::Double(12.5)
        );
        assert_eq!(
            from_json(amount, &serde_json::json!("12.5")).unwrap(),
            Value::Double(12.5)
        );
        assert_eq!(
            from_json(amount, &serde_json::json!("abc"))
                .unwrap_err()
                .code,
            "INVALID_TYPE_ON_FIELD_IN_RECORD"
        );
        let name = inv.field("Name").unwrap();
        assert_eq!(
            from_text(name, &"x".repeat(81)).unwrap_err().code,
            "STRING_TOO_LONG"
        );
        assert_eq!(from_text(name, "").unwrap(), Value::Null);
        let email = inv.field("Contact_Email__c").unwrap();
        assert_eq!(
            from_text(email, "nope").unwrap_err().code,
            "INVALID_EMAIL_ADDRESS"
        );
        assert_eq!(
            writable_field(inv, "Nope__c", true).unwrap_err().code,
            "INVALID_FIELD"
        );
        assert_eq!(
            writable_field(inv, "SystemModstamp", true)
                .unwrap_err()
                .code,
            "INVALID_FIELD_FOR_INSERT_UPDATE"
        );
    }
}
