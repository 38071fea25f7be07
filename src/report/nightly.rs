//! The nightly digest: what happened in the last full day and the last 7 days, which shared KPIs
//! changed status since the previous digest, and how the run that fetched the data went.
//!
//! This file is the definition of the report (what it shows); `reports/nightly.html` and
//! `reports/nightly.md` lay it out. It reads metric rows, KPI specs, the run's health and the
//! previous digest's `summary.json` only: never the canonical tables, never polars.
//!
//! - **Last 24 hours** is the last full calendar day in the report time zone (a digest made at
//!   06:00 covers yesterday, 00:00–24:00), so two digests made on the same day agree and every
//!   figure matches `tandem metrics --period DAY`. **Last 7 days** is the 7 days ending with it.
//! - KPIs are judged on the 7-day figure (a single day rarely has the 5 samples needed to judge).
//! - The Markdown digest is for a chat channel: at most about 15 lines and 1,500 characters
//!   however many services and sources there are; every value printed into it is made inert
//!   ([`escape_markdown`]): Markdown's special characters escaped, URLs defanged, `@here`-style
//!   and `<!channel>`-style mentions broken, so a service name cannot inject a link, formatting
//!   or a notification.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, context};
use serde::{Deserialize, Serialize};

use super::ReportError;
use super::archive::{self, Meta};
use crate::metric::kpi::{KpiSpec, Status};
use crate::metric::{MISSING, MetricId, MetricRow, NO_DATA, format_value};
use crate::sync::RunHealth;

/// The report kind, as named on the command line and in the archive.
pub const KIND: &str = "nightly";
/// The HTML page in a run folder.
pub const HTML_FILE: &str = "report.html";
/// The Markdown digest in a run folder.
pub const DIGEST_FILE: &str = "digest.md";
/// The figures the next digest compares with.
pub const SUMMARY_FILE: &str = "summary.json";

const HTML_TEMPLATE_NAME: &str = "nightly.html";
const HTML_TEMPLATE: &str = include_str!("../../reports/nightly.html");
const MD_TEMPLATE_NAME: &str = "nightly.md";
const MD_TEMPLATE: &str = include_str!("../../reports/nightly.md");

/// The headline counts, in the order shown: metric id and title.
pub const HEADLINES: [(&str, &str); 5] = [
    ("deployment_count", "Deployments"),
    ("failed_deployment_count", "Failed deployments"),
    ("incidents_opened", "Incidents opened"),
    ("incidents_resolved", "Incidents resolved"),
    ("sla_breaches", "SLA breaches"),
];

/// Headlines broken down by service (the ones that point at someone to talk to).
const BY_SERVICE: [&str; 2] = ["failed_deployment_count", "incidents_opened"];

/// How many items of a list the Markdown digest names before saying "+N more".
const MD_SERVICES: usize = 3;
const MD_CHANGES: usize = 3;
const MD_FAILURES: usize = 2;
/// Longest source string (service name, KPI scope) the Markdown digest prints, in characters.
const MD_TEXT: usize = 48;
/// Longest failure (`source/stream: error`) the Markdown digest prints: room for the error's
/// hint, which comes after the URL.
const MD_ERROR: usize = 150;

/// The days a digest covers, in the report time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The last full day ("last 24 hours").
    pub day: NaiveDate,
    /// The first of the 7 days ending with `day`.
    pub first: NaiveDate,
}

impl Window {
    /// The window whose last day is `day`.
    pub fn ending(day: NaiveDate) -> Self {
        Self {
            day,
            first: day - Duration::days(6),
        }
    }

    /// The window a digest made at `now` covers: the last full day before `now` in `tz`.
    pub fn before(now: DateTime<Utc>, tz: chrono_tz::Tz) -> Self {
        Self::ending(now.with_timezone(&tz).date_naive() - Duration::days(1))
    }

    /// The 7 days as a `--period` (end exclusive), to be divided into days.
    pub fn period(&self) -> String {
        format!("{}..{}", self.first, self.day + Duration::days(1))
    }

    /// How the window is shown.
    pub fn label(&self) -> String {
        format!("{} (7 days from {})", self.day, self.first)
    }
}

