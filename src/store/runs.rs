//! The run history: a Delta table at `runs/` (unpartitioned, append-only) with one row per stream
//! of every `tandem run`, so how the syncs went stays queryable after the last run's health
//! (`state/last_run.json`) is replaced.
//!
//! The caller encodes the rows (the pipeline writes Parquet) into the path of a [`RunsDraft`];
//! this module only declares the table and commits the file. It never decodes a row.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::delta::{AsOf, Field, FieldKind, Log, NewFile, Operation};
use super::{Store, StoreError, table};

/// The run history's name in its Delta log.
pub const RUNS_TABLE: &str = "runs";

/// One stream of one run, as the run history keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// Source name from the config.
    pub source: String,
    /// Stream name (`*` when the source failed before any stream).
    pub stream: String,
    /// Records committed.
    pub records: i64,
    /// Records quarantined.
    pub quarantined: i64,
    /// Seconds the stream took.
    pub seconds: f64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// The run history's columns, in storage order.
pub const RUN_FIELDS: &[Field] = &[
    Field {
        name: "started_at",
        kind: FieldKind::Timestamp,
        nullable: false,
    },
    Field {
        name: "source",
        kind: FieldKind::String,
        nullable: false,
    },
    Field {
        name: "stream",
        kind: FieldKind::String,
        nullable: false,
    },
    Field {
        name: "records",
        kind: FieldKind::Long,
        nullable: false,
    },
    Field {
        name: "quarantined",
        kind: FieldKind::Long,
        nullable: false,
    },
    Field {
        name: "seconds",
        kind: FieldKind::Double,
        nullable: false,
    },
    Field {
        name: "error",
        kind: FieldKind::String,
        nullable: true,
    },
];

/// Where the next appended data file of the run history goes.
#[derive(Debug, Clone)]
pub struct RunsDraft {
    /// The Parquet file to write, inside the table directory.
    pub parquet: PathBuf,
    relative: String,
}

impl Store {
    /// The run history's Delta table directory.
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join(RUNS_TABLE)
    }

    /// Creates the run history if needed and names its next data file (nothing written yet).
    pub fn runs_draft(&self) -> Result<RunsDraft, StoreError> {
        self.runs_log()?;
        let relative = super::delta::new_data_file_name();
        Ok(RunsDraft {
            parquet: self.runs_dir().join(&relative),
            relative,
        })
    }

    /// Appends the draft's file (written and flushed; `size` and `stats` as its Delta `add`
    /// records them) to the run history as one commit; returns the version.
    pub fn append_runs(&self, draft: &RunsDraft, size: i64, stats: String) -> Result<i64, StoreError> {
        let mut log = self.runs_log()?;
        Ok(log.commit(
            vec![NewFile {
                path: draft.relative.clone(),
                partition: None,
                size,
                stats,
            }],
            &[],
            None,
            Operation::Upsert,
        )?)
    }

    /// The run history's data files, oldest first (none before the first run).
    pub fn runs_files(&self) -> Result<Vec<PathBuf>, StoreError> {
        match table::open(&self.runs_dir(), AsOf::Latest)? {
            Some(log) => {
                let mut files = table::file_paths(&log)?;
                // Names start with the time written.
                files.sort();
                Ok(files)
            }
            None => Ok(Vec::new()),
        }
    }

    fn runs_log(&self) -> Result<Log, StoreError> {
        Ok(Log::create_plain(
            &self.runs_dir(),
            RUNS_TABLE,
            RUN_FIELDS,
            super::table_properties(),
        )?)
    }
}
