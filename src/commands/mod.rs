//! One file per subcommand, each with a `run` function; shared helpers for the reporting range and
//! the exit outcome. `anyhow` lives here and in `main.rs` only.

pub mod check;
pub mod demo;
pub mod metrics;
pub mod remap;
pub mod report;
pub mod run;
pub mod sync;

use std::path::Path;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};

use crate::cli::RangeArgs;
use crate::config::Config;

/// Writes a command's result to stdout. A closed pipe (`tandem metrics | head`) ends the process
/// quietly with success, as command-line tools do, instead of panicking in `println!`.
pub fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// [`out`] with `format!` arguments and a newline.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::commands::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// How a command ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything worked: exit 0.
    Success,
    /// Some sources failed, the rest was stored and reported: exit 3.
    Partial,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Success => 0,
            Self::Partial => 3,
        }
    }
}

/// What every command gets besides its own arguments.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where secrets come from.
    pub env: tandem_connectors::SecretEnv,
    /// Draw progress lines on stderr.
    pub progress: bool,
}

impl Context {
    /// The context of a command-line run: progress lines only for people at a terminal (never
    /// under cron, systemd or a CronJob, where stderr is not a TTY) and not with `--quiet`.
    pub fn for_cli(quiet: bool) -> Self {
        Self {
            env: tandem_connectors::SecretEnv::process(),
            progress: !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }
}

/// Loads the config, saying how to get one when it is missing.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    if !path.exists() {
        bail!(
            "config file {} not found: pass --config PATH or set TANDEM_CONFIG (`tandem demo` writes an example)",
            path.display()
        );
    }
    Ok(Config::load(path)?)
}

/// The reporting range: `(first Monday, weeks)`, from the flags, else the config, else the
/// `weeks` complete weeks before the current one.
pub fn range(args: &RangeArgs, config: &Config, today: NaiveDate) -> anyhow::Result<(DateTime<Utc>, u32)> {
    let weeks = args.weeks.unwrap_or(config.report.weeks);
    if weeks == 0 || weeks > 520 {
        bail!("--weeks must be between 1 and 520, not {weeks}");
    }
    let until = match args.until.or(config.report.until) {
        Some(d) if d.weekday() != Weekday::Mon => {
            bail!(
                "the range must end on a Monday (ISO weeks start on Monday); {d} is a {}",
                d.weekday()
            )
        }
        Some(d) => d,
        None => monday_of(today),
    };
    let until = until
        .and_hms_opt(0, 0, 0)
        .context("midnight exists on every date")?
        .and_utc();
    Ok((until - Duration::weeks(i64::from(weeks)), weeks))
}

/// The Monday starting the ISO week of `day`.
pub fn monday_of(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse("", Path::new("t.toml"), Default::default()).unwrap()
    }

    #[test]
    fn default_range_is_the_complete_weeks_before_today() {
        // 2026-11-22 is a Sunday: its week began on Monday 2026-11-16.
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let (start, weeks) = range(&RangeArgs::default(), &config(), today).unwrap();
        assert_eq!(weeks, 12);
        assert_eq!(start.to_rfc3339(), "2026-08-24T00:00:00+00:00");
    }

    #[test]
    fn until_must_be_a_monday() {
        let args = RangeArgs {
            weeks: Some(2),
            until: NaiveDate::from_ymd_opt(2026, 11, 18),
        };
        let err = range(&args, &config(), NaiveDate::from_ymd_opt(2026, 11, 22).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("Monday") && err.contains("Wed"), "{err}");
    }
}
