//! The steering-committee report: what it shows (the [`definition`] below, in one place) and how
//! the metric rows become that page, its charts and its files.
//!
//! One page a non-engineer reads in two minutes — shared KPIs, DORA tiles, change velocity against
//! downtime — then the detail. Reads metric rows (and the configured KPIs and SLOs that judge them)
//! only: it never computes a metric, and a value the pipeline did not emit is shown as missing.
//! Nothing here builds HTML; `reports/steering.html` does, with autoescape on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value, context};
use serde::Serialize;

use super::charts::{
    self, AvailabilityVsSlo, BacklogTrend, ChangeFailureRate, DeploymentsVsDowntime, RateWeek,
    ServiceAvailability, ServicePoint, ServiceScatter,
};
use super::view::{Cell, ClusterRow, GlossaryEntry, calendar_date, cell, cluster_rows, org_target};
use super::{ReportError, ReportOutput};
use crate::metric::kpi::{Comparison, KpiSpec, Status};
use crate::metric::{
    MIN_SAMPLE, MISSING, MetricId, MetricRow, format_change, format_value, shown_value, signed,
};

/// The template, embedded so the binary renders it from any working directory. The `.html` name
/// turns minijinja's autoescape on.
pub const TEMPLATE_NAME: &str = "steering.html";
const TEMPLATE: &str = include_str!("../../reports/steering.html");

/// The page written into the run folder.
pub const HTML_FILE: &str = "report.html";

/// What the steering report shows. Change the report here, not in the template: the template lays
/// out whatever these lists name, and the glossary follows them.
pub mod definition {
    use crate::metric::MetricId::{self, *};

    /// The DORA tiles on page one, each with its tier and the DORA 2024 cluster values.
    pub const DORA_TILES: [MetricId; 4] = [
        DeploymentFrequency,
        LeadTimeMedian,
        ChangeFailureRate,
        FailedDeploymentRecoveryMedian,
    ];
    /// The figures beside the headline chart: change velocity against downtime.
    pub const HEADLINE: [MetricId; 4] = [
        DeploymentCount,
        DowntimeMinutes,
        ChangeCausedDowntimeMinutes,
        DeploymentsDowntimeCorrelation,
    ];
    /// Organisation-wide reliability figures above the per-service availability table.
    pub const RELIABILITY: [MetricId; 4] = [
        Availability,
        ErrorBudgetConsumed,
        TimeToRestoreMedian,
        TimeToAcknowledgeMedian,
    ];
    /// The per-service rankings: the top [`TOP_N`] services by each of these, highest first.
    pub const TOP_BY: [MetricId; 2] = [DowntimeMinutes, ChangeFailureRate];
    /// How many services each ranking lists.
    pub const TOP_N: usize = 5;
    /// Services in the availability table and chart: those furthest below (or least above) their
    /// SLO. The rest are counted, not listed, so the page stays readable at 200 services.
    pub const AVAILABILITY_ROWS: usize = 12;
    /// Services named in the scatter plot: the ones with most downtime.
    pub const SCATTER_LABELS: usize = 6;
    /// DORA 2025's throughput group, shown per service beside [`INSTABILITY`]: how fast changes
    /// reach users, and how fast a failed one is recovered from.
    pub const THROUGHPUT: [MetricId; 3] = [
        LeadTimeMedian,
        DeploymentFrequency,
        FailedDeploymentRecoveryMedian,
    ];
    /// DORA 2025's instability group: how often changes go wrong or need redoing.
    pub const INSTABILITY: [MetricId; 2] = [ChangeFailureRate, ReworkRate];
    /// Services in the throughput-and-instability table: those with most production deployments.
    /// The rest are counted, not listed, so the page stays readable at 200 services.
    pub const DELIVERY_ROWS: usize = 20;
    /// ITSM flow.
    pub const ITSM_FLOW: [MetricId; 6] = [
        TicketsResolved,
        TicketBacklog,
        TicketLeadTimeMedian,
        SlaBreachRate,
        SlaOpenPastTarget,
        TicketReopenRate,
    ];
    /// Change management.
    pub const CHANGE_MANAGEMENT: [MetricId; 3] = [
        ChangeSuccessRate,
        EmergencyChangeRatio,
        DeploymentsWithoutChangeRecord,
    ];
    /// The data-quality footnote.
    pub const QUALITY: [MetricId; 9] = [
        QuarantinedRecords,
        ChangesDeployedShare,
        ChangesLinkedAncestryShare,
        ChangesLinkedTimeShare,
        ChangesNegativeSpans,
        IncidentsMappedShare,
        IncidentsAttributedShare,
        UnmappedRecords,
        DeploymentsWithoutBaseline,
    ];
    /// Quarantined records by reason, and the records tandem kept but could not fully read
    /// (deployments that never finished, unclassified ticket types, unknown status categories,
    /// unknown approvals), listed in the footnote only where there are some.
    pub const WHEN_PRESENT: [MetricId; 9] = [
        QuarantinedMissingField,
        QuarantinedBadTimestamp,
        QuarantinedBadValue,
        QuarantinedBadShape,
        QuarantinedUnknownReference,
        StaleDeployments,
        TicketTypesUnclassified,
        TicketTransitionsUnknownCategory,
        ChangeRequestsApprovalUnknown,
    ];
    /// The per-service availability table's columns besides availability.
    pub const AVAILABILITY_COLUMNS: [MetricId; 3] = [Availability, ErrorBudgetConsumed, DowntimeMinutes];

