//! One table's Delta Lake transaction log, through delta-rs (`deltalake-core`, without DataFusion):
//! create a table from its declared columns, list the data files of a version, commit `add` and
//! `remove` actions with an application transaction (`txn`), travel to a past version or instant.
//!
//! The Parquet data files themselves are written and read by the codec; this module never looks
//! inside them, and it knows no particular table. Protocol versions stay at delta-rs' defaults for
//! a new table (reader 1, writer 2): no deletion vectors, no column mapping, so Spark, Databricks,
//! Trino, DuckDB, polars and delta-rs all read what tandem writes.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{
    Action, Add, ArrayType, DataType, PrimitiveType, Remove, StructField, Transaction,
};
use deltalake_core::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder};
use tandem_connectors::model::{Column, ColumnKind};

/// The column a partitioned table is partitioned by: the month (`YYYY-MM`, UTC) of the row's
/// anchor instant. Readers of the Delta table see it as an extra string column.
pub const PARTITION_COLUMN: &str = "month";

/// What went wrong with a table's log.
#[derive(Debug, thiserror::Error)]
#[error("Delta table {dir}: {message}")]
pub struct DeltaError {
    /// The table directory.
    pub dir: PathBuf,
    /// What delta-rs (or tandem's use of it) said.
    pub message: String,
    /// A commit that another writer's commit conflicts with (both removed a file): the write is
    /// to be done again from the table as it now is.
    pub conflict: bool,
}

/// A data file of a table version, as its `add` action describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Relative to the table directory (`month=2026-03/part-….parquet`).
    pub path: String,
    /// The partition value (the month), for a partitioned table.
    pub partition: Option<String>,
    /// Bytes.
    pub size: i64,
    /// Rows, from the file's statistics.
    pub records: Option<usize>,
}

/// A data file written and not yet committed.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Relative to the table directory.
    pub path: String,
    /// The partition value, for a partitioned table.
    pub partition: Option<String>,
    /// Bytes.
    pub size: i64,
    /// The `stats` JSON of the `add` action (rows, minimum, maximum and null count per column).
    pub stats: String,
}

/// What a commit does, as the log's `commitInfo` records it for other engines' history views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Rows inserted or replaced (a copy-on-write merge of the touched files).
    Upsert,
    /// Small files merged; no row changed.
    Compact,
    /// The whole table replaced.
    Overwrite,
}

/// The `commitInfo` key under which [`Log::commit_with`] records tandem's own metadata.
pub const METADATA_KEY: &str = "tandem";

/// A column of one of tandem's own tables (not a canonical table: those are declared by their
/// [`Column`]s).
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Column name.
    pub name: &'static str,
    /// Its Delta type.
    pub kind: FieldKind,
    /// Whether the value may be missing.
    pub nullable: bool,
}

/// The Delta types tandem's own tables use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `string`.
    String,
    /// `long`.
    Long,
    /// `double`.
    Double,
    /// `boolean`.
    Boolean,
    /// `timestamp` (microseconds, UTC).
    Timestamp,
}

/// Which version of a table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// The latest.
    Latest,
    /// This version number.
    Version(i64),
    /// The latest version committed at or before this instant.
    Time(DateTime<Utc>),
}

/// One table's log, opened at some version.
pub struct Log {
    dir: PathBuf,
    table: DeltaTable,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("version", &self.table.version())
            .finish()
    }
}

/// Whether `dir` holds a Delta table (a `_delta_log` folder with at least one commit).
pub fn exists(dir: &Path) -> bool {
    log_entries(dir).is_some_and(|entries| entries.iter().any(|(name, _)| name.ends_with(".json")))
}

