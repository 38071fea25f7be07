//! Shared KPIs: a metric, a scope, a target both IT and operations signed up to, and the owners.
//! Evaluation gives green / amber / red and the change since the previous period, computed from
//! the unrounded values; a value with too small a sample (`n < 5` for a metric that is a sample,
//! see [`MetricId::is_sample`]) gets no colour.
//!
//! Pure logic over metric values: the config declares `[[kpi]]` entries in this shape, the
//! pipeline evaluates them, the reports show them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use super::{MISSING, MetricId, MetricRow, format_change, insufficient};

/// Which side of the target is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    /// At most the target (`<=`): lead time, change failure rate, downtime.
    AtMost,
    /// At least the target (`>=`): deployment frequency, availability.
    AtLeast,
}

/// A target such as `<= 0.15` or `>= 99.9`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Target {
    /// The good side.
    pub comparison: Comparison,
    /// The bound.
    pub value: f64,
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (comparison, rest) = if let Some(r) = s.strip_prefix("<=") {
            (Comparison::AtMost, r)
        } else if let Some(r) = s.strip_prefix(">=") {
            (Comparison::AtLeast, r)
        } else {
            return Err(format!("target {s:?} must start with <= or >=, e.g. \"<= 0.15\""));
        };
        let value: f64 = rest
            .trim()
            .parse()
            .map_err(|_| format!("target {s:?}: {:?} is not a number", rest.trim()))?;
        Ok(Self { comparison, value })
    }
}

impl TryFrom<String> for Target {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        t.to_string()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.comparison {
            Comparison::AtMost => "<=",
            Comparison::AtLeast => ">=",
        };
        write!(f, "{op} {}", self.value)
    }
}

/// `[[kpi]]` in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiSpec {
    /// Metric id, e.g. `change_failure_rate`.
    pub metric: String,
    /// `org`, `service:NAME` or `team:NAME`.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// The target, e.g. `"<= 0.15"`.
    pub target: Target,
    /// Who owns it: `IT`, `Ops`, `IT+Ops`, a team name.
    pub owners: String,
    /// Relative margin past the target that is amber rather than red (0.10 = 10%).
    #[serde(default = "default_margin")]
    pub amber_margin: f64,
}

fn default_scope() -> String {
    "org".into()
}
fn default_margin() -> f64 {
    0.10
}

/// A KPI's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Target met.
    Green,
    /// Missed by less than the amber margin.
    Amber,
    /// Missed by more.
    Red,
    /// No value, or too small a sample to judge.
    Insufficient,
    /// A source the metric reads does not cover the period (the row's `no_data` says why).
    #[serde(rename = "no-data")]
    NoData,
}

impl Status {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Green => "green",
            Self::Amber => "amber",
            Self::Red => "red",
            Self::Insufficient => "insufficient",
            Self::NoData => "no-data",
        }
    }

    /// How people read it in running text: the name, with `no data` in words.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoData => "no data",
            other => other.as_str(),
        }
    }
}

impl KpiSpec {
    /// The scope as `(scope_type, scope)` the metric table uses: `("org", "all")`,
    /// `("service", NAME)` or `("team", NAME)`.
    pub fn scope_key(&self) -> Result<(&str, &str), String> {
        match self.scope.split_once(':') {
            None if self.scope == "org" => Ok(("org", "all")),
            Some(("service", name)) if !name.is_empty() => Ok(("service", name)),
            Some(("team", name)) if !name.is_empty() => Ok(("team", name)),
            _ => Err(format!(
                "KPI scope {:?} must be \"org\", \"service:NAME\" or \"team:NAME\"",
                self.scope
            )),
        }
    }

    /// The status of a metric row (none: insufficient): [`Status::NoData`] where a source it
    /// reads does not cover its period, else as [`Self::status`].
    pub fn judge(&self, row: Option<&MetricRow>) -> Status {
        match row {
            Some(r) if r.no_data.is_some() => Status::NoData,
            _ => self.status(row.and_then(|r| r.value), row.map_or(0, |r| r.n)),
        }
    }

