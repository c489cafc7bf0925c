//! Claiming trigger-log entries under Heroku Connect's two write algorithms (§4.5), and the
//! re-sends Connect documents (§4.9).
//!
//! - [`WriteMode::Merged`] (Connect's Merged Writes, our default): every unfinished change of a
//!   record is claimed together and folded into one write: the fold's representative carries the
//!   merged values (its `values` are rewritten to them, so the flip-flop guard and a later re-send
//!   see everything it sends), and the others end `MERGED` with it. A fold that ends in a DELETE is
//!   represented by the DELETE. An INSERT that may already have reached Salesforce (attempts > 0)
//!   is not folded: a changed upsert value could otherwise make a second record.
//! - [`WriteMode::Ordered`] (Ordered Writes): one change per record, and only the changes before
//!   the table's first change that has to wait (a record's second change, or a change behind a
//!   blocking insert), so a batch sent in id order is the log replayed in order. A FAILED INSERT
//!   blocks every later entry of its table until it is re-captured (a later INSERT of the same
//!   record, e.g. by `hc_capture_insert_from_row`), set `NEW`, or set `IGNORED`; a failed insert
//!   already archived still blocks until its archive row is marked otherwise.
//!
//! Re-sends: an entry the application put back to `NEW` after it FAILED (the side table remembers
//! the failure), or copied back from the archive whose row it marked `REQUEUED`/`REQUEUE`, is sent
//! with the row as it is now: every mapped column for an INSERT, the entry's columns for an UPDATE
//! (the application fixed the row, then asked for the retry). `IGNORED` is never claimed.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use super::queue::{upsert_column, Action, ClaimedEntry, IN_FLIGHT_LEASE};
use super::{archive_table, encode_hstore, log_table, parse_hstore, side_table, WritebackError};
use crate::ident::{Ident, QualifiedName};
use crate::mapping::ResolvedMapping;

/// Heroku Connect's write algorithm, `connection.sync.write_mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMode {
    #[default]
    Merged,
    Ordered,
}

impl WriteMode {
    pub fn parse(s: &str) -> Option<WriteMode> {
        match s {
            "merged" => Some(WriteMode::Merged),
            "ordered" => Some(WriteMode::Ordered),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Merged => "merged",
            WriteMode::Ordered => "ordered",
        }
    }
}

type Values = BTreeMap<String, Option<String>>;

/// One claimed log row, before folding.
struct Row {
    id: i32,
    head: i32,
    action: Action,
    record_id: i32,
    sfid: Option<String>,
    values: Values,
    old: Values,
    upsert_now: Option<String>,
    attempts: i32,
    created_at: Option<chrono::DateTime<chrono::Utc>>,
    txid: Option<i64>,
    /// The row now (mapped columns); `None` when it is gone.
    row_now: Option<Values>,
    resend: bool,
}

/// How [`claim_sql`] picks entries: the two write modes, and the per-record replay that
/// [`super::claim_pending`] keeps for callers not yet choosing a mode (one change per record,
/// records independent of each other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strategy {
    Mode(WriteMode),
    HeadPerRecord,
}

