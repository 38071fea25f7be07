//! Benchmark: render the steering-committee report (HTML and every chart as SVG and PNG) for a
//! 200-service organisation, and print the time beside its budget (2 s).
//!
//! The metric table is synthesised — 200 services × 13 weeks × every metric id, plus range rows
//! for the quarter and the quarter before — with a seeded generator, so each run renders the same
//! report. Rendering reads metric rows only, so the pipeline is not part of the measurement.
//!
//! Run with `cargo run --release --example bench_render`; exits non-zero when over budget.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tandem::metric::kpi::KpiSpec;
use tandem::metric::{MetricId, MetricRow};
use tandem::report::steering::{SteeringInput, render};

const SERVICES: usize = 200;
const WEEKS: i64 = 13;
const BUDGET: Duration = Duration::from_secs(2);
const RUNS: usize = 5;

/// A small seeded generator (SplitMix64): the same seed gives the same table.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A plausible value and sample size for `m`.
fn sample(rng: &mut Rng, m: MetricId, scale: f64) -> (Option<f64>, i64) {
    let n = (rng.next() * 30.0 * scale) as i64;
    let value = match m.unit() {
        "ratio" if m == MetricId::Availability => 0.99 + rng.next() * 0.01,
        "ratio" => rng.next() * 0.4,
        "hours" => rng.next() * 100.0,
        "minutes" => rng.next() * 300.0 * scale,
        "per_day" => rng.next() * 3.0 * scale,
        "coefficient" => rng.next() * 2.0 - 1.0,
        _ => (rng.next() * 40.0 * scale).round(),
    };
    (Some(value), n)
}

fn row(
    m: MetricId,
    grain: &str,
    scope: Option<&str>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    s: (Option<f64>, i64),
) -> MetricRow {
    MetricRow {
        metric: m.as_str().to_owned(),
        grain: grain.to_owned(),
        scope_type: if scope.is_some() { "service" } else { "org" }.to_owned(),
        scope: scope.unwrap_or("all").to_owned(),
        period_start: start,
        period_end: end,
        value: s.0,
        unit: m.unit().to_owned(),
        n: s.1,
        method: None,
        no_data: None,
    }
}

/// Weekly and range rows for the organisation and every service from `start`.
fn table(rng: &mut Rng, start: DateTime<Utc>) -> Vec<MetricRow> {
    let end = start + chrono::Duration::weeks(WEEKS);
    let services: Vec<String> = (0..SERVICES).map(|i| format!("service-{i:03}")).collect();
    let mut rows = Vec::new();
    for m in MetricId::ALL {
        for scope in std::iter::once(None).chain(services.iter().map(|s| Some(s.as_str()))) {
            let scale = if scope.is_none() { SERVICES as f64 } else { 1.0 };
            for w in 0..WEEKS {
                let from = start + chrono::Duration::weeks(w);
                rows.push(row(
                    m,
                    "week",
                    scope,
                    from,
                    from + chrono::Duration::weeks(1),
                    sample(rng, m, scale),
                ));
            }
            rows.push(row(
                m,
                "range",
                scope,
                start,
                end,
                sample(rng, m, scale * WEEKS as f64),
            ));
        }
    }
    rows
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng(42);
    let start = Utc
        .with_ymd_and_hms(2026, 6, 29, 0, 0, 0)
        .single()
        .ok_or("bad date")?;
    let current = table(&mut rng, start);
    let previous = table(&mut rng, start - chrono::Duration::weeks(WEEKS));
    let kpis: Vec<KpiSpec> = vec![
        toml::from_str("metric = \"change_failure_rate\"\ntarget = \"<= 0.15\"\nowners = \"IT+Ops\"\n")?,
        toml::from_str("metric = \"availability\"\ntarget = \">= 0.995\"\nowners = \"Ops\"\n")?,
        toml::from_str("metric = \"downtime_minutes\"\ntarget = \"<= 600\"\nowners = \"Ops\"\n")?,
    ];
    let slo = BTreeMap::new();
    let input = SteeringInput {
        organisation: "Benchmark Org",
        period: "2026-Q3",
        previous_period: "2026-Q2",
        generated_at: start,
        current: &current,
        weekly: &current,
        previous: &previous,
        previous_weekly: &previous,
        kpis: &kpis,
        slo: &slo,
        default_slo: 0.995,
    };
    let dir = tempfile::tempdir()?;
    // One warm-up run (font registration, page cache), then the measured ones.
    render(&input, &dir.path().join("warm-up"))?;
    let mut times = Vec::new();
    for i in 0..RUNS {
        let t = Instant::now();
        render(&input, &dir.path().join(format!("run-{i}")))?;
        times.push(t.elapsed());
    }
    // What was timed is the whole report: the page with its five inline charts and five PNGs.
    let last = render(&input, &dir.path().join("check"))?;
    let html = std::fs::read_to_string(&last.html)?;
    let png_bytes: u64 = last
        .charts
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()))
        .sum::<Result<u64, _>>()?;
    println!(
        "rendered {} bytes of HTML with {} inline charts and {} PNGs ({png_bytes} bytes)",
        html.len(),
        html.matches("<svg").count(),
        last.charts.len()
    );
    times.sort();
    let median = times[RUNS / 2];
    let worst = times[RUNS - 1];
    println!(
        "steering report, {SERVICES} services × {WEEKS} weeks × {} metrics ({} rows): median {:.3} s, worst {:.3} s (budget {:.1} s) {}",
        MetricId::ALL.len(),
        current.len() + previous.len(),
        median.as_secs_f64(),
        worst.as_secs_f64(),
        BUDGET.as_secs_f64(),
        if worst <= BUDGET { "OK" } else { "OVER BUDGET" }
    );
    if worst > BUDGET {
        std::process::exit(1);
    }
    Ok(())
}
