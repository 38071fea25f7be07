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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context as _;
use tandem::commands::metrics;
use tandem::config::{MetricsConfig, ServiceConfig};
use tandem::pipeline::bulk::{Columnar, TableWriter};
use tandem::pipeline::calendar::{Calendar, Grain};
use tandem::store::Store;
use tandem_fixtures::large::{LargeSpec, ServiceBatch};

/// The allocator the `tandem` binary uses, so the figures are the ones a run sees.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Budget for the full metric set on the full lake, on a 2-core machine.
const WALL_BUDGET_SECS: f64 = 20.0;
/// Budget for peak memory, as a multiple of the lake's Parquet size.
const MEMORY_BUDGET_FACTOR: f64 = 2.0;

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
}

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
            other => anyhow::bail!("unknown flag {other}; flags: --dir DIR, --scales 1/16,1/4,1"),
        }
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    tandem::alloc::give_back_freed_memory_at_once();
    let args = args()?;
    if let Some((root, scale)) = &args.compute {
        return compute(root, *scale);
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
    for (label, scale) in &args.scales {
        let root = dir.join(format!("scale-{}", label.replace('/', "-")));
        let lake = lake(&root, *scale)?;
        println!(
            "Scale {label}: lake of {} rows, {:.1} MB ({}), computing …",
            lake.rows(),
            lake.bytes as f64 / 1e6,
            lake.origin
        );
        let measured = run_child(&root, label)?;
        results.push((label.clone(), lake, measured));
    }
    println!();
    print_tables(&results);
    println!();
    let over = print_budgets(&results);
    anyhow::ensure!(over == 0, "{over} figure(s) over budget");
    Ok(())
}

