use super::*;

const SPEC_EXAMPLE: &str = r#"[coordinator]
listen = "127.0.0.1:7400"              # admin messages, worker messages, /metrics, /status page
admin_token = "${DRIFTLESS_ADMIN_TOKEN}"
# worker_token = "${DRIFTLESS_WORKER_TOKEN}" # what workers present; defaults to admin_token
state_database_url = "postgres://postgres@127.0.0.1:5432/driftless"   # cluster state; `run` may omit it

[[connection]]
name = "acme"
database_url = "postgres://postgres@127.0.0.1:5432/acme"
schema = "salesforce"                  # default "salesforce"
db_pool_size = 4                       # the most connections driftless ever holds to this database
mappings = "mappings.json"             # Heroku Connect export format (section 4), path relative to this file

[connection.salesforce]
login_url = "http://127.0.0.1:8443"
auth = "password"                      # password | client_credentials | refresh_token
username = "admin@driftless.sim"
password = "${SF_PASSWORD}"
client_id = "driftless-sim"
client_secret = "${SF_CLIENT_SECRET}"
api_version = "62.0"
# ca_cert = "sim-ca.pem"               # an extra trusted root, for a TLS simulator or proxy

[connection.sync]
poll_interval_secs = 600               # default when a mapping does not set sf_polling_seconds
secondary_delay_secs = 300             # how long after a primary window a secondary poll re-reads it
secondary_concurrency = 2              # secondary polls in flight at once, per connection
bulk_threshold = 10000                 # more changes than this in a window: Bulk API, else REST query
"#;

const MINIMAL: &str = r#"[[connection]]
name = "acme"
database_url = "postgres://postgres@127.0.0.1:5432/acme"
mappings = "m.json"

[connection.salesforce]
auth = "client_credentials"
client_id = "id"
client_secret = "secret"
"#;