/// The names of the files in a table's `_delta_log` (in the bucket, for a lake in object
/// storage), with their modification times; `None` when there is no log.
fn log_entries(dir: &Path) -> Option<Vec<(String, Option<DateTime<Utc>>)>> {
    let log = dir.join("_delta_log");
    if let Some(listed) = super::bucket::list_dir(&log).ok()? {
        let entries: Vec<_> = listed
            .into_iter()
            // Only the log's own files, not those of a folder under it (`_staged_commits`).
            .filter(|(path, _, _)| path.parent() == Some(log.as_path()))
            .filter_map(|(path, _, modified)| Some((path.file_name()?.to_str()?.to_owned(), Some(modified))))
            .collect();
        return (!entries.is_empty()).then_some(entries);
    }
    let entries = std::fs::read_dir(&log).ok()?;
    Some(
        entries
            .flatten()
            .map(|e| {
                let modified = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .map(DateTime::<Utc>::from);
                (e.file_name().to_string_lossy().into_owned(), modified)
            })
            .collect(),
    )
}

/// The text of a log entry, `_delta_log/<name>`, while it is kept.
fn read_log_entry(dir: &Path, name: &str) -> Option<String> {
    let path = dir.join("_delta_log").join(name);
    if let Some((bucket, key)) = super::bucket::of(&path) {
        let (bytes, _) = bucket.get(&key).ok()??;
        return String::from_utf8(bytes.to_vec()).ok();
    }
    std::fs::read_to_string(path).ok()
}

/// An unloaded handle on the table at `dir`: in the bucket for a lake in object storage, else on
/// the local file system.
fn handle(dir: &Path) -> Result<DeltaTable, DeltaError> {
    let (url, backend) = match super::bucket::of(dir) {
        Some((bucket, _)) => {
            register_bucket_schemes();
            let url = bucket.dir_url(dir).ok_or_else(|| DeltaError {
                dir: dir.to_owned(),
                conflict: false,
                message: "not a path of the lake".to_owned(),
            })?;
            (url, Some(bucket.store()))
        }
        None => (url_of(dir)?, None),
    };
    let mut builder = DeltaTableBuilder::from_url(url.clone()).map_err(|e| error(dir, e))?;
    if let Some(store) = backend {
        builder = builder.with_storage_backend(store, url);
    }
    builder.build().map_err(|e| error(dir, e))
}

/// delta-rs' default log store (each commit a conditional `PUT` that fails if the version
/// exists) for the object storage schemes: tandem hands it the bucket's client itself.
#[derive(Debug)]
struct BucketLogStores;

impl LogStoreFactory for BucketLogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &url::Url,
        options: &StorageConfig,
    ) -> deltalake_core::DeltaResult<std::sync::Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

impl ObjectStoreFactory for BucketLogStores {
    fn parse_url_opts(
        &self,
        url: &url::Url,
        _config: &StorageConfig,
    ) -> deltalake_core::DeltaResult<(ObjectStoreRef, object_store::path::Path)> {
        let path = object_store::path::Path::from(url.path().trim_matches('/'));
        super::bucket::store_for_url(url)
            .map(|store| (store, path))
            .ok_or_else(|| deltalake_core::DeltaTableError::InvalidTableLocation(url.to_string()))
    }
}

fn register_bucket_schemes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for scheme in super::bucket::SCHEMES {
            if let Ok(url) = url::Url::parse(&format!("{scheme}://")) {
                logstore_factories().insert(url.clone(), std::sync::Arc::new(BucketLogStores));
                object_store_factories().insert(url, std::sync::Arc::new(BucketLogStores));
            }
        }
    });
}

impl Log {
    /// Opens the table at `dir` as of `at`; `None` when there is no table there.
    pub fn open(dir: &Path, at: AsOf) -> Result<Option<Self>, DeltaError> {
        if !exists(dir) {
            return Ok(None);
        }
        let handle = handle(dir)?;
        // An instant is resolved by the commit times `committed_at` reports (the commits' own
        // `commitInfo.timestamp`), not by the log files' modification times, which trail them
        // by however long the write took: "as of the time version 3 says it was committed" must
        // give version 3.
        let at = match at {
            AsOf::Time(t) => match version_at(dir, t) {
                Some(v) => AsOf::Version(v),
                None => {
                    return Err(DeltaError {
                        dir: dir.to_owned(),
                        conflict: false,
                        message: format!("no version committed at or before {}", t.to_rfc3339()),
                    });
                }
            },
            other => other,
        };
        let table = block_on(async move {
            let mut table = handle;
            match at {
                AsOf::Latest => table.load().await?,
                AsOf::Version(v) => table.load_version(u64::try_from(v).unwrap_or(0)).await?,
                AsOf::Time(t) => table.load_with_datetime(t).await?,
            }
            Ok::<_, deltalake_core::DeltaTableError>(table)
        })
        .map_err(|e| error(dir, e))?;
        Ok(Some(Self {
            dir: dir.to_owned(),
            table,
        }))
    }

