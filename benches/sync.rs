//! Sync benchmark: the simulated organisation synced from the fake APIs with added latency and an
//! advertised (and enforced) GitHub rate limit. Prints each measurement beside its budget and
//! exits non-zero when a budget is missed.
//!
//! Run: `cargo run --release --example bench_sync` (append `-- --weeks 52 --latency-ms 50` to
//! change the load). It talks to 127.0.0.1 only.
//!
//! `-- --growth 3` measures instead how a first sync's cost grows with the data: the organisation
//! over 26, 52, 104 and 208 weeks (`--max-weeks` stops earlier), each synced into a fresh lake
//! with no latency and no rate limit, three times each in alternating order (up, then down), and
//! prints per size the records, the bytes the sync wrote, the final lake's size and the wall time
//! (medians). Budgets, judged at the largest size: bytes written ≤ 3× the final lake, and seconds
//! per 1,000 records ≤ 1.5× the figure at 26 weeks (linear in records).
//!
//! `-- --bucket 3` measures what a lake in object storage costs a first sync of `--weeks` (26):
//! into a local lake and into a bucket of the S3 test server (`tools/s3-test-server`, started on
//! 127.0.0.1 from `$TANDEM_S3_SERVER` or `~/.cache/tandem-tools/bin`), three times each in
//! alternating order, and prints the medians and their ratio. No budget: a figure for the README.

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
    /// Repeats of the growth measurement (0: the request benchmark instead).
    growth: u64,
    /// The largest organisation the growth measurement syncs, in weeks.
    max_weeks: u32,
    /// Repeats of the object storage measurement (0: not run).
    bucket: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        weeks: 26,
        latency_ms: 20,
        limit: 500,
        window_secs: 5,
        growth: 0,
        max_weeks: 208,
        bucket: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: u64 = it.next().context("every flag takes a number")?.parse()?;
        match flag.as_str() {
            "--weeks" => a.weeks = u32::try_from(value)?,
            "--latency-ms" => a.latency_ms = value,
            "--limit" => a.limit = value,
            "--window-secs" => a.window_secs = value,
            "--growth" => a.growth = value,
            "--max-weeks" => a.max_weeks = u32::try_from(value)?,
            "--bucket" => a.bucket = value,
            other => anyhow::bail!(
                "unknown flag {other}; flags: --weeks --latency-ms --limit --window-secs --growth --max-weeks --bucket"
            ),
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
    if args.growth > 0 {
        return runtime.block_on(growth(args));
    }
    if args.bucket > 0 {
        return runtime.block_on(bucket(args));
    }
    runtime.block_on(run(args))
}

/// The simulated organisation over `weeks`, served by the fake APIs, and a fresh lake with the
/// demo's configuration for it.
struct Setup {
    org: Arc<Organisation>,
    servers: tandem_fixtures::FakeServers,
    /// Holds the configuration and the lake; removed on drop.
    _dir: tempfile::TempDir,
    config: Config,
    env: SecretEnv,
    store: Store,
}