/// What a digest is made from.
#[derive(Debug, Clone)]
pub struct NightlyInput<'a> {
    /// Organisation name shown in the title.
    pub organisation: &'a str,
    /// When the digest is made.
    pub generated_at: DateTime<Utc>,
    /// The report time zone's name, as shown.
    pub time_zone: &'a str,
    /// The days covered.
    pub window: Window,
    /// The metric table of the 7 days at day grain (with its `range` rows for the 7 days).
    pub rows: &'a [MetricRow],
    /// The shared KPIs.
    pub kpis: &'a [KpiSpec],
    /// How the last run went, if one was recorded.
    pub health: Option<&'a RunHealth>,
    /// The previous digest's summary, if there is one.
    pub previous: Option<&'a Summary>,
    /// Whether the previous digest's summary could not be read (then `previous` is `None`, and
    /// the digest says so instead of calling itself the first).
    pub previous_unreadable: bool,
    /// The table versions the digest's figures were computed from, for its `meta.json`.
    pub read: Option<archive::TableVersions>,
}

/// A headline count for the day and the 7 days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Metric id.
    pub metric: String,
    /// The last day's value.
    pub day: Option<f64>,
    /// The 7 days' value.
    pub week: Option<f64>,
}

/// A KPI's status in one digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiState {
    /// `metric@scope`: what identifies a KPI from one digest to the next.
    pub key: String,
    /// The metric's title.
    pub title: String,
    /// The scope as written in the config.
    pub scope: String,
    /// The status on the 7-day figure.
    pub status: Status,
    /// The 7-day value, formatted.
    pub value: String,
}

/// What a digest leaves for the next one to compare with (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// When the digest was made.
    pub generated_at: DateTime<Utc>,
    /// Its last day.
    pub day: NaiveDate,
    /// The headline counts.
    pub figures: Vec<Figure>,
    /// Every KPI's status.
    pub kpis: Vec<KpiState>,
}

impl Summary {
    /// Reads a run folder's `summary.json`; `None` when it is missing or unreadable.
    pub fn read(dir: &Path) -> Option<Self> {
        Self::try_read(dir).ok()
    }

    /// Reads a run folder's `summary.json`, saying why it cannot be read.
    pub fn try_read(dir: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(dir.join(SUMMARY_FILE)).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }
}

/// One headline as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Headline {
    /// Title, e.g. `Deployments`.
    pub title: String,
    /// The day's value.
    pub day: String,
    /// Change of the day's value since the previous digest's day (`+2`, `−1`, `±0`; empty
    /// without a previous digest or value).
    pub day_change: String,
    /// The 7 days' value.
    pub week: String,
    /// Change of the 7 days' value since the previous digest.
    pub week_change: String,
    /// Services with a non-zero 7-day value, largest first: `(service, value)`.
    pub services: Vec<(String, String)>,
    /// The first few of `services` for the Markdown digest, e.g. `checkout 2, search 1, +3 more`.
    pub services_short: String,
}

/// A KPI as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiLine {
    /// Title.
    pub title: String,
    /// Scope as written.
    pub scope: String,
    /// Owners.
    pub owners: String,
    /// Target as written.
    pub target: String,
    /// The 7-day value.
    pub value: String,
    /// Its sample size.
    pub n: i64,
    /// Status now.
    pub status: &'static str,
    /// Status in the previous digest, when there was one with this KPI.
    pub previous: Option<&'static str>,
}

/// A KPI whose status changed since the previous digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChange {
    /// Title.
    pub title: String,
    /// Scope as written.
    pub scope: String,
    /// Old status.
    pub from: &'static str,
    /// New status.
    pub to: &'static str,
}