    /// Chart files, each written as PNG beside the page and inlined as SVG.
    pub const HEADLINE_CHART: &str = "deployments_vs_downtime";
    /// The per-service scatter.
    pub const SCATTER_CHART: &str = "deployments_vs_downtime_by_service";
    /// Availability against SLO.
    pub const AVAILABILITY_CHART: &str = "availability_vs_slo";
    /// Change failure rate per week, with the KPI target.
    pub const CHANGE_FAILURE_CHART: &str = "change_failure_rate";
    /// Tickets resolved and backlog per week.
    pub const BACKLOG_CHART: &str = "ticket_backlog";
}

/// What the steering report is made from.
#[derive(Debug, Clone)]
pub struct SteeringInput<'a> {
    /// Organisation name, as configured.
    pub organisation: &'a str,
    /// The period as readers name it (`2026-Q3`, `2026-09`, `12 weeks to 2026-11-16`).
    pub period: &'a str,
    /// The period before it, same length, as readers name it.
    pub previous_period: &'a str,
    /// When the report was made.
    pub generated_at: DateTime<Utc>,
    /// The metric table of the period: its `range` rows are the figures judged.
    pub current: &'a [MetricRow],
    /// The metric table of the weeks covering the period: its `week` rows draw the weekly charts,
    /// its `range` row gives the deployments–downtime correlation (which needs weeks).
    pub weekly: &'a [MetricRow],
    /// The metric table of the previous period: its `range` rows give deltas and trend arrows.
    pub previous: &'a [MetricRow],
    /// The metric table of the weeks covering the previous period: its `range` row is the
    /// correlation compared with this period's (weeks with weeks, not with months or quarters).
    pub previous_weekly: &'a [MetricRow],
    /// The shared KPIs.
    pub kpis: &'a [KpiSpec],
    /// Availability objectives of the services that set one.
    pub slo: &'a BTreeMap<String, f64>,
    /// The objective of every other service.
    pub default_slo: f64,
}

/// Everything the template shows, already formatted.
#[derive(Debug, Clone, Serialize)]
pub struct SteeringPage {
    /// Organisation name (escaped by the template).
    pub organisation: String,
    /// The page title, also the HTML `<title>`.
    pub title: String,
    /// The period label.
    pub period: String,
    /// The previous period's label.
    pub previous_period: String,
    /// The period's first and last day, when there are rows.
    pub dates: Option<String>,
    /// When the report was made, in UTC.
    pub generated_at: String,
    /// Whether the period has any row at all.
    pub has_data: bool,
    /// The smallest sample that is judged.
    pub min_sample: i64,
    /// The shared-KPI scorecard.
    pub scorecard: Vec<KpiLine>,
    /// DORA tiles.
    pub tiles: Vec<Tile>,
    /// The DORA 2024 clusters, for reference.
    pub clusters: Vec<ClusterRow>,
    /// Figures beside the headline chart.
    pub headline: Vec<Figure>,
    /// Organisation-wide reliability figures.
    pub reliability: Vec<Figure>,
    /// Services furthest below their SLO, worst first.
    pub availability: Vec<AvailabilityLine>,
    /// Services with an availability row.
    pub services_with_availability: usize,
    /// Of those, how many met their SLO.
    pub services_meeting_slo: usize,
    /// The per-service rankings.
    pub rankings: Vec<Ranking>,
    /// DORA 2025: the throughput columns of the per-service delivery table.
    pub throughput_columns: Vec<Column>,
    /// DORA 2025: the instability columns.
    pub instability_columns: Vec<Column>,
    /// DORA 2025: per service, throughput beside instability; most production deployments first.
    pub delivery: Vec<DeliveryLine>,
    /// Services with delivery figures left out of [`Self::delivery`].
    pub delivery_unlisted: usize,
    /// ITSM flow figures.
    pub itsm: Vec<Figure>,
    /// Change management figures.
    pub change_management: Vec<Figure>,
    /// Data-quality figures for the footnote.
    pub quality: Vec<Figure>,
    /// How many figures on the page are marked insufficient data.
    pub insufficient_count: usize,
    /// Every metric on the page, with its definition.
    pub glossary: Vec<GlossaryEntry>,
    /// Why some figures have no data (sources that failed, never synced or do not reach back to
    /// the period), each reason once.
    pub no_data: Vec<String>,
}

/// One metric's organisation-wide value, with the previous period's for comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable metric id (the HTML's `data-metric`).
    pub id: &'static str,
    /// Its title.
    pub title: &'static str,
    /// This period.
    pub value: Cell,
    /// The previous period.
    pub previous: Cell,
    /// The change, signed, in the metric's unit (percentage points for ratios); a dash without
    /// both values.
    pub delta: String,
}

/// One line of the shared-KPI scorecard.
#[derive(Debug, Clone, Serialize)]
pub struct KpiLine {
    /// Stable metric id.
    pub id: String,
    /// The metric's title.
    pub title: String,
    /// The scope as configured (`org`, `service:NAME`); escaped by the template.
    pub scope: String,
    /// Who owns it.
    pub owners: String,
    /// The target, formatted in the metric's unit (`≤ 15.0%`).
    pub target: String,
    /// This period's value.
    pub value: Cell,
    /// The previous period's value.
    pub previous: Cell,
    /// Whether the previous period has a value to show beside the change.
    pub has_previous: bool,
    /// Green, amber, red, or insufficient (no colour).
    pub status: Status,
    /// `↑`, `↓`, `→`, or empty without both values.
    pub arrow: &'static str,
    /// `better`, `worse`, `same`, or `unknown` (a side missing or too small to judge).
    pub trend: &'static str,
    /// The change since the previous period.
    pub delta: String,
}

