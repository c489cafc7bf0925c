//! `--objects`: an org's describe output becomes simulated objects, with generated data that
//! follows their fields, and bad files are rejected naming the object and field.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::PathBuf;

const V: &str = "/services/data/v62.0";

fn describe_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/custom_objects_describe.json")
}

struct Api {
    http: Client,
    base: String,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn query_all_rows(&self, soql: &str) -> Vec<Value> {
        let (st, mut page) = self.get(&format!("{V}/query?q={}", urlencode(soql))).await;
        assert_eq!(st, StatusCode::OK, "{soql}: {page}");
        let mut rows: Vec<Value> = page["records"].as_array().unwrap().clone();
        while let Some(next) = page["nextRecordsUrl"].as_str().map(str::to_string) {
            page = self.get(&next).await.1;
            rows.extend(page["records"].as_array().unwrap().iter().cloned());
        }
        rows
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_objects_from_describe_are_served_and_generated() {
    let sim = sfsim::start(sfsim::SimConfig {
        objects: vec![describe_file()],
        // Children first: the generator still loads parents before them.
        dataset: vec![("Project__c".into(), 300), ("Client__c".into(), 40)],
        ..Default::default()
    })
    .await
    .expect("simulator starts with --objects");
    let api = Api {
        http: Client::new(),
        base: sim.base_url().to_string(),
        token: sim.state.sessions.issue(),
    };

    let (st, d) = api.get(&format!("{V}/sobjects/Project__c/describe")).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["keyPrefix"], "a5P");
    let field = |name: &str| {
        d["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(field("Code__c")["externalId"], true);
    assert_eq!(field("Code__c")["length"], 20);
    assert_eq!(field("Client__c")["referenceTo"], json!(["Client__c"]));
    assert_eq!(field("Score__c")["calculated"], true);
    assert_eq!(field("Score__c")["createable"], false);
    assert_eq!(
        field("Site__c"),
        Value::Null,
        "compound fields are left out"
    );
    assert_eq!(
        field("Status__c")["picklistValues"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "inactive values are not offered"
    );
    let (_, global) = api.get(&format!("{V}/sobjects")).await;
    let names: Vec<&str> = global["sobjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Project__c") && names.contains(&"Client__c"));
    assert!(names.contains(&"Account"), "built-in objects stay");

    let clients: Vec<Value> = api
        .query_all_rows("SELECT Id, Name, Region__c, Active__c FROM Client__c")
        .await;
    assert_eq!(clients.len(), 40);
    let client_ids: HashSet<String> = clients
        .iter()
        .map(|c| c["Id"].as_str().unwrap().to_string())
        .collect();
    assert!(client_ids.iter().all(|id| id.starts_with("a5C")));
    for c in &clients {
        assert!(
            matches!(c["Region__c"].as_str(), Some("North" | "South")),
            "required picklist from active values: {c}"
        );
        assert!(c["Name"].is_string());
    }

    let projects = api
        .query_all_rows(
            "SELECT Id, Name, Code__c, Client__c, Status__c, Budget__c, Score__c FROM Project__c",
        )
        .await;
    assert_eq!(projects.len(), 300);
    let codes: Vec<&str> = projects
        .iter()
        .filter_map(|p| p["Code__c"].as_str())
        .collect();
    assert!(
        codes.len() > 200,
        "most carry an External ID: {}",
        codes.len()
    );
    assert_eq!(
        codes.iter().collect::<HashSet<_>>().len(),
        codes.len(),
        "External IDs are unique"
    );
    assert!(codes.iter().all(|c| c.len() <= 20));
    let linked = projects
        .iter()
        .filter_map(|p| p["Client__c"].as_str())
        .inspect(|id| {
            assert!(
                client_ids.contains(*id),
                "lookup to a missing Client__c {id}"
            )
        })
        .count();
    assert!(linked > 200, "most projects point at a client: {linked}");
    assert!(projects
        .iter()
        .all(|p| matches!(p["Status__c"].as_str(), None | Some("Planned" | "Running"))));
    // The file's formula (`Budget__c / 1000`) is computed when the record is read.
    assert_eq!(field("Score__c")["calculatedFormula"], "Budget__c / 1000");
    for p in &projects {
        let want = p["Budget__c"].as_f64().map(|b| b / 1000.0);
        assert_eq!(p["Score__c"].as_f64(), want, "{p}");
    }
    assert!(projects.iter().any(|p| !p["Score__c"].is_null()));

    // Relationship queries follow the loaded lookup.
    let rows = api
        .query_all_rows(
            "SELECT Name, Client__r.Name FROM Project__c WHERE Client__c != null LIMIT 5",
        )
        .await;
    assert!(
        rows.iter().all(|r| r["Client__r"]["Name"].is_string()),
        "{rows:?}"
    );

    // Writes follow the describe flags: upsert on the custom External ID, required Name,
    // read-only calculated field.
    let path = format!("{V}/sobjects/Project__c/Code__c/NEW-0001");
    let (st, body) = api
        .send(reqwest::Method::PATCH, &path, json!({"Name": "Upserted"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("a5P"));
    let (st, _) = api
        .send(
            reqwest::Method::PATCH,
            &path,
            json!({"Name": "Upserted again"}),
        )
        .await;
    assert!(st == StatusCode::NO_CONTENT || st == StatusCode::OK, "{st}");
    let (st, body) = api
        .send(
            reqwest::Method::POST,
            &format!("{V}/sobjects/Project__c"),
            json!({"Code__c": "NO-NAME"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], "REQUIRED_FIELD_MISSING", "{body}");
    let (st, body) = api
        .send(
            reqwest::Method::POST,
            &format!("{V}/sobjects/Project__c"),
            json!({"Name": "x", "Score__c": 3}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        body[0]["errorCode"], "INVALID_FIELD_FOR_INSERT_UPDATE",
        "{body}"
    );
    let (st, body) = api
        .send(
            reqwest::Method::POST,
            &format!("{V}/sobjects/Project__c"),
            json!({"Name": "x", "Status__c": "Retired"}),
        )
        .await;
    // Unrestricted picklists take any value on Salesforce; the write itself must work.
    assert_eq!(st, StatusCode::CREATED, "{body}");
    sim.stop().await;
}

fn error_of(text: &str) -> String {
    sfsim::objects_file::parse("org.json", text)
        .map(|o| format!("accepted {} objects", o.len()))
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn bad_describe_files_name_the_object_and_field() {
    let obj = |fields: &str| {
        format!(
            r#"{{"name":"Widget__c","keyPrefix":"a9W","fields":[{{"name":"Name","type":"string","length":80}},{fields}]}}"#
        )
    };
    let cases = [
        (
            obj(r#"{"name":"Size__c","type":"gigantic"}"#),
            "org.json: object Widget__c, field Size__c: type 'gigantic' is not a Salesforce field type",
        ),
        (
            obj(r#"{"name":"Owner__c","type":"reference","length":18}"#),
            "object Widget__c, field Owner__c: a reference field needs \"referenceTo\"",
        ),
        (
            obj(r#"{"name":"Color__c","type":"picklist","length":255,"picklistValues":[{"active":false,"value":"Red"}]}"#),
            "object Widget__c, field Color__c: a picklist needs at least one active value",
        ),
        (
            obj(r#"{"name":"Label__c","type":"string"}"#),
            "object Widget__c, field Label__c: a string field needs a positive \"length\"",
        ),
        (
            obj(r#"{"name":"Flag__c","type":"boolean","nillable":"no"}"#),
            "object Widget__c, field Flag__c: \"nillable\" must be true or false",
        ),
        (
            obj(r#"{"name":"Name","type":"string","length":80}"#),
            "object Widget__c, field Name: appears twice",
        ),
        (
            r#"{"name":"Widget__c","fields":[]}"#.to_string(),
            "object Widget__c: has no keyPrefix",
        ),
        (r#"{"sobjects":{}}"#.to_string(), "\"sobjects\" must be an array"),
        ("{not json".to_string(), "org.json: not JSON"),
    ];
    for (text, want) in cases {
        let got = error_of(&text);
        assert!(got.contains(want), "{text}\n  gave: {got}\n  want: {want}");
    }
    assert_eq!(
        error_of(&obj(r#"{"name":"Ok__c","type":"url","length":255}"#)),
        "accepted 1 objects"
    );
}

#[tokio::test]
async fn clashing_objects_are_rejected_at_start() {
    let dir = std::env::temp_dir().join(format!("sfsim-objects-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("clash.json");
    // Account's key prefix on another object.
    std::fs::write(
        &file,
        r#"{"name":"Thing__c","keyPrefix":"001","fields":[{"name":"Name","type":"string","length":80}]}"#,
    )
    .unwrap();
    let err = sfsim::start(sfsim::SimConfig {
        objects: vec![file.clone()],
        ..Default::default()
    })
    .await
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("Thing__c has key prefix 001, which is Account's"),
        "{err}"
    );
    let missing = dir.join("missing.json");
    let err = sfsim::start(sfsim::SimConfig {
        objects: vec![missing],
        ..Default::default()
    })
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("missing.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
