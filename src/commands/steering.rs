//! `tandem report steering`: the steering-committee report for a period (`--period 2026-Q3`,
//! `--period 2026-09`) or for the last weeks (`--weeks`), compared with the period before it.
//!
//! Computes three metric tables from the lake — the previous period (for deltas and trend arrows),
//! the ISO weeks covering the period (for the weekly charts) and the period itself — then renders
//! them into a new run folder. The lake's stored metric table (the nightly job's) is left as it is.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate, Utc, Weekday};

use super::{
    Context, Outcome, Run, archived, basis, calculate_many_on, monday_of, out_dir, parse_as_of,
    period_before, print_report,
};
use crate::cli::{RangeArgs, ReportArgs};
use crate::config::Config;
use crate::metric::calendar::{Grain, parse_period};
use crate::report::steering::{self, SteeringInput};
use crate::store::Store;

/// Writes the steering-committee report.
/// With `--as-of`, from the canonical tables that metric table version was computed from, as if
/// made when it was committed.
pub fn run(args: &ReportArgs, config: &Config, _ctx: &Context) -> anyhow::Result<Outcome> {
    let store = Store::open(&config.lake()?)?;
    let as_of = args.as_of.as_deref().map(parse_as_of).transpose()?;
    let basis = basis(&store, as_of)?;
    // With --as-of, nothing depends on the day it is rendered.
    let shown_at = if as_of.is_some() { basis.at } else { Utc::now() };
    let plan = plan(&args.range, config, shown_at.date_naive())?;
    // The period, the one before and their weeks: computed together, one pass over the lake.
    let mut ranges = vec![&plan.period, &plan.previous];
    ranges.extend(plan.weekly.iter().chain(&plan.previous_weekly));
    let mut tables = calculate_many_on(&store, &basis, &ranges, config, shown_at.date_naive())?.into_iter();
    let (current, previous) = (
        tables.next().unwrap_or_default(),
        tables.next().unwrap_or_default(),
    );
    let weekly = plan.weekly.as_ref().map(|_| tables.next().unwrap_or_default());
    let previous_weekly = plan
        .previous_weekly
        .as_ref()
        .map(|_| tables.next().unwrap_or_default());

    let slo: BTreeMap<String, f64> = config
        .services
        .iter()
        .filter_map(|s| s.slo.map(|v| (s.name.clone(), v)))
        .collect();
    let now = Utc::now();
    let input = SteeringInput {
        organisation: &config.organisation.name,
        period: &plan.label,
        previous_period: &plan.previous_label,
        generated_at: shown_at,
        current: &current,
        weekly: weekly.as_deref().unwrap_or(&current),
        previous: &previous,
        previous_weekly: previous_weekly.as_deref().unwrap_or(&previous),
        kpis: &config.kpis,
        slo: &slo,
        default_slo: config.metrics.default_slo,
    };
    let run = Run {
        kind: "steering",
        title: steering::title(&config.organisation.name, &plan.label),
        period: plan.label.clone(),
        generated_at: now,
        read: basis.read(),
    };
    let output = archived(
        &out_dir(config, args.out.clone())?,
        &config.organisation.name,
        &run,
        |dir| steering::render(&input, dir),
    )?;
    print_report(&output);
    Ok(Outcome::Success)
}

/// The ranges one steering report is computed on.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The period itself.
    pub period: RangeArgs,
    /// The ISO weeks covering the period, when the period is not already divided into weeks.
    pub weekly: Option<RangeArgs>,
    /// The period before, of the same length.
    pub previous: RangeArgs,
    /// The ISO weeks covering the period before, when `weekly` is needed for this one.
    pub previous_weekly: Option<RangeArgs>,
    /// The period as readers name it.
    pub label: String,
    /// The previous period as readers name it.
    pub previous_label: String,
}

/// Works out the period, its weeks and the period before from the command line.
pub fn plan(args: &RangeArgs, config: &Config, today: NaiveDate) -> anyhow::Result<Plan> {
    let Some(spec) = args.period.as_deref() else {
        return Ok(weeks_plan(args, config, today));
    };
    let (named, from, to) = parse_period(spec).map_err(anyhow::Error::msg)?;
    let (prev_from, previous) = period_before(spec)?;
    let divided_into = match args.grain.as_deref() {
        Some(g) => g.parse::<Grain>().map_err(anyhow::Error::msg)?,
        None => named,
    };
    let weeks_of = |from: NaiveDate, to: NaiveDate| {
        let first = monday_of(from);
        let until = if to.weekday() == Weekday::Mon {
            to
        } else {
            monday_of(to) + Duration::days(7)
        };
        RangeArgs {
            weeks: Some(((until - first).num_days() / 7).max(1) as u32),
            until: Some(until),
            ..RangeArgs::default()
        }
    };
    let whole_weeks = from.weekday() == Weekday::Mon && to.weekday() == Weekday::Mon;
    let weekly = (divided_into != Grain::Week
        && !(named == Grain::Range && whole_weeks && args.grain.is_none()))
    .then(|| weeks_of(from, to));
    Ok(Plan {
        period: args.clone(),
        previous_weekly: weekly.is_some().then(|| weeks_of(prev_from, from)),
        weekly,
        previous,
        label: label(named, from, to),
        previous_label: label(named, prev_from, from),
    })
}

