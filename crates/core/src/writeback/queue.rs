//! Claiming trigger-log entries and recording what Salesforce answered (protocol in the module docs
//! of [`crate::writeback`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::{log_table, side_table, WritebackError, SUPPRESS_CAPTURE};
use crate::ident::{Ident, QualifiedName};
use crate::mapping::ResolvedMapping;

/// How long a claimed entry may stay `PENDING` before another claimer presumes its worker dead and
/// sends it again. Far above any Salesforce call timeout, so a slow but live send is not doubled.
pub const IN_FLIGHT_LEASE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Insert,
    Update,
    Delete,
}

impl Action {
    pub(super) fn parse(s: &str) -> Option<Action> {
        match s {
            "INSERT" => Some(Action::Insert),
            "UPDATE" => Some(Action::Update),
            "DELETE" => Some(Action::Delete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Insert => "INSERT",
            Action::Update => "UPDATE",
            Action::Delete => "DELETE",
        }
    }
}

/// One entry handed to the WriteBack actor, now `PENDING`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedEntry {
    /// `_trigger_log.id`: pass it back to [`mark_success`] and friends.
    pub id: i32,
    pub action: Action,
    /// The mapped row's `id`.
    pub record_id: i32,
    /// The entry's sfid, else the row's current one: a change captured before its insert's sfid
    /// came back still knows the record by the time it is claimed.
    pub sfid: Option<String>,
    /// Column name → value as text (`to_jsonb(v) #>> '{}'`): every mapped column for an INSERT,
    /// the changed ones for an UPDATE, empty for a DELETE. An UPDATE with no `sfid` (the record's
    /// insert failed or was ignored, so it is sent as an upsert) carries the row's current values,
    /// all of them. See [`ClaimedEntry::sf_values`].
    pub values: BTreeMap<String, Option<String>>,
    /// The row before the change (UPDATE, DELETE), system columns included.
    pub old: BTreeMap<String, Option<String>>,
    /// The upsert field's value: from the change, else the row now, else the row before.
    pub upsert_value: Option<String>,
    /// Claims of this entry so far, this one included: above 1, an earlier send may have reached
    /// Salesforce.
    pub attempts: i32,
    pub created_at: Option<DateTime<Utc>>,
    pub txid: Option<i64>,
}

impl ClaimedEntry {
    /// `values` keyed by Salesforce field name, in mapping order; columns the mapping no longer has
    /// are dropped (the mapping was edited after the change was captured).
    pub fn sf_values<'a>(
        &'a self,
        mapping: &'a ResolvedMapping,
    ) -> Vec<(&'a str, Option<&'a str>)> {
        mapping
            .fields
            .iter()
            .filter_map(|f| {
                self.values
                    .get(f.column.as_str())
                    .map(|v| (f.sf_name.as_str(), v.as_deref()))
            })
            .collect()
    }
}

/// Claims up to `limit` entries of `mapping`'s table: per record only the oldest unfinished one,
/// records independent of each other, re-sends with the row as it is now. What the WriteBack
/// actor uses until it sends by [`super::claim`] with the connection's `write_mode`.
pub async fn claim_pending(
    client: &impl GenericClient,
    schema: &Ident,
    mapping: &ResolvedMapping,
    limit: i64,
) -> Result<Vec<ClaimedEntry>, WritebackError> {
    super::claim::claim_with(
        client,
        schema,
        mapping,
        super::claim::Strategy::HeadPerRecord,
        limit,
    )
    .await
}

pub(crate) fn upsert_column(mapping: &ResolvedMapping) -> Option<Ident> {
    mapping
        .upsert_field
        .as_deref()
        .and_then(|f| mapping.column_for(f))
}

/// A send Salesforce accepted. `sfid`: the record's Id as Salesforce returned it (needed for
/// inserts; may be `None` for updates and deletes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub log_id: i32,
    pub sfid: Option<String>,
}

/// A send Salesforce rejected for good. `code` is Salesforce's `statusCode`
/// (`REQUIRED_FIELD_MISSING`...), `message` its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub log_id: i32,
    pub message: String,
    pub code: Option<String>,
}

