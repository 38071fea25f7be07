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
