//! Merged and Ordered Writes, and the re-sends Heroku Connect documents (FAILED → NEW, archived
//! entry copied back as NEW, IGNORED), against the real Postgres. All of it is SQL state, so a
//! "restart" is a fresh connection.

mod common;

use std::time::Duration;

use common::{account_describe, connect, fd, TestDb};
use driftless_core::describe::ObjectDescribe;
use driftless_core::ident::Ident;
use driftless_core::mapping::{MappingFile, ResolvedMapping};
use driftless_core::migrate::ensure_schema;
use driftless_core::writeback::{
    self, claim, Action, ClaimedEntry, Failure, Retry, Sent, WriteMode,
};
use tokio_postgres::Client;

const S1: &str = "001000000000001AAA";

fn schema() -> Ident {
    Ident::from_sf_name("salesforce").unwrap()
}

fn describe(object: &str) -> ObjectDescribe {
    let mut d = account_describe();
    d.name = object.into();
    let mut ext = fd("External_Id__c", "string", 255);
    ext.external_id = true;
    ext.unique = true;
    d.fields.push(ext);
    d
}

async fn mapped(client: &mut Client, object: &str) -> ResolvedMapping {
    let f = MappingFile::parse(&format!(
        r#"{{"mappings":[{{"object_name":"{object}","config":{{"access":"read_write",
        "upsert_field":"External_Id__c",
        "fields":{{"Id":{{}},"Name":{{}},"Industry":{{}},"External_Id__c":{{}}}},
        "indexes":{{}}}}}}],"version":1}}"#
    ))
    .unwrap();
    ensure_schema(client, &schema(), &f.mappings[0], &describe(object))
        .await
        .unwrap()
        .mapping
}

async fn setup(db: &TestDb) -> (Client, ResolvedMapping) {
    let mut client = connect(&db.url).await;
    let m = mapped(&mut client, "Account").await;
    (client, m)
}

async fn exec(client: &Client, sql: &str) {
    client.batch_execute(sql).await.unwrap();
}

async fn insert(client: &Client, table: &str, ext: &str, name: &str) -> i32 {
    client
        .query_one(
            &format!(
                "INSERT INTO salesforce.{table} (external_id__c, name) VALUES ($1, $2) RETURNING id"
            ),
            &[&ext, &name],
        )
        .await
        .unwrap()
        .get(0)
}

/// A row the read side synced: not captured.
async fn synced(client: &Client, sfid: &str, ext: &str, name: &str) -> i32 {
    client
        .query_one(
            "WITH s AS (SELECT set_config('driftless.sync', 'on', false)) \
             INSERT INTO salesforce.account (sfid, external_id__c, name, _hc_lastop) \
             SELECT $1, $2, $3, 'SYNCED' FROM s RETURNING id",
            &[&sfid, &ext, &name],
        )
        .await
        .unwrap()
        .get(0)
}

async fn unsuppress(client: &Client) {
    exec(client, "SELECT set_config('driftless.sync', 'off', false)").await;
}

