//! Bulk API 1.0 and 2.0 against an in-process simulator, over HTTP as clients see them.

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use sfsim::value::Value;
use sfsim::{RunningSim, SimConfig};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const V1: &str = "/services/async/58.0";
const V2: &str = "/services/data/v58.0/jobs/query";

struct Ctx {
    sim: RunningSim,
    http: reqwest::Client,
    token: String,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn start(accounts: u64, bulk_rows_per_sec: Option<u64>) -> Ctx {
    let sim = sfsim::start(SimConfig {
        dataset: vec![("Account".into(), accounts)],
        bulk_rows_per_sec,
        ..Default::default()
    })
    .await
    .expect("simulator starts");
    let token = sim.state.sessions.issue();
    Ctx {
        sim,
        http: reqwest::Client::new(),
        token,
    }
}

impl Ctx {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.expect("request");
        let (status, headers) = (r.status(), r.headers().clone());
        Resp {
            status,
            headers,
            body: r.text().await.expect("body"),
        }
    }

    async fn v1(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Resp {
        let rb = self
            .http
            .request(method, self.url(&format!("{V1}{path}")))
            .header("X-SFDC-Session", &self.token)
            .header("Content-Type", content_type)
            .body(body.to_string());
        self.send(rb).await
    }

    async fn v1_get(&self, path: &str, content_type: &str) -> Resp {
        self.v1(reqwest::Method::GET, path, content_type, "").await
    }

    async fn v1_post(&self, path: &str, content_type: &str, body: &str) -> Resp {
        self.v1(reqwest::Method::POST, path, content_type, body)
            .await
    }

    async fn v2(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Resp {
        let mut rb = self
            .http
            .request(method, self.url(path))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "text/csv");
        if let Some(b) = body {
            rb = rb
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        self.send(rb).await
    }

    /// Creates an XML-described query job; `pk` is the Sforce-Enable-PKChunking value.
    async fn xml_job(&self, operation: &str, content_type: &str, pk: Option<&str>) -> String {
        let body = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="http://www.force.com/2009/06/asyncapi/dataload"><operation>{operation}</operation><object>Account</object><contentType>{content_type}</contentType></jobInfo>"#
        );
        let mut rb = self
            .http
            .post(self.url(&format!("{V1}/job")))
            .header("X-SFDC-Session", &self.token)
            .header("Content-Type", "application/xml; charset=UTF-8")
            .body(body);
        if let Some(pk) = pk {
            rb = rb.header("Sforce-Enable-PKChunking", pk);
        }
        let r = self.send(rb).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.content_type(), "application/xml");
        assert_eq!(tag(&r.body, "state").as_deref(), Some("Open"));
        tag(&r.body, "id").expect("job id")
    }

