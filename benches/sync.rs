//! Sync benchmark: the simulated organisation synced from the fake APIs with added latency and an
//! advertised (and enforced) GitHub rate limit. Prints each measurement beside its budget and
//! exits non-zero when a budget is missed.
//!
//! Run: `cargo run --release --example bench_sync` (append `-- --weeks 52 --latency-ms 50` to
//! change the load). It talks to 127.0.0.1 only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Duration as Days, Utc};
use tandem::config::Config;
use tandem::store::Store;
use tandem::sync::{SyncOptions, sync};
use tandem_connectors::{SecretEnv, http};
use tandem_fixtures::{FakeOptions, OrgSpec, Organisation};

struct Args {
    weeks: u32,
    latency_ms: u64,
    limit: u64,
    window_secs: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        weeks: 26,
        latency_ms: 20,
        limit: 500,
        window_secs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: u64 = it.next().context("every flag takes a number")?.parse()?;
        match flag.as_str() {
            "--weeks" => a.weeks = u32::try_from(value)?,
            "--latency-ms" => a.latency_ms = value,
            "--limit" => a.limit = value,
            "--window-secs" => a.window_secs = value,
            other => anyhow::bail!("unknown flag {other}; flags: --weeks --latency-ms --limit --window-secs"),
        }
    }
    Ok(a)
}