/// `--weeks N [--until MONDAY]`: the N weeks, and the N weeks before them.
fn weeks_plan(args: &RangeArgs, config: &Config, today: NaiveDate) -> Plan {
    let weeks = args.weeks.unwrap_or(config.report.weeks);
    let until = args
        .until
        .or(config.report.until)
        .unwrap_or_else(|| monday_of(today));
    let from = until - Duration::weeks(i64::from(weeks));
    let weekly_grain = args.grain.as_deref().is_none_or(|g| g == "week");
    let period = RangeArgs {
        weeks: Some(weeks),
        until: Some(until),
        ..args.clone()
    };
    let previous = RangeArgs {
        until: Some(from),
        ..period.clone()
    };
    Plan {
        weekly: (!weekly_grain).then(|| RangeArgs {
            grain: None,
            ..period.clone()
        }),
        previous_weekly: (!weekly_grain).then(|| RangeArgs {
            grain: None,
            ..previous.clone()
        }),
        previous,
        period,
        label: weeks_label(from, until),
        previous_label: weeks_label(from - Duration::weeks(i64::from(weeks)), from),
    }
}

/// `2026-W35 – 2026-W46` for the weeks `[from, until)`; one week alone is `2026-W35`.
fn weeks_label(from: NaiveDate, until: NaiveDate) -> String {
    let last = until - Duration::days(7);
    if last <= from {
        return from.format("%G-W%V").to_string();
    }
    format!("{} \u{2013} {}", from.format("%G-W%V"), last.format("%G-W%V"))
}

/// How readers name the period of `grain` starting `from` (and ending before `to`).
fn label(grain: Grain, from: NaiveDate, to: NaiveDate) -> String {
    match grain {
        Grain::Quarter => format!("{}-Q{}", from.year(), from.month0() / 3 + 1),
        Grain::Month => from.format("%Y-%m").to_string(),
        Grain::Week => from.format("%G-W%V").to_string(),
        Grain::Day => from.format("%Y-%m-%d").to_string(),
        // The end is exclusive: name the last day the period covers.
        Grain::Range => crate::report::view::days_text(from, to),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config() -> Config {
        Config::parse("", Path::new("t.toml"), Default::default()).unwrap()
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    #[test]
    fn a_quarter_is_compared_with_the_quarter_before_and_drawn_in_the_weeks_covering_it() {
        let args = RangeArgs {
            period: Some("2026-Q3".into()),
            ..RangeArgs::default()
        };
        let plan = plan(&args, &config(), today()).unwrap();
        assert_eq!(plan.label, "2026-Q3");
        assert_eq!(plan.previous_label, "2026-Q2");
        assert_eq!(plan.previous.period.as_deref(), Some("2026-04-01..2026-07-01"));
        assert_eq!(plan.previous.grain.as_deref(), Some("quarter"));
        // 2026-07-01 is a Wednesday: weeks from Monday 2026-06-29 to Monday 2026-10-05.
        let weekly = plan.weekly.unwrap();
        assert_eq!(weekly.until, NaiveDate::from_ymd_opt(2026, 10, 5));
        assert_eq!(weekly.weeks, Some(14));
        // The correlation of the quarter before is computed on its weeks too: 2026-03-30 (the
        // Monday of the week holding 2026-04-01) to 2026-07-06 (after Wednesday 2026-07-01).
        let previous_weekly = plan.previous_weekly.unwrap();
        assert_eq!(previous_weekly.until, NaiveDate::from_ymd_opt(2026, 7, 6));
        assert_eq!(previous_weekly.weeks, Some(14));
        assert_eq!(previous_weekly.grain, None);
        assert_eq!(plan.period.period.as_deref(), Some("2026-Q3"));
    }

    #[test]
    fn a_month_before_january_is_december() {
        let args = RangeArgs {
            period: Some("2026-01".into()),
            ..RangeArgs::default()
        };
        let plan = plan(&args, &config(), today()).unwrap();
        assert_eq!(plan.previous_label, "2025-12");
        assert_eq!(plan.previous.period.as_deref(), Some("2025-12-01..2026-01-01"));
    }

    #[test]
    fn an_explicit_range_of_whole_weeks_needs_no_separate_weekly_table() {
        let whole = RangeArgs {
            period: Some("2026-08-24..2026-11-16".into()),
            ..RangeArgs::default()
        };
        let plan = plan(&whole, &config(), today()).unwrap();
        assert!(plan.weekly.is_none());
        assert_eq!(plan.previous.period.as_deref(), Some("2026-06-01..2026-08-24"));
        // Labels name the last day covered, not the exclusive end.
        assert_eq!(plan.label, "2026-08-24 \u{2013} 2026-11-15");
        assert_eq!(plan.previous_label, "2026-06-01 \u{2013} 2026-08-23");
        let days = RangeArgs {
            period: Some("2026-08-26..2026-09-02".into()),
            ..RangeArgs::default()
        };
        let weekly = super::plan(&days, &config(), today()).unwrap().weekly.unwrap();
        // Wednesday to Wednesday: the two ISO weeks that touch it.
        assert_eq!(
            (weekly.weeks, weekly.until),
            (Some(2), NaiveDate::from_ymd_opt(2026, 9, 7))
        );
    }

    #[test]
    fn weeks_are_compared_with_as_many_weeks_before() {
        let args = RangeArgs {
            weeks: Some(4),
            until: NaiveDate::from_ymd_opt(2026, 11, 16),
            ..RangeArgs::default()
        };
        let plan = plan(&args, &config(), today()).unwrap();
        assert!(plan.weekly.is_none(), "the period's own table has the weeks");
        assert_eq!(plan.previous.until, NaiveDate::from_ymd_opt(2026, 10, 19));
        assert_eq!(plan.previous.weeks, Some(4));
        assert_eq!(plan.label, "2026-W43 \u{2013} 2026-W46");
        assert_eq!(plan.previous_label, "2026-W39 \u{2013} 2026-W42");
    }
}
