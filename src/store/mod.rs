//! The lake: one Delta table per canonical entity (upsert on the primary key, see [`table`]),
//! bookmarks per (source, stream) committed with the rows they cover, raw pages, the metric
//! table ([`metrics`]) and the run history ([`runs`]), both Delta tables too.
//!
//! A table changes only by a Delta commit, atomic by the log's protocol; state files are written
//! to a temporary file renamed over the old one. Either way a killed run leaves everything as it
//! was or fully replaced. Writers hold the lake's lock ([`lock`]). The store never talks to a
//! source and never computes a metric; Parquet encoding is the codec's ([`codec`]), the only part of
//! the store that uses polars.
//!
//! Test hook: the environment variable `TANDEM_FAILPOINT=<name>[:<nth>]` (read once per process)
//! makes the process abort, like `kill -9` (no destructors, no flush), the `nth` time (default the
//! first) it reaches the named point of the commit path: `data-file-written` (a data file written,
//! not yet committed), `pending-written` (a checkpoint's pending bookmark saved, no table
//! committed), `table-committed` (one table of a checkpoint committed), `tables-committed` (every
//! table committed, the bookmark not saved), `bookmark-saved` (the bookmark saved, the pending
//! one not removed) and `delta-committed` (delta-rs wrote a commit to the log, its post-commit
//! hooks — a checkpoint when due — not run). It exists for the crash tests (`tests/crash.rs`);
//! unset, it does nothing, and no configuration reaches it.

pub mod bucket;
mod bulk_load;
pub mod codec;
pub mod delta;
pub mod lock;
pub mod maintain;
pub mod metrics;
pub mod runs;
mod table;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tandem_connectors::http::RawPage;
use tandem_connectors::model::{
    Change, ChangeRequest, Commit, Deployment, Incident, Quarantined, Table, Ticket, TicketTransition,
};

pub use bulk_load::{BulkLoad, DEFAULT_BUFFER_ROWS};
use codec::CodecError;
use delta::AsOf;
use table::OpenTable;

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
    Table(#[from] CodecError),
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
        "store: the lake at {lake} is in use by {}; wait for it to finish ({})",
        holder.as_deref().unwrap_or("another tandem process (it has not yet said which)"),
        if *leased {
            "a writer that was killed stops renewing its lease, which then runs out by itself and is taken over by the next run".to_owned()
        } else {
            format!("a writer on this host that was killed releases the lock by itself; one on another host that is gone: delete {lock_file}")
        }
    )]
    Locked {
        /// The lake: its directory, or its URL in object storage.
        lake: String,
        /// Who holds the lock, as the holder wrote it.
        holder: Option<String>,
        /// The lock file, or the lease object's URL.
        lock_file: String,
        /// Whether the lock is a lease in a bucket (which runs out by itself).
        leased: bool,
    },
    /// A lease of this writer (a lake in object storage) was taken over by another writer: this
    /// one could not renew it for longer than its term (stalled, or cut off from the bucket).
    #[error(
        "store: another writer took over this writer's lease {lease} (it could not be renewed for longer than `[store] lease_secs`); nothing more was committed: run it again"
    )]
    LeaseLost {
        /// The lease object's URL.
        lease: String,
    },
    /// A table file exists but cannot be read; it is never replaced silently.
    #[error(
        "store: table {path} is unreadable ({message}); tandem will not overwrite it: move it aside (or delete it), then run `tandem sync` again: the streams that wrote it are re-read from the start"
    )]
    UnreadableTable {
        /// The table file.
        path: PathBuf,
        /// Why it cannot be read.
        message: String,
    },
    /// A table's Delta log could not be written.
    #[error("store: {0}")]
    Delta(#[from] delta::DeltaError),
    /// A time-travel request names a version a table does not have or no longer keeps.
    #[error("store: {message} ({table})")]
    NoSuchVersion {
        /// The table directory.
        table: PathBuf,
        /// What was asked and which versions there are.
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
    /// Keys replaced by a different version at least as new.
    pub updated: usize,
}

/// The lake at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// The lake's lock, when opened for writing; released with the last clone.
    lock: Option<Arc<lock::LakeLock>>,
    /// The scope locks of a writer that shares the lake (its sources, the metric table).
    scopes: Vec<Arc<lock::LakeLock>>,
    /// Tables this process has opened for writing, with what it knows of their keys.
    open: Arc<Mutex<HashMap<&'static str, OpenTable>>>,
}

/// Records of every table, as one checkpoint of a stream commits them.
#[derive(Debug, Default)]
pub struct Tables {
    /// `deployments`.
    pub deployments: Vec<Deployment>,
    /// `changes`.
    pub changes: Vec<Change>,
    /// `commits`.
    pub commits: Vec<Commit>,
    /// `incidents`.
    pub incidents: Vec<Incident>,
    /// `tickets`.
    pub tickets: Vec<Ticket>,
    /// `ticket_transitions`.
    pub transitions: Vec<TicketTransition>,
    /// `change_requests`.
    pub change_requests: Vec<ChangeRequest>,
    /// `quarantine`.
    pub quarantine: Vec<Quarantined>,
}

