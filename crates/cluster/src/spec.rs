//! A connection's settings as the coordinator ships them to a worker ([`ConnectionSpec`]), and
//! back into a [`ConnectionConfig`] on the worker.
//!
//! The spec is built from the config file's own TOML, not re-rendered from the parsed structs, so
//! every key a connection may have (today's and tomorrow's) travels without this module knowing
//! it; the worker parses it with the same loader and the same validation as `driftless run`.
//! The values of the `${VAR}`s it references travel beside it, taken from the coordinator's
//! environment (where the secrets are), and the worker's loader expands them exactly once.
//! Files the connection names (mappings, `ca_cert`, `private_key_file`) travel as contents.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use driftless_core::config::{Config, ConnectionConfig};
use driftless_proto::cluster::ConnectionSpec;
use sha2::{Digest, Sha256};
use toml::{Table, Value};

use crate::error::{ClusterError, Result};

const MAPPINGS_FILE: &str = "mappings.json";
const CA_FILE: &str = "ca_cert.pem";
const KEY_FILE: &str = "private_key.pem";

/// One spec per connection of `config`, by name.
pub fn connection_specs(config: &Config) -> Result<BTreeMap<String, ConnectionSpec>> {
    let err = |m: String| ClusterError::Config(format!("{}: {m}", config.path.display()));
    let text = std::fs::read_to_string(&config.path).map_err(|e| err(e.to_string()))?;
    let doc: Table = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let mut out = BTreeMap::new();
    let tables = doc
        .get("connection")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for raw in tables {
        let Value::Table(mut table) = raw else {
            continue;
        };
        let Some(name) = table.get("name").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        let conn = config
            .connection(&name)
            .ok_or_else(|| err(format!("connection {name} vanished while shipping it")))?;
        let mut files = HashMap::new();
        files.insert(MAPPINGS_FILE.to_owned(), read(&conn.mappings, &err)?);
        table.insert("mappings".into(), Value::String(MAPPINGS_FILE.into()));
        if let Some(Value::Table(sf)) = table.get_mut("salesforce") {
            if let Some(ca) = &conn.salesforce.ca_cert {
                files.insert(CA_FILE.to_owned(), read(ca, &err)?);
                sf.insert("ca_cert".into(), Value::String(CA_FILE.into()));
            }
            if let Some(key) = sf.get("private_key_file").and_then(Value::as_str) {
                let path = config.path.parent().unwrap_or(Path::new(".")).join(key);
                files.insert(KEY_FILE.to_owned(), read(&path, &err)?);
                sf.insert("private_key_file".into(), Value::String(KEY_FILE.into()));
            }
        }
        let mut root = Table::new();
        root.insert("connection".into(), Value::Array(vec![Value::Table(table)]));
        let config_toml = toml::to_string(&root).map_err(|e| err(e.to_string()))?;
        let mut names = Vec::new();
        references(&config_toml, &mut names);
        let vars: HashMap<String, String> = names
            .into_iter()
            .filter_map(|n| env.get(&n).map(|v| (n, v.clone())))
            .collect();
        let fingerprint = fingerprint(&config_toml, &files, &vars);
        out.insert(
            name.clone(),
            ConnectionSpec {
                name,
                config_toml,
                files,
                fingerprint,
                env: vars,
            },
        );
    }
    Ok(out)
}

fn read(path: &Path, err: &impl Fn(String) -> ClusterError) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| err(format!("{}: {e}", path.display())))
}

/// The names of the `${NAME}`s in `text` (malformed ones were already refused by the loader).
fn references(text: &str, out: &mut Vec<String>) {
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(close) = after.find('}') else { return };
        out.push(after[..close].to_owned());
        rest = &after[close + 1..];
    }
}

