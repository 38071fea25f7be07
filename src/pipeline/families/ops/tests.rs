//! Hand-computed cases for the operations family: small record sets written to a temporary lake
//! with the codec, run through the whole pipeline, every expected value worked out beside it.
//! Weeks start on Monday 3 August 2026; a week is 10 080 minutes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use tandem_connectors::model::{Deployment, DeploymentStatus, Incident, Severity};

use crate::metric::{MetricId, MetricRow};
use crate::pipeline::{Inputs, Options, compute_metrics};
use crate::store::codec::write_table;

use crate::pipeline::testkit::{aug, cell, incident, options};
use MetricId::*;
use Severity::*;

/// A successful production deployment of `service`.
fn deployment(id: &str, service: &str, finished: DateTime<Utc>) -> Deployment {
    Deployment {
        change_refs: Vec::new(),
        deployed_by: None,
        id: format!("gh:{id}"),
        source: "gh".into(),
        repo: format!("acme/{service}"),
        service: Some(service.into()),
        team: None,
        environment: "production".into(),
        is_production: true,
        status: DeploymentStatus::Success,
        sha: "0123456".into(),
        created_at: finished - Duration::minutes(10),
        finished_at: Some(finished),
        updated_at: finished,
    }
}

/// The incident, first acknowledged at `at`.
fn acked(incident: Incident, at: DateTime<Utc>) -> Incident {
    Incident {
        acknowledged_at: Some(at),
        ..incident
    }
}

/// The whole pipeline over a temporary lake holding these deployments and incidents.
fn run(deployments: &[Deployment], incidents: &[Incident], opts: &Options) -> Vec<MetricRow> {
    let dir = tempfile::tempdir().unwrap();
    let path = |table: &str| dir.path().join(format!("{table}.parquet"));
    write_table(deployments, &path("deployments")).unwrap();
    write_table(incidents, &path("incidents")).unwrap();
    let none = path("none");
    compute_metrics(
        Inputs {
            deployments: std::slice::from_ref(&path("deployments")),
            changes: std::slice::from_ref(&none),
            commits: std::slice::from_ref(&none),
            incidents: std::slice::from_ref(&path("incidents")),
            tickets: std::slice::from_ref(&none),
            ticket_transitions: std::slice::from_ref(&none),
            change_requests: std::slice::from_ref(&none),
            quarantine: std::slice::from_ref(&none),
            prepared: None,
        },
        opts,
    )
    .unwrap()
    .to_rows()
}

/// Asserts a computed ratio against its hand-computed value (rounded in the test's comment).
fn assert_close((value, n): (Option<f64>, i64), expected: f64, expected_n: i64) {
    let value = value.expect("a value");
    assert!((value - expected).abs() < 1e-9, "{value} ≠ {expected}");
    assert_eq!(n, expected_n);
}

