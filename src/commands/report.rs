//! `tandem report` (weekly): render the weekly report from the metric table into its own run
//! folder under the report directory, and rewrite the history page listing every run.

use chrono::Utc;

use super::{
    Context, Outcome, basis, calculate_on, parse_as_of, print_report, render_weekly, stored_version,
};
// The steps other commands share, under the names they had here.
pub use super::{Run, archived, out_dir, print_report as print_output, render_weekly as render};
use crate::cli::ReportArgs;
use crate::config::Config;
use crate::pipeline;
use crate::store::Store;
use crate::store::delta::AsOf;

/// Writes the weekly report (`tandem report steering` and `nightly` are their own files).
pub fn run(args: &ReportArgs, config: &Config, _ctx: &Context) -> anyhow::Result<Outcome> {
    weekly(args, config).map(|()| Outcome::Success)
}

/// Renders the weekly report: of the range the flags name (`--period`, `--weeks`, `--until`,
/// `--grain`), computed from the lake without replacing the stored metric table; with no range
/// flag, of the stored metric table (the last `tandem metrics` or `tandem run`). With `--as-of`,
/// of that metric table version, or of the canonical tables it was computed from.
fn weekly(args: &ReportArgs, config: &Config) -> anyhow::Result<()> {
    let store = Store::open(&config.lake()?)?;
    let as_of = args.as_of.as_deref().map(parse_as_of).transpose()?;
    let (rows, data_at, read) = if args.range.is_given() {
        let basis = basis(&store, as_of)?;
        // With --as-of, nothing depends on the day it is rendered.
        let (today, data_at) = match as_of {
            Some(_) => (basis.at.date_naive(), Some(basis.at)),
            None => (Utc::now().date_naive(), None),
        };
        let rows = calculate_on(&store, &basis, &args.range, config, today)?;
        (rows, data_at, basis.read())
    } else if let (None, Some(parquet)) = (as_of, store.legacy_metrics()) {
        // A lake of an earlier release, not converted until something writes it.
        (pipeline::read_metrics(&parquet)?, None, None)
    } else {
        let version = match (as_of, store.metrics_version(as_of.unwrap_or(AsOf::Latest))?) {
            (_, Some(version)) => version,
            (None, None) => anyhow::bail!(
                "no metric table in the lake at {}: run `tandem metrics` (or `tandem run`) first, \
                 or name a range (e.g. `tandem report weekly --weeks 12`)",
                store.root().display()
            ),
            (Some(at), None) => stored_version(&store, at)?,
        };
        let read = crate::report::archive::TableVersions {
            metrics: Some(version.version),
            tables: version.tables.clone(),
        };
        let rows = pipeline::read_metrics(&version.parquet)?;
        (rows, Some(version.committed_at), Some(read))
    };
    let output = render_weekly(&rows, config, args.out.clone(), data_at, read)?;
    print_report(&output);
    Ok(())
}
