//! The metric engine: the core DORA and downtime metrics per calendar period and for the whole
//! range, for the organisation, services and teams, after the project's metric definitions
//! (`reference/metrics.md`), and the shared pieces the other families (`dora`, `ops`, `itsm`,
//! `quality`) build on: the period grid, scopes, attribution links, the change → deployment links
//! (`links`: by commit ancestry, else by time), the explicit causes an incident can name
//! (`causes`), which incidents count and which cause references they carry (`mirrors`),
//! aggregation and row layout, with the `method` behind a row where the definition
//! allows more than one.
//!
//! polars does the record-level work lazily (production deployments, incident attribution, lead
//! times, restore times) and the grouping by scope and period; plain Rust then lays the results on
//! the full grid of metric × scope × period, so empty periods and quiet services still get a row,
//! into a columnar [`MetricTable`], and merges outage intervals (see [`super::intervals`]). The
//! largest tables (changes, commits, ticket transitions) are read a slice at a time
//! ([`super::codec::in_slices`]) where only a few of their rows or a fold of them is needed.
//! Instants are handled as integer milliseconds since the epoch (UTC) throughout. This module must
//! not write files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use polars::prelude::*;
use tandem_connectors::model::{Change, ChangeRequest, Commit, Deployment, Incident, Severity, Ticket};

use super::calendar::{Calendar, Grain};
use super::intervals::union_length;
use super::{Attribution, Inputs, Options, PipelineError};
use crate::metric::{MetricId, MetricTable, PeriodIx, ScopeIx};
use crate::store::codec::scan_table;

pub(super) const HOUR_MS: f64 = 3_600_000.0;
pub(super) const MINUTE_MS: f64 = 60_000.0;
/// The period index of whole-range groups in the aggregated frames (calendar periods count from 0).
const RANGE_INDEX: i64 = -1;

pub(crate) fn compute_metrics(inputs: Inputs<'_>, opts: &Options) -> Result<MetricTable, PipelineError> {
    check_options(opts)?;
    let polars = polars_error(inputs);

    let deployments = scan_table::<Deployment>(inputs.deployments)?;
    let changes = scan_table::<Change>(inputs.changes)?;
    let all_incidents = scan_table::<Incident>(inputs.incidents)?;
    let mut incidents = all_incidents.clone();
    if let Some(from_sources) = opts
        .incident_sources
        .iter()
        .map(|s| col("source").eq(lit(s.as_str())))
        .reduce(|a, b| a.or(b))
    {
        incidents = incidents.filter(from_sources);
    }
    // Each counted incident carries the cause references its allowed sources give, its mirrors'
    // included: collected once, as every family reads them.
    if mirrors::needed(opts) {
        incidents = timed("incident mirrors", || {
            mirrors::with_causes(all_incidents, incidents, opts)?.collect()
        })
        .map_err(polars)?
        .lazy();
    }

    let mut services: BTreeSet<String> = opts.services.iter().cloned().collect();
    // Services named in any table get rows, so a service known only from its tickets or change
    // requests shows up too.
    let tickets = scan_table::<Ticket>(inputs.tickets)?;
    let change_requests = scan_table::<ChangeRequest>(inputs.change_requests)?;
    services.extend(
        services_in(&[
            deployments.clone(),
            changes.clone(),
            incidents.clone(),
            tickets,
            change_requests,
        ])
        .map_err(polars)?,
    );
    let grid = Grid::new(&opts.calendar, &opts.teams);

    // Collected once: every family reads the production deployments and the attribution links.
    let production = timed("production deployments", || {
        production_deployments(deployments.clone()).collect()
    })
    .map_err(polars)?
    .lazy();
    // ITSM reads neither the links nor the other families: it runs on a thread of its own from
    // here, beside the change links (reading commits and changes) and what follows them.
    let (rest, itsm) = std::thread::scope(|scope| {
        let itsm = scope.spawn(|| {
            timed("itsm", || {
                super::itsm::metrics(inputs, opts, &grid, &services, production.clone())
            })
        });
        let rest = rest_of_metrics(
            inputs,
            opts,
            &grid,
            &services,
            production.clone(),
            [deployments, changes, incidents],
        );
        let itsm = itsm
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (rest, itsm)
    });
    let [core, dora, ops, quality] = rest?;
    let mut rows = core?;
    let families = [dora?, ops?, itsm?, quality?];
    rows.reserve(families.iter().map(MetricTable::len).sum());
    for family in families {
        rows.append(family);
    }
    // The attribution mode stands behind every figure built on incident attribution.
    rows.set_method(&ATTRIBUTED, opts.attribution.as_str());
    Ok(rows)
}

