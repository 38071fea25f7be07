//! Turns metric rows into what the report shows: formatted tables for the template and the
//! series the charts draw.
//!
//! Everything here is plain data and strings; escaping is the template's job (autoescape), so
//! nothing in this file may build HTML. It reads metric rows only and must not compute metrics:
//! a value the pipeline did not emit is shown as missing, never derived.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use super::charts::{ChangeFailureRate, DeploymentsVsDowntime, RateWeek};
use crate::metric::{MIN_SAMPLE, MISSING, MetricId, MetricRow};

/// Everything the template needs, already formatted.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// Organisation name, as configured.
    pub organisation: String,
    /// `first week start – last period end`, or `None` without rows.
    pub range: Option<String>,
    /// When the report was made, in UTC.
    pub generated_at: String,
    /// Whether there is any row at all.
    pub has_data: bool,
    /// The smallest sample that is judged.
    pub min_sample: i64,
    /// Start of the latest week with org rows, for the KPI table's header.
    pub latest_week: Option<String>,
    /// The grain of the periods (`week`, `month`, …), for headings.
    pub unit: String,
    /// "Weekly", "Monthly", … for the title.
    pub cadence: &'static str,
    /// The DORA 2024 clusters, for reference.
    pub clusters: Vec<ClusterRow>,
    /// The shared KPIs judged on the latest period.
    pub scorecard: Vec<crate::metric::kpi::Scored>,
    /// One row per metric, org scope.
    pub kpis: Vec<KpiRow>,
    /// Column titles of the per-service table, in [`MetricId::CORE`] order.
    pub metric_titles: Vec<&'static str>,
    /// One row per service, sorted by name.
    pub services: Vec<ServiceRow>,
    /// Whether any per-service cell is marked insufficient, to show the footnote only when used.
    pub services_have_insufficient: bool,
    /// Title and definition of every metric.
    pub glossary: Vec<GlossaryEntry>,
    /// Why some figures have no data (a source that failed, never synced or does not reach back
    /// to their period), each reason once.
    pub no_data: Vec<String>,
}

/// A formatted value with its sample size.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cell {
    /// The value with its unit, or a dash.
    pub text: String,
    /// Sample size, `None` when there is no row.
    pub n: Option<i64>,
    /// Whether the sample is too small to judge (`n < 5`); false without a row.
    pub insufficient: bool,
    /// Why the figure has no data although its period may have had events (a source that failed,
    /// never synced or does not reach back); `None` otherwise.
    pub no_data: Option<String>,
}

/// One line of the KPI table.
#[derive(Debug, Clone, Serialize)]
pub struct KpiRow {
    /// The metric's title.
    pub title: &'static str,
    /// DORA tier of the whole-range value, where one applies and `n ≥ 5`.
    pub tier: Option<&'static str>,
    /// Over the whole range.
    pub range: Cell,
    /// In the latest week.
    pub latest: Cell,
}

/// One DORA 2024 cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRow {
    /// Cluster name.
    pub name: &'static str,
    /// Lead time for changes.
    pub lead_time: &'static str,
    /// Deployment frequency.
    pub deployment_frequency: &'static str,
    /// Change failure rate.
    pub change_failure_rate: &'static str,
    /// Failed deployment recovery time.
    pub recovery_time: &'static str,
}

/// The DORA 2024 clusters as rows of the reference table (every report shows the same).
pub fn cluster_rows() -> Vec<ClusterRow> {
    crate::metric::tiers::DORA_2024_CLUSTERS
        .iter()
        .map(|c| ClusterRow {
            name: c.name,
            lead_time: c.lead_time,
            deployment_frequency: c.deployment_frequency,
            change_failure_rate: c.change_failure_rate,
            recovery_time: c.recovery_time,
        })
        .collect()
}

/// One line of the per-service table.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceRow {
    /// Service name from the data (escaped by the template).
    pub name: String,
    /// One cell per metric, in [`MetricId::CORE`] order.
    pub cells: Vec<Cell>,
}

