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

fn log_of(entries: &[Value]) -> Log {
    let mut log = Log::default();
    log.read(entries);
    log
}

fn connector(base: &str) -> PagerDuty {
    connector_with(base, |_| {})
}

fn connector_with(base: &str, change: impl FnOnce(&mut PagerDutyConfig)) -> PagerDuty {
    let mut config = PagerDutyConfig {
        name: "pd".into(),
        base_url: base.into(),
        token_env: TOKEN_VAR.into(),
        service_ids: Vec::new(),
        // The widest windows, so pages follow each other in them.
        lookback_days: 7 * 41 + 7,
        overlap_minutes: 60,
        window_days: 180,
        severities: BTreeMap::new(),
    };
    change(&mut config);
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
        "last_status_change_at": "2024-01-01T00:10:00Z",
        "assignments": [{"at": "2024-01-01T00:00:00Z", "assignee": user("Aiko Tanaka")}],
        "acknowledgements": [
            {"at": "2024-01-01T00:06:00Z", "acknowledger": user("Ravi Patel")},
            {"at": "2024-01-01T00:04:00Z", "acknowledger": user("Jon Doe")},
        ],
    });
    let i = pd.incident(&raw, &Log::default()).unwrap();
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
    let i = pd.incident(&raw, &log_of(&entries)).unwrap();
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
    let i = pd.incident(&raw, &log_of(&entries)).unwrap();
    assert_eq!((i.acknowledged_at.is_some(), i.acknowledged_by), (true, None));
}

/// The last checkpoint of a read: the bookmark the next read starts from.
fn last_state(messages: &[Message]) -> Value {
    messages
        .iter()
        .rev()
        .find_map(|m| match m {
            Message::Checkpoint(v) => Some(v.clone()),
            _ => None,
        })
        .unwrap()
}

