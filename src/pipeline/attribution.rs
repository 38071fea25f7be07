//! Which production deployment caused which incident: the production deployments in finish
//! order, and the attribution chain — an explicit cause the incident names (by deployment id,
//! commit sha, change or change request, see [`super::causes`]), else the latest production
//! deployment of its service within the attribution window — or DevLake's rule for comparison.
//!
//! Prepared once by the engine and read by the families through their shared inputs; it must not
//! emit metric rows.

use std::collections::HashMap;

use chrono::Duration;
use polars::prelude::*;

use super::Attribution;
use super::causes;

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
    let deployments = production
        .select([col("id"), col("sha"), col("service"), col("finished_at")])
        .sort(["finished_at", "id"], SortMultipleOptions::default())
        .collect()?;
    // DevLake's rule names no explicit causes and has no window.
    let explicit = match mode {
        Attribution::Chain => explicit_links(&deployments, incidents.clone(), causes)?,
        Attribution::Devlake => attribution_frame(Vec::new(), Vec::new(), EXPLICIT)?,
    };
    let unnamed = incidents
        .filter(col("service").is_not_null())
        .select([col("id").alias("incident_id"), col("service"), col("started_at")])
        // Incidents that name their cause are not attributed again by the window.
        .left_join(
            explicit
                .clone()
                .lazy()
                .select([col("incident_id").alias("named"), lit(true).alias("is_named")]),
            col("incident_id"),
            col("named"),
        )
        .filter(col("is_named").is_null())
        .collect()?;
    let window = window_links(&deployments, &unnamed, mode, window)?;
    concat([explicit.lazy(), window.lazy()], UnionArgs::default())
}

/// The window's links (DevLake's rule's, in its mode) of `unnamed` incidents (`incident_id,
/// service, started_at`): each takes the last of its service's `deployments` (in finish order,
/// ties by id, so the greatest id of a tie is last) that finished at or before its start (the
/// chain) or strictly before it (DevLake), when, in the chain, it finished within the window.
fn window_links(
    deployments: &DataFrame,
    unnamed: &DataFrame,
    mode: Attribution,
    window: Duration,
) -> PolarsResult<DataFrame> {
    let (ids, services, finished) = (
        deployments.column("id")?.str()?,
        deployments.column("service")?.str()?,
        deployments.column("finished_at")?.i64()?,
    );
    // Each service's deployments, by position in finish order.
    let mut by_service: HashMap<&str, Vec<usize>> = HashMap::new();
    for (position, service) in services.iter().enumerate() {
        if let Some(service) = service
            && ids.get(position).is_some()
            && finished.get(position).is_some()
        {
            by_service.entry(service).or_default().push(position);
        }
    }
    let finished_at = |position: usize| finished.get(position).unwrap_or(i64::MAX);
    let window = window.num_milliseconds();
    let (incident, service, started) = (
        unnamed.column("incident_id")?.str()?,
        unnamed.column("service")?.str()?,
        unnamed.column("started_at")?.i64()?,
    );
    let (mut linked_incidents, mut linked_deployments) = (Vec::new(), Vec::new());
    for ((incident, service), started) in incident.iter().zip(service.iter()).zip(started.iter()) {
        let (Some(incident), Some(service), Some(started)) = (incident, service, started) else {
            continue;
        };
        let Some(positions) = by_service.get(service) else {
            continue;
        };
        let end = match mode {
            Attribution::Chain => positions.partition_point(|&p| finished_at(p) <= started),
            Attribution::Devlake => positions.partition_point(|&p| finished_at(p) < started),
        };
        let Some(&last) = end.checked_sub(1).and_then(|last| positions.get(last)) else {
            continue;
        };
        if mode == Attribution::Chain && finished_at(last) <= started - window {
            continue;
        }
        if let Some(id) = ids.get(last) {
            linked_incidents.push(incident);
            linked_deployments.push(id);
        }
    }
    attribution_frame(linked_incidents, linked_deployments, WINDOW)
}

