//! What the lake covers, per source stream: when the stream last synced without error, whether
//! its latest sync failed (and why), and from which instant its history is complete. Kept in
//! `state/coverage.json`, written by the sync runner after every stream, read by whoever computes
//! metrics so that a period the lake does not cover is "no data, because …" — never a zero that
//! looks real (metrics.md, "Sources that did not sync").
//!
//! This module judges coverage; it never computes a metric and never talks to a source.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// The file in the store's `state/` folder.
pub const COVERAGE_FILE: &str = "coverage.json";

/// One stream's coverage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamCoverage {
    /// When the last sync of the stream that ended without error started: everything the
    /// source held then (within the history below) is in the lake.
    #[serde(default)]
    pub last_ok_at: Option<DateTime<Utc>>,
    /// When the latest sync of the stream failed, if the latest one did.
    #[serde(default)]
    pub failed_at: Option<DateTime<Utc>>,
    /// The first line of that failure (never a secret: connector errors carry none).
    #[serde(default)]
    pub error: Option<String>,
    /// The instant from which the stream's history is complete; `None` for the whole history
    /// the source offers (the stream's own `covers_from`, see the connector contract).
    #[serde(default)]
    pub covers_from: Option<DateTime<Utc>>,
}

/// Every stream's coverage, by `source/stream`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// By `source/stream`.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamCoverage>,
}

/// A configured source stream and the canonical tables it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// Source name from the config.
    pub source: String,
    /// Stream name.
    pub stream: &'static str,
    /// Tables it writes.
    pub tables: Vec<&'static str>,
}

fn key(source: &str, stream: &str) -> String {
    format!("{source}/{stream}")
}