#[test]
fn time_to_acknowledge_counts_acknowledged_incidents_in_the_week_of_acknowledgement() {
    let rows = run(
        &[],
        &[
            // api: 0.5 h and 1.5 h, whatever the severity.
            acked(
                incident("a", Some("api"), Sev3, aug(4, 10, 0), None),
                aug(4, 10, 30),
            ),
            acked(
                incident("b", Some("api"), Sev1, aug(4, 12, 0), None),
                aug(4, 13, 30),
            ),
            // Never acknowledged, though resolved: no sample.
            incident("c", Some("api"), Sev1, aug(6, 0, 0), Some(aug(6, 5, 0))),
            // Acknowledged before it started (bad data): dropped.
            acked(
                incident("d", Some("api"), Sev2, aug(6, 10, 0), None),
                aug(6, 9, 0),
            ),
            // web: 4 h; and 2 h for one started in week 0 but acknowledged in week 1.
            acked(incident("e", Some("web"), Sev2, aug(5, 0, 0), None), aug(5, 4, 0)),
            acked(
                incident("f", Some("web"), Sev4, aug(9, 23, 0), None),
                aug(10, 1, 0),
            ),
        ],
        &options(2, &[]),
    );

    // Week 0: api 0.5, 1.5; the organisation adds web's 4 → median 1.5, mean 2.
    assert_eq!(
        cell(&rows, TimeToAcknowledgeMedian, "api", Some(0)),
        (Some(1.0), 2)
    );
    assert_eq!(cell(&rows, TimeToAcknowledgeMean, "api", Some(0)), (Some(1.0), 2));
    assert_eq!(
        cell(&rows, TimeToAcknowledgeMedian, "all", Some(0)),
        (Some(1.5), 3)
    );
    assert_eq!(cell(&rows, TimeToAcknowledgeMean, "all", Some(0)), (Some(2.0), 3));
    assert_eq!(
        cell(&rows, TimeToAcknowledgeMedian, "web", Some(0)),
        (Some(4.0), 1)
    );
    // Week 1: only f, acknowledged Monday 01:00.
    assert_eq!(
        cell(&rows, TimeToAcknowledgeMedian, "web", Some(1)),
        (Some(2.0), 1)
    );
    assert_eq!(cell(&rows, TimeToAcknowledgeMean, "api", Some(1)), (None, 0));
    // Range: 0.5, 1.5, 2, 4 → median 1.75, mean 2.
    assert_eq!(cell(&rows, TimeToAcknowledgeMedian, "all", None), (Some(1.75), 4));
    assert_eq!(cell(&rows, TimeToAcknowledgeMean, "all", None), (Some(2.0), 4));
}

#[test]
fn time_between_failures_takes_gaps_within_each_service_in_the_week_of_the_later_start() {
    let rows = run(
        &[],
        &[
            // Listed out of order on purpose. api: 4th 00:00, 4th 10:00 (gap 10 h), then Monday
            // 10th 00:00 exactly (gap 134 h, in week 1).
            incident("a3", Some("api"), Sev1, aug(10, 0, 0), None),
            incident("a1", Some("api"), Sev1, aug(4, 0, 0), Some(aug(4, 1, 0))),
            incident("a2", Some("api"), Sev2, aug(4, 10, 0), Some(aug(4, 11, 0))),
            // web: 4th 05:00 → 5th 05:00, 24 h. Mixed with api's starts, the organisation would see
            // gaps of 5 h and 5 h instead of 10 h.
            incident("w2", Some("web"), Sev2, aug(5, 5, 0), Some(aug(5, 6, 0))),
            incident("w1", Some("web"), Sev1, aug(4, 5, 0), Some(aug(4, 6, 0))),
            // Not an outage severity: does not split web's gap.
            incident("w3", Some("web"), Sev3, aug(4, 7, 0), Some(aug(4, 8, 0))),
            // No service: no gaps at all.
            incident("u1", None, Sev1, aug(4, 2, 0), Some(aug(4, 3, 0))),
            incident("u2", None, Sev1, aug(4, 4, 0), Some(aug(4, 5, 0))),
        ],
        &options(2, &[]),
    );

    assert_eq!(
        cell(&rows, TimeBetweenFailuresMean, "api", Some(0)),
        (Some(10.0), 1)
    );
    assert_eq!(
        cell(&rows, TimeBetweenFailuresMean, "web", Some(0)),
        (Some(24.0), 1)
    );
    // The organisation pools the services' gaps: 10, 24.
    assert_eq!(
        cell(&rows, TimeBetweenFailuresMean, "all", Some(0)),
        (Some(17.0), 2)
    );
    assert_eq!(
        cell(&rows, TimeBetweenFailuresMedian, "all", Some(0)),
        (Some(17.0), 2)
    );
    // The gap ending on Monday 00:00 belongs to week 1.
    assert_eq!(
        cell(&rows, TimeBetweenFailuresMean, "api", Some(1)),
        (Some(134.0), 1)
    );
    assert_eq!(
        cell(&rows, TimeBetweenFailuresMedian, "all", Some(1)),
        (Some(134.0), 1)
    );
    assert_eq!(cell(&rows, TimeBetweenFailuresMedian, "web", Some(1)), (None, 0));
    // Range: api 10, 134 → 72; the organisation 10, 24, 134 → mean 56, median 24.
    assert_eq!(cell(&rows, TimeBetweenFailuresMean, "api", None), (Some(72.0), 2));
    assert_eq!(
        cell(&rows, TimeBetweenFailuresMedian, "api", None),
        (Some(72.0), 2)
    );
    assert_eq!(cell(&rows, TimeBetweenFailuresMean, "all", None), (Some(56.0), 3));
    assert_eq!(
        cell(&rows, TimeBetweenFailuresMedian, "all", None),
        (Some(24.0), 3)
    );
}

