//! Change Data Capture over the Pub/Sub API, driven through a real gRPC client over TLS.

mod avro_reader;

use serde_json::{json, Value};
use sfsim::pubsub::proto::{
    pub_sub_client::PubSubClient, FetchRequest, FetchResponse, ReplayPreset, SchemaRequest,
    TopicRequest,
};
use sfsim::value::Value as SfValue;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Code, Status, Streaming};

const WAIT: Duration = Duration::from_secs(10);

async fn sim_with(config: sfsim::SimConfig) -> sfsim::RunningSim {
    sfsim::start(config).await.expect("simulator starts")
}

async fn sim() -> sfsim::RunningSim {
    sim_with(sfsim::SimConfig::default()).await
}

#[derive(Clone)]
struct Auth {
    token: String,
    instance_url: String,
    org: String,
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let md = req.metadata_mut();
        md.insert("accesstoken", self.token.parse().unwrap());
        md.insert("instanceurl", self.instance_url.parse().unwrap());
        md.insert("tenantid", self.org.parse().unwrap());
        Ok(req)
    }
}

type Client = PubSubClient<InterceptedService<Channel, Auth>>;

async fn client_with_token(sim: &sfsim::RunningSim, token: &str) -> Client {
    let ca = std::fs::read(
        sim.info
            .ca_cert
            .as_ref()
            .expect("ca_cert is always reported"),
    )
    .unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{}", sim.pubsub_endpoint))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connection to the Pub/Sub endpoint");
    PubSubClient::with_interceptor(
        channel,
        Auth {
            token: token.into(),
            instance_url: sim.info.instance_url.clone(),
            org: sim.info.org_id.clone(),
        },
    )
}

async fn client(sim: &sfsim::RunningSim) -> Client {
    let token = sim.state.sessions.issue();
    client_with_token(sim, &token).await
}

struct Sub {
    tx: mpsc::Sender<FetchRequest>,
    rx: Streaming<FetchResponse>,
}

impl Sub {
    async fn open(client: &mut Client, first: FetchRequest) -> Result<Sub, Status> {
        let (tx, rx) = mpsc::channel(8);
        tx.send(first).await.unwrap();
        let rx = client
            .subscribe(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Sub { tx, rx })
    }