/// A send that failed in a way worth retrying (timeout, 503, lock contention, quota).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub log_id: i32,
    pub delay: Duration,
    pub message: String,
}

/// Marks entries `SUCCESS`. For an insert, the sfid is written into the row (which Salesforce's
/// echo would otherwise duplicate) and into the record's later entries; the row's `_hc_lastop`
/// becomes `INSERTED` / `UPDATED` unless a later change of it is still waiting, and the read side
/// turns it into `SYNCED` when the echo arrives (§4.7). One transaction, capture suppressed.
/// Returns how many entries it settled (entries no longer `PENDING` are left alone).
pub async fn mark_success(
    client: &mut impl GenericClient,
    schema: &Ident,
    mapping: &ResolvedMapping,
    sent: &[Sent],
) -> Result<u64, WritebackError> {
    let log = log_table(schema);
    let target = QualifiedName::new(schema, &mapping.table);
    let ids: Vec<i32> = sent.iter().map(|s| s.log_id).collect();
    let sfids: Vec<Option<&str>> = sent.iter().map(|s| s.sfid.as_deref()).collect();
    let tx = client.transaction().await?;
    tx.batch_execute(SUPPRESS_CAPTURE).await?;
    let done = tx
        .query(
            &format!(
                "UPDATE {log} l SET state = 'SUCCESS', sfid = coalesce(l.sfid, u.sfid),
                     processed_at = now(), processed_tx = txid_current(), updated_at = now()
                 FROM unnest($1::int[], $2::text[]) AS u(id, sfid)
                 WHERE l.id = u.id AND l.table_name = $3 AND l.state = 'PENDING'
                 RETURNING l.action::text, l.record_id, l.sfid::text"
            ),
            &[&ids, &sfids, &mapping.table.as_str()],
        )
        .await?;
    settle_folded(&tx, schema, &ids, Some(&sfids), "MERGED").await?;
    let mut rids = Vec::new();
    let mut rsfids: Vec<Option<String>> = Vec::new();
    let mut ops = Vec::new();
    for r in &done {
        let op = match r.get::<_, Option<&str>>(0) {
            Some("INSERT") => "INSERTED",
            Some("UPDATE") => "UPDATED",
            _ => continue,
        };
        rids.push(r.get::<_, Option<i32>>(1));
        rsfids.push(r.get(2));
        ops.push(op);
    }
    if !rids.is_empty() {
        // Changes captured while the insert was in flight have no sfid; they need it to be sent.
        tx.execute(
            &format!(
                "UPDATE {log} l SET sfid = u.sfid
                 FROM unnest($1::int[], $2::text[]) AS u(rid, sfid)
                 WHERE l.table_name = $3 AND l.record_id = u.rid AND l.sfid IS NULL
                   AND u.sfid IS NOT NULL AND l.state IN ('NEW', 'PENDING')"
            ),
            &[&rids, &rsfids, &mapping.table.as_str()],
        )
        .await?;
        // The read side got the new record before we could link it, and had no upsert value to
        // match it by: that row is the echo of this one, drop it so the sfid can move here.
        tx.execute(
            &format!(
                "DELETE FROM {target} d
                 USING unnest($1::int[], $2::text[]) AS u(rid, sfid), {target} o
                 WHERE o.id = u.rid AND o.sfid IS NULL AND d.sfid = u.sfid AND d.id <> u.rid"
            ),
            &[&rids, &rsfids],
        )
        .await?;
        tx.execute(
            &format!(
                "UPDATE {target} t SET sfid = coalesce(t.sfid, u.sfid), _hc_err = NULL,
                     _hc_lastop = CASE WHEN EXISTS (
                         SELECT 1 FROM {log} l WHERE l.table_name = $4 AND l.record_id = t.id
                         AND l.state IN ('NEW', 'PENDING')) THEN t._hc_lastop ELSE u.op END
                 FROM unnest($1::int[], $2::text[], $3::text[]) AS u(rid, sfid, op)
                 WHERE t.id = u.rid"
            ),
            &[&rids, &rsfids, &ops, &mapping.table.as_str()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(done.len() as u64)
}

/// Marks entries `FAILED` with Salesforce's message in `sf_message`, and the rows `_hc_lastop =
/// 'FAILED'` with `_hc_err` a JSON object `{"op", "src", "msg", "code", "log_id"}` (Connect's exact
/// shape is not public; §2.2 only says "a JSON object"). One transaction, capture suppressed.
pub async fn mark_failed(
    client: &mut impl GenericClient,
    schema: &Ident,
    mapping: &ResolvedMapping,
    failures: &[Failure],
) -> Result<u64, WritebackError> {
    let log = log_table(schema);
    let side = side_table(schema);
    let target = QualifiedName::new(schema, &mapping.table);
    let ids: Vec<i32> = failures.iter().map(|f| f.log_id).collect();
    let msgs: Vec<&str> = failures.iter().map(|f| f.message.as_str()).collect();
    let codes: Vec<Option<&str>> = failures.iter().map(|f| f.code.as_deref()).collect();
    let tx = client.transaction().await?;
    tx.batch_execute(SUPPRESS_CAPTURE).await?;
    let n = tx
        .execute(
            &format!(
                "WITH f AS (
                     UPDATE {log} l SET state = 'FAILED', sf_message = u.msg,
                         processed_at = now(), processed_tx = txid_current(), updated_at = now()
                     FROM unnest($1::int[], $2::text[], $3::text[]) AS u(id, msg, code)
                     WHERE l.id = u.id AND l.table_name = $4 AND l.state = 'PENDING'
                     RETURNING l.id, l.action, l.record_id, u.msg, u.code
                 ), s AS (
                     -- The failure is Salesforce's answer to this attempt: it did not land, so it
                     -- does not count against resending a create, and the application may re-send
                     -- the entry by setting it NEW (sent with the row as it is then).
                     UPDATE {side} w SET last_error = f.msg, failed_at = now(),
                         attempts = greatest(w.attempts - 1, 0)
                     FROM f WHERE w.log_id = f.id
                 ), r AS (
                     UPDATE {target} t SET _hc_lastop = 'FAILED',
                         _hc_err = jsonb_build_object('op', f.action, 'src', 'SFDC', 'msg', f.msg,
                                                      'code', f.code, 'log_id', f.id)::text
                     FROM f WHERE t.id = f.record_id
                 )
                 SELECT 1 FROM f"
            ),
            &[&ids, &msgs, &codes, &mapping.table.as_str()],
        )
        .await?;
    // What was folded into a failed write is represented by it: a re-send of the representative
    // carries the fold (its values were rewritten at the claim).
    settle_folded(&tx, schema, &ids, None, "MERGED").await?;
    tx.commit().await?;
    Ok(n)
}

/// Puts entries back to `NEW`, not to be claimed before `delay` has passed. They keep their place:
/// the record's later changes keep waiting behind them (entries folded into them go back to `NEW`
/// too, and are folded again at the next claim). The row stays `PENDING`.
pub async fn retry_later(
    client: &impl GenericClient,
    schema: &Ident,
    mapping: &ResolvedMapping,
    retries: &[Retry],
) -> Result<u64, WritebackError> {
    let log = log_table(schema);
    let side = side_table(schema);
    let ids: Vec<i32> = retries.iter().map(|r| r.log_id).collect();
    let delays: Vec<f64> = retries.iter().map(|r| r.delay.as_secs_f64()).collect();
    let msgs: Vec<&str> = retries.iter().map(|r| r.message.as_str()).collect();
    let n = client
        .execute(
            &format!(
                "WITH r AS (
                     UPDATE {log} l SET state = 'NEW', updated_at = now()
                     FROM unnest($1::int[], $2::float8[], $3::text[]) AS u(id, delay, msg)
                     WHERE l.id = u.id AND l.table_name = $4 AND l.state = 'PENDING'
                     RETURNING l.id, u.delay, u.msg
                 ), s AS (
                     INSERT INTO {side} AS w (log_id, not_before, last_error)
                     SELECT id, now() + make_interval(secs => delay), msg FROM r
                     ON CONFLICT (log_id) DO UPDATE
                     SET not_before = EXCLUDED.not_before, last_error = EXCLUDED.last_error
                 ), folded AS (
                     UPDATE {log} l SET state = 'NEW', updated_at = now()
                     FROM {side} w, r
                     WHERE w.log_id = l.id AND w.merged_into = r.id AND l.state = 'PENDING'
                 )
                 SELECT 1 FROM r"
            ),
            &[&ids, &delays, &msgs, &mapping.table.as_str()],
        )
        .await?;
    Ok(n)
}

/// Puts claimed entries that were never sent back to `NEW` at once, their claim not counted
/// (an insert without an upsert value may then still be sent: nothing of it reached Salesforce).
/// For entries held back behind a blocking failure, and the unprocessed rows of a Bulk job.
/// Entries folded into them go back to `NEW` too.
pub async fn release_unsent(
    client: &impl GenericClient,
    schema: &Ident,
    mapping: &ResolvedMapping,
    log_ids: &[i32],
) -> Result<u64, WritebackError> {
    let log = log_table(schema);
    let side = side_table(schema);
    let n = client
        .execute(
            &format!(
                "WITH r AS (
                     UPDATE {log} l SET state = 'NEW', updated_at = now()
                     WHERE l.id = ANY($1::int[]) AND l.table_name = $2 AND l.state = 'PENDING'
                     RETURNING l.id
                 ), s AS (
                     UPDATE {side} w SET attempts = greatest(w.attempts - 1, 0)
                     FROM r WHERE w.log_id = r.id
                 ), folded AS (
                     UPDATE {log} l SET state = 'NEW', updated_at = now()
                     FROM {side} w, r
                     WHERE w.log_id = l.id AND w.merged_into = r.id AND l.state = 'PENDING'
                 )
                 SELECT 1 FROM r"
            ),
            &[&log_ids, &mapping.table.as_str()],
        )
        .await?;
    Ok(n)
}

