//! `tandem demo` as a new user runs it: one command writes every kind of output.

use std::path::Path;
use std::process::Command;

use tandem::report::archive;

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_demo_writes_every_report_kind_and_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let run = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["demo", "--weeks", "8", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stdout}\n{stderr}");

    let reports = out.join("report");
    let runs = archive::runs(&reports);
    let kinds: Vec<&str> = runs.iter().map(|r| r.meta.kind.as_str()).collect();
    for kind in ["weekly", "steering", "export"] {
        assert_eq!(
            kinds.iter().filter(|k| **k == kind).count(),
            1,
            "{kind}: {kinds:?}"
        );
    }
    assert_eq!(kinds.iter().filter(|k| **k == "nightly").count(), 2, "{kinds:?}");
    for run in &runs {
        assert!(run.dir.join(&run.meta.main).is_file(), "{}", run.href);
        assert!(
            stdout.contains(&*run.dir.to_string_lossy()),
            "the demo says where {} went",
            run.href
        );
    }
    let index = std::fs::read_to_string(reports.join("index.html")).unwrap();
    for run in &runs {
        assert!(index.contains(&run.folder), "index lists {}", run.href);
    }

    // The later digest compares with the earlier one.
    let nightly: Vec<_> = runs.iter().filter(|r| r.meta.kind == "nightly").collect();
    let (later, earlier) = (nightly[0], nightly[1]);
    assert!(later.meta.generated_at > earlier.meta.generated_at);
    let later_md = std::fs::read_to_string(later.dir.join("digest.md")).unwrap();
    let earlier_md = std::fs::read_to_string(earlier.dir.join("digest.md")).unwrap();
    assert!(earlier_md.contains("First digest"), "{earlier_md}");
    assert!(!later_md.contains("First digest"), "{later_md}");
    assert!(later_md.contains("since"), "{later_md}");

    // The steering page and its charts; the export with its schema.
    let steering = runs.iter().find(|r| r.meta.kind == "steering").unwrap();
    let html = std::fs::read_to_string(steering.dir.join("report.html")).unwrap();
    assert!(
        html.contains("Shared KPIs") && html.contains("<svg"),
        "steering page"
    );
    assert!(files(&steering.dir).iter().any(|f| f.ends_with(".png")));
    let export = runs.iter().find(|r| r.meta.kind == "export").unwrap();
    let exported = files(&export.dir);
    for name in [
        "SCHEMA.md",
        "schema.json",
        "metrics.parquet",
        "metrics.csv",
        "deployments.parquet",
    ] {
        assert!(exported.contains(&name.to_owned()), "{name}: {exported:?}");
    }
}

/// A first look at `tandem demo` was dominated by alarming figures: services at 99.1% and 9×
/// their error budget, digests made on a Sunday about a Saturday, and the second digest's sync
/// line naming the run before it. With the defaults a new user runs: every service at least
/// 99.5% available, most within 3 error budgets, digests made on working days about working days,
/// each naming its own run.
#[test]
fn the_demo_company_is_plausible_and_its_digests_fall_on_working_days_naming_their_own_runs() {
    use chrono::{Datelike, Weekday};

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let run = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("demo")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let store = tandem::store::Store::open(&out.join("lake")).unwrap();
    let parquet = store.metrics_path();
    let rows = tandem::pipeline::read_metrics(&parquet).unwrap();
    let of = |metric: &str| -> Vec<(String, f64)> {
        rows.iter()
            .filter(|r| r.metric == metric && r.grain == "range" && r.scope_type == "service")
            .map(|r| (r.scope.clone(), r.value.unwrap()))
            .collect()
    };
    let availability = of("availability");
    assert!(availability.len() >= 4, "{availability:?}");
    for (service, a) in &availability {
        assert!(*a >= 0.995, "{service} {a}");
    }
    // The demo's config sets no SLO: the default, 99.9%, is the one judged.
    let config = tandem::config::Config::load(&out.join("tandem.toml")).unwrap();
    assert!((config.metrics.default_slo - 0.999).abs() < 1e-12);
    assert!(config.services.iter().all(|s| s.slo.is_none()));
    let budgets = of("error_budget_consumed");
    let within = budgets.iter().filter(|(_, b)| *b <= 3.0).count();
    assert!(within * 4 >= budgets.len() * 3, "{budgets:?}");

    let runs = archive::runs(&out.join("report"));
    let nightly: Vec<_> = runs.iter().filter(|r| r.meta.kind == "nightly").collect();
    assert_eq!(nightly.len(), 2);
    let working = |day: Weekday| !matches!(day, Weekday::Sat | Weekday::Sun);
    for digest in nightly {
        let made = digest.meta.generated_at;
        assert!(working(made.weekday()), "made on a {}", made.weekday());
        let described = made.date_naive().pred_opt().unwrap();
        assert!(working(described.weekday()), "about a {}", described.weekday());
        let md = std::fs::read_to_string(digest.dir.join("digest.md")).unwrap();
        assert!(
            md.contains(&format!("digest for {}", described.format("%a %Y-%m-%d"))),
            "{md}"
        );
        // The sync line names the run that made this digest, not the one before.
        let sync = md.lines().find(|l| l.starts_with("Sync ")).unwrap();
        assert!(
            sync.starts_with(&format!("Sync {}:", made.format("%Y-%m-%d %H:%M UTC"))),
            "{sync} in a digest made {made}"
        );
    }
}
