//! Heroku Connect's manual re-send functions, called the way Connect's docs and
//! django-heroku-connect call them: `hc_capture_*_from_row(hstore(t.*), 'table', ARRAY[...])`.

mod common;

use common::{account_describe, connect, fd, TestDb};
use driftless_core::describe::ObjectDescribe;
use driftless_core::ident::Ident;
use driftless_core::mapping::{MappingFile, ResolvedMapping};
use driftless_core::migrate::{ensure_schema, SchemaChanges};
use driftless_core::writeback::{self, Action, ResendFunctions, Sent};
use tokio_postgres::Client;

const S1: &str = "001000000000001AAA";

fn schema() -> Ident {
    Ident::from_sf_name("salesforce").unwrap()
}

fn describe() -> ObjectDescribe {
    let mut d = account_describe();
    let mut ext = fd("External_Id__c", "string", 255);
    ext.external_id = true;
    ext.unique = true;
    d.fields.push(ext);
    d
}

fn mapping_file(access: &str) -> MappingFile {
    MappingFile::parse(&format!(
        r#"{{"mappings":[{{"object_name":"Account","config":{{"access":"{access}",
        "upsert_field":"External_Id__c",
        "fields":{{"Id":{{}},"Name":{{}},"Industry":{{}},"External_Id__c":{{}},"SystemModstamp":{{}}}},
        "indexes":{{}}}}}}],"version":1}}"#
    ))
    .unwrap()
}

async fn setup(client: &mut Client, access: &str) -> SchemaChanges {
    ensure_schema(
        client,
        &schema(),
        &mapping_file(access).mappings[0],
        &describe(),
    )
    .await
    .unwrap()
}

