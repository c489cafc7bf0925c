//! The Avro schema of each object's change event, shaped as Salesforce publishes them
//! (`com.sforce.eventbus.<Object>ChangeEvent`: the `ChangeEventHeader` record first, then every
//! field as a nullable union), and the topic names that reach them.

use crate::schema::{FieldType, ObjectDef, Schema, F_ID, F_IS_DELETED, F_SYSTEM_MODSTAMP};
use base64::Engine;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

pub const ALL_CHANGE_EVENTS: &str = "/data/ChangeEvents";

/// How a field's values are written in the event: the Avro type inside its `["null", T]` union.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AvroKind {
    String,
    Boolean,
    Int,
    Double,
    /// Days since the epoch.
    Date,
    /// Milliseconds since the epoch.
    DateTime,
}

impl AvroKind {
    fn of(t: FieldType) -> AvroKind {
        match t {
            FieldType::Boolean => AvroKind::Boolean,
            FieldType::Int => AvroKind::Int,
            FieldType::Double | FieldType::Currency | FieldType::Percent => AvroKind::Double,
            FieldType::Date => AvroKind::Date,
            FieldType::Datetime => AvroKind::DateTime,
            _ => AvroKind::String,
        }
    }

    fn avro_type(self) -> &'static str {
        match self {
            AvroKind::String => "string",
            AvroKind::Boolean => "boolean",
            AvroKind::Int | AvroKind::Date => "int",
            AvroKind::Double => "double",
            AvroKind::DateTime => "long",
        }
    }
}

/// One field of an event body: where its value comes from in the record, and its bit in the
/// changedFields / nulledFields bitmaps (its position in the schema's field list).
#[derive(Clone, Debug)]
pub struct EventField {
    pub name: String,
    pub record_index: usize,
    pub position: usize,
    pub kind: AvroKind,
}

/// The change-event schema of one object.
pub struct EventSchema {
    pub object: usize,
    /// False for an object started with `--no-cdc`: it has no topic and publishes nothing, as a
    /// Salesforce object outside Change Data Capture.
    pub supported: bool,
    pub entity: String,
    pub topic: String,
    pub schema_id: String,
    pub json: String,
    pub avro: apache_avro::Schema,
    pub fields: Vec<EventField>,
}

/// Every object's change-event schema, indexed like the org schema's objects.
pub struct EventSchemas {
    pub by_object: Vec<EventSchema>,
}

impl EventSchemas {
    /// `no_cdc`: objects without change events (names as the schema spells them).
    pub fn new(schema: &Schema, no_cdc: &[String]) -> EventSchemas {
        EventSchemas {
            by_object: schema
                .objects
                .iter()
                .enumerate()
                .map(|(i, def)| {
                    let mut s = EventSchema::new(i, def);
                    s.supported = !no_cdc.iter().any(|n| n.eq_ignore_ascii_case(&def.name));
                    s
                })
                .collect(),
        }
    }

    pub fn supported(&self, object: usize) -> bool {
        self.by_object[object].supported
    }

    /// The object a `/data/<Object>ChangeEvent` topic names; `Some(None)` for `/data/ChangeEvents`.
    pub fn topic_object(&self, topic: &str) -> Option<Option<usize>> {
        if topic == ALL_CHANGE_EVENTS {
            return Some(None);
        }
        self.by_object
            .iter()
            .find(|s| s.supported && s.topic == topic)
            .map(|s| Some(s.object))
    }

    pub fn by_id(&self, schema_id: &str) -> Option<&EventSchema> {
        self.by_object.iter().find(|s| s.schema_id == schema_id)
    }
}

/// `/data/AccountChangeEvent`; custom objects drop the `c` of `__c`: `/data/X__ChangeEvent`.
pub fn topic_name(object: &str) -> String {
    format!("/data/{}", event_name(object))
}

pub fn event_name(object: &str) -> String {
    match object.strip_suffix("__c") {
        Some(base) => format!("{base}__ChangeEvent"),
        None => format!("{object}ChangeEvent"),
    }
}

/// Fields a change event carries: not the Id (it travels in recordIds), IsDeleted (the change
/// type says it), SystemModstamp or formula fields (their values are not stored changes), as on
/// Salesforce.
fn carried(index: usize, field: &crate::schema::FieldDef) -> bool {
    !matches!(index, F_ID | F_IS_DELETED | F_SYSTEM_MODSTAMP) && !field.calculated
}