#[test]
fn availability_and_error_budget_are_service_weighted_with_each_services_objective() {
    let mut opts = options(2, &["db"]);
    opts.slo.insert("api".into(), 0.99);
    let rows = run(
        &[],
        &[
            // api: 10:00–12:00 and 11:00–13:00 overlap, 10:30–11:00 is nested: 10:00–13:00,
            // 180 min from three incidents. The sev3 all day long is no outage.
            incident("a1", Some("api"), Sev1, aug(4, 10, 0), Some(aug(4, 12, 0))),
            incident("a2", Some("api"), Sev2, aug(4, 11, 0), Some(aug(4, 13, 0))),
            incident("a3", Some("api"), Sev1, aug(4, 10, 30), Some(aug(4, 11, 0))),
            incident("a4", Some("api"), Sev3, aug(4, 0, 0), Some(aug(4, 23, 0))),
            // web: still open from Sunday 16th 22:00, so it runs to the range's end: 120 min.
            incident("w1", Some("web"), Sev1, aug(16, 22, 0), None),
        ],
        &opts,
    );

    // The organisation weighs its three services (api, web and the configured db) alike.
    // Week 0: 1 − 180 / (3 × 10 080) = 1 − 180 / 30 240; its budget is the sum of the services'
    // budgets, api's 100.8 min (objective 0.99) and 10.08 min each for web and db (0.999):
    // 180 / 120.96.
    assert_close(
        cell(&rows, Availability, "all", Some(0)),
        0.994_047_619_047_619_1,
        3,
    );
    assert_close(
        cell(&rows, ErrorBudgetConsumed, "all", Some(0)),
        1.488_095_238_095_238_1,
        3,
    );
    // api's own objective 0.99: budget 100.8 min.
    assert_close(
        cell(&rows, Availability, "api", Some(0)),
        0.982_142_857_142_857,
        3,
    );
    assert_close(
        cell(&rows, ErrorBudgetConsumed, "api", Some(0)),
        1.785_714_285_714_285_7,
        3,
    );
    // No downtime: fully available, nothing consumed.
    assert_eq!(cell(&rows, Availability, "web", Some(0)), (Some(1.0), 0));
    assert_eq!(cell(&rows, ErrorBudgetConsumed, "web", Some(0)), (Some(0.0), 0));

    // Week 1: web's 120 min against the default objective: 120 / 10.08.
    assert_close(
        cell(&rows, Availability, "web", Some(1)),
        0.988_095_238_095_238,
        1,
    );
    assert_close(
        cell(&rows, ErrorBudgetConsumed, "web", Some(1)),
        11.904_761_904_761_905,
        1,
    );
    // The organisation: 1 − 120 / 30 240 and 120 / 120.96.
    assert_close(
        cell(&rows, Availability, "all", Some(1)),
        0.996_031_746_031_746,
        1,
    );
    assert_close(
        cell(&rows, ErrorBudgetConsumed, "all", Some(1)),
        0.992_063_492_063_492_1,
        1,
    );
    assert_eq!(cell(&rows, Availability, "api", Some(1)), (Some(1.0), 0));

    // Range, 20 160 min: the organisation 300 min → 1 − 300 / (3 × 20 160), 300 / (201.6 +
    // 20.16 + 20.16); api 180 / 201.6.
    assert_close(cell(&rows, Availability, "all", None), 0.995_039_682_539_682_6, 4);
    assert_close(
        cell(&rows, ErrorBudgetConsumed, "all", None),
        1.240_079_365_079_365_1,
        4,
    );
    assert_close(
        cell(&rows, ErrorBudgetConsumed, "api", None),
        0.892_857_142_857_142_8,
        3,
    );
    // A configured service without incidents.
    assert_eq!(cell(&rows, Availability, "db", None), (Some(1.0), 0));
    assert_eq!(cell(&rows, ErrorBudgetConsumed, "db", None), (Some(0.0), 0));
}

