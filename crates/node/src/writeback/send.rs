//! Sending one claimed batch: composite collections of up to 200, each record's answer turned into
//! the outcome [`driftless_core::writeback`] records (sent, failed for good, or retry later).

use std::time::Duration;

use driftless_core::mapping::ResolvedMapping;
use driftless_core::writeback::{Action, ClaimedEntry, Failure, Retry, Sent};
use futures::stream::{self, StreamExt};
use salesforce::{Client, ErrorKind, SObject, SaveResult};

use super::convert::{sobject, Kind, Writable};

/// Salesforce's limit for one sObject collection call.
pub const COLLECTION: usize = 200;
/// Collection calls in flight at once per batch. Each record appears once in a batch (the claim
/// hands out one entry per record), so concurrent calls never reorder a record's changes.
const CONCURRENT_CALLS: usize = 4;
/// The longest a transient failure waits before its next attempt.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub struct Outcome {
    pub sent: Vec<Sent>,
    pub failed: Vec<Failure>,
    pub retry: Vec<Retry>,
    /// Claimed but never sent (held back under Ordered Writes, a Bulk job's unprocessed rows):
    /// back to `NEW` with the claim not counted.
    pub unsent: Vec<i32>,
    /// Bulk jobs whose every row is accounted for above: forgotten once this is recorded.
    pub bulk_jobs: Vec<String>,
    /// Bulk jobs whose results could not be read yet (Salesforce unreachable): their entries stay
    /// `PENDING` and the writer settles the jobs from the database before claiming again.
    pub unsettled_jobs: usize,
}

impl Outcome {
    pub(super) fn extend(&mut self, other: Outcome) {
        self.sent.extend(other.sent);
        self.failed.extend(other.failed);
        self.retry.extend(other.retry);
        self.unsent.extend(other.unsent);
        self.bulk_jobs.extend(other.bulk_jobs);
        self.unsettled_jobs += other.unsettled_jobs;
    }

    /// Entries this accounts for.
    pub fn settled(&self) -> usize {
        self.sent.len() + self.failed.len() + self.retry.len() + self.unsent.len()
    }
}

/// An entry and the record it sends (none for a delete).
pub(super) type Item = (ClaimedEntry, Option<SObject>);

/// Entries that need a call, grouped by how they go (upsert, create, update, delete, each in log
/// order); the ones settled without a call are in the outcome.
pub(super) type Groups = [(Kind, Vec<Item>); 4];

/// Exponential in the entry's attempts: 1 s, 2 s, 4 s... up to [`MAX_BACKOFF`].
pub fn backoff(attempts: i32) -> Duration {
    const SCHEDULE: salesforce::Backoff = salesforce::Backoff {
        base: Duration::from_secs(1),
        cap: MAX_BACKOFF,
        max_attempts: u32::MAX,
    };
    SCHEDULE.ceiling(attempts.clamp(1, 10) as u32 - 1)
}

/// How `e` goes, or the outcome it already has without a call.
fn plan(e: &ClaimedEntry, upsert_field: Option<&str>) -> Result<Kind, Box<Outcome>> {
    let done = |sfid: Option<String>| Outcome {
        sent: vec![Sent { log_id: e.id, sfid }],
        ..Outcome::default()
    };
    match (e.action, &e.sfid) {
        (Action::Delete, Some(_)) => Ok(Kind::Delete),
        // The record never reached Salesforce (its insert failed or is gone): nothing to delete.
        (Action::Delete, None) => Err(Box::new(done(None))),
        (Action::Update, Some(_)) => Ok(Kind::Update),
        (Action::Insert | Action::Update, _) => {
            if upsert_field.is_some() && e.upsert_value.is_some() {
                Ok(Kind::Upsert)
            } else if e.attempts <= 1 {
                Ok(Kind::Create)
            } else {
                // An earlier attempt may have created the record and nothing identifies it: a
                // resend could make a second one (module docs of driftless_core::writeback).
                Err(Box::new(Outcome {
                    failed: vec![Failure {
                        log_id: e.id,
                        message: "an earlier attempt of this insert may have reached Salesforce \
                                  and the row has no upsert field value to find it by; not sent \
                                  again (set the upsert field and update the row to retry)"
                            .into(),
                        code: Some("DRIFTLESS_UNSAFE_RETRY".into()),
                    }],
                    ..Outcome::default()
                }))
            }
        }
    }
}