impl EventSchema {
    fn new(object: usize, def: &ObjectDef) -> EventSchema {
        let mut fields = Vec::new();
        let mut avro_fields = vec![json!({
            "name": "ChangeEventHeader",
            "type": header_schema(),
            "doc": "Data:ChangeEventHeader"
        })];
        for (i, f) in def
            .fields
            .iter()
            .enumerate()
            .filter(|(i, f)| carried(*i, f))
        {
            let kind = AvroKind::of(f.ftype);
            fields.push(EventField {
                name: f.name.clone(),
                record_index: i,
                position: avro_fields.len(),
                kind,
            });
            avro_fields.push(json!({
                "name": f.name,
                "type": ["null", kind.avro_type()],
                "doc": format!("Data:{}", field_doc(f.ftype)),
                "default": null
            }));
        }
        let name = event_name(&def.name);
        let schema = json!({
            "type": "record",
            "name": name,
            "namespace": "com.sforce.eventbus",
            "fields": avro_fields
        });
        let json = schema.to_string();
        let avro = apache_avro::Schema::parse_str(&json).expect("generated change-event schema");
        EventSchema {
            object,
            supported: true,
            entity: def.name.clone(),
            topic: topic_name(&def.name),
            schema_id: schema_id(&json),
            json,
            avro,
            fields,
        }
    }
}

fn field_doc(t: FieldType) -> &'static str {
    match t {
        FieldType::Date => "Date",
        FieldType::Datetime => "DateTime",
        _ => "",
    }
}

fn header_schema() -> Json {
    let strings = json!({"type": "array", "items": "string"});
    json!({
        "type": "record",
        "name": "ChangeEventHeader",
        "namespace": "com.sforce.eventbus",
        "fields": [
            {"name": "entityName", "type": "string"},
            {"name": "recordIds", "type": strings},
            {"name": "changeType", "type": {"type": "enum", "name": "ChangeType",
                "namespace": "com.sforce.eventbus",
                "symbols": ["CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_CREATE", "GAP_UPDATE",
                            "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW", "SNAPSHOT"]}},
            {"name": "changeOrigin", "type": "string"},
            {"name": "transactionKey", "type": "string"},
            {"name": "sequenceNumber", "type": "int"},
            {"name": "commitTimestamp", "type": "long"},
            {"name": "commitNumber", "type": "long"},
            {"name": "commitUser", "type": "string"},
            {"name": "nulledFields", "type": strings},
            {"name": "diffFields", "type": strings},
            {"name": "changedFields", "type": strings}
        ]
    })
}

/// Salesforce's schema ids are short url-safe fingerprints of the schema.
pub fn schema_id(json: &str) -> String {
    let digest = Sha256::digest(json.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// The bitmap Pub/Sub payloads carry for a set of field positions: `0x` then the big-endian
/// hex (upper case, whole bytes) of the number whose bit i is the i-th schema field. Clients
/// reverse the bit string to read positions, so the least significant bit is position 0.
pub fn bitmap(positions: &[usize]) -> Vec<String> {
    let Some(&max) = positions.iter().max() else {
        return vec![];
    };
    let mut bytes = vec![0u8; max / 8 + 1];
    let n = bytes.len();
    for &p in positions {
        bytes[n - 1 - p / 8] |= 1 << (p % 8);
    }
    let mut out = String::from("0x");
    for b in bytes {
        out.push_str(&format!("{b:02X}"));
    }
    vec![out]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_salesforce() {
        assert_eq!(topic_name("Account"), "/data/AccountChangeEvent");
        assert_eq!(topic_name("Invoice__c"), "/data/Invoice__ChangeEvent");
    }

    #[test]
    fn bitmaps_set_one_bit_per_position_least_significant_first() {
        assert!(bitmap(&[]).is_empty());
        assert_eq!(bitmap(&[0, 3]), vec!["0x09"]);
        assert_eq!(bitmap(&[9]), vec!["0x0200"]);
        assert_eq!(bitmap(&[1, 23]), vec!["0x800002"]);
    }
}
