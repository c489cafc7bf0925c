//! The `/_sim/` control plane and the guard every Salesforce-facing request passes: faults,
//! sessions, API accounting, quota, stats and the ground-truth export.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn sim(dataset: &[(&str, u64)]) -> sfsim::RunningSim {
    sfsim::start(sfsim::SimConfig {
        dataset: dataset.iter().map(|(o, n)| (o.to_string(), *n)).collect(),
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn post_json(url: String, body: Value) -> reqwest::Response {
    client().post(url).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn injected_http_errors_take_each_apis_error_shape() {
    let sim = sim(&[]).await;
    let base = sim.base_url().to_string();
    let token = sim.state.sessions.issue();
    let r = post_json(
        format!("{base}/_sim/faults"),
        json!({"http_error_rate": 1.0, "http_error_status": 503}),
    )
    .await;
    assert_eq!(r.status(), 200);

    let r = client()
        .get(format!("{base}/services/data/v62.0/sobjects"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "SERVER_UNAVAILABLE");

    let r = client()
        .get(format!("{base}/services/async/62.0/job/7505g0000000001AAA"))
        .header("X-SFDC-Session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/xml");
    assert!(r.text().await.unwrap().contains("<exceptionCode>"));

    // The control plane itself is never faulted, and DELETE clears every fault.
    let r = client()
        .delete(format!("{base}/_sim/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!("{base}/services/data/v62.0/sobjects"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 503);
    sim.stop().await;
}

#[tokio::test]
async fn latency_and_timeouts_are_injected() {
    let sim = sim(&[]).await;
    let base = sim.base_url().to_string();
    post_json(
        format!("{base}/_sim/faults"),
        json!({"latency_ms": [300, 400]}),
    )
    .await;
    let started = Instant::now();
    client()
        .get(format!("{base}/services/data/"))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "latency is a lower bound"
    );

    post_json(
        format!("{base}/_sim/faults"),
        json!({"latency_ms": [0, 0], "timeout_rate": 1.0}),
    )
    .await;
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = short
        .get(format!("{base}/services/data/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    client()
        .delete(format!("{base}/_sim/faults"))
        .send()
        .await
        .unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn sessions_expire_with_the_fault_and_bad_tokens_get_each_apis_shape() {
    let sim = sim(&[]).await;
    let base = sim.base_url().to_string();
    let r = client()
        .get(format!("{base}/services/data/v62.0/sobjects"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );

    let r = client()
        .get(format!("{base}/services/async/62.0/job/7505g0000000001AAA"))
        .header("X-SFDC-Session", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<exceptionCode>InvalidSessionId</exceptionCode>"));

    let token = sim.state.sessions.issue();
    post_json(
        format!("{base}/_sim/faults"),
        json!({"session_expiry_secs": 1}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client()
            .get(format!("{base}/services/data/v62.0/sobjects"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if r.status() == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "token never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A fresh token is valid again.
    let fresh = sim.state.sessions.issue();
    let r = client()
        .get(format!("{base}/services/data/v62.0/sobjects"))
        .bearer_auth(&fresh)
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 401);
    sim.stop().await;
}

#[tokio::test]
async fn api_quota_counts_every_call_and_then_refuses() {
    let sim = sim(&[]).await;
    let base = sim.base_url().to_string();
    let token = sim.state.sessions.issue();
    let get = || {
        client()
            .get(format!("{base}/services/data/v62.0/sobjects"))
            .bearer_auth(&token)
            .send()
    };
    let r = get().await.unwrap();
    assert_eq!(
        r.headers()["sforce-limit-info"].to_str().unwrap(),
        format!("api-usage=1/{}", sfsim::config::DEFAULT_DAILY_API_REQUESTS)
    );
    post_json(format!("{base}/_sim/faults"), json!({"api_quota": 3})).await;
    assert_ne!(get().await.unwrap().status(), 403);
    assert_ne!(get().await.unwrap().status(), 403);
    let r = get().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["sforce-limit-info"], "api-usage=4/3");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "REQUEST_LIMIT_EXCEEDED");
    let r = client()
        .get(format!("{base}/services/async/62.0/job/7505g0000000001AAA"))
        .header("X-SFDC-Session", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("REQUEST_LIMIT_EXCEEDED"));

    let stats: Value = client()
        .get(format!("{base}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["api_calls"]["total"], 5);
    assert_eq!(stats["api_calls"]["by_route"]["GET sobjects"], 4);
    assert_eq!(stats["open_transactions"], 0);
    sim.stop().await;
}

#[tokio::test]
async fn quota_from_the_command_line() {
    let sim = sfsim::start(sfsim::SimConfig {
        api_quota: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let base = sim.base_url().to_string();
    let token = sim.state.sessions.issue();
    let get = || {
        client()
            .get(format!("{base}/services/data/v62.0/sobjects"))
            .bearer_auth(&token)
            .send()
    };
    assert_ne!(get().await.unwrap().status(), 403);
    assert_eq!(get().await.unwrap().status(), 403);
    sim.stop().await;
}

#[tokio::test]
async fn bad_control_requests_are_refused_with_the_reason() {
    let sim = sim(&[]).await;
    let base = sim.base_url().to_string();
    for (path, body, needle) in [
        ("faults", json!({"http_error_rate": 3}), "http_error_rate"),
        ("faults", json!({"bogus": 1}), "bogus"),
        ("workload", json!({"object": "Nope"}), "Nope"),
        (
            "workload",
            json!({"object": "Account", "long_txn_fraction": 0.5}),
            "long_txn_ms",
        ),
    ] {
        let r = post_json(format!("{base}/_sim/{path}"), body).await;
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains(needle), "{path} {needle}");
    }
    let r = client()
        .get(format!("{base}/_sim/export/Nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    sim.stop().await;
}

#[tokio::test]
async fn workload_over_http_and_export_is_ground_truth() {
    let sim = sim(&[("Account", 300)]).await;
    let base = sim.base_url().to_string();
    let r = post_json(
        format!("{base}/_sim/workload"),
        json!({"object":"Account","inserts_per_sec":50,"updates_per_sec":100,"deletes_per_sec":20,
               "undeletes_per_sec":5,"long_txn_fraction":0.3,"long_txn_ms":[300,600]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let w: Value = client()
            .get(format!("{base}/_sim/workload"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if w["objects"]["Account"]["deletes"].as_u64().unwrap_or(0) >= 3
            && w["long_transactions"]["opened"].as_u64().unwrap_or(0) >= 3
        {
            break;
        }
        assert!(Instant::now() < deadline, "workload stalled: {w}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let w: Value = client()
        .delete(format!("{base}/_sim/workload"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        w["long_transactions"]["opened"],
        w["long_transactions"]["committed"]
    );
    let stats: Value = client()
        .get(format!("{base}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["open_transactions"], 0);

    let csv = client()
        .get(format!("{base}/_sim/export/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::ReaderBuilder::new().from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "Id");
    let deleted_col = header.iter().position(|h| h == "IsDeleted").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let org = &sim.state.org;
    let account = org.schema.object_index("Account").unwrap();
    assert_eq!(rows.len(), org.count(account, true));
    assert!(rows.len() > 300, "inserts are exported");
    let deleted = rows.iter().filter(|r| &r[deleted_col] == "true").count();
    assert_eq!(
        deleted,
        org.count(account, true) - org.count(account, false)
    );
    assert!(deleted > 0, "deleted records are exported");
    sim.stop().await;
}

#[tokio::test]
async fn public_url_is_what_logins_announce() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://localhost:{port}");
    let sim = sfsim::start(sfsim::SimConfig {
        listen: format!("127.0.0.1:{port}"),
        public_url: Some(format!("{public}/")),
        ..Default::default()
    })
    .await
    .expect("simulator starts");
    assert_eq!(sim.info.instance_url, public);
    assert_eq!(sim.info.login_url, public);
    let i = &sim.info;
    let r = client()
        .post(format!("http://127.0.0.1:{port}/services/oauth2/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", i.client_id.as_str()),
            ("client_secret", i.client_secret.as_str()),
            ("username", i.username.as_str()),
            ("password", i.password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["instance_url"], public.as_str());
}
