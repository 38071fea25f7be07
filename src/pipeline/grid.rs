//! The grid every metric family lays its rows on: the reporting range's calendar periods and the
//! whole range, the scopes (the organisation, each service, each team), the grouping of events by
//! scope and period ([`aggregate`], into [`Cells`]) and the row layout of a family's
//! [`MetricTable`] ([`metric_rows`]), so empty periods and quiet services still get a row.
//!
//! Shared by the engine and every family; it must not know what any one metric means.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use polars::prelude::*;

use crate::metric::calendar::{Calendar, Grain};
use crate::metric::{MetricId, MetricTable, PeriodIx, ScopeIx};

pub(super) const HOUR_MS: f64 = 3_600_000.0;
pub(super) const MINUTE_MS: f64 = 60_000.0;
/// The period index of whole-range groups in the aggregated frames (calendar periods count from 0).
pub(super) const RANGE_INDEX: i64 = -1;

/// One row per metric, scope (the org, then each service) and period (each week, then the range),
/// in that order, with `(value, n)` from `value`; `None` leaves the row out (e.g. a correlation
/// that only exists over the whole range has no week rows).
pub(super) fn metric_rows(
    metrics: &[MetricId],
    services: &BTreeSet<String>,
    grid: &Grid,
    mut value: impl FnMut(MetricId, Scope<'_>, Period) -> Option<(Option<f64>, i64)>,
) -> MetricTable {
    metric_rows_with(metrics, services, grid, |metric, scope, period| {
        value(metric, scope, period).map(|(value, n)| (value, n, None))
    })
}

/// [`metric_rows`] for metrics whose rows name a method: `value` also gives the row's `method`.
pub(super) fn metric_rows_with(
    metrics: &[MetricId],
    services: &BTreeSet<String>,
    grid: &Grid,
    mut value: impl FnMut(MetricId, Scope<'_>, Period) -> Option<(Option<f64>, i64, Option<&'static str>)>,
) -> MetricTable {
    let scopes = grid.scopes(services);
    let periods = grid.periods();
    let mut table = MetricTable::new();
    table.reserve(metrics.len() * scopes.len() * periods.len());
    let scope_ix: Vec<ScopeIx> = scopes
        .iter()
        .map(|scope| table.scope(scope.scope_type(), scope.name()))
        .collect();
    let period_ix: Vec<PeriodIx> = periods
        .iter()
        .map(|&period| {
            let (start, end) = grid.instants(period);
            table.period(grid.grain(period), start, end)
        })
        .collect();
    for &metric in metrics {
        for (&scope, &at_scope) in scopes.iter().zip(&scope_ix) {
            for (&period, &at_period) in periods.iter().zip(&period_ix) {
                let Some((value, n, method)) = value(metric, scope, period) else {
                    continue;
                };
                table.push(metric, at_scope, at_period, value, n, method);
            }
        }
    }
    table
}

/// Milliseconds as hours. Spans stay integer milliseconds inside polars and are converted once
/// here: polars' float kernel divides by a scalar by multiplying with its reciprocal, which made
/// 8 h come out as 7.999999999999999.
pub(super) fn hours(millis: Option<f64>) -> Option<f64> {
    millis.map(|ms| ms / HOUR_MS)
}

/// Who a row is about.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope<'a> {
    Org,
    Service(&'a str),
    /// A team and the services it owns (from the config mapping).
    Team(&'a str, &'a BTreeSet<String>),
}

impl Scope<'_> {
    pub(super) fn scope_type(self) -> &'static str {
        match self {
            Self::Org => "org",
            Self::Service(_) => "service",
            Self::Team(..) => "team",
        }
    }

    pub(super) fn name(&self) -> &str {
        match self {
            Self::Org => "all",
            Self::Service(name) | Self::Team(name, _) => name,
        }
    }
}

/// A period of the grid: one of the calendar's periods (0 = the first) or the whole range.
#[derive(Debug, Clone, Copy)]
pub(super) enum Period {
    Unit(usize),
    Range,
}

impl Period {
    /// The index its group has in the aggregated frames.
    pub(super) fn index(self) -> i64 {
        match self {
            Self::Unit(i) => i as i64,
            Self::Range => RANGE_INDEX,
        }
    }
}

/// The reporting range and its calendar periods.
#[derive(Debug)]
pub(super) struct Grid {
    calendar: Calendar,
    /// Period starts in epoch milliseconds, then the last end.
    bounds: Vec<i64>,
    /// The team of each mapped service.
    service_team: BTreeMap<String, String>,
    /// The services of each team.
    team_services: BTreeMap<String, BTreeSet<String>>,
}

impl Grid {
    pub(super) fn new(calendar: &Calendar, service_team: &BTreeMap<String, String>) -> Self {
        let mut bounds: Vec<i64> = calendar
            .periods
            .iter()
            .map(|p| p.start.timestamp_millis())
            .collect();
        bounds.extend(calendar.periods.last().map(|p| p.end.timestamp_millis()));
        let mut team_services: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (service, team) in service_team {
            team_services
                .entry(team.clone())
                .or_default()
                .insert(service.clone());
        }
        Self {
            calendar: calendar.clone(),
            bounds,
            service_team: service_team.clone(),
            team_services,
        }
    }

