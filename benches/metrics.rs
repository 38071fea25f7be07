//! Metrics benchmark: the full metric set (what `tandem metrics` computes: every service and team,
//! weekly over the whole range) on a large simulated lake — 200 services over 5 years — at 1/16,
//! 1/4 and full scale, so the growth of cost with data is visible. Prints rows per table, the
//! lake's Parquet size, wall time, peak memory and rows/s, each figure beside its budget (the
//! budgets are for the full lake), and exits non-zero when the full lake misses one.
//!
//! Run: `cargo run --release --example bench_metrics` (a temporary lake, removed afterwards), or
//! `… -- --dir /path/to/lakes` to write the lakes there once and reuse them on later runs;
//! `--scales 1/16,1/4` picks the scales. Each computation runs in a child process of its own
//! (this binary with `--compute`), so its peak RSS (`VmHWM`) is the computation's alone and not
//! the generator's. With `TANDEM_LOG=tandem=debug` the child logs each stage's time.
//!
//! Each scale's lake is built twice from the same generator: as the flat files of a lake not yet
//! migrated (one Parquet file per table) and as the Delta lake tandem writes (partitioned by the
//! anchor's month, loaded with [`Store::bulk_load`], then compacted by `tandem maintain`'s pass to one
//! file per partition). The metrics run on both in the same run,
//! alternating (`--repeats N` times each, default 3), and the medians are compared: the Delta lake
//! must be no slower than the flat files (≤ 1.1×) within the same memory budget. These runs work
//! the change links out (`--cold`: the links a computation keeps in the lake are removed first), as
//! the first computation after a sync that changed the tables does. Then one page of
//! new and updated changes and commits is committed to (a hard-linked copy of) the Delta lake
//! through `Store::commit`, as an incremental sync does, from a freshly opened store each time:
//! the median must be ≤ 0.5 s on the full lake (`--commits-only` measures just this).
//!
//! Then, unless `--no-peer`, tandem against a hand-written DuckDB script over the same Delta tables
//! (`benches/peer/duckdb_metrics.py`, run with `python3`, which needs `duckdb` and `deltalake`):
//! the script's twelve metrics computed by `tandem metrics --metrics` must take no longer than the
//! script and no more memory, the full set at most 1.5× the script's time within 1.2 GB, and the
//! values of the twelve must agree cell by cell. These figures read the change links the
//! computation before kept (every computation after the first since such a sync does); the twelve
//! and the full set working them out are printed beside. Cost must follow the period: the last quarter at
//! most 1/8 of the five years, the steering report of a quarter ≤ 3 s and `tandem run` ≤ 5 s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context as _;
use tandem::commands::metrics;
use tandem::config::{MetricsConfig, ServiceConfig};
use tandem::metric::MetricId;
use tandem::metric::calendar::{Calendar, Grain};
use tandem::pipeline::bulk::{Columnar, TableWriter};
use tandem::store::delta::AsOf;
use tandem::store::maintain::Retention;
use tandem::store::{BulkLoad, Store, Tables};
use tandem_fixtures::large::{LargeSpec, ServiceBatch};

/// The allocator the `tandem` binary uses, so the figures are the ones a run sees.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Budget for the full metric set on the full lake, on a 2-core machine.
const WALL_BUDGET_SECS: f64 = 20.0;
/// Budget for peak memory, as a multiple of the lake's Parquet size.
const MEMORY_BUDGET_FACTOR: f64 = 2.0;
/// Budget for the metrics on the Delta lake, as a multiple of their wall time on the flat files.
const DELTA_WALL_FACTOR: f64 = 1.1;
/// Budget for committing one page of an incremental sync to the full Delta lake.
const PAGE_COMMIT_BUDGET_SECS: f64 = 0.5;
/// Pages committed for the incremental measurement (the median is judged).
const PAGES: usize = 5;

/// The tables the metric set reads (commits link changes to deployments by ancestry).
const READ_TABLES: [&str; 7] = [
    "deployments",
    "changes",
    "commits",
    "incidents",
    "tickets",
    "ticket_transitions",
    "change_requests",
];

struct Args {
    dir: Option<PathBuf>,
    scales: Vec<(String, f64)>,
    compute: Option<(PathBuf, f64)>,
    /// In the child: what to measure.
    job: Job,
    repeats: usize,
    /// Only the page commits (the lakes are generated or reused as usual).
    commits_only: bool,
    /// Skip the comparison with the DuckDB script and the period figures.
    no_peer: bool,
    /// In the child: remove the change links kept in the lake first (the first computation
    /// after a sync that changed the tables).
    cold: bool,
}

/// What a child measures.
#[derive(Debug, Clone, Default)]
enum Job {
    /// The metric table over the whole lake, or only the metrics named, or only the last weeks,
    /// written as Parquet when a path is given (for the DuckDB script's comparison).
    #[default]
    Metrics,
    Only(Vec<MetricId>, Option<PathBuf>),
    LastWeeks(u32),
    /// `tandem report steering --period` of the lake's last quarter.
    Steering,
    /// `tandem run` (a sync with nothing new, the metric table, the weekly report and the nightly
    /// digest) on a hard-linked copy of the lake.
    Run,
}

/// The metrics the DuckDB script computes: the benchmark's peer selection.
const PEER_METRICS: [MetricId; 12] = [
    MetricId::DeploymentCount,
    MetricId::DeploymentFrequency,
    MetricId::LeadTimeMedian,
    MetricId::LeadTimeP90,
    MetricId::ChangeFailureRate,
    MetricId::TimeToRestoreMean,
    MetricId::TimeToRestoreMedian,
    MetricId::DowntimeMinutes,
    MetricId::Availability,
    MetricId::TicketsResolved,
    MetricId::TicketBacklog,
    MetricId::SlaBreachRate,
];