async fn setup(weeks: u32, latency: Duration, rate_limit: Option<(u64, u64)>) -> anyhow::Result<Setup> {
    let until = tandem::commands::monday_of(Utc::now().date_naive());
    let spec = OrgSpec {
        seed: 42,
        start: until - Days::weeks(i64::from(weeks)),
        weeks,
    };
    let org = Arc::new(Organisation::generate(spec)?);
    let mut options = FakeOptions::with_secret("bench");
    options.github_rate_limit = rate_limit;
    // The growth runs lift GitLab's advertised limit too: they measure the store, not pacing.
    if rate_limit.is_some_and(|(n, _)| n >= 1_000_000) {
        options.gitlab_rate_limit = Some(1_000_000_000);
    }
    let servers = tandem_fixtures::start(org.clone(), options.clone()).await?;
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
    Ok(Setup {
        org,
        servers,
        _dir: dir,
        config,
        env,
        store,
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let latency = Duration::from_millis(args.latency_ms);
    let Setup {
        org,
        servers,
        _dir,
        config,
        env,
        store,
    } = setup(args.weeks, latency, Some((args.limit, args.window_secs))).await?;

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

/// One first sync of the growth measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Rows in the lake's tables afterwards (quarantine included).
    records: u64,
    /// Bytes the process wrote to storage during the sync (`write_bytes` of `/proc/self/io`).
    written: u64,
    /// Bytes under the lake afterwards, less the data files its tables no longer reference.
    lake: u64,
    /// Of `lake`: the live data files.
    data: u64,
    /// Of `lake`: the tables' Delta logs.
    log: u64,
    /// Data files written and since replaced (still on disk until vacuumed).
    replaced: u64,
    /// Data files referenced by the tables' latest versions.
    files: u64,
    /// Seconds the sync took.
    wall: f64,
    /// Of `wall`: seconds the HTTP client waited, pacing for a rate limit or before a retry.
    waited: f64,
    /// Requests retried.
    retries: u64,
}

/// Every table a sync writes.
const TABLES: [&str; 8] = tandem::store::TABLES;

/// The sizes the growth measurement syncs, in weeks.
const GROWTH_WEEKS: [u32; 4] = [26, 52, 104, 208];

/// How a first sync's cost grows with the data (see the file's documentation).
async fn growth(args: Args) -> anyhow::Result<()> {
    let sizes: Vec<u32> = GROWTH_WEEKS
        .into_iter()
        .filter(|w| *w <= args.max_weeks)
        .collect();
    anyhow::ensure!(!sizes.is_empty(), "--max-weeks is below {}", GROWTH_WEEKS[0]);
    anyhow::ensure!(
        std::fs::read_to_string("/proc/self/io").is_ok(),
        "the growth measurement counts bytes written with /proc/self/io, which this system lacks"
    );
    let mut samples: std::collections::BTreeMap<u32, Vec<Sample>> = Default::default();
    for repeat in 0..args.growth {
        // Up, then down: a machine that slows down (or speeds up) over the run touches every
        // size alike.
        let order: Vec<u32> = if repeat % 2 == 0 {
            sizes.clone()
        } else {
            sizes.iter().rev().copied().collect()
        };
        for weeks in order {
            let sample = first_sync(weeks).await?;
            eprintln!(
                "  {weeks} weeks, run {}: {} records, {:.1} MB written, lake {:.1} MB, {:.2} s ({:.2} s paced, {} retries)",
                repeat + 1,
                sample.records,
                sample.written as f64 / 1e6,
                sample.lake as f64 / 1e6,
                sample.wall,
                sample.waited,
                sample.retries
            );
            samples.entry(weeks).or_default().push(sample);
        }
    }
    let median = |weeks: u32| -> anyhow::Result<Sample> {
        let mut runs = samples.get(&weeks).cloned().unwrap_or_default();
        anyhow::ensure!(!runs.is_empty(), "no run at {weeks} weeks");
        runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
        let mut m = runs[runs.len() / 2];
        let mut written: Vec<u64> = runs.iter().map(|s| s.written).collect();
        written.sort_unstable();
        m.written = written[written.len() / 2];
        Ok(m)
    };
    println!(
        "tandem first-sync growth: 4 services, no latency, no rate limit, median of {} runs per size (alternating order)",
        args.growth
    );
    println!(
        "  {:>5} {:>9} {:>9} {:>12} {:>10} {:>10} {:>10} {:>12} {:>7} {:>9} {:>12}",
        "weeks",
        "records",
        "files",
        "written MB",
        "lake MB",
        "data MB",
        "log MB",
        "replaced MB",
        "w/lake",
        "wall s",
        "s/1k records"
    );
    let per_k = |s: &Sample| s.wall / (s.records.max(1) as f64 / 1000.0);
    for &weeks in &sizes {
        let s = median(weeks)?;
        println!(
            "  {:>5} {:>9} {:>9} {:>12.2} {:>10.2} {:>10.2} {:>10.2} {:>12.2} {:>7.2} {:>9.2} {:>12.4}",
            weeks,
            s.records,
            s.files,
            s.written as f64 / 1e6,
            s.lake as f64 / 1e6,
            s.data as f64 / 1e6,
            s.log as f64 / 1e6,
            s.replaced as f64 / 1e6,
            s.written as f64 / s.lake.max(1) as f64,
            s.wall,
            per_k(&s)
        );
    }
    let (Some(&first), Some(&last)) = (sizes.first(), sizes.last()) else {
        anyhow::bail!("no size measured");
    };
    let (small, large) = (median(first)?, median(last)?);
    println!(
        "  \"written\": write_bytes of /proc/self/io over the sync (every byte sent to storage: data files, replaced ones included, the Delta logs and checkpoints, bookmarks and state, raw pages); \"lake\": bytes under the lake afterwards less the replaced data files"
    );
    let mut ok = true;
    let mut line = |name: &str, measured: String, budget: String, pass: bool| {
        ok &= pass;
        println!(
            "  {name:<40} {measured:>22}   budget {budget:<40} {}",
            if pass { "ok" } else { "MISSED" }
        );
    };
    line(
        &format!("bytes written at {last} weeks"),
        format!("{:.1} MB", large.written as f64 / 1e6),
        format!("<= 3 x final lake ({:.1} MB)", 3.0 * large.lake as f64 / 1e6),
        large.written <= 3 * large.lake,
    );
    line(
        &format!("wall time per 1,000 records at {last} weeks"),
        format!("{:.4} s", per_k(&large)),
        format!(
            "<= 1.5 x the figure at {first} weeks ({:.4} s)",
            1.5 * per_k(&small)
        ),
        per_k(&large) <= 1.5 * per_k(&small),
    );
    anyhow::ensure!(ok, "a budget was missed");
    Ok(())
}

/// A first sync of the organisation over `weeks` into a fresh lake.
async fn first_sync(weeks: u32) -> anyhow::Result<Sample> {
    // No limit in effect: the fakes' default is GitHub's 5,000 an hour, which the client paces
    // itself to, and this measures the store, not the pacing.
    let setup = setup(weeks, Duration::ZERO, Some((1_000_000_000, 1))).await?;
    let before = write_bytes()?;
    let started = Instant::now();
    let report = sync(&setup.config, &setup.store, &setup.env, &SyncOptions::default()).await?;
    let wall = started.elapsed().as_secs_f64();
    let written = write_bytes()?.saturating_sub(before);
    let http = http_waits(&report);
    anyhow::ensure!(
        report.all_ok(),
        "the sync failed: {:?}",
        report.failures().collect::<Vec<_>>()
    );
    let store = &setup.store;
    let (mut records, mut data, mut files, mut log, mut on_disk) = (0, 0, 0, 0, 0);
    for table in TABLES {
        records += store.read_count(table)? as u64;
        let live = store.table_files(table, tandem::store::delta::AsOf::Latest)?;
        files += live.len() as u64;
        for path in &live {
            data += std::fs::metadata(path)?.len();
        }
        let dir = store.table_dir(table);
        log += dir_bytes(&dir.join("_delta_log"))?;
        on_disk += dir_bytes(&dir)?;
    }
    let total = dir_bytes(store.root())?;
    // Everything in the tables' directories is either the log, a live data file or a replaced one.
    let replaced = on_disk.saturating_sub(log + data);
    Ok(Sample {
        records,
        written,
        lake: total - replaced,
        data,
        log,
        replaced,
        files,
        wall,
        waited: http.0 as f64 / 1000.0,
        retries: http.1,
    })
}

/// Milliseconds the sync's reads paced for a rate limit, and their retries, over every source.
fn http_waits(report: &tandem::sync::SyncReport) -> (u64, u64) {
    report.streams.iter().fold((0, 0), |(ms, n), s| {
        (ms + s.requests.paced_ms, n + s.requests.retries)
    })
}

/// `write_bytes` of `/proc/self/io`: bytes this process caused to be sent to storage, counted
/// when written to the page cache, so a file removed before reaching the disk counts too.
fn write_bytes() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/io")?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .context("no write_bytes in /proc/self/io")?
        .trim()
        .parse()
        .context("write_bytes in /proc/self/io")
}

/// Bytes of the files under `dir` (none when it does not exist).
fn dir_bytes(dir: &std::path::Path) -> anyhow::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut total = 0;
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// The S3 test server, on a free port of 127.0.0.1, over a temporary directory; stopped on drop.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
    _root: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BENCH_KEY: (&str, &str) = ("bench-access", "bench-secret");

fn start_s3_server() -> anyhow::Result<S3Server> {
    let binary = std::env::var_os("TANDEM_S3_SERVER")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/tandem-tools/bin/tandem-s3-test-server"))
        })
        .filter(|p| p.is_file())
        .context("no S3 test server: `cargo install --locked --path tools/s3-test-server --root ~/.cache/tandem-tools`")?;
    let root = tempfile::tempdir()?;
    std::fs::create_dir_all(root.path().join("lake"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = std::process::Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", BENCH_KEY.0, "--secret-key", BENCH_KEY.1])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the S3 server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        _root: root,
    })
}

