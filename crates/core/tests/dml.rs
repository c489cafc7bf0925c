//! The staging → merge path against the real Postgres: idempotent, monotonic, deletes stay deleted.

mod common;

use chrono::NaiveDateTime;
use common::{account_describe, connect, mappings, TestDb};
use driftless_core::dml;
use driftless_core::ident::Ident;
use driftless_core::mapping::ResolvedMapping;
use driftless_core::migrate::ensure_schema;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

type Row<'a> = (&'a str, &'a str, bool, Option<&'a str>);

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
}

/// One batch through staging and merge, in one transaction: (deleted, changed).
async fn apply(
    client: &mut Client,
    schema: &Ident,
    m: &ResolvedMapping,
    rows: &[Row<'_>],
) -> (i64, i64) {
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&dml::create_staging_table(schema, m))
        .await
        .unwrap();
    let types: Vec<_> = dml::staging_columns(m)
        .iter()
        .map(|(_, t)| t.postgres_type())
        .collect();
    let sink = tx
        .copy_in(&dml::copy_into_staging(schema, m))
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for (sfid, stamp, deleted, name) in rows {
        let stamp = ts(stamp);
        let values: [&(dyn ToSql + Sync); 4] = [sfid, &stamp, deleted, name];
        writer.as_mut().write(&values).await.unwrap();
    }
    writer.finish().await.unwrap();
    let r = tx
        .query_one(&dml::merge_from_staging(schema, m), &[&"acme", &"Account"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (r.get(0), r.get(1))
}

async fn name_of(client: &Client, sfid: &str) -> Option<Option<String>> {
    client
        .query_opt(
            "SELECT name FROM salesforce.account WHERE sfid = $1",
            &[&sfid],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test]
async fn merge_is_idempotent_monotonic_and_keeps_deletes() {
    let db = TestDb::create().await;
    let mut client = connect(&db.url).await;
    let schema = Ident::from_sf_name("salesforce").unwrap();
    let f = mappings(r#""Id":{},"Name":{}"#, "");
    let m = ensure_schema(&mut client, &schema, &f.mappings[0], &account_describe())
        .await
        .unwrap()
        .mapping;
    let a = "001000000000001AAA";
    let b = "001000000000002AAA";

    let batch = [
        (a, "2024-06-25 10:00:00", false, Some("A1")),
        (b, "2024-06-25 10:00:00", false, Some("B1")),
    ];
    assert_eq!(apply(&mut client, &schema, &m, &batch).await, (0, 2));
    assert_eq!(
        apply(&mut client, &schema, &m, &batch).await,
        (0, 0),
        "idempotent"
    );
    let lastop: String = client
        .query_one(
            "SELECT _hc_lastop FROM salesforce.account WHERE sfid = $1",
            &[&a],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(lastop, "SYNCED");

    // Older never overwrites newer; within a batch the newest version wins.
    let stale = [(a, "2024-06-25 09:00:00", false, Some("A0"))];
    assert_eq!(apply(&mut client, &schema, &m, &stale).await, (0, 0));
    assert_eq!(name_of(&client, a).await, Some(Some("A1".into())));
    let two_versions = [
        (a, "2024-06-25 10:05:00", false, Some("A3")),
        (a, "2024-06-25 10:02:00", false, Some("A2")),
    ];
    assert_eq!(apply(&mut client, &schema, &m, &two_versions).await, (0, 1));
    assert_eq!(name_of(&client, a).await, Some(Some("A3".into())));

    // Same stamp, different value (a missed write, a formula): repaired and counted.
    let same_stamp = [(a, "2024-06-25 10:05:00", false, Some("A3b"))];
    assert_eq!(apply(&mut client, &schema, &m, &same_stamp).await, (0, 1));

    // Deleted in Salesforce: deleted here, and a stale read cannot bring it back.
    let delete = [(a, "2024-06-25 10:10:00", true, Some("A3b"))];
    assert_eq!(apply(&mut client, &schema, &m, &delete).await, (1, 0));
    assert_eq!(name_of(&client, a).await, None);
    let resurrect = [(a, "2024-06-25 10:05:00", false, Some("A3b"))];
    assert_eq!(apply(&mut client, &schema, &m, &resurrect).await, (0, 0));
    assert_eq!(name_of(&client, a).await, None);
    assert_eq!(
        apply(&mut client, &schema, &m, &delete).await,
        (0, 0),
        "idempotent delete"
    );

    // Undeleted in Salesforce: a newer stamp, so it comes back.
    let undelete = [(a, "2024-06-25 10:20:00", false, Some("A4"))];
    assert_eq!(apply(&mut client, &schema, &m, &undelete).await, (0, 1));
    assert_eq!(name_of(&client, a).await, Some(Some("A4".into())));
    assert_eq!(name_of(&client, b).await, Some(Some("B1".into())));
}

/// The fresh-table path: indexes dropped, rows copied straight into the table, indexes built at
/// the end; a record that reached the load twice keeps its newest version and the unique index
/// is valid.
#[tokio::test]
async fn fresh_load_copies_into_the_table_and_resolves_duplicates_before_the_unique_index() {
    use driftless_core::fresh_load;

    let db = TestDb::create().await;
    let mut client = connect(&db.url).await;
    let schema = Ident::from_sf_name("salesforce").unwrap();
    let f = mappings(r#""Id":{},"Name":{}"#, r#""Name":{"unique":false}"#);
    let m = ensure_schema(&mut client, &schema, &f.mappings[0], &account_describe())
        .await
        .unwrap()
        .mapping;
    for sql in fresh_load::drop_indexes(&schema, &m) {
        client.batch_execute(&sql).await.unwrap();
    }
    assert_eq!(
        index_count(&client).await,
        0,
        "indexes dropped for the load"
    );

    let a = "001000000000001AAA";
    let b = "001000000000002AAA";
    let rows = [
        (a, "2024-06-25 10:00:00", Some("A old")),
        (b, "2024-06-25 10:00:00", Some("B")),
        // `a` again from a later chunk, changed meanwhile; then again, unchanged.
        (a, "2024-06-25 10:05:00", Some("A new")),
        (a, "2024-06-25 10:05:00", Some("A new")),
    ];
    let mut tx = client.transaction().await.unwrap();
    let types: Vec<_> = fresh_load::copy_columns(&m)
        .iter()
        .map(|(_, t)| t.postgres_type())
        .collect();
    let sink = tx
        .copy_in(&fresh_load::copy_into_table(&schema, &m))
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for (sfid, stamp, name) in rows {
        let stamp = ts(stamp);
        let values: [&(dyn ToSql + Sync); 5] = [&sfid, &stamp, &false, &name, &"SYNCED"];
        writer.as_mut().write(&values).await.unwrap();
    }
    writer.finish().await.unwrap();
    let built = fresh_load::build_indexes(&mut tx, &schema, &m)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(built.duplicates_removed, 2);
    assert_eq!(name_of(&client, a).await, Some(Some("A new".into())));
    assert_eq!(name_of(&client, b).await, Some(Some("B".into())));
    assert_eq!(index_count(&client).await, 3, "sfid, systemmodstamp, name");
    let (valid, unique): (bool, bool) = client
        .query_one(
            "SELECT indisvalid, indisunique FROM pg_index \
             WHERE indexrelid = 'salesforce.hcu_idx_account_sfid'::regclass",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(valid && unique);
    let lastop: String = client
        .query_one(
            "SELECT _hc_lastop FROM salesforce.account WHERE sfid = $1",
            &[&b],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(lastop, "SYNCED");

    // Without duplicates the indexes are built on the first attempt.
    client
        .batch_execute("TRUNCATE salesforce.account")
        .await
        .unwrap();
    for sql in fresh_load::drop_indexes(&schema, &m) {
        client.batch_execute(&sql).await.unwrap();
    }
    let mut tx = client.transaction().await.unwrap();
    let built = fresh_load::build_indexes(&mut tx, &schema, &m)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(built.duplicates_removed, 0);
    assert_eq!(index_count(&client).await, 3);
}

async fn index_count(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'salesforce' \
             AND tablename = 'account' AND indexname <> 'account_pkey'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}