/// The run's health as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthView {
    /// When the run started, e.g. `2026-11-22 06:00 UTC`.
    pub when: String,
    /// How long sync and metrics took, in whole seconds.
    pub seconds: String,
    /// Sources that synced every stream.
    pub ok: usize,
    /// Sources in the run.
    pub total: usize,
    /// Records committed.
    pub records: usize,
    /// Records quarantined.
    pub quarantined: usize,
    /// Rate-limit answers.
    pub rate_limited: u64,
    /// Seconds spent waiting on rate limits.
    pub waited: String,
    /// Per source.
    pub sources: Vec<SourceLine>,
    /// Failed streams as `source/stream: error`, for the Markdown digest (first few, shortened).
    pub failures_short: Vec<String>,
    /// Failed streams beyond `failures_short`.
    pub failures_more: usize,
}

/// One source's health as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceLine {
    /// Source name.
    pub source: String,
    /// Every stream synced.
    pub ok: bool,
    /// Failed streams with their error's first line.
    pub failures: Vec<String>,
    /// Records committed.
    pub records: usize,
    /// Records quarantined.
    pub quarantined: usize,
    /// Requests sent.
    pub requests: u64,
    /// Rate-limit answers.
    pub rate_limited: u64,
    /// Seconds waited on rate limits.
    pub waited: String,
}

/// Everything the two templates show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    /// Organisation name.
    pub organisation: String,
    /// When made, e.g. `2026-11-22 06:00 UTC`.
    pub generated_at: String,
    /// The report time zone.
    pub time_zone: String,
    /// The last day, e.g. `Sat 2026-11-21`.
    pub day: String,
    /// The 7 days, e.g. `2026-11-15 to 2026-11-21`.
    pub week: String,
    /// Whether the metric table had any row for the window.
    pub has_data: bool,
    /// The headline counts.
    pub headlines: Vec<Headline>,
    /// Every KPI.
    pub kpis: Vec<KpiLine>,
    /// KPI counts by status, e.g. `2 green, 1 red`.
    pub kpi_counts: String,
    /// When the previous digest was made; `None` on the first.
    pub previous_at: Option<String>,
    /// Whether there was a previous digest whose summary could not be read.
    pub previous_unreadable: bool,
    /// KPIs whose status changed since the previous digest.
    pub changes: Vec<StatusChange>,
    /// The first few changes for the Markdown digest, e.g. `Availability (org) green → red`.
    pub changes_short: Vec<String>,
    /// Changes beyond `changes_short`.
    pub changes_more: usize,
    /// How the last run went.
    pub health: Option<HealthView>,
    /// Why some figures have no data, each reason once.
    pub no_data: Vec<String>,
    /// The first of them, clipped, for the Markdown digest.
    pub no_data_short: String,
}

