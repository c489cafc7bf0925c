//! Bulk API 2.0 ingest through the client into an in-process simulator: N inserts of
//! `Invoice__c`, then N upserts of the same records by `External_Id__c`, one job each. Prints
//! records/s (create to last result matched) and API calls per 1,000 records, as the simulator
//! counted them.
//!
//! `cargo run --release -p salesforce --example bench_ingest [-- --records 100000]`

use std::time::Instant;

use salesforce::{
    Client, ClientConfig, Credentials, IngestCsv, IngestOperation, RowOutcome, Secret,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("--records N"))
        .unwrap_or(100_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let sim = sfsim::start(sfsim::SimConfig::default())
            .await
            .expect("simulator starts");
        let info = &sim.info;
        let client = Client::connect(ClientConfig::new(
            info.login_url.clone(),
            Credentials::Password {
                username: info.username.clone(),
                password: Secret::new(info.password.clone()),
                client_id: info.client_id.clone(),
                client_secret: Secret::new(info.client_secret.clone()),
            },
        ))
        .await
        .expect("login");
        println!(
            "{:<8} {:>9} {:>9} {:>12} {:>16}",
            "op", "records", "seconds", "records/s", "calls/1000 rec"
        );
        let upsert = IngestOperation::Upsert {
            external_id_field: "External_Id__c".into(),
        };
        for (label, op) in [("insert", IngestOperation::Insert), ("upsert", upsert)] {
            let mut csv = IngestCsv::new(&op, &["External_Id__c", "Name", "Amount__c", "Notes__c"]);
            for i in 0..n {
                let (ext, name, amount) = (format!("E-{i}"), format!("{label} {i}"), i.to_string());
                csv.push(&[
                    Some(&ext),
                    Some(&name),
                    Some(&amount),
                    Some("bench, \"row\""),
                ])
                .expect("row");
            }
            let calls = sim.state.stats.used();
            let started = Instant::now();
            let report = client
                .bulk_ingest("Invoice__c", &op, csv)
                .await
                .expect("job");
            let secs = started.elapsed().as_secs_f64();
            let calls = sim.state.stats.used() - calls;
            let ok = report
                .rows
                .iter()
                .filter(|r| matches!(r, RowOutcome::Success { .. }))
                .count();
            assert_eq!(ok, n, "every row succeeds: {:?}", report.job);
            println!(
                "{label:<8} {n:>9} {secs:>9.2} {:>12.0} {:>16.3}",
                n as f64 / secs,
                calls as f64 * 1000.0 / n as f64
            );
        }
    });
}
