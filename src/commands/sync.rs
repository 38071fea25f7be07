//! `tandem sync`: pull new and changed records from the sources into the lake.

use anyhow::Context as _;
use tandem_connectors::SecretEnv;

use super::{Context, Outcome};
use crate::cli::SyncArgs;
use crate::config::Config;
use crate::store::Store;
use crate::sync::{SyncOptions, SyncReport, sync};

/// Runs the sync and prints one line per stream.
pub async fn run(args: &SyncArgs, config: &Config, ctx: &Context) -> anyhow::Result<Outcome> {
    let options = SyncOptions {
        source: args.source.clone(),
        stream: args.stream.clone(),
        full: args.full,
        progress: ctx.progress,
        ..SyncOptions::default()
    };
    let report = sync_into_store(config, &ctx.env, &options).await?;
    outcome(&report)
}

/// Syncs into the configured store.
pub async fn sync_into_store(
    config: &Config,
    env: &SecretEnv,
    options: &SyncOptions,
) -> anyhow::Result<SyncReport> {
    let store = Store::open(&config.resolve(&config.store.path))?;
    let report = sync(config, &store, env, options).await.context("sync failed")?;
    for s in &report.streams {
        match &s.error {
            None => println!(
                "synced {}/{}: {} records, {} quarantined ({:.1} s)",
                s.source, s.stream, s.records, s.quarantined, s.seconds
            ),
            Some(e) => println!("FAILED {}/{}: {e}", s.source, s.stream),
        }
    }
    Ok(report)
}

/// Every stream failed: an error; some: partial; none: success.
pub fn outcome(report: &SyncReport) -> anyhow::Result<Outcome> {
    let failed = report.failures().count();
    if failed == 0 {
        Ok(Outcome::Success)
    } else if failed == report.streams.len() {
        let first = report
            .failures()
            .next()
            .and_then(|s| s.error.clone())
            .unwrap_or_default();
        anyhow::bail!("every source failed; first error: {first}")
    } else {
        Ok(Outcome::Partial)
    }
}