#[test]
fn change_caused_downtime_counts_only_outages_attributed_to_a_deployment() {
    let rows = run(
        &[
            deployment("api1", "api", aug(4, 9, 0)),
            deployment("web1", "web", aug(6, 12, 0)),
        ],
        &[
            // An hour after api1: attributed, 60 min.
            incident("a1", Some("api"), Sev1, aug(4, 10, 0), Some(aug(4, 11, 0))),
            // 25 h after api1: outside the 24 h window, not change-caused.
            incident("a2", Some("api"), Sev1, aug(5, 10, 0), Some(aug(5, 10, 30))),
            // Attributed, but no outage severity.
            incident("a3", Some("api"), Sev3, aug(4, 10, 0), Some(aug(4, 12, 0))),
            // 30 min after api1, but web had no deployment before it.
            incident("w1", Some("web"), Sev1, aug(4, 9, 30), Some(aug(4, 10, 30))),
            // At the instant web1 finished and half an hour later: 12:00–14:00, 120 min.
            incident("w2", Some("web"), Sev2, aug(6, 12, 0), Some(aug(6, 13, 0))),
            incident("w3", Some("web"), Sev2, aug(6, 12, 30), Some(aug(6, 14, 0))),
            // No service: never attributed.
            incident("u1", None, Sev1, aug(4, 9, 30), Some(aug(4, 10, 0))),
        ],
        &options(1, &[]),
    );

    assert_eq!(
        cell(&rows, ChangeCausedDowntimeMinutes, "api", Some(0)),
        (Some(60.0), 1)
    );
    assert_eq!(
        cell(&rows, ChangeCausedDowntimeMinutes, "web", Some(0)),
        (Some(120.0), 2)
    );
    assert_eq!(
        cell(&rows, ChangeCausedDowntimeMinutes, "all", Some(0)),
        (Some(180.0), 3)
    );
    assert_eq!(
        cell(&rows, ChangeCausedDowntimeMinutes, "all", None),
        (Some(180.0), 3)
    );
    // All downtime, for contrast, summed over services: api 60 + 30, web 60 + 120, from five
    // incidents; u1 has no service. Minutes with any service down: 09:30–11:00 on the 4th (a1 ∪
    // w1 ∪ u1) 90 + a2 30 + 120, from six incidents.
    assert_eq!(cell(&rows, DowntimeMinutes, "all", Some(0)), (Some(270.0), 5));
    assert_eq!(
        cell(&rows, DowntimeAnyServiceMinutes, "all", Some(0)),
        (Some(240.0), 6)
    );
}

#[test]
fn deployments_and_downtime_correlate_by_rank_over_the_weeks_of_the_range() {
    let week = |w: i64, hour: u32| aug(4, hour, 0) + Duration::weeks(w);
    // An api outage on the Wednesday of week `w`, `minutes` long.
    let down = |id: &str, w: i64, minutes: i64| {
        let start = aug(5, 10, 0) + Duration::weeks(w);
        incident(
            id,
            Some("api"),
            Sev1,
            start,
            Some(start + Duration::minutes(minutes)),
        )
    };
    let rows = run(
        &[
            // api deploys 1, 3, 3, 0 times in weeks 0–3 (a tie); web twice in week 3.
            deployment("a0", "api", week(0, 1)),
            deployment("a1", "api", week(1, 1)),
            deployment("a2", "api", week(1, 2)),
            deployment("a3", "api", week(1, 3)),
            deployment("a4", "api", week(2, 1)),
            deployment("a5", "api", week(2, 2)),
            deployment("a6", "api", week(2, 3)),
            deployment("w0", "web", week(3, 1)),
            deployment("w1", "web", week(3, 2)),
        ],
        &[
            // api is down 10, 60, 30 and 0 minutes.
            down("i0", 0, 10),
            down("i1", 1, 60),
            down("i2", 2, 30),
        ],
        &options(4, &[]),
    );

    // api: deployment ranks 2, 3.5, 3.5, 1; downtime ranks 2, 4, 3, 1; both average 2.5.
    // Deviations (−0.5, 1, 1, −1.5) and (−0.5, 1.5, 0.5, −1.5): covariance 0.25 + 1.5 + 0.5 +
    // 2.25 = 4.5, variances 4.5 and 5 → 4.5 / √22.5 = √0.9.
    assert_close(
        cell(&rows, DeploymentsDowntimeCorrelation, "api", None),
        0.948_683_298_050_513_8,
        4,
    );
    // The organisation deploys 1, 3, 3, 2: ranks 1, 3.5, 3.5, 2, deviations (−1.5, 1, 1, −0.5);
    // covariance 0.75 + 1.5 + 0.5 + 0.75 = 3.5 → 3.5 / √22.5.
    assert_close(
        cell(&rows, DeploymentsDowntimeCorrelation, "all", None),
        0.737_864_787_372_621_8,
        4,
    );
    // web never goes down: a constant side, undefined.
    assert_eq!(
        cell(&rows, DeploymentsDowntimeCorrelation, "web", None),
        (None, 4)
    );
    // A property of the range: no weekly rows.
    assert!(
        !rows
            .iter()
            .any(|r| r.metric == DeploymentsDowntimeCorrelation.as_str() && r.grain == "week")
    );
}

