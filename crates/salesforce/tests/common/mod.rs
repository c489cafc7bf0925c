//! Shared helpers: start the real simulator on 127.0.0.1:0 and point a client at it.

#![allow(dead_code)]

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use salesforce::{Backoff, Client, ClientConfig, Credentials, PollSchedule, RecordStream, Secret};
use serde_json::Value;

pub async fn sim(dataset: &[(&str, u64)]) -> sfsim::RunningSim {
    sim_with(dataset, |_| {}).await
}

pub async fn sim_with(
    dataset: &[(&str, u64)],
    tweak: impl FnOnce(&mut sfsim::SimConfig),
) -> sfsim::RunningSim {
    let mut config = sfsim::SimConfig {
        dataset: dataset.iter().map(|(o, n)| (o.to_string(), *n)).collect(),
        ..Default::default()
    };
    tweak(&mut config);
    sfsim::start(config).await.expect("simulator starts")
}

pub fn password(info: &sfsim::SimInfo) -> Credentials {
    Credentials::Password {
        username: info.username.clone(),
        password: Secret::new(info.password.clone()),
        client_id: info.client_id.clone(),
        client_secret: Secret::new(info.client_secret.clone()),
    }
}

/// Short timeouts and quick retries, so faults cost the suite little time.
pub fn config(info: &sfsim::SimInfo, credentials: Credentials) -> ClientConfig {
    let mut c = ClientConfig::new(info.login_url.clone(), credentials);
    c.request_timeout = Duration::from_millis(1500);
    c.read_timeout = Duration::from_secs(5);
    c.retry = Backoff {
        base: Duration::from_millis(10),
        cap: Duration::from_millis(100),
        max_attempts: 10,
    };
    c.poll = PollSchedule {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    c.bulk_timeout = Duration::from_secs(60);
    c.ca_cert = info.ca_cert.clone().map(Into::into);
    c
}

pub async fn client(info: &sfsim::SimInfo) -> Client {
    Client::connect(config(info, password(info)))
        .await
        .expect("login")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A plain HTTP client for the control plane that also trusts a TLS simulator's certificate.
pub fn http_for(info: &sfsim::SimInfo) -> reqwest::Client {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(ca) = &info.ca_cert {
        let pem = std::fs::read(ca).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

pub async fn set_faults(sim: &sfsim::RunningSim, faults: Value) {
    let r = http_for(&sim.info)
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "faults refused: {}",
        r.text().await.unwrap()
    );
}

pub async fn clear_faults(sim: &sfsim::RunningSim) {
    http_for(&sim.info)
        .delete(format!("{}/_sim/faults", sim.base_url()))
        .send()
        .await
        .unwrap();
}

/// API calls so far, and how many of them polled an ingest job's state: their number depends on
/// how fast the machine runs the job, so call counts that must not depend on it leave them out.
pub async fn calls_and_job_polls(sim: &sfsim::RunningSim) -> (u64, u64) {
    let s = stats(sim).await;
    let polls = s["api_calls"]["by_route"]["GET jobs/ingest/{id}"]
        .as_u64()
        .unwrap_or(0);
    (s["api_calls"]["total"].as_u64().unwrap(), polls)
}

pub async fn stats(sim: &sfsim::RunningSim) -> Value {
    http_for(&sim.info)
        .get(format!("{}/_sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn total_calls(sim: &sfsim::RunningSim) -> u64 {
    stats(sim).await["api_calls"]["total"].as_u64().unwrap()
}

/// Every live record id of `object`, from the simulator's ground truth.
pub async fn live_ids(sim: &sfsim::RunningSim, object: &str) -> HashSet<String> {
    let csv = http_for(&sim.info)
        .get(format!("{}/_sim/export/{object}", sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let id = headers.iter().position(|h| h == "Id").unwrap();
    let deleted = headers.iter().position(|h| h == "IsDeleted").unwrap();
    reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| &r[deleted] != "true")
        .map(|r| r[id].to_owned())
        .collect()
}

/// Drains a stream, failing on any error, and checks that no id came twice.
pub async fn drain_ids(stream: RecordStream) -> Vec<String> {
    let ids: Vec<String> = stream
        .map(|r| {
            r.expect("stream record")
                .id()
                .expect("record has Id")
                .to_owned()
        })
        .collect()
        .await;
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate records in the stream");
    ids
}
