//! Test helpers shared by the pipeline's metric-family tests: a fixed first Monday, the weekly
//! options every family test starts from, and a lookup of one row's `(value, n)`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use tandem_connectors::model::{Deployment, DeploymentStatus, Incident, Severity};

use super::Options;
use crate::metric::{MetricId, MetricRow};

/// An instant in August 2026; the reports start on Monday 3 August.
pub(crate) fn aug(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 8, day, hour, minute, 0).unwrap()
}

pub(crate) fn options(weeks: u32, services: &[&str]) -> Options {
    Options {
        calendar: weeks_from_aug_3(weeks),
        attribution_window: Duration::hours(24),
        outage_severities: vec![Severity::Sev1, Severity::Sev2],
        services: services.iter().map(|s| s.to_string()).collect(),
        incident_sources: Vec::new(),
        cause_sources: Vec::new(),
        mirror_match: vec![crate::pipeline::MirrorMatch::Correlation],
        mirror_start_tolerance: Duration::minutes(15),
        sla_hours: Default::default(),
        change_window_tolerance: Duration::hours(1),
        slo: Default::default(),
        default_slo: 0.999,
        teams: Default::default(),
        hotfix_labels: vec!["hotfix".into()],
        attribution: Default::default(),
        metrics: None,
    }
}

/// The one row of `metric` for `scope` (`all` = the organisation) in week `week` (0 = the
/// week of 3 August) or, for `None`, the whole range: `(value, n)`.
pub(crate) fn cell(
    rows: &[MetricRow],
    metric: MetricId,
    scope: &str,
    week: Option<i64>,
) -> (Option<f64>, i64) {
    let scope_type = if scope == "all" { "org" } else { "service" };
    let (grain, start) = match week {
        Some(week) => ("week", aug(3, 0, 0) + Duration::weeks(week)),
        None => ("range", aug(3, 0, 0)),
    };
    let found: Vec<&MetricRow> = rows
        .iter()
        .filter(|r| {
            r.metric == metric.as_str()
                && r.scope_type == scope_type
                && r.scope == scope
                && r.grain == grain
                && r.period_start == start
        })
        .collect();
    assert_eq!(found.len(), 1, "{metric:?} {scope} {week:?}: {found:?}");
    (found[0].value, found[0].n)
}

/// `weeks` ISO weeks from Monday 2026-08-03, in UTC.
pub(crate) fn weeks_from_aug_3(weeks: u32) -> crate::metric::calendar::Calendar {
    let from = chrono::NaiveDate::from_ymd_opt(2026, 8, 3).unwrap();
    crate::metric::calendar::Calendar::new(
        chrono_tz::Tz::UTC,
        crate::metric::calendar::Grain::Week,
        from,
        from + chrono::Duration::weeks(i64::from(weeks)),
    )
    .unwrap()
}

/// A successful production deployment of `acme/{service}`.
pub(crate) fn deployment(id: &str, service: Option<&str>, finished: DateTime<Utc>) -> Deployment {
    Deployment {
        change_refs: Vec::new(),
        deployed_by: None,
        id: format!("gh:{id}"),
        source: "gh".into(),
        repo: format!("acme/{}", service.unwrap_or("unmapped")),
        service: service.map(str::to_owned),
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

pub(crate) fn incident(
    id: &str,
    service: Option<&str>,
    severity: Severity,
    started: DateTime<Utc>,
    resolved: Option<DateTime<Utc>>,
) -> Incident {
    Incident {
        acknowledged_by: None,
        assignee: None,
        id: format!("pd:{id}"),
        source: "pd".into(),
        number: None,
        title: id.into(),
        service_ref: None,
        team_ref: None,
        service: service.map(str::to_owned),
        team: None,
        severity: Some(severity),
        status: if resolved.is_some() {
            "resolved"
        } else {
            "triggered"
        }
        .into(),
        started_at: started,
        acknowledged_at: None,
        resolved_at: resolved,
        cause_refs: vec![],
        correlation_id: None,
        updated_at: resolved.unwrap_or(started),
    }
}
