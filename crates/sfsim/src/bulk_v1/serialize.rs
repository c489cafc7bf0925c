//! Query rows rendered as Bulk result bodies: quoted CSV (Bulk 1.0 and 2.0), the dataload XML
//! `<queryResult>` and the JSON record array (Bulk 1.0). Bodies are produced in chunks of
//! [`ROWS_PER_CHUNK`] rows from a shared snapshot, so a million-row result never exists as one
//! string; CSV is the hot path and writes values without allocating per field.

use crate::http::respond::{csv_field_into, xml_escape_into};
use crate::http::AppState;
use crate::schema::F_ID;
use crate::soql::{Column, Plan};
use crate::store::{Org, Record, Table};
use crate::value::Value;
use actix_web::web;
use bytes::Bytes;
use chrono::Datelike;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

/// Rows serialised per body chunk: large enough to amortise per-chunk work, small enough to keep
/// the buffer around a megabyte.
pub const ROWS_PER_CHUNK: usize = 2_000;

/// What an empty Bulk 1.0 CSV query result says instead of a header.
pub const NO_RECORDS_CSV: &str = "Records not found for this query";

#[derive(Clone, Debug)]
pub enum Format {
    Csv {
        delimiter: char,
        line_ending: &'static str,
    },
    Xml,
    /// Bulk 1.0 JSON; the API version goes into each record's `attributes.url`.
    Json {
        api_version: String,
    },
}

/// One result body: which rows of a snapshot, in which format.
pub struct Body {
    pub state: web::Data<AppState>,
    pub plan: Arc<Plan>,
    pub rows: Arc<Vec<Record>>,
    pub range: Range<usize>,
    pub format: Format,
    /// Bulk 1.0 CSV answers an empty result with a sentence rather than a header.
    pub empty_csv_sentence: bool,
}

impl Body {
    /// The body as a stream of chunks; serialisation happens as the client reads.
    pub fn stream(self) -> impl futures::Stream<Item = Result<Bytes, actix_web::Error>> {
        let mut pos = self.range.start;
        let mut started = false;
        let mut finished = false;
        let mut capacity = 64 * 1024;
        futures::stream::iter(std::iter::from_fn(move || {
            if finished {
                return None;
            }
            let mut out = String::with_capacity(capacity);
            if !started {
                started = true;
                self.prologue(&mut out);
            }
            let end = (pos + ROWS_PER_CHUNK).min(self.range.end);
            let chunk = &self.rows[pos..end];
            self.write_rows(chunk, pos == self.range.start, &mut out);
            pos = end;
            if pos >= self.range.end {
                finished = true;
                self.epilogue(&mut out);
            }
            self.state.stats.add_records(chunk.len() as u64);
            self.state.stats.add_bytes(out.len() as u64);
            // Size the next buffer from this one so steady-state chunks never regrow.
            capacity = capacity.max(out.len() + out.len() / 8);
            Some(Ok(Bytes::from(out)))
        }))
    }

    fn prologue(&self, out: &mut String) {
        match &self.format {
            Format::Csv {
                delimiter,
                line_ending,
            } => {
                if self.range.is_empty() && self.empty_csv_sentence {
                    out.push_str(NO_RECORDS_CSV);
                    return;
                }
                for (i, c) in self.plan.columns.iter().enumerate() {
                    if i > 0 {
                        out.push(*delimiter);
                    }
                    csv_field_into(Some(&c.label), out);
                }
                out.push_str(line_ending);
            }
            Format::Xml => out.push_str(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><queryResult \
                 xmlns=\"http://www.force.com/2009/06/asyncapi/dataload\" \
                 xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">",
            ),
            Format::Json { .. } => out.push('['),
        }
    }

    fn epilogue(&self, out: &mut String) {
        match &self.format {
            Format::Csv { .. } => {}
            Format::Xml => out.push_str("</queryResult>"),
            Format::Json { .. } => out.push(']'),
        }
    }

    fn write_rows(&self, chunk: &[Record], first_chunk: bool, out: &mut String) {
        let plan = &*self.plan;
        let org = &*self.state.org;
        if plan.columns.iter().all(|c| c.via.is_none()) {
            for (i, rec) in chunk.iter().enumerate() {
                self.write_row(
                    org,
                    rec,
                    &Row::Direct(rec, &plan.columns),
                    first_chunk && i == 0,
                    out,
                );
            }
        } else {
            // Parent fields need the tables; one read lock per chunk keeps commits flowing.
            org.read(|tables: &[Table]| {
                for (i, rec) in chunk.iter().enumerate() {
                    let values = plan.row_values_in(tables, rec);
                    self.write_row(org, rec, &Row::Owned(&values), first_chunk && i == 0, out);
                }
            });
        }
    }

