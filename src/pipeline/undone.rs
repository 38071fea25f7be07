//! Production deployments undone without an incident: rolled back (a later deployment of an
//! earlier sha of the same service within a week) or reverted (one of their changes reverted by a
//! change that was itself deployed), with when that happened.
//!
//! Worked out once by the engine: the core change failure rate counts these deployments as failed
//! and the DORA family takes the undoing as their remediation. It must not emit metric rows.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::Duration;
use polars::prelude::*;

use super::codec::{SLICE_ROWS, in_slices};
use super::links::sha_key;

/// A rollback is a redeploy of an earlier sha of the same service within this long.
const ROLLBACK_WINDOW: Duration = Duration::days(7);

/// One successful production deployment.
#[derive(Debug, Clone)]
pub(super) struct Deploy {
    pub(super) id: String,
    /// Its position among the production deployments (see `production_deployments`).
    pub(super) position: IdxSize,
    pub(super) service: Option<String>,
    /// The sha's key (`links::sha_key`).
    pub(super) sha: u128,
    pub(super) finished: i64,
}

/// The production deployments undone by a signal other than an attributed incident: rolled back,
/// or one of their changes reverted by a change that was itself deployed.
///
/// `kept`: the reverted deployments an earlier computation found in the same tables
/// ([`super::prepared`]), taken as they are; they are looked for otherwise.
pub(super) fn undone(
    production: LazyFrame,
    changes: LazyFrame,
    change_links: LazyFrame,
    kept: Option<HashMap<String, i64>>,
) -> PolarsResult<Undone> {
    let deploys = deploys_of(production)?;
    let rolled_back = rollbacks(&deploys);
    let reverted = match kept {
        Some(reverted) => reverted,
        None => reverted(changes, change_links, &deploys)?,
    };
    Ok(Undone {
        deploys,
        rolled_back,
        reverted,
    })
}

/// The production deployments in finish order and, by deployment id, when a rollback or a
/// deployed revert undid one: worked out once for the failure flags and the recovery times.
#[derive(Debug)]
pub(super) struct Undone {
    pub(super) deploys: Vec<Deploy>,
    pub(super) rolled_back: HashMap<String, i64>,
    pub(super) reverted: HashMap<String, i64>,
}

impl Undone {
    /// The ids of deployments failed without an incident: rolled back, or one of their changes
    /// reverted by a deployed revert.
    pub(super) fn failure_ids(&self) -> Vec<String> {
        let ids: BTreeSet<&String> = self.rolled_back.keys().chain(self.reverted.keys()).collect();
        ids.into_iter().cloned().collect()
    }
}

