//! Reports: plotters charts and minijinja rendering of the templates in `reports/`.
//!
//! Reads metric rows only; never the canonical tables, never polars.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::metric::MetricRow;

/// What went wrong writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// What a report is made from.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    /// Organisation name shown in the title.
    pub organisation: &'a str,
    /// When the report was made.
    pub generated_at: DateTime<Utc>,
    /// The metric table.
    pub rows: &'a [MetricRow],
}

/// Files a report wrote.
#[derive(Debug, Clone)]
pub struct ReportOutput {
    /// The self-contained HTML file.
    pub html: PathBuf,
    /// PNG charts beside it.
    pub charts: Vec<PathBuf>,
}

/// Renders the weekly report into `out_dir`.
pub fn render(_input: &ReportInput<'_>, _out_dir: &Path) -> Result<ReportOutput, ReportError> {
    unimplemented!("report")
}
