//! `query` and `queryAll` with `nextRecordsUrl` paging (reference section 2.5).
//!
//! A query runs once, when it is issued: its result is a snapshot of shared record pointers that
//! later commits do not change, so every page of one query comes from the same moment, as on
//! Salesforce. The snapshot lives in a cursor until it is evicted.

use super::{Ctx, Reply, Result};
use crate::error::SfError;
use crate::ids;
use crate::soql::{self, Plan};
use crate::store::{is_deleted, record_id, Org, Record, Table};
use actix_web::http::StatusCode;
use parking_lot::Mutex;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Cursors kept at most: a client that abandons queries cannot grow memory without bound.
const MAX_CURSORS: usize = 200;
/// Row pointers kept across all cursors (16 bytes each: about 320 MB at most).
const MAX_CURSOR_ROWS: usize = 20_000_000;
/// Salesforce's historical cursor lifetime after inactivity.
const CURSOR_IDLE: Duration = Duration::from_secs(15 * 60);

const DEFAULT_BATCH: usize = 2000;

struct Cursor {
    plan: Arc<Plan>,
    rows: Arc<Vec<Record>>,
    batch: usize,
    last_used: Instant,
}

#[derive(Default)]
pub struct Cursors {
    inner: Mutex<CursorMap>,
}

#[derive(Default)]
struct CursorMap {
    map: HashMap<String, Cursor>,
    next: u64,
    rows: usize,
}

impl CursorMap {
    fn remove(&mut self, locator: &str) {
        if let Some(c) = self.map.remove(locator) {
            self.rows -= c.rows.len();
        }
    }

    fn evict_idle(&mut self) {
        let idle: Vec<String> = self
            .map
            .iter()
            .filter(|(_, c)| c.last_used.elapsed() > CURSOR_IDLE)
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            self.remove(&k);
        }
    }

    fn evict_lru(&mut self) {
        if let Some(k) = self
            .map
            .iter()
            .min_by_key(|(_, c)| c.last_used)
            .map(|(k, _)| k.clone())
        {
            self.remove(&k);
        }
    }
}

impl Cursors {
    fn insert(&self, plan: Arc<Plan>, rows: Arc<Vec<Record>>, batch: usize) -> String {
        let mut m = self.inner.lock();
        m.evict_idle();
        while !m.map.is_empty()
            && (m.map.len() >= MAX_CURSORS || m.rows + rows.len() > MAX_CURSOR_ROWS)
        {
            m.evict_lru();
        }
        m.next += 1;
        let locator = ids::make("0r8", m.next);
        m.rows += rows.len();
        m.map.insert(
            locator.clone(),
            Cursor {
                plan,
                rows,
                batch,
                last_used: Instant::now(),
            },
        );
        locator
    }

    fn get(&self, locator: &str) -> Option<(Arc<Plan>, Arc<Vec<Record>>, usize)> {
        let mut m = self.inner.lock();
        m.evict_idle();
        let c = m.map.get_mut(locator)?;
        c.last_used = Instant::now();
        Some((c.plan.clone(), c.rows.clone(), c.batch))
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The page size `Sforce-Query-Options: batchSize=N` asks for, clamped to 200..=2000 as Salesforce
/// does ("no guarantee" that the requested size is used).
fn batch_size(ctx: &Ctx, fallback: usize) -> usize {
    ctx.header("sforce-query-options")
        .and_then(|h| {
            h.split([';', ',']).find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("batchSize")
                    .then(|| v.trim().parse::<i64>().ok())
                    .flatten()
            })
        })
        .map_or(fallback, |n| n.clamp(200, 2000) as usize)
}

fn timeout(ctx: &Ctx, rows: usize) -> Result<()> {
    match ctx.state.query_timeout(rows) {
        Some(e) => Err(Reply::bad(e)),
        None => Ok(()),
    }
}

pub(super) fn query(ctx: &Ctx, include_deleted: bool) -> Result {
    let q = ctx
        .param("q")
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| {
            Reply::bad(SfError::new(
                "MALFORMED_QUERY",
                "A query string has to be specified",
            ))
        })?;
    let org = ctx.org();
    let plan = soql::plan(org, q)?;
    ctx.state.stats.rest_queries.fetch_add(1, Relaxed);
    if plan.is_count {
        let n = plan.count(org, include_deleted);
        timeout(ctx, n)?;
        let body = match &plan.aggregate_alias {
            None => format!(r#"{{"totalSize":{n},"done":true,"records":[]}}"#),
            Some(alias) => format!(
                r#"{{"totalSize":1,"done":true,"records":[{{"attributes":{{"type":"AggregateResult"}},{}:{n}}}]}}"#,
                Json::String(alias.clone())
            ),
        };
        ctx.state.stats.add_bytes(body.len() as u64);
        return Ok(Reply::raw(StatusCode::OK, body));
    }
    let rows = plan.execute(org, include_deleted);
    timeout(ctx, rows.len())?;
    let batch = batch_size(ctx, DEFAULT_BATCH);
    let (plan, rows) = (Arc::new(plan), Arc::new(rows));
    let locator = (rows.len() > batch).then(|| {
        ctx.state
            .rest
            .cursors
            .insert(plan.clone(), rows.clone(), batch)
    });
    Ok(page(ctx, &plan, &rows, locator.as_deref(), 0, batch))
}

