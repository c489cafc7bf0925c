//! Write-back's database half against the real Postgres: capture triggers, the claim queue,
//! outcomes, archive, counts and the read side's flip-flop guard.

mod common;

use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use common::{account_describe, connect, fd, TestDb};
use driftless_core::describe::ObjectDescribe;
use driftless_core::dml;
use driftless_core::ident::Ident;
use driftless_core::mapping::{MappingFile, ResolvedMapping};
use driftless_core::migrate::ensure_schema;
use driftless_core::writeback::{self, Action, Failure, Retry, Sent, WriteMode};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, NoTls};

const S1: &str = "001000000000001AAA";
const S2: &str = "001000000000002AAA";
const S3: &str = "001000000000003AAA";

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

/// Staging order is the mapping's field order: External_Id__c, Industry, Name.
async fn setup(db: &TestDb, access: &str) -> (Client, ResolvedMapping) {
    let mut client = connect(&db.url).await;
    let f = MappingFile::parse(&format!(
        r#"{{"mappings":[{{"object_name":"Account","config":{{"access":"{access}",
        "upsert_field":"External_Id__c",
        "fields":{{"Id":{{}},"Name":{{}},"Industry":{{}},"External_Id__c":{{}}}},
        "indexes":{{"External_Id__c":{{"unique":true}}}}}}}}],"version":1}}"#
    ))
    .unwrap();
    let m = ensure_schema(&mut client, &schema(), &f.mappings[0], &describe())
        .await
        .unwrap()
        .mapping;
    (client, m)
}

#[derive(Debug, PartialEq)]
struct LogRow {
    id: i32,
    state: String,
    action: String,
    record_id: i32,
    sfid: Option<String>,
    values: Option<String>,
    old: Option<String>,
}

async fn log(client: &Client) -> Vec<LogRow> {
    client
        .query(
            "SELECT id, state::text, action::text, record_id, sfid::text, \"values\", old \
             FROM salesforce._trigger_log ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| LogRow {
            id: r.get(0),
            state: r.get(1),
            action: r.get(2),
            record_id: r.get(3),
            sfid: r.get(4),
            values: r.get(5),
            old: r.get(6),
        })
        .collect()
}

async fn insert(client: &Client, ext: Option<&str>, name: &str) -> i32 {
    client
        .query_one(
            "INSERT INTO salesforce.account (external_id__c, name) VALUES ($1, $2) RETURNING id",
            &[&ext, &name],
        )
        .await
        .unwrap()
        .get(0)
}

/// A row as the read side would leave it: synced, not captured.
async fn synced_row(client: &mut Client, sfid: &str, ext: &str, name: &str) -> i32 {
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(writeback::suppress_capture_sql())
        .await
        .unwrap();
    let id = tx
        .query_one(
            "INSERT INTO salesforce.account (sfid, systemmodstamp, external_id__c, name, _hc_lastop) \
             VALUES ($1, '2024-06-25 10:00:00', $2, $3, 'SYNCED') RETURNING id",
            &[&sfid, &ext, &name],
        )
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    id
}