#[test]
fn time_to_restore_is_split_by_severity() {
    let rows = run(
        &[],
        &[
            incident("a", Some("api"), Sev1, aug(4, 0, 0), Some(aug(4, 1, 0))),
            incident("b", Some("api"), Sev1, aug(4, 0, 0), Some(aug(4, 3, 0))),
            incident("c", Some("web"), Sev2, aug(5, 0, 0), Some(aug(5, 5, 0))),
            incident("d", Some("api"), Sev4, aug(5, 0, 0), Some(aug(5, 2, 0))),
            incident("e", Some("web"), Sev4, aug(5, 0, 0), Some(aug(5, 4, 0))),
            incident("f", None, Sev4, aug(5, 0, 0), Some(aug(5, 9, 0))),
            // Still open; and resolved in week 1 after 6 h.
            incident("g", Some("api"), Sev4, aug(6, 0, 0), None),
            incident("h", Some("api"), Sev4, aug(9, 20, 0), Some(aug(10, 2, 0))),
            // No severity: in no split.
            Incident {
                severity: None,
                ..incident("i", Some("api"), Sev1, aug(4, 0, 0), Some(aug(4, 7, 0)))
            },
        ],
        &options(2, &[]),
    );

    assert_eq!(
        cell(&rows, TimeToRestoreMedianSev1, "all", Some(0)),
        (Some(2.0), 2)
    );
    assert_eq!(cell(&rows, TimeToRestoreMedianSev1, "web", Some(0)), (None, 0));
    assert_eq!(
        cell(&rows, TimeToRestoreMedianSev2, "all", Some(0)),
        (Some(5.0), 1)
    );
    assert_eq!(cell(&rows, TimeToRestoreMedianSev3, "all", Some(0)), (None, 0));
    // sev4, week 0: 2, 4, 9 → 4; api alone 2.
    assert_eq!(
        cell(&rows, TimeToRestoreMedianSev4, "all", Some(0)),
        (Some(4.0), 3)
    );
    assert_eq!(
        cell(&rows, TimeToRestoreMedianSev4, "api", Some(0)),
        (Some(2.0), 1)
    );
    assert_eq!(
        cell(&rows, TimeToRestoreMedianSev4, "api", Some(1)),
        (Some(6.0), 1)
    );
    // Range: 2, 4, 6, 9 → 5.
    assert_eq!(cell(&rows, TimeToRestoreMedianSev4, "all", None), (Some(5.0), 4));
    assert_eq!(cell(&rows, TimeToRestoreMedianSev1, "api", None), (Some(2.0), 2));
    // Means beside the medians: sev1 week 0 (1 + 3) / 2 = 2; sev4 week 0 (2 + 4 + 9) / 3 = 5;
    // sev4 range (2 + 4 + 6 + 9) / 4 = 5.25; sev3 has no incident.
    assert_eq!(cell(&rows, TimeToRestoreMeanSev1, "all", Some(0)), (Some(2.0), 2));
    assert_eq!(cell(&rows, TimeToRestoreMeanSev2, "web", Some(0)), (Some(5.0), 1));
    assert_eq!(cell(&rows, TimeToRestoreMeanSev3, "all", Some(0)), (None, 0));
    assert_eq!(cell(&rows, TimeToRestoreMeanSev4, "all", Some(0)), (Some(5.0), 3));
    assert_eq!(cell(&rows, TimeToRestoreMeanSev4, "all", None), (Some(5.25), 4));
    assert_eq!(cell(&rows, TimeToRestoreMeanSev4, "api", Some(1)), (Some(6.0), 1));
    // p90 over every severity, week 0: 1, 2, 3, 4, 5, 7, 9 → position 5.4 → 7 + 0.4 × 2 = 7.8.
    assert_close(cell(&rows, TimeToRestoreP90, "all", Some(0)), 7.8, 7);
    // The unsplit core median still counts every incident: 1, 3, 7, 2 → 2.5 for api in week 0.
    assert_eq!(cell(&rows, TimeToRestoreMedian, "api", Some(0)), (Some(2.5), 4));
}

