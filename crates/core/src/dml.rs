//! SQL for applying Salesforce records to a mapped table: idempotent and monotonic (DESIGN.md
//! invariant 3).
//!
//! The intended path is the fast one DESIGN.md measured: binary COPY the rows of a batch into a
//! per-session staging table, then one [`merge_from_staging`] statement, all inside the
//! transaction that also fences and commits progress ([`crate::state`]):
//!
//! ```text
//! BEGIN
//!   state::fence(...)
//!   <create_staging_table>                      -- once per session; rows vanish at COMMIT
//!   COPY <staging> (<staging_columns>) FROM STDIN BINARY
//!   <merge_from_staging>  ($1 = connection, $2 = object)  -> (deleted, changed)
//!   state::commit_primary_window(...)
//! COMMIT
//! ```
//!
//! The merge:
//! - keeps one row per sfid, the newest (a deleted version wins a tie: it is the later event);
//! - rows with `isdeleted` are deleted from the table (SPEC.md §5) unless the table holds a newer
//!   version, and leave a tombstone;
//! - other rows are upserted on `sfid`, but never over a newer SystemModstamp, never over a
//!   tombstone at least as new (a stale read cannot resurrect a deleted record; an undelete has a
//!   newer stamp and goes through), and an identical row is not rewritten;
//! - returns how many rows it deleted and how many it inserted or changed. For a secondary poll,
//!   those are the drift it repaired.
//!
//! `_hc_lastop` becomes `SYNCED` and `_hc_err` is cleared, as Heroku Connect's status trigger does
//! for its own writes (reference/heroku-connect.md §4.1).
//!
//! Callers must run [`crate::writeback::SUPPRESS_CAPTURE`] first in that transaction: otherwise the
//! capture triggers take the merge's writes for the application's and send them back to Salesforce.
//!
//! For read_write mappings the merge also keeps write-back's promises ([`crate::writeback::guard`]):
//! columns with a change still on its way to Salesforce keep their Postgres value (and the row its
//! `_hc_lastop`), a row deleted in Postgres is not revived while its delete is pending, and a record
//! with no sfid match is matched to a row without sfid by the upsert field (§4.7), so an insert's
//! echo links to its row instead of duplicating it.

use crate::ident::{Ident, QualifiedName};
use crate::mapping::{Access, ResolvedMapping};
use crate::state::{table, TOMBSTONES_TABLE};
use crate::types::PgType;
use crate::writeback::guard;

/// The staging table's columns, in COPY order: sfid, systemmodstamp, isdeleted, then the mapped
/// fields in [`ResolvedMapping::fields`] order. Pair with [`PgType::postgres_type`] for
/// `BinaryCopyInWriter`.
pub fn staging_columns(mapping: &ResolvedMapping) -> Vec<(Ident, PgType)> {
    let mut cols = vec![
        (Ident::internal("sfid"), PgType::Varchar(18)),
        (Ident::internal("systemmodstamp"), PgType::Timestamp),
        (Ident::internal("isdeleted"), PgType::Boolean),
    ];
    cols.extend(mapping.fields.iter().map(|f| (f.column.clone(), f.pg_type)));
    cols
}

/// Unqualified: temporary tables live in the session's own schema. Named after schema and table so
/// two connections syncing the same object into one database do not share it.
pub fn staging_table(schema: &Ident, mapping: &ResolvedMapping) -> Ident {
    Ident::internal(&format!(
        "_driftless_stage_{}_{}",
        schema.as_str(),
        mapping.table.as_str()
    ))
}

/// `CREATE TEMP TABLE IF NOT EXISTS ... ON COMMIT DELETE ROWS`: made once per pooled session,
/// emptied by every commit, without indexes so COPY into it is as fast as it gets.
pub fn create_staging_table(schema: &Ident, mapping: &ResolvedMapping) -> String {
    let cols: Vec<String> = staging_columns(mapping)
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
        staging_table(schema, mapping),
        cols.join(", ")
    )
}

/// `COPY <staging> (...) FROM STDIN BINARY`.
pub fn copy_into_staging(schema: &Ident, mapping: &ResolvedMapping) -> String {
    format!(
        "COPY {} ({}) FROM STDIN BINARY",
        staging_table(schema, mapping),
        column_list(&staging_columns(mapping), "")
    )
}