    /// Creates the table at `dir` (version 0: protocol and schema) with the declared columns,
    /// partitioned by [`PARTITION_COLUMN`] when `partitioned`, and the given table properties
    /// (retention settings). A table already there is opened instead.
    pub fn create(
        dir: &Path,
        name: &str,
        columns: &[Column],
        partitioned: bool,
        properties: HashMap<String, Option<String>>,
    ) -> Result<Self, DeltaError> {
        let mut fields: Vec<StructField> = columns
            .iter()
            .map(|c| StructField::new(c.name, delta_type(c.kind), c.nullable))
            .collect();
        let mut partition_columns = Vec::new();
        if partitioned {
            fields.push(StructField::new(PARTITION_COLUMN, DataType::STRING, false));
            partition_columns.push(PARTITION_COLUMN.to_owned());
        }
        Self::create_with(dir, name, fields, partition_columns, properties)
    }

    /// Creates an unpartitioned table of tandem's own (the metric table, the run history) with
    /// `fields`, as [`Log::create`] does for a canonical table.
    pub fn create_plain(
        dir: &Path,
        name: &str,
        fields: &[Field],
        properties: HashMap<String, Option<String>>,
    ) -> Result<Self, DeltaError> {
        let fields = fields
            .iter()
            .map(|f| {
                let kind = match f.kind {
                    FieldKind::String => DataType::STRING,
                    FieldKind::Long => DataType::LONG,
                    FieldKind::Double => DataType::DOUBLE,
                    FieldKind::Boolean => DataType::BOOLEAN,
                    FieldKind::Timestamp => DataType::Primitive(PrimitiveType::Timestamp),
                };
                StructField::new(f.name, kind, f.nullable)
            })
            .collect();
        Self::create_with(dir, name, fields, Vec::new(), properties)
    }

    fn create_with(
        dir: &Path,
        name: &str,
        fields: Vec<StructField>,
        partition_columns: Vec<String>,
        properties: HashMap<String, Option<String>>,
    ) -> Result<Self, DeltaError> {
        if let Some(log) = Self::open(dir, AsOf::Latest)? {
            return Ok(log);
        }
        // The local directory (for a lake in object storage, the cache's): new data files are
        // written there first.
        std::fs::create_dir_all(dir).map_err(|e| error(dir, e))?;
        let handle = handle(dir)?;
        let name = name.to_owned();
        let created = block_on(async move {
            handle
                .create()
                .with_table_name(name)
                .with_columns(fields)
                .with_partition_columns(partition_columns)
                .with_configuration(properties)
                .with_save_mode(SaveMode::Ignore)
                .await
        });
        let table = match created {
            Ok(table) => table,
            // Another writer created it at the same moment: its version 0 is the table.
            Err(e) => match Self::open(dir, AsOf::Latest)? {
                Some(log) => return Ok(log),
                None => return Err(error(dir, e)),
            },
        };
        Ok(Self {
            dir: dir.to_owned(),
            table,
        })
    }

