//! kill -9 of the real `driftless run` with a change-event subscription open, 200 changes while
//! it is down, restart: the stream resumes from the replay id committed in Postgres (the
//! simulator delivers the events of the changes made while down), every change arrives and
//! `driftless verify` exits 0.

use driftless_testkit as common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use sfsim::value::Value as SfValue;

const BIN: &str = env!("CARGO_BIN_EXE_driftless");
const CHANGES: usize = 200;

fn driftless(args: &[&str], config: &Path, sim: &sfsim::SimInfo, log: &str) -> Command {
    driftless_testkit::driftless_command(BIN, args, config, sim, log)
}

use driftless_testkit::kill_9;

async fn cdc_delivered(sim: &sfsim::SimInfo) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{}/_sim/stats", sim.instance_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["cdc"]["delivered"].as_u64().unwrap_or(0)
}

async fn scalar_i64(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.map(|r| r.get(0)).unwrap_or(0)
}

#[actix_rt::test]
async fn kill_9_with_a_subscription_open_resumes_from_the_stored_replay_id() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), CHANGES as u64)],
        pubsub_keepalive: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let ca = sim.info.ca_cert.clone().expect("ca_cert");
    let config = ConfigBuilder::new()
        .salesforce_lines(&format!(
            "pubsub_endpoint = \"{}\"\nca_cert = \"{ca}\"\n",
            sim.pubsub_endpoint
        ))
        .write(
            &db,
            &sim.info,
            r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only",
  "sf_polling_seconds":600,"sf_notify_enabled":true,
  "fields":{"Id":{},"Name":{},"SystemModstamp":{},"IsDeleted":{}},
  "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}],"version":1}"#,
        )
        .path;
    let pg = db.client().await;
    let mut engine = driftless(&["run"], &config, &sim.info, "run-1.log")
        .spawn()
        .expect("driftless run");
    wait_until(
        "load and a committed position",
        Duration::from_secs(60),
        || async {
            scalar_i64(&pg, "SELECT count(*) FROM salesforce.account").await == CHANGES as i64
                && scalar_i64(
                    &pg,
                    "SELECT count(*) FROM salesforce._driftless_mapping_state \
                 WHERE notify_replay_id IS NOT NULL",
                )
                .await
                    == 1
        },
    )
    .await;
    kill_9(&mut engine);

    let renamed: Vec<(String, String)> = {
        let org = &sim.org;
        let a = org.schema.object_index("Account").unwrap();
        let name = org.schema.objects[a].field_index("Name").unwrap();
        let ids: Vec<String> = org.read(|t| {
            t[a].iter()
                .map(|r| sfsim::store::record_id(r).to_owned())
                .collect()
        });
        ids.into_iter()
            .enumerate()
            .map(|(i, id)| {
                let new = format!("down-{i}");
                let mut txn = org.begin();
                org.update(&mut txn, a, &id, vec![(name, SfValue::text(&new))])
                    .unwrap();
                org.commit(txn);
                (id, new)
            })
            .collect()
    };
    assert_eq!(renamed.len(), CHANGES);
    let delivered_before = cdc_delivered(&sim.info).await;

    let mut engine = driftless(&["run"], &config, &sim.info, "run-2.log")
        .spawn()
        .expect("driftless run again");
    wait_until(
        "the replayed events delivered",
        Duration::from_secs(60),
        || async { cdc_delivered(&sim.info).await >= delivered_before + CHANGES as u64 },
    )
    .await;
    wait_until(
        "every change in postgres",
        Duration::from_secs(60),
        || async {
            let rows = pg
                .query("SELECT sfid, name FROM salesforce.account", &[])
                .await
                .unwrap();
            let have: std::collections::HashMap<String, Option<String>> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            renamed
                .iter()
                .all(|(id, name)| have.get(id) == Some(&Some(name.clone())))
        },
    )
    .await;
    let verify = tokio::task::spawn_blocking({
        let (config, info) = (config.clone(), sim.info.clone());
        move || {
            driftless(&["verify"], &config, &info, "verify.log")
                .status()
                .expect("driftless verify")
        }
    })
    .await
    .unwrap();
    kill_9(&mut engine);
    assert!(
        verify.success(),
        "{}",
        std::fs::read_to_string(config.with_file_name("verify.log")).unwrap()
    );
    sim.stop().await;
}
