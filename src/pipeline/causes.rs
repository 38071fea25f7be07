//! The explicit causes an incident can name besides a deployment id or a commit sha
//! (`reference/metrics.md`, incident attribution, `explicit`): a change number (`#123`,
//! `owner/repo#123`) and a change request (its number, `CHG0000123`, or its vendor id, as
//! ServiceNow's `caused_by` gives it). Each resolves to a production deployment, so a named cause
//! fails the deployment that shipped it like any other attribution. A change is shipped by the
//! deployment it is linked to and by every production deployment of the same sha of its repo (a
//! redeploy); of all the deployments a name matches, the latest that finished at or before the
//! incident started is the cause, and one that finished after it never is.
//!
//! Plain Rust over collected frames: the lookups are by exact keys. It must not compute metrics.

use std::collections::{HashMap, HashSet};

use polars::prelude::*;

use super::codec::{SLICE_ROWS, in_slices};

/// A change an incident names: its repo (lower-cased), number and service.
type Named = (String, i64, Option<String>);

/// A production deployment a cause can resolve to.
#[derive(Debug, Clone)]
pub(in crate::pipeline) struct Shipped {
    pub id: String,
    pub service: Option<String>,
    pub finished: i64,
}

/// Change numbers and change requests, resolvable to the deployment behind them.
#[derive(Debug, Default)]
pub(in crate::pipeline) struct Causes {
    /// `(repo lower-cased, number)` → the deployments that shipped that change: the one it is
    /// linked to and the redeploys of that deployment's sha.
    by_repo: HashMap<(String, i64), Vec<String>>,
    /// `(service, number)` → the deployments that shipped a change of that number in one of the
    /// service's repos (several when the service has several repos).
    by_service: HashMap<(String, i64), Vec<String>>,
    /// Change request number or vendor id (lower-cased) → its service and window (ms).
    change_requests: HashMap<String, (String, i64, i64)>,
}

impl Causes {
    /// Reads the changes with the deployment that shipped them (`change_links`, deployments by
    /// their position in `production`), and the change requests with a service and a window: the
    /// actual one when both ends are known, else the planned one, widened by `tolerance_ms` on
    /// each side. Only the changes whose number an incident names (`#N`, `owner/repo#N`) are
    /// kept: years of changes are millions, the ones incidents name a few.
    pub(in crate::pipeline) fn load(
        changes: LazyFrame,
        change_links: LazyFrame,
        change_requests: LazyFrame,
        production: LazyFrame,
        incidents: LazyFrame,
        tolerance_ms: i64,
    ) -> PolarsResult<Self> {
        let mut causes = Self::default();
        let numbers = named_numbers(incidents)?;
        if !numbers.is_empty() {
            // Row in the changes table → (repo lower-cased, number, the change's service).
            let mut named: HashMap<IdxSize, Named> = HashMap::new();
            in_slices(
                changes,
                SLICE_ROWS,
                |slice| slice.select([col("row"), col("repo"), col("number"), col("service")]),
                |frame| {
                    let (row, repo, number, service) = (
                        frame.column("row")?.idx()?,
                        frame.column("repo")?.str()?,
                        frame.column("number")?.i64()?,
                        frame.column("service")?.str()?,
                    );
                    for i in 0..frame.height() {
                        let (Some(row), Some(repo), Some(number)) = (row.get(i), repo.get(i), number.get(i))
                        else {
                            continue;
                        };
                        if numbers.contains(&number) {
                            let service = service.get(i).map(str::to_owned);
                            named.insert(row, (repo.to_ascii_lowercase(), number, service));
                        }
                    }
                    Ok(())
                },
            )?;
            let production = production
                .select([col("id"), col("repo"), col("sha")])
                .collect()?;
            let (ids, repos, shas) = (
                production.column("id")?.str()?,
                production.column("repo")?.str()?,
                production.column("sha")?.str()?,
            );
            let shipped = change_links
                .select([col("change"), col("deployment")])
                .collect()?;
            let (change, deployment) = (
                shipped.column("change")?.idx()?,
                shipped.column("deployment")?.idx()?,
            );
            // Named change → the position (in `production`) of the deployment it is linked to.
            let mut linked: Vec<(&Named, usize)> = Vec::new();
            for i in 0..shipped.height() {
                let Some(named) = change.get(i).and_then(|c| named.get(&c)) else {
                    continue;
                };
                if let Some(d) = deployment.get(i) {
                    linked.push((named, d as usize));
                }
            }
            // Every production deployment of the linked deployments' `(repo, sha)`, so a redeploy
            // of the same sha counts as shipping the change too.
            let key = |d: usize| {
                Some((
                    repos.get(d)?.to_ascii_lowercase(),
                    shas.get(d)?.to_ascii_lowercase(),
                ))
            };
            let mut same_sha: HashMap<(String, String), Vec<String>> = linked
                .iter()
                .filter_map(|(_, d)| key(*d))
                .map(|k| (k, Vec::new()))
                .collect();
            if !same_sha.is_empty() {
                for d in 0..production.height() {
                    if let (Some(k), Some(id)) = (key(d), ids.get(d))
                        && let Some(list) = same_sha.get_mut(&k)
                    {
                        list.push(id.to_owned());
                    }
                }
            }
            for ((repo, number, service), d) in linked {
                let Some(id) = ids.get(d) else {
                    continue;
                };
                let mut deployments = vec![id.to_owned()];
                if let Some(redeploys) = key(d).and_then(|k| same_sha.get(&k)) {
                    deployments.extend(redeploys.iter().filter(|r| r.as_str() != id).cloned());
                }
                if let Some(service) = service {
                    causes
                        .by_service
                        .entry((service.clone(), *number))
                        .or_default()
                        .extend(deployments.iter().cloned());
                }
                causes
                    .by_repo
                    .entry((repo.clone(), *number))
                    .or_default()
                    .extend(deployments);
            }
        }

        let crs = change_requests
            .filter(col("service").is_not_null())
            .select([
                col("id"),
                col("source"),
                col("number"),
                col("service"),
                when(
                    col("actual_start")
                        .is_not_null()
                        .and(col("actual_end").is_not_null()),
                )
                .then(col("actual_start"))
                .otherwise(col("planned_start"))
                .alias("from"),
                when(
                    col("actual_start")
                        .is_not_null()
                        .and(col("actual_end").is_not_null()),
                )
                .then(col("actual_end"))
                .otherwise(col("planned_end"))
                .alias("to"),
            ])
            .filter(col("from").is_not_null().and(col("to").is_not_null()))
            .collect()?;
        let (id, source, number, service, from, to) = (
            crs.column("id")?.str()?,
            crs.column("source")?.str()?,
            crs.column("number")?.str()?,
            crs.column("service")?.str()?,
            crs.column("from")?.i64()?,
            crs.column("to")?.i64()?,
        );
        for i in 0..crs.height() {
            let (Some(service), Some(from), Some(to)) = (service.get(i), from.get(i), to.get(i)) else {
                continue;
            };
            let window = (service.to_owned(), from - tolerance_ms, to + tolerance_ms);
            for name in change_request_names(id.get(i), source.get(i), number.get(i)) {
                causes.change_requests.insert(name, window.clone());
            }
        }
        Ok(causes)
    }

