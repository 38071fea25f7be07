use chrono::TimeZone;

use super::*;
use crate::sync::{StreamOutcome, SyncReport};

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn row(metric: &str, grain: &str, scope: &str, day: u32, value: Option<f64>, n: i64) -> MetricRow {
    let (start, end) = match grain {
        "day" => (at(day, 0), at(day + 1, 0)),
        _ => (at(15, 0), at(22, 0)),
    };
    let unit = match metric {
        "change_failure_rate" | "availability" | "sla_breach_rate" => "ratio",
        "lead_time_median" => "hours",
        _ => "count",
    };
    MetricRow {
        metric: metric.into(),
        grain: grain.into(),
        scope_type: if scope == "all" { "org" } else { "service" }.into(),
        scope: scope.into(),
        period_start: start,
        period_end: end,
        value,
        unit: unit.into(),
        n,
        method: None,
        no_data: None,
    }
}

fn count(metric: &str, grain: &str, scope: &str, day: u32, value: f64) -> MetricRow {
    row(metric, grain, scope, day, Some(value), value as i64)
}

/// Two days and the 7-day range of the headline counts, with a per-service breakdown.
fn rows() -> Vec<MetricRow> {
    vec![
        count("deployment_count", "day", "all", 20, 9.0),
        count("deployment_count", "day", "all", 21, 4.0),
        count("deployment_count", "range", "all", 0, 31.0),
        count("failed_deployment_count", "day", "all", 20, 2.0),
        count("failed_deployment_count", "day", "all", 21, 1.0),
        count("failed_deployment_count", "range", "all", 0, 3.0),
        count("failed_deployment_count", "range", "search", 0, 1.0),
        count("failed_deployment_count", "range", "checkout", 0, 2.0),
        count("failed_deployment_count", "range", "billing", 0, 0.0),
        count("incidents_opened", "day", "all", 21, 2.0),
        count("incidents_opened", "range", "all", 0, 5.0),
        count("incidents_opened", "range", "search", 0, 1.0),
        count("incidents_opened", "range", "checkout", 0, 1.0),
        count("incidents_opened", "range", "billing", 0, 1.0),
        count("incidents_opened", "range", "auth", 0, 2.0),
        count("incidents_resolved", "day", "all", 21, 0.0),
        count("incidents_resolved", "range", "all", 0, 4.0),
        // sla_breaches has no rows: shown as missing, not as zero.
        row("change_failure_rate", "range", "all", 0, Some(3.0 / 31.0), 31),
        row("availability", "range", "all", 0, Some(0.999), 7),
        row("lead_time_median", "range", "all", 0, Some(80.0), 10),
        // A day-grain value of a KPI metric must not be judged: the 7 days are.
        row("lead_time_median", "day", "all", 21, Some(1.0), 10),
    ]
}

fn kpi(metric: &str, scope: &str, target: &str) -> KpiSpec {
    KpiSpec {
        metric: metric.into(),
        scope: scope.into(),
        target: target.parse().unwrap(),
        owners: "IT+Ops".into(),
        amber_margin: 0.10,
    }
}

fn kpis() -> Vec<KpiSpec> {
    vec![
        kpi("change_failure_rate", "org", "<= 0.15"),
        kpi("availability", "org", ">= 0.995"),
        kpi("sla_breach_rate", "service:checkout", "<= 0.10"),
        kpi("lead_time_median", "org", "<= 72"),
    ]
}

fn state(metric: &str, scope: &str, status: Status) -> KpiState {
    KpiState {
        key: format!("{metric}@{scope}"),
        title: metric.into(),
        scope: scope.into(),
        status,
        value: "x".into(),
    }
}

