//! DORA beyond the core set: failed deployment recovery time (with rollbacks as a failure
//! signal and remediation), the days with a production deployment (the deployment-frequency
//! tier input), rework rate, and the failure signals beyond attributed incidents (rollbacks,
//! deployed reverts) that the core change failure rate counts.
//!
//! Deployments are few enough per service to order and compare in plain Rust once polars has
//! filtered them; the per-period statistics go through the shared `aggregate`.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use polars::prelude::*;

use super::PipelineError;
use super::engine::{Period, Shared, aggregate, change_links, hours, metric_rows};
use super::stats::median;
use crate::metric::{MetricId, MetricRow};

/// A rollback is a redeploy of an earlier sha of the same service within this long.
const ROLLBACK_WINDOW: Duration = Duration::days(7);

/// One successful production deployment.
#[derive(Debug, Clone)]
struct Deploy {
    id: String,
    service: Option<String>,
    sha: String,
    finished: i64,
}

pub(super) fn metrics(shared: &Shared<'_>) -> Result<Vec<MetricRow>, PipelineError> {
    let polars = |source| PipelineError::Polars {
        context: format!(
            "computing DORA recovery metrics from {}",
            shared.inputs.deployments.display()
        ),
        source,
    };
    let deploys = deploys_of(shared.production.clone()).map_err(polars)?;
    let remediated = incident_remediation(shared).map_err(polars)?;
    let rolled_back = rollbacks(&deploys);

    // Recovery samples, anchored at the failed deployment's finish.
    let mut at = Vec::new();
    let mut service: Vec<Option<String>> = Vec::new();
    let mut span = Vec::new();
    for d in &deploys {
        let remedy = match remediated.get(&d.id) {
            // Attributed incidents: recovered when the last of them is resolved.
            Some(latest) => *latest,
            None => rolled_back.get(&d.id).copied(),
        };
        if let Some(remedy) = remedy.filter(|r| *r >= d.finished) {
            at.push(d.finished);
            service.push(d.service.clone());
            span.push(remedy - d.finished);
        }
    }
    let events = df!("at" => at, "service" => service, "span" => span)
        .map_err(polars)?
        .lazy();
    let recovery = aggregate(events, shared.grid, &[("median", col("span").median())]).map_err(polars)?;

    // Rework: deployments that shipped a revert or a hotfix-labelled change.
    let reworked = reworked_ids(shared).map_err(polars)?;
    let rework_events = {
        let (at, service, flag): (Vec<i64>, Vec<Option<String>>, Vec<f64>) = deploys
            .iter()
            .map(|d| {
                (
                    d.finished,
                    d.service.clone(),
                    f64::from(u8::from(reworked.contains(&d.id))),
                )
            })
            .fold(
                (Vec::new(), Vec::new(), Vec::new()),
                |(mut a, mut s, mut f), (x, y, z)| {
                    a.push(x);
                    s.push(y);
                    f.push(z);
                    (a, s, f)
                },
            );
        df!("at" => at, "service" => service, "rework" => flag)
            .map_err(polars)?
            .lazy()
    };
    let rework = aggregate(rework_events, shared.grid, &[("rate", col("rework").mean())]).map_err(polars)?;

    // Lead time breakdown of deployed changes, anchored at the deploying deployment's finish.
    let changes = shared.changes.clone();
    let merged = aggregate(
        changes
            .clone()
            .filter(col("merged_at").is_not_null())
            .select([col("merged_at").alias("at"), col("service")]),
        shared.grid,
        &[],
    )
    .map_err(polars)?;
    // Collected once for the three stages below.
    let links = change_links(changes, shared.production.clone())
        .collect()
        .map_err(polars)?
        .lazy();
    let stage = |span: Expr| {
        links
            .clone()
            .select([col("at"), col("service"), span.alias("span")])
            .filter(col("span").gt_eq(lit(0i64)))
    };
    let medians = |frame: LazyFrame| aggregate(frame, shared.grid, &[("median", col("span").median())]);
    let coding = medians(stage(col("opened_at") - col("first_commit_at"))).map_err(polars)?;
    let review = medians(stage(col("merged_at") - col("opened_at"))).map_err(polars)?;
    let deploy_wait = medians(stage(col("at") - col("merged_at"))).map_err(polars)?;

    // Deploy days: distinct local dates per scope and period.
    let tz = shared.opts.calendar.tz;
    let day = |ms: i64| -> Option<NaiveDate> {
        DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.with_timezone(&tz).date_naive())
    };
    // `deploys` is in finish order: each period reads only its own deployments.
    let days_in = |scope: super::engine::Scope<'_>, from: i64, to: i64| -> usize {
        let first = deploys.partition_point(|d| d.finished < from);
        let end = deploys.partition_point(|d| d.finished < to);
        deploys
            .get(first..end.max(first))
            .unwrap_or_default()
            .iter()
            .filter(|d| scope.covers(d.service.as_deref()))
            .filter_map(|d| day(d.finished))
            .collect::<BTreeSet<_>>()
            .len()
    };

    Ok(metric_rows(
        &MetricId::DORA,
        shared.services,
        shared.grid,
        |metric, scope, period| {
            Some(match metric {
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
                MetricId::ReworkRate => (rework.value(scope, period, 0), rework.n(scope, period)),
                MetricId::ChangesMerged => {
                    let n = merged.n(scope, period);
                    (Some(n as f64), n)
                }
                MetricId::LeadTimeCodingMedian => {
                    (hours(coding.value(scope, period, 0)), coding.n(scope, period))
                }
                MetricId::LeadTimeReviewMedian => {
                    (hours(review.value(scope, period, 0)), review.n(scope, period))
                }
                MetricId::LeadTimeDeployWaitMedian => (
                    hours(deploy_wait.value(scope, period, 0)),
                    deploy_wait.n(scope, period),
                ),
                _ => (None, 0),
            })
        },
    ))
}

