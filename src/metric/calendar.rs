//! Calendar periods in the report's time zone: days, ISO weeks (Monday first), months, quarters or
//! one explicit range, as UTC instants, DST-correct (a day in spring has 23 hours in Berlin).
//!
//! Plain chrono and chrono-tz: the pipeline assigns an event to a period by binary search over the
//! period starts, which is exact at every boundary and cheap for millions of events.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// The length of the periods metrics are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grain {
    /// A calendar day.
    Day,
    /// An ISO week, Monday to Sunday.
    Week,
    /// A calendar month.
    Month,
    /// A calendar quarter.
    Quarter,
    /// The whole reporting range as one period.
    Range,
}

impl Grain {
    /// The name used in the metric table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Quarter => "quarter",
            Self::Range => "range",
        }
    }
}

impl fmt::Display for Grain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Grain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            "month" => Ok(Self::Month),
            "quarter" => Ok(Self::Quarter),
            "range" => Ok(Self::Range),
            other => Err(format!(
                "unknown grain {other:?}: use day, week, month, quarter or range"
            )),
        }
    }
}

/// One period: `[start, end)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First instant, inclusive.
    pub start: DateTime<Utc>,
    /// End, exclusive.
    pub end: DateTime<Utc>,
}

impl Period {
    /// Length in milliseconds.
    pub fn millis(&self) -> i64 {
        (self.end - self.start).num_milliseconds()
    }
}

/// The periods of one grain covering a range of local dates.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// The report time zone.
    pub tz: Tz,
    /// The grain.
    pub grain: Grain,
    /// The periods, in time order, back to back.
    pub periods: Vec<Period>,
    /// Period starts in epoch milliseconds, then the last end: for binary search.
    bounds: Vec<i64>,
}

impl Calendar {
    /// The periods of `grain` that cover the local dates `[from, to)` in `tz`. `from` must be the
    /// first day of a period of that grain (a Monday for weeks, the 1st for months, a quarter's
    /// first day for quarters) and `to` the first day after the last period.
    pub fn new(tz: Tz, grain: Grain, from: NaiveDate, to: NaiveDate) -> Result<Self, String> {
        if to <= from {
            return Err(format!("the range {from} .. {to} is empty"));
        }
        let aligned = match grain {
            Grain::Day | Grain::Range => true,
            Grain::Week => from.weekday() == Weekday::Mon && to.weekday() == Weekday::Mon,
            Grain::Month => from.day() == 1 && to.day() == 1,
            Grain::Quarter => {
                from.day() == 1 && to.day() == 1 && from.month0() % 3 == 0 && to.month0() % 3 == 0
            }
        };
        if !aligned {
            return Err(format!(
                "{from} .. {to} does not start and end on {grain} boundaries"
            ));
        }
        let mut starts = vec![from];
        if grain != Grain::Range {
            let mut last = from;
            while let Some(next) = step(grain, last).filter(|next| *next < to) {
                starts.push(next);
                last = next;
            }
            if step(grain, last).is_none() {
                return Err(format!("{last} is past the last date"));
            }
        }
        let mut periods = Vec::with_capacity(starts.len());
        for (i, s) in starts.iter().enumerate() {
            let e = starts.get(i + 1).copied().unwrap_or(to);
            periods.push(Period {
                start: local_midnight(tz, *s)?,
                end: local_midnight(tz, e)?,
            });
        }
        let mut bounds: Vec<i64> = periods.iter().map(|p| p.start.timestamp_millis()).collect();
        if let Some(last) = periods.last() {
            bounds.push(last.end.timestamp_millis());
        }
        Ok(Self {
            tz,
            grain,
            periods,
            bounds,
        })
    }

    /// The period containing the instant `t_ms` (epoch milliseconds), if any.
    pub fn index(&self, t_ms: i64) -> Option<usize> {
        let (first, last) = (*self.bounds.first()?, *self.bounds.last()?);
        if t_ms < first || t_ms >= last {
            return None;
        }
        // The last start at or before t.
        Some(self.bounds.partition_point(|b| *b <= t_ms) - 1)
    }

