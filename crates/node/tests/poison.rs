//! One bad record never stops its mapping. A NUL character in a text field (Postgres text cannot
//! hold one) is removed by the NUL rule and the record syncs; a record that a constraint the user
//! added to the table rejects is quarantined in `_driftless_rejects` with the database's error
//! while every other record of its batch, and every later change, still arrives. When the
//! quarantined record changes into something the table accepts, it is written and released.
//! verify reports the quarantined record as one difference instead of aborting. Through REST and
//! through Bulk.

use driftless_testkit as common;

use std::time::Duration;

use common::*;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, RunOptions};
use sfsim::value::Value;

const MAPPINGS: &str = r#"{"mappings":[
  {"object_name":"Invoice__c","config":{"access":"read_only","sf_polling_seconds":1,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"Notes__c":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}
],"version":1}"#;

/// Creates one Invoice__c per (name, notes) in one transaction; answers their Ids.
fn create(sim: &SimThread, records: &[(&str, &str)]) -> Vec<String> {
    let org = &sim.org;
    let obj = org.object_index("Invoice__c").unwrap();
    let def = &org.schema.objects[obj];
    let (name, notes) = (
        def.field_index("Name").unwrap(),
        def.field_index("Notes__c").unwrap(),
    );
    let mut txn = org.begin();
    let ids = records
        .iter()
        .map(|(n, t)| {
            let values = vec![(name, Value::text(*n)), (notes, Value::text(*t))];
            org.create(&mut txn, obj, values).expect("create")
        })
        .collect();
    org.commit(txn);
    ids
}

fn rename(sim: &SimThread, id: &str, to: &str) {
    let org = &sim.org;
    let obj = org.object_index("Invoice__c").unwrap();
    let name = org.schema.objects[obj].field_index("Name").unwrap();
    let mut txn = org.begin();
    org.update(&mut txn, obj, id, vec![(name, Value::text(to))])
        .expect("update");
    org.commit(txn);
}

async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(
    pg: &tokio_postgres::Client,
    sql: &str,
) -> T {
    pg.query_one(sql, &[]).await.unwrap().get(0)
}

async fn rows(pg: &tokio_postgres::Client) -> i64 {
    scalar(pg, "SELECT count(*) FROM salesforce.invoice__c").await
}

async fn poison(bulk_threshold: u64) {
    log_from_env();
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig::default()).await;
    let setup = Setup {
        faults: false,
        bulk_threshold,
        secondary_enabled: false,
        db_pool_size: 2,
    };
    let config = write_config_with(&db, &sim.info, &setup, MAPPINGS);
    let loaded: Vec<(String, String)> = (0..30)
        .map(|i| (format!("load {i}"), format!("notes {i}")))
        .collect();
    let refs: Vec<(&str, &str)> = loaded
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut ids = create(&sim, &refs);
    let nul_at_load = create(&sim, &[("nul at load", "before\0after")]);
    ids.extend(nul_at_load.iter().cloned());
    let engine = run(
        config.clone(),
        RunOptions {
            honor_latest_date_covered: false,
            ..RunOptions::default()
        },
    )
    .await
    .expect("engine starts");
    let pg = db.client().await;
    wait_until("initial load", Duration::from_secs(60), || async {
        rows(&pg).await == ids.len() as i64
    })
    .await;
    // The user's own rule on the table, which Salesforce knows nothing of.
    pg.batch_execute(
        "ALTER TABLE salesforce.invoice__c ADD CONSTRAINT no_poison CHECK (name NOT LIKE 'POISON%')",
    )
    .await
    .unwrap();

    // One window holding good records, a NUL and a record the table refuses.
    let mut batch: Vec<(String, String)> = (0..20)
        .map(|i| (format!("poll {i}"), format!("n {i}")))
        .collect();
    batch.push(("nul in poll".into(), "\0lead and trail\0".into()));
    batch.push(("POISON one".into(), "refused".into()));
    let refs: Vec<(&str, &str)> = batch
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let polled = create(&sim, &refs);
    let poisoned = polled.last().unwrap().clone();
    ids.extend(polled[..polled.len() - 1].iter().cloned());
    wait_until(
        "every record but the refused one",
        Duration::from_secs(120),
        || async { rows(&pg).await == ids.len() as i64 },
    )
    .await;
    let rejects = pg
        .query(
            "SELECT object_name, sfid, error FROM salesforce._driftless_rejects",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rejects.len(), 1, "one quarantined record");
    assert_eq!(rejects[0].get::<_, String>(0), "Invoice__c");
    assert_eq!(rejects[0].get::<_, String>(1), poisoned);
    let error: String = rejects[0].get(2);
    assert!(
        error.starts_with("23514") && error.contains("no_poison"),
        "the database's own error: {error}"
    );
    let notes = pg
        .query(
            "SELECT notes__c FROM salesforce.invoice__c WHERE name LIKE 'nul %' ORDER BY name",
            &[],
        )
        .await
        .unwrap();
    let notes: Vec<String> = notes.iter().map(|r| r.get(0)).collect();
    assert_eq!(notes, ["beforeafter", "lead and trail"], "the NUL rule");
    let status = engine.status().await;
    let m = &status.mappings[0];
    assert_eq!(m.state, "DATA_SYNCED", "the mapping goes on");
    assert!(m.errors >= 1, "counted: {m:?}");

    // Later changes still arrive.
    let later = create(&sim, &[("after the poison", "x")]);
    ids.extend(later);
    wait_until("a later change", Duration::from_secs(60), || async {
        rows(&pg).await == ids.len() as i64
    })
    .await;

    // verify sees the one difference and does not abort.
    let opts = VerifyOptions {
        max_listed: 20,
        batch_rows: 1000,
        ..VerifyOptions::default()
    };
    let reports = verify(&config, &opts).await.expect("verify completes");
    assert_eq!(reports[0].differences(), 1, "{reports:?}");
    assert_eq!(reports[0].examples, [("missing".into(), poisoned.clone())]);
    // A repair cannot write it either, and says why rather than aborting.
    let repaired = verify(
        &config,
        &VerifyOptions {
            repair: true,
            ..opts.clone()
        },
    )
    .await
    .expect("verify --repair completes");
    assert!(
        repaired[0]
            .repair_error
            .as_deref()
            .is_some_and(|e| e.contains("23514")),
        "{repaired:?}"
    );

    // Once the record changes into something the table takes, it arrives and is released.
    rename(&sim, &poisoned, "cured");
    ids.push(poisoned.clone());
    wait_until("the cured record", Duration::from_secs(60), || async {
        rows(&pg).await == ids.len() as i64
    })
    .await;
    let left: i64 = scalar(&pg, "SELECT count(*) FROM salesforce._driftless_rejects").await;
    assert_eq!(left, 0, "released from quarantine");
    let reports = verify(&config, &opts).await.expect("verify");
    engine.stop().await;
    sim.stop().await;
    assert_eq!(reports[0].differences(), 0, "{reports:?}");
}

#[actix_rt::test]
async fn a_poison_record_is_quarantined_and_the_rest_syncs_through_rest() {
    poison(1_000_000).await;
}

#[actix_rt::test]
async fn a_poison_record_is_quarantined_and_the_rest_syncs_through_bulk() {
    poison(1).await;
}
