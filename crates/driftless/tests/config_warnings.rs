//! A misspelled key inside a mapping is not silently ignored: the engine names it, with the key
//! it most likely meant, and still starts (Heroku Connect's own extra keys stay silent).

use std::process::Command;

use driftless_testkit::{ConfigBuilder, SimThread, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_driftless");

#[tokio::test]
async fn misspelled_mapping_keys_are_warned_about_with_the_closest_known_key() {
    let sim = SimThread::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), 20)],
        ..Default::default()
    })
    .await;
    let db = TestDb::create().await;
    let mappings = r#"{"mappings":[{"object_name":"Account","config":{"access":"read_only",
        "sf_poling_seconds":60,"applied_at":"2023-02-14T01:40:34Z","revision":3,
        "fields":{"Id":{},"Name":{},"SystemModstamp":{},"IsDeleted":{}},
        "indexes":{"Id":{"unique":true},"SystemModstamp":{"unique":false}}}}],"version":1}"#;
    let config = ConfigBuilder::new().write(&db, &sim.info, mappings);
    let path = config.connections[0]
        .mappings
        .with_file_name("driftless.toml");
    let out = Command::new(BIN)
        .args(["verify", "--config"])
        .arg(&path)
        .env("SF_PASSWORD", &sim.info.password)
        .env("RUST_LOG", "warn")
        .output()
        .expect("driftless verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "mapping Account: unknown key `config.sf_poling_seconds`, ignored (did you mean `config.sf_polling_seconds`?)"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("applied_at") && !stderr.contains("revision"),
        "{stderr}"
    );
    sim.stop().await;
}
