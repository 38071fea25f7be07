//! The `devlake` compatibility mode: Apache DevLake's DORA rules, reproduced exactly, so a team
//! migrating from DevLake can put its old numbers beside tandem's and see them agree.
//!
//! Two computations, each a function over polars lazy frames with the columns documented below:
//! [`incident_links`] (DevLake's `ConnectIncidentToDeployment`) and [`pr_metrics`] (its
//! `calculateChangeLeadTime`). Two adapters feed them: [`csv`] from DevLake's own tables as CSV
//! (how the conformance data in `tests/data/devlake/` comes), [`lake`] from tandem's
//! canonical tables. Results come back as frames and as plain rows ([`LinkRow`],
//! [`PrMetricsRow`]), so callers outside the pipeline need no polars.
//!
//! This is a comparison mode, not tandem's own definitions (`reference/metrics.md`): where DevLake
//! differs (no attribution window, no service match, project scoping) it follows DevLake. It must
//! not write files or change tandem's metric table.
//!
//! Instants are integer milliseconds since the epoch (UTC) inside every frame, as in
//! the weekly metrics: spans are integer subtractions, converted to minutes by integer arithmetic.
//!
//! # Input frames
//!
//! - **deployment commits** (DevLake's `cicd_deployment_commits`, one row per deployment and
//!   repository): `id` (str, the row), `deployment_id` (str, DevLake's `cicd_deployment_id`),
//!   `project` (str, null when unmapped), `commit_sha` (str), `result` (str, `SUCCESS` counts),
//!   `environment` (str, `PRODUCTION` counts), `started_at`, `finished_at` (i64 ms, nullable),
//!   `prev_success_id` (str, the `id` of the previous successful deployment commit; null or empty
//!   when none). A row mapped to several projects appears once per project.
//! - **commit ranges** (DevLake's `commits_diffs`): `new_sha`, `old_sha` (null or empty for the
//!   start of history), `commit_sha` — `commit_sha` is in the range `(old_sha, new_sha]`.
//! - **incidents**: `id`, `project` (null when unmapped), `created_at` (i64 ms).
//! - **pull requests**: `id`, `project`, `author` (null: unknown), `merge_commit_sha`, `created_at`,
//!   `merged_at` (i64 ms; null: not merged); other columns (`repo`) are carried by the adapters and
//!   ignored.
//! - **pr commits**: `pr_id`, `sha` (nullable), `authored_at` (i64 ms).
//! - **pr comments**: `id` (nullable), `pr_id`, `author` (null: unknown), `created_at` (i64 ms).

use chrono::{DateTime, Utc};
use polars::prelude::*;

pub mod csv;
pub mod lake;

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod lake_tests;

pub use csv::{devlake_links_from_csv, devlake_pr_metrics_from_csv};
pub use lake::{devlake_links_from_lake, devlake_pr_metrics_from_lake};

const MINUTE_MS: i64 = 60_000;

/// One incident linked to a deployment (DevLake's `project_incident_deployment_relationships`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkRow {
    /// The incident.
    pub incident_id: String,
    /// The project both belong to.
    pub project: String,
    /// The deployment (DevLake's `cicd_deployment_id`; tandem's deployment id).
    pub deployment_id: String,
}

/// One merged pull request's lead-time breakdown (DevLake's `project_pr_metrics`). Durations are
/// whole minutes rounded up; a duration is `None` when an end is unknown or it rounds negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrMetricsRow {
    /// The pull request.
    pub id: String,
    /// The project it was computed for.
    pub project: String,
    /// Its earliest authored commit, when known.
    pub first_commit_sha: Option<String>,
    /// Opened − first commit authored.
    pub pr_coding_time: Option<i64>,
    /// The first comment by someone other than the author.
    pub first_review_id: Option<String>,
    /// First comment − opened.
    pub pr_pickup_time: Option<i64>,
    /// Merged − first comment.
    pub pr_review_time: Option<i64>,
    /// The deployment commit that first shipped the merge commit.
    pub deployment_commit_id: Option<String>,
    /// That deployment finished − merged.
    pub pr_deploy_time: Option<i64>,
    /// Coding + (merged − opened) + deploy, each only when known; 0 when none is.
    pub pr_cycle_time: i64,
    /// When the first commit was authored.
    pub first_commit_authored_date: Option<DateTime<Utc>>,
    /// When the first comment by someone else was written.
    pub first_comment_date: Option<DateTime<Utc>>,
    /// Opened.
    pub pr_created_date: DateTime<Utc>,
    /// Merged.
    pub pr_merged_date: DateTime<Utc>,
    /// When the deployment finished.
    pub pr_deployed_date: Option<DateTime<Utc>>,
}