    /// The table directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The version this log is at.
    pub fn version(&self) -> i64 {
        self.table
            .version()
            .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX))
    }

    /// When this version was committed: the `timestamp` of its `commitInfo` (what the writer
    /// recorded, unlike a file's modification time), else what delta-rs knows of it.
    pub fn committed_at(&self) -> Option<DateTime<Utc>> {
        if let Some(millis) = self
            .commit_info()
            .and_then(|info| info.get("timestamp")?.as_i64())
        {
            return DateTime::from_timestamp_millis(millis);
        }
        let snapshot = self.table.snapshot().ok()?;
        let millis = snapshot.version_timestamp(self.table.version()?)?;
        DateTime::from_timestamp_millis(millis)
    }

    /// The data files of this version.
    pub fn files(&self) -> Result<Vec<DataFile>, DeltaError> {
        let snapshot = self.table.snapshot().map_err(|e| error(&self.dir, e))?;
        Ok(snapshot
            .log_data()
            .iter()
            .map(|f| DataFile {
                path: f.path().into_owned(),
                partition: f.partition_values_map().remove(PARTITION_COLUMN).flatten(),
                size: f.size(),
                records: f.num_records(),
            })
            .collect())
    }

    /// The local path of one of this table's data files (`relative` as the log names it),
    /// downloaded first for a lake in object storage when this host has no copy yet.
    pub fn local_file(&self, relative: &str) -> Result<PathBuf, DeltaError> {
        let path = self.dir.join(relative);
        super::bucket::fetch(&path)
            .map_err(|e| error(&self.dir, format!("cannot download {relative}: {e}")))?;
        Ok(path)
    }

    /// The last version the application transaction `app` committed in this table, if any.
    pub fn txn(&self, app: &str) -> Result<Option<i64>, DeltaError> {
        let snapshot = self.table.snapshot().map_err(|e| error(&self.dir, e))?;
        let store = self.table.log_store();
        let app = app.to_owned();
        block_on(async move { snapshot.transaction_version(store.as_ref(), app).await })
            .map_err(|e| error(&self.dir, e))
    }

    /// Commits `adds` and `removes` as one new version, with the application transaction `txn`
    /// (`(app, version)`) when given, and returns the version. A commit that another writer's
    /// commit conflicts with fails (delta-rs retries those that do not conflict).
    pub fn commit(
        &mut self,
        adds: Vec<NewFile>,
        removes: &[DataFile],
        txn: Option<(&str, i64)>,
        operation: Operation,
    ) -> Result<i64, DeltaError> {
        self.commit_with(adds, removes, txn, operation, None)
    }

    /// [`Log::commit`], recording `metadata` in the version's `commitInfo` under the key
    /// [`METADATA_KEY`] (read back by [`Log::metadata`]): what tandem wants to know later about
    /// the version, such as the tables it was computed from.
    pub fn commit_with(
        &mut self,
        adds: Vec<NewFile>,
        removes: &[DataFile],
        txn: Option<(&str, i64)>,
        operation: Operation,
        metadata: Option<serde_json::Value>,
    ) -> Result<i64, DeltaError> {
        // In a bucket the data files go up first: a commit must never name a file readers lack.
        for file in &adds {
            let path = self.dir.join(&file.path);
            super::bucket::push(&path)
                .map_err(|e| error(&self.dir, format!("cannot upload {}: {e}", file.path)))?;
        }
        let now = Utc::now().timestamp_millis();
        let data_change = operation != Operation::Compact;
        let mut actions: Vec<Action> = Vec::with_capacity(adds.len() + removes.len());
        for file in removes {
            actions.push(Action::Remove(Remove {
                path: file.path.clone(),
                data_change,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(partition_values(file.partition.as_deref())),
                size: Some(file.size),
                ..Default::default()
            }));
        }
        for file in adds {
            actions.push(Action::Add(Add {
                partition_values: partition_values(file.partition.as_deref()),
                path: file.path,
                size: file.size,
                modification_time: now,
                data_change,
                stats: Some(file.stats),
                ..Default::default()
            }));
        }
        let mut properties = CommitProperties::default();
        if let Some((app, version)) = txn {
            properties = properties.with_application_transaction(Transaction::new_with_last_update(
                app,
                version,
                Some(now),
            ));
        }
        if let Some(metadata) = metadata {
            properties = properties.with_metadata([(METADATA_KEY.to_owned(), metadata)]);
        }
        let partition_by = self
            .table
            .snapshot()
            .ok()
            .map(|s| s.metadata().partition_columns().to_vec())
            .filter(|p| !p.is_empty());
        let op = match operation {
            Operation::Upsert => DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by,
                predicate: None,
            },
            Operation::Overwrite => DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by,
                predicate: None,
            },
            Operation::Compact => DeltaOperation::Optimize {
                predicate: None,
                target_size: COMPACT_TARGET_BYTES,
            },
        };
        let snapshot = self.table.snapshot().map_err(|e| error(&self.dir, e))?.clone();
        let store = self.table.log_store();
        let finalized = block_on(async move {
            let written = CommitBuilder::from(properties)
                .with_actions(actions)
                .build(Some(&snapshot), store, op)
                .into_prepared_commit_future()
                .await?
                .await?;
            // The commit is in the log; its post-commit hooks (a checkpoint when due) are not run.
            super::failpoint("delta-committed");
            written.await
        })
        .map_err(|e| {
            let conflict = matches!(
                e,
                deltalake_core::DeltaTableError::Transaction {
                    source: deltalake_core::kernel::transaction::TransactionError::CommitConflict(_)
                        | deltalake_core::kernel::transaction::TransactionError::MaxCommitAttempts(_)
                }
            );
            DeltaError {
                conflict,
                ..error(&self.dir, e)
            }
        })?;
        let version = i64::try_from(finalized.version()).unwrap_or(i64::MAX);
        self.table.state = Some(finalized.snapshot());
        Ok(version)
    }

    /// What [`Log::commit_with`] recorded in this version's `commitInfo`, if anything (and the
    /// version's log entry is still there).
    pub fn metadata(&self) -> Option<serde_json::Value> {
        self.commit_info()?.get(METADATA_KEY).cloned()
    }

    /// This version's `commitInfo` action, read from its log entry (if still there).
    fn commit_info(&self) -> Option<serde_json::Value> {
        commit_info(&self.dir, self.version())
    }

    /// The oldest and the newest version whose log entry is kept (the range time travel can
    /// reach), if the table has any.
    pub fn kept_versions(dir: &Path) -> Option<(i64, i64)> {
        let versions: Vec<i64> = log_entries(dir)?
            .into_iter()
            .filter_map(|(name, _)| name.strip_suffix(".json")?.parse::<i64>().ok())
            .collect();
        Some((*versions.iter().min()?, *versions.iter().max()?))
    }

    /// Re-reads the log up to its latest version (after another writer committed).
    pub fn refresh(&mut self) -> Result<(), DeltaError> {
        let dir = self.dir.clone();
        let table = &mut self.table;
        block_on(async move { table.update_state().await }).map_err(|e| error(&dir, e))
    }

    /// Removes data files no version younger than `retention` references, and files no version
    /// references at all (left by a killed writer) once older than `retention`; returns how many.
    pub fn vacuum(&mut self, retention: chrono::Duration) -> Result<usize, DeltaError> {
        let table = self.table.clone();
        let (table, metrics) = block_on(async move {
            table
                .vacuum()
                .with_retention_period(retention)
                .with_enforce_retention_duration(false)
                // The default (lite) mode deletes only files a `remove` action names: the files of
                // a commit that was killed before it was written would stay for ever.
                .with_mode(VacuumMode::Full)
                .await
        })
        .map_err(|e| error(&self.dir, e))?;
        self.table = table;
        Ok(metrics.files_deleted.len())
    }

    /// Removes log entries (and checkpoints) older than `cutoff` that no version since needs:
    /// only up to the newest checkpoint before `cutoff`, so every version committed after it stays
    /// readable. Returns how many files went.
    pub fn cleanup_log(&mut self, cutoff: DateTime<Utc>) -> Result<usize, DeltaError> {
        let version = self.table.version().unwrap_or(0);
        let store = self.table.log_store();
        let removed = block_on(async move {
            deltalake_core::protocol::checkpoints::cleanup_expired_logs_for(
                version,
                store.as_ref(),
                cutoff.timestamp_millis(),
                None,
            )
            .await
        })
        .map_err(|e| error(&self.dir, e))?;
        if removed > 0 {
            // This version was read from log entries that may be gone now: read it again from the
            // checkpoint, or the next step (a vacuum) fails on a missing commit file.
            if let Some(fresh) = Self::open(&self.dir, AsOf::Latest)? {
                *self = fresh;
            }
        }
        Ok(removed)
    }

    /// Writes a checkpoint of the log at this version, so readers replay no more than the commits
    /// since.
    pub fn checkpoint(&self) -> Result<(), DeltaError> {
        let table = &self.table;
        block_on(async move { deltalake_core::checkpoints::create_checkpoint(table, None).await })
            .map_err(|e| error(&self.dir, e))
    }
}

