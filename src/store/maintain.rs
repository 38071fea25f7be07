//! Upkeep of the lake's Delta tables: small files merged, the log checkpointed and its expired
//! entries removed, data files no version within the retention window references deleted, and raw
//! pages past their own retention removed.
//!
//! `tandem run` calls [`Store::maintain`] with `force = false`: each step runs only when due, so a
//! nightly run stays cheap. `tandem maintain` forces every step. Nothing here changes a row: a
//! compaction commit rewrites files with the same rows (`dataChange = false`), and time travel to
//! any version younger than the retention keeps working.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use tandem_connectors::model::{
    Change, ChangeRequest, Commit, Deployment, Incident, Quarantined, Table, Ticket, TicketTransition,
};

use super::table;
use super::{Store, StoreError};

/// How long the lake keeps what it no longer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days a removed data file or an old log entry is kept: how far back time travel reaches.
    pub days: i64,
    /// Days an archived raw page is kept.
    pub raw_days: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            days: super::RETENTION_DAYS,
            raw_days: super::RETENTION_DAYS,
        }
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MaintenanceReport {
    /// Small data files merged away, per table that had any.
    pub compacted: Vec<(String, usize)>,
    /// Tables whose log got a checkpoint.
    pub checkpointed: usize,
    /// Old log entries removed.
    pub log_entries_removed: usize,
    /// Data files deleted (unreferenced for longer than the retention).
    pub files_vacuumed: usize,
    /// Archived raw page files deleted.
    pub raw_files_removed: usize,
}

/// When a maintenance pass last cleaned up (kept in `state/maintenance.json`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct LastCleanup {
    at: Option<DateTime<Utc>>,
}

/// A partition with this many small files is compacted by a pass that is not forced.
pub const DUE_FILES: usize = 8;
/// How often a pass that is not forced vacuums and removes expired log entries and raw pages.
const CLEANUP_EVERY: Duration = Duration::hours(20);
const STATE_FILE: &str = "maintenance.json";

impl Store {
    /// Maintains every table (see the module doc); `force` runs every step now.
    pub fn maintain(
        &self,
        retention: Retention,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<MaintenanceReport, StoreError> {
        let mut report = MaintenanceReport::default();
        let min_files = if force { 2 } else { DUE_FILES };
        self.compact::<Deployment>(min_files, &mut report)?;
        self.compact::<Change>(min_files, &mut report)?;
        self.compact::<Commit>(min_files, &mut report)?;
        self.compact::<Incident>(min_files, &mut report)?;
        self.compact::<Ticket>(min_files, &mut report)?;
        self.compact::<TicketTransition>(min_files, &mut report)?;
        self.compact::<ChangeRequest>(min_files, &mut report)?;
        self.compact::<Quarantined>(min_files, &mut report)?;

        let state_path = self.root.join("state").join(STATE_FILE);
        let _ = super::bucket::pull(&state_path);
        let last: LastCleanup = std::fs::read(&state_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let due = force || last.at.is_none_or(|at| now - at >= CLEANUP_EVERY);
        if !due {
            return Ok(report);
        }
        let cutoff = now - Duration::days(retention.days.max(0));
        for dir in self.delta_dirs() {
            let Some(mut log) = table::open(&dir, super::delta::AsOf::Latest)? else {
                continue;
            };
            // A checkpoint first: expired log entries can only go up to one.
            log.checkpoint()?;
            report.checkpointed += 1;
            report.log_entries_removed += log.cleanup_log(cutoff)?;
            report.files_vacuumed += log.vacuum(Duration::days(retention.days.max(0)))?;
        }
        report.raw_files_removed = remove_old_raw(
            &self.root.join("raw"),
            now - Duration::days(retention.raw_days.max(0)),
        );
        self.write_state(STATE_FILE, &LastCleanup { at: Some(now) })?;
        // The open tables' key indexes name files by path only; a vacuum removes no file a
        // current version names, so they stay valid.
        Ok(report)
    }

    fn compact<T: Table>(&self, min_files: usize, report: &mut MaintenanceReport) -> Result<(), StoreError> {
        if !super::delta::exists(&self.table_dir(T::NAME)) {
            return Ok(());
        }
        let merged = self.with_table::<T, _>(|t| table::compact::<T>(t, min_files))?;
        if merged > 0 {
            report.compacted.push((T::NAME.to_owned(), merged));
        }
        Ok(())
    }
}

/// Deletes raw page files last written before `cutoff`; returns how many. A file that cannot be
/// inspected or deleted is left for the next pass.
fn remove_old_raw(dir: &Path, cutoff: DateTime<Utc>) -> usize {
    let mut removed = 0;
    // In a bucket: the objects' own modification times.
    if let Ok(Some(files)) = super::bucket::list_dir(dir) {
        for (path, _, modified) in files {
            if modified < cutoff && super::bucket::remove(&path).is_ok() {
                removed += 1;
            }
        }
        return removed;
    }
    let Ok(sources) = std::fs::read_dir(dir) else {
        return 0;
    };
    for stream_dir in sources
        .flatten()
        .filter_map(|s| std::fs::read_dir(s.path()).ok())
        .flatten()
        .flatten()
    {
        let Ok(files) = std::fs::read_dir(stream_dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            let old = file
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| DateTime::<Utc>::from(t) < cutoff);
            if old && std::fs::remove_file(file.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}
