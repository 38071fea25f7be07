//! DORA beyond the core set: failed deployment recovery time (with rollbacks as a failure
//! signal and remediation), the days with a production deployment (the deployment-frequency
//! tier input) and rework rate. The rollbacks and deployed reverts themselves are found once, for
//! this family and the core change failure rate alike, in [`crate::pipeline::undone`].
//!
//! Deployments are few enough per service to order and compare in plain Rust once polars has
//! filtered them; the per-period statistics go through the shared `aggregate`. It must not import
//! the engine.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use polars::prelude::*;

use tandem_connectors::model::Ticket;

use super::Shared;
use super::core::lead;
use crate::metric::calendar::{Grain, period_start};
use crate::metric::{MetricId, MetricTable};
use crate::pipeline::PipelineError;
use crate::pipeline::codec::{SLICE_ROWS, in_slices_where};
use crate::pipeline::grid::{Period, Scope, aggregate, hours, metric_rows_with};
use crate::pipeline::links::link_method;
use crate::pipeline::stats::median;
use crate::pipeline::undone::Undone;
use crate::store::codec::scan_table;

/// What the family works out from the whole history whatever the periods: which deployments'
/// incidents were resolved when, which deployments shipped rework, and how many changes each
/// shipped. Made once for every calendar of a computation ([`prepare`]).
#[derive(Debug, Default)]
pub(in crate::pipeline) struct Prepared {
    remediated: HashMap<String, Option<i64>>,
    reworked: HashSet<IdxSize>,
    shipped: HashMap<IdxSize, (f64, f64)>,
}

/// Names the table behind a polars error of the family.
fn polars_error<'a>(shared: &'a Shared<'_>) -> impl Fn(PolarsError) -> PipelineError + Copy + 'a {
    move |source| PipelineError::Polars {
        context: format!(
            "computing DORA recovery metrics from {}",
            crate::pipeline::codec::describe(shared.inputs.deployments)
        ),
        source,
    }
}

/// The family's [`Prepared`] part for the periods `[from, to)` of every calendar computed (ms);
/// with `--metrics`, only what a named metric reads (an empty map stands in for the rest).
pub(in crate::pipeline) fn prepare(
    shared: &Shared<'_>,
    (from, to): (i64, i64),
) -> Result<Prepared, PipelineError> {
    let polars = polars_error(shared);
    let opts = shared.opts;
    let remediated = match opts.wants(MetricId::FailedDeploymentRecoveryMedian) {
        true => incident_remediation(shared).map_err(&polars)?,
        false => HashMap::new(),
    };
    // Rework: deployments that shipped a revert, a hotfix-labelled change or a change naming an
    // incident or bug ticket; beside each deployment, how many changes it shipped and how many of
    // those were linked by ancestry (the rate's method).
    let (reworked, shipped) = match opts.wants(MetricId::ReworkRate) {
        true => {
            let fix_keys = fix_ticket_keys(scan_table::<Ticket>(shared.inputs.tickets)?).map_err(&polars)?;
            (
                reworked_ids(shared, &fix_keys, (from, to)).map_err(&polars)?,
                shipped_counts(shipped_within(shared, (from, to))).map_err(&polars)?,
            )
        }
        false => Default::default(),
    };
    Ok(Prepared {
        remediated,
        reworked,
        shipped,
    })
}