    /// Whether [`Causes::resolve`] could find anything for `reference`: a change number while
    /// any named change was shipped, or a known change request.
    pub(in crate::pipeline) fn may_name(&self, reference: &str) -> bool {
        match reference.rsplit_once('#') {
            Some((repo, number)) => {
                number.parse::<i64>().is_ok()
                    && match repo.is_empty() {
                        true => !self.by_service.is_empty(),
                        false => !self.by_repo.is_empty(),
                    }
            }
            None => self.change_requests.contains_key(&reference.to_ascii_lowercase()),
        }
    }

    /// The deployment a reference names through a change or a change request, for an incident
    /// of `service` that started at `started` (ms): a change number goes to a deployment that
    /// shipped the change (`#N` within the incident's service, `owner/repo#N` in that repo); a
    /// change request to a production deployment of its service that finished within its window.
    /// Of several, the latest that finished at or before `started`; none finished later.
    pub(in crate::pipeline) fn resolve<'a>(
        &self,
        reference: &str,
        service: Option<&str>,
        started: i64,
        deploys: &ShippedIndex<'a>,
    ) -> Option<&'a str> {
        if let Some((repo, number)) = reference.rsplit_once('#') {
            let number: i64 = number.parse().ok()?;
            let ids = match repo.is_empty() {
                false => self.by_repo.get(&(repo.to_ascii_lowercase(), number))?,
                true => self.by_service.get(&(service?.to_owned(), number))?,
            };
            return deploys.latest_of(ids.iter().map(String::as_str), started);
        }
        let (cr_service, from, to) = self.change_requests.get(&reference.to_ascii_lowercase())?;
        deploys.latest_within(cr_service, *from, (*to).min(started))
    }
}

