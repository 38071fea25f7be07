//! One file per subcommand, each with a `run` function, and here the steps they share: the
//! reporting range and the exit outcome, computing and writing the metric table, archiving a
//! report run, writing the nightly digest, syncing. A command imports these, never another
//! command (`tandem demo`, which runs the other commands on a simulated organisation, excepted).
//! `anyhow` lives here and in `main.rs` only.

pub mod check;
pub mod completions;
pub mod demo;
pub mod export;
pub mod init;
pub mod maintain;
pub mod man;
pub mod metrics;
pub mod migrate;
pub mod nightly;
pub mod remap;
pub mod report;
pub mod run;
pub mod steering;
pub mod sync;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use tandem_connectors::SecretEnv;

use crate::cli::{LogFormat, RangeArgs};
use crate::config::{Config, MetricsConfig, ServiceConfig};
use crate::metric::calendar::{Calendar, Grain, parse_period};
use crate::metric::kpi::{Scored, scorecard, scorecard_of_period};
use crate::metric::{MetricId, MetricRow, MetricTable};
use crate::pipeline::{self, Inputs, Options};
use crate::report::archive::{self, Meta};
use crate::report::nightly::{NightlyInput, NightlyOutput, Window};
use crate::report::{ReportError, ReportOutput, render_view, view};
use crate::store::Store;
use crate::store::coverage::{Coverage, Feed};
use crate::store::delta::AsOf;
use crate::store::maintain::MaintenanceReport;
use crate::sync::{RunHealth, SyncOptions, SyncReport, sync};

/// Standard output for results written a piece at a time (a CSV of millions of rows): a reader
/// that stops reading (`| head`) ends the command quietly with success, as with [`out`].
#[derive(Debug)]
pub struct Stdout;

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::io::stdout().lock().write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match std::io::stdout().lock().flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            other => other,
        }
    }
}

/// Writes a command's result to stdout. A closed pipe (`tandem metrics | head`) ends the process
/// quietly with success, as command-line tools do, instead of panicking in `println!`.
pub fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// [`out`] with `format!` arguments and a newline.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::commands::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// How a command ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything worked: exit 0.
    Success,
    /// Some sources failed, the rest was stored and reported: exit 3.
    Partial,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Success => 0,
            Self::Partial => 3,
        }
    }
}

/// What every command gets besides its own arguments.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where secrets come from.
    pub env: tandem_connectors::SecretEnv,
    /// Draw progress lines on stderr.
    pub progress: bool,
}

impl Context {
    /// The context of a command-line run: progress lines only for people at a terminal (never
    /// under cron, systemd or a CronJob, where stderr is not a TTY) and not with `--quiet`.
    pub fn for_cli(quiet: bool) -> Self {
        Self {
            env: tandem_connectors::SecretEnv::process(),
            progress: !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }
}

/// Opens the configured lake for a command that changes it (`command`, e.g. `tandem sync`,
/// names it to a second writer), holding the writers' lock until the returned store and its
/// clones are dropped. Commands that only read the lake (reports, exports) use `Store::open`.
/// A metric table in the layout of an earlier release is converted to the Delta metric table
/// here (the store commits, the pipeline re-encodes the rows), as the canonical tables are by
/// the store itself.
pub fn open_lake_for_writing(config: &Config, command: &str) -> anyhow::Result<Store> {
    let store = Store::open_for_writing(&config.lake()?, command)?;
    convert_legacy_metrics(&store)?;
    Ok(store)
}

/// Opens the configured lake for a command that writes part of it alongside other writers: the
/// streams of `sources` and, when `metrics`, the metric table (see `Store::open_for_parts`).
/// Another process writing the same part, or having the lake alone, is refused naming it.
pub fn open_lake_for_parts(
    config: &Config,
    command: &str,
    sources: &[&str],
    metrics: bool,
) -> anyhow::Result<Store> {
    let store = Store::open_for_parts(&config.lake()?, command, sources, metrics)?;
    if metrics {
        convert_legacy_metrics(&store)?;
    }
    Ok(store)
}

/// The configured sources a sync with `options` reads (every one, or the one `--source` names).
pub fn synced_sources<'a>(config: &'a Config, options: &SyncOptions) -> Vec<&'a str> {
    config
        .sources
        .iter()
        .map(|s| s.name())
        .filter(|name| options.source.as_deref().is_none_or(|only| only == *name))
        .collect()
}

/// Converts the metric table of an earlier release's layout, if the lake still has one, into a
/// version of the Delta metric table (its rows unchanged); returns the version.
pub fn convert_legacy_metrics(store: &Store) -> anyhow::Result<Option<i64>> {
    let Some(parquet) = store.legacy_metrics() else {
        return Ok(None);
    };
    let draft = store.metrics_draft()?;
    let converted = crate::pipeline::convert_metrics(&parquet, &draft.parquet).map_err(anyhow::Error::from);
    let (size, stats) = match converted {
        Ok(written) => written,
        Err(e) => {
            let _ = std::fs::remove_file(&draft.parquet);
            return Err(e.context(format!(
                "cannot convert the metric table {} to a Delta table; move it aside (the next \
                 `tandem metrics` writes a new one)",
                parquet.display()
            )));
        }
    };
    Ok(Some(store.commit_legacy_metrics(&draft, size, stats)?))
}

/// Loads the config, saying how to get one when it is missing.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    if !path.exists() {
        bail!(
            "config file {} not found: pass --config PATH or set TANDEM_CONFIG (`tandem demo` writes an example)",
            path.display()
        );
    }
    Ok(Config::load(path)?)
}

