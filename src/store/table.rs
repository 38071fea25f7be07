//! A canonical table as a Delta table: the copy-on-write upsert that rewrites only the files
//! holding the keys it replaces, reading a version's rows or files, compaction of small files.
//!
//! A table with an anchor column (see `Table::ANCHOR`) is partitioned by the anchor's month, so a
//! page of recent records touches the newest partitions only. Which file holds a key is learnt per
//! partition from the files' `id` and updated columns, once per process, and kept up to date by
//! this process's own commits; another writer's commit (detected by the version) resets it.
//! Nothing here knows a particular table or talks to a source.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tandem_connectors::model::Table;

use super::codec::{self, CodecError};
use super::delta::{self, AsOf, DataFile, Log, NewFile, Operation};
use super::{StoreError, UpsertStats};

/// Where each key of a partition lives: its data file and its updated instant (ms).
type PartitionIndex = HashMap<String, (String, i64)>;

/// A new data file of a partition: the keys (with their updated instants) written to it, and the
/// files it replaces, whose other keys it now holds too.
struct Moved {
    partition: Option<String>,
    path: String,
    keys: Vec<(String, i64)>,
    replaced: Vec<String>,
}

/// A table's open log and what this process knows of its keys.
#[derive(Debug)]
pub(crate) struct OpenTable {
    pub(crate) log: Log,
    /// Per partition loaded so far (`None`: the unpartitioned table).
    index: HashMap<Option<String>, PartitionIndex>,
    /// Every data file of the version, by path, once an upsert needed them: read from the log
    /// once, then kept up to date by this process's commits, because the log's list of files is
    /// replayed from its last checkpoint and later commits each time it is asked for.
    files: Option<HashMap<String, DataFile>>,
    /// The version `index` and `files` describe.
    indexed_version: i64,
}

impl OpenTable {
    pub(crate) fn new(log: Log) -> Self {
        let indexed_version = log.version();
        Self {
            log,
            index: HashMap::new(),
            files: None,
            indexed_version,
        }
    }

    /// Forgets what it knew of the keys and files (another version than the one it describes).
    fn forget(&mut self) {
        self.index.clear();
        self.files = None;
        self.indexed_version = self.log.version();
    }

    /// Every data file of the version, read from the log when not known yet.
    fn files(&mut self) -> Result<&HashMap<String, DataFile>, StoreError> {
        if self.files.is_none() {
            let files = self.log.files().map_err(StoreError::Delta)?;
            self.files = Some(files.into_iter().map(|f| (f.path.clone(), f)).collect());
        }
        Ok(self.files.get_or_insert_with(HashMap::new))
    }

    /// The key index of `partition`, read from its files when not known yet.
    fn partition_index<T: Table>(
        &mut self,
        partition: &Option<String>,
    ) -> Result<&mut PartitionIndex, StoreError> {
        if self.indexed_version != self.log.version() {
            self.forget();
        }
        if !self.index.contains_key(partition) {
            let mut index = PartitionIndex::new();
            let dir = self.log.dir().to_owned();
            for file in self.files()?.values() {
                if &file.partition != partition {
                    continue;
                }
                let path = dir.join(&file.path);
                super::bucket::fetch(&path).map_err(|e| super::io_error("download", &path, e))?;
                let keys =
                    codec::read_keys(&path, T::NAME, T::UPDATED_AT).map_err(|e| unreadable(&path, e))?;
                for (key, at) in keys {
                    index.insert(key, (file.path.clone(), at));
                }
            }
            self.index.insert(partition.clone(), index);
        }
        Ok(self.index.entry(partition.clone()).or_default())
    }
}

/// The partition of a row: the month of its anchor, for a partitioned table.
pub(crate) fn partition_of<T: Table>(row: &T) -> Option<String> {
    T::ANCHOR?;
    Some(row.anchor()?.format("%Y-%m").to_string())
}