/// The frames [`pr_metrics`] reads (columns in the module documentation).
#[derive(Clone)]
pub struct PrTables {
    /// Deployment commits.
    pub deployment_commits: LazyFrame,
    /// Commit ranges between consecutive deployment commits.
    pub commit_ranges: LazyFrame,
    /// Pull requests.
    pub pull_requests: LazyFrame,
    /// Commits of each pull request.
    pub pr_commits: LazyFrame,
    /// Comments on each pull request.
    pub pr_comments: LazyFrame,
}

impl std::fmt::Debug for PrTables {
    // LazyFrame has no Debug; its plan would not help a reader anyway.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrTables").finish_non_exhaustive()
    }
}

/// Deployment commits DevLake counts at all: `SUCCESS` in `PRODUCTION` (both spelled exactly so:
/// DevLake compares the stored strings).
fn successful_production(deployment_commits: LazyFrame) -> LazyFrame {
    deployment_commits.filter(
        col("result")
            .eq(lit("SUCCESS"))
            .and(col("environment").eq(lit("PRODUCTION"))),
    )
}

/// Each incident linked to the latest successful production deployment commit of its project
/// that finished strictly before the incident was created: `incident_id, project, deployment_id`,
/// sorted by project and incident.
///
/// No window and no service match. Every deployment commit is compared on its own
/// `finished_at` (a deployment's rows may finish at different times). Incidents without a project
/// or without an earlier deployment get no row, nor does one whose latest deployment commit has no
/// `deployment_id` (DevLake drops a link to an empty id). DevLake leaves ties on `finished_at` to
/// the database; here the greatest deployment commit `id` wins, so the result is deterministic.
///
/// An as-of join without polars' `asof_join` feature, and without the incidents × deployments
/// product a join-then-filter would build (there is no window to bound it): deployments and
/// incidents go into one frame sorted by project and instant, and each incident takes the
/// deployment carried forward to it. At one instant incidents sort first, so a deployment that
/// finishes as an incident is created does not count; deployments sort by id, so the greatest
/// carries on.
pub fn incident_links(deployment_commits: LazyFrame, incidents: LazyFrame) -> PolarsResult<DataFrame> {
    let text_null = || lit(NULL).cast(DataType::String);
    let rank = |value: i32| lit(value).cast(DataType::Int32).alias("rank");
    let deployed = successful_production(deployment_commits)
        .filter(col("project").is_not_null().and(col("finished_at").is_not_null()))
        .select([
            col("project"),
            col("finished_at").alias("at"),
            rank(1),
            col("id").alias("deployment_commit_id"),
            // Empty, not null: a null would let the forward fill reach past it to an older one.
            col("deployment_id").fill_null(lit("")),
            text_null().alias("incident_id"),
        ]);
    let created = incidents
        .filter(col("project").is_not_null().and(col("created_at").is_not_null()))
        .select([
            col("project"),
            col("created_at").alias("at"),
            rank(0),
            text_null().alias("deployment_commit_id"),
            text_null().alias("deployment_id"),
            col("id").alias("incident_id"),
        ]);
    let latest = col("deployment_id")
        .fill_null_with_strategy(FillNullStrategy::Forward(None))
        .over([col("project")])?;
    concat([deployed, created], UnionArgs::default())?
        .sort(
            ["project", "at", "rank", "deployment_commit_id"],
            SortMultipleOptions::default(),
        )
        .with_column(latest.alias("latest_deployment"))
        .filter(
            col("incident_id")
                .is_not_null()
                .and(col("latest_deployment").is_not_null())
                .and(col("latest_deployment").neq(lit(""))),
        )
        .select([
            col("incident_id"),
            col("project"),
            col("latest_deployment").alias("deployment_id"),
        ])
        // An incident listed twice is one incident.
        .unique(None, UniqueKeepStrategy::Any)
        .sort(["project", "incident_id"], SortMultipleOptions::default())
        .collect()
}

