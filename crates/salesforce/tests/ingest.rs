//! Bulk API 2.0 ingest through the client against the real simulator: every row's outcome comes
//! back matched to the row, in a handful of API calls, and a job can be picked up again by id.

mod common;

use std::collections::HashSet;

use salesforce::{IngestCsv, IngestOperation, RowOutcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_then_upsert_match_every_row_back() {
    let sim = common::sim(&[]).await;
    let client = common::client(&sim.info).await;
    let n = 15_000;
    let insert = IngestOperation::Insert;
    let mut csv = IngestCsv::new(&insert, &["Name", "External_Id__c", "Amount__c"]);
    for i in 0..n {
        let name = format!("INV \"{i}\", ok");
        let ext = format!("E-{i}");
        let amount = if i % 100 == 42 {
            "not a number".to_owned()
        } else {
            i.to_string()
        };
        csv.push(&[Some(&name), Some(&ext), Some(&amount)]).unwrap();
    }
    let (calls, polls) = common::calls_and_job_polls(&sim).await;
    let report = client
        .bulk_ingest("Invoice__c", &insert, csv)
        .await
        .unwrap();
    let (calls_after, polls_after) = common::calls_and_job_polls(&sim).await;
    let job_polls = polls_after - polls;
    // Minus the stats call itself, and the state polls (as many as the job takes time).
    let used = calls_after - calls - 1 - job_polls;
    assert_eq!(report.job.state, "JobComplete");
    assert_eq!(report.rows.len(), n);
    let mut ids = HashSet::new();
    for (i, o) in report.rows.iter().enumerate() {
        match o {
            RowOutcome::Success { id, created } if i % 100 != 42 => {
                assert!(*created);
                assert!(ids.insert(id.clone()), "one record per row");
            }
            RowOutcome::Failed { code, message, .. } if i % 100 == 42 => {
                assert_eq!(code, "INVALID_TYPE_ON_FIELD_IN_RECORD", "{message}");
            }
            other => panic!("row {i}: {other:?}"),
        }
    }
    // The id each row got is the record holding that row's values.
    let org = &sim.state.org;
    let inv = org.object_index("Invoice__c").unwrap();
    let ext = org.schema.objects[inv]
        .field_index("External_Id__c")
        .unwrap();
    let RowOutcome::Success { id, .. } = &report.rows[1234] else {
        panic!()
    };
    assert_eq!(
        org.get_by_id(inv, id).unwrap()[ext].as_str(),
        Some("E-1234")
    );
    assert!(
        used <= 10,
        "{used} API calls (and {job_polls} state polls) for {n} rows"
    );
    let RowOutcome::Success { id: first, .. } = report.rows[1].clone() else {
        panic!()
    };

    // Upsert on the external id: existing records update (sf__Created false), a new one inserts,
    // a null key fails that row only.
    let upsert = IngestOperation::Upsert {
        external_id_field: "External_Id__c".into(),
    };
    let mut csv = IngestCsv::new(&upsert, &["External_Id__c", "Name"]);
    csv.push(&[Some("E-1"), Some("renamed")]).unwrap();
    csv.push(&[Some("E-new"), Some("fresh")]).unwrap();
    csv.push(&[None, Some("no key")]).unwrap();
    let report = client
        .bulk_ingest("Invoice__c", &upsert, csv)
        .await
        .unwrap();
    let RowOutcome::Success { id, created } = &report.rows[0] else {
        panic!("{:?}", report.rows)
    };
    assert!(!created);
    assert_eq!(*id, first, "the record the insert made");
    assert!(matches!(
        report.rows[1],
        RowOutcome::Success { created: true, .. }
    ));
    assert!(
        matches!(&report.rows[2], RowOutcome::Failed { code, .. } if code == "MISSING_ARGUMENT"),
        "{:?}",
        report.rows[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_picked_up_again_by_id_and_a_failed_job_leaves_rows_unprocessed() {
    let sim = common::sim(&[]).await;
    let client = common::client(&sim.info).await;
    let insert = IngestOperation::Insert;
    let mut csv = IngestCsv::new(&insert, &["Name"]);
    for i in 0..50 {
        csv.push(&[Some(&format!("A-{i}"))]).unwrap();
    }
    // The creating process "dies" after closing the job; another handle finds out what it did.
    let job = client.create_ingest_job("Account", &insert).await.unwrap();
    job.upload(&csv).await.unwrap();
    job.close().await.unwrap();
    let again = client.ingest_job(job.id());
    assert_eq!(again.wait().await.unwrap().state, "JobComplete");
    let rows = again.outcomes(&csv).await.unwrap();
    assert!(rows
        .iter()
        .all(|r| matches!(r, RowOutcome::Success { created: true, .. })));

    let mut bad = IngestCsv::new(&insert, &["Name", "Nope__c"]);
    bad.push(&[Some("A"), Some("1")]).unwrap();
    let report = client.bulk_ingest("Account", &insert, bad).await.unwrap();
    assert_eq!(report.job.state, "Failed");
    assert_eq!(
        report.job.error_message.as_deref(),
        Some("InvalidBatch : Field name not found : Nope__c")
    );
    assert_eq!(report.rows, vec![RowOutcome::Unprocessed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_failed_by_the_org_reports_its_rows_unprocessed_and_a_resend_lands_once() {
    let sim = common::sim(&[]).await;
    let client = common::client(&sim.info).await;
    let upsert = IngestOperation::Upsert {
        external_id_field: "External_Id__c".into(),
    };
    let make = || {
        let mut csv = IngestCsv::new(&upsert, &["External_Id__c", "Name"]);
        for i in 0..30 {
            csv.push(&[Some(&format!("K-{i}")), Some("n")]).unwrap();
        }
        csv
    };
    common::set_faults(&sim, serde_json::json!({"bulk_batch_failure_rate": 1.0})).await;
    let report = client
        .bulk_ingest("Invoice__c", &upsert, make())
        .await
        .unwrap();
    assert_eq!(report.job.state, "Failed");
    assert_eq!(
        report.job.error_message.as_deref(),
        Some("InternalServerError : Retried more than 15 times")
    );
    assert!(report.rows.iter().all(|r| *r == RowOutcome::Unprocessed));
    common::clear_faults(&sim).await;
    // Sent again (as write-back would after a crash): upserts by key, so once per record.
    for _ in 0..2 {
        let report = client
            .bulk_ingest("Invoice__c", &upsert, make())
            .await
            .unwrap();
        assert!(report
            .rows
            .iter()
            .all(|r| matches!(r, RowOutcome::Success { .. })));
    }
    let org = &sim.state.org;
    let inv = org.object_index("Invoice__c").unwrap();
    assert_eq!(org.count(inv, false), 30);
}
