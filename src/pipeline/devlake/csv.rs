//! DevLake's own tables, exported as CSV, into the `devlake` frames: how the conformance data in
//! `tests/data/devlake/` comes, and how a team can check tandem against its DevLake.
//!
//! Every cell is read as text; blank cells are null. Instants come in two shapes
//! (`2023-04-10T06:51:47.000+00:00` and `2023-4-10 6:51:47`, the latter UTC) and are parsed here
//! in Rust — mixed formats in one column are beyond a single polars `strptime`, and the data is
//! small. Projects come from `project_mapping.csv`. This module must not compute anything DevLake
//! computes: that is [`super::incident_links`] and [`super::pr_metrics`].

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime};
use polars::prelude::*;

use super::{LinkRow, PrMetricsRow, PrTables};
use crate::pipeline::PipelineError;

/// Incidents linked to deployments, from the DevLake tables in `dir`: `cicd_deployment_commits`,
/// `incidents` (`id, created_date, table, scope_id`) and `project_mapping`.
pub fn devlake_links_from_csv(dir: &Path) -> Result<Vec<LinkRow>, PipelineError> {
    let mapping = project_mapping(dir)?;
    let deployment_commits = deployment_commits(dir, mapping.clone())?;

    let path = dir.join("incidents.csv");
    let frame = read_csv(&path, "incidents", &["id", "created_date", "table", "scope_id"])?;
    let frame = with_instants(frame, "incidents", &path, &["created_date"])?;
    // An incident belongs to the project its board or repo (`table`, `scope_id`) maps to.
    let incidents = frame
        .lazy()
        .join(
            mapping,
            [col("table"), col("scope_id")],
            [col("table"), col("row_id")],
            JoinArgs::new(JoinType::Left),
        )
        .select([col("id"), col("project"), col("created_date").alias("created_at")]);

    let polars = |source| PipelineError::Polars {
        context: format!("linking DevLake incidents to deployments in {}", dir.display()),
        source,
    };
    let frame = super::incident_links(deployment_commits, incidents).map_err(polars)?;
    super::link_rows(&frame).map_err(polars)
}

