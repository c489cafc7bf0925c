//! Poll windows over SystemModstamp: `[start, end)` in whole seconds.
//!
//! SystemModstamp has whole-second precision and SOQL compares datetimes at second precision
//! (reference/salesforce-api.md §5), so windows are whole seconds too: a fractional bound would
//! either re-read or, worse, appear to cover a second it does not.

use chrono::{DateTime, Duration, DurationRound, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
}

/// Limits for [`next_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPolicy {
    /// How far behind `now` a window must end: covers clock skew between us and Salesforce, and
    /// writes stamped in the current second that have not been served yet.
    pub margin: Duration,
    /// The longest window one primary poll reads; longer gaps (after downtime) take several.
    pub max_len: Duration,
}

impl Window {
    /// `None` unless `start < end` after both are truncated to whole seconds.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Option<Window> {
        let (start, end) = (floor_second(start), floor_second(end));
        (start < end).then_some(Window { start, end })
    }

    pub fn len_secs(&self) -> i64 {
        (self.end - self.start).num_seconds()
    }

    /// Whether a record stamped `t` falls in this window (compared at second precision, as SOQL does).
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let t = floor_second(t);
        self.start <= t && t < self.end
    }

    /// `SystemModstamp >= 2024-06-25T10:00:00Z AND SystemModstamp < 2024-06-25T10:10:00Z`
    pub fn soql_condition(&self) -> String {
        format!(
            "SystemModstamp >= {} AND SystemModstamp < {}",
            soql_datetime(self.start),
            soql_datetime(self.end)
        )
    }

    /// Splits into at most `n` contiguous sub-windows of whole seconds covering exactly this window,
    /// as equal as possible (the first ones get the extra seconds); one per Bulk batch. Fewer than `n`
    /// when the window is shorter than `n` seconds; `n == 0` is taken as 1.
    pub fn split(&self, n: usize) -> Vec<Window> {
        let len = self.len_secs();
        let n = (n.max(1) as i64).min(len);
        let (base, extra) = (len / n, len % n);
        let mut out = Vec::with_capacity(n as usize);
        let mut start = self.start;
        for i in 0..n {
            let end = start + Duration::seconds(base + i64::from(i < extra));
            out.push(Window { start, end });
            start = end;
        }
        debug_assert_eq!(start, self.end);
        out
    }

    /// Two halves, for retrying a window whose query hit QUERY_TIMEOUT. `None` for a one-second
    /// window, which cannot be split further: read it another way (Bulk, or Id keyset paging).
    pub fn halve(&self) -> Option<(Window, Window)> {
        if self.len_secs() < 2 {
            return None;
        }
        let mid = self.start + Duration::seconds(self.len_secs() / 2);
        Some((
            Window {
                start: self.start,
                end: mid,
            },
            Window {
                start: mid,
                end: self.end,
            },
        ))
    }
}

/// The next primary window after `synced_through`, or `None` when there is nothing safe to read yet.
///
/// The window never ends past `now - margin`, nor past getUpdated's `latestDateCovered` (the start of
/// Salesforce's oldest open transaction: records stamped before it are all visible, records stamped
/// after it may not be yet). Pass `None` for `latest_date_covered` only when getUpdated cannot be
/// used for the object; then the margin and the secondary poll are the only protection.
pub fn next_window(
    synced_through: DateTime<Utc>,
    now: DateTime<Utc>,
    latest_date_covered: Option<DateTime<Utc>>,
    policy: WindowPolicy,
) -> Option<Window> {
    let start = floor_second(synced_through);
    let mut end = floor_second(now - policy.margin);
    if let Some(ldc) = latest_date_covered {
        end = end.min(floor_second(ldc));
    }
    if policy.max_len > Duration::zero() {
        end = end.min(start + policy.max_len);
    }
    Window::new(start, end)
}

pub fn floor_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::seconds(1))
        .expect("truncating to a second never overflows")
}

/// A SOQL datetime literal, unquoted, whole seconds, UTC: `2024-06-25T10:00:00Z`.
pub fn soql_datetime(t: DateTime<Utc>) -> String {
    floor_second(t).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses the datetimes Salesforce returns (`2013-05-08T21:20:00.000+0000`, and RFC 3339 forms such
/// as `...Z` or `...+00:00`).
pub fn parse_sf_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests;
