use super::*;
use crate::describe::{FieldDescribe, ObjectDescribe};

/// Shaped like forcedotcom/git2gus's real export (reference/heroku-connect.md §1.2, S29), with the
/// `revision` key API responses carry.
const HC_EXPORT: &str = r#"{
  "mappings": [{
    "object_name": "agf__ADM_Work__c",
    "config": {
      "access": "read_write",
      "upsert_field": "agf__External_ID__c",
      "sf_notify_enabled": false,
      "sf_polling_seconds": 600,
      "sf_max_daily_api_calls": 30000,
      "fields": {"Id": {}, "IsDeleted": {}, "SystemModstamp": {}, "CreatedDate": {}, "Name": {},
                 "agf__External_ID__c": {}, "agf__Subject__c": {}, "RecordTypeId": {}},
      "indexes": {"Id": {"unique": true}, "SystemModstamp": {"unique": false},
                  "agf__External_ID__c": {"unique": true}, "Name": {"unique": false}},
      "applied_at": "2023-02-14T01:40:34.070538Z",
      "revision": 3
    }
  }, {
    "object_name": "Account",
    "config": {
      "access": "read_only",
      "sf_notify_enabled": true,
      "sf_polling_seconds": 120,
      "sf_max_daily_api_calls": 30000,
      "fields": {"Id": {}, "Name": {}, "SystemModstamp": {}, "IsDeleted": {}},
      "indexes": {"Id": {"unique": true}, "SystemModstamp": {"unique": false}}
    }
  }],
  "connection": {
    "app_name": "CHANGE-ME", "organization_id": "00D-CHANGE-ME",
    "exported_at": "2023-02-15T17:13:42.743308+00:00",
    "features": {"disable_bulk_writes": false, "poll_db_no_merge": true,
                 "poll_external_ids": false, "rest_count_only": false,
                 "ucs_basic_collation_index": false},
    "api_version": "57.0", "name": "CHANGE-ME:DATABASE_URL:gus", "logplex_log_enabled": false
  },
  "version": 1
}"#;

fn field(name: &str, sf_type: &str, length: u32) -> FieldDescribe {
    FieldDescribe {
        name: name.into(),
        sf_type: sf_type.into(),
        length,
        ..Default::default()
    }
}

fn work_describe() -> ObjectDescribe {
    let mut ext = field("agf__External_ID__c", "string", 255);
    ext.external_id = true;
    ext.unique = true;
    ObjectDescribe {
        name: "agf__ADM_Work__c".into(),
        fields: vec![
            field("Id", "id", 18),
            field("IsDeleted", "boolean", 0),
            field("SystemModstamp", "datetime", 0),
            field("CreatedDate", "datetime", 0),
            field("Name", "string", 80),
            ext,
            field("agf__Subject__c", "textarea", 131072),
            field("RecordTypeId", "reference", 18),
        ],
    }
}

fn parse_err(json: &str) -> String {
    MappingFile::parse(json).unwrap_err().to_string()
}

#[test]
fn real_heroku_connect_export_loads() {
    let f = MappingFile::parse(HC_EXPORT).unwrap();
    assert_eq!(f.version, 1);
    assert_eq!(f.mappings.len(), 2);
    let w = &f.mappings[0];
    assert_eq!(w.object_name, "agf__ADM_Work__c");
    assert_eq!(w.config.access, Access::ReadWrite);
    assert_eq!(
        w.config.upsert_field.as_deref(),
        Some("agf__External_ID__c")
    );
    assert_eq!(w.config.sf_polling_seconds, Some(600));
    assert_eq!(w.config.sf_max_daily_api_calls, Some(30000));
    assert_eq!(w.config.fields.len(), 8);
    assert!(w.config.index("agf__external_id__c").unwrap().unique);
    assert!(w.config.extra.contains_key("applied_at"));
    let a = f.mapping("account").unwrap();
    assert!(a.config.sf_notify_enabled);
    assert_eq!(a.config.upsert_field, None);
    assert_eq!(f.connection.as_ref().unwrap()["api_version"], "57.0");
}

#[test]
fn export_round_trips() {
    let f = MappingFile::parse(HC_EXPORT).unwrap();
    let again = MappingFile::parse(&f.to_json()).unwrap();
    assert_eq!(f, again);
    let original: Value = serde_json::from_str(HC_EXPORT).unwrap();
    let written: Value = serde_json::from_str(&f.to_json()).unwrap();
    assert_eq!(original, written, "nothing added, nothing lost");
}

