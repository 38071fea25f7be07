//! ITSM flow and change-management metrics (`MetricId::ITSM`), after the project's metric
//! definitions (`reference/metrics.md`, section ITSM): ticket throughput, backlog, lead and cycle
//! time, SLA breaches, reopens, change success, emergency changes and production deployments
//! without a change record.
//!
//! polars reads the tables and does the grouping by scope and week through [`aggregate`]; plain
//! Rust folds the ticket transitions (read a slice at a time) into each resolved ticket's start and
//! reopens, matches deployments with change windows and references, and counts the backlog, a
//! state at each period's end rather than an event in it, over the few columns it needs. Instants are i64 milliseconds (UTC) and spans stay integer
//! milliseconds until [`hours`] converts them. This module must not write files.

use std::collections::{BTreeSet, HashMap};

use polars::prelude::*;
use tandem_connectors::model::{ChangeRequest, Ticket, TicketTransition};

use crate::metric::{MetricId, MetricTable};
use crate::pipeline::causes::change_request_names;
use crate::pipeline::codec::{SLICE_ROWS, in_slices};
use crate::pipeline::grid::{
    Cells, Grid, HOUR_MS, Period, Scope, aggregate, hours, metric_rows, when_wanted,
};
use crate::pipeline::{Inputs, Options, PipelineError};
use crate::store::codec::scan_table;

/// Status categories of tickets and transitions (Jira's keys, which every connector maps onto).
const IN_PROGRESS: &str = "indeterminate";
const DONE: &str = "done";

/// Positions of the aggregated values of resolved tickets in their [`Cells`].
const LEAD_MEDIAN: usize = 0;
const LEAD_N: usize = 1;
const CYCLE_MEDIAN: usize = 2;
const CYCLE_N: usize = 3;
const BREACHED: usize = 4;
const WITH_TARGET: usize = 5;
const REOPENED: usize = 6;
/// Position of the first per-category count; the rest follow in [`BY_CATEGORY`]'s order.
const FIRST_CATEGORY: usize = 7;

/// Throughput by category: each metric and the canonical ticket category it counts.
const BY_CATEGORY: [(MetricId, &str); 7] = [
    (MetricId::TicketsResolvedIncident, "incident"),
    (MetricId::TicketsResolvedRequest, "request"),
    (MetricId::TicketsResolvedChange, "change"),
    (MetricId::TicketsResolvedProblem, "problem"),
    (MetricId::TicketsResolvedBug, "bug"),
    (MetricId::TicketsResolvedTask, "task"),
    (MetricId::TicketsResolvedStory, "story"),
];

/// Positions of the aggregated values of closed change requests in their [`Cells`].
const SUCCESSFUL: usize = 0;
const RATED: usize = 1;
const EMERGENCY: usize = 2;