/// The family's rows for the grid of `shared`, from its [`prepare`]d part.
pub(in crate::pipeline) fn metrics(
    shared: &Shared<'_>,
    prepared: &Prepared,
) -> Result<MetricTable, PipelineError> {
    let polars = polars_error(shared);
    let Undone {
        deploys,
        rolled_back,
        reverted,
    } = shared.undone;
    // Every figure here is anchored at a deployment's finish: only those that finished in the
    // grid's range are read (`deploys` is in finish order).
    let deploys = {
        let (from, to) = (shared.grid.start(), shared.grid.end());
        let first = deploys.partition_point(|d| d.finished < from);
        let end = deploys.partition_point(|d| d.finished < to);
        deploys.get(first..end.max(first)).unwrap_or_default()
    };
    let opts = shared.opts;
    let Prepared {
        remediated,
        reworked,
        shipped,
    } = prepared;

    // Recovery samples, anchored at the failed deployment's finish.
    let mut at = Vec::new();
    let mut service: Vec<Option<String>> = Vec::new();
    let mut span = Vec::new();
    let recovered = match opts.wants(MetricId::FailedDeploymentRecoveryMedian) {
        true => deploys,
        false => &[],
    };
    for d in recovered {
        let remedy = match remediated.get(&d.id) {
            // Attributed incidents: recovered when the last of them is resolved.
            Some(latest) => *latest,
            // Else the first rollback or deployed revert that undid it.
            None => match (rolled_back.get(&d.id), reverted.get(&d.id)) {
                (Some(a), Some(b)) => Some(*a.min(b)),
                (a, b) => a.or(b).copied(),
            },
        };
        if let Some(remedy) = remedy.filter(|r| *r >= d.finished) {
            at.push(d.finished);
            service.push(d.service.clone());
            span.push(remedy - d.finished);
        }
    }
    let events = df!("at" => at, "service" => service, "span" => span)
        .map_err(&polars)?
        .lazy();
    let recovery = aggregate(events, shared.grid, &[("median", col("span").median())]).map_err(&polars)?;

    let wants_rework = opts.wants(MetricId::ReworkRate);
    let rework_events = {
        let deploys = if wants_rework { deploys } else { &[] };
        let mut at = Vec::with_capacity(deploys.len());
        let mut service = Vec::with_capacity(deploys.len());
        let mut flag = Vec::with_capacity(deploys.len());
        let mut changes = Vec::with_capacity(deploys.len());
        let mut by_ancestry = Vec::with_capacity(deploys.len());
        for d in deploys {
            let (n, ancestry) = shipped.get(&d.position).copied().unwrap_or((0.0, 0.0));
            at.push(d.finished);
            service.push(d.service.clone());
            flag.push(f64::from(u8::from(reworked.contains(&d.position))));
            changes.push(n);
            by_ancestry.push(ancestry);
        }
        df!(
            "at" => at,
            "service" => service,
            "rework" => flag,
            "changes" => changes,
            "ancestry" => by_ancestry,
        )
        .map_err(polars)?
        .lazy()
    };
    let rework = aggregate(
        rework_events,
        shared.grid,
        &[
            ("rate", col("rework").mean()),
            ("changes", col("changes").sum()),
            ("ancestry", col("ancestry").sum()),
        ],
    )
    .map_err(polars)?;

    // Lead time breakdown of deployed changes, anchored at the deploying deployment's finish.
    let changes = match opts.wants(MetricId::ChangesMerged) {
        true => shared.changes.clone(),
        false => shared.changes.clone().slice(0, 0),
    };
    let merged = aggregate(
        changes
            .filter(col("merged_at").is_not_null())
            .select([col("merged_at").alias("at"), col("service")]),
        shared.grid,
        &[],
    )
    .map_err(polars)?;
    // Deploy days: distinct local dates per scope and period.
    let tz = shared.grid.tz();
    let day = |ms: i64| -> Option<NaiveDate> {
        DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.with_timezone(&tz).date_naive())
    };
    // Each deployment's finish and local date (worked out once), for the organisation and by
    // service, in finish order (`deploys` is): a scope reads only its services' deployments and
    // a period only its own, by binary search, instead of every deployment for every scope and
    // period.
    type Dated = (i64, Option<NaiveDate>);
    let every: Vec<Dated> = deploys.iter().map(|d| (d.finished, day(d.finished))).collect();
    let mut by_service: HashMap<&str, Vec<Dated>> = HashMap::new();
    for (d, dated) in deploys.iter().zip(&every) {
        if let Some(service) = d.service.as_deref() {
            by_service.entry(service).or_default().push(*dated);
        }
    }
    let of_service = |name: &str| by_service.get(name).map(Vec::as_slice);
    let days_of = |scope: Scope<'_>, from: i64, to: i64| -> BTreeSet<NaiveDate> {
        let lists: Vec<&[Dated]> = match scope {
            Scope::Org => vec![every.as_slice()],
            Scope::Service(name) => of_service(name).into_iter().collect(),
            Scope::Team(_, services) => services.iter().filter_map(|s| of_service(s)).collect(),
        };
        lists
            .into_iter()
            .flat_map(|list| {
                let first = list.partition_point(|(finished, _)| *finished < from);
                let end = list.partition_point(|(finished, _)| *finished < to);
                list.get(first..end.max(first)).unwrap_or_default()
            })
            .filter_map(|(_, day)| *day)
            .collect()
    };
    let days_in = |scope: Scope<'_>, from: i64, to: i64| days_of(scope, from, to).len();
    // The range's local dates `[first, end)`, for the weekly and monthly tier inputs.
    let (range_from, range_to) = shared.grid.instants(Period::Range);
    let (first, end) = (
        range_from.with_timezone(&tz).date_naive(),
        range_to.with_timezone(&tz).date_naive(),
    );
    let tier_input = |scope: Scope<'_>, grain: Grain| -> (Option<f64>, i64) {
        let (from, to) = shared.grid.millis(Period::Range);
        let per_bucket = days_per_period(&days_of(scope, from, to), first, end, grain);
        (median(&per_bucket), per_bucket.len() as i64)
    };

    // A statistic of linked changes, with the methods behind it.
    // A statistic of linked changes at `at` in the shared lead cells, its ancestry count and
    // sample size at `at + lead::STAGE_ANCESTRY` and `at + lead::STAGE_N`.
    let leads = shared.leads;
    let linked = |value: usize, at: usize, scope: Scope<'_>, period: Period| {
        let n = leads.count(scope, period, at + lead::STAGE_N);
        (
            hours(leads.value(scope, period, value)),
            n,
            link_method(leads.value(scope, period, at + lead::STAGE_ANCESTRY), n),
        )
    };
    Ok(metric_rows_with(
        &opts.wanted(&MetricId::DORA),
        shared.services,
        shared.grid,
        |metric, scope, period| {
            let with_method = match metric {
                MetricId::LeadTimeP90 => Some(linked(lead::P90, lead::MEDIAN, scope, period)),
                MetricId::LeadTimeCodingMedian => Some(linked(lead::CODING, lead::CODING, scope, period)),
                MetricId::LeadTimeReviewMedian => Some(linked(lead::REVIEW, lead::REVIEW, scope, period)),
                MetricId::LeadTimeDeployWaitMedian => Some(linked(lead::WAIT, lead::WAIT, scope, period)),
                MetricId::ReworkRate => {
                    let changes = rework.value(scope, period, 1).unwrap_or(0.0).round() as i64;
                    Some((
                        rework.value(scope, period, 0),
                        rework.n(scope, period),
                        link_method(rework.value(scope, period, 2), changes),
                    ))
                }
                _ => None,
            };
            if with_method.is_some() {
                return with_method;
            }
            Some(match metric {
                MetricId::FailedDeploymentCount => {
                    // n: the production deployments the failed ones are drawn from, as for the
                    // change failure rate.
                    let outcomes = shared.deploy_outcomes;
                    let failed = outcomes.value(scope, period, 0).unwrap_or(0.0);
                    (Some(failed), outcomes.n(scope, period))
                }
                MetricId::FailedDeploymentRecoveryMedian => {
                    (hours(recovery.value(scope, period, 0)), recovery.n(scope, period))
                }
                MetricId::DeployDays => match period {
                    Period::Unit(_) => {
                        let (from, to) = shared.grid.millis(period);
                        let days = days_in(scope, from, to);
                        (Some(days as f64), days as i64)
                    }
                    Period::Range => {
                        let per_unit: Vec<f64> = (0..shared.grid.units())
                            .map(|i| {
                                let (from, to) = shared.grid.millis(Period::Unit(i));
                                days_in(scope, from, to) as f64
                            })
                            .collect();
                        (median(&per_unit), per_unit.len() as i64)
                    }
                },
                MetricId::DeployDaysWeeklyMedian | MetricId::DeployDaysMonthlyMedian => match period {
                    Period::Unit(_) => return None,
                    Period::Range if metric == MetricId::DeployDaysWeeklyMedian => {
                        tier_input(scope, Grain::Week)
                    }
                    Period::Range => tier_input(scope, Grain::Month),
                },
                MetricId::ChangesMerged => {
                    let n = merged.n(scope, period);
                    (Some(n as f64), n)
                }
                _ => (None, 0),
            })
            .map(|(value, n)| (value, n, None))
        },
    ))
}