/// A fresh name for a data file of an unpartitioned table (`part-<time>-<pid>-<n>.zstd.parquet`):
/// unique per process and ordered by the time it was made.
pub fn new_data_file_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "part-{}-{}-{:05}.zstd.parquet",
        Utc::now().format("%Y%m%dT%H%M%S%6f"),
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The `commitInfo` action of version `version`'s log entry, while the entry is kept.
fn commit_info(dir: &Path, version: i64) -> Option<serde_json::Value> {
    let text = read_log_entry(dir, &format!("{version:020}.json"))?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|mut action| action.get_mut("commitInfo").map(serde_json::Value::take))
}

/// The latest kept version committed at or before `t`, by the commits' own timestamps (the log
/// entry's modification time where a commit carries none).
fn version_at(dir: &Path, t: DateTime<Utc>) -> Option<i64> {
    let entries = log_entries(dir)?;
    let (oldest, newest) = Log::kept_versions(dir)?;
    (oldest..=newest).rev().find(|&version| {
        let stamp = commit_info(dir, version)
            .and_then(|info| info.get("timestamp")?.as_i64())
            .and_then(DateTime::from_timestamp_millis)
            .or_else(|| {
                let name = format!("{version:020}.json");
                entries
                    .iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, modified)| *modified)
            });
        stamp.is_some_and(|stamp| stamp <= t)
    })
}

