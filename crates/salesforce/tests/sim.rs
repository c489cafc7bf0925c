//! The client against the real simulator: each flow, and each error kind through the
//! simulator's faults.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use futures::StreamExt;
use salesforce::{Action, Client, Credentials, ErrorKind, QueryOperation, SObject, Secret};
use serde_json::json;

#[tokio::test]
async fn every_grant_logs_in() {
    let sim = sim(&[("Account", 5)]).await;
    let info = &sim.info;
    for credentials in [
        password(info),
        Credentials::ClientCredentials {
            client_id: info.client_id.clone(),
            client_secret: Secret::new(info.client_secret.clone()),
        },
        Credentials::RefreshToken {
            client_id: info.client_id.clone(),
            client_secret: Some(Secret::new(info.client_secret.clone())),
            refresh_token: Secret::new(info.refresh_token.clone()),
        },
    ] {
        let client = Client::connect(config(info, credentials))
            .await
            .expect("login");
        assert_eq!(client.org_id().await.unwrap(), info.org_id);
        assert_eq!(
            client.count("SELECT COUNT() FROM Account").await.unwrap(),
            5
        );
    }
    let bad = Credentials::Password {
        username: info.username.clone(),
        password: Secret::new("wrong"),
        client_id: info.client_id.clone(),
        client_secret: Secret::new(info.client_secret.clone()),
    };
    let err = Client::connect(config(info, bad)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    assert_eq!(err.action(), Action::Fail);
    assert!(
        err.to_string()
            .contains(&format!("login at {} refused", info.login_url)),
        "{err}"
    );
    sim.stop().await;
}

/// A login URL that is not a Salesforce login endpoint is a configuration error that says so,
/// not a "not found" a caller would read as a missing object.
#[tokio::test]
async fn a_login_url_answering_404_is_named_as_not_a_login_endpoint() {
    let sim = sim(&[]).await;
    let info = &sim.info;
    let wrong = format!("{}/not-a-login-endpoint", info.login_url);
    let mut cfg = config(info, password(info));
    cfg.login_url = wrong.clone();
    let err = Client::connect(cfg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.status(), Some(404), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "login URL {wrong} answered 404 to POST /services/oauth2/token: it is not a Salesforce login endpoint"
        )),
        "{err}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn rest_query_follows_next_records_url() {
    let sim = sim(&[("Account", 2300)]).await;
    let mut cfg = config(&sim.info, password(&sim.info));
    cfg.rest_batch_size = Some(500);
    let client = Client::connect(cfg).await.unwrap();
    let ids = drain_ids(client.query("SELECT Id, Name, SystemModstamp FROM Account")).await;
    assert_eq!(
        ids.into_iter().collect::<HashSet<_>>(),
        live_ids(&sim, "Account").await
    );
    assert_eq!(
        client.count("SELECT COUNT() FROM Account").await.unwrap(),
        2300
    );
    let by_route = stats(&sim).await["api_calls"]["by_route"].clone();
    let next_pages: u64 = by_route
        .as_object()
        .unwrap()
        .iter()
        .filter(|(route, _)| route.contains("query/{locator}"))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        next_pages, 4,
        "2300 records in pages of 500 follow nextRecordsUrl 4 times: {by_route}"
    );
    let usage = client.usage();
    assert!(usage.api_usage.is_some(), "Sforce-Limit-Info was read");
    assert_eq!(usage.records, 2300);
    sim.stop().await;
}