/// Everything but ITSM, after the production deployments: the change links, causes, attribution,
/// rollbacks and reverts, the core aggregates, then dora beside ops and quality. Returns the
/// core rows and the three families' rows, in that order.
fn rest_of_metrics(
    inputs: Inputs<'_>,
    opts: &Options,
    grid: &Grid,
    services: &BTreeSet<String>,
    production: LazyFrame,
    [deployments, changes, incidents]: [LazyFrame; 3],
) -> Result<[Result<MetricTable, PipelineError>; 4], PipelineError> {
    let polars = polars_error(inputs);
    let commits = scan_table::<Commit>(inputs.commits)?;
    let change_links = timed("change links", || {
        links::change_links(changes.clone(), production.clone(), commits)
    })
    .map_err(polars)?;
    let change_requests = scan_table::<ChangeRequest>(inputs.change_requests)?;
    let causes = timed("explicit causes", || {
        causes::Causes::load(
            changes.clone(),
            change_links.clone(),
            change_requests,
            production.clone(),
            incidents.clone(),
            opts.change_window_tolerance.num_milliseconds().max(0),
        )
    })
    .map_err(polars)?;
    let links = timed("attribution", || {
        attributions(
            production.clone(),
            incidents.clone(),
            opts.attribution,
            opts.attribution_window,
            &causes,
        )
        .and_then(LazyFrame::collect)
    })
    .map_err(polars)?
    .lazy();
    let undone = timed("rollbacks and reverts", || {
        super::dora::undone(production.clone(), changes.clone(), change_links.clone())
    })
    .map_err(polars)?;
    let other_failures = undone.failure_ids();
    // The families read only which change shipped with which deployment and how it was linked
    // (these columns are shared, not copied): the instants, the largest part of the links, go
    // with the lead-time aggregation, which takes the links whole and lets them go once it has
    // its events.
    let family_links = change_links
        .clone()
        .select([col("change"), col("deployment"), col("ancestry")])
        .collect()
        .map_err(polars)?
        .lazy();
    let computed = timed("core aggregates", || {
        PolarsResult::Ok(Computed {
            deploys: aggregate(
                deployment_outcomes(production.clone(), links.clone(), &other_failures)?,
                grid,
                &[("failed", col("failed").sum())],
            )?,
            leads: aggregate(lead_stages(change_links), grid, &lead_aggregations())?,
            restores: aggregate(
                restore_times(incidents.clone()),
                grid,
                &[("median", col("span").median()), ("mean", col("span").mean())],
            )?,
            outages: outages(incidents.clone(), &opts.outage_severities)?,
            grid,
            services,
        })
    })
    .map_err(polars)?;
    let shared = Shared {
        inputs,
        opts,
        grid,
        services,
        deployments,
        changes,
        incidents: incidents.clone(),
        production,
        links,
        change_links: family_links,
        outages: &computed.outages,
        deploy_outcomes: &computed.deploys,
        leads: &computed.leads,
        undone: &undone,
    };
    // The families only read what is shared: ops and quality run on another thread beside dora
    // (ITSM, which needs none of the links, started with the change links).
    let (dora, (ops, quality)) = std::thread::scope(|scope| {
        let second = scope.spawn(|| {
            (
                timed("ops", || super::ops::metrics(&shared)),
                timed("quality", || super::quality::metrics(&shared)),
            )
        });
        let dora = timed("dora", || super::dora::metrics(&shared));
        let second = second
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (dora, second)
    });
    let rows = timed("core rows", || {
        metric_rows_with(&MetricId::CORE, services, grid, |metric, scope, period| {
            let (value, n) = computed.value(metric, scope, period);
            let method = match metric {
                MetricId::LeadTimeMedian => {
                    link_method(computed.leads.value(scope, period, lead::ANCESTRY), n)
                }
                _ => None,
            };
            Some((value, n, method))
        })
    });
    Ok([Ok(rows), dora, ops, quality])
}

/// Names the tables behind a polars error of the metric computation.
fn polars_error(inputs: Inputs<'_>) -> impl Fn(PolarsError) -> PipelineError + Copy + '_ {
    move |source| PipelineError::Polars {
        context: format!(
            "computing metrics from {}, {} and {}",
            crate::pipeline::codec::describe(inputs.deployments),
            crate::pipeline::codec::describe(inputs.changes),
            crate::pipeline::codec::describe(inputs.incidents)
        ),
        source,
    }
}

/// Runs one stage of the metric computation and logs how long it took (debug level), so a slow
/// lake shows which family the time goes to (`TANDEM_LOG=tandem=debug`).
fn timed<T>(stage: &str, run: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = run();
    tracing::debug!(
        stage,
        secs = started.elapsed().as_secs_f64(),
        rss_mb = resident_mb("VmRSS"),
        peak_mb = resident_mb("VmHWM"),
        "metric stage"
    );
    out
}

/// A memory figure of this process in MiB (see [`crate::alloc::status_kb`]), for the stage log.
fn resident_mb(key: &str) -> u64 {
    crate::alloc::status_kb(key) / 1024
}

/// The metrics whose value depends on which incidents are attributed to which deployment: their
/// rows carry the attribution mode (`chain` or `devlake`) as their method.
const ATTRIBUTED: [MetricId; 7] = [
    MetricId::IncidentsAttributedExplicitShare,
    MetricId::IncidentsAttributedWindowShare,
    MetricId::ChangeFailureRate,
    MetricId::FailedDeploymentCount,
    MetricId::FailedDeploymentRecoveryMedian,
    MetricId::IncidentsAttributedShare,
    MetricId::ChangeCausedDowntimeMinutes,
];

/// The link methods behind a value over `n` linked changes of which `ancestry` (a sum of 1.0s)
/// were linked by ancestry: `ancestry`, `time` or `ancestry+time` when mixed; `None` without
/// changes.
pub(super) fn link_method(ancestry: Option<f64>, n: i64) -> Option<&'static str> {
    let by_ancestry = ancestry.unwrap_or(0.0).round() as i64;
    match n {
        0 => None,
        _ if by_ancestry >= n => Some(links::ANCESTRY),
        _ if by_ancestry == 0 => Some(links::TIME),
        _ => Some("ancestry+time"),
    }
}