/// Attribution rows: `incident_id, deployment_id, link`, each made by `link`.
fn attribution_frame(incidents: Vec<&str>, deployments: Vec<&str>, link: &str) -> PolarsResult<DataFrame> {
    let links = vec![link; incidents.len()];
    DataFrame::new_infer_height(vec![
        Column::new("incident_id".into(), incidents),
        Column::new("deployment_id".into(), deployments),
        Column::new("link".into(), links),
    ])
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
    deployments: &DataFrame,
    incidents: LazyFrame,
    causes: &causes::Causes,
) -> PolarsResult<DataFrame> {
    // The incidents that name a cause, with their references trimmed: a few among years of
    // incidents, so the deployments are indexed only by what they name.
    let refs = incidents
        .select([col("id"), col("service"), col("started_at"), col("cause_refs")])
        .filter(col("cause_refs").list().len().gt(lit(0)))
        .collect()?;
    let (inc_id, inc_service, inc_started, cause_refs) = (
        refs.column("id")?.str()?,
        refs.column("service")?.str()?,
        refs.column("started_at")?.i64()?,
        refs.column("cause_refs")?.list()?,
    );
    let mut named: Vec<(&str, Option<&str>, i64, Vec<String>)> = Vec::new();
    for i in 0..refs.height() {
        let (Some(incident), Some(started), Some(list)) =
            (inc_id.get(i), inc_started.get(i), cause_refs.get_as_series(i))
        else {
            continue;
        };
        let Ok(list) = list.str() else {
            continue;
        };
        let list: Vec<String> = list.iter().flatten().map(|r| r.trim().to_owned()).collect();
        named.push((incident, inc_service.get(i), started, list));
    }
    let (mut linked_incidents, mut linked_deployments) = (Vec::new(), Vec::new());
    if !named.is_empty() {
        let index = Named::index(deployments, named.iter().flat_map(|(.., refs)| refs))?;
        // A change number or change request resolves through every deployment, indexed the
        // first time one is named.
        let shipped = std::cell::OnceCell::new();
        let shipped_index = std::cell::OnceCell::new();
        for (incident, service, started, refs) in &named {
            let started = *started;
            let found = refs.iter().find_map(|r| {
                // The latest deployment named by id or by a sha prefix that finished at or before
                // the start: one that finished after it cannot have caused the incident.
                let named = index.latest(r, started);
                match named {
                    Some(found) => Some(found),
                    None if causes.may_name(r) => {
                        let shipped = shipped.get_or_init(|| shipped_deployments(deployments));
                        let index = shipped_index.get_or_init(|| causes::ShippedIndex::new(shipped));
                        causes.resolve(r, *service, started, index).map(str::to_owned)
                    }
                    None => None,
                }
            });
            if let Some(deployment) = found {
                linked_incidents.push(*incident);
                linked_deployments.push(deployment);
            }
        }
    }
    let deployments: Vec<&str> = linked_deployments.iter().map(String::as_str).collect();
    attribution_frame(linked_incidents, deployments, EXPLICIT)
}

/// The production deployments (in finish order) that incidents name by id or by a sha prefix
/// (at least 7 hex digits, letter case ignored), found in one pass over the deployments.
struct Named {
    /// Reference → the position of the latest deployment with that id.
    by_id: HashMap<String, usize>,
    /// Lower-cased prefix → the positions of the deployments whose sha starts with it, in
    /// finish order.
    by_sha: HashMap<String, Vec<usize>>,
    /// The deployments' ids and finishes, by position.
    ids: StringChunked,
    finished: Int64Chunked,
}

impl Named {
    /// Indexes `deployments` (`id, sha, finished_at`, in finish order) by the references given.
    fn index<'r>(deployments: &DataFrame, refs: impl Iterator<Item = &'r String>) -> PolarsResult<Self> {
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let mut by_sha: HashMap<String, Vec<usize>> = HashMap::new();
        for r in refs {
            by_id.insert(r.clone(), usize::MAX);
            if r.len() >= 7 && r.bytes().all(|b| b.is_ascii_hexdigit()) {
                by_sha.insert(r.to_ascii_lowercase(), Vec::new());
            }
        }
        let mut lengths: Vec<usize> = by_sha.keys().map(String::len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let (ids, shas) = (
            deployments.column("id")?.str()?,
            deployments.column("sha")?.str()?,
        );
        let mut prefix = String::new();
        for (position, (id, sha)) in ids.iter().zip(shas.iter()).enumerate() {
            if let Some(slot) = id.and_then(|id| by_id.get_mut(id)) {
                *slot = position;
            }
            let Some(sha) = sha else { continue };
            for &length in &lengths {
                let Some(head) = sha.get(..length) else { continue };
                prefix.clear();
                prefix.extend(head.chars().map(|c| c.to_ascii_lowercase()));
                if let Some(positions) = by_sha.get_mut(prefix.as_str()) {
                    positions.push(position);
                }
            }
        }
        by_id.retain(|_, position| *position != usize::MAX);
        Ok(Self {
            by_id,
            by_sha,
            ids: ids.clone(),
            finished: deployments.column("finished_at")?.i64()?.clone(),
        })
    }

    /// The id of the latest deployment `reference` names by id or sha prefix among those that
    /// finished at or before `started`. Only the latest deployment with an id is considered for
    /// it, as an id names one deployment.
    fn latest(&self, reference: &str, started: i64) -> Option<String> {
        let before_start = |position: &usize| self.finished.get(*position).is_some_and(|f| f <= started);
        let by_id = self.by_id.get(reference).copied().filter(before_start);
        let by_sha = self
            .by_sha
            .get(reference.to_ascii_lowercase().as_str())
            .and_then(|positions| {
                // In finish order: the last one finished at or before the start.
                let end = positions.partition_point(|p| before_start(p));
                end.checked_sub(1).map(|last| positions[last])
            });
        let position = by_id.max(by_sha)?;
        self.ids.get(position).map(str::to_owned)
    }
}