fn parse_scale(text: &str) -> anyhow::Result<(String, f64)> {
    let value = match text.split_once('/') {
        Some((a, b)) => a.trim().parse::<f64>()? / b.trim().parse::<f64>()?,
        None => text.trim().parse::<f64>()?,
    };
    anyhow::ensure!(
        value > 0.0 && value <= 4.0,
        "a scale is a fraction in (0, 4], such as 1/16, 0.25 or 1; got {text}"
    );
    Ok((text.trim().to_owned(), value))
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        dir: None,
        scales: vec![
            ("1/16".into(), 1.0 / 16.0),
            ("1/4".into(), 0.25),
            ("1".into(), 1.0),
        ],
        compute: None,
        job: Job::Metrics,
        repeats: 3,
        commits_only: false,
        no_peer: false,
        cold: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} takes a value"));
        match flag.as_str() {
            "--dir" => a.dir = Some(PathBuf::from(value()?)),
            "--scales" => {
                a.scales = value()?.split(',').map(parse_scale).collect::<Result<_, _>>()?;
            }
            "--compute" => {
                let dir = PathBuf::from(value()?);
                let (_, scale) = parse_scale(&value()?)?;
                a.compute = Some((dir, scale));
            }
            "--commits-only" => a.commits_only = true,
            "--no-peer" => a.no_peer = true,
            "--only" => {
                let ids = value()?
                    .split(',')
                    .map(|id| MetricId::parse(id).with_context(|| format!("no metric {id}")))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                a.job = Job::Only(ids, None);
            }
            "--write" => match &mut a.job {
                Job::Only(_, path) => *path = Some(PathBuf::from(value()?)),
                _ => anyhow::bail!("--write follows --only"),
            },
            "--last-weeks" => a.job = Job::LastWeeks(value()?.parse()?),
            "--steering" => a.job = Job::Steering,
            "--run" => a.job = Job::Run,
            "--cold" => a.cold = true,
            "--repeats" => {
                a.repeats = value()?.parse()?;
                anyhow::ensure!(a.repeats > 0, "--repeats takes a number of runs, at least 1");
            }
            other => {
                anyhow::bail!(
                    "unknown flag {other}; flags: --dir DIR, --scales 1/16,1/4,1, --repeats N, --commits-only, --no-peer"
                )
            }
        }
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    tandem::alloc::tune();
    let args = args()?;
    if let Some((root, scale)) = &args.compute {
        return compute(root, *scale, &args.job, args.cold);
    }
    let temporary = match &args.dir {
        Some(_) => None,
        None => Some(tempfile::tempdir()?),
    };
    let dir = match (&args.dir, &temporary) {
        (Some(dir), _) => dir.clone(),
        (None, Some(tmp)) => tmp.path().to_owned(),
        (None, None) => anyhow::bail!("no directory for the lakes"),
    };
    std::fs::create_dir_all(&dir)?;
    let mut results = Vec::new();
    let mut commits_over = 0;
    for (label, scale) in &args.scales {
        let root = dir.join(format!("scale-{}", label.replace('/', "-")));
        let (flat, delta) = lakes(&root, *scale)?;
        println!(
            "Scale {label}: lake of {} rows, flat files {:.1} MB, Delta lake {:.1} MB in {} data files ({}), computing {} times each …",
            flat.rows(),
            flat.bytes as f64 / 1e6,
            delta.bytes as f64 / 1e6,
            delta.files,
            flat.origin,
            args.repeats
        );
        if args.commits_only {
            let pages = page_commits(&root, *scale)?;
            let each: Vec<String> = pages.iter().map(|t| format!("{t:.3}")).collect();
            let page = median_of(&pages);
            commits_over += usize::from(*scale >= 1.0 && page > PAGE_COMMIT_BUDGET_SECS);
            println!(
                "page commits in order: {} s; median {page:.3} s (budget {PAGE_COMMIT_BUDGET_SECS} s) {}",
                each.join(", "),
                verdict(*scale >= 1.0, page <= PAGE_COMMIT_BUDGET_SECS)
            );
            continue;
        }
        let (mut on_flat, mut on_delta) = (Vec::new(), Vec::new());
        for repeat in 0..args.repeats {
            // Alternating which goes first, so neither gets the warmer (or quieter) machine.
            let order = if repeat % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for is_delta in order {
                let (root, runs) = match is_delta {
                    false => (root.join(FLAT), &mut on_flat),
                    true => (root.join(DELTA), &mut on_delta),
                };
                let m = run_child_with(&root, label, &["--cold"])?;
                say_run(if is_delta { "Delta lake" } else { "flat files" }, repeat, &m);
                runs.push(m);
            }
        }
        let pages = page_commits(&root, *scale)?;
        let peer = match args.no_peer {
            true => None,
            false => Some(peer_and_periods(&root, label, *scale, args.repeats)?),
        };
        results.push(Result_ {
            label: label.clone(),
            lake: flat,
            delta_lake: delta,
            flat: median(on_flat),
            delta: median(on_delta),
            pages,
            peer,
        });
    }
    if args.commits_only {
        anyhow::ensure!(commits_over == 0, "the page commit is over budget");
        return Ok(());
    }
    println!();
    print_tables(&results);
    println!();
    let mut over = print_budgets(&results);
    println!();
    over += print_delta_budgets(&results);
    if results.iter().any(|r| r.peer.is_some()) {
        println!();
        over += print_peer_budgets(&results);
    }
    anyhow::ensure!(over == 0, "{over} figure(s) over budget");
    Ok(())
}

