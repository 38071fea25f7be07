//! The `devlake` mode on tandem's canonical tables: small record sets written to a temporary lake
//! with the codec, every expected value worked out beside it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use polars::prelude::*;
use tandem_connectors::model::{Change, Commit, Deployment, DeploymentStatus, Incident, Table};
use tempfile::TempDir;

use super::{LinkRow, PrMetricsRow, devlake_links_from_lake, devlake_pr_metrics_from_lake};
use crate::store::codec::{frame_of, write_table};

/// An instant in August 2026.
fn aug(day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 8, day, hour, minute, second).unwrap()
}

/// A successful production deployment of `sha` to `repo`, started 10 minutes before it finished.
fn deployment(id: &str, repo: &str, service: Option<&str>, sha: &str, finished: DateTime<Utc>) -> Deployment {
    Deployment {
        change_refs: Vec::new(),
        deployed_by: None,
        id: id.into(),
        source: "gh".into(),
        repo: repo.into(),
        service: service.map(str::to_owned),
        team: None,
        environment: "production".into(),
        is_production: true,
        status: DeploymentStatus::Success,
        sha: sha.into(),
        created_at: finished - chrono::Duration::minutes(10),
        finished_at: Some(finished),
        updated_at: finished,
    }
}

fn commit(repo: &str, sha: &str, deployment_id: Option<&str>) -> Commit {
    Commit {
        author_email: None,
        author_name: None,
        id: format!("gh:{repo}:{sha}"),
        source: "gh".into(),
        repo: repo.into(),
        service: None,
        team: None,
        sha: sha.into(),
        authored_at: aug(1, 0, 0, 0),
        parents: vec![],
        title: sha.into(),
        deployment_id: deployment_id.map(str::to_owned),
        updated_at: aug(1, 0, 0, 0),
    }
}

fn change(
    id: &str,
    service: Option<&str>,
    merge_sha: &str,
    created: DateTime<Utc>,
    merged: Option<DateTime<Utc>>,
    first_commit: Option<DateTime<Utc>>,
) -> Change {
    Change {
        author: None,
        id: id.into(),
        source: "gh".into(),
        repo: format!("acme/{}", service.unwrap_or("legacy")),
        service: service.map(str::to_owned),
        team: None,
        number: 1,
        title: id.into(),
        state: if merged.is_some() { "merged" } else { "open" }.into(),
        created_at: created,
        merged_at: merged,
        merge_commit_sha: Some(merge_sha.into()),
        first_commit_at: first_commit,
        labels: vec![],
        is_revert: false,
        reverts: None,
        updated_at: merged.unwrap_or(created),
    }
}

fn incident(id: &str, service: Option<&str>, started: DateTime<Utc>) -> Incident {
    Incident {
        acknowledged_by: None,
        assignee: None,
        id: id.into(),
        source: "pd".into(),
        number: None,
        title: id.into(),
        service_ref: None,
        team_ref: None,
        service: service.map(str::to_owned),
        team: None,
        severity: None,
        status: "triggered".into(),
        started_at: started,
        acknowledged_at: None,
        resolved_at: None,
        cause_refs: vec![],
        correlation_id: None,
        updated_at: started,
    }
}

/// The deployments every test uses, deliberately not in time order (the previous deployment of a
/// repo must come from sorting, not from the file):
///
/// | id | repo | sha | finished | counts |
/// |---|---|---|---|---|
/// | d5 | acme/api | a5 | 3 Aug 08:20 | yes, previous d2 |
/// | d1 | acme/api | a1 | 1 Aug 10:10 | yes, first of its repo: no previous |
/// | d3 | acme/api | a3 | 2 Aug 10:00 | no: failed |
/// | d4 | acme/api | s4 | 2 Aug 10:30 | no: staging |
/// | d2 | acme/api | a2 | 2 Aug 09:30 | yes, previous d1 |
/// | w2 | acme/web | b2 | 2 Aug 14:00 | yes, previous w1 |
/// | w1 | acme/web | b1 | 1 Aug 11:00 | yes |
/// | l1 | acme/legacy (no service) | c1 | 2 Aug 10:00 | in no project |
fn deployments() -> Vec<Deployment> {
    let mut failed = deployment("d3", "acme/api", Some("api"), "a3", aug(2, 10, 0, 0));
    failed.status = DeploymentStatus::Failure;
    let mut staging = deployment("d4", "acme/api", Some("api"), "s4", aug(2, 10, 30, 0));
    staging.environment = "staging".into();
    staging.is_production = false;
    vec![
        deployment("d5", "acme/api", Some("api"), "a5", aug(3, 8, 20, 0)),
        deployment("d1", "acme/api", Some("api"), "a1", aug(1, 10, 10, 0)),
        failed,
        staging,
        deployment("d2", "acme/api", Some("api"), "a2", aug(2, 9, 30, 0)),
        deployment("w2", "acme/web", Some("web"), "b2", aug(2, 14, 0, 0)),
        deployment("w1", "acme/web", Some("web"), "b1", aug(1, 11, 0, 0)),
        deployment("l1", "acme/legacy", None, "c1", aug(2, 10, 0, 0)),
    ]
}

