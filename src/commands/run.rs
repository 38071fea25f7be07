//! `tandem run`: the nightly job — sync, then metrics, then the weekly report and the nightly
//! digest, recording how the sync went in the store: the last run's health for the digest
//! (`state/last_run.json`) and every stream's outcome in the run history (`runs/`).
//!
//! A source that fails does not stop the job: the rest is synced and reported, and the outcome is
//! partial (exit 3) so cron and CronJobs can alert on it. When every source fails the job stops
//! (exit 1), but the failure is still recorded for the next digest to show: the run's health is
//! saved as soon as the sync ends, whatever fails after it.

use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{
    Context, Outcome, SyncCounts, kpis, maintenance_summary, nightly_window, outcome, print_nightly,
    print_report, render_weekly, sync_into_store,
};
use crate::cli::{RangeArgs, RunArgs};
use crate::config::Config;
use crate::pipeline;
use crate::report::text::{kpi_table, org_table};
use crate::store::maintain::MaintenanceReport;
use crate::store::runs::RunRecord;
use crate::store::{Store, StoreError};
use crate::sync::{RunHealth, SyncOptions, SyncReport};

/// Runs the whole job; `counts` receives what its sync did, for the summary line, once it ran
/// (also when a later step fails).
pub async fn run(
    args: &RunArgs,
    config: &Config,
    ctx: &Context,
    counts: &mut Option<SyncCounts>,
) -> anyhow::Result<Outcome> {
    job_counted(config, ctx, &args.range, args.out.clone(), Utc::now(), counts).await
}

/// Sync → metrics → reports, printing where everything went.
pub async fn job(
    config: &Config,
    ctx: &Context,
    range: &RangeArgs,
    out: Option<PathBuf>,
) -> anyhow::Result<Outcome> {
    job_at(config, ctx, range, out, Utc::now()).await
}

/// [`job`] as if started at `now`, which decides the nightly digest's days.
pub async fn job_at(
    config: &Config,
    ctx: &Context,
    range: &RangeArgs,
    out: Option<PathBuf>,
    now: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    job_counted(config, ctx, range, out, now, &mut None).await
}