    fn write_row(&self, org: &Org, rec: &Record, row: &Row, first: bool, out: &mut String) {
        match &self.format {
            Format::Csv {
                delimiter,
                line_ending,
            } => {
                for i in 0..self.plan.columns.len() {
                    if i > 0 {
                        out.push(*delimiter);
                    }
                    write_csv_value(row.get(i), out);
                }
                out.push_str(line_ending);
            }
            Format::Xml => write_xml_record(org, &self.plan, rec, row, out),
            Format::Json { api_version } => {
                if !first {
                    out.push(',');
                }
                write_json_record(org, &self.plan, api_version, rec, row, out);
            }
        }
    }
}

/// The selected values of one row, borrowed from the record when no parent field is selected.
enum Row<'a> {
    Direct(&'a Record, &'a [Column]),
    Owned(&'a [Value]),
}

impl Row<'_> {
    fn get(&self, i: usize) -> &Value {
        match self {
            Row::Direct(rec, cols) => &rec[cols[i].field],
            Row::Owned(values) => &values[i],
        }
    }
}

/// One quoted CSV field; null is `""`, as Bulk writes it.
pub fn write_csv_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("\"\""),
        Value::Text(s) => csv_field_into(Some(s), out),
        other => {
            out.push('"');
            write_plain(other, out);
            out.push('"');
        }
    }
}

/// The Bulk text of a value that needs no escaping (everything but text), written without
/// allocating: this runs for millions of fields per second.
fn write_plain(v: &Value, out: &mut String) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        // Integral doubles print without a fraction, as value::format_double does.
        Value::Double(d) if d.fract() == 0.0 && d.abs() < 1e15 => {
            let _ = write!(out, "{}", *d as i64);
        }
        Value::Double(d) => {
            let _ = write!(out, "{d}");
        }
        Value::Date(d) if (0..=9999).contains(&d.year()) => {
            push_digits(out, d.year() as u32, 4);
            out.push('-');
            push_digits(out, d.month(), 2);
            out.push('-');
            push_digits(out, d.day(), 2);
        }
        Value::DateTime(t) => write_datetime(*t, out),
        other => other.write_bulk_text(out),
    }
}

/// `2019-03-21T17:30:19.000Z` from epoch seconds, without chrono's format-string interpreter
/// (three datetime columns per row made it the largest cost of serving CSV).
fn write_datetime(t: i64, out: &mut String) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        Value::DateTime(t).write_bulk_text(out);
        return;
    }
    push_digits(out, y as u32, 4);
    out.push('-');
    push_digits(out, m, 2);
    out.push('-');
    push_digits(out, d, 2);
    out.push('T');
    push_digits(out, secs / 3600, 2);
    out.push(':');
    push_digits(out, secs / 60 % 60, 2);
    out.push(':');
    push_digits(out, secs % 60, 2);
    out.push_str(".000Z");
}

fn push_digits(out: &mut String, mut n: u32, width: usize) {
    let mut buf = [b'0'; 4];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.push_str(std::str::from_utf8(&buf[..width]).unwrap_or_default());
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Columns grouped the way the XML and JSON shapes nest them: plain fields in place, parent
/// fields under one element per relationship, at the position of its first column.
enum Group<'a> {
    Field(usize),
    Parent(&'a crate::soql::Relationship, Vec<usize>),
}

fn groups(plan: &Plan) -> Vec<Group<'_>> {
    let mut out: Vec<Group> = Vec::new();
    for (i, c) in plan.columns.iter().enumerate() {
        match &c.via {
            None => out.push(Group::Field(i)),
            Some(rel) => {
                let existing = out.iter_mut().find_map(|g| match g {
                    Group::Parent(r, cols) if r.name == rel.name => Some(cols),
                    _ => None,
                });
                match existing {
                    Some(cols) => cols.push(i),
                    None => out.push(Group::Parent(rel, vec![i])),
                }
            }
        }
    }
    out
}

fn field_name<'a>(org: &'a Org, plan: &Plan, c: &Column) -> &'a str {
    let object = c.via.as_ref().map_or(plan.object, |r| r.target_object);
    &org.schema.objects[object].fields[c.field].name
}