/// Per merged pull request of a project, DevLake's lead-time breakdown: the columns of
/// [`PrMetricsRow`] (instants as i64 ms), sorted by project and id.
///
/// - The first commit is the earliest authored (ties: the smallest sha).
/// - The first review is the earliest comment whose author differs from the PR's (ties: the
///   smallest comment id). An unknown author on either side counts as different: DevLake stores
///   authors as empty strings, and the CSV adapter keeps them so, which makes an empty author equal
///   to an empty author there, as in DevLake.
/// - The deployment: among `SUCCESS` + `PRODUCTION` deployment commits of the PR's project that
///   have a previous successful one, the earliest by `started_at` (ties: the smallest `id`) whose
///   range — `commit_ranges` rows with `new_sha` = its sha and `old_sha` = the previous one's sha,
///   an unknown previous sha matching an empty or null `old_sha` — holds the PR's merge commit.
///   When that deployment has no `finished_at` the PR has no deployment (DevLake skips it rather
///   than looking further).
/// - Durations are DevLake's `computeTimeSpan`: whole minutes rounded up, null when the rounded
///   value is negative (so −30 s is 0).
/// - Cycle time sums coding time, merged − created and deploy time, skipping the unknown ones.
pub fn pr_metrics(tables: PrTables) -> PolarsResult<DataFrame> {
    let PrTables {
        deployment_commits,
        commit_ranges,
        pull_requests,
        pr_commits,
        pr_comments,
    } = tables;
    let earliest = SortMultipleOptions::default();

    let prs = pull_requests
        .filter(
            col("merged_at")
                .is_not_null()
                .and(col("created_at").is_not_null())
                .and(col("project").is_not_null()),
        )
        .select([
            col("id"),
            col("project"),
            col("author"),
            col("merge_commit_sha"),
            col("created_at").alias("pr_created_date"),
            col("merged_at").alias("pr_merged_date"),
        ]);

    let first_commits = pr_commits
        .filter(col("authored_at").is_not_null())
        .group_by([col("pr_id")])
        .agg([
            col("sha")
                .sort_by([col("authored_at"), col("sha")], earliest.clone())
                .first()
                .alias("first_commit_sha"),
            col("authored_at").min().alias("first_commit_authored_date"),
        ]);

    // A PR mapped to several projects is one PR with one author: one row per id for the match.
    let authors = prs
        .clone()
        .select([col("id").alias("author_pr"), col("author").alias("pr_author")])
        .unique(None, UniqueKeepStrategy::Any);
    let first_reviews = pr_comments
        .filter(col("created_at").is_not_null())
        .select([
            col("id").alias("comment_id"),
            col("pr_id"),
            col("author").alias("comment_author"),
            col("created_at").alias("comment_at"),
        ])
        .inner_join(authors, col("pr_id"), col("author_pr"))
        .filter(
            col("comment_author")
                .is_null()
                .or(col("pr_author").is_null())
                .or(col("comment_author").neq(col("pr_author"))),
        )
        .group_by([col("pr_id")])
        .agg([
            col("comment_id")
                .sort_by([col("comment_at"), col("comment_id")], earliest.clone())
                .first()
                .alias("first_review_id"),
            col("comment_at").min().alias("first_comment_date"),
        ]);

    let deployments = first_deployments(deployment_commits, commit_ranges, prs.clone());

    let known = |name: &str| col(name).fill_null(lit(0i64));
    prs.left_join(first_commits, col("id"), col("pr_id"))
        .left_join(first_reviews, col("id"), col("pr_id"))
        .join(
            deployments,
            [col("id"), col("project")],
            [col("deployed_pr"), col("deployed_project")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            span_minutes(col("first_commit_authored_date"), col("pr_created_date")).alias("pr_coding_time"),
            span_minutes(col("pr_created_date"), col("first_comment_date")).alias("pr_pickup_time"),
            span_minutes(col("first_comment_date"), col("pr_merged_date")).alias("pr_review_time"),
            span_minutes(col("pr_merged_date"), col("pr_deployed_date")).alias("pr_deploy_time"),
            span_minutes(col("pr_created_date"), col("pr_merged_date")).alias("pr_during"),
        ])
        .with_column(
            (known("pr_coding_time") + known("pr_during") + known("pr_deploy_time")).alias("pr_cycle_time"),
        )
        .select(
            PR_METRICS_COLUMNS
                .iter()
                .map(|name| col(*name))
                .collect::<Vec<_>>(),
        )
        .sort(["project", "id"], SortMultipleOptions::default())
        .collect()
}

