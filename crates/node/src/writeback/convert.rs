//! Trigger-log values (text, as `to_jsonb(v) #>> '{}'` renders them) to the JSON Salesforce takes,
//! and the fields each kind of write may carry.

use std::collections::HashSet;

use driftless_core::mapping::ResolvedMapping;
use driftless_core::writeback::ClaimedEntry;
use salesforce::SObject;
use serde_json::Value;

/// What the org's describe lets a write set, by Salesforce field name.
#[derive(Debug, Clone, Default)]
pub struct Writable {
    pub createable: HashSet<String>,
    pub updateable: HashSet<String>,
}

impl Writable {
    pub fn from_describe(d: &salesforce::SObjectDescribe) -> Writable {
        Writable {
            createable: d
                .fields
                .iter()
                .filter(|f| f.createable)
                .map(|f| f.name.clone())
                .collect(),
            updateable: d
                .fields
                .iter()
                .filter(|f| f.updateable)
                .map(|f| f.name.clone())
                .collect(),
        }
    }
}

/// How an entry goes to Salesforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// By the upsert field: a resend finds what the first attempt created.
    Upsert,
    /// A create with nothing to match a resend by: first attempt only.
    Create,
    Update,
    Delete,
}

/// The JSON value of one field. Postgres renders `timestamp` (which holds UTC, as in Heroku Connect)
/// without an offset, which Salesforce would read in the user's time zone: it gets a `Z`.
pub fn to_json(sf_type: &str, text: Option<&str>) -> Value {
    let Some(t) = text else { return Value::Null };
    match sf_type {
        "boolean" => match t {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(t.to_owned()),
        },
        "int" => t
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(t.to_owned())),
        "double" | "currency" | "percent" => t
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(t.to_owned())),
        "datetime" if !has_offset(t) => Value::String(format!("{t}Z")),
        _ => Value::String(t.to_owned()),
    }
}

fn has_offset(t: &str) -> bool {
    let Some((_, time)) = t.split_once('T') else {
        return true;
    };
    time.ends_with('Z') || time.contains('+') || time.contains('-')
}

/// The record to send for `entry`, or `None` when nothing it changed is writable (a change of
/// only read-only columns: nothing to send, the entry is done).
pub fn sobject(
    mapping: &ResolvedMapping,
    writable: &Writable,
    entry: &ClaimedEntry,
    kind: Kind,
) -> Option<SObject> {
    let upsert_field = mapping.upsert_field.as_deref();
    let mut obj = SObject::new(mapping.object_name.clone());
    for f in &mapping.fields {
        let Some(v) = entry.values.get(f.column.as_str()) else {
            continue;
        };
        if Some(f.sf_name.as_str()) == upsert_field && kind == Kind::Upsert {
            continue;
        }
        // An upsert may turn out to be an update (the resend after a crash), so it carries only
        // what both a create and an update accept.
        let allowed = match kind {
            Kind::Create => writable.createable.contains(&f.sf_name),
            Kind::Update => writable.updateable.contains(&f.sf_name),
            Kind::Upsert => {
                writable.createable.contains(&f.sf_name) && writable.updateable.contains(&f.sf_name)
            }
            Kind::Delete => false,
        };
        if allowed {
            obj.fields
                .insert(f.sf_name.clone(), to_json(&f.sf_type, v.as_deref()));
        }
    }
    match kind {
        Kind::Upsert => {
            let field = upsert_field?;
            obj.fields
                .insert(field.to_owned(), Value::String(entry.upsert_value.clone()?));
        }
        Kind::Update => {
            if obj.fields.is_empty() {
                return None;
            }
            obj.fields
                .insert("Id".into(), Value::String(entry.sfid.clone()?));
        }
        Kind::Create | Kind::Delete => {}
    }
    Some(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_take_the_type_salesforce_expects() {
        assert_eq!(to_json("boolean", Some("true")), json!(true));
        assert_eq!(to_json("int", Some("42")), json!(42));
        assert_eq!(to_json("currency", Some("12.5")), json!(12.5));
        assert_eq!(to_json("string", Some("12.5")), json!("12.5"));
        assert_eq!(to_json("date", Some("2026-11-24")), json!("2026-11-24"));
        assert_eq!(
            to_json("datetime", Some("2026-11-24T10:00:00")),
            json!("2026-11-24T10:00:00Z")
        );
        assert_eq!(
            to_json("datetime", Some("2026-11-24T10:00:00+00:00")),
            json!("2026-11-24T10:00:00+00:00")
        );
        assert_eq!(to_json("string", None), Value::Null);
        // Not a number after all: Salesforce's own error names the field, better than ours.
        assert_eq!(to_json("int", Some("x")), json!("x"));
    }
}
