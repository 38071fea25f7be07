//! The polars pipeline: canonical tables in the lake → the tidy metric table.
//!
//! Every polars call in tandem lives under this module or in the store's codec (polars' API moves
//! between versions). `codec` reads tables in slices and makes CSV text spreadsheet-safe; `engine`
//! schedules — it reads the tables, prepares what several families share and runs the metric `families` (core, `dora`,
//! `ops`, `itsm`, `quality`), which compute. Below the families: `grid` (periods, scopes,
//! aggregation, row layout), `links` (change → deployment), `causes`, `attribution`, `downtime`
//! over `intervals`, `undone` (rollbacks and reverts) and `stats`; the families import these and
//! never the engine. `prepared` keeps the change links beside the lake for the next computation
//! over the same tables. `output` writes and reads the metric table; `devlake` reproduces DevLake's
//! rules. The calendar, tiers and KPIs are on the metric floor ([`crate::metric`]).
//! It must not know about HTTP, sources or reports.

use std::path::{Path, PathBuf};

use tandem_connectors::model::Severity;

use crate::metric::{MetricId, MetricRow, MetricTable};

mod attribution;
pub mod bulk;
mod causes;
mod codec;
pub mod devlake;
mod downtime;
mod engine;
mod families;
pub mod frames;
mod grid;
mod intervals;
mod links;
mod output;
mod prepared;
mod runs;
pub mod stats;
#[cfg(test)]
mod testkit;
mod undone;

// The calendar, KPIs and tiers live on the metric floor; these paths keep resolving for code that
// still names them here.

/// What went wrong computing, writing or reading metrics and tables.
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
    /// A file could not be created, written, read or renamed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`create`, `rename`, …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file or a record does not have the columns its table declares.
    #[error(
        "{}: table `{table}`, column `{column}`: {message}; rewrite the file with this version of tandem",
        path.display()
    )]
    Schema {
        /// The table (`deployments`, `metrics`, …).
        table: &'static str,
        /// The file being written or read.
        path: PathBuf,
        /// The column (or serde field) at fault.
        column: String,
        /// What is wrong with it.
        message: String,
    },
    /// One value does not fit its column (wrong type, null where not allowed, bad timestamp).
    #[error("{}: table `{table}`, column `{column}`, row {row}: {message}", path.display())]
    Value {
        /// The table.
        table: &'static str,
        /// The file being written or read.
        path: PathBuf,
        /// The column.
        column: &'static str,
        /// The row: its primary key when known (`id = …`), else its position in the file.
        row: String,
        /// What is wrong with the value.
        message: String,
    },
    /// A canonical table's file could not be encoded or decoded.
    #[error(transparent)]
    Table(#[from] crate::store::codec::CodecError),
    /// The options cannot describe a reporting range.
    #[error("invalid metric options: {0}")]
    Options(String),
}

/// The Parquet data files of each canonical table, as the store lists a version of its Delta table
/// (no file, or only missing ones: an empty table).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// `deployments` table.
    pub deployments: &'a [PathBuf],
    /// `changes` table.
    pub changes: &'a [PathBuf],
    /// `commits` table: the commits compares between production deployments brought, which link
    /// changes to deployments by ancestry.
    pub commits: &'a [PathBuf],
    /// `incidents` table.
    pub incidents: &'a [PathBuf],
    /// `tickets` table.
    pub tickets: &'a [PathBuf],
    /// `ticket_transitions` table.
    pub ticket_transitions: &'a [PathBuf],
    /// `change_requests` table.
    pub change_requests: &'a [PathBuf],
    /// `quarantine` table.
    pub quarantine: &'a [PathBuf],
    /// Where the change links worked out from these tables are kept for the next computation
    /// over the same tables (`<lake>/prepared`); `None`: worked out every time, nothing kept.
    pub prepared: Option<&'a Path>,
}

/// What to compute.
#[derive(Debug, Clone)]
pub struct Options {
    /// The periods to compute (days, ISO weeks, months or quarters in the report's time zone);
    /// every metric also gets one row for the whole range they cover.
    pub calendar: crate::metric::calendar::Calendar,
    /// Incident → deployment attribution window.
    pub attribution_window: chrono::Duration,
    /// Severities that count as outage for downtime.
    pub outage_severities: Vec<Severity>,
    /// Configured services: emitted even in weeks or ranges without data.
    pub services: Vec<String>,
    /// Sources whose incidents count (the systems of record for incidents); all when empty.
    pub incident_sources: Vec<String>,
    /// Sources whose incidents' cause references are read, for themselves and for the counted
    /// incidents they mirror; all when empty.
    pub cause_sources: Vec<String>,
    /// How an incident of a source outside `incident_sources` is recognised as a mirror of a
    /// counted one, rules tried in order; none: no mirrors.
    pub mirror_match: Vec<MirrorMatch>,
    /// For [`MirrorMatch::Start`]: how far apart the two starts may be.
    pub mirror_start_tolerance: chrono::Duration,
    /// Resolution target in hours by ticket priority name (compared case-insensitively).
    pub sla_hours: std::collections::BTreeMap<String, f64>,
    /// How far outside a change request's planned window a deployment still counts as covered.
    pub change_window_tolerance: chrono::Duration,
    /// Availability objective by service (0..1); services not listed use `default_slo`.
    pub slo: std::collections::BTreeMap<String, f64>,
    /// Availability objective of services without their own.
    pub default_slo: f64,
    /// The team of each service (the config mapping): team rows aggregate their services' records.
    pub teams: std::collections::BTreeMap<String, String>,
    /// Change labels that mark a hotfix (rework), compared case-insensitively.
    pub hotfix_labels: Vec<String>,
    /// How incidents are attributed to deployments.
    pub attribution: Attribution,
    /// The metrics to compute (with what they need); every metric when `None`. A family none of
    /// whose metrics is named is not computed, nor is a shared stage no named metric reads.
    pub metrics: Option<Vec<MetricId>>,
}

