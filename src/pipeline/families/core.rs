//! The core family: deployment count and frequency, lead time (with the link method behind it),
//! change failure rate, time to restore and downtime (`MetricId::CORE`, after
//! `reference/metrics.md`), and the aggregates of deployed changes' lead-time stages that the DORA
//! and data-quality families read.
//!
//! polars does the record-level work lazily and the grouping by scope and period ([`aggregate`]);
//! plain Rust lays the values on the grid. It must not write files nor import the engine.

use std::collections::BTreeSet;

use polars::prelude::*;

use crate::metric::{MetricId, MetricTable};
use crate::pipeline::Options;
use crate::pipeline::downtime::{Outage, downtime, outages};
use crate::pipeline::grid::{Cells, Grid, Period, Scope, aggregate, hours, metric_rows_with, when_wanted};
use crate::pipeline::links::link_method;

/// The core family's aggregates; the DORA, operations and data-quality families read the
/// deployment outcomes, lead times and outages too.
#[derive(Debug)]
pub(in crate::pipeline) struct Core<'g> {
    grid: &'g Grid,
    /// Every service with rows: the organisation's downtime sums over them.
    services: &'g BTreeSet<String>,
    /// Production deployments; value 0: failed ones.
    pub(in crate::pipeline) deploys: Cells,
    /// Deployed changes: lead time and stages (see [`lead`]).
    pub(in crate::pipeline) leads: Cells,
    /// Restore times (ms); values: median, mean.
    restores: Cells,
    /// Outage intervals, for the downtime-based metrics.
    pub(in crate::pipeline) outages: Vec<Outage>,
}

impl<'g> Core<'g> {
    /// Aggregates production deployments (failed when `links` attributes an incident to them or
    /// they are among `other_failures`), the lead times of the changes in `change_links`, and
    /// the restore times and outages (incidents of `outage_severities`) of `incidents`, by scope
    /// and period.
    ///
    /// The lead times are aggregated only when a metric that reads them is wanted (`--metrics`).
    pub(in crate::pipeline) fn aggregate(
        grid: &'g Grid,
        opts: &Options,
        services: &'g BTreeSet<String>,
        [production, links, change_links, incidents]: [LazyFrame; 4],
        other_failures: &[String],
    ) -> PolarsResult<Self> {
        let change_links = match opts.wants_any(&lead::READERS) {
            true => change_links,
            false => change_links.slice(0, 0),
        };
        Ok(Self {
            deploys: aggregate(
                deployment_outcomes(production.clone(), links, other_failures)?,
                grid,
                &[("failed", col("failed").sum())],
            )?,
            leads: aggregate(
                lead_stages(change_links, production.clone(), grid),
                grid,
                &lead_aggregations(opts.wants_any(&lead::STAGE_READERS)),
            )?,
            restores: aggregate(
                restore_times(incidents.clone()),
                grid,
                &[("median", col("span").median()), ("mean", col("span").mean())],
            )?,
            outages: outages(incidents, &opts.outage_severities)?,
            grid,
            services,
        })
    }

    /// The `MetricId::CORE` rows, with the link method behind each lead time.
    pub(in crate::pipeline) fn rows(&self, opts: &Options) -> MetricTable {
        metric_rows_with(
            &opts.wanted(&MetricId::CORE),
            self.services,
            self.grid,
            |metric, scope, period| {
                let (value, n) = self.value(metric, scope, period);
                let method = match metric {
                    MetricId::LeadTimeMedian => {
                        link_method(self.leads.value(scope, period, lead::ANCESTRY), n)
                    }
                    _ => None,
                };
                Some((value, n, method))
            },
        )
    }

