//! Access tokens issued by OAuth and SOAP login, and when they stop being valid.

use parking_lot::Mutex;
use rand::{distributions::Alphanumeric, Rng};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct Sessions {
    org_id15: String,
    issued: Mutex<HashMap<String, Instant>>,
    /// Valid for the refresh_token grant for as long as the simulator runs.
    pub refresh_token: String,
}

impl Sessions {
    pub fn new(org_id: &str, seed: u64) -> Sessions {
        let refresh_token = format!("5Aep861{}", random_token(seed ^ 0x5eed, 80));
        Sessions {
            org_id15: org_id[..15].to_string(),
            issued: Mutex::new(HashMap::new()),
            refresh_token,
        }
    }

    /// A fresh access token in Salesforce's shape: `<15-char org id>!<opaque>`.
    pub fn issue(&self) -> String {
        let token = format!("{}!{}", self.org_id15, random_token(rand::random(), 96));
        self.issued.lock().insert(token.clone(), Instant::now());
        token
    }

    /// Whether `token` is valid now, given the session lifetime in force (None = no expiry).
    pub fn is_valid(&self, token: &str, ttl: Option<Duration>) -> bool {
        match self.issued.lock().get(token) {
            Some(at) => ttl.is_none_or(|ttl| at.elapsed() < ttl),
            None => false,
        }
    }

    pub fn revoke(&self, token: &str) -> bool {
        self.issued.lock().remove(token).is_some()
    }
}

fn random_token(seed: u64, len: usize) -> String {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The token in `Authorization: Bearer …` / `OAuth …` or Bulk 1.0's `X-SFDC-Session`.
pub fn token_from_headers(headers: &actix_web::http::header::HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        for scheme in ["Bearer ", "OAuth ", "bearer ", "oauth "] {
            if let Some(t) = v.strip_prefix(scheme) {
                return Some(t.trim().to_string());
            }
        }
    }
    headers
        .get("x-sfdc-session")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_and_revoke() {
        let s = Sessions::new("00D5g0000000001AAA", 1);
        let t = s.issue();
        assert!(t.starts_with("00D5g0000000001!"));
        assert!(s.is_valid(&t, None));
        assert!(!s.is_valid(&t, Some(Duration::ZERO)));
        assert!(!s.is_valid("nope", None));
        assert!(s.revoke(&t));
        assert!(!s.is_valid(&t, None));
    }
}
