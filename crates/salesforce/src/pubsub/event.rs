//! Change events as the engine needs them: the `ChangeEventHeader` of an Avro payload, decoded
//! against the schema its `schema_id` names.

use apache_avro::types::Value as Avro;
use chrono::{DateTime, Utc};

use crate::error::{Error, ErrorKind, Result};

/// `changeType` of a change event (Salesforce's CDC guide, "ChangeEventHeader Fields").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeType {
    Create,
    Update,
    Delete,
    Undelete,
    /// `GAP_CREATE` .. `GAP_UNDELETE`: the record ids of a change whose data was not captured.
    Gap,
    /// `GAP_OVERFLOW`: a transaction too large for events; no ids at all.
    Overflow,
    /// `SNAPSHOT` and anything newer this client does not know.
    Other,
}

impl ChangeType {
    fn parse(name: &str) -> ChangeType {
        match name {
            "CREATE" => ChangeType::Create,
            "UPDATE" => ChangeType::Update,
            "DELETE" => ChangeType::Delete,
            "UNDELETE" => ChangeType::Undelete,
            "GAP_CREATE" | "GAP_UPDATE" | "GAP_DELETE" | "GAP_UNDELETE" => ChangeType::Gap,
            "GAP_OVERFLOW" => ChangeType::Overflow,
            _ => ChangeType::Other,
        }
    }
}

/// One change event: which records of which object changed, and when it committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    /// Opaque; give it back to resume after this event.
    pub replay_id: Vec<u8>,
    pub entity: String,
    pub change_type: ChangeType,
    /// Empty for overflow events; may hold a wildcard (`001*`) for type conversions.
    pub record_ids: Vec<String>,
    pub commit_timestamp: Option<DateTime<Utc>>,
}

/// Reads the header of an Avro-encoded change event.
pub(crate) fn decode(
    schema: &apache_avro::Schema,
    payload: &[u8],
    replay_id: Vec<u8>,
) -> Result<ChangeEvent> {
    let value = apache_avro::from_avro_datum(schema, &mut &payload[..], None).map_err(|e| {
        protocol(format!(
            "change event payload does not match its schema: {e}"
        ))
    })?;
    let Avro::Record(fields) = value else {
        return Err(protocol("change event payload is not a record".into()));
    };
    let header = fields
        .into_iter()
        .find(|(name, _)| name == "ChangeEventHeader")
        .map(|(_, v)| v)
        .ok_or_else(|| protocol("change event without ChangeEventHeader".into()))?;
    let Avro::Record(header) = header else {
        return Err(protocol("ChangeEventHeader is not a record".into()));
    };
    let mut event = ChangeEvent {
        replay_id,
        entity: String::new(),
        change_type: ChangeType::Other,
        record_ids: Vec::new(),
        commit_timestamp: None,
    };
    for (name, v) in header {
        match (name.as_str(), unwrap_union(v)) {
            ("entityName", Avro::String(s)) => event.entity = s,
            ("changeType", Avro::Enum(_, s) | Avro::String(s)) => {
                event.change_type = ChangeType::parse(&s)
            }
            ("recordIds", Avro::Array(ids)) => {
                event.record_ids = ids
                    .into_iter()
                    .filter_map(|v| match unwrap_union(v) {
                        Avro::String(s) => Some(s),
                        _ => None,
                    })
                    .collect()
            }
            ("commitTimestamp", Avro::Long(ms)) => {
                event.commit_timestamp = DateTime::from_timestamp_millis(ms)
            }
            _ => {}
        }
    }
    if event.entity.is_empty() {
        return Err(protocol("change event without entityName".into()));
    }
    Ok(event)
}

fn unwrap_union(v: Avro) -> Avro {
    match v {
        Avro::Union(_, inner) => unwrap_union(*inner),
        other => other,
    }
}

fn protocol(message: String) -> Error {
    Error::new(ErrorKind::Protocol, message)
}
