use super::*;
use crate::describe::{FieldDescribe, ObjectDescribe};
use crate::mapping::{resolve, MappingFile};

fn account() -> ResolvedMapping {
    let f = MappingFile::parse(
        r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only",
        "fields":{"Id":{},"Name":{},"AnnualRevenue":{},"IsDeleted":{}},
        "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false},"Name":{"unique":false},
                   "IsDeleted":{"unique":false}}}}]}"#,
    )
    .unwrap();
    let fd = |name: &str, t: &str, length| FieldDescribe {
        name: name.into(),
        sf_type: t.into(),
        length,
        ..Default::default()
    };
    let d = ObjectDescribe {
        name: "Account".into(),
        fields: vec![
            fd("Id", "id", 18),
            fd("IsDeleted", "boolean", 0),
            fd("SystemModstamp", "datetime", 0),
            fd("Name", "string", 255),
            fd("AnnualRevenue", "currency", 0),
        ],
    };
    resolve(&f.mappings[0], &d).unwrap()
}

fn schema() -> Ident {
    Ident::from_sf_name("salesforce").unwrap()
}

#[test]
fn table_ddl_matches_spec_section_5() {
    assert_eq!(
        create_table(&schema(), &account()),
        r#"CREATE TABLE IF NOT EXISTS "salesforce"."account" (
    "id" serial PRIMARY KEY,
    "sfid" varchar(18) COLLATE "C",
    "systemmodstamp" timestamp,
    "isdeleted" boolean,
    "_hc_lastop" varchar(32),
    "_hc_err" text,
    "annualrevenue" double precision,
    "name" varchar(255)
)"#
    );
}

#[test]
fn indexes_match_heroku_connect_names() {
    let m = account();
    let sql: Vec<String> = indexes(&m)
        .iter()
        .map(|i| create_index(&schema(), &m, i))
        .collect();
    assert_eq!(
        sql,
        vec![
            r#"CREATE UNIQUE INDEX IF NOT EXISTS "hcu_idx_account_sfid" ON "salesforce"."account" ("sfid")"#,
            r#"CREATE INDEX IF NOT EXISTS "hc_idx_account_systemmodstamp" ON "salesforce"."account" ("systemmodstamp")"#,
            r#"CREATE INDEX IF NOT EXISTS "hc_idx_account_isdeleted" ON "salesforce"."account" ("isdeleted")"#,
            r#"CREATE INDEX IF NOT EXISTS "hc_idx_account_name" ON "salesforce"."account" ("name")"#,
        ]
    );
}

#[test]
fn add_column_is_additive() {
    let m = account();
    assert_eq!(
        add_column(&schema(), &m, &m.fields[1]),
        r#"ALTER TABLE "salesforce"."account" ADD COLUMN IF NOT EXISTS "name" varchar(255)"#
    );
}

#[test]
fn trigger_log_has_heroku_connect_columns() {
    let sql = trigger_log_tables(&schema());
    assert!(sql[0].starts_with(r#"CREATE TABLE IF NOT EXISTS "salesforce"."_trigger_log" ("#));
    for col in [
        "id serial",
        "txid bigint",
        "created_at timestamptz DEFAULT now()",
        "updated_at timestamptz DEFAULT now()",
        "processed_at timestamptz",
        "processed_tx bigint",
        "state varchar(8)",
        "action varchar(7)",
        "table_name varchar(128)",
        "record_id integer",
        "sfid varchar(18)",
        "old text",
        "\"values\" text",
        "sf_result integer",
        "sf_message text",
    ] {
        assert!(sql[0].contains(col), "{col}");
    }
    assert!(sql[4].contains("\"_trigger_log_archive\""));
    assert!(!sql[4].contains("DEFAULT"), "the archive has no defaults");
    assert!(sql[3].ends_with("WHERE state IN ('NEW', 'PENDING')"));
    assert!(sql[7].ends_with("WHERE state = 'FAILED'"));
}