/// The reporting calendar: `--period` (with `--grain`), else the `weeks` ISO weeks ending at
/// `--until` / `report.until` / the current week's Monday, in the report time zone.
pub fn range(args: &RangeArgs, config: &Config, today: NaiveDate) -> anyhow::Result<Calendar> {
    let grain: Option<Grain> = args
        .grain
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let Some(spec) = &args.period {
        let (named, from, to) = parse_period(spec).map_err(anyhow::Error::msg)?;
        let grain = grain.unwrap_or(match named {
            // An explicit range is divided into weeks when it is made of whole weeks, else days.
            Grain::Range if from.weekday() == Weekday::Mon && to.weekday() == Weekday::Mon => Grain::Week,
            Grain::Range => Grain::Day,
            g => g,
        });
        return Calendar::new(config.tz(), grain, from, to).map_err(|e| {
            anyhow::anyhow!("--period {spec} cannot be divided into {grain}s: {e}; choose another --grain")
        });
    }
    let weeks = args.weeks.unwrap_or(config.report.weeks);
    if weeks == 0 || weeks > 520 {
        bail!("--weeks must be between 1 and 520, not {weeks}");
    }
    let until = match args.until.or(config.report.until) {
        Some(d) if d.weekday() != Weekday::Mon => {
            bail!(
                "the range must end on a Monday (ISO weeks start on Monday); {d} is a {}",
                d.weekday()
            )
        }
        Some(d) => d,
        None => monday_of(today),
    };
    let from = until - Duration::weeks(i64::from(weeks));
    let grain = grain.unwrap_or(Grain::Week);
    Calendar::new(config.tz(), grain, from, until)
        .map_err(|e| anyhow::anyhow!("{weeks} weeks to {until} cannot be divided into {grain}s: {e}"))
}

/// The period just before `--period SPEC`, of the same kind and length (the quarter before a
/// quarter, the days before a range of days): its first day, and the range arguments that compute
/// it divided as `SPEC` names it.
pub fn period_before(spec: &str) -> anyhow::Result<(NaiveDate, RangeArgs)> {
    let (named, from, to) = parse_period(spec).map_err(anyhow::Error::msg)?;
    let prev_from = match named {
        Grain::Quarter => from.checked_sub_months(chrono::Months::new(3)),
        Grain::Month => from.checked_sub_months(chrono::Months::new(1)),
        Grain::Week => Some(from - Duration::days(7)),
        Grain::Day => Some(from - Duration::days(1)),
        Grain::Range => Some(from - (to - from)),
    }
    .ok_or_else(|| anyhow::anyhow!("--period {spec}: the period before it is out of range"))?;
    let previous = RangeArgs {
        period: Some(format!("{prev_from}..{from}")),
        grain: match named {
            Grain::Range => None,
            g => Some(g.to_string()),
        },
        ..RangeArgs::default()
    };
    Ok((prev_from, previous))
}

