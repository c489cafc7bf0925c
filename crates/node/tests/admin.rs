//! The admin service end to end: the simulator, a fresh Postgres database, the engine in-process
//! and its admin listener on 127.0.0.1:0, spoken to in protobuf over real HTTP.

use driftless_testkit as common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use driftless_core::config::Config;
use driftless_node::verify::{verify, VerifyOptions};
use driftless_node::{run, NodeHandle, RunOptions};
use driftless_proto::admin::{self, admin_service as rpc};
use driftless_proto::Rpc;

const ACCOUNTS: u64 = 300;
const CONTACTS: u64 = 200;
const LEADS: u64 = 120;

fn options() -> RunOptions {
    RunOptions {
        honor_latest_date_covered: false,
        batch_rows: 1000,
        ..RunOptions::default()
    }
}

fn setup() -> Setup {
    Setup {
        faults: false,
        bulk_threshold: 10_000,
        secondary_enabled: true,
        db_pool_size: 3,
    }
}

struct Env {
    db: TestDb,
    sim: SimThread,
    config: Config,
    engine: Option<NodeHandle>,
    base: String,
}

impl Env {
    async fn start() -> Env {
        Env::start_with(DEFAULT_MAPPINGS).await
    }

    async fn start_with(mappings: &str) -> Env {
        let db = TestDb::create().await;
        let sim = SimThread::start(sfsim::SimConfig {
            dataset: vec![
                ("Account".into(), ACCOUNTS),
                ("Contact".into(), CONTACTS),
                ("Lead".into(), LEADS),
                ("Invoice__c".into(), 20),
            ],
            ..Default::default()
        })
        .await;
        let config = write_config_with(&db, &sim.info, &setup(), mappings);
        let mut env = Env {
            db,
            sim,
            config,
            engine: None,
            base: String::new(),
        };
        env.restart().await;
        env
    }

    /// Starts the engine (stopping a running one first) and waits for its listener.
    async fn restart(&mut self) {
        if let Some(engine) = self.engine.take() {
            engine.stop().await;
        }
        let engine = run(self.config.clone(), options())
            .await
            .expect("engine starts");
        self.base = format!("http://{}", engine.admin_addr().expect("admin listener"));
        self.engine = Some(engine);
    }

    async fn stop(mut self) {
        if let Some(engine) = self.engine.take() {
            engine.stop().await;
        }
        self.sim.stop().await;
    }

    async fn call<R: Rpc>(&self, req: &R::Request) -> Result<R::Reply, (u16, String)> {
        call_with::<R>(&self.base, Some(TOKEN), req).await
    }

    async fn ok<R: Rpc>(&self, req: &R::Request) -> R::Reply {
        self.call::<R>(req)
            .await
            .unwrap_or_else(|(s, m)| panic!("{}: {s} {m}", R::PATH))
    }

    async fn status(&self) -> admin::StatusReply {
        self.ok::<rpc::Status>(&admin::StatusRequest {}).await
    }

    async fn mapping(&self, object: &str) -> admin::MappingStatus {
        self.status()
            .await
            .mappings
            .into_iter()
            .find(|m| m.object == object)
            .unwrap_or_else(|| panic!("{object} in status"))
    }

    async fn wait_synced(&self, objects: &[&str]) {
        wait_until("mappings synced", Duration::from_secs(120), || async {
            let s = self.status().await;
            objects.iter().all(|o| {
                s.mappings.iter().any(|m| {
                    m.object == *o && m.state == "DATA_SYNCED" && m.synced_through_ms.is_some()
                })
            })
        })
        .await;
    }

    /// `(state, owner_epoch, synced_through)` of the mapping's state row.
    async fn state_row(&self, object: &str) -> (String, i64, Option<DateTime<Utc>>) {
        let pg = self.db.client().await;
        let r = pg
            .query_one(
                "SELECT state, owner_epoch, synced_through FROM salesforce._driftless_mapping_state \
                 WHERE connection = 'acme' AND object_name = $1",
                &[&object],
            )
            .await
            .expect("state row");
        (r.get(0), r.get(1), r.get(2))
    }

    async fn differences(&self) -> i64 {
        let opts = VerifyOptions {
            max_listed: 5,
            batch_rows: 1000,
            ..VerifyOptions::default()
        };
        let reports = verify(&self.config, &opts).await.expect("verify");
        reports.iter().map(|r| r.differences()).sum()
    }