/// (id, state) of the live entries of a record.
async fn states(client: &Client, table: &str, record: i32) -> Vec<(i32, String)> {
    client
        .query(
            "SELECT id, state::text FROM salesforce._trigger_log \
             WHERE table_name = $1 AND record_id = $2 ORDER BY id",
            &[&table, &record],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The Id "Salesforce" gives a row's insert.
fn sfid_for(record_id: i32) -> String {
    format!("001{record_id:012}AAA")
}

fn ids(e: &[ClaimedEntry]) -> Vec<i32> {
    e.iter().map(|e| e.id).collect()
}

async fn succeed(client: &mut Client, m: &ResolvedMapping, e: &[ClaimedEntry]) {
    let sent: Vec<Sent> = e
        .iter()
        .map(|e| Sent {
            log_id: e.id,
            sfid: e.sfid.clone().or(Some(sfid_for(e.record_id))),
        })
        .collect();
    writeback::mark_success(client, &schema(), m, &sent)
        .await
        .unwrap();
}

async fn fail(client: &mut Client, m: &ResolvedMapping, log_id: i32) {
    writeback::mark_failed(
        client,
        &schema(),
        m,
        &[Failure {
            log_id,
            message: "Required fields are missing: [Industry]".into(),
            code: Some("REQUIRED_FIELD_MISSING".into()),
        }],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn merged_writes_fold_a_records_pending_changes_into_one() {
    let db = TestDb::create().await;
    let (mut client, m) = setup(&db).await;
    let s = schema();
    let r1 = insert(&client, "account", "X1", "A").await; // 1
    exec(
        &client,
        &format!("UPDATE salesforce.account SET name = 'A2' WHERE id = {r1}"),
    )
    .await; // 2
    exec(
        &client,
        &format!("UPDATE salesforce.account SET industry = 'Tech' WHERE id = {r1}"),
    )
    .await; // 3
    let r2 = synced(&client, S1, "X2", "B").await;
    unsuppress(&client).await;
    exec(
        &client,
        &format!("UPDATE salesforce.account SET name = 'B2' WHERE id = {r2}"),
    )
    .await; // 4
    exec(
        &client,
        &format!("UPDATE salesforce.account SET industry = 'Energy' WHERE id = {r2}"),
    )
    .await; // 5
    let r3 = insert(&client, "account", "X3", "C").await; // 6
    exec(
        &client,
        &format!("DELETE FROM salesforce.account WHERE id = {r3}"),
    )
    .await; // 7

    let e = claim(&client, &s, &m, WriteMode::Merged, 100)
        .await
        .unwrap();
    assert_eq!(ids(&e), vec![1, 4, 7], "one write per record");
    assert_eq!(e[0].action, Action::Insert);
    assert_eq!(
        e[0].sf_values(&m),
        vec![
            ("External_Id__c", Some("X1")),
            ("Industry", Some("Tech")),
            ("Name", Some("A2"))
        ]
    );
    assert_eq!(
        (e[1].action, e[1].sfid.as_deref()),
        (Action::Update, Some(S1))
    );
    assert_eq!(
        e[1].sf_values(&m),
        vec![("Industry", Some("Energy")), ("Name", Some("B2"))]
    );
    // Inserted and deleted before anything was sent: a delete of nothing.
    assert_eq!((e[2].action, e[2].sfid.as_deref()), (Action::Delete, None));
    assert!(claim(&client, &s, &m, WriteMode::Merged, 100)
        .await
        .unwrap()
        .is_empty());

    // The representative carries the fold, so the read side's guard sees every column it sends.
    let stored: String = client
        .query_one(
            "SELECT \"values\" FROM salesforce._trigger_log WHERE id = 4",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let stored = writeback::parse_hstore(&stored).unwrap();
    assert_eq!(stored["name"].as_deref(), Some("B2"));
    assert_eq!(stored["industry"].as_deref(), Some("Energy"));

    succeed(&mut client, &m, &e).await;
    let st = |v: &[(i32, &str)]| {
        v.iter()
            .map(|(i, s)| (*i, s.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        states(&client, "account", r1).await,
        st(&[(1, "SUCCESS"), (2, "MERGED"), (3, "MERGED")])
    );
    assert_eq!(
        states(&client, "account", r2).await,
        st(&[(4, "SUCCESS"), (5, "MERGED")])
    );
    assert_eq!(
        states(&client, "account", r3).await,
        st(&[(6, "MERGED"), (7, "SUCCESS")])
    );
    let (sfid, lastop): (Option<String>, Option<String>) = client
        .query_one(
            "SELECT sfid::text, _hc_lastop::text FROM salesforce.account WHERE id = $1",
            &[&r1],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        (sfid, lastop.as_deref()),
        (Some(sfid_for(r1)), Some("INSERTED"))
    );
    let merged_sfids: i64 = client
        .query_one(
            "SELECT count(*) FROM salesforce._trigger_log WHERE state = 'MERGED' AND record_id = $1 \
             AND sfid = $2",
            &[&r1, &sfid_for(r1)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(merged_sfids, 2, "folded entries learn the sfid too");
    assert_eq!(
        writeback::counts(&client, &s, &m.table)
            .await
            .unwrap()
            .merged,
        4
    );
}

#[tokio::test]
async fn a_retried_fold_is_folded_again_and_a_sent_insert_is_not_folded() {
    let db = TestDb::create().await;
    let (mut client, m) = setup(&db).await;
    let s = schema();
    let r1 = insert(&client, "account", "X1", "A").await; // 1
    exec(
        &client,
        &format!("UPDATE salesforce.account SET name = 'A2' WHERE id = {r1}"),
    )
    .await; // 2
    let e = claim(&client, &s, &m, WriteMode::Merged, 100)
        .await
        .unwrap();
    assert_eq!(ids(&e), vec![1]);
    writeback::retry_later(
        &client,
        &s,
        &m,
        &[Retry {
            log_id: 1,
            delay: Duration::ZERO,
            message: "503".into(),
        }],
    )
    .await
    .unwrap();
    assert!(states(&client, "account", r1)
        .await
        .iter()
        .all(|(_, st)| st == "NEW"));
    // The insert may have reached Salesforce: it goes alone, its update after it.
    exec(
        &client,
        &format!("UPDATE salesforce.account SET external_id__c = 'X1b' WHERE id = {r1}"),
    )
    .await; // 3
    let e = claim(&client, &s, &m, WriteMode::Merged, 100)
        .await
        .unwrap();
    assert_eq!(ids(&e), vec![1]);
    assert_eq!(e[0].upsert_value.as_deref(), Some("X1"));
    assert_eq!(e[0].attempts, 2);
    succeed(&mut client, &m, &e).await;
    let e = claim(&client, &s, &m, WriteMode::Merged, 100)
        .await
        .unwrap();
    assert_eq!(ids(&e), vec![2]);
    assert_eq!(
        (e[0].action, e[0].sfid.clone()),
        (Action::Update, Some(sfid_for(r1)))
    );
    assert_eq!(
        e[0].sf_values(&m),
        vec![("External_Id__c", Some("X1b")), ("Name", Some("A2"))]
    );
}

#[tokio::test]
async fn failed_set_to_new_is_sent_again_with_the_row_as_it_is_now_across_a_restart() {
    let db = TestDb::create().await;
    let (mut client, m) = setup(&db).await;
    let s = schema();
    let r1 = insert(&client, "account", "X1", "A").await;
    let e = claim(&client, &s, &m, WriteMode::Merged, 100)
        .await
        .unwrap();
    fail(&mut client, &m, e[0].id).await;
    assert!(claim(&client, &s, &m, WriteMode::Merged, 100)
        .await
        .unwrap()
        .is_empty());
    // The application fixes the row without a capture (a bulk fix with triggers off), then asks
    // for the retry the way Connect documents it.
    exec(
        &client,
        &format!(
            "SET session_replication_role = replica; \
             UPDATE salesforce.account SET industry = 'Tech' WHERE id = {r1}; \
             SET session_replication_role = origin; \
             UPDATE salesforce._trigger_log SET state = 'NEW' WHERE id = {}",
            e[0].id
        ),
    )
    .await;
    drop(client);
    let mut client = connect(&db.url).await; // a restart: nothing but SQL state
    writeback::recover_in_flight(&client, &s, &m.table)
        .await
        .unwrap();
    let again = claim(&client, &s, &m, WriteMode::Merged, 100)
        .await
        .unwrap();
    assert_eq!(ids(&again), ids(&e));
    assert_eq!(
        again[0].sf_values(&m),
        vec![
            ("External_Id__c", Some("X1")),
            ("Industry", Some("Tech")),
            ("Name", Some("A"))
        ]
    );
    assert_eq!(again[0].attempts, 1, "the rejected attempt did not land");
    succeed(&mut client, &m, &again).await;
    assert_eq!(states(&client, "account", r1).await[0].1, "SUCCESS");

    // IGNORED is never sent.
    let r2 = insert(&client, "account", "X2", "B").await;
    let e = claim(&client, &s, &m, WriteMode::Merged, 100)
        .await
        .unwrap();
    fail(&mut client, &m, e[0].id).await;
    exec(
        &client,
        &format!(
            "UPDATE salesforce._trigger_log SET state = 'IGNORED' WHERE id = {}",
            e[0].id
        ),
    )
    .await;
    for mode in [WriteMode::Merged, WriteMode::Ordered] {
        assert!(claim(&client, &s, &m, mode, 100).await.unwrap().is_empty());
    }
    assert_eq!(states(&client, "account", r2).await[0].1, "IGNORED");
}

#[tokio::test]
async fn an_archived_entry_copied_back_as_new_is_sent_and_its_archive_row_stays() {
    let db = TestDb::create().await;
    let (mut client, m) = setup(&db).await;
    let s = schema();
    let r1 = insert(&client, "account", "X1", "A").await;
    let r2 = insert(&client, "account", "X2", "B").await;
    let e = claim(&client, &s, &m, WriteMode::Merged, 100)
        .await
        .unwrap();
    fail(&mut client, &m, e[0].id).await;
    fail(&mut client, &m, e[1].id).await;
    writeback::archive_processed(&client, &s, Duration::ZERO)
        .await
        .unwrap();
    exec(
        &client,
        "SET session_replication_role = replica; \
         UPDATE salesforce.account SET industry = 'Fixed'; \
         SET session_replication_role = origin",
    )
    .await;
    let archived = |id: i32| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT state::text, processed_at, sf_message FROM salesforce._trigger_log_archive \
                     WHERE id = $1",
                    &[&id],
                )
                .await
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(1),
                        r.get::<_, Option<String>>(2),
                    )
                })
                .unwrap()
        }
    };
    let cols = "txid, created_at, action, table_name, record_id, sfid, old, \"values\"";
    // Copied back as a fresh entry (r1) and under its own id (r2); both archive rows REQUEUED.
    exec(
        &client,
        &format!(
            "INSERT INTO salesforce._trigger_log (state, {cols}) \
                 SELECT 'NEW', {cols} FROM salesforce._trigger_log_archive WHERE id = {a}; \
             INSERT INTO salesforce._trigger_log (id, state, {cols}) \
                 SELECT id, 'NEW', {cols} FROM salesforce._trigger_log_archive WHERE id = {b}; \
             UPDATE salesforce._trigger_log_archive SET state = 'REQUEUED' WHERE id IN ({a}, {b})",
            a = e[0].id,
            b = e[1].id
        ),
    )
    .await;
    let before = (archived(e[0].id).await, archived(e[1].id).await);
    let again = claim(&client, &s, &m, WriteMode::Ordered, 100)
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|e| e.record_id).collect::<Vec<_>>(),
        vec![r2, r1],
        "in log order: r2's copy kept its id, r1's got a new one"
    );
    assert_eq!(again[0].id, e[1].id);
    for a in &again {
        assert_eq!(
            a.values.get("industry").cloned().flatten().as_deref(),
            Some("Fixed"),
            "sent with the row as it is now"
        );
    }
    succeed(&mut client, &m, &again).await;
    writeback::archive_processed(&client, &s, Duration::ZERO)
        .await
        .unwrap();
    let archived = |id: i32| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT state::text, processed_at, sf_message FROM salesforce._trigger_log_archive \
                     WHERE id = $1",
                    &[&id],
                )
                .await
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(1),
                        r.get::<_, Option<String>>(2),
                    )
                })
                .unwrap()
        }
    };
    assert_eq!(archived(e[0].id).await, before.0, "archive row untouched");
    assert_eq!(archived(e[1].id).await, before.1, "archive row untouched");
    assert_eq!(before.0 .0, "REQUEUED");
    // The copy under the archived id stays live, settled, rather than overwrite the archive row.
    assert_eq!(
        states(&client, "account", r2).await,
        vec![(e[1].id, "SUCCESS".into())]
    );
}