impl Tables {
    /// Files a record under its table.
    pub fn push(&mut self, record: tandem_connectors::model::Record) {
        use tandem_connectors::model::Record;
        match record {
            Record::Deployment(r) => self.deployments.push(r),
            Record::Change(r) => self.changes.push(r),
            Record::Commit(r) => self.commits.push(r),
            Record::Incident(r) => self.incidents.push(r),
            Record::Ticket(r) => self.tickets.push(r),
            Record::TicketTransition(r) => self.transitions.push(r),
            Record::ChangeRequest(r) => self.change_requests.push(r),
        }
    }

    /// Records held, quarantined ones included.
    pub fn len(&self) -> usize {
        self.deployments.len()
            + self.changes.len()
            + self.commits.len()
            + self.incidents.len()
            + self.tickets.len()
            + self.transitions.len()
            + self.change_requests.len()
            + self.quarantine.len()
    }

    /// Whether no table has records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tables that have records.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (Deployment::NAME, self.deployments.is_empty()),
            (Change::NAME, self.changes.is_empty()),
            (Commit::NAME, self.commits.is_empty()),
            (Incident::NAME, self.incidents.is_empty()),
            (Ticket::NAME, self.tickets.is_empty()),
            (TicketTransition::NAME, self.transitions.is_empty()),
            (ChangeRequest::NAME, self.change_requests.is_empty()),
            (Quarantined::NAME, self.quarantine.is_empty()),
        ]
        .into_iter()
        .filter(|(_, empty)| !empty)
        .map(|(name, _)| name)
        .collect()
    }

    /// Every stored record of every canonical table (not the quarantine).
    pub fn read(store: &Store) -> Result<Vec<tandem_connectors::model::Record>, StoreError> {
        use tandem_connectors::model::Record;
        let mut all = Vec::new();
        all.extend(store.read::<Deployment>()?.into_iter().map(Record::Deployment));
        all.extend(store.read::<Change>()?.into_iter().map(Record::Change));
        all.extend(store.read::<Commit>()?.into_iter().map(Record::Commit));
        all.extend(store.read::<Incident>()?.into_iter().map(Record::Incident));
        all.extend(store.read::<Ticket>()?.into_iter().map(Record::Ticket));
        all.extend(
            store
                .read::<TicketTransition>()?
                .into_iter()
                .map(Record::TicketTransition),
        );
        all.extend(
            store
                .read::<ChangeRequest>()?
                .into_iter()
                .map(Record::ChangeRequest),
        );
        Ok(all)
    }

    /// Upserts every table that has records, each commit carrying `txn`.
    fn upsert(self, store: &Store, txn: Option<(&str, i64)>) -> Result<(), StoreError> {
        store.upsert_txn(self.deployments, txn)?;
        store.upsert_txn(self.changes, txn)?;
        store.upsert_txn(self.commits, txn)?;
        store.upsert_txn(self.incidents, txn)?;
        store.upsert_txn(self.tickets, txn)?;
        store.upsert_txn(self.transitions, txn)?;
        store.upsert_txn(self.change_requests, txn)?;
        store.upsert_txn(self.quarantine, txn)?;
        Ok(())
    }
}

