//! Keeping a mapping's formula columns fresh (`core::formula` plans it; this carries it out).
//!
//! A formula's value changes without its record's SystemModstamp moving, so no poll sees it.
//! Two refreshes, both reading only Id plus the mapped formula fields and writing only the values
//! that changed (`db_writer::RefreshFormulas`, SystemModstamp untouched):
//!
//! - by dependency, once per poll cycle: the parents a formula reads that changed since the last
//!   check are found in the parent mapping's table when the parent is mapped on this connection
//!   (no API call: its polls already read them, up to its `synced_through`), else by one
//!   SystemModstamp query on the parent object; their children are re-read by the lookup
//!   (`WHERE AccountId IN (...)`, batched), through Bulk when they are many (counted in the
//!   mapping's table when the lookup is mapped, else by COUNT() queries);
//! - by time, every `formula_refresh_secs`: the whole object, for `TODAY()`/`NOW()`, for formulas
//!   the engine cannot analyse, and as the backstop for a parent change committed so late that
//!   the dependency check had passed its second (a long transaction).
//!
//! A mapping without formula fields has no refresher and makes no call for any of this.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use driftless_core::formula::FormulaPlan;
use driftless_core::ident::{Ident, QualifiedName};
use driftless_core::mapping::{ResolvedField, ResolvedMapping};
use driftless_core::window::{floor_second, soql_datetime};
use salesforce::{QueryOperation, Record};

use crate::db_writer::{ChangedSfids, CountReferring, RefreshFormulas};
use crate::error::Result;
use crate::mapping_ctx::MappingCtx;
use crate::rows::{Row, RowBuilder};
use crate::salesforce_client::{bulk_read, rest_read, select, ReadCost, RecordSink};

/// Parent Ids per REST query: keeps the query's URL well under Salesforce's limit.
const REST_IDS_PER_QUERY: usize = 200;
/// Parent Ids per Bulk batch: the SOQL stays far below the 100,000-character limit.
const BULK_IDS_PER_BATCH: usize = 2_000;
/// Records per Bulk PK chunk for the timed refresh.
const PK_CHUNK: u32 = 100_000;

/// Where a watched parent's changes are seen.
#[derive(Debug, Clone)]
enum Source {
    /// Mapped on this connection: its table holds every change up to its `synced_through`.
    Mapped {
        object: String,
        table: QualifiedName,
    },
    /// Not mapped: a SystemModstamp query on the object.
    Api,
}

#[derive(Debug)]
struct ParentWatch {
    object: String,
    /// Child-side SOQL paths to the parent's Id (`AccountId`, `Account.OwnerId`).
    filters: Vec<String>,
    source: Source,
    /// Changes stamped before this were handled (windows are half-open, as polls' are).
    checked_through: Option<DateTime<Utc>>,
}

pub struct FormulaRefresher {
    /// The mapping restricted to its formula fields: what a refresh reads and writes.
    formulas: Arc<ResolvedMapping>,
    /// Mapped lookup fields (SOQL name, column): children of a parent are counted in Postgres.
    lookups: Vec<(String, Ident)>,
    watches: Vec<ParentWatch>,
    every: Duration,
    next_timed: Instant,
}

/// What one refresh did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refreshed {
    pub read: i64,
    pub changed: i64,
}