    /// The status of `value` measured on `n` samples.
    pub fn status(&self, value: Option<f64>, n: i64) -> Status {
        let Some(v) = value.filter(|v| v.is_finite()) else {
            return Status::Insufficient;
        };
        // The catalogue says which figures are samples: an availability measured over three
        // outages is judged, a median lead time of three changes is not.
        if insufficient(&self.metric, n) {
            return Status::Insufficient;
        }
        let t = self.target.value;
        // A hair of tolerance so that a value exactly on a bound is not lost to float rounding
        // (0.15 × 1.1 is 0.16499999999999998).
        let eps = 1e-9 * t.abs().max(1.0);
        let slack = t.abs() * self.amber_margin.max(0.0) + eps;
        match self.target.comparison {
            Comparison::AtMost if v <= t + eps => Status::Green,
            Comparison::AtMost if v <= t + slack => Status::Amber,
            Comparison::AtLeast if v >= t - eps => Status::Green,
            Comparison::AtLeast if v >= t - slack => Status::Amber,
            _ => Status::Red,
        }
    }
}

/// One KPI judged on a metric table, ready to show (and, as it is, the JSON of
/// `tandem metrics --format json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    /// Stable metric id.
    pub metric: String,
    /// The metric's title.
    pub title: String,
    /// The KPI's scope as written (`org`, `service:NAME`, `team:NAME`).
    pub scope: String,
    /// Who owns it.
    pub owners: String,
    /// The target as written (`<= 0.15`).
    pub target: String,
    /// The target's bound, in the metric's unit.
    pub target_value: f64,
    /// `<=` or `>=`.
    pub comparison: &'static str,
    /// Start of the period judged (inclusive, UTC); `None` without a row.
    pub period_start: Option<DateTime<Utc>>,
    /// End of the period judged (exclusive, UTC); `None` without a row.
    pub period_end: Option<DateTime<Utc>>,
    /// The value judged, unrounded.
    pub value: Option<f64>,
    /// The value judged, formatted with its unit.
    pub latest: String,
    /// The sample size behind the value judged.
    pub n: i64,
    /// Green, amber, red or insufficient.
    pub status: Status,
    /// The period before's value, unrounded.
    pub previous_value: Option<f64>,
    /// The period before's value, formatted with its unit.
    pub previous: String,
    /// The period before's sample size.
    pub previous_n: Option<i64>,
    /// `value − previous_value`, unrounded; `None` without both.
    pub delta: Option<f64>,
    /// The change since the period before, formatted with its unit and sign (ratios in percentage
    /// points), rounded once from [`Self::delta`].
    pub change: String,
}

/// Judges each KPI on its latest period in `rows` (the last non-range period of its metric and
/// scope) and compares it with the period before.
pub fn scorecard(rows: &[MetricRow], kpis: &[KpiSpec]) -> Vec<Scored> {
    kpis.iter()
        .filter_map(|kpi| {
            let (scope_type, scope) = kpi.scope_key().ok()?;
            let mut periods: Vec<&MetricRow> = rows
                .iter()
                .filter(|r| r.metric == kpi.metric && r.scope_type == scope_type && r.scope == scope)
                .filter(|r| r.grain != "range")
                .collect();
            periods.sort_by_key(|r| r.period_start);
            let latest = periods.last().copied();
            let previous = periods.len().checked_sub(2).and_then(|i| periods.get(i)).copied();
            Some(score(kpi, latest, previous))
        })
        .collect()
}

/// Judges each KPI on the whole-range row of `current` (a period someone asked for, e.g.
/// `--period 2026-Q3`) and compares it with the whole-range row of `previous` (the period before).
pub fn scorecard_of_period(current: &[MetricRow], previous: &[MetricRow], kpis: &[KpiSpec]) -> Vec<Scored> {
    kpis.iter()
        .filter_map(|kpi| {
            let (scope_type, scope) = kpi.scope_key().ok()?;
            let range = |rows: &'_ [MetricRow]| -> Option<MetricRow> {
                rows.iter()
                    .find(|r| {
                        r.grain == "range"
                            && r.metric == kpi.metric
                            && r.scope_type == scope_type
                            && r.scope == scope
                    })
                    .cloned()
            };
            Some(score(kpi, range(current).as_ref(), range(previous).as_ref()))
        })
        .collect()
}

