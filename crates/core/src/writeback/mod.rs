//! The database half of write-back (Postgres → Salesforce): capture triggers, the trigger-log
//! queue, the read side's "no flip-flop" guard, and status counts. Tables and states are Heroku
//! Connect's (reference/heroku-connect.md §4); the WriteBack actor only has to LISTEN, claim, call
//! Salesforce and record outcomes.
//!
//! # Capture
//!
//! [`install_triggers`] (run by [`crate::migrate::ensure_schema`]) puts two triggers on each mapped
//! table, under Heroku Connect's names so a table taken over from Connect gets its triggers
//! replaced rather than doubled:
//! - `hc_<table>_logtrigger` (AFTER, every row) writes `_trigger_log`: INSERT with every mapped
//!   column in `values`, UPDATE with only the changed mapped columns, DELETE with only `old`. State
//!   `NEW` (read_write) or `READONLY` (read_only); `IGNORE` for an update that changes no mapped
//!   column and for the delete of a row that never reached Salesforce (no sfid, no insert pending).
//!   A `NEW` entry also sends `pg_notify('driftless_writeback', '<schema>.<table>')`.
//! - `hc_<table>_status_trigger` (BEFORE, read_write only) sets `_hc_lastop = 'PENDING'` and clears
//!   `_hc_err` when a user write changes a mapped column.
//!
//! The logger is SECURITY DEFINER, so the application's database role needs no grant on the log.
//! Both skip the engine's own writes: every engine transaction that touches mapped rows runs
//! [`SUPPRESS_CAPTURE`] first (the read-side merge in [`crate::dml`], and the functions here, which
//! do it themselves).
//!
//! # Queue and the idempotency protocol
//!
//! Per record (`table_name`, `record_id`) the log is replayed strictly in id order: [`claim`] only
//! ever hands out a record's changes starting from its oldest `NEW`/`PENDING` entry, and only when
//! that is `NEW` (or an abandoned `PENDING`, below), so a later change never overtakes an earlier
//! one. Under Merged Writes (the default) a record's pending changes go as one write; under Ordered
//! Writes each change goes alone, in log order, and a failed insert holds its table's queue (see
//! the `claim` module for both, and for re-sends: FAILED set to `NEW`, archived entries copied
//! back). Claiming is one statement with `FOR UPDATE SKIP LOCKED`: concurrent claimers never get
//! the same entry.
//!
//! 1. Claim: `NEW` → `PENDING` (`updated_at` = claim time), attempt counter + 1. This commits
//!    *before* Salesforce is called, so "this entry may have been sent" survives a crash.
//! 2. Send. INSERTs (and UPDATEs of a row that has no sfid yet) go as an **upsert on the mapping's
//!    `upsert_field`** with [`ClaimedEntry::upsert_value`]: resending after a crash finds the record
//!    the first attempt created instead of making a second one. UPDATE by Id and DELETE are
//!    idempotent by nature (a second DELETE answering ENTITY_IS_DELETED / NOT_FOUND is a success).
//!    The one unsafe case is an INSERT whose upsert value is NULL: when its
//!    [`ClaimedEntry::attempts`] is above 1 the actor must not resend blindly; mark it failed (or
//!    look the record up first).
//! 3. Record the outcome with [`mark_success`], [`mark_failed`] or [`retry_later`], each in one
//!    transaction, matched on state `PENDING` so a late answer for an entry someone else already
//!    settled changes nothing.
//!
//! A `PENDING` entry whose claim is older than [`IN_FLIGHT_LEASE`] is claimable again (its worker is
//! presumed dead); an owner that knows no one else sends for the table (it holds the mapping's
//! lease) can call [`recover_in_flight`] at start instead of waiting. Either way step 2 is repeated,
//! which is why it must be idempotent.
//!
//! The read side and the writer race (§4.7): the merge matches an incoming record to a row without
//! sfid by the upsert field, so an insert's echo never lands as a second row, and [`mark_success`]
//! removes a duplicate row the read side made anyway before back-filling the sfid.
//!
//! # Deviations from Heroku Connect
//!
//! - Echo suppression uses the GUC `driftless.sync`, not `xmlbinary` (§4.2): reusing a real
//!   Postgres setting with a meaning of its own as a flag is a trap for applications.
//! - `values`/`old` are hstore *text* in the `text` columns, as in Connect, but built without the
//!   hstore extension (no extension to install on a customer database); values are rendered through
//!   JSON (`to_jsonb(x) #>> '{}'`), so timestamps are ISO 8601 and booleans `true`/`false`
//!   whatever the session's DateStyle. `values` holds mapped columns only; `old` holds the system
//!   columns too, minus `_hc_lastop`/`_hc_err` as in Connect.
//! - read_only tables get no status trigger: a `PENDING` that no writer will ever clear would lie.
//! - Under Merged Writes a `FAILED` entry does not hold back its record's later changes. Instead an
//!   UPDATE of a record whose insert failed is handed out with the whole current row, so fixing the
//!   row in Postgres is the retry (Ordered Writes stops the table's queue instead, as Connect does).
//! - A re-sent entry (FAILED set to `NEW`, or copied back from the archive) goes with the row as it
//!   is now, not as it was captured: the application fixed the row, then asked for the retry.
//! - The representative of a fold gets the merged values in its `values`, so what the log says was
//!   sent is what was sent.
//! - Heroku Connect's manual re-send functions (`hc_capture_*_from_row`) need the hstore extension;
//!   without it they are not created (a warning), and nothing else is affected.
//! - An accepted UPDATE leaves `_hc_lastop = 'UPDATED'` (the reference only shows `INSERTED` for
//!   inserts); the read side's next version turns either into `SYNCED`.
//! - Retry bookkeeping (attempts, not-before, claim time) lives in `_driftless_writeback`, since
//!   Connect's columns have no room for it.