/// One DORA tile.
#[derive(Debug, Clone, Serialize)]
pub struct Tile {
    /// Stable metric id.
    pub id: &'static str,
    /// Its title.
    pub title: &'static str,
    /// The period's value.
    pub value: Cell,
    /// The `dora-2023` tier where one applies and `n ≥ 5`.
    pub tier: Option<&'static str>,
    /// The DORA 2024 clusters' values for this metric, elite first.
    pub clusters: Vec<ClusterValue>,
}

/// A cluster's value for one tile.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterValue {
    /// Cluster name.
    pub name: &'static str,
    /// Its value in words.
    pub value: &'static str,
}

/// One service in the availability table.
#[derive(Debug, Clone, Serialize)]
pub struct AvailabilityLine {
    /// Service name from the data (escaped by the template).
    pub service: String,
    /// Availability in the period.
    pub availability: Cell,
    /// The service's SLO, formatted.
    pub slo: String,
    /// Error budget consumed.
    pub budget: Cell,
    /// Downtime.
    pub downtime: Cell,
    /// Whether availability met the SLO; `None` without a value.
    pub meets: Option<bool>,
}

/// A column of a per-service table: the metric it shows.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    /// Stable metric id (the HTML's `data-metric`).
    pub id: &'static str,
    /// Its title.
    pub title: &'static str,
}

/// One service's delivery as DORA 2025 reads it: throughput beside instability.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryLine {
    /// Service name from the data (escaped by the template).
    pub service: String,
    /// Lead time, deployment frequency and recovery time, in the order of
    /// [`definition::THROUGHPUT`].
    pub throughput: Vec<Cell>,
    /// Change failure rate and rework rate, in the order of [`definition::INSTABILITY`].
    pub instability: Vec<Cell>,
}

/// The top services by one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Ranking {
    /// Stable metric id.
    pub id: &'static str,
    /// The metric's title.
    pub title: &'static str,
    /// Highest first.
    pub lines: Vec<RankLine>,
    /// Services left out of the ranking because their rate rests on too small a sample.
    pub unranked: usize,
}

/// One ranked service.
#[derive(Debug, Clone, Serialize)]
pub struct RankLine {
    /// Service name from the data.
    pub service: String,
    /// Its value.
    pub value: Cell,
}

/// The page and its charts' data.
#[derive(Debug, Clone)]
pub struct SteeringView {
    /// Tables and text.
    pub page: SteeringPage,
    /// Weekly deployments (bars) against downtime (line).
    pub headline: DeploymentsVsDowntime,
    /// Deployments against downtime per service.
    pub scatter: ServiceScatter,
    /// Availability against SLO.
    pub availability: AvailabilityVsSlo,
    /// Weekly change failure rate.
    pub change_failure: ChangeFailureRate,
    /// Weekly tickets resolved and backlog.
    pub backlog: BacklogTrend,
}

/// Range rows of one table, by (metric, scope type, scope). The first row wins on a duplicate.
struct RangeIndex<'a>(BTreeMap<(&'a str, &'a str, &'a str), &'a MetricRow>);

impl<'a> RangeIndex<'a> {
    fn new(rows: &'a [MetricRow]) -> Self {
        let mut map = BTreeMap::new();
        for r in rows.iter().filter(|r| r.grain == "range") {
            map.entry((r.metric.as_str(), r.scope_type.as_str(), r.scope.as_str()))
                .or_insert(r);
        }
        Self(map)
    }

    fn get(&self, metric: &str, scope_type: &str, scope: &str) -> Option<&'a MetricRow> {
        self.0.get(&(metric, scope_type, scope)).copied()
    }

    fn org(&self, metric: MetricId) -> Option<&'a MetricRow> {
        self.get(metric.as_str(), "org", "all")
    }

    /// Every service's row of `metric`, by service name.
    fn services(&self, metric: MetricId) -> impl Iterator<Item = (&'a str, &'a MetricRow)> + '_ {
        self.0
            .iter()
            .filter(move |((m, t, _), _)| *m == metric.as_str() && *t == "service")
            .map(|((_, _, s), r)| (*s, *r))
    }
}

/// The report's title, on the page and in the history.
pub fn title(organisation: &str, period: &str) -> String {
    format!("{organisation} \u{2014} steering committee report, {period}")
}