fn previous() -> Summary {
    Summary {
        generated_at: at(21, 6),
        day: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
        figures: vec![
            Figure {
                metric: "deployment_count".into(),
                day: Some(2.0),
                week: Some(33.0),
            },
            Figure {
                metric: "failed_deployment_count".into(),
                day: Some(1.0),
                week: None,
            },
        ],
        kpis: vec![
            state("change_failure_rate", "org", Status::Red),
            state("availability", "org", Status::Green),
            state("lead_time_median", "org", Status::Amber),
        ],
    }
}

fn health() -> RunHealth {
    let stream = |source: &str, stream: &str, records, quarantined, error: Option<&str>| StreamOutcome {
        source: source.into(),
        stream: stream.into(),
        records,
        quarantined,
        seconds: 1.0,
        error: error.map(str::to_owned),
        auth_failed: false,
        requests: Default::default(),
    };
    let mut deployments = stream("github", "deployments", 10, 1, None);
    deployments.requests = tandem_connectors::http::RequestCounts {
        requests: 12,
        retries: 1,
        rate_limited: 2,
        not_modified: 0,
        paced_ms: 4_500,
    };
    let report = SyncReport {
        streams: vec![
            deployments,
            stream("github", "pulls", 5, 0, None),
            stream(
                "pagerduty",
                "incidents",
                3,
                2,
                Some("server error 503\nretried 4 times"),
            ),
            stream("jira", "issues", 7, 0, None),
        ],
    };
    RunHealth::from_report(&report, at(22, 5), 42.4)
}

fn input<'a>(
    rows: &'a [MetricRow],
    kpis: &'a [KpiSpec],
    health: Option<&'a RunHealth>,
    previous: Option<&'a Summary>,
) -> NightlyInput<'a> {
    NightlyInput {
        organisation: "Acme",
        generated_at: at(22, 6),
        time_zone: "UTC",
        window: Window::ending(NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()),
        rows,
        kpis,
        health,
        previous,
        previous_unreadable: false,
        read: None,
    }
}

#[test]
fn the_window_is_the_last_full_day_in_the_report_time_zone() {
    // 00:30 UTC on the 22nd is 01:30 in Berlin (the 22nd) but 19:30 on the 21st in New York.
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 0, 30, 0).unwrap();
    let berlin = Window::before(now, chrono_tz::Europe::Berlin);
    assert_eq!(berlin.day, NaiveDate::from_ymd_opt(2026, 11, 21).unwrap());
    assert_eq!(berlin.first, NaiveDate::from_ymd_opt(2026, 11, 15).unwrap());
    assert_eq!(berlin.period(), "2026-11-15..2026-11-22");
    let new_york = Window::before(now, chrono_tz::America::New_York);
    assert_eq!(new_york.day, NaiveDate::from_ymd_opt(2026, 11, 20).unwrap());
}