/// How `e` goes and what it sends, or its outcome when it needs no call.
fn prepare_one(
    mapping: &ResolvedMapping,
    writable: &Writable,
    e: ClaimedEntry,
) -> Result<(Kind, Item), Box<Outcome>> {
    let kind = plan(&e, mapping.upsert_field.as_deref())?;
    if kind == Kind::Delete {
        return Ok((kind, (e, None)));
    }
    match sobject(mapping, writable, &e, kind) {
        Some(obj) => Ok((kind, (e, Some(obj)))),
        // Only read-only columns changed: Salesforce has nothing to take.
        None => Err(Box::new(Outcome {
            sent: vec![Sent {
                log_id: e.id,
                sfid: e.sfid.clone(),
            }],
            ..Outcome::default()
        })),
    }
}

/// `entries` grouped by how they go; see [`Groups`].
pub(super) fn prepare(
    mapping: &ResolvedMapping,
    writable: &Writable,
    entries: Vec<ClaimedEntry>,
) -> (Outcome, Groups) {
    let mut out = Outcome::default();
    let mut groups: Groups = [
        (Kind::Upsert, Vec::new()),
        (Kind::Create, Vec::new()),
        (Kind::Update, Vec::new()),
        (Kind::Delete, Vec::new()),
    ];
    for e in entries {
        match prepare_one(mapping, writable, e) {
            Ok((kind, item)) => {
                if let Some(g) = groups.iter_mut().find(|(k, _)| *k == kind) {
                    g.1.push(item);
                }
            }
            Err(o) => out.extend(*o),
        }
    }
    (out, groups)
}

/// Sends `entries` (Merged Writes: one per record, so records are independent and calls may run
/// side by side) and says what became of each.
pub async fn send(
    client: &Client,
    mapping: &ResolvedMapping,
    writable: &Writable,
    entries: Vec<ClaimedEntry>,
) -> Outcome {
    let (mut out, groups) = prepare(mapping, writable, entries);
    out.extend(send_groups(client, mapping, groups).await);
    out
}

/// Sends `entries` under Ordered Writes: in log order, one call at a time, a call taking the run
/// of consecutive entries that go the same way (up to [`COLLECTION`]). After a rejected INSERT
/// nothing later is sent: the rest go back to the queue unsent, where the claim holds them behind
/// the failure (Connect stops the table's queue there).
pub async fn send_ordered(
    client: &Client,
    mapping: &ResolvedMapping,
    writable: &Writable,
    mut entries: Vec<ClaimedEntry>,
) -> Outcome {
    entries.sort_by_key(|e| e.id);
    let mut out = Outcome::default();
    let mut run: Option<(Kind, Vec<Item>)> = None;
    let mut rest = entries.into_iter();
    let blocked =
        |o: &Outcome, inserts: &[i32]| o.failed.iter().any(|f| inserts.contains(&f.log_id));
    loop {
        let next = rest.next();
        let prepared = next.map(|e| {
            let is_insert = e.action == Action::Insert;
            (e.id, is_insert, prepare_one(mapping, writable, e))
        });
        // The run ends at a different kind, a full collection, an entry settled without a call
        // (it must not overtake the run) and at the end.
        let ends = match (&run, &prepared) {
            (Some((k, items)), Some((_, _, Ok((kind, _))))) => {
                *k != *kind || items.len() >= COLLECTION
            }
            (Some(_), _) => true,
            (None, _) => false,
        };
        if ends {
            if let Some((kind, items)) = run.take() {
                let (o, stop) = send_run_ordered(client, mapping, kind, items).await;
                out.extend(o);
                if stop {
                    out.unsent.extend(prepared.iter().map(|(id, _, _)| *id));
                    out.unsent.extend(rest.map(|e| e.id));
                    return out;
                }
            }
        }
        let Some((id, is_insert, p)) = prepared else {
            return out;
        };
        match p {
            Ok((kind, item)) => match &mut run {
                Some((_, items)) => items.push(item),
                None => run = Some((kind, vec![item])),
            },
            Err(o) => {
                let stop = is_insert && blocked(&o, &[id]);
                out.extend(*o);
                if stop {
                    out.unsent.extend(rest.map(|e| e.id));
                    return out;
                }
            }
        }
    }
}