/// One row per metric, scope (the org, then each service) and period (each week, then the range),
/// in that order, with `(value, n)` from `value`; `None` leaves the row out (e.g. a correlation
/// that only exists over the whole range has no week rows).
pub(super) fn metric_rows(
    metrics: &[MetricId],
    services: &BTreeSet<String>,
    grid: &Grid,
    mut value: impl FnMut(MetricId, Scope<'_>, Period) -> Option<(Option<f64>, i64)>,
) -> MetricTable {
    metric_rows_with(metrics, services, grid, |metric, scope, period| {
        value(metric, scope, period).map(|(value, n)| (value, n, None))
    })
}

/// [`metric_rows`] for metrics whose rows name a method: `value` also gives the row's `method`.
pub(super) fn metric_rows_with(
    metrics: &[MetricId],
    services: &BTreeSet<String>,
    grid: &Grid,
    mut value: impl FnMut(MetricId, Scope<'_>, Period) -> Option<(Option<f64>, i64, Option<&'static str>)>,
) -> MetricTable {
    let scopes = grid.scopes(services);
    let periods = grid.periods();
    let mut table = MetricTable::new();
    table.reserve(metrics.len() * scopes.len() * periods.len());
    let scope_ix: Vec<ScopeIx> = scopes
        .iter()
        .map(|scope| table.scope(scope.scope_type(), scope.name()))
        .collect();
    let period_ix: Vec<PeriodIx> = periods
        .iter()
        .map(|&period| {
            let (start, end) = grid.instants(period);
            table.period(grid.grain(period), start, end)
        })
        .collect();
    for &metric in metrics {
        for (&scope, &at_scope) in scopes.iter().zip(&scope_ix) {
            for (&period, &at_period) in periods.iter().zip(&period_ix) {
                let Some((value, n, method)) = value(metric, scope, period) else {
                    continue;
                };
                table.push(metric, at_scope, at_period, value, n, method);
            }
        }
    }
    table
}

/// What the metric families beyond the core DORA set (`ops`, `itsm`) read: the inputs and options,
/// the week grid, the services, and the frames the core already prepared.
pub(super) struct Shared<'a> {
    /// The table files.
    pub inputs: Inputs<'a>,
    /// What to compute.
    pub opts: &'a Options,
    /// The weeks and the range.
    pub grid: &'a Grid,
    /// Every service to emit rows for (configured or seen in the data).
    pub services: &'a BTreeSet<String>,
    /// Every deployment, as stored; instants as i64 ms.
    pub deployments: LazyFrame,
    /// Every change, as stored.
    pub changes: LazyFrame,
    /// Incidents from the configured incident sources, each with the cause references its
    /// allowed sources and its mirrors give (see [`mirrors`]); instants as i64 ms.
    pub incidents: LazyFrame,
    /// Successful production deployments in finish order: `id`, `position`, `repo`, `service`,
    /// `sha`, `finished_at` (ms), `change_refs` (see [`production_deployments`]).
    pub production: LazyFrame,
    /// Attribution links of incidents to production deployments: `incident_id, deployment_id,
    /// link` (see [`attributions`]).
    pub links: LazyFrame,
    /// Merged changes (`change`: their row in the changes table) with the production deployment
    /// that shipped them (`deployment`: its `position` in `production`) and whether the link is
    /// by `ancestry` (see [`links::change_links`]; the instants went into [`Self::leads`]).
    pub change_links: LazyFrame,
    /// Outage intervals (severities in the outage set), for downtime-based metrics.
    pub outages: &'a [Outage],
    /// Production deployments by scope and period; value 0: the failed ones (the change failure
    /// rate's numerator).
    pub deploy_outcomes: &'a Cells,
    /// Deployed changes by the finish of the deployment that shipped them: the lead time and its
    /// stages (values at the positions in [`lead`]).
    pub leads: &'a Cells,
    /// Production deployments undone by a rollback or a deployed revert (worked out once).
    pub undone: &'a super::dora::Undone,
}
#[derive(Debug)]
struct Computed<'g> {
    grid: &'g Grid,
    /// Every service with rows: the organisation's downtime sums over them.
    services: &'g BTreeSet<String>,
    /// Production deployments; value 0: failed ones.
    deploys: Cells,
    /// Deployed changes: lead time and stages (see [`lead`]).
    leads: Cells,
    /// Restore times (ms); values: median, mean.
    restores: Cells,
    outages: Vec<Outage>,
}

impl Computed<'_> {
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

/// Milliseconds as hours. Spans stay integer milliseconds inside polars and are converted once
/// here: polars' float kernel divides by a scalar by multiplying with its reciprocal, which made
/// 8 h come out as 7.999999999999999.
pub(super) fn hours(millis: Option<f64>) -> Option<f64> {
    millis.map(|ms| ms / HOUR_MS)
}

/// Checks the options the grid does not already guarantee.
fn check_options(opts: &Options) -> Result<(), PipelineError> {
    if opts.attribution_window < Duration::zero() {
        return Err(PipelineError::Options(
            "the attribution window must not be negative".to_owned(),
        ));
    }
    if opts.calendar.periods.is_empty() {
        return Err(PipelineError::Options("the range has no periods".to_owned()));
    }
    Ok(())
}

/// Every service named anywhere in the tables, so a service appears in every week of a report.
fn services_in(tables: &[LazyFrame]) -> PolarsResult<Vec<String>> {
    let services: Vec<LazyFrame> = tables
        .iter()
        .map(|table| table.clone().select([col("service")]))
        .collect();
    let frame = concat(services, UnionArgs::default())?
        .filter(col("service").is_not_null())
        .unique(None, UniqueKeepStrategy::Any)
        .collect()?;
    Ok(frame
        .column("service")?
        .str()?
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect())
}

