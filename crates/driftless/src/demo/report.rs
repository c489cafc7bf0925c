//! The demo's closing table: what was loaded, synced and repaired, what it cost, and what verify
//! found, per mapping and in total.

use std::fmt::Write;

/// One mapping's figures over the whole demo.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappingFigures {
    pub object: String,
    pub loaded: i64,
    pub changes_synced: i64,
    pub drift_caught: i64,
    pub api_calls: i64,
    pub primary_bulk_jobs: i64,
    pub secondary_bulk_jobs: i64,
    /// Write-backs sent to Salesforce, when the mapping is read_write.
    pub write_backs: Option<i64>,
    pub differences: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub mappings: Vec<MappingFigures>,
    pub peak_connections: i64,
    pub db_pool_size: u32,
}

impl Figures {
    pub fn differences(&self) -> i64 {
        self.mappings.iter().map(|m| m.differences).sum()
    }
}

/// Row labels, in order; tests find each of them in the output.
pub const ROWS: [&str; 9] = [
    "records loaded",
    "changes synced",
    "drift caught by secondary polls",
    "API calls",
    "bulk jobs, primary",
    "bulk jobs, secondary",
    "write-backs",
    "peak Postgres connections",
    "verify: differences",
];

type Column = fn(&MappingFigures) -> Option<i64>;

pub fn render(f: &Figures) -> String {
    let per_mapping: [(&str, Column); 7] = [
        (ROWS[0], |m| Some(m.loaded)),
        (ROWS[1], |m| Some(m.changes_synced)),
        (ROWS[2], |m| Some(m.drift_caught)),
        (ROWS[3], |m| Some(m.api_calls)),
        (ROWS[4], |m| Some(m.primary_bulk_jobs)),
        (ROWS[5], |m| Some(m.secondary_bulk_jobs)),
        (ROWS[6], |m| m.write_backs),
    ];
    let mut header = vec![String::new()];
    header.extend(f.mappings.iter().map(|m| m.object.clone()));
    header.push("total".into());
    let mut table: Vec<Vec<String>> = vec![header];
    for (label, get) in per_mapping {
        let values: Vec<Option<i64>> = f.mappings.iter().map(get).collect();
        if label == ROWS[6] && values.iter().all(Option::is_none) {
            continue;
        }
        let mut row = vec![label.to_owned()];
        row.extend(values.iter().map(|v| v.map_or("-".into(), group)));
        row.push(group(values.iter().flatten().sum()));
        table.push(row);
    }
    let mut pool = vec![ROWS[7].to_owned()];
    pool.extend(f.mappings.iter().map(|_| String::new()));
    pool.push(format!(
        "{} of {} (db_pool_size)",
        f.peak_connections, f.db_pool_size
    ));
    table.push(pool);
    let mut diffs = vec![ROWS[8].to_owned()];
    diffs.extend(f.mappings.iter().map(|m| group(m.differences)));
    diffs.push(group(f.differences()));
    table.push(diffs);
    align(&table)
}

/// Left-aligned labels, right-aligned figures, widths from the content.
fn align(table: &[Vec<String>]) -> String {
    let cols = table.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            table
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in table {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                let _ = write!(line, "{cell:<w$}", w = widths[0]);
            } else {
                let _ = write!(line, "  {cell:>w$}", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// 12345 as "12,345": the figures are read by people.
pub fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    // The first group takes what is left over from whole groups of three.
    let first = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    out.push_str(&digits[..first.min(digits.len())]);
    for group in digits.as_bytes()[first.min(digits.len())..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).unwrap_or_default());
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(write_backs: Option<i64>) -> Figures {
        Figures {
            mappings: vec![
                MappingFigures {
                    object: "Account".into(),
                    loaded: 20_000,
                    changes_synced: 1234,
                    drift_caught: 17,
                    api_calls: 300,
                    primary_bulk_jobs: 3,
                    secondary_bulk_jobs: 2,
                    write_backs,
                    differences: 0,
                },
                MappingFigures {
                    object: "Contact".into(),
                    loaded: 50_000,
                    differences: 2,
                    ..Default::default()
                },
            ],
            peak_connections: 3,
            db_pool_size: 4,
        }
    }

    #[test]
    fn every_row_with_totals_and_aligned_columns() {
        let text = render(&figures(None));
        for label in ROWS.iter().filter(|l| **l != "write-backs") {
            assert!(text.contains(label), "{label} missing:\n{text}");
        }
        assert!(
            !text.contains("write-backs"),
            "no read_write mapping: no row"
        );
        assert!(text.contains("70,000"), "{text}");
        assert!(text.contains("3 of 4 (db_pool_size)"), "{text}");
        let loaded = text
            .lines()
            .find(|l| l.starts_with("records loaded"))
            .unwrap();
        let header = text.lines().next().unwrap();
        // Right-aligned: each figure ends where its header does.
        let end = |line: &str, word: &str| line.find(word).unwrap() + word.len();
        assert_eq!(end(header, "Account"), end(loaded, "20,000"));
        assert_eq!(end(header, "total"), end(loaded, "70,000"));
        assert_eq!(figures(None).differences(), 2);
    }

    #[test]
    fn write_backs_show_when_a_mapping_writes() {
        let text = render(&figures(Some(42)));
        let row = text.lines().find(|l| l.starts_with("write-backs")).unwrap();
        assert!(row.contains("42") && row.contains('-'), "{row}");
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(-1000), "-1,000");
    }
}
