//! Serving throughput of Bulk API 2.0 CSV results: starts a simulator with a million Accounts,
//! runs one query job and downloads every page, then prints rows/s and peak RSS.
//!
//! `cargo run --release -p sfsim --example bulk_serve [-- ROWS [MAX_RECORDS]]`

use std::time::{Duration, Instant};

const V2: &str = "/services/data/v62.0/jobs/query";

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let max_records: Option<u64> = args.next().map(|s| s.parse()).transpose()?;

    let t = Instant::now();
    let sim = sfsim::start(sfsim::SimConfig {
        dataset: vec![("Account".into(), rows)],
        ..Default::default()
    })
    .await?;
    println!(
        "dataset of {rows} Accounts ready in {:.1}s, peak RSS {} MiB",
        t.elapsed().as_secs_f64(),
        peak_rss_kib() / 1024
    );
    let token = sim.state.sessions.issue();
    let base = sim.base_url().to_string();
    let http = reqwest::Client::new();
    let auth = format!("Bearer {token}");

    let fields = {
        let org = &sim.state.org;
        let account = org.object_index("Account")?;
        org.schema.objects[account]
            .fields
            .iter()
            .map(|f| f.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let query = format!("SELECT {fields} FROM Account");
    let t = Instant::now();
    let job: serde_json::Value = http
        .post(format!("{base}{V2}"))
        .header("Authorization", &auth)
        .json(&serde_json::json!({"operation": "queryAll", "query": query}))
        .send()
        .await?
        .json()
        .await?;
    let id = job["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no job id: {job}"))?
        .to_string();
    loop {
        let info: serde_json::Value = http
            .get(format!("{base}{V2}/{id}"))
            .header("Authorization", &auth)
            .send()
            .await?
            .json()
            .await?;
        match info["state"].as_str() {
            Some("JobComplete") => break,
            Some("UploadComplete" | "InProgress") => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            _ => anyhow::bail!("job ended badly: {info}"),
        }
    }
    println!("job complete in {:.2}s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let (mut served, mut bytes, mut pages) = (0u64, 0u64, 0u64);
    let mut locator: Option<String> = None;
    loop {
        let mut url = format!("{base}{V2}/{id}/results");
        let mut params = Vec::new();
        if let Some(m) = max_records {
            params.push(format!("maxRecords={m}"));
        }
        if let Some(l) = &locator {
            params.push(format!("locator={l}"));
        }
        if !params.is_empty() {
            url.push('?');
            url.push_str(&params.join("&"));
        }
        let mut resp = http.get(url).header("Authorization", &auth).send().await?;
        anyhow::ensure!(resp.status().is_success(), "results: {}", resp.status());
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let n: u64 = header("Sforce-NumberOfRecords")
            .ok_or_else(|| anyhow::anyhow!("no count"))?
            .parse()?;
        let next = header("Sforce-Locator").ok_or_else(|| anyhow::anyhow!("no locator"))?;
        while let Some(chunk) = resp.chunk().await? {
            bytes += chunk.len() as u64;
        }
        served += n;
        pages += 1;
        if next == "null" {
            break;
        }
        locator = Some(next);
    }
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(served == rows, "served {served} of {rows} rows");
    println!(
        "served {served} rows ({} columns, {:.0} MiB) in {pages} pages in {secs:.2}s: {:.0} rows/s, {:.0} MiB/s; peak RSS {} MiB",
        fields.split(", ").count(),
        bytes as f64 / 1048576.0,
        served as f64 / secs,
        bytes as f64 / 1048576.0 / secs,
        peak_rss_kib() / 1024
    );
    sim.stop().await;
    Ok(())
}
