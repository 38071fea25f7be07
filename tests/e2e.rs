//! The whole job against the fake APIs: the weekly metrics must equal what the simulated
//! organisation's ground truth says, computed here independently from the generator's records.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use tandem::cli::RangeArgs;
use tandem::metric::MetricRow;
use tandem_fixtures::{Organisation, SimIncident};

use crate::common::{World, env};

const WEEKS: u32 = 8;

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The 90th percentile by linear interpolation between closest ranks.
fn p90(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = 0.9 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

fn hours(d: Duration) -> f64 {
    d.num_seconds() as f64 / 3600.0
}

/// sev1–sev2 by the PagerDuty mapping: P1/P2, or high urgency without a priority.
fn is_outage(i: &SimIncident) -> bool {
    match i.priority.as_deref() {
        Some("P1" | "P2") => true,
        Some(_) => false,
        None => i.urgency == "high",
    }
}

/// Minutes covered by the union of intervals, clipped to [start, end).
fn union_minutes(
    mut intervals: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> f64 {
    intervals.sort();
    let mut total = Duration::zero();
    let mut current: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for (s, e) in intervals {
        let (s, e) = (s.max(start), e.min(end));
        if s >= e {
            continue;
        }
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = current {
        total += ce - cs;
    }
    total.num_seconds() as f64 / 60.0
}

/// The id of a repo's first successful production deployment (the one with no compare).
fn first_production(org: &Organisation, repo: &str) -> Option<u64> {
    org.deployments
        .iter()
        .filter(|d| d.repo == repo && Organisation::is_successful_production(d))
        .filter_map(|d| Some((Organisation::finished_at(d)?, d.id)))
        .min()
        .map(|(_, id)| id)
}

/// The link method behind a service's weekly lead time, from ground truth only: a pull shipped by
/// the repo's first production deployment has no compare to find it in (`time`); every later one
/// is found by ancestry.
fn expected_lead_method(org: &Organisation, service: &str, week_start: DateTime<Utc>) -> Option<String> {
    let week_end = week_start + Duration::weeks(1);
    let repo = &org.service(service).unwrap().repo;
    let first = first_production(org, repo);
    let methods: std::collections::BTreeSet<&str> = org
        .pulls
        .iter()
        .filter(|p| &p.repo == repo)
        .filter_map(|p| {
            let d = org.deployment(p.shipped_in?)?;
            let finished = Organisation::finished_at(d)?;
            (finished >= week_start && finished < week_end).then_some(if Some(d.id) == first {
                "time"
            } else {
                "ancestry"
            })
        })
        .collect();
    (!methods.is_empty()).then(|| methods.into_iter().collect::<Vec<_>>().join("+"))
}

/// Expected weekly values for one service, from ground truth only.
fn expected(
    org: &Organisation,
    service: &str,
    week_start: DateTime<Utc>,
) -> BTreeMap<&'static str, (Option<f64>, i64)> {
    let week_end = week_start + Duration::weeks(1);
    let in_week = |t: DateTime<Utc>| t >= week_start && t < week_end;
    let prod: Vec<_> = org
        .deployments
        .iter()
        .filter(|d| d.service == service && Organisation::is_successful_production(d))
        .filter(|d| Organisation::finished_at(d).is_some_and(in_week))
        .collect();
    let failed = prod.iter().filter(|d| d.caused_incident.is_some()).count();
    let repo = &org.service(service).unwrap().repo;
    let leads: Vec<f64> = org
        .pulls
        .iter()
        .filter(|p| &p.repo == repo)
        .filter_map(|p| {
            let d = org.deployment(p.shipped_in?)?;
            let finished = Organisation::finished_at(d)?;
            if !in_week(finished) {
                return None;
            }
            let first = p
                .commits
                .iter()
                .map(|c| c.authored_at)
                .min()
                .unwrap_or(p.created_at);
            Some(hours(finished - first))
        })
        .collect();
    // The lead time breakdown of the same deployed pulls: coding, review, deploy wait.
    let mut stages: [Vec<f64>; 3] = Default::default();
    for p in org.pulls.iter().filter(|p| &p.repo == repo) {
        let Some(finished) = p
            .shipped_in
            .and_then(|d| org.deployment(d))
            .and_then(Organisation::finished_at)
            .filter(|f| in_week(*f))
        else {
            continue;
        };
        let merged = p.merged_at.unwrap();
        if let Some(first) = p.commits.iter().map(|c| c.authored_at).min() {
            if p.created_at >= first {
                stages[0].push(hours(p.created_at - first));
            }
        }
        stages[1].push(hours(merged - p.created_at));
        stages[2].push(hours(finished - merged));
    }
    let restores: Vec<f64> = org
        .incidents
        .iter()
        .filter(|i| i.service == service)
        .filter_map(|i| {
            i.resolved_at
                .filter(|r| in_week(*r))
                .map(|r| hours(r - i.created_at))
        })
        .collect();
    let outages: Vec<_> = org
        .incidents
        .iter()
        .filter(|i| i.service == service && is_outage(i))
        .map(|i| (i.created_at, i.resolved_at.unwrap_or(week_end)))
        .filter(|(s, e)| *s < week_end && *e > week_start)
        .collect();
    let n_prod = prod.len() as i64;
    let mut m = BTreeMap::new();
    m.insert("deployment_count", (Some(prod.len() as f64), n_prod));
    m.insert("deployment_frequency", (Some(prod.len() as f64 / 7.0), n_prod));
    m.insert("failed_deployment_count", (Some(failed as f64), n_prod));
    m.insert(
        "change_failure_rate",
        ((n_prod > 0).then(|| failed as f64 / prod.len() as f64), n_prod),
    );
    m.insert("lead_time_median", (median(leads.clone()), leads.len() as i64));
    m.insert("lead_time_p90", (p90(leads.clone()), leads.len() as i64));
    for (metric, spans) in [
        "lead_time_coding_median",
        "lead_time_review_median",
        "lead_time_deploy_wait_median",
    ]
    .into_iter()
    .zip(stages)
    {
        m.insert(metric, (median(spans.clone()), spans.len() as i64));
    }
    m.insert(
        "time_to_restore_median",
        (median(restores.clone()), restores.len() as i64),
    );
    m.insert(
        "time_to_restore_mean",
        (
            (!restores.is_empty()).then(|| restores.iter().sum::<f64>() / restores.len() as f64),
            restores.len() as i64,
        ),
    );
    // Failed deployment recovery: each failed deployment's incident resolution minus its finish
    // (the simulation's rollbacks always follow an incident, so the incident remedies first).
    let recoveries: Vec<f64> = prod
        .iter()
        .filter_map(|d| {
            let incident = org.incident(d.caused_incident.as_deref()?)?;
            Some(hours(incident.resolved_at? - Organisation::finished_at(d)?))
        })
        .collect();
    m.insert(
        "failed_deployment_recovery_median",
        (median(recoveries.clone()), recoveries.len() as i64),
    );
    let days: std::collections::BTreeSet<_> = prod
        .iter()
        .filter_map(|d| Organisation::finished_at(d).map(|t| t.date_naive()))
        .collect();
    m.insert("deploy_days", (Some(days.len() as f64), days.len() as i64));
    // Rework: deployments that shipped a hotfix-labelled or revert pull.
    let reworked = prod
        .iter()
        .filter(|d| {
            org.pulls.iter().any(|p| {
                p.shipped_in == Some(d.id)
                    && (p.labels.iter().any(|l| l.eq_ignore_ascii_case("hotfix"))
                        || p.title.starts_with("Revert \""))
            })
        })
        .count();
    m.insert(
        "rework_rate",
        ((n_prod > 0).then(|| reworked as f64 / n_prod as f64), n_prod),
    );
    let merged = org
        .pulls
        .iter()
        .filter(|p| &p.repo == repo && p.merged_at.is_some_and(in_week))
        .count();
    m.insert("changes_merged", (Some(merged as f64), merged as i64));
    // The same merged pulls: how many shipped, and how many of those by ancestry (all but the
    // ones the repo's first production deployment shipped, which has no compare).
    let first = first_production(org, repo);
    let merged_pulls: Vec<_> = org
        .pulls
        .iter()
        .filter(|p| &p.repo == repo && p.merged_at.is_some_and(in_week))
        .collect();
    let shipped = merged_pulls.iter().filter(|p| p.shipped_in.is_some()).count();
    let by_ancestry = merged_pulls
        .iter()
        .filter(|p| p.shipped_in.is_some() && p.shipped_in != first)
        .count();
    let share = |k: usize| (merged > 0).then(|| k as f64 / merged as f64);
    m.insert("changes_deployed_share", (share(shipped), merged as i64));
    m.insert(
        "changes_linked_ancestry_share",
        (share(by_ancestry), merged as i64),
    );
    let n_out = outages.len() as i64;
    m.insert(
        "downtime_minutes",
        (Some(union_minutes(outages, week_start, week_end)), n_out),
    );
    m
}

/// DORA's deployment-frequency tier inputs for a service over the `weeks` weeks from `start`
/// (UTC): the median over the weeks, and over the calendar months the range touches (clipped to
/// it), of the days with a successful production deployment; with the number of each.
fn expected_tier_inputs(
    org: &Organisation,
    service: &str,
    start: DateTime<Utc>,
    weeks: u32,
) -> [(f64, i64); 2] {
    let end = start + Duration::weeks(i64::from(weeks));
    let days: std::collections::BTreeSet<chrono::NaiveDate> = org
        .deployments
        .iter()
        .filter(|d| d.service == service && Organisation::is_successful_production(d))
        .filter_map(Organisation::finished_at)
        .filter(|t| *t >= start && *t < end)
        .map(|t| t.date_naive())
        .collect();
    let mut weekly = vec![0.0; weeks as usize];
    let mut monthly: BTreeMap<(i32, u32), f64> = BTreeMap::new();
    let mut day = start.date_naive();
    while day < end.date_naive() {
        use chrono::Datelike;
        let hit = if days.contains(&day) { 1.0 } else { 0.0 };
        weekly[((day - start.date_naive()).num_days() / 7) as usize] += hit;
        *monthly.entry((day.year(), day.month())).or_insert(0.0) += hit;
        day = day.succ_opt().unwrap();
    }
    let months = monthly.len() as i64;
    [
        (median(weekly).unwrap(), i64::from(weeks)),
        (median(monthly.into_values().collect()).unwrap(), months),
    ]
}

/// `((uncovered, deployments), covered by name only)` for a service's production deployments
/// finished in the week: uncovered when no approved change request of the service (that tandem
/// can read) has a planned window reaching the finish within `tolerance` or is the one the
/// deployment's payload names; the second figure counts those only the name covers.
fn expected_uncovered(
    org: &Organisation,
    service: &str,
    week_start: DateTime<Utc>,
    tolerance: Duration,
) -> ((f64, i64), usize) {
    let sn = &org.servicenow;
    let service_of_ci: BTreeMap<&str, &str> = sn
        .cis
        .iter()
        .map(|c| (c.sys_id.as_str(), c.service.as_str()))
        .collect();
    let week_end = week_start + Duration::weeks(1);
    let finished: Vec<(u64, DateTime<Utc>)> = org
        .deployments
        .iter()
        .filter(|d| d.service == service && Organisation::is_successful_production(d))
        .filter_map(|d| Organisation::finished_at(d).map(|f| (d.id, f)))
        .filter(|(_, f)| *f >= week_start && *f < week_end)
        .collect();
    let of_service = || {
        sn.changes.iter().filter(|c| {
            !c.acl_hidden
                && c.approval == "approved"
                && c.cmdb_ci.as_deref().and_then(|ci| service_of_ci.get(ci)) == Some(&service)
        })
    };
    // Jira change issues of the service are change requests too, approved once their work began
    // (every simulated one began with its deployment).
    let jira_windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = org
        .jira
        .issues
        .iter()
        .filter(|i| i.issue_type == "Change" && i.component.as_deref() == Some(service) && i.quirk.is_none())
        .filter_map(|i| Some((i.planned_start?, i.planned_end?)))
        .collect();
    let covers =
        |(s, e): (DateTime<Utc>, DateTime<Utc>), f: DateTime<Utc>| s - tolerance <= f && f <= e + tolerance;
    let in_window = |f: DateTime<Utc>| {
        jira_windows.iter().any(|&window| covers(window, f))
            || of_service().any(|c| {
                c.start_date
                    .zip(c.end_date)
                    .is_some_and(|window| covers(window, f))
            })
    };
    let named = |id: u64| of_service().any(|c| c.named_by_deployment && c.deployment == Some(id));
    let uncovered = finished
        .iter()
        .filter(|(id, f)| !in_window(*f) && !named(*id))
        .count();
    let by_name = finished
        .iter()
        .filter(|(id, f)| !in_window(*f) && named(*id))
        .count();
    ((uncovered as f64, finished.len() as i64), by_name)
}

/// `tandem run` with `config` over the simulated weeks, which must all sync.
async fn run_over_the_simulation(world: &World, config: &tandem::config::Config) {
    let until = world.org.spec.start + Duration::weeks(i64::from(WEEKS));
    let range = RangeArgs {
        weeks: Some(WEEKS),
        until: Some(until),
        ..RangeArgs::default()
    };
    let ctx = tandem::commands::Context {
        env: env(),
        progress: false,
    };
    let outcome = tandem::commands::run::job(config, &ctx, &range, None)
        .await
        .unwrap();
    assert_eq!(outcome, tandem::commands::Outcome::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_metrics_match_the_ground_truth() {
    let world = World::start(WEEKS).await;
    let config = world.config();
    run_over_the_simulation(&world, &config).await;

    // The report and its charts exist.
    let report_dir = config.resolve(&config.report.out);
    let run = tandem::report::archive::latest(&report_dir, "weekly", None).unwrap();
    let html = std::fs::read_to_string(run.dir.join("report.html")).unwrap();
    assert!(html.contains("<svg"), "the report has inline charts");
    assert!(run.dir.join("deployments_vs_downtime.png").exists());
    assert!(run.dir.join("change_failure_rate.png").exists());

    let store = tandem::store::Store::open(&config.resolve(&config.store.path)).unwrap();
    let parquet = store.metrics_path();
    assert!(parquet.exists());
    assert!(
        !store.root().join("metrics/csv").exists(),
        "no CSV is kept beside the metric table"
    );
    let rows: Vec<MetricRow> = tandem::pipeline::read_metrics(&parquet).unwrap();

    // Every quarantined record is counted in the report's data.
    let stored = store.read::<tandem_connectors::model::Quarantined>().unwrap();
    let quarantined = stored.len();
    assert!(quarantined > 0, "the simulation breaks a few records on purpose");
    let row = rows
        .iter()
        .find(|r| r.metric == "quarantined_records" && r.grain == "range" && r.scope == "all")
        .unwrap();
    assert_eq!((row.value, row.n), (Some(quarantined as f64), quarantined as i64));
    // Each record carries its reason code, and the per-code rows split the total by it.
    assert!(stored.iter().all(|q| q.reason_code.is_some()), "{stored:?}");
    for code in tandem_connectors::model::ReasonCode::ALL {
        let with_code = stored.iter().filter(|q| q.reason_code == Some(code)).count();
        let id = format!("quarantined_{}", code.as_str());
        let row = rows
            .iter()
            .find(|r| r.metric == id && r.grain == "range" && r.scope == "all")
            .unwrap();
        assert_eq!(
            (row.value, row.n),
            (Some(with_code as f64), with_code as i64),
            "{id}"
        );
    }
    assert!(html.contains("Quarantined records"));

    let start = world.org.spec.start_at();
    let mut checked = 0;
    let mut nonzero_failures = 0;
    let mut methods = std::collections::BTreeSet::new();
    for service in world.org.services.iter().map(|s| s.name.as_str()) {
        for w in 0..i64::from(WEEKS) {
            let week_start = start + Duration::weeks(w);
            for (metric, (value, n)) in expected(&world.org, service, week_start) {
                let row = rows
                    .iter()
                    .find(|r| {
                        r.metric == metric
                            && r.grain == "week"
                            && r.scope_type == "service"
                            && r.scope == service
                            && r.period_start == week_start
                    })
                    .unwrap_or_else(|| panic!("no row for {metric} {service} {week_start}"));
                assert_eq!(row.n, n, "{metric} n for {service}, week of {week_start}");
                match (row.value, value) {
                    (Some(a), Some(b)) => assert!(
                        (a - b).abs() < 1e-6,
                        "{metric} for {service}, week of {week_start}: pipeline {a}, ground truth {b}"
                    ),
                    (a, b) => assert_eq!(a, b, "{metric} for {service}, week of {week_start}"),
                }
                if metric == "lead_time_median" {
                    assert_eq!(
                        row.method,
                        expected_lead_method(&world.org, service, week_start),
                        "{metric} method for {service}, week of {week_start}"
                    );
                    methods.extend(row.method.clone());
                }
                if metric == "change_failure_rate" && value.is_some_and(|v| v > 0.0) {
                    nonzero_failures += 1;
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * WEEKS as usize * 18);
    // The deployment-frequency tier inputs of each service, over the whole range.
    for service in world.org.services.iter().map(|s| s.name.as_str()) {
        let expected = expected_tier_inputs(&world.org, service, start, WEEKS);
        for (metric, (value, n)) in ["deploy_days_weekly_median", "deploy_days_monthly_median"]
            .into_iter()
            .zip(expected)
        {
            let row = rows
                .iter()
                .find(|r| r.metric == metric && r.grain == "range" && r.scope == service)
                .unwrap_or_else(|| panic!("no {metric} row for {service}"));
            assert_eq!((row.value, row.n), (Some(value), n), "{metric} for {service}");
        }
    }
    // Deployments without a change record, per service and week: by the planned windows of the
    // approved change requests and by the change a late deployment names in its payload.
    let tolerance = Duration::minutes(config.metrics.change_window_tolerance_minutes);
    let mut named_only = 0;
    for service in world.org.services.iter().map(|s| s.name.as_str()) {
        for w in 0..i64::from(WEEKS) {
            let week_start = start + Duration::weeks(w);
            let (expected, by_name) = expected_uncovered(&world.org, service, week_start, tolerance);
            named_only += by_name;
            let row = rows
                .iter()
                .find(|r| {
                    r.metric == "deployments_without_change_record"
                        && r.grain == "week"
                        && r.scope_type == "service"
                        && r.scope == service
                        && r.period_start == week_start
                })
                .unwrap_or_else(|| panic!("no coverage row for {service} {week_start}"));
            assert_eq!(
                (row.value, row.n),
                (Some(expected.0), expected.1),
                "deployments without a change record for {service}, week of {week_start}"
            );
        }
    }
    assert!(
        named_only > 0,
        "some deployments must be covered only by naming their change, or the reference is untested"
    );
    let relinked = world
        .org
        .pulls
        .iter()
        .filter(|p| p.shipped_in.is_some() && p.shipped_in != p.deployed_in)
        .count();
    assert!(
        relinked > 0,
        "some pull requests must ship with another deployment than time would pick, or ancestry is untested"
    );
    assert!(
        methods.contains("ancestry"),
        "the demo sync fills the commits table, so lead times link by ancestry: {methods:?}"
    );
    assert!(
        nonzero_failures > 0,
        "the simulation must contain failed changes for the test to mean anything"
    );
}

/// `tandem metrics` as a user runs it after a sync: the rows of the chosen scope type in each
/// format, the same figures as the table it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tandem_metrics_prints_the_chosen_scopes_in_each_format() {
    let world = World::start(2).await;
    let secrets = tandem::commands::demo::demo_secrets(&crate::common::fake_options());
    let path = world.config_path.clone();
    let tandem = move |args: &[&str]| {
        let (path, secrets) = (path.clone(), secrets.clone());
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
                .arg("--config")
                .arg(&path)
                .args(&args)
                .envs(secrets)
                .output()
                .unwrap()
        })
    };
    let sync = tandem(&["sync"]).await.unwrap();
    assert!(sync.status.success(), "{}", String::from_utf8_lossy(&sync.stderr));
    let range = ["--weeks", "2", "--until", "2026-08-17"];
    let metrics = |by: &'static str, format: &'static str| {
        let mut args = vec!["metrics", "--by", by, "--format", format];
        args.extend(range);
        tandem(&args)
    };

    let json = metrics("service", "json").await.unwrap();
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let kpis = printed["kpis"].as_array().unwrap().clone();
    let printed: Vec<MetricRow> = serde_json::from_value(printed["metrics"].clone()).unwrap();
    assert!(printed.iter().all(|r| r.scope_type == "service"));
    let services: std::collections::BTreeSet<&str> = printed.iter().map(|r| r.scope.as_str()).collect();
    for service in &world.org.services {
        assert!(services.contains(service.name.as_str()), "{}", service.name);
    }
    // Exactly the service rows of the table the command wrote.
    let config = world.config();
    let store = tandem::store::Store::open(&config.resolve(&config.store.path)).unwrap();
    let parquet = store.metrics_path();
    let stored: Vec<MetricRow> = tandem::pipeline::read_metrics(&parquet).unwrap();
    let stored_services: Vec<&MetricRow> = stored.iter().filter(|r| r.scope_type == "service").collect();
    assert_eq!(printed.len(), stored_services.len());
    // serde_json reads a float back to within one unit in the last place.
    for (a, b) in printed.iter().zip(stored_services) {
        let close = match (a.value, b.value) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * y.abs().max(1.0),
            (x, y) => x == y,
        };
        assert!(close, "{a:?} printed, {b:?} stored");
        assert_eq!(
            MetricRow {
                value: None,
                ..a.clone()
            },
            MetricRow {
                value: None,
                ..b.clone()
            }
        );
    }
    assert!(
        stored
            .iter()
            .any(|r| r.scope_type == "org" && r.metric == "lead_time_median")
    );

    // The KPIs: each with its status, target, value, previous value and the change between them,
    // judged on the latest week of the table.
    assert_eq!(kpis.len(), world.config().kpis.len());
    for k in &kpis {
        for key in ["status", "target", "value", "previous_value", "delta", "change"] {
            assert!(k.get(key).is_some(), "{key} in {k}");
        }
        if let (Some(v), Some(p)) = (k["value"].as_f64(), k["previous_value"].as_f64()) {
            assert!((k["delta"].as_f64().unwrap() - (v - p)).abs() < 1e-9, "{k}");
        }
    }
    let cfr = |kpis: &[serde_json::Value]| {
        kpis.iter()
            .find(|k| k["metric"] == "change_failure_rate")
            .cloned()
            .unwrap()
    };
    assert_eq!(cfr(&kpis)["period_start"], "2026-08-10T00:00:00Z");
    assert_eq!(cfr(&kpis)["period_end"], "2026-08-17T00:00:00Z");

    // With --period divided into days, the KPI block judges the period asked, not its last day,
    // and compares it with the period before.
    let org_json = |period: &'static str| {
        let run = tandem(&[
            "metrics", "--format", "json", "--period", period, "--grain", "day",
        ]);
        async move {
            let out = run.await.unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        }
    };
    let asked = org_json("2026-08-10..2026-08-17").await;
    let before = org_json("2026-08-03..2026-08-10").await;
    let range_value = |json: &serde_json::Value| {
        json["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric"] == "change_failure_rate" && r["grain"] == "range")
            .map(|r| r["value"].clone())
            .unwrap()
    };
    let judged = cfr(asked["kpis"].as_array().unwrap());
    assert_eq!(judged["period_start"], "2026-08-10T00:00:00Z", "{judged}");
    assert_eq!(judged["period_end"], "2026-08-17T00:00:00Z", "{judged}");
    assert_eq!(judged["value"], range_value(&asked), "{judged}");
    assert_eq!(judged["previous_value"], range_value(&before), "{judged}");

    let table = metrics("team", "table").await.unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{text}");
    for team in stored
        .iter()
        .filter(|r| r.scope_type == "team")
        .map(|r| r.scope.as_str())
    {
        assert!(text.contains(team), "{team} in {text}");
    }
    let org = metrics("org", "table").await.unwrap();
    let text = String::from_utf8_lossy(&org.stdout);
    assert!(text.contains("Lead time for changes (median)"), "{text}");

    let as_csv = metrics("org", "csv").await.unwrap();
    assert!(as_csv.status.success());
    // Every row of the version it wrote, as CSV: a header and one line per row of the Parquet file.
    let written = String::from_utf8_lossy(&as_csv.stdout);
    assert!(
        written.starts_with(
            "metric,grain,scope_type,scope,period_start,period_end,value,unit,n,method,no_data\n"
        )
    );
    let rows = tandem::pipeline::read_metrics(&store.metrics_path()).unwrap();
    assert_eq!(written.lines().count(), rows.len() + 1);
}

/// Whether the PagerDuty incident `pd` names its cause only through a ServiceNow mirror that
/// PagerDuty's integration correlated with it: the ground truth of an `explicit` attribution when
/// only ServiceNow supplies cause references.
fn cause_named_by_a_correlated_mirror(org: &Organisation, pd: &SimIncident) -> bool {
    pd.caused_by.is_some()
        && org.servicenow.incidents.iter().any(|m| {
            !m.acl_hidden
                && m.caused_by.is_some()
                && m.correlation_id.as_deref() == Some(pd.id.as_str())
                && m.pagerduty_incident.as_deref() == Some(pd.id.as_str())
        })
}

/// PagerDuty is the system of record and ServiceNow alone may name causes: the incidents counted
/// are PagerDuty's (their ServiceNow and Jira mirrors are not counted again), and an incident
/// whose cause only its correlated ServiceNow mirror names (`caused_by`) is attributed explicitly,
/// to the deployment the ground truth says caused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_incidents_count_once_and_carry_the_servicenow_mirrors_cause() {
    let world = World::start(WEEKS).await;
    let mut config = world.config();
    config.metrics.incident_sources = vec!["pagerduty".into()];
    config.metrics.cause_sources = vec!["servicenow".into()];
    run_over_the_simulation(&world, &config).await;
    let store = tandem::store::Store::open(&config.resolve(&config.store.path)).unwrap();
    let stored = store.read::<tandem_connectors::model::Incident>().unwrap();
    let correlated = |source: &str| {
        stored
            .iter()
            .filter(|i| i.source == source && i.correlation_id.is_some())
            .count()
    };
    assert!(
        correlated("servicenow") > 0 && correlated("jira") > 0,
        "the mirrors are in the lake with their correlation ids"
    );
    let parquet = store.metrics_path();
    let rows: Vec<MetricRow> = tandem::pipeline::read_metrics(&parquet).unwrap();
    let row = |metric: &str, service: &str, week_start: DateTime<Utc>| {
        rows.iter()
            .find(|r| {
                r.metric == metric
                    && r.grain == "week"
                    && r.scope_type == "service"
                    && r.scope == service
                    && r.period_start == week_start
            })
            .unwrap_or_else(|| panic!("no row for {metric} {service} {week_start}"))
    };

    let org = &world.org;
    let start = org.spec.start_at();
    let (mut opened_total, mut explicit_total) = (0, 0);
    for service in org.services.iter().map(|s| s.name.as_str()) {
        for w in 0..i64::from(WEEKS) {
            let week_start = start + Duration::weeks(w);
            let week_end = week_start + Duration::weeks(1);
            let opened: Vec<&SimIncident> = org
                .incidents
                .iter()
                .filter(|i| i.service == service && i.created_at >= week_start && i.created_at < week_end)
                .collect();
            let explicit = opened
                .iter()
                .filter(|i| cause_named_by_a_correlated_mirror(org, i))
                .count();
            opened_total += opened.len();
            explicit_total += explicit;
            let at = format!("{service}, week of {week_start}");
            assert_eq!(
                row("incidents_opened", service, week_start).value,
                Some(opened.len() as f64),
                "incidents opened for {at}: PagerDuty's only"
            );
            let share = row("incidents_attributed_explicit_share", service, week_start);
            let want = (!opened.is_empty()).then(|| explicit as f64 / opened.len() as f64);
            match (share.value, want) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "explicit share for {at}: {a} vs {b}"),
                (a, b) => assert_eq!(a, b, "explicit share for {at}"),
            }
            // Whether explicit or by the window, every cause is the ground truth's.
            let want = expected(org, service, week_start);
            for metric in ["failed_deployment_count", "failed_deployment_recovery_median"] {
                let got = row(metric, service, week_start);
                let (value, n) = want[metric];
                assert_eq!(got.n, n, "{metric} n for {at}");
                match (got.value, value) {
                    (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{metric} for {at}: {a} vs {b}"),
                    (a, b) => assert_eq!(a, b, "{metric} for {at}"),
                }
            }
        }
    }
    assert!(opened_total > 0);
    assert!(
        explicit_total > 0,
        "some causes must be named only by a correlated ServiceNow mirror, or the test means nothing"
    );
    // Without the correlation nothing would be explicit: PagerDuty names no causes and the
    // mirrors are not counted.
    assert!(
        stored
            .iter()
            .filter(|i| i.source == "pagerduty")
            .all(|i| i.cause_refs.is_empty())
    );
}