/// The family's rows for every scope and period of each grid.
///
/// Reads the ticket and change-request tables and the production deployments only, so it can run
/// beside everything that links changes and incidents to deployments.
pub(in crate::pipeline) fn metrics(
    inputs: Inputs<'_>,
    opts: &Options,
    grids: &[Grid],
    services: &BTreeSet<String>,
    production: LazyFrame,
) -> Result<Vec<MetricTable>, PipelineError> {
    let targets = sla_targets(opts)?;
    let tolerance_ms = change_window_tolerance(opts)?;
    let polars = |source| PipelineError::Polars {
        context: format!(
            "computing ITSM metrics from {}, {} and {}",
            crate::pipeline::codec::describe(inputs.tickets),
            crate::pipeline::codec::describe(inputs.ticket_transitions),
            crate::pipeline::codec::describe(inputs.change_requests)
        ),
        source,
    };

    let tickets = scan_table::<Ticket>(inputs.tickets)?.with_column(target_ms(targets).alias("target"));
    let transitions = scan_table::<TicketTransition>(inputs.ticket_transitions)?;
    let change_requests = scan_table::<ChangeRequest>(inputs.change_requests)?;
    // With `--metrics`, what no named metric reads is left out: an empty table stands in for it
    // (the transitions are the largest table of a lake of years).
    let only = |needed: bool, table: LazyFrame| match needed {
        true => table,
        false => table.slice(0, 0),
    };
    let resolved_readers = BY_CATEGORY.iter().map(|(m, _)| *m).chain([
        MetricId::TicketsResolved,
        MetricId::TicketLeadTimeMedian,
        MetricId::TicketCycleTimeMedian,
        MetricId::SlaBreachRate,
        MetricId::SlaBreaches,
        MetricId::TicketReopenRate,
    ]);
    // Only tickets resolved within the grids' periods count: the others' transitions are not
    // looked up.
    let (first, end) = (
        grids.iter().map(Grid::start).min().unwrap_or(0),
        grids.iter().map(Grid::end).max().unwrap_or(0),
    );
    let resolved_tickets_of = only(
        resolved_readers.into_iter().any(|m| opts.wants(m)),
        tickets.clone().filter(
            col("resolved_at")
                .gt_eq(lit(first))
                .and(col("resolved_at").lt(lit(end))),
        ),
    );
    let history = opts.wants_any(&[MetricId::TicketCycleTimeMedian, MetricId::TicketReopenRate]);
    let open_tickets = only(
        opts.wants_any(&[MetricId::TicketBacklog, MetricId::SlaOpenPastTarget]),
        tickets,
    );
    let closed_requests = only(
        opts.wants_any(&[MetricId::ChangeSuccessRate, MetricId::EmergencyChangeRatio]),
        change_requests.clone(),
    );
    let (production, change_requests) = match opts.wants(MetricId::DeploymentsWithoutChangeRecord) {
        true => (production, change_requests),
        false => (production.slice(0, 0), change_requests.slice(0, 0)),
    };

    // A statistic no named metric reads is a null in its place (medians are the costly ones).
    let wanted = |metrics: &[MetricId], agg: Expr| when_wanted(opts.wants_any(metrics), agg);
    let (lead, cycle) = (
        [MetricId::TicketLeadTimeMedian],
        [MetricId::TicketCycleTimeMedian],
    );
    let sla = [MetricId::SlaBreachRate, MetricId::SlaBreaches];
    let mut resolved_aggs = vec![
        ("lead_median", wanted(&lead, col("lead").median())),
        ("lead_n", wanted(&lead, col("lead").count())),
        ("cycle_median", wanted(&cycle, col("cycle").median())),
        ("cycle_n", wanted(&cycle, col("cycle").count())),
        ("breached", wanted(&sla, col("breached").sum())),
        ("with_target", wanted(&sla, col("breached").count())),
        (
            "reopened",
            wanted(&[MetricId::TicketReopenRate], col("reopened").sum()),
        ),
    ];
    resolved_aggs.extend(BY_CATEGORY.iter().map(|&(metric, category)| {
        (
            metric.as_str(),
            wanted(
                &[metric],
                col("category").eq(lit(category)).cast(DataType::Float64).sum(),
            ),
        )
    }));
    // The resolved tickets with what their transitions say, worked out once for every grid.
    let resolved = resolved_tickets(resolved_tickets_of, history.then_some(transitions)).map_err(polars)?;
    let backlog = Backlog::load(open_tickets, grids).map_err(polars)?;
    let mut tables = Vec::with_capacity(grids.len());
    for grid in grids {
        let computed = Computed {
            resolved: aggregate(resolved.clone(), grid, &resolved_aggs).map_err(polars)?,
            backlog: &backlog,
            closed: aggregate(
                closed_change_requests(closed_requests.clone()),
                grid,
                &[
                    ("successful", col("successful").sum()),
                    ("rated", col("successful").count()),
                    ("emergency", col("emergency").sum()),
                ],
            )
            .map_err(polars)?,
            deploys: aggregate(
                deployment_coverage(production.clone(), change_requests.clone(), grid, tolerance_ms)
                    .map_err(polars)?,
                grid,
                &[("uncovered", col("uncovered").sum())],
            )
            .map_err(polars)?,
        };
        tables.push(metric_rows(
            &opts.wanted(&MetricId::ITSM),
            services,
            grid,
            |metric, scope, period| Some(computed.value(metric, scope, period, grid)),
        ));
    }
    Ok(tables)
}

