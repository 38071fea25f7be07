//! The metric table as a Delta table (`metrics/table/`), one data file per version; and the
//! conversion of the layout of earlier releases (`metrics/current` → `gen-*/`, or
//! `metrics/metrics.parquet`). Its CSV is made when asked for (`tandem metrics --format csv`, an
//! export), not kept: the CSVs earlier releases kept beside it (`metrics/csv/`) go with the next
//! version.
//!
//! A version is written by the caller (the pipeline encodes the rows) into the paths of a
//! [`MetricsDraft`], then committed here as an overwrite of the previous version, recording the
//! canonical tables' versions it was computed from. Readers resolve a version once and get its
//! Parquet file. This module never encodes or decodes a row.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};

use super::coverage::Coverage;
use super::delta::{self, AsOf, Field, FieldKind, Log, NewFile, Operation};
use super::{Store, StoreError, io_error, table};

/// The metric table's name in its Delta log.
pub const METRICS_TABLE: &str = "metrics";

/// The metric table's columns, in storage order (see the README's metric table reference).
pub const METRIC_FIELDS: &[Field] = &[
    field("metric", FieldKind::String, false),
    field("grain", FieldKind::String, false),
    field("scope_type", FieldKind::String, false),
    field("scope", FieldKind::String, false),
    field("period_start", FieldKind::Timestamp, false),
    field("period_end", FieldKind::Timestamp, false),
    field("value", FieldKind::Double, true),
    field("unit", FieldKind::String, false),
    field("n", FieldKind::Long, false),
    field("method", FieldKind::String, true),
    field("no_data", FieldKind::String, true),
];

const fn field(name: &'static str, kind: FieldKind, nullable: bool) -> Field {
    Field { name, kind, nullable }
}

/// The application transaction marking the version converted from an earlier release's layout.
const MIGRATION_APP: &str = "tandem:migrate-metrics";

/// Where the files of the next metric table version go; written by the caller, then committed
/// with [`Store::commit_metrics`].
#[derive(Debug, Clone)]
pub struct MetricsDraft {
    /// The Parquet data file, inside the table directory.
    pub parquet: PathBuf,
    /// The data file relative to the table directory.
    relative: String,
}

/// One committed version of the metric table.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsVersion {
    /// The metric table's version.
    pub version: i64,
    /// When it was committed.
    pub committed_at: DateTime<Utc>,
    /// Its Parquet data file.
    pub parquet: PathBuf,
    /// The canonical tables' versions it was computed from (table name → version); empty for a
    /// version converted from an earlier release, which did not record them.
    pub tables: BTreeMap<String, i64>,
    /// What the lake covered when it was computed (`None`: a version that did not record it):
    /// a report computed again from `tables` judges its gaps by this, not by later syncs.
    pub coverage: Option<Coverage>,
}

/// What a metric table version records in its commit.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Recorded {
    /// The canonical tables' versions it was computed from.
    #[serde(default)]
    tables: BTreeMap<String, i64>,
    /// The lake's coverage then.
    #[serde(default)]
    coverage: Option<Coverage>,
}

impl Store {
    /// The metric table's Delta table directory.
    pub fn metrics_dir(&self) -> PathBuf {
        self.root.join("metrics").join("table")
    }

    fn metrics_csv_dir(&self) -> PathBuf {
        self.root.join("metrics").join("csv")
    }

    /// The latest version of every canonical table (tables never written are left out): what a
    /// metric table computed now reads, to be recorded with it.
    pub fn table_versions(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut versions = BTreeMap::new();
        for name in super::TABLES {
            if let Some(v) = self.table_version(name, AsOf::Latest)? {
                versions.insert(name.to_owned(), v);
            }
        }
        Ok(versions)
    }

    /// Creates the metric table if needed and names the files of its next version (unique names,
    /// nothing written yet).
    pub fn metrics_draft(&self) -> Result<MetricsDraft, StoreError> {
        self.metrics_log()?;
        let relative = delta::new_data_file_name();
        Ok(MetricsDraft {
            parquet: self.metrics_dir().join(&relative),
            relative,
        })
    }