/// `--metrics`: each selection computes exactly the full table's rows of the metrics it names
/// (one metric of each part a selection may skip, each family's set, and the benchmark's twelve
/// together), and `tandem metrics --metrics` prints them without replacing the stored table.
/// Several ranges computed in one pass give each range's table as computed alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_of_metrics_or_several_ranges_in_one_pass_equal_the_tables_computed_alone() {
    use tandem::metric::MetricId;
    let world = World::start(4).await;
    let config = world.config();
    run_over_the_simulation(&world, &config).await;
    let until = world.org.spec.start + Duration::weeks(4);
    let range = RangeArgs {
        weeks: Some(4),
        until: Some(until),
        ..RangeArgs::default()
    };
    let full = tokio::task::spawn_blocking({
        let (range, config) = (range.clone(), config.clone());
        move || tandem::commands::metrics::calculate(&range, &config).unwrap()
    })
    .await
    .unwrap();
    let twelve = [
        MetricId::DeploymentCount,
        MetricId::DeploymentFrequency,
        MetricId::LeadTimeMedian,
        MetricId::LeadTimeP90,
        MetricId::ChangeFailureRate,
        MetricId::TimeToRestoreMean,
        MetricId::TimeToRestoreMedian,
        MetricId::DowntimeMinutes,
        MetricId::Availability,
        MetricId::TicketsResolved,
        MetricId::TicketBacklog,
        MetricId::SlaBreachRate,
    ];
    // One metric of each part a selection may leave out: the change links and attribution (the
    // metrics that do not read them are computed without), the lead-time aggregates, the
    // recovery, rework and merged-change parts of DORA, the resolved tickets, transitions,
    // backlog, closed change requests and deployment coverage of ITSM, and each other family.
    let singles = [
        MetricId::DeploymentCount,
        MetricId::LeadTimeMedian,
        MetricId::ChangeFailureRate,
        MetricId::LeadTimeP90,
        MetricId::FailedDeploymentRecoveryMedian,
        MetricId::ReworkRate,
        MetricId::ChangesMerged,
        MetricId::DeployDaysWeeklyMedian,
        MetricId::Availability,
        MetricId::ChangeCausedDowntimeMinutes,
        MetricId::TicketsResolvedBug,
        MetricId::TicketCycleTimeMedian,
        MetricId::TicketReopenRate,
        MetricId::SlaOpenPastTarget,
        MetricId::ChangeSuccessRate,
        MetricId::DeploymentsWithoutChangeRecord,
        MetricId::ChangesNegativeSpans,
        MetricId::IncidentsAttributedShare,
        MetricId::IncidentsAttributedWindowShare,
        MetricId::QuarantinedRecords,
        MetricId::TimeToAcknowledgeMedian,
        MetricId::DeploymentsWithoutBaseline,
    ];
    let mut selections: Vec<Vec<MetricId>> = singles.iter().map(|&m| vec![m]).collect();
    selections.extend([
        MetricId::CORE.to_vec(),
        MetricId::DORA.to_vec(),
        MetricId::OPS.to_vec(),
        MetricId::ITSM.to_vec(),
        MetricId::QUALITY.to_vec(),
        twelve.to_vec(),
        // Operations' figures without any that reads the links.
        vec![
            MetricId::DeploymentCount,
            MetricId::DeploymentFrequency,
            MetricId::Availability,
            MetricId::TimeToRestoreMedian,
            MetricId::DeployDays,
            MetricId::ChangesMerged,
            MetricId::IncidentsMappedShare,
        ],
    ]);
    let computed = tokio::task::spawn_blocking({
        let (range, config) = (range.clone(), config.clone());
        move || {
            selections
                .into_iter()
                .map(|only| {
                    let table = tandem::commands::metrics::calculate_only(&range, &config, Some(&only), &[])
                        .unwrap()
                        .remove(0);
                    (only, table.to_rows())
                })
                .collect::<Vec<_>>()
        }
    })
    .await
    .unwrap();
    for (only, rows) in computed {
        let names: Vec<&str> = only.iter().map(|m| m.as_str()).collect();
        let mut expected: Vec<&MetricRow> = full
            .iter()
            .filter(|r| names.contains(&r.metric.as_str()))
            .collect();
        let mut got: Vec<&MetricRow> = rows.iter().collect();
        let key = |r: &&MetricRow| {
            (
                r.metric.clone(),
                r.scope_type.clone(),
                r.scope.clone(),
                r.grain.clone(),
                r.period_start,
            )
        };
        expected.sort_by_key(key);
        got.sort_by_key(key);
        assert!(!expected.is_empty(), "{names:?} has rows in the full table");
        assert_eq!(got, expected, "{names:?}");
    }

    // Several ranges computed in one pass (as a steering report and `tandem run` compute theirs)
    // equal each computed alone: the weeks, days of the last week, and the two weeks before.
    let days = RangeArgs {
        period: Some(format!("{}..{}", until - Duration::days(7), until)),
        grain: Some("day".to_owned()),
        ..RangeArgs::default()
    };
    let before = RangeArgs {
        weeks: Some(2),
        until: Some(until - Duration::weeks(2)),
        ..RangeArgs::default()
    };
    let (together, alone) = tokio::task::spawn_blocking({
        let config = config.clone();
        let ranges = [range.clone(), days, before];
        move || {
            let store = tandem::store::Store::open(&config.resolve(&config.store.path)).unwrap();
            let basis = tandem::commands::basis(&store, None).unwrap();
            let today = chrono::Utc::now().date_naive();
            let together = tandem::commands::calculate_many_on(
                &store,
                &basis,
                &ranges.iter().collect::<Vec<_>>(),
                &config,
                today,
            )
            .unwrap();
            let alone: Vec<Vec<MetricRow>> = ranges
                .iter()
                .map(|r| tandem::commands::calculate_on(&store, &basis, r, &config, today).unwrap())
                .collect();
            (together, alone)
        }
    })
    .await
    .unwrap();
    assert_eq!(together.len(), 3);
    for (one_pass, own) in together.iter().zip(&alone) {
        assert!(!own.is_empty());
        assert_eq!(one_pass.len(), own.len());
        for (a, b) in one_pass.iter().zip(own) {
            assert_eq!(a, b);
        }
    }
    assert_ne!(together[0], together[2], "the ranges differ");
    // A shorter range's weeks are the longer range's weeks: what is worked out only for the
    // periods asked (the incidents attributed, the tickets whose history is read) loses nothing
    // a week of it counts.
    let weeks_of = |rows: &[MetricRow], from: DateTime<Utc>| {
        let mut weeks: Vec<MetricRow> = rows
            .iter()
            .filter(|r| r.grain == "week" && r.period_start >= from)
            .cloned()
            .collect();
        weeks.sort_by(|a, b| {
            (&a.metric, &a.scope_type, &a.scope, a.period_start).cmp(&(
                &b.metric,
                &b.scope_type,
                &b.scope,
                b.period_start,
            ))
        });
        weeks
    };
    let second_half = (until - Duration::weeks(2))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let shorter = tokio::task::spawn_blocking({
        let config = config.clone();
        let range = RangeArgs {
            weeks: Some(2),
            until: Some(until),
            ..RangeArgs::default()
        };
        move || tandem::commands::metrics::calculate(&range, &config).unwrap()
    })
    .await
    .unwrap();
    let (short_weeks, long_weeks) = (weeks_of(&shorter, second_half), weeks_of(&full, second_half));
    assert!(!short_weeks.is_empty());
    assert_eq!(short_weeks.len(), long_weeks.len());
    for (short, long) in short_weeks.iter().zip(&long_weeks) {
        assert_eq!(short, long);
    }

    // The command prints the selection and leaves the stored table as it was.
    let store = tandem::store::Store::open(&config.resolve(&config.store.path)).unwrap();
    let before = std::fs::read(store.metrics_path()).unwrap();
    let until = until.to_string();
    let (code, stdout, stderr) = crate::common::tandem_output(
        &world,
        &[
            "metrics",
            "--metrics",
            "deployment_count,ticket_backlog",
            "--format",
            "csv",
            "--weeks",
            "4",
            "--until",
            &until,
        ],
        "metrics --metrics",
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let metrics: std::collections::BTreeSet<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    assert_eq!(
        metrics,
        ["deployment_count", "ticket_backlog"].into_iter().collect()
    );
    let store = tandem::store::Store::open(&config.resolve(&config.store.path)).unwrap();
    assert_eq!(
        std::fs::read(store.metrics_path()).unwrap(),
        before,
        "the stored table is unchanged"
    );

    let (code, _, stderr) = crate::common::tandem_output(
        &world,
        &["metrics", "--metrics", "deploy_count"],
        "metrics --metrics typo",
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no metric is called \"deploy_count\""),
        "{stderr}"
    );
    assert!(stderr.contains("deployment_count"), "{stderr}");
}