#[derive(Debug)]
struct Computed<'b> {
    /// Tickets resolved in the period; values at [`LEAD_MEDIAN`] … [`REOPENED`], then the counts
    /// by category from [`FIRST_CATEGORY`].
    resolved: Cells,
    /// Tickets that may be open at some period end (of any grid).
    backlog: &'b Backlog,
    /// Change requests closed in the period; values at [`SUCCESSFUL`], [`RATED`], [`EMERGENCY`].
    closed: Cells,
    /// Production deployments; value 0: those without a change record.
    deploys: Cells,
}

impl Computed<'_> {
    /// One metric's `(value, n)` for a scope and period; an empty cell is a count of 0 and a
    /// ratio or median of `None`.
    fn value(&self, metric: MetricId, scope: Scope<'_>, period: Period, grid: &Grid) -> (Option<f64>, i64) {
        let count = |cells: &Cells, index| cells.value(scope, period, index).map_or(0, |v| v as i64);
        let ratio = |part: Option<f64>, n: i64| (n > 0).then(|| part.unwrap_or(0.0) / n as f64);
        if let Some(index) = BY_CATEGORY.iter().position(|(m, _)| *m == metric) {
            let n = count(&self.resolved, FIRST_CATEGORY + index);
            return (Some(n as f64), n);
        }
        match metric {
            MetricId::TicketsResolved => {
                let n = self.resolved.n(scope, period);
                (Some(n as f64), n)
            }
            MetricId::TicketBacklog => {
                let open = self.backlog.at(scope, grid.millis(period).1).open;
                (Some(open as f64), open)
            }
            MetricId::TicketLeadTimeMedian => (
                hours(self.resolved.value(scope, period, LEAD_MEDIAN)),
                count(&self.resolved, LEAD_N),
            ),
            MetricId::TicketCycleTimeMedian => (
                hours(self.resolved.value(scope, period, CYCLE_MEDIAN)),
                count(&self.resolved, CYCLE_N),
            ),
            MetricId::SlaBreachRate => {
                let n = count(&self.resolved, WITH_TARGET);
                (ratio(self.resolved.value(scope, period, BREACHED), n), n)
            }
            MetricId::SlaBreaches => {
                let n = count(&self.resolved, WITH_TARGET);
                (
                    Some(self.resolved.value(scope, period, BREACHED).unwrap_or(0.0)),
                    n,
                )
            }
            MetricId::SlaOpenPastTarget => {
                // n is the sample the count was drawn from, the open tickets that have a target,
                // as for the breach rate: a quiet week with many open tickets is not "no data".
                let open = self.backlog.at(scope, grid.millis(period).1);
                (Some(open.past_target as f64), open.with_target)
            }
            MetricId::TicketReopenRate => {
                let n = self.resolved.n(scope, period);
                (ratio(self.resolved.value(scope, period, REOPENED), n), n)
            }
            MetricId::ChangeSuccessRate => {
                let n = count(&self.closed, RATED);
                (ratio(self.closed.value(scope, period, SUCCESSFUL), n), n)
            }
            MetricId::EmergencyChangeRatio => {
                let n = self.closed.n(scope, period);
                (ratio(self.closed.value(scope, period, EMERGENCY), n), n)
            }
            MetricId::DeploymentsWithoutChangeRecord => {
                let n = self.deploys.n(scope, period);
                (Some(self.deploys.value(scope, period, 0).unwrap_or(0.0)), n)
            }
            // The core and ops families compute their own rows.
            _ => (None, 0),
        }
    }
}