#[test]
fn headlines_are_the_last_day_and_the_seven_days_with_changes_since_the_previous_digest() {
    let (rows, kpis, prev) = (rows(), kpis(), previous());
    let (digest, summary) = build(&input(&rows, &kpis, None, Some(&prev)));
    let shown: Vec<(&str, &str, &str, &str, &str)> = digest
        .headlines
        .iter()
        .map(|h| {
            (
                h.title.as_str(),
                h.day.as_str(),
                h.day_change.as_str(),
                h.week.as_str(),
                h.week_change.as_str(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            // 4 on the 21st (not the 9 of the 20th); 4 − 2 = +2, 31 − 33 = −2.
            ("Deployments", "4", "+2", "31", "−2"),
            // The previous digest had the day (1) but no 7-day value.
            ("Failed deployments", "1", "±0", "3", ""),
            ("Incidents opened", "2", "", "5", ""),
            ("Incidents resolved", "0", "", "4", ""),
            ("SLA breaches", "—", "", "—", ""),
        ]
    );
    // Only non-zero services, largest first, ties by name.
    let failed = &digest.headlines[1];
    assert_eq!(
        failed.services,
        [("checkout".into(), "2".into()), ("search".into(), "1".into())]
    );
    assert_eq!(failed.services_short, "checkout 2, search 1");
    assert_eq!(
        digest.headlines[2].services_short,
        "auth 2, billing 1, checkout 1, +1 more"
    );
    assert!(
        digest.headlines[0].services.is_empty(),
        "deployments are not broken down"
    );

    assert_eq!(summary.day, NaiveDate::from_ymd_opt(2026, 11, 21).unwrap());
    assert_eq!(
        summary.figures[0],
        Figure {
            metric: "deployment_count".into(),
            day: Some(4.0),
            week: Some(31.0)
        }
    );
    assert_eq!(summary.figures[4].day, None);
}

#[test]
fn kpis_are_judged_on_the_seven_days_and_only_status_changes_are_listed() {
    let (rows, kpis, prev) = (rows(), kpis(), previous());
    let (digest, summary) = build(&input(&rows, &kpis, None, Some(&prev)));
    let statuses: Vec<(&str, &str, Option<&str>)> = digest
        .kpis
        .iter()
        .map(|k| (k.scope.as_str(), k.status, k.previous))
        .collect();
    assert_eq!(
        statuses,
        [
            // 3/31 = 9.7% ≤ 15%.
            ("org", "green", Some("red")),
            // 99.9% ≥ 99.5%, on 7 samples.
            ("org", "green", Some("green")),
            // No row: no colour; not in the previous digest: not a change.
            ("service:checkout", "insufficient", None),
            // 80 h > 72 h × 1.1 = 79.2 h: red, not amber. The day row (1 h) is not used.
            ("org", "red", Some("amber")),
        ]
    );
    let changes: Vec<(&str, &str, &str)> = digest
        .changes
        .iter()
        .map(|c| (c.title.as_str(), c.from, c.to))
        .collect();
    assert_eq!(
        changes,
        [
            (MetricId::ChangeFailureRate.title(), "red", "green"),
            (MetricId::LeadTimeMedian.title(), "amber", "red"),
        ]
    );
    assert_eq!(digest.kpi_counts, "2 green, 1 red, 1 insufficient");
    assert_eq!(digest.previous_at.as_deref(), Some("2026-11-21 06:00 UTC"));
    let keys: Vec<(&str, Status)> = summary.kpis.iter().map(|k| (k.key.as_str(), k.status)).collect();
    assert_eq!(
        keys,
        [
            ("change_failure_rate@org", Status::Green),
            ("availability@org", Status::Green),
            ("sla_breach_rate@service:checkout", Status::Insufficient),
            ("lead_time_median@org", Status::Red),
        ]
    );
}

#[test]
fn run_health_sums_sources_and_keeps_the_first_line_of_each_error() {
    let h = health();
    assert_eq!(h.sources.len(), 3);
    assert_eq!(
        (
            h.sources[0].records,
            h.sources[0].quarantined,
            h.sources[0].streams_ok
        ),
        (15, 1, 2)
    );
    assert_eq!(h.sources[0].requests, 12);
    assert_eq!(h.sources[1].failures, ["incidents: server error 503"]);
    assert_eq!(h.sources[2].requests, 0, "no traffic recorded: none made");
    let view = health_view(&h);
    assert_eq!(
        (view.ok, view.total, view.records, view.quarantined),
        (2, 3, 25, 3)
    );
    assert_eq!(
        (view.rate_limited, view.waited.as_str(), view.seconds.as_str()),
        (2, "5", "42")
    );
    assert_eq!(view.failures_short, ["pagerduty/incidents: server error 503"]);
}

#[test]
fn markdown_digest_snapshot() {
    let (rows, kpis, prev, health) = (rows(), kpis(), previous(), health());
    let (digest, _) = build(&input(&rows, &kpis, Some(&health), Some(&prev)));
    let md = render_markdown(&digest).unwrap();
    insta::with_settings!({filters => vec![(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "[TIME]")]}, {
        insta::assert_snapshot!(md);
    });
}

#[test]
fn the_first_digest_says_there_is_no_earlier_report() {
    let (rows, kpis) = (rows(), kpis());
    let (digest, _) = build(&input(&rows, &kpis, None, None));
    let md = render_markdown(&digest).unwrap();
    insta::with_settings!({filters => vec![(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "[TIME]")]}, {
        insta::assert_snapshot!(md);
    });
    let html = render_html(&digest).unwrap();
    assert!(html.contains("first nightly digest"), "{html}");
    assert!(html.contains("No run recorded yet"), "{html}");
}

#[test]
fn source_strings_cannot_inject_markup() {
    let evil_md = "[x](http://evil) *bold* `code`";
    let evil_html = "<script>alert(1)</script>";
    let mut rows = rows();
    rows.push(count("failed_deployment_count", "range", evil_md, 0, 9.0));
    rows.push(count("failed_deployment_count", "range", evil_html, 0, 8.0));
    let kpis = [kpi(
        "change_failure_rate",
        &format!("service:{evil_md}"),
        "<= 0.15",
    )];
    let prev = Summary {
        kpis: vec![state(
            "change_failure_rate",
            &format!("service:{evil_md}"),
            Status::Red,
        )],
        ..previous()
    };
    let mut health = health();
    health.sources[1].failures = vec![format!("incidents: {evil_html} [y](http://evil)")];
    let (digest, _) = build(&input(&rows, &kpis, Some(&health), Some(&prev)));

    let md = render_markdown(&digest).unwrap();
    assert!(md.contains(r"\[x\]\(hxxp\[://\]evil\) \*bold\* \`code\`"), "{md}");
    assert!(!md.contains("[x]("), "{md}");
    assert!(!md.contains("[y]("), "{md}");
    assert!(!md.contains("*bold*"), "{md}");
    assert!(md.contains("&lt;script&gt;"), "{md}");
    assert!(!md.contains("<script>"), "{md}");

    let html = render_html(&digest).unwrap();
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{html}"
    );
}

#[test]
fn the_markdown_digest_stays_short_with_many_services_kpis_and_failures() {
    let mut rows = rows();
    let mut kpis = Vec::new();
    let mut prev = previous();
    for i in 0..60 {
        let name = format!("{i:02}-{}", "a-very-long-service-name-".repeat(4));
        rows.push(count(
            "failed_deployment_count",
            "range",
            &name,
            0,
            f64::from(i + 1),
        ));
        rows.push(count("incidents_opened", "range", &name, 0, 3.0));
        let scope = format!("service:{name}");
        kpis.push(kpi("change_failure_rate", &scope, "<= 0.15"));
        prev.kpis
            .push(state("change_failure_rate", &scope, Status::Green));
    }
    let mut health = health();
    for source in &mut health.sources {
        source.failures = (0..20)
            .map(|i| format!("stream-{i}: {}", "a very long error message ".repeat(20)))
            .collect();
    }
    let (digest, _) = build(&input(&rows, &kpis, Some(&health), Some(&prev)));
    assert_eq!(
        digest.changes.len(),
        60,
        "every service's KPI went green → insufficient"
    );
    let md = render_markdown(&digest).unwrap();
    assert!(md.lines().count() <= 15, "{} lines:\n{md}", md.lines().count());
    assert!(md.chars().count() <= 1_500, "{} chars:\n{md}", md.chars().count());
    assert!(md.contains("+57 more"), "{md}");
    assert!(md.contains("…"), "long names are shortened: {md}");
    assert!(md.contains("and 58 more failed streams"), "{md}");
}

#[test]
fn digests_written_twice_compare_with_the_earlier_one() {
    let out = tempfile::tempdir().unwrap();
    let kpis = kpis();
    let first_rows = rows();
    let first = write(out.path(), &input(&first_rows, &kpis, None, None)).unwrap();
    let md = std::fs::read_to_string(&first.digest).unwrap();
    assert!(md.contains("First digest: no earlier report"), "{md}");

    // The next day, change failure rate is 12/31: red.
    let mut second_rows = rows();
    second_rows.retain(|r| r.metric != "change_failure_rate");
    second_rows.push(row(
        "change_failure_rate",
        "range",
        "all",
        0,
        Some(12.0 / 31.0),
        31,
    ));
    let second_input = NightlyInput {
        generated_at: at(23, 6),
        window: Window::ending(NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()),
        ..input(&second_rows, &kpis, None, None)
    };
    let second = write(out.path(), &second_input).unwrap();
    let md = std::fs::read_to_string(&second.digest).unwrap();
    assert!(
        md.contains(&format!(
            "KPIs that changed since 2026-11-22 06:00 UTC: {} \\(org\\) green → red\n",
            MetricId::ChangeFailureRate.title()
        )),
        "{md}"
    );
    let summary = Summary::read(&second.dir).unwrap();
    assert_eq!(summary.generated_at, at(23, 6));
    assert_eq!(archive::latest(out.path(), KIND, None).unwrap().dir, second.dir);
    let index = std::fs::read_to_string(&second.index).unwrap();
    for dir in [&first.dir, &second.dir] {
        let folder = dir.file_name().unwrap().to_string_lossy();
        assert!(index.contains(&format!("nightly/{folder}/digest.md")), "{index}");
    }
}

#[test]
fn urls_in_errors_are_left_out_of_the_chat_line() {
    assert_eq!(
        without_urls("401 at http://127.0.0.1:33587/repos/a?per_page=100: check TOKEN, or https://x.y"),
        "401 at …: check TOKEN, or …"
    );
}

#[test]
fn markdown_escaping_covers_links_emphasis_html_and_line_breaks() {
    assert_eq!(
        escape_markdown("a_b *c* [d](e) <f> `g` #h |i| !j\nk & l"),
        r"a\_b \*c\* \[d\]\(e\) &lt;f&gt; \`g\` \#h \|i\| \!j k &amp; l"
    );
    assert_eq!(escape_markdown("checkout-api 2.0"), "checkout-api 2.0");
}

#[test]
fn chat_mentions_and_urls_from_sources_are_made_inert() {
    let wj = '\u{2060}';
    assert_eq!(
        escape_markdown("@here @channel @everyone @all deploy by @alice, mail a@b.io"),
        format!("@{wj}here @{wj}channel @{wj}everyone @{wj}all deploy by @{wj}alice, mail a@b.io")
    );
    assert_eq!(
        escape_markdown("<!channel> <!here|here> <@U123> <#C1> <https://evil.example|click>"),
        format!(
            r"&lt;\!channel&gt; &lt;\!here\|here&gt; &lt;@{wj}U123&gt; &lt;\#C1&gt; &lt;hxxps\[://\]evil\[.\]example\|click&gt;"
        )
    );
    assert_eq!(
        escape_markdown("see https://evil.example/login?a=1 or HTTP://x.y or www.evil.example"),
        r"see hxxps\[://\]evil\[.\]example/login?a=1 or hxxp\[://\]x\[.\]y or www\[.\]evil\[.\]example"
    );
    for text in [
        escape_markdown("@here https://evil.example <!channel>"),
        escape_markdown("ftp://files.example/x"),
    ] {
        assert!(
            !text.contains("@here") && !text.contains("<!") && !text.contains("p://"),
            "{text}"
        );
    }
}

#[test]
fn bare_hosts_a_chat_client_would_link_are_defanged_and_service_names_are_not() {
    assert_eq!(escape_markdown("evil.example/login"), r"evil\[.\]example/login");
    assert_eq!(escape_markdown("see evil.com now"), r"see evil\[.\]com now");
    assert_eq!(escape_markdown("(status.acme.io)"), r"\(status\[.\]acme\[.\]io\)");
    for kept in ["checkout.v2", "payments.api", "v1.2/x", "a/b", "node-1.internal"] {
        assert_eq!(escape_markdown(kept), kept, "{kept}");
    }
}

#[test]
fn a_url_glued_to_a_multibyte_character_is_defanged_without_panicking() {
    for (text, before) in [
        ("状态页：https://status.example.com", "状态页："),
        ("监控https://x.cn/a", "监控"),
        ("é(https://x.io", "é("),
    ] {
        let out = escape_markdown(text);
        assert!(out.starts_with(&escape_markdown(before)), "{out}");
        assert!(out.contains("hxxps") && !out.contains("https"), "{out}");
    }
}

/// The digest for `day` (November 2026) made at `hour` on `made` (November 2026), written to `out`.
fn digest_for(out: &Path, day: u32, made: u32, hour: u32) -> NightlyOutput {
    let (rows, kpis) = (rows(), kpis());
    let input = NightlyInput {
        generated_at: at(made, hour),
        window: Window::ending(NaiveDate::from_ymd_opt(2026, 11, day).unwrap()),
        ..input(&rows, &kpis, None, None)
    };
    write(out, &input).unwrap()
}

#[test]
fn a_backfilled_digest_compares_with_the_newest_digest_of_an_earlier_day() {
    let out = tempfile::tempdir().unwrap();
    digest_for(out.path(), 21, 22, 6);
    digest_for(out.path(), 22, 23, 6);
    // `report nightly --period 2026-11-15` afterwards: every digest made covers a later day.
    let backfill = digest_for(out.path(), 15, 23, 7);
    let md = std::fs::read_to_string(&backfill.digest).unwrap();
    assert!(md.contains("First digest: no earlier report"), "{md}");
    // The 22nd again: compared with the 21st's digest, not with the 22nd's (same day) nor with
    // the 15th's (made later, but for an older day).
    let again = digest_for(out.path(), 22, 23, 8);
    let html = std::fs::read_to_string(&again.html).unwrap();
    assert!(html.contains("previous digest (2026-11-22 06:00 UTC)"), "{html}");
    let md = std::fs::read_to_string(&again.digest).unwrap();
    assert!(
        md.contains("no status changed since 2026-11-22 06:00 UTC"),
        "{md}"
    );
}

/// Log lines written while `f` runs, as text.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let value = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (value, text)
}