/// A checkpoint's bookmark, saved before its tables are committed and effective only once every
/// one of them carries the checkpoint's application transaction (see [`Store::commit`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Pending {
    /// The stream, `source/stream`.
    key: String,
    /// The checkpoint's number within its stream: the `txn` version its commits carry.
    seq: i64,
    /// The bookmark.
    state: Value,
    /// The tables it commits.
    tables: Vec<String>,
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
            scopes: Vec::new(),
            open: Arc::default(),
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
            store.migrate()?;
            store.recover_all(None)?;
        }
        Ok(store)
    }

    /// Opens the lake at `root` for `command`, a writer of part of it — the streams of `sources`
    /// and, when `metrics`, the metric table and the reports — alongside other such writers: it
    /// holds the lake's lock shared and a lock per source (and one for the metric table). Fails,
    /// naming the holder, while a process writes the same part or has the lake alone
    /// (maintenance, migration). A lake of an earlier release is converted first, alone.
    pub fn open_for_parts(
        root: &Path,
        command: &str,
        sources: &[&str],
        metrics: bool,
    ) -> Result<Self, StoreError> {
        if !Self::open(root)?.legacy_tables().is_empty() {
            drop(Self::open_for_writing(root, command)?);
        }
        let mut store = Self::open(root)?;
        store.lock = Some(lock::LakeLock::acquire_shared(root, command)?);
        for source in sources {
            let scope = format!("source-{}", safe_name(source));
            let (lock, fresh) = lock::LakeLock::acquire_scope(root, &scope, command)?;
            store.scopes.push(lock);
            if fresh {
                store.recover_all(Some(source))?;
            }
        }
        if metrics {
            store
                .scopes
                .push(lock::LakeLock::acquire_scope(root, "metrics", command)?.0);
        }
        Ok(store)
    }

    /// Fails when a lease this writer holds was lost (a lake in object storage): a writer whose
    /// lease another took over must commit nothing more.
    pub(crate) fn check_held(&self) -> Result<(), StoreError> {
        match self.lock.iter().chain(&self.scopes).find(|l| !l.is_held()) {
            Some(lost) => Err(StoreError::LeaseLost {
                lease: lost.describe(),
            }),
            None => Ok(()),
        }
    }

    /// Whether this store has the lake alone (the lake's lock held exclusively, here or by the
    /// opening it shares): no other process commits while it writes.
    fn alone(&self) -> bool {
        self.lock
            .as_ref()
            .is_some_and(|lock| lock.mode() == lock::Mode::Exclusive)
    }

    /// Removes temporary files a killed write left behind; the files they were replacing are
    /// intact, so nothing is lost.
    fn remove_leftovers(&self) {
        for dir in ["tables", "state", "state/pending", "metrics"] {
            let Ok(entries) = std::fs::read_dir(self.root.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "tmp") {
                    // A file, or the link of a metric table switch of an earlier release.
                    tracing::debug!(path = %path.display(), "Removing a temporary file left by an interrupted write.");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // A log entry (or checkpoint) is written to a staging copy, `<name>#<n>`, then linked into
        // place: a writer killed in between leaves the copy, which readers ignore but nothing
        // else would ever remove.
        for dir in self.delta_dirs() {
            let log = dir.join("_delta_log");
            let Ok(entries) = std::fs::read_dir(&log) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().contains('#') {
                    tracing::debug!(path = %entry.path().display(), "Removing a log entry's staging copy left by an interrupted commit.");
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    /// The lake directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the metric computation keeps what it works out from the whole history of the
    /// tables (the change links), for the next computation over the same tables; on this machine
    /// only, never uploaded, and safe to delete.
    pub fn prepared_dir(&self) -> PathBuf {
        self.root.join("prepared")
    }

    /// The directory of a table's Delta table.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.root.join("tables").join(table)
    }

    /// The single Parquet file a table was kept in before the lake's tables were Delta tables;
    /// [`Store::migrate`] converts it.
    pub fn legacy_table_path(&self, table: &str) -> PathBuf {
        self.root.join("tables").join(format!("{table}.parquet"))
    }

    /// The Parquet data files of a table as of `at` (none for a table never written; the single
    /// file of a lake not yet migrated).
    pub fn table_files(&self, table: &str, at: AsOf) -> Result<Vec<PathBuf>, StoreError> {
        match table::open(&self.table_dir(table), at)? {
            Some(log) => table::file_paths(&log),
            None => {
                let legacy = self.legacy_table_path(table);
                Ok(if legacy.exists() { vec![legacy] } else { Vec::new() })
            }
        }
    }

    /// The tables still kept in the single-file layout of an earlier release.
    pub fn legacy_tables(&self) -> Vec<&'static str> {
        TABLES
            .into_iter()
            .filter(|t| self.legacy_table_path(t).exists())
            .collect()
    }

    /// A table's row count, from its data files' statistics.
    pub fn read_count(&self, table: &str) -> Result<usize, StoreError> {
        Ok(match table::open(&self.table_dir(table), AsOf::Latest)? {
            Some(log) => log.files()?.iter().filter_map(|f| f.records).sum(),
            None => 0,
        })
    }

    /// A table's version as of `at` (`None`: never written).
    pub fn table_version(&self, table: &str, at: AsOf) -> Result<Option<i64>, StoreError> {
        Ok(table::open(&self.table_dir(table), at)?.map(|log| log.version()))
    }

    /// Whether any canonical table has been written.
    pub fn has_tables(&self) -> bool {
        TABLES
            .iter()
            .any(|t| delta::exists(&self.table_dir(t)) || self.legacy_table_path(t).exists())
    }

    /// Every Delta table of the lake: the canonical tables, the metric table, the run history.
    fn delta_dirs(&self) -> Vec<PathBuf> {
        TABLES
            .iter()
            .map(|t| self.table_dir(t))
            .chain([self.metrics_dir(), self.runs_dir()])
            .filter(|d| delta::exists(d))
            .collect()
    }

    /// Runs `f` on the table's open log, opening (and creating) it first.
    fn with_table<T: Table, R>(
        &self,
        f: impl FnOnce(&mut OpenTable) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !open.contains_key(T::NAME) {
            let log = delta::Log::create(
                &self.table_dir(T::NAME),
                T::NAME,
                T::COLUMNS,
                T::ANCHOR.is_some(),
                table_properties(),
            )?;
            open.insert(T::NAME, OpenTable::new(log));
        }
        self.check_held()?;
        let Some(table) = open.get_mut(T::NAME) else {
            return Err(StoreError::Delta(delta::DeltaError {
                dir: self.table_dir(T::NAME),
                conflict: false,
                message: "the table was not opened".to_owned(),
            }));
        };
        // Unless this process has the lake alone, another may have committed since: what this
        // one knows of the table (its files, which file holds a key) is read again when it did.
        if !self.alone() {
            if let Err(e) = table.log.refresh() {
                open.remove(T::NAME);
                return Err(e.into());
            }
        }
        let result = f(table);
        if result.is_err() {
            // Whatever failed, the next use reads the log afresh.
            open.remove(T::NAME);
        }
        result
    }

    fn bookmarks_path(&self) -> PathBuf {
        self.root.join("state").join("bookmarks.json")
    }

    /// All rows of a table, sorted by key (empty when it was never written). A data file polars
    /// cannot decode (truncated, empty, not Parquet) or a log that cannot be read is
    /// [`StoreError::UnreadableTable`], saying what to do.
    pub fn read<T: Table>(&self) -> Result<Vec<T>, StoreError> {
        self.read_as_of::<T>(AsOf::Latest)
    }

    /// All rows of a table as of `at`, sorted by key.
    pub fn read_as_of<T: Table>(&self, at: AsOf) -> Result<Vec<T>, StoreError> {
        if let Some(log) = table::open(&self.table_dir(T::NAME), at)? {
            return table::read_all::<T>(&log);
        }
        let path = self.legacy_table_path(T::NAME);
        codec::read_table::<T>(&path).map_err(|e| match e {
            CodecError::Polars { source, .. } => StoreError::UnreadableTable {
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
        let _state = self.state_guard()?;
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
        self.write_json(&self.written_path(), &written)
    }

    /// Checks the tables before a sync. A table that was written but whose Delta table is gone
    /// voids the bookmarks of the streams that wrote it, so they are read again from the start
    /// (with a warning naming the table); their other tables are upserted, so nothing is
    /// duplicated. A table whose log or data files cannot be read stops the sync
    /// ([`StoreError::UnreadableTable`]): it is never silently replaced. Returns the voided tables
    /// and their streams.
    pub fn check_tables(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        for name in TABLES {
            let dir = self.table_dir(name);
            if bucket::is_mounted(&dir) {
                self.check_objects(&dir)?;
                continue;
            }
            if let Some(log) = table::open(&dir, AsOf::Latest)? {
                for path in table::file_paths(&log)? {
                    codec::check_table(&path).map_err(|e| StoreError::UnreadableTable {
                        message: match e {
                            CodecError::Polars { source, .. } => {
                                format!("its data file {}: {source}", path.display())
                            }
                            CodecError::Io { source, .. } => {
                                format!("its data file {} cannot be opened: {source}", path.display())
                            }
                            other => other.to_string(),
                        },
                        path: dir.clone(),
                    })?;
                }
            }
        }
        let mut voided = Vec::new();
        for (table, streams) in self.written()? {
            let dir = self.table_dir(&table);
            if delta::exists(&dir) || self.legacy_table_path(&table).exists() {
                continue;
            }
            {
                let _state = self.state_guard()?;
                let mut all = self.bookmarks()?;
                for stream in &streams {
                    all.remove(stream);
                }
                self.write_bookmarks(&all)?;
            }
            tracing::warn!(
                table = %table,
                path = %dir.display(),
                streams = ?streams,
                "A table written before is gone; its streams are read again from the start."
            );
            voided.push((table, streams.into_iter().collect()));
        }
        Ok(voided)
    }

    /// [`Store::check_tables`] for a table in a bucket, without downloading it: every data file
    /// its latest version names is there, at the size its log records (an object is written
    /// whole or not at all, so a file there at its size is the file committed).
    fn check_objects(&self, dir: &Path) -> Result<(), StoreError> {
        let Some(log) = table::open(dir, AsOf::Latest)? else {
            return Ok(());
        };
        let listed: HashMap<PathBuf, u64> = bucket::list_dir(dir)
            .map_err(|e| io_error("list", dir, e))?
            .unwrap_or_default()
            .into_iter()
            .map(|(path, size, _)| (path, size))
            .collect();
        for file in log.files()? {
            let found = listed.get(&dir.join(&file.path)).copied();
            if found != u64::try_from(file.size).ok() {
                return Err(StoreError::UnreadableTable {
                    path: dir.to_owned(),
                    message: match found {
                        None => format!(
                            "its log names the data file {}, which is not in the bucket",
                            file.path
                        ),
                        Some(size) => format!(
                            "its data file {} is {size} bytes in the bucket, not the {} its log records",
                            file.path, file.size
                        ),
                    },
                });
            }
        }
        Ok(())
    }

    fn written_path(&self) -> PathBuf {
        self.root.join("state").join("tables.json")
    }

    /// Each table written so far and the streams (`source/stream`) that wrote it.
    fn written(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
        read_json(&self.written_path(), |path, message| StoreError::Bookmarks {
            path,
            message,
        })
    }

    /// Inserts or replaces rows by primary key, as one commit; a stored row newer than the
    /// incoming one is kept. Only the data files holding replaced keys are rewritten.
    pub fn upsert<T: Table>(&self, rows: Vec<T>) -> Result<UpsertStats, StoreError> {
        self.upsert_txn(rows, None)
    }

    fn upsert_txn<T: Table>(
        &self,
        rows: Vec<T>,
        txn: Option<(&str, i64)>,
    ) -> Result<UpsertStats, StoreError> {
        if rows.is_empty() {
            return Ok(UpsertStats::default());
        }
        // Another writer's commit that removed a file this one rewrites conflicts with it: the
        // upsert is done again from the table as it now is (its unreferenced files go with the
        // next vacuum). With the lake alone there is no other writer, and no copy to keep.
        let stats = if self.alone() {
            self.with_table::<T, _>(|t| table::upsert(t, rows, txn))?
        } else {
            let mut attempt = 1;
            loop {
                match self.with_table::<T, _>(|t| table::upsert(t, rows.clone(), txn)) {
                    Err(StoreError::Delta(e)) if e.conflict && attempt < CONFLICT_ATTEMPTS => {
                        tracing::info!(
                            table = T::NAME,
                            attempt,
                            "A concurrent commit conflicts; upserting again."
                        );
                        attempt += 1;
                    }
                    other => break other?,
                }
            }
        };
        if txn.is_some() {
            failpoint("table-committed");
        }
        Ok(stats)
    }

    /// Commits one checkpoint of a stream: its records and quarantined records, and its bookmark
    /// `state` (none: rows read after the last checkpoint of a stream that failed). The bookmark
    /// takes effect exactly when the rows do: it is saved as pending, each table's commit carries
    /// the checkpoint's application transaction (`txn`: `tandem:{source}/{stream}`, the
    /// checkpoint's number), and a pending bookmark whose tables all carry it is the stream's
    /// bookmark — whether the process lived to say so or is found killed by the next writer
    /// ([`Store::open_for_writing`]). A kill before every table committed leaves the previous
    /// bookmark, and the rows already committed are upserted again (same keys, no duplicate).
    pub fn commit(
        &self,
        source: &str,
        stream: &str,
        tables: Tables,
        state: Option<Value>,
    ) -> Result<(), StoreError> {
        self.check_held()?;
        let key = bookmark_key(source, stream);
        self.recover(&key)?;
        // The number is taken before any table commits with it: a commit killed half-way (with
        // or without a bookmark) must not leave a table carrying the number the next checkpoint
        // would reuse, which would make that checkpoint's pending bookmark look committed.
        let seq = {
            let _state = self.state_guard()?;
            let mut sequences = self.sequences()?;
            let seq = sequences.get(&key).copied().unwrap_or(0) + 1;
            sequences.insert(key.clone(), seq);
            self.write_json(&self.sequences_path(), &sequences)?;
            seq
        };
        let names = tables.names();
        if let Some(state) = &state {
            let pending = Pending {
                key: key.clone(),
                seq,
                state: state.clone(),
                tables: names.iter().map(|n| (*n).to_owned()).collect(),
            };
            self.write_json(&self.pending_path(&key), &pending)?;
            failpoint("pending-written");
        }
        self.note_written(source, stream, &names)?;
        let app = txn_app(&key);
        tables.upsert(self, Some((&app, seq)))?;
        failpoint("tables-committed");
        if let Some(state) = state {
            {
                let _state = self.state_guard()?;
                let mut all = self.bookmarks()?;
                all.insert(key.clone(), state);
                self.write_bookmarks(&all)?;
            }
            failpoint("bookmark-saved");
            let pending = self.pending_path(&key);
            bucket::remove(&pending).map_err(|e| io_error("remove", &pending, e))?;
        }
        Ok(())
    }

    /// Settles a pending bookmark of `key` left by a killed writer: effective when every table
    /// it covers committed its checkpoint, otherwise dropped (its number stays used).
    fn recover(&self, key: &str) -> Result<(), StoreError> {
        let path = self.pending_path(key);
        bucket::pull(&path).map_err(|e| io_error("read", &path, e))?;
        let pending: Pending = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::State {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        let _state = self.state_guard()?;
        let app = txn_app(key);
        let mut committed = true;
        for name in &pending.tables {
            let at = table::open(&self.table_dir(name), AsOf::Latest)?;
            let version = match at {
                Some(log) => log.txn(&app)?,
                None => None,
            };
            committed &= version.is_some_and(|v| v >= pending.seq);
        }
        let mut sequences = self.sequences()?;
        let seq = sequences.entry(key.to_owned()).or_default();
        *seq = (*seq).max(pending.seq);
        self.write_json(&self.sequences_path(), &sequences)?;
        if committed {
            let mut all = self.bookmarks()?;
            all.insert(key.to_owned(), pending.state);
            self.write_bookmarks(&all)?;
            tracing::info!(
                stream = key,
                "A checkpoint committed by a run that was stopped takes effect."
            );
        } else {
            tracing::info!(
                stream = key,
                "A checkpoint a stopped run did not finish committing is read again."
            );
        }
        bucket::remove(&path).map_err(|e| io_error("remove", &path, e))?;
        Ok(())
    }

    /// Settles every pending bookmark (see [`Store::recover`]), or only those of `source`'s streams.
    fn recover_all(&self, source: Option<&str>) -> Result<(), StoreError> {
        let dir = self.root.join("state").join("pending");
        bucket::pull_dir(&dir).map_err(|e| io_error("read", &dir, e))?;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| io_error("read", &path, e))?;
            let pending: Pending = serde_json::from_slice(&bytes).map_err(|e| StoreError::State {
                path: path.clone(),
                message: e.to_string(),
            })?;
            if source.is_none_or(|s| pending.key.split_once('/').is_some_and(|(of, _)| of == s)) {
                self.recover(&pending.key)?;
            }
        }
        Ok(())
    }

    fn pending_path(&self, key: &str) -> PathBuf {
        self.root
            .join("state")
            .join("pending")
            .join(format!("{}.json", safe_name(key)))
    }

    fn sequences_path(&self) -> PathBuf {
        self.root.join("state").join("sequences.json")
    }

    /// The last checkpoint number used by each stream.
    fn sequences(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        read_json(&self.sequences_path(), |path, message| StoreError::State {
            path,
            message,
        })
    }

    /// Writes `value` as pretty JSON to `path`, atomically.
    fn write_json<T: serde::Serialize>(&self, path: &Path, value: &T) -> Result<(), StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error("create directory", parent, e))?;
        }
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| io_error("encode", path, std::io::Error::other(e)))?;
        crate::atomic::write_atomic(
            path,
            |file| std::io::Write::write_all(file, &bytes).map_err(|e| io_error("write", path, e)),
            io_error,
        )?;
        bucket::push(path).map_err(|e| io_error("upload", path, e))
    }

    /// Converts the tables of a lake written before they were Delta tables (one Parquet file
    /// each, `tables/<name>.parquet`) into Delta tables, without any request to a source: each
    /// file's rows are committed as the table's first rows, then the file is removed. A run
    /// killed in between converts again (the commit is marked, so never twice). Returns the
    /// tables converted and their rows.
    pub fn migrate(&self) -> Result<Vec<(&'static str, usize)>, StoreError> {
        fn one<T: Table>(store: &Store, done: &mut Vec<(&'static str, usize)>) -> Result<(), StoreError> {
            let legacy = store.legacy_table_path(T::NAME);
            if !legacy.exists() {
                return Ok(());
            }
            let converted = match table::open(&store.table_dir(T::NAME), AsOf::Latest)? {
                Some(log) => log.txn(MIGRATION_APP)?.is_some(),
                None => false,
            };
            if !converted {
                let rows = codec::read_table::<T>(&legacy).map_err(|e| StoreError::UnreadableTable {
                    path: legacy.clone(),
                    message: e.to_string(),
                })?;
                let count = rows.len();
                store.with_table::<T, _>(|t| table::upsert(t, rows, Some((MIGRATION_APP, 1))))?;
                tracing::info!(table = T::NAME, rows = count, "Table converted to a Delta table.");
                done.push((T::NAME, count));
            }
            std::fs::remove_file(&legacy).map_err(|e| io_error("remove", &legacy, e))
        }
        let mut done = Vec::new();
        one::<Deployment>(self, &mut done)?;
        one::<Change>(self, &mut done)?;
        one::<Commit>(self, &mut done)?;
        one::<Incident>(self, &mut done)?;
        one::<Ticket>(self, &mut done)?;
        one::<TicketTransition>(self, &mut done)?;
        one::<ChangeRequest>(self, &mut done)?;
        one::<Quarantined>(self, &mut done)?;
        Ok(done)
    }

    /// Appends fetched pages to the raw archive: one gzip-compressed NDJSON file per checkpoint at
    /// `raw/{source}/{stream}/{time}-{first page no.}.ndjson.gz`, one page (with its URL, status,
    /// response headers and body) per line.
    pub fn archive_raw(&self, source: &str, stream: &str, pages: &[RawPage]) -> Result<(), StoreError> {
        let path = self.archive_raw_file(source, stream, pages)?;
        if let Some(path) = path {
            bucket::push(&path).map_err(|e| io_error("upload", &path, e))?;
        }
        Ok(())
    }

    fn archive_raw_file(
        &self,
        source: &str,
        stream: &str,
        pages: &[RawPage],
    ) -> Result<Option<PathBuf>, StoreError> {
        let Some(first) = pages.first() else {
            return Ok(None);
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
        )?;
        Ok(Some(path))
    }

    /// Every archived page of a stream, oldest file first.
    pub fn raw_pages(&self, source: &str, stream: &str) -> Result<Vec<RawPage>, StoreError> {
        let dir = self
            .root
            .join("raw")
            .join(safe_name(source))
            .join(safe_name(stream));
        bucket::fetch_dir(&dir).map_err(|e| io_error("read", &dir, e))?;
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

    /// Replaces whole tables, each by one commit: for rebuilding the tables from what is
    /// stored, where an upsert's "newer wins" would keep the old rows. The quarantine is kept.
    pub fn replace_all(&self, tables: Tables) -> Result<(), StoreError> {
        self.replace(tables.deployments)?;
        self.replace(tables.changes)?;
        self.replace(tables.commits)?;
        self.replace(tables.incidents)?;
        self.replace(tables.tickets)?;
        self.replace(tables.transitions)?;
        self.replace(tables.change_requests)?;
        Ok(())
    }

    fn replace<T: Table>(&self, rows: Vec<T>) -> Result<(), StoreError> {
        if rows.is_empty() && !delta::exists(&self.table_dir(T::NAME)) {
            return Ok(());
        }
        self.with_table::<T, _>(|t| table::replace(t, rows))
    }

    /// The saved state of a stream from which its next sync resumes, a checkpoint a killed run
    /// committed included (see [`Store::commit`]).
    pub fn resume(&self, source: &str, stream: &str) -> Result<Option<Value>, StoreError> {
        self.recover(&bookmark_key(source, stream))?;
        self.bookmark(source, stream)
    }

    /// The saved state of a stream, if any.
    pub fn bookmark(&self, source: &str, stream: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.bookmarks()?.remove(&bookmark_key(source, stream)))
    }

    /// Holds the lake's state lock (`state/lock`) until dropped: the read-modify-write of a state
    /// file every writer shares (bookmarks, checkpoint numbers, coverage, which streams wrote a
    /// table) happens under it, so writers that share the lake never undo each other's update.
    /// Held for a few file operations only, never across a table's commit; never taken twice at
    /// once by one thread (it would wait for itself).
    pub(crate) fn state_guard(&self) -> Result<StateGuard, StoreError> {
        if bucket::is_mounted(&self.root) {
            return self.state_lease();
        }
        let path = self.root.join("state").join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        file.lock().map_err(|e| io_error("lock", &path, e))?;
        Ok(StateGuard::File(file))
    }

    /// [`Store::state_guard`] for a lake in object storage: the lease `locks/state`, waited for
    /// (it is held for a few requests at a time) up to [`STATE_LEASE_WAIT`]; a holder killed
    /// while holding it delays the others by one lease term at most.
    fn state_lease(&self) -> Result<StateGuard, StoreError> {
        let path = self.root.join(lock::LOCKS_DIR).join("state");
        let me = lock::LockHolder {
            host: lock::host_name(),
            pid: std::process::id(),
            started_at: chrono::Utc::now(),
            command: "state update".to_owned(),
        };
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            match bucket::Lease::take(&path, &me) {
                Ok((lease, _)) => {
                    bucket::begin_guarded();
                    return Ok(StateGuard::Lease(lease));
                }
                Err(bucket::Refused::Held(holder)) if started.elapsed() < STATE_LEASE_WAIT => {
                    tracing::debug!(holder = %holder, "Waiting for the lake's state lease.");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(500));
                }
                Err(bucket::Refused::Held(holder)) => {
                    return Err(StoreError::Locked {
                        lake: bucket::url_of_lake(&self.root),
                        holder: Some(holder.to_string()),
                        lock_file: bucket::url_of_lake(&path),
                        leased: true,
                    });
                }
                Err(bucket::Refused::Error(e)) => {
                    return Err(io_error("lock", &path, std::io::Error::other(e)));
                }
            }
        }
    }

    /// Writes `value` as pretty JSON to `state/<name>`, atomically: the one way the store's small
    /// state files (last run, coverage) are written.
    pub fn write_state<T: serde::Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        self.write_json(&self.root.join("state").join(name), value)
    }

    /// Every saved stream state, by `source/stream`.
    pub fn bookmarks_by_stream(&self) -> Result<BTreeMap<String, Value>, StoreError> {
        Ok(self.bookmarks()?.into_iter().collect())
    }

    /// Saves a stream's state (atomically, with every other stream's state unchanged).
    pub fn save_bookmark(&self, source: &str, stream: &str, state: Value) -> Result<(), StoreError> {
        let _state = self.state_guard()?;
        let mut all = self.bookmarks()?;
        all.insert(bookmark_key(source, stream), state);
        self.write_bookmarks(&all)
    }

    /// Forgets a stream's state, so the next sync reads it in full.
    pub fn clear_bookmark(&self, source: &str, stream: &str) -> Result<(), StoreError> {
        self.recover(&bookmark_key(source, stream))?;
        let _state = self.state_guard()?;
        let mut all = self.bookmarks()?;
        if all.remove(&bookmark_key(source, stream)).is_some() {
            self.write_bookmarks(&all)?;
        }
        Ok(())
    }

    /// Row counts of every canonical table and the quarantine.
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
        read_json(&self.bookmarks_path(), |path, message| StoreError::Bookmarks {
            path,
            message,
        })
    }

    fn write_bookmarks(&self, all: &HashMap<String, Value>) -> Result<(), StoreError> {
        let sorted: BTreeMap<&String, &Value> = all.iter().collect();
        self.write_json(&self.bookmarks_path(), &sorted)
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
pub const TABLES: [&str; 8] = [
    Deployment::NAME,
    Change::NAME,
    Commit::NAME,
    Incident::NAME,
    Ticket::NAME,
    TicketTransition::NAME,
    ChangeRequest::NAME,
    Quarantined::NAME,
];

/// A small state file's JSON; a missing file is the default value, an invalid one `corrupt`.
fn read_json<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    corrupt: impl FnOnce(PathBuf, String) -> StoreError,
) -> Result<T, StoreError> {
    bucket::pull(path).map_err(|source| io_error("read", path, source))?;
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| corrupt(path.to_owned(), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(io_error("read", path, source)),
    }
}