fn claim_sql(schema: &Ident, mapping: &ResolvedMapping, strategy: Strategy) -> String {
    let log = log_table(schema);
    let side = side_table(schema);
    let archive = archive_table(schema);
    let target = QualifiedName::new(schema, &mapping.table);
    let pair = super::capture::pair_fn(schema);
    let row_now = if mapping.fields.is_empty() {
        "CASE WHEN t.id IS NOT NULL THEN ''::text END".to_owned()
    } else {
        let pairs: Vec<String> = mapping
            .fields
            .iter()
            .map(|f| {
                format!(
                    "{pair}('{}', to_jsonb(t.{}) #>> '{{}}')",
                    f.column.as_str(),
                    f.column
                )
            })
            .collect();
        format!(
            "CASE WHEN t.id IS NOT NULL THEN array_to_string(ARRAY[{}], ', ') END",
            pairs.join(", ")
        )
    };
    let upsert_now = match upsert_column(mapping) {
        Some(c) => format!("to_jsonb(t.{c}) #>> '{{}}'"),
        None => "NULL::text".to_owned(),
    };
    let stale = "make_interval(secs => $3::float8)";
    let (ordered_ctes, ordered_bound, members) = match strategy {
        Strategy::HeadPerRecord => (
            String::new(),
            String::new(),
            "SELECT id, id AS head FROM heads".to_owned(),
        ),
        Strategy::Mode(WriteMode::Merged) => (
            String::new(),
            String::new(),
            // A head INSERT that may have been sent already goes alone (module docs).
            "SELECT u.id, h.id AS head FROM unfinished u JOIN heads h ON h.record_id = u.record_id
     WHERE u.id = h.id OR NOT (h.action = 'INSERT' AND h.attempts > 0)"
                .to_owned(),
        ),
        Strategy::Mode(WriteMode::Ordered) => (
            format!(
                "block AS (
    SELECT coalesce(min(f.id), 2147483647) AS id FROM (
        SELECT id, record_id FROM {log} WHERE table_name = $1 AND state = 'FAILED' AND action = 'INSERT'
        UNION ALL
        SELECT id, record_id FROM {archive} WHERE table_name = $1 AND state = 'FAILED' AND action = 'INSERT'
    ) f
    WHERE NOT EXISTS (SELECT 1 FROM {log} n WHERE n.table_name = $1 AND n.record_id = f.record_id
                      AND n.action = 'INSERT' AND n.id > f.id)
      AND NOT EXISTS (SELECT 1 FROM {archive} n WHERE n.table_name = $1 AND n.record_id = f.record_id
                      AND n.action = 'INSERT' AND n.id > f.id)
), bound AS (
    SELECT least((SELECT id FROM block),
                 coalesce((SELECT min(id) FROM unfinished WHERE rn > 1), 2147483647)) AS id
), "
            ),
            "AND id < (SELECT id FROM bound)".to_owned(),
            "SELECT id, id AS head FROM heads".to_owned(),
        ),
    };
    // `unfinished` is read once (MATERIALIZED): heads, the ordered bound and the fold members all
    // come from the same snapshot. SKIP LOCKED plus the re-checked state (READ COMMITTED
    // re-evaluates it on the locked row) keep concurrent claimers apart, and a fold whose head
    // someone else holds is dropped whole.
    format!(
        "WITH unfinished AS MATERIALIZED (
    SELECT l.id, l.record_id, l.state, l.action, l.updated_at, w.not_before,
           coalesce(w.attempts, 0) AS attempts,
           row_number() OVER (PARTITION BY l.record_id ORDER BY l.id) AS rn
    FROM {log} l LEFT JOIN {side} w ON w.log_id = l.id
    WHERE l.table_name = $1 AND l.state IN ('NEW', 'PENDING')
), {ordered_ctes}heads AS (
    SELECT id, record_id, action, attempts FROM unfinished
    WHERE rn = 1
      AND ((state = 'NEW' AND (not_before IS NULL OR not_before <= now()))
           OR (state = 'PENDING' AND updated_at < now() - {stale}))
      {ordered_bound}
    ORDER BY id
    LIMIT $2
), members AS (
    {members}
), locked AS (
    SELECT l.id, m.head FROM {log} l JOIN members m ON m.id = l.id
    WHERE l.state = 'NEW' OR (l.state = 'PENDING' AND l.updated_at < now() - {stale})
    FOR UPDATE OF l SKIP LOCKED
), ok AS (
    SELECT k.id, k.head FROM locked k WHERE EXISTS (SELECT 1 FROM locked h WHERE h.id = k.head)
), claimed AS (
    UPDATE {log} l SET state = 'PENDING', updated_at = now()
    FROM ok WHERE l.id = ok.id
    RETURNING l.id, ok.head, l.action, l.record_id, l.sfid, l.\"values\", l.old, l.created_at, l.txid
), att AS (
    INSERT INTO {side} AS w (log_id, attempts, claimed_at, merged_into)
    SELECT id, 1, now(), CASE WHEN id = head THEN NULL ELSE head END FROM claimed
    ON CONFLICT (log_id) DO UPDATE
    SET attempts = w.attempts + 1, claimed_at = now(), not_before = NULL,
        merged_into = EXCLUDED.merged_into
    RETURNING log_id, attempts, failed_at
)
SELECT c.id, c.head, c.action, c.record_id, coalesce(c.sfid, t.sfid)::text, c.\"values\", c.old,
       {upsert_now}, a.attempts, c.created_at, c.txid, {row_now},
       (a.failed_at IS NOT NULL OR EXISTS (
           SELECT 1 FROM {archive} r WHERE r.table_name = $1 AND r.record_id = c.record_id
           AND r.action = c.action AND r.state IN ('REQUEUE', 'REQUEUED')))
FROM claimed c
JOIN att a ON a.log_id = c.id
LEFT JOIN {target} t ON t.id = c.record_id
ORDER BY c.head, c.id"
    )
}

/// Claims up to `limit` records' worth of `mapping`'s entries under `mode` (module docs), each
/// marked `PENDING` in one statement; returns one entry per write, in log order.
pub async fn claim(
    client: &impl GenericClient,
    schema: &Ident,
    mapping: &ResolvedMapping,
    mode: WriteMode,
    limit: i64,
) -> Result<Vec<ClaimedEntry>, WritebackError> {
    claim_with(client, schema, mapping, Strategy::Mode(mode), limit).await
}

