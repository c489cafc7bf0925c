//! Whether the mapped table is still the one the engine filled. A table dropped, recreated,
//! restored or truncated behind the engine's back would otherwise go on receiving only what
//! changes, silently incomplete. The state row keeps the table's identity (its `pg_class` oid
//! and relfilenode) and its synced row count when that identity was recorded; the check compares
//! them with the catalog, which costs one index lookup.

use tokio_postgres::GenericClient;

use super::{fenced_unless, table, MappingKey, StateError, MAPPING_STATE_TABLE};
use crate::ident::QualifiedName;

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableCheck {
    /// The table the engine filled (or the first check, which records it).
    Intact,
    /// No such table.
    Missing,
    /// A table of that name, but not the one the engine filled (dropped and created again, or
    /// restored from a dump).
    Replaced,
    /// The same table, rewritten with far fewer synced rows than it had (TRUNCATE).
    Emptied { rows: i64, had: i64 },
}

impl TableCheck {
    /// Why the table must be loaded again, for the log; `None` when it need not be.
    pub fn reload_reason(&self) -> Option<String> {
        match self {
            TableCheck::Intact => None,
            TableCheck::Missing => Some("the table is missing".into()),
            TableCheck::Replaced => {
                Some("the table was replaced (dropped and created again, or restored)".into())
            }
            TableCheck::Emptied { rows, had } => Some(format!(
                "the table was emptied behind the engine's back ({rows} synced rows, {had} before)"
            )),
        }
    }
}

/// Compares the table with the identity in the state row; records the identity when there is
/// none yet, or when only a rewrite that kept the rows (VACUUM FULL, CLUSTER) changed it.
pub async fn check(
    client: &impl GenericClient,
    key: &MappingKey,
    epoch: i64,
    target: &QualifiedName,
) -> Result<TableCheck, StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "SELECT s.table_oid, s.table_filenode, s.table_rows, c.oid::bigint, c.relfilenode::bigint \
         FROM {t} s LEFT JOIN pg_class c ON c.oid = to_regclass($3) \
         WHERE s.connection = $1 AND s.object_name = $2",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    let name = target.to_string();
    let Some(row) = client
        .query_opt(&sql, &[&connection, &object, &name])
        .await?
    else {
        return Ok(TableCheck::Intact);
    };
    let stored: (Option<i64>, Option<i64>, Option<i64>) = (row.get(0), row.get(1), row.get(2));
    let (Some(oid), Some(filenode)) = (row.get::<_, Option<i64>>(3), row.get::<_, Option<i64>>(4))
    else {
        return Ok(TableCheck::Missing);
    };
    let synced_rows = || async {
        let sql = format!("SELECT count(*) FROM {target} WHERE sfid IS NOT NULL");
        client
            .query_one(&sql, &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    };
    match stored {
        (Some(had_oid), _, _) if had_oid != oid => Ok(TableCheck::Replaced),
        (Some(_), Some(had_node), _) if had_node == filenode => Ok(TableCheck::Intact),
        (Some(_), _, had_rows) => {
            let rows = synced_rows().await?;
            let had = had_rows.unwrap_or(0);
            if rows * 2 < had {
                return Ok(TableCheck::Emptied { rows, had });
            }
            record(client, key, epoch, oid, filenode, rows).await?;
            Ok(TableCheck::Intact)
        }
        (None, _, _) => {
            let rows = synced_rows().await?;
            record(client, key, epoch, oid, filenode, rows).await?;
            Ok(TableCheck::Intact)
        }
    }
}

async fn record(
    client: &impl GenericClient,
    key: &MappingKey,
    epoch: i64,
    oid: i64,
    filenode: i64,
    rows: i64,
) -> Result<(), StateError> {
    let (schema, connection, object) = key.parts();
    let sql = format!(
        "UPDATE {t} SET table_oid = $3, table_filenode = $4, table_rows = $5 \
         WHERE connection = $1 AND object_name = $2 AND owner_epoch = $6 RETURNING 1",
        t = table(schema, MAPPING_STATE_TABLE)
    );
    let row = client
        .query_opt(
            &sql,
            &[&connection, &object, &oid, &filenode, &rows, &epoch],
        )
        .await?;
    fenced_unless(row.is_some(), connection, object, epoch)
}

/// The columns of the state row this module keeps, added to tables made before it.
pub fn columns(state: &QualifiedName) -> String {
    format!(
        "ALTER TABLE {state} ADD COLUMN IF NOT EXISTS table_oid bigint, \
         ADD COLUMN IF NOT EXISTS table_filenode bigint, ADD COLUMN IF NOT EXISTS table_rows bigint"
    )
}