fn xml_element(name: &str, v: &Value, out: &mut String) {
    out.push('<');
    out.push_str(name);
    if v.is_null() {
        out.push_str(" xsi:nil=\"true\"/>");
        return;
    }
    out.push('>');
    match v {
        Value::Text(s) => xml_escape_into(s, out),
        other => write_plain(other, out),
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// `<records xsi:type="sObject"><type>Account</type><Id>…</Id><Id>…</Id><Name>…</Name></records>`:
/// the sObject carries its own Id element before the selected fields, so a selected Id appears
/// twice, as in Salesforce's own output.
fn write_xml_record(org: &Org, plan: &Plan, rec: &Record, row: &Row, out: &mut String) {
    out.push_str("<records xsi:type=\"sObject\"><type>");
    out.push_str(plan.object_name(org));
    out.push_str("</type>");
    let id_selected = plan
        .columns
        .iter()
        .any(|c| c.via.is_none() && c.field == F_ID);
    xml_element(
        "Id",
        if id_selected {
            &rec[F_ID]
        } else {
            &Value::Null
        },
        out,
    );
    for g in groups(plan) {
        match g {
            Group::Field(i) => {
                xml_element(field_name(org, plan, &plan.columns[i]), row.get(i), out)
            }
            Group::Parent(rel, cols) => {
                if rec[rel.reference_field].is_null() {
                    xml_element(&rel.name, &Value::Null, out);
                    continue;
                }
                out.push('<');
                out.push_str(&rel.name);
                out.push_str(" xsi:type=\"sObject\"><type>");
                out.push_str(&org.schema.objects[rel.target_object].name);
                out.push_str("</type>");
                let parent_id_selected = cols.iter().any(|&i| plan.columns[i].field == F_ID);
                if !parent_id_selected {
                    xml_element("Id", &Value::Null, out);
                }
                for i in cols {
                    xml_element(field_name(org, plan, &plan.columns[i]), row.get(i), out);
                }
                out.push_str("</");
                out.push_str(&rel.name);
                out.push('>');
            }
        }
    }
    out.push_str("</records>");
}

fn attributes(object: &str, api_version: &str, id: Option<&str>) -> serde_json::Value {
    match id {
        Some(id) => serde_json::json!({
            "type": object,
            "url": format!("/services/data/v{api_version}/sobjects/{object}/{id}"),
        }),
        None => serde_json::json!({ "type": object }),
    }
}

/// A Bulk 1.0 JSON record: `attributes`, then the fields in SELECT order (serde_json's map
/// would sort the keys); datetimes as epoch milliseconds.
fn write_json_record(
    org: &Org,
    plan: &Plan,
    api_version: &str,
    rec: &Record,
    row: &Row,
    out: &mut String,
) {
    let object = plan.object_name(org);
    out.push_str("{\"attributes\":");
    out.push_str(&attributes(object, api_version, rec[F_ID].as_str()).to_string());
    for g in groups(plan) {
        match g {
            Group::Field(i) => {
                json_member(field_name(org, plan, &plan.columns[i]), out);
                out.push_str(&row.get(i).to_bulk_json().to_string());
            }
            Group::Parent(rel, cols) => {
                json_member(&rel.name, out);
                let Some(parent_id) = rec[rel.reference_field].as_str() else {
                    out.push_str("null");
                    continue;
                };
                let target = &org.schema.objects[rel.target_object].name;
                out.push_str("{\"attributes\":");
                out.push_str(&attributes(target, api_version, Some(parent_id)).to_string());
                for i in cols {
                    json_member(field_name(org, plan, &plan.columns[i]), out);
                    out.push_str(&row.get(i).to_bulk_json().to_string());
                }
                out.push('}');
            }
        }
    }
    out.push('}');
}

/// `,"name":` (object members always follow `attributes`, so a comma always leads).
fn json_member(name: &str, out: &mut String) {
    out.push(',');
    out.push_str(&serde_json::Value::from(name).to_string());
    out.push(':');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_renderings_match_the_value_module() {
        for t in [0, 951_782_400, 1_553_189_419, 4_102_444_799, -86_401] {
            let mut fast = String::new();
            write_datetime(t, &mut fast);
            assert_eq!(fast, crate::value::format_bulk_datetime(t), "{t}");
        }
        for v in [
            Value::Double(1500.0),
            Value::Double(-0.25),
            Value::Int(-42),
            Value::Bool(true),
            Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
        ] {
            let mut fast = String::new();
            write_plain(&v, &mut fast);
            assert_eq!(Some(fast), v.to_bulk_text(), "{v:?}");
        }
    }
}