/// Deployments that shipped rework: a revert, or a change with a hotfix label.
fn reworked_ids(shared: &Shared<'_>) -> PolarsResult<BTreeSet<String>> {
    let shipped_by = shipped_by(shared.changes.clone(), shared.production.clone())?;
    let frame = shared
        .changes
        .clone()
        .select([col("id"), col("is_revert"), col("labels")])
        .collect()?;
    let (id, is_revert, labels) = (
        frame.column("id")?.str()?,
        frame.column("is_revert")?.bool()?,
        frame.column("labels")?.list()?,
    );
    let hotfix: Vec<String> = shared
        .opts
        .hotfix_labels
        .iter()
        .map(|l| l.to_lowercase())
        .collect();
    let mut ids = BTreeSet::new();
    for i in 0..frame.height() {
        let Some(deployment) = id.get(i).and_then(|c| shipped_by.get(c)) else {
            continue;
        };
        let has_hotfix_label = labels.get_as_series(i).is_some_and(|l| {
            l.str().is_ok_and(|l| {
                l.iter()
                    .flatten()
                    .any(|name| hotfix.contains(&name.to_lowercase()))
            })
        });
        if is_revert.get(i).unwrap_or(false) || has_hotfix_label {
            ids.insert((*deployment).to_owned());
        }
    }
    Ok(ids)
}

/// Ids of the production deployments that failed by a signal other than an attributed incident:
/// rolled back, or one of their changes reverted by a change that was itself deployed.
pub(super) fn other_failure_ids(production: LazyFrame, changes: LazyFrame) -> PolarsResult<Vec<String>> {
    let deploys = deploys_of(production.clone())?;
    let mut ids: BTreeSet<String> = rollbacks(&deploys).into_keys().collect();
    ids.extend(reverted(production, changes)?);
    Ok(ids.into_iter().collect())
}

/// Deployments that shipped a change which a later, deployed change reverts.
fn reverted(production: LazyFrame, changes: LazyFrame) -> PolarsResult<Vec<String>> {
    let shipped_by = shipped_by(changes.clone(), production)?;
    let changes_frame = changes;
    let frame = changes_frame
        .select([
            col("id"),
            col("repo"),
            col("number"),
            col("is_revert"),
            col("reverts"),
        ])
        .collect()?;
    let (id, repo, number, is_revert, reverts) = (
        frame.column("id")?.str()?,
        frame.column("repo")?.str()?,
        frame.column("number")?.i64()?,
        frame.column("is_revert")?.bool()?,
        frame.column("reverts")?.i64()?,
    );
    let by_number: HashMap<(&str, i64), &str> = (0..frame.height())
        .filter_map(|i| Some(((repo.get(i)?, number.get(i)?), id.get(i)?)))
        .collect();
    Ok((0..frame.height())
        .filter(|&i| is_revert.get(i).unwrap_or(false))
        // The revert must itself have reached production.
        .filter(|&i| id.get(i).is_some_and(|c| shipped_by.contains_key(c)))
        .filter_map(|i| {
            let original = by_number.get(&(repo.get(i)?, reverts.get(i)?))?;
            shipped_by.get(*original).cloned()
        })
        .collect())
}

