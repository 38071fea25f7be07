//! Tests of the whole report: files written, values formatted, data escaped, output stable.
//!
//! Built from hand-made metric rows; no pipeline, no store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::metric::{MetricId, MetricRow};

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

fn monday(week: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 4, 0, 0, 0).unwrap() + Duration::weeks(week)
}

fn row(
    metric: MetricId,
    grain: &str,
    scope: &str,
    start: DateTime<Utc>,
    value: Option<f64>,
    n: i64,
) -> MetricRow {
    // Range rows all end with the third week.
    let end = if grain == "week" {
        start + Duration::weeks(1)
    } else {
        monday(3)
    };
    MetricRow {
        metric: metric.as_str().to_owned(),
        grain: grain.to_owned(),
        scope_type: if scope == "all" { "org" } else { "service" }.to_owned(),
        scope: scope.to_owned(),
        period_start: start,
        period_end: end,
        value,
        unit: metric.unit().to_owned(),
        n,
        method: None,
    }
}

/// Three weeks for the organisation and one service `payments`.
fn sample_rows() -> Vec<MetricRow> {
    use MetricId::*;
    let mut rows = Vec::new();
    let weekly: [(MetricId, [Option<f64>; 3], [i64; 3]); 4] = [
        (DeploymentCount, [Some(6.0), Some(9.0), Some(3.0)], [6, 9, 3]),
        (DowntimeMinutes, [Some(45.0), Some(0.0), Some(130.0)], [2, 0, 3]),
        (
            ChangeFailureRate,
            [Some(1.0 / 6.0), None, Some(1.0 / 3.0)],
            [6, 0, 3],
        ),
        (LeadTimeMedian, [Some(20.0), Some(30.5), Some(12.25)], [7, 8, 4]),
    ];
    for (metric, values, ns) in weekly {
        for week in 0..3 {
            rows.push(row(
                metric,
                "week",
                "all",
                monday(week),
                values[week as usize],
                ns[week as usize],
            ));
        }
    }
    for scope in ["all", "payments"] {
        let range = [
            (DeploymentCount, Some(18.0), 18),
            (DeploymentFrequency, Some(18.0 / 21.0), 18),
            (LeadTimeMedian, Some(3.5), 19),
            (ChangeFailureRate, Some(0.5), 18),
            (TimeToRestoreMedian, Some(1.25), 4),
            (TimeToRestoreMean, Some(2.0), 4),
            (DowntimeMinutes, Some(175.0), 5),
        ];
        for (metric, value, n) in range {
            rows.push(row(metric, "range", scope, monday(0), value, n));
        }
    }
    rows
}

/// What minijinja's HTML autoescape makes of `text`.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

fn input(rows: &[MetricRow]) -> ReportInput<'_> {
    ReportInput {
        organisation: "Acme Ops",
        generated_at: Utc.with_ymd_and_hms(2024, 3, 25, 8, 30, 0).unwrap(),
        rows,
        kpis: &[],
    }
}

#[test]
fn renders_html_and_charts_from_three_weeks() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("nested/out");
    let rows = sample_rows();
    let out = render(&input(&rows), &out_dir).unwrap();

    assert_eq!(out.html, out_dir.join("report.html"));
    let html = std::fs::read_to_string(&out.html).unwrap();
    for m in MetricId::ALL {
        assert!(html.contains(m.title()), "KPI title {:?}", m.title());
        assert!(
            html.contains(&escaped(m.definition())),
            "glossary for {:?}",
            m.as_str()
        );
    }
    for expected in ["50.0%", "3.5 h", "0.86/day", "175 min", "18", "1.3 h", "2.0 h"] {
        assert!(html.contains(&escaped(expected)), "value {expected}");
    }
    // Latest week's values beside the range values.
    assert!(html.contains("Latest week (2024-03-18)"));
    assert!(html.contains("33.3%"));
    assert!(html.contains("130 min"));
    assert!(html.contains("insufficient data (n &lt; 5)"));
    assert!(html.contains("Acme Ops"));
    assert!(html.contains("2024-03-04 \u{2013} 2024-03-25"));
    assert!(html.contains("payments"));
    assert_eq!(html.matches("<svg").count(), 2);
    // Self-contained: nothing is fetched.
    for external in ["<link", "<script", "src=", "@import", "url("] {
        assert!(!html.contains(external), "external reference {external}");
    }

    assert_eq!(out.charts.len(), 2);
    for png in &out.charts {
        let bytes = std::fs::read(png).unwrap();
        assert!(bytes.starts_with(PNG_MAGIC), "{} is a PNG", png.display());
        // A blank 900×360 PNG compresses to ~2 kB; bars, lines and text make it far larger.
        assert!(bytes.len() > 8_000, "{} has {} bytes", png.display(), bytes.len());
    }
    assert!(out_dir.join("deployments_vs_downtime.png").exists());
    assert!(out_dir.join("change_failure_rate.png").exists());
}

