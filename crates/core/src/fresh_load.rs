//! The fresh-table load: when a mapped table is empty (just created, or truncated by a reload),
//! an initial load sends its rows by binary COPY straight into the table, with no staging table
//! and no merge, and builds the table's indexes once the rows are in, as pg_restore does. That
//! is the fastest path Postgres has (DESIGN.md measured about 2.3 times a CSV `\copy` into the
//! indexed table).
//!
//! ```text
//! drop_indexes                      -- the table is empty: nothing to lose, nothing to rebuild
//! per batch: BEGIN; fence; COPY <table> (<copy_columns>) FROM STDIN BINARY; cursor; COMMIT
//! build_indexes                     -- once, at the end
//! ```
//!
//! A record can reach the load twice (it moved between PK chunks while they were read). The unique
//! sfid index then cannot be built; [`build_indexes`] keeps the newest version of each record
//! (highest SystemModstamp, then the row copied last) and builds it again, so the load never ends
//! with a failed index or a silent duplicate.

use tokio_postgres::error::SqlState;
use tokio_postgres::Transaction;

use crate::ddl::{create_index, indexes, table_name};
use crate::dml::staging_columns;
use crate::ident::{Ident, QualifiedName};
use crate::mapping::ResolvedMapping;
use crate::types::PgType;

/// The columns a fresh load copies, in order: [`staging_columns`] (sfid, systemmodstamp,
/// isdeleted, the mapped fields), then `_hc_lastop`, which the writer sets to `SYNCED` as the
/// merge does.
pub fn copy_columns(mapping: &ResolvedMapping) -> Vec<(Ident, PgType)> {
    let mut cols = staging_columns(mapping);
    cols.push((Ident::internal("_hc_lastop"), PgType::Varchar(32)));
    cols
}

/// `COPY <schema>.<table> (...) FROM STDIN BINARY`.
pub fn copy_into_table(schema: &Ident, mapping: &ResolvedMapping) -> String {
    let cols: Vec<String> = copy_columns(mapping)
        .iter()
        .map(|(c, _)| c.to_string())
        .collect();
    format!(
        "COPY {} ({}) FROM STDIN BINARY",
        table_name(schema, mapping),
        cols.join(", ")
    )
}

/// `DROP INDEX IF EXISTS` for every index the mapping makes (the primary key on `id` stays).
pub fn drop_indexes(schema: &Ident, mapping: &ResolvedMapping) -> Vec<String> {
    indexes(mapping)
        .iter()
        .map(|i| {
            format!(
                "DROP INDEX IF EXISTS {}",
                QualifiedName::new(schema, &i.name)
            )
        })
        .collect()
}

/// Keeps one row per sfid: the newest stamp, and of equal stamps the row copied last.
pub fn remove_duplicates(schema: &Ident, mapping: &ResolvedMapping) -> String {
    let t = table_name(schema, mapping);
    format!(
        "DELETE FROM {t} WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY sfid ORDER BY systemmodstamp DESC, id DESC) AS n
        FROM {t} WHERE sfid IN (SELECT sfid FROM {t} GROUP BY sfid HAVING count(*) > 1)
    ) d WHERE n > 1
)"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuiltIndexes {
    /// Older copies of records that reached the load more than once.
    pub duplicates_removed: u64,
}

/// Builds every index of the mapping on a freshly loaded table, resolving duplicate sfids first
/// if the unique index finds any. The common case (no duplicate) pays one index build, with no
/// extra scan for duplicates.
pub async fn build_indexes(
    tx: &mut Transaction<'_>,
    schema: &Ident,
    mapping: &ResolvedMapping,
) -> Result<BuiltIndexes, tokio_postgres::Error> {
    let all = indexes(mapping);
    let (sfid, rest) = all.split_first().expect("the sfid index is always first");
    let mut built = BuiltIndexes::default();
    let unique_sfid = create_index(schema, mapping, sfid);
    let attempt = tx.savepoint("driftless_sfid_index").await?;
    match attempt.batch_execute(&unique_sfid).await {
        Ok(()) => attempt.commit().await?,
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            attempt.rollback().await?;
            built.duplicates_removed = tx.execute(&remove_duplicates(schema, mapping), &[]).await?;
            tx.batch_execute(&unique_sfid).await?;
        }
        Err(e) => return Err(e),
    }
    for index in rest {
        tx.batch_execute(&create_index(schema, mapping, index))
            .await?;
    }
    Ok(built)
}

/// Whether a load into the mapping's table takes the fresh path: one row `(empty, unindexed)`,
/// the table has no row, or its unique sfid index is missing (a fresh load was interrupted
/// before its indexes were built, so it must go on as one).
pub fn fresh_check(schema: &Ident, mapping: &ResolvedMapping) -> String {
    let sfid = indexes(mapping)
        .into_iter()
        .next()
        .map(|i| QualifiedName::new(schema, &i.name).to_string())
        .unwrap_or_default();
    format!(
        "SELECT NOT EXISTS (SELECT 1 FROM {}), to_regclass({}) IS NULL",
        table_name(schema, mapping),
        quote_literal(&sfid)
    )
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The tombstones of deleted records a fresh load read (the merge's `tomb` step, without the
/// upsert, which needs the unique index the fresh table does not have yet). A deleted record is
/// never copied into the table, and its Id belongs to its own chunk, so there is no row to
/// delete. Parameters: `$1` connection, `$2` object, `$3` sfids (`text[]`), `$4` their
/// SystemModstamps (`timestamp[]`).
pub fn record_tombstones(schema: &Ident) -> String {
    let tombstones = crate::state::table(schema, crate::state::TOMBSTONES_TABLE);
    format!(
        "INSERT INTO {tombstones} AS tb (connection, object_name, sfid, systemmodstamp)
SELECT DISTINCT ON (d.sfid) $1::text, $2::text, d.sfid, d.stamp
FROM unnest($3::text[], $4::timestamp[]) AS d(sfid, stamp)
ORDER BY d.sfid, d.stamp DESC
ON CONFLICT (connection, object_name, sfid) DO UPDATE
SET systemmodstamp = GREATEST(tb.systemmodstamp, EXCLUDED.systemmodstamp)"
    )
}
