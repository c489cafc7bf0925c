//! Faults injected on the Salesforce-facing API through `/_sim/faults`.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Every key optional; 0 (or absent) turns a fault off.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub http_error_rate: f64,
    #[serde(default)]
    pub http_error_status: u16,
    /// Extra latency per request, drawn uniformly from [min, max] ms.
    #[serde(default)]
    pub latency_ms: Option<[u64; 2]>,
    /// Requests that never answer; the client's timeout must fire.
    #[serde(default)]
    pub timeout_rate: f64,
    /// Requests that are carried out but whose answer never comes (the connection hangs): the
    /// client cannot tell them from a request that never arrived.
    #[serde(default)]
    pub lost_answer_rate: f64,
    #[serde(default)]
    pub bulk_batch_failure_rate: f64,
    /// Queries whose result has more rows than this fail with QUERY_TIMEOUT.
    #[serde(default)]
    pub query_timeout_above_rows: u64,
    /// Access tokens expire this many seconds after they were issued.
    #[serde(default)]
    pub session_expiry_secs: u64,
    /// Daily API allowance; calls past it get REQUEST_LIMIT_EXCEEDED.
    #[serde(default)]
    pub api_quota: u64,
    /// Change events that become `GAP_*` events: header and ids, no field data.
    #[serde(default)]
    pub cdc_gap_rate: f64,
    /// A transaction changing more records than this yields one `GAP_OVERFLOW` event per entity.
    #[serde(default)]
    pub cdc_overflow_above: u64,
    /// Change events silently lost, as Salesforce says can happen.
    #[serde(default)]
    pub cdc_drop_rate: f64,
    /// Open Pub/Sub Subscribe streams are ended by the server after this many seconds.
    #[serde(default)]
    pub pubsub_stream_reset_secs: u64,
}

/// What the fault layer decided for one request.
#[derive(Debug, PartialEq)]
pub enum Injected {
    None,
    Error(u16),
    Hang,
    /// Carry the request out, then hang instead of answering.
    LoseAnswer,
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("http_error_rate", self.http_error_rate),
            ("timeout_rate", self.timeout_rate),
            ("lost_answer_rate", self.lost_answer_rate),
            ("bulk_batch_failure_rate", self.bulk_batch_failure_rate),
            ("cdc_gap_rate", self.cdc_gap_rate),
            ("cdc_drop_rate", self.cdc_drop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        if self.http_error_rate > 0.0 && !(400..=599).contains(&self.error_status()) {
            return Err(format!(
                "http_error_status must be 400-599, got {}",
                self.http_error_status
            ));
        }
        if let Some([lo, hi]) = self.latency_ms {
            if lo > hi {
                return Err(format!(
                    "latency_ms [{lo},{hi}]: the first bound must not exceed the second"
                ));
            }
        }
        Ok(())
    }

    fn error_status(&self) -> u16 {
        if self.http_error_status == 0 {
            503
        } else {
            self.http_error_status
        }
    }

    pub fn draw(&self, rng: &mut impl Rng) -> Injected {
        if self.timeout_rate > 0.0 && rng.gen_bool(self.timeout_rate) {
            return Injected::Hang;
        }
        if self.lost_answer_rate > 0.0 && rng.gen_bool(self.lost_answer_rate) {
            return Injected::LoseAnswer;
        }
        if self.http_error_rate > 0.0 && rng.gen_bool(self.http_error_rate) {
            return Injected::Error(self.error_status());
        }
        Injected::None
    }

    pub fn latency(&self, rng: &mut impl Rng) -> Option<std::time::Duration> {
        let [lo, hi] = self.latency_ms?;
        (hi > 0).then(|| std::time::Duration::from_millis(rng.gen_range(lo..=hi)))
    }

    pub fn batch_fails(&self, rng: &mut impl Rng) -> bool {
        self.bulk_batch_failure_rate > 0.0 && rng.gen_bool(self.bulk_batch_failure_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn rates_are_validated_and_drawn() {
        let f: Faults = serde_json::from_str(r#"{"http_error_rate":1.0}"#).unwrap();
        f.validate().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert_eq!(f.draw(&mut rng), Injected::Error(503));
        let f: Faults = serde_json::from_str(r#"{"timeout_rate":1.0}"#).unwrap();
        assert_eq!(f.draw(&mut rng), Injected::Hang);
        assert!(Faults {
            http_error_rate: 2.0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(serde_json::from_str::<Faults>(r#"{"nope":1}"#).is_err());
        assert_eq!(Faults::default().draw(&mut rng), Injected::None);
    }
}