/// A first sync into a local lake and into a bucket, alternating (see the file's documentation).
async fn bucket(args: Args) -> anyhow::Result<()> {
    use tandem::store::bucket::object_store::aws::AmazonS3Builder;
    let server = start_s3_server()?;
    let client: Arc<dyn tandem::store::bucket::object_store::ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&server.endpoint)
            .with_bucket_name("lake")
            .with_region("us-east-1")
            .with_access_key_id(BENCH_KEY.0)
            .with_secret_access_key(BENCH_KEY.1)
            .with_allow_http(true)
            .build()?,
    );
    let cache = tempfile::tempdir()?;
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    let mut records = 0;
    for repeat in 0..args.bucket {
        for in_bucket in if repeat % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            let mut setup = setup(args.weeks, Duration::ZERO, Some((1_000_000_000, 1))).await?;
            if in_bucket {
                let url = format!("s3://lake/run-{repeat}");
                let lake = tandem::store::bucket::mount_store(
                    &url,
                    Arc::clone(&client),
                    cache.path(),
                    Duration::from_secs(60),
                )?;
                setup.store = Store::open(&lake)?;
            }
            let started = Instant::now();
            let report = sync(&setup.config, &setup.store, &setup.env, &SyncOptions::default()).await?;
            let wall = started.elapsed().as_secs_f64();
            anyhow::ensure!(
                report.all_ok(),
                "the sync failed: {:?}",
                report.failures().collect::<Vec<_>>()
            );
            records = TABLES
                .iter()
                .map(|t| setup.store.read_count(t))
                .sum::<Result<usize, _>>()?;
            eprintln!(
                "  run {}, {}: {records} records, {wall:.2} s",
                repeat + 1,
                if in_bucket { "bucket" } else { "local" }
            );
            if in_bucket {
                remote.push(wall)
            } else {
                local.push(wall)
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (local, remote) = (median(local), median(remote));
    println!(
        "tandem first sync of {} weeks ({records} records), median of {} runs each (alternating order):",
        args.weeks, args.bucket
    );
    println!("  local lake            {local:>7.2} s");
    println!(
        "  lake in an S3 bucket  {remote:>7.2} s  ({:.2}x; S3 test server on 127.0.0.1, no network latency)",
        remote / local
    );
    for (kind, n, took) in tandem::store::bucket::requests() {
        println!(
            "    tandem's {kind:<6} requests: {:>6} per sync, {:>6.2} s",
            n / args.bucket,
            took.as_secs_f64() / args.bucket as f64
        );
    }
    Ok(())
}
