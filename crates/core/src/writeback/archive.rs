//! Moving settled entries to `_trigger_log_archive` and purging it (§4.3: kept 31 days on paid
//! plans).

use std::time::Duration;

use tokio_postgres::GenericClient;

use super::{archive_table, log_table, side_table, WritebackError};
use crate::ident::Ident;

/// Heroku Connect's archive retention on paid plans (§4.3, §5.7).
pub const DEFAULT_ARCHIVE_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

const COLUMNS: &str =
    "id, txid, created_at, updated_at, processed_at, processed_tx, state, action, \
                       table_name, record_id, sfid, old, \"values\", sf_result, sf_message";

/// Moves every settled entry of the schema (SUCCESS, FAILED, READONLY, IGNORE, IGNORED, MERGED,
/// REQUEUED) settled more than `min_age` ago to the archive, in one statement. A few minutes of
/// `min_age` keeps recent successes visible to the read side's guard, which uses them to skip
/// records read before the write reached Salesforce. An entry whose id the archive already holds
/// (an archived entry the application copied back with its id, leaving the archived one marked
/// `REQUEUED`) stays in the live log, so the archived row is never overwritten. Returns how many
/// moved.
pub async fn archive_processed(
    client: &impl GenericClient,
    schema: &Ident,
    min_age: Duration,
) -> Result<u64, WritebackError> {
    let sql = format!(
        "WITH moved AS (
    DELETE FROM {log}
    WHERE state IN ('SUCCESS', 'FAILED', 'READONLY', 'IGNORE', 'IGNORED', 'MERGED', 'REQUEUED')
      AND coalesce(processed_at, updated_at, created_at) <= now() - make_interval(secs => $1::float8)
      AND NOT EXISTS (SELECT 1 FROM {archive} a WHERE a.id = {log}.id)
    RETURNING {COLUMNS}
), side AS (
    DELETE FROM {side} s USING moved m WHERE s.log_id = m.id
)
INSERT INTO {archive} ({COLUMNS}) SELECT {COLUMNS} FROM moved
ON CONFLICT (id) DO NOTHING",
        log = log_table(schema),
        side = side_table(schema),
        archive = archive_table(schema),
    );
    Ok(client.execute(&sql, &[&min_age.as_secs_f64()]).await?)
}

/// Deletes archived entries created more than `retention` ago; see [`DEFAULT_ARCHIVE_RETENTION`].
pub async fn purge_archive(
    client: &impl GenericClient,
    schema: &Ident,
    retention: Duration,
) -> Result<u64, WritebackError> {
    let sql = format!(
        "DELETE FROM {} WHERE created_at < now() - make_interval(secs => $1::float8)",
        archive_table(schema)
    );
    Ok(client.execute(&sql, &[&retention.as_secs_f64()]).await?)
}
