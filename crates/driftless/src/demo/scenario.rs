//! What the demo syncs and how: the dataset, the mappings, the workload and the engine settings.
//! The settings are short on purpose (2 s polls, 8 s secondary delay) so that every mechanism,
//! drift repair included, shows within a minute.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use driftless_core::Config;

use super::DemoError;

/// The demo's connection name: sessions show as `driftless/demo/...` in `pg_stat_activity`.
pub const CONNECTION: &str = "demo";

/// The objects the demo maps; the dataset may only name these.
pub const OBJECTS: [&str; 2] = ["Account", "Contact"];

pub const DEFAULT_DATASET: &str = "Account=20000,Contact=50000";

/// Longest long transaction of the workload, in ms. The secondary delay must exceed it (plus the
/// poll margin) or a commit could land after its window's second read too.
const LONG_TXN_MS: [u64; 2] = [1000, 4000];
const SECONDARY_DELAY_SECS: u64 = 8;
pub const POLL_INTERVAL_SECS: u64 = 2;

/// Parses and checks `--dataset`: only mapped objects, each at most once.
pub fn parse_dataset(spec: &str) -> Result<Vec<(String, u64)>, String> {
    let parsed = sfsim::config::parse_dataset(spec)?;
    let mut out: Vec<(String, u64)> = Vec::new();
    for (object, count) in parsed {
        let Some(name) = OBJECTS.iter().find(|o| o.eq_ignore_ascii_case(&object)) else {
            return Err(format!(
                "unknown object '{object}': the demo maps {}",
                OBJECTS.join(" and ")
            ));
        };
        if out.iter().any(|(o, _)| o == name) {
            return Err(format!("{name} is named twice"));
        }
        out.push(((*name).to_owned(), count));
    }
    if out.is_empty() {
        return Err("name at least one object, e.g. Account=20000".into());
    }
    Ok(out)
}

/// The workloads posted to `/_sim/workload`: steady changes, 5% of them in long transactions.
pub fn workloads(dataset: &[(String, u64)]) -> Vec<serde_json::Value> {
    dataset
        .iter()
        .map(|(object, _)| {
            let (inserts, updates, deletes) = if object == "Account" {
                (20, 200, 5)
            } else {
                (10, 100, 3)
            };
            serde_json::json!({
                "object": object,
                "inserts_per_sec": inserts,
                "updates_per_sec": updates,
                "deletes_per_sec": deletes,
                "long_txn_fraction": 0.05,
                "long_txn_ms": LONG_TXN_MS,
            })
        })
        .collect()
}

/// The read_write mapping: the demo inserts and updates its rows in Postgres and write-back sends
/// them to Salesforce, upserting on the External ID so a retried send never duplicates.
pub const WRITE_BACK_OBJECT: &str = "Invoice__c";

fn write_back_mapping() -> serde_json::Value {
    let fields: serde_json::Map<String, serde_json::Value> = [
        "Id",
        "IsDeleted",
        "SystemModstamp",
        "Name",
        "External_Id__c",
        "Amount__c",
        "Status__c",
    ]
    .iter()
    .map(|f| ((*f).to_owned(), serde_json::json!({})))
    .collect();
    serde_json::json!({
        "object_name": WRITE_BACK_OBJECT,
        "config": {
            "access": "read_write",
            "sf_polling_seconds": POLL_INTERVAL_SECS,
            "sf_notify_enabled": false,
            "fields": fields,
            "indexes": {
                "Id": {"unique": true},
                "SystemModstamp": {"unique": false},
                "External_Id__c": {"unique": true},
            },
            "upsert_field": "External_Id__c",
        }
    })
}

fn mapping_json(object: &str) -> serde_json::Value {
    let fields: &[&str] = if object == "Account" {
        &[
            "Id",
            "IsDeleted",
            "SystemModstamp",
            "CreatedDate",
            "Name",
            "Type",
            "Industry",
            "AnnualRevenue",
            "NumberOfEmployees",
            "Phone",
            "BillingCity",
            "Description",
        ]
    } else {
        &[
            "Id",
            "IsDeleted",
            "SystemModstamp",
            "AccountId",
            "FirstName",
            "LastName",
            "Email",
            "Birthdate",
            "HasOptedOutOfEmail",
        ]
    };
    let fields: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|f| ((*f).to_owned(), serde_json::json!({})))
        .collect();
    serde_json::json!({
        "object_name": object,
        "config": {
            "access": "read_only",
            "sf_polling_seconds": POLL_INTERVAL_SECS,
            "sf_notify_enabled": false,
            "fields": fields,
            "indexes": {"Id": {"unique": true}, "SystemModstamp": {"unique": false}},
        }
    })
}