    /// Polls a batch until it leaves Queued/InProgress; returns its final info and every state seen.
    async fn wait_batch_xml(&self, job: &str, batch: &str) -> (String, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let r = self
                .v1_get(&format!("/job/{job}/batch/{batch}"), "application/xml")
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            let state = tag(&r.body, "state").expect("state");
            if seen.last() != Some(&state) {
                seen.push(state.clone());
            }
            if !matches!(state.as_str(), "Queued" | "InProgress") {
                return (r.body, seen);
            }
            assert!(Instant::now() < deadline, "batch {batch} stuck in {state}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_v2(&self, id: &str) -> (serde_json::Value, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let r = self
                .v2(reqwest::Method::GET, &format!("{V2}/{id}"), None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            let info = r.json();
            let state = info["state"].as_str().expect("state").to_string();
            if seen.last() != Some(&state) {
                seen.push(state.clone());
            }
            if !matches!(state.as_str(), "UploadComplete" | "InProgress") {
                return (info, seen);
            }
            assert!(Instant::now() < deadline, "job {id} stuck in {state}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn v2_job(&self, query: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut body = serde_json::json!({"operation": "query", "query": query});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let r = self.v2(reqwest::Method::POST, V2, Some(body)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(
            r.content_type().starts_with("application/json"),
            "{}",
            r.content_type()
        );
        r.json()
    }

    /// Every result row of a Completed v1 CSV batch, header first.
    async fn v1_csv_results(&self, job: &str, batch: &str) -> Vec<Vec<String>> {
        let list = self
            .v1_get(
                &format!("/job/{job}/batch/{batch}/result"),
                "application/xml",
            )
            .await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        assert!(list.body.contains("<result-list"), "{}", list.body);
        let mut all = Vec::new();
        for rid in tags(&list.body, "result") {
            let r = self
                .v1_get(
                    &format!("/job/{job}/batch/{batch}/result/{rid}"),
                    "text/csv",
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            assert_eq!(r.content_type(), "text/csv");
            let rows = parse_csv(&r.body, ',');
            if all.is_empty() {
                all = rows;
            } else {
                all.extend(rows.into_iter().skip(1));
            }
        }
        all
    }
}

fn tag(xml: &str, name: &str) -> Option<String> {
    tags(xml, name).into_iter().next()
}

/// Text of every `<name>…</name>` element (no nesting, no attributes), in order.
fn tags(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    out
}

/// A small RFC 4180 reader: quoted fields may hold delimiters, doubled quotes and newlines.
fn parse_csv(text: &str, delimiter: char) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                c => field.push(c),
            }
        } else if c == '"' {
            quoted = true;
        } else if c == delimiter {
            row.push(std::mem::take(&mut field));
        } else if c == '\n' {
            row.push(std::mem::take(&mut field));
            rows.push(std::mem::take(&mut row));
        } else if c != '\r' {
            field.push(c);
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

fn live_account_ids(sim: &RunningSim) -> HashSet<String> {
    let org = &sim.state.org;
    let account = org.object_index("Account").unwrap();
    org.read(|t| {
        t[account]
            .iter()
            .filter(|r| !sfsim::store::is_deleted(r))
            .map(|r| sfsim::store::record_id(r).to_string())
            .collect()
    })
}

fn field(sim: &RunningSim, object: &str, name: &str) -> (usize, usize) {
    let org = &sim.state.org;
    let o = org.object_index(object).unwrap();
    (o, org.schema.objects[o].field_index(name).unwrap())
}

/// Creates (and commits) one record through the store, as a REST write would.
fn create(sim: &RunningSim, object: &str, values: &[(&str, Value)]) -> String {
    let org = &sim.state.org;
    let o = org.object_index(object).unwrap();
    let values = values
        .iter()
        .map(|(n, v)| (field(sim, object, n).1, v.clone()))
        .collect();
    let mut txn = org.begin();
    let id = org.create(&mut txn, o, values).expect("create");
    org.commit(txn);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_xml_job_runs_queued_to_completed_and_serves_csv() {
    let ctx = start(3000, None).await;
    let job = ctx.xml_job("query", "CSV", None).await;
    let r = ctx
        .v1_post(
            &format!("/job/{job}/batch"),
            "text/csv",
            "SELECT Id, Name FROM Account",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.content_type(), "application/xml");
    assert_eq!(
        tag(&r.body, "state").as_deref(),
        Some("Queued"),
        "{}",
        r.body
    );
    let batch = tag(&r.body, "id").unwrap();
    assert_eq!(tag(&r.body, "jobId").as_deref(), Some(job.as_str()));

    // Closing right after submitting (as simple-salesforce does) must not stop the batch.
    let close = r#"<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="http://www.force.com/2009/06/asyncapi/dataload"><state>Closed</state></jobInfo>"#;
    let r = ctx
        .v1_post(
            &format!("/job/{job}"),
            "application/xml; charset=UTF-8",
            close,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.content_type(), "application/xml");
    assert_eq!(tag(&r.body, "state").as_deref(), Some("Closed"));

    let (info, seen) = ctx.wait_batch_xml(&job, &batch).await;
    assert_eq!(tag(&info, "state").as_deref(), Some("Completed"), "{info}");
    assert_eq!(
        tag(&info, "numberRecordsProcessed").as_deref(),
        Some("3000")
    );
    assert!(
        seen.iter()
            .all(|s| ["Queued", "InProgress", "Completed"].contains(&s.as_str())),
        "{seen:?}"
    );

    let job_info = ctx.v1_get(&format!("/job/{job}"), "application/xml").await;
    assert_eq!(
        tag(&job_info.body, "numberBatchesCompleted").as_deref(),
        Some("1"),
        "{}",
        job_info.body
    );
    assert_eq!(
        tag(&job_info.body, "numberBatchesTotal").as_deref(),
        Some("1")
    );
    assert_eq!(
        tag(&job_info.body, "numberRecordsProcessed").as_deref(),
        Some("3000")
    );
    assert_eq!(tag(&job_info.body, "apiVersion").as_deref(), Some("58.0"));

    let list = ctx
        .v1_get(&format!("/job/{job}/batch"), "application/json")
        .await;
    assert_eq!(
        list.content_type(),
        "application/xml",
        "a CSV job lists batches in XML"
    );
    assert!(list.body.contains("<batchInfoList"), "{}", list.body);
    assert_eq!(tags(&list.body, "batchInfo").len(), 1);

    let rows = ctx.v1_csv_results(&job, &batch).await;
    assert_eq!(rows[0], vec!["Id", "Name"]);
    let ids: HashSet<String> = rows[1..].iter().map(|r| r[0].clone()).collect();
    assert_eq!(rows.len() - 1, 3000);
    assert_eq!(ids, live_account_ids(&ctx.sim));

    // Closed jobs take no more batches; unknown ids are InvalidJob / InvalidBatch.
    let r = ctx
        .v1_post(
            &format!("/job/{job}/batch"),
            "text/csv",
            "SELECT Id FROM Account",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        tag(&r.body, "exceptionCode").as_deref(),
        Some("InvalidJobState"),
        "{}",
        r.body
    );
    let r = ctx
        .v1_get("/job/7505g00000ZZZZZAAA", "application/xml")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        tag(&r.body, "exceptionCode").as_deref(),
        Some("InvalidJob"),
        "{}",
        r.body
    );
    let r = ctx
        .v1_get(
            &format!("/job/{job}/batch/7515g00000ZZZZZAAA"),
            "application/json",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.content_type(), "application/json");
    assert_eq!(r.json()["exceptionCode"], "InvalidBatch");

    let stats: serde_json::Value = reqwest::get(ctx.url("/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["bulk_v1"]["jobs"], 1);
    assert_eq!(stats["bulk_v1"]["batches"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_batches_stay_in_progress_at_the_configured_rate() {
    let ctx = start(3000, Some(2000)).await;
    let job = ctx.xml_job("queryAll", "XML", None).await;
    let r = ctx
        .v1_post(
            &format!("/job/{job}/batch"),
            "application/xml",
            "SELECT Id FROM Account",
        )
        .await;
    let batch = tag(&r.body, "id").unwrap();
    let (info, seen) = ctx.wait_batch_xml(&job, &batch).await;
    // The first poll may come after the short Queued spell; InProgress lasts 1.5 s here.
    assert!(seen.contains(&"InProgress".to_string()), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("Completed"), "{info}");
    assert!(
        seen.iter()
            .all(|s| ["Queued", "InProgress", "Completed"].contains(&s.as_str())),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_json_job_negotiates_json_and_serves_epoch_millis() {
    let ctx = start(3000, None).await;
    // simple-salesforce: JSON body, integer concurrencyMode, JSON Content-Type on every call.
    let body =
        r#"{"operation":"query","object":"Account","concurrencyMode":0,"contentType":"JSON"}"#;
    let r = ctx.v1_post("/job", "application/json", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.content_type(), "application/json");
    let info = r.json();
    assert_eq!(info["state"], "Open");
    assert_eq!(info["concurrencyMode"], "Parallel");
    assert_eq!(info["contentType"], "JSON");
    assert_eq!(info["apiVersion"], 58.0);
    let job = info["id"].as_str().unwrap().to_string();

    let r = ctx
        .v1_post(
            &format!("/job/{job}/batch"),
            "application/json",
            "SELECT Id, Name, SystemModstamp FROM Account LIMIT 5",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.content_type(), "application/json");
    let batch = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["state"], "Queued");
    let r = ctx
        .v1_post(
            &format!("/job/{job}"),
            "application/json",
            r#"{"state":"Closed"}"#,
        )
        .await;
    assert_eq!(r.json()["state"], "Closed");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = ctx
            .v1_get(&format!("/job/{job}/batch/{batch}"), "application/json")
            .await;
        assert_eq!(r.content_type(), "application/json");
        if r.json()["state"] == "Completed" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = ctx
        .v1_get(&format!("/job/{job}/batch"), "application/json")
        .await;
    assert_eq!(
        list.json()["batchInfo"].as_array().unwrap().len(),
        1,
        "{}",
        list.body
    );

    let r = ctx
        .v1_get(
            &format!("/job/{job}/batch/{batch}/result"),
            "application/json",
        )
        .await;
    assert_eq!(r.content_type(), "application/json");
    let ids = r.json();
    let rid = ids[0]
        .as_str()
        .expect("a JSON array of result ids")
        .to_string();
    let r = ctx
        .v1_get(
            &format!("/job/{job}/batch/{batch}/result/{rid}"),
            "application/json",
        )
        .await;
    assert_eq!(r.content_type(), "application/json");
    // attributes first, then the fields in SELECT order, as Salesforce writes them.
    assert!(
        r.body
            .starts_with("[{\"attributes\":{\"type\":\"Account\",\"url\":"),
        "{}",
        r.body
    );
    let first_record = r.body.split("},{\"attributes\"").next().unwrap();
    let pos = |k: &str| {
        first_record
            .find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k}: {first_record}"))
    };
    assert!(
        pos("Id") < pos("Name") && pos("Name") < pos("SystemModstamp"),
        "{first_record}"
    );
    let records = r.json();
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 5);
    let first = &records[0];
    assert_eq!(first["attributes"]["type"], "Account");
    let id = first["Id"].as_str().unwrap();
    assert_eq!(
        first["attributes"]["url"],
        format!("/services/data/v58.0/sobjects/Account/{id}")
    );
    let org = &ctx.sim.state.org;
    let (account, _) = field(&ctx.sim, "Account", "Id");
    let stored = org.get_by_id(account, id).unwrap()[sfsim::schema::F_SYSTEM_MODSTAMP]
        .as_datetime()
        .unwrap();
    assert_eq!(first["SystemModstamp"], serde_json::json!(stored * 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_batches_fail_with_a_state_message() {
    let ctx = start(3000, None).await;
    let job = ctx.xml_job("query", "CSV", None).await;
    let submit = |soql: &'static str| {
        let ctx = &ctx;
        let job = job.clone();
        async move {
            let r = ctx
                .v1_post(&format!("/job/{job}/batch"), "text/csv", soql)
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            let batch = tag(&r.body, "id").unwrap();
            ctx.wait_batch_xml(&job, &batch).await.0
        }
    };

    let info = submit("SELECT Id, Nope FROM Account").await;
    assert_eq!(tag(&info, "state").as_deref(), Some("Failed"), "{info}");
    let message = tag(&info, "stateMessage").unwrap();
    assert!(
        message.starts_with("InvalidBatch : Failed to process query: INVALID_FIELD:"),
        "{message}"
    );
    assert!(submit("SELEC Id FROM Account")
        .await
        .contains("MALFORMED_QUERY"));

    let faults = |body: serde_json::Value| {
        let ctx = &ctx;
        async move {
            let r = ctx
                .http
                .post(ctx.url("/_sim/faults"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    };
    faults(serde_json::json!({"bulk_batch_failure_rate": 1.0})).await;
    let info = submit("SELECT Id FROM Account").await;
    assert_eq!(tag(&info, "state").as_deref(), Some("Failed"), "{info}");
    assert!(
        tag(&info, "stateMessage").is_some_and(|m| !m.is_empty()),
        "{info}"
    );
    ctx.http
        .delete(ctx.url("/_sim/faults"))
        .send()
        .await
        .unwrap();

    faults(serde_json::json!({"query_timeout_above_rows": 100})).await;
    let info = submit("SELECT Id FROM Account").await;
    assert_eq!(
        tag(&info, "stateMessage").as_deref(),
        Some("InvalidBatch : Failed to process query: QUERY_TIMEOUT: Your query request was running for too long.")
    );
    let info = submit("SELECT Id FROM Account LIMIT 50").await;
    assert_eq!(tag(&info, "state").as_deref(), Some("Completed"), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_session_errors_are_400_xml() {
    let ctx = start(10, None).await;
    let r = ctx
        .send(
            ctx.http
                .post(ctx.url(&format!("{V1}/job")))
                .header("X-SFDC-Session", "00D000000000001!bogus")
                .header("Content-Type", "application/xml")
                .body("<jobInfo/>"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body
            .contains("<exceptionCode>InvalidSessionId</exceptionCode>"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_rejects_ingest_and_miscased_operations() {
    let ctx = start(10, None).await;
    for op in ["INSERT", "insert", "Query"] {
        let body = format!(r#"{{"operation":"{op}","object":"Account","contentType":"CSV"}}"#);
        let r = ctx.v1_post("/job", "application/json", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{op}: {}", r.body);
        assert_eq!(r.json()["exceptionCode"], "InvalidJob");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_pk_chunking_splits_into_id_ranges_covering_the_object() {
    let ctx = start(3000, None).await;
    // Deleted records count toward chunk sizes but are not returned by query.
    let org = &ctx.sim.state.org;
    let account = org.object_index("Account").unwrap();
    let doomed: Vec<String> = live_account_ids(&ctx.sim).into_iter().take(7).collect();
    let mut txn = org.begin();
    for id in &doomed {
        org.delete(&mut txn, account, id).unwrap();
    }
    org.commit(txn);

    let job = ctx.xml_job("query", "CSV", Some("chunkSize=1000; ")).await;
    let r = ctx
        .v1_post(
            &format!("/job/{job}/batch"),
            "text/csv",
            "SELECT Id, Name FROM Account",
        )
        .await;
    let original = tag(&r.body, "id").unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let batches = loop {
        let r = ctx.v1_get(&format!("/job/{job}/batch"), "text/csv").await;
        let states = tags(&r.body, "state");
        if !states.iter().any(|s| s == "Queued" || s == "InProgress") {
            break r.body;
        }
        assert!(Instant::now() < deadline, "{}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ids = tags(&batches, "id");
    let states = tags(&batches, "state");
    assert_eq!(ids.len(), 4, "the original and three chunks: {batches}");
    assert_eq!(ids[0], original);
    assert_eq!(
        states,
        vec!["NotProcessed", "Completed", "Completed", "Completed"]
    );

    let mut seen = Vec::new();
    for chunk in &ids[1..] {
        let q = ctx
            .v1_get(&format!("/job/{job}/batch/{chunk}/request"), "text/csv")
            .await;
        assert!(
            q.body
                .starts_with("SELECT Id, Name FROM Account WHERE Id >= '"),
            "{}",
            q.body
        );
        assert!(q.body.contains("' AND Id < '"), "{}", q.body);
        let rows = ctx.v1_csv_results(&job, chunk).await;
        assert_eq!(rows[0], vec!["Id", "Name"]);
        seen.extend(rows[1..].iter().map(|r| r[0].clone()));
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no record in two chunks");
    assert_eq!(unique, live_account_ids(&ctx.sim));
    assert_eq!(seen.len(), 3000 - doomed.len());

    let stats: serde_json::Value = reqwest::get(ctx.url("/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["bulk_v1"]["batches"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_results_quote_awkward_values_and_nest_parents() {
    let ctx = start(0, None).await;
    let awkward = "He said \"hi\", then left\nNext line; ñ 日本 \u{1F600}";
    let account = create(&ctx.sim, "Account", &[("Name", Value::text(awkward))]);
    create(
        &ctx.sim,
        "Contact",
        &[
            ("LastName", Value::text("Doe, \"JD\"")),
            ("AccountId", Value::text(account.clone())),
        ],
    );
    create(&ctx.sim, "Contact", &[("LastName", Value::text("Orphan"))]);

    let body = r#"<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="http://www.force.com/2009/06/asyncapi/dataload"><operation>query</operation><object>Contact</object><contentType>CSV</contentType></jobInfo>"#;
    let r = ctx.v1_post("/job", "application/xml", body).await;
    let job = tag(&r.body, "id").unwrap();
    let soql = "SELECT Id, LastName, Account.Name, Email FROM Contact ORDER BY LastName";
    let r = ctx
        .v1_post(&format!("/job/{job}/batch"), "text/csv", soql)
        .await;
    let batch = tag(&r.body, "id").unwrap();
    ctx.wait_batch_xml(&job, &batch).await;

    let list = ctx
        .v1_get(&format!("/job/{job}/batch/{batch}/result"), "text/csv")
        .await;
    let rid = tag(&list.body, "result").unwrap();
    let raw = ctx
        .v1_get(
            &format!("/job/{job}/batch/{batch}/result/{rid}"),
            "text/csv",
        )
        .await
        .body;
    assert!(
        raw.starts_with("\"Id\",\"LastName\",\"Account.Name\",\"Email\"\n"),
        "{raw}"
    );
    assert!(raw.contains("\"Doe, \"\"JD\"\"\""), "{raw}");
    let rows = parse_csv(&raw, ',');
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][1], "Doe, \"JD\"");
    assert_eq!(rows[1][2], awkward);
    assert_eq!(rows[1][3], "", "nulls are empty");
    assert_eq!(rows[2][1..], ["Orphan", "", ""]);

    // The same query as XML: parents nest as sObjects, nulls are xsi:nil.
    let body = body.replace("<contentType>CSV", "<contentType>XML");
    let r = ctx.v1_post("/job", "application/xml", &body).await;
    let job = tag(&r.body, "id").unwrap();
    let r = ctx
        .v1_post(&format!("/job/{job}/batch"), "application/xml", soql)
        .await;
    let batch = tag(&r.body, "id").unwrap();
    ctx.wait_batch_xml(&job, &batch).await;
    let list = ctx
        .v1_get(
            &format!("/job/{job}/batch/{batch}/result"),
            "application/xml",
        )
        .await;
    let rid = tag(&list.body, "result").unwrap();
    let r = ctx
        .v1_get(
            &format!("/job/{job}/batch/{batch}/result/{rid}"),
            "application/xml",
        )
        .await;
    assert_eq!(r.content_type(), "application/xml");
    let xml = r.body;
    assert!(xml.contains("<queryResult xmlns=\"http://www.force.com/2009/06/asyncapi/dataload\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">"), "{xml}");
    assert!(
        xml.contains("<records xsi:type=\"sObject\"><type>Contact</type>"),
        "{xml}"
    );
    assert!(xml.contains("<Account xsi:type=\"sObject\"><type>Account</type><Id xsi:nil=\"true\"/><Name>He said &quot;hi&quot;, then left\nNext line; ñ 日本 \u{1F600}</Name></Account>"), "{xml}");
    assert!(xml.contains("<Account xsi:nil=\"true\"/>"), "{xml}");
    assert!(xml.contains("<Email xsi:nil=\"true\"/>"), "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_query_job_pages_by_locator() {
    let ctx = start(3000, Some(3000)).await;
    let created = ctx
        .v2_job("SELECT Id, Name FROM Account", serde_json::json!({}))
        .await;
    assert_eq!(created["state"], "UploadComplete");
    assert_eq!(created["apiVersion"], 58.0);
    assert_eq!(created["columnDelimiter"], "COMMA");
    let id = created["id"].as_str().unwrap().to_string();

    // Not complete yet (3000 rows at 3000 rows/s): no results.
    let r = ctx
        .v2(reqwest::Method::GET, &format!("{V2}/{id}/results"), None)
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
    assert_eq!(r.json()[0]["errorCode"], "JOB_NOT_COMPLETE");

    let (info, seen) = ctx.wait_v2(&id).await;
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert!(seen.contains(&"InProgress".to_string()), "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| ["UploadComplete", "InProgress", "JobComplete"].contains(&s.as_str())),
        "{seen:?}"
    );
    assert_eq!(info["jobType"], "V2Query");
    assert_eq!(info["numberRecordsProcessed"], 3000);
    assert_eq!(info["retries"], 0);
    assert!(info["totalProcessingTime"].is_u64());
    assert_eq!(info["isPkChunkingSupported"], true);

    // A record committed after the job ran is not in its results.
    let late = create(&ctx.sim, "Account", &[("Name", Value::text("Late"))]);

    let mut locator: Option<String> = None;
    let mut ids = Vec::new();
    let mut pages = Vec::new();
    loop {
        let mut url = format!("{V2}/{id}/results?maxRecords=700");
        if let Some(l) = &locator {
            url.push_str(&format!("&locator={l}"));
        }
        let r = ctx.v2(reqwest::Method::GET, &url, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.content_type(), "text/csv");
        let n: usize = r
            .header("Sforce-NumberOfRecords")
            .expect("count header")
            .parse()
            .unwrap();
        let next = r
            .header("Sforce-Locator")
            .expect("locator header")
            .to_string();
        let rows = parse_csv(&r.body, ',');
        assert_eq!(rows[0], vec!["Id", "Name"]);
        assert_eq!(rows.len() - 1, n);
        ids.extend(rows[1..].iter().map(|r| r[0].clone()));
        pages.push((locator.clone(), r.body));
        if next == "null" {
            break;
        }
        locator = Some(next);
    }
    assert_eq!(pages.len(), 5, "700 × 4 + 200");
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), 3000);
    assert_eq!(unique.len(), 3000);
    assert!(!unique.contains(&late));

    // Pages can be fetched again by locator.
    let (loc, body) = &pages[2];
    let again = ctx
        .v2(
            reqwest::Method::GET,
            &format!(
                "{V2}/{id}/results?maxRecords=700&locator={}",
                loc.as_ref().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(&again.body, body);

    // Another API version than the job's: 409.
    let r = ctx
        .v2(
            reqwest::Method::GET,
            &format!("/services/data/v57.0/jobs/query/{id}/results"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    // Without maxRecords everything comes in one page here; a new job sees the late record.
    let next = ctx
        .v2_job(
            "SELECT Id FROM Account WHERE Name = 'Late'",
            serde_json::json!({}),
        )
        .await;
    let next_id = next["id"].as_str().unwrap();
    ctx.wait_v2(next_id).await;
    let r = ctx
        .v2(
            reqwest::Method::GET,
            &format!("{V2}/{next_id}/results"),
            None,
        )
        .await;
    assert_eq!(r.header("Sforce-Locator"), Some("null"));
    assert_eq!(r.header("Sforce-NumberOfRecords"), Some("1"));
    assert_eq!(parse_csv(&r.body, ',')[1][0], late);

    let stats: serde_json::Value = reqwest::get(ctx.url("/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["bulk_v2"]["jobs"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_abort_and_delete() {
    let ctx = start(3000, Some(500)).await;
    let id = ctx
        .v2_job(
            "SELECT Id FROM Account",
            serde_json::json!({"operation": "queryAll"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ctx
        .v2(
            reqwest::Method::PATCH,
            &format!("{V2}/{id}"),
            Some(serde_json::json!({"state": "Aborted"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["state"], "Aborted");
    let (info, _) = ctx.wait_v2(&id).await;
    assert_eq!(info["state"], "Aborted");
    let r = ctx
        .v2(reqwest::Method::GET, &format!("{V2}/{id}/results"), None)
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);

    let listed = ctx.v2(reqwest::Method::GET, V2, None).await.json();
    assert!(listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["id"] == id.as_str()));

    let r = ctx
        .v2(reqwest::Method::DELETE, &format!("{V2}/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = ctx
        .v2(reqwest::Method::GET, &format!("{V2}/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()[0]["errorCode"], "NOT_FOUND");
    let r = ctx
        .v2(reqwest::Method::GET, &format!("{V2}/{id}/results"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_rejects_unsupported_queries_and_honours_delimiters() {
    let ctx = start(50, None).await;
    for (query, code) in [
        ("SELECT COUNT() FROM Account", "INVALIDJOB"),
        ("SELECT Id FROM Account LIMIT 5 OFFSET 5", "INVALIDJOB"),
        ("SELECT Nope FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Nope", "INVALID_TYPE"),
    ] {
        let r = ctx
            .v2(
                reqwest::Method::POST,
                V2,
                Some(serde_json::json!({"operation": "query", "query": query})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.body);
        assert_eq!(r.json()[0]["errorCode"], code, "{query}: {}", r.body);
        assert!(r.json()[0]["message"].is_string());
    }
    let r = ctx
        .v2(
            reqwest::Method::GET,
            &format!("{V2}/7505g00000ZZZZZAAA"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = ctx
        .send(
            ctx.http
                .get(ctx.url(V2))
                .header("Authorization", "Bearer nope"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()[0]["errorCode"], "INVALID_SESSION_ID");

    let job = ctx
        .v2_job(
            "SELECT Id, Name, IsDeleted FROM Account ORDER BY Name LIMIT 3",
            serde_json::json!({"columnDelimiter": "PIPE", "lineEnding": "CRLF"}),
        )
        .await;
    let id = job["id"].as_str().unwrap();
    let (info, _) = ctx.wait_v2(id).await;
    assert_eq!(info["isPkChunkingSupported"], false);
    let r = ctx
        .v2(reqwest::Method::GET, &format!("{V2}/{id}/results"), None)
        .await;
    assert!(
        r.body.starts_with("\"Id\"|\"Name\"|\"IsDeleted\"\r\n"),
        "{}",
        r.body
    );
    assert_eq!(r.body.matches("\r\n").count(), 4);
    assert!(r.body.contains("|\"false\"\r\n"), "{}", r.body);
}
