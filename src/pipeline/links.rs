//! Which production deployment shipped each merged change (`reference/metrics.md`, lead time for
//! changes): by commit ancestry where the commits are known, else by time. Every family that
//! needs the link (lead time and its breakdown, rework, reverts, the deployed share) reads the one
//! frame built here, so they never disagree about which deployment shipped a change.
//!
//! polars reads the three tables; the linking itself is plain Rust, because walking parent shas
//! is a graph search that a frame does not express. It must not compute any metric.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;

use polars::prelude::*;

use super::codec::{SLICE_ROWS, in_slices};

/// The link method of a change linked through the commits table.
pub(in crate::pipeline) const ANCESTRY: &str = "ancestry";
/// The link method of a change linked by the merge time alone.
pub(in crate::pipeline) const TIME: &str = "time";

/// No deployment (a commit no deployment claimed, or whose source names none).
const NONE: u32 = u32::MAX;

/// A successful production deployment of one repo.
#[derive(Debug)]
struct Deploy {
    id: String,
    /// Its position among all production deployments (see `production_deployments`).
    position: u32,
    /// [`sha_key`] of its sha.
    sha: u128,
    finished: i64,
}

/// A commit sha as a 128-bit key, letter case ignored: the first 32 hex digits of a full sha
/// (shifted right one bit, so the top bit is clear), else a hash of the lower-cased text with the
/// top bit set. Two shas get one key only when their first 127 bits agree, which no repository
/// holds; keys instead of strings keep the commits of years in a few hundred megabytes.
pub(in crate::pipeline) fn sha_key(sha: &str) -> u128 {
    let hex = sha
        .get(..32)
        .filter(|head| head.bytes().all(|b| b.is_ascii_hexdigit()));
    if let Some(value) = hex.and_then(|head| u128::from_str_radix(head, 16).ok()) {
        return value >> 1;
    }
    let lower = sha.to_ascii_lowercase();
    let half = |seed: u8| {
        let mut hasher = DefaultHasher::new();
        (seed, lower.as_str()).hash(&mut hasher);
        u128::from(hasher.finish())
    };
    (1 << 127) | (half(0) << 64) | half(1)
}

/// Merged changes with the production deployment that shipped them: `change` (the change's row
/// in the changes table), `merged_at, opened_at, first_commit_at`, `deployment` (the
/// deployment's position among the production deployments, see `production_deployments`, whose
/// service and finish are looked up there when needed) and `ancestry` (1.0 for a change linked by
/// ancestry, 0.0 by time; for summing). Changes never deployed have no row. Instants are i64 ms.
/// Rows and positions rather than ids keep the frame small: it has a row for every deployed
/// change of the history, and is held through the whole computation.
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
    let graph = CommitGraph::read(commits, &deploys)?;
    let claims: HashMap<&str, Claims> = deploys
        .iter()
        .map(|(repo, list)| (repo.as_str(), claim(list, graph.of_repo(repo))))
        .collect();

    let mut linked: Option<DataFrame> = None;
    in_slices(
        changes,
        SLICE_ROWS,
        |slice| {
            slice.filter(col("merged_at").is_not_null()).select([
                col("row"),
                col("repo"),
                col("merged_at"),
                col("created_at"),
                col("first_commit_at"),
                col("merge_commit_sha"),
            ])
        },
        |changes| {
            let part = link_slice(&changes, &deploys, &graph, &claims)?;
            match linked.as_mut() {
                Some(all) => {
                    all.vstack_mut_owned(part)?;
                }
                None => linked = Some(part),
            }
            Ok(())
        },
    )?;
    match linked {
        Some(frame) => Ok(frame.lazy()),
        None => link_slice(&DataFrame::empty(), &deploys, &graph, &claims).map(DataFrame::lazy),
    }
}

