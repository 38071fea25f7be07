//! The operations family beyond the core restore times and downtime (`reference/metrics.md`,
//! Operations): time to acknowledge, time between failures, availability and error budget,
//! change-caused downtime, weekly deployments against downtime (Spearman), and time to restore by
//! severity — rows for every metric in [`MetricId::OPS`].
//!
//! Like the core family, polars does the record-level work and the grouping by scope and week
//! (through [`aggregate`]), and downtime is the union of outage intervals the core family reads
//! too ([`downtime`]), so the same incidents give the same minutes here as in `downtime_minutes`.
//! Spans stay integer milliseconds inside polars and become hours or minutes in Rust. This module
//! must not write files, emit the core metrics nor import the engine.

use polars::prelude::*;
use tandem_connectors::model::Severity;

use super::Shared;
use crate::metric::{MetricId, MetricTable};
use crate::pipeline::downtime::{Outage, downtime, downtime_any_service, outages, scope_services};
use crate::pipeline::grid::{Cells, Grid, MINUTE_MS, Period, Scope, aggregate, hours, metric_rows};
use crate::pipeline::stats::spearman;
use crate::pipeline::{Options, PipelineError};

/// Time to restore split by severity: the median's and the mean's metric, and the severity they
/// keep.
const BY_SEVERITY: [(MetricId, MetricId, Severity); 4] = [
    (
        MetricId::TimeToRestoreMedianSev1,
        MetricId::TimeToRestoreMeanSev1,
        Severity::Sev1,
    ),
    (
        MetricId::TimeToRestoreMedianSev2,
        MetricId::TimeToRestoreMeanSev2,
        Severity::Sev2,
    ),
    (
        MetricId::TimeToRestoreMedianSev3,
        MetricId::TimeToRestoreMeanSev3,
        Severity::Sev3,
    ),
    (
        MetricId::TimeToRestoreMedianSev4,
        MetricId::TimeToRestoreMeanSev4,
        Severity::Sev4,
    ),
];
/// Values per severity in the restore cells: median, count, mean.
const PER_SEVERITY: usize = 3;

/// The family's rows for every scope and period of the grid, in the core's order: metric (as in
/// [`MetricId::OPS`]), the org scope then services, weeks then the range. The correlation is a
/// property of the whole range and has a `range` row only.
pub(in crate::pipeline) fn metrics(shared: &Shared<'_>) -> Result<MetricTable, PipelineError> {
    let computed = Computed::new(shared).map_err(|source| PipelineError::Polars {
        context: format!(
            "computing operations metrics from {} and {}",
            crate::pipeline::codec::describe(shared.inputs.incidents),
            crate::pipeline::codec::describe(shared.inputs.deployments)
        ),
        source,
    })?;

    Ok(metric_rows(
        &shared.opts.wanted(&MetricId::OPS),
        shared.services,
        shared.grid,
        |metric, scope, period| {
            match (metric, period) {
                // A correlation over weeks exists for the whole range only.
                (MetricId::DeploymentsDowntimeCorrelation, Period::Unit(_)) => None,
                _ => Some(computed.value(metric, scope, period)),
            }
        },
    ))
}

/// The family's groups, computed once; [`Computed::value`] reads one cell of the grid from them.
struct Computed<'a> {
    grid: &'a Grid,
    opts: &'a Options,
    /// Every service with rows: the organisation's downtime sums over them.
    services: &'a std::collections::BTreeSet<String>,
    /// Outage intervals of every outage incident (the core's).
    outages: &'a [Outage],
    /// Outage intervals of the incidents attributed to a deployment.
    change_outages: Vec<Outage>,
    /// Time to acknowledge (ms); values: median, mean.
    acks: Cells,
    /// Gaps between failures (ms); values: mean, median.
    gaps: Cells,
    /// Restore times (ms); values per severity of [`BY_SEVERITY`], in its order: median, count,
    /// mean.
    restores: Cells,
    /// Production deployments; no values.
    deploys: Cells,
    /// Restore times (ms) of every severity; value: the 90th percentile.
    restore_p90: Cells,
    /// Incidents by their start; no values.
    opened: Cells,
    /// Incidents by their resolution; no values.
    resolved: Cells,
}

