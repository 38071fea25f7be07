//! `tandem sync`: pull new and changed records from the sources into the lake.

use anyhow::Context as _;
use tandem_connectors::SecretEnv;

use super::{Context, Outcome};
use crate::cli::SyncArgs;
use crate::config::Config;
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
    let store = super::open_lake_for_writing(config, "tandem sync")?;
    let report = sync(config, &store, env, options).await.context("sync failed")?;
    print_summary(&report);
    Ok(report)
}

/// One line per source with the records of each stream that had any, then one per failed stream.
fn print_summary(report: &SyncReport) {
    let mut sources: Vec<&str> = Vec::new();
    for s in &report.streams {
        if !sources.contains(&s.source.as_str()) {
            sources.push(&s.source);
        }
    }
    for source in sources {
        let streams: Vec<_> = report.streams.iter().filter(|s| s.source == source).collect();
        let ok: Vec<_> = streams.iter().filter(|s| s.error.is_none()).collect();
        if !ok.is_empty() {
            let counts: Vec<String> = ok
                .iter()
                .filter(|s| s.records > 0)
                .map(|s| format!("{} {}", s.stream, s.records))
                .collect();
            let quarantined: usize = ok.iter().map(|s| s.quarantined).sum();
            let seconds: f64 = ok.iter().map(|s| s.seconds).sum();
            let counts = if counts.is_empty() {
                "nothing new".to_owned()
            } else {
                counts.join(", ")
            };
            crate::say!("synced {source}: {counts}; {quarantined} quarantined ({seconds:.1} s)");
        }
        for s in streams.iter().filter(|s| s.error.is_some()) {
            crate::say!(
                "FAILED {}/{}: {}",
                s.source,
                s.stream,
                s.error.as_deref().unwrap_or_default()
            );
        }
    }
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