/// The Monday starting the ISO week of `day`.
pub fn monday_of(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

pub use crate::report::text::period_label;

// The metric table: computed from the lake, written as a new version, judged.

/// The shared KPIs judged on `rows` (the metric table computed for `range_args`, or its rows of
/// the KPIs' scopes), and the heading that says on which period: with `--period`, the period asked
/// (its whole-range rows) against the period before it (`previous`: the rows of
/// [`kpi_comparison`]'s range, computed in the same pass); else each KPI's latest period in `rows`
/// against the period before it.
pub fn kpis(
    rows: &[MetricRow],
    range_args: &RangeArgs,
    config: &Config,
    previous: Option<&[MetricRow]>,
) -> anyhow::Result<(String, Vec<Scored>)> {
    if config.kpis.is_empty() {
        return Ok((String::new(), Vec::new()));
    }
    let Some(spec) = range_args.period.as_deref() else {
        return Ok(("latest period".to_owned(), scorecard(rows, &config.kpis)));
    };
    let previous = previous.with_context(|| {
        format!("the KPIs of --period {spec} are compared with the period before, which was not computed")
    })?;
    Ok((
        format!("--period {spec}"),
        scorecard_of_period(rows, previous, &config.kpis),
    ))
}

/// The range whose figures [`kpis`] compares the KPIs with, when it needs one computed (KPIs
/// configured and `--period` given): computed with the range itself, in one pass.
pub fn kpi_comparison(range_args: &RangeArgs, config: &Config) -> anyhow::Result<Option<RangeArgs>> {
    match range_args.period.as_deref() {
        Some(spec) if !config.kpis.is_empty() => Ok(Some(period_before(spec)?.1)),
        _ => Ok(None),
    }
}

/// Computes the metric table for the range and writes it to the lake as the metric table's new
/// version, recording the canonical tables' versions it read.
pub fn compute(range_args: &RangeArgs, config: &Config) -> anyhow::Result<MetricTable> {
    compute_version(range_args, config).map(|(table, _)| table)
}

/// [`compute`], also returning the metric table version written.
pub fn compute_version(
    range_args: &RangeArgs,
    config: &Config,
) -> anyhow::Result<(MetricTable, crate::store::metrics::MetricsVersion)> {
    compute_version_with(range_args, config, &[]).map(|(table, version, _)| (table, version))
}

/// [`compute_version`], also computing the tables of `also` (not stored: a digest's days, the
/// period before for the KPIs' change) in the same pass over the lake.
pub fn compute_version_with(
    range_args: &RangeArgs,
    config: &Config,
    also: &[RangeArgs],
) -> anyhow::Result<(
    MetricTable,
    crate::store::metrics::MetricsVersion,
    Vec<MetricTable>,
)> {
    let store = open_lake_for_parts(config, "tandem metrics", &[], true)?;
    // The writers' lock is held: the tables stay at these versions while they are read.
    let versions = store.table_versions()?;
    let basis = Basis {
        metrics: None,
        tables: (store.legacy_tables().is_empty()).then(|| versions.clone()),
        at: Utc::now(),
        // The lake's coverage now, which the commit records with the version.
        coverage: None,
    };
    let ranges: Vec<&RangeArgs> = std::iter::once(range_args).chain(also).collect();
    let mut tables = metric_tables(&store, &basis, &ranges, config, Utc::now().date_naive(), None)?;
    let table = tables.remove(0);
    let draft = store.metrics_draft()?;
    let (size, stats) = match pipeline::write_metrics(&table, &draft.parquet) {
        Ok(written) => written,
        Err(e) => {
            // Never committed: nothing refers to it.
            let _ = std::fs::remove_file(&draft.parquet);
            return Err(e.into());
        }
    };
    let version = store.commit_metrics(&draft, size, stats, &versions)?;
    tracing::info!(rows = table.len(), version, path = %draft.parquet.display(), "Metric table written.");
    let written = store
        .metrics_version(AsOf::Version(version))?
        .with_context(|| format!("the metric table's version {version} just written cannot be read"))?;
    Ok((table, written, tables))
}

/// Computes the metric table for the range from the lake without writing it: for reports over
/// their own range (the nightly digest's days), which must not replace the stored table.
pub fn calculate(range_args: &RangeArgs, config: &Config) -> anyhow::Result<Vec<MetricRow>> {
    let tables = calculate_only(range_args, config, None, &[])?;
    Ok(tables.first().map(MetricTable::to_rows).unwrap_or_default())
}

/// Computes only the metrics `only` names (and what they need; all when `None`) for the range
/// from the lake, without writing them (`tandem metrics --metrics`, which must not replace the
/// stored table with a part of it), and the tables of `also` in the same pass: the range's table
/// first, then one per range of `also`.
pub fn calculate_only(
    range_args: &RangeArgs,
    config: &Config,
    only: Option<&[MetricId]>,
    also: &[RangeArgs],
) -> anyhow::Result<Vec<MetricTable>> {
    let store = Store::open(&config.lake()?)?;
    let basis = basis(&store, None)?;
    let ranges: Vec<&RangeArgs> = std::iter::once(range_args).chain(also).collect();
    metric_tables(&store, &basis, &ranges, config, Utc::now().date_naive(), only)
}

/// [`calculate`] on the canonical tables of `basis`, for a range relative to `today`.
pub fn calculate_on(
    store: &Store,
    basis: &Basis,
    range_args: &RangeArgs,
    config: &Config,
    today: NaiveDate,
) -> anyhow::Result<Vec<MetricRow>> {
    Ok(metric_table(store, basis, range_args, config, today, None)?.to_rows())
}

/// [`calculate_on`] for several ranges in one pass over the lake (a steering report's period,
/// its weeks and the period before): each range's rows, in the order given.
pub fn calculate_many_on(
    store: &Store,
    basis: &Basis,
    ranges: &[&RangeArgs],
    config: &Config,
    today: NaiveDate,
) -> anyhow::Result<Vec<Vec<MetricRow>>> {
    Ok(metric_tables(store, basis, ranges, config, today, None)?
        .iter()
        .map(MetricTable::to_rows)
        .collect())
}

fn metric_table(
    store: &Store,
    basis: &Basis,
    range_args: &RangeArgs,
    config: &Config,
    today: NaiveDate,
    only: Option<&[MetricId]>,
) -> anyhow::Result<MetricTable> {
    let mut tables = metric_tables(store, basis, &[range_args], config, today, only)?;
    Ok(tables.pop().unwrap_or_default())
}

/// The metric table of each range, computed together (one reading of the lake).
fn metric_tables(
    store: &Store,
    basis: &Basis,
    ranges: &[&RangeArgs],
    config: &Config,
    today: NaiveDate,
    only: Option<&[MetricId]>,
) -> anyhow::Result<Vec<MetricTable>> {
    let calendars = ranges
        .iter()
        .map(|r| range(r, config, today))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut tables = from_store_many(
        store,
        basis.tables.as_ref(),
        calendars,
        &config.metrics,
        &config.services,
        only,
    )?;
    for table in &mut tables {
        mark_uncovered(table, store, config, basis.coverage.clone())?;
    }
    Ok(tables)
}

// Time travel: which versions of the lake's tables a report reads.

/// `--as-of VERSION|TIMESTAMP`: a metric table version, or an RFC 3339 instant.
pub fn parse_as_of(spec: &str) -> anyhow::Result<AsOf> {
    if let Ok(version) = spec.trim().parse::<u64>() {
        return Ok(AsOf::Version(i64::try_from(version).unwrap_or(i64::MAX)));
    }
    match DateTime::parse_from_rfc3339(spec.trim()) {
        Ok(at) => Ok(AsOf::Time(at.with_timezone(&Utc))),
        Err(e) => bail!(
            "--as-of {spec:?} is neither a metric table version (a number such as 3, as a report's \
             meta.json records it) nor an RFC 3339 instant such as 2026-11-16T06:00:00Z ({e})"
        ),
    }
}

/// The canonical tables a report computes its figures from, at fixed versions.
#[derive(Debug, Clone)]
pub struct Basis {
    /// The metric table's version these tables belong to: the one `--as-of` names, else the
    /// latest (none: no metric table yet).
    pub metrics: Option<i64>,
    /// The canonical tables' versions (a table not named had not been written); `None` for a lake
    /// whose tables are not Delta tables yet, read as they are.
    pub tables: Option<BTreeMap<String, i64>>,
    /// With `--as-of`: when that metric table version was committed, the time its reports show.
    pub at: DateTime<Utc>,
    /// With `--as-of`: what the lake covered when that version was computed, if it recorded it
    /// (otherwise, and without `--as-of`, the lake's coverage now).
    pub coverage: Option<Coverage>,
}

impl Basis {
    /// The versions as a report's `meta.json` records them.
    pub fn read(&self) -> Option<archive::TableVersions> {
        Some(archive::TableVersions {
            metrics: self.metrics,
            tables: self.tables.clone()?,
        })
    }
}

/// The canonical tables to compute from: as of the metric table version `as_of` names (the
/// versions it was computed from), else their latest versions.
pub fn basis(store: &Store, as_of: Option<AsOf>) -> anyhow::Result<Basis> {
    let Some(at) = as_of else {
        return Ok(Basis {
            metrics: store.metrics_version(AsOf::Latest)?.map(|v| v.version),
            tables: (store.legacy_tables().is_empty())
                .then(|| store.table_versions())
                .transpose()?,
            at: Utc::now(),
            coverage: None,
        });
    };
    let version = stored_version(store, at)?;
    if version.tables.is_empty() {
        bail!(
            "the metric table's version {} was converted from an earlier release, which did not \
             record the tables it was computed from: only the weekly report of the stored metric \
             table can be rendered as of it (`tandem report weekly --as-of {}` without range flags)",
            version.version,
            version.version
        );
    }
    Ok(Basis {
        metrics: Some(version.version),
        tables: Some(version.tables),
        at: version.committed_at,
        coverage: version.coverage,
    })
}

/// The stored metric table's version `at` names; an error saying what exists when there is none.
pub fn stored_version(store: &Store, at: AsOf) -> anyhow::Result<crate::store::metrics::MetricsVersion> {
    match store.metrics_version(at)? {
        Some(version) => Ok(version),
        None => bail!(
            "the lake at {} has no metric table yet: run `tandem metrics` (or `tandem run`) first",
            store.root().display()
        ),
    }
}

/// Turns the figures of periods the lake does not cover into "no data" with the reason: a
/// source the metric reads failed in its last sync, never synced, or its history starts after
/// the period. A lake that holds tables but no coverage record (synced before tandem kept one)
/// is taken as covered; a lake with neither has never synced anything. `recorded`: the coverage
/// to judge by instead of the lake's now (a past version's, for `--as-of`).
pub fn mark_uncovered(
    table: &mut MetricTable,
    store: &Store,
    config: &Config,
    recorded: Option<Coverage>,
) -> anyhow::Result<()> {
    let coverage = match recorded.map_or_else(|| Coverage::load(store), |c| Ok(Some(c)))? {
        Some(coverage) => coverage,
        None if store.has_tables() => return Ok(()),
        None => Coverage::default(),
    };
    let feeds = feeds(config);
    let mut uncovered = 0usize;
    table.mark_no_data(|metric, _, start, end| {
        let gap = coverage.gap(&feeds, metric.inputs(), start, end);
        uncovered += usize::from(gap.is_some());
        gap
    });
    if uncovered > 0 {
        tracing::warn!(
            figures = uncovered,
            "Some figures have no data: a source they read failed, never synced, or does not reach back to their period."
        );
    }
    Ok(())
}

/// Every configured source stream and the tables it writes; a source left out of
/// `[metrics] incident_sources` does not count incidents, so it leaves none uncovered.
pub fn feeds(config: &Config) -> Vec<Feed> {
    let counts_incidents = |name: &str| {
        config.metrics.incident_sources.is_empty()
            || config.metrics.incident_sources.iter().any(|s| s == name)
    };
    config
        .sources
        .iter()
        .flat_map(|source| {
            source.feeds().into_iter().map(move |(stream, tables)| Feed {
                source: source.name().to_owned(),
                stream,
                tables: tables
                    .into_iter()
                    .filter(|t| *t != "incidents" || counts_incidents(source.name()))
                    .collect(),
            })
        })
        .collect()
}

/// The metric table of the lake in `store` over `calendar`, with the `[metrics]` settings and the
/// `[[service]]` entries (their names, teams and SLOs), from the tables' latest versions.
pub fn from_store(
    store: &Store,
    calendar: Calendar,
    settings: &MetricsConfig,
    services: &[ServiceConfig],
) -> anyhow::Result<MetricTable> {
    let mut tables = from_store_many(store, None, vec![calendar], settings, services, None)?;
    Ok(tables.pop().unwrap_or_default())
}

/// The metric table of each of `calendars`, from one reading of the tables as of `versions`
/// (table name → version; a table not named had not been written; their latest versions when
/// `None`), computing only the metrics `only` names and what they need (all when `None`): the
/// one place the pipeline's inputs and options are put together, for `tandem` and its benchmark
/// alike.
pub fn from_store_many(
    store: &Store,
    versions: Option<&BTreeMap<String, i64>>,
    calendars: Vec<Calendar>,
    settings: &MetricsConfig,
    services: &[ServiceConfig],
    only: Option<&[MetricId]>,
) -> anyhow::Result<Vec<MetricTable>> {
    let Some(calendar) = calendars.first().cloned() else {
        return Ok(Vec::new());
    };
    let files = |table: &str| match versions {
        None => store.table_files(table, AsOf::Latest),
        Some(versions) => match versions.get(table) {
            Some(v) => store.table_files(table, AsOf::Version(*v)),
            None => Ok(Vec::new()),
        },
    };
    let (deployments, changes, commits, incidents) = (
        files("deployments")?,
        files("changes")?,
        files("commits")?,
        files("incidents")?,
    );
    let (tickets, ticket_transitions, change_requests, quarantine) = (
        files("tickets")?,
        files("ticket_transitions")?,
        files("change_requests")?,
        files("quarantine")?,
    );
    let prepared = store.prepared_dir();
    let options = Options {
        calendar,
        attribution_window: chrono::Duration::hours(settings.attribution_window_hours),
        outage_severities: settings.outage_severities.clone(),
        services: services.iter().map(|s| s.name.clone()).collect(),
        incident_sources: settings.incident_sources.clone(),
        cause_sources: settings.cause_sources.clone(),
        mirror_match: settings.mirror_match.clone(),
        mirror_start_tolerance: chrono::Duration::minutes(settings.mirror_start_minutes),
        sla_hours: settings.sla_hours.clone(),
        change_window_tolerance: chrono::Duration::minutes(settings.change_window_tolerance_minutes),
        slo: services
            .iter()
            .filter_map(|s| s.slo.map(|v| (s.name.clone(), v)))
            .collect(),
        default_slo: settings.default_slo,
        hotfix_labels: settings.hotfix_labels.clone(),
        attribution: settings.attribution,
        metrics: only.map(<[MetricId]>::to_vec),
        teams: services
            .iter()
            .filter_map(|s| s.team.clone().map(|t| (s.name.clone(), t)))
            .collect(),
    };
    pipeline::compute_metrics_over(
        Inputs {
            deployments: &deployments,
            changes: &changes,
            commits: &commits,
            incidents: &incidents,
            tickets: &tickets,
            ticket_transitions: &ticket_transitions,
            change_requests: &change_requests,
            quarantine: &quarantine,
            prepared: Some(&prepared),
        },
        &options,
        &calendars,
    )
    .map_err(Into::into)
}

// Reports: where they go, how a run is archived, what is printed.

/// The report directory: `--out`, else `report.out` from the config, relative to the config file.
/// A folder in object storage (`s3://site/reports`) is rendered into locally (up to date with the
/// bucket) and uploaded when the command ends ([`publish_outputs`]), so a bucket served as a static
/// site is the report site.
pub fn out_dir(config: &Config, out: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let out = out.unwrap_or_else(|| config.report.out.clone());
    let text = out.to_string_lossy();
    if crate::store::bucket::is_url(&text) {
        return Ok(crate::store::bucket::mount_tree(
            &text,
            &config.store.s3,
            &config.cache_root(),
        )?);
    }
    Ok(config.resolve(&out))
}

/// Uploads the reports and exports a command wrote to folders in object storage (see
/// [`out_dir`]), saying where they went.
pub fn publish_outputs() -> anyhow::Result<()> {
    for (url, files) in crate::store::bucket::publish_trees()? {
        tracing::info!(url = %url, files, "Reports published to object storage.");
        crate::say!("Published {files} file(s) to {url}");
    }
    Ok(())
}

/// Renders the weekly report of `rows` into a new run folder `<out>/weekly/<timestamp>/` and
/// rewrites the history page. The page shows `data_at` (when its metric table was committed, so
/// a render of the same version is the same page), else the time it is made; `read` goes into
/// its `meta.json`.
pub fn render_weekly(
    rows: &[MetricRow],
    config: &Config,
    out: Option<PathBuf>,
    data_at: Option<DateTime<Utc>>,
    read: Option<archive::TableVersions>,
) -> anyhow::Result<ReportOutput> {
    let out_dir = out_dir(config, out)?;
    let now = Utc::now();
    // Built once: its period names the run, and it is what gets rendered.
    let view = view::build(
        &config.organisation.name,
        data_at.unwrap_or(now),
        rows,
        &config.kpis,
    );
    let run = Run {
        kind: "weekly",
        title: format!(
            "{} \u{2014} {} IT and operations report",
            config.organisation.name,
            view.page.cadence.to_lowercase()
        ),
        period: view.page.range.clone().unwrap_or_else(|| "no data".to_owned()),
        generated_at: now,
        read,
    };
    archived(&out_dir, &config.organisation.name, &run, |dir| {
        render_view(&view, dir)
    })
}

/// One report run, as the history describes it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The report kind, also its folder under the report directory.
    pub kind: &'static str,
    /// Title listed in the history.
    pub title: String,
    /// The period as readers name it.
    pub period: String,
    /// When it was made; names its folder.
    pub generated_at: DateTime<Utc>,
    /// The table versions it read.
    pub read: Option<archive::TableVersions>,
}