/// The columns of [`pr_metrics`]'s frame, in DevLake's order.
const PR_METRICS_COLUMNS: [&str; 15] = [
    "id",
    "project",
    "first_commit_sha",
    "pr_coding_time",
    "first_review_id",
    "pr_pickup_time",
    "pr_review_time",
    "deployment_commit_id",
    "pr_deploy_time",
    "pr_cycle_time",
    "first_commit_authored_date",
    "first_comment_date",
    "pr_created_date",
    "pr_merged_date",
    "pr_deployed_date",
];

/// Per (PR, project), the deployment commit that first shipped its merge commit:
/// `deployed_pr, deployed_project, deployment_commit_id, pr_deployed_date`.
fn first_deployments(deployment_commits: LazyFrame, commit_ranges: LazyFrame, prs: LazyFrame) -> LazyFrame {
    // DevLake resolves the previous row among all deployment commits (a LEFT JOIN on id), so the
    // lookup is not limited to successful production ones; one sha per id even when a row is
    // repeated for several projects.
    let previous = deployment_commits
        .clone()
        .group_by([col("id").alias("prev_id")])
        .agg([col("commit_sha").first().alias("prev_sha")]);
    let candidates = successful_production(deployment_commits)
        .filter(
            col("project")
                .is_not_null()
                .and(col("prev_success_id").is_not_null())
                .and(col("prev_success_id").neq(lit(""))),
        )
        .select([
            col("id").alias("deployment_commit_id"),
            col("project").alias("deployed_project"),
            col("commit_sha").alias("new_sha"),
            col("prev_success_id"),
            col("started_at"),
            col("finished_at").alias("pr_deployed_date"),
        ])
        .left_join(previous, col("prev_success_id"), col("prev_id"))
        // DevLake: `cd.old_commit_sha = COALESCE(p.commit_sha, '')`; polars joins never match
        // nulls, so both sides spell "none" as the empty string.
        .with_column(col("prev_sha").fill_null(lit("")).alias("old_sha"));
    let ranges = commit_ranges.select([
        col("new_sha").alias("range_new"),
        col("old_sha").fill_null(lit("")).alias("range_old"),
        col("commit_sha").alias("range_commit"),
    ]);
    let shipped = candidates.join(
        ranges,
        [col("new_sha"), col("old_sha")],
        [col("range_new"), col("range_old")],
        JoinArgs::new(JoinType::Inner),
    );
    prs.filter(col("merge_commit_sha").is_not_null())
        .select([
            col("id").alias("deployed_pr"),
            col("project").alias("pr_project"),
            col("merge_commit_sha"),
        ])
        .join(
            shipped,
            [col("pr_project"), col("merge_commit_sha")],
            [col("deployed_project"), col("range_commit")],
            JoinArgs::new(JoinType::Inner),
        )
        .group_by([col("deployed_pr"), col("pr_project").alias("deployed_project")])
        .agg([
            col("deployment_commit_id")
                .sort_by(
                    [col("started_at"), col("deployment_commit_id")],
                    SortMultipleOptions::default(),
                )
                .first(),
            col("pr_deployed_date")
                .sort_by(
                    [col("started_at"), col("deployment_commit_id")],
                    SortMultipleOptions::default(),
                )
                .first(),
        ])
        .filter(col("pr_deployed_date").is_not_null())
}

/// DevLake's `computeTimeSpan(from, to)`: `to − from` in minutes, rounded up, `None` when the
/// rounded value is negative or an end is unknown.
///
/// Rounding comes first, as in DevLake: a span of −30 s rounds up to 0 and is kept. Integer
/// arithmetic in a polars map, because `floor_div` needs the `round_series` feature (it panics
/// without it) and `/` is float division that multiplies by the reciprocal.
fn span_minutes(from: Expr, to: Expr) -> Expr {
    (to - from).map(
        |span| Ok(span.i64()?.apply(|ms| ms.and_then(ceil_minutes)).into_column()),
        |_, field| Ok(Field::new(field.name().clone(), DataType::Int64)),
    )
}

