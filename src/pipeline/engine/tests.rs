//! Hand-computed cases for the weekly metrics: small record sets written to a temporary lake
//! with the codec, then every expected value worked out in the comments beside it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use tandem_connectors::model::{
    Change, ChangeRequest, Commit, Deployment, DeploymentStatus, Incident, Severity, Ticket,
};
use tempfile::TempDir;

use crate::metric::{MetricId, MetricRow};
use crate::pipeline::{Inputs, Options, PipelineError, compute_metrics};
use crate::store::codec::write_table;

use crate::pipeline::testkit::{aug, cell, deployment, incident, options};
use MetricId::*;

fn change(
    number: i64,
    repo: &str,
    created: DateTime<Utc>,
    merged: Option<DateTime<Utc>>,
    first_commit: Option<DateTime<Utc>>,
) -> Change {
    Change {
        author: None,
        id: format!("gh:{repo}:{number}"),
        source: "gh".into(),
        repo: repo.into(),
        service: None,
        team: None,
        number,
        title: format!("Change {number}"),
        state: if merged.is_some() { "merged" } else { "open" }.into(),
        created_at: created,
        merged_at: merged,
        merge_commit_sha: None,
        first_commit_at: first_commit,
        labels: vec![],
        is_revert: false,
        reverts: None,
        updated_at: merged.unwrap_or(created),
    }
}

struct Lake {
    _dir: TempDir,
    deployments: PathBuf,
    changes: PathBuf,
    /// The commits table: no file unless a test writes one (no commits known).
    commits: PathBuf,
    incidents: PathBuf,
    /// A table file that does not exist: an empty table for the other families.
    none: PathBuf,
}

fn lake(deployments: &[Deployment], changes: &[Change], incidents: &[Incident]) -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake {
        deployments: dir.path().join("deployments.parquet"),
        changes: dir.path().join("changes.parquet"),
        commits: dir.path().join("commits.parquet"),
        incidents: dir.path().join("incidents.parquet"),
        none: dir.path().join("none.parquet"),
        _dir: dir,
    };
    write_table(deployments, &lake.deployments).unwrap();
    write_table(changes, &lake.changes).unwrap();
    write_table(incidents, &lake.incidents).unwrap();
    lake
}

fn run(lake: &Lake, opts: &Options) -> Vec<MetricRow> {
    run_kept(lake, opts, None)
}

/// [`run`], keeping the change links in `prepared`.
fn run_kept(lake: &Lake, opts: &Options, prepared: Option<&std::path::Path>) -> Vec<MetricRow> {
    compute_metrics(
        Inputs {
            deployments: std::slice::from_ref(&lake.deployments),
            changes: std::slice::from_ref(&lake.changes),
            commits: std::slice::from_ref(&lake.commits),
            incidents: std::slice::from_ref(&lake.incidents),
            tickets: std::slice::from_ref(&lake.none),
            ticket_transitions: std::slice::from_ref(&lake.none),
            change_requests: std::slice::from_ref(&lake.none),
            quarantine: std::slice::from_ref(&lake.none),
            prepared,
        },
        opts,
    )
    .unwrap()
    .to_rows()
}

#[test]
fn a_week_with_two_deployments_one_failed_has_a_change_failure_rate_of_one_half() {
    let mut staging = deployment("staging", Some("api"), aug(4, 11, 0));
    staging.environment = "staging".into();
    staging.is_production = false;
    let mut failed = deployment("failed", Some("api"), aug(4, 12, 0));
    failed.status = DeploymentStatus::Failure;
    let mut running = deployment("running", Some("api"), aug(4, 13, 0));
    running.status = DeploymentStatus::InProgress;
    running.finished_at = None;
    let lake = lake(
        &[
            deployment("d1", Some("api"), aug(4, 10, 0)),
            deployment("d2", Some("api"), aug(5, 10, 0)),
            staging,
            failed,
            running,
        ],
        &[],
        &[
            // 2 h and 3 h after d2: both go to d2, which counts once.
            incident("i1", Some("api"), Severity::Sev3, aug(5, 12, 0), None),
            incident("i2", Some("api"), Severity::Sev3, aug(5, 13, 0), None),
        ],
    );
    let rows = run(&lake, &options(2, &[]));

    // Only d1 and d2 are production deployments: staging, a failure and an unfinished one are not.
    assert_eq!(cell(&rows, DeploymentCount, "all", Some(0)), (Some(2.0), 2));
    assert_eq!(
        cell(&rows, DeploymentFrequency, "all", Some(0)),
        (Some(2.0 / 7.0), 2)
    );
    assert_eq!(cell(&rows, ChangeFailureRate, "all", Some(0)), (Some(0.5), 2));
    assert_eq!(cell(&rows, ChangeFailureRate, "api", Some(0)), (Some(0.5), 2));
    // The range divides by its 14 days.
    assert_eq!(
        cell(&rows, DeploymentFrequency, "all", None),
        (Some(2.0 / 14.0), 2)
    );
    assert_eq!(cell(&rows, ChangeFailureRate, "all", None), (Some(0.5), 2));
    // The numerator on its own: d2, out of the two production deployments.
    assert_eq!(cell(&rows, FailedDeploymentCount, "all", Some(0)), (Some(1.0), 2));
    assert_eq!(cell(&rows, FailedDeploymentCount, "all", Some(1)), (Some(0.0), 0));
    assert_eq!(cell(&rows, FailedDeploymentCount, "all", None), (Some(1.0), 2));
}

#[test]
fn events_on_a_week_boundary_belong_to_the_week_that_starts_there() {
    // Regression: week numbers from float division put `3 × week` into week 2. Deployments at
    // each Monday 00:00 and one millisecond before it.
    let mut deployments = Vec::new();
    for week in 1..6 {
        let monday = aug(3, 0, 0) + Duration::weeks(week);
        deployments.push(deployment(&format!("on{week}"), Some("api"), monday));
        let before = monday - Duration::milliseconds(1);
        deployments.push(deployment(&format!("before{week}"), Some("api"), before));
    }
    let lake = lake(&deployments, &[], &[]);
    let rows = run(&lake, &options(6, &[]));

    // Week 0 has the one before Monday 10th; weeks 1–4 one on their Monday and one before the
    // next; week 5 only the one on its Monday.
    let counts: Vec<i64> = (0..6)
        .map(|week| cell(&rows, DeploymentCount, "api", Some(week)).1)
        .collect();
    assert_eq!(counts, [1, 2, 2, 2, 2, 1]);
    // Deploy days read each week's deployments by finish: the Sunday before and the Monday on
    // the boundary are two days of the week between them (UTC).
    let days: Vec<Option<f64>> = (0..6)
        .map(|week| cell(&rows, DeployDays, "api", Some(week)).0)
        .collect();
    assert_eq!(
        days,
        [Some(1.0), Some(2.0), Some(2.0), Some(2.0), Some(2.0), Some(1.0)]
    );
}

#[test]
fn an_empty_week_has_zero_counts_and_no_medians() {
    let lake = lake(&[deployment("d1", Some("api"), aug(4, 10, 0))], &[], &[]);
    let rows = run(&lake, &options(2, &[]));

    for scope in ["all", "api"] {
        assert_eq!(cell(&rows, DeploymentCount, scope, Some(1)), (Some(0.0), 0));
        assert_eq!(cell(&rows, DeploymentFrequency, scope, Some(1)), (Some(0.0), 0));
        assert_eq!(cell(&rows, LeadTimeMedian, scope, Some(1)), (None, 0));
        assert_eq!(cell(&rows, ChangeFailureRate, scope, Some(1)), (None, 0));
        assert_eq!(cell(&rows, TimeToRestoreMedian, scope, Some(1)), (None, 0));
        assert_eq!(cell(&rows, TimeToRestoreMean, scope, Some(1)), (None, 0));
        assert_eq!(cell(&rows, DowntimeMinutes, scope, Some(1)), (Some(0.0), 0));
    }
    // The deployment's week still has it, with no failure.
    assert_eq!(cell(&rows, ChangeFailureRate, "api", Some(0)), (Some(0.0), 1));
}