impl<'a> Computed<'a> {
    fn new(shared: &Shared<'a>) -> PolarsResult<Self> {
        let grid = shared.grid;
        let opts = shared.opts;
        let incidents = &shared.incidents;
        // Aggregate names only need to be unique: the metrics' ids name the median and the mean,
        // the severity's name the count.
        let by_severity: Vec<(&str, Expr)> = BY_SEVERITY
            .iter()
            .flat_map(|&(median, mean, severity)| {
                let span = col("span").filter(col("severity").eq(lit(severity.as_str())));
                [
                    (median.as_str(), span.clone().median()),
                    (severity.as_str(), span.clone().count()),
                    (mean.as_str(), span.mean()),
                ]
            })
            .collect();
        let attributed = attributed(incidents.clone(), shared.links.clone());
        Ok(Self {
            grid,
            opts,
            services: shared.services,
            outages: shared.outages,
            change_outages: outages(attributed, &opts.outage_severities)?,
            acks: aggregate(
                spans_from_start(incidents.clone(), "acknowledged_at"),
                grid,
                &[("median", col("span").median()), ("mean", col("span").mean())],
            )?,
            gaps: aggregate(
                failure_gaps(incidents.clone(), &opts.outage_severities)?,
                grid,
                &[("mean", col("span").mean()), ("median", col("span").median())],
            )?,
            restores: aggregate(
                spans_from_start(incidents.clone(), "resolved_at"),
                grid,
                &by_severity,
            )?,
            deploys: aggregate(
                shared
                    .production
                    .clone()
                    .select([col("service"), col("finished_at").alias("at")]),
                grid,
                &[],
            )?,
            restore_p90: aggregate(
                spans_from_start(incidents.clone(), "resolved_at"),
                grid,
                &[("p90", col("span").quantile(lit(0.9), QuantileMethod::Linear))],
            )?,
            opened: aggregate(
                incidents
                    .clone()
                    .select([col("service"), col("started_at").alias("at")]),
                grid,
                &[],
            )?,
            // Every resolution counts, also one dated before its start (bad data that restore
            // times leave out): the incident was still closed in the period.
            resolved: aggregate(
                incidents
                    .clone()
                    .filter(col("resolved_at").is_not_null())
                    .select([col("service"), col("resolved_at").alias("at")]),
                grid,
                &[],
            )?,
        })
    }

