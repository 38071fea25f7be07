//! The local Parquet lake: one table per canonical entity (upsert on the primary key), bookmarks per
//! (source, stream), and the metric table.
//!
//! Every write goes to a temporary file that is then renamed over the old one, so a killed run
//! leaves each file either as it was or fully replaced. Writers hold the lake's lock ([`lock`]):
//! two writers at once would lose each other's rows. The store never talks to a source and never
//! computes a metric; Parquet encoding is delegated to the pipeline's codec (the only polars user).

pub mod lock;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tandem_connectors::http::RawPage;
use tandem_connectors::model::{
    Change, ChangeRequest, Commit, Deployment, Incident, Quarantined, Table, Ticket, TicketTransition,
};

use crate::pipeline::{self, PipelineError};

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory could not be read or written.
    #[error("store: cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A table file could not be encoded or decoded.
    #[error("store: {0}")]
    Table(#[from] PipelineError),
    /// Another process is writing the lake.
    #[error(
        "store: the lake at {lake} is in use by {}; wait for it to finish (a writer on this host that was killed releases the lock by itself; one on another host that is gone: delete {lock_file})",
        holder.as_deref().unwrap_or("another tandem process (it has not yet said which)")
    )]
    Locked {
        /// The lake directory.
        lake: PathBuf,
        /// Who holds the lock, as the holder wrote it.
        holder: Option<String>,
        /// The lock file.
        lock_file: PathBuf,
    },
    /// A table file exists but cannot be read; it is never replaced silently.
    #[error(
        "store: table file {path} is unreadable ({message}); tandem will not overwrite it: move it aside (or delete it), then run `tandem sync` again: the streams that wrote it are re-read from the start"
    )]
    UnreadableTable {
        /// The table file.
        path: PathBuf,
        /// Why it cannot be read.
        message: String,
    },
    /// The bookmark file (or the record of written tables beside it) is not valid JSON.
    #[error("store: bookmarks file {path} is corrupt ({message}); delete it to re-sync from scratch")]
    Bookmarks {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// Rows added and replaced by one upsert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertStats {
    /// Keys not seen before.
    pub inserted: usize,
    /// Keys replaced by a version at least as new.
    pub updated: usize,
}

/// The lake at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// The writers' lock, when opened for writing; released with the last clone.
    lock: Option<Arc<lock::LakeLock>>,
}

impl Store {
    /// Opens (creating if needed) the lake at `root` without the writers' lock: for reading, and
    /// for tests and benchmarks that own their lake. Commands that change the lake use
    /// [`Store::open_for_writing`].
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for dir in [
            root.join("tables"),
            root.join("state"),
            root.join("metrics"),
            root.join("raw"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
                action: "create directory",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Self {
            root: root.to_owned(),
            lock: None,
        })
    }

    /// Opens the lake at `root` holding its writers' lock (see [`lock`]) for `command`, shared
    /// with every other opening in this process. Fails, naming the holder, while another process
    /// writes the lake. Temporary files a killed writer left are removed once the lock is taken:
    /// only then is no other process writing them.
    pub fn open_for_writing(root: &Path, command: &str) -> Result<Self, StoreError> {
        let mut store = Self::open(root)?;
        let (lock, fresh) = lock::LakeLock::acquire(root, command)?;
        store.lock = Some(lock);
        if fresh {
            store.remove_leftovers();
        }
        Ok(store)
    }

