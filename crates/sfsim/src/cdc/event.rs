//! Turning one transaction's committed changes into change events: which fields each carries,
//! the changed/nulled bitmaps, merging identical changes, and the Avro encoding.

use super::schema::{bitmap, AvroKind, EventSchema, EventSchemas};
use crate::store::{ChangeKind, CommittedChange};
use crate::value::Value;
use apache_avro::types::Value as Avro;
use serde::Serialize;

/// The header every change event carries, with Salesforce's field names.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEventHeader {
    pub entity_name: String,
    pub record_ids: Vec<String>,
    pub change_type: String,
    pub change_origin: String,
    pub transaction_key: String,
    pub sequence_number: i32,
    pub commit_timestamp: i64,
    pub commit_number: i64,
    pub commit_user: String,
    pub nulled_fields: Vec<String>,
    pub diff_fields: Vec<String>,
    pub changed_fields: Vec<String>,
}

const CHANGE_TYPES: [&str; 10] = [
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
    "SNAPSHOT",
];

pub fn change_type_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Create => "CREATE",
        ChangeKind::Update => "UPDATE",
        ChangeKind::Delete => "DELETE",
        ChangeKind::Undelete => "UNDELETE",
    }
}

/// One event before it is numbered: the object, what happened, to which records, and the body
/// (indexes into the schema's `fields`, with their new values).
#[derive(Debug, Clone)]
pub struct DraftEvent {
    pub object: usize,
    pub change_type: String,
    pub record_ids: Vec<String>,
    pub body: Vec<(usize, Value)>,
    pub changed: Vec<usize>,
    pub nulled: Vec<usize>,
}

impl DraftEvent {
    /// The same event with its data withheld: a `GAP_*` event keeps the header and ids only.
    pub fn into_gap(mut self) -> DraftEvent {
        self.change_type = format!("GAP_{}", self.change_type);
        self.body.clear();
        self.changed.clear();
        self.nulled.clear();
        self
    }
}

/// The events a transaction's changes make, in the order the changes were made; records changed
/// identically (same object, change type and body) share one event.
pub fn draft_events(schemas: &EventSchemas, changes: &[CommittedChange]) -> Vec<DraftEvent> {
    let mut events: Vec<DraftEvent> = Vec::new();
    for change in changes.iter().filter(|c| schemas.supported(c.object)) {
        let schema = &schemas.by_object[change.object];
        let id = crate::store::record_id(&change.after).to_string();
        let draft = draft_one(schema, change, id);
        match events.iter_mut().find(|e| {
            e.object == draft.object
                && e.change_type == draft.change_type
                && e.body == draft.body
                && e.changed == draft.changed
                && e.nulled == draft.nulled
        }) {
            Some(same) => same.record_ids.extend(draft.record_ids),
            None => events.push(draft),
        }
    }
    events
}

fn draft_one(schema: &EventSchema, change: &CommittedChange, id: String) -> DraftEvent {
    let mut body = Vec::new();
    let mut changed = Vec::new();
    let mut nulled = Vec::new();
    match change.kind {
        // Creates and undeletes carry every non-null field; no field is "changed".
        ChangeKind::Create | ChangeKind::Undelete => {
            for (i, f) in schema.fields.iter().enumerate() {
                let v = &change.after[f.record_index];
                if !v.is_null() {
                    body.push((i, v.clone()));
                }
            }
        }
        ChangeKind::Update => {
            for (i, f) in schema.fields.iter().enumerate() {
                let new = &change.after[f.record_index];
                let old = change.before.as_ref().map(|b| &b[f.record_index]);
                // LastModifiedDate is always reported as changed by an update.
                if old != Some(new) || f.name == "LastModifiedDate" {
                    changed.push(f.position);
                    if new.is_null() {
                        nulled.push(f.position);
                    } else {
                        body.push((i, new.clone()));
                    }
                }
            }
        }
        ChangeKind::Delete => {}
    }
    DraftEvent {
        object: change.object,
        change_type: change_type_name(change.kind).to_string(),
        record_ids: vec![id],
        body,
        changed,
        nulled,
    }
}

/// The header's bitmaps for a draft.
pub fn header_bitmaps(draft: &DraftEvent) -> (Vec<String>, Vec<String>) {
    (bitmap(&draft.changed), bitmap(&draft.nulled))
}

/// Avro binary of one event in its object's schema.
pub fn encode(
    schema: &EventSchema,
    header: &ChangeEventHeader,
    body: &[(usize, Value)],
) -> Result<Vec<u8>, Box<apache_avro::Error>> {
    let strings = |v: &[String]| Avro::Array(v.iter().cloned().map(Avro::String).collect());
    let type_index = CHANGE_TYPES
        .iter()
        .position(|t| *t == header.change_type)
        .unwrap_or(0);
    let header_value = Avro::Record(vec![
        (
            "entityName".into(),
            Avro::String(header.entity_name.clone()),
        ),
        ("recordIds".into(), strings(&header.record_ids)),
        (
            "changeType".into(),
            Avro::Enum(type_index as u32, header.change_type.clone()),
        ),
        (
            "changeOrigin".into(),
            Avro::String(header.change_origin.clone()),
        ),
        (
            "transactionKey".into(),
            Avro::String(header.transaction_key.clone()),
        ),
        ("sequenceNumber".into(), Avro::Int(header.sequence_number)),
        (
            "commitTimestamp".into(),
            Avro::Long(header.commit_timestamp),
        ),
        ("commitNumber".into(), Avro::Long(header.commit_number)),
        (
            "commitUser".into(),
            Avro::String(header.commit_user.clone()),
        ),
        ("nulledFields".into(), strings(&header.nulled_fields)),
        ("diffFields".into(), strings(&header.diff_fields)),
        ("changedFields".into(), strings(&header.changed_fields)),
    ]);
    let mut fields = Vec::with_capacity(schema.fields.len() + 1);
    fields.push(("ChangeEventHeader".to_string(), header_value));
    let mut given = body.iter().peekable();
    for (i, f) in schema.fields.iter().enumerate() {
        let value = match given.peek() {
            Some((j, v)) if *j == i => {
                given.next();
                Avro::Union(1, Box::new(to_avro(f.kind, v)))
            }
            _ => Avro::Union(0, Box::new(Avro::Null)),
        };
        fields.push((f.name.clone(), value));
    }
    apache_avro::to_avro_datum(&schema.avro, Avro::Record(fields)).map_err(Box::new)
}

fn to_avro(kind: AvroKind, v: &Value) -> Avro {
    match (kind, v) {
        (AvroKind::Boolean, Value::Bool(b)) => Avro::Boolean(*b),
        (AvroKind::Int, Value::Int(i)) => Avro::Int(*i as i32),
        (AvroKind::Int, Value::Double(d)) => Avro::Int(*d as i32),
        (AvroKind::Double, Value::Double(d)) => Avro::Double(*d),
        (AvroKind::Double, Value::Int(i)) => Avro::Double(*i as f64),
        (AvroKind::Date, Value::Date(d)) => {
            Avro::Int((*d - chrono::NaiveDate::default()).num_days() as i32)
        }
        (AvroKind::DateTime, Value::DateTime(t)) => Avro::Long(t * 1000),
        (_, v) => Avro::String(v.to_bulk_text().unwrap_or_default()),
    }
}

/// A body as JSON, field name to value, for `GET /_sim/cdc`.
pub fn body_json(schema: &EventSchema, body: &[(usize, Value)]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (i, v) in body {
        out.insert(schema.fields[*i].name.clone(), v.to_rest_json());
    }
    serde_json::Value::Object(out)
}