#[test]
fn incidents_are_counted_opened_by_their_start_and_resolved_by_their_resolution() {
    let mut opts = options(2, &["web"]);
    opts.incident_sources = vec!["pd".into()];
    let rows = run(
        &[],
        &[
            // Opened and resolved in week 0.
            incident("a", Some("api"), Sev1, aug(4, 0, 0), Some(aug(4, 1, 0))),
            // Opened in week 0, resolved in week 1 (Monday 10th is week 1's first instant).
            incident("b", Some("api"), Sev3, aug(9, 23, 0), Some(aug(10, 0, 0))),
            // Opened in week 0, still open.
            incident("c", None, Sev4, aug(5, 0, 0), None),
            // Opened before the range, resolved in week 0.
            incident("d", Some("api"), Sev2, aug(1, 0, 0), Some(aug(3, 0, 0))),
            // A resolution dated before the start: still resolved in week 1, opened in week 1.
            incident("e", Some("api"), Sev2, aug(12, 0, 0), Some(aug(11, 0, 0))),
            // From a source that is not a system of record for incidents: in no count.
            Incident {
                source: "jira".into(),
                ..incident("f", Some("api"), Sev1, aug(4, 0, 0), Some(aug(4, 2, 0)))
            },
        ],
        &opts,
    );

    // Opened: week 0 a, b, c; week 1 e; the range a, b, c, e (d started before it).
    assert_eq!(cell(&rows, IncidentsOpened, "all", Some(0)), (Some(3.0), 3));
    assert_eq!(cell(&rows, IncidentsOpened, "api", Some(0)), (Some(2.0), 2));
    assert_eq!(cell(&rows, IncidentsOpened, "all", Some(1)), (Some(1.0), 1));
    assert_eq!(cell(&rows, IncidentsOpened, "all", None), (Some(4.0), 4));
    assert_eq!(cell(&rows, IncidentsOpened, "web", None), (Some(0.0), 0));
    // Resolved: week 0 a, d; week 1 b, e; the range all four.
    assert_eq!(cell(&rows, IncidentsResolved, "all", Some(0)), (Some(2.0), 2));
    assert_eq!(cell(&rows, IncidentsResolved, "all", Some(1)), (Some(2.0), 2));
    assert_eq!(cell(&rows, IncidentsResolved, "api", None), (Some(4.0), 4));
    assert_eq!(cell(&rows, IncidentsResolved, "web", Some(1)), (Some(0.0), 0));
}

#[test]
fn small_samples_keep_their_value_and_n() {
    let rows = run(
        &[],
        &[acked(
            incident("a", Some("api"), Sev1, aug(4, 0, 0), Some(aug(4, 2, 0))),
            aug(4, 0, 30),
        )],
        &options(1, &[]),
    );
    let row = rows
        .iter()
        .find(|r| r.metric == TimeToAcknowledgeMean.as_str() && r.scope == "api" && r.grain == "week")
        .unwrap();
    assert_eq!((row.value, row.n, row.insufficient()), (Some(0.5), 1, true));
    assert_eq!(cell(&rows, TimeToRestoreMedianSev1, "api", None), (Some(2.0), 1));
}

