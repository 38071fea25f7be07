//! Time travel: a report re-rendered `--as-of` a metric table version is the report first rendered
//! from it, byte for byte, whatever was synced and computed since.

use std::path::{Path, PathBuf};

use chrono::{Duration, SecondsFormat};
use tandem::cli::RangeArgs;
use tandem::config::Config;
use tandem::store::Store;
use tandem::store::delta::AsOf;
use tandem_connectors::model::{Deployment, DeploymentStatus};

use crate::common::{World, env, fast_sync, tandem_command};

const WEEKS: u32 = 4;

fn range(world: &World) -> RangeArgs {
    RangeArgs {
        weeks: Some(WEEKS),
        until: Some(world.org.spec.start + Duration::weeks(i64::from(WEEKS))),
        ..RangeArgs::default()
    }
}

/// Runs the binary; returns its exit code, stdout and stderr.
fn tandem(world: &World, args: &[&str]) -> (i32, String, String) {
    let out = tandem_command(&world.config_path, args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Renders a report into `out` and returns the page and the charts it printed, with their bytes.
fn render(world: &World, out: &Path, extra: &[&str]) -> (Vec<(String, Vec<u8>)>, PathBuf) {
    let mut args = vec!["report"];
    args.extend_from_slice(extra);
    args.extend(["--out", out.to_str().unwrap()]);
    let (code, stdout, stderr) = tandem(world, &args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let mut files = Vec::new();
    let mut html = PathBuf::new();
    for line in stdout.lines() {
        if let Some(path) = line
            .strip_prefix("report: ")
            .or_else(|| line.strip_prefix("chart:  "))
        {
            let path = PathBuf::from(path.trim());
            if line.starts_with("report: ") {
                html = path.clone();
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.push((name, std::fs::read(&path).unwrap()));
        }
    }
    assert!(files.len() >= 3, "the page and its charts: {stdout}");
    (files, html)
}

fn meta(html: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(html.parent().unwrap().join("meta.json")).unwrap()).unwrap()
}

/// A production deployment more in the first simulated week: the metric table changes.
fn add_deployment(store: &Store) {
    let mut rows = store.read::<Deployment>().unwrap();
    let template = rows
        .iter()
        .find(|d| d.is_production && d.status == DeploymentStatus::Success)
        .cloned()
        .unwrap();
    let n = rows.len();
    rows.clear();
    rows.push(Deployment {
        id: format!("time-travel-{n}"),
        ..template
    });
    store.upsert(rows).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_as_of_a_version_is_the_report_first_rendered_from_it() {
    let world = World::start(WEEKS).await;
    let config: Config = world.config();
    let store = Store::open(&config.resolve(&config.store.path)).unwrap();
    tandem::sync::sync(&config, &store, &env(), &fast_sync())
        .await
        .unwrap();
    let reports = world.dir.path().join("reports");
    tokio::task::spawn_blocking({
        let (config, range) = (config.clone(), range(&world));
        move || tandem::commands::metrics::compute(&range, &config).unwrap()
    })
    .await
    .unwrap();
    let first = store.metrics_version(AsOf::Latest).unwrap().unwrap();

    let (weekly, html) = render(&world, &reports.join("1"), &[]);
    let page = String::from_utf8_lossy(&weekly[0].1).into_owned();
    let shown = first
        .committed_at
        .format("Generated %Y-%m-%d %H:%M UTC")
        .to_string();
    assert!(
        page.contains(&shown) && first.committed_at.timestamp() > 1_700_000_000,
        "the page shows when its version was committed, {shown}"
    );
    let recorded = meta(&html);
    assert_eq!(recorded["read"]["metrics"], first.version, "{recorded}");
    assert_eq!(
        recorded["read"]["tables"]["deployments"],
        store.table_version("deployments", AsOf::Latest).unwrap().unwrap(),
        "the canonical tables' versions behind it: {recorded}"
    );
    let until = (world.org.spec.start + Duration::weeks(i64::from(WEEKS))).to_string();
    let weeks = WEEKS.to_string();
    let steering_args = [
        "steering",
        "--weeks",
        weeks.as_str(),
        "--until",
        until.as_str(),
        "--as-of",
    ];
    let first_version = first.version.to_string();
    let (steering, _) = render(
        &world,
        &reports.join("1"),
        &[&steering_args[..], &[first_version.as_str()]].concat(),
    );

    // The data changes and the metric table is computed again.
    add_deployment(&store);
    tokio::task::spawn_blocking({
        let (config, range) = (config.clone(), range(&world));
        move || tandem::commands::metrics::compute(&range, &config).unwrap()
    })
    .await
    .unwrap();
    let second = store.metrics_version(AsOf::Latest).unwrap().unwrap();
    assert_eq!(second.version, first.version + 1);
    let (latest, _) = render(&world, &reports.join("2"), &[]);
    assert_ne!(latest[0].1, weekly[0].1, "the new version's report differs");

    // A source the lake since lost (its table was deleted, so it is read again from the start):
    // reports now say its figures have no data; reports as of the versions before do not.
    tandem::store::coverage::Coverage::forget(&store, &["github/deployments".to_owned()]).unwrap();
    let now_args = [
        "steering",
        "--weeks",
        &WEEKS.to_string(),
        "--until",
        &(world.org.spec.start + Duration::weeks(i64::from(WEEKS))).to_string(),
    ]
    .map(|s| s.to_owned());
    let now_args: Vec<&str> = now_args.iter().map(String::as_str).collect();
    let (steering_lost, _) = render(&world, &reports.join("2"), &now_args);
    let page = String::from_utf8_lossy(&steering_lost[0].1).into_owned();
    assert!(page.contains("github has never synced"), "{page}");

    // As of the first version, by number and by time: the first report, byte for byte.
    let version = first.version.to_string();
    let (again, html) = render(&world, &reports.join("3"), &["--as-of", &version]);
    assert_eq!(again, weekly, "report.html and the charts are identical");
    assert_eq!(meta(&html)["read"], recorded["read"]);
    let instant = first.committed_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let (by_time, _) = render(&world, &reports.join("4"), &["--as-of", &instant]);
    assert_eq!(
        by_time, weekly,
        "the latest version committed at or before {instant}"
    );
    let (steering_again, _) = render(
        &world,
        &reports.join("4"),
        &[&steering_args[..], &[version.as_str()]].concat(),
    );
    assert_eq!(
        steering_again, steering,
        "the steering report is computed from the tables as the metric table saw them"
    );
    let second_version = second.version.to_string();
    let (steering_now, _) = render(
        &world,
        &reports.join("4"),
        &[&steering_args[..], &[second_version.as_str()]].concat(),
    );
    assert_ne!(
        steering_now[0].1, steering[0].1,
        "the added deployment shows in the later version's"
    );

    // A version that does not exist, or an instant before the first: exit 1 saying what exists.
    for (asked, says) in [
        ("99".to_owned(), "no version 99".to_owned()),
        (
            "2001-01-01T00:00:00Z".to_owned(),
            "no version committed at or before 2001-01-01T00:00:00Z".to_owned(),
        ),
    ] {
        let (code, _, stderr) = tandem(
            &world,
            &["report", "--as-of", &asked, "--out", reports.to_str().unwrap()],
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&says) && stderr.contains(&format!("to {} (committed", second.version)),
            "{stderr}"
        );
    }
    let (code, _, stderr) = tandem(&world, &["report", "--as-of", "last tuesday"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("RFC 3339"), "{stderr}");
    let (code, _, stderr) = tandem(&world, &["report", "nightly", "--as-of", &version]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("does not apply to the nightly digest"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_report_of_a_run_renders_again_as_of_its_version_and_the_run_is_in_the_history() {
    let world = World::start(WEEKS).await;
    let config = world.config();
    let ctx = tandem::commands::Context {
        env: env(),
        progress: false,
    };
    let at = chrono::DateTime::parse_from_rfc3339("2026-08-27T06:00:00Z")
        .unwrap()
        .to_utc();
    tandem::commands::run::job_at(&config, &ctx, &range(&world), None, at)
        .await
        .unwrap();
    let out = tandem::commands::out_dir(&config, None).unwrap();
    let run = tandem::report::archive::latest(&out, "weekly", None).expect("the run's weekly report");
    let read = run.meta.read.clone().expect("the versions it read");
    let version = read.metrics.unwrap().to_string();
    let (again, _) = render(&world, &world.dir.path().join("again"), &["--as-of", &version]);
    for (name, bytes) in &again {
        assert_eq!(
            &std::fs::read(run.dir.join(name)).unwrap(),
            bytes,
            "{name} as `tandem run` wrote it"
        );
    }

    // The run's streams are in the run history, each with what it did.
    let store = Store::open(&config.resolve(&config.store.path)).unwrap();
    let history = tandem::pipeline::read_runs(&store.runs_files().unwrap()).unwrap();
    let streams: std::collections::BTreeSet<(&str, &str)> = history
        .iter()
        .map(|r| (r.source.as_str(), r.stream.as_str()))
        .collect();
    assert_eq!(history.len(), streams.len(), "one row per stream");
    for source in &config.sources {
        assert!(
            history.iter().any(|r| r.source == source.name()),
            "{}",
            source.name()
        );
    }
    assert!(history.iter().all(|r| r.started_at == at && r.error.is_none()));
    assert!(history.iter().map(|r| r.records).sum::<i64>() > 0);
    assert_eq!(read.tables, store.table_versions().unwrap());
}
