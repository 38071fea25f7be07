//! `tandem report` (weekly): render the weekly report from the metric table into its own run
//! folder under the report directory, and rewrite the history page listing every run.

use super::{Context, Outcome, calculate, print_report, render_weekly};
// The steps other commands share, under the names they had here.
pub use super::{Run, archived, out_dir, print_report as print_output, render_weekly as render};
use crate::cli::ReportArgs;
use crate::config::Config;
use crate::pipeline;
use crate::store::Store;

/// Writes the weekly report (`tandem report steering` and `nightly` are their own files).
pub fn run(args: &ReportArgs, config: &Config, _ctx: &Context) -> anyhow::Result<Outcome> {
    weekly(args, config).map(|()| Outcome::Success)
}

/// Renders the weekly report: of the range the flags name (`--period`, `--weeks`, `--until`,
/// `--grain`), computed from the lake without replacing the stored metric table; with no range
/// flag, of the stored metric table (the last `tandem metrics` or `tandem run`).
fn weekly(args: &ReportArgs, config: &Config) -> anyhow::Result<()> {
    let rows = if args.range.is_given() {
        calculate(&args.range, config)?
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
    let output = render_weekly(&rows, config, args.out.clone())?;
    print_report(&output);
    Ok(())
}