/// Builds the steering view. Rows of unknown metrics are ignored.
pub fn build(input: &SteeringInput<'_>) -> SteeringView {
    let current = RangeIndex::new(input.current);
    let previous = RangeIndex::new(input.previous);
    let weekly_range = RangeIndex::new(input.weekly);
    let previous_weekly = RangeIndex::new(input.previous_weekly);
    let mut shown: BTreeSet<&'static str> = BTreeSet::new();

    let mut figure = |m: MetricId, source: &RangeIndex<'_>, before: &RangeIndex<'_>| -> Figure {
        shown.insert(m.as_str());
        let (now, then) = (source.org(m), before.org(m));
        Figure {
            id: m.as_str(),
            title: m.title(),
            value: metric_cell(Some(m), now),
            previous: metric_cell(Some(m), then),
            delta: signed_delta(now, then),
        }
    };
    let headline: Vec<Figure> = definition::HEADLINE
        .iter()
        .map(|&m| {
            // The correlation needs weeks; the period's own table may have one period only. It is
            // compared with the previous period's weekly correlation, like with like.
            if m == MetricId::DeploymentsDowntimeCorrelation {
                figure(m, &weekly_range, &previous_weekly)
            } else {
                figure(m, &current, &previous)
            }
        })
        .collect();
    let reliability: Vec<Figure> = definition::RELIABILITY
        .iter()
        .map(|&m| figure(m, &current, &previous))
        .collect();
    let itsm: Vec<Figure> = definition::ITSM_FLOW
        .iter()
        .map(|&m| figure(m, &current, &previous))
        .collect();
    let change_management: Vec<Figure> = definition::CHANGE_MANAGEMENT
        .iter()
        .map(|&m| figure(m, &current, &previous))
        .collect();
    let quality: Vec<Figure> = definition::QUALITY
        .iter()
        .copied()
        .chain(
            definition::WHEN_PRESENT
                .into_iter()
                .filter(|&m| current.org(m).and_then(|r| r.value).is_some_and(|v| v > 0.0)),
        )
        .map(|m| figure(m, &current, &previous))
        .collect();

    let scorecard: Vec<KpiLine> = input
        .kpis
        .iter()
        .filter_map(|kpi| {
            let (scope_type, scope) = kpi.scope_key().ok()?;
            let id = MetricId::parse(&kpi.metric);
            if let Some(m) = id {
                shown.insert(m.as_str());
            }
            let now = current.get(&kpi.metric, scope_type, scope);
            let then = previous.get(&kpi.metric, scope_type, scope);
            let unit = id.map_or("", MetricId::unit);
            let judged = |r: Option<&MetricRow>| r.is_some_and(|r| r.value.is_some() && !r.insufficient());
            let d = crate::metric::kpi::delta(now.and_then(|r| r.value), then.and_then(|r| r.value));
            let delta = signed_delta(now, then);
            // A change too small to show (no sign) reads as none, whatever its sign unrounded.
            let unchanged = !delta.starts_with(['+', '\u{2212}']);
            let (arrow, trend) = match d {
                None => ("", "unknown"),
                Some(d) => {
                    let arrow = if unchanged {
                        "\u{2192}"
                    } else if d > 0.0 {
                        "\u{2191}"
                    } else {
                        "\u{2193}"
                    };
                    let trend = if !(judged(now) && judged(then)) {
                        "unknown"
                    } else if unchanged {
                        "same"
                    } else if (d < 0.0) == (kpi.target.comparison == Comparison::AtMost) {
                        "better"
                    } else {
                        "worse"
                    };
                    (arrow, trend)
                }
            };
            Some(KpiLine {
                id: kpi.metric.clone(),
                title: id.map_or_else(|| kpi.metric.clone(), |m| m.title().to_owned()),
                scope: kpi.scope.clone(),
                owners: kpi.owners.clone(),
                target: format!(
                    "{} {}",
                    match kpi.target.comparison {
                        Comparison::AtMost => "\u{2264}",
                        Comparison::AtLeast => "\u{2265}",
                    },
                    if id == Some(MetricId::Availability) {
                        percent_2(kpi.target.value)
                    } else {
                        format_value(Some(kpi.target.value), unit)
                    }
                ),
                value: metric_cell(id, now),
                previous: metric_cell(id, then),
                has_previous: then.is_some_and(|r| r.value.is_some_and(f64::is_finite)),
                status: kpi.judge(now),
                arrow,
                trend,
                delta,
            })
        })
        .collect();

    let clusters = crate::metric::tiers::DORA_2024_CLUSTERS;
    let tiles: Vec<Tile> = definition::DORA_TILES
        .iter()
        .map(|&m| {
            shown.insert(m.as_str());
            let row = current.org(m);
            Tile {
                id: m.as_str(),
                title: m.title(),
                value: cell(row),
                // Deployment frequency is tiered on deploy days (weeks `w`, months `m`), not on
                // deployments per day.
                tier: if m == MetricId::DeploymentFrequency {
                    let tier = current
                        .org(MetricId::DeployDaysWeeklyMedian)
                        .and_then(|w| w.tier_among(input.current));
                    // The tier is read from the deploy days: define them beside it.
                    if tier.is_some() {
                        shown.insert(MetricId::DeployDaysWeeklyMedian.as_str());
                    }
                    tier
                } else {
                    row.and_then(MetricRow::tier)
                },
                clusters: clusters
                    .iter()
                    .map(|c| ClusterValue {
                        name: c.name,
                        value: match m {
                            MetricId::DeploymentFrequency => c.deployment_frequency,
                            MetricId::LeadTimeMedian => c.lead_time,
                            MetricId::ChangeFailureRate => c.change_failure_rate,
                            _ => c.recovery_time,
                        },
                    })
                    .collect(),
            }
        })
        .collect();

    // Availability: every service with a row, judged on its SLO; the table lists the worst.
    let slo_of = |service: &str| input.slo.get(service).copied().unwrap_or(input.default_slo);
    let mut availability: Vec<(f64, AvailabilityLine, ServiceAvailability)> = current
        .services(MetricId::Availability)
        .map(|(service, row)| {
            let slo = slo_of(service);
            let value = row.value.filter(|v| v.is_finite());
            let insufficient = row.insufficient();
            let line = AvailabilityLine {
                service: service.to_owned(),
                availability: metric_cell(Some(MetricId::Availability), Some(row)),
                slo: percent_2(slo),
                budget: metric_cell(
                    Some(MetricId::ErrorBudgetConsumed),
                    current.get(MetricId::ErrorBudgetConsumed.as_str(), "service", service),
                ),
                downtime: cell(current.get(MetricId::DowntimeMinutes.as_str(), "service", service)),
                // A figure on too few samples is shown but not judged.
                meets: value.filter(|_| !insufficient).map(|v| v >= slo),
            };
            let chart = ServiceAvailability {
                name: service.to_owned(),
                availability: value,
                slo,
                insufficient,
            };
            // Missing values sort last: nothing to say about them.
            (value.map_or(f64::INFINITY, |v| v - slo), line, chart)
        })
        .collect();
    for m in definition::AVAILABILITY_COLUMNS {
        shown.insert(m.as_str());
    }
    availability.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.service.cmp(&b.1.service)));
    let services_with_availability = availability.iter().filter(|a| a.1.meets.is_some()).count();
    let services_meeting_slo = availability.iter().filter(|a| a.1.meets == Some(true)).count();
    availability.truncate(definition::AVAILABILITY_ROWS);
    let (availability_lines, availability_chart): (Vec<_>, Vec<_>) =
        availability.into_iter().map(|(_, l, c)| (l, c)).unzip();

    let rankings: Vec<Ranking> = definition::TOP_BY
        .iter()
        .map(|&m| {
            shown.insert(m.as_str());
            let mut ranked: Vec<(&str, &MetricRow, f64)> = Vec::new();
            let mut unranked = 0;
            for (service, row) in current.services(m) {
                // A figure on a handful of samples says little, so it is not ranked; downtime is a
                // measured duration, never insufficient (`MetricRow::insufficient`).
                match row.value.filter(|v| v.is_finite() && *v > 0.0) {
                    Some(_) if row.insufficient() => unranked += 1,
                    Some(v) => ranked.push((service, row, v)),
                    None => {}
                }
            }
            ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(b.0)));
            Ranking {
                id: m.as_str(),
                title: m.title(),
                lines: ranked
                    .into_iter()
                    .take(definition::TOP_N)
                    .map(|(service, row, _)| RankLine {
                        service: service.to_owned(),
                        value: cell(Some(row)),
                    })
                    .collect(),
                unranked,
            }
        })
        .collect();

    // DORA 2025: each service's throughput beside its instability, read per service rather
    // than blended across the organisation. Services with most production deployments first.
    let columns = |metrics: &[MetricId]| -> Vec<Column> {
        metrics
            .iter()
            .map(|&m| Column {
                id: m.as_str(),
                title: m.title(),
            })
            .collect()
    };
    let delivery_metrics: Vec<MetricId> = definition::THROUGHPUT
        .iter()
        .chain(&definition::INSTABILITY)
        .copied()
        .collect();
    let mut delivery_services: Vec<(f64, &str)> = delivery_metrics
        .iter()
        .flat_map(|&m| current.services(m).map(|(service, _)| service))
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(|service| {
            let deployments = current
                .get(MetricId::DeploymentCount.as_str(), "service", service)
                .and_then(|r| r.value)
                .filter(|v| v.is_finite())
                .unwrap_or(0.0);
            (deployments, service)
        })
        .collect();
    delivery_services.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let delivery_unlisted = delivery_services.len().saturating_sub(definition::DELIVERY_ROWS);
    let service_cells = |service: &str, metrics: &[MetricId]| -> Vec<Cell> {
        metrics
            .iter()
            .map(|&m| metric_cell(Some(m), current.get(m.as_str(), "service", service)))
            .collect()
    };
    let delivery: Vec<DeliveryLine> = delivery_services
        .iter()
        .take(definition::DELIVERY_ROWS)
        .map(|&(_, service)| DeliveryLine {
            service: service.to_owned(),
            throughput: service_cells(service, &definition::THROUGHPUT),
            instability: service_cells(service, &definition::INSTABILITY),
        })
        .collect();
    if !delivery.is_empty() {
        for m in &delivery_metrics {
            shown.insert(m.as_str());
        }
    }

    // The scatter: every service with both figures; the ones with most downtime are named.
    let mut points: Vec<ServicePoint> = current
        .services(MetricId::DeploymentCount)
        .filter_map(|(service, row)| {
            let deployments = row.value?;
            let downtime = current
                .get(MetricId::DowntimeMinutes.as_str(), "service", service)
                .and_then(|r| r.value)?;
            Some(ServicePoint {
                name: service.to_owned(),
                deployments,
                downtime_minutes: downtime,
                labelled: false,
            })
        })
        .collect();
    let mut by_downtime: Vec<usize> = (0..points.len()).collect();
    by_downtime.sort_by(|&a, &b| {
        points[b]
            .downtime_minutes
            .total_cmp(&points[a].downtime_minutes)
            .then_with(|| points[a].name.cmp(&points[b].name))
    });
    for &i in by_downtime.iter().take(definition::SCATTER_LABELS) {
        if points[i].downtime_minutes > 0.0 {
            points[i].labelled = true;
        }
    }

    let weekly = WeeklySeries::new(input.weekly);
    let headline_chart = DeploymentsVsDowntime {
        weeks: weekly.dates.clone(),
        grain: "week".to_owned(),
        deployments: weekly.values(MetricId::DeploymentCount),
        downtime_minutes: weekly.values(MetricId::DowntimeMinutes),
        // A shared KPI's downtime target is a total for the period judged; drawn against weekly
        // downtime only when the period is one week, since a quarter's target is not a week's.
        downtime_target: one_week(input.current)
            .then(|| org_target(input.kpis, MetricId::DowntimeMinutes))
            .flatten(),
    };
    let change_failure = ChangeFailureRate {
        weeks: weekly.dates.clone(),
        grain: "week".to_owned(),
        points: weekly
            .rows(MetricId::ChangeFailureRate)
            .into_iter()
            .map(|r| {
                r.map(|r| RateWeek {
                    ratio: r.value,
                    n: r.n,
                })
            })
            .collect(),
        target: org_target(input.kpis, MetricId::ChangeFailureRate),
    };
    let backlog = BacklogTrend {
        weeks: weekly.dates.clone(),
        grain: "week".to_owned(),
        resolved: weekly.values(MetricId::TicketsResolved),
        backlog: weekly.values(MetricId::TicketBacklog),
    };

    let glossary: Vec<GlossaryEntry> = MetricId::ALL
        .iter()
        .filter(|m| shown.contains(m.as_str()))
        .map(|&m| GlossaryEntry::of(m))
        .collect();

    // Every value cell the page shows, each once (the headline figures also appear in the chart
    // caption, as the same figures), so the footnote's count matches the flags a reader sees.
    let figures = headline
        .iter()
        .chain(&reliability)
        .chain(&itsm)
        .chain(&change_management)
        .flat_map(|f| [&f.value, &f.previous])
        // The data-quality footnote shows this period only.
        .chain(quality.iter().map(|f| &f.value));
    let kpis = scorecard
        .iter()
        .flat_map(|k| std::iter::once(&k.value).chain(k.has_previous.then_some(&k.previous)));
    let insufficient_count = figures
        .chain(kpis)
        .chain(tiles.iter().map(|t| &t.value))
        .chain(
            availability_lines
                .iter()
                .flat_map(|a| [&a.availability, &a.budget, &a.downtime]),
        )
        .chain(rankings.iter().flat_map(|r| r.lines.iter().map(|l| &l.value)))
        .chain(
            delivery
                .iter()
                .flat_map(|d| d.throughput.iter().chain(&d.instability)),
        )
        .filter(|c| c.insufficient)
        .count();

    let page = SteeringPage {
        organisation: input.organisation.to_owned(),
        title: title(input.organisation, input.period),
        period: input.period.to_owned(),
        previous_period: input.previous_period.to_owned(),
        dates: period_dates(input.current),
        generated_at: input.generated_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        has_data: !input.current.is_empty(),
        min_sample: MIN_SAMPLE,
        scorecard,
        tiles,
        clusters: cluster_rows(),
        headline,
        reliability,
        availability: availability_lines,
        services_with_availability,
        services_meeting_slo,
        rankings,
        throughput_columns: columns(&definition::THROUGHPUT),
        instability_columns: columns(&definition::INSTABILITY),
        delivery,
        delivery_unlisted,
        itsm,
        change_management,
        no_data: crate::report::view::no_data_reasons(input.current),
        quality,
        insufficient_count,
        glossary,
    };
    SteeringView {
        page,
        headline: headline_chart,
        scatter: ServiceScatter { points },
        availability: AvailabilityVsSlo {
            services: availability_chart,
        },
        change_failure,
        backlog,
    }
}

