//! Which production deployment shipped each merged change (`reference/metrics.md`, lead time for
//! changes): by commit ancestry where the commits are known, else by time. Every family that
//! needs the link (lead time and its breakdown, rework, reverts, the deployed share) reads the one
//! frame built here, so they never disagree about which deployment shipped a change.
//!
//! polars reads the three tables; the linking itself is plain Rust, because walking parent shas
//! is a graph search that a frame does not express. It must not compute any metric.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use polars::prelude::*;

/// The link method of a change linked through the commits table.
pub(in crate::pipeline) const ANCESTRY: &str = "ancestry";
/// The link method of a change linked by the merge time alone.
pub(in crate::pipeline) const TIME: &str = "time";

/// A successful production deployment of one repo.
#[derive(Debug)]
struct Deploy {
    id: String,
    service: Option<String>,
    sha: String,
    finished: i64,
}

/// A commit as the commits table knows it.
#[derive(Debug, Default)]
struct Known {
    parents: Vec<String>,
    /// The deployment whose compare brought it, when the source says so.
    deployment_id: Option<String>,
}

/// Merged changes with the production deployment that shipped them: `change_id, merged_at,
/// opened_at, first_commit_at, began_at` (first commit, else opening), `deployment_id, service`
/// (the deployment's), `at` (its finish), `method` (`ancestry` or `time`) and `ancestry` (1.0 or
/// 0.0, for summing). Changes never deployed have no row. Instants are i64 ms.
///
/// For each repo, production deployments are taken in finish order (ties: by id) and each claims
/// every known commit reachable from its sha by parent links that no earlier deployment claimed:
/// the first production deployment containing a commit. A commit the walk cannot reach but whose
/// source names the deployment that brought it (a compare without parents) goes to that
/// deployment. A change whose merge commit is claimed is linked by `ancestry`.
///
/// Any other merged change is linked by `time`: the first production deployment of its repo that
/// finished at or after the merge, among the deployments whose commits are unknown — the first of
/// a repo (no baseline to compare with), one whose compare failed, every deployment of a source
/// without compares. A deployment whose commits are known and do not contain the change did not
/// ship it, whatever its finish time; a change merged but never deployed stays unlinked. A change
/// whose source gives no merge sha cannot be found in any commits, so it is linked by `time` to
/// the first production deployment of its repo that finished at or after the merge, known
/// commits or not.
pub(in crate::pipeline) fn change_links(
    changes: LazyFrame,
    production: LazyFrame,
    commits: LazyFrame,
) -> PolarsResult<LazyFrame> {
    let deploys = deploys_by_repo(production)?;
    let known = commits_by_repo(commits)?;
    let changes = changes
        .filter(col("merged_at").is_not_null())
        .select([
            col("id"),
            col("repo"),
            col("merged_at"),
            col("created_at"),
            col("first_commit_at"),
            col("merge_commit_sha"),
        ])
        .collect()?;
    let (id, repo, merged_at, created_at, first_commit_at, merge_sha) = (
        changes.column("id")?.str()?,
        changes.column("repo")?.str()?,
        changes.column("merged_at")?.i64()?,
        changes.column("created_at")?.i64()?,
        changes.column("first_commit_at")?.i64()?,
        changes.column("merge_commit_sha")?.str()?,
    );

    let empty = HashMap::new();
    let claims: HashMap<&str, Claims<'_>> = deploys
        .iter()
        .map(|(repo, list)| (repo.as_str(), claim(list, known.get(repo).unwrap_or(&empty))))
        .collect();

    let mut out = Linked::default();
    for i in 0..changes.height() {
        let (Some(change), Some(repo), Some(merged)) = (id.get(i), repo.get(i), merged_at.get(i)) else {
            continue;
        };
        let (Some(list), Some(claims)) = (deploys.get(repo), claims.get(repo)) else {
            continue;
        };
        let by_ancestry = merge_sha
            .get(i)
            .and_then(|sha| claims.by_commit.get(sha.to_ascii_lowercase().as_str()))
            .map(|&d| (d, ANCESTRY));
        let by_time = || {
            if merge_sha.get(i).is_none() {
                // Without a merge sha no commit can say which deployment shipped the change:
                // every production deployment of the repo is a candidate.
                let first = list.partition_point(|d| d.finished < merged);
                return (first < list.len()).then_some((first, TIME));
            }
            let unknown = &claims.unknown;
            let first = unknown.partition_point(|&d| list[d].finished < merged);
            unknown.get(first).map(|&d| (d, TIME))
        };
        let Some((d, method)) = by_ancestry.or_else(by_time) else {
            continue;
        };
        let deploy = &list[d];
        let opened = created_at.get(i);
        let first_commit = first_commit_at.get(i);
        out.change_id.push(change.to_owned());
        out.merged_at.push(merged);
        out.opened_at.push(opened);
        out.first_commit_at.push(first_commit);
        out.began_at.push(first_commit.or(opened));
        out.deployment_id.push(deploy.id.clone());
        out.service.push(deploy.service.clone());
        out.at.push(deploy.finished);
        out.method.push(method);
        out.ancestry.push(if method == ANCESTRY { 1.0 } else { 0.0 });
    }
    Ok(df!(
        "change_id" => out.change_id,
        "merged_at" => out.merged_at,
        "opened_at" => out.opened_at,
        "first_commit_at" => out.first_commit_at,
        "began_at" => out.began_at,
        "deployment_id" => out.deployment_id,
        "service" => out.service,
        "at" => out.at,
        "method" => out.method,
        "ancestry" => out.ancestry,
    )?
    .lazy())
}