/// (sfid, _hc_lastop, _hc_err, name, industry) of a row.
type RowState = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn row(client: &Client, id: i32) -> Option<RowState> {
    client
        .query_opt(
            "SELECT sfid::text, _hc_lastop::text, _hc_err, name::text, industry::text \
             FROM salesforce.account WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
}

async fn count_rows(client: &Client, where_: &str) -> i64 {
    client
        .query_one(
            &format!("SELECT count(*) FROM salesforce.account WHERE {where_}"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

type SfRow<'a> = (
    &'a str,
    NaiveDateTime,
    bool,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

/// The read side: staging + merge in one suppressed transaction, as the DbWriter runs it.
async fn merge(client: &mut Client, m: &ResolvedMapping, rows: &[SfRow<'_>]) -> (i64, i64) {
    let s = schema();
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(writeback::SUPPRESS_CAPTURE).await.unwrap();
    tx.batch_execute(&dml::create_staging_table(&s, m))
        .await
        .unwrap();
    let types: Vec<_> = dml::staging_columns(m)
        .iter()
        .map(|(_, t)| t.postgres_type())
        .collect();
    let sink = tx.copy_in(&dml::copy_into_staging(&s, m)).await.unwrap();
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for (sfid, stamp, deleted, ext, industry, name) in rows {
        let values: [&(dyn ToSql + Sync); 6] = [sfid, stamp, deleted, ext, industry, name];
        writer.as_mut().write(&values).await.unwrap();
    }
    writer.finish().await.unwrap();
    let r = tx
        .query_one(&dml::merge_from_staging(&s, m), &[&"acme", &"Account"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test]
async fn user_writes_are_captured_like_heroku_connect() {
    let db = TestDb::create().await;
    let (mut client, _m) = setup(&db, "read_write").await;

    // A listener, to see the writer being woken.
    let (listener, mut conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    let (note_tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = msg {
                let _ = note_tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener
        .batch_execute(&format!("LISTEN {}", writeback::NOTIFY_CHANNEL))
        .await
        .unwrap();

    let id = insert(&client, Some("X1"), "Acme").await;
    let note = tokio::time::timeout(Duration::from_secs(10), notes.recv())
        .await
        .expect("no notification")
        .unwrap();
    assert_eq!(
        note,
        (
            "driftless_writeback".to_owned(),
            "salesforce.account".to_owned()
        )
    );
    let l = log(&client).await;
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].state.as_str(), l[0].action.as_str()),
        ("NEW", "INSERT")
    );
    assert_eq!(l[0].record_id, id);
    assert_eq!(
        l[0].values.as_deref(),
        Some(r#""external_id__c"=>"X1", "industry"=>NULL, "name"=>"Acme""#)
    );
    assert_eq!(l[0].old, None);
    // The text is real hstore: applications written for Connect can cast it.
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS hstore")
        .await
        .unwrap();
    let name: Option<String> = client
        .query_one(
            "SELECT (\"values\"::hstore) -> 'name' FROM salesforce._trigger_log WHERE id = $1",
            &[&l[0].id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name.as_deref(), Some("Acme"));
    assert_eq!(
        row(&client, id).await.unwrap().1.as_deref(),
        Some("PENDING")
    );

    // Pretend it synced, then the application changes one column: only that one is captured.
    {
        let tx = client.transaction().await.unwrap();
        tx.batch_execute(writeback::SUPPRESS_CAPTURE).await.unwrap();
        tx.execute(
            "UPDATE salesforce.account SET sfid = $1, _hc_lastop = 'SYNCED' WHERE id = $2",
            &[&S1, &id],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(log(&client).await.len(), 1, "engine write captured");
    client
        .execute(
            "UPDATE salesforce.account SET name = 'Acme \"Corp\"', industry = industry WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let l = log(&client).await;
    assert_eq!(
        (l[1].state.as_str(), l[1].action.as_str()),
        ("NEW", "UPDATE")
    );
    assert_eq!(l[1].values.as_deref(), Some(r#""name"=>"Acme \"Corp\"""#));
    assert_eq!(l[1].sfid.as_deref(), Some(S1));
    let old = writeback::parse_hstore(l[1].old.as_deref().unwrap()).unwrap();
    assert_eq!(old["name"].as_deref(), Some("Acme"));
    assert_eq!(old["sfid"].as_deref(), Some(S1));
    assert_eq!(old["id"].as_deref(), Some(id.to_string().as_str()));
    assert!(!old.contains_key("_hc_lastop"));
    assert_eq!(
        row(&client, id).await.unwrap().1.as_deref(),
        Some("PENDING")
    );

    // A no-op update: IGNORE, and the row's status is left alone.
    {
        let tx = client.transaction().await.unwrap();
        tx.batch_execute(writeback::SUPPRESS_CAPTURE).await.unwrap();
        tx.execute(
            "UPDATE salesforce.account SET _hc_lastop = 'SYNCED' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    client
        .execute(
            "UPDATE salesforce.account SET name = name, _hc_lastop = _hc_lastop WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let l = log(&client).await;
    assert_eq!(
        (l[2].state.as_str(), l[2].action.as_str()),
        ("IGNORE", "UPDATE")
    );
    assert_eq!(row(&client, id).await.unwrap().1.as_deref(), Some("SYNCED"));

    // Deletes: of a synced row → NEW with its sfid; of a row that never reached Salesforce and
    // has no insert pending → IGNORE; of a row whose insert is pending → NEW (sent after it).
    client
        .execute("DELETE FROM salesforce.account WHERE id = $1", &[&id])
        .await
        .unwrap();
    let never = insert(&client, Some("X2"), "Never").await;
    client
        .execute(
            "UPDATE salesforce._trigger_log SET state = 'FAILED' WHERE record_id = $1",
            &[&never],
        )
        .await
        .unwrap();
    client
        .execute("DELETE FROM salesforce.account WHERE id = $1", &[&never])
        .await
        .unwrap();
    let pending = insert(&client, Some("X3"), "Pending").await;
    client
        .execute("DELETE FROM salesforce.account WHERE id = $1", &[&pending])
        .await
        .unwrap();
    let l = log(&client).await;
    let deletes: Vec<_> = l
        .iter()
        .filter(|e| e.action == "DELETE")
        .map(|e| {
            (
                e.record_id,
                e.state.as_str(),
                e.sfid.as_deref(),
                e.values.is_none(),
            )
        })
        .collect();
    assert_eq!(
        deletes,
        vec![
            (id, "NEW", Some(S1), true),
            (never, "IGNORE", None, true),
            (pending, "NEW", None, true)
        ]
    );
}

#[tokio::test]
async fn engine_writes_are_not_captured_and_read_only_is_readonly() {
    let db = TestDb::create().await;
    let (mut client, _m) = setup(&db, "read_write").await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(writeback::suppress_capture_sql())
        .await
        .unwrap();
    tx.execute(
        "INSERT INTO salesforce.account (sfid, name, _hc_lastop) VALUES ($1, 'A', 'SYNCED')",
        &[&S1],
    )
    .await
    .unwrap();
    tx.execute("UPDATE salesforce.account SET name = 'B'", &[])
        .await
        .unwrap();
    tx.execute("DELETE FROM salesforce.account", &[])
        .await
        .unwrap();
    tx.execute(
        "INSERT INTO salesforce.account (sfid, name, _hc_lastop) VALUES ($1, 'C', 'SYNCED')",
        &[&S2],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(log(&client).await.is_empty());
    assert_eq!(count_rows(&client, "_hc_lastop = 'SYNCED'").await, 1);
    // SET LOCAL ended with the transaction: the same session is captured again.
    client
        .execute("UPDATE salesforce.account SET name = 'D'", &[])
        .await
        .unwrap();
    assert_eq!(log(&client).await.len(), 1);

    // The same table switched to read_only: changes are logged READONLY, the row is not PENDING.
    let db2 = TestDb::create().await;
    let (client2, m2) = setup(&db2, "read_only").await;
    let id = insert(&client2, Some("X1"), "A").await;
    client2
        .execute("UPDATE salesforce.account SET name = 'B'", &[])
        .await
        .unwrap();
    let l = log(&client2).await;
    assert_eq!(
        l.iter()
            .map(|e| (e.state.as_str(), e.action.as_str()))
            .collect::<Vec<_>>(),
        vec![("READONLY", "INSERT"), ("READONLY", "UPDATE")]
    );
    assert_eq!(row(&client2, id).await.unwrap().1, None);
    assert!(writeback::claim_pending(&client2, &schema(), &m2, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn ordered_claims_replay_the_log_in_order() {
    let db = TestDb::create().await;
    let (mut client, m) = setup(&db, "read_write").await;
    let s = schema();
    let r1 = insert(&client, Some("X1"), "A").await; // entry 1
    client
        .execute(
            "UPDATE salesforce.account SET name = 'A2' WHERE id = $1",
            &[&r1],
        )
        .await
        .unwrap(); // entry 2, waits behind 1
    let r2 = insert(&client, Some("X2"), "B").await; // entry 3, waits behind 2 (log order)

    let first = writeback::claim(&client, &s, &m, WriteMode::Ordered, 10)
        .await
        .unwrap();
    let got: Vec<_> = first
        .iter()
        .map(|e| (e.id, e.action, e.record_id))
        .collect();
    assert_eq!(got, vec![(1, Action::Insert, r1)]);
    assert_eq!(first[0].upsert_value.as_deref(), Some("X1"));
    assert_eq!(first[0].attempts, 1);
    assert_eq!(first[0].sfid, None);
    assert_eq!(
        first[0].sf_values(&m),
        vec![
            ("External_Id__c", Some("X1")),
            ("Industry", None),
            ("Name", Some("A"))
        ]
    );
    assert!(
        writeback::claim(&client, &s, &m, WriteMode::Ordered, 10)
            .await
            .unwrap()
            .is_empty(),
        "in flight entries and the ones behind them are not handed out again"
    );

    // The insert succeeds: the sfid lands on the row and on entry 2, without a new entry.
    let n = writeback::mark_success(
        &mut client,
        &s,
        &m,
        &[Sent {
            log_id: 1,
            sfid: Some(S1.into()),
        }],
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(log(&client).await.len(), 3);
    let (sfid, lastop, ..) = row(&client, r1).await.unwrap();
    assert_eq!(sfid.as_deref(), Some(S1));
    assert_eq!(
        lastop.as_deref(),
        Some("PENDING"),
        "entry 2 is still waiting"
    );
    let next = writeback::claim(&client, &s, &m, WriteMode::Ordered, 10)
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|e| (e.id, e.record_id)).collect::<Vec<_>>(),
        vec![(2, r1), (3, r2)]
    );
    assert_eq!((next[0].id, next[0].action), (2, Action::Update));
    assert_eq!(next[0].sfid.as_deref(), Some(S1));
    assert_eq!(next[0].values.len(), 1);
    writeback::mark_success(
        &mut client,
        &s,
        &m,
        &[Sent {
            log_id: 2,
            sfid: None,
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        row(&client, r1).await.unwrap().1.as_deref(),
        Some("UPDATED")
    );
    assert_eq!(
        writeback::mark_success(
            &mut client,
            &s,
            &m,
            &[Sent {
                log_id: 2,
                sfid: None
            }]
        )
        .await
        .unwrap(),
        0,
        "a settled entry is not settled twice"
    );

    // Crash recovery: the in-flight insert of r2 goes back to NEW and is claimed again.
    assert_eq!(
        writeback::recover_in_flight(&client, &s, &m.table)
            .await
            .unwrap(),
        1
    );
    let again = writeback::claim(&client, &s, &m, WriteMode::Ordered, 10)
        .await
        .unwrap();
    assert_eq!((again[0].id, again[0].attempts), (3, 2));

    // Transient failure: back to NEW, not before the delay.
    writeback::retry_later(
        &client,
        &s,
        &m,
        &[Retry {
            log_id: 3,
            delay: Duration::from_secs(3600),
            message: "503".into(),
        }],
    )
    .await
    .unwrap();
    assert_eq!(log(&client).await[2].state, "NEW");
    assert!(writeback::claim(&client, &s, &m, WriteMode::Ordered, 10)
        .await
        .unwrap()
        .is_empty());
    client
        .execute(
            "UPDATE salesforce._driftless_writeback SET not_before = now() WHERE log_id = 3",
            &[],
        )
        .await
        .unwrap();
    let again = writeback::claim(&client, &s, &m, WriteMode::Ordered, 10)
        .await
        .unwrap();
    assert_eq!((again[0].id, again[0].attempts), (3, 3));
}

#[tokio::test]
async fn concurrent_claimers_never_get_the_same_entry() {
    let db = TestDb::create().await;
    let (_client, m) = setup(&db, "read_write").await;
    let s = schema();
    let mut a = connect(&db.url).await;
    let b = connect(&db.url).await;
    for i in 0..5 {
        insert(&b, Some(&format!("X{i}")), "n").await;
    }
    // A claims inside an open transaction, so its row locks are held while B claims.
    let tx = a.transaction().await.unwrap();
    let got_a = writeback::claim_pending(&tx, &s, &m, 2).await.unwrap();
    let got_b = tokio::time::timeout(
        Duration::from_secs(10),
        writeback::claim_pending(&b, &s, &m, 10),
    )
    .await
    .expect("B blocked behind A's locks")
    .unwrap();
    tx.commit().await.unwrap();
    let ids_a: Vec<i32> = got_a.iter().map(|e| e.id).collect();
    let ids_b: Vec<i32> = got_b.iter().map(|e| e.id).collect();
    assert_eq!(ids_a, vec![1, 2]);
    assert_eq!(ids_b, vec![3, 4, 5]);
    assert!(writeback::claim_pending(&b, &s, &m, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn failures_archive_purge_and_counts() {
    let db = TestDb::create().await;
    let (mut client, m) = setup(&db, "read_write").await;
    let s = schema();
    let ok = insert(&client, Some("X1"), "A").await;
    let bad = insert(&client, Some("X2"), "B").await;
    client
        .execute("UPDATE salesforce.account SET name = name", &[])
        .await
        .unwrap(); // two IGNOREs
    let c = writeback::counts(&client, &s, &m.table).await.unwrap();
    assert_eq!((c.pending, c.in_flight, c.failed, c.sent), (2, 0, 0, 0));
    writeback::claim_pending(&client, &s, &m, 10).await.unwrap();
    assert_eq!(
        writeback::counts(&client, &s, &m.table)
            .await
            .unwrap()
            .in_flight,
        2
    );
    writeback::mark_success(
        &mut client,
        &s,
        &m,
        &[Sent {
            log_id: 1,
            sfid: Some(S1.into()),
        }],
    )
    .await
    .unwrap();
    writeback::mark_failed(
        &mut client,
        &s,
        &m,
        &[Failure {
            log_id: 2,
            message: "Required fields are missing: [Industry]".into(),
            code: Some("REQUIRED_FIELD_MISSING".into()),
        }],
    )
    .await
    .unwrap();
    let (sfid, lastop, err, ..) = row(&client, bad).await.unwrap();
    assert_eq!((sfid, lastop.as_deref()), (None, Some("FAILED")));
    let err: serde_json::Value = serde_json::from_str(&err.unwrap()).unwrap();
    assert_eq!(err["op"], "INSERT");
    assert_eq!(err["code"], "REQUIRED_FIELD_MISSING");
    assert_eq!(err["msg"], "Required fields are missing: [Industry]");
    assert_eq!(
        row(&client, ok).await.unwrap().1.as_deref(),
        Some("INSERTED")
    );
    assert_eq!(
        log(&client).await[1].state,
        "FAILED",
        "the failed entry keeps its place"
    );
    assert_eq!(
        writeback::pending_count(&client, &s, &m.table)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        writeback::failed_count(&client, &s, &m.table)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        writeback::sent_count(&client, &s, &m.table).await.unwrap(),
        1
    );

    // A new change is still NEW: it stays; everything settled moves.
    client
        .execute(
            "UPDATE salesforce.account SET name = 'A2' WHERE id = $1",
            &[&ok],
        )
        .await
        .unwrap();
    assert_eq!(
        writeback::archive_processed(&client, &s, Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "too recent"
    );
    assert_eq!(
        writeback::archive_processed(&client, &s, Duration::ZERO)
            .await
            .unwrap(),
        4
    );
    let live = log(&client).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].state, "NEW");
    let c = writeback::counts(&client, &s, &m.table).await.unwrap();
    assert_eq!((c.pending, c.failed, c.sent), (1, 1, 1), "archive counted");
    let errors = writeback::failed_entries(&client, &s, 10).await.unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (
            errors[0].id,
            errors[0].table_name.as_str(),
            errors[0].record_id,
            errors[0].archived
        ),
        (2, "account", Some(bad), true)
    );
    assert_eq!(
        errors[0].message.as_deref(),
        Some("Required fields are missing: [Industry]")
    );
    let side: i64 = client
        .query_one("SELECT count(*) FROM salesforce._driftless_writeback", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(side, 0, "side rows leave with their entries");

    assert_eq!(
        writeback::purge_archive(&client, &s, writeback::DEFAULT_ARCHIVE_RETENTION)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        writeback::purge_archive(&client, &s, Duration::ZERO)
            .await
            .unwrap(),
        4
    );
}

#[tokio::test]
async fn read_side_does_not_flip_flop_or_revive_or_duplicate() {
    let db = TestDb::create().await;
    let (mut client, m) = setup(&db, "read_write").await;
    let s = schema();
    let r1 = synced_row(&mut client, S1, "X1", "A0").await;
    let r2 = synced_row(&mut client, S2, "X2", "Gone").await;

    // The application sets B; Salesforce's older write of A1 (and a new industry) comes in.
    client
        .execute(
            "UPDATE salesforce.account SET name = 'B' WHERE id = $1",
            &[&r1],
        )
        .await
        .unwrap();
    let t1 = ts("2024-06-25 11:00:00");
    merge(
        &mut client,
        &m,
        &[(S1, t1, false, Some("X1"), Some("Tech"), Some("A1"))],
    )
    .await;
    let (_, lastop, _, name, industry) = row(&client, r1).await.unwrap();
    assert_eq!(name.as_deref(), Some("B"), "pending column kept");
    assert_eq!(
        industry.as_deref(),
        Some("Tech"),
        "other columns still sync"
    );
    assert_eq!(lastop.as_deref(), Some("PENDING"));

    // Sent and accepted. A version read before the send started is still stale for `name`...
    let e = writeback::claim_pending(&client, &s, &m, 10).await.unwrap();
    writeback::mark_success(
        &mut client,
        &s,
        &m,
        &[Sent {
            log_id: e[0].id,
            sfid: None,
        }],
    )
    .await
    .unwrap();
    let t2 = ts("2026-01-01 00:00:00");
    merge(
        &mut client,
        &m,
        &[(S1, t2, false, Some("X1"), Some("Tech"), Some("A2"))],
    )
    .await;
    assert_eq!(row(&client, r1).await.unwrap().3.as_deref(), Some("B"));
    // ...one stamped after it carries the write, or a later Salesforce edit: it wins.
    let t3 = Utc::now().naive_utc() + chrono::Duration::hours(1);
    merge(
        &mut client,
        &m,
        &[(S1, t3, false, Some("X1"), Some("Tech"), Some("B!"))],
    )
    .await;
    let (_, lastop, _, name, _) = row(&client, r1).await.unwrap();
    assert_eq!(
        (name.as_deref(), lastop.as_deref()),
        (Some("B!"), Some("SYNCED"))
    );

    // Deleted in Postgres, delete not yet sent: a Salesforce update does not bring it back.
    client
        .execute("DELETE FROM salesforce.account WHERE id = $1", &[&r2])
        .await
        .unwrap();
    assert_eq!(
        merge(
            &mut client,
            &m,
            &[(S2, t1, false, Some("X2"), None, Some("Back"))]
        )
        .await,
        (0, 0)
    );
    assert_eq!(count_rows(&client, &format!("sfid = '{S2}'")).await, 0);

    // An insert's echo arrives before its sfid is back: linked by upsert field, not duplicated.
    let r3 = insert(&client, Some("X3"), "New").await;
    let e = writeback::claim_pending(&client, &s, &m, 10).await.unwrap();
    let ins = e.iter().find(|e| e.record_id == r3).unwrap();
    assert_eq!(ins.upsert_value.as_deref(), Some("X3"));
    merge(
        &mut client,
        &m,
        &[(S3, t1, false, Some("X3"), None, Some("New"))],
    )
    .await;
    assert_eq!(count_rows(&client, "external_id__c = 'X3'").await, 1);
    assert_eq!(row(&client, r3).await.unwrap().0.as_deref(), Some(S3));
    writeback::mark_success(
        &mut client,
        &s,
        &m,
        &[Sent {
            log_id: ins.id,
            sfid: Some(S3.into()),
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        row(&client, r3).await.unwrap().1.as_deref(),
        Some("INSERTED")
    );
    // Its next read from Salesforce confirms it: INSERTED → SYNCED.
    merge(
        &mut client,
        &m,
        &[(S3, t3, false, Some("X3"), None, Some("New"))],
    )
    .await;
    assert_eq!(row(&client, r3).await.unwrap().1.as_deref(), Some("SYNCED"));

    // No upsert value to link by: the read side makes a second row; mark_success folds it.
    let r4 = insert(&client, None, "NoExt").await;
    let e = writeback::claim_pending(&client, &s, &m, 10).await.unwrap();
    let ins = e.iter().find(|e| e.record_id == r4).unwrap();
    let s4 = "001000000000004AAA";
    merge(
        &mut client,
        &m,
        &[(s4, t1, false, None, None, Some("NoExt"))],
    )
    .await;
    assert_eq!(count_rows(&client, "name = 'NoExt'").await, 2);
    writeback::mark_success(
        &mut client,
        &s,
        &m,
        &[Sent {
            log_id: ins.id,
            sfid: Some(s4.into()),
        }],
    )
    .await
    .unwrap();
    assert_eq!(count_rows(&client, "name = 'NoExt'").await, 1);
    assert_eq!(row(&client, r4).await.unwrap().0.as_deref(), Some(s4));
    // r1's update, r2's delete, r3's and r4's inserts: none of the engine's writes.
    assert_eq!(log(&client).await.len(), 4);
}

#[tokio::test]
async fn fixing_a_row_whose_insert_failed_sends_the_whole_row() {
    let db = TestDb::create().await;
    let (mut client, m) = setup(&db, "read_write").await;
    let s = schema();
    let id = insert(&client, Some("X1"), "A").await;
    let e = writeback::claim_pending(&client, &s, &m, 10).await.unwrap();
    writeback::mark_failed(
        &mut client,
        &s,
        &m,
        &[Failure {
            log_id: e[0].id,
            message: "Required fields are missing: [Industry]".into(),
            code: Some("REQUIRED_FIELD_MISSING".into()),
        }],
    )
    .await
    .unwrap();
    client
        .execute(
            "UPDATE salesforce.account SET industry = 'Tech' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (_, lastop, err, ..) = row(&client, id).await.unwrap();
    assert_eq!((lastop.as_deref(), err), (Some("PENDING"), None));
    let e = writeback::claim_pending(&client, &s, &m, 10).await.unwrap();
    assert_eq!((e[0].action, e[0].sfid.as_deref()), (Action::Update, None));
    assert_eq!(
        e[0].sf_values(&m),
        vec![
            ("External_Id__c", Some("X1")),
            ("Industry", Some("Tech")),
            ("Name", Some("A"))
        ]
    );
    assert_eq!(e[0].upsert_value.as_deref(), Some("X1"));
}

/// A login role for the test, dropped (after the database) even when the test fails.
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
async fn an_application_role_without_trigger_log_grants_is_captured() {
    let role = TestRole(format!("driftless_app_{}", uuid::Uuid::new_v4().simple()));
    let db = TestDb::create().await;
    let (client, _m) = setup(&db, "read_write").await;
    let r = &role.0;
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{r}\" LOGIN;
             GRANT USAGE ON SCHEMA salesforce TO \"{r}\";
             GRANT SELECT, INSERT, UPDATE, DELETE ON salesforce.account TO \"{r}\";
             GRANT USAGE ON SEQUENCE salesforce.account_id_seq TO \"{r}\";"
        ))
        .await
        .unwrap();
    let app_url = db.url.replacen("postgres@", &format!("{r}@"), 1);
    let app = connect(&app_url).await;
    let id = insert(&app, Some("X1"), "A").await;
    app.execute("UPDATE salesforce.account SET name = 'B'", &[])
        .await
        .unwrap();
    app.execute("DELETE FROM salesforce.account", &[])
        .await
        .unwrap();
    let l = log(&client).await;
    assert_eq!(
        l.iter()
            .map(|e| (e.record_id, e.state.as_str(), e.action.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (id, "NEW", "INSERT"),
            (id, "NEW", "UPDATE"),
            (id, "NEW", "DELETE")
        ]
    );
    assert!(app
        .query("SELECT 1 FROM salesforce._trigger_log", &[])
        .await
        .is_err());
    drop(app);
}

#[tokio::test]
async fn claims_go_in_order_per_record_and_skip_locked_entries() {
    let db = TestDb::create().await;
    let (mut client, m) = setup(&db, "read_write").await;
    let s = schema();
    let r1 = insert(&client, Some("X1"), "A").await; // entry 1
    client
        .execute(
            "UPDATE salesforce.account SET name = 'A2' WHERE id = $1",
            &[&r1],
        )
        .await
        .unwrap(); // entry 2, waits behind 1
    let r2 = insert(&client, Some("X2"), "B").await; // entry 3

    let first = writeback::claim_pending(&client, &s, &m, 10).await.unwrap();
    let got: Vec<_> = first
        .iter()
        .map(|e| (e.id, e.action, e.record_id))
        .collect();
    assert_eq!(got, vec![(1, Action::Insert, r1), (3, Action::Insert, r2)]);
    assert_eq!(first[0].upsert_value.as_deref(), Some("X1"));
    assert_eq!(first[0].attempts, 1);
    assert_eq!(first[0].sfid, None);
    assert_eq!(
        first[0].sf_values(&m),
        vec![
            ("External_Id__c", Some("X1")),
            ("Industry", None),
            ("Name", Some("A"))
        ]
    );
    assert!(
        writeback::claim_pending(&client, &s, &m, 10)
            .await
            .unwrap()
            .is_empty(),
        "in flight entries and the ones behind them are not handed out again"
    );

    // The insert succeeds: the sfid lands on the row and on entry 2, without a new entry.
    let n = writeback::mark_success(
        &mut client,
        &s,
        &m,
        &[Sent {
            log_id: 1,
            sfid: Some(S1.into()),
        }],
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(log(&client).await.len(), 3);
    let (sfid, lastop, ..) = row(&client, r1).await.unwrap();
    assert_eq!(sfid.as_deref(), Some(S1));
    assert_eq!(
        lastop.as_deref(),
        Some("PENDING"),
        "entry 2 is still waiting"
    );
    let next = writeback::claim_pending(&client, &s, &m, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].id, next[0].action), (2, Action::Update));
    assert_eq!(next[0].sfid.as_deref(), Some(S1));
    assert_eq!(next[0].values.len(), 1);
    writeback::mark_success(
        &mut client,
        &s,
        &m,
        &[Sent {
            log_id: 2,
            sfid: None,
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        row(&client, r1).await.unwrap().1.as_deref(),
        Some("UPDATED")
    );
    assert_eq!(
        writeback::mark_success(
            &mut client,
            &s,
            &m,
            &[Sent {
                log_id: 2,
                sfid: None
            }]
        )
        .await
        .unwrap(),
        0,
        "a settled entry is not settled twice"
    );

    // Crash recovery: the in-flight insert of r2 goes back to NEW and is claimed again.
    assert_eq!(
        writeback::recover_in_flight(&client, &s, &m.table)
            .await
            .unwrap(),
        1
    );
    let again = writeback::claim_pending(&client, &s, &m, 10).await.unwrap();
    assert_eq!((again[0].id, again[0].attempts), (3, 2));

    // Transient failure: back to NEW, not before the delay.
    writeback::retry_later(
        &client,
        &s,
        &m,
        &[Retry {
            log_id: 3,
            delay: Duration::from_secs(3600),
            message: "503".into(),
        }],
    )
    .await
    .unwrap();
    assert_eq!(log(&client).await[2].state, "NEW");
    assert!(writeback::claim_pending(&client, &s, &m, 10)
        .await
        .unwrap()
        .is_empty());
    client
        .execute(
            "UPDATE salesforce._driftless_writeback SET not_before = now() WHERE log_id = 3",
            &[],
        )
        .await
        .unwrap();
    let again = writeback::claim_pending(&client, &s, &m, 10).await.unwrap();
    assert_eq!((again[0].id, again[0].attempts), (3, 3));
}