/// Writes the mappings (Heroku Connect's export format) and a driftless.toml to `dir`, and
/// parses them as `driftless run` would.
pub fn write_config(
    dir: &Path,
    dataset: &[(String, u64)],
    database_url: &str,
    sim: &sfsim::SimInfo,
    admin_token: &str,
    write_back: bool,
) -> Result<(Config, PathBuf), DemoError> {
    let io = |e: std::io::Error| DemoError::Setup(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mappings = serde_json::json!({
        "mappings": dataset
            .iter()
            .map(|(o, _)| mapping_json(o))
            .chain(write_back.then(write_back_mapping))
            .collect::<Vec<_>>(),
        "version": 1,
    });
    std::fs::write(dir.join("mappings.json"), mappings.to_string()).map_err(io)?;
    // Secrets stay in the environment map, not in the file, as a real config keeps them.
    let toml = format!(
        r#"[coordinator]
listen = "127.0.0.1:0"
admin_token = "${{DRIFTLESS_ADMIN_TOKEN}}"

[[connection]]
name = "{CONNECTION}"
database_url = "${{DEMO_DATABASE_URL}}"
db_pool_size = 4
mappings = "mappings.json"

{salesforce}
[connection.sync]
poll_interval_secs = {POLL_INTERVAL_SECS}
secondary_delay_secs = {SECONDARY_DELAY_SECS}
secondary_concurrency = 2
bulk_threshold = 300
poll_margin_secs = 1
use_latest_date_covered = false
"#,
        salesforce = sim.salesforce_toml("${SF_CLIENT_SECRET}"),
    );
    let path = dir.join("driftless.toml");
    std::fs::write(&path, &toml).map_err(io)?;
    let env = HashMap::from([
        ("DRIFTLESS_ADMIN_TOKEN".to_owned(), admin_token.to_owned()),
        ("DEMO_DATABASE_URL".to_owned(), database_url.to_owned()),
        ("SF_PASSWORD".to_owned(), sim.password.clone()),
        ("SF_CLIENT_SECRET".to_owned(), sim.client_secret.clone()),
    ]);
    let config = Config::parse(&toml, &path, env).map_err(|e| DemoError::Setup(e.to_string()))?;
    Ok((config, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names_only_mapped_objects() {
        assert_eq!(
            parse_dataset("account=10, Contact=2").unwrap(),
            vec![("Account".into(), 10), ("Contact".into(), 2)]
        );
        assert!(parse_dataset("Lead=5")
            .unwrap_err()
            .contains("unknown object 'Lead'"));
        assert!(parse_dataset("Account=1,Account=2")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_dataset("").is_err());
        assert!(parse_dataset("Account=x").is_err());
    }

    #[test]
    fn long_transactions_end_before_their_secondary_poll() {
        assert!(LONG_TXN_MS[1] / 1000 + 1 < SECONDARY_DELAY_SECS);
        let w = workloads(&[("Account".into(), 1)]);
        assert_eq!(w[0]["long_txn_ms"][1], LONG_TXN_MS[1]);
        assert!(w[0]["long_txn_fraction"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn the_config_parses_and_keeps_secrets_out_of_the_file() {
        let dir = std::env::temp_dir().join(format!("demo-cfg-{}", uuid::Uuid::new_v4()));
        let sim = sfsim::SimInfo {
            instance_url: "http://127.0.0.1:1".into(),
            login_url: "http://127.0.0.1:1".into(),
            org_id: "00D000000000001AAA".into(),
            username: "admin@driftless.sim".into(),
            password: "pw-secret".into(),
            client_id: "cid".into(),
            client_secret: "cs-secret".into(),
            refresh_token: "rt".into(),
            ca_cert: None,
        };
        let (config, path) = write_config(
            &dir,
            &parse_dataset(DEFAULT_DATASET).unwrap(),
            "postgres://u:db-secret@h/d",
            &sim,
            "tok-secret",
            true,
        )
        .unwrap();
        assert_eq!(config.connections[0].name, CONNECTION);
        let file =
            driftless_core::mapping::MappingFile::load(&config.connections[0].mappings).unwrap();
        let objects: Vec<&str> = file
            .mappings
            .iter()
            .map(|m| m.object_name.as_str())
            .collect();
        assert_eq!(objects, ["Account", "Contact", WRITE_BACK_OBJECT]);
        assert!(!config.connections[0].sync.use_latest_date_covered);
        let text = std::fs::read_to_string(path).unwrap();
        for secret in ["pw-secret", "cs-secret", "db-secret", "tok-secret"] {
            assert!(!text.contains(secret), "{secret} written to the file");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
