//! The metric engine schedules: it checks the options, reads the canonical tables, decides which
//! incidents count and which cause references they carry (`mirrors`), builds the grid and
//! prepares once what several families read — production deployments, the change → deployment
//! links ([`super::links`]), the explicit causes ([`super::causes`]), the attribution
//! ([`super::attribution`]), rollbacks and reverts ([`super::undone`]) and the core aggregates —
//! then runs the families ([`super::families`]) on threads and assembles their rows, family by
//! family, into one [`MetricTable`].
//!
//! The families compute; the engine holds no metric definition of its own. Instants are integer
//! milliseconds since the epoch (UTC) throughout. This module writes no file itself: the change
//! links it worked out are kept by [`super::prepared`], in the directory the inputs name.

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::Duration;
use polars::prelude::*;
use tandem_connectors::model::{Change, ChangeRequest, Commit, Deployment, Incident, Ticket};

use super::attribution::{attributions, production_deployments};
use super::codec::{SLICE_ROWS, height, in_slices};
use super::families::core::{Core, lead};
use super::families::{Shared, dora, itsm, ops, quality};
use super::grid::Grid;
use super::{Inputs, Options, PipelineError, causes, links, prepared, undone};
use crate::metric::calendar::Calendar;
use crate::metric::{MetricId, MetricTable};
use crate::store::codec::scan_table;

pub(crate) fn compute_metrics(inputs: Inputs<'_>, opts: &Options) -> Result<MetricTable, PipelineError> {
    let mut tables = compute_over(inputs, opts, std::slice::from_ref(&opts.calendar))?;
    Ok(tables.pop().unwrap_or_default())
}

/// The metric table of each of `calendars` (the calendar of `opts` is not read), from one
/// preparation: the tables are read, and the links, causes, attribution, rollbacks and reverts
/// and ITSM's resolved tickets worked out, once for all of them. A report comparing periods
/// computes them together.
pub(crate) fn compute_over(
    inputs: Inputs<'_>,
    opts: &Options,
    calendars: &[Calendar],
) -> Result<Vec<MetricTable>, PipelineError> {
    check_options(opts, calendars)?;
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
    let grids: Vec<Grid> = calendars
        .iter()
        .map(|calendar| Grid::new(calendar, &opts.teams))
        .collect();

    // Collected once: every family reads the production deployments and the attribution links.
    let production = timed("production deployments", || {
        production_deployments(deployments.clone()).collect()
    })
    .map_err(polars)?
    .lazy();
    // With `--metrics`, a family none of whose metrics is named is not computed, and neither is
    // what only the others read.
    let wants_itsm = opts.wants_any(&MetricId::ITSM);
    let wants_rest = MetricId::ALL
        .iter()
        .any(|&m| opts.wants(m) && !MetricId::ITSM.contains(&m));
    let empty = || grids.iter().map(|_| MetricTable::new()).collect::<Vec<_>>();
    // ITSM reads neither the links nor the other families: it runs on a thread of its own from
    // here, beside the change links (reading commits and changes) and what follows them.
    let (rest, itsm) = std::thread::scope(|scope| {
        let itsm = scope.spawn(|| {
            if !wants_itsm {
                return Ok(empty());
            }
            timed("itsm", || {
                itsm::metrics(inputs, opts, &grids, &services, production.clone())
            })
        });
        let rest = match wants_rest {
            true => rest_of_metrics(
                inputs,
                opts,
                &grids,
                &services,
                production.clone(),
                [deployments, changes, incidents],
            ),
            false => Ok(grids
                .iter()
                .map(|_| std::array::from_fn(|_| Ok(MetricTable::new())))
                .collect()),
        };
        let itsm = itsm
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (rest, itsm)
    });
    let mut tables = Vec::with_capacity(grids.len());
    for ([core, dora, ops, quality], itsm) in rest?.into_iter().zip(itsm?) {
        let mut rows = core?;
        let families = [dora?, ops?, itsm, quality?];
        rows.reserve(families.iter().map(MetricTable::len).sum());
        for family in families {
            rows.append(family);
        }
        // The attribution mode stands behind every figure built on incident attribution.
        rows.set_method(&ATTRIBUTED, opts.attribution.as_str());
        tables.push(rows);
    }
    Ok(tables)
}

/// The rows of one grid's core, DORA, operations and data-quality families, in that order.
type Rest = [Result<MetricTable, PipelineError>; 4];