    /// Removes temporary files a killed write left behind; the files they were replacing are
    /// intact, so nothing is lost.
    fn remove_leftovers(&self) {
        for dir in ["tables", "state", "metrics"] {
            let Ok(entries) = std::fs::read_dir(self.root.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "tmp") {
                    tracing::debug!(path = %path.display(), "Removing a temporary file left by an interrupted write.");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    /// The lake directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The Parquet file of a canonical table.
    pub fn table_path(&self, table: &str) -> PathBuf {
        self.root.join("tables").join(format!("{table}.parquet"))
    }

    /// The metric table files (Parquet, CSV).
    pub fn metrics_paths(&self) -> (PathBuf, PathBuf) {
        let dir = self.root.join("metrics");
        (dir.join("metrics.parquet"), dir.join("metrics.csv"))
    }

    fn bookmarks_path(&self) -> PathBuf {
        self.root.join("state").join("bookmarks.json")
    }

    /// All rows of a table (empty when it was never written). A file polars cannot decode
    /// (truncated, empty, not Parquet) is [`StoreError::UnreadableTable`], saying what to do.
    pub fn read<T: Table>(&self) -> Result<Vec<T>, StoreError> {
        let path = self.table_path(T::NAME);
        pipeline::read_table::<T>(&path).map_err(|e| match e {
            PipelineError::Polars { source, .. } => StoreError::UnreadableTable {
                path,
                message: source.to_string(),
            },
            other => StoreError::Table(other),
        })
    }

    /// Records that `source`'s `stream` wrote `tables`, so that a table file found missing later
    /// is known to have been lost rather than never written ([`Store::check_tables`]). Written
    /// after the rows and before the checkpoint that covers them.
    pub fn note_written(&self, source: &str, stream: &str, tables: &[&str]) -> Result<(), StoreError> {
        let mut written = self.written()?;
        let key = bookmark_key(source, stream);
        let mut changed = false;
        for table in tables {
            changed |= written.entry((*table).to_owned()).or_default().insert(key.clone());
        }
        if !changed {
            return Ok(());
        }
        let path = self.written_path();
        let bytes = serde_json::to_vec_pretty(&written).map_err(|e| io_error("encode", &path, e.into()))?;
        crate::atomic::write_atomic(
            &path,
            |f| std::io::Write::write_all(f, &bytes).map_err(|e| io_error("write", &path, e)),
            io_error,
        )
    }

    /// Checks the tables before a sync. A table that was written but whose file is gone voids
    /// the bookmarks of the streams that wrote it, so they are read again from the start (with
    /// a warning naming the table); their other tables are upserted, so nothing is duplicated.
    /// A table file that cannot be read stops the sync ([`StoreError::UnreadableTable`]): it
    /// is never silently replaced. Returns the voided tables and their streams.
    pub fn check_tables(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        for table in TABLES {
            let path = self.table_path(table);
            if path.exists() {
                pipeline::check_table(&path).map_err(|e| StoreError::UnreadableTable {
                    message: match e {
                        PipelineError::Polars { source, .. } => source.to_string(),
                        other => other.to_string(),
                    },
                    path,
                })?;
            }
        }
        let mut voided = Vec::new();
        for (table, streams) in self.written()? {
            let path = self.table_path(&table);
            if path.exists() {
                continue;
            }
            let mut all = self.bookmarks()?;
            for stream in &streams {
                all.remove(stream);
            }
            self.write_bookmarks(&all)?;
            tracing::warn!(
                table = %table,
                path = %path.display(),
                streams = ?streams,
                "A table written before is gone; its streams are read again from the start."
            );
            voided.push((table, streams.into_iter().collect()));
        }
        Ok(voided)
    }

    fn written_path(&self) -> PathBuf {
        self.root.join("state").join("tables.json")
    }

    /// Each table written so far and the streams (`source/stream`) that wrote it.
    fn written(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
        let path = self.written_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Bookmarks {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(source) => Err(io_error("read", &path, source)),
        }
    }

    /// Inserts or replaces rows by primary key; a stored row newer than the incoming one is kept.
    /// The table is rewritten sorted by key, atomically.
    pub fn upsert<T: Table>(&self, rows: Vec<T>) -> Result<UpsertStats, StoreError> {
        if rows.is_empty() {
            return Ok(UpsertStats::default());
        }
        let mut by_key: BTreeMap<String, T> = self
            .read::<T>()?
            .into_iter()
            .map(|r| (r.key().to_owned(), r))
            .collect();
        let mut stats = UpsertStats::default();
        for row in rows {
            match by_key.get(row.key()) {
                None => {
                    stats.inserted += 1;
                    by_key.insert(row.key().to_owned(), row);
                }
                Some(old) if row.updated_at() >= old.updated_at() => {
                    stats.updated += 1;
                    by_key.insert(row.key().to_owned(), row);
                }
                Some(_) => {}
            }
        }
        let rows: Vec<T> = by_key.into_values().collect();
        pipeline::write_table(&rows, &self.table_path(T::NAME))?;
        Ok(stats)
    }

    /// Appends fetched pages to the raw archive: one gzip-compressed NDJSON file per checkpoint at
    /// `raw/{source}/{stream}/{time}-{first page no.}.ndjson.gz`, one page (with its URL, status,
    /// response headers and body) per line.
    pub fn archive_raw(&self, source: &str, stream: &str, pages: &[RawPage]) -> Result<(), StoreError> {
        let Some(first) = pages.first() else {
            return Ok(());
        };
        let dir = self
            .root
            .join("raw")
            .join(safe_name(source))
            .join(safe_name(stream));
        std::fs::create_dir_all(&dir).map_err(|e| io_error("create directory", &dir, e))?;
        let name = format!(
            "{}-{:06}.ndjson.gz",
            first.fetched_at.format("%Y%m%dT%H%M%S%.3fZ"),
            std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0)
        );
        let path = dir.join(name);
        crate::atomic::write_atomic(
            &path,
            |file| {
                let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
                for page in pages {
                    let line = serde_json::to_vec(page).map_err(|e| io_error("encode", &path, e.into()))?;
                    std::io::Write::write_all(&mut gz, &line).map_err(|e| io_error("write", &path, e))?;
                    std::io::Write::write_all(&mut gz, b"\n").map_err(|e| io_error("write", &path, e))?;
                }
                gz.finish().map(|_| ()).map_err(|e| io_error("write", &path, e))
            },
            io_error,
        )
    }

    /// Every archived page of a stream, oldest file first.
    pub fn raw_pages(&self, source: &str, stream: &str) -> Result<Vec<RawPage>, StoreError> {
        let dir = self
            .root
            .join("raw")
            .join(safe_name(source))
            .join(safe_name(stream));
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".ndjson.gz"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("read", &dir, e)),
        };
        files.sort();
        let mut pages = Vec::new();
        for path in files {
            let file = std::fs::File::open(&path).map_err(|e| io_error("open", &path, e))?;
            let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
            for line in std::io::BufRead::lines(reader) {
                let line = line.map_err(|e| io_error("read", &path, e))?;
                let page = serde_json::from_str(&line).map_err(|e| io_error("decode", &path, e.into()))?;
                pages.push(page);
            }
        }
        Ok(pages)
    }