#[tokio::test]
async fn ordered_writes_block_a_table_behind_a_failed_insert_until_it_is_dealt_with() {
    let db = TestDb::create().await;
    let (mut client, m) = setup(&db).await;
    let other = mapped(&mut client, "Opportunity").await;
    let s = schema();
    use WriteMode::Ordered;
    let r1 = insert(&client, "account", "X1", "A").await; // 1
    let e = claim(&client, &s, &m, Ordered, 100).await.unwrap();
    assert_eq!(ids(&e), vec![1]);
    let r2 = insert(&client, "account", "X2", "B").await; // 2
    insert(&client, "opportunity", "P1", "Deal").await; // 3
    fail(&mut client, &m, 1).await;

    assert!(
        claim(&client, &s, &m, Ordered, 100)
            .await
            .unwrap()
            .is_empty(),
        "account's queue stops behind its failed insert"
    );
    let e = claim(&client, &s, &other, Ordered, 100).await.unwrap();
    assert_eq!(ids(&e), vec![3], "other tables go on");
    succeed(&mut client, &other, &e).await;
    // Merged Writes does not stop.
    let merged = claim(&client, &s, &m, WriteMode::Merged, 100)
        .await
        .unwrap();
    assert_eq!(ids(&merged), vec![2]);
    writeback::recover_in_flight(&client, &s, &m.table)
        .await
        .unwrap();

    // Archived, the failed insert still blocks.
    writeback::archive_processed(&client, &s, Duration::ZERO)
        .await
        .unwrap();
    assert!(claim(&client, &s, &m, Ordered, 100)
        .await
        .unwrap()
        .is_empty());

    // Re-captured, as Connect's docs say for Ordered Writes: the queue moves, in log order.
    let recaptured: i32 = client
        .query_one(
            "SELECT salesforce.hc_capture_insert_from_row(hstore(t.*), 'account', ARRAY[]::text[]) \
             FROM salesforce.account t WHERE id = $1",
            &[&r1],
        )
        .await
        .unwrap()
        .get(0);
    let e = claim(&client, &s, &m, Ordered, 100).await.unwrap();
    assert_eq!(ids(&e), vec![2, recaptured]);
    assert_eq!(e[0].record_id, r2);
    // A second failed insert blocks only what comes after it; IGNORED releases it.
    succeed(&mut client, &m, &e[..1]).await;
    fail(&mut client, &m, recaptured).await;
    let r3 = insert(&client, "account", "X3", "C").await;
    assert!(claim(&client, &s, &m, Ordered, 100)
        .await
        .unwrap()
        .is_empty());
    exec(
        &client,
        &format!("UPDATE salesforce._trigger_log SET state = 'IGNORED' WHERE id = {recaptured}"),
    )
    .await;
    let e = claim(&client, &s, &m, Ordered, 100).await.unwrap();
    assert_eq!(e.iter().map(|e| e.record_id).collect::<Vec<_>>(), vec![r3]);
}
