//! SQL text for the tables a mapping makes (SPEC.md §5, reference/heroku-connect.md §2 and §4.3).
//!
//! Every statement is idempotent (`IF NOT EXISTS`) so [`crate::migrate`] can run them on every start.
//! Identifiers come only from [`Ident`], which validates and quotes them.

use crate::ident::{Ident, QualifiedName};
use crate::mapping::{ResolvedField, ResolvedMapping};

/// The system columns of every mapped table, in order (SPEC.md §5, HC §2.2). `sfid` is compared
/// bytewise: Salesforce ids are base-62 with `0-9 < A-Z < a-z`, which is ASCII order, and a
/// linguistic collation would interleave case and break keyset paging over Id
/// (reference/salesforce-api.md §5).
pub const SYSTEM_COLUMNS: [(&str, &str); 6] = [
    ("id", "serial PRIMARY KEY"),
    ("sfid", "varchar(18) COLLATE \"C\""),
    ("systemmodstamp", "timestamp"),
    ("isdeleted", "boolean"),
    ("_hc_lastop", "varchar(32)"),
    ("_hc_err", "text"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: Ident,
    pub column: Ident,
    pub unique: bool,
}

pub fn create_schema(schema: &Ident) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {schema}")
}

pub fn table_name(schema: &Ident, mapping: &ResolvedMapping) -> QualifiedName {
    QualifiedName::new(schema, &mapping.table)
}

pub fn create_table(schema: &Ident, mapping: &ResolvedMapping) -> String {
    let mut cols: Vec<String> = SYSTEM_COLUMNS
        .iter()
        .map(|(name, ty)| format!("    {} {ty}", Ident::internal(name)))
        .collect();
    cols.extend(
        mapping
            .fields
            .iter()
            .map(|f| format!("    {} {}", f.column, f.pg_type)),
    );
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{}\n)",
        table_name(schema, mapping),
        cols.join(",\n")
    )
}

/// For a field newly added to an existing mapping. Nullable with no default, so Postgres only
/// touches the catalog and the ALTER is instant however large the table (HC §1.1 warns that its
/// ALTERs on big tables stall sync).
pub fn add_column(schema: &Ident, mapping: &ResolvedMapping, field: &ResolvedField) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
        table_name(schema, mapping),
        field.column,
        field.pg_type
    )
}

/// System indexes first (`hcu_idx_<table>_sfid` unique, `hc_idx_<table>_systemmodstamp`), then one
/// `hc_idx_<table>_<column>` per entry of the mapping's `indexes` (HC §2.3; SPEC.md §5 names unique
/// mapping indexes `hc_idx_` too).
pub fn indexes(mapping: &ResolvedMapping) -> Vec<IndexSpec> {
    let t = mapping.table.as_str();
    let mut out = vec![
        IndexSpec {
            name: Ident::internal(&format!("hcu_idx_{t}_sfid")),
            column: Ident::internal("sfid"),
            unique: true,
        },
        IndexSpec {
            name: Ident::internal(&format!("hc_idx_{t}_systemmodstamp")),
            column: Ident::internal("systemmodstamp"),
            unique: false,
        },
    ];
    out.extend(mapping.indexes.iter().map(|i| IndexSpec {
        name: Ident::internal(&format!("hc_idx_{t}_{}", i.column.as_str())),
        column: i.column.clone(),
        unique: i.unique,
    }));
    out
}

pub fn create_index(schema: &Ident, mapping: &ResolvedMapping, index: &IndexSpec) -> String {
    format!(
        "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
        if index.unique { "UNIQUE " } else { "" },
        index.name,
        table_name(schema, mapping),
        index.column
    )
}

/// `_trigger_log` and `_trigger_log_archive` with Heroku Connect's columns and indexes
/// (reference/heroku-connect.md §4.3). Heroku Connect keeps them whatever the mappings' access (a
/// read-only table's changes are logged as READONLY, and a missing log is DB_UNAVAILABLE, §2.5), so
/// they are created for every schema. `state` is varchar(8): the longest states, READONLY and
/// REQUEUED, are exactly 8.
pub fn trigger_log_tables(schema: &Ident) -> Vec<String> {
    let log = QualifiedName::new(schema, &Ident::internal("_trigger_log"));
    let archive = QualifiedName::new(schema, &Ident::internal("_trigger_log_archive"));
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {log} (
    id serial PRIMARY KEY,
    txid bigint,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    processed_at timestamptz,
    processed_tx bigint,
    state varchar(8),
    action varchar(7),
    table_name varchar(128),
    record_id integer,
    sfid varchar(18),
    old text,
    \"values\" text,
    sf_result integer,
    sf_message text
)"
        ),
        format!("CREATE INDEX IF NOT EXISTS \"_trigger_log_idx_created_at\" ON {log} (created_at)"),
        format!("CREATE INDEX IF NOT EXISTS \"_trigger_log_idx_state_id\" ON {log} (state, id)"),
        format!(
            "CREATE INDEX IF NOT EXISTS \"_trigger_log_idx_state_table_name\" ON {log} (state, table_name) \
             WHERE state IN ('NEW', 'PENDING')"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {archive} (
    id integer PRIMARY KEY,
    txid bigint,
    created_at timestamptz,
    updated_at timestamptz,
    processed_at timestamptz,
    processed_tx bigint,
    state varchar(8),
    action varchar(7),
    table_name varchar(128),
    record_id integer,
    sfid varchar(18),
    old text,
    \"values\" text,
    sf_result integer,
    sf_message text
)"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS \"_trigger_log_archive_idx_created_at\" ON {archive} (created_at)"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS \"_trigger_log_archive_idx_record_id\" ON {archive} (record_id)"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS \"_trigger_log_archive_idx_state_table_name\" ON {archive} \
             (state, table_name) WHERE state = 'FAILED'"
        ),
    ]
}

#[cfg(test)]
mod tests;