#[test]
fn lead_time_median_of_an_even_count_is_the_mean_of_the_middle_two() {
    // d1 is the first production deployment of acme/api after each merge below; the staging run
    // and the failed one before it must not be taken for it.
    let mut staging = deployment("staging", Some("api"), aug(6, 11, 50));
    staging.is_production = false;
    let mut failed = deployment("failed", Some("api"), aug(6, 11, 55));
    failed.status = DeploymentStatus::Error;
    let lake = lake(
        &[
            deployment("d1", Some("api"), aug(6, 12, 0)),
            deployment("d2", Some("api"), aug(11, 12, 0)),
            staging,
            failed,
        ],
        &[
            // First commit 10:00 → 2 h.
            change(
                1,
                "acme/api",
                aug(6, 10, 30),
                Some(aug(6, 11, 0)),
                Some(aug(6, 10, 0)),
            ),
            // First commit 08:00 → 4 h.
            change(
                2,
                "acme/api",
                aug(6, 9, 0),
                Some(aug(6, 11, 30)),
                Some(aug(6, 8, 0)),
            ),
            // First commit the day before at 12:00 → 24 h.
            change(
                3,
                "acme/api",
                aug(5, 14, 0),
                Some(aug(6, 9, 0)),
                Some(aug(5, 12, 0)),
            ),
            // Commits unknown: from its opening at 02:00 → 10 h; merged at the very instant d1
            // finished, which still counts as contained.
            change(4, "acme/api", aug(6, 2, 0), Some(aug(6, 12, 0)), None),
            // First commit after the deployment (clock skew): −1 h, ignored.
            change(
                5,
                "acme/api",
                aug(6, 11, 0),
                Some(aug(6, 11, 45)),
                Some(aug(6, 13, 0)),
            ),
            // Merged after d1: goes out with d2 in the second week, 5 days 12 h after opening.
            change(6, "acme/api", aug(6, 0, 0), Some(aug(6, 12, 30)), None),
            // Never merged; and a repo that never deploys.
            change(7, "acme/api", aug(6, 1, 0), None, None),
            change(8, "acme/web", aug(6, 1, 0), Some(aug(6, 2, 0)), None),
        ],
        &[],
    );
    let rows = run(&lake, &options(2, &[]));

    // Week 1: 2, 4, 10, 24 h → (4 + 10) / 2.
    assert_eq!(cell(&rows, LeadTimeMedian, "all", Some(0)), (Some(7.0), 4));
    assert_eq!(cell(&rows, LeadTimeMedian, "api", Some(0)), (Some(7.0), 4));
    // Week 2: 132 h alone.
    assert_eq!(cell(&rows, LeadTimeMedian, "api", Some(1)), (Some(132.0), 1));
    // Range: 2, 4, 10, 24, 132 → 10.
    assert_eq!(cell(&rows, LeadTimeMedian, "all", None), (Some(10.0), 5));
}

#[test]
fn lead_time_falls_back_to_the_opening_when_commits_are_unknown() {
    let lake = lake(
        &[deployment("d1", Some("api"), aug(4, 18, 0))],
        &[change(1, "acme/api", aug(4, 6, 0), Some(aug(4, 17, 0)), None)],
        &[],
    );
    let rows = run(&lake, &options(1, &[]));
    assert_eq!(cell(&rows, LeadTimeMedian, "api", Some(0)), (Some(12.0), 1));
}

#[test]
fn a_negative_lead_time_is_not_counted() {
    let lake = lake(
        &[deployment("d1", Some("api"), aug(4, 18, 0))],
        &[change(
            1,
            "acme/api",
            aug(4, 6, 0),
            Some(aug(4, 17, 0)),
            Some(aug(4, 19, 0)),
        )],
        &[],
    );
    let rows = run(&lake, &options(1, &[]));
    assert_eq!(cell(&rows, LeadTimeMedian, "api", Some(0)), (None, 0));
}

#[test]
fn incidents_go_to_the_latest_deployment_of_their_service_within_the_window() {
    let lake = lake(
        &[
            deployment("api1", Some("api"), aug(4, 0, 0)),
            deployment("web1", Some("web"), aug(4, 12, 0)),
            deployment("web2", Some("web"), aug(4, 12, 30)),
            deployment("db1", Some("db"), aug(6, 0, 0)),
            deployment("cache1", Some("cache"), aug(6, 10, 0)),
            deployment("queue1", Some("queue"), aug(6, 12, 0)),
        ],
        &[],
        &[
            // api1 finished 25 h before; the web deployments 12–13 h before are another service.
            incident("api", Some("api"), Severity::Sev1, aug(5, 1, 0), None),
            // Both web2 (the latest), never web1.
            incident("web", Some("web"), Severity::Sev3, aug(4, 13, 0), None),
            incident("web-again", Some("web"), Severity::Sev3, aug(4, 20, 0), None),
            // Exactly 24 h after db1: outside the window.
            incident("db", Some("db"), Severity::Sev2, aug(7, 0, 0), None),
            // Before cache1 finished.
            incident("cache", Some("cache"), Severity::Sev1, aug(6, 9, 0), None),
            // At the instant queue1 finished: inside.
            incident("queue", Some("queue"), Severity::Sev4, aug(6, 12, 0), None),
            // A service with no deployment at all, though web2 finished 30 min before.
            incident("search", Some("search"), Severity::Sev1, aug(4, 13, 0), None),
            // No service: never attributed (api1 finished an hour before).
            incident("unmapped", None, Severity::Sev1, aug(4, 1, 0), None),
        ],
    );
    let rows = run(&lake, &options(1, &[]));

    // web2 and queue1 failed out of six deployments.
    assert_eq!(
        cell(&rows, ChangeFailureRate, "all", Some(0)),
        (Some(2.0 / 6.0), 6)
    );
    assert_eq!(cell(&rows, ChangeFailureRate, "api", Some(0)), (Some(0.0), 1));
    assert_eq!(cell(&rows, ChangeFailureRate, "web", Some(0)), (Some(0.5), 2));
    assert_eq!(cell(&rows, ChangeFailureRate, "db", Some(0)), (Some(0.0), 1));
    assert_eq!(cell(&rows, ChangeFailureRate, "cache", Some(0)), (Some(0.0), 1));
    assert_eq!(cell(&rows, ChangeFailureRate, "queue", Some(0)), (Some(1.0), 1));
    assert_eq!(cell(&rows, ChangeFailureRate, "search", Some(0)), (None, 0));
    assert_eq!(cell(&rows, ChangeFailureRate, "all", None), (Some(2.0 / 6.0), 6));
    assert_eq!(cell(&rows, FailedDeploymentCount, "all", Some(0)), (Some(2.0), 6));
    assert_eq!(cell(&rows, FailedDeploymentCount, "web", Some(0)), (Some(1.0), 2));
    assert_eq!(cell(&rows, FailedDeploymentCount, "api", Some(0)), (Some(0.0), 1));
    assert_eq!(
        cell(&rows, FailedDeploymentCount, "search", Some(0)),
        (Some(0.0), 0)
    );
    // web, web-again and queue of the eight incidents, all by the window.
    assert_eq!(
        cell(&rows, IncidentsAttributedWindowShare, "all", Some(0)),
        (Some(3.0 / 8.0), 8)
    );
    assert_eq!(
        cell(&rows, IncidentsAttributedExplicitShare, "all", Some(0)),
        (Some(0.0), 8)
    );
}

#[test]
fn an_incident_started_before_the_range_counts_as_change_caused_downtime_while_it_lasts_into_it() {
    // Sunday 2 August, the day before the week: api's deployment at 10:00 and its incident at
    // 12:00 (within the 24-hour window), resolved Tuesday 4 August 12:00; web's deployment on
    // Saturday at 23:00 and its incident on Sunday at 06:00, still open.
    let lake = lake(
        &[
            deployment("d1", Some("api"), aug(2, 10, 0)),
            deployment("d2", Some("web"), aug(1, 23, 0)),
        ],
        &[],
        &[
            incident(
                "i1",
                Some("api"),
                Severity::Sev1,
                aug(2, 12, 0),
                Some(aug(4, 12, 0)),
            ),
            incident("i2", Some("web"), Severity::Sev2, aug(2, 6, 0), None),
        ],
    );
    let rows = run(&lake, &options(1, &[]));
    // Monday 00:00 → Tuesday 12:00: 36 hours; the open one runs the whole week.
    assert_eq!(
        cell(&rows, ChangeCausedDowntimeMinutes, "api", Some(0)).0,
        Some(2160.0)
    );
    assert_eq!(
        cell(&rows, ChangeCausedDowntimeMinutes, "web", Some(0)).0,
        Some(10080.0)
    );
}

#[test]
fn a_deployment_25_hours_before_an_incident_is_not_blamed() {
    let lake = lake(
        &[deployment("d1", Some("api"), aug(4, 0, 0))],
        &[],
        &[incident("i1", Some("api"), Severity::Sev1, aug(5, 1, 0), None)],
    );
    let rows = run(&lake, &options(1, &[]));
    assert_eq!(cell(&rows, ChangeFailureRate, "api", Some(0)), (Some(0.0), 1));
}

#[test]
fn a_failure_is_anchored_on_the_deployment_week_not_the_incident_week() {
    let lake = lake(
        &[deployment("d1", Some("api"), aug(9, 23, 0))],
        &[],
        &[incident("i1", Some("api"), Severity::Sev1, aug(10, 1, 0), None)],
    );
    let rows = run(&lake, &options(2, &[]));
    assert_eq!(cell(&rows, ChangeFailureRate, "api", Some(0)), (Some(1.0), 1));
    assert_eq!(cell(&rows, ChangeFailureRate, "api", Some(1)), (None, 0));
}

