//! One file per subcommand, each with a `run` function; shared helpers for the reporting range and
//! the exit outcome. `anyhow` lives here and in `main.rs` only.

pub mod check;
pub mod demo;
pub mod export;
pub mod maintain;
pub mod metrics;
pub mod migrate;
pub mod nightly;
pub mod remap;
pub mod report;
pub mod run;
pub mod steering;
pub mod sync;

use std::path::Path;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};

use crate::cli::RangeArgs;
use crate::config::Config;
use crate::metric::MetricRow;
use crate::pipeline::calendar::{Calendar, Grain, parse_period};
use crate::store::Store;

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

/// Opens the configured lake for a command that changes it (`command`, e.g. `tandem sync`,
/// names it to a second writer), holding the writers' lock until the returned store and its
/// clones are dropped. Commands that only read the lake (reports, exports) use `Store::open`.
/// A metric table in the layout of an earlier release is converted to the Delta metric table
/// here (the store commits, the pipeline re-encodes the rows), as the canonical tables are by
/// the store itself.
pub fn open_lake_for_writing(config: &Config, command: &str) -> anyhow::Result<Store> {
    let store = Store::open_for_writing(&config.resolve(&config.store.path), command)?;
    convert_legacy_metrics(&store)?;
    Ok(store)
}