/// Creates the run's folder, lets `render` write into it, describes the run in its `meta.json`,
/// gives the folder its name and rewrites `<out>/index.html`. A run that fails or is killed
/// half-way leaves a hidden partial folder, which the history skips and the next run removes.
pub fn archived(
    out: &Path,
    organisation: &str,
    run: &Run,
    render: impl FnOnce(&Path) -> Result<ReportOutput, ReportError>,
) -> anyhow::Result<ReportOutput> {
    let context = || format!("cannot write the {} report to {}", run.kind, out.display());
    let dir = archive::run_dir(out, run.kind, run.generated_at).with_context(context)?;
    let mut output = match render(&dir) {
        Ok(output) => output,
        Err(e) => {
            // Best effort: a partial folder is never listed, and the next run removes it anyway.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e).with_context(context);
        }
    };
    let relative = |p: &Path| {
        p.strip_prefix(&dir)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    };
    let meta = Meta {
        kind: run.kind.to_owned(),
        title: run.title.clone(),
        period: run.period.clone(),
        generated_at: run.generated_at,
        main: relative(&output.html),
        // The charts are inline in the page; the history links the page only.
        extra: Vec::new(),
        read: run.read.clone(),
    };
    archive::write_meta(&dir, &meta).with_context(context)?;
    let published = archive::publish(&dir).with_context(context)?;
    output.html = archive::moved(&output.html, &dir, &published);
    for chart in &mut output.charts {
        *chart = archive::moved(chart, &dir, &published);
    }
    output.index = Some(archive::write_index(out, organisation).with_context(context)?);
    Ok(output)
}

