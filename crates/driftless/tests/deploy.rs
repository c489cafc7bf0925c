//! The deploy/ files stay loadable: the compose cluster's config and mappings, and the ones the
//! Kubernetes ConfigMap carries, parse with the same loaders `driftless coordinator` uses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use driftless_core::mapping::MappingFile;
use driftless_core::Config;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn env(names: &[&str]) -> HashMap<String, String> {
    names
        .iter()
        .map(|n| ((*n).to_owned(), format!("value-of-{n}")))
        .collect()
}

#[test]
fn the_compose_config_and_mappings_load() {
    let path = deploy().join("compose/driftless.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = Config::parse(
        &text,
        &path,
        env(&["DRIFTLESS_ADMIN_TOKEN", "SF_PASSWORD", "SF_CLIENT_SECRET"]),
    )
    .unwrap();
    assert!(config.coordinator.state_database_url.is_some());
    assert_eq!(config.connections.len(), 2);
    for c in &config.connections {
        let file = MappingFile::load(&c.mappings).unwrap();
        assert_eq!(file.mappings.len(), 2);
    }
}

/// The text of a `key: |` block scalar in a YAML file (the lines indented under it).
fn block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let head = lines.next().expect("the key");
    let indent = head.len() - head.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_kubernetes_configmap_holds_a_loadable_config() {
    let yaml = std::fs::read_to_string(deploy().join("k8s/configmap.yaml")).unwrap();
    let dir = std::env::temp_dir().join(format!("driftless-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mappings.json"), block(&yaml, "mappings.json")).unwrap();
    let path = dir.join("driftless.toml");
    let text = block(&yaml, "driftless.toml");
    let config = Config::parse(
        &text,
        &path,
        env(&[
            "DRIFTLESS_ADMIN_TOKEN",
            "DRIFTLESS_WORKER_TOKEN",
            "STATE_DATABASE_URL",
            "ACME_DATABASE_URL",
            "SF_USERNAME",
            "SF_PASSWORD",
            "SF_CLIENT_ID",
            "SF_CLIENT_SECRET",
        ]),
    )
    .unwrap();
    assert_eq!(
        config.connections[0].salesforce.login_url,
        "https://login.salesforce.com"
    );
    assert!(config.coordinator.worker_token.is_some());
    MappingFile::load(&config.connections[0].mappings).unwrap();
    // Every ${VAR} the config uses is a key of the Secret the coordinator loads.
    let secret = std::fs::read_to_string(deploy().join("k8s/secret.yaml")).unwrap();
    for var in text.split("${").skip(1).map(|s| &s[..s.find('}').unwrap()]) {
        assert!(
            secret.contains(&format!("{var}:")),
            "{var} missing in secret.yaml"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
