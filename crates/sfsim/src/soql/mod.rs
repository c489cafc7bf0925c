//! The SOQL engine: parses the subset of SOQL that sync clients send, resolves it against the
//! org's schema with Salesforce's error shapes, and runs it as a compiled predicate over field
//! indices so that million-row scans stay cheap.
//!
//! `parse` checks syntax only; `plan` also resolves names and types; a [`Plan`] is then executed
//! against committed data as often as needed (REST pages, Bulk PK chunks).

pub mod ast;
mod error;
mod eval;
mod lexer;
mod parser;
mod plan;
#[cfg(test)]
mod tests;

pub use ast::Query;
pub use error::caret_block;
pub use parser::parse;
pub use plan::plan;

use crate::ids;
use crate::store::{is_deleted, record_id, Org, Record, Table};
use crate::value::Value;
use eval::{id15, sort_records, Accessor, Pred, SortKey};

/// One selected column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The canonical label as Salesforce names the column: `Name`, `Account.Name`.
    pub label: String,
    /// Index of the field in the object it belongs to (the parent's, for relationship fields).
    pub field: usize,
    /// The lookup followed to reach the field, for parent fields.
    pub via: Option<Relationship>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relationship {
    /// The lookup field on the queried object (AccountId on Contact).
    pub reference_field: usize,
    pub target_object: usize,
    /// Canonical relationship name (`Account`, `Account__r`, `Owner`).
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OrderMode {
    /// No ORDER BY, or ORDER BY Id ASC: the store's iteration order is the answer.
    Scan,
    /// ORDER BY Id DESC.
    Reverse,
    Sort,
}

/// A query resolved against a schema, ready to run any number of times.
#[derive(Clone, Debug)]
pub struct Plan {
    pub object: usize,
    pub columns: Vec<Column>,
    pub is_count: bool,
    pub has_order_by: bool,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    /// `Some("expr0")` for `COUNT(field)`, which Salesforce answers as an AggregateResult row
    /// rather than through totalSize alone; None for `COUNT()` and non-count queries.
    pub aggregate_alias: Option<String>,
    filter: Option<Pred>,
    order: Vec<SortKey>,
    order_mode: OrderMode,
    /// `COUNT(field)` counts the rows where the field is not null.
    count_nonnull: Option<Accessor>,
    /// Bulk PK-chunk bounds as 15-character Id prefixes: `id_lo <= Id < id_hi`.
    id_lo: Option<Box<str>>,
    id_hi: Option<Box<str>>,
    key_prefix: Box<str>,
}

impl Plan {
    /// Runs against committed data; `include_deleted` = queryAll semantics (query never returns
    /// IsDeleted=true rows). Holds the org read lock only while filtering/sorting; returns shared
    /// record pointers, which later commits do not disturb.
    pub fn execute(&self, org: &Org, include_deleted: bool) -> Vec<Record> {
        org.read(|tables| self.execute_in(tables, include_deleted))
    }

    /// [`Plan::execute`] for a caller that already holds the tables.
    pub fn execute_in(&self, tables: &[Table], include_deleted: bool) -> Vec<Record> {
        let skip = self.offset.unwrap_or(0);
        if self.limit == Some(0) {
            return Vec::new();
        }
        // Without a sort the first `offset + limit` matches are the answer: stop scanning there.
        let cap = match self.order_mode {
            OrderMode::Scan => self.limit.map(|l| l.saturating_add(skip)),
            _ => None,
        };
        let mut out = Vec::new();
        self.visit(tables, include_deleted, |r| {
            out.push(r.clone());
            cap.is_none_or(|c| out.len() < c)
        });
        match self.order_mode {
            OrderMode::Scan => {}
            OrderMode::Reverse => out.reverse(),
            OrderMode::Sort => {
                let keep = self.limit.map(|l| l.saturating_add(skip));
                out = sort_records(&self.order, out, tables, keep);
            }
        }
        if skip > 0 {
            out.drain(..skip.min(out.len()));
        }
        if let Some(l) = self.limit {
            out.truncate(l);
        }
        out
    }

    /// The COUNT() result (LIMIT and OFFSET apply, as they do on Salesforce).
    pub fn count(&self, org: &Org, include_deleted: bool) -> usize {
        org.read(|tables| {
            let mut n = 0usize;
            self.visit(tables, include_deleted, |r| {
                if self
                    .count_nonnull
                    .as_ref()
                    .is_none_or(|acc| !acc.get(r, tables).is_null())
                {
                    n += 1;
                }
                true
            });
            let n = n.saturating_sub(self.offset.unwrap_or(0));
            self.limit.map_or(n, |l| n.min(l))
        })
    }

    /// The selected values of one result row, parent fields resolved through org (Value::Null
    /// when the lookup is null or the parent is missing).
    pub fn row_values(&self, org: &Org, rec: &Record) -> Vec<Value> {
        if self.columns.iter().all(|c| c.via.is_none()) {
            return self.columns.iter().map(|c| rec[c.field].clone()).collect();
        }
        org.read(|tables| self.row_values_in(tables, rec))
    }

    /// [`Plan::row_values`] for many rows under one lock acquisition.
    pub fn rows_values(&self, org: &Org, recs: &[Record]) -> Vec<Vec<Value>> {
        org.read(|tables| recs.iter().map(|r| self.row_values_in(tables, r)).collect())
    }

    /// [`Plan::row_values`] for a caller that already holds the tables.
    pub fn row_values_in(&self, tables: &[Table], rec: &Record) -> Vec<Value> {
        self.columns
            .iter()
            .map(|c| match &c.via {
                None => rec[c.field].clone(),
                Some(rel) => {
                    let parent = live_parent(tables, rel.target_object, rec, rel.reference_field);
                    match parent {
                        Some(p) => p[c.field].clone(),
                        None => Value::Null,
                    }
                }
            })
            .collect()
    }

    /// The selected values of one row as references, for serializers that write straight from
    /// the records (no clone per cell); `tables` comes from [`Org::read`].
    pub fn row_value_refs<'a>(
        &self,
        tables: &'a [Table],
        rec: &'a Record,
        out: &mut Vec<&'a Value>,
    ) {
        static NULL: Value = Value::Null;
        out.clear();
        out.extend(self.columns.iter().map(|c| {
            match &c.via {
                None => &rec[c.field],
                Some(rel) => live_parent(tables, rel.target_object, rec, rel.reference_field)
                    .map_or(&NULL, |p| &p[c.field]),
            }
        }));
    }

    /// Restricts the plan to Id >= lo (inclusive) and Id < hi (exclusive), for Bulk PK chunking.
    /// Bounds compare on the 15-character form, so either form may be given.
    pub fn with_id_range(&self, lo: Option<&str>, hi: Option<&str>) -> Plan {
        let mut p = self.clone();
        let key = |s: &str| -> Box<str> { String::from_utf8_lossy(id15(s)).into() };
        if let Some(lo) = lo {
            let lo = key(lo);
            if p.id_lo.as_ref().is_none_or(|cur| *cur < lo) {
                p.id_lo = Some(lo);
            }
        }
        if let Some(hi) = hi {
            let hi = key(hi);
            if p.id_hi.as_ref().is_none_or(|cur| *cur > hi) {
                p.id_hi = Some(hi);
            }
        }
        p
    }

    /// Object name (canonical) for attributes.type.
    pub fn object_name<'a>(&self, org: &'a Org) -> &'a str {
        &org.schema.objects[self.object].name
    }

    /// Calls `f` with each visible, matching record in Id order until it returns false.
    fn visit(&self, tables: &[Table], include_deleted: bool, mut f: impl FnMut(&Record) -> bool) {
        let table = &tables[self.object];
        let (first, last) = self.seq_bounds(table.len() as u64);
        for seq in first..=last {
            let Some(rec) = table.get(seq) else { continue };
            if !include_deleted && is_deleted(rec) {
                continue;
            }
            if !self.in_id_range(rec) {
                continue;
            }
            if let Some(p) = &self.filter {
                if !p.eval(rec, tables) {
                    continue;
                }
            }
            if !f(rec) {
                break;
            }
        }
    }

    #[inline]
    fn in_id_range(&self, rec: &Record) -> bool {
        if self.id_lo.is_none() && self.id_hi.is_none() {
            return true;
        }
        let id = id15(record_id(rec));
        self.id_lo.as_ref().is_none_or(|lo| id >= lo.as_bytes())
            && self.id_hi.as_ref().is_none_or(|hi| id < hi.as_bytes())
    }

    /// The sequence numbers an Id range can cover. The simulator's Ids are fixed-width base-62
    /// sequence numbers, so a bound minted for this object maps straight to a sequence number and
    /// a PK chunk need not scan the whole table; other bounds fall back to the full range (the
    /// per-row byte check still applies).
    fn seq_bounds(&self, len: u64) -> (u64, u64) {
        let seq_of = |b: &Option<Box<str>>| {
            b.as_deref()
                .and_then(ids::parse)
                .filter(|(p, _)| *p == &*self.key_prefix)
                .map(|(_, s)| s)
        };
        let first = seq_of(&self.id_lo).unwrap_or(1).max(1);
        let last = seq_of(&self.id_hi).map_or(len, |s| s.min(len));
        (first, last)
    }
}

/// The live parent record a row's lookup points at.
fn live_parent<'a>(
    tables: &'a [Table],
    target: usize,
    rec: &Record,
    reference_field: usize,
) -> Option<&'a Record> {
    let (_, seq) = ids::parse(rec[reference_field].as_str()?)?;
    let parent = tables[target].get(seq)?;
    // A lookup holds an Id of the target object; checking the prefix guards against mismatches.
    let same_object =
        record_id(parent).get(..3) == rec[reference_field].as_str().and_then(|s| s.get(..3));
    (same_object && !is_deleted(parent)).then_some(parent)
}
