//! The health of the last `tandem run`, kept in the store (`state/last_run.json`) so that a report
//! made later, by another process, can say how fresh and complete the data behind it is.
//!
//! It only summarises a [`SyncReport`] per source and saves or loads that summary; it must not
//! read sources, sync or compute metrics, and an unreadable file must never stop a report.

use crate::store::{Store, StoreError};

use super::SyncReport;

/// The file in the store's `state/` folder that keeps the health of the last `tandem run`.
pub const LAST_RUN_FILE: &str = "last_run.json";

/// How one `tandem run` went, kept in the store (`state/last_run.json`) so that a report made
/// later, by another process, can say how fresh and complete the data behind it is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunHealth {
    /// When the run started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Seconds from the start of the sync to the end of the metrics (to the end of the sync when
    /// the metrics failed).
    pub seconds: f64,
    /// One entry per source, in config order.
    pub sources: Vec<SourceHealth>,
}

/// How one source fared in a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceHealth {
    /// Source name from the config.
    pub source: String,
    /// Streams synced without error.
    pub streams_ok: usize,
    /// Each failed stream as `stream: first line of the error` (`*` when the source failed
    /// before any stream).
    pub failures: Vec<String>,
    /// Records committed to the store.
    pub records: usize,
    /// Records quarantined.
    pub quarantined: usize,
    /// Requests sent (retries included).
    pub requests: u64,
    /// Answers that were rate limits.
    pub rate_limited: u64,
    /// Milliseconds spent waiting on rate limits (pacing and resets).
    pub paced_ms: u64,
}

impl SourceHealth {
    /// Whether every stream of the source synced.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

impl RunHealth {
    /// Summarises a sync per source, its request counts being those its streams' reads reported.
    pub fn from_report(report: &SyncReport, started_at: chrono::DateTime<chrono::Utc>, seconds: f64) -> Self {
        let mut sources: Vec<SourceHealth> = Vec::new();
        for s in &report.streams {
            let i = match sources.iter().position(|h| h.source == s.source) {
                Some(i) => i,
                None => {
                    let stats = report.requests_of(&s.source);
                    sources.push(SourceHealth {
                        source: s.source.clone(),
                        streams_ok: 0,
                        failures: Vec::new(),
                        records: 0,
                        quarantined: 0,
                        requests: stats.requests,
                        rate_limited: stats.rate_limited,
                        paced_ms: stats.paced_ms,
                    });
                    sources.len() - 1
                }
            };
            let Some(h) = sources.get_mut(i) else { continue };
            h.records += s.records;
            h.quarantined += s.quarantined;
            match &s.error {
                None => h.streams_ok += 1,
                Some(e) => h.failures.push(format!(
                    "{}: {}",
                    s.stream,
                    e.lines().next().unwrap_or_default().trim()
                )),
            }
        }
        Self {
            started_at,
            seconds,
            sources,
        }
    }

    /// Writes the health into the store's `state/` folder, atomically.
    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        store.write_state(LAST_RUN_FILE, self)
    }

    /// The health of the last run, if one was recorded. An unreadable file is logged and read as
    /// none: it must not stop a report, and the next run rewrites it.
    pub fn load(store: &Store) -> Option<Self> {
        let path = store.root().join("state").join(LAST_RUN_FILE);
        if let Err(e) = crate::store::bucket::pull(&path) {
            tracing::warn!(path = %path.display(), error = %e, "Last run's health cannot be read.");
        }
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str(&text) {
            Ok(health) => Some(health),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Last run's health is unreadable; the next run rewrites it.");
                None
            }
        }
    }
}
