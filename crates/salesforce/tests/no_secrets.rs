//! Captures every log line of a full run at TRACE level (the client's spans and events, and the
//! `log` records of reqwest, hyper-util and rustls) and finds no credential in it.
//!
//! The simulator runs on its own runtime threads, which do not use the capturing subscriber:
//! this test is about what the client logs, and the simulator's logs are its own business.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use futures::StreamExt;
use salesforce::{Client, Credentials, QueryOperation, SObject, Secret};
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_credential_reaches_the_logs() {
    let sim_runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = sim_runtime.block_on(sim_with(&[("Account", 1200)], |c| {
        c.tls = true;
        c.pubsub_keepalive = std::time::Duration::from_millis(200);
    }));
    let info = sim.info.clone();
    let pubsub_endpoint = sim.pubsub_endpoint.clone();

    tracing_log::LogTracer::init().expect("log bridge");
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    client_runtime.block_on(async {
        let set = |faults| {
            let base = info.instance_url.clone();
            let control = http_for(&info);
            async move {
                control
                    .post(format!("{base}/_sim/faults"))
                    .json(&faults)
                    .send()
                    .await
                    .unwrap();
            }
        };
        let refresh = Credentials::RefreshToken {
            client_id: info.client_id.clone(),
            client_secret: Some(Secret::new(info.client_secret.clone())),
            refresh_token: Secret::new(info.refresh_token.clone()),
        };
        for credentials in [password(&info), refresh] {
            let mut cfg = config(&info, credentials);
            cfg.bulk_v2_page_size = 500;
            let client = Client::connect(cfg.clone()).await.unwrap();
            tokens.push(client.access_token().await.unwrap());
            tracing::info!(?cfg, ?client, "connected");

            let total = client.count("SELECT COUNT() FROM Account").await.unwrap() as usize;
            let n = client
                .query("SELECT Id, Name FROM Account")
                .filter(|r| futures::future::ready(r.is_ok()))
                .count()
                .await;
            assert_eq!(n, total);
            let job = client
                .bulk_v1_query(
                    "Account",
                    QueryOperation::Query,
                    &["SELECT Id FROM Account".into()],
                    &Default::default(),
                )
                .await
                .unwrap();
            assert_eq!(job.stream().count().await, total);
            let job = client
                .bulk_v2_query("SELECT Id FROM Account", QueryOperation::Query)
                .await
                .unwrap();
            assert_eq!(job.stream().count().await, total);
            client
                .create_records(&[SObject::new("Account").with("Name", "Logged")], false)
                .await
                .unwrap();

            // A renewal, retries and a failed query, all logged at TRACE.
            set(json!({"session_expiry_secs": 1, "http_error_rate": 0.3})).await;
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            // The Pub/Sub subscriber meets the expired session first and renews it.
            let mut sub = salesforce::Subscriber::new(
                client.clone(),
                salesforce::PubSubConfig::new(pubsub_endpoint.clone()),
                salesforce::change_event_topic("Account"),
                salesforce::ReplayFrom::Latest,
            );
            let batch = tokio::time::timeout(std::time::Duration::from_secs(20), sub.next())
                .await
                .expect("a keepalive in time")
                .expect("subscribed");
            tracing::info!(?batch, stats = ?sub.stats(), "subscribed");
            client.count("SELECT COUNT() FROM Account").await.unwrap();
            tokens.push(client.access_token().await.unwrap());
            set(json!({"session_expiry_secs": 0, "http_error_rate": 0})).await;
            let err = client.count("SELEC nonsense").await.unwrap_err();
            tracing::error!(error = %err, debug = ?err, "query failed");
        }
        let mut wrong = config(&info, password(&info));
        wrong.credentials = Credentials::Password {
            username: info.username.clone(),
            password: Secret::new(format!("{}-wrong", info.password)),
            client_id: info.client_id.clone(),
            client_secret: Secret::new(info.client_secret.clone()),
        };
        let err = Client::connect(wrong).await.unwrap_err();
        tracing::error!(error = %err, debug = ?err, "login failed");
    });
    drop(_guard);

    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    if let Ok(path) = std::env::var("SALESFORCE_TEST_LOG_DUMP") {
        std::fs::write(path, &text).unwrap();
    }
    assert!(text.contains("sf.call"), "client spans were captured");
    assert!(
        text.contains("reqwest") || text.contains("hyper"),
        "transport logs were captured"
    );
    assert!(
        text.lines().count() > 100,
        "a full run logs plenty: {} lines",
        text.lines().count()
    );
    let mut secrets = vec![
        info.client_secret.clone(),
        info.refresh_token.clone(),
        format!("{}-wrong", info.password),
    ];
    secrets.extend(tokens.iter().map(|t| t.expose().to_owned()));
    for secret in &secrets {
        assert!(
            secret.len() >= 8,
            "secret too short to search for meaningfully"
        );
        assert!(
            !text.contains(secret.as_str()),
            "a credential appears in the logs"
        );
    }
    // The simulator's password is a plain word that also occurs in the client id, the username
    // and the user agent: take those legitimate contexts out, then the word must be gone.
    let mut rest = text.clone();
    for allowed in [&info.client_id, &info.username, "driftless-salesforce/"] {
        rest = rest.replace(allowed, "");
    }
    assert!(
        !rest.contains(&info.password),
        "the password appears in the logs"
    );
    // The access token's distinctive part after the org id prefix, in case it is logged cut.
    for token in &tokens {
        let t = token.expose();
        let tail = &t[t.len() - 16..];
        assert!(
            !text.contains(tail),
            "part of an access token appears in the logs"
        );
    }
    sim_runtime.block_on(sim.stop());
}