/// Aborts the process the `nth` time it reaches the point `name`, when `TANDEM_FAILPOINT` says so
/// (see the module doc): the crash tests' way of killing a commit at a precise step.
pub(crate) fn failpoint(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let armed = ARMED.get_or_init(|| {
        let value = std::env::var("TANDEM_FAILPOINT").ok()?;
        let (point, nth) = match value.split_once(':') {
            Some((point, nth)) => (point, nth.parse().ok()?),
            None => (value.as_str(), 1),
        };
        Some((point.to_owned(), nth))
    });
    if let Some((point, nth)) = armed
        && point == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        std::process::abort();
    }
}

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

/// The application transaction (`txn` appId) of a stream's checkpoints.
fn txn_app(key: &str) -> String {
    format!("tandem:{key}")
}

/// The application transaction that marks a table's conversion from the single-file layout.
const MIGRATION_APP: &str = "tandem:migrate";

/// The table properties every Delta table tandem creates gets: how long removed files and log
/// entries are kept, which bounds how far back time travel reaches (see `tandem maintain`).
fn table_properties() -> HashMap<String, Option<String>> {
    HashMap::from([
        (
            "delta.logRetentionDuration".to_owned(),
            Some(format!("interval {} days", RETENTION_DAYS)),
        ),
        (
            "delta.deletedFileRetentionDuration".to_owned(),
            Some(format!("interval {} days", RETENTION_DAYS)),
        ),
        // Expired log entries are removed by `tandem maintain` with the configured retention,
        // never by a commit with the default one.
        (
            "delta.enableExpiredLogCleanup".to_owned(),
            Some("false".to_owned()),
        ),
    ])
}