fn fingerprint(
    config_toml: &str,
    files: &HashMap<String, Vec<u8>>,
    env: &HashMap<String, String>,
) -> String {
    let mut h = Sha256::new();
    h.update(config_toml.as_bytes());
    for (name, value) in env.iter().collect::<BTreeMap<_, _>>() {
        h.update([1]);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
    }
    let sorted: BTreeMap<_, _> = files.iter().collect();
    for (name, contents) in sorted {
        h.update([0]);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(contents);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the spec's files under `dir/<connection>/` (owner-only: they hold secrets) and loads
/// the connection with the same loader and checks as a config file.
pub fn materialize(spec: &ConnectionSpec, dir: &Path) -> Result<ConnectionConfig> {
    let err = |m: String| ClusterError::Config(format!("connection {}: {m}", spec.name));
    if !is_plain_name(&spec.name) {
        return Err(err(
            "the connection name is not usable as a directory".into()
        ));
    }
    let home: PathBuf = dir.join(&spec.name);
    std::fs::create_dir_all(&home).map_err(|e| err(e.to_string()))?;
    restrict(&home);
    for (name, contents) in &spec.files {
        if !is_plain_name(name) {
            return Err(err(format!(
                "refusing file name {name:?} from the coordinator"
            )));
        }
        std::fs::write(home.join(name), contents).map_err(|e| err(e.to_string()))?;
    }
    let path = home.join("driftless.toml");
    std::fs::write(&path, &spec.config_toml).map_err(|e| err(e.to_string()))?;
    // The coordinator's values, never the worker's environment: every worker runs a connection
    // with the same settings.
    let config = Config::parse(&spec.config_toml, &path, spec.env.clone())
        .map_err(|e| err(e.to_string()))?;
    config
        .connections
        .into_iter()
        .find(|c| c.name == spec.name)
        .ok_or_else(|| err("the shipped config holds no such connection".into()))
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(unix)]
fn restrict(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(not(unix))]
fn restrict(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_travels_with_its_files_and_expanded_secrets() {
        let dir = std::env::temp_dir().join(format!("dl-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("m.json"), r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only","fields":{"Id":{},"Name":{},"SystemModstamp":{}}}}]}"#).unwrap();
        std::fs::write(dir.join("ca.pem"), "CA").unwrap();
        std::env::set_var("DL_SPEC_TEST_PASSWORD", "s3cret${not-a-var");
        let text = r#"
[[connection]]
name = "acme"
database_url = "postgres://postgres@127.0.0.1:5432/acme"
db_pool_size = 3
mappings = "m.json"
[connection.salesforce]
login_url = "http://127.0.0.1:1"
auth = "password"
username = "u"
password = "${DL_SPEC_TEST_PASSWORD}"
client_id = "c"
client_secret = "x"
ca_cert = "ca.pem"
[connection.sync]
secondary_concurrency = 5
"#;
        let path = dir.join("driftless.toml");
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        let specs = connection_specs(&config).unwrap();
        let spec = &specs["acme"];
        assert!(
            !spec.config_toml.contains("s3cret"),
            "secrets travel in env only"
        );
        assert_eq!(spec.env["DL_SPEC_TEST_PASSWORD"], "s3cret${not-a-var");
        assert_eq!(spec.files[CA_FILE], b"CA");
        assert_eq!(
            connection_specs(&config).unwrap()["acme"].fingerprint,
            spec.fingerprint
        );

        let worker_dir = dir.join("worker");
        let conn = materialize(spec, &worker_dir).unwrap();
        assert_eq!(conn.db_pool_size, 3);
        match &conn.salesforce.auth {
            driftless_core::config::Credentials::Password { password, .. } => {
                assert_eq!(password.expose(), "s3cret${not-a-var")
            }
            other => panic!("auth {}", other.kind()),
        }
        assert_eq!(conn.sync.secondary_concurrency, 5);
        assert_eq!(
            std::fs::read(conn.salesforce.ca_cert.unwrap()).unwrap(),
            b"CA"
        );
        assert!(std::fs::read_to_string(conn.mappings)
            .unwrap()
            .contains("Account"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_names_from_the_coordinator_cannot_escape_the_directory() {
        let mut spec = ConnectionSpec {
            name: "acme".into(),
            ..Default::default()
        };
        spec.files.insert("../evil".into(), b"x".to_vec());
        let dir = std::env::temp_dir().join(format!("dl-spec-esc-{}", std::process::id()));
        let e = materialize(&spec, &dir).unwrap_err().to_string();
        assert!(e.contains("refusing file name"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