/// (id, state, action, record_id, sfid, values) of every live entry.
async fn log(client: &Client) -> Vec<(i32, String, String, i32, Option<String>, Option<String>)> {
    client
        .query(
            "SELECT id, state::text, action::text, record_id, sfid::text, \"values\" \
             FROM salesforce._trigger_log ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

/// A row written with the triggers off, as a bulk load or a restore would leave it.
async fn insert_replica(client: &Client, sfid: Option<&str>, ext: &str, name: &str) -> i32 {
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    let id = client
        .query_one(
            "INSERT INTO salesforce.account (sfid, systemmodstamp, external_id__c, name, industry) \
             VALUES ($1, '2024-06-25 10:00:00', $2, $3, 'Tech') RETURNING id",
            &[&sfid, &ext, &name],
        )
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute("SET session_replication_role = origin")
        .await
        .unwrap();
    id
}

fn keys(values: &str) -> Vec<String> {
    writeback::parse_hstore(values)
        .unwrap()
        .into_keys()
        .collect()
}

async fn claim(client: &Client, m: &ResolvedMapping) -> Vec<writeback::ClaimedEntry> {
    writeback::claim_pending(client, &schema(), m, 100)
        .await
        .unwrap()
}

#[tokio::test]
async fn capture_insert_and_update_from_row_as_connect_documents() {
    let db = TestDb::create().await;
    let mut client = connect(&db.url).await;
    let changes = setup(&mut client, "read_write").await;
    assert!(
        matches!(
            changes.resend_functions,
            Some(ResendFunctions::Installed { .. })
        ),
        "{:?}",
        changes.resend_functions
    );
    let m = changes.mapping;
    // The caller's DateStyle must not leak into what is sent.
    client
        .batch_execute("SET DateStyle = 'SQL, DMY'")
        .await
        .unwrap();

    // Inserted with triggers off: nothing logged until the application re-captures it.
    let quiet = insert_replica(&client, None, "X1", "Quiet").await;
    assert!(log(&client).await.is_empty());
    let log_id: i32 = client
        .query_one(
            "SELECT salesforce.hc_capture_insert_from_row(hstore(t.*), 'account', ARRAY['industry']) \
             FROM salesforce.account t WHERE id = $1",
            &[&quiet],
        )
        .await
        .unwrap()
        .get(0);
    let l = log(&client).await;
    assert_eq!(l.len(), 1, "the function's own row update is not captured");
    let (id, state, action, record_id, sfid, values) = &l[0];
    assert_eq!(
        (*id, state.as_str(), action.as_str(), *record_id, sfid),
        (log_id, "NEW", "INSERT", quiet, &None)
    );
    let values = values.as_deref().unwrap();
    let k = keys(values);
    assert!(k.contains(&"name".to_owned()) && k.contains(&"external_id__c".to_owned()));
    assert!(!k.contains(&"industry".to_owned()), "excluded column sent");
    assert!(!k.contains(&"_hc_lastop".to_owned()) && !k.contains(&"_hc_err".to_owned()));
    assert!(
        k.contains(&"id".to_owned()),
        "id cannot be excluded (Connect)"
    );
    assert!(
        values.contains(r#""systemmodstamp"=>"2024-06-25T10:00:00""#),
        "rendered as the triggers render it: {values}"
    );
    let lastop: Option<String> = client
        .query_one(
            "SELECT _hc_lastop::text FROM salesforce.account WHERE id = $1",
            &[&quiet],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(lastop.as_deref(), Some("PENDING"));

    let e = claim(&client, &m).await;
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].id, e[0].action), (log_id, Action::Insert));
    assert_eq!(e[0].upsert_value.as_deref(), Some("X1"));
    assert_eq!(
        e[0].sf_values(&m),
        vec![("External_Id__c", Some("X1")), ("Name", Some("Quiet"))]
    );
    writeback::mark_success(
        &mut client,
        &schema(),
        &m,
        &[Sent {
            log_id,
            sfid: Some(S1.into()),
        }],
    )
    .await
    .unwrap();
    assert!(claim(&client, &m).await.is_empty(), "sent once");

    // A synced row changed with triggers off: re-capture only `name`.
    client
        .batch_execute(
            "SET session_replication_role = replica; \
             UPDATE salesforce.account SET name = 'Renamed', industry = 'Energy'; \
             SET session_replication_role = origin",
        )
        .await
        .unwrap();
    let upd: i32 = client
        .query_one(
            "SELECT salesforce.hc_capture_update_from_row(hstore(t.*), 'account', ARRAY['name']) \
             FROM salesforce.account t WHERE id = $1",
            &[&quiet],
        )
        .await
        .unwrap()
        .get(0);
    let e = claim(&client, &m).await;
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].id, e[0].action, e[0].sfid.as_deref()),
        (upd, Action::Update, Some(S1))
    );
    assert_eq!(e[0].sf_values(&m), vec![("Name", Some("Renamed"))]);
    writeback::mark_success(
        &mut client,
        &schema(),
        &m,
        &[Sent {
            log_id: upd,
            sfid: None,
        }],
    )
    .await
    .unwrap();

    // No columns listed: every column goes (Connect's default).
    let all: i32 = client
        .query_one(
            "SELECT salesforce.hc_capture_update_from_row(hstore(t.*), 'account') \
             FROM salesforce.account t WHERE id = $1",
            &[&quiet],
        )
        .await
        .unwrap()
        .get(0);
    let e = claim(&client, &m).await;
    assert_eq!(e[0].id, all);
    assert_eq!(
        e[0].sf_values(&m)
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>(),
        vec!["External_Id__c", "Industry", "Name"]
    );

    // A row without its id: NULL, nothing logged (Connect's contract). A table that is not in
    // the schema: a clear error.
    let before = log(&client).await.len();
    let none: Option<i32> = client
        .query_one(
            "SELECT salesforce.hc_capture_insert_from_row(hstore(ARRAY['name','x']), 'account', ARRAY[]::text[])",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(none, None);
    assert_eq!(log(&client).await.len(), before);
    let err = client
        .query_one(
            "SELECT salesforce.hc_capture_insert_from_row(hstore(t.*), 'nosuch', ARRAY[]::text[]) \
             FROM salesforce.account t",
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("table salesforce.nosuch does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn a_read_only_table_recaptured_is_logged_readonly_and_never_claimed() {
    let db = TestDb::create().await;
    let mut client = connect(&db.url).await;
    // Another mapping of the schema is read_write (that is what makes the functions); this one
    // is read_only.
    setup(&mut client, "read_write").await;
    let m = setup(&mut client, "read_only").await.mapping;
    let id = insert_replica(&client, None, "X1", "A").await;
    client
        .query_one(
            "SELECT salesforce.hc_capture_insert_from_row(hstore(t.*), 'account', ARRAY[]::text[]) \
             FROM salesforce.account t WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(log(&client).await[0].1, "READONLY");
    assert!(claim(&client, &m).await.is_empty());
}

/// A login role, dropped after the test's database (declare it first).
struct TestRole(String);

impl Drop for TestRole {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let url = std::env::var("DATABASE_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
                let admin = connect(&url).await;
                let _ = admin
                    .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
                    .await;
            });
        })
        .join();
    }
}

#[tokio::test]
async fn without_hstore_the_functions_are_missing_and_capture_still_works() {
    let role = TestRole(format!("driftless_owner_{}", uuid::Uuid::new_v4().simple()));
    let db = TestDb::create().await;
    let admin = connect(&db.url).await;
    let r = &role.0;
    // The role owns its schema but may not create anything else in the database, so it cannot
    // create the (trusted) extension.
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{r}\" LOGIN; CREATE SCHEMA salesforce AUTHORIZATION \"{r}\";"
        ))
        .await
        .unwrap();
    let mut owner = connect(&db.url.replacen("postgres@", &format!("{r}@"), 1)).await;
    let changes = setup(&mut owner, "read_write").await;
    let Some(ResendFunctions::Unavailable { reason }) = &changes.resend_functions else {
        panic!("{:?}", changes.resend_functions)
    };
    assert!(reason.contains("permission denied"), "{reason}");
    let warning = changes
        .resend_functions
        .as_ref()
        .unwrap()
        .warning(&schema())
        .unwrap();
    assert!(
        warning.contains("salesforce.hc_capture_insert_from_row") && !warning.contains('\n'),
        "{warning}"
    );
    let functions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'hc_capture_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(functions, 0);
    owner
        .execute(
            "INSERT INTO salesforce.account (external_id__c, name) VALUES ('X1', 'A')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(log(&owner).await[0].1, "NEW");
    // Running again (a restart) is still fine.
    setup(&mut owner, "read_write").await;
    drop(owner);
}
