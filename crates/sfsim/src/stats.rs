//! What the simulator has served, for `/_sim/stats` and API accounting.

use parking_lot::Mutex;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Stats {
    pub api_calls: AtomicU64,
    by_route: Mutex<BTreeMap<String, u64>>,
    pub bulk_v1_jobs: AtomicU64,
    pub bulk_v1_batches: AtomicU64,
    pub bulk_v2_jobs: AtomicU64,
    pub rest_queries: AtomicU64,
    pub records_served: AtomicU64,
    pub bytes_served: AtomicU64,
}

impl Stats {
    /// Counts one API call against the daily allowance; returns the calls made so far, this one
    /// included.
    pub fn count_call(&self, route: &str) -> u64 {
        *self.by_route.lock().entry(route.to_string()).or_default() += 1;
        self.api_calls.fetch_add(1, Relaxed) + 1
    }

    pub fn used(&self) -> u64 {
        self.api_calls.load(Relaxed)
    }

    pub fn add_records(&self, n: u64) {
        self.records_served.fetch_add(n, Relaxed);
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes_served.fetch_add(n, Relaxed);
    }

    pub fn to_json(&self, open_transactions: usize) -> serde_json::Value {
        json!({
            "api_calls": {"total": self.api_calls.load(Relaxed), "by_route": *self.by_route.lock()},
            "bulk_v1": {"jobs": self.bulk_v1_jobs.load(Relaxed), "batches": self.bulk_v1_batches.load(Relaxed)},
            "bulk_v2": {"jobs": self.bulk_v2_jobs.load(Relaxed)},
            "rest_queries": self.rest_queries.load(Relaxed),
            "records_served": self.records_served.load(Relaxed),
            "bytes_served": self.bytes_served.load(Relaxed),
            "open_transactions": open_transactions,
        })
    }
}

/// A route label that groups requests by what they do, not by the ids inside their paths:
/// `GET /services/data/v62.0/sobjects/Account/001…` → `GET sobjects/{object}/{id}`.
pub fn route_label(method: &str, path: &str) -> String {
    let rest = if let Some(r) = path.strip_prefix("/services/data/") {
        // Drop the version segment.
        r.split_once('/').map(|(_, tail)| tail).unwrap_or("")
    } else if let Some(r) = path.strip_prefix("/services/async/") {
        return format!(
            "{method} async/{}",
            generalise(r.split_once('/').map(|(_, t)| t).unwrap_or(""))
        );
    } else {
        path.trim_start_matches('/')
    };
    format!("{method} {}", generalise(rest))
}

fn generalise(path: &str) -> String {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let prev = if i > 0 { parts[i - 1] } else { "" };
        let label = if crate::ids::normalize(p).is_some() && p.len() >= 15 {
            "{id}"
        } else if prev == "sobjects" {
            "{object}"
        } else if prev == "query" || prev == "queryAll" {
            "{locator}"
        } else if prev == "result" {
            "{id}"
        } else {
            p
        };
        out.push(label);
    }
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_group_by_shape() {
        assert_eq!(
            route_label(
                "GET",
                &format!(
                    "/services/data/v62.0/sobjects/Account/{}",
                    crate::ids::make("001", 1)
                )
            ),
            "GET sobjects/{object}/{id}"
        );
        assert_eq!(
            route_label("GET", "/services/data/v62.0/query"),
            "GET query"
        );
        assert_eq!(
            route_label("GET", "/services/data/v62.0/query/0r85g0000000001AAA-2000"),
            "GET query/{locator}"
        );
        assert_eq!(
            route_label("POST", "/services/async/62.0/job"),
            "POST async/job"
        );
    }
}
