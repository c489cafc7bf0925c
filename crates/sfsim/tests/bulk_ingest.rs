//! Bulk API 2.0 ingest jobs against an in-process simulator, over HTTP as clients send them.

use reqwest::{Method, StatusCode};
use sfsim::{RunningSim, SimConfig};
use std::time::{Duration, Instant};

const INGEST: &str = "/services/data/v58.0/jobs/ingest";

struct Ctx {
    sim: RunningSim,
    http: reqwest::Client,
    token: String,
}

async fn start() -> Ctx {
    let sim = sfsim::start(SimConfig::default())
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
    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: String,
    ) -> (StatusCode, String) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.sim.base_url()))
            .header("Authorization", format!("Bearer {}", self.token));
        if let Some(ct) = content_type {
            rb = rb.header("Content-Type", ct).body(body);
        }
        let r = rb.send().await.expect("request");
        (r.status(), r.text().await.expect("body"))
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let (s, b) = self
            .call(method, path, Some("application/json"), body.to_string())
            .await;
        (
            s,
            serde_json::from_str(&b).unwrap_or_else(|_| panic!("not JSON: {b}")),
        )
    }

    /// Create, upload, close; the job's id.
    async fn job(&self, spec: serde_json::Value, csv: &str) -> String {
        let (s, job) = self.json(Method::POST, INGEST, spec).await;
        assert_eq!(s, StatusCode::OK, "{job}");
        assert_eq!(job["state"], "Open");
        let id = job["id"].as_str().unwrap().to_string();
        assert_eq!(
            job["contentUrl"],
            format!("services/data/v58.0/jobs/ingest/{id}/batches")
        );
        let (s, body) = self
            .call(
                Method::PUT,
                &format!("{INGEST}/{id}/batches"),
                Some("text/csv"),
                csv.to_string(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let (s, closed) = self
            .json(
                Method::PATCH,
                &format!("{INGEST}/{id}"),
                serde_json::json!({"state": "UploadComplete"}),
            )
            .await;
        assert_eq!(
            (s, closed["state"].as_str()),
            (StatusCode::OK, Some("UploadComplete"))
        );
        id
    }

    /// Polls until the job is JobComplete, Failed or Aborted.
    async fn wait(&self, id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (s, info) = self
                .call(Method::GET, &format!("{INGEST}/{id}"), None, String::new())
                .await;
            assert_eq!(s, StatusCode::OK, "{info}");
            let info: serde_json::Value = serde_json::from_str(&info).unwrap();
            if ["JobComplete", "Failed", "Aborted"].contains(&info["state"].as_str().unwrap()) {
                return info;
            }
            assert!(Instant::now() < deadline, "job never finished: {info}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn results(&self, id: &str, kind: &str) -> Vec<Vec<String>> {
        self.results_in(id, kind, b',').await
    }

    /// Results come in the job's delimiter.
    async fn results_in(&self, id: &str, kind: &str, delimiter: u8) -> Vec<Vec<String>> {
        let (s, body) = self
            .call(
                Method::GET,
                &format!("{INGEST}/{id}/{kind}"),
                None,
                String::new(),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(delimiter)
            .from_reader(body.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    }
}

fn stamp_of(sim: &RunningSim, object: &str, id: &str) -> i64 {
    let org = &sim.state.org;
    let o = org.object_index(object).unwrap();
    sfsim::store::system_modstamp(&org.get_by_id(o, id).expect("record exists"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_job_commits_per_batch_and_reports_every_row() {
    let ctx = start().await;
    let n = 12_000; // two internal batches of 10,000
    let mut csv = String::from("Name,Amount__c,Notes__c\n");
    for i in 0..n {
        if i == 7 {
            csv.push_str(",1,no name\n"); // REQUIRED_FIELD_MISSING
        } else if i == 8 {
            csv.push_str("Bad,lots,\n"); // not a number
        } else {
            csv.push_str(&format!("INV-{i},{i}.5,\"a, \"\"quoted\"\"\nnote\"\n"));
        }
    }
    // The job's state polls are left out: how many there are depends on the machine's speed.
    let job_polls = || {
        ctx.sim.state.stats.to_json(0)["api_calls"]["by_route"]["GET jobs/ingest/{id}"]
            .as_u64()
            .unwrap_or(0)
    };
    let calls_before = ctx.sim.state.stats.used() - job_polls();
    let id = ctx
        .job(
            serde_json::json!({"object": "Invoice__c", "operation": "insert", "lineEnding": "LF"}),
            &csv,
        )
        .await;
    let info = ctx.wait(&id).await;
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert_eq!(info["jobType"], "V2Ingest");
    assert_eq!(info["numberRecordsProcessed"], n);
    assert_eq!(info["numberRecordsFailed"], 2);

    let ok = ctx.results(&id, "successfulResults").await;
    assert_eq!(
        ok[0],
        vec!["sf__Id", "sf__Created", "Name", "Amount__c", "Notes__c"]
    );
    assert_eq!(ok.len() - 1, n - 2);
    assert_eq!(ok[1][1], "true");
    assert_eq!(ok[1][2], "INV-0");
    assert_eq!(ok[1][4], "a, \"quoted\"\nnote", "the row as uploaded");
    let failed = ctx.results(&id, "failedResults").await;
    assert_eq!(
        failed[0],
        vec!["sf__Id", "sf__Error", "Name", "Amount__c", "Notes__c"]
    );
    assert_eq!(failed.len(), 3);
    assert!(
        failed[1][1].starts_with("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]"),
        "{:?}",
        failed[1]
    );
    assert_eq!(failed[1][4], "no name");
    assert!(
        failed[2][1].starts_with("INVALID_TYPE_ON_FIELD_IN_RECORD:")
            && failed[2][1].ends_with(":Amount__c --"),
        "{:?}",
        failed[2]
    );
    assert_eq!(
        ctx.results(&id, "unprocessedrecords").await.len(),
        1,
        "header only"
    );

    // Every record is there; a batch shares one SystemModstamp.
    let ids: Vec<&str> = ok[1..].iter().map(|r| r[0].as_str()).collect();
    let first_batch: std::collections::HashSet<i64> = ids[..9_990]
        .iter()
        .map(|id| stamp_of(&ctx.sim, "Invoice__c", id))
        .collect();
    assert_eq!(first_batch.len(), 1, "one transaction per batch");
    let second: std::collections::HashSet<i64> = ids[9_998..]
        .iter()
        .map(|id| stamp_of(&ctx.sim, "Invoice__c", id))
        .collect();
    assert_eq!(second.len(), 1);
    // create, upload, close, polls, three result fetches: a handful of calls for 12,000 rows.
    let calls = ctx.sim.state.stats.used() - job_polls() - calls_before;
    assert!(calls < 20, "{calls} calls besides the state polls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_update_and_delete_jobs() {
    let ctx = start().await;
    let spec = serde_json::json!({"object": "Invoice__c", "operation": "upsert",
        "externalIdFieldName": "External_Id__c", "columnDelimiter": "PIPE", "lineEnding": "CRLF"});
    let id = ctx
        .job(
            spec.clone(),
            "External_Id__c|Name\r\nE-1|One\r\nE-2|Two\r\n|NoKey\r\n",
        )
        .await;
    assert_eq!(ctx.wait(&id).await["state"], "JobComplete");
    let ok = ctx.results_in(&id, "successfulResults", b'|').await;
    assert_eq!(ok.len(), 3);
    assert!(ok[1..].iter().all(|r| r[1] == "true"));
    let failed = ctx.results_in(&id, "failedResults", b'|').await;
    assert!(failed[1][1].starts_with("MISSING_ARGUMENT:"), "{failed:?}");
    // Again: the same keys now update, and an empty cell leaves a field alone.
    let id = ctx
        .job(spec, "External_Id__c|Name\r\nE-1|Uno\r\nE-2|\r\n")
        .await;
    assert_eq!(ctx.wait(&id).await["state"], "JobComplete");
    let again = ctx.results_in(&id, "successfulResults", b'|').await;
    assert_eq!(again[1][0], ok[1][0], "same record");
    assert!(again[1..].iter().all(|r| r[1] == "false"));
    let org = &ctx.sim.state.org;
    let inv = org.object_index("Invoice__c").unwrap();
    let name = org.schema.objects[inv].field_index("Name").unwrap();
    let rec = |id: &str| org.get_by_id(inv, id).unwrap();
    assert_eq!(rec(&ok[1][0])[name].as_str(), Some("Uno"));
    assert_eq!(rec(&ok[2][0])[name].as_str(), Some("Two"));

    // Update by Id, with `#N/A` setting a field null; then delete.
    let upd = format!(
        "Id,Notes__c\n{},#N/A\n{},x\n001000000000000AAA,y\n",
        ok[1][0], ok[2][0]
    );
    let id = ctx
        .job(
            serde_json::json!({"object": "Invoice__c", "operation": "update"}),
            &upd,
        )
        .await;
    assert_eq!(ctx.wait(&id).await["state"], "JobComplete");
    assert_eq!(ctx.results(&id, "successfulResults").await.len(), 3);
    let failed = ctx.results(&id, "failedResults").await;
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[1][0], "001000000000000AAA");
    let id = ctx
        .job(
            serde_json::json!({"object": "Invoice__c", "operation": "delete"}),
            &format!("Id\n{}\n", ok[1][0]),
        )
        .await;
    assert_eq!(ctx.wait(&id).await["state"], "JobComplete");
    assert!(sfsim::store::is_deleted(&rec(&ok[1][0])));

    let by_route = ctx.sim.state.stats.to_json(0);
    let routes = by_route["api_calls"]["by_route"].to_string();
    assert!(routes.contains("jobs/ingest"), "{routes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_uploads_fail_the_job_with_salesforces_messages() {
    let ctx = start().await;
    let insert = serde_json::json!({"object": "Account", "operation": "insert"});
    for (csv, message) in [
        (
            "Name\r\nA\r\n",
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF",
        ),
        ("Name,Nope__c\nA,1\n", "InvalidBatch : Field name not found : Nope__c"),
        (
            "Name,Industry\nA\n",
            "ClientInputError : Failed to parse CSV: line 2 has 1 columns, the header has 2",
        ),
    ] {
        let id = ctx.job(insert.clone(), csv).await;
        let info = ctx.wait(&id).await;
        assert_eq!(
            (info["state"].as_str(), info["errorMessage"].as_str()),
            (Some("Failed"), Some(message)),
            "{csv:?}"
        );
    }
    // A bad header leaves every row unprocessed, for the caller to resend.
    let id = ctx.job(insert.clone(), "Name,Nope__c\nA,1\nB,2\n").await;
    ctx.wait(&id).await;
    assert_eq!(
        ctx.results(&id, "unprocessedrecords").await,
        vec![vec!["Name", "Nope__c"], vec!["A", "1"], vec!["B", "2"]]
    );

    // Bad job specs are refused at create.
    let (s, e) = ctx
        .json(
            Method::POST,
            INGEST,
            serde_json::json!({"object": "Invoice__c", "operation": "upsert"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        e[0]["message"],
        "External ID was blank for Invoice__c. An External ID must be specified for upsert."
    );
    let (s, e) = ctx
        .json(
            Method::POST,
            INGEST,
            serde_json::json!({"object": "Nope", "operation": "insert"}),
        )
        .await;
    assert_eq!(
        (s, e[0]["errorCode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALIDENTITY"))
    );

    // Aborted before it ran: nothing is written, no more uploads.
    let (_, job) = ctx.json(Method::POST, INGEST, insert).await;
    let id = job["id"].as_str().unwrap();
    let (s, aborted) = ctx
        .json(
            Method::PATCH,
            &format!("{INGEST}/{id}"),
            serde_json::json!({"state": "Aborted"}),
        )
        .await;
    assert_eq!(
        (s, aborted["state"].as_str()),
        (StatusCode::OK, Some("Aborted"))
    );
    let (s, _) = ctx
        .call(
            Method::PUT,
            &format!("{INGEST}/{id}/batches"),
            Some("text/csv"),
            "Name\nA\n".into(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = ctx
        .call(
            Method::DELETE,
            &format!("{INGEST}/{id}"),
            None,
            String::new(),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}