/// [`cell`], with availability in hundredths of a percent: SLOs differ in the second decimal
/// (99.85% misses a 99.9% objective, which one decimal would show as 99.9%).
/// Error budget consumed past the whole budget reads as a multiple of it (see [`budget_text`]).
fn metric_cell(metric: Option<MetricId>, row: Option<&MetricRow>) -> Cell {
    let mut c = cell(row);
    if let Some(v) = row.and_then(|r| r.value).filter(|v| v.is_finite()) {
        match metric {
            Some(MetricId::Availability) => c.text = percent_2(v),
            Some(MetricId::ErrorBudgetConsumed) => c.text = budget_text(v),
            _ => {}
        }
    }
    c
}

/// Error budget consumed: a percentage while within the budget, a multiple of it beyond
/// (`32.7× budget`, not `3271.0%`), one decimal either way.
fn budget_text(v: f64) -> String {
    if shown_budget(v) >= 1.0 {
        format!("{:.1}\u{d7} budget", shown_budget(v))
    } else {
        format_value(Some(v), "ratio")
    }
}

/// The error budget consumed as [`budget_text`] shows it.
fn shown_budget(v: f64) -> f64 {
    if (v * 10.0).round() / 10.0 >= 1.0 {
        (v * 10.0).round() / 10.0
    } else {
        shown_value(v, "ratio")
    }
}