/// Builds what the digest shows and what it leaves for the next one.
pub fn build(input: &NightlyInput<'_>) -> (Digest, Summary) {
    let org: Vec<&MetricRow> = input
        .rows
        .iter()
        .filter(|r| r.scope_type == "org" && r.scope == "all")
        .collect();
    // The last day is the latest day period in the table: the window's own last day.
    let day_start = org
        .iter()
        .filter(|r| r.grain == "day")
        .map(|r| r.period_start)
        .max();
    let find = |metric: &str, grain: &str| {
        org.iter()
            .find(|r| {
                r.metric == metric
                    && r.grain == grain
                    && (grain == "range" || Some(r.period_start) == day_start)
            })
            .copied()
    };

    let mut figures = Vec::new();
    let mut headlines = Vec::new();
    for (metric, title) in HEADLINES {
        let (day, week) = (find(metric, "day"), find(metric, "range"));
        let figure = Figure {
            metric: metric.to_owned(),
            day: day.and_then(|r| r.value),
            week: week.and_then(|r| r.value),
        };
        let before = input
            .previous
            .and_then(|p| p.figures.iter().find(|f| f.metric == metric));
        let services = if BY_SERVICE.contains(&metric) {
            by_service(input.rows, metric)
        } else {
            Vec::new()
        };
        // A count from a source that does not cover the day is "no data", not "0".
        let shown = |row: Option<&&MetricRow>, value| match row.and_then(|r| r.no_data.as_ref()) {
            Some(_) => NO_DATA.to_owned(),
            None => format_value(value, "count"),
        };
        headlines.push(Headline {
            title: title.to_owned(),
            day: shown(day.as_ref(), figure.day),
            day_change: change(figure.day, before.and_then(|b| b.day)),
            week: shown(week.as_ref(), figure.week),
            week_change: change(figure.week, before.and_then(|b| b.week)),
            services_short: shortlist(
                services.iter().map(|(s, v)| format!("{} {v}", clip(s, MD_TEXT))),
                MD_SERVICES,
            ),
            services,
        });
        figures.push(figure);
    }

    let mut kpis = Vec::new();
    let mut states = Vec::new();
    for spec in input.kpis {
        let Ok((scope_type, scope)) = spec.scope_key() else {
            continue;
        };
        let row = input.rows.iter().find(|r| {
            r.metric == spec.metric && r.grain == "range" && r.scope_type == scope_type && r.scope == scope
        });
        let status = spec.judge(row);
        let title =
            MetricId::parse(&spec.metric).map_or_else(|| spec.metric.clone(), |m| m.title().to_owned());
        let key = format!("{}@{}", spec.metric, spec.scope);
        let previous = input
            .previous
            .and_then(|p| p.kpis.iter().find(|k| k.key == key))
            .map(|k| k.status.as_str());
        let value = row.map_or_else(|| MISSING.to_owned(), MetricRow::display_value);
        kpis.push(KpiLine {
            title: title.clone(),
            scope: spec.scope.clone(),
            owners: spec.owners.clone(),
            target: spec.target.to_string(),
            value: value.clone(),
            n: row.map_or(0, |r| r.n),
            status: status.as_str(),
            previous,
        });
        states.push(KpiState {
            key,
            title,
            scope: spec.scope.clone(),
            status,
            value,
        });
    }
    let changes: Vec<StatusChange> = kpis
        .iter()
        .filter_map(|k| {
            let from = k.previous?;
            (from != k.status).then(|| StatusChange {
                title: k.title.clone(),
                scope: k.scope.clone(),
                from,
                to: k.status,
            })
        })
        .collect();
    let changes_short = changes
        .iter()
        .take(MD_CHANGES)
        .map(|c| {
            format!(
                "{} ({}) {} → {}",
                clip(&c.title, MD_TEXT),
                clip(&c.scope, MD_TEXT),
                c.from,
                c.to
            )
        })
        .collect();

    let no_data = crate::report::view::no_data_reasons(input.rows);
    let digest = Digest {
        organisation: clip(input.organisation, MD_TEXT),
        generated_at: stamp(input.generated_at),
        time_zone: input.time_zone.to_owned(),
        day: input.window.day.format("%a %Y-%m-%d").to_string(),
        week: format!("{} to {}", input.window.first, input.window.day),
        has_data: !org.is_empty(),
        headlines,
        kpi_counts: kpi_counts(&kpis),
        kpis,
        previous_at: input.previous.map(|p| stamp(p.generated_at)),
        previous_unreadable: input.previous.is_none() && input.previous_unreadable,
        changes_more: changes.len().saturating_sub(MD_CHANGES),
        changes_short,
        changes,
        health: input.health.map(health_view),
        no_data_short: shortlist(no_data.iter().map(|r| clip(r, MD_ERROR)), MD_FAILURES),
        no_data,
    };
    let summary = Summary {
        generated_at: input.generated_at,
        day: input.window.day,
        figures,
        kpis: states,
    };
    (digest, summary)
}

/// Services with a non-zero 7-day value of `metric`, largest first, then by name.
fn by_service(rows: &[MetricRow], metric: &str) -> Vec<(String, String)> {
    let mut found: Vec<(&str, f64)> = rows
        .iter()
        .filter(|r| r.metric == metric && r.grain == "range" && r.scope_type == "service")
        .filter_map(|r| r.value.filter(|v| *v > 0.0).map(|v| (r.scope.as_str(), v)))
        .collect();
    found.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    found
        .into_iter()
        .map(|(s, v)| (s.to_owned(), format_value(Some(v), "count")))
        .collect()
}