impl FormulaRefresher {
    /// `None` when the mapping maps no formula field. `mapped` names the objects mapped on the
    /// same connection with their tables.
    pub fn new(
        plan: &FormulaPlan,
        mapping: &ResolvedMapping,
        schema: &Ident,
        mapped: &[(String, Ident)],
        every: Duration,
    ) -> Option<FormulaRefresher> {
        if plan.is_empty() {
            return None;
        }
        let fields: Vec<ResolvedField> = mapping
            .fields
            .iter()
            .filter(|f| {
                plan.fields
                    .iter()
                    .any(|p| p.field.eq_ignore_ascii_case(&f.sf_name))
            })
            .cloned()
            .collect();
        if fields.is_empty() {
            return None;
        }
        let formulas = Arc::new(ResolvedMapping {
            fields,
            indexes: Vec::new(),
            ..mapping.clone()
        });
        let mut watches: Vec<ParentWatch> = Vec::new();
        for dep in plan.fields.iter().flat_map(|f| &f.parents) {
            if let Some(w) = watches
                .iter_mut()
                .find(|w| w.object.eq_ignore_ascii_case(&dep.object))
            {
                if !w
                    .filters
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&dep.filter))
                {
                    w.filters.push(dep.filter.clone());
                }
                continue;
            }
            let source = match mapped
                .iter()
                .find(|(o, _)| o.eq_ignore_ascii_case(&dep.object))
            {
                Some((object, table)) => Source::Mapped {
                    object: object.clone(),
                    table: QualifiedName::new(schema, table),
                },
                None => Source::Api,
            };
            watches.push(ParentWatch {
                object: dep.object.clone(),
                filters: vec![dep.filter.clone()],
                source,
                checked_through: None,
            });
        }
        let lookups = mapping
            .fields
            .iter()
            .filter(|f| f.sf_type == "reference")
            .map(|f| (f.sf_name.clone(), f.column.clone()))
            .collect();
        Some(FormulaRefresher {
            formulas,
            lookups,
            watches,
            every,
            next_timed: Instant::now() + every,
        })
    }

    /// One poll cycle's refresh: the timed one when due (which covers every dependency too),
    /// else the children of the parents that changed since the last cycle. `synced_through` is
    /// the mapping's own progress: the first cycle starts watching parents from there.
    pub async fn run(
        &mut self,
        ctx: &MappingCtx,
        synced_through: DateTime<Utc>,
    ) -> Result<Refreshed> {
        let now = Utc::now();
        let through = floor_second(now - ctx.settings.poll_margin);
        if Instant::now() >= self.next_timed {
            let out = self.timed(ctx).await?;
            self.next_timed = Instant::now() + self.every;
            for w in &mut self.watches {
                w.checked_through = Some(watch_bound(ctx, w, through));
            }
            return Ok(out);
        }
        let mut total = Refreshed::default();
        for i in 0..self.watches.len() {
            let bound = watch_bound(ctx, &self.watches[i], through);
            let from = *self.watches[i]
                .checked_through
                .get_or_insert(floor_second(synced_through).min(bound));
            if bound <= from {
                continue;
            }
            let ids = self
                .changed_parents(ctx, &self.watches[i], from, bound)
                .await?;
            if !ids.is_empty() {
                let filters = self.watches[i].filters.clone();
                for filter in filters {
                    let out = self.children(ctx, &filter, &ids).await?;
                    total.read += out.read;
                    total.changed += out.changed;
                }
            }
            self.watches[i].checked_through = Some(bound);
        }
        Ok(total)
    }

    async fn changed_parents(
        &self,
        ctx: &MappingCtx,
        w: &ParentWatch,
        from: DateTime<Utc>,
        through: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        match &w.source {
            Source::Mapped { table, .. } => Ok(ctx
                .db
                .send(ChangedSfids {
                    table: table.clone(),
                    from: from.naive_utc(),
                    until: through.naive_utc(),
                })
                .await??),
            Source::Api => {
                // queryAll: a deleted parent blanks what its children read, too.
                let soql = select(
                    &["Id"],
                    &w.object,
                    Some(&format!(
                        "SystemModstamp >= {} AND SystemModstamp < {}",
                        soql_datetime(from),
                        soql_datetime(through)
                    )),
                );
                let mut ids = IdSink(Vec::new());
                let mut cost = ReadCost::default();
                rest_read(
                    &ctx.client,
                    &soql,
                    QueryOperation::QueryAll,
                    &mut cost,
                    &mut ids,
                )
                .await?;
                Ok(ids.0)
            }
        }
    }

    /// Re-reads the children of `parents` through `filter` and writes what changed.
    async fn children(
        &self,
        ctx: &MappingCtx,
        filter: &str,
        parents: &[String],
    ) -> Result<Refreshed> {
        let object = &self.formulas.object_name;
        let fields = self.select_list();
        let condition = |ids: &[String]| {
            let quoted: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
            format!("{filter} IN ({})", quoted.join(","))
        };
        let children = self
            .count_children(ctx, filter, parents, &condition)
            .await?;
        let mut sink = RefreshSink::new(ctx, self.formulas.clone());
        let mut cost = ReadCost::default();
        if children == 0 {
            // Nothing to read; the counts' API calls are still the mapping's.
        } else if children > ctx.settings.bulk_threshold {
            let soqls: Vec<String> = parents
                .chunks(BULK_IDS_PER_BATCH)
                .map(|c| select(&fields, object, Some(&condition(c))))
                .collect();
            bulk_read(
                &ctx.client,
                object,
                QueryOperation::Query,
                &soqls,
                None,
                &mut cost,
                &mut sink,
            )
            .await?;
        } else {
            for chunk in parents.chunks(REST_IDS_PER_QUERY) {
                let soql = select(&fields, object, Some(&condition(chunk)));
                rest_read(
                    &ctx.client,
                    &soql,
                    QueryOperation::Query,
                    &mut cost,
                    &mut sink,
                )
                .await?;
            }
        }
        sink.finish().await
    }

    /// How many children `parents` have through `filter`: in Postgres when the lookup is a
    /// mapped column (the table is as fresh as the mapping's polls), else by COUNT() queries.
    async fn count_children(
        &self,
        ctx: &MappingCtx,
        filter: &str,
        parents: &[String],
        condition: &dyn Fn(&[String]) -> String,
    ) -> Result<u64> {
        if let Some((_, column)) = self
            .lookups
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(filter))
        {
            let n = ctx
                .db
                .send(CountReferring {
                    table: QualifiedName::new(&ctx.key.schema, &self.formulas.table),
                    column: column.clone(),
                    ids: parents.to_vec(),
                })
                .await??;
            return Ok(n.max(0) as u64);
        }
        let object = &self.formulas.object_name;
        let mut children = 0u64;
        for chunk in parents.chunks(REST_IDS_PER_QUERY) {
            let soql = format!("SELECT COUNT() FROM {object} WHERE {}", condition(chunk));
            children += ctx.client.count(&soql).await?;
        }
        Ok(children)
    }

    /// Every record's formula values: REST when the table is small, else one Bulk job.
    async fn timed(&self, ctx: &MappingCtx) -> Result<Refreshed> {
        let object = &self.formulas.object_name;
        let soql = select(&self.select_list(), object, None);
        let rows = ctx
            .registry
            .get(&ctx.key.connection, &ctx.key.object)
            .map_or(0, |s| s.rows.max(0) as u64);
        let mut sink = RefreshSink::new(ctx, self.formulas.clone());
        let mut cost = ReadCost::default();
        if rows > ctx.settings.bulk_threshold {
            bulk_read(
                &ctx.client,
                object,
                QueryOperation::Query,
                &[soql],
                Some(PK_CHUNK),
                &mut cost,
                &mut sink,
            )
            .await?;
        } else {
            rest_read(
                &ctx.client,
                &soql,
                QueryOperation::Query,
                &mut cost,
                &mut sink,
            )
            .await?;
        }
        sink.finish().await
    }

    fn select_list(&self) -> Vec<&str> {
        let mut out = vec!["Id"];
        out.extend(self.formulas.fields.iter().map(|f| f.sf_name.as_str()));
        out
    }
}

