//! The record representation shared by REST JSON and Bulk CSV results.
//!
//! A record is an ordered list of `(field, Option<String>)`: the column names are shared by all
//! records of a result (one `Arc`), the values are the text Salesforce sent. This suits both
//! sources and the sync engine's COPY path:
//! - Bulk CSV has no types and no null: an empty cell is `None` (Salesforce stores no empty text).
//! - REST JSON scalars become their text: strings as is, numbers in their shortest exact form,
//!   booleans `true`/`false`, `null` as `None`. Relationship objects are flattened to dotted
//!   names (`Account.Name`) as Bulk names its columns; the `attributes` objects are dropped.
//! - Values are not normalised: REST datetimes look like `2024-01-02T03:04:05.000+0000`, Bulk
//!   ones like `2024-01-02T03:04:05.000Z`. Both parse as RFC 3339 with an offset.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

/// One Salesforce record.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    columns: Arc<[String]>,
    values: Vec<Option<String>>,
}

impl Record {
    /// `values` must be as long as `columns`.
    pub fn new(columns: Arc<[String]>, values: Vec<Option<String>>) -> Record {
        debug_assert_eq!(columns.len(), values.len());
        Record { columns, values }
    }

    pub fn columns(&self) -> &Arc<[String]> {
        &self.columns
    }

    pub fn values(&self) -> &[Option<String>] {
        &self.values
    }

    pub fn into_values(self) -> Vec<Option<String>> {
        self.values
    }

    /// The value of a field; names match exactly first, then ignoring ASCII case, as SOQL does.
    pub fn get(&self, field: &str) -> Option<&str> {
        let idx = self.columns.iter().position(|c| c == field).or_else(|| {
            self.columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(field))
        })?;
        self.values[idx].as_deref()
    }

    pub fn id(&self) -> Option<&str> {
        self.get("Id")
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.columns
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().map(Option::as_deref))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A REST query page: `{"totalSize", "done", "nextRecordsUrl", "records": [...]}` with each
/// record flattened in field order (serde_json's map would sort the keys).
pub(crate) struct QueryPage {
    pub total_size: u64,
    pub done: bool,
    pub next_records_url: Option<String>,
    pub records: Vec<Vec<(String, Option<String>)>>,
}

impl<'de> serde::Deserialize<'de> for QueryPage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<QueryPage, D::Error> {
        struct PageVisitor;
        impl<'de> Visitor<'de> for PageVisitor {
            type Value = QueryPage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a query result")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<QueryPage, A::Error> {
                let mut page = QueryPage {
                    total_size: 0,
                    done: true,
                    next_records_url: None,
                    records: vec![],
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "totalSize" => page.total_size = map.next_value()?,
                        "done" => page.done = map.next_value()?,
                        "nextRecordsUrl" => page.next_records_url = map.next_value()?,
                        "records" => page.records = map.next_value_seed(RecordsSeed)?,
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(page)
            }
        }
        d.deserialize_map(PageVisitor)
    }
}

struct RecordsSeed;

impl<'de> DeserializeSeed<'de> for RecordsSeed {
    type Value = Vec<Vec<(String, Option<String>)>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct SeqVisitor;
        impl<'de> Visitor<'de> for SeqVisitor {
            type Value = Vec<Vec<(String, Option<String>)>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of records")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(vec![])
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(rec) = seq.next_element_seed(FlatSeed {
                    prefix: String::new(),
                })? {
                    out.push(rec);
                }
                Ok(out)
            }
        }
        d.deserialize_any(SeqVisitor)
    }
}

/// Flattens one JSON object into `(dotted name, text)` pairs, in document order.
pub(crate) struct FlatSeed {
    pub prefix: String,
}

impl<'de> DeserializeSeed<'de> for FlatSeed {
    type Value = Vec<(String, Option<String>)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FlatSeed {
    type Value = Vec<(String, Option<String>)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "attributes" {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            }
            let name = if self.prefix.is_empty() {
                key
            } else {
                format!("{}.{}", self.prefix, key)
            };
            match map.next_value::<FlatValue>()? {
                FlatValue::Scalar(v) => out.push((name, v)),
                FlatValue::Object(value) => {
                    // A parent relationship: keep its fields under dotted names, like Bulk does.
                    // A child subquery (`{"totalSize":..,"records":[..]}`) stays one JSON value.
                    if value.get("records").is_some() && value.get("totalSize").is_some() {
                        out.push((name, Some(value.to_string())));
                    } else {
                        flatten_value(&name, &value, &mut out);
                    }
                }
            }
        }
        Ok(out)
    }
}

