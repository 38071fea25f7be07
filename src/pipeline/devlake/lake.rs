//! tandem's canonical tables (the lake's Delta tables) into the `devlake` frames: the mode a user
//! runs to compare tandem with Apache DevLake on the same data.
//!
//! The mapping: a project is a service; deployment commits are the successful, finished production
//! deployments (`SUCCESS`, `PRODUCTION`), each with the previous one of the same repo by
//! `finished_at` as its previous successful deployment (DevLake's `enrichPrevSuccessDeploymentCommits`
//! orders by finish too); a deployment's commit range is the `commits` rows whose `deployment_id`
//! names it; pull requests are `changes`. tandem keeps only `first_commit_at` per change, so that
//! is the PR's single earliest commit (its sha unknown), and the first review is the optional
//! `first_review_at` column of `changes` (no id, no author: by definition someone else's). An
//! incident is created at its `started_at`. This module must not compute what DevLake computes.

use std::path::PathBuf;

use polars::prelude::*;
use tandem_connectors::model::{Change, Commit, Deployment, Incident};

use super::{LinkRow, PrMetricsRow, PrTables};
use crate::pipeline::PipelineError;
use crate::pipeline::codec::polars_error;
use crate::store::codec::{millis, scan_table};

/// The optional column of `changes` that will hold the first review by someone other than the
/// author; read when the file has it.
const FIRST_REVIEW_AT: &str = "first_review_at";

/// Incidents linked to deployments by DevLake's rule, from the lake's Parquet tables (a missing
/// file is an empty table).
///
/// `commits` is not read: DevLake's incident rule uses no commit ranges. It is accepted so both
/// `devlake` entry points take the lake the same way.
pub fn devlake_links_from_lake(
    deployments: &[PathBuf],
    commits: &[PathBuf],
    incidents: &[PathBuf],
) -> Result<Vec<LinkRow>, PipelineError> {
    let _ = commits;
    let incident_frame = scan_table::<Incident>(incidents)?.select([
        col("id"),
        col("service").alias("project"),
        col("started_at").alias("created_at"),
    ]);
    let polars = |source| PipelineError::Polars {
        context: format!(
            "linking incidents to deployments the DevLake way from {} and {}",
            crate::pipeline::codec::describe(deployments),
            crate::pipeline::codec::describe(incidents)
        ),
        source,
    };
    let deployment_commits = deployment_commits(scan_table::<Deployment>(deployments)?).map_err(polars)?;
    let frame = super::incident_links(deployment_commits, incident_frame).map_err(polars)?;
    super::link_rows(&frame).map_err(polars)
}

/// Per merged change, DevLake's lead-time breakdown from the lake's Parquet tables (a missing
/// file is an empty table).
pub fn devlake_pr_metrics_from_lake(
    deployments: &[PathBuf],
    commits: &[PathBuf],
    changes: &[PathBuf],
) -> Result<Vec<PrMetricsRow>, PipelineError> {
    let polars = |source| PipelineError::Polars {
        context: format!(
            "computing DevLake PR lead times from {}, {} and {}",
            crate::pipeline::codec::describe(deployments),
            crate::pipeline::codec::describe(commits),
            crate::pipeline::codec::describe(changes)
        ),
        source,
    };
    let deployment_commits = deployment_commits(scan_table::<Deployment>(deployments)?).map_err(polars)?;
    let commit_ranges = commit_ranges(scan_table::<Commit>(commits)?, deployment_commits.clone());

    let mut changes_frame = scan_table::<Change>(changes)?;
    let has_first_review = changes_frame
        .collect_schema()
        .map_err(|source| {
            polars_error(
                "reading the schema of `changes`".to_owned(),
                std::path::Path::new(&crate::pipeline::codec::describe(changes)),
                source,
            )
        })?
        .contains(FIRST_REVIEW_AT);
    let text_null = || lit(NULL).cast(DataType::String);
    let pull_requests = changes_frame.clone().select([
        col("id"),
        col("service").alias("project"),
        col("repo"),
        // tandem does not keep authors; the only comment it knows is someone else's anyway.
        text_null().alias("author"),
        col("merge_commit_sha"),
        col("created_at"),
        col("merged_at"),
    ]);
    let pr_commits = changes_frame
        .clone()
        .filter(col("first_commit_at").is_not_null())
        .select([
            col("id").alias("pr_id"),
            text_null().alias("sha"),
            col("first_commit_at").alias("authored_at"),
        ]);
    let pr_comments = if has_first_review {
        changes_frame.filter(col(FIRST_REVIEW_AT).is_not_null()).select([
            text_null().alias("id"),
            col("id").alias("pr_id"),
            text_null().alias("author"),
            millis(FIRST_REVIEW_AT).alias("created_at"),
        ])
    } else {
        changes_frame.filter(lit(false)).select([
            text_null().alias("id"),
            col("id").alias("pr_id"),
            text_null().alias("author"),
            col("created_at"),
        ])
    };

    let frame = super::pr_metrics(PrTables {
        deployment_commits,
        commit_ranges,
        pull_requests,
        pr_commits,
        pr_comments,
    })
    .map_err(polars)?;
    super::pr_metrics_rows(&frame).map_err(polars)
}

/// Successful, finished production deployments as deployment commits, each with the previous one
/// of its repo (by `finished_at`, ties by id) as `prev_success_id`.
fn deployment_commits(deployments: LazyFrame) -> PolarsResult<LazyFrame> {
    let previous = col("id").shift(lit(1)).over([col("repo")])?;
    Ok(deployments
        .filter(
            col("is_production")
                .and(col("status").eq(lit("success")))
                .and(col("finished_at").is_not_null()),
        )
        // The window below takes each row's predecessor in frame order within its repo.
        .sort(["repo", "finished_at", "id"], SortMultipleOptions::default())
        .select([
            col("id"),
            col("id").alias("deployment_id"),
            col("service").alias("project"),
            col("sha").alias("commit_sha"),
            lit("SUCCESS").alias("result"),
            lit("PRODUCTION").alias("environment"),
            col("created_at").alias("started_at"),
            col("finished_at"),
            previous.alias("prev_success_id"),
        ]))
}

/// The commits each deployment brought, as DevLake's `commits_diffs`: `(old_sha, new_sha]` is
/// (the previous deployment's sha, this deployment's sha].
fn commit_ranges(commits: LazyFrame, deployment_commits: LazyFrame) -> LazyFrame {
    let brought_by = deployment_commits.clone().select([
        col("id").alias("range_deployment"),
        col("commit_sha").alias("new_sha"),
        col("prev_success_id"),
    ]);
    let previous =
        deployment_commits.select([col("id").alias("prev_id"), col("commit_sha").alias("old_sha")]);
    commits
        .filter(col("deployment_id").is_not_null())
        .select([col("sha").alias("commit_sha"), col("deployment_id")])
        .inner_join(brought_by, col("deployment_id"), col("range_deployment"))
        .left_join(previous, col("prev_success_id"), col("prev_id"))
        .select([col("new_sha"), col("old_sha"), col("commit_sha")])
}