impl Coverage {
    /// The coverage kept in `store`; `None` when no sync has recorded any (a lake from before
    /// tandem kept it, or a lake that never synced). An unreadable file is an error naming it: a
    /// guess would either hide a gap or invent one.
    pub fn load(store: &Store) -> Result<Option<Self>, StoreError> {
        let path = store.root().join("state").join(COVERAGE_FILE);
        if let Err(source) = super::bucket::pull(&path) {
            return Err(StoreError::Io {
                action: "read",
                path,
                source,
            });
        }
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::State {
                    path,
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// The coverage to update: the kept one, or — for a lake that has none yet — one that takes
    /// every stream with a bookmark as synced until now, from its bookmark's `covers_from`: a lake
    /// synced before tandem kept coverage would otherwise show every source but the first one
    /// synced after the upgrade as "never synced".
    fn load_or_seed(store: &Store) -> Result<Self, StoreError> {
        if let Some(kept) = Self::load(store)? {
            return Ok(kept);
        }
        let now = Utc::now();
        let streams = store
            .bookmarks_by_stream()?
            .into_iter()
            .map(|(stream, state)| {
                let covered = StreamCoverage {
                    last_ok_at: Some(now),
                    covers_from: tandem_connectors::contract::covers_from(&state).flatten(),
                    ..StreamCoverage::default()
                };
                (stream, covered)
            })
            .collect();
        Ok(Self { streams })
    }

    fn save(&self, store: &Store) -> Result<(), StoreError> {
        store.write_state(COVERAGE_FILE, self)
    }

    /// Records that a stream synced without error, from a sync that started at `started_at`,
    /// with its history complete from `covers_from` (`None`: the whole history).
    pub fn record_ok(
        store: &Store,
        source: &str,
        stream: &str,
        started_at: DateTime<Utc>,
        covers_from: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let _state = store.state_guard()?;
        let mut all = Self::load_or_seed(store)?;
        let entry = all.streams.entry(key(source, stream)).or_default();
        entry.last_ok_at = Some(started_at);
        entry.failed_at = None;
        entry.error = None;
        entry.covers_from = covers_from;
        all.save(store)
    }

    /// Records that a stream's sync failed at `at` (what it synced before stays covered up to
    /// its last good sync).
    pub fn record_failure(
        store: &Store,
        source: &str,
        streams: &[&str],
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let _state = store.state_guard()?;
        let mut all = Self::load_or_seed(store)?;
        let first_line = error.lines().next().unwrap_or_default().trim().to_owned();
        for stream in streams {
            let entry = all.streams.entry(key(source, stream)).or_default();
            entry.failed_at = Some(at);
            entry.error = Some(first_line.clone());
        }
        all.save(store)
    }

    /// Forgets what the streams named `source/stream` covered (their table was lost and they are
    /// read again from the start): until a sync of each ends without error, their figures are no
    /// data, never the few rows a half-done re-read brought back.
    pub fn forget(store: &Store, streams: &[String]) -> Result<(), StoreError> {
        let _state = store.state_guard()?;
        let mut all = Self::load_or_seed(store)?;
        for stream in streams {
            if let Some(entry) = all.streams.get_mut(stream) {
                entry.last_ok_at = None;
                entry.covers_from = None;
            }
        }
        all.save(store)
    }

    /// Why the feeds of `tables` do not cover `[start, end)`, or `None` when they do. One
    /// reason per source that falls short, joined with `; `, in feed order:
    /// - never synced: no sync of the stream ever ended without error (with the latest error);
    /// - failed: the latest sync failed and the period ends after the last good one started;
    /// - history: the stream is complete only from an instant after the period starts.
    pub fn gap(
        &self,
        feeds: &[Feed],
        tables: &[&str],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Option<String> {
        let mut reasons: Vec<String> = Vec::new();
        let mut named: Vec<&str> = Vec::new();
        for feed in feeds {
            if named.contains(&feed.source.as_str()) || !feed.tables.iter().any(|t| tables.contains(t)) {
                continue;
            }
            let day = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
            let stream = self.streams.get(&key(&feed.source, feed.stream));
            let reason = match stream {
                None | Some(StreamCoverage { last_ok_at: None, .. }) => {
                    Some(match stream.and_then(|s| s.error.as_deref()) {
                        Some(error) => format!("{} has never synced ({}: {error})", feed.source, feed.stream),
                        None => format!("{} has never synced", feed.source),
                    })
                }
                Some(StreamCoverage {
                    last_ok_at: Some(ok),
                    failed_at: Some(failed),
                    error,
                    ..
                }) if end > *ok => Some(format!(
                    "{} failed in its last sync on {} ({}: {}); its data after {} is missing",
                    feed.source,
                    day(*failed),
                    feed.stream,
                    error.as_deref().unwrap_or("error"),
                    ok.format("%Y-%m-%d %H:%M UTC"),
                )),
                Some(StreamCoverage {
                    covers_from: Some(from),
                    ..
                }) if start < *from => Some(format!(
                    "{}'s {} history starts on {} (raise its lookback_days to reach back further)",
                    feed.source,
                    feed.stream,
                    day(*from)
                )),
                Some(_) => None,
            };
            if let Some(reason) = reason {
                named.push(&feed.source);
                reasons.push(reason);
            }
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 0, 0, 0).unwrap()
    }

    fn feeds() -> Vec<Feed> {
        vec![
            Feed {
                source: "gh".into(),
                stream: "deployments",
                tables: vec!["deployments", "commits"],
            },
            Feed {
                source: "jira".into(),
                stream: "issues",
                tables: vec!["tickets", "ticket_transitions", "incidents"],
            },
            Feed {
                source: "pd".into(),
                stream: "incidents",
                tables: vec!["incidents"],
            },
        ]
    }

    #[test]
    fn a_source_that_never_synced_leaves_every_period_without_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Coverage::record_ok(&store, "gh", "deployments", at(10), None).unwrap();
        Coverage::record_failure(
            &store,
            "jira",
            &["issues"],
            at(10),
            "jira: 401 Unauthorized\nmore",
        )
        .unwrap();
        let coverage = Coverage::load(&store).unwrap().unwrap();
        assert_eq!(coverage.gap(&feeds(), &["deployments"], at(1), at(8)), None);
        assert_eq!(
            coverage.gap(&feeds(), &["tickets"], at(1), at(8)).as_deref(),
            Some("jira has never synced (issues: jira: 401 Unauthorized)")
        );
        // pd has no entry at all: never synced, no error to quote.
        assert_eq!(
            coverage.gap(&feeds(), &["incidents"], at(1), at(8)).as_deref(),
            Some("jira has never synced (issues: jira: 401 Unauthorized); pd has never synced")
        );
    }

    #[test]
    fn a_failed_last_sync_uncovers_only_periods_after_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Coverage::record_ok(&store, "pd", "incidents", at(10), None).unwrap();
        Coverage::record_failure(&store, "pd", &["incidents"], at(11), "rate limited").unwrap();
        let coverage = Coverage::load(&store).unwrap().unwrap();
        let feeds = &feeds()[2..];
        // The week ending on the 9th was covered by the sync of the 10th.
        assert_eq!(coverage.gap(feeds, &["incidents"], at(2), at(9)), None);
        // A period ending exactly at the good sync's start is covered; one after it is not.
        assert_eq!(coverage.gap(feeds, &["incidents"], at(3), at(10)), None);
        assert_eq!(
            coverage.gap(feeds, &["incidents"], at(9), at(16)).as_deref(),
            Some(
                "pd failed in its last sync on 2026-03-11 (incidents: rate limited); its data after \
                 2026-03-10 00:00 UTC is missing"
            )
        );
        // The next good sync clears the failure.
        Coverage::record_ok(&store, "pd", "incidents", at(12), None).unwrap();
        let coverage = Coverage::load(&store).unwrap().unwrap();
        assert_eq!(coverage.gap(feeds, &["incidents"], at(9), at(16)), None);
    }

    #[test]
    fn a_history_that_starts_after_the_period_is_no_data_with_the_setting_to_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Coverage::record_ok(&store, "pd", "incidents", at(20), Some(at(5))).unwrap();
        let coverage = Coverage::load(&store).unwrap().unwrap();
        let feeds = &feeds()[2..];
        assert_eq!(
            coverage.gap(feeds, &["incidents"], at(2), at(9)).as_deref(),
            Some(
                "pd's incidents history starts on 2026-03-05 (raise its lookback_days to reach back further)"
            )
        );
        assert_eq!(coverage.gap(feeds, &["incidents"], at(5), at(12)), None);
        // Tables the stream does not write are not its business.
        assert_eq!(coverage.gap(feeds, &["tickets"], at(2), at(9)), None);
    }