#[test]
fn time_to_restore_counts_incidents_resolved_in_the_period_of_every_severity() {
    let lake = lake(
        &[],
        &[],
        &[
            incident("a", Some("api"), Severity::Sev1, aug(4, 0, 0), Some(aug(4, 1, 0))),
            incident("b", Some("api"), Severity::Sev2, aug(4, 0, 0), Some(aug(4, 3, 0))),
            incident("c", Some("api"), Severity::Sev4, aug(5, 0, 0), Some(aug(5, 8, 0))),
            // Resolved in the second week.
            incident(
                "d",
                Some("api"),
                Severity::Sev3,
                aug(9, 20, 0),
                Some(aug(10, 4, 0)),
            ),
            incident("e", None, Severity::Sev3, aug(11, 0, 0), Some(aug(11, 2, 0))),
            // Still open: no restore time yet.
            incident("f", Some("api"), Severity::Sev1, aug(5, 0, 0), None),
        ],
    );
    let rows = run(&lake, &options(2, &[]));

    // api, week 1: 1, 3, 8 h.
    assert_eq!(cell(&rows, TimeToRestoreMedian, "api", Some(0)), (Some(3.0), 3));
    assert_eq!(cell(&rows, TimeToRestoreMean, "api", Some(0)), (Some(4.0), 3));
    // Week 2: api has d (8 h); the organisation also has the unmapped e (2 h).
    assert_eq!(cell(&rows, TimeToRestoreMedian, "api", Some(1)), (Some(8.0), 1));
    assert_eq!(cell(&rows, TimeToRestoreMedian, "all", Some(1)), (Some(5.0), 2));
    assert_eq!(cell(&rows, TimeToRestoreMean, "all", Some(1)), (Some(5.0), 2));
    // Range: api 1, 3, 8, 8 → median 5.5, mean 5; org adds 2 → 1, 2, 3, 8, 8: median 3, mean 4.4.
    assert_eq!(cell(&rows, TimeToRestoreMedian, "api", None), (Some(5.5), 4));
    assert_eq!(cell(&rows, TimeToRestoreMean, "api", None), (Some(5.0), 4));
    assert_eq!(cell(&rows, TimeToRestoreMedian, "all", None), (Some(3.0), 5));
    assert_eq!(cell(&rows, TimeToRestoreMean, "all", None), (Some(22.0 / 5.0), 5));
}

#[test]
fn downtime_is_the_union_of_outage_intervals_clipped_to_each_period_summed_over_services() {
    let lake = lake(
        &[],
        &[],
        &[
            // api: 10:00–11:00 and 10:30–12:00 overlap → 10:00–12:00, 120 min.
            incident(
                "a1",
                Some("api"),
                Severity::Sev1,
                aug(4, 10, 0),
                Some(aug(4, 11, 0)),
            ),
            incident(
                "a2",
                Some("api"),
                Severity::Sev2,
                aug(4, 10, 30),
                Some(aug(4, 12, 0)),
            ),
            // Not an outage severity.
            incident(
                "a3",
                Some("api"),
                Severity::Sev3,
                aug(4, 9, 0),
                Some(aug(4, 13, 0)),
            ),
            // Began before the range: only 00:00–00:30 on 3 August counts.
            incident(
                "a4",
                Some("api"),
                Severity::Sev1,
                aug(2, 23, 0),
                Some(aug(3, 0, 30)),
            ),
            // web: Sunday 23:00 → Monday 01:00, one hour in each week.
            incident(
                "w1",
                Some("web"),
                Severity::Sev1,
                aug(9, 23, 0),
                Some(aug(10, 1, 0)),
            ),
            // db: still open, runs to the end of the second week (Monday 17 August 00:00).
            incident("d1", Some("db"), Severity::Sev1, aug(16, 22, 0), None),
            // Unmapped: no service's downtime; 11:30–12:30 extends api's outage in the union of
            // every outage only.
            incident("u1", None, Severity::Sev2, aug(4, 11, 30), Some(aug(4, 12, 30))),
        ],
    );
    let rows = run(&lake, &options(2, &[]));

    // Organisation: the sum of its services' downtime. Week 1: api 150 + web 60 + db 0 = 210,
    // over a1, a2, a4 and w1.
    assert_eq!(cell(&rows, DowntimeMinutes, "all", Some(0)), (Some(210.0), 4));
    // Week 2: web 60 + db 120.
    assert_eq!(cell(&rows, DowntimeMinutes, "all", Some(1)), (Some(180.0), 2));
    // Range: api 150 + web 120 + db 120.
    assert_eq!(cell(&rows, DowntimeMinutes, "all", None), (Some(390.0), 5));
    // Minutes with any service down, u1 included. Week 1: 30 (a4) + 10:00–12:30 (a1 ∪ a2 ∪
    // u1) 150 + 60 (w1) = 240; week 2: 60 (w1) + 120 (d1); range: 30 + 150 + 120 + 120.
    assert_eq!(
        cell(&rows, DowntimeAnyServiceMinutes, "all", Some(0)),
        (Some(240.0), 5)
    );
    assert_eq!(
        cell(&rows, DowntimeAnyServiceMinutes, "all", Some(1)),
        (Some(180.0), 2)
    );
    assert_eq!(
        cell(&rows, DowntimeAnyServiceMinutes, "all", None),
        (Some(420.0), 6)
    );
    // A service's is its downtime.
    assert_eq!(
        cell(&rows, DowntimeAnyServiceMinutes, "api", Some(0)),
        (Some(150.0), 3)
    );

    assert_eq!(cell(&rows, DowntimeMinutes, "api", Some(0)), (Some(150.0), 3));
    assert_eq!(cell(&rows, DowntimeMinutes, "api", Some(1)), (Some(0.0), 0));
    assert_eq!(cell(&rows, DowntimeMinutes, "api", None), (Some(150.0), 3));
    assert_eq!(cell(&rows, DowntimeMinutes, "web", Some(0)), (Some(60.0), 1));
    assert_eq!(cell(&rows, DowntimeMinutes, "web", Some(1)), (Some(60.0), 1));
    assert_eq!(cell(&rows, DowntimeMinutes, "web", None), (Some(120.0), 1));
    assert_eq!(cell(&rows, DowntimeMinutes, "db", Some(0)), (Some(0.0), 0));
    assert_eq!(cell(&rows, DowntimeMinutes, "db", Some(1)), (Some(120.0), 1));
    assert_eq!(cell(&rows, DowntimeMinutes, "db", None), (Some(120.0), 1));
}

#[test]
fn an_open_incident_runs_to_the_end_of_the_week() {
    let lake = lake(
        &[],
        &[],
        &[incident("o", Some("api"), Severity::Sev1, aug(9, 12, 0), None)],
    );
    let rows = run(&lake, &options(1, &[]));
    // Sunday 12:00 → Monday 00:00.
    assert_eq!(cell(&rows, DowntimeMinutes, "api", Some(0)), (Some(720.0), 1));
}

#[test]
fn org_and_service_scopes_cover_configured_and_found_services() {
    let lake = lake(
        &[
            deployment("a", Some("api"), aug(4, 10, 0)),
            deployment("w1", Some("web"), aug(4, 11, 0)),
            deployment("w2", Some("web"), aug(5, 11, 0)),
            deployment("u", None, aug(5, 12, 0)),
        ],
        &[],
        &[],
    );
    let rows = run(&lake, &options(1, &["billing", "api"]));

    // The unmapped deployment counts for the organisation only.
    assert_eq!(cell(&rows, DeploymentCount, "all", Some(0)), (Some(4.0), 4));
    assert_eq!(cell(&rows, DeploymentCount, "api", Some(0)), (Some(1.0), 1));
    assert_eq!(cell(&rows, DeploymentCount, "web", Some(0)), (Some(2.0), 2));
    // A configured service with no data still has its rows.
    assert_eq!(cell(&rows, DeploymentCount, "billing", Some(0)), (Some(0.0), 0));
    // Small samples carry their n and are marked insufficient; the value is still given.
    let web = rows
        .iter()
        .find(|r| r.metric == "change_failure_rate" && r.scope == "web" && r.grain == "week")
        .unwrap();
    assert_eq!((web.value, web.n, web.insufficient()), (Some(0.0), 2, true));
    let org = rows
        .iter()
        .find(|r| r.metric == "deployment_count" && r.scope == "all" && r.grain == "range")
        .unwrap();
    // A count is not a sample: four deployments are four deployments.
    assert!(!org.insufficient());
}

#[test]
fn rows_come_in_metric_scope_week_then_range_order() {
    let lake = lake(&[deployment("a", Some("web"), aug(4, 10, 0))], &[], &[]);
    let rows = run(&lake, &options(2, &["api"]));

    let mut expected = Vec::new();
    for metric in MetricId::CORE {
        for (scope_type, scope) in [("org", "all"), ("service", "api"), ("service", "web")] {
            for (grain, start, end) in [
                ("week", aug(3, 0, 0), aug(10, 0, 0)),
                ("week", aug(10, 0, 0), aug(17, 0, 0)),
                ("range", aug(3, 0, 0), aug(17, 0, 0)),
            ] {
                expected.push((
                    metric.as_str(),
                    metric.unit(),
                    scope_type,
                    scope,
                    grain,
                    start,
                    end,
                ));
            }
        }
    }
    // The core set comes first, in this order; other families follow.
    let actual: Vec<_> = rows[..expected.len()]
        .iter()
        .map(|r| {
            (
                r.metric.as_str(),
                r.unit.as_str(),
                r.scope_type.as_str(),
                r.scope.as_str(),
                r.grain.as_str(),
                r.period_start,
                r.period_end,
            )
        })
        .collect();
    assert_eq!(actual, expected);
}

