//! Against the real Postgres (`DRIFTLESS_TEST_DATABASE_URL`, default the local server), each test
//! in its own throwaway database.

use std::time::Duration;

use tokio_postgres::Client;

use super::*;
use crate::cluster::assign::Assignment;

use driftless_testdb::{connect_with_task as connect, TestDb};

async fn setup() -> (TestDb, Client, ClusterStore) {
    let db = TestDb::create().await;
    let client = db.client().await;
    let store = ClusterStore::default();
    store.create_tables(&client).await.unwrap();
    // Idempotent.
    store.create_tables(&client).await.unwrap();
    (db, client, store)
}

const LEASE: Duration = Duration::from_secs(30);

fn a(connection: &str, object: &str, worker: &str) -> Assignment {
    Assignment {
        connection: connection.into(),
        object: object.into(),
        worker: worker.into(),
    }
}

#[tokio::test]
async fn cluster_register_heartbeat_and_reregister() {
    let (_db, client, store) = setup().await;
    let l1 = store
        .register(&client, "w1", "0.1.0", 1, LEASE)
        .await
        .unwrap();
    assert_eq!(l1.lease_epoch, 1);
    assert!(l1.expires_in > Duration::from_secs(25) && l1.expires_in <= LEASE);
    let l2 = store
        .register(&client, "w2", "0.1.0", 2, LEASE)
        .await
        .unwrap();
    assert_ne!(l1.worker_id, l2.worker_id);

    let renewed = store
        .heartbeat(&client, l1.worker_id, l1.lease_epoch, LEASE)
        .await
        .unwrap();
    assert_eq!(
        (renewed.worker_id, renewed.lease_epoch),
        (l1.worker_id, l1.lease_epoch)
    );

    // The same name registers again (a restarted process): same id, new lease; the old
    // incarnation's heartbeats fail from now on.
    let again = store
        .register(&client, "w1", "0.2.0", 3, LEASE)
        .await
        .unwrap();
    assert_eq!(again.worker_id, l1.worker_id);
    assert_eq!(again.lease_epoch, 2);
    let err = store
        .heartbeat(&client, l1.worker_id, l1.lease_epoch, LEASE)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClusterError::LeaseLost { lease_epoch: 1, .. }),
        "{err}"
    );
    assert!(matches!(
        store.heartbeat(&client, 999_999, 1, LEASE).await,
        Err(ClusterError::LeaseLost { .. })
    ));

    let workers = store.workers(&client).await.unwrap();
    assert_eq!(
        workers
            .iter()
            .map(|w| (
                w.name.as_str(),
                w.version.as_str(),
                w.capacity,
                w.lease_epoch
            ))
            .collect::<Vec<_>>(),
        vec![("w1", "0.2.0", 3, 2), ("w2", "0.1.0", 2, 1)]
    );
    assert!(workers[0].last_heartbeat >= workers[0].registered_at);
}

