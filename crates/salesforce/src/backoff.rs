//! Exponential backoff with jitter and a cap, for request retries and Bulk polling.

use std::time::Duration;

use rand::Rng;

/// `delay(n)` lies in `[ceiling(n) / 2, ceiling(n)]` where `ceiling(n) = min(cap, base * 2^n)`.
/// Half of it is random so that many connections failing together do not retry in lockstep,
/// and half is fixed so that a retry is never immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_attempts: 6,
        }
    }
}

impl Backoff {
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_micros() as u64);
        half + Duration::from_micros(jitter)
    }
}

/// Polling schedule for Bulk job and batch state: starts at `initial`, grows by half each poll,
/// never exceeds `max`. Long jobs are polled rarely; short ones are noticed quickly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollSchedule {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for PollSchedule {
    fn default() -> PollSchedule {
        PollSchedule {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(15),
        }
    }
}

impl PollSchedule {
    pub fn interval(&self, poll: u32) -> Duration {
        let mut d = self.initial;
        for _ in 0..poll.min(64) {
            d = d.mul_f64(1.5);
            if d >= self.max {
                return self.max;
            }
        }
        d.min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_attempts: 10,
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(2));
        assert_eq!(b.ceiling(1000), Duration::from_secs(2));
        for retry in 0..40 {
            let d = b.delay(retry);
            assert!(
                d >= b.ceiling(retry) / 2 && d <= b.ceiling(retry),
                "{retry}: {d:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let b = Backoff::default();
        let delays: std::collections::HashSet<_> = (0..20).map(|_| b.delay(4)).collect();
        assert!(delays.len() > 1);
    }

    #[test]
    fn polling_slows_down_to_max() {
        let p = PollSchedule {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(p.interval(0), Duration::from_millis(100));
        assert_eq!(p.interval(1), Duration::from_millis(150));
        assert_eq!(p.interval(30), Duration::from_secs(1));
    }
}