/// [`job_at`], leaving what the sync did in `counts` as soon as it is known.
async fn job_counted(
    config: &Config,
    ctx: &Context,
    range: &RangeArgs,
    out: Option<PathBuf>,
    now: DateTime<Utc>,
    counts: &mut Option<SyncCounts>,
) -> anyhow::Result<Outcome> {
    // Held for the whole job: the sync and the metric table it writes are one change of the lake
    // (other sources' syncs may write alongside).
    let sources = super::synced_sources(config, &SyncOptions::default());
    let store = super::open_lake_for_parts(config, "tandem run", &sources, true)?;
    let synced = sync_recorded(config, ctx, now).await?;
    *counts = Some(SyncCounts::of(&synced.report));
    let outcome = outcome(&synced.report)?;

    // The metric table, the digest's days and (with --period) the period before for the KPIs:
    // computed together, one pass over the lake.
    let window = nightly_window(&RangeArgs::default(), config, now)?;
    let mut also = vec![super::nightly_range(&window)];
    also.extend(super::kpi_comparison(range, config)?);
    let (config_owned, range_owned) = (config.clone(), range.clone());
    let (table, version, also) =
        tokio::task::spawn_blocking(move || super::compute_version_with(&range_owned, &config_owned, &also))
            .await??;
    let mut also = also.iter().map(crate::metric::MetricTable::to_rows);
    let (digest_rows, previous) = (also.next().unwrap_or_default(), also.next());
    let rows = table.to_rows();
    let health = synced.health();
    health.save(&store)?;
    super::out(&org_table(&rows, config.tz()));
    let (heading, scored) = kpis(&rows, range, config, previous.as_deref())?;
    super::out(&kpi_table(&scored, &heading));
    // As `tandem report weekly` renders the stored table: the same page for the same version.
    let read = crate::report::archive::TableVersions {
        metrics: Some(version.version),
        tables: version.tables.clone(),
    };
    let output = render_weekly(
        &rows,
        config,
        out.clone(),
        Some(version.committed_at),
        Some(read.clone()),
    )?;
    print_report(&output);

    let config_owned = config.clone();
    let digest = tokio::task::spawn_blocking(move || {
        super::write_nightly_of(
            &config_owned,
            out,
            window,
            Some(&health),
            now,
            &digest_rows,
            Some(read),
        )
    })
    .await??;
    print_nightly(&digest);
    crate::say!("metrics: {}", store.metrics_path().display());
    // Last, when the night's data is safe: merging small files and cleaning up only when due,
    // with the lake alone (no other writer may commit while files are merged and removed).
    drop(store);
    let (config_owned, retention) = (config.clone(), config.store.retention());
    let maintained = tokio::task::spawn_blocking(move || {
        match super::open_lake_for_writing(&config_owned, "tandem run (maintenance)") {
            Ok(alone) => alone
                .maintain(retention, false, Utc::now())
                .map(Some)
                .map_err(anyhow::Error::from),
            Err(e)
                if e.downcast_ref::<StoreError>()
                    .is_some_and(|e| matches!(e, StoreError::Locked { .. })) =>
            {
                tracing::info!(reason = %e, "Lake maintenance postponed: another writer is at work.");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    })
    .await??;
    if let Some(maintained) = maintained
        && maintained != MaintenanceReport::default()
    {
        tracing::info!(summary = %maintenance_summary(&maintained), "Lake maintained.");
    }
    if outcome == Outcome::Partial {
        tracing::warn!("Some sources failed (see above); their data is missing from this report.");
    }
    Ok(outcome)
}

/// A sync run of the job, and what its health is made from.
#[derive(Debug)]
pub struct Synced {
    /// What each source did, requests included.
    pub report: SyncReport,
    /// When the run started, as the digest names it.
    started_at: DateTime<Utc>,
    /// Measures the run's duration.
    clock: Instant,
}

impl Synced {
    /// The run's health, with the time spent since it started.
    pub fn health(&self) -> RunHealth {
        RunHealth::from_report(&self.report, self.started_at, self.clock.elapsed().as_secs_f64())
    }
}

/// Syncs every source as a run of the job started at `now`, and records the run's health in the
/// store before anything else can fail, so that a later digest describes this run (with the
/// sync's time) rather than the one before; the metrics' time is added once they are done.
pub async fn sync_recorded(config: &Config, ctx: &Context, now: DateTime<Utc>) -> anyhow::Result<Synced> {
    let clock = Instant::now();
    let store = Store::open(&config.lake()?)?;
    let options = SyncOptions {
        progress: ctx.progress,
        ..SyncOptions::default()
    };
    let report = sync_into_store(config, &ctx.env, &options).await?;
    let synced = Synced {
        report,
        started_at: now,
        clock,
    };
    synced.health().save(&store)?;
    let rows = history(&synced.report, now);
    tokio::task::spawn_blocking(move || append_history(&store, &rows)).await??;
    Ok(synced)
}

/// The run history's rows of a sync started at `started_at`: one per stream.
fn history(report: &SyncReport, started_at: DateTime<Utc>) -> Vec<RunRecord> {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    report
        .streams
        .iter()
        .map(|s| RunRecord {
            started_at,
            source: s.source.clone(),
            stream: s.stream.clone(),
            records: count(s.records),
            quarantined: count(s.quarantined),
            seconds: s.seconds,
            error: s.error.clone(),
        })
        .collect()
}

/// Appends `rows` to the lake's run history (`runs/`) as one commit.
fn append_history(store: &Store, rows: &[RunRecord]) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let draft = store.runs_draft()?;
    let (size, stats) = match pipeline::write_runs(rows, &draft.parquet) {
        Ok(written) => written,
        Err(e) => {
            // Never committed: nothing refers to it.
            let _ = std::fs::remove_file(&draft.parquet);
            return Err(e.into());
        }
    };
    store.append_runs(&draft, size, stats)?;
    Ok(())
}