/// The flat-file form of a scale's lake (a lake not yet migrated: one Parquet file per table).
const FLAT: &str = "flat";
/// The Delta form of a scale's lake, as tandem writes it.
const DELTA: &str = "delta";

/// What one scale measured.
struct Result_ {
    label: String,
    /// The flat-file lake.
    lake: Lake,
    delta_lake: Lake,
    /// Medians of the runs on each form.
    flat: Measured,
    delta: Measured,
    /// Seconds each page commit took, in order.
    pages: Vec<f64>,
    /// Against the DuckDB script, and by period (none with `--no-peer`).
    peer: Option<Peer>,
}

/// Says how one run (counted from 0) went, as it ends.
fn say_run(what: &str, repeat: usize, m: &Measured) {
    eprintln!(
        "  {what} run {}: {:.2} s, peak {:.0} MB",
        repeat + 1,
        m.wall_secs,
        m.peak_bytes as f64 / 1e6
    );
}

/// The run with the median wall time, with the median peak memory of all runs.
fn median(mut runs: Vec<Measured>) -> Measured {
    let mut peaks: Vec<u64> = runs.iter().map(|m| m.peak_bytes).collect();
    peaks.sort_unstable();
    runs.sort_by(|a, b| a.wall_secs.total_cmp(&b.wall_secs));
    let mid = runs.len() / 2;
    let mut m = runs.swap_remove(mid);
    m.peak_bytes = peaks[peaks.len() / 2];
    m
}

/// How a figure compares with its budget: budgets are judged at full scale only.
fn verdict(judged: bool, ok: bool) -> &'static str {
    match (judged, ok) {
        (false, _) => "(budget at scale 1)",
        (true, true) => "PASS",
        (true, false) => "OVER",
    }
}