    #[test]
    fn a_lake_synced_before_coverage_was_kept_counts_its_bookmarked_streams_as_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .save_bookmark("gh", "deployments", serde_json::json!({"cursor": "x"}))
            .unwrap();
        store
            .save_bookmark(
                "pd",
                "incidents",
                serde_json::json!({"covers_from": "2026-03-05T00:00:00Z"}),
            )
            .unwrap();
        // The first sync after the upgrade records one stream's failure ...
        Coverage::record_failure(&store, "jira", &["issues"], at(20), "boom").unwrap();
        let coverage = Coverage::load(&store).unwrap().unwrap();
        // ... and the others, synced before, are still covered up to now (their own history kept).
        assert_eq!(coverage.gap(&feeds(), &["deployments"], at(1), at(8)), None);
        assert_eq!(coverage.gap(&feeds()[2..], &["incidents"], at(9), at(16)), None);
        assert!(
            coverage
                .gap(&feeds()[2..], &["incidents"], at(2), at(9))
                .unwrap()
                .contains("history starts on 2026-03-05")
        );
        assert!(
            coverage
                .gap(&feeds(), &["tickets"], at(1), at(8))
                .unwrap()
                .contains("never synced")
        );
    }

    #[test]
    fn a_stream_whose_table_was_lost_is_no_data_until_it_syncs_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Coverage::record_ok(&store, "pd", "incidents", at(10), None).unwrap();
        Coverage::forget(&store, &["pd/incidents".to_owned()]).unwrap();
        // A re-read that fails half-way brings back a few rows: they are not the history.
        Coverage::record_failure(&store, "pd", &["incidents"], at(11), "rate limited").unwrap();
        let coverage = Coverage::load(&store).unwrap().unwrap();
        assert!(
            coverage
                .gap(&feeds()[2..], &["incidents"], at(1), at(8))
                .unwrap()
                .starts_with("pd has never synced")
        );
        Coverage::record_ok(&store, "pd", "incidents", at(12), None).unwrap();
        let coverage = Coverage::load(&store).unwrap().unwrap();
        assert_eq!(coverage.gap(&feeds()[2..], &["incidents"], at(1), at(8)), None);
    }

    #[test]
    fn coverage_is_absent_until_a_sync_records_it_and_corrupt_coverage_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(Coverage::load(&store).unwrap(), None);
        std::fs::write(dir.path().join("state").join(COVERAGE_FILE), b"{oops").unwrap();
        let err = Coverage::load(&store).unwrap_err().to_string();
        assert!(err.contains(COVERAGE_FILE), "{err}");
    }
}