#[test]
fn missing_table_files_are_empty_tables() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here.parquet");
    let rows = compute_metrics(
        Inputs {
            deployments: std::slice::from_ref(&missing),
            changes: std::slice::from_ref(&missing),
            commits: std::slice::from_ref(&missing),
            incidents: std::slice::from_ref(&missing),
            tickets: std::slice::from_ref(&missing),
            ticket_transitions: std::slice::from_ref(&missing),
            change_requests: std::slice::from_ref(&missing),
            quarantine: std::slice::from_ref(&missing),
            prepared: None,
        },
        &options(1, &["api"]),
    )
    .unwrap()
    .to_rows();
    // 7 core metrics × (org + api) × (one week + the range).
    let core = rows
        .iter()
        .filter(|r| MetricId::CORE.iter().any(|m| m.as_str() == r.metric))
        .count();
    assert_eq!(core, 28);
    assert_eq!(cell(&rows, DeploymentCount, "api", None), (Some(0.0), 0));
    assert_eq!(cell(&rows, LeadTimeMedian, "all", Some(0)), (None, 0));
}

#[test]
fn a_weekly_range_must_start_on_a_monday_and_have_weeks() {
    use crate::metric::calendar::{Calendar, Grain};
    let utc = chrono_tz::Tz::UTC;
    let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 8, d).unwrap();
    assert!(
        Calendar::new(utc, Grain::Week, day(4), day(11)).is_err(),
        "a Tuesday"
    );
    assert!(
        Calendar::new(utc, Grain::Week, day(3), day(3)).is_err(),
        "no weeks"
    );
    let lake = lake(&[], &[], &[]);
    let inputs = Inputs {
        deployments: std::slice::from_ref(&lake.deployments),
        changes: std::slice::from_ref(&lake.changes),
        commits: std::slice::from_ref(&lake.commits),
        incidents: std::slice::from_ref(&lake.incidents),
        tickets: std::slice::from_ref(&lake.none),
        ticket_transitions: std::slice::from_ref(&lake.none),
        change_requests: std::slice::from_ref(&lake.none),
        quarantine: std::slice::from_ref(&lake.none),
        prepared: None,
    };
    let backwards = Options {
        attribution_window: Duration::hours(-1),
        ..options(1, &[])
    };
    assert!(matches!(
        compute_metrics(inputs, &backwards),
        Err(PipelineError::Options(_))
    ));
}

#[test]
fn months_in_the_report_time_zone_take_events_by_local_date() {
    use crate::metric::calendar::{Calendar, Grain};
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    // 23:30 UTC on Oct 31 is 00:30 on Nov 1 in Berlin (CET, UTC+1): a November deployment.
    let lake = lake(
        &[
            deployment("a", Some("web"), at("2026-10-31T23:30:00Z")),
            deployment("b", Some("web"), at("2026-10-31T22:59:00Z")),
            deployment("c", Some("web"), at("2026-11-30T22:59:59Z")),
        ],
        &[],
        &[],
    );
    let months = Calendar::new(
        berlin,
        Grain::Month,
        chrono::NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
        chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
    )
    .unwrap();
    let opts = Options {
        calendar: months,
        ..options(1, &[])
    };
    let rows = run(&lake, &opts);
    let count = |grain: &str, start: &str| {
        rows.iter()
            .find(|r| {
                r.metric == "deployment_count"
                    && r.scope == "all"
                    && r.grain == grain
                    && r.period_start == at(start)
            })
            .map(|r| (r.value, r.n, r.period_end))
            .unwrap()
    };
    // October in Berlin: Oct 1 00:00 CEST (UTC+2) to Nov 1 00:00 CET (UTC+1).
    assert_eq!(
        count("month", "2026-09-30T22:00:00Z"),
        (Some(1.0), 1, at("2026-10-31T23:00:00Z"))
    );
    assert_eq!(
        count("month", "2026-10-31T23:00:00Z"),
        (Some(2.0), 2, at("2026-11-30T23:00:00Z"))
    );
    assert_eq!(
        count("range", "2026-09-30T22:00:00Z"),
        (Some(3.0), 3, at("2026-11-30T23:00:00Z"))
    );
    // Frequency divides by local calendar days: 31 in October, 30 in November.
    let freq = rows
        .iter()
        .find(|r| {
            r.metric == "deployment_frequency"
                && r.scope == "all"
                && r.grain == "month"
                && r.period_start == at("2026-10-31T23:00:00Z")
        })
        .unwrap();
    assert_eq!(freq.value, Some(2.0 / 30.0));
}

#[test]
fn a_team_row_pools_its_services_records() {
    // web and api belong to team "shop"; db to no team. Downtime: web 10:00–11:00 (60) and api
    // 10:30–12:00 (90) overlap: the team's downtime is their sum, 150 minutes, and some service of
    // the team was down 10:00–12:00, 120 minutes.
    let lake = lake(
        &[
            deployment("a", Some("web"), aug(3, 9, 0)),
            deployment("b", Some("api"), aug(4, 9, 0)),
            deployment("c", Some("db"), aug(4, 10, 0)),
        ],
        &[],
        &[
            incident(
                "i1",
                Some("web"),
                Severity::Sev1,
                aug(5, 10, 0),
                Some(aug(5, 11, 0)),
            ),
            incident(
                "i2",
                Some("api"),
                Severity::Sev2,
                aug(5, 10, 30),
                Some(aug(5, 12, 0)),
            ),
            incident(
                "i3",
                Some("db"),
                Severity::Sev1,
                aug(5, 10, 0),
                Some(aug(5, 13, 0)),
            ),
        ],
    );
    let opts = Options {
        teams: [("web", "shop"), ("api", "shop")]
            .into_iter()
            .map(|(s, t)| (s.to_owned(), t.to_owned()))
            .collect(),
        ..options(1, &["web", "api", "db"])
    };
    let rows = run(&lake, &opts);
    let team = |metric: &str| {
        rows.iter()
            .find(|r| r.metric == metric && r.scope_type == "team" && r.scope == "shop" && r.grain == "week")
            .map(|r| (r.value, r.n))
            .unwrap()
    };
    assert_eq!(team("deployment_count"), (Some(2.0), 2));
    assert_eq!(team("downtime_minutes"), (Some(150.0), 2));
    assert_eq!(team("downtime_any_service_minutes"), (Some(120.0), 2));
    // Deploy days: the team's services deployed on 3 and 4 Aug; the organisation on the same two
    // dates (b and c share the 4th), and db on one.
    assert_eq!(team("deploy_days"), (Some(2.0), 2));
    assert_eq!(cell(&rows, DeployDays, "all", Some(0)), (Some(2.0), 2));
    assert_eq!(cell(&rows, DeployDays, "db", Some(0)), (Some(1.0), 1));
    assert!(
        !rows.iter().any(|r| r.scope_type == "team" && r.scope != "shop"),
        "only teams from the mapping"
    );
}

#[test]
fn a_rollback_remedies_a_failed_deployment_without_an_incident() {
    let with_sha = |id: &str, sha: &str, at: DateTime<Utc>| Deployment {
        change_refs: Vec::new(),
        sha: sha.into(),
        ..deployment(id, Some("web"), at)
    };
    // b (s2) is rolled back to s1 by c two hours later; a has no successor with an earlier sha.
    // An incident 1 h after d is attributed to d and resolved 3 h after d finished.
    let lake = lake(
        &[
            with_sha("a", "s1", aug(3, 9, 0)),
            with_sha("b", "s2", aug(3, 10, 0)),
            with_sha("c", "s1", aug(3, 12, 0)),
            with_sha("d", "s3", aug(4, 9, 0)),
        ],
        &[],
        &[incident(
            "i",
            Some("web"),
            Severity::Sev2,
            aug(4, 10, 0),
            Some(aug(4, 12, 0)),
        )],
    );
    let rows = run(&lake, &options(1, &["web"]));
    let row = rows
        .iter()
        .find(|r| r.metric == "failed_deployment_recovery_median" && r.scope == "web" && r.grain == "week")
        .unwrap();
    // Recoveries: b 2 h (rollback), d 3 h (incident resolved) → median 2.5 h of 2.
    assert_eq!((row.value, row.n), (Some(2.5), 2));
    let days = rows
        .iter()
        .find(|r| r.metric == "deploy_days" && r.scope == "web" && r.grain == "week")
        .unwrap();
    assert_eq!((days.value, days.n), (Some(2.0), 2), "Aug 3 and Aug 4");
    // Both failure signals count: b rolled back, d with an incident; 2 of 4 deployments.
    assert_eq!(cell(&rows, ChangeFailureRate, "web", Some(0)), (Some(0.5), 4));
}

#[test]
fn data_quality_shows_how_much_data_stands_behind_the_numbers() {
    let mapped = |c: Change| Change {
        service: Some("web".into()),
        ..c
    };
    let lake = lake(
        &[
            deployment("a", Some("web"), aug(3, 9, 0)),
            deployment("b", Some("web"), aug(4, 9, 0)),
            deployment("x", None, aug(4, 10, 0)),
        ],
        &[
            // Merged before b: shipped by b. Merged after b: never deployed in the data.
            mapped(change(1, "acme/web", aug(3, 10, 0), Some(aug(3, 12, 0)), None)),
            mapped(change(2, "acme/web", aug(4, 10, 0), Some(aug(4, 11, 0)), None)),
        ],
        &[
            incident(
                "i1",
                Some("web"),
                Severity::Sev2,
                aug(4, 12, 0),
                Some(aug(4, 13, 0)),
            ),
            incident("i2", None, Severity::Sev2, aug(5, 12, 0), Some(aug(5, 13, 0))),
        ],
    );
    let rows = run(&lake, &options(1, &["web"]));
    let get = |metric: &str, scope: &str| {
        rows.iter()
            .find(|r| r.metric == metric && r.scope == scope && r.grain == "week")
            .map(|r| (r.value, r.n))
    };
    assert_eq!(get("changes_deployed_share", "all"), Some((Some(0.5), 2)));
    assert_eq!(get("incidents_mapped_share", "all"), Some((Some(0.5), 2)));
    assert_eq!(get("incidents_mapped_share", "web"), None, "organisation only");
    // i1 started 3 h after b finished: attributed; i2 has no service: not attributable.
    assert_eq!(get("incidents_attributed_share", "all"), Some((Some(0.5), 2)));
    // Deployment x and incident i2 map to no service.
    assert_eq!(get("unmapped_records", "all"), Some((Some(2.0), 2)));
    // a is acme/web's first deployment, x acme/unmapped's.
    assert_eq!(get("deployments_without_baseline", "all"), Some((Some(2.0), 2)));
    assert_eq!(get("deployments_without_baseline", "web"), Some((Some(1.0), 1)));
}