/// One KPI judged on `latest`, compared with `previous`.
fn score(kpi: &KpiSpec, latest: Option<&MetricRow>, previous: Option<&MetricRow>) -> Scored {
    let value = latest.and_then(|r| r.value).filter(|v| v.is_finite());
    let previous_value = previous.and_then(|r| r.value).filter(|v| v.is_finite());
    let delta = delta(value, previous_value);
    let unit = latest.or(previous).map_or_else(
        || MetricId::parse(&kpi.metric).map_or("", MetricId::unit),
        |r| r.unit.as_str(),
    );
    Scored {
        metric: kpi.metric.clone(),
        title: MetricId::parse(&kpi.metric).map_or_else(|| kpi.metric.clone(), |m| m.title().to_owned()),
        scope: kpi.scope.clone(),
        owners: kpi.owners.clone(),
        target: kpi.target.to_string(),
        target_value: kpi.target.value,
        comparison: match kpi.target.comparison {
            Comparison::AtMost => "<=",
            Comparison::AtLeast => ">=",
        },
        period_start: latest.map(|r| r.period_start),
        period_end: latest.map(|r| r.period_end),
        value,
        latest: latest.map_or_else(|| MISSING.to_owned(), MetricRow::display_value),
        n: latest.map_or(0, |r| r.n),
        status: kpi.judge(latest),
        previous_value,
        previous: previous.map_or_else(|| MISSING.to_owned(), MetricRow::display_value),
        previous_n: previous.map(|r| r.n),
        delta,
        change: delta.map_or_else(|| MISSING.to_owned(), |d| format_change(d, unit)),
    }
}