/// [`change_links`] for one slice of the merged changes.
fn link_slice(
    changes: &DataFrame,
    deploys: &HashMap<String, Vec<Deploy>>,
    graph: &CommitGraph,
    claims: &HashMap<&str, Claims>,
) -> PolarsResult<DataFrame> {
    let mut out = Linked::default();
    if changes.height() > 0 {
        let (row, repo, merged_at, created_at, first_commit_at, merge_sha) = (
            changes.column("row")?.idx()?,
            changes.column("repo")?.str()?,
            changes.column("merged_at")?.i64()?,
            changes.column("created_at")?.i64()?,
            changes.column("first_commit_at")?.i64()?,
            changes.column("merge_commit_sha")?.str()?,
        );
        // Zipped iterators, and the repo's deployments, claims and commits looked up once per run
        // of rows of one repo (a table written repo by repo has long runs).
        let rows = row
            .iter()
            .zip(repo.iter())
            .zip(merged_at.iter())
            .zip(created_at.iter())
            .zip(first_commit_at.iter())
            .zip(merge_sha.iter());
        type OfRepo<'a> = Option<(&'a [Deploy], &'a Claims, RepoCommits<'a>)>;
        let mut of_repo: Option<(&str, OfRepo<'_>)> = None;
        for (((((change, repo), merged), opened), first_commit), merge_sha) in rows {
            let (Some(change), Some(repo), Some(merged)) = (change, repo, merged) else {
                continue;
            };
            let cached = match of_repo {
                Some((name, cached)) if name == repo => cached,
                _ => {
                    let looked_up = deploys
                        .get(repo)
                        .zip(claims.get(repo))
                        .map(|(list, claims)| (list.as_slice(), claims, graph.of_repo(repo)));
                    of_repo = Some((repo, looked_up));
                    looked_up
                }
            };
            let Some((list, claims, commits)) = cached else {
                continue;
            };
            let by_ancestry = merge_sha
                .and_then(|sha| commits.find(sha_key(sha)))
                .map(|c| claims.by_commit[c])
                .filter(|&d| d != NONE)
                .map(|d| (d as usize, true));
            let by_time = || {
                if merge_sha.is_none() {
                    // Without a merge sha no commit can say which deployment shipped the change:
                    // every production deployment of the repo is a candidate.
                    let first = list.partition_point(|d| d.finished < merged);
                    return (first < list.len()).then_some((first, false));
                }
                let unknown = &claims.unknown;
                let first = unknown.partition_point(|&d| list[d].finished < merged);
                unknown.get(first).map(|&d| (d, false))
            };
            let Some((d, ancestry)) = by_ancestry.or_else(by_time) else {
                continue;
            };
            let deploy = &list[d];
            out.change.push(change);
            out.merged_at.push(merged);
            out.opened_at.push(opened);
            out.first_commit_at.push(first_commit);
            out.deployment.push(deploy.position);
            out.ancestry.push(if ancestry { 1.0 } else { 0.0 });
        }
    }
    df!(
        "change" => out.change,
        "merged_at" => out.merged_at,
        "opened_at" => out.opened_at,
        "first_commit_at" => out.first_commit_at,
        "deployment" => out.deployment,
        "ancestry" => out.ancestry,
    )
}

/// The columns of [`change_links`], row by row.
#[derive(Debug, Default)]
struct Linked {
    change: Vec<IdxSize>,
    merged_at: Vec<i64>,
    opened_at: Vec<Option<i64>>,
    first_commit_at: Vec<Option<i64>>,
    deployment: Vec<IdxSize>,
    ancestry: Vec<f64>,
}

/// The commits table, compact: one entry per commit of a repo (the first row read where two
/// sources hold the same commit), sorted by repo and [`sha_key`], with its parents' keys and the
/// deployment its source names.
#[derive(Debug, Default)]
struct CommitGraph {
    key: Vec<u128>,
    /// `parent_keys[start..start + len]` are the parents of an entry.
    parents: Vec<(u32, u32)>,
    parent_keys: Vec<u128>,
    /// The position, in its repo's deployments, of the deployment the source names, or [`NONE`].
    deployment: Vec<u32>,
    /// Each repo's entries.
    repos: HashMap<String, Range<usize>>,
}

/// One repo's commits in a [`CommitGraph`].
#[derive(Clone, Copy)]
struct RepoCommits<'a> {
    key: &'a [u128],
    parents: &'a [(u32, u32)],
    parent_keys: &'a [u128],
    deployment: &'a [u32],
}

impl RepoCommits<'_> {
    /// The entry with this key.
    fn find(&self, key: u128) -> Option<usize> {
        self.key.binary_search(&key).ok()
    }

    fn parents(&self, entry: usize) -> &[u128] {
        let (start, len) = self.parents[entry];
        &self.parent_keys[start as usize..(start + len) as usize]
    }
}