    /// Replaces whole tables (each written atomically, sorted by key): for rebuilding the tables
    /// from what is stored, where an upsert's "newer wins" would keep the old rows.
    pub fn replace_all(&self, tables: crate::sync::Tables) -> Result<(), StoreError> {
        fn replace<T: Table>(store: &Store, mut rows: Vec<T>) -> Result<(), StoreError> {
            rows.sort_by(|a, b| a.key().cmp(b.key()));
            Ok(pipeline::write_table(&rows, &store.table_path(T::NAME))?)
        }
        replace(self, tables.deployments)?;
        replace(self, tables.changes)?;
        replace(self, tables.commits)?;
        replace(self, tables.incidents)?;
        replace(self, tables.tickets)?;
        replace(self, tables.transitions)?;
        replace(self, tables.change_requests)?;
        Ok(())
    }

    /// The saved state of a stream, if any.
    pub fn bookmark(&self, source: &str, stream: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.bookmarks()?.remove(&bookmark_key(source, stream)))
    }

    /// Saves a stream's state (atomically, with every other stream's state unchanged).
    pub fn save_bookmark(&self, source: &str, stream: &str, state: Value) -> Result<(), StoreError> {
        let mut all = self.bookmarks()?;
        all.insert(bookmark_key(source, stream), state);
        self.write_bookmarks(&all)
    }

    /// Forgets a stream's state, so the next sync reads it in full.
    pub fn clear_bookmark(&self, source: &str, stream: &str) -> Result<(), StoreError> {
        let mut all = self.bookmarks()?;
        if all.remove(&bookmark_key(source, stream)).is_some() {
            self.write_bookmarks(&all)?;
        }
        Ok(())
    }

    /// Row counts of every canonical table.
    pub fn row_counts(&self) -> Result<Vec<(&'static str, usize)>, StoreError> {
        Ok(vec![
            (Deployment::NAME, self.read::<Deployment>()?.len()),
            (Change::NAME, self.read::<Change>()?.len()),
            (Commit::NAME, self.read::<Commit>()?.len()),
            (Incident::NAME, self.read::<Incident>()?.len()),
            (Ticket::NAME, self.read::<Ticket>()?.len()),
            (TicketTransition::NAME, self.read::<TicketTransition>()?.len()),
            (ChangeRequest::NAME, self.read::<ChangeRequest>()?.len()),
            (Quarantined::NAME, self.read::<Quarantined>()?.len()),
        ])
    }

    fn bookmarks(&self) -> Result<HashMap<String, Value>, StoreError> {
        let path = self.bookmarks_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Bookmarks {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
            Err(source) => Err(StoreError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    fn write_bookmarks(&self, all: &HashMap<String, Value>) -> Result<(), StoreError> {
        let sorted: BTreeMap<&String, &Value> = all.iter().collect();
        let bytes = serde_json::to_vec_pretty(&sorted).map_err(|e| StoreError::Bookmarks {
            path: self.bookmarks_path(),
            message: e.to_string(),
        })?;
        let path = self.bookmarks_path();
        crate::atomic::write_atomic(
            &path,
            |f| std::io::Write::write_all(f, &bytes).map_err(|e| io_error("write", &path, e)),
            io_error,
        )
    }
}

/// The canonical tables' columns as Markdown, exactly as the README documents them (a test keeps
/// the two equal).
pub fn schema_markdown() -> String {
    use tandem_connectors::model::{Column, ColumnKind};
    fn table<T: Table>(out: &mut String) {
        out.push_str(&format!(
            "**`{}`**\n\n| column | type | meaning |\n|---|---|---|\n",
            T::NAME
        ));
        for Column {
            name,
            kind,
            nullable,
            doc,
        } in T::COLUMNS
        {
            let kind = match kind {
                ColumnKind::Text => "string",
                ColumnKind::Integer => "int64",
                ColumnKind::Bool => "bool",
                ColumnKind::Timestamp => "timestamp (ms, UTC)",
                ColumnKind::TextList => "list of string",
            };
            let null = if *nullable { ", nullable" } else { "" };
            out.push_str(&format!("| `{name}` | {kind}{null} | {doc} |\n"));
        }
        out.push('\n');
    }
    let mut out = String::new();
    table::<Deployment>(&mut out);
    table::<Change>(&mut out);
    table::<Commit>(&mut out);
    table::<Incident>(&mut out);
    table::<Ticket>(&mut out);
    table::<TicketTransition>(&mut out);
    table::<ChangeRequest>(&mut out);
    table::<Quarantined>(&mut out);
    out.trim_end().to_owned()
}

/// Every table a sync writes.
const TABLES: [&str; 8] = [
    Deployment::NAME,
    Change::NAME,
    Commit::NAME,
    Incident::NAME,
    Ticket::NAME,
    TicketTransition::NAME,
    ChangeRequest::NAME,
    Quarantined::NAME,
];

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// A source or stream name as a directory name.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn bookmark_key(source: &str, stream: &str) -> String {
    format!("{source}/{stream}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use tandem_connectors::model::DeploymentStatus;

    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap() + Duration::hours(h)
    }

    fn dep(id: &str, status: DeploymentStatus, updated: i64) -> Deployment {
        Deployment {
            change_refs: Vec::new(),
            deployed_by: None,
            id: id.into(),
            source: "gh".into(),
            repo: "acme/a".into(),
            service: None,
            team: None,
            environment: "production".into(),
            is_production: true,
            status,
            sha: "abc".into(),
            created_at: at(0),
            finished_at: None,
            updated_at: at(updated),
        }
    }

    #[test]
    fn upsert_replaces_by_key_and_keeps_newer_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = store
            .upsert(vec![
                dep("a", DeploymentStatus::InProgress, 1),
                dep("b", DeploymentStatus::Success, 1),
            ])
            .unwrap();
        assert_eq!(
            s,
            UpsertStats {
                inserted: 2,
                updated: 0
            }
        );
        let s = store
            .upsert(vec![
                dep("a", DeploymentStatus::Success, 2),
                dep("b", DeploymentStatus::Failure, 0),
            ])
            .unwrap();
        assert_eq!(
            s,
            UpsertStats {
                inserted: 0,
                updated: 1
            }
        );
        let rows = store.read::<Deployment>().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].status, DeploymentStatus::Success);
        assert_eq!(
            rows[1].status,
            DeploymentStatus::Success,
            "an older version must not win"
        );
    }

    #[test]
    fn bookmarks_round_trip_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.bookmark("gh", "pulls").unwrap(), None);
        store
            .save_bookmark("gh", "pulls", serde_json::json!({"x": 1}))
            .unwrap();
        store
            .save_bookmark("pd", "incidents", serde_json::json!({"y": 2}))
            .unwrap();
        assert_eq!(
            store.bookmark("gh", "pulls").unwrap(),
            Some(serde_json::json!({"x": 1}))
        );
        store.clear_bookmark("gh", "pulls").unwrap();
        assert_eq!(store.bookmark("gh", "pulls").unwrap(), None);
        assert_eq!(
            store.bookmark("pd", "incidents").unwrap(),
            Some(serde_json::json!({"y": 2}))
        );
    }

    #[test]
    fn corrupt_bookmarks_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("state/bookmarks.json"), b"{not json").unwrap();
        let err = store.bookmark("gh", "pulls").unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}