    /// One metric's `(value, n)` for a scope and period; an empty cell is a count of 0 and a
    /// statistic of `None`.
    fn value(&self, metric: MetricId, scope: Scope<'_>, period: Period) -> (Option<f64>, i64) {
        match metric {
            MetricId::DeploymentCount => {
                let n = self.deploys.n(scope, period);
                (Some(n as f64), n)
            }
            MetricId::DeploymentFrequency => {
                let n = self.deploys.n(scope, period);
                (Some(n as f64 / self.grid.days(period)), n)
            }
            MetricId::LeadTimeMedian => (
                hours(self.leads.value(scope, period, lead::MEDIAN)),
                self.leads.count(scope, period, lead::N),
            ),
            MetricId::ChangeFailureRate => {
                let n = self.deploys.n(scope, period);
                let failed = self.deploys.value(scope, period, 0).unwrap_or(0.0);
                ((n > 0).then(|| failed / n as f64), n)
            }
            MetricId::TimeToRestoreMedian => (
                hours(self.restores.value(scope, period, 0)),
                self.restores.n(scope, period),
            ),
            MetricId::TimeToRestoreMean => (
                hours(self.restores.value(scope, period, 1)),
                self.restores.n(scope, period),
            ),
            MetricId::DowntimeMinutes => {
                let (from, to) = self.grid.millis(period);
                let down = downtime(&self.outages, scope, self.services, from, to);
                (Some(down.minutes), down.n)
            }
            // Other families compute their own rows (`ops`, `itsm`).
            _ => (None, 0),
        }
    }
}

/// Production deployments with whether they failed: `service, at, failed` (1.0 or 0.0). A
/// deployment failed when an incident is attributed to it or another signal says so
/// (`other_failures`: rolled back, or one of its changes reverted by a deployed revert).
///
/// Window attribution: each incident goes to the latest production deployment of the same
/// service with `started_at − window < finished_at <= started_at` (ties: the greatest id). A
/// deployment with one or more incidents is one failed change.
fn deployment_outcomes(
    production: LazyFrame,
    links: LazyFrame,
    other_failures: &[String],
) -> PolarsResult<LazyFrame> {
    let failed = links
        .group_by([col("deployment_id")])
        .agg([len().alias("incidents")]);
    let rolled = DataFrame::new_infer_height(vec![
        Column::new("rolled_back_id".into(), other_failures.to_vec()),
        Column::new("rolled_back".into(), vec![true; other_failures.len()]),
    ])?
    .lazy();
    Ok(production
        .left_join(failed, col("id"), col("deployment_id"))
        .left_join(rolled, col("id"), col("rolled_back_id"))
        .select([
            col("service"),
            col("finished_at").alias("at"),
            col("incidents")
                .is_not_null()
                .or(col("rolled_back").is_not_null())
                .cast(DataType::Float64)
                .alias("failed"),
        ]))
}

/// The lead time of deployed changes shipped by deployments that finished in the grid's range:
/// `service, at, ancestry, lead, coding, review, wait, negative`, one row per change, where `at`
/// is when the deployment that shipped it finished, `service` is that deployment's (both looked
/// up in `production` by its position) and `ancestry` is 1.0 for a change linked by ancestry.
/// The spans (ms): `lead` from the first commit (else the opening) to `at`; `coding` from the
/// first commit to the opening; `review` from the opening to the merge; `wait` from the merge to
/// `at`. A negative span is null (bad data, left out of its statistic) and sets
/// `negative` (1.0), which the data-quality figures count.
fn lead_stages(change_links: LazyFrame, production: LazyFrame, grid: &Grid) -> LazyFrame {
    let non_negative = |span: Expr| {
        when(span.clone().gt_eq(lit(0i64)))
            .then(span)
            .otherwise(lit(NULL).cast(DataType::Int64))
    };
    let negative = |span: Expr| span.lt(lit(0i64)).fill_null(lit(false));
    let lead = || col("at") - col("first_commit_at").fill_null(col("opened_at"));
    let coding = || col("opened_at") - col("first_commit_at");
    let review = || col("merged_at") - col("opened_at");
    let wait = || col("at") - col("merged_at");
    let shipping = production
        .filter(
            col("finished_at")
                .gt_eq(lit(grid.start()))
                .and(col("finished_at").lt(lit(grid.end()))),
        )
        .select([col("position"), col("service"), col("finished_at").alias("at")]);
    change_links
        .join(
            shipping,
            [col("deployment")],
            [col("position")],
            JoinArgs::new(JoinType::Inner),
        )
        .select([
            col("service"),
            col("at"),
            col("ancestry"),
            non_negative(lead()).alias("lead"),
            non_negative(coding()).alias("coding"),
            non_negative(review()).alias("review"),
            non_negative(wait()).alias("wait"),
            negative(lead())
                .or(negative(coding()))
                .or(negative(review()))
                .or(negative(wait()))
                .cast(DataType::Float64)
                .alias("negative"),
        ])
}