impl CommitGraph {
    /// Reads `repo, sha, parents, deployment_id` a slice at a time.
    fn read(commits: LazyFrame, deploys: &HashMap<String, Vec<Deploy>>) -> PolarsResult<Self> {
        // A named deployment by id, with its repo, for commits brought by a compare.
        let by_id: HashMap<&str, (&str, u32)> = deploys
            .iter()
            .flat_map(|(repo, list)| {
                list.iter()
                    .enumerate()
                    .map(move |(d, deploy)| (deploy.id.as_str(), (repo.as_str(), d as u32)))
            })
            .collect();
        let mut repo_ids: HashMap<String, u32> = HashMap::new();
        let (mut repo, mut key, mut parents, mut parent_keys, mut deployment) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        in_slices(
            commits,
            SLICE_ROWS,
            |slice| slice.select([col("repo"), col("sha"), col("parents"), col("deployment_id")]),
            |frame| {
                let (repos, shas, parent_lists, deployment_ids) = (
                    frame.column("repo")?.str()?,
                    frame.column("sha")?.str()?,
                    frame.column("parents")?.list()?,
                    frame.column("deployment_id")?.str()?,
                );
                // Zipped iterators rather than a lookup per row and column; the parent lists
                // through one reused series.
                let rows = repos
                    .iter()
                    .zip(shas.iter())
                    .zip(parent_lists.amortized_iter())
                    .zip(deployment_ids.iter());
                for (((name, sha), list), deployment_id) in rows {
                    let (Some(name), Some(sha)) = (name, sha) else {
                        continue;
                    };
                    let id = match repo_ids.get(name) {
                        Some(id) => *id,
                        None => {
                            let id = repo_ids.len() as u32;
                            repo_ids.insert(name.to_owned(), id);
                            id
                        }
                    };
                    let start = parent_keys.len() as u32;
                    if let Some(list) = list
                        && let Ok(list) = list.as_ref().str()
                    {
                        parent_keys.extend(list.iter().flatten().map(sha_key));
                    }
                    repo.push(id);
                    key.push(sha_key(sha));
                    parents.push((start, parent_keys.len() as u32 - start));
                    deployment.push(
                        deployment_id
                            .and_then(|d| by_id.get(d))
                            .filter(|(of_repo, _)| *of_repo == name)
                            .map_or(NONE, |&(_, d)| d),
                    );
                }
                Ok(())
            },
        )?;
        // By repo and key; a stable sort keeps the first row read of a duplicated commit first.
        let mut order: Vec<u32> = (0..key.len() as u32).collect();
        order.sort_by_key(|&i| (repo[i as usize], key[i as usize]));
        order.dedup_by_key(|i| (repo[*i as usize], key[*i as usize]));
        let names: HashMap<u32, String> = repo_ids.into_iter().map(|(name, id)| (id, name)).collect();
        let mut graph = Self {
            parent_keys,
            ..Self::default()
        };
        let mut first = 0;
        for (position, &i) in order.iter().enumerate() {
            let i = i as usize;
            graph.key.push(key[i]);
            graph.parents.push(parents[i]);
            graph.deployment.push(deployment[i]);
            let ends_repo = order
                .get(position + 1)
                .is_none_or(|&next| repo[next as usize] != repo[i]);
            if ends_repo {
                if let Some(name) = names.get(&repo[i]) {
                    graph.repos.insert(name.clone(), first..position + 1);
                }
                first = position + 1;
            }
        }
        Ok(graph)
    }

    /// A repo's commits (none when the table has none of it).
    fn of_repo(&self, repo: &str) -> RepoCommits<'_> {
        let range = self.repos.get(repo).cloned().unwrap_or(0..0);
        RepoCommits {
            key: &self.key[range.clone()],
            parents: &self.parents[range.clone()],
            parent_keys: &self.parent_keys,
            deployment: &self.deployment[range],
        }
    }
}

/// What the commits say about one repo's deployments.
#[derive(Debug)]
struct Claims {
    /// For each of the repo's commits, the first deployment containing it, or [`NONE`].
    by_commit: Vec<u32>,
    /// The deployments whose commits are unknown, in finish order: neither is their own sha in
    /// the commits table (then the walk from it is their exact content, possibly empty for a
    /// redeploy) nor did a compare name them.
    unknown: Vec<usize>,
}

/// Lets each deployment, in finish order, claim the known commits reachable from its sha that no
/// earlier one claimed; then gives commits the walk could not reach to the deployment their source
/// names. Each commit is visited once: a claimed commit's ancestors were claimed with it.
fn claim(deploys: &[Deploy], commits: RepoCommits<'_>) -> Claims {
    let mut by_commit = vec![NONE; commits.key.len()];
    let mut known_range = vec![false; deploys.len()];
    let mut stack: Vec<usize> = Vec::new();
    for (d, deploy) in deploys.iter().enumerate() {
        let Some(head) = commits.find(deploy.sha) else {
            continue;
        };
        known_range[d] = true;
        stack.push(head);
        while let Some(entry) = stack.pop() {
            if by_commit[entry] != NONE {
                continue;
            }
            by_commit[entry] = d as u32;
            // A parent the table does not hold is history before the first compare.
            stack.extend(commits.parents(entry).iter().filter_map(|&p| commits.find(p)));
        }
    }
    for (entry, &d) in commits.deployment.iter().enumerate() {
        if d == NONE {
            continue;
        }
        known_range[d as usize] = true;
        if by_commit[entry] == NONE {
            by_commit[entry] = d;
        }
    }
    Claims {
        by_commit,
        unknown: (0..deploys.len()).filter(|&d| !known_range[d]).collect(),
    }
}