/// The default time-travel window, in days.
pub const RETENTION_DAYS: i64 = 90;

/// The state lock held ([`Store::state_guard`]); released when dropped.
#[derive(Debug)]
pub(crate) enum StateGuard {
    /// `state/lock`, locked.
    File(std::fs::File),
    /// The lease `locks/state` in the lake's bucket; deleted when dropped.
    Lease(#[allow(dead_code)] bucket::Lease),
}

impl Drop for StateGuard {
    fn drop(&mut self) {
        match self {
            Self::File(file) => {
                let _ = file.unlock();
            }
            Self::Lease(_) => bucket::end_guarded(),
        }
    }
}

/// How long a writer waits for the state lease of a lake in object storage.
const STATE_LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Attempts of an upsert whose commit other writers' commits keep conflicting with.
const CONFLICT_ATTEMPTS: u32 = 5;

#[cfg(test)]
mod delta_tests;

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

        std::fs::remove_dir_all(store.table_dir(Deployment::NAME)).unwrap();
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
        store
            .upsert(vec![dep("a", DeploymentStatus::Success, 1)])
            .unwrap();
        let file = store.table_files(Deployment::NAME, AsOf::Latest).unwrap()[0].clone();
        std::fs::write(&file, b"").unwrap();
        // A new process: nothing known of the table's keys.
        let store = Store::open(dir.path()).unwrap();
        for err in [
            store.check_tables().unwrap_err(),
            store
                .upsert(vec![dep("a", DeploymentStatus::Success, 1)])
                .unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::UnreadableTable { .. }), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("deployments") && text.contains("move it aside"),
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