/// Resolution targets in milliseconds by lower-cased priority name.
///
/// A target that is not a non-negative number of hours, or two names that differ only in letter
/// case with different targets, cannot be applied and are refused rather than guessed.
fn sla_targets(opts: &Options) -> Result<HashMap<String, i64>, PipelineError> {
    let mut targets: HashMap<String, (i64, &str)> = HashMap::with_capacity(opts.sla_hours.len());
    for (priority, &target_hours) in &opts.sla_hours {
        if !target_hours.is_finite() || target_hours < 0.0 {
            return Err(PipelineError::Options(format!(
                "`sla_hours` of priority `{priority}` must be a non-negative number of hours, not {target_hours}"
            )));
        }
        // Rounded to whole milliseconds, the precision instants are stored in.
        let millis = (target_hours * HOUR_MS).round() as i64;
        let earlier = targets.insert(priority.to_lowercase(), (millis, priority));
        if let Some((_, name)) = earlier.filter(|&(other, _)| other != millis) {
            return Err(PipelineError::Options(format!(
                "`sla_hours` has different targets for `{name}` and `{priority}`, but priorities are \
                 compared regardless of letter case; keep one of them"
            )));
        }
    }
    Ok(targets
        .into_iter()
        .map(|(name, (millis, _))| (name, millis))
        .collect())
}

fn change_window_tolerance(opts: &Options) -> Result<i64, PipelineError> {
    let tolerance = opts.change_window_tolerance.num_milliseconds();
    if tolerance < 0 {
        return Err(PipelineError::Options(
            "`change_window_tolerance_minutes` must not be negative".to_owned(),
        ));
    }
    Ok(tolerance)
}

/// A ticket's resolution target in milliseconds (`Int64`), looked up by its `priority` regardless
/// of letter case; null when the ticket has no priority or its priority no target.
fn target_ms(targets: HashMap<String, i64>) -> Expr {
    // A lookup in Rust: lower-casing strings in polars needs its `strings` feature.
    col("priority").map(
        move |priority| {
            let found: Int64Chunked = priority
                .str()?
                .iter()
                .map(|p| p.and_then(|p| targets.get(&p.to_lowercase()).copied()))
                .collect();
            Ok(found.with_name(priority.name().clone()).into_column())
        },
        |_, field| Ok(Field::new(field.name().clone(), DataType::Int64)),
    )
}

/// Resolved tickets: `service, category, at (resolved_at)` and, per ticket,
/// - `lead`: `resolved_at − created_at` (ms); null when negative (bad data, like a negative lead
///   time for changes), which also leaves the ticket out of the SLA sample;
/// - `cycle`: `resolved_at −` its first transition into the in-progress category (ms); null when
///   it never was in progress or the span is negative;
/// - `breached`: 1.0 when `lead` exceeds the priority's target, 0.0 when not, null without a
///   target (or without a valid lead time);
/// - `reopened`: 1.0 when it left the done category after first reaching it, else 0.0.
///
/// The transitions (the largest table of a lake of years) are read a slice at a time and folded
/// into three figures per resolved ticket instead of being joined whole. Without them (no metric
/// named reads the cycle time or reopens) no ticket has a cycle time or a reopen, and the tickets'
/// ids are not read.
fn resolved_tickets(tickets: LazyFrame, transitions: Option<LazyFrame>) -> PolarsResult<LazyFrame> {
    let non_negative = |span: Expr| {
        when(span.clone().gt_eq(lit(0i64)))
            .then(span)
            .otherwise(lit(NULL).cast(DataType::Int64))
    };
    let mut columns = vec![
        col("service"),
        col("category"),
        col("resolved_at"),
        col("created_at"),
        col("target"),
    ];
    if transitions.is_some() {
        columns.push(col("id"));
    }
    let mut resolved = tickets
        .filter(col("resolved_at").is_not_null())
        .select(columns)
        .collect()?;
    let history = match transitions {
        Some(transitions) => History::read(resolved.column("id")?.str()?, transitions)?,
        None => History {
            started: vec![None; resolved.height()],
            reopens: vec![0; resolved.height()],
        },
    };
    resolved.with_column(Series::new("started_at".into(), history.started).into_column())?;
    resolved.with_column(Series::new("reopens".into(), history.reopens).into_column())?;
    Ok(resolved
        .lazy()
        .select([
            col("service"),
            col("category"),
            col("resolved_at").alias("at"),
            non_negative(col("resolved_at") - col("created_at")).alias("lead"),
            non_negative(col("resolved_at") - col("started_at")).alias("cycle"),
            col("target"),
            col("reopens")
                .gt(lit(0u32))
                .cast(DataType::Float64)
                .alias("reopened"),
        ])
        .with_column(
            when(col("lead").is_null().or(col("target").is_null()))
                .then(lit(NULL).cast(DataType::Float64))
                .otherwise(col("lead").gt(col("target")).cast(DataType::Float64))
                .alias("breached"),
        ))
}