/// A ratio as a percentage with two decimals.
fn percent_2(v: f64) -> String {
    format!("{:.2}%", (v * 10_000.0).round() / 100.0 + 0.0)
}

/// The organisation's week rows of each metric, aligned on every week any of them reports.
struct WeeklySeries<'a> {
    starts: Vec<DateTime<Utc>>,
    dates: Vec<chrono::NaiveDate>,
    rows: BTreeMap<(&'a str, DateTime<Utc>), &'a MetricRow>,
}

impl<'a> WeeklySeries<'a> {
    fn new(rows: &'a [MetricRow]) -> Self {
        let mut map = BTreeMap::new();
        for r in rows
            .iter()
            .filter(|r| r.grain == "week" && r.scope_type == "org" && r.scope == "all")
        {
            map.entry((r.metric.as_str(), r.period_start)).or_insert(r);
        }
        let starts: Vec<DateTime<Utc>> = map
            .keys()
            .map(|(_, s)| *s)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let dates = starts.iter().map(|&s| calendar_date(s)).collect();
        Self {
            starts,
            dates,
            rows: map,
        }
    }

    fn rows(&self, m: MetricId) -> Vec<Option<&'a MetricRow>> {
        self.starts
            .iter()
            .map(|&s| self.rows.get(&(m.as_str(), s)).copied())
            .collect()
    }

    fn values(&self, m: MetricId) -> Vec<Option<f64>> {
        self.rows(m)
            .into_iter()
            .map(|r| r.and_then(|r| r.value))
            .collect()
    }
}

