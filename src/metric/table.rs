//! The metric table in columns: the pipeline's output, interned scopes and periods, rows read back
//! as [`MetricRow`]s.
//!
//! Plain Rust, no polars, no I/O: writing it to files is the pipeline's business.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{MetricId, MetricRow};

/// The metric table in columns, as the pipeline returns it: one entry per row with the metric, an
/// index into the table's scopes and periods, the value, `n` and the method, so a table of millions
/// of rows (years of weeks for hundreds of services) costs a few dozen bytes a row instead of a
/// [`MetricRow`] and its five strings. Scopes and periods are interned; [`Self::row`] and
/// [`Self::iter`] give the rows as [`MetricRow`]s, in the order they were pushed.
#[derive(Debug, Clone, Default)]
pub struct MetricTable {
    metric: Vec<MetricId>,
    scope: Vec<u32>,
    period: Vec<u32>,
    /// The value, with `has_value` false where there is none (`None` in the row).
    value: Vec<f64>,
    has_value: Vec<bool>,
    n: Vec<i64>,
    /// 0 for no method, else the position in `methods` plus one.
    method: Vec<u8>,
    /// `(scope_type, scope)` of each scope index.
    scopes: Vec<(&'static str, String)>,
    scope_ids: HashMap<(&'static str, String), u32>,
    /// `(grain, start, end)` of each period index.
    periods: Vec<(&'static str, DateTime<Utc>, DateTime<Utc>)>,
    period_ids: HashMap<(&'static str, DateTime<Utc>, DateTime<Utc>), u32>,
    methods: Vec<&'static str>,
    /// 0 where the inputs cover the row's period, else the position in `reasons` plus one.
    no_data: Vec<u32>,
    reasons: Vec<String>,
}

/// A scope of a [`MetricTable`], from [`MetricTable::scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeIx(u32);

/// A period of a [`MetricTable`], from [`MetricTable::period`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodIx(u32);

impl MetricTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes room for `additional` more rows, so appending them does not grow the columns step by
    /// step (each step a copy of everything so far).
    pub fn reserve(&mut self, additional: usize) {
        self.metric.reserve(additional);
        self.scope.reserve(additional);
        self.period.reserve(additional);
        self.value.reserve(additional);
        self.has_value.reserve(additional);
        self.n.reserve(additional);
        self.method.reserve(additional);
        self.no_data.reserve(additional);
    }

    /// The index of a scope (`org`, `service` or `team` and its name), added when new.
    pub fn scope(&mut self, scope_type: &'static str, name: &str) -> ScopeIx {
        let key = (scope_type, name.to_owned());
        if let Some(ix) = self.scope_ids.get(&key) {
            return ScopeIx(*ix);
        }
        let ix = u32::try_from(self.scopes.len()).unwrap_or(u32::MAX);
        self.scopes.push(key.clone());
        self.scope_ids.insert(key, ix);
        ScopeIx(ix)
    }

    /// The index of a period (its grain and UTC bounds), added when new.
    pub fn period(&mut self, grain: &'static str, start: DateTime<Utc>, end: DateTime<Utc>) -> PeriodIx {
        let key = (grain, start, end);
        if let Some(ix) = self.period_ids.get(&key) {
            return PeriodIx(*ix);
        }
        let ix = u32::try_from(self.periods.len()).unwrap_or(u32::MAX);
        self.periods.push(key);
        self.period_ids.insert(key, ix);
        PeriodIx(ix)
    }

    fn method_code(&mut self, method: Option<&'static str>) -> u8 {
        let Some(method) = method else {
            return 0;
        };
        let position = match self.methods.iter().position(|m| *m == method) {
            Some(position) => position,
            None => {
                self.methods.push(method);
                self.methods.len() - 1
            }
        };
        u8::try_from(position + 1).unwrap_or(u8::MAX)
    }

    /// Appends a row.
    pub fn push(
        &mut self,
        metric: MetricId,
        scope: ScopeIx,
        period: PeriodIx,
        value: Option<f64>,
        n: i64,
        method: Option<&'static str>,
    ) {
        let method = self.method_code(method);
        self.metric.push(metric);
        self.scope.push(scope.0);
        self.period.push(period.0);
        self.value.push(value.unwrap_or(0.0));
        self.has_value.push(value.is_some());
        self.n.push(n);
        self.method.push(method);
        self.no_data.push(0);
    }

    /// Appends every row of `other`, in its order.
    pub fn append(&mut self, other: Self) {
        let scopes: Vec<u32> = other
            .scopes
            .iter()
            .map(|(scope_type, name)| self.scope(scope_type, name).0)
            .collect();
        let periods: Vec<u32> = other
            .periods
            .iter()
            .map(|&(grain, start, end)| self.period(grain, start, end).0)
            .collect();
        let methods: Vec<u8> = std::iter::once(0)
            .chain(other.methods.iter().map(|m| self.method_code(Some(m))))
            .collect();
        self.metric.extend(other.metric);
        self.scope.extend(
            other
                .scope
                .iter()
                .map(|s| scopes.get(*s as usize).copied().unwrap_or(*s)),
        );
        self.period.extend(
            other
                .period
                .iter()
                .map(|p| periods.get(*p as usize).copied().unwrap_or(*p)),
        );
        self.value.extend(other.value);
        self.has_value.extend(other.has_value);
        self.n.extend(other.n);
        self.method.extend(
            other
                .method
                .iter()
                .map(|m| methods.get(usize::from(*m)).copied().unwrap_or(0)),
        );
        let reasons: Vec<u32> = std::iter::once(0)
            .chain(other.reasons.iter().map(|r| self.reason_code(r)))
            .collect();
        self.no_data.extend(
            other
                .no_data
                .iter()
                .map(|r| reasons.get(*r as usize).copied().unwrap_or(0)),
        );
    }

    fn reason_code(&mut self, reason: &str) -> u32 {
        let position = match self.reasons.iter().position(|r| r == reason) {
            Some(position) => position,
            None => {
                self.reasons.push(reason.to_owned());
                self.reasons.len() - 1
            }
        };
        u32::try_from(position + 1).unwrap_or(u32::MAX)
    }

    /// Marks rows whose inputs do not cover their period as "no data": `reason` is asked once per
    /// metric and period (not per row: a table has millions of rows and a few thousand such
    /// pairs) and a row it gives a reason for loses its value and keeps the reason.
    pub fn mark_no_data(
        &mut self,
        mut reason: impl FnMut(MetricId, &'static str, DateTime<Utc>, DateTime<Utc>) -> Option<String>,
    ) {
        let mut asked: HashMap<(MetricId, u32), u32> = HashMap::new();
        for i in 0..self.len() {
            let (metric, period) = (self.metric[i], self.period[i]);
            let code = match asked.get(&(metric, period)) {
                Some(code) => *code,
                None => {
                    let (grain, start, end) = self.periods[period as usize];
                    let code = match reason(metric, grain, start, end) {
                        Some(text) => self.reason_code(&text),
                        None => 0,
                    };
                    asked.insert((metric, period), code);
                    code
                }
            };
            if code != 0 {
                self.no_data[i] = code;
                self.has_value[i] = false;
                self.value[i] = 0.0;
            }
        }
    }

    /// Sets the method of every row of the given metrics.
    pub fn set_method(&mut self, metrics: &[MetricId], method: &'static str) {
        let code = self.method_code(Some(method));
        for (metric, row_method) in self.metric.iter().zip(self.method.iter_mut()) {
            if metrics.contains(metric) {
                *row_method = code;
            }
        }
    }

    /// The bytes the table's columns and names take on the heap (capacities; allocator overhead
    /// and the interning maps not counted), as the benchmark reports it.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.metric.capacity() * size_of::<MetricId>()
            + (self.scope.capacity() + self.period.capacity()) * size_of::<u32>()
            + self.value.capacity() * size_of::<f64>()
            + self.has_value.capacity()
            + self.n.capacity() * size_of::<i64>()
            + self.method.capacity()
            + self.no_data.capacity() * size_of::<u32>()
            + self
                .scopes
                .iter()
                .map(|(_, name)| size_of::<(&str, String)>() + name.capacity())
                .sum::<usize>()
            + self.periods.capacity() * size_of::<(&str, DateTime<Utc>, DateTime<Utc>)>()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.metric.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.metric.is_empty()
    }

    /// Row `i`'s metric.
    pub fn metric(&self, i: usize) -> MetricId {
        self.metric[i]
    }

    /// Row `i`'s scope type and scope name.
    pub fn scope_of(&self, i: usize) -> (&'static str, &str) {
        let (scope_type, name) = &self.scopes[self.scope[i] as usize];
        (scope_type, name)
    }

    /// Row `i`'s grain, period start and period end.
    pub fn period_of(&self, i: usize) -> (&'static str, DateTime<Utc>, DateTime<Utc>) {
        self.periods[self.period[i] as usize]
    }

    /// Row `i`'s value.
    pub fn value(&self, i: usize) -> Option<f64> {
        self.has_value[i].then(|| self.value[i])
    }

    /// Row `i`'s sample size.
    pub fn n(&self, i: usize) -> i64 {
        self.n[i]
    }

    /// Row `i`'s method.
    pub fn method(&self, i: usize) -> Option<&'static str> {
        match self.method[i] {
            0 => None,
            code => self.methods.get(usize::from(code) - 1).copied(),
        }
    }

    /// Why row `i` has no value although its period may have had events (see
    /// [`MetricRow::no_data`]).
    pub fn no_data(&self, i: usize) -> Option<&str> {
        match self.no_data[i] {
            0 => None,
            code => self.reasons.get(code as usize - 1).map(String::as_str),
        }
    }

    /// Row `i` as a [`MetricRow`].
    pub fn row(&self, i: usize) -> MetricRow {
        let (scope_type, scope) = self.scope_of(i);
        let (grain, period_start, period_end) = self.period_of(i);
        let metric = self.metric(i);
        MetricRow {
            metric: metric.as_str().to_owned(),
            grain: grain.to_owned(),
            scope_type: scope_type.to_owned(),
            scope: scope.to_owned(),
            period_start,
            period_end,
            value: self.value(i),
            unit: metric.unit().to_owned(),
            n: self.n(i),
            method: self.method(i).map(str::to_owned),
            no_data: self.no_data(i).map(str::to_owned),
        }
    }

    /// The rows in order, as [`MetricRow`]s made one at a time.
    pub fn iter(&self) -> impl Iterator<Item = MetricRow> + '_ {
        (0..self.len()).map(|i| self.row(i))
    }

    /// Every row as a [`MetricRow`], for readers that keep the rows (reports over their range).
    pub fn to_rows(&self) -> Vec<MetricRow> {
        self.iter().collect()
    }

    /// The rows `keep` (given the table and a row's position) selects, as [`MetricRow`]s.
    pub fn rows_where(&self, keep: impl Fn(&Self, usize) -> bool) -> Vec<MetricRow> {
        (0..self.len())
            .filter(|&i| keep(self, i))
            .map(|i| self.row(i))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metric::NO_DATA;

    #[test]
    fn no_data_is_asked_once_per_metric_and_period_and_survives_append() {
        let at = |day: u32| {
            use chrono::TimeZone;
            Utc.with_ymd_and_hms(2026, 3, day, 0, 0, 0).unwrap()
        };
        let mut first = MetricTable::new();
        let (org, a, b) = (
            first.scope("org", "all"),
            first.scope("service", "a"),
            first.scope("service", "b"),
        );
        let (w1, w2) = (
            first.period("week", at(2), at(9)),
            first.period("week", at(9), at(16)),
        );
        for scope in [org, a, b] {
            first.push(MetricId::TicketsResolved, scope, w1, Some(0.0), 0, None);
            first.push(MetricId::TicketsResolved, scope, w2, Some(3.0), 3, None);
            first.push(MetricId::DeploymentCount, scope, w2, Some(2.0), 2, None);
        }
        let mut asked = Vec::new();
        first.mark_no_data(|metric, _, start, _| {
            asked.push((metric, start));
            (metric.inputs().contains(&"tickets") && start == at(2))
                .then(|| "jira has never synced".to_owned())
        });
        assert_eq!(asked.len(), 3, "three metric-period pairs, nine rows: {asked:?}");
        let marked: Vec<usize> = (0..first.len()).filter(|&i| first.no_data(i).is_some()).collect();
        assert_eq!(
            marked,
            vec![0, 3, 6],
            "the first week's ticket rows of every scope"
        );
        assert!(
            marked.iter().all(|&i| first.value(i).is_none()),
            "a zero becomes no value"
        );
        assert_eq!(first.value(1), Some(3.0));

        // Appended after a table with a reason of its own, the reasons keep their rows.
        let mut table = MetricTable::new();
        let (org2, w3) = (table.scope("org", "all"), table.period("week", at(16), at(23)));
        table.push(MetricId::DowntimeMinutes, org2, w3, Some(5.0), 1, None);
        table.mark_no_data(|_, _, _, _| Some("pd failed".to_owned()));
        table.append(first);
        assert_eq!(table.no_data(0), Some("pd failed"));
        assert_eq!(table.row(1).no_data.as_deref(), Some("jira has never synced"));
        assert_eq!(table.row(2).no_data, None);
        assert_eq!(table.row(1).display_value(), NO_DATA);
    }

    #[test]
    fn appended_tables_keep_each_rows_scope_period_value_and_method() {
        let at = |day: u32| {
            DateTime::parse_from_rfc3339(&format!("2026-08-{day:02}T00:00:00Z"))
                .unwrap()
                .to_utc()
        };
        let mut first = MetricTable::new();
        let (api, week) = (first.scope("service", "api"), first.period("week", at(3), at(10)));
        first.push(MetricId::DeploymentCount, api, week, Some(1.0), 1, Some("time"));
        // The second table interns in another order and shares one scope with the first.
        let mut second = MetricTable::new();
        let core = second.scope("team", "core");
        let api_again = second.scope("service", "api");
        let range = second.period("range", at(3), at(17));
        second.push(MetricId::LeadTimeMedian, core, range, None, 0, Some("ancestry"));
        second.push(MetricId::DeploymentCount, api_again, range, Some(2.0), 2, None);
        first.append(second);
        first.set_method(&[MetricId::DeploymentCount], "chain");

        type Seen<'a> = (
            MetricId,
            (&'a str, &'a str),
            &'a str,
            Option<f64>,
            i64,
            Option<&'a str>,
        );
        let got: Vec<Seen<'_>> = (0..first.len())
            .map(|i| {
                (
                    first.metric(i),
                    first.scope_of(i),
                    first.period_of(i).0,
                    first.value(i),
                    first.n(i),
                    first.method(i),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    MetricId::DeploymentCount,
                    ("service", "api"),
                    "week",
                    Some(1.0),
                    1,
                    Some("chain")
                ),
                (
                    MetricId::LeadTimeMedian,
                    ("team", "core"),
                    "range",
                    None,
                    0,
                    Some("ancestry")
                ),
                (
                    MetricId::DeploymentCount,
                    ("service", "api"),
                    "range",
                    Some(2.0),
                    2,
                    Some("chain")
                ),
            ]
        );
        assert_eq!(first.period_of(2).1..first.period_of(2).2, at(3)..at(17));
        let rows = first.rows_where(|t, i| t.scope_of(i).0 == "team");
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].metric.as_str(), rows[0].unit.as_str()),
            ("lead_time_median", "hours")
        );
    }
}
