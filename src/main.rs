//! The `tandem` binary: parse → run → exit code. Errors print their whole chain on one line.

use std::process::ExitCode;

use clap::Parser;
use tandem::cli::{Cli, Command, ReportKind};
use tandem::commands::{self, Outcome};

/// mimalloc rather than the system allocator: polars allocates and frees millions of buffers on
/// several threads, and mimalloc (told to by [`tandem::alloc`]) gives freed memory back to the
/// system at once, so a run over a large lake keeps its footprint near what it holds.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tandem::alloc::give_back_freed_memory_at_once();
    let cli = Cli::parse();
    init_logging(&cli);
    match run(cli) {
        Ok(outcome) => ExitCode::from(u8::try_from(outcome.exit_code()).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let ctx = commands::Context::for_cli(cli.quiet);
    match &cli.command {
        Command::Init(args) => commands::init::run(args, &cli.config, &ctx).map(|()| Outcome::Success),
        Command::Completions(args) => commands::completions::run(args).map(|()| Outcome::Success),
        Command::Man(args) => commands::man::run(args).map(|()| Outcome::Success),
        Command::Demo(args) => runtime.block_on(commands::demo::run(args, &ctx)),
        Command::Sync(args) => {
            let config = commands::load_config(&cli.config)?;
            runtime.block_on(commands::sync::run(args, &config, &ctx))
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
            runtime.block_on(commands::run::run(args, &config, &ctx))
        }
    }
}

/// Structured log lines on stderr, quiet by default for cron: warnings and errors (retries,
/// quarantined records, failed sources); `-v` adds progress, `-vv` debug detail, `--quiet` keeps
/// errors only. `TANDEM_LOG` takes a full filter (e.g. `tandem=debug`). Results go to stdout.
fn init_logging(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