/// `+2`, `−1` or `±0`; empty when either side is missing.
fn change(now: Option<f64>, before: Option<f64>) -> String {
    match crate::metric::kpi::delta(now, before) {
        Some(d) if d > 0.0 => format!("+{}", format_value(Some(d), "count")),
        Some(d) if d < 0.0 => format!("−{}", format_value(Some(-d), "count")),
        Some(_) => "±0".to_owned(),
        None => String::new(),
    }
}

/// The first `keep` items joined with commas, then `+N more`.
fn shortlist(items: impl Iterator<Item = String>, keep: usize) -> String {
    let items: Vec<String> = items.collect();
    let mut text = items.iter().take(keep).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > keep {
        let _ = write!(text, ", +{} more", items.len() - keep);
    }
    text
}

/// A source string cut to `max` characters, on one line.
fn clip(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `text` with each URL replaced by `…`: in a chat line the URL (host, port, path, query) would
/// crowd out the hint that follows it, and the HTML page and the logs keep it in full.
fn without_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.starts_with("http://") || word.starts_with("https://") {
                match word.chars().last() {
                    Some(c @ (':' | ',' | ';' | '.')) => format!("…{c}"),
                    _ => "…".to_owned(),
                }
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn seconds(ms: u64) -> String {
    format_value(Some(ms as f64 / 1000.0), "count")
}

fn kpi_counts(kpis: &[KpiLine]) -> String {
    [
        Status::Green,
        Status::Amber,
        Status::Red,
        Status::Insufficient,
        Status::NoData,
    ]
    .into_iter()
    .filter_map(|s| {
        let n = kpis.iter().filter(|k| k.status == s.as_str()).count();
        (n > 0).then(|| format!("{n} {}", s.label()))
    })
    .collect::<Vec<_>>()
    .join(", ")
}

fn health_view(h: &RunHealth) -> HealthView {
    let failures: Vec<String> = h
        .sources
        .iter()
        .flat_map(|s| s.failures.iter().map(move |f| format!("{}/{f}", s.source)))
        .collect();
    HealthView {
        when: stamp(h.started_at),
        seconds: format_value(Some(h.seconds), "count"),
        ok: h.sources.iter().filter(|s| s.ok()).count(),
        total: h.sources.len(),
        records: h.sources.iter().map(|s| s.records).sum(),
        quarantined: h.sources.iter().map(|s| s.quarantined).sum(),
        rate_limited: h.sources.iter().map(|s| s.rate_limited).sum(),
        waited: seconds(h.sources.iter().map(|s| s.paced_ms).sum()),
        sources: h
            .sources
            .iter()
            .map(|s| SourceLine {
                source: s.source.clone(),
                ok: s.ok(),
                failures: s.failures.clone(),
                records: s.records,
                quarantined: s.quarantined,
                requests: s.requests,
                rate_limited: s.rate_limited,
                waited: seconds(s.paced_ms),
            })
            .collect(),
        failures_short: failures
            .iter()
            .take(MD_FAILURES)
            .map(|f| clip(&without_urls(f), MD_ERROR))
            .collect(),
        failures_more: failures.len().saturating_sub(MD_FAILURES),
    }
}

/// Makes text from a source inert in a chat message (Slack, Microsoft Teams, Mattermost), so it
/// prints as itself and can neither notify nor link:
///
/// - URLs are defanged (`https://evil.example/x` → `hxxps[://]evil[.]example/x`, likewise a word
///   starting `www.`): no client links that, and a reader still sees where it pointed.
/// - Mentions (`@here`, `@channel`, `@everyone`, `@all`, `@someone`) get a word joiner (U+2060,
///   invisible) after the `@`, which no client's mention syntax accepts.
/// - `<`, `>` and `&` become `&lt;`, `&gt;` and `&amp;`: Slack's documented way to show them
///   literally (so `<!channel>` or `<@U123>` cannot notify when posted through the API), which
///   CommonMark (Teams, Mattermost) also renders as the character.
/// - What CommonMark would read as formatting, links or table cells is backslash-escaped, and a
///   line break becomes a space (it could start a heading or list item of its own).
pub fn escape_markdown(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let defanged = one_line.split(' ').map(defang_url).collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(defanged.len());
    let mut previous: Option<char> = None;
    let mut chars = defanged.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '|' | '~' | '#' | '!' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '@' if previous.is_none_or(|p| !p.is_alphanumeric())
                && chars.peek().is_some_and(|n| n.is_alphanumeric()) =>
            {
                out.push('@');
                out.push('\u{2060}');
            }
            c => out.push(c),
        }
        previous = Some(c);
    }
    out
}