/// Whole minutes rounded up, `None` when negative.
fn ceil_minutes(ms: i64) -> Option<i64> {
    let minutes = ms.div_euclid(MINUTE_MS) + i64::from(ms.rem_euclid(MINUTE_MS) != 0);
    (minutes >= 0).then_some(minutes)
}

/// The rows of an [`incident_links`] frame.
pub fn link_rows(frame: &DataFrame) -> PolarsResult<Vec<LinkRow>> {
    let incident = frame.column("incident_id")?.str()?;
    let project = frame.column("project")?.str()?;
    let deployment = frame.column("deployment_id")?.str()?;
    (0..frame.height())
        .map(|row| {
            Ok(LinkRow {
                incident_id: required(incident.get(row), "incident_id", row)?.to_owned(),
                project: required(project.get(row), "project", row)?.to_owned(),
                deployment_id: required(deployment.get(row), "deployment_id", row)?.to_owned(),
            })
        })
        .collect()
}

/// The rows of a [`pr_metrics`] frame.
pub fn pr_metrics_rows(frame: &DataFrame) -> PolarsResult<Vec<PrMetricsRow>> {
    let text = |name: &str| -> PolarsResult<Vec<Option<String>>> {
        Ok(frame
            .column(name)?
            .str()?
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect())
    };
    let number =
        |name: &str| -> PolarsResult<Vec<Option<i64>>> { Ok(frame.column(name)?.i64()?.iter().collect()) };
    let instant = |name: &str| -> PolarsResult<Vec<Option<DateTime<Utc>>>> {
        frame
            .column(name)?
            .i64()?
            .iter()
            .enumerate()
            .map(|(row, ms)| ms.map(|ms| instant_of(ms, name, row)).transpose())
            .collect()
    };
    let id = text("id")?;
    let project = text("project")?;
    let first_commit_sha = text("first_commit_sha")?;
    let coding = number("pr_coding_time")?;
    let first_review_id = text("first_review_id")?;
    let pickup = number("pr_pickup_time")?;
    let review = number("pr_review_time")?;
    let deployment = text("deployment_commit_id")?;
    let deploy = number("pr_deploy_time")?;
    let cycle = number("pr_cycle_time")?;
    let first_commit_at = instant("first_commit_authored_date")?;
    let first_comment_at = instant("first_comment_date")?;
    let created = instant("pr_created_date")?;
    let merged = instant("pr_merged_date")?;
    let deployed = instant("pr_deployed_date")?;
    (0..frame.height())
        .map(|row| {
            Ok(PrMetricsRow {
                id: required(id[row].clone(), "id", row)?,
                project: required(project[row].clone(), "project", row)?,
                first_commit_sha: first_commit_sha[row].clone(),
                pr_coding_time: coding[row],
                first_review_id: first_review_id[row].clone(),
                pr_pickup_time: pickup[row],
                pr_review_time: review[row],
                deployment_commit_id: deployment[row].clone(),
                pr_deploy_time: deploy[row],
                pr_cycle_time: required(cycle[row], "pr_cycle_time", row)?,
                first_commit_authored_date: first_commit_at[row],
                first_comment_date: first_comment_at[row],
                pr_created_date: required(created[row], "pr_created_date", row)?,
                pr_merged_date: required(merged[row], "pr_merged_date", row)?,
                pr_deployed_date: deployed[row],
            })
        })
        .collect()
}

/// A value the computation guarantees (filtered on, or built non-null); a null here is a bug in
/// this module, reported rather than panicking.
fn required<T>(value: Option<T>, column: &str, row: usize) -> PolarsResult<T> {
    value.ok_or_else(|| polars_err!(ComputeError: "devlake: unexpected null in `{column}`, row {row}"))
}