/// Converts the metric table of an earlier release's layout, if the lake still has one, into a
/// version of the Delta metric table (its rows unchanged, its CSV kept); returns the version.
pub fn convert_legacy_metrics(store: &Store) -> anyhow::Result<Option<i64>> {
    let Some((parquet, csv)) = store.legacy_metrics() else {
        return Ok(None);
    };
    let draft = store.metrics_draft()?;
    let converted = crate::pipeline::convert_metrics(&parquet, &draft.parquet)
        .map_err(anyhow::Error::from)
        .and_then(|written| {
            if csv.exists() {
                std::fs::copy(&csv, &draft.csv)
                    .with_context(|| format!("cannot copy {} to {}", csv.display(), draft.csv.display()))?;
            }
            Ok(written)
        });
    let (size, stats) = match converted {
        Ok(written) => written,
        Err(e) => {
            let _ = std::fs::remove_file(&draft.parquet);
            let _ = std::fs::remove_file(&draft.csv);
            return Err(e.context(format!(
                "cannot convert the metric table {} to a Delta table; move it aside (the next \
                 `tandem metrics` writes a new one)",
                parquet.display()
            )));
        }
    };
    Ok(Some(store.commit_legacy_metrics(&draft, size, stats)?))
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

/// The reporting calendar: `--period` (with `--grain`), else the `weeks` ISO weeks ending at
/// `--until` / `report.until` / the current week's Monday, in the report time zone.
pub fn range(args: &RangeArgs, config: &Config, today: NaiveDate) -> anyhow::Result<Calendar> {
    let grain: Option<Grain> = args
        .grain
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let Some(spec) = &args.period {
        let (named, from, to) = parse_period(spec).map_err(anyhow::Error::msg)?;
        let grain = grain.unwrap_or(match named {
            // An explicit range is divided into weeks when it is made of whole weeks, else days.
            Grain::Range if from.weekday() == Weekday::Mon && to.weekday() == Weekday::Mon => Grain::Week,
            Grain::Range => Grain::Day,
            g => g,
        });
        return Calendar::new(config.tz(), grain, from, to).map_err(|e| {
            anyhow::anyhow!("--period {spec} cannot be divided into {grain}s: {e}; choose another --grain")
        });
    }
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
    let from = until - Duration::weeks(i64::from(weeks));
    let grain = grain.unwrap_or(Grain::Week);
    Calendar::new(config.tz(), grain, from, until)
        .map_err(|e| anyhow::anyhow!("{weeks} weeks to {until} cannot be divided into {grain}s: {e}"))
}

/// The period just before `--period SPEC`, of the same kind and length (the quarter before a
/// quarter, the days before a range of days): its first day, and the range arguments that compute
/// it divided as `SPEC` names it.
pub fn period_before(spec: &str) -> anyhow::Result<(NaiveDate, RangeArgs)> {
    let (named, from, to) = parse_period(spec).map_err(anyhow::Error::msg)?;
    let prev_from = match named {
        Grain::Quarter => from.checked_sub_months(chrono::Months::new(3)),
        Grain::Month => from.checked_sub_months(chrono::Months::new(1)),
        Grain::Week => Some(from - Duration::days(7)),
        Grain::Day => Some(from - Duration::days(1)),
        Grain::Range => Some(from - (to - from)),
    }
    .ok_or_else(|| anyhow::anyhow!("--period {spec}: the period before it is out of range"))?;
    let previous = RangeArgs {
        period: Some(format!("{prev_from}..{from}")),
        grain: match named {
            Grain::Range => None,
            g => Some(g.to_string()),
        },
        ..RangeArgs::default()
    };
    Ok((prev_from, previous))
}

/// The Monday starting the ISO week of `day`.
pub fn monday_of(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// `2026-08-03 to 2026-10-25`: the first and last day a metric row covers, as dates in the report
/// time zone `tz`. Periods start at local midnight, which east of UTC is the evening before in UTC.
pub fn period_label(row: &MetricRow, tz: chrono_tz::Tz) -> String {
    let date = |at: DateTime<Utc>| at.with_timezone(&tz).date_naive();
    format!(
        "{} to {}",
        date(row.period_start).format("%Y-%m-%d"),
        (date(row.period_end) - Duration::days(1)).format("%Y-%m-%d")
    )
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
        let cal = range(&RangeArgs::default(), &config(), today).unwrap();
        assert_eq!(cal.periods.len(), 12);
        assert_eq!(cal.periods[0].start.to_rfc3339(), "2026-08-24T00:00:00+00:00");
        assert_eq!(cal.periods[11].end.to_rfc3339(), "2026-11-16T00:00:00+00:00");
    }

    #[test]
    fn a_period_names_its_grain_and_may_be_divided_further() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let q3 = RangeArgs {
            period: Some("2026-Q3".into()),
            ..RangeArgs::default()
        };
        let cal = range(&q3, &config(), today).unwrap();
        assert_eq!((cal.grain, cal.periods.len()), (Grain::Quarter, 1));
        let monthly = RangeArgs {
            grain: Some("month".into()),
            ..q3.clone()
        };
        assert_eq!(range(&monthly, &config(), today).unwrap().periods.len(), 3);
        let weekly = RangeArgs {
            grain: Some("week".into()),
            ..q3
        };
        let err = range(&weekly, &config(), today).unwrap_err().to_string();
        assert!(err.contains("--grain"), "{err}");
    }

    /// A metric table of one row, as `tandem metrics` wrote it.
    fn metric_table() -> crate::metric::MetricTable {
        let monday = "2026-08-03T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let mut table = crate::metric::MetricTable::new();
        let scope = table.scope("org", "all");
        let period = table.period("week", monday, monday + Duration::weeks(1));
        table.push(crate::metric::MetricId::DeploymentCount, scope, period, Some(4.0), 4, None);
        table
    }

    #[test]
    fn a_metric_table_of_the_generation_layout_is_converted_on_the_first_write() {
        for layout in ["generations", "flat"] {
            let dir = tempfile::tempdir().unwrap();
            let metrics = dir.path().join("metrics");
            // The layouts of earlier releases: `metrics/current` → `gen-…/`, or the files in
            // `metrics/` itself.
            let at = match layout {
                "generations" => {
                    let generation = metrics.join("gen-20261101T000000.000000Z-1");
                    std::fs::create_dir_all(&generation).unwrap();
                    std::os::unix::fs::symlink("gen-20261101T000000.000000Z-1", metrics.join("current")).unwrap();
                    generation
                }
                _ => {
                    std::fs::create_dir_all(&metrics).unwrap();
                    metrics.clone()
                }
            };
            let (old_parquet, old_csv) = (at.join("metrics.parquet"), at.join("metrics.csv"));
            crate::pipeline::write_metrics(&metric_table(), &old_parquet, &old_csv).unwrap();
            let rows = crate::pipeline::read_metrics(&old_parquet).unwrap();
            let csv = std::fs::read_to_string(&old_csv).unwrap();

            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.metrics_paths(), (old_parquet.clone(), old_csv.clone()), "read until converted");
            let version = convert_legacy_metrics(&store).unwrap();
            assert_eq!(version, Some(1), "{layout}");
            let latest = store.metrics_version(crate::store::delta::AsOf::Latest).unwrap().unwrap();
            assert_eq!(crate::pipeline::read_metrics(&latest.parquet).unwrap(), rows, "{layout}");
            assert_eq!(std::fs::read_to_string(&latest.csv).unwrap(), csv, "{layout}");
            assert_eq!(store.metrics_paths(), (latest.parquet, latest.csv));
            assert!(!old_parquet.exists() && !old_csv.exists(), "{layout}: no stale copy stays");
            assert!(std::fs::symlink_metadata(metrics.join("current")).is_err(), "{layout}");
            assert_eq!(convert_legacy_metrics(&store).unwrap(), None, "converted once");
        }
    }

    #[test]
    fn a_conversion_stopped_after_its_commit_is_not_committed_again() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics");
        std::fs::create_dir_all(&metrics).unwrap();
        let old = (metrics.join("metrics.parquet"), metrics.join("metrics.csv"));
        crate::pipeline::write_metrics(&metric_table(), &old.0, &old.1).unwrap();
        let store = Store::open(dir.path()).unwrap();
        convert_legacy_metrics(&store).unwrap();
        // Killed before the old files went: they are back.
        crate::pipeline::write_metrics(&metric_table(), &old.0, &old.1).unwrap();
        assert_eq!(convert_legacy_metrics(&store).unwrap(), None);
        assert!(!old.0.exists(), "removed, not converted again");
        let latest = store.metrics_version(crate::store::delta::AsOf::Latest).unwrap().unwrap();
        assert_eq!(latest.version, 1);
    }

    #[test]
    fn until_must_be_a_monday() {
        let args = RangeArgs {
            weeks: Some(2),
            until: NaiveDate::from_ymd_opt(2026, 11, 18),
            ..RangeArgs::default()
        };
        let err = range(&args, &config(), NaiveDate::from_ymd_opt(2026, 11, 22).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("Monday") && err.contains("Wed"), "{err}");
    }
}