    /// Every scope rows are made for: the organisation, each service, then each team.
    pub(super) fn scopes<'a>(&'a self, services: &'a BTreeSet<String>) -> Vec<Scope<'a>> {
        std::iter::once(Scope::Org)
            .chain(services.iter().map(|s| Scope::Service(s)))
            .chain(
                self.team_services
                    .iter()
                    .map(|(team, services)| Scope::Team(team, services)),
            )
            .collect()
    }

    /// The time zone the periods are counted in.
    pub(super) fn tz(&self) -> chrono_tz::Tz {
        self.calendar.tz
    }

    /// Number of calendar periods.
    pub(super) fn units(&self) -> usize {
        self.calendar.periods.len()
    }

    /// The periods in time order, then the whole range.
    pub(super) fn periods(&self) -> Vec<Period> {
        (0..self.units())
            .map(Period::Unit)
            .chain(std::iter::once(Period::Range))
            .collect()
    }

    /// `day`, `week`, `month` or `quarter` for a calendar period; `range` for the whole range.
    pub(super) fn grain(&self, period: Period) -> &'static str {
        match period {
            Period::Unit(_) => self.calendar.grain.as_str(),
            Period::Range => Grain::Range.as_str(),
        }
    }

    pub(super) fn instants(&self, period: Period) -> (DateTime<Utc>, DateTime<Utc>) {
        let periods = &self.calendar.periods;
        match period {
            Period::Unit(i) => (periods[i].start, periods[i].end),
            Period::Range => (periods[0].start, periods[periods.len() - 1].end),
        }
    }

    pub(super) fn millis(&self, period: Period) -> (i64, i64) {
        let (from, to) = self.instants(period);
        (from.timestamp_millis(), to.timestamp_millis())
    }

    pub(super) fn start(&self) -> i64 {
        self.millis(Period::Range).0
    }

    pub(super) fn end(&self) -> i64 {
        self.millis(Period::Range).1
    }

    /// Calendar days in the period, in the report's time zone (a week across a DST change is
    /// still 7 days).
    pub(super) fn days(&self, period: Period) -> f64 {
        let (from, to) = self.instants(period);
        let tz = self.calendar.tz;
        (to.with_timezone(&tz).date_naive() - from.with_timezone(&tz).date_naive()).num_days() as f64
    }

    /// The calendar period containing `at` (epoch ms), if any.
    fn index_of(bounds: &[i64], at: i64) -> i64 {
        match (bounds.first(), bounds.last()) {
            (Some(first), Some(last)) if at >= *first && at < *last => {
                bounds.partition_point(|b| *b <= at) as i64 - 1
            }
            _ => RANGE_INDEX - 1,
        }
    }
}

/// A group: its size and its aggregated values, in the order the aggregations were given.
#[derive(Debug)]
pub(super) struct Cell {
    n: i64,
    values: Vec<Option<f64>>,
}

/// The groups of one event kind by scope type, scope and week; absent cells had no events.
/// Nested so that a lookup borrows the scope's names instead of allocating a key, and with polars'
/// fast hasher: the metric families look cells up millions of times on a lake of years.
#[derive(Debug)]
pub(super) struct Cells(PlHashMap<String, PlHashMap<String, PlHashMap<i64, Cell>>>);

impl Cells {
    pub(super) fn get(&self, scope: Scope<'_>, period: Period) -> Option<&Cell> {
        self.0
            .get(scope.scope_type())?
            .get(scope.name())?
            .get(&period.index())
    }

    pub(super) fn n(&self, scope: Scope<'_>, period: Period) -> i64 {
        self.get(scope, period).map_or(0, |cell| cell.n)
    }

    /// A count among the aggregated values (0 for an empty cell).
    pub(super) fn count(&self, scope: Scope<'_>, period: Period, index: usize) -> i64 {
        self.value(scope, period, index).unwrap_or(0.0).round() as i64
    }

    pub(super) fn value(&self, scope: Scope<'_>, period: Period, index: usize) -> Option<f64> {
        self.get(scope, period)
            .and_then(|cell| cell.values.get(index).copied().flatten())
    }
}

/// Service and team names by the integer codes [`aggregate`] groups by.
#[derive(Default)]
struct Names {
    org: String,
    services: Vec<String>,
    service_codes: HashMap<String, u32>,
    teams: Vec<String>,
    team_codes: HashMap<String, u32>,
}

impl Names {
    fn code(names: &mut Vec<String>, codes: &mut HashMap<String, u32>, name: &str) -> u32 {
        if let Some(code) = codes.get(name) {
            return *code;
        }
        let code = names.len() as u32;
        names.push(name.to_owned());
        codes.insert(name.to_owned(), code);
        code
    }

    fn service(&mut self, name: &str) -> u32 {
        Self::code(&mut self.services, &mut self.service_codes, name)
    }

    fn team(&mut self, name: &str) -> u32 {
        Self::code(&mut self.teams, &mut self.team_codes, name)
    }
}