/// Positions of the aggregated values of deployed changes in [`Shared::leads`](super::Shared::leads) (see
/// [`lead_aggregations`]); each statistic comes with how many of its changes were linked by
/// ancestry and its sample size.
pub(in crate::pipeline) mod lead {
    use crate::metric::MetricId;

    /// The metrics that read the lead-time aggregates.
    pub(in crate::pipeline) const READERS: [MetricId; 6] = [
        MetricId::LeadTimeMedian,
        MetricId::LeadTimeP90,
        MetricId::LeadTimeCodingMedian,
        MetricId::LeadTimeReviewMedian,
        MetricId::LeadTimeDeployWaitMedian,
        MetricId::ChangesNegativeSpans,
    ];
    /// Those of [`READERS`] that read the stages (coding, review, deploy wait) or the negative
    /// spans: without one of them, only the lead time itself is aggregated.
    pub(in crate::pipeline) const STAGE_READERS: [MetricId; 4] = [
        MetricId::LeadTimeCodingMedian,
        MetricId::LeadTimeReviewMedian,
        MetricId::LeadTimeDeployWaitMedian,
        MetricId::ChangesNegativeSpans,
    ];
    pub(in crate::pipeline) const MEDIAN: usize = 0;
    pub(in crate::pipeline) const ANCESTRY: usize = 1;
    pub(in crate::pipeline) const N: usize = 2;
    pub(in crate::pipeline) const P90: usize = 3;
    pub(in crate::pipeline) const CODING: usize = 4;
    pub(in crate::pipeline) const REVIEW: usize = 7;
    pub(in crate::pipeline) const WAIT: usize = 10;
    /// Deployed changes with a negative span.
    pub(in crate::pipeline) const NEGATIVE: usize = 13;
    /// After a stage's median: its changes linked by ancestry, then its sample size.
    pub(in crate::pipeline) const STAGE_ANCESTRY: usize = 1;
    pub(in crate::pipeline) const STAGE_N: usize = 2;
}

/// The statistics of [`lead_stages`], in the order of [`lead`]: one grouping serves the lead time,
/// its p90, its three stages and the negative spans. Without `stages`, the stages and negative
/// spans are nulls in their places (no metric named reads them).
fn lead_aggregations(stages: bool) -> Vec<(&'static str, Expr)> {
    let linked = |span: &'static str| col("ancestry").filter(col(span).is_not_null()).sum();
    let mut aggs = vec![
        ("lead_median", col("lead").median()),
        ("lead_ancestry", linked("lead")),
        ("lead_n", col("lead").count()),
        ("lead_p90", col("lead").quantile(lit(0.9), QuantileMethod::Linear)),
    ];
    for (median, ancestry, n, span) in [
        ("coding_median", "coding_ancestry", "coding_n", "coding"),
        ("review_median", "review_ancestry", "review_n", "review"),
        ("wait_median", "wait_ancestry", "wait_n", "wait"),
    ] {
        aggs.push((median, when_wanted(stages, col(span).median())));
        aggs.push((ancestry, when_wanted(stages, linked(span))));
        aggs.push((n, when_wanted(stages, col(span).count())));
    }
    aggs.push(("negative", when_wanted(stages, col("negative").sum())));
    aggs
}

/// Restore times of resolved incidents: `service, at (resolved_at), span` (ms). A resolution before
/// the start is bad data and dropped, like a negative lead time.
fn restore_times(incidents: LazyFrame) -> LazyFrame {
    incidents
        .filter(col("resolved_at").is_not_null())
        .select([
            col("service"),
            col("resolved_at").alias("at"),
            (col("resolved_at") - col("started_at")).alias("span"),
        ])
        .filter(col("span").gt_eq(lit(0i64)))
}