fn env() -> HashMap<String, String> {
    [
        ("DRIFTLESS_ADMIN_TOKEN", "admin-tok"),
        ("SF_PASSWORD", "driftless"),
        ("SF_CLIENT_SECRET", "driftless-sim-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/driftless/driftless.toml"), env())
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn spec_example_loads() {
    let c = parse(SPEC_EXAMPLE).unwrap();
    assert_eq!(c.coordinator.listen.to_string(), "127.0.0.1:7400");
    assert_eq!(
        c.coordinator.admin_token.as_ref().unwrap().expose(),
        "admin-tok"
    );
    assert_eq!(
        c.coordinator.effective_worker_token().unwrap().expose(),
        "admin-tok"
    );
    let acme = c.connection("acme").unwrap();
    assert_eq!(acme.schema.as_str(), "salesforce");
    assert_eq!(acme.db_pool_size, 4);
    assert_eq!(acme.mappings, Path::new("/etc/driftless/mappings.json"));
    assert_eq!(acme.salesforce.login_url, "http://127.0.0.1:8443");
    assert_eq!(acme.salesforce.api_version, "62.0");
    match &acme.salesforce.auth {
        Credentials::Password {
            username,
            password,
            client_secret,
            ..
        } => {
            assert_eq!(username, "admin@driftless.sim");
            assert_eq!(password.expose(), "driftless");
            assert_eq!(client_secret.expose(), "driftless-sim-secret");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(acme.sync, SyncConfig::default());
}

#[test]
fn defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.coordinator.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.coordinator.admin_token.unwrap().expose(), "admin-tok");
    let acme = &c.connections[0];
    assert_eq!(acme.schema.as_str(), "salesforce");
    assert_eq!(acme.db_pool_size, 4);
    assert_eq!(acme.salesforce.login_url, DEFAULT_LOGIN_URL);
    assert_eq!(acme.salesforce.api_version, "62.0");
    let s = &acme.sync;
    assert_eq!(
        (
            s.poll_interval_secs,
            s.secondary_delay_secs,
            s.secondary_concurrency,
            s.bulk_threshold
        ),
        (600, 300, 2, 10000)
    );
    assert!(s.secondary_enabled);
    assert!(!s.use_latest_date_covered, "low latency by default");
    assert_eq!(s.secondary_max_hold_secs, 1_800);
    assert_eq!(s.poll_margin_secs, 5);
    assert_eq!(s.batch_rows, None, "left to the engine unless set");
    assert_eq!(acme.salesforce.request_timeout_secs, 120);
}

#[test]
fn request_timeout_and_batch_rows() {
    let text = MINIMAL.replace(
        "client_secret = \"secret\"\n",
        "client_secret = \"secret\"\nrequest_timeout_secs = 7\n",
    ) + "\n[connection.sync]\nbatch_rows = 2500\n";
    let c = parse(&text).unwrap();
    assert_eq!(c.connections[0].salesforce.request_timeout_secs, 7);
    assert_eq!(c.connections[0].sync.batch_rows, Some(2500));

    let e = err(&(MINIMAL.to_owned() + "\n[connection.sync]\nbatch_rows = 0\n"));
    assert_eq!(
        e,
        "/etc/driftless/driftless.toml:12:14: connection.sync.batch_rows: expected a positive integer, got 0"
    );
    let e = err(&MINIMAL.replace(
        "client_secret = \"secret\"\n",
        "client_secret = \"secret\"\nrequest_timeout_secs = -3\n",
    ));
    assert_eq!(
        e,
        "/etc/driftless/driftless.toml:10:24: connection.salesforce.request_timeout_secs: expected a positive integer, got -3"
    );
    // Near misses of the new keys are still unknown keys, not silently ignored.
    let e = err(&(MINIMAL.to_owned() + "\n[connection.sync]\nbatch_row = 10\n"));
    assert!(
        e.contains("connection.sync.batch_row: unknown field `batch_row`"),
        "{e}"
    );
    let e = err(&MINIMAL.replace(
        "client_secret = \"secret\"\n",
        "client_secret = \"secret\"\nrequest_timeout = 7\n",
    ));
    assert!(
        e.contains("connection.salesforce.request_timeout: unknown field `request_timeout`"),
        "{e}"
    );
}

#[test]
fn extra_sync_keys() {
    let text =
        format!("{MINIMAL}\n[connection.sync]\nsecondary_enabled = false\npoll_margin_secs = 0\nuse_latest_date_covered = false\n");
    let c = parse(&text).unwrap();
    assert!(!c.connections[0].sync.secondary_enabled);
    assert!(!c.connections[0].sync.use_latest_date_covered);
    assert_eq!(c.connections[0].sync.poll_margin_secs, 0);
}

#[test]
fn secrets_never_print() {
    let c = parse(SPEC_EXAMPLE).unwrap();
    let dump = format!("{c:?}");
    for secret in ["admin-tok", "driftless-sim-secret", "postgres://"] {
        assert!(!dump.contains(secret), "{secret} leaked: {dump}");
    }
    assert!(!dump.contains("\"driftless\""));
}

#[test]
fn env_vars_expand_anywhere_in_a_string() {
    let text = MINIMAL.replace("/acme\"", "/${SF_PASSWORD}_db\"");
    let c = parse(&text).unwrap();
    assert_eq!(
        c.connections[0].database_url.expose(),
        "postgres://postgres@127.0.0.1:5432/driftless_db"
    );
    assert_eq!(
        raw::with_env(env(), || raw::expand("$5 ${SF_PASSWORD}$")),
        Ok("$5 driftless$".into())
    );
}

#[test]
fn missing_env_var_names_file_line_and_key() {
    let text = SPEC_EXAMPLE.replace("${SF_PASSWORD}", "${SF_PASSWORD_NOPE}");
    assert_eq!(
        err(&text),
        "/etc/driftless/driftless.toml:18:12: connection.salesforce.password: environment variable SF_PASSWORD_NOPE is not set"
    );
    let text = MINIMAL.replace("\"secret\"", "\"${oops\"");
    assert_eq!(
        err(&text),
        "/etc/driftless/driftless.toml:9:17: connection.salesforce.client_secret: unterminated `${` (expected `${NAME}`)"
    );
}

#[test]
fn unknown_keys_are_errors() {
    let text = MINIMAL.replace("client_id = \"id\"", "client_id = \"id\"\nusernme = \"x\"");
    let e = err(&text);
    assert!(
        e.starts_with("/etc/driftless/driftless.toml:9:1: connection.salesforce.usernme: unknown field `usernme`, expected one of"),
        "{e}"
    );
    let e = err(&format!("{MINIMAL}\n[connection.sync]\npoll_seconds = 5\n"));
    assert!(
        e.starts_with("/etc/driftless/driftless.toml:12:1: connection.sync.poll_seconds: unknown field `poll_seconds`"),
        "{e}"
    );
    let e = err(&format!("[coordinatr]\nlisten = \"x\"\n{MINIMAL}"));
    assert!(e.starts_with("/etc/driftless/driftless.toml:1:"), "{e}");
    assert!(e.contains("coordinatr: unknown field `coordinatr`"), "{e}");
}

#[test]
fn wrong_types_name_the_key() {
    let e = err(&format!(
        "{MINIMAL}\n[connection.sync]\nbulk_threshold = \"many\"\n"
    ));
    assert_eq!(
        e,
        "/etc/driftless/driftless.toml:12:18: connection.sync.bulk_threshold: invalid type: string \"many\", expected i64"
    );
    let e = err(&format!(
        "{MINIMAL}\n[connection.sync]\nsecondary_concurrency = 0\n"
    ));
    assert_eq!(
        e,
        "/etc/driftless/driftless.toml:12:25: connection.sync.secondary_concurrency: expected a positive integer, got 0"
    );
    let e = err(&MINIMAL.replace(
        "mappings = \"m.json\"",
        "mappings = \"m.json\"\ndb_pool_size = -1",
    ));
    assert_eq!(
        e,
        "/etc/driftless/driftless.toml:5:16: connection.db_pool_size: expected a positive integer, got -1"
    );
}

#[test]
fn syntax_errors_give_the_line() {
    let e = err("[coordinator]\nlisten = \n");
    assert!(e.starts_with("/etc/driftless/driftless.toml:2:"), "{e}");
}

#[test]
fn missing_required_keys() {
    let e = err(&MINIMAL.replace("mappings = \"m.json\"\n", ""));
    assert!(
        e.contains(": connection.mappings: missing field `mappings`"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("client_secret = \"secret\"\n", ""));
    assert_eq!(
        e,
        "/etc/driftless/driftless.toml:6:1: connection.salesforce.client_secret: missing: auth = \"client_credentials\" needs client_id, client_secret"
    );
}

#[test]
fn auth_kinds_and_their_keys() {
    let e = err(&MINIMAL.replace("\"client_credentials\"", "\"saml\""));
    assert_eq!(
        e,
        "/etc/driftless/driftless.toml:7:8: connection.salesforce.auth: expected password, client_credentials, refresh_token or jwt, got \"saml\""
    );
    let e = err(&MINIMAL.replace("\"client_credentials\"", "\"password\""));
    assert!(
        e.ends_with("connection.salesforce.username: missing: auth = \"password\" needs username, password, client_id, client_secret"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("client_id = \"id\"", "client_id = \"id\"\npassword = \"p\""));
    assert!(
        e.ends_with(":9:12: connection.salesforce.password: not used by auth = \"client_credentials\" (it takes client_id, client_secret)"),
        "{e}"
    );

    let refresh = MINIMAL
        .replace("\"client_credentials\"", "\"refresh_token\"")
        .replace("client_secret = \"secret\"", "refresh_token = \"rt\"");
    match parse(&refresh).unwrap().connections[0]
        .salesforce
        .auth
        .clone()
    {
        Credentials::RefreshToken {
            client_secret,
            refresh_token,
            ..
        } => {
            assert!(client_secret.is_none());
            assert_eq!(refresh_token.expose(), "rt");
        }
        other => panic!("{other:?}"),
    }

    let jwt = MINIMAL
        .replace("\"client_credentials\"", "\"jwt\"")
        .replace(
            "client_secret = \"secret\"",
            "username = \"u\"\nprivate_key_file = \"keys/k.pem\"",
        );
    match &parse(&jwt).unwrap().connections[0].salesforce.auth {
        Credentials::JwtBearer {
            private_key: PrivateKey::File(p),
            ..
        } => assert_eq!(p, Path::new("/etc/driftless/keys/k.pem")),
        other => panic!("{other:?}"),
    }
    let e = err(&jwt.replace("private_key_file = \"keys/k.pem\"\n", ""));
    assert!(
        e.ends_with("connection.salesforce.private_key: missing: auth = \"jwt\" needs private_key or private_key_file"),
        "{e}"
    );
}

#[test]
fn connection_names_are_unique() {
    let e = err(&format!("{MINIMAL}\n{MINIMAL}"));
    assert_eq!(
        e,
        "/etc/driftless/driftless.toml:12:8: connection.name: expected a unique connection name, `acme` is used twice"
    );
}

#[test]
fn listen_must_parse() {
    let e = err(&format!("[coordinator]\nlisten = \"localhost\"\n{MINIMAL}"));
    assert_eq!(
        e,
        "/etc/driftless/driftless.toml:2:10: coordinator.listen: expected an address such as 127.0.0.1:7400, got \"localhost\""
    );
}

#[test]
fn schema_and_version_are_checked() {
    let e = err(&MINIMAL.replace(
        "mappings = \"m.json\"",
        "mappings = \"m.json\"\nschema = \"sales force\"",
    ));
    assert!(
        e.contains(":5:10: connection.schema: expected a schema name: invalid name `sales force`"),
        "{e}"
    );
    let e = err(&MINIMAL.replace(
        "client_id = \"id\"",
        "client_id = \"id\"\napi_version = \"v62\"",
    ));
    assert!(
        e.ends_with(
            "connection.salesforce.api_version: expected a version such as \"62.0\", got \"v62\""
        ),
        "{e}"
    );
}

#[test]
fn unreadable_file() {
    let e = Config::load(Path::new("/nonexistent/driftless.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/driftless.toml: cannot read:"),
        "{e}"
    );
}

#[test]
fn login_url_and_key_choice() {
    let e = err(&MINIMAL.replace(
        "auth = \"client_credentials\"",
        "auth = \"client_credentials\"\nlogin_url = \"login.salesforce.com\"",
    ));
    assert!(
        e.ends_with(":8:13: connection.salesforce.login_url: expected an http:// or https:// URL, got \"login.salesforce.com\""),
        "{e}"
    );
    let both = MINIMAL
        .replace("\"client_credentials\"", "\"jwt\"")
        .replace(
            "client_secret = \"secret\"",
            "username = \"u\"\nprivate_key = \"PEM\"\nprivate_key_file = \"k.pem\"",
        );
    let e = err(&both);
    assert!(
        e.ends_with(":11:20: connection.salesforce.private_key_file: expected one of private_key or private_key_file, not both"),
        "{e}"
    );
}

#[test]
fn writeback_retention_days() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.connections[0].sync.writeback_retention_days, 31);
    let c = parse(&(MINIMAL.to_owned() + "\n[connection.sync]\nwriteback_retention_days = 7\n"))
        .unwrap();
    assert_eq!(c.connections[0].sync.writeback_retention_days, 7);
    let e = err(&(MINIMAL.to_owned() + "\n[connection.sync]\nwriteback_retention_days = 0\n"));
    assert!(
        e.ends_with("connection.sync.writeback_retention_days: expected a positive integer, got 0"),
        "{e}"
    );
}

#[test]
fn write_mode_and_bulk_write_threshold() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.connections[0].sync.write_mode, WriteMode::Merged);
    assert_eq!(c.connections[0].sync.bulk_write_threshold, 2_000);
    let c = parse(
        &(MINIMAL.to_owned()
            + "\n[connection.sync]\nwrite_mode = \"ordered\"\nbulk_write_threshold = 0\n"),
    )
    .unwrap();
    assert_eq!(c.connections[0].sync.write_mode, WriteMode::Ordered);
    assert_eq!(c.connections[0].sync.bulk_write_threshold, 0);
    let e = err(&(MINIMAL.to_owned() + "\n[connection.sync]\nwrite_mode = \"fast\"\n"));
    assert!(
        e.contains("connection.sync.write_mode: expected \"merged\" or \"ordered\", got \"fast\""),
        "{e}"
    );
    let e = err(&(MINIMAL.to_owned() + "\n[connection.sync]\nbulk_write_threshold = -1\n"));
    assert!(e.contains("connection.sync.bulk_write_threshold"), "{e}");
}

#[test]
fn pubsub_endpoint_defaults_to_salesforce_and_must_be_host_and_port() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.connections[0].salesforce.pubsub_endpoint,
        "api.pubsub.salesforce.com:7443"
    );
    let c = parse(&MINIMAL.replace(
        "client_secret = \"secret\"\n",
        "client_secret = \"secret\"\npubsub_endpoint = \"127.0.0.1:7443\"\n",
    ))
    .unwrap();
    assert_eq!(
        c.connections[0].salesforce.pubsub_endpoint,
        "127.0.0.1:7443"
    );
    for bad in [
        "https://api.pubsub.salesforce.com:7443",
        "api.pubsub.salesforce.com",
        ":7443",
    ] {
        let e = err(&MINIMAL.replace(
            "client_secret = \"secret\"\n",
            &format!("client_secret = \"secret\"\npubsub_endpoint = \"{bad}\"\n"),
        ));
        assert!(
            e.contains("connection.salesforce.pubsub_endpoint: expected host:port"),
            "{bad}: {e}"
        );
    }
}