/// The days with a deployment in each period of `grain` that the local dates `[first, end)` touch,
/// in time order, empty periods included; a period only partly inside the range counts the days
/// of its part inside (a month's first week, a week's days in the range's first month).
fn days_per_period(days: &BTreeSet<NaiveDate>, first: NaiveDate, end: NaiveDate, grain: Grain) -> Vec<f64> {
    let mut per_period: BTreeMap<NaiveDate, f64> = BTreeMap::new();
    for date in first.iter_days().take_while(|d| *d < end) {
        *per_period.entry(period_start(grain, date)).or_insert(0.0) +=
            f64::from(u8::from(days.contains(&date)));
    }
    per_period.into_values().collect()
}

/// The change links of the deployments that finished within `[from, to)`: positions follow the
/// finish order, so theirs are one run of positions.
fn shipped_within(shared: &Shared<'_>, (from, to): (i64, i64)) -> LazyFrame {
    let deploys = &shared.undone.deploys;
    let first = deploys.partition_point(|d| d.finished < from);
    let end = deploys.partition_point(|d| d.finished < to);
    match deploys
        .get(first..end)
        .and_then(|within| within.first().zip(within.last()))
    {
        Some((first, last)) => shared.change_links.clone().filter(
            col("deployment")
                .gt_eq(lit(first.position))
                .and(col("deployment").lt_eq(lit(last.position))),
        ),
        None => shared.change_links.clone().slice(0, 0),
    }
}