    async fn workload_changes(&self, object: &str) -> u64 {
        let v: serde_json::Value =
            reqwest::get(format!("{}/_sim/workload", self.sim.info.instance_url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let counts = &v["objects"][object];
        counts["inserts"].as_u64().unwrap_or(0) + counts["updates"].as_u64().unwrap_or(0)
    }

    fn mappings_file(&self) -> String {
        std::fs::read_to_string(&self.config.connections[0].mappings).unwrap()
    }
}

async fn call_with<R: Rpc>(
    base: &str,
    token: Option<&str>,
    req: &R::Request,
) -> Result<R::Reply, (u16, String)> {
    let mut builder = reqwest::Client::new()
        .post(format!("{base}{}", R::PATH))
        .header("content-type", driftless_proto::CONTENT_TYPE)
        .body(driftless_proto::encode(req));
    if let Some(t) = token {
        builder = builder.bearer_auth(t);
    }
    let resp = builder.send().await.expect("admin listener answers");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    if status == 200 {
        Ok(driftless_proto::decode(&body).expect("protobuf reply"))
    } else {
        Err((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

#[actix_rt::test]
async fn read_rpcs_answer_and_a_wrong_token_changes_nothing() {
    let env = Env::start().await;
    env.wait_synced(&["Account", "Contact"]).await;

    let status = env.status().await;
    assert_eq!(status.workers.len(), 1);
    assert_eq!(status.workers[0].name, "w1");
    assert_eq!(
        status.workers[0].mappings,
        vec!["acme/Account", "acme/Contact"]
    );
    let account = env.mapping("Account").await;
    assert_eq!(account.rows, ACCOUNTS);
    assert_eq!(account.worker.as_deref(), Some("w1"));
    assert_eq!(env.mapping("Contact").await.rows, CONTACTS);

    let workers = env.ok::<rpc::Workers>(&admin::WorkersRequest {}).await;
    assert_eq!(workers.workers, status.workers);

    let all = env
        .ok::<rpc::Mappings>(&admin::MappingsRequest {
            connection: Some("acme".into()),
        })
        .await;
    assert_eq!(all.mappings.len(), 2);
    let (code, message) = env
        .call::<rpc::Mappings>(&admin::MappingsRequest {
            connection: Some("nope".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(code, 404);
    assert!(message.contains("nope"), "{message}");

    let detail = env
        .ok::<rpc::Mapping>(&admin::MappingRequest {
            object: "account".into(),
            connection: None,
        })
        .await;
    assert_eq!(detail.mappings.len(), 1);
    let d = &detail.mappings[0];
    assert_eq!(d.access, "read_only");
    assert_eq!(d.sf_polling_seconds, 2);
    assert!(
        d.fields.contains(&"BillingCity".to_owned()),
        "{:?}",
        d.fields
    );
    assert_eq!(d.owner_epoch, env.state_row("Account").await.1);
    assert_eq!(d.status.as_ref().unwrap().object, "Account");
    let (code, _) = env
        .call::<rpc::Mapping>(&admin::MappingRequest {
            object: "Lead".into(),
            connection: None,
        })
        .await
        .unwrap_err();
    assert_eq!(code, 404);

    let drift = env
        .ok::<rpc::Drift>(&admin::DriftRequest { connection: None })
        .await;
    assert_eq!(drift.mappings.len(), 2);
    let errors = env
        .ok::<rpc::Errors>(&admin::ErrorsRequest { connection: None })
        .await;
    assert!(errors.errors.is_empty(), "{errors:?}");

    let export = env
        .ok::<rpc::Export>(&admin::ExportRequest {
            connection: "acme".into(),
        })
        .await;
    let exported = driftless_core::MappingFile::parse(&export.mappings_json).unwrap();
    let on_disk = driftless_core::MappingFile::parse(&env.mappings_file()).unwrap();
    assert_eq!(exported.mappings, on_disk.mappings);

    // A wrong or missing token: 401, and the connection is not paused.
    let before = env.state_row("Account").await;
    for token in [Some("wrong-token"), None] {
        let (code, _) = call_with::<rpc::Pause>(
            &env.base,
            token,
            &admin::PauseRequest {
                connection: "acme".into(),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(code, 401);
        let (code, _) = call_with::<rpc::Status>(&env.base, token, &admin::StatusRequest {})
            .await
            .unwrap_err();
        assert_eq!(code, 401);
    }
    let file = env.mappings_file();
    let (code, _) = call_with::<rpc::Import>(
        &env.base,
        Some("wrong-token"),
        &admin::ImportRequest {
            connection: "acme".into(),
            contents: br#"{"mappings":[]}"#.to_vec(),
            replace: true,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code, 401);
    assert_eq!(env.mappings_file(), file);
    assert_eq!(env.state_row("Account").await, before);
    assert_ne!(env.mapping("Account").await.state, "PAUSED");
    // The JSON status stays where it was.
    let json: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/status", env.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["mappings"].as_array().unwrap().len(), 2);

    // Failing polls show in errors with a count, the last error and its time.
    sim_post(
        &env.sim.info,
        "/_sim/faults",
        serde_json::json!({"http_error_rate": 1.0, "http_error_status": 503}),
    )
    .await;
    wait_until(
        "an error in ctl errors",
        Duration::from_secs(120),
        || async {
            let e = env
                .ok::<rpc::Errors>(&admin::ErrorsRequest {
                    connection: Some("acme".into()),
                })
                .await;
            e.errors
                .iter()
                .any(|e| e.count > 0 && e.last_error.is_some() && e.at_ms.is_some())
        },
    )
    .await;
    sim_delete(&env.sim.info, "/_sim/faults").await;
    env.stop().await;
}

#[actix_rt::test]
async fn pause_stops_commits_across_a_restart_and_resume_catches_up() {
    let mut env = Env::start().await;
    env.wait_synced(&["Account", "Contact"]).await;

    let paused = env
        .ok::<rpc::Pause>(&admin::PauseRequest {
            connection: "acme".into(),
        })
        .await;
    assert_eq!(paused.mappings, vec!["acme/Account", "acme/Contact"]);
    let (state, _, synced_at_pause) = env.state_row("Account").await;
    assert_eq!(state, "PAUSED");
    assert_eq!(env.state_row("Contact").await.0, "PAUSED");
    let shown = env.mapping("Account").await;
    assert_eq!(shown.state, "PAUSED");
    let polls_at_pause = shown.primary.unwrap().polls;

    sim_post(
        &env.sim.info,
        "/_sim/workload",
        serde_json::json!({"object": "Account", "inserts_per_sec": 5, "updates_per_sec": 60}),
    )
    .await;
    // Several poll intervals (2 s) of changes go by while paused.
    let start = env.workload_changes("Account").await;
    wait_until("workload changes", Duration::from_secs(60), || async {
        env.workload_changes("Account").await >= start + 300
    })
    .await;
    assert_eq!(env.state_row("Account").await.2, synced_at_pause);
    let shown = env.mapping("Account").await;
    assert_eq!(shown.primary.unwrap().polls, polls_at_pause);
    assert_eq!(shown.state, "PAUSED");

    // A restart stays paused.
    env.restart().await;
    assert_eq!(env.mapping("Account").await.state, "PAUSED");
    let start = env.workload_changes("Account").await;
    wait_until("workload changes", Duration::from_secs(60), || async {
        env.workload_changes("Account").await >= start + 300
    })
    .await;
    let (state, _, synced) = env.state_row("Account").await;
    assert_eq!((state.as_str(), synced), ("PAUSED", synced_at_pause));

    let resumed = env
        .ok::<rpc::Resume>(&admin::ResumeRequest {
            connection: "acme".into(),
        })
        .await;
    assert_eq!(resumed.mappings, vec!["acme/Account", "acme/Contact"]);
    sim_delete(&env.sim.info, "/_sim/workload").await;
    let stopped = Utc::now();
    wait_until(
        "caught up after resume",
        Duration::from_secs(120),
        || async {
            let (state, _, synced) = env.state_row("Account").await;
            state == "DATA_SYNCED"
                && synced.is_some_and(|t| t > stopped + chrono::Duration::seconds(1))
        },
    )
    .await;
    assert_eq!(env.differences().await, 0);
    env.stop().await;
}

#[actix_rt::test]
async fn reload_truncates_and_loads_the_table_again() {
    let env = Env::start().await;
    env.wait_synced(&["Account", "Contact"]).await;
    let pg = env.db.client().await;
    pg.batch_execute(
        "DELETE FROM salesforce.account WHERE id IN (SELECT id FROM salesforce.account LIMIT 40);
         UPDATE salesforce.account SET name = 'corrupted' WHERE id IN (SELECT id FROM salesforce.account LIMIT 25);",
    )
    .await
    .unwrap();
    assert!(env.differences().await >= 65);
    let epoch_before = env.state_row("Account").await.1;

    let (code, message) = env
        .call::<rpc::Reload>(&admin::ReloadRequest {
            connection: "acme".into(),
            object: "Lead".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(code, 404, "{message}");

    let reply = env
        .ok::<rpc::Reload>(&admin::ReloadRequest {
            connection: "acme".into(),
            object: "account".into(),
        })
        .await;
    assert_eq!(reply.state, "RELOAD_TABLE");
    env.wait_synced(&["Account"]).await;
    assert_eq!(env.mapping("Account").await.rows, ACCOUNTS);
    let corrupted: i64 = pg
        .query_one(
            "SELECT count(*) FROM salesforce.account WHERE name = 'corrupted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(corrupted, 0);
    assert!(env.state_row("Account").await.1 > epoch_before);
    assert_eq!(env.differences().await, 0);

    // A paused connection is not reloaded behind the operator's back.
    env.ok::<rpc::Pause>(&admin::PauseRequest {
        connection: "acme".into(),
    })
    .await;
    let (code, _) = env
        .call::<rpc::Reload>(&admin::ReloadRequest {
            connection: "acme".into(),
            object: "Account".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(code, 409);
    env.stop().await;
}

const NEW_SET: &str = r#"{"mappings":[
  {"object_name":"Account","config":{"access":"read_only","sf_polling_seconds":2,"sf_notify_enabled":false,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"BillingCity":{},"Website":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}},
  {"object_name":"Lead","config":{"access":"read_only","sf_polling_seconds":2,"sf_notify_enabled":false,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"LastName":{},"Company":{},"Website":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}
],"version":1}"#;

#[actix_rt::test]
async fn export_import_round_trip_and_bad_imports_change_nothing() {
    let env = Env::start().await;
    env.wait_synced(&["Account", "Contact"]).await;
    let import = |contents: &str, replace: bool| admin::ImportRequest {
        connection: "acme".into(),
        contents: contents.as_bytes().to_vec(),
        replace,
    };

    let export = env
        .ok::<rpc::Export>(&admin::ExportRequest {
            connection: "acme".into(),
        })
        .await;
    let same = env
        .ok::<rpc::Import>(&import(&export.mappings_json, true))
        .await;
    assert_eq!(
        same,
        admin::ImportReply::default(),
        "re-importing an export"
    );

    let file = env.mappings_file();
    let epochs = (
        env.state_row("Account").await.1,
        env.state_row("Contact").await.1,
    );
    let bad = [
        ("{\"mappings\": [", "invalid JSON"),
        (
            r#"{"mappings":[{"object_name":"Nope__c","config":{"access":"read_only","sf_notify_enabled":false,"fields":{"Id":{}},"indexes":{}}}]}"#,
            "Nope__c",
        ),
        (
            r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only","sf_notify_enabled":false,"fields":{"Id":{},"NoSuchField__c":{}},"indexes":{}}}]}"#,
            "NoSuchField__c",
        ),
    ];
    for (contents, named) in bad {
        let (code, message) = env
            .call::<rpc::Import>(&import(contents, true))
            .await
            .unwrap_err();
        assert_eq!(code, 400, "{message}");
        assert!(message.contains(named), "{named} in {message}");
        assert_eq!(env.mappings_file(), file, "file untouched");
        let s = env.status().await;
        let objects: Vec<&str> = s.mappings.iter().map(|m| m.object.as_str()).collect();
        assert_eq!(objects, ["Account", "Contact"]);
    }
    assert_eq!(
        (
            env.state_row("Account").await.1,
            env.state_row("Contact").await.1
        ),
        epochs,
        "no mapping was restarted"
    );

    let reply = env.ok::<rpc::Import>(&import(NEW_SET, true)).await;
    assert_eq!(reply.added, vec!["Lead"]);
    assert_eq!(reply.changed, vec!["Account"]);
    assert_eq!(reply.removed, vec!["Contact"]);
    let on_disk = driftless_core::MappingFile::parse(&env.mappings_file()).unwrap();
    assert_eq!(
        on_disk.mappings,
        driftless_core::MappingFile::parse(NEW_SET)
            .unwrap()
            .mappings
    );
    env.wait_synced(&["Account", "Lead"]).await;
    let s = env.status().await;
    let objects: Vec<&str> = s.mappings.iter().map(|m| m.object.as_str()).collect();
    assert_eq!(objects, ["Account", "Lead"]);
    assert_eq!(env.mapping("Lead").await.rows, LEADS);
    assert!(
        env.state_row("Account").await.1 > epochs.0,
        "Account restarted"
    );
    let pg = env.db.client().await;
    let websites: i64 = pg
        .query_one(
            "SELECT count(*) FROM salesforce.account WHERE website IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(websites > 0, "the new column was backfilled");
    wait_until("Account backfill done", Duration::from_secs(60), || async {
        env.differences().await == 0
    })
    .await;

    // Without --replace, import merges like Heroku Connect's: Lead changes, Account stays.
    let lead_only = NEW_SET.replace("\"Website\":{}}", "\"Website\":{},\"Email\":{}}");
    let lead_only = {
        let mut f = driftless_core::MappingFile::parse(&lead_only).unwrap();
        f.mappings.retain(|m| m.object_name == "Lead");
        f.to_json()
    };
    let reply = env.ok::<rpc::Import>(&import(&lead_only, false)).await;
    assert_eq!(
        (reply.added, reply.changed, reply.removed),
        (vec![], vec!["Lead".to_owned()], vec![])
    );
    let export = env
        .ok::<rpc::Export>(&admin::ExportRequest {
            connection: "acme".into(),
        })
        .await;
    let exported = driftless_core::MappingFile::parse(&export.mappings_json).unwrap();
    assert_eq!(exported.mappings.len(), 2);
    env.stop().await;
}

const READ_WRITE: &str = r#"{"mappings":[
  {"object_name":"Invoice__c","config":{"access":"read_write","sf_polling_seconds":2,"sf_notify_enabled":false,
    "fields":{"Id":{},"IsDeleted":{},"SystemModstamp":{},"Name":{},"External_Id__c":{},"Amount__c":{}},
    "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false},"External_Id__c":{"unique":true}},
    "upsert_field":"External_Id__c"}}
],"version":1}"#;

#[actix_rt::test]
async fn errors_include_failed_write_backs() {
    let env = Env::start_with(READ_WRITE).await;
    env.wait_synced(&["Invoice__c"]).await;
    let pg = env.db.client().await;
    // Salesforce refuses an Invoice__c without its required Name.
    pg.batch_execute(
        "INSERT INTO salesforce.invoice__c (name, external_id__c, amount__c) VALUES (NULL, 'no-name', 1)",
    )
    .await
    .unwrap();
    wait_until(
        "the failed write in ctl errors",
        Duration::from_secs(60),
        || async {
            let e = env
                .ok::<rpc::Errors>(&admin::ErrorsRequest {
                    connection: Some("acme".into()),
                })
                .await;
            e.errors.iter().any(|e| {
                e.object == "Invoice__c"
                    && e.count == 1
                    && e.at_ms.is_some()
                    && e.last_error.as_deref().is_some_and(|m| {
                        m.starts_with("write-back") && m.contains("REQUIRED_FIELD_MISSING")
                    })
            })
        },
    )
    .await;
    env.stop().await;
}

#[actix_rt::test]
async fn errors_include_quarantined_records() {
    let env = Env::start_with(READ_WRITE).await;
    env.wait_synced(&["Invoice__c"]).await;
    let pg = env.db.client().await;
    pg.batch_execute(
        "ALTER TABLE salesforce.invoice__c ADD CONSTRAINT no_poison CHECK (name NOT LIKE 'POISON%')",
    )
    .await
    .unwrap();
    let org = &env.sim.org;
    let obj = org.object_index("Invoice__c").unwrap();
    let name = org.schema.objects[obj].field_index("Name").unwrap();
    let mut txn = org.begin();
    let id = org
        .create(
            &mut txn,
            obj,
            vec![(name, sfsim::value::Value::text("POISON"))],
        )
        .unwrap();
    org.commit(txn);
    wait_until(
        "the quarantined record in ctl errors",
        Duration::from_secs(60),
        || async {
            let e = env
                .ok::<rpc::Errors>(&admin::ErrorsRequest {
                    connection: Some("acme".into()),
                })
                .await;
            e.errors.iter().any(|e| {
                e.object == "Invoice__c"
                    && e.last_error.as_deref().is_some_and(|m| {
                        m.starts_with(&format!("record {id} quarantined")) && m.contains("23514")
                    })
            })
        },
    )
    .await;
    env.stop().await;
}

/// Heroku Connect's pause stops both directions: rows written while paused stay pending, and
/// resume sends them.
#[actix_rt::test]
async fn pause_holds_write_back_and_resume_sends_what_waited() {
    let env = Env::start_with(READ_WRITE).await;
    env.wait_synced(&["Invoice__c"]).await;
    let pg = env.db.client().await;
    env.ok::<rpc::Pause>(&admin::PauseRequest {
        connection: "acme".into(),
    })
    .await;
    pg.batch_execute(
        "INSERT INTO salesforce.invoice__c (name, external_id__c, amount__c)
         SELECT 'P-' || g, 'paused-' || g, g FROM generate_series(1, 50) g",
    )
    .await
    .unwrap();
    // Longer than the write-back's fallback poll (2 s) and a NOTIFY: nothing may go out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let unsent: i64 = pg
        .query_one(
            "SELECT count(*) FROM salesforce.invoice__c WHERE external_id__c LIKE 'paused-%' AND sfid IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        unsent, 50,
        "write-back sent while the connection was paused"
    );
    env.ok::<rpc::Resume>(&admin::ResumeRequest {
        connection: "acme".into(),
    })
    .await;
    wait_until("the waiting rows sent after resume", Duration::from_secs(60), || async {
        pg.query_one(
            "SELECT count(*) FROM salesforce.invoice__c WHERE external_id__c LIKE 'paused-%' AND sfid IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
            == 0
    })
    .await;
    env.stop().await;
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The token is checked from the headers before any body is read: 200 concurrent
/// unauthenticated 15 MB bodies are refused without the listener holding them (the body used to
/// be read first: 100 such requests took a process from 18 MB to 1.6 GB), and an authorized body
/// over its route's limit gets 413.
#[actix_rt::test]
async fn unauthenticated_large_bodies_are_refused_before_they_are_read() {
    let env = Env::start().await;
    env.wait_synced(&["Account"]).await;
    let idle = rss_mib();
    const CHUNK: &[u8] = &[b'x'; 64 << 10];
    const BODY: usize = 15 << 20;
    let http = reqwest::Client::new();
    let sends = (0..200).map(|i| {
        let http = http.clone();
        let path = if i % 2 == 0 {
            rpc::Import::PATH
        } else {
            rpc::Status::PATH
        };
        let url = format!("{}{path}", env.base);
        async move {
            let chunks = futures::stream::iter(
                (0..BODY / CHUNK.len()).map(|_| Ok::<_, std::io::Error>(CHUNK)),
            );
            let mut req = http
                .post(url)
                .header("content-type", driftless_proto::CONTENT_TYPE)
                .header("content-length", BODY.to_string())
                .body(reqwest::Body::wrap_stream(chunks));
            if i % 4 == 1 {
                req = req.bearer_auth("wrong-token");
            }
            req.send().await.map(|r| r.status().as_u16())
        }
    });
    let results = futures::future::join_all(sends).await;
    let after = rss_mib();
    let answered: Vec<u16> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    println!(
        "200 unauthenticated 15 MB bodies: {} answered (all 401: {}), the rest cut off by the \
         server; resident memory {idle:.1} MiB idle, {after:.1} MiB after (+{:.1} MiB)",
        answered.len(),
        answered.iter().all(|s| *s == 401),
        after - idle
    );
    assert!(answered.iter().all(|s| *s == 401), "{answered:?}");
    assert!(!answered.is_empty(), "some refusals reach the client");
    assert!(
        after - idle < 100.0,
        "resident memory grew by {:.1} MiB",
        after - idle
    );

    // Authorized, over the limit of a small rpc: 413, and the listener still answers.
    let resp = http
        .post(format!("{}{}", env.base, rpc::Status::PATH))
        .bearer_auth(TOKEN)
        .header("content-type", driftless_proto::CONTENT_TYPE)
        .body(vec![0u8; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert!(!env.status().await.mappings.is_empty());
    env.stop().await;
}