/// Deployments that shipped a change which a later, deployed change reverts, with when the
/// (first) deployment of such a revert finished: their remediation.
///
/// Reverts are few: the changes table is read a slice at a time, once for the reverts and the
/// change numbers they name, once for those changes' ids, and only the links of the changes
/// involved are looked up.
fn reverted(
    changes: LazyFrame,
    change_links: LazyFrame,
    deploys: &[Deploy],
) -> PolarsResult<HashMap<String, i64>> {
    // (revert's row, repo, reverted number)
    let mut reverts: Vec<(IdxSize, String, i64)> = Vec::new();
    in_slices(
        changes.clone(),
        SLICE_ROWS,
        |slice| {
            slice
                .filter(col("is_revert").eq(lit(true)))
                .select([col("row"), col("repo"), col("reverts")])
        },
        |frame| {
            let (row, repo, reverts_number) = (
                frame.column("row")?.idx()?,
                frame.column("repo")?.str()?,
                frame.column("reverts")?.i64()?,
            );
            reverts.extend(
                (0..frame.height())
                    .filter_map(|i| Some((row.get(i)?, repo.get(i)?.to_owned(), reverts_number.get(i)?))),
            );
            Ok(())
        },
    )?;
    if reverts.is_empty() {
        return Ok(HashMap::new());
    }
    // The row of the change each revert names, once found.
    let mut named: HashMap<&str, HashMap<i64, Option<IdxSize>>> = HashMap::new();
    for (_, repo, number) in &reverts {
        named.entry(repo.as_str()).or_default().insert(*number, None);
    }
    in_slices(
        changes,
        SLICE_ROWS,
        |slice| slice.select([col("row"), col("repo"), col("number")]),
        |frame| {
            let (row, repo, number) = (
                frame.column("row")?.idx()?,
                frame.column("repo")?.str()?,
                frame.column("number")?.i64()?,
            );
            for i in 0..frame.height() {
                let (Some(row), Some(repo), Some(number)) = (row.get(i), repo.get(i), number.get(i)) else {
                    continue;
                };
                // Two changes with one repo and number: the last read is the one named.
                if let Some(slot) = named.get_mut(repo).and_then(|of_repo| of_repo.get_mut(&number)) {
                    *slot = Some(row);
                }
            }
            Ok(())
        },
    )?;
    let involved: HashSet<IdxSize> = reverts
        .iter()
        .map(|(row, ..)| *row)
        .chain(
            named
                .values()
                .flat_map(|of_repo| of_repo.values().flatten().copied()),
        )
        .collect();
    let shipped_by = shipped_by(change_links, &involved, deploys)?;
    let mut out: HashMap<String, i64> = HashMap::new();
    for (revert, repo, number) in &reverts {
        // The revert must itself have reached production.
        let Some((_, reverted_at)) = shipped_by.get(revert) else {
            continue;
        };
        let original = named
            .get(repo.as_str())
            .and_then(|of_repo| of_repo.get(number).copied().flatten());
        let Some(deployment) = original
            .and_then(|o| shipped_by.get(&o))
            // `deploys` is in position order.
            .and_then(|(position, _)| {
                let found = deploys.binary_search_by_key(position, |d| d.position).ok()?;
                deploys.get(found)
            })
        else {
            continue;
        };
        let earliest = out.entry(deployment.id.clone()).or_insert(*reverted_at);
        *earliest = (*earliest).min(*reverted_at);
    }
    Ok(out)
}

/// The production deployments of [`super::attribution::production_deployments`], in its order
/// (finish order, which is position order).
fn deploys_of(production: LazyFrame) -> PolarsResult<Vec<Deploy>> {
    let frame = production
        .select([
            col("id"),
            col("position"),
            col("service"),
            col("sha"),
            col("finished_at"),
        ])
        .collect()?;
    let (id, position, service, sha, finished) = (
        frame.column("id")?.str()?,
        frame.column("position")?.idx()?,
        frame.column("service")?.str()?,
        frame.column("sha")?.str()?,
        frame.column("finished_at")?.i64()?,
    );
    Ok((0..frame.height())
        .filter_map(|i| {
            Some(Deploy {
                id: id.get(i)?.to_owned(),
                position: position.get(i)?,
                service: service.get(i).map(str::to_owned),
                sha: sha_key(sha.get(i)?),
                finished: finished.get(i)?,
            })
        })
        .collect())
}

/// Which production deployment shipped each of the `wanted` changes (see
/// [`super::links::change_links`]), and when it finished (from `deploys`, in position order):
/// change row → (deployment position, finish in ms).
fn shipped_by(
    change_links: LazyFrame,
    wanted: &HashSet<IdxSize>,
    deploys: &[Deploy],
) -> PolarsResult<HashMap<IdxSize, (IdxSize, i64)>> {
    let links = change_links
        .select([col("change"), col("deployment")])
        .collect()?;
    let (change, deployment) = (links.column("change")?.idx()?, links.column("deployment")?.idx()?);
    let finished = |position: IdxSize| {
        let found = deploys.binary_search_by_key(&position, |d| d.position).ok()?;
        deploys.get(found).map(|d| d.finished)
    };
    Ok(change
        .iter()
        .zip(deployment.iter())
        .filter_map(|(change, deployment)| {
            let change = change.filter(|c| wanted.contains(c))?;
            let deployment = deployment?;
            Some((change, (deployment, finished(deployment)?)))
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
        let mut earlier: HashSet<u128> = HashSet::new();
        for (i, d) in list.iter().enumerate() {
            let later = list.get(i + 1..).unwrap_or_default();
            if let Some(r) = later
                .iter()
                .take_while(|r| r.finished <= d.finished + window)
                .find(|r| r.sha != d.sha && earlier.contains(&r.sha))
            {
                rolled.insert(d.id.clone(), r.finished);
            }
            earlier.insert(d.sha);
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
            position: hour as IdxSize,
            service: Some("web".into()),
            sha: sha_key(sha),
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