/// Per deployment, the changes it shipped and how many of them were linked by ancestry.
fn shipped_counts(change_links: LazyFrame) -> PolarsResult<HashMap<IdxSize, (f64, f64)>> {
    let frame = change_links
        .group_by([col("deployment")])
        .agg([
            len().cast(DataType::Float64).alias("changes"),
            col("ancestry").sum().alias("ancestry"),
        ])
        .collect()?;
    let (id, changes, ancestry) = (
        frame.column("deployment")?.idx()?,
        frame.column("changes")?.f64()?,
        frame.column("ancestry")?.f64()?,
    );
    Ok((0..frame.height())
        .filter_map(|i| Some((id.get(i)?, (changes.get(i)?, ancestry.get(i)?))))
        .collect())
}

/// Deployments (by position) finished within `[from, to)` that shipped rework: a revert, a change
/// with a hotfix label, or a change whose title names an incident or bug ticket by its key.
fn reworked_ids(
    shared: &Shared<'_>,
    fix_keys: &HashSet<String>,
    (from, to): (i64, i64),
) -> PolarsResult<HashSet<IdxSize>> {
    let hotfix: Vec<String> = shared
        .opts
        .hotfix_labels
        .iter()
        .map(|l| l.to_lowercase())
        .collect();
    // Only deployments finished within the periods computed are counted, so only the changes
    // they shipped are examined (by row in the changes table, with the deployment that shipped
    // each).
    let counted: HashSet<IdxSize> = shared
        .undone
        .deploys
        .iter()
        .filter(|d| d.finished >= from && d.finished < to)
        .map(|d| d.position)
        .collect();
    let links = shipped_within(shared, (from, to))
        .select([col("change"), col("deployment")])
        .collect()?;
    let (change, deployment) = (links.column("change")?.idx()?, links.column("deployment")?.idx()?);
    let shipped_by: HashMap<IdxSize, IdxSize> = change
        .iter()
        .zip(deployment.iter())
        .filter_map(|(c, d)| Some((c?, d?)))
        .filter(|(_, d)| counted.contains(d))
        .collect();
    let mut reworked: HashSet<IdxSize> = HashSet::new();
    if shipped_by.is_empty() {
        return Ok(reworked);
    }
    // The changes that are rework, read a slice at a time (titles and labels of years of
    // changes are large), skipping the slices that hold none of those changes.
    let mut rows: Vec<IdxSize> = shipped_by.keys().copied().collect();
    rows.sort_unstable();
    in_slices_where(
        shared.changes.clone(),
        SLICE_ROWS,
        |slice| {
            let first = rows.partition_point(|&r| r < slice.start);
            rows.get(first).is_some_and(|&r| r < slice.end)
        },
        |slice| slice.select([col("row"), col("is_revert"), col("labels"), col("title")]),
        |frame| {
            let (row, is_revert, labels, title) = (
                frame.column("row")?.idx()?,
                frame.column("is_revert")?.bool()?,
                frame.column("labels")?.list()?,
                frame.column("title")?.str()?,
            );
            let rows = row
                .iter()
                .zip(is_revert.iter())
                .zip(labels.amortized_iter())
                .zip(title.iter());
            for (((change, is_revert), labels), title) in rows {
                let Some(&deployment) = change.and_then(|c| shipped_by.get(&c)) else {
                    continue;
                };
                let has_hotfix_label = labels.is_some_and(|l| {
                    l.as_ref().str().is_ok_and(|l| {
                        l.iter()
                            .flatten()
                            .any(|name| hotfix.contains(&name.to_lowercase()))
                    })
                });
                let fixes_ticket = || title.is_some_and(|t| references_any(t, fix_keys));
                if is_revert.unwrap_or(false) || has_hotfix_label || fixes_ticket() {
                    reworked.insert(deployment);
                }
            }
            Ok(())
        },
    )?;
    Ok(reworked)
}

