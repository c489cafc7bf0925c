//! Response header names on the wire, byte for byte, as a case-sensitive client reads them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

struct Raw {
    addr: String,
    token: String,
}

impl Raw {
    /// Sends `head` (plus `body`) on a fresh connection and returns every byte until the server
    /// closes it.
    fn exchange(&self, requests: &str) -> String {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(requests.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn get(&self, path: &str) -> String {
        self.exchange(&format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.addr, self.token
        ))
    }
}

/// The header names of the first response head in `raw`, as sent.
fn names(raw: &str) -> Vec<&str> {
    let head = &raw[..raw.find("\r\n\r\n").expect("a complete head")];
    head.split("\r\n")
        .skip(1)
        .map(|l| l.split_once(':').expect("name: value").0)
        .collect()
}

fn assert_has(raw: &str, wanted: &[&str]) {
    let got = names(raw);
    for w in wanted {
        assert!(got.contains(w), "{w} missing from {got:?}\n{raw}");
    }
    for n in &got {
        assert!(
            !n.chars().next().unwrap().is_ascii_lowercase(),
            "{n} is not in Salesforce's casing\n{raw}"
        );
    }
}

async fn start(tls: bool) -> (sfsim::RunningSim, Raw) {
    let sim = sfsim::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 30)],
        tls,
        ..Default::default()
    })
    .await
    .expect("simulator starts");
    let addr = sim
        .info
        .instance_url
        .split("://")
        .nth(1)
        .unwrap()
        .to_string();
    let token = sim.state.sessions.issue();
    (sim, Raw { addr, token })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_sends_salesforce_casing() {
    let (sim, raw) = start(false).await;
    let raw = std::sync::Arc::new(raw);
    let r = raw.clone();
    let token = sim.info.client_secret.clone();
    let got = tokio::task::spawn_blocking(move || {
        let form = format!(
            "grant_type=password&client_id=driftless-sim&client_secret={token}&username=admin%40driftless.sim&password=driftless"
        );
        let oauth = r.exchange(&format!(
            "POST /services/oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ));
        let soap_body = "<?xml version=\"1.0\"?><env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\">\
             <env:Body><n1:login xmlns:n1=\"urn:partner.soap.sforce.com\"><n1:username>admin@driftless.sim</n1:username>\
             <n1:password>driftless</n1:password></n1:login></env:Body></env:Envelope>";
        let soap = r.exchange(&format!(
            "POST /services/Soap/u/59.0 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nSOAPAction: login\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{soap_body}",
            soap_body.len()
        ));
        let query = r.get("/services/data/v62.0/query?q=SELECT+Id+FROM+Account");
        let not_found = r.get("/services/data/v62.0/sobjects/NoSuchObject/describe");
        let bulk_v1_error = r.get("/services/async/62.0/job/750000000000000AAA");
        (oauth, soap, query, not_found, bulk_v1_error)
    })
    .await
    .unwrap();
    let (oauth, soap, query, not_found, bulk_v1_error) = got;
    assert!(oauth.starts_with("HTTP/1.1 200"), "{oauth}");
    assert_has(&oauth, &["Content-Type", "Content-Length", "Date"]);
    assert!(soap.starts_with("HTTP/1.1 200"), "{soap}");
    assert_has(&soap, &["Content-Type"]);
    assert!(query.starts_with("HTTP/1.1 200"), "{query}");
    assert_has(&query, &["Content-Type", "Sforce-Limit-Info"]);
    assert!(query.contains("\r\nContent-Type: application/json;charset=UTF-8\r\n"));
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
    assert_has(&not_found, &["Content-Type", "Sforce-Limit-Info"]);
    assert!(bulk_v1_error.starts_with("HTTP/1.1 400"), "{bulk_v1_error}");
    assert_has(&bulk_v1_error, &["Content-Type"]);

    // Bulk 2.0 result pages: the headers clients page by.
    let http = reqwest::Client::new();
    let base = sim.base_url().to_string();
    let job: serde_json::Value = http
        .post(format!("{base}/services/data/v62.0/jobs/query"))
        .bearer_auth(&raw.token)
        .json(&serde_json::json!({"operation": "query", "query": "SELECT Id, Name FROM Account"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().expect("job id").to_string();
    loop {
        let state: serde_json::Value = http
            .get(format!("{base}/services/data/v62.0/jobs/query/{id}"))
            .bearer_auth(&raw.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if state["state"] == "JobComplete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = raw.clone();
    let page = tokio::task::spawn_blocking(move || {
        r.get(&format!(
            "/services/data/v62.0/jobs/query/{id}/results?maxRecords=10"
        ))
    })
    .await
    .unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert_has(
        &page,
        &[
            "Content-Type",
            "Sforce-Locator",
            "Sforce-NumberOfRecords",
            "Sforce-Limit-Info",
        ],
    );
    assert!(
        page.contains("\r\nSforce-NumberOfRecords: 10\r\n"),
        "{page}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_on_a_kept_alive_connection_is_recased() {
    let (sim, raw) = start(false).await;
    let got = tokio::task::spawn_blocking(move || {
        let one = |close: bool| {
            format!(
                "GET /services/data/v62.0/query?q=SELECT+Id,Name+FROM+Account HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {}\r\n{}\r\n",
                raw.token,
                if close { "Connection: close\r\n" } else { "" }
            )
        };
        let head = format!(
            "HEAD /services/data/v62.0/limits HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            raw.token
        );
        // Pipelined: each head follows the previous body (none after HEAD) on the same stream.
        raw.exchange(&format!("{}{head}{}{}", one(false), one(false), one(true)))
    })
    .await
    .unwrap();
    let heads: Vec<&str> = got.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(heads.len(), 4, "{got}");
    for h in heads {
        assert!(h.contains("\r\nSforce-Limit-Info: api-usage="), "{h}");
        assert!(h.contains("\r\nContent-Type: application/json"), "{h}");
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_responses_are_recased_too() {
    let (sim, raw) = start(true).await;
    let ca = std::fs::read(sim.info.ca_cert.as_ref().unwrap()).unwrap();
    let got = tokio::task::spawn_blocking(move || {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut ca.as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let conn = rustls::ClientConnection::new(
            std::sync::Arc::new(config),
            "127.0.0.1".try_into().unwrap(),
        )
        .unwrap();
        let tcp = TcpStream::connect(&raw.addr).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        write!(
            tls,
            "GET /services/data/v62.0/limits HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            raw.token
        )
        .unwrap();
        let mut out = Vec::new();
        // rustls reports the peer's close without close_notify as an error after the data.
        let _ = tls.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_has(&got, &["Content-Type", "Sforce-Limit-Info"]);
    sim.stop().await;
}