/// What the transitions say about each of a list of tickets, in the list's order.
///
/// - `started`: the first transition whose category after is in progress, whatever the category
///   before: a ticket created straight into an in-progress status starts at its first
///   in-progress status change, the earliest the changelog shows it in progress (the Jira
///   connector dates an incident's acknowledgement and a change's actual start the same way).
/// - `reopens`: how often it was reopened. The rule, against the transitions table alone
///   (`resolved_at` cannot say it: sources move it to the last resolution): a ticket first
///   reached done at its earliest transition whose category after is `done`; it was reopened
///   when a transition from `done` to a known category other than `done` happened at or after
///   that instant (at the same millisecond it can only have followed it, having left done). Moves
///   within done (Resolved → Closed) and moves to an unknown category are not reopens; a move out
///   of done with no earlier move into done in the changelog is not counted either, since the
///   table cannot place it after the ticket first reached done. "Later" is as the lake knows it
///   now, so a reopen after the period still counts for the period the ticket was resolved in.
///   Sources without a changelog (ServiceNow) give no transitions: their tickets count as
///   resolved and never as reopened.
struct History {
    started: Vec<Option<i64>>,
    reopens: Vec<u32>,
}

impl History {
    fn read(ids: &StringChunked, transitions: LazyFrame) -> PolarsResult<Self> {
        let position: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some((id?, i)))
            .collect();
        let mut started: Vec<Option<i64>> = vec![None; ids.len()];
        let mut first_done: Vec<Option<i64>> = vec![None; ids.len()];
        // Moves out of done: (ticket, when), counted once every first arrival in done is known.
        let mut left_done: Vec<(usize, i64)> = Vec::new();
        let earliest = |slot: &mut Option<i64>, at: i64| *slot = Some(slot.map_or(at, |s| s.min(at)));
        in_slices(
            transitions,
            SLICE_ROWS,
            |slice| {
                slice
                    .filter(
                        col("to_category")
                            .eq(lit(IN_PROGRESS))
                            .or(col("to_category").eq(lit(DONE)))
                            .or(col("from_category").eq(lit(DONE))),
                    )
                    .select([
                        col("ticket_id"),
                        col("from_category"),
                        col("to_category"),
                        col("at"),
                    ])
            },
            |frame| {
                let (ticket, from, to, at) = (
                    frame.column("ticket_id")?.str()?,
                    frame.column("from_category")?.str()?,
                    frame.column("to_category")?.str()?,
                    frame.column("at")?.i64()?,
                );
                for i in 0..frame.height() {
                    let (Some(t), Some(at)) = (ticket.get(i).and_then(|t| position.get(t)), at.get(i)) else {
                        continue;
                    };
                    match (from.get(i), to.get(i)) {
                        (_, Some(IN_PROGRESS)) => earliest(&mut started[*t], at),
                        (_, Some(DONE)) => earliest(&mut first_done[*t], at),
                        _ => {}
                    }
                    if from.get(i) == Some(DONE) && to.get(i).is_some_and(|to| to != DONE) {
                        left_done.push((*t, at));
                    }
                }
                Ok(())
            },
        )?;
        let mut reopens = vec![0u32; ids.len()];
        for (t, at) in left_done {
            if first_done[t].is_some_and(|done| at >= done) {
                reopens[t] += 1;
            }
        }
        Ok(Self { started, reopens })
    }
}