pub(super) async fn claim_with(
    client: &impl GenericClient,
    schema: &Ident,
    mapping: &ResolvedMapping,
    strategy: Strategy,
    limit: i64,
) -> Result<Vec<ClaimedEntry>, WritebackError> {
    let rows = client
        .query(
            &claim_sql(schema, mapping, strategy),
            &[
                &mapping.table.as_str(),
                &limit,
                &IN_FLIGHT_LEASE.as_secs_f64(),
            ],
        )
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i32 = r.get(0);
        let bad = |message: String| WritebackError::BadEntry { id, message };
        let action: Option<String> = r.get(2);
        let action = action
            .as_deref()
            .and_then(Action::parse)
            .ok_or_else(|| bad(format!("unknown action {action:?}")))?;
        let record_id: Option<i32> = r.get(3);
        let hstore = |col: usize, name: &str| -> Result<Option<Values>, WritebackError> {
            let text: Option<String> = r.get(col);
            text.map(|t| parse_hstore(&t).ok_or_else(|| bad(format!("unreadable {name}"))))
                .transpose()
        };
        claimed.push(Row {
            id,
            head: r.get(1),
            action,
            record_id: record_id.ok_or_else(|| bad("no record_id".into()))?,
            sfid: r.get(4),
            values: hstore(5, "values")?.unwrap_or_default(),
            old: hstore(6, "old")?.unwrap_or_default(),
            upsert_now: r.get(7),
            attempts: r.get(8),
            created_at: r.get(9),
            txid: r.get(10),
            row_now: hstore(11, "row")?,
            resend: r.get(12),
        });
    }
    let upsert_col = upsert_column(mapping);
    let mut out = Vec::new();
    let mut refolds: Vec<(i32, i32, Option<String>)> = Vec::new();
    let mut rows = claimed.into_iter().peekable();
    while let Some(first) = rows.next() {
        let mut group = vec![first];
        while let Some(r) = rows.next_if(|r| r.head == group[0].head) {
            group.push(r);
        }
        let (entry, refold) = fold(group, upsert_col.as_ref());
        if let Some(r) = refold {
            refolds.push(r);
        }
        out.push(entry);
    }
    if !refolds.is_empty() {
        record_folds(client, schema, &refolds).await?;
    }
    out.sort_by_key(|e| e.id);
    Ok(out)
}

/// One write from a record's claimed entries (in id order, head first), and when several were
/// folded: (representative, head, merged values to store on the representative).
#[allow(clippy::type_complexity)]
fn fold(
    group: Vec<Row>,
    upsert_col: Option<&Ident>,
) -> (ClaimedEntry, Option<(i32, i32, Option<String>)>) {
    let head_id = group[0].head;
    let folded = group.len() > 1;
    let sfid = group.iter().rev().find_map(|r| r.sfid.clone());
    let is_delete = group.last().is_some_and(|r| r.action == Action::Delete);
    let mut merged = Values::new();
    for r in &group {
        merged.extend(r.values.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut rep = if is_delete {
        group.into_iter().last().expect("non-empty")
    } else {
        group.into_iter().next().expect("non-empty")
    };
    let stored = (folded && !is_delete)
        .then(|| encode_hstore(merged.iter().map(|(k, v)| (k.as_str(), v.as_deref()))));
    let values = match rep.action {
        Action::Delete => Values::new(),
        // Salesforce does not know the record yet (its insert failed or was ignored): the update
        // goes as an upsert, so it must carry the whole row.
        Action::Update if sfid.is_none() => rep.row_now.take().unwrap_or(merged),
        Action::Insert if rep.resend => rep.row_now.take().unwrap_or(merged),
        Action::Update if rep.resend => match rep.row_now.take() {
            Some(now) => now
                .into_iter()
                .filter(|(k, _)| merged.contains_key(k))
                .collect(),
            None => merged,
        },
        _ => merged,
    };
    let upsert_value = upsert_col.and_then(|c| {
        let from = |m: &Values| m.get(c.as_str()).cloned().flatten();
        from(&values)
            .or_else(|| rep.upsert_now.clone())
            .or_else(|| from(&rep.old))
    });
    let refold = folded.then_some((rep.id, head_id, stored));
    (
        ClaimedEntry {
            id: rep.id,
            action: rep.action,
            record_id: rep.record_id,
            sfid,
            values,
            old: rep.old,
            upsert_value,
            attempts: rep.attempts,
            created_at: rep.created_at,
            txid: rep.txid,
        },
        refold,
    )
}

/// Points every folded entry at its representative and stores the merged values on it, so
/// outcomes, the guard and a re-send see the fold. A crash before this runs leaves the fold
/// `PENDING` under its head, which recovery hands back whole.
async fn record_folds(
    client: &impl GenericClient,
    schema: &Ident,
    folds: &[(i32, i32, Option<String>)],
) -> Result<(), WritebackError> {
    let reps: Vec<i32> = folds.iter().map(|f| f.0).collect();
    let heads: Vec<i32> = folds.iter().map(|f| f.1).collect();
    let values: Vec<Option<&str>> = folds.iter().map(|f| f.2.as_deref()).collect();
    client
        .execute(
            &format!(
                "WITH f AS (SELECT * FROM unnest($1::int[], $2::int[], $3::text[]) AS f(rep, head, vals)),
                 s AS (
                     UPDATE {side} w SET merged_into = CASE WHEN w.log_id = f.rep THEN NULL ELSE f.rep END
                     FROM f WHERE f.rep <> f.head AND (w.log_id = f.head OR w.merged_into = f.head)
                 )
                 UPDATE {log} l SET \"values\" = f.vals FROM f WHERE l.id = f.rep AND f.vals IS NOT NULL",
                side = side_table(schema),
                log = log_table(schema),
            ),
            &[&reps, &heads, &values],
        )
        .await?;
    Ok(())
}