/// One run of Ordered Writes; `true` when a rejected INSERT stops the table's queue. A run with
/// inserts goes all-or-none, so that nothing after a rejected insert is applied: when one is
/// rejected, what came before it is sent again without it and the rest stays unsent.
async fn send_run_ordered(
    client: &Client,
    mapping: &ResolvedMapping,
    kind: Kind,
    mut items: Vec<Item>,
) -> (Outcome, bool) {
    let mut out = Outcome::default();
    while !items.is_empty() {
        if !items.iter().any(|(e, _)| e.action == Action::Insert) {
            out.extend(send_chunk(client, mapping, kind, items).await);
            return (out, false);
        }
        let results = match call(client, mapping, kind, &items, true).await {
            Ok(r) => r,
            Err(err) => {
                let inserts: Vec<i32> = items
                    .iter()
                    .filter(|(e, _)| e.action == Action::Insert)
                    .map(|(e, _)| e.id)
                    .collect();
                let o = call_failed(client, mapping, kind, items, err).await;
                let stop = o.failed.iter().any(|f| inserts.contains(&f.log_id));
                out.extend(o);
                return (out, stop);
            }
        };
        let rejected = results.iter().position(|r| {
            !r.success
                && r.errors
                    .first()
                    .is_none_or(|x| x.status_code != "ALL_OR_NONE_OPERATION_ROLLED_BACK")
        });
        let Some(k) = rejected else {
            for ((e, _), r) in items.iter().zip(&results) {
                out.extend(judge(e.id, e.sfid.as_deref(), e.attempts, kind, r));
            }
            return (out, false);
        };
        let mut rest = items.split_off(k);
        let (bad, _) = rest.remove(0);
        let before = std::mem::take(&mut items);
        if !before.is_empty() {
            let (o, stop) = Box::pin(send_run_ordered(client, mapping, kind, before)).await;
            out.extend(o);
            if stop {
                out.unsent.push(bad.id);
                out.unsent.extend(rest.iter().map(|(e, _)| e.id));
                return (out, true);
            }
        }
        let o = judge(bad.id, bad.sfid.as_deref(), bad.attempts, kind, &results[k]);
        let stop = bad.action == Action::Insert && !o.failed.is_empty();
        out.extend(o);
        if stop {
            out.unsent.extend(rest.iter().map(|(e, _)| e.id));
            return (out, true);
        }
        items = rest;
    }
    (out, false)
}

/// Sends grouped items as collections, [`CONCURRENT_CALLS`] at a time.
pub(super) async fn send_groups(
    client: &Client,
    mapping: &ResolvedMapping,
    groups: Groups,
) -> Outcome {
    let mut out = Outcome::default();
    let mut chunks = Vec::new();
    for (kind, items) in groups {
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<_> = items.by_ref().take(COLLECTION).collect();
            chunks.push((kind, chunk));
        }
    }
    let results: Vec<Outcome> = stream::iter(chunks)
        .map(|(kind, chunk)| send_chunk(client, mapping, kind, chunk))
        .buffer_unordered(CONCURRENT_CALLS)
        .collect()
        .await;
    for r in results {
        out.extend(r);
    }
    out
}