/// The change since the previous period, when both values exist.
pub fn delta(current: Option<f64>, previous: Option<f64>) -> Option<f64> {
    Some(current? - previous?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kpi(target: &str) -> KpiSpec {
        KpiSpec {
            metric: "change_failure_rate".into(),
            scope: "org".into(),
            target: target.parse().unwrap(),
            owners: "IT+Ops".into(),
            amber_margin: 0.10,
        }
    }

    #[test]
    fn at_most_targets() {
        let k = kpi("<= 0.15");
        assert_eq!(
            k.status(Some(0.15), 5),
            Status::Green,
            "meeting the target exactly is green"
        );
        assert_eq!(
            k.status(Some(0.165), 5),
            Status::Amber,
            "within 10% past the target"
        );
        assert_eq!(k.status(Some(0.1651), 5), Status::Red);
        assert_eq!(k.status(Some(0.01), 4), Status::Insufficient, "n < 5: no colour");
        assert_eq!(k.status(None, 50), Status::Insufficient);
    }

    #[test]
    fn at_least_targets() {
        let k = kpi(">= 0.999");
        assert_eq!(k.status(Some(0.9995), 9), Status::Green);
        assert_eq!(k.status(Some(0.9), 9), Status::Amber, "0.999 − 10% = 0.8991");
        assert_eq!(k.status(Some(0.89), 9), Status::Red);
    }

    fn week(metric: &str, unit: &str, week: i64, value: f64, n: i64) -> MetricRow {
        let start = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::weeks(week);
        MetricRow {
            metric: metric.into(),
            grain: "week".into(),
            scope_type: "org".into(),
            scope: "all".into(),
            period_start: start,
            period_end: start + chrono::Duration::weeks(1),
            value: Some(value),
            unit: unit.into(),
            n,
            method: None,
            no_data: None,
        }
    }

    #[test]
    fn kpi_delta_is_computed_from_unrounded_values_not_from_the_rounded_ones_shown() {
        let lead: KpiSpec =
            toml::from_str("metric = \"lead_time_median\"\ntarget = \"<= 72\"\nowners = \"IT\"\n").unwrap();
        // Shown as 30.3 h and 9.9 h (20.4 h apart); the values are 20.33 h apart.
        let rows = [
            week("lead_time_median", "hours", 0, 9.93, 40),
            week("lead_time_median", "hours", 1, 30.26, 40),
        ];
        let [k] = scorecard(&rows, std::slice::from_ref(&lead)).try_into().unwrap();
        assert_eq!((k.latest.as_str(), k.previous.as_str()), ("30.3 h", "9.9 h"));
        assert_eq!(k.change, "+20.3 h");
        assert!((k.delta.unwrap() - 20.33).abs() < 1e-9, "{:?}", k.delta);
        assert_eq!(k.previous_value, Some(9.93));
        // Ratios change in percentage points, also from the unrounded values: 12.34% − 11.76%.
        let rows = [
            week("change_failure_rate", "ratio", 0, 0.1176, 40),
            week("change_failure_rate", "ratio", 1, 0.1234, 40),
        ];
        let [k] = scorecard(&rows, &[kpi("<= 0.15")]).try_into().unwrap();
        assert_eq!(k.change, "+0.6 pp");
    }

    #[test]
    fn an_availability_kpi_with_three_outages_is_judged_and_a_lead_time_kpi_of_three_changes_is_not() {
        let availability: KpiSpec =
            toml::from_str("metric = \"availability\"\ntarget = \">= 0.995\"\nowners = \"Ops\"\n").unwrap();
        assert_eq!(availability.status(Some(0.999), 3), Status::Green);
        assert_eq!(availability.status(Some(0.80), 3), Status::Red);
        let lead: KpiSpec =
            toml::from_str("metric = \"lead_time_median\"\ntarget = \"<= 72\"\nowners = \"IT\"\n").unwrap();
        assert_eq!(lead.status(Some(10.0), 3), Status::Insufficient);
        assert_eq!(lead.status(Some(10.0), 5), Status::Green);
        // The rows say the same as the KPIs: the rule is the catalogue's.
        assert!(!week("availability", "ratio", 0, 0.999, 3).insufficient());
        assert!(week("lead_time_median", "hours", 0, 10.0, 3).insufficient());
        let [k] = scorecard(
            &[week("availability", "ratio", 0, 0.999, 3)],
            std::slice::from_ref(&availability),
        )
        .try_into()
        .unwrap();
        assert_eq!(k.status, Status::Green);
    }

    #[test]
    fn a_period_asked_for_is_judged_on_its_range_row_against_the_period_before() {
        let lead: KpiSpec =
            toml::from_str("metric = \"lead_time_median\"\ntarget = \"<= 72\"\nowners = \"IT\"\n").unwrap();
        let range = |value: f64| MetricRow {
            grain: "range".into(),
            ..week("lead_time_median", "hours", 0, value, 30)
        };
        // The period's last week is far over target; the period as a whole is not.
        let current = [range(50.0), week("lead_time_median", "hours", 12, 100.0, 9)];
        let [k] = scorecard_of_period(&current, &[range(40.0)], std::slice::from_ref(&lead))
            .try_into()
            .unwrap();
        assert_eq!((k.value, k.status, k.n), (Some(50.0), Status::Green, 30));
        assert_eq!((k.previous_value, k.change.as_str()), (Some(40.0), "+10.0 h"));
        let [k] = scorecard_of_period(&current, &[], &[lead]).try_into().unwrap();
        assert_eq!((k.previous_value, k.change.as_str()), (None, MISSING));
    }

    #[test]
    fn targets_and_scopes_parse_with_clear_errors() {
        assert!("< 3".parse::<Target>().unwrap_err().contains("<= or >="));
        assert!("<= three".parse::<Target>().unwrap_err().contains("not a number"));
        let mut k = kpi(">= 1");
        k.scope = "team:payments".into();
        assert_eq!(k.scope_key().unwrap(), ("team", "payments"));
        k.scope = "squad:x".into();
        assert!(k.scope_key().is_err());
        assert_eq!(
            delta(Some(0.2), Some(0.15)).map(|d| (d * 100.0).round()),
            Some(5.0)
        );
        assert_eq!(delta(Some(0.2), None), None);
        let parsed: KpiSpec =
            toml::from_str("metric = \"lead_time_median\"\ntarget = \"<= 24\"\nowners = \"IT\"\n").unwrap();
        assert_eq!(parsed.scope, "org");
        assert_eq!(parsed.target.to_string(), "<= 24");
    }
}
