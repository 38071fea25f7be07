//! PagerDuty connector tests against the fake server: a clean read equals the generated
//! incidents, and a read whose offsets move between two pages (incidents or log entries inserted
//! or deleted) still ends with exactly those incidents, at a bounded cost in requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Datelike, NaiveDate, Utc};
use tandem_fixtures::org::{OrgSpec, Organisation};
use tandem_fixtures::{FakeOptions, FakeServers};

use super::*;
use crate::contract::{Message, read_all};

const TOKEN_VAR: &str = "TANDEM_TEST_PAGERDUTY_TOKEN";

#[test]
fn severity_from_priority_then_urgency() {
    assert_eq!(severity(Some("P1"), Some("low")), Some(Severity::Sev1));
    assert_eq!(severity(Some("p3"), Some("high")), Some(Severity::Sev3));
    assert_eq!(severity(None, Some("high")), Some(Severity::Sev2));
    assert_eq!(severity(Some("Custom"), Some("low")), Some(Severity::Sev4));
    assert_eq!(severity(None, None), None);
}

/// Forty whole weeks ending before today (the connector reads up to the real clock), from a
/// Monday: enough incidents for two pages in a 180-day window.
fn org() -> Arc<Organisation> {
    let today = Utc::now().date_naive();
    let monday = today - chrono::Days::new(u64::from(today.weekday().num_days_from_monday()));
    let start: NaiveDate = monday - chrono::Days::new(7 * 41);
    Arc::new(
        Organisation::generate(OrgSpec {
            seed: 11,
            start,
            weeks: 40,
        })
        .unwrap(),
    )
}

async fn servers(org: &Arc<Organisation>) -> FakeServers {
    tandem_fixtures::start(Arc::clone(org), FakeOptions::with_secret("t"))
        .await
        .unwrap()
}

fn connector(base: &str) -> PagerDuty {
    let config = PagerDutyConfig {
        name: "pd".into(),
        base_url: base.into(),
        token_env: TOKEN_VAR.into(),
        service_ids: Vec::new(),
        // The widest windows, so pages follow each other in them.
        lookback_days: 7 * 41 + 7,
        overlap_minutes: 60,
        window_days: 180,
    };
    let policy = RetryPolicy {
        max_attempts: 4,
        base_delay: StdDuration::from_millis(5),
        max_delay: StdDuration::from_millis(20),
        max_rate_limit_wait: StdDuration::from_secs(5),
        timeout: StdDuration::from_secs(10),
        ..RetryPolicy::default()
    };
    PagerDuty::new(
        config,
        &SecretEnv::process().with_override(TOKEN_VAR, "t-pagerduty"),
        policy,
    )
    .unwrap()
}

/// Incidents by id as the store would keep them, and how many were sent in all.
fn incidents(messages: &[Message]) -> (BTreeMap<String, Incident>, usize) {
    let mut by_id = BTreeMap::new();
    let mut sent = 0;
    for m in messages {
        if let Message::Records(records) = m {
            for r in records {
                if let Record::Incident(i) = r {
                    sent += 1;
                    by_id.insert(i.id.clone(), i.clone());
                }
            }
        }
    }
    (by_id, sent)
}

fn count(log: &[String], prefix: &str) -> usize {
    log.iter().filter(|r| r.starts_with(prefix)).count()
}

async fn read(s: &FakeServers, bookmark: Option<Value>) -> (Vec<Message>, Vec<String>) {
    let pd = connector(&s.pagerduty.base_url());
    let before = s.pagerduty.control.request_count();
    let (result, messages) = read_all(|out| pd.read("incidents", bookmark, out)).await;
    result.unwrap();
    (messages, s.pagerduty.control.requests().split_off(before))
}

