//! `tandem report`: render a report kind from the metric table into its own run folder under the
//! report directory, and rewrite the history page listing every run.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::{Context, Outcome};
use crate::cli::{ReportArgs, ReportKind};
use crate::config::Config;
use crate::metric::MetricRow;
use crate::pipeline;
use crate::report::archive::{self, Meta};
use crate::report::{self, ReportError, ReportOutput};
use crate::store::Store;

/// Writes the report `args.kind` names.
pub fn run(args: &ReportArgs, config: &Config, ctx: &Context) -> anyhow::Result<Outcome> {
    match args.kind {
        ReportKind::Weekly => weekly(args, config).map(|()| Outcome::Success),
        ReportKind::Steering => super::steering::run(args, config, ctx),
        ReportKind::Nightly => super::nightly::run(args, config, ctx),
    }
}

/// Renders the weekly report: of the range the flags name (`--period`, `--weeks`, `--until`,
/// `--grain`), computed from the lake without replacing the stored metric table; with no range
/// flag, of the stored metric table (the last `tandem metrics` or `tandem run`).
fn weekly(args: &ReportArgs, config: &Config) -> anyhow::Result<()> {
    let rows = if args.range.is_given() {
        super::metrics::calculate(&args.range, config)?
    } else {
        let store = Store::open(&config.resolve(&config.store.path))?;
        let (parquet, _) = store.metrics_paths();
        if !parquet.exists() {
            anyhow::bail!(
                "no metric table at {}: run `tandem metrics` (or `tandem run`) first, or name a \
                 range (e.g. `tandem report weekly --weeks 12`)",
                parquet.display()
            );
        }
        pipeline::read_metrics(&parquet)?
    };
    let output = render(&rows, config, args.out.clone())?;
    print_output(&output);
    Ok(())
}

/// The report directory: `--out`, else `report.out` from the config, relative to the config file.
pub fn out_dir(config: &Config, out: Option<PathBuf>) -> PathBuf {
    config.resolve(&out.unwrap_or_else(|| config.report.out.clone()))
}

/// Renders the weekly report of `rows` into a new run folder `<out>/weekly/<timestamp>/` and
/// rewrites the history page.
pub fn render(rows: &[MetricRow], config: &Config, out: Option<PathBuf>) -> anyhow::Result<ReportOutput> {
    let out_dir = out_dir(config, out);
    let now = Utc::now();
    // Built once: its period names the run, and it is what gets rendered.
    let view = report::view::build(&config.organisation.name, now, rows, &config.kpis);
    let run = Run {
        kind: "weekly",
        title: format!(
            "{} \u{2014} {} IT and operations report",
            config.organisation.name,
            view.page.cadence.to_lowercase()
        ),
        period: view.page.range.clone().unwrap_or_else(|| "no data".to_owned()),
        generated_at: now,
    };
    archived(&out_dir, &config.organisation.name, &run, |dir| {
        report::render_view(&view, dir)
    })
}

/// One report run, as the history describes it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The report kind, also its folder under the report directory.
    pub kind: &'static str,
    /// Title listed in the history.
    pub title: String,
    /// The period as readers name it.
    pub period: String,
    /// When it was made; names its folder.
    pub generated_at: DateTime<Utc>,
}

/// Creates the run's folder, lets `render` write into it, describes the run in its `meta.json`,
/// gives the folder its name and rewrites `<out>/index.html`. A run that fails or is killed
/// half-way leaves a hidden partial folder, which the history skips and the next run removes.
pub fn archived(
    out: &Path,
    organisation: &str,
    run: &Run,
    render: impl FnOnce(&Path) -> Result<ReportOutput, ReportError>,
) -> anyhow::Result<ReportOutput> {
    let context = || format!("cannot write the {} report to {}", run.kind, out.display());
    let dir = archive::run_dir(out, run.kind, run.generated_at).with_context(context)?;
    let mut output = match render(&dir) {
        Ok(output) => output,
        Err(e) => {
            // Best effort: a partial folder is never listed, and the next run removes it anyway.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e).with_context(context);
        }
    };
    let relative = |p: &Path| {
        p.strip_prefix(&dir)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    };
    let meta = Meta {
        kind: run.kind.to_owned(),
        title: run.title.clone(),
        period: run.period.clone(),
        generated_at: run.generated_at,
        main: relative(&output.html),
        // The charts are inline in the page; the history links the page only.
        extra: Vec::new(),
    };
    archive::write_meta(&dir, &meta).with_context(context)?;
    let published = archive::publish(&dir).with_context(context)?;
    output.html = archive::moved(&output.html, &dir, &published);
    for chart in &mut output.charts {
        *chart = archive::moved(chart, &dir, &published);
    }
    output.index = Some(archive::write_index(out, organisation).with_context(context)?);
    Ok(output)
}