/// Successful deployments to production that finished: `id, repo, service, sha, finished_at,
/// change_refs`, in finish order (ties: by id), with their `position` in that order (0, 1, …): the
/// frames built on them (the change links) name a deployment by its position rather than by its
/// id.
pub(super) fn production_deployments(deployments: LazyFrame) -> LazyFrame {
    deployments
        .filter(
            col("is_production")
                .and(col("status").eq(lit("success")))
                .and(col("finished_at").is_not_null()),
        )
        .select([
            col("id"),
            col("repo"),
            col("service"),
            col("sha"),
            col("finished_at"),
            col("change_refs"),
        ])
        .sort(["finished_at", "id"], SortMultipleOptions::default())
        .with_row_index("position", None)
}

/// Production deployments with whether they failed: `service, at, failed` (1.0 or 0.0). A
/// deployment failed when an incident is attributed to it or another signal says so
/// (`other_failures`: rolled back, or one of its changes reverted by a deployed revert).
///
/// Window attribution: each incident goes to the latest production deployment of the same
/// service with `started_at − window < finished_at <= started_at` (ties: the greatest id). A
/// deployment with one or more incidents is one failed change.
pub(super) fn deployment_outcomes(
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

/// The `link` of an attribution through a cause the incident names.
pub(super) const EXPLICIT: &str = "explicit";
/// The `link` of an attribution by the window (or DevLake's rule).
pub(super) const WINDOW: &str = "window";

/// Attribution, one row per attributed incident: `incident_id, deployment_id, link` (`explicit`
/// or `window`, the link of the chain that made it). In the chain
/// mode, first the cause the incident names ([`explicit_links`]), else the window: the latest
/// production deployment of the incident's service with `started_at − window < finished_at <=
/// started_at` (ties: the greatest id). Incidents with no such deployment have no row.
pub(super) fn attributions(
    production: LazyFrame,
    incidents: LazyFrame,
    mode: Attribution,
    window: Duration,
    causes: &causes::Causes,
) -> PolarsResult<LazyFrame> {
    // DevLake's rule names no explicit causes and has no window.
    let explicit = match mode {
        Attribution::Chain => explicit_links(production.clone(), incidents.clone(), causes)?,
        Attribution::Devlake => DataFrame::new_infer_height(vec![
            Column::new("incident_id".into(), Vec::<String>::new()),
            Column::new("deployment_id".into(), Vec::<String>::new()),
            Column::new("link".into(), Vec::<String>::new()),
        ])?
        .lazy(),
    };
    let unnamed = incidents
        .filter(col("service").is_not_null())
        .select([col("id").alias("incident_id"), col("service"), col("started_at")])
        // Incidents that name their cause are not attributed again by the window.
        .left_join(
            explicit
                .clone()
                .select([col("incident_id").alias("named"), lit(true).alias("is_named")]),
            col("incident_id"),
            col("named"),
        )
        .filter(col("is_named").is_null());
    // One sorted pass instead of joining each incident with every deployment of its service
    // (quadratic per service): incidents and deployments stacked, sorted by service and instant
    // (deployments by id), and each incident takes the deployment just above it, which is the
    // latest `(finished_at, id)` before it. At the same instant a deployment comes first for the
    // chain (finished at or before the start) and last for DevLake (strictly before).
    let (incident_kind, deployment_kind) = match mode {
        Attribution::Chain => (1i32, 0i32),
        Attribution::Devlake => (0i32, 1i32),
    };
    let null = |dtype: DataType| lit(NULL).cast(dtype);
    let incident_events = unnamed.select([
        col("service"),
        col("started_at").alias("t"),
        lit(incident_kind).alias("kind"),
        col("incident_id"),
        col("started_at"),
        null(DataType::String).alias("deployment_id"),
        null(DataType::String).alias("deployment_service"),
        null(DataType::Int64).alias("finished_at"),
    ]);
    let deployment_events = production.filter(col("service").is_not_null()).select([
        col("service"),
        col("finished_at").alias("t"),
        lit(deployment_kind).alias("kind"),
        null(DataType::String).alias("incident_id"),
        null(DataType::Int64).alias("started_at"),
        col("id").alias("deployment_id"),
        col("service").alias("deployment_service"),
        col("finished_at"),
    ]);
    let previous = |name: &str| col(name).fill_null_with_strategy(FillNullStrategy::Forward(None));
    let in_window = match mode {
        Attribution::Devlake => lit(true),
        Attribution::Chain => col("finished_at").gt(col("started_at") - lit(window.num_milliseconds())),
    };
    let window = concat([incident_events, deployment_events], UnionArgs::default())?
        .sort(
            ["service", "t", "kind", "deployment_id"],
            SortMultipleOptions::default().with_nulls_last(true),
        )
        .with_columns([
            previous("deployment_id"),
            previous("deployment_service"),
            previous("finished_at"),
        ])
        .filter(
            col("kind")
                .eq(lit(incident_kind))
                .and(col("deployment_service").eq(col("service")))
                .and(in_window),
        )
        .select([
            col("incident_id"),
            col("deployment_id"),
            lit(WINDOW).alias("link"),
        ]);
    concat([explicit, window], UnionArgs::default())
}

/// The `explicit` link of the attribution chain: an incident whose cause references name a
/// production deployment, by its id or by a commit sha of at least 7 hex digits that the
/// deployment's sha starts with, or through a change number or a change request
/// ([`causes::Causes::resolve`]); the first reference that resolves wins. Only a deployment that
/// finished at or before the incident started can cause it: a name that matches several (a sha
/// deployed twice, a change shipped by several deployments) picks the latest of those, and a name
/// whose every match finished later resolves to nothing, so the window is tried next. Matching
/// is done in plain Rust: prefix matching in polars would need its `strings` feature.
fn explicit_links(
    production: LazyFrame,
    incidents: LazyFrame,
    causes: &causes::Causes,
) -> PolarsResult<LazyFrame> {
    let deployments = production
        .select([col("id"), col("sha"), col("service"), col("finished_at")])
        .sort(["finished_at", "id"], SortMultipleOptions::default())
        .collect()?;
    let (dep_id, dep_sha, dep_service, dep_finished) = (
        deployments.column("id")?.str()?,
        deployments.column("sha")?.str()?,
        deployments.column("service")?.str()?,
        deployments.column("finished_at")?.i64()?,
    );
    let shipped: Vec<causes::Shipped> = (0..deployments.height())
        .filter_map(|i| {
            Some(causes::Shipped {
                id: dep_id.get(i)?.to_owned(),
                service: dep_service.get(i).map(str::to_owned),
                finished: dep_finished.get(i)?,
            })
        })
        .collect();
    let shipped_index = causes::ShippedIndex::new(&shipped);
    // Indexes instead of a scan of every deployment per reference: the position (in `shipped`,
    // finish order) of the latest deployment with each id, and every lower-cased sha with its
    // position, sorted for prefix search.
    let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(shipped.len());
    for (position, d) in shipped.iter().enumerate() {
        by_id.insert(d.id.as_str(), position);
    }
    let shas: HashMap<&str, &str> = dep_id
        .iter()
        .zip(dep_sha.iter())
        .filter_map(|(i, s)| Some((i?, s?)))
        .collect();
    let mut by_sha: Vec<(String, usize)> = shipped
        .iter()
        .enumerate()
        .filter_map(|(position, d)| Some((shas.get(d.id.as_str())?.to_ascii_lowercase(), position)))
        .collect();
    by_sha.sort_unstable();
    let refs = incidents
        .select([col("id"), col("service"), col("started_at"), col("cause_refs")])
        .collect()?;
    let (inc_id, inc_service, inc_started, cause_refs) = (
        refs.column("id")?.str()?,
        refs.column("service")?.str()?,
        refs.column("started_at")?.i64()?,
        refs.column("cause_refs")?.list()?,
    );
    let mut linked_incidents = Vec::new();
    let mut linked_deployments = Vec::new();
    for i in 0..refs.height() {
        let (Some(incident), Some(started), Some(list)) =
            (inc_id.get(i), inc_started.get(i), cause_refs.get_as_series(i))
        else {
            continue;
        };
        let Ok(list) = list.str() else {
            continue;
        };
        // A deployment that finished after the incident started cannot have caused it.
        let before_start = |position: &usize| shipped.get(*position).is_some_and(|d| d.finished <= started);
        let found = list.iter().flatten().find_map(|r| {
            let r = r.trim();
            let is_sha = r.len() >= 7 && r.chars().all(|c| c.is_ascii_hexdigit());
            // The latest deployment (highest position) named by id or by a sha prefix.
            let by_id = by_id.get(r).copied().filter(before_start);
            let by_sha = is_sha
                .then(|| {
                    let prefix = r.to_ascii_lowercase();
                    let from = by_sha.partition_point(|(sha, _)| sha.as_str() < prefix.as_str());
                    by_sha
                        .get(from..)
                        .unwrap_or_default()
                        .iter()
                        .take_while(|(sha, _)| sha.starts_with(&prefix))
                        .map(|(_, position)| *position)
                        .filter(before_start)
                        .max()
                })
                .flatten();
            by_id
                .max(by_sha)
                .and_then(|position| shipped.get(position))
                .map(|d| d.id.as_str())
                .or_else(|| causes.resolve(r, inc_service.get(i), started, &shipped_index))
        });
        if let Some(deployment) = found {
            linked_incidents.push(incident.to_owned());
            linked_deployments.push(deployment.to_owned());
        }
    }
    let link = vec![EXPLICIT; linked_incidents.len()];
    Ok(DataFrame::new_infer_height(vec![
        Column::new("incident_id".into(), linked_incidents),
        Column::new("deployment_id".into(), linked_deployments),
        Column::new("link".into(), link),
    ])?
    .lazy())
}

/// The lead time of deployed changes and its stages: `service, at, ancestry, lead, coding,
/// review, wait, negative`, one row per deployed change, where `at` is when the deployment that
/// shipped it finished, `service` is that deployment's and `ancestry` is 1.0 for a change linked
/// by ancestry. The spans (ms): `lead` from the first commit (else the opening) to `at`; `coding`
/// from the first commit to the opening; `review` from the opening to the merge; `wait` from the
/// merge to `at`. A negative span is null (bad data, left out of its statistic) and sets
/// `negative` (1.0), which the data-quality figures count.
fn lead_stages(change_links: LazyFrame) -> LazyFrame {
    let non_negative = |span: Expr| {
        when(span.clone().gt_eq(lit(0i64)))
            .then(span)
            .otherwise(lit(NULL).cast(DataType::Int64))
    };
    let negative = |span: Expr| span.lt(lit(0i64)).fill_null(lit(false));
    let lead = || col("at") - col("began_at");
    let coding = || col("opened_at") - col("first_commit_at");
    let review = || col("merged_at") - col("opened_at");
    let wait = || col("at") - col("merged_at");
    change_links.select([
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

/// Positions of the aggregated values of deployed changes in [`Shared::leads`] (see
/// [`lead_aggregations`]); each statistic comes with how many of its changes were linked by
/// ancestry and its sample size.
pub(super) mod lead {
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
/// its p90, its three stages and the negative spans.
fn lead_aggregations() -> Vec<(&'static str, Expr)> {
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
        aggs.push((median, col(span).median()));
        aggs.push((ancestry, linked(span)));
        aggs.push((n, col(span).count()));
    }
    aggs.push(("negative", col("negative").sum()));
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

/// One outage incident's impact interval.
#[derive(Debug)]
pub(super) struct Outage {
    /// Service; [`outages`] returns them sorted by it.
    service: Option<String>,
    start: i64,
    /// `i64::MAX` while open, so clipping runs it to the period end.
    end: i64,
}

pub(super) fn outages(incidents: LazyFrame, severities: &[Severity]) -> PolarsResult<Vec<Outage>> {
    let is_outage = severities.iter().fold(lit(false), |any, severity| {
        any.or(col("severity").eq(lit(severity.as_str())))
    });
    let frame = incidents
        .filter(is_outage)
        .select([col("service"), col("started_at"), col("resolved_at")])
        .collect()?;
    let service = frame.column("service")?.str()?;
    let started = frame.column("started_at")?.i64()?;
    let resolved = frame.column("resolved_at")?.i64()?;
    let mut outages: Vec<Outage> = service
        .iter()
        .zip(started.iter())
        .zip(resolved.iter())
        .filter_map(|((service, start), end)| {
            Some(Outage {
                service: service.map(str::to_owned),
                // `started_at` is declared non-nullable; the codec refuses a null there.
                start: start?,
                end: end.unwrap_or(i64::MAX),
            })
        })
        .collect();
    // By service, for [`downtime`].
    outages.sort_unstable_by(|a, b| (&a.service, a.start, a.end).cmp(&(&b.service, b.start, b.end)));
    Ok(outages)
}

/// The downtime of a scope in a period (see [`downtime`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ScopeDowntime {
    /// The sum of the scope's services' downtime minutes (a service's own for a service).
    pub minutes: f64,
    /// The services it sums over: the denominator of a service-weighted availability.
    pub services: usize,
    /// Outage incidents of those services open in the period.
    pub n: i64,
}

/// The outages of one service ([`outages`] sorts them by service).
fn of_service<'o>(outages: &'o [Outage], name: &str) -> &'o [Outage] {
    let first = outages.partition_point(|o| o.service.as_deref() < Some(name));
    let end = outages.partition_point(|o| o.service.as_deref() <= Some(name));
    outages.get(first..end.max(first)).unwrap_or_default()
}

/// The services a scope's service-weighted downtime sums over: a service itself, a team's
/// services in the config mapping, and for the organisation every service with rows (configured
/// or named in any table), so the organisation's availability is the mean of its service rows'.
pub(super) fn scope_services<'a>(scope: Scope<'a>, services: &'a BTreeSet<String>) -> Vec<&'a str> {
    match scope {
        Scope::Org => services.iter().map(String::as_str).collect(),
        Scope::Service(name) => vec![name],
        Scope::Team(_, services) => services.iter().map(String::as_str).collect(),
    }
}

/// Downtime of a scope in `[from, to)`, service-weighted (`reference/metrics.md`, downtime): each
/// service's downtime is the union of its outage intervals, clipped to the period; a team's or the
/// organisation's is the sum over its services (see [`scope_services`]), so that availability can
/// be the mean of the services' availabilities. A service without outages counts, with no
/// downtime; an outage without a service belongs to no service and counts only in
/// [`downtime_any_service`].
pub(super) fn downtime(
    outages: &[Outage],
    scope: Scope<'_>,
    services: &BTreeSet<String>,
    from: i64,
    to: i64,
) -> ScopeDowntime {
    let mut total = ScopeDowntime {
        minutes: 0.0,
        services: 0,
        n: 0,
    };
    for name in scope_services(scope, services) {
        let own = of_service(outages, name);
        total.services += 1;
        total.n += own.iter().filter(|o| o.start.max(from) < o.end.min(to)).count() as i64;
        total.minutes += union_length(own.iter().map(|o| (o.start, o.end)), from, to) as f64 / MINUTE_MS;
    }
    total
}

/// Minutes in `[from, to)` during which any service of the scope was down (the union of the
/// scope's outage intervals; for the organisation, of every outage, with or without a service)
/// and the number of outage incidents open in it. With many services it nears the whole period,
/// which is why the scope's downtime is the sum per service instead ([`downtime`]).
pub(super) fn downtime_any_service(outages: &[Outage], scope: Scope<'_>, from: i64, to: i64) -> (f64, i64) {
    let slices: Vec<&[Outage]> = match scope {
        Scope::Org => vec![outages],
        Scope::Service(name) => vec![of_service(outages, name)],
        Scope::Team(_, services) => services.iter().map(|s| of_service(outages, s)).collect(),
    };
    let in_scope = || slices.iter().flat_map(|s| s.iter());
    let n = in_scope().filter(|o| o.start.max(from) < o.end.min(to)).count();
    let millis = union_length(in_scope().map(|o| (o.start, o.end)), from, to);
    (millis as f64 / MINUTE_MS, n as i64)
}

/// Who a row is about.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope<'a> {
    Org,
    Service(&'a str),
    /// A team and the services it owns (from the config mapping).
    Team(&'a str, &'a BTreeSet<String>),
}

impl Scope<'_> {
    pub(super) fn scope_type(self) -> &'static str {
        match self {
            Self::Org => "org",
            Self::Service(_) => "service",
            Self::Team(..) => "team",
        }
    }

    pub(super) fn name(&self) -> &str {
        match self {
            Self::Org => "all",
            Self::Service(name) | Self::Team(name, _) => name,
        }
    }
}