/// One glossary entry.
#[derive(Debug, Clone, Serialize)]
pub struct GlossaryEntry {
    /// The metric's title.
    pub title: &'static str,
    /// Its stable id, as it appears in exported tables.
    pub id: &'static str,
    /// Its definition.
    pub definition: &'static str,
}

impl GlossaryEntry {
    /// The entry of one metric: its title, id and definition.
    pub fn of(metric: MetricId) -> Self {
        Self {
            title: metric.title(),
            id: metric.as_str(),
            definition: metric.definition(),
        }
    }
}

/// The page and both charts' data, built from one pass over the rows.
#[derive(Debug, Clone)]
pub struct View {
    /// Tables and text.
    pub page: Page,
    /// Chart 1.
    pub deployments: DeploymentsVsDowntime,
    /// Chart 2.
    pub change_failure: ChangeFailureRate,
}

/// Builds the view of `rows`. Rows with an unknown metric, grain or scope type are ignored:
/// the pipeline owns which rows exist, the report only shows the ones it knows how to show.
pub fn build(
    organisation: &str,
    generated_at: DateTime<Utc>,
    rows: &[MetricRow],
    shared_kpis: &[crate::metric::kpi::KpiSpec],
) -> View {
    // The calendar periods the table was computed in: weeks by default, or days, months or
    // quarters; charts and the "latest" column follow them.
    let unit = unit_grain(rows);
    let org_week = index(rows, unit, "org");
    let org_range = index(rows, "range", "org");
    let service_range = index(rows, "range", "service");

    // Every week any org metric reports, so both charts share one x axis and a week with some
    // metrics but not others shows as a gap rather than disappearing.
    let weeks: Vec<DateTime<Utc>> = org_week
        .keys()
        .map(|k| k.period_start)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let latest = weeks.last().copied();

    let kpis = MetricId::ALL
        .iter()
        .map(|&m| KpiRow {
            title: m.title(),
            tier: first_of(&org_range, m.as_str(), "all").and_then(MetricRow::tier),
            range: cell(first_of(&org_range, m.as_str(), "all")),
            latest: cell(latest.and_then(|start| org_week.get(&Key::new(m.as_str(), "all", start)).copied())),
        })
        .collect();

    let service_names: BTreeSet<&str> = service_range.keys().map(|k| k.scope).collect();
    let services: Vec<ServiceRow> = service_names
        .into_iter()
        .map(|name| ServiceRow {
            name: name.to_owned(),
            // The per-service table keeps to the core set so it stays readable; every metric is
            // in the key figures, the metric table and the glossary.
            cells: MetricId::CORE
                .iter()
                .map(|m| cell(first_of(&service_range, m.as_str(), name)))
                .collect(),
        })
        .collect();
    let services_have_insufficient = services.iter().any(|s| s.cells.iter().any(|c| c.insufficient));

    let weekly = |m: MetricId| -> Vec<Option<&MetricRow>> {
        weeks
            .iter()
            .map(|&start| org_week.get(&Key::new(m.as_str(), "all", start)).copied())
            .collect()
    };
    let week_dates: Vec<NaiveDate> = weeks.iter().map(|&w| calendar_date(w)).collect();
    let deployments = DeploymentsVsDowntime {
        weeks: week_dates.clone(),
        grain: unit.to_owned(),
        deployments: weekly(MetricId::DeploymentCount)
            .into_iter()
            .map(|r| r.and_then(|r| r.value))
            .collect(),
        downtime_minutes: weekly(MetricId::DowntimeMinutes)
            .into_iter()
            .map(|r| r.and_then(|r| r.value))
            .collect(),
        downtime_target: org_target(shared_kpis, MetricId::DowntimeMinutes),
    };
    let change_failure = ChangeFailureRate {
        weeks: week_dates,
        grain: unit.to_owned(),
        points: weekly(MetricId::ChangeFailureRate)
            .into_iter()
            .map(|r| {
                r.map(|r| RateWeek {
                    ratio: r.value,
                    n: r.n,
                })
            })
            .collect(),
        target: org_target(shared_kpis, MetricId::ChangeFailureRate),
    };

    let page = Page {
        organisation: organisation.to_owned(),
        range: range_text(rows),
        generated_at: generated_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        has_data: !rows.is_empty(),
        min_sample: MIN_SAMPLE,
        latest_week: latest.map(date_text),
        unit: unit.to_owned(),
        cadence: super::charts::cadence(unit),
        scorecard: crate::metric::kpi::scorecard(rows, shared_kpis),
        clusters: cluster_rows(),
        kpis,
        metric_titles: MetricId::CORE.iter().map(|m| m.title()).collect(),
        services,
        services_have_insufficient,
        glossary: MetricId::ALL.into_iter().map(GlossaryEntry::of).collect(),
        no_data: no_data_reasons(rows),
    };
    View {
        page,
        deployments,
        change_failure,
    }
}

