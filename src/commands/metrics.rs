//! `tandem metrics`: compute the metric table from the lake, write it, print it.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Serialize;

use super::range;
use crate::cli::{ByScope, MetricsArgs, MetricsFormat, RangeArgs};
use crate::config::{Config, MetricsConfig, ServiceConfig};
use crate::metric::{MetricId, MetricRow, MetricTable};
use crate::pipeline::calendar::Calendar;
use crate::pipeline::kpi::{Scored, scorecard, scorecard_of_period};
use crate::pipeline::{self, Inputs, Options};
use crate::store::Store;
use crate::store::delta::AsOf;
use crate::store::coverage::{Coverage, Feed};

/// Computes, writes and prints the metrics.
pub fn run(args: &MetricsArgs, config: &Config) -> anyhow::Result<()> {
    let table = compute(&args.range, config)?;
    // Only the rows printed are made into rows: a long range for hundreds of services is
    // millions of them.
    let of_scope_type = |scope_type: &str| table.rows_where(|t, i| t.scope_of(i).0 == scope_type);
    let kpi_rows = || {
        let scopes: Vec<(&str, &str)> = config.kpis.iter().filter_map(|k| k.scope_key().ok()).collect();
        table.rows_where(|t, i| scopes.contains(&t.scope_of(i)))
    };
    match args.format {
        MetricsFormat::Table if args.by == ByScope::Org => {
            super::out(&org_table(&of_scope_type("org"), config.tz()));
            let (heading, scored) = kpis(&kpi_rows(), &args.range, config)?;
            super::out(&kpi_table(&scored, &heading));
        }
        MetricsFormat::Table if args.by == ByScope::Service => {
            super::out(&scope_table(&of_scope_type("service"), "service"));
        }
        MetricsFormat::Table => super::out(&scope_table(&of_scope_type("team"), "team")),
        MetricsFormat::Json => {
            let scope_type = match args.by {
                ByScope::Org => "org",
                ByScope::Service => "service",
                ByScope::Team => "team",
            };
            let (_, kpis) = kpis(&kpi_rows(), &args.range, config)?;
            let printed = JsonOutput {
                metrics: of_scope_type(scope_type),
                kpis,
            };
            super::out(&format!("{}\n", serde_json::to_string_pretty(&printed)?));
        }
        MetricsFormat::Csv => {
            let (_, csv) = Store::open(&config.resolve(&config.store.path))?.metrics_paths();
            super::out(&std::fs::read_to_string(csv)?);
        }
    }
    Ok(())
}

/// What `tandem metrics --format json` prints.
#[derive(Debug, Serialize)]
pub struct JsonOutput {
    /// The rows of the chosen scope type, as the metric table holds them.
    pub metrics: Vec<MetricRow>,
    /// The shared KPIs judged as the table's KPI block judges them, with status, target, value,
    /// previous value and delta.
    pub kpis: Vec<Scored>,
}

/// The shared KPIs judged on `rows` (the metric table computed for `range_args`, or its rows of
/// the KPIs' scopes), and the heading that says on which period: with `--period`, the period asked
/// (its whole-range rows) against the period before it, computed here; else each KPI's latest
/// period in `rows` against the period before it.
pub fn kpis(
    rows: &[MetricRow],
    range_args: &RangeArgs,
    config: &Config,
) -> anyhow::Result<(String, Vec<Scored>)> {
    if config.kpis.is_empty() {
        return Ok((String::new(), Vec::new()));
    }
    let Some(spec) = range_args.period.as_deref() else {
        return Ok(("latest period".to_owned(), scorecard(rows, &config.kpis)));
    };
    let (_, before) = super::period_before(spec)?;
    let previous = calculate(&before, config)?;
    Ok((
        format!("--period {spec}"),
        scorecard_of_period(rows, &previous, &config.kpis),
    ))
}

/// Computes the metric table for the range and writes it to the lake as the metric table's new
/// version, recording the canonical tables' versions it read.
pub fn compute(range_args: &RangeArgs, config: &Config) -> anyhow::Result<MetricTable> {
    let store = super::open_lake_for_writing(config, "tandem metrics")?;
    // The writers' lock is held: the tables stay at these versions while they are read.
    let versions = store.table_versions()?;
    let table = table(&store, range_args, config)?;
    let draft = store.metrics_draft()?;
    let (size, stats) = match pipeline::write_metrics(&table, &draft.parquet, &draft.csv) {
        Ok(written) => written,
        Err(e) => {
            // Never committed: nothing refers to them.
            let _ = std::fs::remove_file(&draft.parquet);
            let _ = std::fs::remove_file(&draft.csv);
            return Err(e.into());
        }
    };
    let version = store.commit_metrics(&draft, size, stats, &versions)?;
    tracing::info!(rows = table.len(), version, path = %draft.parquet.display(), "Metric table written.");
    Ok(table)
}