mod archive;
mod bulk_job;
mod capture;
mod claim;
pub mod guard;
mod hstore;
mod queue;
mod resend;
mod status;

use crate::ident::{Ident, QualifiedName};

pub use archive::{archive_processed, purge_archive, DEFAULT_ARCHIVE_RETENTION};
pub use bulk_job::{drop_bulk_job, open_bulk_jobs, save_bulk_job, BulkJob};
pub use capture::{install_triggers, trigger_sql};
pub use claim::{claim, WriteMode};
pub use hstore::{encode_hstore, parse_hstore};
pub(crate) use queue::upsert_column;
pub use queue::{
    claim_pending, mark_failed, mark_success, pending_above, recover_in_flight, release_unsent,
    retry_later, Action, ClaimedEntry, Failure, Retry, Sent, IN_FLIGHT_LEASE,
};
pub use resend::{install as install_resend_functions, ResendFunctions};
pub use status::{
    counts, failed_count, failed_entries, pending_count, sent_count, Counts, FailedEntry,
};

/// Run first in every engine transaction that writes mapped rows, so the capture triggers leave
/// those writes alone. `SET LOCAL`: it ends with the transaction, so a pooled session handed back
/// to anyone else is captured again.
pub const SUPPRESS_CAPTURE: &str = "SET LOCAL driftless.sync = 'on'";

/// The statement to run; see [`SUPPRESS_CAPTURE`].
pub fn suppress_capture_sql() -> &'static str {
    SUPPRESS_CAPTURE
}

/// LISTEN on this; the payload is `<schema>.<table>`.
pub const NOTIFY_CHANNEL: &str = "driftless_writeback";

/// Heroku Connect's trigger-log states (§4.3).
pub mod state {
    pub const NEW: &str = "NEW";
    pub const PENDING: &str = "PENDING";
    pub const SUCCESS: &str = "SUCCESS";
    pub const FAILED: &str = "FAILED";
    pub const READONLY: &str = "READONLY";
    pub const IGNORE: &str = "IGNORE";
    pub const IGNORED: &str = "IGNORED";
    pub const MERGED: &str = "MERGED";
    pub const REQUEUE: &str = "REQUEUE";
    pub const REQUEUED: &str = "REQUEUED";
}

/// Side table for what Connect's columns cannot hold; see the module docs.
pub const WRITEBACK_TABLE: &str = "_driftless_writeback";

#[derive(Debug, thiserror::Error)]
pub enum WritebackError {
    #[error("write-back query failed: {}", crate::pgerror::describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// A row the triggers did not write the way we expect (hand-edited, or from an older Connect).
    #[error("trigger log entry {id}: {message}")]
    BadEntry { id: i32, message: String },
}

pub(crate) fn log_table(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema, &Ident::internal("_trigger_log"))
}

pub(crate) fn archive_table(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema, &Ident::internal("_trigger_log_archive"))
}

pub(crate) fn side_table(schema: &Ident) -> QualifiedName {
    QualifiedName::new(schema, &Ident::internal(WRITEBACK_TABLE))
}