/// The columns of [`change_links`], row by row.
#[derive(Debug, Default)]
struct Linked {
    change_id: Vec<String>,
    merged_at: Vec<i64>,
    opened_at: Vec<Option<i64>>,
    first_commit_at: Vec<Option<i64>>,
    began_at: Vec<Option<i64>>,
    deployment_id: Vec<String>,
    service: Vec<Option<String>>,
    at: Vec<i64>,
    method: Vec<&'static str>,
    ancestry: Vec<f64>,
}

/// What the commits say about one repo's deployments.
#[derive(Debug)]
struct Claims<'a> {
    /// Commit sha (lower case) → index of the first deployment containing it.
    by_commit: HashMap<&'a str, usize>,
    /// The deployments whose commits are unknown, in finish order: neither is their own sha in
    /// the commits table (then the walk from it is their exact content, possibly empty for a
    /// redeploy) nor did a compare name them.
    unknown: Vec<usize>,
}

/// Lets each deployment, in finish order, claim the known commits reachable from its sha that no
/// earlier one claimed; then gives commits the walk could not reach to the deployment their source
/// names. Each commit is visited once: a claimed commit's ancestors were claimed with it.
fn claim<'a>(deploys: &[Deploy], known: &'a HashMap<String, Known>) -> Claims<'a> {
    let mut by_commit: HashMap<&'a str, usize> = HashMap::new();
    let mut known_range = vec![false; deploys.len()];
    for (d, deploy) in deploys.iter().enumerate() {
        let Some((head, _)) = known.get_key_value(&deploy.sha) else {
            continue;
        };
        known_range[d] = true;
        let mut stack: Vec<&'a str> = vec![head.as_str()];
        while let Some(sha) = stack.pop() {
            let Some((sha, commit)) = known.get_key_value(sha) else {
                // Before the first compare: history the lake does not hold.
                continue;
            };
            if by_commit.contains_key(sha.as_str()) {
                continue;
            }
            by_commit.insert(sha.as_str(), d);
            stack.extend(commit.parents.iter().map(String::as_str));
        }
    }
    let index: HashMap<&str, usize> = deploys
        .iter()
        .enumerate()
        .map(|(d, deploy)| (deploy.id.as_str(), d))
        .collect();
    for (sha, commit) in known {
        let Some(&d) = commit.deployment_id.as_deref().and_then(|id| index.get(id)) else {
            continue;
        };
        known_range[d] = true;
        by_commit.entry(sha.as_str()).or_insert(d);
    }
    Claims {
        by_commit,
        unknown: (0..deploys.len()).filter(|&d| !known_range[d]).collect(),
    }
}

/// Production deployments by repo, in finish order (ties: by id); shas in lower case.
fn deploys_by_repo(production: LazyFrame) -> PolarsResult<HashMap<String, Vec<Deploy>>> {
    let frame = production
        .select([
            col("id"),
            col("repo"),
            col("service"),
            col("sha"),
            col("finished_at"),
        ])
        .sort(["finished_at", "id"], SortMultipleOptions::default())
        .collect()?;
    let (id, repo, service, sha, finished) = (
        frame.column("id")?.str()?,
        frame.column("repo")?.str()?,
        frame.column("service")?.str()?,
        frame.column("sha")?.str()?,
        frame.column("finished_at")?.i64()?,
    );
    let mut out: HashMap<String, Vec<Deploy>> = HashMap::new();
    for i in 0..frame.height() {
        let (Some(id), Some(repo), Some(sha), Some(finished)) =
            (id.get(i), repo.get(i), sha.get(i), finished.get(i))
        else {
            continue;
        };
        out.entry(repo.to_owned()).or_default().push(Deploy {
            id: id.to_owned(),
            service: service.get(i).map(str::to_owned),
            sha: sha.to_ascii_lowercase(),
            finished,
        });
    }
    Ok(out)
}