#[test]
fn an_empty_week_has_no_statistics_full_availability_and_no_downtime() {
    let rows = run(
        &[deployment("d1", "api", aug(4, 9, 0))],
        &[incident(
            "a",
            Some("api"),
            Sev1,
            aug(4, 10, 0),
            Some(aug(4, 11, 0)),
        )],
        &options(2, &["billing"]),
    );

    for scope in ["all", "api", "billing"] {
        for metric in [
            TimeToAcknowledgeMedian,
            TimeToAcknowledgeMean,
            TimeBetweenFailuresMean,
            TimeBetweenFailuresMedian,
            TimeToRestoreMedianSev1,
            TimeToRestoreMedianSev2,
            TimeToRestoreMedianSev3,
            TimeToRestoreMedianSev4,
        ] {
            assert_eq!(
                cell(&rows, metric, scope, Some(1)),
                (None, 0),
                "{metric:?} {scope}"
            );
        }
        assert_eq!(cell(&rows, Availability, scope, Some(1)), (Some(1.0), 0));
        assert_eq!(cell(&rows, ErrorBudgetConsumed, scope, Some(1)), (Some(0.0), 0));
        assert_eq!(
            cell(&rows, DowntimeAnyServiceMinutes, scope, Some(1)),
            (Some(0.0), 0)
        );
        assert_eq!(
            cell(&rows, ChangeCausedDowntimeMinutes, scope, Some(1)),
            (Some(0.0), 0)
        );
    }
    // One deployment, one hour down, both in week 0: the ranks of week 0 are above week 1's on
    // both sides → 1 over two weeks; billing is constant on both sides.
    assert_close(cell(&rows, DeploymentsDowntimeCorrelation, "api", None), 1.0, 2);
    assert_eq!(
        cell(&rows, DeploymentsDowntimeCorrelation, "billing", None),
        (None, 2)
    );
}

