//! The nightly digest as `tandem run` writes it against the fake APIs, and `tandem report nightly`
//! on its own: run folders, the index, what changed since the previous digest, the run's health.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use tandem::cli::RangeArgs;
use tandem::commands::{Context, Outcome};
use tandem::config::Config;
use tandem::report::nightly::Summary;
use tandem::sync::RunHealth;

use crate::common::{World, env};

/// The run folders of the nightly digests under `out`, oldest first.
fn digests(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join("nightly"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// The demo config plus one KPI on production deployments over the 7 days with `target`.
fn with_deployments_kpi(world: &World, target: &str) -> Config {
    let base =
        tandem::commands::demo::demo_config(&world.org, &world.servers, &crate::common::fake_options());
    let text =
        format!("{base}\n[[kpi]]\nmetric = \"deployment_count\"\ntarget = \"{target}\"\nowners = \"IT\"\n");
    std::fs::write(&world.config_path, text).unwrap();
    world.config()
}

/// The digest's path, from the `digest: PATH` line a run or `report nightly` prints.
fn digest_path(stdout: &str) -> &str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("digest:"))
        .unwrap_or_else(|| panic!("no digest line in {stdout}"))
        .trim()
}

fn status_of(summary: &Summary, key: &str) -> String {
    let k = summary.kpis.iter().find(|k| k.key == key).unwrap();
    k.status.as_str().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tandem_run_writes_the_digest_and_the_next_run_says_what_changed() {
    let world = World::start(4).await;
    let ctx = Context {
        env: env(),
        progress: false,
    };
    let range = RangeArgs {
        weeks: Some(4),
        until: NaiveDate::from_ymd_opt(2026, 8, 31),
        ..RangeArgs::default()
    };
    // 06:00 on 27 August: the digest covers 26 August and the 7 days from 20 August.
    let first_at: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 8, 27, 6, 0, 0).unwrap();
    let config = with_deployments_kpi(&world, ">= 1");
    let outcome = tandem::commands::run::job_at(&config, &ctx, &range, None, first_at)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Success);

    let out = config.resolve(&config.report.out);
    let weekly: Vec<PathBuf> = std::fs::read_dir(out.join("weekly"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        weekly.len() == 1 && weekly[0].join("report.html").exists(),
        "run still writes the weekly report, in its own folder: {weekly:?}"
    );
    let first = digests(&out);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].file_name().unwrap(), "2026-08-27T060000Z");
    for file in ["report.html", "digest.md", "summary.json", "meta.json"] {
        assert!(first[0].join(file).exists(), "{file}");
    }
    let md = std::fs::read_to_string(first[0].join("digest.md")).unwrap();
    assert!(md.starts_with("Acme \\(simulated\\) nightly digest"), "{md}");
    assert!(md.contains("for Wed 2026-08-26"), "{md}");
    assert!(
        md.contains("First digest: no earlier report to compare with."),
        "{md}"
    );
    let sources = config.sources.len();
    assert!(
        md.contains(&format!(
            "Sync 2026-08-27 06:00 UTC: {sources}/{sources} sources ok"
        )),
        "{md}"
    );

    // The headline figures are the metric table's for that day and those 7 days.
    let store = tandem::store::Store::open(&config.resolve(&config.store.path)).unwrap();
    let day_rows = tandem::commands::metrics::calculate(
        &RangeArgs {
            period: Some("2026-08-26".into()),
            ..RangeArgs::default()
        },
        &config,
    )
    .unwrap();
    let week_rows = tandem::commands::metrics::calculate(
        &RangeArgs {
            period: Some("2026-08-20..2026-08-27".into()),
            ..RangeArgs::default()
        },
        &config,
    )
    .unwrap();
    let org = |rows: &[tandem::metric::MetricRow], metric: &str| {
        rows.iter()
            .find(|r| r.metric == metric && r.scope == "all" && r.grain == "range")
            .and_then(|r| r.value)
    };
    let (day, week) = (
        org(&day_rows, "deployment_count").unwrap(),
        org(&week_rows, "deployment_count").unwrap(),
    );
    assert!(week >= 5.0, "enough deployments to judge the KPI: {week}");
    assert!(
        md.contains(&format!("- Deployments: {day} · 7 days {week}\n")),
        "{md}"
    );
    for (metric, title) in tandem::report::nightly::HEADLINES {
        let shown =
            |rows: &[tandem::metric::MetricRow]| tandem::metric::format_value(org(rows, metric), "count");
        let line = format!("- {title}: {} · 7 days {}", shown(&day_rows), shown(&week_rows));
        assert!(md.contains(&line), "{line}\n{md}");
    }
    assert!(
        org(&week_rows, "incidents_opened").unwrap() > 0.0,
        "the simulated week has incidents: {md}"
    );
    let summary = Summary::read(&first[0]).unwrap();
    assert_eq!(summary.figures[0].day, Some(day));
    assert_eq!(summary.figures[0].week, Some(week));
    assert_eq!(status_of(&summary, "deployment_count@org"), "green");
    // The digest's own days did not replace the stored metric table (weekly, 4 weeks).
    let parquet = store.metrics_path();
    let stored = tandem::pipeline::read_metrics(&parquet).unwrap();
    assert!(stored.iter().all(|r| r.grain == "week" || r.grain == "range"));

    // The health of the run is in the store for `tandem report nightly` to show.
    let health = RunHealth::load(&store).unwrap();
    assert_eq!(health.started_at, first_at);
    assert_eq!(health.sources.len(), sources);
    assert!(health.sources.iter().all(|s| s.ok()));
    assert!(health.sources.iter().map(|s| s.records).sum::<usize>() > 0);
    assert!(health.sources.iter().map(|s| s.quarantined).sum::<usize>() > 0);
    // The requests are the run's own, as its reads reported them: every one the fakes answered.
    let requests_of = |name: &str| health.sources.iter().find(|s| s.source == name).unwrap().requests;
    assert_eq!(
        requests_of("github"),
        world.servers.github.control.request_count() as u64
    );
    assert_eq!(
        requests_of("pagerduty"),
        world.servers.pagerduty.control.request_count() as u64
    );

    // A day later, with the deployments KPI out of reach: it turns red.
    let second_at = first_at + chrono::Duration::days(1);
    let config = with_deployments_kpi(&world, ">= 100000");
    let outcome = tandem::commands::run::job_at(&config, &ctx, &range, None, second_at)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Success);
    let both = digests(&out);
    assert_eq!(both.len(), 2);
    let md = std::fs::read_to_string(both[1].join("digest.md")).unwrap();
    let changed = md
        .lines()
        .find(|l| l.starts_with("KPIs that changed since 2026-08-27 06:00 UTC: "))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(
        changed.contains("Production deployments \\(org\\) green → red"),
        "{changed}"
    );
    // Every other KPI is listed exactly when its status differs between the two summaries.
    let second = Summary::read(&both[1]).unwrap();
    for k in &second.kpis {
        let before = status_of(&summary, &k.key);
        let listed = changed.contains(&format!("{before} → {}", k.status.as_str()));
        if before != k.status.as_str() {
            assert!(listed, "{} changed: {changed}", k.key);
        }
    }
    assert_eq!(
        changed.matches('→').count(),
        second
            .kpis
            .iter()
            .filter(|k| status_of(&summary, &k.key) != k.status.as_str())
            .count(),
        "{changed}"
    );

    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        index.contains("nightly/2026-08-27T060000Z/report.html"),
        "{index}"
    );
    assert!(index.contains("nightly/2026-08-28T060000Z/digest.md"), "{index}");
    let html = std::fs::read_to_string(both[1].join("report.html")).unwrap();
    assert!(html.contains("What changed since the last report"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_metrics_fail_still_records_its_own_health() {
    let world = World::start(1).await;
    let config = world.config();
    let ctx = Context {
        env: env(),
        progress: false,
    };
    let first_at: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 8, 10, 6, 0, 0).unwrap();
    let range = RangeArgs {
        weeks: Some(1),
        until: NaiveDate::from_ymd_opt(2026, 8, 10),
        ..RangeArgs::default()
    };
    tandem::commands::run::job_at(&config, &ctx, &range, None, first_at)
        .await
        .unwrap();
    // The next night the sync succeeds but the metrics fail.
    let second_at = first_at + chrono::Duration::days(1);
    let broken = RangeArgs {
        period: Some("not-a-period".to_owned()),
        ..RangeArgs::default()
    };
    let err = tandem::commands::run::job_at(&config, &ctx, &broken, None, second_at)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("not-a-period"), "{err:#}");
    let store = tandem::store::Store::open(&config.resolve(&config.store.path)).unwrap();
    let health = RunHealth::load(&store).unwrap();
    assert_eq!(
        health.started_at, second_at,
        "the failed run's health, not the previous one's"
    );
    assert!(health.sources.iter().all(|s| s.ok()), "{health:?}");
    assert!(health.seconds > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_nightly_on_its_own_shows_the_last_run() {
    let world = World::start(1).await;
    let secrets = tandem::commands::demo::demo_secrets(&crate::common::fake_options());
    let path = world.config_path.clone();
    let tandem_with = move |args: &[&str], overrides: &[(&str, &str)]| {
        let (path, secrets) = (path.clone(), secrets.clone());
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_tandem"))
                .arg("--config")
                .arg(&path)
                .args(&args)
                .envs(secrets)
                .envs(overrides)
                .output()
                .unwrap()
        })
    };
    let tandem = |args: &[&str]| tandem_with(args, &[]);

    let run = tandem(&["run"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}");
    let digest = digest_path(&stdout);
    assert!(Path::new(digest).exists(), "{digest}");

    let alone = tandem(&["report", "nightly", "--period", "2026-08-05"])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&alone.stdout);
    assert_eq!(alone.status.code(), Some(0), "{stdout}");
    let md_path = digest_path(&stdout);
    let md = std::fs::read_to_string(md_path).unwrap();
    let config = world.config();
    let store = tandem::store::Store::open(&config.resolve(&config.store.path)).unwrap();
    let health = RunHealth::load(&store).unwrap();
    let when = health.started_at.format("%Y-%m-%d %H:%M UTC");
    assert!(md.contains("for Wed 2026-08-05"), "{md}");
    assert!(md.contains(&format!("Sync {when}: ")), "{md}");
    let index = std::fs::read_to_string(config.resolve(&config.report.out).join("index.html")).unwrap();
    assert_eq!(index.matches("/digest.md\"").count(), 2, "{index}");

    let bad = tandem(&["report", "nightly", "--period", "2026-Q3"])
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not a single day") && stderr.contains("--period DAY"),
        "{stderr}"
    );

    // The weekly report of a named month: computed for that range, the stored table left alone.
    let stored = store.metrics_path();
    let stored_before = std::fs::read(&stored).unwrap();
    let weekly = tandem(&["report", "weekly", "--period", "2026-08"])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&weekly.stdout);
    assert_eq!(weekly.status.code(), Some(0), "{stdout}");
    let run = tandem::report::archive::latest(&config.resolve(&config.report.out), "weekly", None).unwrap();
    assert!(run.meta.period.starts_with("2026-08-01"), "{:?}", run.meta);
    assert!(run.meta.period.contains("2026-08-31"), "{:?}", run.meta);
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        stored_before,
        "the stored metric table is kept"
    );

    // A revoked token: the run is partial (exit 3) and the digest names the failed source,
    // never the secret.
    let partial = tandem_with(&["run"], &[("TANDEM_DEMO_GITHUB_TOKEN", "ghp_revoked_4f1c")])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&partial.stdout);
    assert_eq!(partial.status.code(), Some(3), "{stdout}");
    let md_path = digest_path(&stdout);
    let md = std::fs::read_to_string(md_path).unwrap();
    let n = config.sources.len();
    assert!(md.contains(&format!("{}/{n} sources ok", n - 1)), "{md}");
    let failed = md
        .lines()
        .find(|l| l.starts_with("- FAILED github/"))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(failed.contains(r"TANDEM\_DEMO\_GITHUB\_TOKEN"), "{failed}");
    assert!(!md.contains("ghp_revoked_4f1c"), "never print the secret");
    let html = std::fs::read_to_string(Path::new(md_path).with_file_name("report.html")).unwrap();
    assert!(html.contains("failed") && !html.contains("ghp_revoked_4f1c"));
}