#[test]
fn service_names_from_data_are_escaped() {
    let mut rows = sample_rows();
    for evil in ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"] {
        rows.push(row(
            MetricId::DeploymentCount,
            "range",
            evil,
            monday(0),
            Some(2.0),
            2,
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = render(&input(&rows), dir.path()).unwrap();
    let html = std::fs::read_to_string(out.html).unwrap();

    assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
    assert!(html.contains(&escaped("<img src=x onerror=alert(1)>")));
    assert!(!html.contains("<script"));
    assert!(!html.contains("<img"));
}

#[test]
fn organisation_name_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let rows = sample_rows();
    let input = ReportInput {
        organisation: "<b>Acme</b>",
        ..input(&rows)
    };
    let out = render(&input, dir.path()).unwrap();
    let html = std::fs::read_to_string(out.html).unwrap();
    assert!(!html.contains("<b>Acme"));
    assert!(html.contains("&lt;b&gt;Acme"));
}

#[test]
fn empty_rows_render_a_report_saying_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = render(&input(&[]), dir.path()).unwrap();
    let html = std::fs::read_to_string(&out.html).unwrap();
    // The page says so in prose, not only inside the empty charts.
    assert!(html.contains("<strong>No data.</strong>"));
    assert!(!html.contains("Key figures"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), 2);
    for png in &out.charts {
        assert!(std::fs::read(png).unwrap().starts_with(PNG_MAGIC));
    }
}

#[test]
fn same_input_renders_identical_html() {
    let rows = sample_rows();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = std::fs::read_to_string(render(&input(&rows), a.path()).unwrap().html).unwrap();
    let second = std::fs::read_to_string(render(&input(&rows), b.path()).unwrap().html).unwrap();
    assert_eq!(first, second);

    // Only the generated-at line depends on the clock, and the clock comes from the input.
    let later = ReportInput {
        generated_at: Utc.with_ymd_and_hms(2024, 3, 26, 9, 0, 0).unwrap(),
        ..input(&rows)
    };
    let third = std::fs::read_to_string(render(&later, b.path()).unwrap().html).unwrap();
    let without_generated = |html: &str| -> String {
        html.lines()
            .filter(|l| !l.contains("class=\"meta generated\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_ne!(first, third);
    assert_eq!(without_generated(&first), without_generated(&third));
    assert!(third.contains("Generated 2024-03-26 09:00 UTC"));

    let png_a = std::fs::read(a.path().join("change_failure_rate.png")).unwrap();
    let png_b = std::fs::read(b.path().join("change_failure_rate.png")).unwrap();
    assert_eq!(png_a, png_b);
}

#[test]
fn the_shared_kpis_are_judged_and_escaped_in_the_report() {
    let rows = sample_rows();
    let kpis: Vec<crate::pipeline::kpi::KpiSpec> = vec![
        toml::from_str(
            "metric = \"change_failure_rate\"\ntarget = \"<= 0.15\"\nowners = \"IT+Ops <script>\"\n",
        )
        .unwrap(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let input = ReportInput {
        kpis: &kpis,
        ..input(&rows)
    };
    let html = std::fs::read_to_string(render(&input, dir.path()).unwrap().html).unwrap();
    assert!(html.contains("Shared KPIs"), "a scorecard section");
    assert!(html.contains("IT+Ops &lt;script&gt;"), "owners escaped");
    assert!(!html.contains("IT+Ops <script>"));
    let scored = crate::pipeline::kpi::scorecard(&rows, &kpis);
    assert_eq!(scored.len(), 1);
    assert!(html.contains(&format!("status {}", scored[0].status.as_str())));
}