#[test]
fn read_write_needs_upsert_field() {
    let e = parse_err(
        r#"{"mappings":[{"object_name":"Invoice__c","config":{"access":"read_write","fields":{"Id":{}}}}],"version":1}"#,
    );
    assert_eq!(
        e,
        "mapping Invoice__c: config.upsert_field: read_write mappings need an upsert field: a unique External ID field"
    );
}

#[test]
fn errors_name_the_mapping_and_key() {
    let cases = [
        (r#"{"mappings":[{"object_name":"Account","config":{"access":"readonly","fields":{}}}]}"#,
         r#"mapping Account: config.access: expected "read_only" or "read_write", got "readonly""#),
        (r#"{"mappings":[{"object_name":"Account","config":{"fields":{}}}]}"#,
         "mapping Account: config.access: missing key"),
        (r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only"}}]}"#,
         "mapping Account: config.fields: missing key"),
        (r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only","fields":{},"sf_polling_seconds":"600"}}]}"#,
         r#"mapping Account: config.sf_polling_seconds: expected a non-negative integer, got "600""#),
        (r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only","fields":{"Na me":{}}}}]}"#,
         "mapping Account: config.fields: invalid name `Na me`: expected ASCII letters, digits and underscores, starting with a letter"),
        (r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only","fields":{},"indexes":{"Name":{"unique":"yes"}}}}]}"#,
         r#"mapping Account: config.indexes.Name.unique: expected true or false, got "yes""#),
        (r#"{"mappings":[{"config":{}}]}"#, "mapping #1: object_name: missing key"),
        (r#"{"mappings":[{"object_name":"Bad;Name","config":{}}]}"#,
         "mapping Bad;Name: object_name: invalid name `Bad;Name`: expected ASCII letters, digits and underscores, starting with a letter"),
        (r#"{"version":1}"#, "mappings: missing key"),
        (r#"{"mappings":[],"version":2}"#, "version: expected 1, got 2"),
        (r#"{"mappings":[{"object_name":"A","config":{"access":"read_only","fields":{}}},{"object_name":"a","config":{"access":"read_only","fields":{}}}]}"#,
         "mapping a: object_name: mapped more than once"),
    ];
    for (json, want) in cases {
        assert_eq!(parse_err(json), want, "{json}");
    }
    assert!(parse_err("{").starts_with("invalid JSON at line 1 column 1"));
}

#[test]
fn load_names_the_file() {
    let e = MappingFile::load(std::path::Path::new("/nonexistent/mappings.json")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/mappings.json: cannot read"),
        "{e}"
    );
}

#[test]
fn resolves_against_describe() {
    let f = MappingFile::parse(HC_EXPORT).unwrap();
    let r = resolve(&f.mappings[0], &work_describe()).unwrap();
    assert_eq!(r.table.as_str(), "agf__adm_work__c");
    assert!(r.has_is_deleted);
    let cols: Vec<_> = r
        .fields
        .iter()
        .map(|f| (f.column.as_str(), f.pg_type.to_string()))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("createddate", "timestamp".to_owned()),
            ("name", "varchar(80)".to_owned()),
            ("recordtypeid", "varchar(18)".to_owned()),
            ("agf__external_id__c", "varchar(255)".to_owned()),
            ("agf__subject__c", "text".to_owned()),
        ]
    );
    assert_eq!(
        r.soql_fields(),
        vec![
            "Id",
            "SystemModstamp",
            "IsDeleted",
            "CreatedDate",
            "Name",
            "RecordTypeId",
            "agf__External_ID__c",
            "agf__Subject__c"
        ]
    );
    let idx: Vec<_> = r
        .indexes
        .iter()
        .map(|i| (i.column.as_str(), i.unique))
        .collect();
    assert_eq!(idx, vec![("name", false), ("agf__external_id__c", true)]);
    assert_eq!(r.column_for("Id").unwrap().as_str(), "sfid");
    assert_eq!(r.column_for("name").unwrap().as_str(), "name");
}

#[test]
fn system_fields_are_mapped_even_when_not_listed() {
    let f = MappingFile::parse(
        r#"{"mappings":[{"object_name":"agf__ADM_Work__c","config":{"access":"read_only","fields":{"Name":{}}}}]}"#,
    )
    .unwrap();
    let r = resolve(&f.mappings[0], &work_describe()).unwrap();
    assert_eq!(
        &r.soql_fields()[..3],
        &["Id", "SystemModstamp", "IsDeleted"]
    );
}

#[test]
fn objects_without_is_deleted_do_not_select_it() {
    let d = ObjectDescribe {
        name: "User".into(),
        fields: vec![
            field("Id", "id", 18),
            field("SystemModstamp", "datetime", 0),
        ],
    };
    let f = MappingFile::parse(
        r#"{"mappings":[{"object_name":"User","config":{"access":"read_only","fields":{"Id":{}}}}]}"#,
    )
    .unwrap();
    let r = resolve(&f.mappings[0], &d).unwrap();
    assert!(!r.has_is_deleted);
    assert_eq!(r.soql_fields(), vec!["Id", "SystemModstamp"]);
}

#[test]
fn describe_errors_are_all_reported() {
    let f = MappingFile::parse(
        r#"{"mappings":[{"object_name":"agf__ADM_Work__c","config":{"access":"read_write",
        "upsert_field":"Name","fields":{"Name":{},"Nope__c":{},"BillingAddress":{}},
        "indexes":{"CreatedDate":{"unique":false}}}}]}"#,
    )
    .unwrap();
    let mut d = work_describe();
    d.fields.push(field("BillingAddress", "address", 0));
    let errs: Vec<String> = resolve(&f.mappings[0], &d)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        vec![
            "mapping agf__ADM_Work__c: config.fields.BillingAddress: Salesforce type `address` cannot be mapped to a Postgres column",
            "mapping agf__ADM_Work__c: config.fields.Nope__c: no such field on agf__ADM_Work__c",
            "mapping agf__ADM_Work__c: config.indexes.CreatedDate: indexed field is not in config.fields",
            "mapping agf__ADM_Work__c: config.upsert_field: Name must be a unique External ID field in Salesforce",
        ]
    );
}

