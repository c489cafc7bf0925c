//! Salesforce records (text values, REST or Bulk CSV) → typed rows in the staging table's column
//! order ([`driftless_core::dml::staging_columns`]), ready for binary COPY.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use driftless_core::mapping::ResolvedMapping;
use driftless_core::types::PgType;
use driftless_core::window::parse_sf_datetime;
use salesforce::Record;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// One typed value. Owned and `Send`, so rows can travel between actors.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Bool(bool),
    Float(f64),
    Int(i32),
    BigInt(i64),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
    Time(NaiveTime),
}

pub type Row = Vec<Cell>;

impl ToSql for Cell {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Bool(v) => v.to_sql(ty, out),
            Cell::Float(v) => v.to_sql(ty, out),
            Cell::Int(v) => v.to_sql(ty, out),
            Cell::BigInt(v) => v.to_sql(ty, out),
            Cell::Date(v) => v.to_sql(ty, out),
            Cell::Timestamp(v) => v.to_sql(ty, out),
            Cell::Time(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // The staging columns' types come from the same PgType that chose the Cell variant.
        true
    }

    to_sql_checked!();
}

/// A record's column names, and where each staging column sits among them.
type Shape = (Arc<[String]>, Vec<Option<usize>>);

/// Turns records into rows. Caches where each staging column sits in the record, per record shape.
pub struct RowBuilder {
    mapping: Arc<ResolvedMapping>,
    /// Salesforce field name per staging column (IsDeleted is `None` when the object has none).
    wanted: Vec<(Option<String>, PgType)>,
    shape: Option<Shape>,
    /// Values that did not parse as their type and were stored as NULL.
    pub bad_values: u64,
}

impl RowBuilder {
    pub fn new(mapping: Arc<ResolvedMapping>) -> RowBuilder {
        let mut wanted = vec![
            (Some("Id".to_owned()), PgType::Varchar(18)),
            (Some("SystemModstamp".to_owned()), PgType::Timestamp),
            (
                mapping.has_is_deleted.then(|| "IsDeleted".to_owned()),
                PgType::Boolean,
            ),
        ];
        wanted.extend(
            mapping
                .fields
                .iter()
                .map(|f| (Some(f.sf_name.clone()), f.pg_type)),
        );
        RowBuilder {
            mapping,
            wanted,
            shape: None,
            bad_values: 0,
        }
    }

    pub fn mapping(&self) -> &Arc<ResolvedMapping> {
        &self.mapping
    }

    pub fn build(&mut self, record: &Record) -> Row {
        let same = self
            .shape
            .as_ref()
            .is_some_and(|(cols, _)| Arc::ptr_eq(cols, record.columns()));
        if !same {
            let cols = record.columns().clone();
            let idx = self
                .wanted
                .iter()
                .map(|(name, _)| {
                    let name = name.as_deref()?;
                    cols.iter().position(|c| c.eq_ignore_ascii_case(name))
                })
                .collect();
            self.shape = Some((cols, idx));
        }
        let (_, idx) = self.shape.as_ref().expect("shape set above");
        let values = record.values();
        let mut row = Vec::with_capacity(self.wanted.len());
        for (i, (_, ty)) in self.wanted.iter().enumerate() {
            let raw = idx[i].and_then(|j| values[j].as_deref());
            let cell = match raw {
                None => Cell::Null,
                Some(text) => parse(text, *ty).unwrap_or_else(|| {
                    self.bad_values += 1;
                    Cell::Null
                }),
            };
            row.push(cell);
        }
        // No IsDeleted field means never deleted (queryAll cannot show it either).
        if row[2] == Cell::Null {
            row[2] = Cell::Bool(false);
        }
        row
    }
}

/// Parses Salesforce's text form of a value (REST JSON scalars or Bulk CSV cells).
///
/// The NUL rule: Postgres text cannot hold U+0000, so NUL characters are removed from text
/// values. Every read goes through here (initial load, windows, events, verify), so the table
/// and verify's comparison agree, and the record syncs instead of failing its batch.
pub fn parse(text: &str, ty: PgType) -> Option<Cell> {
    Some(match ty {
        PgType::Varchar(_) | PgType::Text if text.contains('\0') => {
            Cell::Text(text.replace('\0', ""))
        }
        PgType::Varchar(_) | PgType::Text => Cell::Text(text.to_owned()),
        PgType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Cell::Bool(true),
            "false" | "0" => Cell::Bool(false),
            _ => return None,
        },
        PgType::DoublePrecision => Cell::Float(text.trim().parse().ok()?),
        PgType::Integer => Cell::Int(int(text)?.try_into().ok()?),
        PgType::BigInt => Cell::BigInt(int(text)?),
        PgType::Date => Cell::Date(NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()?),
        PgType::Timestamp => Cell::Timestamp(parse_sf_datetime(text)?.naive_utc()),
        PgType::Time => {
            let t = text.trim_end_matches('Z');
            Cell::Time(NaiveTime::parse_from_str(t, "%H:%M:%S%.f").ok()?)
        }
    })
}

/// JSON may render an integer field as `5.0`.
fn int(text: &str) -> Option<i64> {
    let t = text.trim();
    t.parse::<i64>().ok().or_else(|| {
        let f: f64 = t.parse().ok()?;
        (f.fract() == 0.0).then_some(f as i64)
    })
}

pub fn sfid(row: &Row) -> Option<&str> {
    match &row[0] {
        Cell::Text(s) => Some(s),
        _ => None,
    }
}

pub fn stamp(row: &Row) -> Option<NaiveDateTime> {
    match &row[1] {
        Cell::Timestamp(t) => Some(*t),
        _ => None,
    }
}

pub fn is_deleted(row: &Row) -> bool {
    row[2] == Cell::Bool(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rest_and_bulk_forms() {
        assert_eq!(parse("true", PgType::Boolean), Some(Cell::Bool(true)));
        assert_eq!(
            parse("12.5", PgType::DoublePrecision),
            Some(Cell::Float(12.5))
        );
        assert_eq!(parse("7.0", PgType::Integer), Some(Cell::Int(7)));
        let a = parse("2024-01-02T03:04:05.000+0000", PgType::Timestamp).unwrap();
        let b = parse("2024-01-02T03:04:05.000Z", PgType::Timestamp).unwrap();
        assert_eq!(a, b);
        assert!(matches!(
            parse("2024-01-02", PgType::Date),
            Some(Cell::Date(_))
        ));
        assert_eq!(parse("x", PgType::Integer), None);
    }

    #[test]
    fn nul_characters_are_removed_from_text() {
        assert_eq!(parse("a\0b\0", PgType::Text), Some(Cell::Text("ab".into())));
        assert_eq!(
            parse("\0", PgType::Varchar(5)),
            Some(Cell::Text(String::new()))
        );
    }
}
