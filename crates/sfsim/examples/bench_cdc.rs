//! Change Data Capture throughput and latency: the workload writes Accounts at a given rate
//! (default 2,000 records/s: half inserts, half updates) while one Pub/Sub subscriber, over TLS,
//! keeps credit open on `/data/AccountChangeEvent`. Prints events/s published and delivered and
//! the delay from commit (the event's `commitTimestamp`) to delivery, p50 and p99.
//!
//! `cargo run --release -p sfsim --example bench_cdc -- [WRITES_PER_SEC] [SECONDS]`

// tonic's interceptors answer `tonic::Status`.
#![allow(clippy::result_large_err)]

use apache_avro::types::Value as Avro;
use sfsim::pubsub::proto::{
    pub_sub_client::PubSubClient, FetchRequest, ReplayPreset, SchemaRequest,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rate: f64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2000.0);
    let secs: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);
    let sim = sfsim::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 10_000)],
        ..Default::default()
    })
    .await?;
    let token = sim.state.sessions.issue();
    let ca = std::fs::read(sim.info.ca_cert.as_ref().expect("ca_cert"))?;
    let channel = Channel::from_shared(format!("https://{}", sim.pubsub_endpoint))?
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost"),
        )?
        .connect()
        .await?;
    let (instance, org) = (sim.info.instance_url.clone(), sim.info.org_id.clone());
    let mut client = PubSubClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        let md = req.metadata_mut();
        md.insert("accesstoken", token.parse().unwrap());
        md.insert("instanceurl", instance.parse().unwrap());
        md.insert("tenantid", org.parse().unwrap());
        Ok(req)
    });
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(FetchRequest {
        topic_name: "/data/AccountChangeEvent".into(),
        replay_preset: ReplayPreset::Latest as i32,
        num_requested: 1000,
        ..Default::default()
    })
    .await?;
    let mut stream = client
        .subscribe(ReceiverStream::new(rx))
        .await?
        .into_inner();

    let http = reqwest::Client::new();
    let half = rate / 2.0;
    http.post(format!("{}/_sim/workload", sim.base_url()))
        .json(&serde_json::json!({"object": "Account", "inserts_per_sec": half, "updates_per_sec": half}))
        .send()
        .await?
        .error_for_status()?;
    let published_before = sim
        .state
        .cdc
        .counts
        .published
        .load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let mut schemas: HashMap<String, apache_avro::Schema> = HashMap::new();
    let mut delays_ms: Vec<i64> = Vec::new();
    let mut delivered = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        let Ok(Some(resp)) = tokio::time::timeout(Duration::from_secs(5), stream.message()).await?
        else {
            anyhow::bail!("the stream went quiet");
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        for e in &resp.events {
            let ev = e.event.as_ref().expect("event");
            if !schemas.contains_key(&ev.schema_id) {
                let info = client
                    .get_schema(SchemaRequest {
                        schema_id: ev.schema_id.clone(),
                    })
                    .await?
                    .into_inner();
                schemas.insert(
                    ev.schema_id.clone(),
                    apache_avro::Schema::parse_str(&info.schema_json)?,
                );
            }
            let v = apache_avro::from_avro_datum(
                &schemas[&ev.schema_id],
                &mut ev.payload.as_slice(),
                None,
            )?;
            delays_ms.push(now_ms - commit_timestamp(&v));
        }
        delivered += resp.events.len() as u64;
        if !resp.events.is_empty() {
            tx.send(FetchRequest {
                num_requested: resp.events.len() as i32,
                ..Default::default()
            })
            .await?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let published = sim
        .state
        .cdc
        .counts
        .published
        .load(std::sync::atomic::Ordering::Relaxed)
        - published_before;
    http.delete(format!("{}/_sim/workload", sim.base_url()))
        .send()
        .await?;
    let writes: serde_json::Value = http
        .get(format!("{}/_sim/workload", sim.base_url()))
        .send()
        .await?
        .json()
        .await?;
    delays_ms.sort_unstable();
    let pct = |p: f64| {
        delays_ms
            .get(((delays_ms.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!("workload target: {rate} writes/s for {secs} s; workload counts: {writes}");
    println!(
        "published: {published} events, {:.0} events/s",
        published as f64 / elapsed
    );
    println!(
        "delivered to one subscriber: {delivered} events, {:.0} events/s",
        delivered as f64 / elapsed
    );
    println!(
        "commit to delivery: p50 {} ms, p99 {} ms, max {} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    sim.stop().await;
    Ok(())
}

fn commit_timestamp(v: &Avro) -> i64 {
    let Avro::Record(fields) = v else { return 0 };
    let Some((_, Avro::Record(header))) = fields.first() else {
        return 0;
    };
    header
        .iter()
        .find(|(k, _)| k == "commitTimestamp")
        .and_then(|(_, v)| match v {
            Avro::Long(ms) => Some(*ms),
            _ => None,
        })
        .unwrap_or(0)
}