fn column_list(cols: &[(Ident, PgType)], prefix: &str) -> String {
    cols.iter()
        .map(|(c, _)| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The merge described in the module docs. Parameters: `$1` connection name, `$2` object name
/// (text). Returns one row: `(deleted bigint, changed bigint)`.
pub fn merge_from_staging(schema: &Ident, mapping: &ResolvedMapping) -> String {
    let target = QualifiedName::new(schema, &mapping.table);
    let stage = staging_table(schema, mapping);
    let tombstones = table(schema, TOMBSTONES_TABLE);
    let cols = staging_columns(mapping);
    let fields = &cols[3..];
    let insert_cols = format!(
        "sfid, systemmodstamp, isdeleted{}",
        fields
            .iter()
            .map(|(c, _)| format!(", {c}"))
            .collect::<String>()
    );
    let select_cols = format!(
        "s.sfid, s.systemmodstamp, false{}",
        fields
            .iter()
            .map(|(c, _)| format!(", s.{c}"))
            .collect::<String>()
    );
    // Same stamp but different values: a formula or a missed write; worth rewriting and counting.
    let differs = if fields.is_empty() {
        "false".to_owned()
    } else {
        format!(
            "({}) IS DISTINCT FROM ({})",
            column_list(fields, "t."),
            column_list(fields, "EXCLUDED.")
        )
    };
    let wb = write_back_sql(schema, mapping, fields);
    let (link_ctes, ups_filter, set_tail, link_count) =
        (&wb.link_ctes, &wb.ups_filter, &wb.set_tail, &wb.link_count);
    format!(
        "WITH src AS (
    SELECT DISTINCT ON (sfid) * FROM {stage}
    WHERE sfid IS NOT NULL AND systemmodstamp IS NOT NULL
    ORDER BY sfid, systemmodstamp DESC, isdeleted DESC
){link_ctes}, tomb AS (
    INSERT INTO {tombstones} AS tb (connection, object_name, sfid, systemmodstamp)
    SELECT $1::text, $2::text, sfid, systemmodstamp FROM src WHERE isdeleted
    ON CONFLICT (connection, object_name, sfid) DO UPDATE
    SET systemmodstamp = GREATEST(tb.systemmodstamp, EXCLUDED.systemmodstamp)
), del AS (
    DELETE FROM {target} t USING src s
    WHERE s.isdeleted AND t.sfid = s.sfid
    AND (t.systemmodstamp IS NULL OR t.systemmodstamp <= s.systemmodstamp)
    RETURNING 1
), ups AS (
    INSERT INTO {target} AS t ({insert_cols}, _hc_lastop, _hc_err)
    SELECT {select_cols}, 'SYNCED', NULL FROM src s
    WHERE NOT s.isdeleted AND NOT EXISTS (
        SELECT 1 FROM {tombstones} tb
        WHERE tb.connection = $1::text AND tb.object_name = $2::text AND tb.sfid = s.sfid
        AND tb.systemmodstamp >= s.systemmodstamp){ups_filter}
    ON CONFLICT (sfid) DO UPDATE
    SET systemmodstamp = EXCLUDED.systemmodstamp, isdeleted = false{set_tail}
    WHERE t.systemmodstamp IS NULL OR t.systemmodstamp < EXCLUDED.systemmodstamp
       OR (t.systemmodstamp = EXCLUDED.systemmodstamp AND {differs})
    RETURNING 1
)
SELECT (SELECT count(*) FROM del), (SELECT count(*) FROM ups){link_count}"
    )
}

/// The pieces of the merge that differ for read_write mappings (module docs).
struct WriteBackSql {
    /// Extra CTEs after `src`: `lnk` (incoming record → row without sfid, by upsert field) and
    /// `link` (writes the sfid there).
    link_ctes: String,
    /// Extra conditions on the rows `ups` inserts or updates.
    ups_filter: String,
    /// The end of `ups`'s SET list: mapped columns and `_hc_lastop`/`_hc_err`.
    set_tail: String,
    /// Added to the changed count.
    link_count: String,
}

fn write_back_sql(
    schema: &Ident,
    mapping: &ResolvedMapping,
    fields: &[(Ident, PgType)],
) -> WriteBackSql {
    if mapping.access != Access::ReadWrite {
        let set_cols: String = fields
            .iter()
            .map(|(c, _)| format!(", {c} = EXCLUDED.{c}"))
            .collect();
        return WriteBackSql {
            link_ctes: String::new(),
            ups_filter: String::new(),
            set_tail: format!("{set_cols},\n        _hc_lastop = 'SYNCED', _hc_err = NULL"),
            link_count: String::new(),
        };
    }
    let target = QualifiedName::new(schema, &mapping.table);
    let upsert =
        crate::writeback::upsert_column(mapping).filter(|u| fields.iter().any(|(c, _)| c == u));
    let (link_ctes, not_linked, link_count) = match upsert {
        // One row per incoming sfid, the oldest candidate: two unsynced rows sharing an upsert
        // value cannot both take the same sfid.
        Some(u) => (
            format!(
                ", lnk AS (
    SELECT DISTINCT ON (s.sfid) x.id, s.sfid FROM src s
    JOIN {target} x ON x.sfid IS NULL AND x.{u} = s.{u}
    WHERE NOT s.isdeleted AND NOT EXISTS (SELECT 1 FROM {target} y WHERE y.sfid = s.sfid)
    ORDER BY s.sfid, x.id
), link AS (
    UPDATE {target} t SET sfid = k.sfid FROM lnk k WHERE t.id = k.id
    RETURNING 1
)"
            ),
            "\n    AND NOT EXISTS (SELECT 1 FROM lnk k WHERE k.sfid = s.sfid)".to_owned(),
            " + (SELECT count(*) FROM link)".to_owned(),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    let ups_filter = format!(
        "{not_linked}\n    AND NOT {}",
        guard::pending_delete_sql(schema, mapping, "s.sfid", "s.systemmodstamp")
    );
    // One multi-column sub-SELECT, so the trigger log is read once per row, not once per column;
    // it sees `t` as locked by ON CONFLICT, so a guarded column keeps the latest Postgres value.
    let mut targets: Vec<String> = fields.iter().map(|(c, _)| c.to_string()).collect();
    let mut exprs: Vec<String> = fields
        .iter()
        .map(|(c, _)| {
            format!(
                "CASE WHEN {} THEN t.{c} ELSE EXCLUDED.{c} END",
                guard::column_guarded_sql("g", c)
            )
        })
        .collect();
    targets.extend(["_hc_lastop".to_owned(), "_hc_err".to_owned()]);
    exprs.extend([
        "CASE WHEN g.busy THEN t._hc_lastop ELSE 'SYNCED' END".to_owned(),
        "CASE WHEN g.busy THEN t._hc_err END".to_owned(),
    ]);
    let set_tail = format!(
        ",\n        ({}) = (SELECT {} FROM ({}) g)",
        targets.join(", "),
        exprs.join(", "),
        guard::pending_changes_sql(schema, mapping, "t.id", "EXCLUDED.systemmodstamp")
    );
    WriteBackSql {
        link_ctes,
        ups_filter,
        set_tail,
        link_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::describe::{FieldDescribe, ObjectDescribe};
    use crate::mapping::{resolve, MappingFile};

    fn mapping() -> ResolvedMapping {
        let f = MappingFile::parse(
            r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only",
            "fields":{"Id":{},"Name":{}}}}]}"#,
        )
        .unwrap();
        let fd = |name: &str, t: &str| FieldDescribe {
            name: name.into(),
            sf_type: t.into(),
            length: 255,
            ..Default::default()
        };
        let d = ObjectDescribe {
            name: "Account".into(),
            fields: vec![
                fd("Id", "id"),
                fd("SystemModstamp", "datetime"),
                fd("Name", "string"),
            ],
        };
        resolve(&f.mappings[0], &d).unwrap()
    }

    #[test]
    fn staging_sql() {
        let s = Ident::from_sf_name("salesforce").unwrap();
        let m = mapping();
        assert_eq!(
            create_staging_table(&s, &m),
            "CREATE TEMP TABLE IF NOT EXISTS \"_driftless_stage_salesforce_account\" (\"sfid\" \
             varchar(18) COLLATE \"C\", \"systemmodstamp\" timestamp, \"isdeleted\" boolean, \
             \"name\" varchar(255)) ON COMMIT DELETE ROWS"
        );
        assert_eq!(
            copy_into_staging(&s, &m),
            "COPY \"_driftless_stage_salesforce_account\" (\"sfid\", \"systemmodstamp\", \
             \"isdeleted\", \"name\") FROM STDIN BINARY"
        );
        let merge = merge_from_staging(&s, &m);
        assert!(merge.contains("ON CONFLICT (sfid) DO UPDATE"));
        assert!(merge.contains("(t.\"name\") IS DISTINCT FROM (EXCLUDED.\"name\")"));
        assert!(
            !merge.contains("_trigger_log"),
            "read_only merges do not look at write-back"
        );
    }

    #[test]
    fn read_write_merge_keeps_write_back_promises() {
        let s = Ident::from_sf_name("salesforce").unwrap();
        let mut m = mapping();
        m.access = Access::ReadWrite;
        m.upsert_field = Some("Name".into());
        let merge = merge_from_staging(&s, &m);
        assert!(merge.contains("lnk AS ("), "links echoes by upsert field");
        assert!(merge.contains(
            "JOIN \"salesforce\".\"account\" x ON x.sfid IS NULL AND x.\"name\" = s.\"name\""
        ));
        assert!(merge.contains("l.action = 'DELETE' AND l.sfid = s.sfid"));
        assert!(merge.contains(
            "(\"name\", _hc_lastop, _hc_err) = (SELECT CASE WHEN strpos(g.cols, '\"name\"=>') > 0"
        ));
    }
}