    /// One metric's `(value, n)` for a scope and period; an empty cell is a statistic of `None`
    /// (a downtime-based value is defined without incidents: no downtime).
    fn value(&self, metric: MetricId, scope: Scope<'_>, period: Period) -> (Option<f64>, i64) {
        let (from, to) = self.grid.millis(period);
        // The period's length in minutes, the unit `downtime` returns.
        let length = (to - from) as f64 / MINUTE_MS;
        let statistic =
            |cells: &Cells, index| (hours(cells.value(scope, period, index)), cells.n(scope, period));
        let split = BY_SEVERITY
            .iter()
            .enumerate()
            .find_map(|(index, (median, mean, _))| {
                let base = PER_SEVERITY * index;
                (*median == metric)
                    .then_some(base)
                    .or_else(|| (*mean == metric).then_some(base + 2))
                    .map(|value| (value, base + 1))
            });
        if let Some((value, count)) = split {
            let n = self.restores.value(scope, period, count);
            return (
                hours(self.restores.value(scope, period, value)),
                n.map_or(0, |n| n as i64),
            );
        }
        let count = |cells: &Cells| {
            let n = cells.n(scope, period);
            (Some(n as f64), n)
        };
        match metric {
            MetricId::TimeToRestoreP90 => statistic(&self.restore_p90, 0),
            MetricId::IncidentsOpened => count(&self.opened),
            MetricId::IncidentsResolved => count(&self.resolved),
            MetricId::TimeToAcknowledgeMedian => statistic(&self.acks, 0),
            MetricId::TimeToAcknowledgeMean => statistic(&self.acks, 1),
            MetricId::TimeBetweenFailuresMean => statistic(&self.gaps, 0),
            MetricId::TimeBetweenFailuresMedian => statistic(&self.gaps, 1),
            // Service-weighted: 1 − Σ service downtime ÷ (services × period), the mean of the
            // services' availabilities; a scope without services has none.
            MetricId::Availability => {
                let down = downtime(self.outages, scope, self.services, from, to);
                let capacity = down.services as f64 * length;
                ((capacity > 0.0).then(|| 1.0 - down.minutes / capacity), down.n)
            }
            // Σ service downtime ÷ Σ service error budgets, each service's budget from its own
            // objective: the weighted figure's share of the weighted budget.
            MetricId::ErrorBudgetConsumed => {
                let down = downtime(self.outages, scope, self.services, from, to);
                let budget: f64 = self.scope_slos(scope).map(|slo| (1.0 - slo) * length).sum();
                // An objective of 100% has no budget to consume; the config refuses one.
                ((budget > 0.0).then(|| down.minutes / budget), down.n)
            }
            MetricId::DowntimeAnyServiceMinutes => {
                let (down, n) = downtime_any_service(self.outages, scope, from, to);
                (Some(down), n)
            }
            MetricId::ChangeCausedDowntimeMinutes => {
                let down = downtime(&self.change_outages, scope, self.services, from, to);
                (Some(down.minutes), down.n)
            }
            MetricId::DeploymentsDowntimeCorrelation => {
                // Over the range's calendar periods (weeks in the weekly report).
                let weeks = self.grid.units();
                let (deploys, down): (Vec<f64>, Vec<f64>) = (0..weeks)
                    .map(Period::Unit)
                    .map(|week| {
                        let (from, to) = self.grid.millis(week);
                        (
                            self.deploys.n(scope, week) as f64,
                            downtime(self.outages, scope, self.services, from, to).minutes,
                        )
                    })
                    .unzip();
                (spearman(&deploys, &down), weeks as i64)
            }
            // Time to restore by severity is above; the core and ITSM families compute their own rows.
            _ => (None, 0),
        }
    }

    /// The availability objectives of the services a scope's downtime sums over (see
    /// [`downtime`]): each service's own, else the default.
    fn scope_slos<'s>(&'s self, scope: Scope<'s>) -> impl Iterator<Item = f64> + 's {
        scope_services(scope, self.services)
            .into_iter()
            .map(|name| self.opts.slo.get(name).copied().unwrap_or(self.opts.default_slo))
    }
}

/// Spans from each incident's start to the instant in column `until`, anchored there:
/// `service, severity, at, span` (ms). Incidents without that instant, and negative spans (bad
/// data, like a negative lead time), are dropped.
fn spans_from_start(incidents: LazyFrame, until: &str) -> LazyFrame {
    incidents
        .select([
            col("service"),
            col("severity"),
            col(until).alias("at"),
            (col(until) - col("started_at")).alias("span"),
        ])
        // A null span (no `until`) fails the comparison too.
        .filter(col("span").gt_eq(lit(0i64)))
}

/// Gaps between consecutive starts of outage incidents of the same service: `service, at, span`
/// (ms), anchored on the later start. Gaps never run between services, and an incident without a
/// service has none.
fn failure_gaps(incidents: LazyFrame, severities: &[Severity]) -> PolarsResult<LazyFrame> {
    let is_outage = severities.iter().fold(lit(false), |any, severity| {
        any.or(col("severity").eq(lit(severity.as_str())))
    });
    let previous = col("started_at").shift(lit(1)).over_with_options(
        Some([col("service")]),
        Some(([col("started_at")], SortOptions::default())),
        WindowMapping::default(),
    )?;
    Ok(incidents
        .filter(is_outage.and(col("service").is_not_null()))
        .select([
            col("service"),
            col("started_at").alias("at"),
            (col("started_at") - previous).alias("span"),
        ])
        // The first incident of a service has no gap before it.
        .filter(col("span").is_not_null()))
}

/// The incidents attribution gives a deployment (the core's links, [`Shared::links`]).
fn attributed(incidents: LazyFrame, links: LazyFrame) -> LazyFrame {
    incidents.inner_join(links.select([col("incident_id")]), col("id"), col("incident_id"))
}

#[cfg(test)]
mod tests;