/// Top-level domains chat clients link on their own, without a scheme: a bare `evil.com` is a
/// link in Slack and Teams. A word under another ending is linked only with a path (below).
const LINKED_TLDS: [&str; 16] = [
    "com", "net", "org", "io", "co", "dev", "app", "ai", "me", "info", "biz", "xyz", "ly", "gl", "sh", "to",
];

/// Whether `word` reads as a host a chat client would link: `host.tld` with a known ending, or
/// `host.name/path` with an alphabetic last label (`evil.example/login`). `checkout.v2` and
/// `payments.api` stay as they are.
fn looks_like_host(lower: &str) -> bool {
    let trimmed = lower.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '/' && c != '.');
    let (host, has_path) = match trimmed.split_once('/') {
        Some((host, _)) => (host, true),
        None => (trimmed, false),
    };
    let Some((name, tld)) = host.rsplit_once('.') else {
        return false;
    };
    let labelled = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    let alphabetic = (2..=24).contains(&tld.len()) && tld.chars().all(|c| c.is_ascii_alphabetic());
    labelled && alphabetic && (has_path || LINKED_TLDS.contains(&tld))
}

/// A word that is a URL (`scheme://…`, `www.…`, or a bare host a chat client links), defanged
/// so no chat client links it.
fn defang_url(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    if !lower.contains("://") && !lower.starts_with("www.") && !looks_like_host(&lower) {
        return word.to_owned();
    }
    // The scheme is the run of letters before `://` (the word may start with `<`, `(`, …).
    let scheme_start = lower.find("://").map(|end| {
        // Past the whole character that ends the run (a source's text may put `状态页：` there).
        lower[..end]
            .char_indices()
            .rfind(|(_, c)| !c.is_ascii_alphanumeric())
            .map_or(0, |(i, c)| i + c.len_utf8())
    });
    let word = match scheme_start {
        Some(i) if lower[i..].starts_with("http") => {
            format!("{}hxxp{}", &word[..i], word.get(i + 4..).unwrap_or_default())
        }
        _ => word.to_owned(),
    };
    word.replacen("://", "[://]", 1).replace('.', "[.]")
}

/// The HTML page. Autoescaped: every value from data is escaped.
pub fn render_html(digest: &Digest) -> Result<String, ReportError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_template(HTML_TEMPLATE_NAME, HTML_TEMPLATE)
        .and_then(|()| env.get_template(HTML_TEMPLATE_NAME))
        .and_then(|t| t.render(context! { d => Serde(digest) }))
        .map_err(|source| ReportError::Template {
            name: HTML_TEMPLATE_NAME,
            source,
        })
}

/// The Markdown digest. Every string printed by the template is Markdown-escaped (the
/// template's own text is not), the way the HTML template autoescapes.
pub fn render_markdown(digest: &Digest) -> Result<String, ReportError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_formatter(|out, state, value| match value.as_str() {
        Some(text) => out
            .write_str(&escape_markdown(text))
            .map_err(minijinja::Error::from),
        None => minijinja::escape_formatter(out, state, value),
    });
    let text = env
        .add_template(MD_TEMPLATE_NAME, MD_TEMPLATE)
        .and_then(|()| env.get_template(MD_TEMPLATE_NAME))
        .and_then(|t| t.render(context! { d => Serde(digest) }))
        .map_err(|source| ReportError::Template {
            name: MD_TEMPLATE_NAME,
            source,
        })?;
    // Blank lines left by the template's blocks would break a chat message into paragraphs.
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    lines.push("");
    Ok(lines.join("\n"))
}

