//! ensure_schema and the bookkeeping statements against the real Postgres (SPEC.md §1
//! `DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/postgres), in a throwaway database.

use chrono::{DateTime, Duration, Utc};
mod common;

use common::{account_describe, connect, fd, mappings, TestDb};
use driftless_core::ident::Ident;
use driftless_core::migrate::{ensure_schema, MigrateError};
use driftless_core::state::{self, PrimaryCommit, ReadKind, SecondaryCommit, StateError};
use driftless_core::window::Window;
use tokio_postgres::Client;

async fn columns(client: &Client, table: &str) -> Vec<String> {
    client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'salesforce' AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn ensure_schema_is_idempotent_and_additive() {
    let db = TestDb::create().await;
    let mut client = connect(&db.url).await;
    let schema = Ident::from_sf_name("salesforce").unwrap();
    let describe = account_describe();

    let v1 = mappings(
        r#""Id":{},"Name":{},"AnnualRevenue":{}"#,
        r#""Id":{"unique":true},"SystemModstamp":{"unique":false},"Name":{"unique":false}"#,
    );
    let first = ensure_schema(&mut client, &schema, &v1.mappings[0], &describe)
        .await
        .unwrap();
    assert!(first.created_table);
    assert!(first.added_fields.is_empty());
    assert_eq!(
        first.created_indexes,
        vec![
            "hcu_idx_account_sfid",
            "hc_idx_account_systemmodstamp",
            "hc_idx_account_name"
        ]
    );
    assert_eq!(
        columns(&client, "account").await,
        vec![
            "id",
            "sfid",
            "systemmodstamp",
            "isdeleted",
            "_hc_lastop",
            "_hc_err",
            "annualrevenue",
            "name"
        ]
    );
    for t in [
        "_driftless_mapping_state",
        "_driftless_windows",
        "_trigger_log",
        "_trigger_log_archive",
    ] {
        assert!(!columns(&client, t).await.is_empty(), "{t} missing");
    }
    let collation: Option<String> = client
        .query_one(
            "SELECT collation_name::text FROM information_schema.columns \
             WHERE table_schema = 'salesforce' AND table_name = 'account' AND column_name = 'sfid'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(collation.as_deref(), Some("C"));

    client
        .batch_execute(
            "INSERT INTO salesforce.account (sfid, systemmodstamp, name) \
             VALUES ('001000000000001AAA', '2024-06-25 10:00:00', 'Acme')",
        )
        .await
        .unwrap();

    let again = ensure_schema(&mut client, &schema, &v1.mappings[0], &describe)
        .await
        .unwrap();
    assert!(!again.created_table);
    assert!(again.added_fields.is_empty());
    assert!(again.created_indexes.is_empty());
    assert!(again.type_mismatches.is_empty());

    let v2 = mappings(
        r#""Id":{},"Name":{},"AnnualRevenue":{},"Industry":{}"#,
        r#""Id":{"unique":true},"SystemModstamp":{"unique":false},"Name":{"unique":false},"Industry":{"unique":false}"#,
    );
    let grown = ensure_schema(&mut client, &schema, &v2.mappings[0], &describe)
        .await
        .unwrap();
    assert!(!grown.created_table);
    assert_eq!(grown.added_fields, vec!["Industry"]);
    assert_eq!(grown.created_indexes, vec!["hc_idx_account_industry"]);
    assert_eq!(
        columns(&client, "account").await.last().unwrap(),
        "industry"
    );
    let name: String = client
        .query_one(
            "SELECT name FROM salesforce.account WHERE sfid = '001000000000001AAA'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Acme", "rows survive a mapping edit");

    // Unmapping a field drops nothing.
    let shrunk = ensure_schema(&mut client, &schema, &v1.mappings[0], &describe)
        .await
        .unwrap();
    assert!(shrunk.added_fields.is_empty());
    assert!(columns(&client, "account")
        .await
        .contains(&"industry".to_owned()));

    // A describe type change is reported, not applied.
    let mut changed = describe.clone();
    changed.fields[3] = fd("Name", "textarea", 255);
    let report = ensure_schema(&mut client, &schema, &v1.mappings[0], &changed)
        .await
        .unwrap();
    assert_eq!(
        report.type_mismatches,
        vec![(
            "name".to_owned(),
            "character varying".to_owned(),
            "text".to_owned()
        )]
    );
}

#[tokio::test]
async fn foreign_tables_are_not_taken_over() {
    let db = TestDb::create().await;
    let mut client = connect(&db.url).await;
    client
        .batch_execute("CREATE SCHEMA salesforce; CREATE TABLE salesforce.account (x int)")
        .await
        .unwrap();
    let schema = Ident::from_sf_name("salesforce").unwrap();
    let m = mappings(r#""Id":{}"#, "");
    let e = ensure_schema(&mut client, &schema, &m.mappings[0], &account_describe())
        .await
        .unwrap_err();
    assert!(
        matches!(e, MigrateError::ForeignTable { column: "sfid", .. }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "table \"salesforce\".\"account\" exists but is not a mapped table: it has no sfid column"
    );
}

fn at(s: &str) -> DateTime<Utc> {
    driftless_core::window::parse_sf_datetime(s).unwrap()
}

#[tokio::test]
async fn progress_commits_are_fenced_and_contiguous() {
    let db = TestDb::create().await;
    let mut client = connect(&db.url).await;
    let schema = Ident::from_sf_name("salesforce").unwrap();
    let m = mappings(r#""Id":{},"Name":{}"#, "");
    ensure_schema(&mut client, &schema, &m.mappings[0], &account_describe())
        .await
        .unwrap();
    let key = state::MappingKey::new(&schema, "acme", "Account");

    assert!(state::claim(&client, &key, 1, "w1").await.unwrap());
    let t0 = at("2024-06-25T10:00:00Z");
    {
        let tx = client.transaction().await.unwrap();
        state::fence(&tx, &key, 1).await.unwrap();
        state::commit_initial_load(&tx, &key, 1, Some("001000000000001AAA"), 10, Some(t0))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let s = state::load(&client, &key).await.unwrap().unwrap();
    assert!(s.initial_load_done);
    assert_eq!(s.synced_through, Some(t0));

    let w = Window::new(t0, at("2024-06-25T10:10:00Z")).unwrap();
    let commit = PrimaryCommit {
        window: w,
        kind: ReadKind::Bulk,
        batches: w.split(2),
        records: 42,
        bulk_jobs: 1,
        rest_queries: 0,
        api_calls: 5,
        secondary_due_at: at("2024-06-25T10:15:00Z"),
    };
    let window_id = {
        let tx = client.transaction().await.unwrap();
        state::fence(&tx, &key, 1).await.unwrap();
        let id = state::commit_primary_window(&tx, &key, 1, &commit)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        id
    };
    let s = state::load(&client, &key).await.unwrap().unwrap();
    assert_eq!(s.synced_through, Some(w.end));
    assert_eq!(
        (s.counters.primary_polls, s.counters.primary_records),
        (1, 52)
    );
    assert_eq!(s.counters.primary_bulk_batches, 2);

    // The same window again would overlap committed progress.
    let e = state::commit_primary_window(&client, &key, 1, &commit)
        .await
        .unwrap_err();
    assert!(matches!(e, StateError::NotContiguous { .. }), "{e}");

    let due = state::due_secondary_windows(&client, &key, at("2024-06-25T10:14:59Z"), 10)
        .await
        .unwrap();
    assert!(due.is_empty(), "not due yet");
    let due = state::due_secondary_windows(&client, &key, at("2024-06-25T10:15:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, window_id);
    assert_eq!(due[0].window, w);
    assert_eq!(due[0].kind, ReadKind::Bulk);
    assert_eq!(
        due[0].batches,
        w.split(2),
        "secondary reuses the primary batch bounds"
    );

    let sec = SecondaryCommit {
        window_id,
        records: 43,
        drift_records: 1,
        bulk_jobs: 1,
        bulk_batches: 2,
        rest_queries: 0,
        api_calls: 5,
    };
    state::commit_secondary_window(&client, &key, 1, &sec)
        .await
        .unwrap();
    state::commit_secondary_window(&client, &key, 1, &sec)
        .await
        .unwrap();
    let s = state::load(&client, &key).await.unwrap().unwrap();
    assert_eq!(
        (s.counters.secondary_polls, s.counters.drift_records),
        (1, 1),
        "counted once"
    );
    assert!(
        state::due_secondary_windows(&client, &key, at("2030-01-01T00:00:00Z"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A new owner takes over: the old one can no longer commit anything.
    assert!(state::claim(&client, &key, 2, "w2").await.unwrap());
    assert!(
        !state::claim(&client, &key, 1, "w1").await.unwrap(),
        "epochs never go back"
    );
    let e = state::fence(&client, &key, 1).await.unwrap_err();
    assert!(matches!(e, StateError::Fenced { epoch: 1, .. }), "{e}");
    let next = PrimaryCommit {
        window: Window::new(w.end, w.end + Duration::minutes(10)).unwrap(),
        ..commit.clone()
    };
    let e = state::commit_primary_window(&client, &key, 1, &next)
        .await
        .unwrap_err();
    assert!(matches!(e, StateError::Fenced { .. }), "{e}");
    let e = state::set_state(&client, &key, 1, "DATA_SYNCED", None)
        .await
        .unwrap_err();
    assert!(matches!(e, StateError::Fenced { .. }), "{e}");
    state::set_state(&client, &key, 2, "DATA_SYNCED", None)
        .await
        .unwrap();
    state::commit_primary_window(&client, &key, 2, &next)
        .await
        .unwrap();

    assert_eq!(
        state::prune_windows(&client, &key, at("2030-01-01T00:00:00Z"))
            .await
            .unwrap(),
        1,
        "only the secondary-done window goes"
    );
    let tx = client.transaction().await.unwrap();
    state::reset_for_reload(&tx, &key, 2).await.unwrap();
    tx.commit().await.unwrap();
    let s = state::load(&client, &key).await.unwrap().unwrap();
    assert_eq!(
        (s.state.as_str(), s.synced_through, s.initial_load_done),
        ("RELOAD_TABLE", None, false)
    );
}

/// A commit in flight when the lease moves: the new owner's claim waits for it, then the old owner
/// is fenced out.
#[tokio::test]
async fn claim_waits_for_an_inflight_commit() {
    let db = TestDb::create().await;
    let mut a = connect(&db.url).await;
    let b = connect(&db.url).await;
    let schema = Ident::from_sf_name("salesforce").unwrap();
    let m = mappings(r#""Id":{}"#, "");
    ensure_schema(&mut a, &schema, &m.mappings[0], &account_describe())
        .await
        .unwrap();
    let key = state::MappingKey::new(&schema, "acme", "Account");
    assert!(state::claim(&a, &key, 1, "w1").await.unwrap());

    let tx = a.transaction().await.unwrap();
    state::fence(&tx, &key, 1).await.unwrap();
    let key2 = key.clone();
    let claim = tokio::spawn(async move { state::claim(&b, &key2, 2, "w2").await.unwrap() });
    // Wait until b's claim is blocked on our row lock, observed in pg_stat_activity, not a sleep.
    loop {
        let waiting: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            !claim.is_finished(),
            "claim did not wait for the fenced transaction"
        );
        tokio::task::yield_now().await;
    }
    tx.commit().await.unwrap();
    assert!(claim.await.unwrap());
    assert!(state::fence(&a, &key, 1).await.is_err());
}

/// A constraint error says what the server said, not "db error".
#[tokio::test]
async fn postgres_errors_carry_sqlstate_message_detail_table_and_constraint() {
    let db = TestDb::create().await;
    let client = connect(&db.url).await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO t VALUES (1, 'a');",
        )
        .await
        .unwrap();
    let dup = client
        .execute("INSERT INTO t VALUES (1, 'b')", &[])
        .await
        .unwrap_err();
    assert_eq!(
        driftless_core::pgerror::describe(&dup),
        "23505: duplicate key value violates unique constraint \"t_pkey\" \
         (detail: Key (id)=(1) already exists.; table public.t; constraint t_pkey)"
    );
    let null = client
        .execute("INSERT INTO t VALUES (2, NULL)", &[])
        .await
        .unwrap_err();
    let text = driftless_core::pgerror::describe(&null);
    assert!(
        text.starts_with("23502: null value in column \"name\""),
        "{text}"
    );
    assert!(text.contains("table public.t; column name"), "{text}");
    let state = driftless_core::state::StateError::from(dup);
    assert!(
        state.to_string().contains("23505: duplicate key"),
        "{state}"
    );
}
