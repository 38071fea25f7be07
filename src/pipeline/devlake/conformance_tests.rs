//! Apache DevLake's own end-to-end data for its DORA plugin, carried in `tests/data/devlake/` (see
//! the NOTICE there for its source, licence and commit): the inputs through the CSV adapter must
//! give the expected files back, row by row, every column, nulls included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::csv::{parse_instant, read_csv};
use super::{LinkRow, PrMetricsRow, devlake_links_from_csv, devlake_pr_metrics_from_csv};

/// One case's directory, inside the repository. Missing data fails the test: a conformance test
/// that skips itself proves nothing.
fn case(name: &str) -> PathBuf {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/devlake")).join(name);
    assert!(
        dir.is_dir(),
        "the DevLake conformance data is missing: {} is not a directory; it is part of the \
         repository (tests/data/devlake/), so restore it from git.",
        dir.display()
    );
    dir
}

/// The text cells of a CSV, by column name, one map per row (blank cells absent).
fn cells(path: &Path, columns: &[&str]) -> Vec<BTreeMap<String, String>> {
    let frame = read_csv(path, "expected", columns).unwrap();
    let columns: Vec<_> = columns
        .iter()
        .map(|name| {
            (
                name.to_string(),
                frame.column(name).unwrap().str().unwrap().clone(),
            )
        })
        .collect();
    (0..frame.height())
        .map(|row| {
            columns
                .iter()
                .filter_map(|(name, values)| values.get(row).map(|v| (name.clone(), v.to_owned())))
                .collect()
        })
        .collect()
}

fn instant(text: Option<&String>) -> Option<DateTime<Utc>> {
    text.map(|text| DateTime::from_timestamp_millis(parse_instant(text).unwrap()).unwrap())
}

fn minutes(text: Option<&String>) -> Option<i64> {
    text.map(|text| text.parse().unwrap())
}

#[test]
fn incident_to_deployment_reproduces_devlake() {
    let dir = case("incident_to_deployment");
    let expected: BTreeMap<String, LinkRow> = cells(
        &dir.join("expected_project_incident_deployment_relationships.csv"),
        &["id", "project_name", "deployment_id"],
    )
    .into_iter()
    .map(|row| {
        let link = LinkRow {
            incident_id: row["id"].clone(),
            project: row["project_name"].clone(),
            deployment_id: row["deployment_id"].clone(),
        };
        (link.incident_id.clone(), link)
    })
    .collect();
    assert_eq!(expected.len(), 6, "the expected file keys each incident once");

    let rows = devlake_links_from_csv(&dir).unwrap();
    let actual: BTreeMap<String, LinkRow> = rows
        .iter()
        .map(|link| (link.incident_id.clone(), link.clone()))
        .collect();
    assert_eq!(actual.len(), rows.len(), "an incident linked twice: {rows:#?}");
    assert_eq!(actual, expected);
}

#[test]
fn change_lead_time_reproduces_devlake() {
    let dir = case("change_lead_time");
    let columns = [
        "id",
        "project_name",
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
    let expected: BTreeMap<String, PrMetricsRow> =
        cells(&dir.join("expected_project_pr_metrics.csv"), &columns)
            .into_iter()
            .map(|row| {
                let text = |name: &str| row.get(name).cloned();
                let metrics = PrMetricsRow {
                    id: row["id"].clone(),
                    project: row["project_name"].clone(),
                    first_commit_sha: text("first_commit_sha"),
                    pr_coding_time: minutes(row.get("pr_coding_time")),
                    first_review_id: text("first_review_id"),
                    pr_pickup_time: minutes(row.get("pr_pickup_time")),
                    pr_review_time: minutes(row.get("pr_review_time")),
                    deployment_commit_id: text("deployment_commit_id"),
                    pr_deploy_time: minutes(row.get("pr_deploy_time")),
                    pr_cycle_time: minutes(row.get("pr_cycle_time")).unwrap(),
                    first_commit_authored_date: instant(row.get("first_commit_authored_date")),
                    first_comment_date: instant(row.get("first_comment_date")),
                    pr_created_date: instant(row.get("pr_created_date")).unwrap(),
                    pr_merged_date: instant(row.get("pr_merged_date")).unwrap(),
                    pr_deployed_date: instant(row.get("pr_deployed_date")),
                };
                (metrics.id.clone(), metrics)
            })
            .collect();
    assert_eq!(expected.len(), 6, "the expected file keys each PR once");

    let rows = devlake_pr_metrics_from_csv(&dir).unwrap();
    let actual: BTreeMap<String, PrMetricsRow> = rows.iter().map(|m| (m.id.clone(), m.clone())).collect();
    assert_eq!(actual.len(), rows.len(), "a PR computed twice: {rows:#?}");
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "which PRs get a row (pr6 is not merged)"
    );
    for (id, want) in &expected {
        assert_eq!(&actual[id], want, "PR {id}");
    }
}

#[test]
fn a_missing_table_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = devlake_links_from_csv(dir.path()).unwrap_err().to_string();
    assert!(err.contains("project_mapping.csv"), "{err}");
}

#[test]
fn a_table_without_a_needed_column_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("project_mapping.csv"),
        "project_name,table\nproject1,repos\n",
    )
    .unwrap();
    let err = devlake_links_from_csv(dir.path()).unwrap_err().to_string();
    assert!(err.contains("table `project_mapping`, column `row_id`"), "{err}");
}

#[test]
fn an_unreadable_instant_names_table_column_and_row() {
    let source = case("incident_to_deployment");
    let dir = tempfile::tempdir().unwrap();
    for file in ["project_mapping.csv", "cicd_deployment_commits.csv"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(
        dir.path().join("incidents.csv"),
        "id,created_date,updated_date,table,scope_id\n\
         i1,2022-11-13 23:37:21,,repos,repo1\n\
         i2,13/11/2022,,repos,repo1\n",
    )
    .unwrap();
    let err = devlake_links_from_csv(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("table `incidents`, column `created_date`, row #2: `13/11/2022` is not an instant"),
        "{err}"
    );
}
