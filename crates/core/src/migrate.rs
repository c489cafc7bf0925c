//! Creating and evolving a mapping's tables in the customer's database.
//!
//! Additive only: tables, columns and indexes are created when missing, nothing is ever dropped or
//! retyped, so a mapping edit can never lose data. A column whose type no longer matches the describe
//! is reported, not altered. Everything runs in one transaction under an advisory lock, so two
//! workers migrating the same schema at once (a lease handover) serialize instead of racing on
//! `CREATE ... IF NOT EXISTS`, which is not safe under concurrency in Postgres.

use tokio_postgres::Client;

use crate::ddl;
use crate::describe::ObjectDescribe;
use crate::ident::Ident;
use crate::mapping::{resolve, Access, Mapping, MappingError, ResolvedMapping};
use crate::state;
use crate::writeback;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Mapping(Vec<MappingError>),
    /// Heroku Connect does not take over a table it did not create (§2.1), nor do we.
    #[error("table {table} exists but is not a mapped table: it has no {column} column")]
    ForeignTable { table: String, column: &'static str },
    #[error("schema migration failed: {}", crate::pgerror::describe(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// What [`ensure_schema`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaChanges {
    pub mapping: ResolvedMapping,
    pub created_table: bool,
    /// Salesforce API names of the fields whose columns were just added to an existing table: the
    /// engine backfills these (HC's RESYNC). Empty when the table was created.
    pub added_fields: Vec<String>,
    /// Indexes created by this call (all of them when the table was created).
    pub created_indexes: Vec<String>,
    /// Columns whose existing type differs from what the describe now maps to:
    /// (column, existing `information_schema` type, wanted type). Left alone.
    pub type_mismatches: Vec<(String, String, String)>,
    /// For a read_write mapping, whether Heroku Connect's re-send functions exist (they need the
    /// hstore extension); `None` for read_only mappings, which do not make them.
    pub resend_functions: Option<writeback::ResendFunctions>,
}

/// Makes sure `schema` holds the mapping's table, columns and indexes, plus the bookkeeping and
/// trigger-log tables and the write-back capture triggers. Idempotent; runs in one transaction.
pub async fn ensure_schema(
    client: &mut Client,
    schema: &Ident,
    mapping: &Mapping,
    describe: &ObjectDescribe,
) -> Result<SchemaChanges, MigrateError> {
    let resolved = resolve(mapping, describe).map_err(MigrateError::Mapping)?;
    ensure_resolved(client, schema, resolved).await
}

/// [`ensure_schema`] for a mapping already resolved against its describe (a table that vanished
/// while its mapping runs is made again from what the mapping resolved to at launch).
pub async fn ensure_resolved(
    client: &mut Client,
    schema: &Ident,
    resolved: ResolvedMapping,
) -> Result<SchemaChanges, MigrateError> {
    let tx = client.transaction().await?;
    // One lock per schema: the shared tables (bookkeeping, trigger log) are created here too.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('driftless.migrate.' || $1, 0))",
        &[&schema.as_str()],
    )
    .await?;
    // Only when missing: CREATE SCHEMA needs CREATE on the database even with IF NOT EXISTS, which
    // a role that merely owns its schema does not have.
    let schema_exists = tx
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&schema.as_str()],
        )
        .await?
        .is_some();
    if !schema_exists {
        tx.batch_execute(&ddl::create_schema(schema)).await?;
    }
    for sql in state::create_tables(schema)
        .into_iter()
        .chain(ddl::trigger_log_tables(schema))
    {
        tx.batch_execute(&sql).await?;
    }

    let existing = existing_columns(&tx, schema, &resolved.table).await?;
    let created_table = existing.is_empty();
    let mut added_fields = Vec::new();
    let mut type_mismatches = Vec::new();
    if created_table {
        tx.batch_execute(&ddl::create_table(schema, &resolved))
            .await?;
    } else {
        for column in ["sfid", "systemmodstamp"] {
            if !existing.iter().any(|(c, _)| c == column) {
                return Err(MigrateError::ForeignTable {
                    table: ddl::table_name(schema, &resolved).to_string(),
                    column,
                });
            }
        }
        for field in &resolved.fields {
            match existing.iter().find(|(c, _)| c == field.column.as_str()) {
                None => {
                    tx.batch_execute(&ddl::add_column(schema, &resolved, field))
                        .await?;
                    added_fields.push(field.sf_name.clone());
                }
                Some((_, ty)) if ty != field.pg_type.information_schema_name() => {
                    type_mismatches.push((
                        field.column.as_str().to_owned(),
                        ty.clone(),
                        field.pg_type.to_string(),
                    ));
                }
                Some(_) => {}
            }
        }
    }

    let mut created_indexes = Vec::new();
    // A fresh-table load builds the indexes once, at its end (`fresh_load`): while one is
    // unfinished (its table has no sfid index yet), building them here would index a partial
    // load, and fail on a record it holds twice.
    let fresh_load_unfinished = !created_table
        && tx
            .query_one(
                &fresh_load_unfinished_sql(schema, &resolved),
                &[&resolved.object_name],
            )
            .await?
            .get::<_, bool>(0);
    for index in ddl::indexes(&resolved)
        .into_iter()
        .filter(|_| !fresh_load_unfinished)
    {
        let exists = tx
            .query_opt(
                "SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
                &[&schema.as_str(), &index.name.as_str()],
            )
            .await?
            .is_some();
        if !exists {
            tx.batch_execute(&ddl::create_index(schema, &resolved, &index))
                .await?;
            created_indexes.push(index.name.as_str().to_owned());
        }
    }
    // Every run, not only on creation: the trigger functions list the mapped columns and the
    // access, which a mapping edit changes.
    writeback::install_triggers(&tx, schema, &resolved).await?;
    let resend_functions = if resolved.access == Access::ReadWrite {
        let r = writeback::install_resend_functions(&tx, schema).await?;
        if let Some(w) = r.warning(schema) {
            tracing::warn!("{w}");
        }
        Some(r)
    } else {
        None
    };
    tx.commit().await?;
    Ok(SchemaChanges {
        mapping: resolved,
        created_table,
        added_fields,
        created_indexes,
        type_mismatches,
        resend_functions,
    })
}

async fn existing_columns(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &Ident,
    table: &Ident,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2",
            &[&schema.as_str(), &table.as_str()],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// One row: whether the mapping's table lacks its unique sfid index while an initial load of its
/// object is unfinished. `$1`: the object name.
fn fresh_load_unfinished_sql(schema: &Ident, mapping: &crate::mapping::ResolvedMapping) -> String {
    let sfid_index = ddl::indexes(mapping)
        .into_iter()
        .next()
        .map(|i| i.name.as_str().to_owned())
        .unwrap_or_default();
    format!(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = '{}' AND indexname = '{}') \
         AND EXISTS (SELECT 1 FROM {} WHERE object_name = $1 AND NOT initial_load_done)",
        schema.as_str().replace('\'', "''"),
        sfid_index.replace('\'', "''"),
        state::table(schema, state::MAPPING_STATE_TABLE)
    )
}
