//! `tandem report`: render the HTML report and PNG charts from the last metric table.

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::Utc;

use super::{Context, Outcome};
use crate::cli::{ReportArgs, ReportKind};
use crate::config::Config;
use crate::metric::MetricRow;
use crate::pipeline;
use crate::report::{self, ReportInput, ReportOutput};
use crate::store::Store;

/// Writes the report `args.kind` names.
pub fn run(args: &ReportArgs, config: &Config, ctx: &Context) -> anyhow::Result<Outcome> {
    match args.kind {
        ReportKind::Weekly => weekly(args, config).map(|()| Outcome::Success),
        ReportKind::Steering => super::steering::run(args, config, ctx),
        ReportKind::Nightly => super::nightly::run(args, config, ctx),
    }
}

/// Reads the metric table and renders the weekly report.
fn weekly(args: &ReportArgs, config: &Config) -> anyhow::Result<()> {
    let store = Store::open(&config.resolve(&config.store.path))?;
    let (parquet, _) = store.metrics_paths();
    if !parquet.exists() {
        anyhow::bail!(
            "no metric table at {}: run `tandem metrics` (or `tandem run`) first",
            parquet.display()
        );
    }
    let rows = pipeline::read_metrics(&parquet)?;
    let output = render(&rows, config, args.out.clone())?;
    print_output(&output);
    Ok(())
}

/// Renders `rows` into the report directory.
pub fn render(rows: &[MetricRow], config: &Config, out: Option<PathBuf>) -> anyhow::Result<ReportOutput> {
    let out_dir = config.resolve(&out.unwrap_or_else(|| config.report.out.clone()));
    let input = ReportInput {
        organisation: &config.organisation.name,
        generated_at: Utc::now(),
        rows,
        kpis: &config.kpis,
    };
    report::render(&input, &out_dir)
        .with_context(|| format!("cannot write the report to {}", out_dir.display()))
}

/// Says where the report went.
pub fn print_output(output: &ReportOutput) {
    crate::say!("report: {}", output.html.display());
    for chart in &output.charts {
        crate::say!("chart:  {}", chart.display());
    }
}