/// The target of the first shared KPI on `metric` for the whole organisation, for a chart's
/// target line. Per-service KPIs are not drawn on organisation charts.
pub fn org_target(kpis: &[crate::metric::kpi::KpiSpec], metric: MetricId) -> Option<f64> {
    kpis.iter()
        .find(|k| k.metric == metric.as_str() && k.scope_key().is_ok_and(|s| s == ("org", "all")))
        .map(|k| k.target.value)
}

/// The distinct reasons rows have no data, in order of first appearance: every report lists them
/// once, so a reader sees why a figure is missing rather than a zero.
pub fn no_data_reasons(rows: &[MetricRow]) -> Vec<String> {
    let mut reasons: Vec<String> = Vec::new();
    for reason in rows.iter().filter_map(|r| r.no_data.as_deref()) {
        if !reasons.iter().any(|r| r == reason) {
            reasons.push(reason.to_owned());
        }
    }
    reasons
}

/// The formatted cell of `row`: its value with the unit, its `n`, and whether `n < 5`.
pub fn cell(row: Option<&MetricRow>) -> Cell {
    match row {
        Some(r) => Cell {
            text: r.display_value(),
            n: Some(r.n),
            insufficient: r.insufficient(),
            no_data: r.no_data.clone(),
        },
        None => Cell {
            text: MISSING.to_owned(),
            n: None,
            insufficient: false,
            no_data: None,
        },
    }
}

/// The calendar date a period boundary falls on. Periods start at midnight in the report's time
/// zone, which is a UTC instant up to 12 h either side of UTC midnight; rounding to the nearest UTC
/// day recovers the local date without knowing the zone (a Berlin Monday starts Sunday 23:00 UTC).
pub(crate) fn calendar_date(t: DateTime<Utc>) -> NaiveDate {
    (t + Duration::hours(12)).date_naive()
}

/// The grain of the rows that are not the whole range (`week` when there are none).
fn unit_grain(rows: &[MetricRow]) -> &str {
    rows.iter()
        .map(|r| r.grain.as_str())
        .find(|g| *g != "range")
        .unwrap_or("week")
}

pub(crate) fn date_text(t: DateTime<Utc>) -> String {
    calendar_date(t).format("%Y-%m-%d").to_string()
}

/// `2026-08-03 – 2026-10-25`: the first day and the last day of the period `[start, end)`, as
/// calendar dates of the report time zone (see [`calendar_date`]). The end is exclusive, so the
/// last day shown is the day before it: a week from Monday ends on Sunday.
pub fn dates_text(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    days_text(calendar_date(start), calendar_date(end))
}

/// [`dates_text`] for calendar dates already in the report time zone: `first` to the day before
/// `end`.
pub fn days_text(first: NaiveDate, end: NaiveDate) -> String {
    let last = (end - Duration::days(1)).max(first);
    format!(
        "{} \u{2013} {}",
        first.format("%Y-%m-%d"),
        last.format("%Y-%m-%d")
    )
}