/// The size a compaction aims its files at.
pub const COMPACT_TARGET_BYTES: i64 = 128 << 20;

fn partition_values(partition: Option<&str>) -> HashMap<String, Option<String>> {
    partition
        .map(|p| HashMap::from([(PARTITION_COLUMN.to_owned(), Some(p.to_owned()))]))
        .unwrap_or_default()
}

/// The Delta type of a declared column. Instants are Delta `timestamp` (microseconds, UTC), as
/// the data files store them.
fn delta_type(kind: ColumnKind) -> DataType {
    match kind {
        ColumnKind::Text => DataType::STRING,
        ColumnKind::Integer => DataType::LONG,
        ColumnKind::Bool => DataType::BOOLEAN,
        ColumnKind::Timestamp => DataType::Primitive(PrimitiveType::Timestamp),
        ColumnKind::TextList => DataType::Array(Box::new(ArrayType::new(DataType::STRING, true))),
    }
}

fn url_of(dir: &Path) -> Result<url::Url, DeltaError> {
    let absolute = std::path::absolute(dir).map_err(|e| error(dir, e))?;
    url::Url::from_directory_path(&absolute).map_err(|()| DeltaError {
        dir: dir.to_owned(),
        conflict: false,
        message: "not a path that can be written as a file URL".to_owned(),
    })
}

fn error(dir: &Path, e: impl std::fmt::Display) -> DeltaError {
    DeltaError {
        dir: dir.to_owned(),
        conflict: false,
        message: e.to_string(),
    }
}

/// The runtime delta-rs' futures run on: the store's API is synchronous (its callers are
/// command code and the sync's blocking tasks), delta-rs is async.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tandem-delta")
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            // Without threads the process cannot do anything else either.
            #[allow(clippy::panic)]
            Err(e) => panic!("cannot start the Delta log's runtime: {e}"),
        }
    })
}

/// Runs a delta-rs future to completion from synchronous code. Called from inside an async
/// context (a test's runtime, say), it blocks a scoped thread instead, since a runtime cannot be
/// blocked on from one of its own tasks.
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime().block_on(future);
    }
    std::thread::scope(|scope| match scope.spawn(|| runtime().block_on(future)).join() {
        Ok(output) => output,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}
