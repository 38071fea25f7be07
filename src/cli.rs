//! The command line: clap derive types only. Their doc comments are the `--help` text.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// tandem: one set of numbers IT and operations both trust.
///
/// Pulls deployments, pull/merge requests, incidents, tickets and change requests from the tools
/// your teams already use (GitHub, GitLab, PagerDuty, Jira, ServiceNow, CSV/NDJSON files), stores
/// them in a local lake of Delta tables, computes shared delivery and operations metrics, and
/// writes a report. Exit codes: 0 success, 1 failure, 3 partial (some sources failed; the rest was stored
/// and reported).
#[derive(Debug, Parser)]
#[command(name = "tandem", version, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML). Relative paths inside it are relative to its directory.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "TANDEM_CONFIG",
        default_value = "tandem.toml"
    )]
    pub config: PathBuf,

    /// Log errors only (by default warnings are logged too: retries, quarantined records).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,

    /// Log more: -v progress per stream, -vv debug detail.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// How lines on stderr are written: `text`, or `json` (one JSON object per line with
    /// `timestamp`, `level`, `message` and the event's fields, for a log collector). The summary
    /// line that ends `sync` and `run` and the final error line follow it too.
    #[arg(long, global = true, env = "TANDEM_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The format of the lines on stderr.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull new and changed records from every configured source into the lake.
    Sync(SyncArgs),
    /// Verify each source's credentials and permissions: one cheap request to every endpoint a
    /// sync of it calls, naming each that fails and what to grant.
    Check(CheckArgs),
    /// Compute the metric table from the lake, write it (Parquet + CSV) and print it.
    Metrics(MetricsArgs),
    /// Render the HTML report and PNG charts from the last metric table.
    Report(ReportArgs),
    /// The nightly job: sync, then metrics, then the weekly report and the nightly digest.
    Run(RunArgs),
    /// Export the lake and the metrics for the data team: Parquet and CSV with a schema file.
    Export(ExportArgs),
    /// Re-apply the [[service]] mapping to every stored record, without contacting any source.
    Remap(RemapArgs),
    /// Run the whole job on a simulated organisation served by built-in fake APIs.
    Demo(DemoArgs),
    /// Maintain the lake now: merge small files, checkpoint the tables' logs, delete files and
    /// log entries older than `[store] retention_days` and raw pages older than
    /// `raw_retention_days` (`tandem run` does each when due).
    Maintain(MaintainArgs),
    /// Convert a lake written by an earlier release (one Parquet file per table) to Delta tables,
    /// without any request to a source (any command that writes the lake does it on first use).
    Migrate(MigrateArgs),
    /// Write a commented starter config for the sources you name, check that it loads, and say
    /// what to fill in next (the environment variables to export, the placeholders to replace).
    Init(InitArgs),
    /// Print the shell completion script for SHELL to stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout, or with --out write it and one page per subcommand
    /// into a directory.
    Man(ManArgs),
}

/// `tandem init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The kinds of source to configure, comma-separated: github, gitlab, jira (Cloud),
    /// jira-datacenter, pagerduty, servicenow, file (CSV/NDJSON imports).
    #[arg(long, value_delimiter = ',', value_name = "KIND,...")]
    pub sources: Vec<String>,
    /// The file to write (default: the --config path, tandem.toml).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `tandem completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `tandem man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write tandem.1 and a page per subcommand (tandem-sync.1, ...) into this directory, e.g.
    /// /usr/local/share/man/man1, instead of printing tandem.1.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `tandem maintain`.
#[derive(Debug, Args)]
pub struct MaintainArgs {}

/// `tandem migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {}

/// `tandem sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only this source (its `name` in the config).
    #[arg(long)]
    pub source: Option<String>,
    /// Only this stream (e.g. `deployments`, `pulls`, `incidents`, `issues`, `change_requests`).
    #[arg(long)]
    pub stream: Option<String>,
    /// Forget the bookmarks of the selected streams and read them in full.
    #[arg(long)]
    pub full: bool,
}

/// `tandem check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
}

/// The reporting range.
#[derive(Debug, Args, Clone, Default)]
pub struct RangeArgs {
    /// Number of ISO weeks to cover (default: `report.weeks` in the config, else 12).
    #[arg(long, conflicts_with = "period")]
    pub weeks: Option<u32>,
    /// The Monday after the last week covered, e.g. 2026-11-16 (default: `report.until`, else the
    /// current week's Monday, so only complete weeks are reported).
    #[arg(long, conflicts_with = "period")]
    pub until: Option<NaiveDate>,
    /// A period instead of weeks: 2026-Q3, 2026-11 (a month), 2026-W45, 2026-11-03 (a day) or
    /// 2026-08-01..2026-11-01 (end exclusive), in the report time zone.
    #[arg(long)]
    pub period: Option<String>,
    /// The periods the range is divided into: day, week, month or quarter (default: the kind
    /// --period names; weeks otherwise).
    #[arg(long)]
    pub grain: Option<String>,
}