#[test]
fn an_unreadable_previous_summary_is_said_and_logged_not_taken_for_a_first_digest() {
    let out = tempfile::tempdir().unwrap();
    let first = digest_for(out.path(), 21, 22, 6);
    let damaged = first.dir.join(SUMMARY_FILE);
    std::fs::write(&damaged, "{ not json").unwrap();
    let (second, log) = logged(|| digest_for(out.path(), 22, 23, 6));
    let md = std::fs::read_to_string(&second.digest).unwrap();
    assert!(md.contains("Previous digest unreadable"), "{md}");
    assert!(!md.contains("First digest"), "{md}");
    let html = std::fs::read_to_string(&second.html).unwrap();
    assert!(html.contains("The previous digest is unreadable"), "{html}");
    assert!(!html.contains("first nightly digest"), "{html}");
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains(&damaged.display().to_string()), "{log}");
    // Its own summary is fine: the next day compares with it.
    let third = digest_for(out.path(), 23, 24, 6);
    let md = std::fs::read_to_string(&third.digest).unwrap();
    assert!(
        md.contains("no status changed since 2026-11-23 06:00 UTC"),
        "{md}"
    );
}

#[test]
fn each_headline_is_titled_as_its_metric() {
    for (id, title) in HEADLINES {
        let metric = MetricId::parse(id).unwrap().title().to_lowercase();
        assert!(
            metric.ends_with(&title.to_lowercase()),
            "{id}: {title} vs {metric}"
        );
    }
}