    /// Commits the draft's files (written, flushed; `size` and `stats` of the Parquet file as a
    /// Delta `add` records them) as the metric table's new version, replacing the previous one,
    /// with `tables`, the canonical tables' versions it was computed from. Returns the version.
    /// The CSVs of versions older than the one before are removed (a reader may still be reading
    /// the one before).
    pub fn commit_metrics(
        &self,
        draft: &MetricsDraft,
        size: i64,
        stats: String,
        tables: &BTreeMap<String, i64>,
    ) -> Result<i64, StoreError> {
        self.commit_metrics_txn(draft, size, stats, tables, None)
    }

    fn commit_metrics_txn(
        &self,
        draft: &MetricsDraft,
        size: i64,
        stats: String,
        tables: &BTreeMap<String, i64>,
        txn: Option<(&str, i64)>,
    ) -> Result<i64, StoreError> {
        self.check_held()?;
        let mut log = self.metrics_log()?;
        let removes = log.files()?;
        let metadata = serde_json::to_value(Recorded {
            tables: tables.clone(),
            coverage: Coverage::load(self)?,
        })
        .map_err(|e| io_error("encode", &self.metrics_dir(), std::io::Error::other(e)))?;
        let version = log.commit_with(
            vec![NewFile {
                path: draft.relative.clone(),
                partition: None,
                size,
                stats,
            }],
            &removes,
            txn,
            Operation::Overwrite,
            Some(metadata),
        )?;
        // The CSVs an earlier release kept beside each version.
        if let Ok(Some(listed)) = super::bucket::list_dir(&self.metrics_csv_dir()) {
            for (path, _, _) in listed {
                let _ = super::bucket::remove(&path);
            }
        }
        let _ = std::fs::remove_dir_all(self.metrics_csv_dir());
        Ok(version)
    }

    /// The metric table as of `at`: `Ok(None)` when none was ever written (a lake of an earlier
    /// release not yet converted included); [`StoreError::NoSuchVersion`] when `at` names a
    /// version the table does not have or no longer keeps, saying which it keeps.
    pub fn metrics_version(&self, at: AsOf) -> Result<Option<MetricsVersion>, StoreError> {
        let dir = self.metrics_dir();
        if !delta::exists(&dir) {
            return Ok(None);
        }
        let missing = |why: String| self.no_such_version(at, why);
        let kept = Log::kept_versions(&dir);
        if let (AsOf::Version(v), Some((oldest, newest))) = (at, kept)
            && !(oldest..=newest).contains(&v)
        {
            return Err(missing(String::new()));
        }
        let log = match Log::open(&dir, at) {
            Ok(Some(log)) => log,
            Ok(None) => return Ok(None),
            Err(e) if at != AsOf::Latest => return Err(missing(format!(" ({})", e.message))),
            Err(e) => return Err(e.into()),
        };
        if let (AsOf::Time(t), Some(committed)) = (at, log.committed_at())
            && committed > t
        {
            // delta-rs gives the oldest version for an instant before every commit.
            return Err(missing(String::new()));
        }
        let files = log.files()?;
        let Some(file) = files.first() else {
            // Only the table's creation was committed: no metric table yet.
            return match at {
                AsOf::Latest => Ok(None),
                _ => Err(missing(" (that version holds no metric table yet)".to_owned())),
            };
        };
        let parquet = log.local_file(&file.path)?;
        if !parquet.exists() {
            return Err(missing(format!(
                " (its data file {} was removed by maintenance after the retention window)",
                file.path
            )));
        }
        let recorded: Recorded = log
            .metadata()
            .and_then(|m| serde_json::from_value(m).ok())
            .unwrap_or_default();
        Ok(Some(MetricsVersion {
            version: log.version(),
            committed_at: log.committed_at().unwrap_or_default(),
            parquet,
            tables: recorded.tables,
            coverage: recorded.coverage,
        }))
    }

