//! SQL of a formula refresh: Id plus the mapped formula fields, binary-COPYed into a staging
//! table of their own, then one UPDATE of the rows whose formula values differ.
//!
//! The row's `systemmodstamp` is left alone: Salesforce did not move it, and the monotonic merge
//! (`crate::dml`) compares against it. The staging table is not the data path's, whose columns
//! differ. As on the data path, callers run [`crate::writeback::SUPPRESS_CAPTURE`] and
//! [`crate::state::fence`] first in the transaction.

use crate::ident::{Ident, QualifiedName};
use crate::mapping::ResolvedField;
use crate::types::PgType;

/// The staging table's columns, in COPY order: sfid, then the formula fields.
pub fn staging_columns(fields: &[ResolvedField]) -> Vec<(Ident, PgType)> {
    let mut cols = vec![(Ident::internal("sfid"), PgType::Varchar(18))];
    cols.extend(fields.iter().map(|f| (f.column.clone(), f.pg_type)));
    cols
}

pub fn staging_table(schema: &Ident, table: &Ident) -> Ident {
    Ident::internal(&format!(
        "_driftless_fstage_{}_{}",
        schema.as_str(),
        table.as_str()
    ))
}

pub fn create_staging_table(schema: &Ident, table: &Ident, fields: &[ResolvedField]) -> String {
    let cols: Vec<String> = staging_columns(fields)
        .iter()
        .map(|(c, t)| {
            let collate = if c.as_str() == "sfid" {
                " COLLATE \"C\""
            } else {
                ""
            };
            format!("{c} {t}{collate}")
        })
        .collect();
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS",
        staging_table(schema, table),
        cols.join(", ")
    )
}

pub fn copy_into_staging(schema: &Ident, table: &Ident, fields: &[ResolvedField]) -> String {
    let cols: Vec<String> = staging_columns(fields)
        .iter()
        .map(|(c, _)| c.to_string())
        .collect();
    format!(
        "COPY {} ({}) FROM STDIN BINARY",
        staging_table(schema, table),
        cols.join(", ")
    )
}

/// Sets the formula columns of the rows whose values differ; returns one row: the count
/// (bigint) of rows changed. Rows not in the table (deleted since, or not loaded yet) are
/// skipped: the data path brings them.
pub fn update_from_staging(schema: &Ident, table: &Ident, fields: &[ResolvedField]) -> String {
    let target = QualifiedName::new(schema, table);
    let stage = staging_table(schema, table);
    let set: Vec<String> = fields
        .iter()
        .map(|f| format!("{c} = s.{c}", c = f.column))
        .collect();
    let ours: Vec<String> = fields.iter().map(|f| format!("t.{}", f.column)).collect();
    let theirs: Vec<String> = fields.iter().map(|f| format!("s.{}", f.column)).collect();
    format!(
        "WITH changed AS (UPDATE {target} t SET {} FROM (SELECT DISTINCT ON (sfid) * FROM {stage}) s \
         WHERE t.sfid = s.sfid AND ({}) IS DISTINCT FROM ({}) RETURNING 1) \
         SELECT count(*)::bigint FROM changed",
        set.join(", "),
        ours.join(", "),
        theirs.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_update_touches_only_formula_columns_and_only_rows_that_differ() {
        let fields = vec![ResolvedField {
            sf_name: "Account_Summary__c".into(),
            sf_type: "string".into(),
            column: Ident::internal("account_summary__c"),
            pg_type: PgType::Varchar(1300),
        }];
        let schema = Ident::internal("salesforce");
        let table = Ident::internal("contact");
        let sql = update_from_staging(&schema, &table, &fields);
        assert!(
            sql.contains(r#"SET "account_summary__c" = s."account_summary__c" FROM"#),
            "{sql}"
        );
        assert!(!sql.contains("systemmodstamp"), "{sql}");
        assert!(
            sql.contains(r#"(t."account_summary__c") IS DISTINCT FROM (s."account_summary__c")"#),
            "{sql}"
        );
        assert_eq!(
            copy_into_staging(&schema, &table, &fields),
            r#"COPY "_driftless_fstage_salesforce_contact" ("sfid", "account_summary__c") FROM STDIN BINARY"#
        );
    }
}
