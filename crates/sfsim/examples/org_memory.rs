//! Prints the resident memory of an org with a generated dataset, e.g.
//! `cargo run --release -p sfsim --example org_memory -- Account=1000000`.

fn main() {
    let spec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Account=1000000".into());
    let dataset = sfsim::config::parse_dataset(&spec).expect("dataset spec");
    let before = rss_kb("VmRSS");
    let t = std::time::Instant::now();
    let org = sfsim::store::Org::new(sfsim::schema::Schema::standard());
    sfsim::dataset::generate_all(&org, &dataset, 1).expect("generate");
    let elapsed = t.elapsed();
    let after = rss_kb("VmRSS");
    let total: usize = dataset.iter().map(|(_, n)| *n as usize).sum();
    println!(
        "dataset {spec}: generated {total} records in {:.1}s; resident {:.0} MB (peak {:.0} MB, {:.0} bytes/record)",
        elapsed.as_secs_f64(),
        after as f64 / 1024.0,
        rss_kb("VmHWM") as f64 / 1024.0,
        (after - before) as f64 * 1024.0 / total.max(1) as f64
    );
    drop(org);
}

fn rss_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
