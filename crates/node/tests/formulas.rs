//! End to end: formula fields stay fresh although their records' SystemModstamp never moves.
//! The simulator computes Contact.Account_Summary__c (`Account.Name & ' / ' &
//! TEXT(Account.Industry)`) and Opportunity.Days_To_Close__c (`CloseDate - TODAY()`).

use driftless_testkit as common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, RunOptions};
use sfsim::store::Org;
use sfsim::value::Value;

const ACCOUNTS: u64 = 600;
const CONTACTS: u64 = 1500;
const RENAMED: usize = 500;

fn options() -> RunOptions {
    RunOptions {
        honor_latest_date_covered: false,
        batch_rows: 1000,
        ..RunOptions::default()
    }
}

fn mappings(with_account: bool) -> String {
    let account = r#"{"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":2,
        "sf_notify_enabled":false,"fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"Industry":{}},
        "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}},"#;
    format!(
        r#"{{"mappings":[{}
      {{"object_name":"Contact","config":{{"access":"read_only","sf_polling_seconds":2,"sf_notify_enabled":false,
        "fields":{{"Id":{{}},"IsDeleted":{{}},"SystemModstamp":{{}},"AccountId":{{}},"LastName":{{}},
                  "Account_Summary__c":{{}}}},
        "indexes":{{"Id":{{"unique":true}},"SystemModstamp":{{"unique":false}}}}}}}}
    ],"version":1}}"#,
        if with_account { account } else { "" }
    )
}

/// Every live record's (Id, value of `field`) in the simulator, as text.
fn sim_values(org: &Org, object: &str, field: &str) -> HashMap<String, Option<String>> {
    let o = org.schema.object_index(object).unwrap();
    let f = org.schema.objects[o].field_index(field).unwrap();
    org.read(|tables| {
        tables[o]
            .iter()
            .filter(|r| !sfsim::store::is_deleted(r))
            .map(|r| {
                let v = match &r[f] {
                    Value::Null => None,
                    other => other.to_bulk_text(),
                };
                (sfsim::store::record_id(r).to_owned(), v)
            })
            .collect()
    })
}