/// Upserts `rows` into the table as one commit (with the application transaction `txn`): rows
/// of new keys go into a new file per partition; a file holding a key that a newer (or equally
/// new) and different row replaces is rewritten with its other rows, and only such files are. A
/// stored row newer than the incoming one is kept; one that comes back unchanged is left alone.
pub(crate) fn upsert<T: Table>(
    table: &mut OpenTable,
    rows: Vec<T>,
    txn: Option<(&str, i64)>,
) -> Result<UpsertStats, StoreError> {
    // The batch itself may carry a key twice: the newest (the later one on a tie) wins.
    let mut batch: BTreeMap<String, T> = BTreeMap::new();
    for row in rows {
        match batch.get(row.key()) {
            Some(old) if row.updated_at() < old.updated_at() => {}
            _ => {
                batch.insert(row.key().to_owned(), row);
            }
        }
    }
    let mut by_partition: BTreeMap<Option<String>, Vec<T>> = BTreeMap::new();
    for row in batch.into_values() {
        by_partition.entry(partition_of(&row)).or_default().push(row);
    }
    let mut stats = UpsertStats::default();
    let (mut adds, mut removes) = (Vec::new(), Vec::new());
    // Index updates to apply once the commit succeeded.
    let mut moved: Vec<Moved> = Vec::new();
    for (partition, rows) in by_partition {
        let index = table.partition_index::<T>(&partition)?;
        let mut replacing: BTreeMap<String, Vec<T>> = BTreeMap::new();
        let mut fresh = Vec::new();
        for row in rows {
            match index.get(row.key()) {
                None => {
                    stats.inserted += 1;
                    fresh.push(row);
                }
                Some((file, at)) if row.updated_at().timestamp_millis() >= *at => {
                    stats.updated += 1;
                    replacing.entry(file.clone()).or_default().push(row);
                }
                Some(_) => {}
            }
        }
        if fresh.is_empty() && replacing.is_empty() {
            continue;
        }
        // The rewritten files' rows, the replaced ones swapped for their new versions, and the
        // new keys: one new file for the partition. The rewritten files stay columns; only the
        // rows being replaced are decoded, to tell a changed row from one that came back as is.
        let mut out: Vec<T> = fresh;
        let mut rewritten: Vec<(codec::StoredRows, Vec<String>)> = Vec::new();
        let mut replaced = Vec::new();
        for (path, new_rows) in replacing {
            let Some(file) = table.files()?.get(&path).cloned() else {
                return Err(StoreError::Delta(delta::DeltaError {
                    dir: table.log.dir().to_owned(),
                    conflict: false,
                    message: format!("the key index names {path}, which the log does not"),
                }));
            };
            let stored = read_stored::<T>(table.log.dir(), &file.path)?;
            let keys: Vec<&str> = new_rows.iter().map(Table::key).collect();
            let old: HashMap<String, T> = stored
                .records::<T>(&keys)
                .map_err(|e| unreadable(&table.log.dir().join(&file.path), e))?
                .into_iter()
                .map(|r| (r.key().to_owned(), r))
                .collect();
            // An incremental read overlaps what it read before: rows that come back exactly as
            // stored change nothing, and a file only they would touch is not rewritten.
            let mut changed = Vec::new();
            for row in new_rows {
                let same = old
                    .get(row.key())
                    .is_some_and(|old| serde_json::to_value(old).ok() == serde_json::to_value(&row).ok());
                if same {
                    stats.updated -= 1;
                } else {
                    changed.push(row);
                }
            }
            if changed.is_empty() {
                continue;
            }
            rewritten.push((stored, changed.iter().map(|r| r.key().to_owned()).collect()));
            out.extend(changed);
            replaced.push(file.path.clone());
            removes.push(file);
        }
        if out.is_empty() {
            continue;
        }
        let new = write_file(table.log.dir(), &partition, &rewritten, &out)?;
        super::failpoint("data-file-written");
        let keys = out
            .iter()
            .map(|r| (r.key().to_owned(), r.updated_at().timestamp_millis()))
            .collect();
        moved.push(Moved {
            partition,
            path: new.path.clone(),
            keys,
            replaced,
        });
        adds.push(new);
    }
    if adds.is_empty() && removes.is_empty() && txn.is_none() {
        return Ok(stats);
    }
    let added: Vec<DataFile> = adds
        .iter()
        .map(|a| DataFile {
            path: a.path.clone(),
            partition: a.partition.clone(),
            size: a.size,
            records: None,
        })
        .collect();
    let before = table.log.version();
    let version = table
        .log
        .commit(adds, &removes, txn, Operation::Upsert)
        .map_err(StoreError::Delta)?;
    if version == before + 1 && table.indexed_version == before {
        // Only this commit happened since the index was read: keep it, updated.
        for moved in moved {
            let index = table.index.entry(moved.partition).or_default();
            if !moved.replaced.is_empty() {
                for (file, _) in index.values_mut() {
                    if moved.replaced.contains(file) {
                        file.clone_from(&moved.path);
                    }
                }
            }
            for (key, at) in moved.keys {
                index.insert(key, (moved.path.clone(), at));
            }
        }
        if let Some(files) = table.files.as_mut() {
            for file in &removes {
                files.remove(&file.path);
            }
            for file in added {
                files.insert(file.path.clone(), file);
            }
        }
        table.indexed_version = version;
    } else {
        table.forget();
    }
    Ok(stats)
}

