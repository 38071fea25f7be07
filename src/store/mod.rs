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

pub mod coverage;

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
    /// A state file other than the bookmarks is not valid JSON.
    #[error("store: state file {path} is corrupt ({message}); delete it and the next sync rewrites it")]
    State {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
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
                    // A file, or the link of an interrupted metric table switch.
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

    /// Whether any canonical table has been written.
    pub fn has_tables(&self) -> bool {
        std::fs::read_dir(self.root.join("tables")).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        })
    }

    /// The metric table files (Parquet, CSV) of the last written generation: both from the same
    /// run, however a writer interleaves (the folder is resolved once). A lake written before
    /// generations keeps its files in `metrics/` itself; with no table at all, the paths are where
    /// the next one will be.
    pub fn metrics_paths(&self) -> (PathBuf, PathBuf) {
        let dir = self.root.join("metrics");
        let files = |at: &Path| (at.join("metrics.parquet"), at.join("metrics.csv"));
        let current = dir.join(METRICS_CURRENT);
        match std::fs::read_link(&current) {
            Ok(target) => files(&dir.join(target)),
            Err(_) if dir.join("metrics.parquet").exists() => files(&dir),
            Err(_) => files(&current),
        }
    }

    /// Writes the metric table as Parquet and CSV into a new generation folder
    /// (`metrics/gen-<time>-<pid>/`), then switches the `metrics/current` link to it with one
    /// atomic rename: a reader, or a run after a kill, sees both files of one run. The previous
    /// generation is kept (a reader may be reading it); older ones are removed. Returns the
    /// files' paths.
    pub fn write_metrics(
        &self,
        table: &crate::metric::MetricTable,
    ) -> Result<(PathBuf, PathBuf), StoreError> {
        let dir = self.root.join("metrics");
        let name = format!(
            "gen-{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
            std::process::id()
        );
        let generation = dir.join(&name);
        std::fs::create_dir_all(&generation).map_err(|e| io_error("create directory", &generation, e))?;
        let (parquet, csv) = (generation.join("metrics.parquet"), generation.join("metrics.csv"));
        pipeline::write_metrics(table, &parquet, &csv)?;
        let current = dir.join(METRICS_CURRENT);
        let previous = std::fs::read_link(&current).ok();
        let link = crate::atomic::tmp_path(&current);
        switch_link(&name, &link, &current)?;
        // The files of the old layout would be read by tools that knew it: never stale ones.
        for old in ["metrics.parquet", "metrics.csv"] {
            let _ = std::fs::remove_file(dir.join(old));
        }
        let keep = |n: &str| n == name || previous.as_deref().is_some_and(|p| p == Path::new(n));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let n = entry.file_name().to_string_lossy().into_owned();
                if n.starts_with("gen-") && !keep(&n) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok((parquet, csv))
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
            changed |= written
                .entry((*table).to_owned())
                .or_default()
                .insert(key.clone());
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

    /// Writes `value` as pretty JSON to `state/<name>`, atomically: the one way the store's small
    /// state files (last run, coverage) are written.
    pub fn write_state<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let path = self.root.join("state").join(name);
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| io_error("encode", &path, std::io::Error::other(e)))?;
        crate::atomic::write_atomic(
            &path,
            |file| std::io::Write::write_all(file, &bytes).map_err(|e| io_error("write", &path, e)),
            io_error,
        )
    }

    /// Every saved stream state, by `source/stream`.
    pub fn bookmarks_by_stream(&self) -> Result<BTreeMap<String, Value>, StoreError> {
        Ok(self.bookmarks()?.into_iter().collect())
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

/// The link in `metrics/` to the current generation of the metric table.
const METRICS_CURRENT: &str = "current";

/// Points `current` at `target` (a sibling name): a new link at `link`, renamed over `current`.
#[cfg(unix)]
fn switch_link(target: &str, link: &Path, current: &Path) -> Result<(), StoreError> {
    std::os::unix::fs::symlink(target, link).map_err(|e| io_error("create link", link, e))?;
    std::fs::rename(link, current).map_err(|e| {
        let _ = std::fs::remove_file(link);
        io_error("rename into place", current, e)
    })
}

/// Without symbolic links that can be renamed over each other, `current` is a copy of the
/// generation folder, replaced in two steps: a kill in between leaves no metric table (the next
/// run writes one), never a mixed one.
#[cfg(not(unix))]
fn switch_link(target: &str, link: &Path, current: &Path) -> Result<(), StoreError> {
    let dir = current.parent().unwrap_or(Path::new("."));
    let _ = std::fs::remove_dir_all(current);
    let _ = link;
    std::fs::rename(dir.join(target), current).map_err(|e| io_error("rename into place", current, e))
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

    /// A metric table of one deployment-count row with `value`.
    fn metrics(value: f64) -> crate::metric::MetricTable {
        let mut table = crate::metric::MetricTable::new();
        let scope = table.scope("org", "all");
        let period = table.period("week", at(0), at(168));
        table.push(
            crate::metric::MetricId::DeploymentCount,
            scope,
            period,
            Some(value),
            1,
            None,
        );
        table
    }

    fn value_of(store: &Store) -> (Option<f64>, String) {
        let (parquet, csv) = store.metrics_paths();
        let rows = pipeline::read_metrics(&parquet).unwrap();
        (rows[0].value, std::fs::read_to_string(csv).unwrap())
    }

    #[test]
    fn metrics_parquet_and_csv_are_switched_as_one_unit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.write_metrics(&metrics(1.0)).unwrap();
        let (value, csv) = value_of(&store);
        assert_eq!(value, Some(1.0));
        assert!(csv.contains(",1.0,"), "{csv}");

        // A run killed after writing its new Parquet file but before its CSV and the switch: a
        // reader still gets the previous run's pair, not a new Parquet with an old CSV.
        let killed = dir.path().join("metrics/gen-29990101T000000.000000Z-1");
        std::fs::create_dir_all(&killed).unwrap();
        pipeline::write_metrics(
            &metrics(2.0),
            &killed.join("metrics.parquet"),
            &killed.join("x.csv"),
        )
        .unwrap();
        std::fs::remove_file(killed.join("x.csv")).unwrap();
        assert_eq!(value_of(&store).0, Some(1.0));

        store.write_metrics(&metrics(3.0)).unwrap();
        let (value, csv) = value_of(&store);
        assert_eq!(value, Some(3.0));
        assert!(csv.contains(",3.0,"), "the CSV is of the same run: {csv}");
        assert!(!killed.exists(), "an abandoned generation is removed");
        store.write_metrics(&metrics(4.0)).unwrap();
        let generations = std::fs::read_dir(dir.path().join("metrics"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("gen-"))
            .count();
        assert_eq!(generations, 2, "the current one and the one before, for readers");
    }

    #[test]
    fn a_lake_of_the_old_layout_reads_its_metric_files_until_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = (
            dir.path().join("metrics/metrics.parquet"),
            dir.path().join("metrics/metrics.csv"),
        );
        pipeline::write_metrics(&metrics(1.0), &old.0, &old.1).unwrap();
        assert_eq!(store.metrics_paths(), old);
        store.write_metrics(&metrics(2.0)).unwrap();
        assert_eq!(value_of(&store).0, Some(2.0));
        assert!(!old.0.exists() && !old.1.exists(), "no stale copy stays beside");
    }

    #[test]
    fn only_a_table_written_before_and_now_missing_voids_its_streams_bookmarks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .upsert(vec![dep("a", DeploymentStatus::Success, 1)])
            .unwrap();
        store
            .note_written("gh", "deployments", &[Deployment::NAME])
            .unwrap();
        for (source, stream) in [("gh", "deployments"), ("gh", "pulls"), ("pd", "incidents")] {
            store
                .save_bookmark(source, stream, serde_json::json!({"at": 1}))
                .unwrap();
        }
        // Nothing was lost: tables never written (incidents) are legitimately absent.
        assert!(store.check_tables().unwrap().is_empty());
        assert!(store.bookmark("gh", "deployments").unwrap().is_some());

        std::fs::remove_file(store.table_path(Deployment::NAME)).unwrap();
        let voided = store.check_tables().unwrap();
        assert_eq!(
            voided,
            vec![("deployments".to_owned(), vec!["gh/deployments".to_owned()])]
        );
        assert_eq!(store.bookmark("gh", "deployments").unwrap(), None);
        assert!(
            store.bookmark("gh", "pulls").unwrap().is_some(),
            "other streams keep theirs"
        );
    }

    #[test]
    fn an_unreadable_table_is_an_error_saying_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        std::fs::write(store.table_path(Deployment::NAME), b"").unwrap();
        for err in [
            store.check_tables().unwrap_err(),
            store
                .upsert(vec![dep("a", DeploymentStatus::Success, 1)])
                .unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::UnreadableTable { .. }), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("deployments.parquet") && text.contains("move it aside"),
                "{text}"
            );
        }
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