/// A follow-up page: `/query/{locator}-{offset}` (also under `/queryAll/`, which continues the
/// same snapshot: the locator remembers whether deleted rows were included).
pub(super) fn more(ctx: &Ctx, locator: &str) -> Result {
    let invalid = || {
        Reply::bad(SfError::new(
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        ))
    };
    let (loc, offset) = match locator.rsplit_once('-') {
        Some((l, o)) => (l, o.parse::<usize>().map_err(|_| invalid())?),
        None => (locator, 0),
    };
    let loc = ids::normalize(loc).ok_or_else(invalid)?;
    let (plan, rows, batch) = ctx.state.rest.cursors.get(&loc).ok_or_else(invalid)?;
    if offset > rows.len() {
        return Err(invalid());
    }
    let batch = batch_size(ctx, batch);
    Ok(page(ctx, &plan, &rows, Some(&loc), offset, batch))
}

/// How one result row nests: plain fields, then one object per parent relationship, placed where
/// its first field was selected.
enum Item {
    Field {
        col: usize,
        key: String,
    },
    Parent {
        name: String,
        reference_field: usize,
        target: usize,
        cols: Vec<(usize, String)>,
    },
}

fn layout(org: &Org, plan: &Plan) -> Vec<Item> {
    let schema = &org.schema;
    let mut items: Vec<Item> = Vec::new();
    for (i, c) in plan.columns.iter().enumerate() {
        match &c.via {
            None => items.push(Item::Field {
                col: i,
                key: schema.objects[plan.object].fields[c.field].name.clone(),
            }),
            Some(rel) => {
                let key = schema.objects[rel.target_object].fields[c.field]
                    .name
                    .clone();
                let existing = items.iter_mut().find_map(|it| match it {
                    Item::Parent { name, cols, .. } if *name == rel.name => Some(cols),
                    _ => None,
                });
                match existing {
                    Some(cols) => cols.push((i, key)),
                    None => items.push(Item::Parent {
                        name: rel.name.clone(),
                        reference_field: rel.reference_field,
                        target: rel.target_object,
                        cols: vec![(i, key)],
                    }),
                }
            }
        }
    }
    items
}

fn push_json(out: &mut String, v: &Json) {
    out.push_str(&v.to_string());
}

fn push_str_json(out: &mut String, s: &str) {
    out.push_str(&Json::String(s.to_string()).to_string());
}

fn push_attributes(out: &mut String, base: &str, object: &str, id: &str) {
    out.push_str(r#"{"attributes":{"type":"#);
    push_str_json(out, object);
    out.push_str(r#","url":"#);
    push_str_json(out, &format!("{base}/sobjects/{object}/{id}"));
    out.push('}');
}

/// One query result row, keys in SELECT order as Salesforce writes them.
fn write_row(
    out: &mut String,
    base: &str,
    org: &Org,
    plan: &Plan,
    items: &[Item],
    tables: &[Table],
    rec: &Record,
) {
    let values = plan.row_values_in(tables, rec);
    push_attributes(out, base, plan.object_name(org), record_id(rec));
    for item in items {
        out.push(',');
        match item {
            Item::Field { col, key } => {
                push_str_json(out, key);
                out.push(':');
                push_json(out, &values[*col].to_rest_json());
            }
            Item::Parent {
                name,
                reference_field,
                target,
                cols,
            } => {
                push_str_json(out, name);
                out.push(':');
                let parent = rec[*reference_field]
                    .as_str()
                    .and_then(|id| ids::parse(id).map(|(_, seq)| (id, seq)))
                    .and_then(|(id, seq)| {
                        tables[*target]
                            .get(seq)
                            .filter(|p| !is_deleted(p))
                            .map(|_| id)
                    });
                match parent {
                    None => out.push_str("null"),
                    Some(pid) => {
                        push_attributes(out, base, &org.schema.objects[*target].name, pid);
                        for (col, key) in cols {
                            out.push(',');
                            push_str_json(out, key);
                            out.push(':');
                            push_json(out, &values[*col].to_rest_json());
                        }
                        out.push('}');
                    }
                }
            }
        }
    }
    out.push('}');
}

fn page(
    ctx: &Ctx,
    plan: &Plan,
    rows: &[Record],
    locator: Option<&str>,
    offset: usize,
    batch: usize,
) -> Reply {
    let org = ctx.org();
    let base = ctx.base();
    let end = (offset + batch).min(rows.len());
    let done = end >= rows.len();
    let mut out = String::with_capacity(64 + (end - offset) * 256);
    let _ = write!(out, r#"{{"totalSize":{},"done":{done}"#, rows.len());
    if let (false, Some(loc)) = (done, locator) {
        // queryAll continues under /query/ too, as Salesforce writes it.
        let _ = write!(out, r#","nextRecordsUrl":"{base}/query/{loc}-{end}""#);
    }
    out.push_str(r#","records":["#);
    let items = layout(org, plan);
    org.read(|tables| {
        for (i, rec) in rows[offset..end].iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_row(&mut out, &base, org, plan, &items, tables, rec);
        }
    });
    out.push_str("]}");
    ctx.state.stats.add_records((end - offset) as u64);
    ctx.state.stats.add_bytes(out.len() as u64);
    Reply::raw(StatusCode::OK, out)
}