/// The commits table by repo: sha (lower case) → parents and the deployment that brought it.
fn commits_by_repo(commits: LazyFrame) -> PolarsResult<HashMap<String, HashMap<String, Known>>> {
    let frame = commits
        .select([col("repo"), col("sha"), col("parents"), col("deployment_id")])
        .collect()?;
    let (repo, sha, parents, deployment_id) = (
        frame.column("repo")?.str()?,
        frame.column("sha")?.str()?,
        frame.column("parents")?.list()?,
        frame.column("deployment_id")?.str()?,
    );
    let mut out: HashMap<String, HashMap<String, Known>> = HashMap::new();
    for i in 0..frame.height() {
        let (Some(repo), Some(sha)) = (repo.get(i), sha.get(i)) else {
            continue;
        };
        if !out.contains_key(repo) {
            out.insert(repo.to_owned(), HashMap::new());
        }
        let Some(of_repo) = out.get_mut(repo) else {
            continue;
        };
        // Two sources may hold the same commit: the first row read is kept.
        let Entry::Vacant(slot) = of_repo.entry(sha.to_ascii_lowercase()) else {
            continue;
        };
        let parents = parents
            .get_as_series(i)
            .and_then(|p| {
                p.str()
                    .ok()
                    .map(|p| p.iter().flatten().map(str::to_ascii_lowercase).collect())
            })
            .unwrap_or_default();
        slot.insert(Known {
            parents,
            deployment_id: deployment_id.get(i).map(str::to_owned),
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `(change_id, deployment_id, method)` of every linked change, by change id.
    fn links(changes: DataFrame, production: DataFrame, commits: DataFrame) -> Vec<(String, String, String)> {
        let frame = change_links(changes.lazy(), production.lazy(), commits.lazy())
            .unwrap()
            .sort(["change_id"], SortMultipleOptions::default())
            .collect()
            .unwrap();
        let (change, deployment, method) = (
            frame.column("change_id").unwrap().str().unwrap(),
            frame.column("deployment_id").unwrap().str().unwrap(),
            frame.column("method").unwrap().str().unwrap(),
        );
        (0..frame.height())
            .map(|i| {
                (
                    change.get(i).unwrap().to_owned(),
                    deployment.get(i).unwrap().to_owned(),
                    method.get(i).unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn a_change_without_a_merge_sha_links_by_time_even_where_every_deployment_has_known_commits() {
        // Repo r: d1 (sha a, finished at 100) and d2 (sha b, child of a, finished at 200); both
        // shas are in the commits table, so no deployment has unknown commits.
        let production = df!(
            "id" => ["d1", "d2"],
            "repo" => ["r", "r"],
            "service" => ["svc", "svc"],
            "sha" => ["a", "b"],
            "finished_at" => [100i64, 200],
        )
        .unwrap();
        let parents_a = Series::new("".into(), Vec::<String>::new());
        let parents_b = Series::new("".into(), ["a"]);
        let commits = df!(
            "repo" => ["r", "r"],
            "sha" => ["a", "b"],
            "parents" => [parents_a, parents_b],
            "deployment_id" => [None::<&str>, None],
        )
        .unwrap();
        // c1: no merge sha, merged at 150 → the first deployment finished at or after 150: d2.
        // c2: no merge sha, merged at 100 → d1 (finished exactly then).
        // c3: no merge sha, merged at 250 → no deployment after it: unlinked.
        // c4: merge sha b → d2 by ancestry. c5: merge sha z, unknown to the commits, merged at 50:
        // every deployment's commits are known and none holds z, so it stays unlinked.
        let changes = df!(
            "id" => ["c1", "c2", "c3", "c4", "c5"],
            "repo" => ["r", "r", "r", "r", "r"],
            "merged_at" => [150i64, 100, 250, 150, 50],
            "created_at" => [Some(10i64), Some(10), Some(10), Some(10), Some(10)],
            "first_commit_at" => [None::<i64>, None, None, None, None],
            "merge_commit_sha" => [None, None, None, Some("b"), Some("z")],
        )
        .unwrap();
        let owned = |c: &str, d: &str, m: &str| (c.to_owned(), d.to_owned(), m.to_owned());
        assert_eq!(
            links(changes, production, commits),
            vec![
                owned("c1", "d2", TIME),
                owned("c2", "d1", TIME),
                owned("c4", "d2", ANCESTRY),
            ]
        );
    }
}