#[test]
fn rows_come_in_metric_scope_week_then_range_order() {
    let rows = run(&[], &[], &options(2, &["web", "api"]));

    let mut expected = Vec::new();
    for metric in MetricId::OPS {
        for (scope_type, scope) in [("org", "all"), ("service", "api"), ("service", "web")] {
            for (grain, start, end) in [
                ("week", aug(3, 0, 0), aug(10, 0, 0)),
                ("week", aug(10, 0, 0), aug(17, 0, 0)),
                ("range", aug(3, 0, 0), aug(17, 0, 0)),
            ] {
                if metric == DeploymentsDowntimeCorrelation && grain == "week" {
                    continue;
                }
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
    let actual: Vec<_> = rows
        .iter()
        .filter(|r| MetricId::OPS.iter().any(|m| m.as_str() == r.metric))
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
fn org_and_team_availability_is_the_mean_of_their_services_not_the_union_of_their_outages() {
    // api and web make team shop, db team data; web's objective is 0.995 (budget 50.4 min a
    // week), the others' 0.999 (10.08 min). Week 0 is 10 080 minutes, week 1 has no incidents.
    let mut opts = options(2, &["api", "web", "db"]);
    opts.slo.insert("web".into(), 0.995);
    opts.teams = [("api", "shop"), ("web", "shop"), ("db", "data")]
        .into_iter()
        .map(|(s, t)| (s.to_owned(), t.to_owned()))
        .collect();
    let rows = run(
        &[],
        &[
            // api 10:00–12:00: 120 min.
            incident("a1", Some("api"), Sev1, aug(4, 10, 0), Some(aug(4, 12, 0))),
            // web 11:00–13:00 and 12:30–14:00 overlap: 11:00–14:00, 180 min; an hour of it
            // overlaps api's outage too.
            incident("w1", Some("web"), Sev2, aug(4, 11, 0), Some(aug(4, 13, 0))),
            incident("w2", Some("web"), Sev1, aug(4, 12, 30), Some(aug(4, 14, 0))),
        ],
        &opts,
    );
    let team = |metric: MetricId, team: &str, week: Option<i64>| {
        let found: Vec<&MetricRow> = rows
            .iter()
            .filter(|r| {
                r.metric == metric.as_str()
                    && r.scope_type == "team"
                    && r.scope == team
                    && r.grain == if week.is_some() { "week" } else { "range" }
                    && r.period_start == aug(3, 0, 0) + Duration::weeks(week.unwrap_or(0))
            })
            .collect();
        assert_eq!(found.len(), 1, "{metric:?} {team} {week:?}");
        (found[0].value, found[0].n)
    };

    // Week 0, the organisation: downtime api 120 + web 180 + db 0 = 300 minutes (not the 240 of
    // the union); availability 1 − 300 / (3 × 10 080); budget consumed 300 / (10.08 + 50.4 +
    // 10.08). Some service was down 10:00–14:00: 240 minutes.
    assert_eq!(cell(&rows, DowntimeMinutes, "all", Some(0)), (Some(300.0), 3));
    assert_close(
        cell(&rows, Availability, "all", Some(0)),
        0.990_079_365_079_365_1,
        3,
    );
    assert_close(
        cell(&rows, ErrorBudgetConsumed, "all", Some(0)),
        4.251_700_680_272_108_5,
        3,
    );
    assert_eq!(
        cell(&rows, DowntimeAnyServiceMinutes, "all", Some(0)),
        (Some(240.0), 3)
    );
    // It is the mean of the services' availabilities: (1 − 120/10 080) + (1 − 180/10 080) + 1.
    let mean = [
        cell(&rows, Availability, "api", Some(0)).0.unwrap(),
        cell(&rows, Availability, "web", Some(0)).0.unwrap(),
        cell(&rows, Availability, "db", Some(0)).0.unwrap(),
    ]
    .iter()
    .sum::<f64>()
        / 3.0;
    assert_close((Some(mean), 3), 0.990_079_365_079_365_1, 3);

    // Team shop, two services: 300 minutes; 1 − 300 / (2 × 10 080); 300 / (10.08 + 50.4).
    assert_eq!(team(DowntimeMinutes, "shop", Some(0)), (Some(300.0), 3));
    assert_close(team(Availability, "shop", Some(0)), 0.985_119_047_619_047_7, 3);
    assert_close(
        team(ErrorBudgetConsumed, "shop", Some(0)),
        4.960_317_460_317_460_5,
        3,
    );
    assert_eq!(team(DowntimeAnyServiceMinutes, "shop", Some(0)), (Some(240.0), 3));
    // Team data: db had no incidents, fully available.
    assert_eq!(team(Availability, "data", Some(0)), (Some(1.0), 0));
    assert_eq!(team(DowntimeMinutes, "data", Some(0)), (Some(0.0), 0));

    // Week 1, empty: every scope fully available, nothing down, no budget consumed.
    let week = Some(1);
    assert_eq!(cell(&rows, Availability, "all", week), (Some(1.0), 0));
    assert_eq!(cell(&rows, DowntimeMinutes, "all", week), (Some(0.0), 0));
    assert_eq!(cell(&rows, ErrorBudgetConsumed, "all", week), (Some(0.0), 0));
    assert_eq!(team(Availability, "shop", week), (Some(1.0), 0));
    assert_eq!(team(DowntimeAnyServiceMinutes, "shop", week), (Some(0.0), 0));

    // The range, 20 160 minutes: the organisation 1 − 300 / (3 × 20 160) and 300 / (20.16 +
    // 100.8 + 20.16); team shop 1 − 300 / (2 × 20 160) and 300 / (20.16 + 100.8).
    assert_close(cell(&rows, Availability, "all", None), 0.995_039_682_539_682_6, 3);
    assert_close(
        cell(&rows, ErrorBudgetConsumed, "all", None),
        2.125_850_340_136_054_2,
        3,
    );
    assert_close(team(Availability, "shop", None), 0.992_559_523_809_523_8, 3);
    assert_close(
        team(ErrorBudgetConsumed, "shop", None),
        2.480_158_730_158_730_2,
        3,
    );
}