impl Options {
    /// Whether `metric` is to be computed.
    pub fn wants(&self, metric: MetricId) -> bool {
        self.metrics.as_ref().is_none_or(|named| named.contains(&metric))
    }

    /// Whether any of `metrics` is to be computed.
    pub(crate) fn wants_any(&self, metrics: &[MetricId]) -> bool {
        metrics.iter().any(|&m| self.wants(m))
    }

    /// Those of `metrics` to be computed, in their order.
    pub(crate) fn wanted(&self, metrics: &[MetricId]) -> Vec<MetricId> {
        metrics.iter().copied().filter(|&m| self.wants(m)).collect()
    }
}

/// How an incident recorded in a system that does not count incidents is recognised as a mirror
/// of a counted one (the same outage), whose cause references it then supplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorMatch {
    /// The vendor's correlation field (ServiceNow `correlation_id`, Jira `correlation_field`) names
    /// the other incident by its id or number, or both carry the same key.
    Correlation,
    /// The same service and incident number.
    Number,
    /// The same service, started within `mirror_start_tolerance` of each other.
    Start,
}

/// How incidents are attributed to deployments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attribution {
    /// tandem's chain: an explicit cause reference, else the latest production deployment of the
    /// same service within the attribution window, else none.
    #[default]
    Chain,
    /// Apache DevLake's rule, for comparison: the latest production deployment of the same
    /// project (service) that finished before the incident started, with no window and no
    /// explicit references.
    Devlake,
}

impl Attribution {
    /// The mode's name, as configured and as the metric table's `method` column gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chain => "chain",
            Self::Devlake => "devlake",
        }
    }
}

/// Every metric per calendar period of `opts.calendar` and for the whole range, for the
/// organisation, each service and each team.
///
/// Rows come family by family (core, DORA, operations, ITSM, data quality); within a family by
/// metric, then the `org` scope, services by name and teams by name, and within a scope the periods
/// in time order followed by the `range` row.
pub fn compute_metrics(inputs: Inputs<'_>, opts: &Options) -> Result<MetricTable, PipelineError> {
    engine::compute_metrics(inputs, opts)
}

/// [`compute_metrics`] for each of `calendars` (`opts.calendar` is not read), from one reading of
/// the tables and one preparation of what every family shares: a report that compares periods
/// computes them together.
pub fn compute_metrics_over(
    inputs: Inputs<'_>,
    opts: &Options,
    calendars: &[crate::metric::calendar::Calendar],
) -> Result<Vec<MetricTable>, PipelineError> {
    engine::compute_over(inputs, opts, calendars)
}

/// Writes the metric table as Parquet, atomically (a `.tmp` sibling renamed into place): a data
/// file of the Delta metric table (instants in microseconds), flushed; returns its size and its
/// `add` action's statistics, for the store to commit it.
pub fn write_metrics(table: &MetricTable, parquet: &Path) -> Result<(i64, String), PipelineError> {
    output::write_metrics(table, parquet)
}

/// Writes the metric table as CSV to `out` (`what` names the destination in an error):
/// `period_start`/`period_end` as RFC 3339 UTC strings (`2026-08-03T00:00:00Z`), a missing
/// `value` as an empty field, text a spreadsheet would run as a formula prefixed with `'`.
pub fn write_metrics_csv(
    table: &MetricTable,
    out: &mut dyn std::io::Write,
    what: &Path,
) -> Result<(), PipelineError> {
    output::write_metrics_csv(table, out, what)
}

/// Converts the metric table file of an earlier release into a data file of the Delta metric
/// table at `parquet`; returns its size and statistics as [`write_metrics`] does.
pub fn convert_metrics(old: &Path, parquet: &Path) -> Result<(i64, String), PipelineError> {
    output::convert_metrics(old, parquet)
}

/// Writes run history rows as a new data file of the run history; returns its size and
/// statistics.
pub fn write_runs(
    rows: &[crate::store::runs::RunRecord],
    path: &Path,
) -> Result<(i64, String), PipelineError> {
    runs::write_runs(rows, path)
}

/// Every row of the run history's data files.
pub fn read_runs(files: &[std::path::PathBuf]) -> Result<Vec<crate::store::runs::RunRecord>, PipelineError> {
    runs::read_runs(files)
}

/// Reads a metric table written by [`write_metrics`].
pub fn read_metrics(parquet: &Path) -> Result<Vec<MetricRow>, PipelineError> {
    output::read_metrics(parquet)
}