/// Keys (upper-cased) of the tickets a change can fix as rework: incidents and bugs.
fn fix_ticket_keys(tickets: LazyFrame) -> PolarsResult<HashSet<String>> {
    let frame = tickets
        .filter(
            col("category")
                .eq(lit("incident"))
                .or(col("category").eq(lit("bug"))),
        )
        .select([col("key")])
        .collect()?;
    Ok(frame
        .column("key")?
        .str()?
        .iter()
        .flatten()
        .map(str::to_ascii_uppercase)
        .collect())
}

/// Whether `text` names one of `keys` as a whole word (`OPS-12` in "Fix OPS-12: …", not in
/// "OPS-123").
fn references_any(text: &str, keys: &HashSet<String>) -> bool {
    !keys.is_empty()
        && text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .any(|word| keys.contains(&word.trim_matches('-').to_ascii_uppercase()))
}

/// For each deployment with attributed incidents, when the last of them was resolved (`None`
/// while any is still open).
fn incident_remediation(shared: &Shared<'_>) -> PolarsResult<HashMap<String, Option<i64>>> {
    let resolved = shared.incidents.clone().select([col("id"), col("resolved_at")]);
    let frame = shared
        .links
        .clone()
        .inner_join(resolved, col("incident_id"), col("id"))
        .group_by([col("deployment_id")])
        .agg([
            col("resolved_at").max().alias("latest"),
            col("resolved_at").null_count().alias("open"),
        ])
        .collect()?;
    let (id, latest, open) = (
        frame.column("deployment_id")?.str()?,
        frame.column("latest")?.i64()?,
        frame.column("open")?.cast(&DataType::Int64)?,
    );
    let open = open.i64()?;
    Ok((0..frame.height())
        .filter_map(|i| {
            let still_open = open.get(i).unwrap_or(0) > 0;
            Some((
                id.get(i)?.to_owned(),
                if still_open { None } else { latest.get(i) },
            ))
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn date(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, d).unwrap()
    }

    #[test]
    fn deploy_days_per_week_and_month_include_empty_and_partial_periods() {
        // Monday 3 Aug to Monday 5 Oct: nine whole weeks; August from the 3rd, all of September,
        // October 1–4.
        let days: BTreeSet<NaiveDate> = [date(8, 3), date(8, 4), date(8, 12), date(10, 2)].into();
        let (first, end) = (date(8, 3), date(10, 5));
        assert_eq!(
            days_per_period(&days, first, end, Grain::Week),
            [2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
        );
        assert_eq!(days_per_period(&days, first, end, Grain::Month), [3.0, 0.0, 1.0]);
        // A day outside the range counts nowhere.
        let outside: BTreeSet<NaiveDate> = [date(8, 2), date(10, 5)].into();
        assert_eq!(
            days_per_period(&outside, first, end, Grain::Month),
            [0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn empty_months_pull_the_monthly_median_down() {
        // January to April, deploys on 5 Jan and 30 Apr: [1, 0, 0, 1] → median 0.5.
        let days: BTreeSet<NaiveDate> = [date(1, 5), date(4, 30)].into();
        let months = days_per_period(&days, date(1, 1), date(5, 1), Grain::Month);
        assert_eq!(months, [1.0, 0.0, 0.0, 1.0]);
        assert_eq!(median(&months), Some(0.5));
        // One deploy in three months: [1, 0, 0] → 0, a low performer.
        let once: BTreeSet<NaiveDate> = [date(2, 10)].into();
        let months = days_per_period(&once, date(1, 1), date(4, 1), Grain::Month);
        assert_eq!(months, [0.0, 1.0, 0.0]);
        assert_eq!(median(&months), Some(0.0));
        // The weeks a month-grain range touches: 1 Jan 2026 is a Thursday, so the first week
        // (29 Dec – 4 Jan) counts its four days in January.
        let weeks = days_per_period(&days, date(1, 1), date(2, 1), Grain::Week);
        assert_eq!(weeks, [0.0, 1.0, 0.0, 0.0, 0.0]);
    }
}