fn median_of(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Rows per table, the Parquet files and size of the tables the metrics read, and where the lake
/// came from.
struct Lake {
    tables: Vec<(String, u64)>,
    bytes: u64,
    files: usize,
    origin: String,
}

impl Lake {
    fn rows(&self) -> u64 {
        self.tables
            .iter()
            .filter(|(name, _)| READ_TABLES.contains(&name.as_str()))
            .map(|(_, n)| n)
            .sum()
    }
}

/// What the child measured.
struct Measured {
    wall_secs: f64,
    peak_bytes: u64,
    start_bytes: u64,
    metric_rows: u64,
    output_bytes: u64,
}

/// The lake at `root` for `scale` in both forms (flat files under `root/flat`, the Delta lake
/// under `root/delta`): reused when a previous run wrote the same spec there, else generated.
fn lakes(root: &Path, scale: f64) -> anyhow::Result<(Lake, Lake)> {
    let spec = LargeSpec::benchmark(scale);
    let marker = root.join("bench-lake.txt");
    let spec_line = format!(
        "{spec:?} generator v{} flat+delta v2",
        tandem_fixtures::large::VERSION
    );
    let (flat_root, delta_root) = (root.join(FLAT), root.join(DELTA));
    if let Ok(text) = std::fs::read_to_string(&marker) {
        let mut lines = text.lines();
        if lines.next() == Some(spec_line.as_str()) {
            let tables = lines
                .filter_map(|l| l.split_once(' '))
                .map(|(name, n)| Ok((name.to_owned(), n.parse()?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            return Ok((
                Lake::measure(&flat_root, tables.clone(), "reused".into())?,
                Lake::measure(&delta_root, tables, "reused".into())?,
            ));
        }
    }
    // Whatever an earlier run or another version left is rebuilt from scratch.
    let _ = std::fs::remove_file(&marker);
    for dir in [&flat_root, &delta_root, &root.join("tables")] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
    }
    let started = Instant::now();
    let flat = Store::open(&flat_root)?;
    let delta = Store::open(&delta_root)?;
    let mut writers = Writers {
        deployments: Pair::new(&flat, &delta)?,
        changes: Pair::new(&flat, &delta)?,
        commits: Pair::new(&flat, &delta)?,
        incidents: Pair::new(&flat, &delta)?,
        tickets: Pair::new(&flat, &delta)?,
        ticket_transitions: Pair::new(&flat, &delta)?,
        change_requests: Pair::new(&flat, &delta)?,
    };
    for batch in spec.batches() {
        writers.write(batch)?;
    }
    let tables = writers.finish()?;
    // The bulk load leaves a few files per partition (one per buffer flush); `tandem maintain`
    // merges them, as it does a sync's small files: the lake a maintained installation reads.
    delta.maintain(Retention::default(), true, chrono::Utc::now())?;
    let mut text = format!("{spec_line}\n");
    for (name, n) in &tables {
        text.push_str(&format!("{name} {n}\n"));
    }
    std::fs::write(&marker, text)?;
    let origin = format!("both generated in {:.1} s", started.elapsed().as_secs_f64());
    Ok((
        Lake::measure(&flat_root, tables.clone(), origin.clone())?,
        Lake::measure(&delta_root, tables, origin)?,
    ))
}

/// One table written both ways: the flat file by the bulk writer, the Delta table by the store's
/// bulk load.
struct Pair<T: Columnar> {
    flat: TableWriter<T>,
    delta: BulkLoad<T>,
}

impl<T: Columnar + Clone> Pair<T> {
    fn new(flat: &Store, delta: &Store) -> anyhow::Result<Self> {
        Ok(Self {
            flat: TableWriter::create(&flat.legacy_table_path(T::NAME))?,
            delta: delta.bulk_load::<T>()?,
        })
    }

    fn write(&mut self, rows: Vec<T>) -> anyhow::Result<()> {
        self.flat.write(rows.iter().cloned())?;
        self.delta.push(rows)?;
        Ok(())
    }

    fn finish(self) -> anyhow::Result<(String, u64)> {
        let rows = self.flat.finish()?;
        let loaded = self.delta.finish()?;
        anyhow::ensure!(
            rows == loaded,
            "{}: {rows} rows in the flat file but {loaded} in the Delta table",
            T::NAME
        );
        Ok((T::NAME.to_owned(), rows))
    }
}

struct Writers {
    deployments: Pair<tandem_connectors::model::Deployment>,
    changes: Pair<tandem_connectors::model::Change>,
    commits: Pair<tandem_connectors::model::Commit>,
    incidents: Pair<tandem_connectors::model::Incident>,
    tickets: Pair<tandem_connectors::model::Ticket>,
    ticket_transitions: Pair<tandem_connectors::model::TicketTransition>,
    change_requests: Pair<tandem_connectors::model::ChangeRequest>,
}

impl Writers {
    fn write(&mut self, batch: ServiceBatch) -> anyhow::Result<()> {
        self.deployments.write(batch.deployments)?;
        self.changes.write(batch.changes)?;
        self.commits.write(batch.commits)?;
        self.incidents.write(batch.incidents)?;
        self.tickets.write(batch.tickets)?;
        self.ticket_transitions.write(batch.ticket_transitions)?;
        self.change_requests.write(batch.change_requests)?;
        Ok(())
    }

    fn finish(self) -> anyhow::Result<Vec<(String, u64)>> {
        Ok(vec![
            self.deployments.finish()?,
            self.changes.finish()?,
            self.commits.finish()?,
            self.incidents.finish()?,
            self.tickets.finish()?,
            self.ticket_transitions.finish()?,
            self.change_requests.finish()?,
        ])
    }
}

impl Lake {
    /// The data files the metrics read from the lake at `root` (flat or Delta: whatever
    /// `Store::table_files` gives the metrics), their count and bytes.
    fn measure(root: &Path, tables: Vec<(String, u64)>, origin: String) -> anyhow::Result<Self> {
        let store = Store::open(root)?;
        let (mut files, mut bytes) = (0, 0);
        for table in READ_TABLES {
            let paths = store.table_files(table, AsOf::Latest)?;
            anyhow::ensure!(
                !paths.is_empty(),
                "the lake at {} has no table {table}",
                root.display()
            );
            for path in paths {
                files += 1;
                bytes += std::fs::metadata(&path)
                    .with_context(|| format!("size of {}", path.display()))?
                    .len();
            }
        }
        Ok(Self {
            tables,
            bytes,
            files,
            origin,
        })
    }
}

/// Commits [`PAGES`] pages of an incremental sync to a hard-linked copy of the scale's Delta lake
/// (so the lake the metrics read stays as generated), each from a freshly opened store as a new
/// `tandem sync` would; returns each commit's seconds.
fn page_commits(root: &Path, scale: f64) -> anyhow::Result<Vec<f64>> {
    let copy = root.join("incremental");
    if copy.exists() {
        std::fs::remove_dir_all(&copy)?;
    }
    link_tree(&root.join(DELTA), &copy)?;
    let spec = LargeSpec::benchmark(scale);
    let first = spec.batches().next().context("the generator made no service")?;
    let mut times = Vec::new();
    for page in 0..PAGES {
        let tables = page_of(&first, page);
        let store = Store::open(&copy)?;
        let started = Instant::now();
        store.commit(
            "bench",
            "pulls",
            tables,
            Some(serde_json::json!({ "page": page })),
        )?;
        times.push(started.elapsed().as_secs_f64());
    }
    std::fs::remove_dir_all(&copy)?;
    Ok(times)
}

/// The `n`th page of an incremental sync of pull requests: the 50 latest changes of a service
/// updated an hour after the lake ends, and 50 new ones with their merge commits.
fn page_of(batch: &ServiceBatch, n: usize) -> Tables {
    let mut changes = batch.changes.clone();
    changes.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    changes.truncate(50);
    let mut commits = batch.commits.clone();
    commits.sort_by_key(|c| std::cmp::Reverse(c.authored_at));
    commits.truncate(50);
    let later = chrono::Duration::hours(1 + n as i64);
    let mut tables = Tables::default();
    for change in &changes {
        let mut updated = change.clone();
        updated.updated_at = updated.updated_at.max(updated.created_at) + later;
        updated.title.push_str(" (edited)");
        tables.changes.push(updated);
        let mut new = change.clone();
        new.id = format!("{}-page{n}", change.id);
        new.number += 1_000_000 * (n as i64 + 1);
        tables.changes.push(new);
    }
    for commit in commits {
        let mut new = commit;
        new.id = format!("{}-page{n}", new.id);
        new.sha = format!("{}{n}", new.sha);
        tables.commits.push(new);
    }
    tables
}

/// Recreates the tree at `from` under `to` with hard links: Delta data and log files are never
/// changed once written, so the copy's commits leave the original as it was.
fn link_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else {
            std::fs::hard_link(entry.path(), &target)
                .with_context(|| format!("linking {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Computes in a child process (see [`compute`]) with the child's job flags (`--only IDS
/// [--write FILE]`, `--last-weeks N`, `--steering`, `--run`; `--cold`).
fn run_child_with(root: &Path, label: &str, job: &[&str]) -> anyhow::Result<Measured> {
    let output = Command::new(std::env::current_exe()?)
        .arg("--compute")
        .arg(root)
        .arg(label)
        .args(job)
        // The stage timings the child logs with `TANDEM_LOG=tandem=debug` show as they come.
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "computing at scale {label} failed ({}): {}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("the child printed no RESULT line")?;
    let field = |name: &str| -> anyhow::Result<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("no {name} in {line}"))?
            .parse::<f64>()
            .with_context(|| format!("{name} in {line}"))
    };
    Ok(Measured {
        wall_secs: field("wall_secs")?,
        peak_bytes: field("peak_kb")? as u64 * 1024,
        start_bytes: field("start_kb")? as u64 * 1024,
        metric_rows: field("metric_rows")? as u64,
        output_bytes: field("output_kb")? as u64 * 1024,
    })
}

/// The child: the full metric set exactly as `tandem metrics` computes it with the default
/// `[metrics]` settings, every service and its team configured, weekly over the whole range.
///
/// `cold`: the change links kept in the lake are removed first, so the computation works them
/// out (and keeps them) as the first one after a sync that changed the tables does.
fn compute(root: &Path, scale: f64, job: &Job, cold: bool) -> anyhow::Result<()> {
    // `TANDEM_LOG=tandem=debug` logs how long each stage of the computation takes.
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let spec = LargeSpec::benchmark(scale);
    let store = Store::open(root)?;
    if cold && store.prepared_dir().exists() {
        std::fs::remove_dir_all(store.prepared_dir())?;
    }
    let services: Vec<ServiceConfig> = spec
        .service_names()
        .into_iter()
        .map(|(name, team)| ServiceConfig {
            name,
            team: Some(team),
            repos: Vec::new(),
            pagerduty: Vec::new(),
            jira_components: Vec::new(),
            servicenow_cis: Vec::new(),
            slo: None,
        })
        .collect();
    let end = spec.start + chrono::Duration::weeks(i64::from(spec.weeks));
    let first = match job {
        Job::LastWeeks(weeks) => end - chrono::Duration::weeks(i64::from(*weeks)),
        _ => spec.start,
    };
    let calendar = Calendar::new(chrono_tz::UTC, Grain::Week, first, end).map_err(anyhow::Error::msg)?;
    let start_kb = tandem::alloc::status_kb("VmRSS");
    if matches!(job, Job::Steering | Job::Run) {
        return command(root, &spec, services, job, start_kb);
    }
    let started = Instant::now();
    let only = match job {
        Job::Only(ids, _) => Some(ids.as_slice()),
        _ => None,
    };
    let table = metrics::from_store_many(
        &store,
        None,
        vec![calendar],
        &MetricsConfig::default(),
        &services,
        only,
    )?
    .remove(0);
    let wall = started.elapsed().as_secs_f64();
    if let Job::Only(_, Some(path)) = job {
        tandem::pipeline::write_metrics(&table, path)?;
    }
    // The metric table itself, as returned, to tell the result's share of the peak from the
    // computation's.
    let output_bytes = table.heap_bytes();
    println!(
        "RESULT wall_secs={wall:.3} peak_kb={} start_kb={start_kb} metric_rows={} output_kb={}",
        tandem::alloc::status_kb("VmHWM"),
        table.len(),
        output_bytes / 1024
    );
    Ok(())
}

fn print_tables(results: &[Result_]) {
    let mut header = format!("{:<20}", "rows per table");
    for r in results {
        header.push_str(&format!("{:>14}", r.label));
    }
    println!("{header}");
    let Some(first) = results.first() else {
        return;
    };
    for (name, _) in &first.lake.tables {
        let mut line = format!("{name:<20}");
        for r in results {
            let n = r
                .lake
                .tables
                .iter()
                .find(|(t, _)| t == name)
                .map_or(0, |(_, n)| *n);
            line.push_str(&format!("{n:>14}"));
        }
        if !READ_TABLES.contains(&name.as_str()) {
            line.push_str("  (not read by the metrics)");
        }
        println!("{line}");
    }
}

/// Prints one line per scale and form with each figure beside its budget; returns how many are
/// over. The memory budget is the flat lake's for both forms.
fn print_budgets(results: &[Result_]) -> usize {
    println!(
        "{:<6} {:<6} {:>12} {:>10} {:>7} {:>16} {:>36} {:>38} {:>12} {:>16}",
        "scale",
        "form",
        "rows read",
        "lake MB",
        "files",
        "rows/s",
        "wall s (budget)",
        "peak RSS MB (budget)",
        "metric rows",
        "of which MB"
    );
    let mut over = 0;
    for r in results {
        // The budgets are for the large lake; smaller scales show how the cost grows with the
        // data (their fixed share — the metric table of every week of five years for 200
        // services — is the same at every scale).
        let judged = parse_scale(&r.label).is_ok_and(|(_, scale)| scale >= 1.0);
        let verdict = |ok: bool| verdict(judged, ok);
        let memory_budget = r.lake.bytes as f64 * MEMORY_BUDGET_FACTOR;
        for (form, lake, m) in [("flat", &r.lake, &r.flat), ("delta", &r.delta_lake, &r.delta)] {
            let time_ok = m.wall_secs <= WALL_BUDGET_SECS;
            let memory_ok = m.peak_bytes as f64 <= memory_budget;
            if judged {
                over += usize::from(!time_ok) + usize::from(!memory_ok);
            }
            println!(
                "{:<6} {:<6} {:>12} {:>10.1} {:>7} {:>16.0} {:>36} {:>38} {:>12} {:>16.0}",
                r.label,
                form,
                lake.rows(),
                lake.bytes as f64 / 1e6,
                lake.files,
                lake.rows() as f64 / m.wall_secs.max(1e-9),
                format!(
                    "{:.2} ({:.0}) {}",
                    m.wall_secs,
                    WALL_BUDGET_SECS,
                    verdict(time_ok)
                ),
                format!(
                    "{:.0} ({:.0}) {}",
                    m.peak_bytes as f64 / 1e6,
                    memory_budget / 1e6,
                    verdict(memory_ok)
                ),
                m.metric_rows,
                m.output_bytes as f64 / 1e6
            );
        }
    }
    if let Some(r) = results.first() {
        println!(
            "medians of the alternating runs; peak RSS includes the process's {:.0} MB before computing; \"of which\": the returned metric \
             table's own size; budgets: {WALL_BUDGET_SECS:.0} s and {MEMORY_BUDGET_FACTOR}× the Parquet size of \
             the flat tables read, on 2 cores",
            r.flat.start_bytes as f64 / 1e6
        );
    }
    over
}

/// Prints the Delta lake against the flat files and the incremental page commits, each beside its
/// budget (judged at scale 1); returns how many are over.
fn print_delta_budgets(results: &[Result_]) -> usize {
    println!(
        "{:<6} {:>34} {:>22} {:>18} {:>40}",
        "scale",
        "Delta / flat wall (budget)",
        "Delta / flat peak",
        "same metric rows",
        "page commit s, median (budget)"
    );
    let mut over = 0;
    for r in results {
        let judged = parse_scale(&r.label).is_ok_and(|(_, scale)| scale >= 1.0);
        let verdict = |ok: bool| verdict(judged, ok);
        let ratio = r.delta.wall_secs / r.flat.wall_secs.max(1e-9);
        let wall_ok = ratio <= DELTA_WALL_FACTOR;
        let same_rows = r.delta.metric_rows == r.flat.metric_rows;
        let page = median_of(&r.pages);
        let page_ok = page <= PAGE_COMMIT_BUDGET_SECS;
        if judged {
            over += usize::from(!wall_ok) + usize::from(!page_ok);
        }
        over += usize::from(!same_rows);
        println!(
            "{:<6} {:>34} {:>22} {:>18} {:>40}",
            r.label,
            format!("{ratio:.3} (<= {DELTA_WALL_FACTOR}) {}", verdict(wall_ok)),
            format!(
                "{:.3}",
                r.delta.peak_bytes as f64 / r.flat.peak_bytes.max(1) as f64
            ),
            if same_rows { "yes" } else { "NO" },
            format!("{page:.3} (<= {PAGE_COMMIT_BUDGET_SECS}) {}", verdict(page_ok)),
        );
        let each: Vec<String> = r.pages.iter().map(|t| format!("{t:.3}")).collect();
        println!("       page commits in order: {} s", each.join(", "));
    }
    println!(
        "page: 50 changes updated and 50 new, with 50 new commits, committed by Store::commit (pending \
         bookmark, both tables' copy-on-write upserts, bookmark) from a freshly opened store"
    );
    over
}

/// The child of a command's measurement: `tandem report steering --period` of the lake's last
/// quarter, or `tandem run` on a hard-linked copy of the lake (a file source with nothing new,
/// the twelve weeks before the lake's end, the digest of the lake's last day), each with a
/// config naming every service and its team, as a user's would.
fn command(
    root: &Path,
    spec: &LargeSpec,
    services: Vec<ServiceConfig>,
    job: &Job,
    start_kb: u64,
) -> anyhow::Result<()> {
    let end = spec.start + chrono::Duration::weeks(i64::from(spec.weeks));
    let work = tempfile::tempdir()?;
    let lake = match job {
        Job::Run => {
            let copy = work.path().join("lake");
            link_tree(root, &copy)?;
            copy
        }
        _ => root.to_owned(),
    };
    std::fs::create_dir_all(work.path().join("imports"))?;
    let mut text = format!(
        "[organisation]\nname = \"Benchmark\"\n\n[store]\npath = {:?}\n\n[report]\nout = {:?}\n\n\
         [[source]]\nkind = \"file\"\nname = \"legacy\"\npath = \"imports\"\n",
        lake.display().to_string(),
        work.path().join("reports").display().to_string(),
    );
    for s in &services {
        text.push_str(&format!(
            "\n[[service]]\nname = {:?}\nteam = {:?}\n",
            s.name,
            s.team.as_deref().unwrap_or_default()
        ));
    }
    let config_path = work.path().join("tandem.toml");
    std::fs::write(&config_path, &text)?;
    let config = tandem::config::Config::parse(&text, &config_path, work.path().to_owned())?;
    let ctx = tandem::commands::Context {
        env: tandem_connectors::SecretEnv::process(),
        progress: false,
    };
    let started = Instant::now();
    match job {
        Job::Steering => {
            let last = end - chrono::Duration::days(1);
            let quarter = format!(
                "{}-Q{}",
                chrono::Datelike::year(&last),
                chrono::Datelike::month0(&last) / 3 + 1
            );
            let args = tandem::cli::ReportArgs {
                kind: tandem::cli::ReportKind::Steering,
                range: tandem::cli::RangeArgs {
                    period: Some(quarter),
                    ..Default::default()
                },
                out: None,
                as_of: None,
            };
            tandem::commands::steering::run(&args, &config, &ctx)?;
        }
        _ => {
            let range = tandem::cli::RangeArgs {
                weeks: Some(12),
                until: Some(end),
                ..Default::default()
            };
            let now = end.and_hms_opt(6, 0, 0).context("the lake's end")?.and_utc();
            tokio::runtime::Runtime::new()?
                .block_on(tandem::commands::run::job_at(&config, &ctx, &range, None, now))?;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "RESULT wall_secs={wall:.3} peak_kb={} start_kb={start_kb} metric_rows=0 output_kb=0",
        tandem::alloc::status_kb("VmHWM"),
    );
    Ok(())
}

/// Budget for the benchmark's twelve metrics, as a multiple of the DuckDB script's wall time.
const PEER_WALL_FACTOR: f64 = 1.0;
/// Budget for the full metric set, as a multiple of the DuckDB script's wall time.
const FULL_WALL_FACTOR: f64 = 1.5;
/// Budget for the full metric set's peak memory.
const FULL_PEAK_BUDGET_BYTES: f64 = 1.2e9;
/// Budget for the last quarter (13 weeks) as a share of the whole five years.
const QUARTER_SHARE: f64 = 1.0 / 8.0;
/// Budget for `tandem run` on the full lake.
const RUN_BUDGET_SECS: f64 = 5.0;
/// Budget for the steering report of a quarter, comparisons included.
const STEERING_BUDGET_SECS: f64 = 3.0;

/// One scale against the DuckDB script, and by period. Every figure but `twelve_cold` reads the
/// change links the computation before it kept in the lake, as every computation after the first
/// since a sync that changed the tables does.
struct Peer {
    /// tandem's twelve (`--metrics`) working the change links out, as the first computation after
    /// such a sync.
    twelve_cold: Measured,
    /// tandem's twelve (`--metrics`), the script's, the full set, the last quarter's full set,
    /// steering, run.
    twelve: Measured,
    duckdb: Measured,
    full: Measured,
    quarter: Measured,
    steering: Measured,
    run: Measured,
    /// Cells compared between tandem's twelve and the script's, and how many disagree.
    compared: u64,
    disagree: u64,
    examples: String,
}

/// Runs tandem's twelve once cold (working the change links out), then tandem's twelve and the
/// DuckDB script alternately (`repeats` times each; the first tandem run writes its table, which
/// the script's first run compares with), then the full set, the last quarter's full set, the
/// steering report and `tandem run`, each `repeats` times; medians.
fn peer_and_periods(root: &Path, label: &str, scale: f64, repeats: usize) -> anyhow::Result<Peer> {
    let delta = root.join(DELTA);
    let spec = LargeSpec::benchmark(scale);
    let end = spec.start + chrono::Duration::weeks(i64::from(spec.weeks));
    let ids: Vec<&str> = PEER_METRICS.iter().map(|m| m.as_str()).collect();
    let ids = ids.join(",");
    let written = root.join("twelve.parquet");
    let twelve_cold = run_child_with(&delta, label, &["--only", ids.as_str(), "--cold"])?;
    say_run("tandem's twelve, working the change links out", 0, &twelve_cold);
    let (mut twelve, mut duckdb) = (Vec::new(), Vec::new());
    let (mut compared, mut disagree, mut examples) = (0, 0, String::new());
    for repeat in 0..repeats {
        let first = repeat == 0;
        let mut job = vec!["--only", ids.as_str()];
        let path = written.display().to_string();
        if first {
            job.extend(["--write", path.as_str()]);
        }
        let order = if repeat % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for is_peer in order {
            if is_peer {
                // The first script run compares with the table tandem wrote, so tandem goes first.
                let compare = (first && written.exists()).then_some(written.as_path());
                let (m, agreement) = run_peer(&delta, spec.weeks, end, compare)?;
                if let Some((n, bad, text)) = agreement {
                    (compared, disagree, examples) = (n, bad, text);
                }
                say_run("DuckDB script", repeat, &m);
                duckdb.push(m);
            } else {
                let m = run_child_with(&delta, label, &job)?;
                say_run("tandem's twelve", repeat, &m);
                twelve.push(m);
            }
        }
    }
    let _ = std::fs::remove_file(&written);
    let runs = |job: &[&str], what: &str| -> anyhow::Result<Measured> {
        let mut all = Vec::new();
        for repeat in 0..repeats {
            let m = run_child_with(&delta, label, job)?;
            say_run(what, repeat, &m);
            all.push(m);
        }
        Ok(median(all))
    };
    let full = runs(&[], "full set")?;
    let quarter = runs(&["--last-weeks", "13"], "last quarter (13 weeks)")?;
    let steering = runs(&["--steering"], "steering report of the last quarter")?;
    let run = runs(&["--run"], "tandem run")?;
    Ok(Peer {
        twelve_cold,
        twelve: median(twelve),
        duckdb: median(duckdb),
        full,
        quarter,
        steering,
        run,
        compared,
        disagree,
        examples,
    })
}

/// Where the DuckDB script is: `benches/peer/duckdb_metrics.py` of this checkout.
fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer/duckdb_metrics.py")
}

/// Runs the DuckDB script over the Delta lake at `lake` for the `weeks` weeks before `end`,
/// comparing with tandem's table at `compare` when given; returns its measurement and, with a
/// comparison, the cells compared, those that disagree and up to five examples.
#[allow(clippy::type_complexity)]
fn run_peer(
    lake: &Path,
    weeks: u32,
    end: chrono::NaiveDate,
    compare: Option<&Path>,
) -> anyhow::Result<(Measured, Option<(u64, u64, String)>)> {
    let script = peer_script();
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .arg("--lake")
        .arg(lake)
        .arg("--weeks")
        .arg(weeks.to_string())
        .arg("--until")
        .arg(end.to_string());
    if let Some(path) = compare {
        command.arg("--compare").arg(path);
    }
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| {
            format!(
                "running python3 {} (it needs python3 with duckdb and deltalake; --no-peer skips it)",
                script.display()
            )
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "the DuckDB script failed ({}); it needs python3 with duckdb and deltalake (--no-peer skips it): {stdout}",
        output.status
    );
    let line = stdout
        .lines()
        .last()
        .context("the DuckDB script printed nothing")?;
    let result: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("the DuckDB script's last line: {line}"))?;
    let number = |key: &str| result[key].as_f64();
    let measured = Measured {
        wall_secs: number("wall_secs").context("no wall_secs")?,
        peak_bytes: number("peak_bytes").context("no peak_bytes")? as u64,
        start_bytes: 0,
        metric_rows: number("rows").unwrap_or(0.0) as u64,
        output_bytes: 0,
    };
    let agreement = match (number("compared"), number("disagree")) {
        (Some(n), Some(bad)) => Some((n as u64, bad as u64, result["examples"].to_string())),
        _ => None,
    };
    Ok((measured, agreement))
}

/// Prints tandem against the DuckDB script and the figures by period, each beside its budget
/// (judged at scale 1); returns how many are over. Disagreeing values are always over.
fn print_peer_budgets(results: &[Result_]) -> usize {
    println!(
        "{:<6} {:>20} {:>20} {:>26} {:>28} {:>24} {:>26}",
        "scale",
        "tandem twelve s/MB",
        "DuckDB twelve s/MB",
        "twelve ratio (budget)",
        "twelve peak / DuckDB (<= 1)",
        "full / DuckDB (budget)",
        "full peak MB (budget)"
    );
    let mut over = 0;
    for r in results {
        let Some(p) = &r.peer else { continue };
        let judged = parse_scale(&r.label).is_ok_and(|(_, scale)| scale >= 1.0);
        let verdict = |ok: bool| verdict(judged, ok);
        let ratio = p.twelve.wall_secs / p.duckdb.wall_secs.max(1e-9);
        let peak = p.twelve.peak_bytes as f64 / p.duckdb.peak_bytes.max(1) as f64;
        let full = p.full.wall_secs / p.duckdb.wall_secs.max(1e-9);
        let checks = [
            ratio <= PEER_WALL_FACTOR,
            peak <= 1.0,
            full <= FULL_WALL_FACTOR,
            p.full.peak_bytes as f64 <= FULL_PEAK_BUDGET_BYTES,
        ];
        if judged {
            over += checks.iter().filter(|ok| !**ok).count();
        }
        println!(
            "{:<6} {:>20} {:>20} {:>26} {:>28} {:>24} {:>26}",
            r.label,
            format!(
                "{:.2} / {:.0}",
                p.twelve.wall_secs,
                p.twelve.peak_bytes as f64 / 1e6
            ),
            format!(
                "{:.2} / {:.0}",
                p.duckdb.wall_secs,
                p.duckdb.peak_bytes as f64 / 1e6
            ),
            format!("{ratio:.2} (<= {PEER_WALL_FACTOR}) {}", verdict(checks[0])),
            format!("{peak:.2} {}", verdict(checks[1])),
            format!("{full:.2} (<= {FULL_WALL_FACTOR}) {}", verdict(checks[2])),
            format!(
                "{:.0} ({:.0}) {}",
                p.full.peak_bytes as f64 / 1e6,
                FULL_PEAK_BUDGET_BYTES / 1e6,
                verdict(checks[3])
            ),
        );
        println!(
            "       working the change links out (the first computation after a sync that changed the tables): \
             twelve {:.2} s / {:.0} MB = {:.2}x DuckDB; full set {:.2} s / {:.0} MB = {:.2}x",
            p.twelve_cold.wall_secs,
            p.twelve_cold.peak_bytes as f64 / 1e6,
            p.twelve_cold.wall_secs / p.duckdb.wall_secs.max(1e-9),
            r.delta.wall_secs,
            r.delta.peak_bytes as f64 / 1e6,
            r.delta.wall_secs / p.duckdb.wall_secs.max(1e-9),
        );
        let agree = p.compared > 0 && p.disagree == 0;
        over += usize::from(!agree);
        println!(
            "       values: {} cells compared, {} disagree{}",
            p.compared,
            p.disagree,
            if agree {
                String::new()
            } else {
                format!(" OVER, e.g. {}", p.examples)
            }
        );
    }
    println!();
    println!(
        "{:<6} {:>28} {:>30} {:>28}",
        "scale", "quarter / 5 years (budget)", "steering s, quarter (budget)", "tandem run s (budget)"
    );
    for r in results {
        let Some(p) = &r.peer else { continue };
        let judged = parse_scale(&r.label).is_ok_and(|(_, scale)| scale >= 1.0);
        let verdict = |ok: bool| verdict(judged, ok);
        let share = p.quarter.wall_secs / p.full.wall_secs.max(1e-9);
        let checks = [
            share <= QUARTER_SHARE,
            p.steering.wall_secs <= STEERING_BUDGET_SECS,
            p.run.wall_secs <= RUN_BUDGET_SECS,
        ];
        if judged {
            over += checks.iter().filter(|ok| !**ok).count();
        }
        println!(
            "{:<6} {:>28} {:>30} {:>28}",
            r.label,
            format!(
                "{:.2} s = {share:.3} (<= {QUARTER_SHARE:.3}) {}",
                p.quarter.wall_secs,
                verdict(checks[0])
            ),
            format!(
                "{:.2} (<= {STEERING_BUDGET_SECS}) {}",
                p.steering.wall_secs,
                verdict(checks[1])
            ),
            format!(
                "{:.2} (<= {RUN_BUDGET_SECS}) {}",
                p.run.wall_secs,
                verdict(checks[2])
            ),
        );
    }
    println!(
        "twelve: {} by `--metrics`, and the same twelve by benches/peer/duckdb_metrics.py (DuckDB, reading the \
         Delta tables' current files), alternating, medians; full: the full set on the Delta lake; quarter: \
         the full set over the last 13 weeks, as a share of the full set's time; steering: `tandem report steering --period` of the last quarter \
         (its period, the one before and their weeks); run: `tandem run` with nothing new to sync (metric table \
         of 12 weeks, weekly report, nightly digest). Each reads the change links kept in the lake by the \
         computation before it (the first computation after a sync that changed the tables works them out, \
         as the line below each scale's figures shows).",
        PEER_METRICS
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    over
}
