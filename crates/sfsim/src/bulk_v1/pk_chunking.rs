//! PK chunking: `Sforce-Enable-PKChunking` on job create splits each submitted query batch into
//! one batch per Id range of `chunkSize` records.
//!
//! Boundaries are taken over every Id of the object, deleted records included, as Salesforce
//! counts them, so a chunk can return fewer rows than its size.

use crate::ids;
use crate::store::{record_id, Org};

pub const DEFAULT_CHUNK_SIZE: usize = 100_000;
pub const MAX_CHUNK_SIZE: usize = 250_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkChunking {
    pub chunk_size: usize,
    pub start_row: Option<String>,
    /// Accepted for share/history objects; the simulator's objects chunk on their own Ids.
    pub parent: Option<String>,
}

/// Parses the header value: `TRUE`, `true; chunkSize=100000`, `chunkSize=50000; startRow=…`,
/// `parent=Account`; tokens are `;`-separated, trimmed and case-insensitive. `Ok(None)` for
/// `false`.
pub fn parse_header(value: &str) -> Result<Option<PkChunking>, String> {
    let mut pk = PkChunking {
        chunk_size: DEFAULT_CHUNK_SIZE,
        start_row: None,
        parent: None,
    };
    for token in value.split(';').map(str::trim).filter(|t| !t.is_empty()) {
        match token.split_once('=') {
            None if token.eq_ignore_ascii_case("true") => {}
            None if token.eq_ignore_ascii_case("false") => return Ok(None),
            Some((k, v)) => {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("chunkSize") {
                    let n: usize = v.parse().map_err(|_| format!("Invalid chunk size: {v}"))?;
                    if n == 0 || n > MAX_CHUNK_SIZE {
                        return Err(format!(
                            "Chunk size {n} is outside the allowed range 1-{MAX_CHUNK_SIZE}"
                        ));
                    }
                    pk.chunk_size = n;
                } else if k.eq_ignore_ascii_case("startRow") {
                    pk.start_row = Some(v.to_string());
                } else if k.eq_ignore_ascii_case("parent") {
                    pk.parent = Some(v.to_string());
                } else {
                    return Err(format!("Unknown PK chunking option: {k}"));
                }
            }
            None => return Err(format!("Unknown PK chunking option: {token}")),
        }
    }
    Ok(Some(pk))
}

/// The `[lo, hi)` Id ranges (15-character Ids) covering the object from `startRow` on. The last
/// range ends just past the newest Id, so every chunk has both bounds and records created after
/// chunking stay out, as they would from a snapshot.
pub fn ranges(org: &Org, object: usize, pk: &PkChunking) -> Vec<(String, String)> {
    let start = pk
        .start_row
        .as_deref()
        .map(|s| s.get(..15).unwrap_or(s).to_string());
    let (bounds, last) = org.read(|tables| {
        let mut bounds = Vec::new();
        let mut last = None;
        // Records left before the current chunk is full; zero opens a new chunk.
        let mut room = 0usize;
        for rec in tables[object].iter() {
            let id = &record_id(rec)[..15];
            if start.as_deref().is_some_and(|s| id < s) {
                continue;
            }
            if room == 0 {
                bounds.push(id.to_string());
                room = pk.chunk_size;
            }
            room -= 1;
            last = Some(id.to_string());
        }
        (bounds, last)
    });
    let Some(last) = last else { return Vec::new() };
    let end = past(&last);
    let mut out = Vec::with_capacity(bounds.len());
    for (i, lo) in bounds.iter().enumerate() {
        let hi = bounds.get(i + 1).cloned().unwrap_or_else(|| end.clone());
        out.push((lo.clone(), hi));
    }
    out
}

/// The Id right after `id15` in base-62 order (the next sequence number for minted Ids).
fn past(id15: &str) -> String {
    match ids::parse(id15) {
        Some((prefix, seq)) => ids::make(prefix, seq + 1)[..15].to_string(),
        None => {
            // Not minted here: append the smallest digit, which sorts right after it.
            format!("{id15}0")
        }
    }
}

/// The query text of a chunk batch: the submitted query with the Id range added to its WHERE.
pub fn chunk_query(soql: &str, lo: &str, hi: &str) -> String {
    let soql = soql.trim_end();
    let has_where = soql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .any(|w| w.eq_ignore_ascii_case("where"));
    let joiner = if has_where { "AND" } else { "WHERE" };
    format!("{soql} {joiner} Id >= '{lo}' AND Id < '{hi}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms_parse() {
        assert_eq!(
            parse_header("TRUE").unwrap().unwrap().chunk_size,
            DEFAULT_CHUNK_SIZE
        );
        assert_eq!(
            parse_header("true; chunkSize=100000")
                .unwrap()
                .unwrap()
                .chunk_size,
            100_000
        );
        let pk = parse_header(" chunkSize=50000; startRow=00130000000xEftMGH ;")
            .unwrap()
            .unwrap();
        assert_eq!(pk.chunk_size, 50_000);
        assert_eq!(pk.start_row.as_deref(), Some("00130000000xEftMGH"));
        assert_eq!(
            parse_header("parent=Account")
                .unwrap()
                .unwrap()
                .parent
                .as_deref(),
            Some("Account")
        );
        assert_eq!(parse_header("CHUNKSIZE=7;").unwrap().unwrap().chunk_size, 7);
        assert!(parse_header("chunkSize=250001").is_err());
        assert!(parse_header("false").unwrap().is_none());
    }

    #[test]
    fn chunk_queries_extend_the_where_clause() {
        assert_eq!(
            chunk_query("SELECT Id FROM Account", "a", "b"),
            "SELECT Id FROM Account WHERE Id >= 'a' AND Id < 'b'"
        );
        assert_eq!(
            chunk_query("SELECT Id FROM Account WHERE Name != null", "a", "b"),
            "SELECT Id FROM Account WHERE Name != null AND Id >= 'a' AND Id < 'b'"
        );
    }
}