/// The deployments as [`causes::ShippedIndex`] reads them, in finish order.
fn shipped_deployments(deployments: &DataFrame) -> Vec<causes::Shipped> {
    let columns = deployments.column("id").and_then(|id| {
        Ok((
            id.str()?,
            deployments.column("service")?.str()?,
            deployments.column("finished_at")?.i64()?,
        ))
    });
    let Ok((id, service, finished)) = columns else {
        return Vec::new();
    };
    (0..deployments.height())
        .filter_map(|i| {
            Some(causes::Shipped {
                id: id.get(i)?.to_owned(),
                service: service.get(i).map(str::to_owned),
                finished: finished.get(i)?,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pipeline::causes::Causes;

    /// `(incident_id, deployment_id, link)` of [`attributions`] over small frames, by incident.
    fn attributed(mode: crate::pipeline::Attribution, window_ms: i64) -> Vec<(String, String, String)> {
        // Service s: c at 50, a and b both at 100 (a tie: the greatest id wins). Service t: x1 and
        // x2, whose shas share the prefix `deadbeef` (x2 in upper case, finished later).
        let production = df!(
            "id" => ["c", "b", "a", "x1", "x2"],
            "service" => ["s", "s", "s", "t", "t"],
            "sha" => ["c0c0c0c0c0", "b0b0b0b0b0", "a0a0a0a0a0", "deadbeef00", "DEADBEEF11"],
            "finished_at" => [50i64, 100, 100, 10, 20],
        )
        .unwrap();
        let refs = |r: &[&str]| Series::new("".into(), r.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let incidents = df!(
            "id" => ["i1", "i2", "i3", "i4", "i5", "i6"],
            "service" => ["s", "s", "s", "u", "u", "u"],
            "started_at" => [100i64, 150, 160, 1000, 1000, 1000],
            "cause_refs" => [refs(&[]), refs(&[]), refs(&[]), refs(&["deadbeef"]), refs(&[" x1 "]),
                refs(&["zz", "DEADBEEF0"])],
        )
        .unwrap();
        let frame = attributions(
            production.lazy(),
            incidents.lazy(),
            mode,
            chrono::Duration::milliseconds(window_ms),
            &Causes::default(),
        )
        .unwrap()
        .sort(["incident_id"], SortMultipleOptions::default())
        .collect()
        .unwrap();
        let column = |name: &str| frame.column(name).unwrap().str().unwrap().clone();
        let (incident, deployment, link) = (column("incident_id"), column("deployment_id"), column("link"));
        (0..frame.height())
            .map(|i| {
                (
                    incident.get(i).unwrap().to_owned(),
                    deployment.get(i).unwrap().to_owned(),
                    link.get(i).unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn window_attribution_takes_the_greatest_id_at_a_tied_instant_and_stops_at_the_window_edge() {
        let owned = |i: &str, d: &str, l: &str| (i.to_owned(), d.to_owned(), l.to_owned());
        assert_eq!(
            attributed(Attribution::Chain, 60),
            vec![
                // At the instant a and b finished: b, the greater id of the tie.
                owned("i1", "b", "window"),
                // 50 ms after b, inside the 60 ms window.
                owned("i2", "b", "window"),
                // i3 starts exactly 60 ms after b: outside the window (and c is older still).
                // By the latest sha starting with `deadbeef`, case-insensitively: x2, not x1.
                owned("i4", "x2", "explicit"),
                // By id, trimmed.
                owned("i5", "x1", "explicit"),
                // `zz` names nothing; the next reference is a prefix of x1's sha only.
                owned("i6", "x1", "explicit"),
            ]
        );
    }

    #[test]
    fn devlake_attribution_takes_the_latest_deployment_strictly_before_the_start() {
        let owned = |i: &str, d: &str| (i.to_owned(), d.to_owned(), "window".to_owned());
        assert_eq!(
            attributed(Attribution::Devlake, 60),
            vec![
                // a and b finished at i1's start, which is not before it: c.
                owned("i1", "c"),
                owned("i2", "b"),
                // No window: b, 60 ms earlier.
                owned("i3", "b"),
                // Service u has no deployments, and named causes are not read.
            ]
        );
    }

    /// `(incident_id, deployment_id, link)` of the chain's attribution, by incident, with the causes
    /// read from the frames as [`Causes::load`] reads them.
    fn attributed_with_causes(
        production: DataFrame,
        changes: DataFrame,
        change_links: DataFrame,
        change_requests: DataFrame,
        incidents: DataFrame,
        window_ms: i64,
    ) -> Vec<(String, String, String)> {
        let causes = Causes::load(
            changes.lazy(),
            change_links.lazy(),
            change_requests.lazy(),
            production.clone().lazy(),
            incidents.clone().lazy(),
            0,
        )
        .unwrap();
        let frame = attributions(
            production.lazy(),
            incidents.lazy(),
            Attribution::Chain,
            chrono::Duration::milliseconds(window_ms),
            &causes,
        )
        .unwrap()
        .sort(["incident_id"], SortMultipleOptions::default())
        .collect()
        .unwrap();
        let column = |name: &str| frame.column(name).unwrap().str().unwrap().clone();
        let (incident, deployment, link) = (column("incident_id"), column("deployment_id"), column("link"));
        (0..frame.height())
            .map(|i| {
                (
                    incident.get(i).unwrap().to_owned(),
                    deployment.get(i).unwrap().to_owned(),
                    link.get(i).unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn a_named_cause_redeployed_after_the_incident_started_blames_the_deployment_before_the_start() {
        // In finish order (positions 0–6). a1 and a2 deploy the same sha of acme/api (a2 a redeploy,
        // its sha in upper case); w1 and w2 the same sha of acme/web, w3 a later one; b1 of acme/db
        // finishes after the incidents that name it.
        let production = df!(
            "id" => ["a1", "w1", "a2", "w2", "b0", "b1", "w3"],
            "repo" => ["acme/api", "acme/web", "acme/api", "acme/web", "acme/db", "acme/db", "acme/web"],
            "service" => ["api", "web", "api", "web", "db", "db", "web"],
            "sha" => ["feedface01", "cafe000001", "FEEDFACE01", "cafe000001", "b0b0b0b0b0", "0badc0de99",
                "cafe000002"],
            "finished_at" => [100i64, 150, 200, 300, 390, 400, 450],
            "position" => [0 as IdxSize, 1, 2, 3, 4, 5, 6],
        )
        .unwrap();
        // acme/web#7 (row 0), linked to w1 (position 1), the deployment that first shipped it.
        let changes = df!(
            "repo" => ["acme/web"],
            "number" => [7i64],
            "service" => ["web"],
        )
        .unwrap();
        let change_links = df!("change" => [0 as IdxSize], "deployment" => [1 as IdxSize]).unwrap();
        // CHG1: web, planned 100–500 (no actual window).
        let change_requests = df!(
            "id" => ["sn:chg1"],
            "source" => ["sn"],
            "number" => ["CHG1"],
            "service" => ["web"],
            "actual_start" => [None::<i64>],
            "actual_end" => [None::<i64>],
            "planned_start" => [Some(100i64)],
            "planned_end" => [Some(500i64)],
        )
        .unwrap();
        let refs = |r: &[&str]| Series::new("".into(), r.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let incidents = df!(
            "id" => ["i1", "i2", "i3", "i4", "i5", "i6", "i7"],
            "service" => ["api", "api", "web", "web", "db", "ops", "web"],
            "started_at" => [150i64, 250, 200, 350, 395, 395, 320],
            "cause_refs" => [refs(&["feedface01"]), refs(&["feedface"]), refs(&["#7"]),
                refs(&["acme/web#7"]), refs(&["0badc0de99"]), refs(&["b1"]), refs(&["CHG1"])],
        )
        .unwrap();
        let owned = |i: &str, d: &str, l: &str| (i.to_owned(), d.to_owned(), l.to_owned());
        assert_eq!(
            attributed_with_causes(production, changes, change_links, change_requests, incidents, 100),
            vec![
                // The sha was deployed at 100 (a1) and again at 200 (a2): at 150 only a1 had finished.
                owned("i1", "a1", "explicit"),
                // At 250 both had: the latest, a2.
                owned("i2", "a2", "explicit"),
                // #7 shipped with w1 (150) and again with w2 (300, the same sha): at 200, w1 ...
                owned("i3", "w1", "explicit"),
                // ... and at 350, w2.
                owned("i4", "w2", "explicit"),
                // b1 (400) finished after the start (395): no explicit cause; the window takes b0
                // (390, 5 ms before, same service).
                owned("i5", "b0", "window"),
                // i6 names b1 too and its service has no deployments: unattributed, no row.
                // CHG1's window holds w1, w2 and w3; w3 (450) finished after the start (320): w2.
                owned("i7", "w2", "explicit"),
            ]
        );
    }
}