/// Closed change requests: `service, at (closed_at)`, `successful` (1.0 for `successful`, 0.0 for
/// `successful_issues` or `unsuccessful`, null for any other or no close code, which leaves it
/// out of the success rate) and `emergency` (1.0 or 0.0; an unknown type is not an emergency).
fn closed_change_requests(change_requests: LazyFrame) -> LazyFrame {
    let rated = ["successful", "successful_issues", "unsuccessful"]
        .into_iter()
        .fold(lit(false), |any, code| any.or(col("close_code").eq(lit(code))));
    change_requests.filter(col("closed_at").is_not_null()).select([
        col("service"),
        col("closed_at").alias("at"),
        when(rated)
            .then(col("close_code").eq(lit("successful")).cast(DataType::Float64))
            .otherwise(lit(NULL).cast(DataType::Float64))
            .alias("successful"),
        when(col("change_type").eq(lit("emergency")))
            .then(lit(1.0))
            .otherwise(lit(0.0))
            .alias("emergency"),
    ])
}

/// Production deployments with whether a change record covers them: `service, at (finished_at),
/// uncovered` (1.0 or 0.0).
///
/// Covered: an approved change request of the same service has a planned window with
/// `planned_start − tolerance <= finished_at <= planned_end + tolerance`, or is referenced
/// explicitly: the deployment's `change_refs` name it by its number (`CHG0030001`) or its vendor
/// id (the primary key without its `{source}:` prefix), letter case ignored. `approved` null is
/// not approved (nobody recorded an approval), and a change request without both planned instants
/// has no window. A deployment without a service matches no change request, so it is never
/// covered.
fn deployment_coverage(
    production: LazyFrame,
    change_requests: LazyFrame,
    grid: &Grid,
    tolerance_ms: i64,
) -> PolarsResult<LazyFrame> {
    let (start, end) = grid.millis(Period::Range);
    // Only windows that reach into the range can cover a deployment counted in it.
    let windows = change_requests
        .clone()
        .filter(
            col("approved")
                .eq(lit(true))
                .and(col("service").is_not_null())
                .and(col("planned_start").is_not_null())
                .and(col("planned_end").is_not_null()),
        )
        .select([
            col("service"),
            (col("planned_start") - lit(tolerance_ms)).alias("window_from"),
            (col("planned_end") + lit(tolerance_ms)).alias("window_to"),
        ])
        .filter(
            col("window_to")
                .gt_eq(lit(start))
                .and(col("window_from").lt(lit(end))),
        )
        .collect()?;
    // A deployment is covered when, among its service's windows opening at or before it, the
    // latest closing one reaches it: windows sorted by opening with the running latest close, one
    // binary search per deployment. (A join of each deployment with every window of its service
    // is quadratic: hundreds of millions of pairs on a lake of years.)
    let (service, from, to) = (
        windows.column("service")?.str()?,
        windows.column("window_from")?.i64()?,
        windows.column("window_to")?.i64()?,
    );
    let mut by_service: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
    for i in 0..windows.height() {
        if let (Some(s), Some(f), Some(t)) = (service.get(i), from.get(i), to.get(i)) {
            by_service.entry(s).or_default().push((f, t));
        }
    }
    for spans in by_service.values_mut() {
        spans.sort_unstable();
        let mut latest = i64::MIN;
        for span in spans.iter_mut() {
            latest = latest.max(span.1);
            span.1 = latest;
        }
    }
    // Approved change requests by number and by vendor id (lower-cased) → their service.
    let approved = approved_references(change_requests)?;
    // Only deployments finished in the range are counted (by their finish): only theirs are
    // looked at.
    let production = production.filter(
        col("finished_at")
            .gt_eq(lit(start))
            .and(col("finished_at").lt(lit(end))),
    );
    let deployments = production
        .clone()
        .filter(col("service").is_not_null())
        .select([col("id"), col("service"), col("finished_at"), col("change_refs")])
        .collect()?;
    let (id, service, finished, refs) = (
        deployments.column("id")?.str()?,
        deployments.column("service")?.str()?,
        deployments.column("finished_at")?.i64()?,
        deployments.column("change_refs")?.list()?,
    );
    let in_window = |service: &str, at: i64| {
        let Some(spans) = by_service.get(service) else {
            return false;
        };
        let opened = spans.partition_point(|(from, _)| *from <= at);
        opened
            .checked_sub(1)
            .and_then(|k| spans.get(k))
            .is_some_and(|(_, latest_close)| *latest_close >= at)
    };
    // Whether each deployment names an approved change request of its own service.
    let referenced: Vec<bool> = refs
        .amortized_iter()
        .zip(service.iter())
        .map(|(list, service)| {
            let (Some(list), Some(service)) = (list, service) else {
                return false;
            };
            list.as_ref().str().is_ok_and(|list| {
                list.iter().flatten().any(|r| {
                    approved
                        .get(&r.trim().to_ascii_lowercase())
                        .is_some_and(|of| of == service)
                })
            })
        })
        .collect();
    let mut covered: Vec<&str> = (0..deployments.height())
        .filter_map(|i| {
            let (id, service, at) = (id.get(i)?, service.get(i)?, finished.get(i)?);
            (in_window(service, at) || referenced.get(i).copied().unwrap_or(false)).then_some(id)
        })
        .collect();
    covered.sort_unstable();
    covered.dedup();
    let covered = DataFrame::new_infer_height(vec![Column::new("deployment_id".into(), covered)])?
        .lazy()
        .with_column(lit(true).alias("windows"));
    Ok(production
        .left_join(covered, col("id"), col("deployment_id"))
        .select([
            col("service"),
            col("finished_at").alias("at"),
            col("windows")
                .is_null()
                .cast(DataType::Float64)
                .alias("uncovered"),
        ]))
}