/// The change from `then` to `now` in the metric's unit, signed; ratios in percentage points
/// (availability with two decimals, as its values are shown). Computed from the unrounded values
/// and rounded once, for display: a change read off the rounded values could be off by a unit in
/// the last place shown (`+20.4 h` for `30.26 h − 9.93 h`).
fn signed_delta(now: Option<&MetricRow>, then: Option<&MetricRow>) -> String {
    let (Some(now), Some(then)) = (now, then) else {
        return MISSING.to_owned();
    };
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    let Some(d) = crate::metric::kpi::delta(finite(now.value), finite(then.value)) else {
        return MISSING.to_owned();
    };
    let beyond_budget = |v: Option<f64>| finite(v).is_some_and(|v| shown_budget(v) >= 1.0);
    if now.metric == MetricId::ErrorBudgetConsumed.as_str()
        && (beyond_budget(now.value) || beyond_budget(then.value))
    {
        // Beyond the budget the values read as multiples of it, and so does their change.
        signed(d, format!("{:.1}\u{d7} budget", (d.abs() * 10.0).round() / 10.0))
    } else if now.metric == MetricId::Availability.as_str() {
        signed(d, format!("{:.2} pp", (d.abs() * 10_000.0).round() / 100.0))
    } else {
        format_change(d, &now.unit)
    }
}

/// Whether the period of the range rows is one week long.
fn one_week(rows: &[MetricRow]) -> bool {
    rows.iter()
        .find(|r| r.grain == "range")
        .is_some_and(|r| r.period_end - r.period_start == chrono::Duration::weeks(1))
}

/// The first day and the last day of the period, from its range rows.
fn period_dates(rows: &[MetricRow]) -> Option<String> {
    let range = rows.iter().filter(|r| r.grain == "range");
    let start = range.clone().map(|r| r.period_start).min()?;
    let end = range.map(|r| r.period_end).max()?;
    Some(super::view::dates_text(start, end))
}

/// Renders the steering report into `dir` (created if needed): `report.html` with every chart
/// inline as SVG, and each chart as a PNG beside it. The same input gives byte-identical files.
pub fn render(input: &SteeringInput<'_>, dir: &Path) -> Result<ReportOutput, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let view = build(input);
    let mut svgs: BTreeMap<&'static str, Value> = BTreeMap::new();
    let mut pngs = Vec::new();
    macro_rules! chart {
        ($name:expr, $chart:expr) => {{
            // Generated by plotters from our own series, its text escaped there: safe to inline.
            svgs.insert($name, Value::from_safe_string(charts::to_svg($chart)?));
            let png = dir.join(format!("{}.png", $name));
            charts::to_png($chart, &png)?;
            pngs.push(png);
        }};
    }
    chart!(definition::HEADLINE_CHART, &view.headline);
    chart!(definition::SCATTER_CHART, &view.scatter);
    chart!(definition::AVAILABILITY_CHART, &view.availability);
    chart!(definition::CHANGE_FAILURE_CHART, &view.change_failure);
    chart!(definition::BACKLOG_CHART, &view.backlog);

    let html = render_html(&view.page, svgs).map_err(|source| ReportError::Template {
        name: TEMPLATE_NAME,
        source,
    })?;
    let path = dir.join(HTML_FILE);
    std::fs::write(&path, html).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(ReportOutput {
        html: path,
        charts: pngs,
        index: None,
    })
}