async fn call(
    client: &Client,
    mapping: &ResolvedMapping,
    kind: Kind,
    chunk: &[Item],
    all_or_none: bool,
) -> salesforce::Result<Vec<SaveResult>> {
    let records = || -> Vec<SObject> { chunk.iter().filter_map(|(_, o)| o.clone()).collect() };
    match kind {
        Kind::Upsert => {
            let field = mapping.upsert_field.as_deref().unwrap_or_default();
            client
                .upsert_records(&mapping.object_name, field, &records(), all_or_none)
                .await
        }
        Kind::Create => client.create_records(&records(), all_or_none).await,
        Kind::Update => client.update_records(&records(), all_or_none).await,
        Kind::Delete => {
            let ids: Vec<String> = chunk.iter().filter_map(|(e, _)| e.sfid.clone()).collect();
            client.delete_records(&ids, all_or_none).await
        }
    }
}

pub(super) async fn send_chunk(
    client: &Client,
    mapping: &ResolvedMapping,
    kind: Kind,
    chunk: Vec<Item>,
) -> Outcome {
    match call(client, mapping, kind, &chunk, false).await {
        Ok(results) => {
            chunk
                .iter()
                .zip(results)
                .fold(Outcome::default(), |mut out, ((e, _), r)| {
                    out.extend(judge(e.id, e.sfid.as_deref(), e.attempts, kind, &r));
                    out
                })
        }
        Err(err) => call_failed(client, mapping, kind, chunk, err).await,
    }
}

/// The whole call failed. Worth retrying: every entry waits. Otherwise one record may have spoilt
/// the request for all: each is sent alone so only the bad one fails.
pub(super) async fn call_failed(
    client: &Client,
    mapping: &ResolvedMapping,
    kind: Kind,
    chunk: Vec<Item>,
    err: salesforce::Error,
) -> Outcome {
    let mut out = Outcome::default();
    match err.action() {
        salesforce::Action::Fail if chunk.len() > 1 => {
            for item in chunk {
                out.extend(Box::pin(send_chunk(client, mapping, kind, vec![item])).await);
            }
        }
        salesforce::Action::Fail => {
            for (e, _) in chunk {
                out.failed.push(Failure {
                    log_id: e.id,
                    message: err.message().to_owned(),
                    code: err.code().map(str::to_owned),
                });
            }
        }
        _ => {
            for (e, _) in chunk {
                let delay = match err.kind() {
                    ErrorKind::QuotaExceeded => err.retry_after().unwrap_or(MAX_BACKOFF),
                    _ => backoff(e.attempts),
                };
                out.retry.push(Retry {
                    log_id: e.id,
                    delay,
                    message: err.to_string(),
                });
            }
        }
    }
    out
}

/// One record's answer, for the entry `log_id` (the record's `sfid` when claimed, the claims of
/// the entry so far).
pub(super) fn judge(
    log_id: i32,
    sfid: Option<&str>,
    attempts: i32,
    kind: Kind,
    r: &SaveResult,
) -> Outcome {
    let mut out = Outcome::default();
    if r.success {
        out.sent.push(Sent {
            log_id,
            sfid: r.id.clone().or_else(|| sfid.map(str::to_owned)),
        });
        return out;
    }
    match r.error_kind() {
        // Gone already: what the delete wanted.
        Some(ErrorKind::NotFound) if kind == Kind::Delete => out.sent.push(Sent {
            log_id,
            sfid: sfid.map(str::to_owned),
        }),
        Some(k)
            if matches!(
                k.action(),
                salesforce::Action::Retry | salesforce::Action::WaitForQuota
            ) =>
        {
            out.retry.push(Retry {
                log_id,
                delay: backoff(attempts),
                message: message(r),
            })
        }
        _ => out.failed.push(Failure {
            log_id,
            message: message(r),
            code: r.errors.first().map(|x| x.status_code.clone()),
        }),
    }
    out
}