#[tokio::test]
async fn describe_limits_and_relationships() {
    let sim = sim(&[("Account", 3), ("Contact", 5)]).await;
    let client = client(&sim.info).await;
    let global = client.describe_global().await.unwrap();
    let names: HashSet<_> = global.sobjects.iter().map(|s| s.name.as_str()).collect();
    for object in [
        "Account",
        "Contact",
        "Opportunity",
        "Lead",
        "Case",
        "Invoice__c",
    ] {
        assert!(
            names.contains(object),
            "{object} missing from describeGlobal"
        );
    }
    let invoice = client.describe("Invoice__c").await.unwrap();
    let ext = invoice.field("External_Id__c").unwrap();
    assert!(ext.external_id && ext.unique);
    assert_eq!(
        invoice.field("Id").unwrap().field_type,
        salesforce::FieldType::Id
    );
    assert_eq!(
        invoice.field("Account__c").unwrap().reference_to,
        ["Account"]
    );

    let limits = client.limits().await.unwrap();
    assert!(limits["DailyApiRequests"].max > 0);
    assert!(client.usage().limits.contains_key("DailyBulkApiBatches"));

    let records: Vec<_> = client
        .query("SELECT Id, Account.Name FROM Contact WHERE AccountId != null")
        .collect::<Vec<_>>()
        .await;
    for r in records {
        let r = r.unwrap();
        assert!(r.columns().iter().any(|c| c == "Account.Name"), "{r:?}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn rest_stream_survives_503s_and_timeouts_without_duplicates_or_gaps() {
    let sim = sim(&[("Account", 3000)]).await;
    let mut cfg = config(&sim.info, password(&sim.info));
    cfg.rest_batch_size = Some(200);
    let client = Client::connect(cfg).await.unwrap();
    set_faults(
        &sim,
        json!({"http_error_rate": 0.2, "http_error_status": 503, "timeout_rate": 0.03}),
    )
    .await;
    let ids = drain_ids(client.query_all("SELECT Id, Name FROM Account")).await;
    clear_faults(&sim).await;
    assert_eq!(
        ids.into_iter().collect::<HashSet<_>>(),
        live_ids(&sim, "Account").await
    );
    assert!(
        client.usage().failed_calls > 0,
        "faults were hit and retried"
    );
    sim.stop().await;
}

/// Splits the ids of `object` into `n` contiguous Id ranges, as SOQL WHERE clauses.
async fn id_windows(client: &Client, object: &str, n: usize) -> Vec<String> {
    let mut ids = drain_ids(client.query(&format!("SELECT Id FROM {object}"))).await;
    ids.sort();
    let bounds: Vec<&String> = (1..n).map(|i| &ids[i * ids.len() / n]).collect();
    (0..n)
        .map(|i| {
            let lower = if i == 0 {
                String::new()
            } else {
                format!("Id >= '{}'", bounds[i - 1])
            };
            let upper = if i == n - 1 {
                String::new()
            } else {
                format!("Id < '{}'", bounds[i])
            };
            let clause = [lower, upper]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" AND ");
            format!("SELECT Id, Name, Description, SystemModstamp FROM {object} WHERE {clause}")
        })
        .collect()
}

#[tokio::test]
async fn bulk_v1_several_batches_stream_through_faults() {
    let sim = sim(&[("Account", 3000)]).await;
    let client = client(&sim.info).await;
    let windows = id_windows(&client, "Account", 3).await;
    set_faults(&sim, json!({"http_error_rate": 0.2, "timeout_rate": 0.02})).await;
    let job = client
        .bulk_v1_query(
            "Account",
            QueryOperation::QueryAll,
            &windows,
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(job.batches().len(), 3);
    let mut all = HashSet::new();
    for batch in job.batches() {
        let ids = drain_ids(job.stream_batch(&batch.id)).await;
        assert!(!ids.is_empty());
        for id in ids {
            assert!(all.insert(id), "a record came from two batches");
        }
    }
    clear_faults(&sim).await;
    assert_eq!(all, live_ids(&sim, "Account").await);
    assert_eq!(
        stats(&sim).await["bulk_v1"]["batches"].as_u64().unwrap(),
        3,
        "no batch was submitted twice"
    );
    sim.stop().await;
}

/// The server carries an add-batch out and the answer is lost: the batch must be found on the
/// job, not sent again (a window read twice), and the job must still be submitted.
#[tokio::test]
async fn bulk_v1_batches_whose_answer_was_lost_are_not_sent_twice() {
    let sim = sim(&[("Account", 600)]).await;
    let client = client(&sim.info).await;
    let windows = id_windows(&client, "Account", 3).await;
    let live = live_ids(&sim, "Account").await;
    for round in 1..=2u64 {
        set_faults(&sim, json!({"lost_answer_rate": 0.3})).await;
        let job = client
            .bulk_v1_query(
                "Account",
                QueryOperation::QueryAll,
                &windows,
                &Default::default(),
            )
            .await
            .unwrap();
        clear_faults(&sim).await;
        assert_eq!(job.batches().len(), 3);
        let mut all = HashSet::new();
        for batch in job.batches() {
            for id in drain_ids(job.stream_batch(&batch.id)).await {
                assert!(all.insert(id), "a record came from two batches");
            }
        }
        assert_eq!(all, live);
        assert_eq!(
            stats(&sim).await["bulk_v1"]["batches"].as_u64().unwrap(),
            3 * round,
            "no batch was submitted twice"
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn bulk_v2_pages_by_locator_through_faults() {
    let sim = sim(&[("Contact", 2500)]).await;
    let mut cfg = config(&sim.info, password(&sim.info));
    cfg.bulk_v2_page_size = 400;
    let client = Client::connect(cfg).await.unwrap();
    set_faults(&sim, json!({"http_error_rate": 0.2, "timeout_rate": 0.02})).await;
    let job = client
        .bulk_v2_query(
            "SELECT Id, LastName, Email FROM Contact",
            QueryOperation::Query,
        )
        .await
        .unwrap();
    let ids = drain_ids(job.stream()).await;
    clear_faults(&sim).await;
    assert_eq!(
        ids.into_iter().collect::<HashSet<_>>(),
        live_ids(&sim, "Contact").await
    );
    assert_eq!(stats(&sim).await["bulk_v2"]["jobs"].as_u64().unwrap(), 1);
    job.delete().await.unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn expired_session_is_renewed_once_on_rest_and_bulk_v1() {
    let sim = sim(&[("Account", 50)]).await;
    let client = client(&sim.info).await;
    assert_eq!(client.logins(), 1);
    set_faults(&sim, json!({"session_expiry_secs": 1})).await;

    // REST: the 401 INVALID_SESSION_ID array. Time must pass for the token to expire; each call
    // in between must succeed, and the first one after expiry renews exactly once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.logins() == 1 {
        assert!(Instant::now() < deadline, "the session never expired");
        assert_eq!(
            client.count("SELECT COUNT() FROM Account").await.unwrap(),
            50
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(client.logins(), 2);

    // Concurrent requests that all find the session expired share one renewal.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.count("SELECT COUNT() FROM Account").await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 50);
    }
    assert_eq!(
        client.logins(),
        3,
        "one renewal for all concurrent requests"
    );

    // Bulk 1.0: the 400 XML InvalidSessionId.
    let before = client.logins();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let job = client
        .bulk_v1_query(
            "Account",
            QueryOperation::Query,
            &["SELECT Id FROM Account".into()],
            &Default::default(),
        )
        .await
        .expect("bulk call renews the session");
    assert_eq!(client.logins(), before + 1, "renewed exactly once");
    clear_faults(&sim).await;
    assert_eq!(drain_ids(job.stream()).await.len(), 50);
    sim.stop().await;
}

#[tokio::test]
async fn exhausted_quota_ends_in_the_quota_state_not_a_busy_loop() {
    let sim = sim(&[("Account", 2000)]).await;
    let mut cfg = config(&sim.info, password(&sim.info));
    cfg.rest_batch_size = Some(200);
    let client = Client::connect(cfg).await.unwrap();
    let used = total_calls(&sim).await;
    set_faults(&sim, json!({"api_quota": used + 3})).await;
    let items: Vec<_> = client.query("SELECT Id FROM Account").collect().await;
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}");
    assert_eq!(err.action(), Action::WaitForQuota);
    assert!(err.retry_after().is_some());
    assert!(client.usage().quota_exhausted_for.is_some());

    // While held, calls fail at once without reaching Salesforce.
    let calls = total_calls(&sim).await;
    for _ in 0..20 {
        let err = client
            .count("SELECT COUNT() FROM Account")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::QuotaExceeded);
    }
    assert_eq!(
        total_calls(&sim).await,
        calls,
        "a held connection must not call the org"
    );
    assert!(
        calls <= used + 5,
        "the client gave up after the first refusal: {} calls",
        calls - used
    );

    clear_faults(&sim).await;
    client.clear_quota_hold();
    assert_eq!(
        client.count("SELECT COUNT() FROM Account").await.unwrap(),
        2000
    );
    sim.stop().await;
}

#[tokio::test]
async fn malformed_query_and_bad_field_fail_at_once() {
    let sim = sim(&[("Account", 10)]).await;
    let client = client(&sim.info).await;
    let before = total_calls(&sim).await;
    let err = client.count("SELEC Id FROM Account").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert_eq!(err.code(), Some("MALFORMED_QUERY"));
    assert_eq!(err.action(), Action::Fail);
    let err = client
        .query("SELECT Nope__c FROM Account")
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Some("INVALID_FIELD"));
    assert_eq!(
        total_calls(&sim).await,
        before + 2,
        "no retry of a bad query"
    );

    let err = client
        .bulk_v2_query("SELECT Nope__c FROM Account", QueryOperation::Query)
        .await
        .unwrap_err();
    assert_eq!(err.action(), Action::Fail, "{err}");
    sim.stop().await;
}

#[tokio::test]
async fn query_timeouts_ask_to_split_the_window() {
    let sim = sim(&[("Account", 300)]).await;
    let client = client(&sim.info).await;
    set_faults(&sim, json!({"query_timeout_above_rows": 100})).await;
    let err = client
        .query("SELECT Id FROM Account")
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QueryTimeout, "{err}");
    assert_eq!(err.action(), Action::SplitWindow);

    let job = client
        .bulk_v2_query("SELECT Id FROM Account", QueryOperation::Query)
        .await
        .unwrap();
    let err = job.stream().next().await.unwrap().unwrap_err();
    assert_eq!(err.action(), Action::SplitWindow, "{err}");

    let job = client
        .bulk_v1_query(
            "Account",
            QueryOperation::Query,
            &["SELECT Id FROM Account".into()],
            &Default::default(),
        )
        .await
        .unwrap();
    let err = job.stream().next().await.unwrap().unwrap_err();
    assert_eq!(err.action(), Action::SplitWindow, "{err}");
    sim.stop().await;
}

#[tokio::test]
async fn failed_bulk_batches_are_classified() {
    let sim = sim(&[("Account", 50)]).await;
    let client = client(&sim.info).await;
    set_faults(&sim, json!({"bulk_batch_failure_rate": 1.0})).await;
    let job = client
        .bulk_v1_query(
            "Account",
            QueryOperation::Query,
            &["SELECT Id FROM Account".into()],
            &Default::default(),
        )
        .await
        .unwrap();
    let items: Vec<_> = job.stream().collect().await;
    assert_eq!(items.len(), 1, "the stream ends at its error");
    let err = items[0].as_ref().unwrap_err();
    assert_ne!(err.action(), Action::Fail, "{err}");
    sim.stop().await;
}

#[tokio::test]
async fn composite_and_single_record_writes() {
    let sim = sim(&[("Account", 1)]).await;
    let client = client(&sim.info).await;
    let accounts: Vec<SObject> = (0..250)
        .map(|i| SObject::new("Account").with("Name", format!("Composite {i}")))
        .collect();
    let created = client.create_records(&accounts, false).await.unwrap();
    assert_eq!(created.len(), 250, "split into 200 + 50");
    assert!(created.iter().all(|r| r.success && r.id.is_some()));
    let ids: Vec<String> = created.iter().map(|r| r.id.clone().unwrap()).collect();

    let updates: Vec<SObject> = ids
        .iter()
        .map(|id| {
            SObject::new("Account")
                .with("Id", id.as_str())
                .with("Name", "Renamed")
        })
        .collect();
    assert!(client
        .update_records(&updates, false)
        .await
        .unwrap()
        .iter()
        .all(|r| r.success));
    assert_eq!(
        client
            .count("SELECT COUNT() FROM Account WHERE Name = 'Renamed'")
            .await
            .unwrap(),
        250
    );

    let invoices: Vec<SObject> = (0..3)
        .map(|i| {
            SObject::new("Invoice__c")
                .with("External_Id__c", format!("EXT-{i}"))
                .with("Name", format!("INV {i}"))
        })
        .collect();
    let up = client
        .upsert_records("Invoice__c", "External_Id__c", &invoices, false)
        .await
        .unwrap();
    assert!(
        up.iter().all(|r| r.success && r.created == Some(true)),
        "{up:?}"
    );
    let up = client
        .upsert_records("Invoice__c", "External_Id__c", &invoices, false)
        .await
        .unwrap();
    assert!(
        up.iter().all(|r| r.success && r.created == Some(false)),
        "{up:?}"
    );

    let bad = client
        .create_records(&[SObject::new("Account")], false)
        .await
        .unwrap();
    assert!(!bad[0].success);
    assert_eq!(bad[0].errors[0].status_code, "REQUIRED_FIELD_MISSING");

    let deleted = client.delete_records(&ids[..10], false).await.unwrap();
    assert!(deleted.iter().all(|r| r.success));

    // Single-record CRUD.
    let mut fields = serde_json::Map::new();
    fields.insert("Name".into(), json!("Single"));
    let id = client.create("Account", &fields).await.unwrap();
    let rec = client
        .get("Account", &id, Some(&["Id", "Name"]))
        .await
        .unwrap();
    assert_eq!(rec.get("Name"), Some("Single"));
    fields.insert("Name".into(), json!("Single 2"));
    client.update("Account", &id, &fields).await.unwrap();
    assert_eq!(
        client.get("Account", &id, None).await.unwrap().get("Name"),
        Some("Single 2")
    );
    let mut inv = serde_json::Map::new();
    inv.insert("Name".into(), json!("Upserted"));
    let r = client
        .upsert("Invoice__c", "External_Id__c", "EXT-NEW", &inv)
        .await
        .unwrap();
    assert!(r.created);
    let r = client
        .upsert("Invoice__c", "External_Id__c", "EXT-NEW", &inv)
        .await
        .unwrap();
    assert!(!r.created);
    client.delete("Account", &id).await.unwrap();
    let err = client.get("Account", &id, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    // getUpdated / getDeleted see these writes.
    let end = Utc::now() + chrono::Duration::minutes(1);
    let start = end - chrono::Duration::minutes(10);
    let updated = client.get_updated("Account", start, end).await.unwrap();
    assert!(updated.ids.iter().any(|i| ids.contains(i)));
    assert!(updated.latest_date_covered <= end);
    let deleted = client.get_deleted("Account", start, end).await.unwrap();
    let deleted_ids: HashSet<_> = deleted
        .deleted_records
        .iter()
        .map(|d| d.id.as_str())
        .collect();
    assert!(ids[..10].iter().all(|i| deleted_ids.contains(i.as_str())));
    assert!(deleted.latest_date_covered <= end);
    assert!(deleted.earliest_date_available.is_some());
    sim.stop().await;
}

#[tokio::test]
async fn tls_simulator_with_an_extra_ca_file() {
    let sim = sim_with(&[("Lead", 20)], |c| c.tls = true).await;
    assert!(sim.info.instance_url.starts_with("https://"));
    assert!(sim.info.ca_cert.is_some());
    let client = client(&sim.info).await;
    assert_eq!(
        drain_ids(client.query("SELECT Id FROM Lead")).await.len(),
        20
    );

    let mut no_ca = config(&sim.info, password(&sim.info));
    no_ca.ca_cert = None;
    no_ca.retry.max_attempts = 1;
    let err = Client::connect(no_ca).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Transient,
        "an untrusted certificate fails the connection: {err}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn long_running_requests_are_capped_per_org() {
    let sim = sim(&[("Account", 600)]).await;
    let mut cfg = config(&sim.info, password(&sim.info));
    cfg.max_long_running = 1;
    cfg.bulk_v2_page_size = 100;
    let client = Client::connect(cfg).await.unwrap();
    let job = client
        .bulk_v2_query("SELECT Id FROM Account", QueryOperation::Query)
        .await
        .unwrap();
    let mut first = job.stream();
    first.next().await.unwrap().unwrap();
    assert_eq!(
        client.long_running_slots_available().await.unwrap(),
        0,
        "an open result page holds the slot"
    );

    // A second connection to the same org waits for the slot.
    let other = client.clone();
    let second = tokio::spawn(async move { other.query("SELECT Id FROM Account").next().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second long request must wait");
    drop(first);
    let r = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .unwrap()
        .unwrap();
    assert!(r.unwrap().is_ok());
    assert_eq!(client.long_running_slots_available().await.unwrap(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn bulk_v1_pk_chunking_streams_the_chunk_batches() {
    let sim = sim(&[("Account", 2000)]).await;
    let client = client(&sim.info).await;
    let options = salesforce::BulkV1Options {
        pk_chunking: Some(500),
        ..Default::default()
    };
    let job = client
        .bulk_v1_query(
            "Account",
            QueryOperation::Query,
            &["SELECT Id, Name FROM Account".into()],
            &options,
        )
        .await
        .unwrap();
    let ids = drain_ids(job.stream()).await;
    assert_eq!(
        ids.into_iter().collect::<HashSet<_>>(),
        live_ids(&sim, "Account").await
    );
    let batches = job.list_batches().await.unwrap();
    assert!(
        batches.len() >= 5,
        "the original plus at least four chunks: {batches:?}"
    );
    assert_eq!(
        batches
            .iter()
            .filter(|b| b.state == salesforce::BatchState::NotProcessed)
            .count(),
        1
    );

    // A job found again by id (after a restart) streams the same records.
    let again = client.bulk_v1_job(job.id(), "Account").await.unwrap();
    assert_eq!(drain_ids(again.stream()).await.len(), 2000);
    sim.stop().await;
}