fn render_html(page: &SteeringPage, svgs: BTreeMap<&'static str, Value>) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_template(TEMPLATE_NAME, TEMPLATE)?;
    env.get_template(TEMPLATE_NAME)?.render(context! {
        page => Serde(page),
        charts => Value::from(svgs),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    fn row(metric: MetricId, value: f64) -> MetricRow {
        MetricRow {
            metric: metric.as_str().to_owned(),
            grain: "range".to_owned(),
            scope_type: "org".to_owned(),
            scope: "all".to_owned(),
            period_start: DateTime::<Utc>::UNIX_EPOCH,
            period_end: DateTime::<Utc>::UNIX_EPOCH,
            value: Some(value),
            unit: metric.unit().to_owned(),
            n: 9,
            method: None,
            no_data: None,
        }
    }

    #[test]
    fn the_quality_footnote_names_records_kept_but_not_fully_read_only_where_there_are_some() {
        use MetricId::*;
        let current = [
            row(StaleDeployments, 3.0),
            row(TicketTypesUnclassified, 0.0),
            row(ChangeRequestsApprovalUnknown, 12.0),
        ];
        let slo = BTreeMap::new();
        let page = build(&SteeringInput {
            organisation: "o",
            period: "p",
            previous_period: "q",
            generated_at: DateTime::<Utc>::UNIX_EPOCH,
            current: &current,
            weekly: &current,
            previous: &[],
            previous_weekly: &[],
            kpis: &[],
            slo: &slo,
            default_slo: 0.995,
        })
        .page;
        let ids: Vec<&str> = page.quality.iter().map(|f| f.id).collect();
        assert!(ids.contains(&"stale_deployments"), "{ids:?}");
        assert!(ids.contains(&"change_requests_approval_unknown"), "{ids:?}");
        assert!(
            !ids.contains(&"ticket_types_unclassified"),
            "none: not listed {ids:?}"
        );
        assert!(!ids.contains(&"ticket_transitions_unknown_category"), "{ids:?}");
    }

    fn delta(metric: MetricId, now: f64, then: f64) -> String {
        signed_delta(Some(&row(metric, now)), Some(&row(metric, then)))
    }

    #[test]
    fn kpi_delta_is_computed_from_unrounded_values_not_from_the_rounded_ones_shown() {
        use MetricId::*;
        // Shown as 30.3 h and 9.9 h, whose difference is 20.4 h; the values differ by 20.33 h.
        assert_eq!(delta(LeadTimeMedian, 30.26, 9.93), "+20.3 h");
        // 6 min → 12 min: not "0.1 h" or "0.0 h".
        assert_eq!(delta(TimeToAcknowledgeMedian, 0.2, 0.1), "+6 min");
        // Shown as 8 min and 4 min; the values differ by 4.8 min.
        assert_eq!(delta(TimeToAcknowledgeMedian, 0.14, 0.06), "+5 min");
        // Shown as 12.3% and 11.8%; the values differ by 0.58 pp.
        assert_eq!(delta(ChangeFailureRate, 0.1234, 0.1176), "+0.6 pp");
        // Availability has two decimals: 99.85% vs 99.77%, 0.076 pp apart.
        assert_eq!(delta(Availability, 0.9985, 0.99774), "+0.08 pp");
        assert_eq!(
            delta(LeadTimeMedian, 30.004, 30.0),
            "0 min",
            "nothing shown, no sign"
        );
        assert_eq!(delta(LeadTimeMedian, 2.0, 12.5), "\u{2212}10.5 h");
        // Beyond the budget: multiples of it, not thousands of percentage points.
        assert_eq!(budget_text(32.712), "32.7\u{d7} budget");
        assert_eq!(budget_text(0.17), "17.0%");
        assert_eq!(delta(ErrorBudgetConsumed, 32.712, 18.39), "+14.3\u{d7} budget");
        assert_eq!(delta(ErrorBudgetConsumed, 0.5, 0.25), "+25.0 pp");

        // The scorecard line of a KPI on those values says the same.
        let kpis: Vec<KpiSpec> = vec![
            toml::from_str("metric = \"lead_time_median\"\ntarget = \"<= 72\"\nowners = \"IT\"\n").unwrap(),
        ];
        let (current, previous) = ([row(LeadTimeMedian, 30.26)], [row(LeadTimeMedian, 9.93)]);
        let slo = BTreeMap::new();
        let page = build(&SteeringInput {
            organisation: "o",
            period: "p",
            previous_period: "q",
            generated_at: DateTime::<Utc>::UNIX_EPOCH,
            current: &current,
            weekly: &current,
            previous: &previous,
            previous_weekly: &previous,
            kpis: &kpis,
            slo: &slo,
            default_slo: 0.995,
        })
        .page;
        assert_eq!(page.scorecard[0].delta, "+20.3 h");
        assert_eq!(page.scorecard[0].value.text, "30.3 h");
        assert_eq!(page.scorecard[0].arrow, "\u{2191}");

        // A change too small to show has no arrow up or down either.
        let (current, previous) = ([row(LeadTimeMedian, 30.004)], [row(LeadTimeMedian, 30.0)]);
        let line = &build(&SteeringInput {
            organisation: "o",
            period: "p",
            previous_period: "q",
            generated_at: DateTime::<Utc>::UNIX_EPOCH,
            current: &current,
            weekly: &current,
            previous: &previous,
            previous_weekly: &previous,
            kpis: &kpis,
            slo: &slo,
            default_slo: 0.995,
        })
        .page
        .scorecard[0];
        assert_eq!(
            (line.delta.as_str(), line.arrow, line.trend),
            ("0 min", "\u{2192}", "same")
        );
    }

    #[test]
    fn the_downtime_target_is_drawn_on_weekly_bars_only_for_a_one_week_period() {
        let kpis: Vec<KpiSpec> = vec![
            toml::from_str("metric = \"downtime_minutes\"\ntarget = \"<= 60\"\nowners = \"Ops\"\n").unwrap(),
        ];
        let week = |days: i64| {
            let mut r = row(MetricId::DowntimeMinutes, 30.0);
            r.period_end = r.period_start + chrono::Duration::days(days);
            vec![r]
        };
        let slo = BTreeMap::new();
        let target = |current: &[MetricRow]| {
            build(&SteeringInput {
                organisation: "o",
                period: "p",
                previous_period: "q",
                generated_at: DateTime::<Utc>::UNIX_EPOCH,
                current,
                weekly: current,
                previous: &[],
                previous_weekly: &[],
                kpis: &kpis,
                slo: &slo,
                default_slo: 0.995,
            })
            .headline
            .downtime_target
        };
        assert_eq!(target(&week(7)), Some(60.0));
        assert_eq!(target(&week(91)), None);
    }
}