/// Production deployments by repo, in finish order (ties: by id), as `production_deployments`
/// gives them.
fn deploys_by_repo(production: LazyFrame) -> PolarsResult<HashMap<String, Vec<Deploy>>> {
    let frame = production
        .select([
            col("id"),
            col("position"),
            col("repo"),
            col("sha"),
            col("finished_at"),
        ])
        .collect()?;
    let (id, position, repo, sha, finished) = (
        frame.column("id")?.str()?,
        frame.column("position")?.idx()?,
        frame.column("repo")?.str()?,
        frame.column("sha")?.str()?,
        frame.column("finished_at")?.i64()?,
    );
    let mut out: HashMap<String, Vec<Deploy>> = HashMap::new();
    for i in 0..frame.height() {
        let (Some(id), Some(position), Some(repo), Some(sha), Some(finished)) = (
            id.get(i),
            position.get(i),
            repo.get(i),
            sha.get(i),
            finished.get(i),
        ) else {
            continue;
        };
        if !out.contains_key(repo) {
            out.insert(repo.to_owned(), Vec::new());
        }
        if let Some(list) = out.get_mut(repo) {
            list.push(Deploy {
                id: id.to_owned(),
                position,
                sha: sha_key(sha),
                finished,
            });
        }
    }
    Ok(out)
}

/// The link methods behind a value over `n` linked changes of which `ancestry` (a sum of 1.0s)
/// were linked by ancestry: `ancestry`, `time` or `ancestry+time` when mixed; `None` without
/// changes.
pub(in crate::pipeline) fn link_method(ancestry: Option<f64>, n: i64) -> Option<&'static str> {
    let by_ancestry = ancestry.unwrap_or(0.0).round() as i64;
    match n {
        0 => None,
        _ if by_ancestry >= n => Some(ANCESTRY),
        _ if by_ancestry == 0 => Some(TIME),
        _ => Some("ancestry+time"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sha_key_is_the_first_127_bits_of_a_full_sha_in_either_case_else_a_flagged_hash() {
        // Against the standard parser, on shas of every digit in both cases.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            let sha: String = (0..40)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let digit = char::from_digit(((seed >> 33) % 16) as u32, 16).unwrap();
                    if seed >> 63 == 1 {
                        digit.to_ascii_uppercase()
                    } else {
                        digit
                    }
                })
                .collect();
            let expected = u128::from_str_radix(&sha[..32], 16).unwrap() >> 1;
            assert_eq!(sha_key(&sha), expected, "{sha}");
            assert_eq!(
                sha_key(&sha.to_ascii_lowercase()),
                expected,
                "letter case is ignored"
            );
        }
        let full = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(sha_key(full) >> 127, 0, "a full sha's key has the top bit clear");
        // Short, or not hex within the first 32 characters: hashed, top bit set, case ignored.
        for other in ["abc1234", "0123456789abcdef0123456789abcdeg0123", "v1.2.3", ""] {
            assert_eq!(sha_key(other) >> 127, 1, "{other:?}");
            assert_eq!(sha_key(other), sha_key(&other.to_ascii_uppercase()), "{other:?}");
        }
        assert_ne!(sha_key("abc1234"), sha_key("abc1235"));
        // A multi-byte character within the first 32 bytes is not a digit.
        assert_eq!(sha_key("é123456789abcdef0123456789abcdef0") >> 127, 1);
    }

    /// `(change id, deployment id, method)` of every linked change, by change id. `production`
    /// is in finish order.
    fn links(changes: DataFrame, production: DataFrame, commits: DataFrame) -> Vec<(String, String, String)> {
        let production = production.with_row_index("position".into(), None).unwrap();
        let frame = change_links(changes.clone().lazy(), production.clone().lazy(), commits.lazy())
            .unwrap()
            .collect()
            .unwrap();
        let (change, deployment, ancestry) = (
            frame.column("change").unwrap().idx().unwrap(),
            frame.column("deployment").unwrap().idx().unwrap(),
            frame.column("ancestry").unwrap().f64().unwrap(),
        );
        let (change_ids, deployment_ids) = (
            changes.column("id").unwrap().str().unwrap(),
            production.column("id").unwrap().str().unwrap(),
        );
        let mut out: Vec<(String, String, String)> = (0..frame.height())
            .map(|i| {
                (
                    change_ids
                        .get(change.get(i).unwrap() as usize)
                        .unwrap()
                        .to_owned(),
                    deployment_ids
                        .get(deployment.get(i).unwrap() as usize)
                        .unwrap()
                        .to_owned(),
                    if ancestry.get(i) == Some(1.0) {
                        ANCESTRY
                    } else {
                        TIME
                    }
                    .to_owned(),
                )
            })
            .collect();
        out.sort();
        out
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