/// Says where the report went: one path per line.
pub fn print_report(output: &ReportOutput) {
    crate::say!("report: {}", output.html.display());
    for chart in &output.charts {
        crate::say!("chart:  {}", chart.display());
    }
    if let Some(index) = &output.index {
        crate::say!("index:  {}", index.display());
    }
}

// The nightly digest.

/// The days a digest made at `now` covers: `--period DAY` names its last day; without it, the
/// last full day before `now` in the report time zone.
pub fn nightly_window(range: &RangeArgs, config: &Config, now: DateTime<Utc>) -> anyhow::Result<Window> {
    const HINT: &str = "the nightly digest covers one day and the 7 days ending with it: pass \
                        --period DAY (e.g. --period 2026-11-21), or nothing for yesterday";
    if range.weeks.is_some() || range.until.is_some() || range.grain.is_some() {
        bail!("--weeks, --until and --grain do not apply: {HINT}");
    }
    match range.period.as_deref() {
        None => Ok(Window::before(now, config.tz())),
        Some(spec) => match parse_period(spec) {
            Ok((Grain::Day, day, _)) => Ok(Window::ending(day)),
            Ok(_) => bail!("--period {spec} is not a single day: {HINT}"),
            Err(e) => bail!("{e}"),
        },
    }
}

/// Computes the metric table of the window at day grain (not stored: the lake's metric table
/// stays the one `tandem metrics` wrote) and writes the digest into a new run folder under the
/// report directory (`out`, else `report.out`), comparing with the previous digest there.
pub fn write_nightly(
    config: &Config,
    out: Option<PathBuf>,
    window: Window,
    health: Option<&RunHealth>,
    now: DateTime<Utc>,
) -> anyhow::Result<NightlyOutput> {
    let store = Store::open(&config.lake()?)?;
    let basis = basis(&store, None)?;
    let rows = calculate_on(&store, &basis, &nightly_range(&window), config, now.date_naive())?;
    write_nightly_of(config, out, window, health, now, &rows, basis.read())
}