/// Approved change requests with a service, by number and by vendor id (lower-cased): the names a
/// deployment's `change_refs` can give them.
fn approved_references(change_requests: LazyFrame) -> PolarsResult<HashMap<String, String>> {
    let frame = change_requests
        .filter(col("approved").eq(lit(true)).and(col("service").is_not_null()))
        .select([col("id"), col("source"), col("number"), col("service")])
        .collect()?;
    let (id, source, number, service) = (
        frame.column("id")?.str()?,
        frame.column("source")?.str()?,
        frame.column("number")?.str()?,
        frame.column("service")?.str()?,
    );
    let mut out = HashMap::new();
    for i in 0..frame.height() {
        let Some(service) = service.get(i) else {
            continue;
        };
        for name in change_request_names(id.get(i), source.get(i), number.get(i)) {
            out.insert(name, service.to_owned());
        }
    }
    Ok(out)
}

/// Open tickets at a period's end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct OpenCounts {
    /// Open: created before the end, not resolved before it.
    open: i64,
    /// Open and with a resolution target.
    with_target: i64,
    /// Open and already older than their target.
    past_target: i64,
}

/// A ticket that may be open at some period end (instants and target in ms).
#[derive(Debug, Clone, Copy)]
struct OpenTicket {
    created: i64,
    resolved: Option<i64>,
    target: Option<i64>,
}

/// Sorted instants from which a scope's open counts at any end follow by binary search, instead
/// of a pass over every ticket per period end. A ticket is open at `end` when it was created
/// before it and not resolved before it, so the open count is the number created before `end`
/// minus the number both created and resolved before it, i.e. with `max(created, resolved)`
/// before it; likewise with `created + target` for the tickets already past their target.
#[derive(Debug, Default)]
struct OpenIndex {
    /// Every ticket's creation.
    created: Vec<i64>,
    /// `max(created, resolved)` of the resolved tickets.
    closed: Vec<i64>,
    /// Creation of the tickets with a target.
    targeted: Vec<i64>,
    /// `max(created, resolved)` of the resolved tickets with a target.
    targeted_closed: Vec<i64>,
    /// `max(created, created + target)`: from then on the ticket, if open, is past its target.
    due: Vec<i64>,
    /// `max(created, created + target, resolved)` of the resolved tickets with a target.
    due_closed: Vec<i64>,
}

