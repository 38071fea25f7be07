//! Properties of the metric table that hold for any data: through the store (which de-duplicates)
//! and the pipeline, on randomly generated deployments and incidents.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use proptest::prelude::*;
use tandem::metric::MetricRow;
use tandem::metric::calendar::{Calendar, Grain};
use tandem::pipeline::{Inputs, Options, compute_metrics};
use tandem::store::Store;
use tandem_connectors::model::{Deployment, DeploymentStatus, Incident, Severity};

const WEEKS: u32 = 3;

fn start() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2026, 8, 3)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

fn deployment(i: usize, service: &str, minute: i64, ok: bool) -> Deployment {
    let finished = start() + Duration::minutes(minute);
    Deployment {
        change_refs: Vec::new(),
        deployed_by: None,
        id: format!("gh:{i}"),
        source: "gh".into(),
        repo: format!("acme/{service}"),
        service: Some(service.into()),
        team: None,
        environment: "production".into(),
        is_production: true,
        status: if ok {
            DeploymentStatus::Success
        } else {
            DeploymentStatus::Failure
        },
        sha: format!("{i:07x}"),
        created_at: finished - Duration::minutes(5),
        finished_at: Some(finished),
        updated_at: finished,
    }
}

fn incident(i: usize, service: &str, minute: i64, length: Option<i64>, sev: u8) -> Incident {
    let started = start() + Duration::minutes(minute);
    Incident {
        acknowledged_by: None,
        assignee: None,
        id: format!("pd:{i}"),
        source: "pd".into(),
        number: Some(i as i64),
        title: format!("incident {i}"),
        service_ref: None,
        team_ref: None,
        service: Some(service.into()),
        team: None,
        severity: Some(
            [Severity::Sev1, Severity::Sev2, Severity::Sev3, Severity::Sev4][usize::from(sev % 4)],
        ),
        status: if length.is_some() { "resolved" } else { "triggered" }.into(),
        started_at: started,
        acknowledged_at: None,
        resolved_at: length.map(|l| started + Duration::minutes(l)),
        cause_refs: Vec::new(),
        correlation_id: None,
        updated_at: started,
    }
}

const WEEK_MINUTES: i64 = 7 * 24 * 60;

fn services() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("web"), Just("api")]
}

fn data() -> impl Strategy<Value = (Vec<Deployment>, Vec<Incident>)> {
    let range = 0..(i64::from(WEEKS) * WEEK_MINUTES);
    (
        prop::collection::vec((services(), range.clone(), any::<bool>()), 0..25),
        prop::collection::vec(
            (services(), range, prop::option::of(1i64..3_000), any::<u8>()),
            0..15,
        ),
    )
        .prop_map(|(deps, incs)| {
            (
                deps.into_iter()
                    .enumerate()
                    .map(|(i, (s, m, ok))| deployment(i, s, m, ok))
                    .collect(),
                incs.into_iter()
                    .enumerate()
                    .map(|(i, (s, m, l, sev))| incident(i, s, m, l, sev))
                    .collect(),
            )
        })
}

/// Stores the records (each batch upserted as given) and computes the weekly metrics.
fn metrics(batches: &[(Vec<Deployment>, Vec<Incident>)]) -> Vec<MetricRow> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (deps, incs) in batches {
        store.upsert(deps.clone()).unwrap();
        store.upsert(incs.clone()).unwrap();
    }
    let missing = dir.path().join("none.parquet");
    let from = start().date_naive();
    let opts = Options {
        calendar: Calendar::new(
            chrono_tz::Tz::UTC,
            Grain::Week,
            from,
            from + Duration::weeks(i64::from(WEEKS)),
        )
        .unwrap(),
        attribution_window: Duration::hours(24),
        outage_severities: vec![Severity::Sev1, Severity::Sev2],
        services: vec![],
        incident_sources: vec![],
        cause_sources: vec![],
        mirror_match: vec![tandem::pipeline::MirrorMatch::Correlation],
        mirror_start_tolerance: chrono::Duration::minutes(15),
        sla_hours: Default::default(),
        change_window_tolerance: Duration::hours(1),
        slo: Default::default(),
        default_slo: 0.999,
        teams: Default::default(),
        hotfix_labels: vec![],
        attribution: Default::default(),
        metrics: None,
    };
    let files = |t: &str| store.table_files(t, tandem::store::delta::AsOf::Latest).unwrap();
    let (deployments, incidents) = (files("deployments"), files("incidents"));
    compute_metrics(
        Inputs {
            deployments: &deployments,
            changes: std::slice::from_ref(&missing),
            commits: std::slice::from_ref(&missing),
            incidents: &incidents,
            tickets: std::slice::from_ref(&missing),
            ticket_transitions: std::slice::from_ref(&missing),
            change_requests: std::slice::from_ref(&missing),
            quarantine: std::slice::from_ref(&missing),
            prepared: None,
        },
        &opts,
    )
    .unwrap()
    .to_rows()
}

proptest! {
    // Each case runs the whole pipeline: a few dozen cases keep the suite fast.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn invariants_hold_for_any_records((deps, incs) in data()) {
        let rows = metrics(&[(deps.clone(), incs.clone())]);
        // The organisation's downtime is the sum over its services: up to every service's whole
        // period.
        let services = deps
            .iter()
            .filter_map(|d| d.service.as_deref())
            .chain(incs.iter().filter_map(|i| i.service.as_deref()))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            .max(1) as f64;
        for r in &rows {
            let summed = r.scope_type == "org"
                && matches!(r.metric.as_str(), "downtime_minutes" | "change_caused_downtime_minutes");
            let length_minutes =
                (r.period_end - r.period_start).num_minutes() as f64 * if summed { services } else { 1.0 };
            if let Some(v) = r.value {
                prop_assert!(v.is_finite(), "{} is not finite", r.metric);
                match r.unit.as_str() {
                    "ratio" if r.metric != "error_budget_consumed" => {
                        prop_assert!((0.0..=1.0).contains(&v), "{} = {v} outside [0, 1]", r.metric)
                    }
                    "minutes" => prop_assert!(v >= 0.0 && v <= length_minutes + 1e-9, "{} = {v}", r.metric),
                    "count" | "hours" | "per_day" => prop_assert!(v >= 0.0, "{} = {v}", r.metric),
                    _ => {}
                }
            }
            prop_assert!(r.n >= 0);
        }
        // Downtime is a union: never more than the sum of the outage incidents' clipped lengths.
        for r in rows.iter().filter(|r| r.metric == "downtime_minutes" && r.scope_type == "org") {
            let sum: i64 = incs
                .iter()
                .filter(|i| matches!(i.severity, Some(Severity::Sev1 | Severity::Sev2)))
                .map(|i| {
                    let end = i.resolved_at.unwrap_or(r.period_end).min(r.period_end);
                    (end - i.started_at.max(r.period_start)).num_minutes().max(0)
                })
                .sum();
            prop_assert!(r.value.unwrap_or(0.0) <= sum as f64 + 1e-9);
        }

        // Record order and duplicate deliveries (a re-sync, an overlapping window) change nothing.
        let mut reversed = (deps.clone(), incs.clone());
        reversed.0.reverse();
        reversed.1.reverse();
        let again = metrics(&[reversed, (deps, incs)]);
        prop_assert_eq!(again, rows);
    }
}
