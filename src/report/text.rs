//! The metric table as aligned text for a terminal: the organisation's figures, each service's or
//! team's, the shared KPIs as judged. Formats metric rows only; computes nothing.

use chrono::{DateTime, Duration, Utc};

use crate::metric::kpi::Scored;
use crate::metric::{MetricId, MetricRow};

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

/// The shared KPIs as judged (see `metric::kpi`): each one's value in the period judged (`heading` names
/// it), its status against the target and the change since the period before. Empty when the
/// config declares no `[[kpi]]`.
pub fn kpi_table(scored: &[Scored], heading: &str) -> String {
    if scored.is_empty() {
        return String::new();
    }
    let mut lines = vec![[
        "KPI".to_owned(),
        "scope".to_owned(),
        "owners".to_owned(),
        "target".to_owned(),
        "latest".to_owned(),
        "status".to_owned(),
        "change".to_owned(),
    ]];
    for k in scored {
        lines.push([
            k.title.clone(),
            k.scope.clone(),
            k.owners.clone(),
            k.target.clone(),
            k.latest.clone(),
            k.status.as_str().to_owned(),
            k.change.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("\nShared KPIs, {heading}\n");
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Every service's (or team's) whole-range figures, one line per scope and metric.
pub fn scope_table(rows: &[MetricRow], scope_type: &str) -> String {
    let mut notes = NoDataNotes::default();
    let mut lines = vec![[
        scope_type.to_owned(),
        "metric".to_owned(),
        "value".to_owned(),
        "n".to_owned(),
    ]];
    let mut services: Vec<&str> = rows
        .iter()
        .filter(|r| r.scope_type == scope_type && r.grain == "range")
        .map(|r| r.scope.as_str())
        .collect();
    services.sort_unstable();
    services.dedup();
    for service in services {
        for id in MetricId::ALL {
            if let Some(row) = rows.iter().find(|r| {
                r.metric == id.as_str()
                    && r.grain == "range"
                    && r.scope == service
                    && r.scope_type == scope_type
            }) {
                let mut value = row.display_value();
                if row.insufficient() {
                    value.push_str(" *");
                }
                if let Some(reason) = &row.no_data {
                    value.push_str(&format!(" [{}]", notes.number(reason)));
                }
                lines.push([
                    service.to_owned(),
                    id.title().to_owned(),
                    value,
                    row.n.to_string(),
                ]);
            }
        }
    }
    let width = |i: usize| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    let mut out = String::new();
    for [a, b, c, d] in &lines {
        out.push_str(format!("{a:<w0$}  {b:<w1$}  {c:>w2$}  {d:>w3$}").trim_end());
        out.push('\n');
    }
    out.push_str("* insufficient data (n < 5)\n");
    out.push_str(&notes.render());
    out
}

/// The reasons figures have no data, numbered in order of first use, so a table names each
/// once however many figures it affects.
#[derive(Default)]
struct NoDataNotes(Vec<String>);

impl NoDataNotes {
    fn number(&mut self, reason: &str) -> usize {
        match self.0.iter().position(|r| r == reason) {
            Some(i) => i + 1,
            None => {
                self.0.push(reason.to_owned());
                self.0.len()
            }
        }
    }

    fn render(&self) -> String {
        self.0
            .iter()
            .enumerate()
            .map(|(i, reason)| format!("[{}] no data: {reason}\n", i + 1))
            .collect()
    }
}

/// The organisation's whole-range figures as an aligned text table, its range in dates of the
/// report time zone `tz`.
pub fn org_table(rows: &[MetricRow], tz: chrono_tz::Tz) -> String {
    let mut notes = NoDataNotes::default();
    let mut lines = vec![[
        "metric".to_owned(),
        "value".to_owned(),
        "n".to_owned(),
        "tier".to_owned(),
        String::new(),
    ]];
    let mut range_label = None;
    for id in MetricId::ALL {
        let Some(row) = rows
            .iter()
            .find(|r| r.metric == id.as_str() && r.grain == "range" && r.scope_type == "org")
        else {
            continue;
        };
        range_label.get_or_insert_with(|| period_label(row, tz));
        let note = if let Some(reason) = &row.no_data {
            format!("[{}]", notes.number(reason))
        } else if row.insufficient() {
            "insufficient data (n < 5)".to_owned()
        } else {
            String::new()
        };
        lines.push([
            id.title().to_owned(),
            row.display_value(),
            row.n.to_string(),
            row.tier_among(rows).unwrap_or_default().to_owned(),
            note,
        ]);
    }
    let width = |i: usize| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    let mut out = format!(
        "Organisation, {}\n",
        range_label.unwrap_or_else(|| "no data".to_owned())
    );
    for [a, b, c, d, e] in lines {
        let line = format!("{a:<w0$}  {b:>w1$}  {c:>w2$}  {d:<w3$}  {e}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&notes.render());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;
    use crate::metric::kpi::{KpiSpec, scorecard};

    fn row(week: i64, value: f64, n: i64) -> MetricRow {
        let start = DateTime::<Utc>::from_timestamp(1_785_715_200, 0).unwrap() + Duration::weeks(week);
        MetricRow {
            metric: "change_failure_rate".into(),
            grain: "week".into(),
            scope_type: "org".into(),
            scope: "all".into(),
            period_start: start,
            period_end: start + Duration::weeks(1),
            value: Some(value),
            unit: "ratio".into(),
            n,
            method: None,
            no_data: None,
        }
    }

    #[test]
    fn the_range_is_labelled_with_dates_of_the_report_time_zone() {
        // Berlin weeks 3 August to 25 October 2026: from Monday 00:00 CEST (Sunday 22:00 UTC) to
        // Monday 26 October 00:00 CET (Sunday 23:00 UTC; summer time ended on the 25th).
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let range = MetricRow {
            metric: "deployment_count".into(),
            grain: "range".into(),
            period_start: at("2026-08-02T22:00:00Z"),
            period_end: at("2026-10-25T23:00:00Z"),
            unit: "count".into(),
            ..row(0, 12.0, 12)
        };
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(period_label(&range, berlin), "2026-08-03 to 2026-10-25");
        let table = org_table(std::slice::from_ref(&range), berlin);
        assert!(
            table.starts_with("Organisation, 2026-08-03 to 2026-10-25\n"),
            "{table}"
        );
        // The same instants read in UTC are a day earlier at both ends.
        assert_eq!(period_label(&range, chrono_tz::UTC), "2026-08-02 to 2026-10-24");
    }

    #[test]
    fn kpis_are_judged_on_the_latest_period_with_the_change_since_the_one_before() {
        let kpi: KpiSpec =
            toml::from_str("metric = \"change_failure_rate\"\ntarget = \"<= 0.15\"\nowners = \"IT+Ops\"\n")
                .unwrap();
        // Out of order on purpose: the latest week is the one with the latest start.
        let rows = vec![row(1, 0.20, 10), row(0, 0.10, 10)];
        let table = kpi_table(&scorecard(&rows, std::slice::from_ref(&kpi)), "latest period");
        let line = table
            .lines()
            .find(|l| l.starts_with("Change failure rate"))
            .unwrap();
        assert!(
            line.contains("20.0%") && line.contains(" red ") && line.contains("+10.0 pp"),
            "{line}"
        );
        let small = vec![row(0, 0.10, 10), row(1, 0.01, 3)];
        let table = kpi_table(&scorecard(&small, &[kpi]), "latest period");
        assert!(table.contains("insufficient"), "n < 5 gets no colour: {table}");
        assert!(kpi_table(&scorecard(&rows, &[]), "latest period").is_empty());
    }
}