/// Salesforce's errors as one line: `CODE: message (fields)`, joined by `; `.
fn message(r: &SaveResult) -> String {
    if r.errors.is_empty() {
        return "rejected by Salesforce without an error".into();
    }
    r.errors
        .iter()
        .map(|x| {
            let mut m = format!("{}: {}", x.status_code, x.message);
            if !x.fields.is_empty() {
                m.push_str(&format!(" ({})", x.fields.join(", ")));
            }
            m
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        action: Action,
        sfid: Option<&str>,
        upsert: Option<&str>,
        attempts: i32,
    ) -> ClaimedEntry {
        ClaimedEntry {
            id: 7,
            action,
            record_id: 1,
            sfid: sfid.map(str::to_owned),
            values: Default::default(),
            old: Default::default(),
            upsert_value: upsert.map(str::to_owned),
            attempts,
            created_at: None,
            txid: None,
        }
    }

    fn result(json: &str) -> SaveResult {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn each_change_goes_the_idempotent_way_it_can() {
        let ext = Some("External_Id__c");
        let kind = |e: &ClaimedEntry| plan(e, ext).ok();
        assert_eq!(
            kind(&entry(Action::Insert, None, Some("x"), 3)),
            Some(Kind::Upsert)
        );
        assert_eq!(
            kind(&entry(Action::Update, None, Some("x"), 1)),
            Some(Kind::Upsert)
        );
        assert_eq!(
            kind(&entry(Action::Update, Some("a00"), Some("x"), 1)),
            Some(Kind::Update)
        );
        assert_eq!(
            kind(&entry(Action::Delete, Some("a00"), None, 1)),
            Some(Kind::Delete)
        );
        assert_eq!(
            kind(&entry(Action::Insert, None, None, 1)),
            Some(Kind::Create)
        );
        // A resend of a create could make a second record: it fails instead.
        let out = plan(&entry(Action::Insert, None, None, 2), ext).unwrap_err();
        assert_eq!(
            out.failed[0].code.as_deref(),
            Some("DRIFTLESS_UNSAFE_RETRY")
        );
        // Deleting what never reached Salesforce is done at once.
        let out = plan(&entry(Action::Delete, None, None, 1), ext).unwrap_err();
        assert_eq!(out.sent.len(), 1);
    }

    #[test]
    fn answers_sort_into_sent_failed_and_retry() {
        let del = entry(Action::Delete, Some("a00"), None, 1);
        let gone = result(
            r#"{"success":false,"errors":[{"statusCode":"ENTITY_IS_DELETED","message":"gone"}]}"#,
        );
        assert_eq!(
            judge(
                del.id,
                del.sfid.as_deref(),
                del.attempts,
                Kind::Delete,
                &gone
            )
            .sent
            .len(),
            1
        );
        let upd = entry(Action::Update, Some("a00"), None, 2);
        assert_eq!(
            judge(
                upd.id,
                upd.sfid.as_deref(),
                upd.attempts,
                Kind::Update,
                &gone
            )
            .failed
            .len(),
            1
        );
        let locked = result(
            r#"{"success":false,"errors":[{"statusCode":"UNABLE_TO_LOCK_ROW","message":"busy"}]}"#,
        );
        let retry = judge(
            upd.id,
            upd.sfid.as_deref(),
            upd.attempts,
            Kind::Update,
            &locked,
        )
        .retry;
        assert_eq!(retry[0].delay, Duration::from_secs(2));
        let bad = result(
            r#"{"success":false,"errors":[{"statusCode":"REQUIRED_FIELD_MISSING","message":"Required fields are missing: [Name]","fields":["Name"]}]}"#,
        );
        let f = &judge(
            upd.id,
            upd.sfid.as_deref(),
            upd.attempts,
            Kind::Update,
            &bad,
        )
        .failed[0];
        assert_eq!(f.code.as_deref(), Some("REQUIRED_FIELD_MISSING"));
        assert_eq!(
            f.message,
            "REQUIRED_FIELD_MISSING: Required fields are missing: [Name] (Name)"
        );
        let ok = result(r#"{"id":"a01","success":true,"created":true}"#);
        let ins = entry(Action::Insert, None, Some("x"), 1);
        assert_eq!(
            judge(ins.id, ins.sfid.as_deref(), ins.attempts, Kind::Upsert, &ok).sent[0]
                .sfid
                .as_deref(),
            Some("a01")
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
