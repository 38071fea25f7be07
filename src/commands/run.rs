//! `tandem run`: the nightly job — sync, then metrics, then report.
//!
//! A source that fails does not stop the job: the rest is synced and reported, and the outcome is
//! partial (exit 3) so cron and CronJobs can alert on it.

use std::path::PathBuf;

use super::{Context, Outcome, metrics, report, sync};
use crate::cli::{RangeArgs, RunArgs};
use crate::config::Config;
use crate::sync::SyncOptions;

/// Runs the whole job.
pub async fn run(args: &RunArgs, config: &Config, ctx: &Context) -> anyhow::Result<Outcome> {
    job(config, ctx, &args.range, args.out.clone()).await
}

/// Sync → metrics → report, printing where everything went.
pub async fn job(
    config: &Config,
    ctx: &Context,
    range: &RangeArgs,
    out: Option<PathBuf>,
) -> anyhow::Result<Outcome> {
    let options = SyncOptions {
        progress: ctx.progress,
        ..SyncOptions::default()
    };
    let report = sync::sync_into_store(config, &ctx.env, &options).await?;
    let outcome = sync::outcome(&report)?;
    let (config_owned, range_owned) = (config.clone(), range.clone());
    let rows = tokio::task::spawn_blocking(move || metrics::compute(&range_owned, &config_owned)).await??;
    super::out(&metrics::org_table(&rows));
    super::out(&metrics::kpi_table(&rows, &config.kpis));
    let output = report::render(&rows, config, out)?;
    report::print_output(&output);
    let (_, csv) = crate::store::Store::open(&config.resolve(&config.store.path))?.metrics_paths();
    crate::say!("metrics: {}", csv.display());
    if outcome == Outcome::Partial {
        eprintln!("warning: some sources failed (see above); their data is missing from this report");
    }
    Ok(outcome)
}