/// How far a parent's changes can be checked now: a mapped parent only as far as its own polls
/// have committed.
fn watch_bound(ctx: &MappingCtx, w: &ParentWatch, through: DateTime<Utc>) -> DateTime<Utc> {
    match &w.source {
        Source::Api => through,
        Source::Mapped { object, .. } => ctx
            .registry
            .get(&ctx.key.connection, object)
            .and_then(|s| s.synced_through)
            .map_or(DateTime::<Utc>::MIN_UTC, |t| t.min(through)),
    }
}

struct IdSink(Vec<String>);

impl RecordSink for IdSink {
    async fn push(&mut self, record: Record) -> Result<()> {
        if let Some(Some(id)) = record.values().first() {
            self.0.push(id.clone());
        }
        Ok(())
    }
}

/// Collects refreshed rows and writes them `batch_rows` at a time.
struct RefreshSink<'a> {
    ctx: &'a MappingCtx,
    builder: RowBuilder,
    rows: Vec<Row>,
    done: Refreshed,
}

impl<'a> RefreshSink<'a> {
    fn new(ctx: &'a MappingCtx, formulas: Arc<ResolvedMapping>) -> RefreshSink<'a> {
        RefreshSink {
            ctx,
            builder: RowBuilder::new(formulas),
            rows: Vec::new(),
            done: Refreshed::default(),
        }
    }

    async fn flush(&mut self) -> Result<()> {
        let api_calls = self.ctx.take_api_calls();
        let rows = std::mem::take(&mut self.rows);
        let n = rows.len() as i64;
        let changed = self
            .ctx
            .db
            .send(RefreshFormulas {
                key: self.ctx.key.clone(),
                epoch: self.ctx.epoch,
                table: self.builder.mapping().table.clone(),
                fields: self.builder.mapping().fields.clone(),
                rows,
                api_calls,
            })
            .await??;
        self.done.read += n;
        self.done.changed += changed;
        self.ctx
            .registry
            .update(&self.ctx.key.connection, &self.ctx.key.object, |s| {
                s.counters.formula_refreshed += changed;
                s.counters.api_calls += api_calls;
            });
        Ok(())
    }

    /// Writes what is left (and the calls made, even when nothing was read).
    async fn finish(mut self) -> Result<Refreshed> {
        self.flush().await?;
        Ok(self.done)
    }
}

impl RecordSink for RefreshSink<'_> {
    async fn push(&mut self, record: Record) -> Result<()> {
        let mut row = self.builder.build(&record);
        // The builder's layout is the data path's (sfid, stamp, isdeleted, fields); a refresh
        // carries sfid and the fields only.
        row.drain(1..3);
        self.rows.push(row);
        if self.rows.len() >= self.ctx.settings.batch_rows {
            self.flush().await?;
        }
        Ok(())
    }
}