/// Everything but ITSM, after the production deployments: the change links, causes, attribution,
/// rollbacks and reverts (once), then for each grid the core aggregates and dora beside ops and
/// quality. Returns each grid's core rows and the three families' rows, in that order.
fn rest_of_metrics(
    inputs: Inputs<'_>,
    opts: &Options,
    grids: &[Grid],
    services: &BTreeSet<String>,
    production: LazyFrame,
    [deployments, changes, incidents]: [LazyFrame; 3],
) -> Result<Vec<Rest>, PipelineError> {
    let polars = polars_error(inputs);
    // With `--metrics`, when no metric named reads which change or incident goes with which
    // deployment, the change links, causes and attribution are made from empty tables (only their
    // columns are needed) and no revert is looked for.
    let linked = opts.wants_any(&LINKED) || opts.wants_any(&lead::READERS);
    let unless_linked = |table: &LazyFrame| match linked {
        true => table.clone(),
        false => table.clone().slice(0, 0),
    };
    // The links and deployed reverts worked out by an earlier computation over these very
    // tables, when kept ([`prepared`]).
    let entry = linked.then(|| prepared::Entry::of(inputs)).flatten();
    let kept = match &entry {
        Some(entry) => timed("kept change links", || -> PolarsResult<_> {
            Ok(entry.read(height(&changes)? as usize, height(&production)? as usize))
        })
        .map_err(polars)?,
        None => None,
    };
    let (change_links, kept_reverted) = match kept {
        Some((frame, reverted)) => (frame.lazy(), Some(reverted)),
        None => {
            let commits = unless_linked(&scan_table::<Commit>(inputs.commits)?);
            let links = timed("change links", || {
                links::change_links(unless_linked(&changes), unless_linked(&production), commits)
            })
            .map_err(polars)?;
            (links, None)
        }
    };
    let change_requests = unless_linked(&scan_table::<ChangeRequest>(inputs.change_requests)?);
    // Only incidents that started in the periods or were still open at their start are
    // attributed: every figure built on the attribution counts incidents started in its period,
    // deployments finished in it (whose incidents start after them), or outages overlapping it.
    // An incident's attribution depends on no other incident.
    let (first, end) = (
        grids.iter().map(Grid::start).min().unwrap_or(0),
        grids.iter().map(Grid::end).max().unwrap_or(0),
    );
    let attributed = unless_linked(&incidents).filter(
        col("started_at")
            .gt_eq(lit(first))
            .or(col("resolved_at").is_null())
            .or(col("resolved_at").gt_eq(lit(first))),
    );
    let causes = timed("explicit causes", || {
        causes::Causes::load(
            unless_linked(&changes),
            change_links.clone(),
            change_requests,
            unless_linked(&production),
            attributed.clone(),
            opts.change_window_tolerance.num_milliseconds().max(0),
        )
    })
    .map_err(polars)?;
    let links = timed("attribution", || {
        attributions(
            unless_linked(&production),
            attributed,
            opts.attribution,
            opts.attribution_window,
            &causes,
        )
        .and_then(LazyFrame::collect)
    })
    .map_err(polars)?
    .lazy();
    // The production deployments in order, and their rollbacks, are worked out whatever is named:
    // DORA's deploy days read them.
    let was_kept = kept_reverted.is_some();
    let undone = timed("rollbacks and reverts", || {
        undone::undone(
            production.clone(),
            unless_linked(&changes),
            change_links.clone(),
            kept_reverted,
        )
    })
    .map_err(polars)?;
    if let Some(entry) = entry.filter(|_| !was_kept) {
        timed("keeping the change links", || -> PolarsResult<()> {
            entry.write(&change_links.clone().collect()?, &undone.reverted);
            Ok(())
        })
        .map_err(polars)?;
    }
    let other_failures = undone.failure_ids();
    // The families read only which change shipped with which deployment and how it was linked
    // (these columns are shared, not copied): the instants, the largest part of the links, go
    // with the lead-time aggregation, which takes the links whole.
    let family_links = change_links
        .clone()
        .select([col("change"), col("deployment"), col("ancestry")])
        .collect()
        .map_err(polars)?
        .lazy();
    let mut out = Vec::with_capacity(grids.len());
    // DORA's part that reads the whole history, worked out with the first grid's rows and kept
    // for the others.
    let mut dora_prepared: Option<dora::Prepared> = None;
    // Likewise the events data quality counts, within the periods computed.
    let mut quality_prepared: Option<quality::Prepared> = None;
    // The last grid takes the links whole, so they go once its lead times are aggregated.
    let mut change_links = Some(change_links);
    for (i, grid) in grids.iter().enumerate() {
        let these_links = match i + 1 == grids.len() {
            true => change_links.take(),
            false => change_links.clone(),
        }
        .unwrap_or_else(|| family_links.clone());
        let core = timed("core aggregates", || {
            Core::aggregate(
                grid,
                opts,
                services,
                [production.clone(), links.clone(), these_links, incidents.clone()],
                &other_failures,
            )
        })
        .map_err(polars)?;
        let shared = Shared {
            inputs,
            opts,
            grid,
            services,
            deployments: deployments.clone(),
            changes: changes.clone(),
            incidents: incidents.clone(),
            production: production.clone(),
            links: links.clone(),
            change_links: family_links.clone(),
            outages: &core.outages,
            deploy_outcomes: &core.deploys,
            leads: &core.leads,
            undone: &undone,
        };
        // The families only read what is shared: ops and quality run on another thread beside
        // dora (ITSM, which needs none of the links, started with the change links).
        let (dora, (ops, quality)) = std::thread::scope(|scope| {
            let second = scope.spawn(|| {
                (
                    family(opts, &MetricId::OPS, "ops", || ops::metrics(&shared)),
                    family(opts, &MetricId::QUALITY, "quality", || {
                        prepared_once(
                            &mut quality_prepared,
                            || quality::prepare(&shared, (first, end)),
                            |prepared| quality::metrics(&shared, prepared),
                        )
                    }),
                )
            });
            let dora = family(opts, &MetricId::DORA, "dora", || {
                prepared_once(
                    &mut dora_prepared,
                    || dora::prepare(&shared, (first, end)),
                    |prepared| dora::metrics(&shared, prepared),
                )
            });
            let second = second
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (dora, second)
        });
        let rows = timed("core rows", || core.rows(opts));
        out.push([Ok(rows), dora, ops, quality]);
    }
    Ok(out)
}