enum FlatValue {
    Scalar(Option<String>),
    Object(serde_json::Value),
}

impl<'de> serde::Deserialize<'de> for FlatValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FlatValue, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FlatValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field value")
            }
            fn visit_unit<E>(self) -> Result<FlatValue, E> {
                Ok(FlatValue::Scalar(None))
            }
            fn visit_none<E>(self) -> Result<FlatValue, E> {
                Ok(FlatValue::Scalar(None))
            }
            fn visit_bool<E>(self, v: bool) -> Result<FlatValue, E> {
                Ok(FlatValue::Scalar(Some(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<FlatValue, E> {
                Ok(FlatValue::Scalar(Some(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<FlatValue, E> {
                Ok(FlatValue::Scalar(Some(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<FlatValue, E> {
                Ok(FlatValue::Scalar(Some(v.to_string())))
            }
            fn visit_str<E>(self, v: &str) -> Result<FlatValue, E> {
                Ok(FlatValue::Scalar(Some(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<FlatValue, E> {
                Ok(FlatValue::Scalar(Some(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<FlatValue, A::Error> {
                let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map_err(de::Error::custom)?;
                Ok(FlatValue::Scalar(Some(v.to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FlatValue, A::Error> {
                let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map_err(de::Error::custom)?;
                Ok(FlatValue::Object(v))
            }
        }
        use serde::Deserialize;
        d.deserialize_any(V)
    }
}

fn flatten_value(name: &str, value: &serde_json::Value, out: &mut Vec<(String, Option<String>)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "attributes" {
                    continue;
                }
                flatten_value(&format!("{name}.{k}"), v, out);
            }
        }
        other => out.push((name.to_owned(), scalar_text(other))),
    }
}

pub(crate) fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// Builds [`Record`]s from flattened pairs, sharing one column list while the shape repeats.
#[derive(Default)]
pub(crate) struct RecordBuilder {
    columns: Option<Arc<[String]>>,
}

impl RecordBuilder {
    pub fn build(&mut self, pairs: Vec<(String, Option<String>)>) -> Record {
        let same = self.columns.as_ref().is_some_and(|c| {
            c.len() == pairs.len() && c.iter().zip(&pairs).all(|(a, (b, _))| a == b)
        });
        if !same {
            self.columns = Some(
                pairs
                    .iter()
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        let columns = self
            .columns
            .clone()
            .unwrap_or_else(|| Arc::from(Vec::new()));
        Record::new(columns, pairs.into_iter().map(|(_, v)| v).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_rest_records_in_field_order() {
        let page: QueryPage = serde_json::from_str(
            r#"{"totalSize":2,"done":false,"nextRecordsUrl":"/services/data/v62.0/query/01g-2",
            "records":[
              {"attributes":{"type":"Contact","url":"/x"},"Name":"A \"q\"","Id":"003A","Amount":12.5,"N":3,
               "Ok":true,"Nil":null,"Account":{"attributes":{"type":"Account"},"Name":"Acme"}},
              {"attributes":{"type":"Contact"},"Name":"B","Id":"003B","Amount":100.0,"N":-1,"Ok":false,"Nil":null,"Account":null}
            ]}"#,
        )
        .unwrap();
        assert_eq!(page.total_size, 2);
        assert!(!page.done);
        assert_eq!(
            page.next_records_url.as_deref(),
            Some("/services/data/v62.0/query/01g-2")
        );
        let mut b = RecordBuilder::default();
        let mut recs = page.records.into_iter().map(|p| b.build(p));
        let r1 = recs.next().unwrap();
        let names: Vec<_> = r1.columns().iter().map(String::as_str).collect();
        assert_eq!(
            names,
            ["Name", "Id", "Amount", "N", "Ok", "Nil", "Account.Name"]
        );
        assert_eq!(r1.get("name"), Some("A \"q\""));
        assert_eq!(r1.get("Amount"), Some("12.5"));
        assert_eq!(r1.get("Ok"), Some("true"));
        assert_eq!(r1.get("Nil"), None);
        assert_eq!(r1.get("Account.Name"), Some("Acme"));
        let r2 = recs.next().unwrap();
        assert_eq!(r2.get("Amount"), Some("100"));
        assert_eq!(r2.get("Account"), None);
        assert_eq!(r2.id(), Some("003B"));
    }

    #[test]
    fn shares_columns_between_same_shaped_records() {
        let mut b = RecordBuilder::default();
        let r1 = b.build(vec![("Id".into(), Some("1".into()))]);
        let r2 = b.build(vec![("Id".into(), Some("2".into()))]);
        assert!(Arc::ptr_eq(r1.columns(), r2.columns()));
    }
}