    /// First instant and end of the whole calendar, in epoch milliseconds.
    pub fn span_ms(&self) -> (i64, i64) {
        (
            self.bounds.first().copied().unwrap_or(0),
            self.bounds.last().copied().unwrap_or(0),
        )
    }
}

/// The first day of the next period of `grain` after the one starting on `day`.
fn step(grain: Grain, day: NaiveDate) -> Option<NaiveDate> {
    match grain {
        Grain::Day => day.succ_opt(),
        Grain::Week => day.checked_add_signed(Duration::days(7)),
        Grain::Month => day.checked_add_months(Months::new(1)),
        Grain::Quarter => day.checked_add_months(Months::new(3)),
        Grain::Range => None,
    }
}

/// Local midnight of `day` in `tz` as UTC. Where midnight does not exist (a DST gap at midnight,
/// as in some zones), the day starts at the first instant after the gap.
fn local_midnight(tz: Tz, day: NaiveDate) -> Result<DateTime<Utc>, String> {
    let naive = day.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        chrono::LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        chrono::LocalResult::None => (1..=180)
            .find_map(|m| tz.from_local_datetime(&(naive + Duration::minutes(m))).earliest())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("midnight of {day} does not exist in {tz}")),
    }
}

/// A period named on the command line: `2026-Q3`, `2026-11` (a month), `2026-W45` (an ISO week),
/// `2026-11-03` (a day) or `2026-08-01..2026-11-01` (a range, end exclusive). Returns the grain it
/// names and its local dates `[from, to)`.
pub fn parse_period(spec: &str) -> Result<(Grain, NaiveDate, NaiveDate), String> {
    let spec = spec.trim();
    let bad = || {
        format!(
            "cannot read the period {spec:?}: use 2026-Q3, 2026-11, 2026-W45, 2026-11-03 or 2026-08-01..2026-11-01"
        )
    };
    if let Some((a, b)) = spec.split_once("..") {
        let from = NaiveDate::from_str(a.trim()).map_err(|_| bad())?;
        let to = NaiveDate::from_str(b.trim()).map_err(|_| bad())?;
        if to <= from {
            return Err(format!("the range {spec} is empty: the end date is exclusive"));
        }
        return Ok((Grain::Range, from, to));
    }
    if let Ok(day) = NaiveDate::from_str(spec) {
        return Ok((Grain::Day, day, day.succ_opt().ok_or_else(bad)?));
    }
    let (year, rest) = spec.split_once('-').ok_or_else(bad)?;
    let year: i32 = year.parse().map_err(|_| bad())?;
    if let Some(q) = rest.strip_prefix(['Q', 'q']) {
        let q: u32 = q.parse().map_err(|_| bad())?;
        if !(1..=4).contains(&q) {
            return Err(bad());
        }
        let from = NaiveDate::from_ymd_opt(year, (q - 1) * 3 + 1, 1).ok_or_else(bad)?;
        return Ok((
            Grain::Quarter,
            from,
            from.checked_add_months(Months::new(3)).ok_or_else(bad)?,
        ));
    }
    if let Some(w) = rest.strip_prefix(['W', 'w']) {
        let w: u32 = w.parse().map_err(|_| bad())?;
        let from = NaiveDate::from_isoywd_opt(year, w, Weekday::Mon).ok_or_else(bad)?;
        return Ok((Grain::Week, from, from + Duration::days(7)));
    }
    let month: u32 = rest.parse().map_err(|_| bad())?;
    let from = NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(bad)?;
    Ok((
        Grain::Month,
        from,
        from.checked_add_months(Months::new(1)).ok_or_else(bad)?,
    ))
}

