//! Records Postgres would not take (`_driftless_rejects`): a value a column rejects (a type, a
//! length, a constraint the user added) is quarantined here with the database's error, and the
//! rest of its batch commits. A row leaves the table when a later version of the record is
//! written.

use chrono::NaiveDateTime;
use tokio_postgres::GenericClient;

use super::{table, MappingKey};
use crate::ident::Ident;

pub const REJECTS_TABLE: &str = "_driftless_rejects";

/// One record that could not be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub sfid: String,
    pub systemmodstamp: Option<NaiveDateTime>,
    /// The column the database named, when it named one.
    pub field: Option<String>,
    /// The database's error, one line (SQLSTATE, message, detail).
    pub error: String,
}

/// A quarantined record as `ctl errors` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectEntry {
    pub object: String,
    pub reject: Reject,
    pub rejected_at: chrono::DateTime<chrono::Utc>,
}

pub fn create_table(schema: &Ident) -> String {
    let t = table(schema, REJECTS_TABLE);
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (
    connection text NOT NULL,
    object_name text NOT NULL,
    sfid varchar(18) COLLATE \"C\" NOT NULL,
    systemmodstamp timestamp,
    field text,
    error text NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection, object_name, sfid)
)"
    )
}

/// Quarantines `rejects` (a newer rejection of the same record replaces the older).
pub async fn record(
    client: &impl GenericClient,
    key: &MappingKey,
    rejects: &[Reject],
) -> Result<(), tokio_postgres::Error> {
    let t = table(&key.schema, REJECTS_TABLE);
    let sql = format!(
        "INSERT INTO {t} (connection, object_name, sfid, systemmodstamp, field, error) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (connection, object_name, sfid) DO UPDATE SET \
         systemmodstamp = EXCLUDED.systemmodstamp, field = EXCLUDED.field, \
         error = EXCLUDED.error, rejected_at = now()"
    );
    let stmt = client.prepare(&sql).await?;
    for r in rejects {
        client
            .execute(
                &stmt,
                &[
                    &key.connection,
                    &key.object,
                    &r.sfid,
                    &r.systemmodstamp,
                    &r.field,
                    &r.error,
                ],
            )
            .await?;
    }
    Ok(())
}

/// Releases the records of `sfids` that were written after all. One index probe when the
/// mapping has nothing quarantined, which is the common case, so the ids travel only when needed.
pub async fn clear(
    client: &impl GenericClient,
    key: &MappingKey,
    sfids: &[&str],
) -> Result<u64, tokio_postgres::Error> {
    let t = table(&key.schema, REJECTS_TABLE);
    let any = client
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {t} WHERE connection = $1 AND object_name = $2)"
            ),
            &[&key.connection, &key.object],
        )
        .await?
        .get::<_, bool>(0);
    if !any || sfids.is_empty() {
        return Ok(0);
    }
    client
        .execute(
            &format!(
                "DELETE FROM {t} WHERE connection = $1 AND object_name = $2 AND sfid = ANY($3)"
            ),
            &[&key.connection, &key.object, &sfids],
        )
        .await
}

/// The newest `limit` quarantined records of `connection`.
pub async fn list(
    client: &impl GenericClient,
    schema: &Ident,
    connection: &str,
    limit: i64,
) -> Result<Vec<RejectEntry>, tokio_postgres::Error> {
    let t = table(schema, REJECTS_TABLE);
    let rows = client
        .query(
            &format!(
                "SELECT object_name, sfid, systemmodstamp, field, error, rejected_at FROM {t} \
                 WHERE connection = $1 ORDER BY rejected_at DESC, sfid LIMIT $2"
            ),
            &[&connection, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RejectEntry {
            object: r.get(0),
            reject: Reject {
                sfid: r.get(1),
                systemmodstamp: r.get(2),
                field: r.get(3),
                error: r.get(4),
            },
            rejected_at: r.get(5),
        })
        .collect())
}

/// Whether `e` is about the values of a record (so the record, not the mapping, is at fault):
/// SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation).
pub fn is_record_error(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| matches!(&db.code().code()[..2], "22" | "23"))
}