#[test]
fn a_deployed_revert_fails_the_deployment_it_reverts_and_counts_as_rework() {
    let web = |c: Change| Change {
        service: Some("web".into()),
        ..c
    };
    let revert = Change {
        title: "Revert \"Change 1\"".into(),
        is_revert: true,
        reverts: Some(1),
        ..web(change(2, "acme/web", aug(4, 8, 0), Some(aug(4, 8, 30)), None))
    };
    let hotfix = Change {
        labels: vec!["HotFix".into()],
        ..web(change(3, "acme/web", aug(5, 8, 0), Some(aug(5, 8, 30)), None))
    };
    let lake = lake(
        &[
            deployment("a", Some("web"), aug(3, 12, 0)), // ships change 1
            deployment("b", Some("web"), aug(4, 9, 0)),  // ships the revert
            deployment("c", Some("web"), aug(5, 9, 0)),  // ships the hotfix
            deployment("d", Some("web"), aug(6, 9, 0)),  // ships nothing new
        ],
        &[
            web(change(1, "acme/web", aug(3, 9, 0), Some(aug(3, 10, 0)), None)),
            revert,
            hotfix,
        ],
        &[],
    );
    let rows = run(&lake, &options(1, &["web"]));
    // a failed (its change was reverted by a deployed revert): 1 of 4.
    assert_eq!(cell(&rows, ChangeFailureRate, "web", Some(0)), (Some(0.25), 4));
    // b shipped a revert, c a hotfix (label case ignored): 2 of 4.
    let rework = rows
        .iter()
        .find(|r| r.metric == "rework_rate" && r.scope == "web" && r.grain == "week")
        .unwrap();
    assert_eq!((rework.value, rework.n), (Some(0.5), 4));
    // a is remedied when the revert ships with b: Tuesday 09:00 − Monday 12:00 = 21 h.
    assert_eq!(
        cell(&rows, FailedDeploymentRecoveryMedian, "web", Some(0)),
        (Some(21.0), 1)
    );
}

#[test]
fn an_incident_that_names_its_cause_is_attributed_to_it_before_the_window_is_tried() {
    let with_sha = |id: &str, service: &str, sha: &str, at: DateTime<Utc>| Deployment {
        change_refs: Vec::new(),
        sha: sha.into(),
        ..deployment(id, Some(service), at)
    };
    let named = |id: &str, refs: &[&str], at: DateTime<Utc>| Incident {
        cause_refs: refs.iter().map(|r| r.to_string()).collect(),
        ..incident(id, Some("web"), Severity::Sev3, at, Some(at + Duration::hours(1)))
    };
    let lake = lake(
        &[
            // Three days before the incident, another service: only an explicit reference links it.
            with_sha("a", "api", "abcdef1234567890", aug(3, 9, 0)),
            // One hour before the incident, same service: the window would pick it.
            with_sha("b", "web", "0011223344556677", aug(6, 8, 0)),
        ],
        &[],
        &[
            named("i1", &["ABCDEF12"], aug(6, 9, 0)),
            // Too short to be a sha, and no deployment has this id: falls back to the window.
            named("i2", &["abc"], aug(6, 9, 30)),
        ],
    );
    let rows = run(&lake, &options(1, &["api", "web"]));
    // a is failed by i1's reference (case-insensitive prefix), b by i2 through the window.
    assert_eq!(cell(&rows, ChangeFailureRate, "api", Some(0)), (Some(1.0), 1));
    assert_eq!(cell(&rows, ChangeFailureRate, "web", Some(0)), (Some(1.0), 1));
}

#[test]
fn devlake_attribution_has_no_window_and_ignores_named_causes() {
    let lake = lake(
        &[
            deployment("a", Some("web"), aug(3, 9, 0)),
            deployment("b", Some("api"), aug(3, 10, 0)),
        ],
        &[],
        &[Incident {
            // Names b, but DevLake's rule takes the latest deployment of the same service: a,
            // three days earlier, far outside tandem's 24 h window.
            cause_refs: vec!["gh:b".into()],
            ..incident("i", Some("web"), Severity::Sev3, aug(6, 9, 0), None)
        }],
    );
    let chain = run(&lake, &options(1, &["web", "api"]));
    assert_eq!(cell(&chain, ChangeFailureRate, "web", Some(0)), (Some(0.0), 1));
    assert_eq!(
        cell(&chain, ChangeFailureRate, "api", Some(0)),
        (Some(1.0), 1),
        "the named cause"
    );
    let devlake = Options {
        attribution: crate::pipeline::Attribution::Devlake,
        ..options(1, &["web", "api"])
    };
    let rows = run(&lake, &devlake);
    assert_eq!(cell(&rows, ChangeFailureRate, "web", Some(0)), (Some(1.0), 1));
    assert_eq!(cell(&rows, ChangeFailureRate, "api", Some(0)), (Some(0.0), 1));
}

/// A commit of `acme/api` with its parents, brought by the compare of deployment `deployment`.
fn commit(sha: &str, parents: &[&str], deployment: Option<&str>) -> Commit {
    Commit {
        id: format!("gh:acme/api:{sha}"),
        source: "gh".into(),
        repo: "acme/api".into(),
        service: None,
        team: None,
        sha: sha.into(),
        authored_at: aug(1, 0, 0),
        parents: parents.iter().map(|p| p.to_string()).collect(),
        title: sha.into(),
        deployment_id: deployment.map(|d| format!("gh:{d}")),
        author_name: None,
        author_email: None,
        updated_at: aug(1, 0, 0),
    }
}

/// The method of the one row of `metric` for `scope` in week `week` (`None`: the range).
fn method(rows: &[MetricRow], metric: MetricId, scope: &str, week: Option<i64>) -> Option<String> {
    let grain = if week.is_some() { "week" } else { "range" };
    let start = aug(3, 0, 0) + Duration::weeks(week.unwrap_or(0));
    rows.iter()
        .find(|r| {
            r.metric == metric.as_str() && r.scope == scope && r.grain == grain && r.period_start == start
        })
        .unwrap()
        .method
        .clone()
}