/// Says where the report went: one path per line.
pub fn print_output(output: &ReportOutput) {
    crate::say!("report: {}", output.html.display());
    for chart in &output.charts {
        crate::say!("chart:  {}", chart.display());
    }
    if let Some(index) = &output.index {
        crate::say!("index:  {}", index.display());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_weekly_run_is_listed_with_the_last_day_it_covers() {
        let out = tempfile::tempdir().unwrap();
        let config = crate::config::Config::parse("", Path::new("t.toml"), Default::default()).unwrap();
        let monday = Utc.with_ymd_and_hms(2026, 11, 9, 0, 0, 0).unwrap();
        let rows = [MetricRow {
            metric: "deployment_count".into(),
            grain: "week".into(),
            scope_type: "org".into(),
            scope: "all".into(),
            period_start: monday,
            period_end: monday + chrono::Duration::weeks(1),
            value: Some(4.0),
            unit: "count".into(),
            n: 4,
            method: None,
            no_data: None,
        }];
        let output = render(&rows, &config, Some(out.path().to_path_buf())).unwrap();
        let runs = archive::runs(out.path());
        assert_eq!(runs.len(), 1);
        // The week of Monday 2026-11-09 ends on Sunday 2026-11-15, not on the next Monday.
        assert_eq!(runs[0].meta.period, "2026-11-09 \u{2013} 2026-11-15");
        let index = std::fs::read_to_string(out.path().join("index.html")).unwrap();
        assert!(index.contains("2026-11-09 \u{2013} 2026-11-15"), "{index}");
        let html = std::fs::read_to_string(output.html).unwrap();
        assert!(html.contains("2026-11-09 \u{2013} 2026-11-15"));
    }

    #[test]
    fn each_run_gets_a_folder_a_meta_file_and_a_line_in_the_history() {
        let out = tempfile::tempdir().unwrap();
        let run = Run {
            kind: "weekly",
            title: "Acme \u{2014} weekly IT and operations report".to_owned(),
            period: "2026-08-24 \u{2013} 2026-11-15".to_owned(),
            generated_at: Utc.with_ymd_and_hms(2026, 11, 16, 6, 0, 0).unwrap(),
        };
        let write = |dir: &Path| -> Result<ReportOutput, ReportError> {
            let html = dir.join("report.html");
            std::fs::write(&html, "<!DOCTYPE html>").unwrap();
            Ok(ReportOutput {
                html,
                charts: vec![dir.join("chart.png")],
                index: None,
            })
        };
        let first = archived(out.path(), "Acme", &run, write).unwrap();
        let second = archived(out.path(), "Acme", &run, write).unwrap();
        assert_eq!(
            first.html,
            out.path().join("weekly/2026-11-16T060000Z/report.html")
        );
        assert_eq!(
            second.html,
            out.path().join("weekly/2026-11-16T060000Z-2/report.html"),
            "a re-run never overwrites the earlier one"
        );
        assert_eq!(first.index, Some(out.path().join("index.html")));
        let runs = archive::runs(out.path());
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].meta.main, "report.html");
        assert_eq!(runs[0].meta.period, "2026-08-24 \u{2013} 2026-11-15");
        let index = std::fs::read_to_string(out.path().join("index.html")).unwrap();
        assert!(
            index.contains("weekly/2026-11-16T060000Z-2/report.html"),
            "{index}"
        );

        // A run that fails leaves no meta.json, so the history does not list it.
        let failing = |_: &Path| -> Result<ReportOutput, ReportError> {
            Err(ReportError::Io {
                path: PathBuf::from("x"),
                source: std::io::Error::other("disk full"),
            })
        };
        let err = archived(out.path(), "Acme", &run, failing).unwrap_err();
        assert!(format!("{err:#}").contains("disk full"), "{err:#}");
        assert_eq!(archive::runs(out.path()).len(), 2);
        assert_eq!(
            std::fs::read_dir(out.path().join("weekly")).unwrap().count(),
            2,
            "the failed run left no folder, listed or not"
        );
    }
}