/// The production deployments of a frame like [`Shared::production`], in finish order.
fn deploys_of(production: LazyFrame) -> PolarsResult<Vec<Deploy>> {
    let frame = production
        .select([col("id"), col("service"), col("sha"), col("finished_at")])
        .sort(["finished_at", "id"], SortMultipleOptions::default())
        .collect()?;
    let (id, service, sha, finished) = (
        frame.column("id")?.str()?,
        frame.column("service")?.str()?,
        frame.column("sha")?.str()?,
        frame.column("finished_at")?.i64()?,
    );
    Ok((0..frame.height())
        .filter_map(|i| {
            Some(Deploy {
                id: id.get(i)?.to_owned(),
                service: service.get(i).map(str::to_owned),
                sha: sha.get(i)?.to_owned(),
                finished: finished.get(i)?,
            })
        })
        .collect())
}

/// Which production deployment shipped each merged change (time method): change id → deployment id.
fn shipped_by(changes: LazyFrame, production: LazyFrame) -> PolarsResult<HashMap<String, String>> {
    let links = change_links(changes, production)
        .select([col("change_id"), col("deployment_id")])
        .collect()?;
    let (change_id, deployment_id) = (
        links.column("change_id")?.str()?,
        links.column("deployment_id")?.str()?,
    );
    Ok(change_id
        .iter()
        .zip(deployment_id.iter())
        .filter_map(|(c, d)| Some((c?.to_owned(), d?.to_owned())))
        .collect())
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

/// Rolled-back deployments and when the rollback finished: a later deployment of the same service
/// within 7 days whose sha is that of an earlier deployment (and not its own).
fn rollbacks(deploys: &[Deploy]) -> HashMap<String, i64> {
    let window = ROLLBACK_WINDOW.num_milliseconds();
    let mut by_service: HashMap<&str, Vec<&Deploy>> = HashMap::new();
    for d in deploys {
        if let Some(s) = d.service.as_deref() {
            by_service.entry(s).or_default().push(d);
        }
    }
    let mut rolled = HashMap::new();
    for list in by_service.values() {
        // The shas deployed before `d`, grown as `d` advances (not rebuilt per deployment), and
        // only the deployments inside the window after it are read (the list is in finish
        // order): both were quadratic in a service's deployments.
        let mut earlier: HashSet<&str> = HashSet::new();
        for (i, d) in list.iter().enumerate() {
            let later = list.get(i + 1..).unwrap_or_default();
            if let Some(r) = later
                .iter()
                .take_while(|r| r.finished <= d.finished + window)
                .find(|r| r.sha != d.sha && earlier.contains(r.sha.as_str()))
            {
                rolled.insert(d.id.clone(), r.finished);
            }
            earlier.insert(d.sha.as_str());
        }
    }
    rolled
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn deploy(id: &str, sha: &str, hour: i64) -> Deploy {
        Deploy {
            id: id.into(),
            service: Some("web".into()),
            sha: sha.into(),
            finished: hour * 3_600_000,
        }
    }

    #[test]
    fn a_redeploy_of_an_earlier_sha_within_a_week_rolls_back() {
        let deploys = vec![
            deploy("a", "s1", 0),
            deploy("b", "s2", 10),
            deploy("c", "s1", 12), // back to s1: b is rolled back at hour 12
            deploy("d", "s3", 20),
            deploy("e", "s2", 20 + 24 * 8), // s2 again, but 8 days after d: not a rollback of d
        ];
        let rolled = rollbacks(&deploys);
        assert_eq!(rolled.get("b"), Some(&(12 * 3_600_000)));
        assert_eq!(rolled.len(), 1, "{rolled:?}");
    }
}
