//! Shared KPIs: a metric, a scope, a target both IT and operations signed up to, and the owners.
//! Evaluation gives green / amber / red and the change since the previous period; a value with too
//! small a sample (`n < 5`) gets no colour.
//!
//! Pure logic over metric values: the config declares `[[kpi]]` entries in this shape, the
//! pipeline evaluates them, the reports show them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::metric::{MIN_SAMPLE, MISSING, MetricId, MetricRow};

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
}

impl Status {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Green => "green",
            Self::Amber => "amber",
            Self::Red => "red",
            Self::Insufficient => "insufficient",
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

    /// The status of `value` measured on `n` samples.
    pub fn status(&self, value: Option<f64>, n: i64) -> Status {
        let Some(v) = value.filter(|v| v.is_finite()) else {
            return Status::Insufficient;
        };
        if n < MIN_SAMPLE {
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

/// One KPI judged on a metric table, ready to show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    /// The metric's title.
    pub title: String,
    /// The KPI's scope as written (`org`, `service:NAME`, `team:NAME`).
    pub scope: String,
    /// Who owns it.
    pub owners: String,
    /// The target as written (`<= 0.15`).
    pub target: String,
    /// The latest period's value, formatted with its unit.
    pub latest: String,
    /// The latest period's sample size.
    pub n: i64,
    /// Green, amber, red or insufficient.
    pub status: Status,
    /// The change since the period before, formatted with its unit and sign.
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
            let change = match (latest, previous) {
                (Some(l), Some(p)) => delta(l.value, p.value).map(|d| {
                    let shown = MetricRow {
                        value: Some(d.abs()),
                        ..l.clone()
                    }
                    .display_value();
                    format!("{}{shown}", if d < 0.0 { "−" } else { "+" })
                }),
                _ => None,
            };
            Some(Scored {
                title: MetricId::parse(&kpi.metric)
                    .map_or_else(|| kpi.metric.clone(), |m| m.title().to_owned()),
                scope: kpi.scope.clone(),
                owners: kpi.owners.clone(),
                target: kpi.target.to_string(),
                latest: latest.map_or_else(|| MISSING.to_owned(), MetricRow::display_value),
                n: latest.map_or(0, |r| r.n),
                status: kpi.status(latest.and_then(|r| r.value), latest.map_or(0, |r| r.n)),
                change: change.unwrap_or_else(|| MISSING.to_owned()),
            })
        })
        .collect()
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