/// A period of the grid: one of the calendar's periods (0 = the first) or the whole range.
#[derive(Debug, Clone, Copy)]
pub(super) enum Period {
    Unit(usize),
    Range,
}

impl Period {
    /// The index its group has in the aggregated frames.
    pub(super) fn index(self) -> i64 {
        match self {
            Self::Unit(i) => i as i64,
            Self::Range => RANGE_INDEX,
        }
    }
}

/// The reporting range and its calendar periods.
#[derive(Debug)]
pub(super) struct Grid {
    calendar: Calendar,
    /// Period starts in epoch milliseconds, then the last end.
    bounds: Vec<i64>,
    /// The team of each mapped service.
    service_team: BTreeMap<String, String>,
    /// The services of each team.
    team_services: BTreeMap<String, BTreeSet<String>>,
}

impl Grid {
    pub(super) fn new(calendar: &Calendar, service_team: &BTreeMap<String, String>) -> Self {
        let mut bounds: Vec<i64> = calendar
            .periods
            .iter()
            .map(|p| p.start.timestamp_millis())
            .collect();
        bounds.extend(calendar.periods.last().map(|p| p.end.timestamp_millis()));
        let mut team_services: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (service, team) in service_team {
            team_services
                .entry(team.clone())
                .or_default()
                .insert(service.clone());
        }
        Self {
            calendar: calendar.clone(),
            bounds,
            service_team: service_team.clone(),
            team_services,
        }
    }

