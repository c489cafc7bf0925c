//! API usage accounting per connection: the org-wide count from `Sforce-Limit-Info`, the calls
//! this connection made, the figures from `/limits`, and the quota hold that keeps a connection
//! from hammering an org whose daily allowance is spent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;

/// `used/max` as Salesforce reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    pub max: u64,
}

impl Usage {
    pub fn fraction(&self) -> f64 {
        if self.max == 0 {
            1.0
        } else {
            self.used as f64 / self.max as f64
        }
    }
}

/// A `/limits` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Limit {
    #[serde(rename = "Max", deserialize_with = "int_or_string")]
    pub max: u64,
    #[serde(rename = "Remaining", deserialize_with = "int_or_string")]
    pub remaining: u64,
}

// Very old API versions return the numbers as strings.
fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        I(u64),
        S(String),
    }
    match N::deserialize(d)? {
        N::I(i) => Ok(i),
        N::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// What a caller can see about a connection's API usage.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageSnapshot {
    /// Org-wide daily usage from the last `Sforce-Limit-Info` header seen.
    pub api_usage: Option<Usage>,
    /// Per connected-app usage, when the header carries it.
    pub per_app_usage: Option<Usage>,
    /// Requests this connection sent to Salesforce (every attempt, logins included).
    pub calls: u64,
    /// Requests answered with a non-success status or not answered at all.
    pub failed_calls: u64,
    /// Records streamed to callers.
    pub records: u64,
    /// Response body bytes read.
    pub bytes: u64,
    /// Set while the connection refuses calls because the org's quota is spent.
    pub quota_exhausted_for: Option<Duration>,
    /// The last `/limits` answer, by limit name.
    pub limits: BTreeMap<String, Limit>,
}

/// Parses `api-usage=18/5000; per-app-api-usage=17/250(appName=sample)` (and ignores other
/// parts such as `api-bursts=1/750`). Returns (org, per-app).
pub fn parse_limit_info(header: &str) -> (Option<Usage>, Option<Usage>) {
    let mut org = None;
    let mut app = None;
    for part in header.split([';', ',']) {
        let part = part.trim();
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        let value = value.split('(').next().unwrap_or("").trim();
        let Some((used, max)) = value.split_once('/') else {
            continue;
        };
        let (Ok(used), Ok(max)) = (used.trim().parse(), max.trim().parse()) else {
            continue;
        };
        match key.trim() {
            "api-usage" => org = Some(Usage { used, max }),
            "per-app-api-usage" => app = Some(Usage { used, max }),
            _ => {}
        }
    }
    (org, app)
}

#[derive(Default)]
pub(crate) struct UsageTracker {
    calls: AtomicU64,
    failed: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    api_usage: Option<Usage>,
    per_app: Option<Usage>,
    quota_hold_until: Option<Instant>,
    limits: BTreeMap<String, Limit>,
}

impl UsageTracker {
    pub(crate) fn count_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_failure(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_records(&self, n: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn count_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn observe_limit_info(&self, header: &str) {
        let (org, app) = parse_limit_info(header);
        let mut state = self.state.lock();
        if org.is_some() {
            state.api_usage = org;
        }
        if app.is_some() {
            state.per_app = app;
        }
    }

    pub(crate) fn observe_limits(&self, limits: BTreeMap<String, Limit>) {
        let mut state = self.state.lock();
        if let Some(daily) = limits.get("DailyApiRequests") {
            state.api_usage = Some(Usage {
                used: daily.max.saturating_sub(daily.remaining),
                max: daily.max,
            });
        }
        state.limits = limits;
    }

    /// Starts (or extends) the quota hold.
    pub(crate) fn hold_for_quota(&self, hold: Duration) {
        self.state.lock().quota_hold_until = Some(Instant::now() + hold);
    }

    /// Time left on the quota hold, if one is in force.
    pub(crate) fn quota_hold_remaining(&self) -> Option<Duration> {
        let mut state = self.state.lock();
        let until = state.quota_hold_until?;
        let now = Instant::now();
        if now >= until {
            state.quota_hold_until = None;
            return None;
        }
        Some(until - now)
    }

    pub(crate) fn clear_quota_hold(&self) {
        self.state.lock().quota_hold_until = None;
    }

    pub(crate) fn snapshot(&self) -> UsageSnapshot {
        let quota_exhausted_for = self.quota_hold_remaining();
        let state = self.state.lock();
        UsageSnapshot {
            api_usage: state.api_usage,
            per_app_usage: state.per_app,
            calls: self.calls.load(Ordering::Relaxed),
            failed_calls: self.failed.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            quota_exhausted_for,
            limits: state.limits.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limit_info_variants() {
        assert_eq!(
            parse_limit_info("api-usage=18/5000"),
            (
                Some(Usage {
                    used: 18,
                    max: 5000
                }),
                None
            )
        );
        assert_eq!(
            parse_limit_info(
                "api-usage=25/5000; per-app-api-usage=17/250(appName=sample-connected-app)"
            ),
            (
                Some(Usage {
                    used: 25,
                    max: 5000
                }),
                Some(Usage { used: 17, max: 250 })
            )
        );
        assert_eq!(
            parse_limit_info("api-usage=3/15000; api-bursts=1/750").0,
            Some(Usage {
                used: 3,
                max: 15000
            })
        );
        assert_eq!(parse_limit_info("garbage"), (None, None));
        assert_eq!(parse_limit_info("api-usage=x/5"), (None, None));
    }

    #[test]
    fn limits_accept_ints_and_strings() {
        let limits: BTreeMap<String, Limit> = serde_json::from_str(
            r#"{"DailyApiRequests":{"Max":15000,"Remaining":14998},"Old":{"Max":"5000","Remaining":"4000"}}"#,
        )
        .unwrap();
        assert_eq!(
            limits["Old"],
            Limit {
                max: 5000,
                remaining: 4000
            }
        );
        let t = UsageTracker::default();
        t.observe_limits(limits);
        assert_eq!(
            t.snapshot().api_usage,
            Some(Usage {
                used: 2,
                max: 15000
            })
        );
    }

    #[test]
    fn quota_hold_expires() {
        let t = UsageTracker::default();
        assert!(t.quota_hold_remaining().is_none());
        t.hold_for_quota(Duration::from_secs(60));
        assert!(t.snapshot().quota_exhausted_for.is_some());
        t.hold_for_quota(Duration::ZERO);
        assert!(t.quota_hold_remaining().is_none());
    }
}