#[test]
fn changes_link_by_commit_ancestry_where_commits_are_known_and_by_time_where_not() {
    let at = |d: &str, sha: &str, finished| Deployment {
        change_refs: Vec::new(),
        sha: sha.into(),
        ..deployment(d, Some("api"), finished)
    };
    let deployments = [
        // The first deployment: no baseline, so no compare and no commits.
        at("d1", "a1", aug(4, 10, 0)),
        at("d2", "b2", aug(5, 10, 0)),
        at("d3", "c3", aug(6, 10, 0)),
        // Another repo whose commits are unknown: time only.
        deployment("w1", Some("web"), aug(4, 12, 0)),
    ];
    let commits = [
        // d2's compare: m2 then b2. m2 now names d3, as a later compare after a rollback
        // rewrites it; the walk from d2's sha still reaches it first.
        commit("m2", &["a1"], Some("d3")),
        commit("b2", &["m2"], Some("d2")),
        // d3's compare: m4 then c3; m6 has a parent the lake does not hold, so only the
        // deployment its compare names can claim it.
        commit("m4", &["b2"], Some("d3")),
        commit("c3", &["m4"], Some("d3")),
        commit("m6", &["elsewhere"], Some("d3")),
    ];
    // A change of `repo` opened 30 min after its first commit, merged at `merged`.
    let merged = |number, repo: &str, first: DateTime<Utc>, merged, sha: &str| Change {
        service: Some(repo.trim_start_matches("acme/").to_owned()),
        merge_commit_sha: Some(sha.into()),
        ..change(
            number,
            repo,
            first + Duration::minutes(30),
            Some(merged),
            Some(first),
        )
    };
    let changes = [
        // Merged before the first deployment: its merge commit is unknown, so by time → d1, 4 h.
        merged(1, "acme/api", aug(4, 6, 0), aug(4, 8, 0), "m1"),
        // Merged (by the record) an hour after d2 finished, but d2's commits contain it: d2 by
        // ancestry, where time would pick d3. Lead 6 h; deploy wait −1 h, left out and counted.
        merged(2, "acme/api", aug(5, 4, 0), aug(5, 11, 0), "m2"),
        // d2's own head: 3 h.
        merged(3, "acme/api", aug(5, 7, 0), aug(5, 9, 0), "b2"),
        // d3 by ancestry: 2 h.
        merged(4, "acme/api", aug(6, 8, 0), aug(6, 9, 0), "m4"),
        // Merged before d3 but not in its commits: never deployed, though time would pick d3.
        merged(5, "acme/api", aug(5, 11, 0), aug(5, 12, 0), "m5"),
        // d3 by the compare that brought it: 1 h.
        merged(6, "acme/api", aug(6, 9, 0), aug(6, 9, 30), "M6"),
        // web: w1 by time, 4 h.
        merged(1, "acme/web", aug(4, 8, 0), aug(4, 9, 0), "w"),
    ];
    let lake = lake(&deployments, &changes, &[]);
    write_table(&commits, &lake.commits).unwrap();
    let rows = run(&lake, &options(2, &[]));

    // api leads 1, 2, 3, 4 (time), 6 → 3; with web's 4: 1, 2, 3, 4, 4, 6 → 3.5.
    assert_eq!(cell(&rows, LeadTimeMedian, "api", Some(0)), (Some(3.0), 5));
    assert_eq!(cell(&rows, LeadTimeMedian, "all", Some(0)), (Some(3.5), 6));
    assert_eq!(cell(&rows, LeadTimeMedian, "web", Some(0)), (Some(4.0), 1));
    assert_eq!(
        method(&rows, LeadTimeMedian, "api", Some(0)).as_deref(),
        Some("ancestry+time")
    );
    assert_eq!(
        method(&rows, LeadTimeMedian, "web", Some(0)).as_deref(),
        Some("time")
    );
    assert_eq!(
        method(&rows, LeadTimeMedian, "api", Some(1)),
        None,
        "no changes, no method"
    );
    // p90 by linear interpolation: api 1, 2, 3, 4, 6 → position 3.6 → 4 + 0.6 × 2 = 5.2; the
    // organisation's 1, 2, 3, 4, 4, 6 → position 4.5 → 4 + 0.5 × 2 = 5.
    let (p90, n) = cell(&rows, LeadTimeP90, "api", Some(0));
    assert_eq!(n, 5);
    assert!((p90.unwrap() - 5.2).abs() < 1e-9, "{p90:?}");
    let (p90, n) = cell(&rows, LeadTimeP90, "all", Some(0));
    assert_eq!(n, 6);
    assert!((p90.unwrap() - 5.0).abs() < 1e-9, "{p90:?}");
    assert_eq!(
        method(&rows, LeadTimeP90, "api", Some(0)).as_deref(),
        Some("ancestry+time")
    );
    // Deploy wait: #1 2 h, #3 1 h, #4 1 h, #6 0.5 h (#2's −1 h is left out) → 1 h.
    assert_eq!(
        cell(&rows, LeadTimeDeployWaitMedian, "api", Some(0)),
        (Some(1.0), 4)
    );
    // Coding: 0.5 h for each of the five deployed api changes; review: merge − opening.
    assert_eq!(cell(&rows, LeadTimeCodingMedian, "api", Some(0)), (Some(0.5), 5));
    // Review: #1 1.5, #2 6.5, #3 1.5, #4 0.5, #6 0 → 1.5.
    assert_eq!(cell(&rows, LeadTimeReviewMedian, "api", Some(0)), (Some(1.5), 5));
    assert_eq!(
        method(&rows, LeadTimeReviewMedian, "api", Some(0)).as_deref(),
        Some("ancestry+time")
    );

    // Six api changes merged in week 0, five linked: four by ancestry (#2, #3, #4, #6), one by
    // time (#1); #5 is not.
    let (share, n) = cell(&rows, ChangesDeployedShare, "api", Some(0));
    assert_eq!(n, 6);
    assert!((share.unwrap() - 5.0 / 6.0).abs() < 1e-12);
    let (ancestry, _) = cell(&rows, ChangesLinkedAncestryShare, "api", Some(0));
    assert!((ancestry.unwrap() - 4.0 / 6.0).abs() < 1e-12);
    let (time, _) = cell(&rows, ChangesLinkedTimeShare, "api", Some(0));
    assert!((time.unwrap() - 1.0 / 6.0).abs() < 1e-12);
    assert_eq!(
        cell(&rows, ChangesLinkedTimeShare, "web", Some(0)),
        (Some(1.0), 1)
    );
    assert_eq!(
        method(&rows, ChangesDeployedShare, "api", Some(0)).as_deref(),
        Some("ancestry+time")
    );
    // #2's negative deploy wait, out of the five deployed api changes.
    assert_eq!(cell(&rows, ChangesNegativeSpans, "api", Some(0)), (Some(1.0), 5));
    assert_eq!(cell(&rows, ChangesNegativeSpans, "all", Some(0)), (Some(1.0), 6));
    // d1 and w1 are the first deployments of their repos.
    assert_eq!(
        cell(&rows, DeploymentsWithoutBaseline, "all", Some(0)),
        (Some(2.0), 2)
    );

    // Attribution-based rows name the attribution mode; rows with one way only name none.
    assert_eq!(
        method(&rows, ChangeFailureRate, "api", Some(0)).as_deref(),
        Some("chain")
    );
    assert_eq!(
        method(&rows, FailedDeploymentCount, "all", None).as_deref(),
        Some("chain")
    );
    assert_eq!(method(&rows, DeploymentCount, "api", Some(0)), None);
    let devlake = Options {
        attribution: crate::pipeline::Attribution::Devlake,
        ..options(2, &[])
    };
    let rows = run(&lake, &devlake);
    assert_eq!(
        method(&rows, IncidentsAttributedShare, "all", Some(0)).as_deref(),
        Some("devlake")
    );
    assert_eq!(
        method(&rows, ChangeCausedDowntimeMinutes, "api", None).as_deref(),
        Some("devlake")
    );
}