impl OpenIndex {
    fn push(&mut self, ticket: OpenTicket) {
        let OpenTicket {
            created,
            resolved,
            target,
        } = ticket;
        self.created.push(created);
        if let Some(resolved) = resolved {
            self.closed.push(created.max(resolved));
        }
        if let Some(target) = target {
            let due = created.max(created.saturating_add(target));
            self.targeted.push(created);
            self.due.push(due);
            if let Some(resolved) = resolved {
                self.targeted_closed.push(created.max(resolved));
                self.due_closed.push(due.max(resolved));
            }
        }
    }

    fn sort(&mut self) {
        for list in [
            &mut self.created,
            &mut self.closed,
            &mut self.targeted,
            &mut self.targeted_closed,
            &mut self.due,
            &mut self.due_closed,
        ] {
            list.sort_unstable();
        }
    }

    /// The counts at `end` (exclusive).
    fn at(&self, end: i64) -> OpenCounts {
        let before = |list: &[i64]| list.partition_point(|&t| t < end) as i64;
        OpenCounts {
            open: before(&self.created) - before(&self.closed),
            with_target: before(&self.targeted) - before(&self.targeted_closed),
            // Age at the end strictly beyond the target, as a resolution strictly beyond it is a
            // breach: `end - created > target`, i.e. `created + target < end`.
            past_target: before(&self.due) - before(&self.due_closed),
        }
    }
}

impl std::ops::AddAssign for OpenCounts {
    fn add_assign(&mut self, other: Self) {
        self.open += other.open;
        self.with_target += other.with_target;
        self.past_target += other.past_target;
    }
}

/// The tickets behind the backlog, for the organisation and by service. The backlog is a state
/// at each period end, not an event in a period, so it is counted here rather than grouped by
/// [`aggregate`].
#[derive(Debug, Default)]
struct Backlog {
    all: OpenIndex,
    by_service: HashMap<String, OpenIndex>,
}

impl Backlog {
    /// Reads the tickets open at the end of at least one period of the grids (once for all).
    fn load(tickets: LazyFrame, grids: &[Grid]) -> PolarsResult<Self> {
        let first_end = grids
            .iter()
            .map(|grid| grid.millis(Period::Unit(0)).1)
            .min()
            .unwrap_or(0);
        let end = grids.iter().map(Grid::end).max().unwrap_or(0);
        let frame = tickets
            .filter(
                col("created_at").lt(lit(end)).and(
                    col("resolved_at")
                        .is_null()
                        .or(col("resolved_at").gt_eq(lit(first_end))),
                ),
            )
            .select([
                col("service"),
                col("created_at"),
                col("resolved_at"),
                col("target"),
            ])
            .collect()?;
        let service = frame.column("service")?.str()?;
        let created = frame.column("created_at")?.i64()?;
        let resolved = frame.column("resolved_at")?.i64()?;
        let target = frame.column("target")?.i64()?;
        let mut backlog = Self::default();
        for row in 0..frame.height() {
            // `created_at` is declared non-nullable; the codec refuses a null there.
            let Some(created) = created.get(row) else {
                continue;
            };
            let ticket = OpenTicket {
                created,
                resolved: resolved.get(row),
                target: target.get(row),
            };
            backlog.all.push(ticket);
            if let Some(service) = service.get(row) {
                backlog
                    .by_service
                    .entry(service.to_owned())
                    .or_default()
                    .push(ticket);
            }
        }
        backlog.all.sort();
        backlog.by_service.values_mut().for_each(OpenIndex::sort);
        Ok(backlog)
    }

    /// The scope's open tickets at `end` (exclusive end of a period: the state just before it).
    fn at(&self, scope: Scope<'_>, end: i64) -> OpenCounts {
        match scope {
            Scope::Org => self.all.at(end),
            Scope::Service(name) => self.by_service.get(name).map(|i| i.at(end)).unwrap_or_default(),
            // A team's services are disjoint: their counts add up.
            Scope::Team(_, services) => {
                let mut counts = OpenCounts::default();
                for index in services.iter().filter_map(|s| self.by_service.get(s)) {
                    counts += index.at(end);
                }
                counts
            }
        }
    }
}

#[cfg(test)]
mod tests;