#[tokio::test]
async fn cluster_leases_expire_and_expired_workers_are_removed() {
    let (_db, client, store) = setup().await;
    let live = store
        .register(&client, "live", "0.1.0", 1, LEASE)
        .await
        .unwrap();
    // A zero lease has run out by the time anyone looks at it.
    let dead = store
        .register(&client, "dead", "0.1.0", 1, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(dead.expires_in, Duration::ZERO);

    let names = |ws: Vec<WorkerRecord>| ws.into_iter().map(|w| w.name).collect::<Vec<_>>();
    assert_eq!(names(store.live_workers(&client).await.unwrap()), ["live"]);
    assert_eq!(
        names(store.expired_workers(&client).await.unwrap()),
        ["dead"]
    );
    // An expired lease cannot be renewed: the worker must register again.
    assert!(matches!(
        store
            .heartbeat(&client, dead.worker_id, dead.lease_epoch, LEASE)
            .await,
        Err(ClusterError::LeaseLost { .. })
    ));

    assert_eq!(
        store.remove_expired_workers(&client).await.unwrap(),
        ["dead"]
    );
    assert_eq!(names(store.workers(&client).await.unwrap()), ["live"]);
    assert!(store
        .remove_expired_workers(&client)
        .await
        .unwrap()
        .is_empty());

    // Deregister needs the current lease.
    assert!(!store
        .deregister(&client, live.worker_id, live.lease_epoch + 1)
        .await
        .unwrap());
    assert!(store
        .deregister(&client, live.worker_id, live.lease_epoch)
        .await
        .unwrap());
    assert!(store.workers(&client).await.unwrap().is_empty());
}

#[tokio::test]
async fn cluster_epochs_bump_on_every_reassignment_only() {
    let (_db, mut client, store) = setup().await;
    let first = store
        .persist_assignments(
            &mut client,
            &[
                a("acme", "Account", "w1"),
                a("acme", "Contact", "w1"),
                a("beta", "Lead", "w2"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    let epochs: std::collections::BTreeSet<i64> = first.iter().map(|s| s.owner_epoch).collect();
    assert_eq!(epochs.len(), 3, "every new mapping gets its own epoch");
    // Above the creation time in microseconds, so a re-created state database still outruns the
    // epochs target databases have seen (2020-01-01 = 1.577e15 us).
    assert!(epochs.iter().all(|e| *e > 1_577_836_800_000_000));

    // Same plan again (a coordinator restart): nothing changes, not even assigned_at.
    let same = store
        .persist_assignments(
            &mut client,
            &first
                .iter()
                .map(StoredAssignment::assignment)
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(same, first);

    // acme moves to w3, beta stays, a new mapping appears, Contact is removed from the config.
    let next = store
        .persist_assignments(
            &mut client,
            &[
                a("acme", "Account", "w3"),
                a("beta", "Lead", "w2"),
                a("beta", "Case", "w2"),
            ],
        )
        .await
        .unwrap();
    let by = |v: &[StoredAssignment], c: &str, o: &str| {
        v.iter()
            .find(|s| s.connection == c && s.object == o)
            .cloned()
    };
    let max_before = first.iter().map(|s| s.owner_epoch).max().unwrap();
    let account = by(&next, "acme", "Account").unwrap();
    assert_eq!(account.worker, "w3");
    assert!(account.owner_epoch > max_before);
    assert_eq!(
        by(&next, "beta", "Lead").unwrap(),
        by(&first, "beta", "Lead").unwrap()
    );
    assert!(by(&next, "beta", "Case").unwrap().owner_epoch > max_before);
    assert!(by(&next, "acme", "Contact").is_none());
    assert_eq!(store.load_assignments(&client).await.unwrap(), next);

    // Removed and added back: still a fresh, larger epoch, never the old one.
    let back = store
        .persist_assignments(
            &mut client,
            &[a("acme", "Account", "w3"), a("acme", "Contact", "w3")],
        )
        .await
        .unwrap();
    let contact = by(&back, "acme", "Contact").unwrap();
    assert!(contact.owner_epoch > next.iter().map(|s| s.owner_epoch).max().unwrap());

    let w3 = store.assignments_of(&client, "w3").await.unwrap();
    assert_eq!(w3, back);
    assert!(store
        .assignments_of(&client, "w2")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn cluster_reregistering_a_name_fences_its_old_incarnation() {
    let (_db, mut client, store) = setup().await;
    store
        .register(&client, "w1", "0.1.0", 1, LEASE)
        .await
        .unwrap();
    let before = store
        .persist_assignments(
            &mut client,
            &[a("acme", "Account", "w1"), a("beta", "Lead", "w2")],
        )
        .await
        .unwrap();
    store
        .register(&client, "w1", "0.1.0", 1, LEASE)
        .await
        .unwrap();
    let after = store.load_assignments(&client).await.unwrap();
    assert_eq!(after[0].worker, "w1");
    assert!(after[0].owner_epoch > before[0].owner_epoch);
    assert_eq!(
        after[1], before[1],
        "other workers' mappings keep their epoch"
    );
}

#[tokio::test]
async fn cluster_restart_loads_what_was_persisted() {
    let (db, mut client, store) = setup().await;
    let plan = vec![a("acme", "Account", "w1"), a("acme", "Contact", "w1")];
    let stored = store.persist_assignments(&mut client, &plan).await.unwrap();
    drop(client);
    // A new coordinator process: new connection, new store value.
    let client = db.client().await;
    let store = ClusterStore::new(&Ident::from_sf_name("driftless").unwrap());
    store.create_tables(&client).await.unwrap();
    let loaded = store.load_assignments(&client).await.unwrap();
    assert_eq!(loaded, stored);
    assert_eq!(
        loaded
            .iter()
            .map(StoredAssignment::assignment)
            .collect::<Vec<_>>(),
        plan
    );
}

#[tokio::test]
async fn cluster_standby_lock_is_held_until_the_session_ends() {
    let db = TestDb::create().await;
    let (c1, task1) = connect(&db.url).await;
    let (c2, _task2) = connect(&db.url).await;

    let TryLock::Acquired(active) = StandbyLock::try_acquire(c1).await.unwrap() else {
        panic!("first session must get the lock");
    };
    assert!(active.is_held().await.unwrap());
    let TryLock::Busy(c2) = StandbyLock::try_acquire(c2).await.unwrap() else {
        panic!("second session must not get the lock while the first holds it");
    };
    // Asking again does not help either.
    let TryLock::Busy(c2) = StandbyLock::try_acquire(c2).await.unwrap() else {
        panic!("still held");
    };

    // The holder's process goes away: its session ends, and with it the lock.
    drop(active);
    task1.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut c2 = c2;
    let standby = loop {
        match StandbyLock::try_acquire(c2).await.unwrap() {
            TryLock::Acquired(l) => break l,
            // The server ends the backend shortly after the client's Terminate message.
            TryLock::Busy(c) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "lock not released after the holder's session closed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                c2 = c;
            }
        }
    };
    assert!(standby.is_held().await.unwrap());

    // An explicit release hands it over at once.
    let (c3, _task3) = connect(&db.url).await;
    let TryLock::Busy(c3) = StandbyLock::try_acquire(c3).await.unwrap() else {
        panic!("held by the standby now");
    };
    let c2 = standby.release().await.unwrap();
    let TryLock::Acquired(third) = StandbyLock::try_acquire(c3).await.unwrap() else {
        panic!("released lock must be free");
    };
    assert!(third.is_held().await.unwrap());
    drop(c2);
}

/// The whole fencing chain of invariant 2: an epoch from a reassignment, claimed in the target
/// database, shuts the previous owner out.
#[tokio::test]
async fn cluster_reassignment_epochs_fence_the_previous_owner_in_the_target_database() {
    use crate::state::{self, MappingKey, StateError};

    let (_db, mut client, store) = setup().await;
    let schema = Ident::from_sf_name("salesforce").unwrap();
    client
        .batch_execute("CREATE SCHEMA salesforce")
        .await
        .unwrap();
    for ddl in state::create_tables(&schema) {
        client.batch_execute(&ddl).await.unwrap();
    }
    let key = MappingKey::new(&schema, "acme", "Account");

    let old = store
        .persist_assignments(&mut client, &[a("acme", "Account", "w1")])
        .await
        .unwrap()[0]
        .owner_epoch;
    assert!(state::claim(&client, &key, old, "w1").await.unwrap());
    state::fence(&client, &key, old).await.unwrap();

    let new = store
        .persist_assignments(&mut client, &[a("acme", "Account", "w2")])
        .await
        .unwrap()[0]
        .owner_epoch;
    assert!(new > old);
    assert!(state::claim(&client, &key, new, "w2").await.unwrap());
    assert!(matches!(
        state::fence(&client, &key, old).await,
        Err(StateError::Fenced { .. })
    ));
    assert!(!state::claim(&client, &key, old, "w1").await.unwrap());
    state::fence(&client, &key, new).await.unwrap();
}

#[tokio::test]
async fn cluster_paused_connections_persist_and_bump_epoch_moves_only_one_mapping() {
    let (_db, mut client, store) = setup().await;
    assert!(store.set_paused(&client, "acme", true).await.unwrap());
    assert!(!store.set_paused(&client, "acme", true).await.unwrap());
    assert_eq!(store.paused_connections(&client).await.unwrap(), ["acme"]);
    assert!(store.set_paused(&client, "acme", false).await.unwrap());
    assert!(store.paused_connections(&client).await.unwrap().is_empty());

    let before = store
        .persist_assignments(
            &mut client,
            &[a("acme", "Account", "w1"), a("acme", "Contact", "w1")],
        )
        .await
        .unwrap();
    let bumped = store
        .bump_epoch(&client, "acme", "Account")
        .await
        .unwrap()
        .unwrap();
    let after = store.load_assignments(&client).await.unwrap();
    assert!(bumped > before[0].owner_epoch);
    assert_eq!(after[0].owner_epoch, bumped);
    assert_eq!(after[1].owner_epoch, before[1].owner_epoch);
    assert_eq!(after[0].worker, "w1");
    assert!(store
        .bump_epoch(&client, "acme", "Lead")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn cluster_a_new_coordinator_extends_every_lease_once() {
    let (_db, client, store) = setup().await;
    store
        .register(&client, "w1", "v", 1, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.live_workers(&client).await.unwrap().len(), 0);
    assert_eq!(store.extend_leases(&client, LEASE).await.unwrap(), 1);
    let live = store.live_workers(&client).await.unwrap();
    assert_eq!(live.len(), 1);
    assert!(live[0].lease_expires > chrono::Utc::now() + chrono::Duration::seconds(20));
}