/// Computes the metric table for the range from the lake without writing it: for reports over
/// their own range (the nightly digest's days), which must not replace the stored table.
pub fn calculate(range_args: &RangeArgs, config: &Config) -> anyhow::Result<Vec<MetricRow>> {
    let store = Store::open(&config.resolve(&config.store.path))?;
    Ok(table(&store, range_args, config)?.to_rows())
}

fn table(store: &Store, range_args: &RangeArgs, config: &Config) -> anyhow::Result<MetricTable> {
    let calendar = range(range_args, config, Utc::now().date_naive())?;
    let mut table = from_store(store, calendar, &config.metrics, &config.services)?;
    mark_uncovered(&mut table, store, config)?;
    Ok(table)
}

/// Turns the figures of periods the lake does not cover into "no data" with the reason: a
/// source the metric reads failed in its last sync, never synced, or its history starts after
/// the period. A lake that holds tables but no coverage record (synced before tandem kept one)
/// is taken as covered; a lake with neither has never synced anything.
pub fn mark_uncovered(table: &mut MetricTable, store: &Store, config: &Config) -> anyhow::Result<()> {
    let coverage = match Coverage::load(store)? {
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
/// `[[service]]` entries (their names, teams and SLOs): the one place the pipeline's inputs and
/// options are put together, for `tandem` and its benchmark alike.
pub fn from_store(
    store: &Store,
    calendar: Calendar,
    settings: &MetricsConfig,
    services: &[ServiceConfig],
) -> anyhow::Result<MetricTable> {
    from_store_at(store, None, calendar, settings, services)
}

/// [`from_store`] with the canonical tables as of `versions` (table name → version; a table not
/// named had not been written), or their latest versions when `None`.
pub fn from_store_at(
    store: &Store,
    versions: Option<&BTreeMap<String, i64>>,
    calendar: Calendar,
    settings: &MetricsConfig,
    services: &[ServiceConfig],
) -> anyhow::Result<MetricTable> {
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
        teams: services
            .iter()
            .filter_map(|s| s.team.clone().map(|t| (s.name.clone(), t)))
            .collect(),
    };
    pipeline::compute_metrics(
        Inputs {
            deployments: &deployments,
            changes: &changes,
            commits: &commits,
            incidents: &incidents,
            tickets: &tickets,
            ticket_transitions: &ticket_transitions,
            change_requests: &change_requests,
            quarantine: &quarantine,
        },
        &options,
    )
    .map_err(Into::into)
}

/// The shared KPIs as judged ([`kpis`]): each one's value in the period judged (`heading` names
/// it), its status against the target and the change since the period before. Empty when the
/// config declares no `[[kpi]]`.
pub fn kpi_table(scored: &[Scored], heading: &str) -> String {
    if scored.is_empty() {
        return String::new();
    }
    let mut lines = vec![[
        "KPI".to_owned(),
        "scope".to_owned(),
        "owners".to_owned(),
        "target".to_owned(),
        "latest".to_owned(),
        "status".to_owned(),
        "change".to_owned(),
    ]];
    for k in scored {
        lines.push([
            k.title.clone(),
            k.scope.clone(),
            k.owners.clone(),
            k.target.clone(),
            k.latest.clone(),
            k.status.as_str().to_owned(),
            k.change.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("\nShared KPIs, {heading}\n");
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Every service's (or team's) whole-range figures, one line per scope and metric.
pub fn scope_table(rows: &[MetricRow], scope_type: &str) -> String {
    let mut notes = NoDataNotes::default();
    let mut lines = vec![[
        scope_type.to_owned(),
        "metric".to_owned(),
        "value".to_owned(),
        "n".to_owned(),
    ]];
    let mut services: Vec<&str> = rows
        .iter()
        .filter(|r| r.scope_type == scope_type && r.grain == "range")
        .map(|r| r.scope.as_str())
        .collect();
    services.sort_unstable();
    services.dedup();
    for service in services {
        for id in MetricId::ALL {
            if let Some(row) = rows.iter().find(|r| {
                r.metric == id.as_str()
                    && r.grain == "range"
                    && r.scope == service
                    && r.scope_type == scope_type
            }) {
                let mut value = row.display_value();
                if row.insufficient() {
                    value.push_str(" *");
                }
                if let Some(reason) = &row.no_data {
                    value.push_str(&format!(" [{}]", notes.number(reason)));
                }
                lines.push([
                    service.to_owned(),
                    id.title().to_owned(),
                    value,
                    row.n.to_string(),
                ]);
            }
        }
    }
    let width = |i: usize| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    let mut out = String::new();
    for [a, b, c, d] in &lines {
        out.push_str(format!("{a:<w0$}  {b:<w1$}  {c:>w2$}  {d:>w3$}").trim_end());
        out.push('\n');
    }
    out.push_str("* insufficient data (n < 5)\n");
    out.push_str(&notes.render());
    out
}

/// The reasons figures have no data, numbered in order of first use, so a table names each
/// once however many figures it affects.
#[derive(Default)]
struct NoDataNotes(Vec<String>);

impl NoDataNotes {
    fn number(&mut self, reason: &str) -> usize {
        match self.0.iter().position(|r| r == reason) {
            Some(i) => i + 1,
            None => {
                self.0.push(reason.to_owned());
                self.0.len()
            }
        }
    }

    fn render(&self) -> String {
        self.0
            .iter()
            .enumerate()
            .map(|(i, reason)| format!("[{}] no data: {reason}\n", i + 1))
            .collect()
    }
}

/// The organisation's whole-range figures as an aligned text table, its range in dates of the
/// report time zone `tz`.
pub fn org_table(rows: &[MetricRow], tz: chrono_tz::Tz) -> String {
    let mut notes = NoDataNotes::default();
    let mut lines = vec![[
        "metric".to_owned(),
        "value".to_owned(),
        "n".to_owned(),
        "tier".to_owned(),
        String::new(),
    ]];
    let mut range_label = None;
    for id in MetricId::ALL {
        let Some(row) = rows
            .iter()
            .find(|r| r.metric == id.as_str() && r.grain == "range" && r.scope_type == "org")
        else {
            continue;
        };
        range_label.get_or_insert_with(|| super::period_label(row, tz));
        let note = if let Some(reason) = &row.no_data {
            format!("[{}]", notes.number(reason))
        } else if row.insufficient() {
            "insufficient data (n < 5)".to_owned()
        } else {
            String::new()
        };
        lines.push([
            id.title().to_owned(),
            row.display_value(),
            row.n.to_string(),
            row.tier_among(rows).unwrap_or_default().to_owned(),
            note,
        ]);
    }
    let width = |i: usize| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    let mut out = format!(
        "Organisation, {}\n",
        range_label.unwrap_or_else(|| "no data".to_owned())
    );
    for [a, b, c, d, e] in lines {
        let line = format!("{a:<w0$}  {b:>w1$}  {c:>w2$}  {d:<w3$}  {e}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&notes.render());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;
    use crate::pipeline::kpi::KpiSpec;

    fn row(week: i64, value: f64, n: i64) -> MetricRow {
        let start = DateTime::<Utc>::from_timestamp(1_785_715_200, 0).unwrap() + Duration::weeks(week);
        MetricRow {
            metric: "change_failure_rate".into(),
            grain: "week".into(),
            scope_type: "org".into(),
            scope: "all".into(),
            period_start: start,
            period_end: start + Duration::weeks(1),
            value: Some(value),
            unit: "ratio".into(),
            n,
            method: None,
            no_data: None,
        }
    }

    #[test]
    fn the_range_is_labelled_with_dates_of_the_report_time_zone() {
        // Berlin weeks 3 August to 25 October 2026: from Monday 00:00 CEST (Sunday 22:00 UTC) to
        // Monday 26 October 00:00 CET (Sunday 23:00 UTC; summer time ended on the 25th).
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let range = MetricRow {
            metric: "deployment_count".into(),
            grain: "range".into(),
            period_start: at("2026-08-02T22:00:00Z"),
            period_end: at("2026-10-25T23:00:00Z"),
            unit: "count".into(),
            ..row(0, 12.0, 12)
        };
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(
            super::super::period_label(&range, berlin),
            "2026-08-03 to 2026-10-25"
        );
        let table = org_table(std::slice::from_ref(&range), berlin);
        assert!(
            table.starts_with("Organisation, 2026-08-03 to 2026-10-25\n"),
            "{table}"
        );
        // The same instants read in UTC are a day earlier at both ends.
        assert_eq!(
            super::super::period_label(&range, chrono_tz::UTC),
            "2026-08-02 to 2026-10-24"
        );
    }

    #[test]
    fn kpis_are_judged_on_the_latest_period_with_the_change_since_the_one_before() {
        let kpi: KpiSpec =
            toml::from_str("metric = \"change_failure_rate\"\ntarget = \"<= 0.15\"\nowners = \"IT+Ops\"\n")
                .unwrap();
        // Out of order on purpose: the latest week is the one with the latest start.
        let rows = vec![row(1, 0.20, 10), row(0, 0.10, 10)];
        let table = kpi_table(&scorecard(&rows, std::slice::from_ref(&kpi)), "latest period");
        let line = table
            .lines()
            .find(|l| l.starts_with("Change failure rate"))
            .unwrap();
        assert!(
            line.contains("20.0%") && line.contains(" red ") && line.contains("+10.0 pp"),
            "{line}"
        );
        let small = vec![row(0, 0.10, 10), row(1, 0.01, 3)];
        let table = kpi_table(&scorecard(&small, &[kpi]), "latest period");
        assert!(table.contains("insufficient"), "n < 5 gets no colour: {table}");
        assert!(kpi_table(&scorecard(&rows, &[]), "latest period").is_empty());
    }
}