/// The range a digest of `window` is computed on: its days.
pub fn nightly_range(window: &Window) -> RangeArgs {
    RangeArgs {
        period: Some(window.period()),
        grain: Some("day".to_owned()),
        ..RangeArgs::default()
    }
}

/// [`write_nightly`] from the rows of [`nightly_range`] already computed (by `tandem run`, with
/// its metric table) from the table versions `read`.
pub fn write_nightly_of(
    config: &Config,
    out: Option<PathBuf>,
    window: Window,
    health: Option<&RunHealth>,
    now: DateTime<Utc>,
    rows: &[MetricRow],
    read: Option<crate::report::archive::TableVersions>,
) -> anyhow::Result<NightlyOutput> {
    let out_dir = out_dir(config, out)?;
    let time_zone = config.tz().to_string();
    let input = NightlyInput {
        organisation: &config.organisation.name,
        generated_at: now,
        time_zone: &time_zone,
        window,
        rows,
        kpis: &config.kpis,
        health,
        previous: None,
        previous_unreadable: false,
        read,
    };
    crate::report::nightly::write(&out_dir, &input)
        .with_context(|| format!("cannot write the nightly digest to {}", out_dir.display()))
}

/// Says where the digest went.
pub fn print_nightly(output: &NightlyOutput) {
    crate::say!("digest:  {}", output.digest.display());
    crate::say!("nightly: {}", output.html.display());
    crate::say!("index:   {}", output.index.display());
}

// Syncing and maintaining the lake.

/// Syncs into the configured store.
pub async fn sync_into_store(
    config: &Config,
    env: &SecretEnv,
    options: &SyncOptions,
) -> anyhow::Result<SyncReport> {
    let store = open_lake_for_parts(config, "tandem sync", &synced_sources(config, options), false)?;
    let report = sync(config, &store, env, options).await.context("sync failed")?;
    print_summary(&report);
    Ok(report)
}

/// One line per source with the records of each stream that had any, then one per failed stream.
fn print_summary(report: &SyncReport) {
    let mut sources: Vec<&str> = Vec::new();
    for s in &report.streams {
        if !sources.contains(&s.source.as_str()) {
            sources.push(&s.source);
        }
    }
    for source in sources {
        let streams: Vec<_> = report.streams.iter().filter(|s| s.source == source).collect();
        let ok: Vec<_> = streams.iter().filter(|s| s.error.is_none()).collect();
        if !ok.is_empty() {
            let counts: Vec<String> = ok
                .iter()
                .filter(|s| s.records > 0)
                .map(|s| format!("{} {}", s.stream, s.records))
                .collect();
            let quarantined: usize = ok.iter().map(|s| s.quarantined).sum();
            let seconds: f64 = ok.iter().map(|s| s.seconds).sum();
            let counts = if counts.is_empty() {
                "nothing new".to_owned()
            } else {
                counts.join(", ")
            };
            crate::say!("synced {source}: {counts}; {quarantined} quarantined ({seconds:.1} s)");
        }
        for s in streams.iter().filter(|s| s.error.is_some()) {
            crate::say!(
                "FAILED {}/{}: {}",
                s.source,
                s.stream,
                s.error.as_deref().unwrap_or_default()
            );
        }
    }
}

/// Every stream failed: an error; some: partial; none: success.
pub fn outcome(report: &SyncReport) -> anyhow::Result<Outcome> {
    let failed = report.failures().count();
    if failed == 0 {
        Ok(Outcome::Success)
    } else if failed == report.streams.len() {
        let first = report
            .failures()
            .next()
            .and_then(|s| s.error.clone())
            .unwrap_or_default();
        anyhow::bail!("every source failed; first error: {first}")
    } else {
        Ok(Outcome::Partial)
    }
}

/// What a sync did, counted for the summary line that ends `tandem sync` and `tandem run`.
/// Counts only: no source names and no errors, so nothing secret can reach a scheduler's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Sources synced or attempted.
    pub sources: usize,
    /// Sources whose every stream synced.
    pub ok: usize,
    /// Sources with at least one failed stream.
    pub failed: usize,
    /// Records committed to the lake (a failed stream's too, up to its last checkpoint).
    pub records: usize,
    /// Records quarantined.
    pub quarantined: usize,
}

impl SyncCounts {
    /// The counts of `report`, per source as the run's health groups it.
    pub fn of(report: &SyncReport) -> Self {
        let health = RunHealth::from_report(report, Utc::now(), 0.0);
        let ok = health.sources.iter().filter(|s| s.ok()).count();
        Self {
            sources: health.sources.len(),
            ok,
            failed: health.sources.len() - ok,
            records: health.sources.iter().map(|s| s.records).sum(),
            quarantined: health.sources.iter().map(|s| s.quarantined).sum(),
        }
    }
}

/// The last line of `tandem sync` and `tandem run` on stderr, for a scheduler's log: the sync's
/// counts, the command's wall time and its exit code, as text (`summary: sources=5 ok=4 …`) or as
/// one JSON object with the same fields after `timestamp`, `level` and `message`.
pub fn summary_line(counts: &SyncCounts, seconds: f64, exit: i32, format: LogFormat) -> String {
    let SyncCounts {
        sources,
        ok,
        failed,
        records,
        quarantined,
    } = *counts;
    // Tenths of a second, in both formats.
    let seconds = (seconds * 10.0).round() / 10.0;
    match format {
        LogFormat::Text => format!(
            "summary: sources={sources} ok={ok} failed={failed} records={records} quarantined={quarantined} seconds={seconds:.1} exit={exit}"
        ),
        LogFormat::Json => {
            // As a log collector would rank the outcome: partial is a warning, failure an error.
            let level = match exit {
                0 => "INFO",
                3 => "WARN",
                _ => "ERROR",
            };
            let line = JsonLine {
                timestamp: log_timestamp(),
                level,
                message: "summary".to_owned(),
                summary: Some(JsonSummary {
                    sources,
                    ok,
                    failed,
                    records,
                    quarantined,
                    seconds,
                    exit,
                }),
            };
            serde_json::to_string(&line).unwrap_or_default()
        }
    }
}