impl RangeArgs {
    /// Whether any range flag was given (else the command's default range applies).
    pub fn is_given(&self) -> bool {
        self.weeks.is_some() || self.until.is_some() || self.period.is_some() || self.grain.is_some()
    }
}

/// Which scopes `tandem metrics` prints.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum ByScope {
    /// The organisation as a whole.
    #[default]
    Org,
    /// Each service.
    Service,
    /// Each team (the teams of the `[[service]]` mapping).
    Team,
}

/// Output format of `tandem metrics`.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum MetricsFormat {
    /// The whole-range figures of the chosen scopes, as an aligned table.
    #[default]
    Table,
    /// Every row of the metric table as CSV.
    Csv,
    /// A JSON object: `metrics`, the rows of the chosen scopes (every period, with `no_data`
    /// where a source does not cover it), and `kpis`, each KPI judged with its target, previous
    /// value and change.
    Json,
}

/// `tandem metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Reporting range.
    #[command(flatten)]
    pub range: RangeArgs,
    /// What to print.
    #[arg(long, value_enum, default_value_t)]
    pub format: MetricsFormat,
    /// Whose figures to print (table and JSON).
    #[arg(long, value_enum, default_value_t)]
    pub by: ByScope,
    /// Compute only these metrics (ids as the metric table names them, comma-separated, e.g.
    /// deployment_count,lead_time_median), and only what they need; printed, not stored, so the
    /// stored metric table keeps every metric for the reports.
    #[arg(long, value_delimiter = ',', value_parser = parse_metric_id)]
    pub metrics: Option<Vec<crate::metric::MetricId>>,
}

/// A metric id of `--metrics`.
fn parse_metric_id(id: &str) -> Result<crate::metric::MetricId, String> {
    crate::metric::MetricId::parse(id.trim()).ok_or_else(|| {
        let known: Vec<&str> = crate::metric::MetricId::ALL.iter().map(|m| m.as_str()).collect();
        format!(
            "no metric is called {id:?}; the metrics are: {}",
            known.join(", ")
        )
    })
}

/// `tandem report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Which report to write.
    #[arg(value_enum, default_value_t = ReportKind::Weekly)]
    pub kind: ReportKind,
    /// Reporting range (steering: the period, compared with the one before it).
    #[command(flatten)]
    pub range: RangeArgs,
    /// Report directory, or a bucket prefix (`s3://bucket/reports`) (default: `report.out` in the
    /// config). Each run goes into its own folder `KIND/TIME/` under it, and `index.html` there
    /// lists every run.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Re-render a past report from the lake as it was: the metric table's version VERSION (as a
    /// report's `meta.json` records it), or the latest version committed at or before TIMESTAMP
    /// (RFC 3339, e.g. 2026-11-16T06:00:00Z). The weekly report of the stored metric table comes
    /// out byte-identical to the one first rendered from that version; a report over a range
    /// (`steering`, or `weekly` with range flags) is computed from the canonical tables' versions
    /// that metric table was computed from. Not for `nightly`, which also shows the last run's
    /// health. Versions older than `[store] retention_days` are gone.
    #[arg(long, value_name = "VERSION|TIMESTAMP")]
    pub as_of: Option<String>,
}

/// The report kinds, each defined in `reports/`.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum ReportKind {
    /// Every metric per week and service: of the range the flags name, else of the stored metric
    /// table.
    #[default]
    Weekly,
    /// One page for the steering committee: shared KPIs, DORA, velocity vs downtime, glossary.
    Steering,
    /// The last 24 hours and 7 days, as HTML and as a Markdown digest for a chat channel.
    Nightly,
}

/// `tandem run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Reporting range.
    #[command(flatten)]
    pub range: RangeArgs,
    /// Directory (or bucket prefix, `s3://bucket/reports`) to write the report to (default:
    /// `report.out` in the config).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `tandem export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Reporting range of the metric table and the per-service breakdown (the canonical tables
    /// are exported whole).
    #[command(flatten)]
    pub range: RangeArgs,
    /// Directory (or bucket prefix, `s3://bucket/exports`) the export folder is created in,
    /// `<out>/export/<timestamp>/` (default: `report.out` in the config).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace people's names, logins and emails with a keyed hash (HMAC-SHA256), the key read
    /// from the variable `export.pseudonymise_key_env` names (default TANDEM_PSEUDONYM_KEY).
    #[arg(long)]
    pub pseudonymise: bool,
}

/// `tandem remap`.
#[derive(Debug, Args)]
pub struct RemapArgs {}

/// `tandem demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's config, lake and report. Emptied first if an earlier demo made it.
    #[arg(long, default_value = "tandem-demo")]
    pub out: PathBuf,
    /// Weeks of history to simulate, ending at the current week's Monday.
    #[arg(long, default_value_t = 12)]
    pub weeks: u32,
    /// Seed of the simulated organisation (the same seed gives the same organisation).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}