/// A family's rows from its part prepared for every grid: prepared with the first grid, kept in
/// `slot` for the others.
fn prepared_once<P>(
    slot: &mut Option<P>,
    prepare: impl FnOnce() -> Result<P, PipelineError>,
    rows: impl FnOnce(&P) -> Result<MetricTable, PipelineError>,
) -> Result<MetricTable, PipelineError> {
    let prepared = match slot.take() {
        Some(prepared) => prepared,
        None => prepare()?,
    };
    let out = rows(&prepared);
    *slot = Some(prepared);
    out
}

/// Runs a family ([`timed`]) when any of its `metrics` is wanted; no rows otherwise.
fn family(
    opts: &Options,
    metrics: &[MetricId],
    stage: &str,
    run: impl FnOnce() -> Result<MetricTable, PipelineError>,
) -> Result<MetricTable, PipelineError> {
    match opts.wants_any(metrics) {
        true => timed(stage, run),
        false => Ok(MetricTable::new()),
    }
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

/// Besides the lead-time metrics ([`lead::READERS`]), the metrics that read which change shipped
/// with which deployment, which incident is attributed to which deployment, or which deployments
/// were rolled back or reverted: without one of them named, the change links and the
/// attribution are not worked out.
const LINKED: [MetricId; 11] = [
    MetricId::ChangesDeployedShare,
    MetricId::ChangesLinkedAncestryShare,
    MetricId::ChangesLinkedTimeShare,
    MetricId::ReworkRate,
    MetricId::ChangeFailureRate,
    MetricId::FailedDeploymentCount,
    MetricId::FailedDeploymentRecoveryMedian,
    MetricId::IncidentsAttributedShare,
    MetricId::IncidentsAttributedExplicitShare,
    MetricId::IncidentsAttributedWindowShare,
    MetricId::ChangeCausedDowntimeMinutes,
];

/// Checks the options the grid does not already guarantee.
fn check_options(opts: &Options, calendars: &[Calendar]) -> Result<(), PipelineError> {
    if opts.attribution_window < Duration::zero() {
        return Err(PipelineError::Options(
            "the attribution window must not be negative".to_owned(),
        ));
    }
    if calendars.iter().any(|c| c.periods.is_empty()) {
        return Err(PipelineError::Options("the range has no periods".to_owned()));
    }
    Ok(())
}

/// Every service named anywhere in the tables, so a service appears in every week of a report.
/// Read a slice at a time: years of changes name a few hundred services millions of times.
fn services_in(tables: &[LazyFrame]) -> PolarsResult<BTreeSet<String>> {
    let mut services = BTreeSet::new();
    for table in tables {
        in_slices(
            table.clone(),
            SLICE_ROWS,
            |slice| {
                slice
                    .select([col("service")])
                    .filter(col("service").is_not_null())
                    .unique(None, UniqueKeepStrategy::Any)
            },
            |frame| {
                for name in frame.column("service")?.str()?.iter().flatten() {
                    if !services.contains(name) {
                        services.insert(name.to_owned());
                    }
                }
                Ok(())
            },
        )?;
    }
    Ok(services)
}

mod mirrors;
#[cfg(test)]
mod tests;