#[test]
fn without_commits_every_change_links_by_time() {
    // The same shape with an empty commits table: #2 goes to the first deployment finished after
    // its merge, d2 at 10:00 on the 5th for a merge at 09:00.
    let deployments = [
        Deployment {
            change_refs: Vec::new(),
            sha: "a1".into(),
            ..deployment("d1", Some("api"), aug(4, 10, 0))
        },
        Deployment {
            change_refs: Vec::new(),
            sha: "b2".into(),
            ..deployment("d2", Some("api"), aug(5, 10, 0))
        },
    ];
    let changes = [
        change(
            1,
            "acme/api",
            aug(4, 7, 0),
            Some(aug(4, 8, 0)),
            Some(aug(4, 6, 0)),
        ),
        change(
            2,
            "acme/api",
            aug(5, 7, 0),
            Some(aug(5, 9, 0)),
            Some(aug(5, 6, 0)),
        ),
        // After the last deployment: not deployed.
        change(3, "acme/api", aug(5, 10, 0), Some(aug(5, 11, 0)), None),
    ];
    let lake = lake(&deployments, &changes, &[]);
    let rows = run(&lake, &options(1, &[]));
    // 4 h and 4 h.
    assert_eq!(cell(&rows, LeadTimeMedian, "api", Some(0)), (Some(4.0), 2));
    assert_eq!(
        method(&rows, LeadTimeMedian, "api", Some(0)).as_deref(),
        Some("time")
    );
    assert_eq!(
        cell(&rows, ChangesLinkedAncestryShare, "all", Some(0)).0,
        Some(0.0)
    );
    let (time, n) = cell(&rows, ChangesLinkedTimeShare, "all", Some(0));
    assert_eq!(n, 3);
    assert!((time.unwrap() - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn an_incident_naming_a_change_or_a_change_request_fails_the_deployment_that_shipped_it() {
    let at = |d: &str, service: &str, sha: &str, finished| Deployment {
        change_refs: Vec::new(),
        sha: sha.into(),
        ..deployment(d, Some(service), finished)
    };
    let deployments = [
        at("d1", "api", "aaa1111", aug(4, 10, 0)),
        at("d2", "api", "bbb2222", aug(5, 10, 0)),
        at("d3", "api", "ccc3333", aug(6, 10, 0)),
        at("w1", "web", "ddd4444", aug(5, 12, 0)),
    ];
    let of_api = |number, merged| Change {
        service: Some("api".into()),
        ..change(number, "acme/api", aug(3, 9, 0), Some(merged), None)
    };
    // By time (no commits): #7 → d1, #8 → d2.
    let changes = [of_api(7, aug(4, 9, 0)), of_api(8, aug(5, 9, 0))];
    let named = |id: &str, service: &str, started, refs: &[&str]| Incident {
        cause_refs: refs.iter().map(|r| r.to_string()).collect(),
        ..incident(id, Some(service), Severity::Sev3, started, None)
    };
    let incidents = [
        // The window would pick d2 (1 h before); the named change #7 shipped with d1.
        named("i1", "api", aug(5, 11, 0), &["#7"]),
        // The window would pick d3 (14 h before); acme/api#8 shipped with d2.
        named("i2", "api", aug(7, 0, 0), &["acme/api#8"]),
        // The change request's window (10:00–13:00 on the 5th, ± 1 h) holds w1; by number and
        // by its ServiceNow id alike. No deployment of web within 24 h of either.
        named("i3", "web", aug(8, 0, 0), &["CHG0000123"]),
        named("i5", "web", aug(8, 1, 0), &["ABCDEF0123"]),
        // A change nobody shipped: no explicit link, and no deployment within 24 h.
        named("i4", "api", aug(8, 0, 0), &["#99"]),
    ];
    let change_request = ChangeRequest {
        id: "sn:abcdef0123".into(),
        source: "sn".into(),
        number: "CHG0000123".into(),
        title: "Web release".into(),
        service_ref: None,
        service: Some("web".into()),
        team: None,
        change_type: Some("normal".into()),
        state: "closed".into(),
        approved: Some(true),
        planned_start: Some(aug(5, 10, 0)),
        planned_end: Some(aug(5, 13, 0)),
        actual_start: None,
        actual_end: None,
        closed_at: Some(aug(5, 14, 0)),
        requested_by: None,
        assigned_to: None,
        close_code: Some("successful".into()),
        created_at: aug(3, 0, 0),
        updated_at: aug(5, 14, 0),
    };
    let lake = lake(&deployments, &changes, &incidents);
    let change_requests = lake.none.with_file_name("change_requests.parquet");
    write_table(&[change_request], &change_requests).unwrap();
    let rows = compute_metrics(
        Inputs {
            deployments: std::slice::from_ref(&lake.deployments),
            changes: std::slice::from_ref(&lake.changes),
            commits: std::slice::from_ref(&lake.commits),
            incidents: std::slice::from_ref(&lake.incidents),
            tickets: std::slice::from_ref(&lake.none),
            ticket_transitions: std::slice::from_ref(&lake.none),
            change_requests: std::slice::from_ref(&change_requests),
            quarantine: std::slice::from_ref(&lake.none),
            prepared: None,
        },
        &options(1, &[]),
    )
    .unwrap()
    .to_rows();

    // d1, d2 and w1 failed; d3 did not.
    assert_eq!(cell(&rows, ChangeFailureRate, "all", Some(0)), (Some(0.75), 4));
    assert_eq!(cell(&rows, FailedDeploymentCount, "api", Some(0)), (Some(2.0), 3));
    assert_eq!(cell(&rows, FailedDeploymentCount, "web", Some(0)), (Some(1.0), 1));
    // i1, i2, i3, i5 of the five incidents.
    assert_eq!(
        cell(&rows, IncidentsAttributedShare, "all", Some(0)),
        (Some(0.8), 5)
    );
    assert_eq!(
        cell(&rows, IncidentsAttributedExplicitShare, "all", Some(0)),
        (Some(0.8), 5)
    );
    assert_eq!(
        cell(&rows, IncidentsAttributedWindowShare, "all", Some(0)),
        (Some(0.0), 5)
    );
}

#[test]
fn rework_counts_deployments_shipping_a_hotfix_or_a_fix_of_an_incident_or_bug_ticket() {
    let deployments = [
        deployment("r1", Some("api"), aug(4, 10, 0)),
        deployment("r2", Some("api"), aug(5, 10, 0)),
        deployment("r3", Some("api"), aug(6, 10, 0)),
        deployment("r4", Some("api"), aug(7, 10, 0)),
    ];
    let titled = |number, merged, title: &str, labels: &[&str]| Change {
        title: title.into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        ..change(number, "acme/api", aug(3, 9, 0), Some(merged), None)
    };
    // By time (no commits), #n ships with rn.
    let changes = [
        titled(1, aug(4, 9, 0), "Add login", &[]),
        titled(2, aug(5, 9, 0), "Fix ops-12: crash on save", &[]),
        titled(3, aug(6, 9, 0), "Raise the pool size", &["HotFix"]),
        // OPS-123 is a story, and OPS-12 is not a word of this title.
        titled(4, aug(7, 9, 0), "Tidy OPS-123", &[]),
    ];
    let ticket = |key: &str, category: &str| Ticket {
        id: format!("jira:{key}"),
        source: "jira".into(),
        key: key.into(),
        project: "OPS".into(),
        service_ref: None,
        service: Some("api".into()),
        team: None,
        category: category.into(),
        issue_type: category.into(),
        title: key.into(),
        priority: None,
        status: "Done".into(),
        status_category: "done".into(),
        labels: vec![],
        created_at: aug(1, 0, 0),
        resolved_at: Some(aug(2, 0, 0)),
        assignee: None,
        reporter: None,
        updated_at: aug(2, 0, 0),
    };
    let lake = lake(&deployments, &changes, &[]);
    let tickets = lake.none.with_file_name("tickets.parquet");
    write_table(&[ticket("OPS-12", "bug"), ticket("OPS-123", "story")], &tickets).unwrap();
    let rows = compute_metrics(
        Inputs {
            deployments: std::slice::from_ref(&lake.deployments),
            changes: std::slice::from_ref(&lake.changes),
            commits: std::slice::from_ref(&lake.commits),
            incidents: std::slice::from_ref(&lake.incidents),
            tickets: std::slice::from_ref(&tickets),
            ticket_transitions: std::slice::from_ref(&lake.none),
            change_requests: std::slice::from_ref(&lake.none),
            quarantine: std::slice::from_ref(&lake.none),
            prepared: None,
        },
        &options(1, &[]),
    )
    .unwrap()
    .to_rows();

    // r2 (fixes bug OPS-12) and r3 (hotfix label, any letter case) of four.
    assert_eq!(cell(&rows, ReworkRate, "api", Some(0)), (Some(0.5), 4));
    assert_eq!(method(&rows, ReworkRate, "api", Some(0)).as_deref(), Some("time"));
}

#[test]
fn deploy_day_tier_inputs_count_empty_weeks_and_months() {
    // Nine weeks, 3 Aug – 4 Oct: weeks hold [2, 1, 0, 0, 0, 0, 0, 0, 1] deploy days (3 and 4 Aug
    // — twice on the 3rd, one day — 12 Aug, 2 Oct), so w = the 5th of the sorted nine = 0.
    // Months touched: August (3, 4, 12 → 3), September (0), October's first four days (1):
    // m = median [3, 0, 1] = 1.
    let lake = lake(
        &[
            deployment("a", Some("web"), aug(3, 9, 0)),
            deployment("b", Some("web"), aug(3, 15, 0)),
            deployment("c", Some("web"), aug(4, 9, 0)),
            deployment("d", Some("web"), aug(12, 9, 0)),
            deployment("e", Some("web"), aug(3, 9, 0) + Duration::days(60)),
        ],
        &[],
        &[],
    );
    let rows = run(&lake, &options(9, &["web"]));
    assert_eq!(cell(&rows, DeployDaysWeeklyMedian, "web", None), (Some(0.0), 9));
    assert_eq!(cell(&rows, DeployDaysMonthlyMedian, "all", None), (Some(1.0), 3));
    assert!(
        !rows
            .iter()
            .any(|r| r.metric == "deploy_days_monthly_median" && r.grain != "range"),
        "range rows only"
    );
    let weekly = rows
        .iter()
        .find(|r| r.metric == "deploy_days_weekly_median" && r.scope == "web")
        .unwrap();
    // w < 1 but m ≥ 1: medium, judged on nine weeks.
    assert_eq!(weekly.tier_among(&rows), Some("medium"));
}

#[test]
fn no_change_of_the_generated_large_lake_links_to_a_deployment_finished_before_it_merged() {
    use polars::prelude::*;
    let spec = tandem_fixtures::large::LargeSpec {
        services: 2,
        weeks: 6,
        ..tandem_fixtures::large::LargeSpec::benchmark(0.5)
    };
    let (mut deployments, mut changes, mut commits) = (Vec::new(), Vec::new(), Vec::new());
    for batch in spec.batches() {
        deployments.extend(batch.deployments);
        changes.extend(batch.changes);
        commits.extend(batch.commits);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = |table: &str| dir.path().join(format!("{table}.parquet"));
    write_table(&deployments, &path("deployments")).unwrap();
    write_table(&changes, &path("changes")).unwrap();
    write_table(&commits, &path("commits")).unwrap();
    use crate::store::codec::scan_table;
    let production = crate::pipeline::attribution::production_deployments(
        scan_table::<Deployment>(std::slice::from_ref(&path("deployments"))).unwrap(),
    )
    .collect()
    .unwrap();
    use polars::prelude::{JoinArgs, JoinType, col};
    // With each deployment's finish, looked up by its position.
    let links = crate::pipeline::links::change_links(
        scan_table::<Change>(std::slice::from_ref(&path("changes"))).unwrap(),
        production.clone().lazy(),
        scan_table::<Commit>(std::slice::from_ref(&path("commits"))).unwrap(),
    )
    .unwrap()
    .join(
        production
            .lazy()
            .select([col("position"), col("finished_at").alias("at")]),
        [col("deployment")],
        [col("position")],
        JoinArgs::new(JoinType::Left),
    )
    .collect()
    .unwrap();
    let merged = links.column("merged_at").unwrap().i64().unwrap();
    let at = links.column("at").unwrap().i64().unwrap();
    let ancestry = links.column("ancestry").unwrap().f64().unwrap();
    let merged_changes = changes.iter().filter(|c| c.merged_at.is_some()).count();
    assert!(
        links.height() * 10 >= merged_changes * 9,
        "{} of {merged_changes}",
        links.height()
    );
    let late = (0..links.height())
        .filter(|&i| merged.get(i).unwrap() > at.get(i).unwrap())
        .count();
    assert_eq!(
        late, 0,
        "changes linked to a deployment finished before they merged"
    );
    // Linked by ancestry, as the generator's history allows, but for the first deployment's.
    let by_ancestry = ancestry.sum().unwrap_or(0.0);
    assert!(
        by_ancestry >= 0.9 * links.height() as f64,
        "{by_ancestry} of {}",
        links.height()
    );
}

#[test]
fn a_servicenow_mirror_supplies_the_cause_of_the_pagerduty_incident_it_mirrors_without_being_counted() {
    // api: d1 three days before the outage, d2 an hour before it (the window's pick).
    let lake = lake(
        &[
            deployment("d1", Some("api"), aug(3, 9, 0)),
            deployment("d2", Some("api"), aug(6, 8, 0)),
        ],
        &[],
        &[
            // The system of record: PagerDuty incident PABC123 (number 42), 09:00–10:00.
            Incident {
                number: Some(42),
                ..incident(
                    "PABC123",
                    Some("api"),
                    Severity::Sev1,
                    aug(6, 9, 0),
                    Some(aug(6, 10, 0)),
                )
            },
            // Its ServiceNow mirror, opened by PagerDuty's integration five minutes later and
            // resolved later still: `caused_by` names d1, `correlation_id` the PagerDuty incident.
            Incident {
                id: "sn:9d3f".into(),
                source: "sn".into(),
                number: Some(1017),
                cause_refs: vec!["gh:d1".into()],
                correlation_id: Some("PABC123".into()),
                ..incident(
                    "s1",
                    Some("api"),
                    Severity::Sev1,
                    aug(6, 9, 5),
                    Some(aug(6, 10, 30)),
                )
            },
        ],
    );
    let counted = |mirror_match: Vec<crate::pipeline::MirrorMatch>, cause_sources: &[&str]| Options {
        incident_sources: vec!["pd".into()],
        cause_sources: cause_sources.iter().map(|s| s.to_string()).collect(),
        mirror_match,
        ..options(1, &["api"])
    };
    use crate::pipeline::MirrorMatch::{Correlation, Number, Start};

    let rows = run(&lake, &counted(vec![Correlation], &[]));
    // Counted once: the PagerDuty incident, its 60 minutes (not the mirror's 90).
    assert_eq!(cell(&rows, IncidentsOpened, "api", Some(0)), (Some(1.0), 1));
    assert_eq!(cell(&rows, DowntimeMinutes, "api", Some(0)), (Some(60.0), 1));
    // Attributed explicitly through the mirror's `caused_by` to d1; d2 did not fail.
    assert_eq!(
        cell(&rows, IncidentsAttributedExplicitShare, "api", Some(0)),
        (Some(1.0), 1)
    );
    assert_eq!(cell(&rows, FailedDeploymentCount, "api", Some(0)), (Some(1.0), 2));
    assert_eq!(
        cell(&rows, FailedDeploymentRecoveryMedian, "api", Some(0)),
        (Some(73.0), 1)
    );

    // The configurable rule: same service, starts 5 minutes apart (within 15).
    let rows = run(&lake, &counted(vec![Number, Start], &[]));
    assert_eq!(
        cell(&rows, IncidentsAttributedExplicitShare, "api", Some(0)),
        (Some(1.0), 1)
    );
    // Numbers differ (42, 1017) and no other rule: no mirror, so the window blames d2.
    for rules in [vec![Number], vec![]] {
        let rows = run(&lake, &counted(rules, &[]));
        assert_eq!(
            cell(&rows, IncidentsAttributedWindowShare, "api", Some(0)),
            (Some(1.0), 1)
        );
        assert_eq!(cell(&rows, IncidentsOpened, "api", Some(0)), (Some(1.0), 1));
    }
    // ServiceNow may not supply causes: the mirror is matched but lends nothing.
    let rows = run(&lake, &counted(vec![Correlation], &["pd"]));
    assert_eq!(
        cell(&rows, IncidentsAttributedWindowShare, "api", Some(0)),
        (Some(1.0), 1)
    );
}

/// The entries of a prepared directory.
fn entries(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|read| read.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

#[test]
fn change_links_kept_for_the_tables_are_read_back_and_worked_out_again_when_a_table_changes() {
    use polars::prelude::{
        DataFrame, NamedFrom as _, ParquetReader, ParquetWriter, SerReader as _, Series, df,
    };
    let at = |d: &str, sha: &str, finished| Deployment {
        change_refs: Vec::new(),
        sha: sha.into(),
        ..deployment(d, Some("api"), finished)
    };
    let deployments = [
        at("d1", "a1", aug(4, 10, 0)),
        at("d2", "b2", aug(5, 10, 0)),
        at("d3", "c3", aug(6, 10, 0)),
    ];
    let commits = [
        commit("m2", &["a1"], Some("d2")),
        commit("b2", &["m2"], Some("d2")),
        commit("c3", &["b2"], Some("d3")),
    ];
    let merged = |number, merged, sha: &str| Change {
        service: Some("api".into()),
        merge_commit_sha: Some(sha.into()),
        ..change(
            number,
            "acme/api",
            merged - Duration::hours(2),
            Some(merged),
            None,
        )
    };
    // Change 1 ships with d2 (its merge commit m2 is in d2's commits); change 2 reverts it and
    // ships with d3, which undoes d2 at d3's finish.
    let revert = Change {
        is_revert: true,
        reverts: Some(1),
        ..merged(2, aug(6, 9, 0), "c3")
    };
    let lake = lake(&deployments, &[merged(1, aug(5, 8, 0), "m2"), revert], &[]);
    write_table(&commits, &lake.commits).unwrap();
    let kept = tempfile::tempdir().unwrap();
    let prepared = kept.path().join("prepared");
    let opts = options(1, &["api"]);
    let truth = run(&lake, &opts);
    assert_eq!(
        cell(&truth, ChangesLinkedAncestryShare, "api", Some(0)),
        (Some(1.0), 2)
    );
    // d2 failed (reverted) of d1, d2, d3; recovered 24 h later, when d3 finished.
    assert_eq!(
        cell(&truth, ChangeFailureRate, "api", Some(0)),
        (Some(1.0 / 3.0), 3)
    );
    assert_eq!(
        cell(&truth, FailedDeploymentRecoveryMedian, "api", Some(0)),
        (Some(24.0), 1)
    );

    // The first computation keeps an entry; the second reads it and agrees.
    assert_eq!(run_kept(&lake, &opts, Some(&prepared)), truth);
    let [entry] = entries(&prepared).try_into().unwrap();
    assert!(entry.join("change_links.parquet").is_file() && entry.join("reverted.parquet").is_file());
    assert_eq!(run_kept(&lake, &opts, Some(&prepared)), truth);
    assert_eq!(entries(&prepared), std::slice::from_ref(&entry));

    // An entry is read as it is: links rewritten as linked by time, and no revert, move the
    // figures, which proves the second computation read them rather than working them out.
    let links_file = entry.join("change_links.parquet");
    let mut links = ParquetReader::new(std::fs::File::open(&links_file).unwrap())
        .finish()
        .unwrap();
    let by_time = Series::new("ancestry".into(), vec![0.0f64; links.height()]);
    links.with_column(by_time.into()).unwrap();
    ParquetWriter::new(std::fs::File::create(&links_file).unwrap())
        .finish(&mut links)
        .unwrap();
    let mut no_revert: DataFrame =
        df!("deployment_id" => Vec::<String>::new(), "reverted_at" => Vec::<i64>::new()).unwrap();
    ParquetWriter::new(std::fs::File::create(entry.join("reverted.parquet")).unwrap())
        .finish(&mut no_revert)
        .unwrap();
    let tampered = run_kept(&lake, &opts, Some(&prepared));
    assert_eq!(
        cell(&tampered, ChangesLinkedAncestryShare, "api", Some(0)),
        (Some(0.0), 2)
    );
    assert_eq!(cell(&tampered, ChangeFailureRate, "api", Some(0)), (Some(0.0), 3));

    // Any of the three tables written again names another entry: worked out afresh.
    for table in [&lake.commits, &lake.changes, &lake.deployments] {
        let before = entries(&prepared);
        match table {
            t if t == &lake.commits => write_table(&commits[..2], t).unwrap(),
            t if t == &lake.changes => write_table(&[merged(1, aug(5, 8, 0), "m2")], t).unwrap(),
            t => write_table(&deployments[..2], t).unwrap(),
        }
        let fresh = run(&lake, &opts);
        assert_eq!(
            run_kept(&lake, &opts, Some(&prepared)),
            fresh,
            "{}",
            table.display()
        );
        assert_eq!(
            run_kept(&lake, &opts, Some(&prepared)),
            fresh,
            "{}",
            table.display()
        );
        let after = entries(&prepared);
        assert!(after.len() <= 3, "at most three entries are kept: {after:?}");
        assert!(
            after.iter().any(|e| !before.contains(e)),
            "{}: a new entry",
            table.display()
        );
    }
    assert_eq!(entries(&prepared).len(), 3);
    assert!(
        !entries(&prepared).contains(&entry),
        "the entry used least recently went"
    );

    // A damaged entry is worked out again and replaced.
    let current = entries(&prepared);
    let fresh = run(&lake, &opts);
    for entry in &current {
        std::fs::write(entry.join("change_links.parquet"), b"not parquet").unwrap();
    }
    assert_eq!(run_kept(&lake, &opts, Some(&prepared)), fresh);
    let replaced = current
        .iter()
        .filter(|e| {
            ParquetReader::new(std::fs::File::open(e.join("change_links.parquet")).unwrap())
                .finish()
                .is_ok()
        })
        .count();
    assert_eq!(replaced, 1, "the entry of these tables was written again");
}