/// Per-PR lead times from the DevLake tables in `dir`: `cicd_deployment_commits`,
/// `commits_diffs`, `pull_requests`, `pull_request_commits`, `pull_request_comments` and
/// `project_mapping`.
pub fn devlake_pr_metrics_from_csv(dir: &Path) -> Result<Vec<PrMetricsRow>, PipelineError> {
    let mapping = project_mapping(dir)?;
    let deployment_commits = deployment_commits(dir, mapping.clone())?;

    let path = dir.join("commits_diffs.csv");
    let commit_ranges = read_csv(
        &path,
        "commits_diffs",
        &["new_commit_sha", "old_commit_sha", "commit_sha"],
    )?
    .lazy()
    .select([
        col("new_commit_sha").alias("new_sha"),
        col("old_commit_sha").alias("old_sha"),
        col("commit_sha"),
    ]);

    let path = dir.join("pull_requests.csv");
    let frame = read_csv(
        &path,
        "pull_requests",
        &[
            "id",
            "base_repo_id",
            "author_id",
            "merge_commit_sha",
            "created_date",
            "merged_date",
        ],
    )?;
    let frame = with_instants(frame, "pull_requests", &path, &["created_date", "merged_date"])?;
    let repos = mapping
        .filter(col("table").eq(lit("repos")))
        .select([col("row_id"), col("project")]);
    let pull_requests = frame
        .lazy()
        .inner_join(repos, col("base_repo_id"), col("row_id"))
        .select([
            col("id"),
            col("project"),
            col("base_repo_id").alias("repo"),
            // DevLake keeps account ids in Go strings: a blank one is "", equal to another "".
            col("author_id").fill_null(lit("")).alias("author"),
            col("merge_commit_sha"),
            col("created_date").alias("created_at"),
            col("merged_date").alias("merged_at"),
        ]);

    let path = dir.join("pull_request_commits.csv");
    let frame = read_csv(
        &path,
        "pull_request_commits",
        &["commit_sha", "pull_request_id", "commit_authored_date"],
    )?;
    let pr_commits = with_instants(frame, "pull_request_commits", &path, &["commit_authored_date"])?
        .lazy()
        .select([
            col("pull_request_id").alias("pr_id"),
            col("commit_sha").alias("sha"),
            col("commit_authored_date").alias("authored_at"),
        ]);

    let path = dir.join("pull_request_comments.csv");
    let frame = read_csv(
        &path,
        "pull_request_comments",
        &["id", "pull_request_id", "created_date", "account_id"],
    )?;
    let pr_comments = with_instants(frame, "pull_request_comments", &path, &["created_date"])?
        .lazy()
        .select([
            col("id"),
            col("pull_request_id").alias("pr_id"),
            col("account_id").fill_null(lit("")).alias("author"),
            col("created_date").alias("created_at"),
        ]);

    let polars = |source| PipelineError::Polars {
        context: format!("computing DevLake PR lead times in {}", dir.display()),
        source,
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

/// `project_mapping.csv` as `project, table, row_id`.
fn project_mapping(dir: &Path) -> Result<LazyFrame, PipelineError> {
    let path = dir.join("project_mapping.csv");
    Ok(
        read_csv(&path, "project_mapping", &["project_name", "table", "row_id"])?
            .lazy()
            .select([col("project_name").alias("project"), col("table"), col("row_id")]),
    )
}

/// `cicd_deployment_commits.csv` as the deployment-commit frame; a row whose scope maps to no
/// project stays, with a null project, because it can still be another row's previous one.
fn deployment_commits(dir: &Path, mapping: LazyFrame) -> Result<LazyFrame, PipelineError> {
    let path = dir.join("cicd_deployment_commits.csv");
    let frame = read_csv(
        &path,
        "cicd_deployment_commits",
        &[
            "id",
            "commit_sha",
            "result",
            "started_date",
            "finished_date",
            "cicd_deployment_id",
            "cicd_scope_id",
            "environment",
            "prev_success_deployment_commit_id",
        ],
    )?;
    let frame = with_instants(
        frame,
        "cicd_deployment_commits",
        &path,
        &["started_date", "finished_date"],
    )?;
    let scopes = mapping
        .filter(col("table").eq(lit("cicd_scopes")))
        .select([col("row_id"), col("project")]);
    Ok(frame
        .lazy()
        .left_join(scopes, col("cicd_scope_id"), col("row_id"))
        .select([
            col("id"),
            col("cicd_deployment_id").alias("deployment_id"),
            col("project"),
            col("commit_sha"),
            col("result"),
            col("environment"),
            col("started_date").alias("started_at"),
            col("finished_date").alias("finished_at"),
            col("prev_success_deployment_commit_id").alias("prev_success_id"),
        ]))
}

/// A DevLake CSV with every column as text (blank = null), refusing a file without `columns`.
pub(super) fn read_csv(
    path: &Path,
    table: &'static str,
    columns: &[&str],
) -> Result<DataFrame, PipelineError> {
    let frame = CsvReadOptions::default()
        .with_has_header(true)
        // No inference: ids such as `1` or `10` must stay text, compared as DevLake compares them.
        .with_infer_schema_length(Some(0))
        .try_into_reader_with_file_path(Some(PathBuf::from(path)))
        .and_then(|reader| reader.finish())
        .map_err(|source| PipelineError::Polars {
            context: format!("reading DevLake table `{table}` ({})", path.display()),
            source,
        })?;
    if let Some(missing) = columns.iter().find(|name| frame.column(name).is_err()) {
        return Err(PipelineError::Schema {
            table,
            path: path.to_owned(),
            column: (*missing).to_owned(),
            message: "missing from the file; export the table with all its columns".to_owned(),
        });
    }
    Ok(frame)
}

/// Replaces text instants by i64 milliseconds (UTC).
pub(super) fn with_instants(
    mut frame: DataFrame,
    table: &'static str,
    path: &Path,
    columns: &[&'static str],
) -> Result<DataFrame, PipelineError> {
    for &column in columns {
        let polars = |source| PipelineError::Polars {
            context: format!("reading column `{column}` of `{table}` ({})", path.display()),
            source,
        };
        let texts = frame
            .column(column)
            .and_then(|c| c.str().cloned())
            .map_err(polars)?;
        let millis = texts
            .iter()
            .enumerate()
            .map(|(row, text)| {
                text.map(|text| {
                    parse_instant(text).ok_or_else(|| PipelineError::Value {
                        table,
                        path: path.to_owned(),
                        column,
                        row: format!("#{}", row + 1),
                        message: format!(
                            "`{text}` is not an instant (`2023-04-10T06:51:47.000+00:00` or `2023-4-10 6:51:47`)"
                        ),
                    })
                })
                .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let values = Int64Chunked::from_iter_options(column.into(), millis.into_iter());
        frame.replace(column, values.into_column()).map_err(polars)?;
    }
    Ok(frame)
}

/// Milliseconds since the epoch of a DevLake instant: RFC 3339, or `Y-M-D h:m:s` (digits not
/// necessarily padded) taken as UTC.
pub(super) fn parse_instant(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.timestamp_millis());
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|at| at.and_utc().timestamp_millis())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn both_instant_shapes_parse_as_utc() {
        let padded = parse_instant("2023-04-10T06:51:47.000+00:00").unwrap();
        assert_eq!(parse_instant("2023-4-10 6:51:47"), Some(padded));
        assert_eq!(parse_instant("2023-04-10 06:51:47"), Some(padded));
        assert_eq!(parse_instant("2023-04-10T08:51:47+02:00"), Some(padded));
        assert_eq!(parse_instant("2023-04-10T06:51:47.250Z"), Some(padded + 250));
        assert_eq!(parse_instant("10/04/2023"), None);
        assert_eq!(parse_instant(""), None);
    }
}
