//! Times the SOQL engine over a generated table, e.g.
//! `cargo run --release -p sfsim --example soql_bench -- 1000000`.

use sfsim::soql;
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let org = sfsim::store::Org::new(sfsim::schema::Schema::standard());
    let t = Instant::now();
    sfsim::dataset::generate_all(&org, &[("Account".to_string(), n)], 1).expect("generate");
    println!(
        "generated {n} Accounts in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let cases = [
        "SELECT Id, Name, SystemModstamp FROM Account",
        "SELECT Id, Name FROM Account WHERE SystemModstamp >= 2025-03-01T00:00:00.000+00:00 AND SystemModstamp < 2025-03-31T00:00:00.000+00:00",
        "SELECT Id FROM Account WHERE SystemModstamp >= 2030-01-01T00:00:00.000000Z ORDER BY SystemModstamp ASC",
        "SELECT Id, Name FROM Account WHERE SystemModstamp >= 2025-01-01T00:00:00Z ORDER BY SystemModstamp ASC, Id ASC",
        "SELECT Id, Name FROM Account WHERE Name LIKE '%acme%' OR Industry IN ('Banking', 'Retail')",
        "SELECT Id, Name FROM Account WHERE Name LIKE '%acme%'",
        "SELECT Id, Name FROM Account WHERE Industry IN ('Banking', 'Retail')",
        "SELECT Id, Name FROM Account ORDER BY Name",
        "SELECT Id, Name FROM Account ORDER BY Name, Id DESC LIMIT 2000",
        "SELECT Id FROM Account ORDER BY Id ASC",
    ];
    for q in cases {
        let plan = soql::plan(&org, q).expect("plan");
        let t = Instant::now();
        let rows = plan.execute(&org, true);
        let exec = t.elapsed();
        let t = Instant::now();
        let mut cells = 0usize;
        for r in &rows {
            cells += plan.row_values(&org, r).len();
        }
        let values = t.elapsed();
        let t = Instant::now();
        org.read(|tables| {
            let mut refs = Vec::new();
            for r in &rows {
                plan.row_value_refs(tables, r, &mut refs);
                cells += refs.len();
            }
        });
        let refs = t.elapsed();
        println!(
            "{:>8} rows  execute {:>7.1} ms  row_values {:>7.1} ms  refs {:>6.1} ms  {q}",
            rows.len(),
            exec.as_secs_f64() * 1e3,
            values.as_secs_f64() * 1e3,
            refs.as_secs_f64() * 1e3
        );
    }
    let plan = soql::plan(&org, "SELECT Id FROM Account").expect("plan");
    let lo = sfsim::ids::make("001", n / 2);
    let hi = sfsim::ids::make("001", n / 2 + 100_000);
    let chunk = plan.with_id_range(Some(&lo), Some(&hi));
    let t = Instant::now();
    let rows = chunk.execute(&org, true);
    println!(
        "{:>8} rows  execute {:>7.1} ms  PK chunk",
        rows.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let c = soql::plan(
        &org,
        "SELECT COUNT() FROM Account WHERE SystemModstamp > 2025-06-01T00:00:00Z",
    )
    .unwrap()
    .count(&org, false);
    println!("{c:>8} count {:>7.1} ms", t.elapsed().as_secs_f64() * 1e3);
}