async fn pg_values(
    pg: &tokio_postgres::Client,
    table: &str,
    column: &str,
) -> HashMap<String, Option<String>> {
    pg.query(
        &format!("SELECT sfid, {column}::text FROM salesforce.{table}"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn stamps(pg: &tokio_postgres::Client, table: &str) -> HashMap<String, String> {
    pg.query(
        &format!("SELECT sfid, systemmodstamp::text FROM salesforce.{table}"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn ids_of_children(values: &HashMap<String, Option<String>>) -> Vec<String> {
    let mut ids: Vec<String> = values.keys().cloned().collect();
    ids.sort();
    ids
}

/// Rows whose values differ; numbers compare as numbers (each side renders doubles its own way).
fn differing(a: &HashMap<String, Option<String>>, b: &HashMap<String, Option<String>>) -> usize {
    let norm = |v: &Option<String>| match v.as_deref().map(|s| (s, s.parse::<f64>())) {
        Some((_, Ok(n))) => Some(format!("{n}")),
        other => other.map(|(s, _)| s.to_owned()),
    };
    a.iter()
        .filter(|(k, v)| b.get(*k).map(norm) != Some(norm(v)))
        .count()
}

async fn renames_refresh_children(with_account: bool) {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), ACCOUNTS), ("Contact".into(), CONTACTS)],
        ..Default::default()
    })
    .await;
    // The timer must not be what refreshes: an hour, as by default.
    let config = ConfigBuilder::new().write(&db, &sim.info, &mappings(with_account));
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_until("initial load", Duration::from_secs(120), || async {
        let s = engine.status().await;
        s.mappings
            .iter()
            .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some())
    })
    .await;
    let pg = db.client().await;
    let before = pg_values(&pg, "contact", "account_summary__c").await;
    assert_eq!(
        before,
        sim_values(&sim.org, "Contact", "Account_Summary__c")
    );
    assert!(before
        .values()
        .any(|v| v.as_deref().is_some_and(|s| s.contains(" / "))));
    let stamps_before = stamps(&pg, "contact").await;

    let account = sim.org.schema.object_index("Account").unwrap();
    let name = sim.org.schema.objects[account].field_index("Name").unwrap();
    let ids: Vec<String> = sim.org.read(|t| {
        t[account]
            .iter()
            .take(RENAMED)
            .map(|r| sfsim::store::record_id(r).to_owned())
            .collect()
    });
    let mut txn = sim.org.begin();
    for (i, id) in ids.iter().enumerate() {
        sim.org
            .update(
                &mut txn,
                account,
                id,
                vec![(name, Value::text(format!("Renamed {i}")))],
            )
            .unwrap();
    }
    sim.org.commit(txn);
    let want = sim_values(&sim.org, "Contact", "Account_Summary__c");
    let changed = differing(&want, &before);
    assert!(
        changed > RENAMED,
        "renamed accounts have {changed} contacts"
    );

    wait_until(
        "contacts show their accounts' new names",
        Duration::from_secs(60),
        || async { pg_values(&pg, "contact", "account_summary__c").await == want },
    )
    .await;
    assert_eq!(
        stamps(&pg, "contact").await,
        stamps_before,
        "SystemModstamp unchanged"
    );
    let status = engine.status().await;
    assert_eq!(
        mapping(&status, "Contact").formula_refreshed,
        changed as i64
    );
    let stored: i64 = pg
        .query_one(
            "SELECT formula_refreshed FROM salesforce._driftless_mapping_state WHERE object_name = 'Contact'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, changed as i64);
    let verify_options = VerifyOptions {
        max_listed: 5,
        batch_rows: 1000,
        ..VerifyOptions::default()
    };
    let reports = verify(&config, &verify_options).await.expect("verify");
    assert!(reports.iter().all(|r| r.differences() == 0), "{reports:?}");

    // verify compares formula columns too: a stale one is a difference.
    engine.stop().await;
    pg.execute(
        "UPDATE salesforce.contact SET account_summary__c = 'stale' WHERE sfid = $1",
        &[&ids_of_children(&want)[0]],
    )
    .await
    .unwrap();
    let reports = verify(&config, &verify_options).await.expect("verify");
    let contact = reports.iter().find(|r| r.object == "Contact").unwrap();
    assert_eq!(contact.differences(), 1, "{reports:?}");
    sim.stop().await;
}

#[actix_rt::test]
async fn parent_renames_refresh_childrens_formulas_when_the_parent_is_mapped() {
    renames_refresh_children(true).await;
}

#[actix_rt::test]
async fn parent_renames_refresh_childrens_formulas_when_the_parent_is_not_mapped() {
    renames_refresh_children(false).await;
}

/// A custom object (an `--objects` describe) whose formula is outside the supported subset.
fn gadget_describe() -> std::path::PathBuf {
    let describe = serde_json::json!({
        "name": "Gadget__c", "label": "Gadget", "labelPlural": "Gadgets", "keyPrefix": "a7G",
        "custom": true, "createable": true,
        "fields": [
            {"name": "Id", "type": "id"},
            {"name": "Name", "type": "string", "length": 80, "nameField": true},
            {"name": "Odd__c", "type": "string", "length": 255, "calculated": true,
             "calculatedFormula": "VLOOKUP(1, 2, 3)"}
        ]
    });
    let path = std::env::temp_dir().join(format!("gadget-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, describe.to_string()).unwrap();
    path
}

#[actix_rt::test]
async fn moving_the_clock_a_day_ahead_refreshes_today_formulas_on_the_timer() {
    let db = TestDb::create().await;
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![
            ("Account".into(), 50),
            ("Opportunity".into(), 300),
            ("Gadget__c".into(), 20),
        ],
        objects: vec![gadget_describe()],
        ..Default::default()
    })
    .await;
    let mappings = r#"{"mappings":[
      {"object_name":"Gadget__c","config":{"access":"read_only","sf_polling_seconds":2,"sf_notify_enabled":false,
        "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"Odd__c":{}},
        "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}},
      {"object_name":"Opportunity","config":{"access":"read_only","sf_polling_seconds":2,"sf_notify_enabled":false,
        "formula_refresh_secs":3,
        "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"CloseDate":{},"Days_To_Close__c":{}},
        "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}
    ],"version":1}"#;
    let config = ConfigBuilder::new().write(&db, &sim.info, mappings);
    let engine = run(config.clone(), options()).await.expect("engine starts");
    wait_until("initial load", Duration::from_secs(120), || async {
        let s = engine.status().await;
        s.mappings
            .iter()
            .all(|m| m.state == "DATA_SYNCED" && m.synced_through.is_some())
    })
    .await;
    let status = engine.status().await;
    assert_eq!(
        mapping(&status, "Opportunity").formula_notes,
        Vec::<String>::new(),
        "TODAY() is analysed, not unsupported"
    );
    // Unsupported: one line for `ctl mapping`, and the mapping syncs as any other.
    let gadget = mapping(&status, "Gadget__c");
    assert_eq!(
        gadget.formula_notes,
        ["Odd__c: refreshed every formula_refresh_secs only \
          (formula: function VLOOKUP is not supported at offset 0)"]
    );
    assert_eq!((gadget.state.as_str(), gadget.rows), ("DATA_SYNCED", 20));
    let pg = db.client().await;
    let before = pg_values(&pg, "opportunity", "days_to_close__c").await;
    assert_eq!(
        before.len(),
        300,
        "every opportunity is loaded with its formula value"
    );
    let refreshed_before = mapping(&status, "Opportunity").formula_refreshed;

    sim_post(
        &sim.info,
        "/_sim/clock",
        serde_json::json!({"advance_secs": 86_400}),
    )
    .await;
    let want = sim_values(&sim.org, "Opportunity", "Days_To_Close__c");
    let changed = differing(&want, &before);
    assert_eq!(
        changed, 300,
        "a day later every Days_To_Close__c is one less"
    );
    let stamps_before = stamps(&pg, "opportunity").await;
    wait_until("the timed refresh", Duration::from_secs(60), || async {
        differing(
            &want,
            &pg_values(&pg, "opportunity", "days_to_close__c").await,
        ) == 0
    })
    .await;
    assert_eq!(stamps(&pg, "opportunity").await, stamps_before);
    let status = engine.status().await;
    assert_eq!(
        mapping(&status, "Opportunity").formula_refreshed - refreshed_before,
        300
    );
    engine.stop().await;
    sim.stop().await;
}