/// Requests a client needs that asks for 100 records a page and fetches each detail once: list
/// pages, one status list per deployment, one commit list per merged pull request, one compare per
/// pair of consecutive production deployments.
fn minimum_requests(org: &Organisation) -> (u64, u64) {
    let pages = |n: usize| n.div_ceil(100).max(1) as u64;
    let mut github = 0;
    for s in &org.services {
        let prod: Vec<_> = org
            .deployments
            .iter()
            .filter(|d| d.repo == s.repo && d.environment == "production")
            .collect();
        github += pages(prod.len()) + prod.len() as u64;
        // One compare between each pair of consecutive successful production deployments.
        let successes = prod
            .iter()
            .filter(|d| Organisation::is_successful_production(d))
            .count() as u64;
        github += successes.saturating_sub(1);
        let closed: Vec<_> = org
            .pulls
            .iter()
            .filter(|p| p.repo == s.repo && p.state == "closed")
            .collect();
        let merged = closed.iter().filter(|p| p.merged_at.is_some()).count() as u64;
        github += pages(closed.len()) + merged;
    }
    let acked = org
        .incidents
        .iter()
        .filter(|i| i.acknowledged_at.is_some())
        .count();
    let pagerduty = pages(org.incidents.len()) + pages(acked * 3);
    (github, pagerduty)
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let until = tandem::commands::monday_of(Utc::now().date_naive());
    let spec = OrgSpec {
        seed: 42,
        start: until - Days::weeks(i64::from(args.weeks)),
        weeks: args.weeks,
    };
    let org = Arc::new(Organisation::generate(spec)?);
    let mut options = FakeOptions::with_secret("bench");
    options.github_rate_limit = Some((args.limit, args.window_secs));
    let servers = tandem_fixtures::start(org.clone(), options.clone()).await?;
    let latency = Duration::from_millis(args.latency_ms);
    servers.github.control.set_latency(latency);
    servers.pagerduty.control.set_latency(latency);

    let dir = tempfile::tempdir()?;
    let text = tandem::commands::demo::demo_config(&org, &servers, &options);
    tandem_fixtures::file_data::write_imports(&org, &dir.path().join("imports"))?;
    let config_path = dir.path().join("tandem.toml");
    std::fs::write(&config_path, text)?;
    let config = Config::load(&config_path)?;
    let env = tandem::commands::demo::demo_secrets(&options)
        .into_iter()
        .fold(SecretEnv::process(), |env, (var, value)| {
            env.with_override(var, value)
        });
    let store = Store::open(&config.resolve(&config.store.path))?;

    let started = Instant::now();
    let report = sync(&config, &store, &env, &SyncOptions::default()).await?;
    let wall = started.elapsed();
    anyhow::ensure!(
        report.all_ok(),
        "the sync failed: {:?}",
        report.failures().collect::<Vec<_>>()
    );
    let gh = report.requests_of("github");
    let pd = report.requests_of("pagerduty");
    let (min_gh, min_pd) = minimum_requests(&org);

    let concurrency = http::MAX_IN_FLIGHT as f64;
    let requests = gh.requests + pd.requests;
    let ideal = Duration::from_secs_f64(requests as f64 * latency.as_secs_f64() / concurrency);
    // The advertised limit alone forces this much waiting: every full window of requests
    // beyond the first has to wait for a reset.
    let floor = Duration::from_secs(gh.requests.saturating_sub(1) / args.limit.max(1) * args.window_secs);

    let before_gh = servers.github.control.request_count();
    let before_pd = servers.pagerduty.control.request_count();
    let again = sync(&config, &store, &env, &SyncOptions::default()).await?;
    anyhow::ensure!(again.all_ok(), "the re-sync failed");
    let resync_gh = servers.github.control.request_count() - before_gh;
    let resync_pd = servers.pagerduty.control.request_count() - before_pd;
    let streams_x_repos = 2 * org.services.len();
    let open = org.incidents.iter().filter(|i| i.resolved_at.is_none()).count();
    let running = org
        .deployments
        .iter()
        .filter(|d| d.environment == "production" && Organisation::finished_at(d).is_none())
        .count();

    println!(
        "tandem sync benchmark: {} weeks, {} services, {} production deployments, {} pull requests, {} incidents",
        args.weeks,
        org.services.len(),
        org.deployments
            .iter()
            .filter(|d| d.environment == "production")
            .count(),
        org.pulls.len(),
        org.incidents.len()
    );
    println!(
        "  setting: {} ms latency per request, GitHub limit {} requests per {} s, {} requests in flight per source",
        args.latency_ms,
        args.limit,
        args.window_secs,
        http::MAX_IN_FLIGHT
    );
    let mut ok = true;
    let mut line = |name: &str, measured: String, budget: String, pass: bool| {
        ok &= pass;
        println!(
            "  {name:<34} {measured:>22}   budget {budget:<34} {}",
            if pass { "ok" } else { "MISSED" }
        );
    };
    line(
        "GitHub requests",
        format!("{} (minimum {min_gh})", gh.requests),
        format!("<= 1.05 x minimum ({})", min_gh * 105 / 100),
        gh.requests * 100 <= min_gh * 105,
    );
    line(
        "PagerDuty requests",
        format!("{} (minimum {min_pd})", pd.requests),
        "<= minimum + one per 30-day window".into(),
        pd.requests <= min_pd + 2 * (u64::from(args.weeks) * 7).div_ceil(30) + 2,
    );
    line(
        "rate-limit answers (429/403)",
        format!("{}", gh.rate_limited + pd.rate_limited),
        "0".into(),
        gh.rate_limited + pd.rate_limited == 0,
    );
    line(
        "wall time",
        format!("{:.1} s", wall.as_secs_f64()),
        format!(
            "<= 2 x requests x latency / concurrency + limit floor ({:.1} s + {:.0} s)",
            2.0 * ideal.as_secs_f64(),
            floor.as_secs_f64()
        ),
        wall <= ideal * 2 + floor + Duration::from_secs(1),
    );
    line(
        "no-change re-sync, GitHub",
        format!("{resync_gh} ({} x 304)", again.requests_of("github").not_modified),
        format!("one 304 per stream and repo + running deployments ({streams_x_repos} + {running})"),
        resync_gh <= streams_x_repos + running,
    );
    line(
        "no-change re-sync, PagerDuty",
        format!("{resync_pd}"),
        format!("one list + open incidents re-read ({})", 1 + 2 * open),
        resync_pd <= 1 + 2 * open,
    );
    anyhow::ensure!(ok, "a budget was missed");
    Ok(())
}