/// The generated incidents, field by field where the generator says what they are.
fn assert_generated(org: &Organisation, got: &BTreeMap<String, Incident>) {
    assert_eq!(got.len(), org.incidents.len());
    for want in &org.incidents {
        let have = &got[&format!("pd:{}", want.id)];
        assert_eq!(have.number, Some(i64::try_from(want.number).unwrap()));
        assert_eq!(have.title, want.title);
        assert_eq!(have.started_at, want.created_at);
        assert_eq!(have.acknowledged_at, want.acknowledged_at, "{}", want.id);
        assert_eq!(have.resolved_at, want.resolved_at);
        assert_eq!(have.status, want.status());
        let service = org.service(&want.service).unwrap();
        assert_eq!(have.service_ref.as_deref(), Some(service.pagerduty_id.as_str()));
        assert_eq!(have.team_ref.as_deref(), Some(service.pagerduty_team_id.as_str()));
        // Who acknowledged comes from the log entry, so it outlives the resolution; the
        // assignment is cleared when the incident resolves. One responder does both.
        assert_eq!(
            have.acknowledged_by.is_some(),
            want.acknowledged_at.is_some(),
            "{}",
            want.id
        );
        assert_eq!(
            have.assignee.is_some(),
            want.status() != "resolved",
            "{}",
            want.id
        );
        for person in [&have.acknowledged_by, &have.assignee].into_iter().flatten() {
            assert!(
                tandem_fixtures::jira_data::PEOPLE.contains(&person.as_str()),
                "{person}"
            );
        }
        if let (Some(a), Some(b)) = (&have.acknowledged_by, &have.assignee) {
            assert_eq!(a, b, "{}", want.id);
        }
    }
    assert!(got.values().any(|i| i.acknowledged_by.is_some()));
    assert!(got.values().any(|i| i.assignee.is_some()));
}

/// Pages an offset walk over `n` records takes: 100, then 99 new per page (one overlaps).
fn pages(n: usize) -> usize {
    1 + n.saturating_sub(100).div_ceil(99)
}

#[tokio::test]
async fn a_clean_read_overlaps_each_page_by_one_record() {
    let org = org();
    let s = servers(&org).await;
    let (messages, log) = read(&s, None).await;
    let (got, sent) = incidents(&messages);
    assert_generated(&org, &got);
    assert_eq!(sent, got.len(), "the overlap record is not sent twice");
    // Per window (the first request of each has offset 0), 100 records then 99 new per page.
    let windows: Vec<(chrono::DateTime<Utc>, chrono::DateTime<Utc>)> = log
        .iter()
        .filter(|r| r.starts_with("GET /incidents?") && r.contains("&offset=0&"))
        .map(|r| {
            let q = r.split_once('?').unwrap().1.replace("%3A", ":");
            let param = |name: &str| {
                let v = q.split('&').find_map(|p| p.strip_prefix(name)).unwrap();
                crate::time::parse_instant(v).unwrap()
            };
            (param("since="), param("until="))
        })
        .collect();
    let expected: usize = windows
        .iter()
        .map(|(since, until)| {
            pages(
                org.incidents
                    .iter()
                    .filter(|i| i.created_at >= *since && i.created_at < *until)
                    .count(),
            )
        })
        .sum();
    assert_eq!(count(&log, "GET /incidents?"), expected, "{log:#?}");
    assert!(log[0].contains("&offset=0&total=true"), "{log:#?}");
    assert!(
        log.iter()
            .filter(|r| r.starts_with("GET /incidents?"))
            .nth(1)
            .unwrap()
            .contains("&offset=99&total=false"),
        "{log:#?}"
    );
}

/// A read with `by` records inserted (`> 0`) or deleted (`< 0`) before the page `target` names,
/// page 2 of `list`.
async fn shifted(list: &str, target: &str, by: i64) {
    let org = org();
    let s = servers(&org).await;
    let (_, clean) = read(&s, None).await;
    let s = servers(&org).await;
    s.pagerduty.control.shift_next(target, by, 1);
    let (messages, log) = read(&s, None).await;
    let (got, _) = incidents(&messages);
    assert_generated(&org, &got);
    // The check fails on page 2, and the window is read again: two requests more.
    for each in ["GET /incidents?", "GET /log_entries?"] {
        let extra = if each == list { 2 } else { 0 };
        assert_eq!(count(&log, each), count(&clean, each) + extra, "{each} {log:#?}");
    }
    assert_eq!(log.len(), clean.len() + 2, "{log:#?}");
}

#[tokio::test]
async fn an_incident_deleted_before_page_two_is_not_skipped() {
    shifted("GET /incidents?", "&offset=99&total=false", -1).await;
}

#[tokio::test]
async fn an_incident_inserted_before_page_two_is_not_read_twice() {
    shifted("GET /incidents?", "&offset=99&total=false", 1).await;
}

#[tokio::test]
async fn log_entries_moving_between_pages_keep_every_acknowledgement() {
    shifted("GET /log_entries?", "is_overview=true&limit=100&offset=99", -1).await;
    shifted("GET /log_entries?", "is_overview=true&limit=100&offset=99", 1).await;
}