    /// Every scope rows are made for: the organisation, each service, then each team.
    pub(super) fn scopes<'a>(&'a self, services: &'a BTreeSet<String>) -> Vec<Scope<'a>> {
        std::iter::once(Scope::Org)
            .chain(services.iter().map(|s| Scope::Service(s)))
            .chain(
                self.team_services
                    .iter()
                    .map(|(team, services)| Scope::Team(team, services)),
            )
            .collect()
    }

    /// Number of calendar periods.
    pub(super) fn units(&self) -> usize {
        self.calendar.periods.len()
    }

    /// The periods in time order, then the whole range.
    pub(super) fn periods(&self) -> Vec<Period> {
        (0..self.units())
            .map(Period::Unit)
            .chain(std::iter::once(Period::Range))
            .collect()
    }

    /// `day`, `week`, `month` or `quarter` for a calendar period; `range` for the whole range.
    pub(super) fn grain(&self, period: Period) -> &'static str {
        match period {
            Period::Unit(_) => self.calendar.grain.as_str(),
            Period::Range => Grain::Range.as_str(),
        }
    }

    pub(super) fn instants(&self, period: Period) -> (DateTime<Utc>, DateTime<Utc>) {
        let periods = &self.calendar.periods;
        match period {
            Period::Unit(i) => (periods[i].start, periods[i].end),
            Period::Range => (periods[0].start, periods[periods.len() - 1].end),
        }
    }

    pub(super) fn millis(&self, period: Period) -> (i64, i64) {
        let (from, to) = self.instants(period);
        (from.timestamp_millis(), to.timestamp_millis())
    }

    pub(super) fn start(&self) -> i64 {
        self.millis(Period::Range).0
    }

    pub(super) fn end(&self) -> i64 {
        self.millis(Period::Range).1
    }

    /// Calendar days in the period, in the report's time zone (a week across a DST change is
    /// still 7 days).
    pub(super) fn days(&self, period: Period) -> f64 {
        let (from, to) = self.instants(period);
        let tz = self.calendar.tz;
        (to.with_timezone(&tz).date_naive() - from.with_timezone(&tz).date_naive()).num_days() as f64
    }

    /// The calendar period containing `at` (epoch ms), if any.
    fn index_of(bounds: &[i64], at: i64) -> i64 {
        match (bounds.first(), bounds.last()) {
            (Some(first), Some(last)) if at >= *first && at < *last => {
                bounds.partition_point(|b| *b <= at) as i64 - 1
            }
            _ => RANGE_INDEX - 1,
        }
    }
}

