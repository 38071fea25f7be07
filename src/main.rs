//! The `tandem` binary: parse → run → exit code. Errors print their whole chain on one line.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use tandem::cli::{Cli, Command, LogFormat, ReportKind};
use tandem::commands::{self, Outcome, SyncCounts};

/// mimalloc rather than the system allocator: polars allocates and frees millions of buffers on
/// several threads, and mimalloc (told to by [`tandem::alloc`]) gives freed memory back to the
/// system at once, so a run over a large lake keeps its footprint near what it holds.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let clock = Instant::now();
    tandem::alloc::tune();
    let cli = Cli::parse();
    init_logging(&cli);
    let format = cli.log_format;
    // Once `sync` or `run` has synced, a scheduler's log ends with its summary line, whatever
    // happened after; an error before the sync (a bad config, a busy lake) stays one line.
    let mut counts = None;
    let exit = match run(cli, &mut counts) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            eprintln!("{}", commands::error_line(&e, format));
            1
        }
    };
    if let Some(counts) = counts {
        let seconds = clock.elapsed().as_secs_f64();
        eprintln!("{}", commands::summary_line(&counts, seconds, exit, format));
    }
    ExitCode::from(u8::try_from(exit).unwrap_or(1))
}

fn run(cli: Cli, counts: &mut Option<SyncCounts>) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Progress lines would break the one-object-per-line stream of JSON logs.
    let ctx = commands::Context::for_cli(cli.quiet || cli.log_format == LogFormat::Json);
    let outcome = match &cli.command {
        Command::Init(args) => commands::init::run(args, &cli.config, &ctx).map(|()| Outcome::Success),
        Command::Completions(args) => commands::completions::run(args).map(|()| Outcome::Success),
        Command::Man(args) => commands::man::run(args).map(|()| Outcome::Success),
        Command::Demo(args) => runtime.block_on(commands::demo::run(args, &ctx)),
        Command::Sync(args) => {
            let config = commands::load_config(&cli.config)?;
            runtime.block_on(commands::sync::run(args, &config, &ctx, counts))
        }
        Command::Check(args) => {
            let config = commands::load_config(&cli.config)?;
            runtime.block_on(commands::check::run(args, &config, &ctx))
        }
        Command::Metrics(args) => {
            let config = commands::load_config(&cli.config)?;
            commands::metrics::run(args, &config).map(|()| Outcome::Success)
        }
        Command::Report(args) => {
            let config = commands::load_config(&cli.config)?;
            match args.kind {
                ReportKind::Weekly => commands::report::run(args, &config, &ctx),
                ReportKind::Steering => commands::steering::run(args, &config, &ctx),
                ReportKind::Nightly => commands::nightly::run(args, &config, &ctx),
            }
        }
        Command::Export(args) => {
            let config = commands::load_config(&cli.config)?;
            commands::export::run(args, &config, &ctx)
        }
        Command::Remap(args) => {
            let config = commands::load_config(&cli.config)?;
            commands::remap::run(args, &config).map(|()| Outcome::Success)
        }
        Command::Maintain(args) => {
            let config = commands::load_config(&cli.config)?;
            commands::maintain::run(args, &config).map(|()| Outcome::Success)
        }
        Command::Migrate(args) => {
            let config = commands::load_config(&cli.config)?;
            commands::migrate::run(args, &config).map(|()| Outcome::Success)
        }
        Command::Run(args) => {
            let config = commands::load_config(&cli.config)?;
            runtime.block_on(commands::run::run(args, &config, &ctx, counts))
        }
    }?;
    // Reports written to object storage go up once the command is done with them.
    commands::publish_outputs()?;
    Ok(outcome)
}

/// Structured log lines on stderr, quiet by default for cron: warnings and errors (retries,
/// quarantined records, failed sources); `-v` adds progress, `-vv` debug detail, `--quiet` keeps
/// errors only. `TANDEM_LOG` takes a full filter (e.g. `tandem=debug`). Results go to stdout.
/// `--log-format json` writes each event as one JSON object, its fields beside `timestamp`,
/// `level` and `message`.
fn init_logging(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    // The Delta kernel logs every error it returns at ERROR level (`instrument(err)`), such as
    // "no files in log segment" for a table not written yet. Its errors come back to tandem, which
    // handles or reports them; logged as well, they would be alarms a scheduler raises for nothing.
    let default = format!("{default},buoyant_kernel=off");
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}