    /// The error for `at` naming no version the metric table keeps.
    fn no_such_version(&self, at: AsOf, why: String) -> StoreError {
        let dir = self.metrics_dir();
        let asked = match at {
            AsOf::Latest => "latest".to_owned(),
            AsOf::Version(v) => format!("version {v}"),
            AsOf::Time(t) => format!(
                "version committed at or before {}",
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        };
        let committed = |v: i64| {
            Log::open(&dir, AsOf::Version(v))
                .ok()
                .flatten()
                .and_then(|l| l.committed_at())
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
                .unwrap_or_else(|| "at an unknown time".to_owned())
        };
        let kept = match Log::kept_versions(&dir) {
            Some((oldest, newest)) => format!(
                "it keeps versions {oldest} (committed {}) to {newest} (committed {})",
                committed(oldest),
                committed(newest)
            ),
            None => "it keeps no version".to_owned(),
        };
        StoreError::NoSuchVersion {
            table: dir,
            message: format!("the metric table has no {asked}{why}; {kept}"),
        }
    }

    /// The metric table's Parquet file of its latest version. A lake of an earlier release not
    /// yet converted gives its file; with no table at all, a path where nothing is.
    pub fn metrics_path(&self) -> PathBuf {
        if let Ok(Some(latest)) = self.metrics_version(AsOf::Latest) {
            return latest.parquet;
        }
        self.legacy_metrics()
            .unwrap_or_else(|| self.root.join("metrics").join("metrics.parquet"))
    }

    /// The metric table file of an earlier release's layout (`metrics/current/metrics.parquet` or
    /// `metrics/metrics.parquet`), while it has not been converted. Files a conversion that was
    /// stopped after its commit left are removed here.
    pub fn legacy_metrics(&self) -> Option<PathBuf> {
        let dir = self.root.join("metrics");
        let at = match std::fs::read_link(dir.join(LEGACY_CURRENT)) {
            Ok(target) => dir.join(target),
            Err(_) => dir.clone(),
        };
        let parquet = at.join("metrics.parquet");
        if !parquet.exists() {
            return None;
        }
        let converted = table::open(&self.metrics_dir(), AsOf::Latest)
            .ok()
            .flatten()
            .and_then(|log| log.txn(MIGRATION_APP).ok().flatten())
            .is_some();
        if converted {
            self.remove_legacy_metrics();
            return None;
        }
        Some(parquet)
    }

    /// Commits the draft holding an earlier release's metric table (converted by the caller) as
    /// a version of the Delta table, then removes the old layout's files. Marked, so a conversion
    /// stopped between the two is never committed twice.
    pub fn commit_legacy_metrics(
        &self,
        draft: &MetricsDraft,
        size: i64,
        stats: String,
    ) -> Result<i64, StoreError> {
        let version =
            self.commit_metrics_txn(draft, size, stats, &BTreeMap::new(), Some((MIGRATION_APP, 1)))?;
        self.remove_legacy_metrics();
        tracing::info!(version, "Metric table converted to a Delta table.");
        Ok(version)
    }

    /// Removes the files of the earlier layout (best effort: a file left is removed next time).
    fn remove_legacy_metrics(&self) {
        let dir = self.root.join("metrics");
        let _ = std::fs::remove_file(dir.join(LEGACY_CURRENT));
        for old in ["metrics.parquet", "metrics.csv"] {
            let _ = std::fs::remove_file(dir.join(old));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("gen-") || name.starts_with("current.") {
                    let _ = std::fs::remove_dir_all(entry.path());
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    /// The metric table's log, created when missing.
    fn metrics_log(&self) -> Result<Log, StoreError> {
        Ok(Log::create_plain(
            &self.metrics_dir(),
            METRICS_TABLE,
            METRIC_FIELDS,
            super::table_properties(),
        )?)
    }
}

/// The link in `metrics/` to the current generation, in the layout of earlier releases.
const LEGACY_CURRENT: &str = "current";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::pipeline;

    /// A metric table of one deployment-count row with `value`.
    fn metrics(value: f64) -> crate::metric::MetricTable {
        let monday = Utc.with_ymd_and_hms(2026, 8, 3, 0, 0, 0).unwrap();
        let mut table = crate::metric::MetricTable::new();
        let scope = table.scope("org", "all");
        let period = table.period("week", monday, monday + Duration::weeks(1));
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

    /// Writes and commits a version of `value`, as `tandem metrics` does.
    fn write(store: &Store, value: f64, tables: &BTreeMap<String, i64>) -> i64 {
        let draft = store.metrics_draft().unwrap();
        let (size, stats) = pipeline::write_metrics(&metrics(value), &draft.parquet).unwrap();
        store.commit_metrics(&draft, size, stats, tables).unwrap()
    }

    fn value_of(store: &Store) -> Option<f64> {
        let rows = pipeline::read_metrics(&store.metrics_path()).unwrap();
        rows[0].value
    }

    #[test]
    fn each_write_is_a_version_and_the_csvs_of_earlier_releases_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.metrics_version(AsOf::Latest).unwrap(), None);
        assert!(!store.metrics_path().exists());
        let sources = BTreeMap::from([("deployments".to_owned(), 4)]);
        let first = write(&store, 1.0, &sources);
        assert_eq!(value_of(&store), Some(1.0));

        // A run killed after writing its file but before its commit: readers still get the
        // previous version.
        let killed = store.metrics_draft().unwrap();
        pipeline::write_metrics(&metrics(2.0), &killed.parquet).unwrap();
        assert_eq!(value_of(&store), Some(1.0));

        // An earlier release kept a CSV beside each version; the next version removes them.
        let csvs = dir.path().join("metrics/csv");
        std::fs::create_dir_all(&csvs).unwrap();
        std::fs::write(csvs.join("part-x.zstd.csv"), "metric\n").unwrap();
        let second = write(&store, 3.0, &BTreeMap::new());
        assert_eq!(second, first + 1);
        assert_eq!(value_of(&store), Some(3.0));
        assert!(!csvs.exists(), "the CSVs of an earlier release are removed");
        write(&store, 4.0, &BTreeMap::new());

        // Time travel: the first version, its rows and what it was computed from.
        let old = store.metrics_version(AsOf::Version(first)).unwrap().unwrap();
        assert_eq!(old.version, first);
        assert_eq!(old.tables, sources);
        assert_eq!(pipeline::read_metrics(&old.parquet).unwrap()[0].value, Some(1.0));
        let at = store
            .metrics_version(AsOf::Time(old.committed_at))
            .unwrap()
            .unwrap();
        assert_eq!(
            at.version, first,
            "the latest version committed at or before the instant"
        );
        let latest = store.metrics_version(AsOf::Latest).unwrap().unwrap();
        assert_eq!(
            (latest.version, latest.parquet.clone()),
            (first + 2, store.metrics_path())
        );
        let files = Log::open(&store.metrics_dir(), AsOf::Latest)
            .unwrap()
            .unwrap()
            .files()
            .unwrap();
        assert_eq!(files.len(), 1, "one data file per version");
    }

    #[test]
    fn an_unknown_version_is_an_error_naming_it_and_the_versions_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        write(&store, 1.0, &BTreeMap::new());
        write(&store, 2.0, &BTreeMap::new());
        let err = store.metrics_version(AsOf::Version(7)).unwrap_err();
        assert!(matches!(err, StoreError::NoSuchVersion { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("no version 7")
                && text.contains("keeps versions 0 (committed ")
                && text.contains("to 2"),
            "{text}"
        );
        // A version whose data file maintenance removed (older than the retention).
        let first = store.metrics_version(AsOf::Version(1)).unwrap().unwrap();
        std::fs::remove_file(&first.parquet).unwrap();
        let text = store.metrics_version(AsOf::Version(1)).unwrap_err().to_string();
        assert!(
            text.contains("no version 1 (its data file") && text.contains("retention"),
            "{text}"
        );
        let before = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
        let text = store.metrics_version(AsOf::Time(before)).unwrap_err().to_string();
        assert!(
            text.contains("no version committed at or before 2000-01-01T00:00:00Z")
                && text.contains("keeps versions 0"),
            "{text}"
        );
    }
}