/// A group: its size and its aggregated values, in the order the aggregations were given.
#[derive(Debug)]
pub(super) struct Cell {
    n: i64,
    values: Vec<Option<f64>>,
}

/// The groups of one event kind by scope type, scope and week; absent cells had no events.
/// Nested so that a lookup borrows the scope's names instead of allocating a key, and with polars'
/// fast hasher: the metric families look cells up millions of times on a lake of years.
#[derive(Debug)]
pub(super) struct Cells(PlHashMap<String, PlHashMap<String, PlHashMap<i64, Cell>>>);

impl Cells {
    pub(super) fn get(&self, scope: Scope<'_>, period: Period) -> Option<&Cell> {
        self.0
            .get(scope.scope_type())?
            .get(scope.name())?
            .get(&period.index())
    }

    pub(super) fn n(&self, scope: Scope<'_>, period: Period) -> i64 {
        self.get(scope, period).map_or(0, |cell| cell.n)
    }

    /// A count among the aggregated values (0 for an empty cell).
    pub(super) fn count(&self, scope: Scope<'_>, period: Period, index: usize) -> i64 {
        self.value(scope, period, index).unwrap_or(0.0).round() as i64
    }

    pub(super) fn value(&self, scope: Scope<'_>, period: Period, index: usize) -> Option<f64> {
        self.get(scope, period)
            .and_then(|cell| cell.values.get(index).copied().flatten())
    }
}

/// Service and team names by the integer codes [`aggregate`] groups by.
#[derive(Default)]
struct Names {
    org: String,
    services: Vec<String>,
    service_codes: HashMap<String, u32>,
    teams: Vec<String>,
    team_codes: HashMap<String, u32>,
}

