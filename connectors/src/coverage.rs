//! What a stream state remembers about the history it holds: per scope (a repo, a project, a repo
//! and environment), the instant from which that scope's records are complete, and from those
//! the stream's `covers_from` ([`crate::contract::COVERS_FROM`]).
//!
//! A scope whose coverage starts later than the lookback start in force (the lookback was raised)
//! is walked back on the next sync; a scope never read completely covers nothing yet. This module
//! only keeps the arithmetic in one place: which walk reads what is each connector's business.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The lookback of every source unless configured: a year.
pub const DEFAULT_LOOKBACK_DAYS: i64 = 365;

/// How long a deployment or run may stay unfinished before it is marked stale.
pub const DEFAULT_STALE_AFTER_DAYS: i64 = 7;

/// A connector's clock: the system's, or a fixed instant for replays of recorded or simulated
/// data (what counts as stale and where the lookback starts follow it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock(Option<DateTime<Utc>>);

impl Clock {
    /// A clock that always shows `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self(Some(at))
    }

    /// The instant the clock shows.
    pub fn now(&self) -> DateTime<Utc> {
        self.0.unwrap_or_else(Utc::now)
    }

    /// Unfinished records created before this instant are stale.
    pub fn stale_before(&self, stale_after_days: i64) -> DateTime<Utc> {
        self.now() - Duration::days(stale_after_days.max(0))
    }
}

/// One scope's coverage: its records are complete from `from` on (`None`: the whole history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Covered {
    /// The earliest instant the scope holds every record from; `None` for no limit.
    pub from: Option<DateTime<Utc>>,
}

impl Covered {
    /// Whether this coverage already reaches back to `start` (`None`: the whole history).
    pub fn reaches(&self, start: Option<DateTime<Utc>>) -> bool {
        match (self.from, start) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(from), Some(start)) => from <= start,
        }
    }
}

/// Where the lookback of `days` starts at `now`: `None` reads the whole history.
pub fn lookback_start(days: Option<i64>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    days.map(|d| now - Duration::days(d.max(0)))
}

/// A stream's `covers_from` over its configured scopes, each with its coverage (`None`: not yet
/// read completely): the latest of their starts, `None` when every scope holds its whole
/// history. A scope not yet covered makes the stream complete from `now` only.
pub fn stream_covers_from(
    scopes: impl IntoIterator<Item = Option<Covered>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut latest: Option<DateTime<Utc>> = None;
    for scope in scopes {
        match scope {
            None => return Some(now),
            Some(Covered { from: Some(from) }) => latest = latest.max(Some(from)),
            Some(Covered { from: None }) => {}
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::time::parse_instant(s).unwrap()
    }

    #[test]
    fn a_stream_covers_from_its_latest_scope_and_an_unread_scope_covers_nothing() {
        let now = t("2026-12-01T00:00:00Z");
        let jan = Covered {
            from: Some(t("2026-01-01T00:00:00Z")),
        };
        let jun = Covered {
            from: Some(t("2026-06-01T00:00:00Z")),
        };
        let all = Covered { from: None };
        assert_eq!(
            stream_covers_from([Some(jan), Some(jun), Some(all)], now),
            jun.from
        );
        assert_eq!(stream_covers_from([Some(all), Some(all)], now), None);
        assert_eq!(stream_covers_from([Some(jan), None], now), Some(now));
        assert!(jan.reaches(jun.from) && !jun.reaches(jan.from));
        assert!(all.reaches(None) && !jan.reaches(None));
        assert_eq!(lookback_start(Some(30), now), Some(t("2026-11-01T00:00:00Z")));
        assert_eq!(lookback_start(None, now), None);
    }
}