#[tokio::test]
async fn pagerduty_resolved_incident_without_resolved_at_takes_the_resolve_log_entry() {
    let org = org();
    let s = servers(&org).await;
    // As in recorded payloads: resolved incidents whose `resolved_at` is missing, in the list
    // and when re-read by id.
    s.pagerduty
        .control
        .omit_field_next("/incidents", "resolved_at", 1_000_000);
    let (messages, _) = read(&s, None).await;
    let (got, _) = incidents(&messages);
    // Every resolution equals the generated one, which is the resolve log entry's time.
    assert_generated(&org, &got);
    assert!(org.incidents.iter().any(|i| i.resolved_at.is_some()));

    // Only the incidents really open are kept for re-polling...
    let state = last_state(&messages);
    let open: Vec<&str> = state["open"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let really_open: Vec<&str> = org
        .incidents
        .iter()
        .filter(|i| i.resolved_at.is_none())
        .map(|i| i.id.as_str())
        .collect();
    for id in &open {
        assert!(really_open.contains(id), "resolved {id} is kept as open");
    }
    // ... so the next sync re-reads no resolved incident by id.
    let mut aged = state.clone();
    aged["high_water"] = Value::String(format_utc(Utc::now() + chrono::Duration::days(400)));
    let (_, log) = read(&s, Some(aged)).await;
    let repolled: Vec<&String> = log
        .iter()
        .filter(|r| r.starts_with("GET /incidents/") && !r.contains("/log_entries"))
        .collect();
    assert_eq!(repolled.len(), open.len(), "{log:#?}");
    for r in repolled {
        assert!(
            really_open.iter().any(|id| r.contains(id)),
            "a resolved incident is re-polled: {r}"
        );
    }
}

#[test]
fn pagerduty_resolved_incident_without_resolved_at_or_resolve_log_entry_takes_last_status_change_at() {
    let pd = connector("http://127.0.0.1:9");
    let raw = serde_json::json!({
        "id": "PT4KHLK", "type": "incident", "incident_number": 1234, "title": "The server is on fire.",
        "created_at": "2015-10-06T21:30:42Z", "updated_at": "2015-10-06T21:40:00Z",
        "status": "resolved", "last_status_change_at": "2015-10-06T21:38:23Z",
        "urgency": "high", "priority": null, "assignments": [], "acknowledgements": [],
        "service": {"id": "PIJ90N7", "type": "service_reference", "summary": "My Mail Service"},
    });
    let at = |s: &str| crate::time::parse_instant(s).unwrap();
    // No log entry: the last status change, which for a resolved incident is the resolution.
    let i = pd.incident(&raw, &Log::default()).unwrap();
    assert_eq!(i.resolved_at, Some(at("2015-10-06T21:38:23Z")));
    // The latest resolve log entry wins over the last status change.
    let entries = [
        serde_json::json!({"type": "resolve_log_entry", "created_at": "2015-10-06T21:35:00Z",
            "incident": {"id": "PT4KHLK"}}),
        serde_json::json!({"type": "resolve_log_entry", "created_at": "2015-10-06T21:37:00Z",
            "incident": {"id": "PT4KHLK"}}),
        serde_json::json!({"type": "resolve_log_entry", "created_at": "2015-10-06T21:36:00Z",
            "incident": {"id": "OTHER"}}),
    ];
    let i = pd.incident(&raw, &log_of(&entries)).unwrap();
    assert_eq!(i.resolved_at, Some(at("2015-10-06T21:37:00Z")));
    // An open incident has no resolution whatever its last status change.
    let mut open = raw.clone();
    open["status"] = "acknowledged".into();
    assert_eq!(pd.incident(&open, &log_of(&entries)).unwrap().resolved_at, None);
    // Resolved with nothing saying when: quarantined with the reason, not stored as open.
    let mut bare = raw;
    bare.as_object_mut().unwrap().remove("last_status_change_at");
    assert!(
        pd.incident(&bare, &Log::default())
            .unwrap_err()
            .contains("resolved_at")
    );
}

#[test]
fn pagerduty_severities_are_configurable_by_priority_and_urgency() {
    let pd = connector_with("http://127.0.0.1:9", |c| {
        c.severities = [("SEV-1", "sev1"), ("P3", "SEV2"), ("low", "sev3")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
    });
    assert_eq!(pd.severity(Some("sev-1"), Some("low")), Some(Severity::Sev1));
    assert_eq!(pd.severity(Some("P3"), Some("high")), Some(Severity::Sev2));
    // Unlisted priorities keep their defaults; without a known priority the urgency decides.
    assert_eq!(pd.severity(Some("P1"), Some("low")), Some(Severity::Sev1));
    assert_eq!(pd.severity(Some("Custom"), Some("low")), Some(Severity::Sev3));
    assert_eq!(pd.severity(None, Some("high")), Some(Severity::Sev2));
    let bad = PagerDuty::new(
        PagerDutyConfig {
            severities: [("P1".to_owned(), "critical".to_owned())].into_iter().collect(),
            ..connector("http://127.0.0.1:9").config
        },
        &SecretEnv::process().with_override(TOKEN_VAR, "t"),
        RetryPolicy::default(),
    )
    .unwrap_err();
    assert!(bad.to_string().contains("critical"), "{bad}");
}

/// `covers_from` of a state, as the runner reads it.
fn covers(state: &Value) -> chrono::DateTime<Utc> {
    crate::contract::covers_from(state).unwrap().unwrap()
}

#[tokio::test]
async fn raising_lookback_days_backfills_older_incidents_and_moves_covers_from() {
    let org = org();
    let s = servers(&org).await;
    let short = connector_with(&s.pagerduty.base_url(), |c| c.lookback_days = 60);
    let (r, first) = read_all(|out| short.read("incidents", None, out)).await;
    r.unwrap();
    // Every checkpoint says from when the stream is complete, the first read's included.
    for m in &first {
        if let Message::Checkpoint(v) = m {
            assert!(v[crate::contract::COVERS_FROM].is_string(), "{v}");
        }
    }
    let state = last_state(&first);
    let cutoff = Utc::now() - chrono::Duration::days(60);
    assert!((covers(&state) - cutoff).num_minutes().abs() < 5, "{state}");
    let (got, _) = incidents(&first);
    let older = org.incidents.iter().filter(|i| i.created_at < cutoff).count();
    assert!(older > 0);
    assert_eq!(got.len(), org.incidents.len() - older);

    // The default connector reaches back over the whole organisation: the next sync, without
    // `--full`, reads what the short lookback left out.
    let (second, _) = read(&s, Some(state.clone())).await;
    let mut all = got;
    all.extend(incidents(&second).0);
    assert_generated(&org, &all);
    let after = last_state(&second);
    let wide = Utc::now() - chrono::Duration::days(7 * 41 + 7);
    assert!((covers(&after) - wide).num_minutes().abs() < 5, "{after}");
    // Complete now: a third sync reads only past the high water.
    let high_water = crate::time::parse_instant(after["high_water"].as_str().unwrap()).unwrap();
    let (_, log) = read(&s, Some(after)).await;
    let sinces: Vec<chrono::DateTime<Utc>> = log
        .iter()
        .filter_map(|r| r.strip_prefix("GET /incidents?"))
        .map(|q| {
            let q = q.replace("%3A", ":");
            let v = q.split('&').find_map(|p| p.strip_prefix("since=")).unwrap();
            crate::time::parse_instant(v).unwrap()
        })
        .collect();
    assert!(!sinces.is_empty());
    assert!(
        sinces
            .iter()
            .all(|t| *t >= high_water - chrono::Duration::minutes(61)),
        "{log:#?}"
    );
}

#[tokio::test]
async fn a_bookmark_from_before_coverage_was_kept_backfills_instead_of_claiming_the_lookback() {
    // Before coverage was kept, a first sync reached back the old default of 180 days (here 60):
    // the bookmark cannot say so, so the next sync reads the lookback once instead of claiming it.
    let org = org();
    let s = servers(&org).await;
    let short = connector_with(&s.pagerduty.base_url(), |c| c.lookback_days = 60);
    let (r, first) = read_all(|out| short.read("incidents", None, out)).await;
    r.unwrap();
    let mut legacy = last_state(&first);
    let fields = legacy.as_object_mut().unwrap();
    fields.remove("scopes");
    fields.remove(crate::contract::COVERS_FROM);
    let (got, _) = incidents(&first);
    let (second, _) = read(&s, Some(legacy)).await;
    let mut all = got;
    all.extend(incidents(&second).0);
    assert_generated(&org, &all);
    let wide = Utc::now() - chrono::Duration::days(7 * 41 + 7);
    assert!((covers(&last_state(&second)) - wide).num_minutes().abs() < 5);
}

#[tokio::test]
async fn adding_a_service_id_backfills_its_history() {
    let org = org();
    let s = servers(&org).await;
    let ids: Vec<String> = org.services.iter().map(|sv| sv.pagerduty_id.clone()).collect();
    let of = |id: &str| {
        org.incidents
            .iter()
            .filter(|i| org.service(&i.service).unwrap().pagerduty_id == id)
            .count()
    };
    let (a, b) = (ids[0].clone(), ids[1].clone());
    assert!(of(&a) > 0 && of(&b) > 0);
    let one = connector_with(&s.pagerduty.base_url(), |c| c.service_ids = vec![a.clone()]);
    let (r, first) = read_all(|out| one.read("incidents", None, out)).await;
    r.unwrap();
    let (got, _) = incidents(&first);
    assert_eq!(got.len(), of(&a));
    let state = last_state(&first);
    let from = covers(&state);

    let two = connector_with(&s.pagerduty.base_url(), |c| {
        c.service_ids = vec![a.clone(), b.clone()]
    });
    let (r, second) = read_all(|out| two.read("incidents", Some(state), out)).await;
    r.unwrap();
    let (got, _) = incidents(&second);
    let of_b = got
        .values()
        .filter(|i| i.service_ref.as_deref() == Some(b.as_str()))
        .count();
    assert_eq!(of_b, of(&b), "the added service's whole history arrives");
    let after = last_state(&second);
    assert!((covers(&after) - from).num_minutes().abs() < 5, "{after}");
    assert!(after["scopes"].get(b.as_str()).is_some(), "{after}");

    // Dropped from the config, the service's coverage goes: added again, it is read anew rather
    // than claiming the time it was away.
    let (r, third) = read_all(|out| one.read("incidents", Some(after), out)).await;
    r.unwrap();
    let dropped = last_state(&third);
    assert!(dropped["scopes"].get(b.as_str()).is_none(), "{dropped}");
    let (r, fourth) = read_all(|out| two.read("incidents", Some(dropped), out)).await;
    r.unwrap();
    let (got, _) = incidents(&fourth);
    let of_b = got
        .values()
        .filter(|i| i.service_ref.as_deref() == Some(b.as_str()))
        .count();
    assert_eq!(
        of_b,
        of(&b),
        "the service added again is read from the lookback start"
    );
}