impl Names {
    fn code(names: &mut Vec<String>, codes: &mut HashMap<String, u32>, name: &str) -> u32 {
        if let Some(code) = codes.get(name) {
            return *code;
        }
        let code = names.len() as u32;
        names.push(name.to_owned());
        codes.insert(name.to_owned(), code);
        code
    }

    fn service(&mut self, name: &str) -> u32 {
        Self::code(&mut self.services, &mut self.service_codes, name)
    }

    fn team(&mut self, name: &str) -> u32 {
        Self::code(&mut self.teams, &mut self.team_codes, name)
    }
}

/// Groups events (`service`, `at` in ms, value columns) anchored in the range by scope and
/// period — each event counts for the org and, when it has one, its service and the service's
/// team, in its period and in the whole range — and evaluates `aggs` (named) per group, beside the
/// group size `n`.
pub(super) fn aggregate(events: LazyFrame, grid: &Grid, aggs: &[(&str, Expr)]) -> PolarsResult<Cells> {
    let mut anchored = events
        .filter(
            col("at")
                .gt_eq(lit(grid.start()))
                .and(col("at").lt(lit(grid.end()))),
        )
        .collect()?;
    // Each event's period (`week`), service and team as small integers in place of its instant and
    // names: grouping by integers is faster than by text, and the frame that every grouping below
    // reads is smaller. The period by binary search over the period starts: exact at every
    // boundary, whatever the periods' lengths (months, DST weeks). A team's events are its
    // services' events, by the config mapping, looked up per event rather than joined.
    let mut names = Names {
        org: "all".to_owned(),
        ..Names::default()
    };
    let (week, service, team) = {
        let at = anchored.column("at")?.i64()?;
        let week: Int32Chunked = at
            .iter()
            .map(|at| at.map(|at| Grid::index_of(&grid.bounds, at) as i32))
            .collect();
        let service_names = anchored.column("service")?.str()?;
        let mut service = Vec::with_capacity(service_names.len());
        let mut team = Vec::with_capacity(service_names.len());
        let mut last: Option<(&str, Option<u32>, Option<u32>)> = None;
        for name in service_names.iter() {
            let Some(name) = name else {
                service.push(None);
                team.push(None);
                continue;
            };
            let (s, t) = match last {
                Some((previous, s, t)) if previous == name => (s, t),
                _ => {
                    let s = Some(names.service(name));
                    let t = grid.service_team.get(name).map(|t| names.team(t));
                    last = Some((name, s, t));
                    (s, t)
                }
            };
            service.push(s);
            team.push(t);
        }
        (
            week.with_name("week".into()),
            UInt32Chunked::from_iter_options("service".into(), service.into_iter()),
            UInt32Chunked::from_iter_options("team".into(), team.into_iter()),
        )
    };
    anchored = anchored.drop_many(["at", "service"]);
    anchored.with_column(week.into_column())?;
    anchored.with_column(service.into_column())?;
    anchored.with_column(team.into_column())?;
    let anchored = anchored.lazy();

    let mut exprs = vec![len().cast(DataType::Int64).alias("n")];
    exprs.extend(
        aggs.iter()
            .map(|(name, agg)| agg.clone().cast(DataType::Float64).alias(*name)),
    );
    let mut cells: PlHashMap<String, PlHashMap<String, PlHashMap<i64, Cell>>> = PlHashMap::new();
    let scopes = [
        ("org", None),
        ("service", Some("service")),
        ("team", Some("team")),
    ];
    for (scope_type, key) in scopes {
        if key == Some("team") && names.teams.is_empty() {
            continue;
        }
        for by_period in [true, false] {
            let keys: Vec<Expr> = key
                .into_iter()
                .map(col)
                .chain(by_period.then(|| col("week")))
                .collect();
            // The organisation's whole range is one group: a plain selection.
            let frame = match keys.is_empty() {
                true => anchored.clone().select(exprs.clone()),
                false => anchored.clone().group_by(keys).agg(exprs.clone()),
            }
            .collect()?;
            let scope = match key {
                Some(key) => Some(frame.column(key)?.u32()?),
                None => None,
            };
            let week = match by_period {
                true => Some(frame.column("week")?.i32()?),
                false => None,
            };
            let n = frame.column("n")?.i64()?;
            let values = aggs
                .iter()
                .map(|(name, _)| frame.column(name)?.f64())
                .collect::<PolarsResult<Vec<_>>>()?;
            for row in 0..frame.height() {
                // Events without a service (or a service without a team) count for the
                // organisation only: their null group is no scope.
                let name = match (scope, key) {
                    (Some(scope), Some("team")) => {
                        scope.get(row).and_then(|code| names.teams.get(code as usize))
                    }
                    (Some(scope), _) => scope.get(row).and_then(|code| names.services.get(code as usize)),
                    (None, _) => Some(&names.org),
                };
                let period = match week {
                    Some(week) => week.get(row).map(i64::from),
                    None => Some(RANGE_INDEX),
                };
                let n = n.get(row).unwrap_or(0);
                let (Some(name), Some(period)) = (name, period) else {
                    continue;
                };
                if n == 0 {
                    continue;
                }
                cells
                    .entry(scope_type.to_owned())
                    .or_default()
                    .entry(name.to_owned())
                    .or_default()
                    .insert(
                        period,
                        Cell {
                            n,
                            values: values.iter().map(|column| column.get(row)).collect(),
                        },
                    );
            }
        }
    }
    Ok(Cells(cells))
}

pub(super) mod causes;
pub(super) mod links;
mod mirrors;
#[cfg(test)]
mod tests;