    async fn credit(&self, n: i32) {
        self.tx
            .send(FetchRequest {
                num_requested: n,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Result<FetchResponse, Status> {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a response in time")
            .map(|m| m.expect("stream open"))
    }

    /// Events until `n` have arrived (keepalives skipped).
    async fn events(&mut self, n: usize) -> Vec<sfsim::pubsub::proto::ConsumerEvent> {
        let mut out = vec![];
        while out.len() < n {
            out.extend(self.next().await.expect("no error").events);
        }
        assert_eq!(out.len(), n, "more events than expected");
        out
    }
}

fn fetch(topic: &str, preset: ReplayPreset, replay: Option<u64>, n: i32) -> FetchRequest {
    FetchRequest {
        topic_name: topic.into(),
        replay_preset: preset as i32,
        replay_id: replay.map(|r| r.to_be_bytes().to_vec()).unwrap_or_default(),
        num_requested: n,
        auth_refresh: String::new(),
    }
}

fn replay_of(e: &sfsim::pubsub::proto::ConsumerEvent) -> u64 {
    u64::from_be_bytes(e.replay_id.as_slice().try_into().unwrap())
}

/// Decodes an event with the schema GetSchema gives for its schema_id, by the independent
/// reader.
async fn decode(client: &mut Client, e: &sfsim::pubsub::proto::ConsumerEvent) -> (String, Value) {
    let ev = e.event.as_ref().unwrap();
    let schema = client
        .get_schema(SchemaRequest {
            schema_id: ev.schema_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(schema.schema_id, ev.schema_id);
    let v = avro_reader::decode(&schema.schema_json, &ev.payload);
    (schema.schema_json, v)
}

/// Creates Accounts named `names` in one transaction; returns their ids.
fn create_accounts(sim: &sfsim::RunningSim, names: &[&str]) -> Vec<String> {
    let org = &sim.state.org;
    let a = org.schema.object_index("Account").unwrap();
    let name = org.schema.objects[a].field_index("Name").unwrap();
    let mut txn = org.begin();
    let ids = names
        .iter()
        .map(|n| {
            org.create(&mut txn, a, vec![(name, SfValue::text(*n))])
                .unwrap()
        })
        .collect();
    org.commit(txn);
    ids
}

fn error_code(s: &Status) -> String {
    s.metadata()
        .get("error-code")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

#[tokio::test]
async fn the_ready_line_reports_the_endpoint_and_a_ca_without_tls() {
    let sim = sim().await;
    let line = sim.ready_line();
    assert_eq!(line["pubsub_endpoint"], json!(sim.pubsub_endpoint));
    assert!(sim.pubsub_endpoint.starts_with("127.0.0.1:"));
    assert!(line["instance_url"]
        .as_str()
        .unwrap()
        .starts_with("http://"));
    let ca = line["ca_cert"].as_str().expect("ca_cert without --tls");
    assert!(std::fs::read_to_string(ca)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    sim.stop().await;
}

#[tokio::test]
async fn rest_writes_publish_decodable_events_with_bitmaps() {
    let sim = sim().await;
    let mut c = client(&sim).await;
    let topic = c
        .get_topic(TopicRequest {
            topic_name: "/data/AccountChangeEvent".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(topic.can_subscribe && !topic.can_publish);
    assert_eq!(topic.tenant_guid, sim.info.org_id);
    let mut sub = Sub::open(
        &mut c,
        fetch("/data/AccountChangeEvent", ReplayPreset::Latest, None, 10),
    )
    .await
    .unwrap();

    let base = sim.base_url().to_string();
    let token = sim.state.sessions.issue();
    let h = http().await;
    let url = format!("{base}/services/data/v62.0/sobjects/Account");
    let r: Value = h
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"Name": "Acme", "Phone": "555-0100", "NumberOfEmployees": 12}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    let r = h
        .patch(format!("{url}/{id}"))
        .bearer_auth(&token)
        .json(&json!({"Name": "Acme 2", "Phone": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = h
        .delete(format!("{url}/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let events = sub.events(3).await;
    assert!(replay_of(&events[0]) < replay_of(&events[1]));
    let (schema, create) = decode(&mut c, &events[0]).await;
    let h0 = &create["ChangeEventHeader"];
    assert_eq!(h0["entityName"], "Account");
    assert_eq!(h0["changeType"], "CREATE");
    assert_eq!(h0["recordIds"], json!([id]));
    assert_eq!(h0["commitUser"], json!(sim.state.org.admin_user_id));
    assert_eq!(h0["sequenceNumber"], 1);
    assert_eq!(h0["changedFields"], json!([]));
    assert_eq!(create["Name"], "Acme");
    assert_eq!(create["Phone"], "555-0100");
    assert_eq!(create["NumberOfEmployees"], 12);
    assert!(create["CreatedDate"].as_i64().unwrap() > 0);

    let (_, update) = decode(&mut c, &events[1]).await;
    let h1 = &update["ChangeEventHeader"];
    assert_eq!(h1["changeType"], "UPDATE");
    let bitmap = h1["changedFields"][0].as_str().unwrap();
    assert_eq!(
        bitmap,
        bitmap.to_uppercase().replace("0X", "0x"),
        "upper-case hex"
    );
    let mut changed = avro_reader::bitmap_fields(&schema, &h1["changedFields"]);
    changed.sort();
    assert_eq!(changed, vec!["LastModifiedDate", "Name", "Phone"]);
    assert_eq!(
        avro_reader::bitmap_fields(&schema, &h1["nulledFields"]),
        vec!["Phone"]
    );
    assert_eq!(update["Name"], "Acme 2");
    assert_eq!(update["Phone"], Value::Null);
    assert_eq!(
        update["NumberOfEmployees"],
        Value::Null,
        "unchanged fields are absent"
    );
    assert!(h1["commitNumber"].as_i64() > h0["commitNumber"].as_i64());

    let (_, delete) = decode(&mut c, &events[2]).await;
    assert_eq!(delete["ChangeEventHeader"]["changeType"], "DELETE");
    assert_eq!(delete["Name"], Value::Null);

    // The same events, as the control plane lists them, and counted.
    let listed: Value = h
        .get(format!("{base}/_sim/cdc"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = listed["events"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[1]["channel"], "/data/AccountChangeEvent");
    assert_eq!(listed[1]["header"]["changeType"], "UPDATE");
    assert_eq!(listed[1]["fields"]["Name"], "Acme 2");
    let stats: Value = h
        .get(format!("{base}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["cdc"]["published"], 3);
    assert_eq!(stats["cdc"]["delivered"], 3);
    sim.stop().await;
}

#[tokio::test]
async fn identical_changes_in_one_transaction_share_an_event_and_channels_filter() {
    let sim = sim().await;
    let mut c = client(&sim).await;
    let mut all = Sub::open(
        &mut c,
        fetch("/data/ChangeEvents", ReplayPreset::Latest, None, 10),
    )
    .await
    .unwrap();
    let mut invoices = Sub::open(
        &mut c,
        fetch("/data/Invoice__ChangeEvent", ReplayPreset::Latest, None, 10),
    )
    .await
    .unwrap();
    let ids = create_accounts(&sim, &["A", "B", "C"]);
    let org = &sim.state.org;
    let a = org.schema.object_index("Account").unwrap();
    let mut txn = org.begin();
    for id in &ids {
        org.delete(&mut txn, a, id).unwrap();
    }
    org.commit(txn);
    let inv = org.schema.object_index("Invoice__c").unwrap();
    let name = org.schema.objects[inv].field_index("Name").unwrap();
    let mut txn = org.begin();
    org.create(&mut txn, inv, vec![(name, SfValue::text("INV-1"))])
        .unwrap();
    org.commit(txn);

    // Three creates (different names), one shared delete, one invoice create.
    let events = all.events(5).await;
    let (_, del) = decode(&mut c, &events[3]).await;
    assert_eq!(del["ChangeEventHeader"]["changeType"], "DELETE");
    assert_eq!(del["ChangeEventHeader"]["recordIds"], json!(ids));
    let (_, c2) = decode(&mut c, &events[2]).await;
    assert_eq!(c2["ChangeEventHeader"]["sequenceNumber"], 3);
    let inv_events = invoices.events(1).await;
    let (schema, e) = decode(&mut c, &inv_events[0]).await;
    assert!(schema.contains("\"Invoice__ChangeEvent\""));
    assert_eq!(e["ChangeEventHeader"]["entityName"], "Invoice__c");
    assert_eq!(replay_of(&inv_events[0]), replay_of(&events[4]));
    sim.stop().await;
}

#[tokio::test]
async fn an_event_is_not_delivered_before_its_transaction_commits() {
    let sim = sim().await;
    let mut c = client(&sim).await;
    let mut sub = Sub::open(
        &mut c,
        fetch("/data/AccountChangeEvent", ReplayPreset::Latest, None, 10),
    )
    .await
    .unwrap();
    let org = sim.state.org.clone();
    let a = org.schema.object_index("Account").unwrap();
    let name = org.schema.objects[a].field_index("Name").unwrap();
    let mut long = org.begin();
    let long_id = org
        .create(&mut long, a, vec![(name, SfValue::text("Long"))])
        .unwrap();
    let short_ids = create_accounts(&sim, &["Short"]);
    let first = sub.events(1).await;
    let (_, e) = decode(&mut c, &first[0]).await;
    assert_eq!(e["ChangeEventHeader"]["recordIds"], json!(short_ids));
    assert!(sim.state.cdc.to_json()["events"].as_array().unwrap().len() == 1);
    org.commit(long);
    let second = sub.events(1).await;
    let (_, e) = decode(&mut c, &second[0]).await;
    assert_eq!(e["ChangeEventHeader"]["recordIds"], json!([long_id]));
    let rec = org.get_by_id(a, &long_id).unwrap();
    let modstamp_ms = sfsim::store::system_modstamp(&rec) * 1000;
    assert!(e["ChangeEventHeader"]["commitTimestamp"].as_i64().unwrap() >= modstamp_ms);
    assert!(replay_of(&second[0]) > replay_of(&first[0]));
    sim.stop().await;
}

#[tokio::test]
async fn flow_control_keepalives_and_pending_credit() {
    let sim = sim_with(sfsim::SimConfig {
        pubsub_keepalive: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let mut c = client(&sim).await;
    let mut sub = Sub::open(
        &mut c,
        fetch("/data/AccountChangeEvent", ReplayPreset::Latest, None, 2),
    )
    .await
    .unwrap();
    // Idle: a keepalive with no events, carrying the latest replay id.
    let ka = sub.next().await.unwrap();
    assert!(ka.events.is_empty());
    assert_eq!(ka.latest_replay_id.len(), 8);
    assert!(!ka.rpc_id.is_empty());
    assert_eq!(ka.pending_num_requested, 2);

    create_accounts(&sim, &["1", "2", "3", "4", "5"]);
    let mut got = vec![];
    let mut last_pending = -1;
    while got.len() < 2 {
        let r = sub.next().await.unwrap();
        last_pending = r.pending_num_requested;
        got.extend(r.events);
    }
    assert_eq!(got.len(), 2);
    assert_eq!(last_pending, 0);
    // No credit left: only keepalives come, however long we wait for one.
    let ka = sub.next().await.unwrap();
    assert!(ka.events.is_empty(), "an event beyond the credit was sent");
    assert_eq!(
        u64::from_be_bytes(ka.latest_replay_id.as_slice().try_into().unwrap()),
        replay_of(&got[1])
    );
    sub.credit(10).await;
    let rest = sub.events(3).await;
    assert_eq!(replay_of(&rest[0]), replay_of(&got[1]) + 1);
    sim.stop().await;
}

#[tokio::test]
async fn replay_after_reconnect_loses_and_repeats_nothing() {
    let sim = sim().await;
    let mut c = client(&sim).await;
    create_accounts(&sim, &["a", "b", "c"]);
    let mut sub = Sub::open(
        &mut c,
        fetch("/data/ChangeEvents", ReplayPreset::Earliest, None, 100),
    )
    .await
    .unwrap();
    let first = sub.events(3).await;
    drop(sub);
    create_accounts(&sim, &["d", "e"]);
    let stored = replay_of(&first[1]);
    let mut again = Sub::open(
        &mut c,
        fetch(
            "/data/ChangeEvents",
            ReplayPreset::Custom,
            Some(stored),
            100,
        ),
    )
    .await
    .unwrap();
    let after = again.events(3).await;
    let ids: Vec<u64> = after.iter().map(replay_of).collect();
    assert_eq!(ids[0], replay_of(&first[2]));
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // Nothing more than the three after the stored id.
    create_accounts(&sim, &["f"]);
    let next = again.events(1).await;
    assert_eq!(replay_of(&next[0]), ids[2] + 1);
    sim.stop().await;
}

#[tokio::test]
async fn retention_expires_events_and_refuses_replay_from_before_it() {
    let sim = sim_with(sfsim::SimConfig {
        cdc_retention_secs: 1,
        ..Default::default()
    })
    .await;
    let mut c = client(&sim).await;
    create_accounts(&sim, &["old"]);
    assert_eq!(
        sim.state.cdc.to_json()["events"].as_array().unwrap().len(),
        1
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while !sim.state.cdc.to_json()["events"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "event never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    create_accounts(&sim, &["new"]);
    let err = Sub::open(
        &mut c,
        fetch("/data/ChangeEvents", ReplayPreset::Custom, Some(0), 10),
    )
    .await
    .err()
    .expect("a replay id older than retention is refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        error_code(&err),
        "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
    );
    let mut sub = Sub::open(
        &mut c,
        fetch("/data/ChangeEvents", ReplayPreset::Earliest, None, 10),
    )
    .await
    .unwrap();
    let events = sub.events(1).await;
    let (_, e) = decode(&mut c, &events[0]).await;
    assert_eq!(e["Name"], "new");
    sim.stop().await;
}

#[tokio::test]
async fn refusals_carry_salesforce_status_codes() {
    let sim = sim().await;
    let mut bad = client_with_token(&sim, "00Dbogus!token").await;
    let err = bad
        .get_topic(TopicRequest {
            topic_name: "/data/AccountChangeEvent".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(
        error_code(&err),
        "sfdc.platform.eventbus.grpc.service.auth.error"
    );
    let err = Sub::open(
        &mut bad,
        fetch("/data/ChangeEvents", ReplayPreset::Latest, None, 1),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.code(), Code::Unauthenticated);

    // An expired token is refused like a bad one.
    let mut c = client(&sim).await;
    http()
        .await
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&json!({"session_expiry_secs": 1}))
        .send()
        .await
        .unwrap();
    let token = sim.state.sessions.issue();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut expired = client_with_token(&sim, &token).await;
    let err = expired
        .get_topic(TopicRequest {
            topic_name: "/data/AccountChangeEvent".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    http()
        .await
        .delete(format!("{}/_sim/faults", sim.base_url()))
        .send()
        .await
        .unwrap();

    let err = c
        .get_topic(TopicRequest {
            topic_name: "/data/NopeChangeEvent".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = Sub::open(
        &mut c,
        fetch("/data/NopeChangeEvent", ReplayPreset::Latest, None, 1),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.code(), Code::NotFound);

    let err = Sub::open(
        &mut c,
        fetch("/data/ChangeEvents", ReplayPreset::Custom, Some(999), 1),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("rpcId:"));
    let mut short = fetch("/data/ChangeEvents", ReplayPreset::Custom, None, 1);
    short.replay_id = vec![1, 2, 3];
    let err = Sub::open(&mut c, short).await.err().unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A different topic later on the same stream ends it with INVALID_ARGUMENT.
    let mut sub = Sub::open(
        &mut c,
        fetch("/data/ChangeEvents", ReplayPreset::Latest, None, 1),
    )
    .await
    .unwrap();
    sub.tx
        .send(fetch(
            "/data/AccountChangeEvent",
            ReplayPreset::Latest,
            None,
            1,
        ))
        .await
        .unwrap();
    let err = sub.next().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    sim.stop().await;
}

async fn set_faults(sim: &sfsim::RunningSim, body: Value) {
    let r = http()
        .await
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn gap_overflow_and_drop_faults() {
    let sim = sim().await;
    let mut c = client(&sim).await;
    let mut sub = Sub::open(
        &mut c,
        fetch("/data/ChangeEvents", ReplayPreset::Latest, None, 100),
    )
    .await
    .unwrap();

    set_faults(&sim, json!({"cdc_gap_rate": 1.0})).await;
    let ids = create_accounts(&sim, &["gap"]);
    let e = sub.events(1).await;
    let (_, gap) = decode(&mut c, &e[0]).await;
    assert_eq!(gap["ChangeEventHeader"]["changeType"], "GAP_CREATE");
    assert_eq!(gap["ChangeEventHeader"]["recordIds"], json!(ids));
    assert_eq!(gap["Name"], Value::Null);

    set_faults(&sim, json!({"cdc_gap_rate": 0.0, "cdc_overflow_above": 2})).await;
    create_accounts(&sim, &["x", "y", "z"]);
    let e = sub.events(1).await;
    let (_, over) = decode(&mut c, &e[0]).await;
    assert_eq!(over["ChangeEventHeader"]["changeType"], "GAP_OVERFLOW");
    assert_eq!(over["ChangeEventHeader"]["entityName"], "Account");
    assert_eq!(over["ChangeEventHeader"]["recordIds"], json!([]));

    set_faults(&sim, json!({"cdc_overflow_above": 0, "cdc_drop_rate": 1.0})).await;
    create_accounts(&sim, &["lost"]);
    set_faults(&sim, json!({"cdc_drop_rate": 0.0})).await;
    create_accounts(&sim, &["kept"]);
    let e = sub.events(1).await;
    let (_, kept) = decode(&mut c, &e[0]).await;
    assert_eq!(kept["Name"], "kept");

    let stats: Value = http()
        .await
        .get(format!("{}/_sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["cdc"],
        json!({"published": 3, "delivered": 3, "gaps": 2, "dropped": 1})
    );
    let bad = http()
        .await
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&json!({"cdc_gap_rate": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    sim.stop().await;
}

#[tokio::test]
async fn stream_reset_fault_ends_open_streams() {
    let sim = sim().await;
    let mut c = client(&sim).await;
    set_faults(&sim, json!({"pubsub_stream_reset_secs": 1})).await;
    let mut sub = Sub::open(
        &mut c,
        fetch("/data/ChangeEvents", ReplayPreset::Latest, None, 10),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let err = loop {
        match sub.next().await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Code::Unavailable);
    assert!(started.elapsed() >= Duration::from_millis(900));
    sim.stop().await;
}

#[tokio::test]
async fn workload_and_composite_writes_publish_events() {
    let sim = sim_with(sfsim::SimConfig {
        dataset: vec![("Account".into(), 20)],
        ..Default::default()
    })
    .await;
    let mut c = client(&sim).await;
    let mut sub = Sub::open(
        &mut c,
        fetch("/data/AccountChangeEvent", ReplayPreset::Latest, None, 1000),
    )
    .await
    .unwrap();
    let base = sim.base_url().to_string();
    let token = sim.state.sessions.issue();
    let r = http()
        .await
        .post(format!("{base}/services/data/v62.0/composite/sobjects"))
        .bearer_auth(&token)
        .json(&json!({"allOrNone": true, "records": [
            {"attributes": {"type": "Account"}, "Name": "C1"},
            {"attributes": {"type": "Account"}, "Name": "C2"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = sub.events(2).await;
    let (_, first) = decode(&mut c, &e[0]).await;
    let (_, second) = decode(&mut c, &e[1]).await;
    assert_eq!(
        first["ChangeEventHeader"]["transactionKey"], second["ChangeEventHeader"]["transactionKey"],
        "one composite call is one transaction"
    );
    let r = http()
        .await
        .post(format!("{base}/_sim/workload"))
        .json(&json!({"object": "Account", "inserts_per_sec": 50, "updates_per_sec": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = sub.events(20).await;
    let mut kinds = std::collections::BTreeSet::new();
    for ev in &e {
        let (_, v) = decode(&mut c, ev).await;
        kinds.insert(
            v["ChangeEventHeader"]["changeType"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert!(
        kinds.contains("CREATE") && kinds.contains("UPDATE"),
        "{kinds:?}"
    );
    sim.stop().await;
}