#[tokio::test]
async fn offsets_that_keep_moving_are_read_again_twice_then_read_on() {
    let org = org();
    let s = servers(&org).await;
    let (_, clean) = read(&s, None).await;
    let s = servers(&org).await;
    s.pagerduty.control.shift_next("&offset=99&total=false", 1, 5);
    let (messages, log) = read(&s, None).await;
    // Inserted records only repeat ones already read: nothing is missing after reading on.
    assert_generated(&org, &incidents(&messages).0);
    assert_eq!(
        count(&log, "GET /incidents?"),
        count(&clean, "GET /incidents?") + 2 * 2,
        "{log:#?}"
    );
}

#[tokio::test]
async fn a_resumed_read_keeps_checking_the_overlap() {
    let org = org();
    let s = servers(&org).await;
    let (clean, _) = read(&s, None).await;
    // The checkpoint after page 1 of the first window: the next page asks for one overlap.
    let mid = clean
        .iter()
        .find_map(|m| match m {
            Message::Checkpoint(v) if v["walk"]["offset"] == 100 => Some(v.clone()),
            _ => None,
        })
        .unwrap();
    assert!(mid["walk"]["last_id"].is_string());
    let index = clean
        .iter()
        .position(|m| matches!(m, Message::Checkpoint(v) if *v == mid))
        .unwrap();
    s.pagerduty.control.shift_next("&offset=99&total=false", -1, 1);
    let (rest, log) = read(&s, Some(mid)).await;
    let mut union = incidents(&clean[..=index]).0;
    union.extend(incidents(&rest).0);
    assert_eq!(union, incidents(&clean).0);
    assert!(log[0].contains("&offset=99&total=false"), "{log:#?}");
    assert!(log[1].contains("&offset=0&total=true"), "{log:#?}");
}

#[test]
fn people_come_from_assignments_and_the_first_acknowledgement() {
    let pd = connector("http://127.0.0.1:9");
    let user = |name: &str| serde_json::json!({"id": "PUSR", "type": "user_reference", "summary": name});
    let mut raw = serde_json::json!({
        "id": "Q1", "incident_number": 7, "title": "Down", "status": "acknowledged",
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:10:00Z",
        "assignments": [{"at": "2024-01-01T00:00:00Z", "assignee": user("Aiko Tanaka")}],
        "acknowledgements": [
            {"at": "2024-01-01T00:06:00Z", "acknowledger": user("Ravi Patel")},
            {"at": "2024-01-01T00:04:00Z", "acknowledger": user("Jon Doe")},
        ],
    });
    let none = std::collections::HashMap::new();
    let i = pd.incident(&raw, &none).unwrap();
    assert_eq!(i.assignee.as_deref(), Some("Aiko Tanaka"));
    // The earliest acknowledgement's acknowledger, not the first listed.
    assert_eq!(i.acknowledged_by.as_deref(), Some("Jon Doe"));
    assert_eq!(
        i.acknowledged_at.unwrap().to_rfc3339(),
        "2024-01-01T00:04:00+00:00"
    );

    // Resolved: PagerDuty has emptied both lists; the log entries still say who acknowledged.
    raw["status"] = "resolved".into();
    raw["assignments"] = serde_json::json!([]);
    raw["acknowledgements"] = serde_json::json!([]);
    let entries = [
        serde_json::json!({"type": "acknowledge_log_entry", "created_at": "2024-01-01T00:05:00Z",
            "agent": user("Mia Krystof"), "incident": {"id": "Q1"}}),
        serde_json::json!({"type": "acknowledge_log_entry", "created_at": "2024-01-01T00:03:00Z",
            "agent": user("Sam Lee"), "incident": {"id": "Q1"}}),
        serde_json::json!({"type": "resolve_log_entry", "created_at": "2024-01-01T00:01:00Z",
            "agent": user("Noor Haddad"), "incident": {"id": "Q1"}}),
    ];
    let acks = first_acks(&entries);
    let i = pd.incident(&raw, &acks).unwrap();
    assert_eq!(
        (i.assignee, i.acknowledged_by.as_deref()),
        (None, Some("Sam Lee"))
    );
    assert_eq!(
        i.acknowledged_at.unwrap().to_rfc3339(),
        "2024-01-01T00:03:00+00:00"
    );

    // Acknowledged by an integration without a name: the time is known, the person is not.
    let entries = [
        serde_json::json!({"type": "acknowledge_log_entry", "created_at": "2024-01-01T00:02:00Z",
        "agent": {"type": "inbound_integration_reference"}, "incident": {"id": "Q1"}}),
    ];
    let i = pd.incident(&raw, &first_acks(&entries)).unwrap();
    assert_eq!((i.acknowledged_at.is_some(), i.acknowledged_by), (true, None));
}
