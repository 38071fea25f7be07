//! The polars pipeline: canonical tables in the lake → the tidy metric table.
//!
//! Every polars call in tandem lives under this module (polars' API moves between versions).

use std::path::Path;

use chrono::{DateTime, Utc};
use tandem_connectors::model::{Severity, Table};

use crate::metric::MetricRow;

/// What went wrong computing or reading metrics.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// polars failed; the message names the table or file.
    #[error("{context}: {source}")]
    Polars {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: polars::error::PolarsError,
    },
}

/// Parquet files of the canonical tables (a missing file is an empty table).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// `deployments` table.
    pub deployments: &'a Path,
    /// `changes` table.
    pub changes: &'a Path,
    /// `incidents` table.
    pub incidents: &'a Path,
}

/// What to compute.
#[derive(Debug, Clone)]
pub struct Options {
    /// First week's Monday, 00:00 UTC.
    pub start: DateTime<Utc>,
    /// Number of ISO weeks.
    pub weeks: u32,
    /// Incident → deployment attribution window.
    pub attribution_window: chrono::Duration,
    /// Severities that count as outage for downtime.
    pub outage_severities: Vec<Severity>,
    /// Configured services: emitted even in weeks or ranges without data.
    pub services: Vec<String>,
}

/// Weekly and whole-range metrics per service and for the organisation.
pub fn weekly_metrics(
    _inputs: Inputs<'_>,
    _opts: &Options,
) -> Result<Vec<MetricRow>, PipelineError> {
    unimplemented!("pipeline")
}

/// Writes the metric table as Parquet and CSV.
pub fn write_metrics(
    _rows: &[MetricRow],
    _parquet: &Path,
    _csv: &Path,
) -> Result<(), PipelineError> {
    unimplemented!("pipeline")
}

/// Reads a metric table written by [`write_metrics`].
pub fn read_metrics(_parquet: &Path) -> Result<Vec<MetricRow>, PipelineError> {
    unimplemented!("pipeline")
}

/// Writes canonical records as one Parquet file with the table's declared schema.
pub fn write_table<T: Table>(_rows: &[T], _path: &Path) -> Result<(), PipelineError> {
    unimplemented!("pipeline")
}

/// Reads canonical records from a Parquet file written by [`write_table`].
pub fn read_table<T: Table>(_path: &Path) -> Result<Vec<T>, PipelineError> {
    unimplemented!("pipeline")
}