#[test]
fn unknown_object() {
    let f = MappingFile::parse(HC_EXPORT).unwrap();
    let e = describe_for("Nope__c", &[work_describe()]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "mapping Nope__c: object_name: no such object in the Salesforce org"
    );
    let e = resolve(&f.mappings[1], &work_describe()).unwrap_err();
    assert!(e[0]
        .to_string()
        .starts_with("mapping Account: object_name: no such object"));
    assert!(describe_for("AGF__adm_work__c", &[work_describe()]).is_ok());
}

#[test]
fn merge_replaces_named_mappings_only() {
    let mut f = MappingFile::parse(HC_EXPORT).unwrap();
    let other = MappingFile::parse(
        r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only","fields":{"Id":{}}}},
        {"object_name":"Contact","config":{"access":"read_only","fields":{"Id":{}}}}]}"#,
    )
    .unwrap();
    f.merge(other);
    assert_eq!(f.mappings.len(), 3);
    assert_eq!(f.mapping("Account").unwrap().config.fields.len(), 1);
    assert_eq!(
        f.mapping("agf__ADM_Work__c").unwrap().config.fields.len(),
        8
    );
}

#[test]
fn misspelled_keys_inside_a_mapping_are_named_with_the_closest_known_key() {
    let file = MappingFile::parse(
        r#"{"mappings":[{"object_name":"Account","sf_notify_enabled":true,"config":{
            "access":"read_only","sf_poling_seconds":60,"SF_NOTIFY_ENABLD":true,"colour":"red",
            "fields":{"Id":{}},"applied_at":"2023-02-14T01:40:34Z","revision":3}}],"version":1}"#,
    )
    .unwrap();
    let found: Vec<String> = file.unknown_keys().iter().map(|u| u.to_string()).collect();
    assert_eq!(
        found,
        vec![
            "mapping Account: unknown key `config.SF_NOTIFY_ENABLD`, ignored (did you mean `config.sf_notify_enabled`?)",
            "mapping Account: unknown key `config.colour`, ignored",
            "mapping Account: unknown key `config.sf_poling_seconds`, ignored (did you mean `config.sf_polling_seconds`?)",
            "mapping Account: unknown key `sf_notify_enabled`, ignored (did you mean `config.sf_notify_enabled`?)",
        ]
    );
}

#[test]
fn heroku_connect_exports_have_no_unknown_keys() {
    let file = MappingFile::parse(HC_EXPORT).unwrap();
    assert_eq!(file.unknown_keys(), vec![]);
}

#[test]
fn a_misspelled_fields_key_is_named_in_the_error() {
    let err = MappingFile::parse(
        r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only","feilds":{"Id":{}}}}]}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mapping Account: config.fields: missing key (found `feilds`: a misspelling of `fields`?)"
    );
}
