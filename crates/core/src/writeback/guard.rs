//! SQL for the read side's "no flip-flop" guard (§4.8 anomalies from S10): while a Postgres change
//! of a record is waiting for or on its way to Salesforce, a version read from Salesforce must not
//! put the old values back (user sets A then B; A's echo arrives while B waits) nor revive a row
//! the user deleted. [`crate::dml::merge_from_staging`] includes these for read_write mappings.
//!
//! An entry guards while it is `NEW` or `PENDING`, and once `SUCCESS` only against versions
//! stamped before the second it was claimed: those were read before the write could have reached
//! Salesforce (a read batch is applied some time after it was read). Later versions carry the write,
//! or a Salesforce change made after it, and go through: last writer wins (§4.8).

use super::{log_table, side_table};
use crate::ident::Ident;
use crate::mapping::ResolvedMapping;

fn guarding(stamp: &str) -> String {
    format!(
        "(l.state IN ('NEW', 'PENDING') OR (l.state IN ('SUCCESS', 'MERGED') \
         AND {stamp} < date_trunc('second', w.claimed_at AT TIME ZONE 'UTC')))"
    )
}

/// A one-row SELECT of `busy` (boolean: a change of the row is still unsent; NULL when none) and
/// `cols` (the guarding entries' `values`, joined; NULL when none) for the row whose `id` is
/// `row_id`, against a Salesforce version stamped `stamp` (SQL expressions).
pub fn pending_changes_sql(
    schema: &Ident,
    mapping: &ResolvedMapping,
    row_id: &str,
    stamp: &str,
) -> String {
    format!(
        "SELECT bool_or(l.state IN ('NEW', 'PENDING')) AS busy, \
         string_agg(l.\"values\", ', ') AS cols \
         FROM {log} l LEFT JOIN {side} w ON w.log_id = l.id \
         WHERE l.table_name = '{t}' AND l.record_id = {row_id} \
         AND l.action IN ('INSERT', 'UPDATE') AND {g}",
        log = log_table(schema),
        side = side_table(schema),
        t = mapping.table.as_str(),
        g = guarding(stamp),
    )
}

/// True when `column` is among `cols` of [`pending_changes_sql`] (aliased `alias`). Matching the
/// text `"col"=>` is exact for hstore text: inside a quoted value every `"` is escaped as `\"`,
/// so an unescaped `"` followed by `=>` only ever closes a key.
pub fn column_guarded_sql(alias: &str, column: &Ident) -> String {
    format!("strpos({alias}.cols, '\"{}\"=>') > 0", column.as_str())
}

/// True while the record `sfid` has a delete from Postgres that guards against a version stamped
/// `stamp`: such a version must not bring the row back.
pub fn pending_delete_sql(
    schema: &Ident,
    mapping: &ResolvedMapping,
    sfid: &str,
    stamp: &str,
) -> String {
    format!(
        "EXISTS (SELECT 1 FROM {log} l LEFT JOIN {side} w ON w.log_id = l.id \
         WHERE l.table_name = '{t}' AND l.action = 'DELETE' AND l.sfid = {sfid} AND {g})",
        log = log_table(schema),
        side = side_table(schema),
        t = mapping.table.as_str(),
        g = guarding(stamp),
    )
}