fn instant_of(ms: i64, column: &str, row: usize) -> PolarsResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        polars_err!(ComputeError: "devlake: `{column}`, row {row}: {ms} ms since the epoch is out of range")
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn minutes_round_up_before_the_sign_is_checked() {
        assert_eq!(ceil_minutes(0), Some(0));
        assert_eq!(ceil_minutes(2_000), Some(1));
        assert_eq!(ceil_minutes(60_000), Some(1));
        assert_eq!(ceil_minutes(60_001), Some(2));
        // 2977.45 minutes, DevLake's own example.
        assert_eq!(ceil_minutes(178_647_000), Some(2978));
        // Go's math.Ceil(-0.5) is -0, which DevLake keeps as 0.
        assert_eq!(ceil_minutes(-30_000), Some(0));
        assert_eq!(ceil_minutes(-60_000), None);
        assert_eq!(ceil_minutes(-90_000), None);
        assert_eq!(ceil_minutes(i64::MIN), None);
        assert!(ceil_minutes(i64::MAX).is_some());
    }

    const MIN: i64 = MINUTE_MS;

    /// Deployment commits: `(id, deployment_id, project, sha, started, finished, prev)`, all
    /// successful and in production.
    #[allow(clippy::type_complexity)]
    fn deployment_commits(
        rows: &[(&str, Option<&str>, &str, &str, i64, Option<i64>, Option<&str>)],
    ) -> LazyFrame {
        df!(
            "id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "deployment_id" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "project" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            "commit_sha" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            "result" => rows.iter().map(|_| "SUCCESS").collect::<Vec<_>>(),
            "environment" => rows.iter().map(|_| "PRODUCTION").collect::<Vec<_>>(),
            "started_at" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
            "finished_at" => rows.iter().map(|r| r.5).collect::<Vec<_>>(),
            "prev_success_id" => rows.iter().map(|r| r.6).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy()
    }

    fn incidents(rows: &[(&str, &str, i64)]) -> LazyFrame {
        df!(
            "id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "project" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "created_at" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy()
    }

    fn links(deployments: LazyFrame, incidents: LazyFrame) -> Vec<(String, String)> {
        link_rows(&incident_links(deployments, incidents).unwrap())
            .unwrap()
            .into_iter()
            .map(|l| (l.incident_id, l.deployment_id))
            .collect()
    }

    #[test]
    fn each_deployment_commit_counts_on_its_own_finish_and_ties_go_to_the_greatest_id() {
        let deployments = deployment_commits(&[
            // One deployment of two repos: its rows finish at 10 and at 30.
            ("1", Some("pipe1"), "p", "a", 0, Some(10 * MIN), None),
            ("2", Some("pipe1"), "p", "b", 0, Some(30 * MIN), None),
            // Two rows finishing together at 20: the greater id, "4", wins.
            ("4", Some("pipe4"), "p", "c", 0, Some(20 * MIN), None),
            ("3", Some("pipe3"), "p", "d", 0, Some(20 * MIN), None),
            // Another project's later deployment must not reach p's incidents.
            ("9", Some("pipe9"), "q", "e", 0, Some(15 * MIN), None),
        ]);
        let incidents = incidents(&[
            ("i10", "p", 10 * MIN),
            ("i15", "p", 15 * MIN),
            ("i25", "p", 25 * MIN),
            ("i31", "p", 31 * MIN),
            ("q1", "q", 14 * MIN),
            ("q2", "q", 16 * MIN),
        ]);
        assert_eq!(
            links(deployments, incidents),
            [
                // Created as row 1 finishes: not before it.
                ("i15", "pipe1"),
                ("i25", "pipe4"),
                ("i31", "pipe1"),
                ("q2", "pipe9"),
            ]
            .map(|(i, d)| (i.to_owned(), d.to_owned()))
        );
    }

    #[test]
    fn a_latest_deployment_without_an_id_links_nothing() {
        // DevLake drops the link when the latest row's `cicd_deployment_id` is empty, rather than
        // falling back to an older deployment.
        let deployments = deployment_commits(&[
            ("1", Some("pipe1"), "p", "a", 0, Some(10 * MIN), None),
            ("2", None, "p", "b", 0, Some(20 * MIN), None),
        ]);
        let incidents = incidents(&[("i15", "p", 15 * MIN), ("i25", "p", 25 * MIN)]);
        assert_eq!(
            links(deployments, incidents),
            [("i15".to_owned(), "pipe1".to_owned())]
        );
    }

    fn frame_of_prs(merged_at: i64) -> LazyFrame {
        df!(
            "id" => ["pr"],
            "project" => ["p"],
            "repo" => ["r"],
            "author" => [None::<&str>],
            "merge_commit_sha" => ["m"],
            "created_at" => [0i64],
            "merged_at" => [merged_at],
        )
        .unwrap()
        .lazy()
    }

    fn no_commits() -> LazyFrame {
        df!(
            "pr_id" => Vec::<&str>::new(),
            "sha" => Vec::<&str>::new(),
            "authored_at" => Vec::<i64>::new(),
        )
        .unwrap()
        .lazy()
    }

    fn comments(rows: &[(&str, Option<&str>, i64)]) -> LazyFrame {
        df!(
            "id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "pr_id" => rows.iter().map(|_| "pr").collect::<Vec<_>>(),
            "author" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "created_at" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy()
    }

    fn ranges(rows: &[(&str, Option<&str>, &str)]) -> LazyFrame {
        df!(
            "new_sha" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "old_sha" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "commit_sha" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy()
    }

    fn one_pr(tables: PrTables) -> PrMetricsRow {
        let mut rows = pr_metrics_rows(&pr_metrics(tables).unwrap()).unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        rows.remove(0)
    }

    #[test]
    fn the_earliest_deployment_by_start_wins_even_without_a_finish() {
        let deployments = deployment_commits(&[
            ("0", Some("pipe0"), "p", "a0", 0, Some(MIN), None),
            // Both ship `m`; "2" started first but never finished: DevLake takes it and then has
            // no deploy time, it does not fall back to "1".
            ("1", Some("pipe1"), "p", "a1", 50 * MIN, Some(60 * MIN), Some("0")),
            ("2", Some("pipe2"), "p", "a2", 40 * MIN, None, Some("0")),
            // Ships `m` too, started earliest, but has no previous deployment: not a candidate.
            ("3", Some("pipe3"), "p", "a3", 30 * MIN, Some(35 * MIN), None),
        ]);
        let tables = |deployment_commits: LazyFrame| PrTables {
            deployment_commits,
            commit_ranges: ranges(&[
                ("a1", Some("a0"), "m"),
                ("a2", Some("a0"), "m"),
                ("a3", None, "m"),
            ]),
            pull_requests: frame_of_prs(20 * MIN),
            pr_commits: no_commits(),
            pr_comments: comments(&[]),
        };
        let row = one_pr(tables(deployments.clone()));
        assert_eq!(row.deployment_commit_id, None);
        assert_eq!(row.pr_deploy_time, None);
        assert_eq!(row.pr_cycle_time, 20);

        // Once "2" is gone, "1" ships it: 60 − 20 minutes after the merge.
        let row = one_pr(tables(deployments.filter(col("id").neq(lit("2")))));
        assert_eq!(row.deployment_commit_id.as_deref(), Some("1"));
        assert_eq!(row.pr_deploy_time, Some(40));
        assert_eq!(row.pr_cycle_time, 20 + 40);
    }

    #[test]
    fn the_first_review_skips_the_author_and_breaks_ties_by_id() {
        let pr = |author: Option<&str>| {
            df!(
                "id" => ["pr"],
                "project" => ["p"],
                "repo" => ["r"],
                "author" => [author],
                "merge_commit_sha" => ["m"],
                "created_at" => [0i64],
                "merged_at" => [100 * MIN],
            )
            .unwrap()
            .lazy()
        };
        let tables = |author: Option<&str>, comments: LazyFrame| PrTables {
            deployment_commits: deployment_commits(&[]),
            commit_ranges: ranges(&[]),
            pull_requests: pr(author),
            pr_commits: no_commits(),
            pr_comments: comments,
        };
        let thread = || {
            comments(&[
                ("c1", Some("alice"), MIN),
                ("c3", Some("bob"), 2 * MIN),
                ("c2", Some("carol"), 2 * MIN),
            ])
        };
        let row = one_pr(tables(Some("alice"), thread()));
        assert_eq!(row.first_review_id.as_deref(), Some("c2"));
        assert_eq!(row.pr_pickup_time, Some(2));
        assert_eq!(row.pr_review_time, Some(98));
        // An unknown author on either side differs from everyone.
        let row = one_pr(tables(None, thread()));
        assert_eq!(row.first_review_id.as_deref(), Some("c1"));
        let row = one_pr(tables(Some("alice"), comments(&[("c0", None, 30_000)])));
        assert_eq!(row.first_review_id.as_deref(), Some("c0"));
        assert_eq!(row.pr_pickup_time, Some(1));
    }
}