/// `agg` where `wanted`, else a null in its place: a statistic of [`aggregate`] that no metric
/// asked for keeps its position among the others without being computed.
pub(super) fn when_wanted(wanted: bool, agg: Expr) -> Expr {
    match wanted {
        true => agg,
        false => lit(NULL).cast(DataType::Float64).first(),
    }
}

/// Groups events (`service`, `at` in ms, value columns) anchored in the range by scope and
/// period — each event counts for the org and, when it has one, its service and the service's
/// team, in its period and in the whole range — and evaluates `aggs` (named) per group, beside the
/// group size `n`.
pub(super) fn aggregate(events: LazyFrame, grid: &Grid, aggs: &[(&str, Expr)]) -> PolarsResult<Cells> {
    let mut anchored = events
        .filter(
            col("at")
                .gt_eq(lit(grid.start()))
                .and(col("at").lt(lit(grid.end()))),
        )
        .collect()?;
    // Each event's period (`week`), service and team as small integers in place of its instant and
    // names: grouping by integers is faster than by text, and the frame that every grouping below
    // reads is smaller. The period by binary search over the period starts: exact at every
    // boundary, whatever the periods' lengths (months, DST weeks). A team's events are its
    // services' events, by the config mapping, looked up per event rather than joined.
    let mut names = Names {
        org: "all".to_owned(),
        ..Names::default()
    };
    let (week, service, team) = {
        let at = anchored.column("at")?.i64()?;
        let week: Int32Chunked = at
            .iter()
            .map(|at| at.map(|at| Grid::index_of(&grid.bounds, at) as i32))
            .collect();
        let service_names = anchored.column("service")?.str()?;
        let mut service = Vec::with_capacity(service_names.len());
        let mut team = Vec::with_capacity(service_names.len());
        let mut last: Option<(&str, Option<u32>, Option<u32>)> = None;
        for name in service_names.iter() {
            let Some(name) = name else {
                service.push(None);
                team.push(None);
                continue;
            };
            let (s, t) = match last {
                Some((previous, s, t)) if previous == name => (s, t),
                _ => {
                    let s = Some(names.service(name));
                    let t = grid.service_team.get(name).map(|t| names.team(t));
                    last = Some((name, s, t));
                    (s, t)
                }
            };
            service.push(s);
            team.push(t);
        }
        (
            week.with_name("week".into()),
            UInt32Chunked::from_iter_options("service".into(), service.into_iter()),
            UInt32Chunked::from_iter_options("team".into(), team.into_iter()),
        )
    };
    anchored = anchored.drop_many(["at", "service"]);
    anchored.with_column(week.into_column())?;
    anchored.with_column(service.into_column())?;
    anchored.with_column(team.into_column())?;
    let anchored = anchored.lazy();

    let mut exprs = vec![len().cast(DataType::Int64).alias("n")];
    exprs.extend(
        aggs.iter()
            .map(|(name, agg)| agg.clone().cast(DataType::Float64).alias(*name)),
    );
    let mut cells: PlHashMap<String, PlHashMap<String, PlHashMap<i64, Cell>>> = PlHashMap::new();
    let scopes = [
        ("org", None),
        ("service", Some("service")),
        ("team", Some("team")),
    ];
    for (scope_type, key) in scopes {
        if key == Some("team") && names.teams.is_empty() {
            continue;
        }
        for by_period in [true, false] {
            let keys: Vec<Expr> = key
                .into_iter()
                .map(col)
                .chain(by_period.then(|| col("week")))
                .collect();
            // The organisation's whole range is one group: a plain selection.
            let frame = match keys.is_empty() {
                true => anchored.clone().select(exprs.clone()),
                false => anchored.clone().group_by(keys).agg(exprs.clone()),
            }
            .collect()?;
            let scope = match key {
                Some(key) => Some(frame.column(key)?.u32()?),
                None => None,
            };
            let week = match by_period {
                true => Some(frame.column("week")?.i32()?),
                false => None,
            };
            let n = frame.column("n")?.i64()?;
            let values = aggs
                .iter()
                .map(|(name, _)| frame.column(name)?.f64())
                .collect::<PolarsResult<Vec<_>>>()?;
            for row in 0..frame.height() {
                // Events without a service (or a service without a team) count for the
                // organisation only: their null group is no scope.
                let name = match (scope, key) {
                    (Some(scope), Some("team")) => {
                        scope.get(row).and_then(|code| names.teams.get(code as usize))
                    }
                    (Some(scope), _) => scope.get(row).and_then(|code| names.services.get(code as usize)),
                    (None, _) => Some(&names.org),
                };
                let period = match week {
                    Some(week) => week.get(row).map(i64::from),
                    None => Some(RANGE_INDEX),
                };
                let n = n.get(row).unwrap_or(0);
                let (Some(name), Some(period)) = (name, period) else {
                    continue;
                };
                if n == 0 {
                    continue;
                }
                cells
                    .entry(scope_type.to_owned())
                    .or_default()
                    .entry(name.to_owned())
                    .or_default()
                    .insert(
                        period,
                        Cell {
                            n,
                            values: values.iter().map(|column| column.get(row)).collect(),
                        },
                    );
            }
        }
    }
    Ok(Cells(cells))
}
