//! `tandem sync`: pull new and changed records from the sources into the lake.

use super::{Context, Outcome, SyncCounts};
// The steps `tandem run` shares, under the names they had here.
pub use super::{outcome, sync_into_store};
use crate::cli::SyncArgs;
use crate::config::Config;
use crate::sync::SyncOptions;

/// Runs the sync and prints one line per stream; `counts` receives what the sync did, for the
/// summary line, once it ran (also when every source failed).
pub async fn run(
    args: &SyncArgs,
    config: &Config,
    ctx: &Context,
    counts: &mut Option<SyncCounts>,
) -> anyhow::Result<Outcome> {
    let options = SyncOptions {
        source: args.source.clone(),
        stream: args.stream.clone(),
        full: args.full,
        progress: ctx.progress,
        ..SyncOptions::default()
    };
    let report = sync_into_store(config, &ctx.env, &options).await?;
    *counts = Some(SyncCounts::of(&report));
    outcome(&report)
}