/// Which deployment brought which merge commit.
fn commits() -> Vec<Commit> {
    vec![
        commit("acme/api", "m0", Some("d1")),
        commit("acme/api", "m1", Some("d2")),
        commit("acme/api", "m2", Some("d5")),
        commit("acme/api", "m3", Some("d4")),
        commit("acme/web", "mw", Some("w2")),
        commit("acme/api", "loose", None),
    ]
}

fn changes() -> Vec<Change> {
    vec![
        // Coding 08:00 → 09:00:30 = 60.5 min → 61; open 09:00:30 → merged 15:00 = 359.5 → 360;
        // deployed by d2 at 2 Aug 09:30, 18.5 h after the merge = 1110; cycle 61 + 360 + 1110.
        change(
            "pr1",
            Some("api"),
            "m1",
            aug(1, 9, 0, 30),
            Some(aug(1, 15, 0, 0)),
            Some(aug(1, 8, 0, 0)),
        ),
        // No commit known; 60 min open; d5 finished 21 h 20 min after the merge = 1280.
        change(
            "pr2",
            Some("api"),
            "m2",
            aug(2, 10, 0, 0),
            Some(aug(2, 11, 0, 0)),
            None,
        ),
        // Brought by d1, the first deployment of its repo: DevLake needs a previous one, so no
        // deployment. The first commit after the opening rounds to a negative coding time: null.
        change(
            "pr0",
            Some("api"),
            "m0",
            aug(1, 6, 0, 0),
            Some(aug(1, 7, 0, 0)),
            Some(aug(1, 6, 1, 0)),
        ),
        // Brought by a staging deployment only: no deployment. 30 s of coding rounds up to 1.
        change(
            "pr3",
            Some("api"),
            "m3",
            aug(2, 8, 0, 0),
            Some(aug(2, 9, 0, 0)),
            Some(aug(2, 7, 59, 30)),
        ),
        // Web: coding 0, open 60, deployed by w2 60 min after the merge; cycle 120.
        change(
            "pw",
            Some("web"),
            "mw",
            aug(2, 12, 0, 0),
            Some(aug(2, 13, 0, 0)),
            Some(aug(2, 12, 0, 0)),
        ),
        // Not merged, and not in any project: no rows.
        change("open", Some("api"), "mx", aug(2, 8, 0, 0), None, None),
        change("legacy", None, "m1", aug(1, 8, 0, 0), Some(aug(1, 9, 0, 0)), None),
    ]
}

struct Lake {
    _dir: TempDir,
    deployments: PathBuf,
    commits: PathBuf,
    changes: PathBuf,
    incidents: PathBuf,
}

fn lake(changes: &[Change], incidents: &[Incident]) -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake {
        deployments: dir.path().join("deployments.parquet"),
        commits: dir.path().join("commits.parquet"),
        changes: dir.path().join("changes.parquet"),
        incidents: dir.path().join("incidents.parquet"),
        _dir: dir,
    };
    write_table(&deployments(), &lake.deployments).unwrap();
    write_table(&commits(), &lake.commits).unwrap();
    write_table(changes, &lake.changes).unwrap();
    write_table(incidents, &lake.incidents).unwrap();
    lake
}

fn pr(
    id: &str,
    project: &str,
    coding: Option<i64>,
    deployment: Option<(&str, i64, DateTime<Utc>)>,
    cycle: i64,
) -> PrMetricsRow {
    let change = changes().into_iter().find(|c| c.id == id).unwrap();
    PrMetricsRow {
        id: id.into(),
        project: project.into(),
        first_commit_sha: None,
        pr_coding_time: coding,
        first_review_id: None,
        pr_pickup_time: None,
        pr_review_time: None,
        deployment_commit_id: deployment.map(|(id, _, _)| id.to_owned()),
        pr_deploy_time: deployment.map(|(_, minutes, _)| minutes),
        pr_cycle_time: cycle,
        first_commit_authored_date: change.first_commit_at,
        first_comment_date: None,
        pr_created_date: change.created_at,
        pr_merged_date: change.merged_at.unwrap(),
        pr_deployed_date: deployment.map(|(_, _, at)| at),
    }
}

fn expected_prs() -> Vec<PrMetricsRow> {
    vec![
        pr("pr0", "api", None, None, 60),
        pr(
            "pr1",
            "api",
            Some(61),
            Some(("d2", 1110, aug(2, 9, 30, 0))),
            61 + 360 + 1110,
        ),
        pr(
            "pr2",
            "api",
            None,
            Some(("d5", 1280, aug(3, 8, 20, 0))),
            60 + 1280,
        ),
        pr("pr3", "api", Some(1), None, 1 + 60),
        pr("pw", "web", Some(0), Some(("w2", 60, aug(2, 14, 0, 0))), 120),
    ]
}

