//! The Pub/Sub subscriber against the simulator's gRPC endpoint over TLS: events decoded by the
//! schema their id names, replay from a stored id, reconnects after stream resets, one session
//! renewal when the token expired, and a missing topic reported as such.

mod common;

use std::time::Duration;

use common::*;
use salesforce::{ChangeEvent, ChangeType, ErrorKind, PubSubConfig, ReplayFrom, Subscriber};
use sfsim::value::Value as SfValue;

const WAIT: Duration = Duration::from_secs(20);

fn pubsub(sim: &sfsim::RunningSim) -> PubSubConfig {
    let mut c = PubSubConfig::new(sim.pubsub_endpoint.clone());
    c.reconnect.base = Duration::from_millis(20);
    c
}

fn create_accounts(sim: &sfsim::RunningSim, names: &[&str]) -> Vec<String> {
    let org = &sim.state.org;
    let a = org.schema.object_index("Account").unwrap();
    let name = org.schema.objects[a].field_index("Name").unwrap();
    names
        .iter()
        .map(|n| {
            let mut txn = org.begin();
            let id = org
                .create(&mut txn, a, vec![(name, SfValue::text(*n))])
                .unwrap();
            org.commit(txn);
            id
        })
        .collect()
}

/// Events until `n` have arrived, keepalives skipped.
async fn events(sub: &mut Subscriber, n: usize) -> Vec<ChangeEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("events in time")
            .expect("no error");
        out.extend(batch.events);
    }
    out
}

/// Waits until the stream is open: the first keepalive arrives.
async fn opened(sub: &mut Subscriber) {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("keepalive in time")
        .expect("stream opens");
}

fn keepalive_every_100ms(c: &mut sfsim::SimConfig) {
    c.pubsub_keepalive = Duration::from_millis(100);
}

#[tokio::test]
async fn events_decode_and_a_new_subscriber_resumes_after_a_stored_replay_id() {
    let sim = sim_with(&[], keepalive_every_100ms).await;
    let client = client(&sim.info).await;
    let mut sub = Subscriber::new(
        client.clone(),
        pubsub(&sim),
        salesforce::change_event_topic("Account"),
        ReplayFrom::Latest,
    );
    opened(&mut sub).await;
    let ids = create_accounts(&sim, &["a", "b", "c"]);
    let got = events(&mut sub, 3).await;
    assert_eq!(got.len(), 3);
    for (e, id) in got.iter().zip(&ids) {
        assert_eq!(e.entity, "Account");
        assert_eq!(e.change_type, ChangeType::Create);
        assert_eq!(&e.record_ids, &vec![id.clone()]);
        assert!(e.commit_timestamp.is_some());
    }
    // What a restart does with the replay id it committed after the first event.
    let mut resumed = Subscriber::new(
        client,
        pubsub(&sim),
        salesforce::change_event_topic("Account"),
        ReplayFrom::After(got[0].replay_id.clone()),
    );
    let again = events(&mut resumed, 2).await;
    assert_eq!(again[0].record_ids, vec![ids[1].clone()]);
    assert_eq!(again[1].record_ids, vec![ids[2].clone()]);
    sim.stop().await;
}

#[tokio::test]
async fn stream_resets_and_an_expired_session_lose_no_event() {
    let sim = sim_with(&[], keepalive_every_100ms).await;
    let client = client(&sim.info).await;
    set_faults(
        &sim,
        serde_json::json!({"pubsub_stream_reset_secs": 1, "session_expiry_secs": 2}),
    )
    .await;
    let mut sub = Subscriber::new(
        client.clone(),
        pubsub(&sim),
        salesforce::ALL_CHANGE_EVENTS,
        ReplayFrom::Latest,
    );
    opened(&mut sub).await;
    let logins = client.logins();
    let mut want = Vec::new();
    let mut got = Vec::new();
    for round in 0..4 {
        let names: Vec<String> = (0..5).map(|i| format!("r{round}-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        want.extend(create_accounts(&sim, &refs));
        got.extend(events(&mut sub, 5).await);
        // Long enough for a reset and, every other round, an expired session.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let got_ids: Vec<String> = got.iter().flat_map(|e| e.record_ids.clone()).collect();
    assert_eq!(got_ids, want, "every event once, in commit order");
    let stats = sub.stats();
    assert!(stats.connects > 1, "{stats:?}");
    assert!(stats.session_renewals >= 1, "{stats:?}");
    assert!(client.logins() > logins);
    sim.stop().await;
}

#[tokio::test]
async fn a_topic_that_does_not_exist_is_not_found() {
    let sim = sim_with(&[], |_| {}).await;
    let client = client(&sim.info).await;
    let mut sub = Subscriber::new(
        client,
        pubsub(&sim),
        "/data/NoSuchObjectChangeEvent",
        ReplayFrom::Latest,
    );
    let e = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("an answer in time")
        .expect_err("no such topic");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    sim.stop().await;
}