/// Merges each partition's files smaller than the compaction target into one file, when it has at
/// least `min_files` of them; no row changes. Returns the number of files merged away.
pub(crate) fn compact<T: Table>(table: &mut OpenTable, min_files: usize) -> Result<usize, StoreError> {
    let mut small: BTreeMap<Option<String>, Vec<DataFile>> = BTreeMap::new();
    for file in table.log.files().map_err(StoreError::Delta)? {
        if file.size < delta::COMPACT_TARGET_BYTES {
            small.entry(file.partition.clone()).or_default().push(file);
        }
    }
    let (mut adds, mut removes) = (Vec::new(), Vec::new());
    for (partition, files) in small {
        if files.len() < min_files.max(2) {
            continue;
        }
        let mut stored = Vec::with_capacity(files.len());
        for file in &files {
            stored.push((read_stored::<T>(table.log.dir(), &file.path)?, Vec::new()));
        }
        adds.push(write_file::<T>(table.log.dir(), &partition, &stored, &[])?);
        removes.extend(files);
    }
    if removes.is_empty() {
        return Ok(0);
    }
    let merged = removes.len() - adds.len();
    table
        .log
        .commit(adds, &removes, None, Operation::Compact)
        .map_err(StoreError::Delta)?;
    table.forget();
    Ok(merged)
}

/// Every row of the table's version `log`, sorted by key.
pub(crate) fn read_all<T: Table>(log: &Log) -> Result<Vec<T>, StoreError> {
    let mut rows = Vec::new();
    for file in log.files().map_err(StoreError::Delta)? {
        rows.extend(read_file::<T>(log.dir(), &file.path)?);
    }
    rows.sort_by(|a, b| a.key().cmp(b.key()));
    Ok(rows)
}

/// The rows of one data file.
fn read_file<T: Table>(dir: &Path, relative: &str) -> Result<Vec<T>, StoreError> {
    let path = existing(dir, relative)?;
    codec::read_table::<T>(&path).map_err(|e| unreadable(&path, e))
}

/// The rows of one data file, kept as columns for a rewrite.
fn read_stored<T: Table>(dir: &Path, relative: &str) -> Result<codec::StoredRows, StoreError> {
    let path = existing(dir, relative)?;
    codec::StoredRows::read::<T>(&path).map_err(|e| unreadable(&path, e))
}

/// The path of a data file the log names, which must exist.
fn existing(dir: &Path, relative: &str) -> Result<PathBuf, StoreError> {
    let path = dir.join(relative);
    super::bucket::fetch(&path).map_err(|e| super::io_error("download", &path, e))?;
    if !path.exists() {
        return Err(StoreError::UnreadableTable {
            path: dir.to_owned(),
            message: format!("its log names the data file {relative}, which is missing"),
        });
    }
    Ok(path)
}

/// Writes a new data file of `partition` (unique name, flushed), not yet committed: the stored
/// rows, each without the keys paired with it, and `rows`, sorted by key.
pub(super) fn write_file<T: Table>(
    dir: &Path,
    partition: &Option<String>,
    stored: &[(codec::StoredRows, Vec<String>)],
    rows: &[T],
) -> Result<NewFile, StoreError> {
    static FILES: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "part-{}-{}-{:05}.zstd.parquet",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%6f"),
        std::process::id(),
        FILES.fetch_add(1, Ordering::Relaxed)
    );
    let relative = match partition {
        Some(p) => format!("{}={p}/{name}", delta::PARTITION_COLUMN),
        None => name,
    };
    let path = dir.join(&relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| super::io_error("create directory", parent, e))?;
    }
    let (size, stats) = codec::write_data_file(stored, rows, &path)?;
    Ok(NewFile {
        path: relative,
        partition: partition.clone(),
        size,
        stats,
    })
}

/// The absolute paths of a version's data files (downloaded first, for a lake in object
/// storage, where this host has no copy yet).
pub(crate) fn file_paths(log: &Log) -> Result<Vec<PathBuf>, StoreError> {
    log.files()
        .map_err(StoreError::Delta)?
        .into_iter()
        .map(|f| log.local_file(&f.path).map_err(StoreError::Delta))
        .collect()
}

/// Opens a table's log at `at`; `None` when the table was never written.
pub(crate) fn open(dir: &Path, at: AsOf) -> Result<Option<Log>, StoreError> {
    Log::open(dir, at).map_err(|e| StoreError::UnreadableTable {
        path: dir.to_owned(),
        message: e.message,
    })
}

fn unreadable(path: &Path, e: CodecError) -> StoreError {
    match e {
        CodecError::Polars { source, .. } => StoreError::UnreadableTable {
            path: path.to_owned(),
            message: source.to_string(),
        },
        other => StoreError::Table(other),
    }
}

/// Replaces every row of the table by `rows`, as one commit (partitioned as an upsert would).
pub(crate) fn replace<T: Table>(table: &mut OpenTable, rows: Vec<T>) -> Result<(), StoreError> {
    let removes = table.log.files().map_err(StoreError::Delta)?;
    let mut by_partition: BTreeMap<Option<String>, Vec<T>> = BTreeMap::new();
    for row in rows {
        by_partition.entry(partition_of(&row)).or_default().push(row);
    }
    let mut adds = Vec::new();
    for (partition, rows) in by_partition {
        adds.push(write_file(table.log.dir(), &partition, &[], &rows)?);
    }
    table
        .log
        .commit(adds, &removes, None, Operation::Overwrite)
        .map_err(StoreError::Delta)?;
    table.forget();
    Ok(())
}