#[test]
fn pr_lead_times_follow_devlake_on_canonical_tables() {
    let lake = lake(&changes(), &[]);
    let rows = devlake_pr_metrics_from_lake(
        std::slice::from_ref(&lake.deployments),
        std::slice::from_ref(&lake.commits),
        std::slice::from_ref(&lake.changes),
    )
    .unwrap();
    assert_eq!(rows, expected_prs());
}

#[test]
fn a_first_review_column_gives_pickup_and_review_times() {
    let lake = lake(&changes(), &[]);
    // `changes` as a later tandem will write it: with `first_review_at` beside the declared
    // columns. pr1 is reviewed at 10:00:30, 60 min after opening and 299.5 → 300 min before
    // the merge; pr2's review comes before its opening: pickup null, review 75.
    let mut frame = frame_of(&changes(), &lake.changes).unwrap();
    let reviews: Vec<Option<i64>> = changes()
        .iter()
        .map(|c| match c.id.as_str() {
            "pr1" => Some(aug(1, 10, 0, 30).timestamp_millis()),
            "pr2" => Some(aug(2, 9, 45, 0).timestamp_millis()),
            _ => None,
        })
        .collect();
    let column = Int64Chunked::from_iter_options("first_review_at".into(), reviews.into_iter())
        .into_datetime(TimeUnit::Milliseconds, Some(polars::prelude::TimeZone::UTC))
        .into_series();
    frame.with_column(column.into_column()).unwrap();
    ParquetWriter::new(File::create(&lake.changes).unwrap())
        .finish(&mut frame)
        .unwrap();

    let rows = devlake_pr_metrics_from_lake(
        std::slice::from_ref(&lake.deployments),
        std::slice::from_ref(&lake.commits),
        std::slice::from_ref(&lake.changes),
    )
    .unwrap();
    let mut expected = expected_prs();
    expected[1].pr_pickup_time = Some(60);
    expected[1].pr_review_time = Some(300);
    expected[1].first_comment_date = Some(aug(1, 10, 0, 30));
    expected[2].pr_review_time = Some(75);
    expected[2].first_comment_date = Some(aug(2, 9, 45, 0));
    assert_eq!(rows, expected);
}

#[test]
fn incidents_link_to_the_latest_earlier_production_deployment_of_their_service() {
    let lake = lake(
        &[],
        &[
            // d2 finishes at 09:30, one minute later: d1, however long ago.
            incident("i1", Some("api"), aug(2, 9, 29, 0)),
            // At the same instant as d2 finishes: DevLake wants strictly before.
            incident("i2", Some("api"), aug(2, 9, 30, 0)),
            // After the failed d3 and the staging d4: still d2.
            incident("i3", Some("api"), aug(2, 11, 0, 0)),
            incident("i4", Some("api"), aug(4, 0, 0, 0)),
            // Before any web deployment finished: no row.
            incident("i5", Some("web"), aug(1, 10, 0, 0)),
            // No service: no project, no row, although l1 finished before it.
            incident("i6", None, aug(3, 0, 0, 0)),
            incident("i7", Some("web"), aug(9, 0, 0, 0)),
        ],
    );
    let rows = devlake_links_from_lake(
        std::slice::from_ref(&lake.deployments),
        std::slice::from_ref(&lake.commits),
        std::slice::from_ref(&lake.incidents),
    )
    .unwrap();
    let link = |incident: &str, project: &str, deployment: &str| LinkRow {
        incident_id: incident.into(),
        project: project.into(),
        deployment_id: deployment.into(),
    };
    assert_eq!(
        rows,
        vec![
            link("i1", "api", "d1"),
            link("i2", "api", "d1"),
            link("i3", "api", "d2"),
            link("i4", "api", "d5"),
            link("i7", "web", "w2"),
        ]
    );
}

#[test]
fn missing_files_are_empty_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = |table: &str| dir.path().join(format!("{table}.parquet"));
    let links = devlake_links_from_lake(
        std::slice::from_ref(&path(Deployment::NAME)),
        std::slice::from_ref(&path(Commit::NAME)),
        std::slice::from_ref(&path(Incident::NAME)),
    )
    .unwrap();
    assert!(links.is_empty());
    let prs = devlake_pr_metrics_from_lake(
        std::slice::from_ref(&path(Deployment::NAME)),
        std::slice::from_ref(&path(Commit::NAME)),
        std::slice::from_ref(&path(Change::NAME)),
    )
    .unwrap();
    assert!(prs.is_empty());

    // Changes but no deployments or commits: lead times without a deployment.
    let lake = lake(&changes(), &[]);
    let prs = devlake_pr_metrics_from_lake(
        std::slice::from_ref(&path(Deployment::NAME)),
        std::slice::from_ref(&path(Commit::NAME)),
        std::slice::from_ref(&lake.changes),
    )
    .unwrap();
    assert_eq!(prs.len(), 5);
    assert!(prs.iter().all(|pr| pr.deployment_commit_id.is_none()));
}