/// The first day of the period of `grain` containing `day` (for `Range`, `day` itself).
pub fn period_start(grain: Grain, day: NaiveDate) -> NaiveDate {
    match grain {
        Grain::Day | Grain::Range => day,
        Grain::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        Grain::Month => day.with_day(1).unwrap_or(day),
        Grain::Quarter => NaiveDate::from_ymd_opt(day.year(), day.month0() / 3 * 3 + 1, 1).unwrap_or(day),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn weeks_across_a_dst_change_have_their_local_lengths() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Summer time ends on Sunday 2026-10-25: that week has 169 hours.
        let cal = Calendar::new(berlin, Grain::Week, d(2026, 10, 19), d(2026, 11, 2)).unwrap();
        assert_eq!(cal.periods.len(), 2);
        assert_eq!(cal.periods[0].start.to_rfc3339(), "2026-10-18T22:00:00+00:00");
        assert_eq!(cal.periods[0].end.to_rfc3339(), "2026-10-25T23:00:00+00:00");
        assert_eq!(cal.periods[0].millis(), 169 * 3_600_000);
        assert_eq!(cal.periods[1].millis(), 168 * 3_600_000);
    }

    #[test]
    fn a_spring_day_has_23_hours() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let cal = Calendar::new(berlin, Grain::Day, d(2026, 3, 29), d(2026, 3, 30)).unwrap();
        assert_eq!(cal.periods[0].millis(), 23 * 3_600_000);
    }

    #[test]
    fn events_land_in_the_local_period() {
        let la: Tz = "America/Los_Angeles".parse().unwrap();
        let cal = Calendar::new(la, Grain::Day, d(2026, 11, 1), d(2026, 11, 4)).unwrap();
        // 07:59 UTC on Nov 2 is still Nov 1 in Los Angeles (UTC-8 after the change).
        let t = "2026-11-02T07:59:00Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .timestamp_millis();
        assert_eq!(cal.index(t), Some(0));
        let t = "2026-11-02T08:00:00Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .timestamp_millis();
        assert_eq!(cal.index(t), Some(1));
        assert_eq!(cal.index(cal.span_ms().1), None, "the end is exclusive");
        assert_eq!(cal.index(cal.span_ms().0), Some(0), "the start is inclusive");
    }

    #[test]
    fn months_and_quarters() {
        let utc: Tz = "UTC".parse().unwrap();
        let cal = Calendar::new(utc, Grain::Month, d(2026, 1, 1), d(2026, 4, 1)).unwrap();
        assert_eq!(cal.periods.len(), 3);
        assert_eq!(cal.periods[1].millis(), 28 * 86_400_000);
        let q = Calendar::new(utc, Grain::Quarter, d(2026, 1, 1), d(2027, 1, 1)).unwrap();
        assert_eq!(q.periods.len(), 4);
        assert!(Calendar::new(utc, Grain::Quarter, d(2026, 2, 1), d(2026, 5, 1)).is_err());
        assert!(Calendar::new(utc, Grain::Week, d(2026, 11, 3), d(2026, 11, 10)).is_err());
    }

    #[test]
    fn periods_parse_from_their_names() {
        assert_eq!(
            parse_period("2026-Q3").unwrap(),
            (Grain::Quarter, d(2026, 7, 1), d(2026, 10, 1))
        );
        assert_eq!(
            parse_period("2026-11").unwrap(),
            (Grain::Month, d(2026, 11, 1), d(2026, 12, 1))
        );
        assert_eq!(
            parse_period("2026-W45").unwrap(),
            (Grain::Week, d(2026, 11, 2), d(2026, 11, 9))
        );
        assert_eq!(
            parse_period("2026-11-03").unwrap(),
            (Grain::Day, d(2026, 11, 3), d(2026, 11, 4))
        );
        assert_eq!(
            parse_period("2026-08-01..2026-11-01").unwrap(),
            (Grain::Range, d(2026, 8, 1), d(2026, 11, 1))
        );
        assert!(parse_period("2026-Q5").is_err());
        assert!(parse_period("last week").unwrap_err().contains("2026-Q3"));
        assert_eq!(period_start(Grain::Quarter, d(2026, 8, 17)), d(2026, 7, 1));
        assert_eq!(period_start(Grain::Week, d(2026, 11, 22)), d(2026, 11, 16));
    }
}