/// The line on stderr of an error that ended a command (its whole chain), in the log's format.
pub fn error_line(error: &anyhow::Error, format: LogFormat) -> String {
    match format {
        LogFormat::Text => format!("error: {error:#}"),
        LogFormat::Json => {
            let line = JsonLine {
                timestamp: log_timestamp(),
                level: "ERROR",
                message: format!("{error:#}"),
                summary: None,
            };
            serde_json::to_string(&line).unwrap_or_default()
        }
    }
}

/// A line written outside the log subscriber, in the shape of its JSON lines (fields in this
/// order: a struct keeps it, a JSON map would sort the keys).
#[derive(serde::Serialize)]
struct JsonLine {
    timestamp: String,
    level: &'static str,
    message: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    summary: Option<JsonSummary>,
}

/// The summary's fields in a [`JsonLine`].
#[derive(serde::Serialize)]
struct JsonSummary {
    sources: usize,
    ok: usize,
    failed: usize,
    records: usize,
    quarantined: usize,
    seconds: f64,
    exit: i32,
}

/// Now, as the JSON log lines write their `timestamp`.
fn log_timestamp() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// One line saying what a maintenance pass did.
pub fn maintenance_summary(report: &MaintenanceReport) -> String {
    let merged: usize = report.compacted.iter().map(|(_, n)| n).sum();
    format!(
        "maintained: {merged} small files merged, {} logs checkpointed, {} expired log entries and {} unreferenced data files removed, {} raw page files past retention removed",
        report.checkpointed, report.log_entries_removed, report.files_vacuumed, report.raw_files_removed
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse("", Path::new("t.toml"), Default::default()).unwrap()
    }

    #[test]
    fn default_range_is_the_complete_weeks_before_today() {
        // 2026-11-22 is a Sunday: its week began on Monday 2026-11-16.
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let cal = range(&RangeArgs::default(), &config(), today).unwrap();
        assert_eq!(cal.periods.len(), 12);
        assert_eq!(cal.periods[0].start.to_rfc3339(), "2026-08-24T00:00:00+00:00");
        assert_eq!(cal.periods[11].end.to_rfc3339(), "2026-11-16T00:00:00+00:00");
    }

    #[test]
    fn a_period_names_its_grain_and_may_be_divided_further() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let q3 = RangeArgs {
            period: Some("2026-Q3".into()),
            ..RangeArgs::default()
        };
        let cal = range(&q3, &config(), today).unwrap();
        assert_eq!((cal.grain, cal.periods.len()), (Grain::Quarter, 1));
        let monthly = RangeArgs {
            grain: Some("month".into()),
            ..q3.clone()
        };
        assert_eq!(range(&monthly, &config(), today).unwrap().periods.len(), 3);
        let weekly = RangeArgs {
            grain: Some("week".into()),
            ..q3
        };
        let err = range(&weekly, &config(), today).unwrap_err().to_string();
        assert!(err.contains("--grain"), "{err}");
    }

    /// A metric table of one row, as `tandem metrics` wrote it.
    fn metric_table() -> crate::metric::MetricTable {
        let monday = "2026-08-03T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let mut table = crate::metric::MetricTable::new();
        let scope = table.scope("org", "all");
        let period = table.period("week", monday, monday + Duration::weeks(1));
        table.push(
            crate::metric::MetricId::DeploymentCount,
            scope,
            period,
            Some(4.0),
            4,
            None,
        );
        table
    }

    // The generation layout switched a symbolic link, on unix only.
    #[cfg(unix)]
    #[test]
    fn a_metric_table_of_the_generation_layout_is_converted_on_the_first_write() {
        for layout in ["generations", "flat"] {
            let dir = tempfile::tempdir().unwrap();
            let metrics = dir.path().join("metrics");
            // The layouts of earlier releases: `metrics/current` → `gen-…/`, or the files in
            // `metrics/` itself.
            let at = match layout {
                "generations" => {
                    let generation = metrics.join("gen-20261101T000000.000000Z-1");
                    std::fs::create_dir_all(&generation).unwrap();
                    std::os::unix::fs::symlink("gen-20261101T000000.000000Z-1", metrics.join("current"))
                        .unwrap();
                    generation
                }
                _ => {
                    std::fs::create_dir_all(&metrics).unwrap();
                    metrics.clone()
                }
            };
            let (old_parquet, old_csv) = (at.join("metrics.parquet"), at.join("metrics.csv"));
            crate::pipeline::write_metrics(&metric_table(), &old_parquet).unwrap();
            std::fs::write(&old_csv, "metric,grain\n").unwrap();
            let rows = crate::pipeline::read_metrics(&old_parquet).unwrap();

            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.metrics_path(), old_parquet, "read until converted");
            let version = convert_legacy_metrics(&store).unwrap();
            assert_eq!(version, Some(1), "{layout}");
            let latest = store
                .metrics_version(crate::store::delta::AsOf::Latest)
                .unwrap()
                .unwrap();
            assert_eq!(
                crate::pipeline::read_metrics(&latest.parquet).unwrap(),
                rows,
                "{layout}"
            );
            assert_eq!(store.metrics_path(), latest.parquet);
            assert!(
                !old_parquet.exists() && !old_csv.exists(),
                "{layout}: no stale copy stays"
            );
            assert!(
                std::fs::symlink_metadata(metrics.join("current")).is_err(),
                "{layout}"
            );
            assert_eq!(convert_legacy_metrics(&store).unwrap(), None, "converted once");
        }
    }

    #[test]
    fn a_conversion_stopped_after_its_commit_is_not_committed_again() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics");
        std::fs::create_dir_all(&metrics).unwrap();
        let old = (metrics.join("metrics.parquet"), metrics.join("metrics.csv"));
        crate::pipeline::write_metrics(&metric_table(), &old.0).unwrap();
        std::fs::write(&old.1, "metric,grain\n").unwrap();
        let store = Store::open(dir.path()).unwrap();
        convert_legacy_metrics(&store).unwrap();
        // Killed before the old files went: they are back.
        crate::pipeline::write_metrics(&metric_table(), &old.0).unwrap();
        std::fs::write(&old.1, "metric,grain\n").unwrap();
        assert_eq!(convert_legacy_metrics(&store).unwrap(), None);
        assert!(!old.0.exists(), "removed, not converted again");
        let latest = store
            .metrics_version(crate::store::delta::AsOf::Latest)
            .unwrap()
            .unwrap();
        assert_eq!(latest.version, 1);
    }

    #[test]
    fn no_command_imports_another_command() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
        let commands: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().trim_end_matches(".rs").to_owned())
            .filter(|name| name != "mod")
            .collect();
        assert!(
            commands.len() > 10 && commands.iter().any(|c| c == "steering"),
            "{commands:?}"
        );
        for file in &commands {
            // The demo runs the other commands on a simulated organisation: it is their caller.
            if file == "demo" {
                continue;
            }
            let text = std::fs::read_to_string(dir.join(format!("{file}.rs"))).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for other in &commands {
                for import in [format!("super::{other}::"), format!("commands::{other}::")] {
                    assert!(!code.contains(&import), "{file}.rs uses {import}");
                }
                let braces = code.split("use super::{").skip(1).flat_map(|rest| {
                    rest.split('}')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .map(str::trim)
                        .collect::<Vec<_>>()
                });
                for name in braces {
                    assert!(name != other, "{file}.rs imports the command {other}");
                }
            }
        }
    }

    #[test]
    fn until_must_be_a_monday() {
        let args = RangeArgs {
            weeks: Some(2),
            until: NaiveDate::from_ymd_opt(2026, 11, 18),
            ..RangeArgs::default()
        };
        let err = range(&args, &config(), NaiveDate::from_ymd_opt(2026, 11, 22).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("Monday") && err.contains("Wed"), "{err}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod report_tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_weekly_run_is_listed_with_the_last_day_it_covers() {
        let out = tempfile::tempdir().unwrap();
        let config = crate::config::Config::parse("", Path::new("t.toml"), Default::default()).unwrap();
        let monday = Utc.with_ymd_and_hms(2026, 11, 9, 0, 0, 0).unwrap();
        let rows = [MetricRow {
            metric: "deployment_count".into(),
            grain: "week".into(),
            scope_type: "org".into(),
            scope: "all".into(),
            period_start: monday,
            period_end: monday + chrono::Duration::weeks(1),
            value: Some(4.0),
            unit: "count".into(),
            n: 4,
            method: None,
            no_data: None,
        }];
        let output = render_weekly(&rows, &config, Some(out.path().to_path_buf()), None, None).unwrap();
        let runs = archive::runs(out.path());
        assert_eq!(runs.len(), 1);
        // The week of Monday 2026-11-09 ends on Sunday 2026-11-15, not on the next Monday.
        assert_eq!(runs[0].meta.period, "2026-11-09 \u{2013} 2026-11-15");
        let index = std::fs::read_to_string(out.path().join("index.html")).unwrap();
        assert!(index.contains("2026-11-09 \u{2013} 2026-11-15"), "{index}");
        let html = std::fs::read_to_string(output.html).unwrap();
        assert!(html.contains("2026-11-09 \u{2013} 2026-11-15"));
    }

    #[test]
    fn each_run_gets_a_folder_a_meta_file_and_a_line_in_the_history() {
        let out = tempfile::tempdir().unwrap();
        let run = Run {
            kind: "weekly",
            title: "Acme \u{2014} weekly IT and operations report".to_owned(),
            period: "2026-08-24 \u{2013} 2026-11-15".to_owned(),
            generated_at: Utc.with_ymd_and_hms(2026, 11, 16, 6, 0, 0).unwrap(),
            read: Some(archive::TableVersions {
                metrics: Some(3),
                tables: BTreeMap::from([("deployments".to_owned(), 7)]),
            }),
        };
        let write = |dir: &Path| -> Result<ReportOutput, ReportError> {
            let html = dir.join("report.html");
            std::fs::write(&html, "<!DOCTYPE html>").unwrap();
            Ok(ReportOutput {
                html,
                charts: vec![dir.join("chart.png")],
                index: None,
            })
        };
        let first = archived(out.path(), "Acme", &run, write).unwrap();
        let second = archived(out.path(), "Acme", &run, write).unwrap();
        assert_eq!(
            first.html,
            out.path().join("weekly/2026-11-16T060000Z/report.html")
        );
        assert_eq!(
            second.html,
            out.path().join("weekly/2026-11-16T060000Z-2/report.html"),
            "a re-run never overwrites the earlier one"
        );
        assert_eq!(first.index, Some(out.path().join("index.html")));
        let runs = archive::runs(out.path());
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].meta.main, "report.html");
        assert_eq!(runs[0].meta.read, run.read, "the versions read are in meta.json");
        assert_eq!(runs[0].meta.period, "2026-08-24 \u{2013} 2026-11-15");
        let index = std::fs::read_to_string(out.path().join("index.html")).unwrap();
        assert!(
            index.contains("weekly/2026-11-16T060000Z-2/report.html"),
            "{index}"
        );

        // A run that fails leaves no meta.json, so the history does not list it.
        let failing = |_: &Path| -> Result<ReportOutput, ReportError> {
            Err(ReportError::Io {
                path: PathBuf::from("x"),
                source: std::io::Error::other("disk full"),
            })
        };
        let err = archived(out.path(), "Acme", &run, failing).unwrap_err();
        assert!(format!("{err:#}").contains("disk full"), "{err:#}");
        assert_eq!(archive::runs(out.path()).len(), 2);
        assert_eq!(
            std::fs::read_dir(out.path().join("weekly")).unwrap().count(),
            2,
            "the failed run left no folder, listed or not"
        );
    }
}