/// The names a reference can give a change request, lower-cased: its number (`chg0030001`) and its
/// vendor id (the primary key without its `{source}:` prefix), for incidents' cause references
/// and deployments' change references alike.
pub(in crate::pipeline) fn change_request_names(
    id: Option<&str>,
    source: Option<&str>,
    number: Option<&str>,
) -> Vec<String> {
    let vendor = id.zip(source).map(|(id, source)| {
        id.strip_prefix(source)
            .and_then(|rest| rest.strip_prefix(':'))
            .unwrap_or(id)
    });
    number
        .into_iter()
        .chain(vendor)
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The change numbers incidents name among their cause references (`#N`, `owner/repo#N`).
fn named_numbers(incidents: LazyFrame) -> PolarsResult<HashSet<i64>> {
    let frame = incidents.select([col("cause_refs")]).collect()?;
    let lists = frame.column("cause_refs")?.list()?;
    let mut numbers = HashSet::new();
    for i in 0..lists.len() {
        let Some(list) = lists.get_as_series(i) else {
            continue;
        };
        let Ok(refs) = list.str() else {
            continue;
        };
        numbers.extend(
            refs.iter()
                .flatten()
                .filter_map(|r| r.trim().rsplit_once('#'))
                .filter_map(|(_, number)| number.parse::<i64>().ok()),
        );
    }
    Ok(numbers)
}

/// Production deployments in finish order, indexed for [`Causes::resolve`] so that a reference
/// reads a hash map or a binary search instead of every deployment.
#[derive(Debug)]
pub(in crate::pipeline) struct ShippedIndex<'a> {
    deploys: &'a [Shipped],
    /// Deployment id → position of the latest deployment with it.
    latest: HashMap<&'a str, usize>,
    /// Service → positions of its deployments, in finish order.
    by_service: HashMap<&'a str, Vec<usize>>,
}

impl<'a> ShippedIndex<'a> {
    /// Indexes `deploys`, which must be in finish order.
    pub(in crate::pipeline) fn new(deploys: &'a [Shipped]) -> Self {
        let mut latest = HashMap::with_capacity(deploys.len());
        let mut by_service: HashMap<&'a str, Vec<usize>> = HashMap::new();
        for (position, d) in deploys.iter().enumerate() {
            latest.insert(d.id.as_str(), position);
            if let Some(service) = d.service.as_deref() {
                by_service.entry(service).or_default().push(position);
            }
        }
        Self {
            deploys,
            latest,
            by_service,
        }
    }

    /// The id of the latest deployment (in finish order) among `ids` that finished at or before
    /// `until` (ms).
    pub(in crate::pipeline) fn latest_of<'i>(
        &self,
        ids: impl IntoIterator<Item = &'i str>,
        until: i64,
    ) -> Option<&'a str> {
        let deploys = self.deploys;
        ids.into_iter()
            .filter_map(|id| self.latest.get(id).copied())
            .filter(|&position| deploys.get(position).is_some_and(|d| d.finished <= until))
            .max()
            .and_then(|position| deploys.get(position))
            .map(|d| d.id.as_str())
    }

    /// The id of the latest deployment of `service` that finished in `[from, to]`.
    pub(in crate::pipeline) fn latest_within(&self, service: &str, from: i64, to: i64) -> Option<&'a str> {
        let deploys = self.deploys;
        let positions = self.by_service.get(service)?;
        let finished = |position: usize| deploys.get(position).map_or(i64::MIN, |d| d.finished);
        // The last one finished at or before `to`; earlier ones finished no later than it.
        let end = positions.partition_point(|&p| finished(p) <= to);
        let last = *positions.get(end.checked_sub(1)?)?;
        let d = deploys.get(last)?;
        (d.finished >= from).then_some(d.id.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn shipped(id: &str, service: &str, finished: i64) -> Shipped {
        Shipped {
            id: id.into(),
            service: Some(service.into()),
            finished,
        }
    }

    #[test]
    fn the_index_finds_the_latest_deployment_by_id_and_within_a_window() {
        // In finish order, ties by id: d3 and d4 both finished at 20.
        let deploys = [
            shipped("d1", "s", 10),
            shipped("d2", "t", 15),
            shipped("d3", "s", 20),
            shipped("d4", "s", 20),
            shipped("d5", "s", 30),
        ];
        let index = ShippedIndex::new(&deploys);
        assert_eq!(index.latest_of(["d1", "d3"], 99), Some("d3"));
        assert_eq!(index.latest_of(["d4", "d1"], 99), Some("d4"));
        assert_eq!(index.latest_of(["none"], 99), None);
        // Only deployments finished at or before the instant given.
        assert_eq!(index.latest_of(["d1", "d3"], 19), Some("d1"));
        assert_eq!(index.latest_of(["d1", "d3"], 20), Some("d3"));
        assert_eq!(index.latest_of(["d3", "d5"], 9), None);
        // Both ends of the window count; of the tie at 20 the later in finish order wins.
        assert_eq!(index.latest_within("s", 10, 20), Some("d4"));
        assert_eq!(index.latest_within("s", 21, 29), None);
        assert_eq!(index.latest_within("s", 30, 30), Some("d5"));
        assert_eq!(index.latest_within("s", 0, 9), None);
        assert_eq!(index.latest_within("t", 0, 14), None);
        assert_eq!(index.latest_within("t", 15, 99), Some("d2"));
        assert_eq!(index.latest_within("unknown", 0, 99), None);
    }
}