/// First week start to the last day of the last period; falls back to all rows when there are
/// no weekly rows.
pub(crate) fn range_text(rows: &[MetricRow]) -> Option<String> {
    let weekly_start = rows
        .iter()
        .filter(|r| r.grain == unit_grain(rows))
        .map(|r| r.period_start)
        .min();
    let start = weekly_start.or_else(|| rows.iter().map(|r| r.period_start).min())?;
    let end = rows.iter().map(|r| r.period_end).max()?;
    Some(dates_text(start, end))
}

/// Lookup key for a row; borrowed from the rows, ordered so iteration is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key<'a> {
    metric: &'a str,
    scope: &'a str,
    period_start: DateTime<Utc>,
}

impl<'a> Key<'a> {
    fn new(metric: &'a str, scope: &'a str, period_start: DateTime<Utc>) -> Self {
        Self {
            metric,
            scope,
            period_start,
        }
    }
}

/// Rows of one grain and scope type, by metric, scope and period start. The first row wins on a
/// duplicate key, so the result depends only on the input order.
fn index<'a>(rows: &'a [MetricRow], grain: &str, scope_type: &str) -> BTreeMap<Key<'a>, &'a MetricRow> {
    let mut map = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.grain == grain && r.scope_type == scope_type)
        .filter(|r| MetricId::parse(&r.metric).is_some())
    {
        map.entry(Key::new(&r.metric, &r.scope, r.period_start))
            .or_insert(r);
    }
    map
}

/// The earliest-starting row of `metric` for `scope` (a range-grain table has one per scope).
fn first_of<'a>(map: &BTreeMap<Key<'a>, &'a MetricRow>, metric: &str, scope: &str) -> Option<&'a MetricRow> {
    map.iter()
        .find(|(k, _)| k.metric == metric && k.scope == scope)
        .map(|(_, r)| *r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn period_dates_name_the_last_day_covered() {
        // Monday 2026-08-24 to Monday 2026-11-16 (exclusive) ends on Sunday 2026-11-15, also when
        // the report zone is Berlin (midnight there is 22:00 or 23:00 UTC the day before).
        let utc = |d: u32, m: u32, h: u32| Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap();
        assert_eq!(
            dates_text(utc(24, 8, 0), utc(16, 11, 0)),
            "2026-08-24 \u{2013} 2026-11-15"
        );
        assert_eq!(
            dates_text(utc(23, 8, 22), utc(15, 11, 23)),
            "2026-08-24 \u{2013} 2026-11-15"
        );
        let rows = [MetricRow {
            metric: "deployment_count".into(),
            grain: "week".into(),
            scope_type: "org".into(),
            scope: "all".into(),
            period_start: utc(9, 11, 0),
            period_end: utc(16, 11, 0),
            value: Some(1.0),
            unit: "count".into(),
            n: 1,
            method: None,
            no_data: None,
        }];
        assert_eq!(range_text(&rows).unwrap(), "2026-11-09 \u{2013} 2026-11-15");
    }

    #[test]
    fn week_starts_in_other_zones_keep_their_local_date() {
        // Monday 2024-01-08 00:00 in Europe/Berlin and in America/New_York.
        let berlin = Utc.with_ymd_and_hms(2024, 1, 7, 23, 0, 0).unwrap();
        let new_york = Utc.with_ymd_and_hms(2024, 1, 8, 5, 0, 0).unwrap();
        assert_eq!(date_text(berlin), "2024-01-08");
        assert_eq!(date_text(new_york), "2024-01-08");
    }

    #[test]
    fn unknown_metrics_are_ignored() {
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let row = MetricRow {
            metric: "not_a_metric".into(),
            grain: "range".into(),
            scope_type: "service".into(),
            scope: "api".into(),
            period_start: t,
            period_end: t + Duration::weeks(1),
            value: Some(1.0),
            unit: "count".into(),
            n: 9,
            method: None,
            no_data: None,
        };
        let view = build("Acme", t, &[row], &[]);
        assert!(view.page.services.is_empty());
        assert!(view.page.has_data);
    }
}