/// Whether more than `threshold` entries of `table` wait to be sent (`NEW`); reads at most
/// `threshold + 1` of them.
pub async fn pending_above(
    client: &impl GenericClient,
    schema: &Ident,
    table: &Ident,
    threshold: u64,
) -> Result<bool, WritebackError> {
    let limit = i64::try_from(threshold)
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    let n: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM (SELECT 1 FROM {} WHERE table_name = $1 AND state = 'NEW' \
                 LIMIT $2) n",
                log_table(schema)
            ),
            &[&table.as_str(), &limit],
        )
        .await?
        .get(0);
    Ok(n >= limit)
}

/// Hands every `PENDING` entry of `table` back to `NEW` at once, for an owner starting up that
/// knows no other worker is sending for it; their attempt counts say they may have been sent.
pub async fn recover_in_flight(
    client: &impl GenericClient,
    schema: &Ident,
    table: &Ident,
) -> Result<u64, WritebackError> {
    let n = client
        .execute(
            &format!(
                "UPDATE {} SET state = 'NEW', updated_at = now() \
                 WHERE table_name = $1 AND state = 'PENDING'",
                log_table(schema)
            ),
            &[&table.as_str()],
        )
        .await?;
    Ok(n)
}

/// Settles the entries folded into the representatives `reps` (side table `merged_into`) as
/// `state`, copying each representative's sfid onto them.
async fn settle_folded(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &Ident,
    reps: &[i32],
    sfids: Option<&[Option<&str>]>,
    state: &str,
) -> Result<u64, WritebackError> {
    let none: Vec<Option<&str>> = vec![None; reps.len()];
    let sfids = sfids.unwrap_or(&none);
    Ok(tx
        .execute(
            &format!(
                "UPDATE {log} l SET state = $3, sfid = coalesce(l.sfid, u.sfid),
                     processed_at = now(), processed_tx = txid_current(), updated_at = now()
                 FROM {side} w, unnest($1::int[], $2::text[]) AS u(id, sfid)
                 WHERE w.log_id = l.id AND w.merged_into = u.id AND l.state = 'PENDING'",
                log = log_table(schema),
                side = side_table(schema),
            ),
            &[&reps, &sfids, &state],
        )
        .await?)
}
