//! Write-back numbers for `ctl status` and the entries behind `ctl errors`.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::{archive_table, log_table, WritebackError};
use crate::ident::Ident;

/// One table's write-back, over the live log and the archive (within its retention).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Not yet accepted by Salesforce: `NEW` plus `PENDING`.
    pub pending: i64,
    /// The `PENDING` part of `pending`: claimed, possibly on the wire.
    pub in_flight: i64,
    pub failed: i64,
    pub sent: i64,
    /// Folded into another entry's write (Merged Writes).
    pub merged: i64,
}

pub async fn counts(
    client: &impl GenericClient,
    schema: &Ident,
    table: &Ident,
) -> Result<Counts, WritebackError> {
    let sql = format!(
        "SELECT count(*) FILTER (WHERE state IN ('NEW', 'PENDING')),
                count(*) FILTER (WHERE state = 'PENDING'),
                count(*) FILTER (WHERE state = 'FAILED'),
                count(*) FILTER (WHERE state = 'SUCCESS'),
                count(*) FILTER (WHERE state = 'MERGED')
         FROM (SELECT state FROM {} WHERE table_name = $1
               UNION ALL SELECT state FROM {} WHERE table_name = $1) e",
        log_table(schema),
        archive_table(schema)
    );
    let r = client.query_one(&sql, &[&table.as_str()]).await?;
    Ok(Counts {
        pending: r.get(0),
        in_flight: r.get(1),
        failed: r.get(2),
        sent: r.get(3),
        merged: r.get(4),
    })
}

pub async fn pending_count(
    client: &impl GenericClient,
    schema: &Ident,
    table: &Ident,
) -> Result<i64, WritebackError> {
    Ok(counts(client, schema, table).await?.pending)
}

pub async fn failed_count(
    client: &impl GenericClient,
    schema: &Ident,
    table: &Ident,
) -> Result<i64, WritebackError> {
    Ok(counts(client, schema, table).await?.failed)
}

pub async fn sent_count(
    client: &impl GenericClient,
    schema: &Ident,
    table: &Ident,
) -> Result<i64, WritebackError> {
    Ok(counts(client, schema, table).await?.sent)
}

/// A failed write, as Connect's errors API lists them (§4.9: id, table_name, record_id, message,
/// created_at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    pub id: i32,
    pub table_name: String,
    pub record_id: Option<i32>,
    pub sfid: Option<String>,
    pub action: Option<String>,
    pub message: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub processed_at: Option<DateTime<Utc>>,
    /// Found in `_trigger_log_archive` rather than the live log.
    pub archived: bool,
}

/// The schema's most recent failed writes, newest first, live log and archive together.
pub async fn failed_entries(
    client: &impl GenericClient,
    schema: &Ident,
    limit: i64,
) -> Result<Vec<FailedEntry>, WritebackError> {
    let cols =
        "id, table_name::text, record_id, sfid::text, action::text, sf_message, created_at, \
                processed_at";
    let sql = format!(
        "SELECT * FROM (
             SELECT {cols}, false AS archived FROM {} WHERE state = 'FAILED'
             UNION ALL
             SELECT {cols}, true FROM {} WHERE state = 'FAILED'
         ) e ORDER BY processed_at DESC NULLS LAST, id DESC LIMIT $1",
        log_table(schema),
        archive_table(schema)
    );
    let rows = client.query(&sql, &[&limit]).await?;
    Ok(rows
        .iter()
        .map(|r| FailedEntry {
            id: r.get(0),
            table_name: r.get::<_, Option<String>>(1).unwrap_or_default(),
            record_id: r.get(2),
            sfid: r.get(3),
            action: r.get(4),
            message: r.get(5),
            created_at: r.get(6),
            processed_at: r.get(7),
            archived: r.get(8),
        })
        .collect())
}
