//! The README documents what the code does: the canonical schema is generated from the code's own
//! column declarations and must match. And the floors the README describes hold in the source:
//! a floor imports only the floors below it.

#[test]
fn readme_documents_the_canonical_schema() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let schema = tandem::store::schema_markdown();
    assert!(
        readme.contains(&schema),
        "README.md's canonical tables section is out of date; replace it with:\n\n{schema}\n"
    );
}

#[test]
fn readme_documents_every_metric() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for m in tandem::metric::MetricId::ALL {
        assert!(
            readme.contains(&format!("`{}`", m.as_str())),
            "README lacks metric {}",
            m.as_str()
        );
    }
}

#[test]
fn every_metric_belongs_to_exactly_one_family() {
    use tandem::metric::MetricId;
    let families: Vec<MetricId> = MetricId::CORE
        .iter()
        .chain(&MetricId::DORA)
        .chain(&MetricId::OPS)
        .chain(&MetricId::ITSM)
        .chain(&MetricId::QUALITY)
        .copied()
        .collect();
    for m in MetricId::ALL {
        assert_eq!(
            families.iter().filter(|f| **f == m).count(),
            1,
            "{} must be computed by exactly one family",
            m.as_str()
        );
    }
    assert_eq!(families.len(), MetricId::ALL.len());
}

#[test]
fn readme_gives_every_metric_its_unit() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for m in tandem::metric::MetricId::ALL {
        let id = format!("`{}`", m.as_str());
        // The metric table's row: the id in its first cell, the unit in the second.
        let row = readme
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                (cells.len() > 3 && cells[1].split(", ").any(|c| c == id)).then(|| cells[2].to_owned())
            })
            .next();
        assert_eq!(row.as_deref(), Some(m.unit()), "README's unit of {}", m.as_str());
    }
}

/// The README said availability was exempt from `n < 5` while a KPI on it was marked insufficient:
/// the figures it names as exempt, and as judged, must be what the catalogue says.
#[test]
fn readme_and_catalogue_agree_on_which_figures_are_exempt_from_the_sample_rule() {
    use tandem::metric::MetricId::*;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains("`MetricId::is_sample`"),
        "README names the rule's one place"
    );
    for exempt in [
        Availability,
        DowntimeMinutes,
        DowntimeAnyServiceMinutes,
        ChangeCausedDowntimeMinutes,
        ErrorBudgetConsumed,
        DeploymentCount,
        DeploymentFrequency,
        ChangesMerged,
        IncidentsOpened,
        TicketsResolved,
        SlaBreaches,
        DeployDays,
        QuarantinedRecords,
    ] {
        assert!(!exempt.is_sample(), "{} is exempt in the README", exempt.as_str());
    }
    for judged in [
        LeadTimeMedian,
        ChangeFailureRate,
        FailedDeploymentRecoveryMedian,
        ReworkRate,
        TimeToRestoreMean,
        DeployDaysWeeklyMedian,
        DeploymentsDowntimeCorrelation,
    ] {
        assert!(
            judged.is_sample(),
            "{} is a sample in the README",
            judged.as_str()
        );
    }
}

/// The Rust files under `dir` (relative to the crate root), each with its code lines: comments
/// are left out, so a doc comment may say what a module must not use.
fn code_lines(dir: &str) -> Vec<(std::path::PathBuf, Vec<String>)> {
    let mut pending = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    let mut files = Vec::new();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let code = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .map(str::to_owned)
                .collect();
            files.push((path, code));
        }
    }
    assert!(!files.is_empty(), "no Rust files under {dir}");
    files
}

/// The metric catalogue is the ground floor: nothing in `src/metric/` reaches polars, I/O or a
/// floor above it (`metric.rs` and `pipeline/tiers.rs` used to import each other).
#[test]
fn the_metric_floor_uses_no_polars_no_io_and_nothing_above_it() {
    for (path, code) in code_lines("src/metric") {
        for line in code {
            let above = line
                .match_indices("crate::")
                .any(|(at, _)| !line[at..].starts_with("crate::metric"));
            let io = ["std::fs", "std::io", "std::net", "tokio"]
                .iter()
                .any(|m| line.contains(m));
            assert!(
                !line.contains("polars") && !above && !io,
                "{}: `{}` reaches beyond the metric floor",
                path.display(),
                line.trim()
            );
        }
    }
}

/// The export has its own floor above the pipeline: `src/export/` describes and names the files and
/// leaves polars to the pipeline (`pipeline::frames`), and the pipeline never reaches up into the
/// export, the reports or the commands (the export used to live inside the pipeline).
#[test]
fn the_export_floor_uses_no_polars_and_the_pipeline_imports_nothing_above_it() {
    let floors: [(&str, &[&str]); 2] = [
        ("src/export", &["polars", "crate::commands", "crate::report"]),
        (
            "src/pipeline",
            &["crate::export", "crate::report", "crate::commands"],
        ),
    ];
    for (dir, banned) in floors {
        for (path, code) in code_lines(dir) {
            for line in code {
                if let Some(word) = banned.iter().find(|b| line.contains(*b)) {
                    panic!(
                        "{}: `{}` names `{word}`, which is not below its floor",
                        path.display(),
                        line.trim()
                    );
                }
            }
        }
    }
}

/// The engine schedules the metric families and the families never import it (the engine and
/// dora, ops, itsm and quality used to form a circle).
#[test]
fn metric_families_never_import_the_engine() {
    for (path, code) in code_lines("src/pipeline/families") {
        for line in code {
            assert!(
                !line.contains("engine::") && !line.contains("::engine"),
                "{}: `{}` imports the engine",
                path.display(),
                line.trim()
            );
        }
    }
}

/// The runner's floor sits above the store and beside the pipeline: nothing in `src/sync/` reaches
/// the pipeline, the reports, the export or the commands, nor polars (the store's codec owns that).
#[test]
fn the_sync_floor_imports_nothing_above_it_and_no_polars() {
    let above = [
        "crate::pipeline",
        "crate::report",
        "crate::export",
        "crate::commands",
        "polars",
    ];
    for (path, code) in code_lines("src/sync") {
        for line in code {
            assert!(
                !above.iter().any(|m| line.contains(m)),
                "{}: `{}` reaches above the sync floor",
                path.display(),
                line.trim()
            );
        }
    }
}

/// The pipeline sits beside the runner and never imports it: both read the store, neither the
/// other. (The store's own floor, `sync` included, is checked in `src/store/codec.rs`.)
#[test]
fn the_pipeline_never_imports_the_runner() {
    for (path, code) in code_lines("src/pipeline") {
        for line in code {
            assert!(
                !line.contains("crate::sync"),
                "{}: `{}` imports the sync runner",
                path.display(),
                line.trim()
            );
        }
    }
}