/// Rows per table, the Parquet size of the tables the metrics read, and where the lake came from.
struct Lake {
    tables: Vec<(String, u64)>,
    bytes: u64,
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

/// The lake at `root` for `scale`: reused when a previous run wrote the same spec there, else
/// generated.
fn lake(root: &Path, scale: f64) -> anyhow::Result<Lake> {
    let spec = LargeSpec::benchmark(scale);
    let marker = root.join("bench-lake.txt");
    let spec_line = format!("{spec:?} generator v{}", tandem_fixtures::large::VERSION);
    if let Ok(text) = std::fs::read_to_string(&marker) {
        let mut lines = text.lines();
        if lines.next() == Some(spec_line.as_str()) {
            let tables = lines
                .filter_map(|l| l.split_once(' '))
                .map(|(name, n)| Ok((name.to_owned(), n.parse()?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            return Ok(Lake {
                tables,
                bytes: lake_bytes(root)?,
                origin: "reused".into(),
            });
        }
    }
    let started = Instant::now();
    let store = Store::open(root)?;
    let mut writers = Writers {
        deployments: TableWriter::create(&store.legacy_table_path("deployments"))?,
        changes: TableWriter::create(&store.legacy_table_path("changes"))?,
        commits: TableWriter::create(&store.legacy_table_path("commits"))?,
        incidents: TableWriter::create(&store.legacy_table_path("incidents"))?,
        tickets: TableWriter::create(&store.legacy_table_path("tickets"))?,
        ticket_transitions: TableWriter::create(&store.legacy_table_path("ticket_transitions"))?,
        change_requests: TableWriter::create(&store.legacy_table_path("change_requests"))?,
    };
    for batch in spec.batches() {
        writers.write(batch)?;
    }
    let tables = writers.finish()?;
    let mut text = format!("{spec_line}\n");
    for (name, n) in &tables {
        text.push_str(&format!("{name} {n}\n"));
    }
    std::fs::write(&marker, text)?;
    Ok(Lake {
        tables,
        bytes: lake_bytes(root)?,
        origin: format!("generated in {:.1} s", started.elapsed().as_secs_f64()),
    })
}

struct Writers {
    deployments: TableWriter<tandem_connectors::model::Deployment>,
    changes: TableWriter<tandem_connectors::model::Change>,
    commits: TableWriter<tandem_connectors::model::Commit>,
    incidents: TableWriter<tandem_connectors::model::Incident>,
    tickets: TableWriter<tandem_connectors::model::Ticket>,
    ticket_transitions: TableWriter<tandem_connectors::model::TicketTransition>,
    change_requests: TableWriter<tandem_connectors::model::ChangeRequest>,
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
        fn done<T: Columnar>(w: TableWriter<T>) -> anyhow::Result<(String, u64)> {
            Ok((T::NAME.to_owned(), w.finish()?))
        }
        Ok(vec![
            done(self.deployments)?,
            done(self.changes)?,
            done(self.commits)?,
            done(self.incidents)?,
            done(self.tickets)?,
            done(self.ticket_transitions)?,
            done(self.change_requests)?,
        ])
    }
}

fn lake_bytes(root: &Path) -> anyhow::Result<u64> {
    let store = Store::open(root)?;
    READ_TABLES
        .iter()
        .map(|t| {
            let path = store.legacy_table_path(t);
            Ok(std::fs::metadata(&path)
                .with_context(|| format!("size of {}", path.display()))?
                .len())
        })
        .sum()
}

/// Runs this binary with `--compute` and reads its one result line.
fn run_child(root: &Path, label: &str) -> anyhow::Result<Measured> {
    let output = Command::new(std::env::current_exe()?)
        .arg("--compute")
        .arg(root)
        .arg(label)
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
fn compute(root: &Path, scale: f64) -> anyhow::Result<()> {
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
    let calendar = Calendar::new(
        chrono_tz::UTC,
        Grain::Week,
        spec.start,
        spec.start + chrono::Duration::weeks(i64::from(spec.weeks)),
    )
    .map_err(anyhow::Error::msg)?;
    let start_kb = tandem::alloc::status_kb("VmRSS");
    let started = Instant::now();
    let table = metrics::from_store(&store, calendar, &MetricsConfig::default(), &services)?;
    let wall = started.elapsed().as_secs_f64();
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

fn print_tables(results: &[(String, Lake, Measured)]) {
    let mut header = format!("{:<20}", "rows per table");
    for (label, ..) in results {
        header.push_str(&format!("{label:>14}"));
    }
    println!("{header}");
    let Some((_, first, _)) = results.first() else {
        return;
    };
    for (name, _) in &first.tables {
        let mut line = format!("{name:<20}");
        for (_, lake, _) in results {
            let n = lake.tables.iter().find(|(t, _)| t == name).map_or(0, |(_, n)| *n);
            line.push_str(&format!("{n:>14}"));
        }
        if !READ_TABLES.contains(&name.as_str()) {
            line.push_str("  (not read by the metrics)");
        }
        println!("{line}");
    }
}

/// Prints one line per scale with each figure beside its budget; returns how many are over.
fn print_budgets(results: &[(String, Lake, Measured)]) -> usize {
    println!(
        "{:<6} {:>12} {:>10} {:>16} {:>36} {:>38} {:>12} {:>16}",
        "scale",
        "rows read",
        "lake MB",
        "rows/s",
        "wall s (budget)",
        "peak RSS MB (budget)",
        "metric rows",
        "of which MB"
    );
    let mut over = 0;
    for (label, lake, m) in results {
        // The budgets are for the large lake; smaller scales show how the cost grows with the
        // data (their fixed share — the metric table of every week of five years for 200
        // services — is the same at every scale).
        let judged = parse_scale(label).is_ok_and(|(_, scale)| scale >= 1.0);
        let verdict = |ok: bool| match (judged, ok) {
            (false, _) => "(budget at scale 1)",
            (true, true) => "PASS",
            (true, false) => "OVER",
        };
        let time_ok = m.wall_secs <= WALL_BUDGET_SECS;
        let memory_budget = lake.bytes as f64 * MEMORY_BUDGET_FACTOR;
        let memory_ok = m.peak_bytes as f64 <= memory_budget;
        if judged {
            over += usize::from(!time_ok) + usize::from(!memory_ok);
        }
        println!(
            "{:<6} {:>12} {:>10.1} {:>16.0} {:>36} {:>38} {:>12} {:>16.0}",
            label,
            lake.rows(),
            lake.bytes as f64 / 1e6,
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
    if let Some((_, _, m)) = results.first() {
        println!(
            "peak RSS includes the process's {:.0} MB before computing; \"of which\": the returned metric \
             table's own size; budgets: {WALL_BUDGET_SECS:.0} s and {MEMORY_BUDGET_FACTOR}× the Parquet size of \
             the tables read, on 2 cores",
            m.start_bytes as f64 / 1e6
        );
    }
    over
}