/// Files a digest wrote.
#[derive(Debug, Clone)]
pub struct NightlyOutput {
    /// The run folder.
    pub dir: PathBuf,
    /// The HTML page.
    pub html: PathBuf,
    /// The Markdown digest.
    pub digest: PathBuf,
    /// The index of every report under the report directory.
    pub index: PathBuf,
}

/// Writes a digest into a fresh run folder under `out` (`<out>/nightly/<timestamp>/`):
/// `report.html`, `digest.md`, `summary.json`, `meta.json`, then rewrites `<out>/index.html`.
/// The previous digest compared with is the nightly run under `out` for the latest day before this
/// one (so a digest made again for a past day never compares with a later day).
pub fn write(out: &Path, input: &NightlyInput<'_>) -> Result<NightlyOutput, ReportError> {
    let dir = archive::run_dir(out, KIND, input.generated_at)?;
    let previous = previous_digest(out, &dir, input.window.day);
    let input = NightlyInput {
        previous: previous.as_ref().ok().and_then(Option::as_ref),
        previous_unreadable: previous.is_err(),
        ..input.clone()
    };
    let (digest, summary) = build(&input);
    let io = |path: PathBuf| move |source| ReportError::Io { path, source };
    let html = dir.join(HTML_FILE);
    std::fs::write(&html, render_html(&digest)?).map_err(io(html.clone()))?;
    let md = dir.join(DIGEST_FILE);
    std::fs::write(&md, render_markdown(&digest)?).map_err(io(md.clone()))?;
    let summary_path = dir.join(SUMMARY_FILE);
    let text = serde_json::to_string_pretty(&summary).map_err(|e| ReportError::Io {
        path: summary_path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&summary_path, text).map_err(io(summary_path.clone()))?;
    // meta.json last: a folder is listed (and compared with) only once it is complete.
    archive::write_meta(
        &dir,
        &Meta {
            kind: KIND.to_owned(),
            title: format!("{} nightly digest", input.organisation),
            period: input.window.label(),
            generated_at: input.generated_at,
            main: HTML_FILE.to_owned(),
            extra: vec![DIGEST_FILE.to_owned()],
            read: input.read.clone(),
        },
    )?;
    let published = archive::publish(&dir)?;
    let index = archive::write_index(out, input.organisation)?;
    Ok(NightlyOutput {
        html: archive::moved(&html, &dir, &published),
        digest: archive::moved(&md, &dir, &published),
        dir: published,
        index,
    })
}

/// The summary of the digest to compare with: among the nightly runs under `out` other than
/// `except`, the one for the latest day before `day` (the newest made, when several are). `Ok(None)`
/// when there is none, `Err(())` (after a warning naming the file) when that one's summary cannot
/// be read; such a run is dated by its `meta.json` period, which starts with its day.
fn previous_digest(out: &Path, except: &Path, day: NaiveDate) -> Result<Option<Summary>, ()> {
    // The best candidate so far: its day, when it was made, its summary or why it is unreadable.
    type Candidate = (NaiveDate, DateTime<Utc>, Result<Summary, (PathBuf, String)>);
    let mut best: Option<Candidate> = None;
    for entry in archive::runs(out) {
        if entry.meta.kind != KIND || entry.dir == except {
            continue;
        }
        let (its_day, summary) = match Summary::try_read(&entry.dir) {
            Ok(summary) => (Some(summary.day), Ok(summary)),
            Err(error) => (
                entry
                    .meta
                    .period
                    .get(..10)
                    .and_then(|d| d.parse::<NaiveDate>().ok()),
                Err((entry.dir.join(SUMMARY_FILE), error)),
            ),
        };
        let Some(its_day) = its_day.filter(|d| *d < day) else {
            continue;
        };
        let made = entry.meta.generated_at;
        if best.as_ref().is_none_or(|(d, at, _)| (its_day, made) > (*d, *at)) {
            best = Some((its_day, made, summary));
        }
    }
    match best {
        None => Ok(None),
        Some((_, _, Ok(summary))) => Ok(Some(summary)),
        Some((_, _, Err((path, error)))) => {
            tracing::warn!(
                path = %path.display(),
                %error,
                "Previous nightly digest unreadable; this digest is not compared with it."
            );
            Err(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
