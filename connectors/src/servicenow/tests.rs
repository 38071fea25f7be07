//! The ServiceNow connector against the fake Table API of `tandem-fixtures`: records equal to the
//! generator's, request counts, faults, resume from a checkpoint, v1's 404, ACL gaps and offsets
//! that shift mid-scan; plus the mapping of single rows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, NaiveDate};
use serde_json::json;
use tandem_fixtures::servicenow_data::{SnChange, SnIncident};
use tandem_fixtures::{FakeOptions, FakeServers, OrgSpec, Organisation};

use super::*;
use crate::contract::{Message, read_all};

const PASSWORD_VAR: &str = "TANDEM_TEST_SERVICENOW_PASSWORD";
const PAGE: usize = 7;

fn org() -> Arc<Organisation> {
    Arc::new(
        Organisation::generate(OrgSpec {
            seed: 5,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            weeks: 8,
        })
        .unwrap(),
    )
}

async fn world() -> (Arc<Organisation>, FakeServers) {
    let org = org();
    let servers = tandem_fixtures::start(Arc::clone(&org), FakeOptions::with_secret("t"))
        .await
        .unwrap();
    (org, servers)
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: StdDuration::from_millis(5),
        max_delay: StdDuration::from_millis(20),
        max_rate_limit_wait: StdDuration::from_secs(5),
        timeout: StdDuration::from_secs(10),
        ..RetryPolicy::default()
    }
}

fn config(s: &FakeServers) -> ServiceNowConfig {
    ServiceNowConfig {
        name: "snow".into(),
        base_url: s.servicenow.base_url(),
        user: Some(FakeOptions::with_secret("t").servicenow_user),
        password_env: Some(PASSWORD_VAR.into()),
        token_env: None,
        api_version: ApiVersion::V2,
        page_size: PAGE,
        overlap_minutes: 10,
        // The generated organisation lies in 2024: reach back over all of it.
        lookback_days: 36_500,
        incident_query: None,
        change_query: None,
        approved_states: vec!["approved".into()],
        priorities: BTreeMap::new(),
    }
}

fn env() -> SecretEnv {
    SecretEnv::process().with_override(PASSWORD_VAR, FakeOptions::with_secret("t").servicenow_password)
}

fn connector(config: ServiceNowConfig) -> ServiceNow {
    ServiceNow::new(config, &env(), fast()).unwrap()
}

async fn read(
    c: &ServiceNow,
    stream: &str,
    bookmark: Option<Value>,
) -> (Result<(), ConnectorError>, Vec<Message>) {
    read_all(|out| c.read(stream, bookmark, out)).await
}

fn records(messages: &[Message]) -> Vec<Record> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Records(r) => Some(r.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn quarantined(messages: &[Message]) -> Vec<Quarantined> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Quarantine(q) => Some(q.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn checkpoints(messages: &[Message]) -> Vec<Value> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Checkpoint(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// Records by primary key (the store's upsert), later versions winning.
fn by_key(records: Vec<Record>) -> BTreeMap<String, Record> {
    records.into_iter().map(|r| (r.key().to_owned(), r)).collect()
}

/// List requests a scan of `rows` rows (readable or not) makes at `page`: the fake says `next`
/// after every full page, so one more than the full pages.
fn pages(rows: usize, page: usize) -> usize {
    rows / page + 1
}

fn label(state: &str) -> String {
    incident_state(state).map_or(state.to_owned(), str::to_owned)
}

/// What the connector must make of a generated incident.
/// The display name of a `sys_user` reference, as the dot-walked `.name` field serves it.
fn user_name(org: &Organisation, sys_id: Option<&String>) -> Option<String> {
    let sys_id = sys_id?;
    let user = org.servicenow.users.iter().find(|u| &u.sys_id == sys_id);
    Some(user.expect("a reference to a generated user").name.clone())
}

fn expected_incident(org: &Organisation, i: &SnIncident) -> (Incident, Ticket) {
    let resolved_at = match i.state.as_str() {
        "1" | "2" | "3" => None,
        "8" => i.resolved_at.or(i.closed_at).or(Some(i.sys_updated_on)),
        _ => i.resolved_at.or(i.closed_at),
    };
    let severity = match i.priority.as_str() {
        "1" => Some(Severity::Sev1),
        "2" => Some(Severity::Sev2),
        "3" => Some(Severity::Sev3),
        _ => Some(Severity::Sev4),
    };
    let mut cause_refs = Vec::new();
    if let Some(c) = &i.caused_by {
        cause_refs.push(c.clone());
        let chg = org.servicenow.changes.iter().find(|x| &x.sys_id == c).unwrap();
        cause_refs.push(chg.number.clone());
    }
    let incident = Incident {
        acknowledged_by: None,
        assignee: user_name(org, i.assigned_to.as_ref()),
        id: format!("snow:{}", i.sys_id),
        source: "snow".into(),
        number: Some(i.number.trim_start_matches("INC").parse().unwrap()),
        title: i.short_description.clone(),
        service_ref: i.cmdb_ci.clone(),
        team_ref: None,
        service: None,
        team: None,
        severity,
        status: label(&i.state),
        started_at: i.opened_at,
        acknowledged_at: i.work_start,
        resolved_at,
        cause_refs,
        // What PagerDuty's integration wrote, if it did.
        correlation_id: i.correlation_id.clone(),
        updated_at: i.sys_updated_on,
    };
    let ticket = Ticket {
        assignee: user_name(org, i.assigned_to.as_ref()),
        reporter: user_name(org, i.opened_by.as_ref()),
        id: format!("snow:{}", i.number),
        source: "snow".into(),
        key: i.number.clone(),
        project: "incident".into(),
        service_ref: i.cmdb_ci.clone(),
        service: None,
        team: None,
        category: "incident".into(),
        issue_type: "incident".into(),
        title: i.short_description.clone(),
        priority: Some(i.priority.clone()),
        status: label(&i.state),
        status_category: match i.state.as_str() {
            "1" => "new",
            "2" | "3" => "indeterminate",
            _ => "done",
        }
        .into(),
        labels: Vec::new(),
        created_at: i.opened_at,
        resolved_at,
        updated_at: i.sys_updated_on,
    };
    (incident, ticket)
}

fn expected_change(org: &Organisation, c: &SnChange) -> ChangeRequest {
    ChangeRequest {
        assigned_to: user_name(org, c.assigned_to.as_ref()),
        requested_by: user_name(org, c.requested_by.as_ref()),
        id: format!("snow:{}", c.sys_id),
        source: "snow".into(),
        number: c.number.clone(),
        title: c.short_description.clone(),
        service_ref: c.cmdb_ci.clone(),
        service: None,
        team: None,
        change_type: ["standard", "normal", "emergency"]
            .contains(&c.change_type.as_str())
            .then(|| c.change_type.clone()),
        state: change_state(&c.state).unwrap().to_owned(),
        approved: Some(c.approval == "approved"),
        planned_start: c.start_date,
        planned_end: c.end_date,
        actual_start: c.work_start,
        actual_end: c.work_end,
        closed_at: c.closed_at,
        close_code: c.close_code.clone(),
        created_at: c.opened_at,
        updated_at: c.sys_updated_on,
    }
}

fn expected_incident_records(org: &Organisation) -> BTreeMap<String, Record> {
    let mut out = BTreeMap::new();
    for i in org
        .servicenow
        .incidents
        .iter()
        .filter(|i| !i.acl_hidden && i.malformed.is_none())
    {
        let (inc, ticket) = expected_incident(org, i);
        out.insert(inc.id.clone(), Record::Incident(inc));
        out.insert(ticket.id.clone(), Record::Ticket(ticket));
    }
    out
}

fn expected_change_records(org: &Organisation) -> BTreeMap<String, Record> {
    org.servicenow
        .changes
        .iter()
        .filter(|c| !c.acl_hidden)
        .map(|c| {
            let r = expected_change(org, c);
            (r.id.clone(), Record::ChangeRequest(r))
        })
        .collect()
}

fn final_state(messages: &[Message]) -> State {
    serde_json::from_value(checkpoints(messages).last().cloned().unwrap()).unwrap()
}

#[tokio::test]
async fn incidents_match_the_generator_through_acl_gaps() {
    let (org, s) = world().await;
    let c = connector(config(&s));
    let (result, messages) = read(&c, "incidents", None).await;
    result.unwrap();
    let got = by_key(records(&messages));
    let want = expected_incident_records(&org);
    assert_eq!(got.len(), want.len());
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "{k}");
    }
    // A caused_by reference carries the change request's sys_id and number.
    assert!(
        got.values()
            .any(|r| matches!(r, Record::Incident(i) if i.cause_refs.len() == 2))
    );
    // The record with a date in the wrong format is quarantined, naming the field.
    let q = quarantined(&messages);
    assert_eq!(q.len(), 1);
    assert!(
        q[0].reason.starts_with("resolved_at: unparsable timestamp"),
        "{}",
        q[0].reason
    );
    let bad = org
        .servicenow
        .incidents
        .iter()
        .find(|i| i.malformed.is_some())
        .unwrap();
    assert!(q[0].raw.contains(&bad.sys_id));

    // Pages the ACL burst left empty: a checkpoint straight after a checkpoint, and the scan
    // went on past them.
    let empty_pages = messages
        .windows(2)
        .filter(|w| matches!(w, [Message::Checkpoint(_), Message::Checkpoint(_)]))
        .count();
    assert!(empty_pages >= 1);
    // One request per page, empty ACL pages included, and nothing else.
    let rows = org.servicenow.incidents.len();
    assert_eq!(s.servicenow.control.request_count(), pages(rows, PAGE));
    let requests = s.servicenow.control.requests();
    assert!(requests[0].contains("sysparm_exclude_reference_link=true"));
    assert!(requests[0].contains("sysparm_no_count=true"));
    assert!(requests[0].contains("ORDERBYsys_updated_on"));
    assert!(requests[0].starts_with("GET /api/now/v2/table/incident?"));

    // The bookmark: newest update read, open incidents to re-poll, no scan in progress.
    let state = final_state(&messages);
    let visible: Vec<&SnIncident> = org
        .servicenow
        .incidents
        .iter()
        .filter(|i| !i.acl_hidden)
        .collect();
    assert_eq!(state.high_water, visible.iter().map(|i| i.sys_updated_on).max());
    let open: BTreeSet<String> = visible
        .iter()
        .filter(|i| i.is_open())
        .map(|i| i.sys_id.clone())
        .collect();
    assert!(!open.is_empty());
    assert_eq!(state.open, open);
    assert!(state.scan.is_none());
    assert!(checkpoints(&messages).len() >= pages(rows, PAGE));
}

#[tokio::test]
async fn change_requests_match_the_generator_in_v1() {
    let (org, s) = world().await;
    let rows = org.servicenow.changes.len();
    // A page size that divides the row count makes the last page a v1 404 `No Record found`.
    let page = (5..=12).find(|p| rows % p == 0).unwrap_or(PAGE);
    let c = connector(ServiceNowConfig {
        api_version: ApiVersion::V1,
        page_size: page,
        ..config(&s)
    });
    let (result, messages) = read(&c, "change_requests", None).await;
    result.unwrap();
    let got = by_key(records(&messages));
    let want = expected_change_records(&org);
    assert_eq!(got, want);
    assert!(quarantined(&messages).is_empty());
    assert_eq!(s.servicenow.control.request_count(), pages(rows, page));
    assert!(s.servicenow.control.requests()[0].starts_with("GET /api/now/table/change_request?"));
    // The customised type is null, the unscheduled changes have no window.
    assert!(
        got.values()
            .any(|r| matches!(r, Record::ChangeRequest(c) if c.change_type.is_none()))
    );
    assert!(
        got.values()
            .any(|r| matches!(r, Record::ChangeRequest(c) if c.planned_start.is_none()))
    );
    let state = final_state(&messages);
    let open: BTreeSet<String> = org
        .servicenow
        .changes
        .iter()
        .filter(|c| !c.acl_hidden && !c.is_closed())
        .map(|c| c.sys_id.clone())
        .collect();
    assert!(!open.is_empty());
    assert_eq!(state.open, open);
}

#[tokio::test]
async fn v1_no_rows_is_an_empty_result_and_other_404s_are_errors() {
    let (_, s) = world().await;
    let c = connector(ServiceNowConfig {
        api_version: ApiVersion::V1,
        change_query: Some("number=CHG0000000".into()),
        ..config(&s)
    });
    let (result, messages) = read(&c, "change_requests", None).await;
    result.unwrap();
    assert!(records(&messages).is_empty());
    assert_eq!(checkpoints(&messages).len(), 1);
    assert_eq!(s.servicenow.control.request_count(), 1);
    // No bookmark: the filter is followed by the lookback's bound, then the ordering.
    let first = &s.servicenow.control.requests()[0];
    assert!(
        first.contains("number%3DCHG0000000%5Esys_updated_on%3E%3D"),
        "{first}"
    );
    assert!(first.contains("%5EORDERBYsys_updated_on"), "{first}");

    let wrong = connector(ServiceNowConfig {
        base_url: format!("{}/wrong", s.servicenow.base_url()),
        ..config(&s)
    });
    let (result, _) = read(&wrong, "incidents", None).await;
    assert!(
        matches!(&result, Err(ConnectorError::Status { status: 404, body, .. })
            if body.contains("Requested URI does not represent any resource")),
        "expected a 404 error, got {result:?}"
    );
}

#[tokio::test]
async fn incremental_read_overlaps_and_repolls_open_records() {
    let (org, s) = world().await;
    let c = connector(config(&s));
    let (result, first) = read(&c, "incidents", None).await;
    result.unwrap();
    let bookmark = checkpoints(&first).last().cloned();
    let state = final_state(&first);
    let before = s.servicenow.control.request_count();

    let (result, second) = read(&c, "incidents", bookmark).await;
    result.unwrap();
    let since = state.high_water.unwrap() - Duration::minutes(10);
    let in_window: Vec<&SnIncident> = org
        .servicenow
        .incidents
        .iter()
        .filter(|i| i.sys_updated_on >= since)
        .collect();
    let window_ids: BTreeSet<&str> = in_window
        .iter()
        .filter(|i| !i.acl_hidden)
        .map(|i| i.sys_id.as_str())
        .collect();
    let repolled: Vec<&String> = state
        .open
        .iter()
        .filter(|id| !window_ids.contains(id.as_str()))
        .collect();
    assert!(
        !repolled.is_empty(),
        "the test needs open incidents outside the overlap"
    );
    let scan_requests = pages(in_window.len(), PAGE);
    let repoll_requests = repolled.len().div_ceil(REPOLL_CHUNK);
    assert_eq!(
        s.servicenow.control.request_count() - before,
        scan_requests + repoll_requests,
        "{:#?} window {} repolled {}",
        &s.servicenow.control.requests()[before..],
        in_window.len(),
        repolled.len()
    );
    let got = by_key(records(&second));
    let want = expected_incident_records(&org);
    let expected_ids: BTreeSet<String> = window_ids
        .iter()
        .map(|id| (*id).to_owned())
        .chain(repolled.iter().map(|id| (*id).clone()))
        .collect();
    let got_ids: BTreeSet<String> = got
        .values()
        .filter_map(|r| match r {
            Record::Incident(i) => Some(i.id.trim_start_matches("snow:").to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(got_ids, expected_ids);
    for (k, v) in &got {
        assert_eq!(want.get(k), Some(v), "{k}");
    }
    let log = s.servicenow.control.requests();
    assert!(log.iter().any(|r| r.contains("sys_idIN")));
    assert!(log[before].contains("sys_updated_on%3E%3D"));
    assert_eq!(final_state(&second).open, state.open);
}

#[tokio::test]
async fn a_read_resumed_from_a_mid_scan_checkpoint_completes_the_clean_read() {
    let (org, s) = world().await;
    let c = connector(config(&s));
    let (result, clean) = read(&c, "change_requests", None).await;
    result.unwrap();
    let clean_records = by_key(records(&clean));
    assert_eq!(clean_records, expected_change_records(&org));
    // Stop after the third checkpoint, as a kill would, and resume from it.
    let cut = clean
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m, Message::Checkpoint(_)))
        .nth(2)
        .map(|(i, _)| i)
        .unwrap();
    let before_kill = records(&clean[..=cut]);
    let Message::Checkpoint(bookmark) = &clean[cut] else {
        unreachable!()
    };
    let resumed_state: State = serde_json::from_value(bookmark.clone()).unwrap();
    assert_eq!(resumed_state.scan.as_ref().map(|s| s.offset), Some(3 * PAGE));
    let requests_before = s.servicenow.control.request_count();
    let (result, rest) = read(&c, "change_requests", Some(bookmark.clone())).await;
    result.unwrap();
    let mut union = by_key(before_kill);
    union.extend(by_key(records(&rest)));
    assert_eq!(union, clean_records);
    // The resumed read starts at the saved offset rather than at the beginning.
    let rows = org.servicenow.changes.len();
    assert_eq!(
        s.servicenow.control.request_count() - requests_before,
        pages(rows, PAGE) - 3
    );
    assert!(
        s.servicenow.control.requests()[requests_before].contains(&format!("sysparm_offset={}", 3 * PAGE))
    );
    assert_eq!(final_state(&rest).high_water, final_state(&clean).high_water);
}

#[tokio::test]
async fn transient_faults_are_retried_and_nothing_is_lost() {
    let (org, s) = world().await;
    let control = &s.servicenow.control;
    control.fail_next("sysparm_offset=7&", 502, 2);
    control.rate_limit_next("sysparm_offset=14&", 1, Some(0));
    control.truncate_next("sysparm_offset=21&", 1);
    control.unavailable_next("sysparm_offset=28&", 1, Some(0));
    let c = connector(config(&s));
    let (result, messages) = read(&c, "change_requests", None).await;
    result.unwrap();
    assert_eq!(by_key(records(&messages)), expected_change_records(&org));
    let rows = org.servicenow.changes.len();
    assert_eq!(control.request_count(), pages(rows, PAGE) + 5);
}

#[tokio::test]
async fn credentials_expiring_mid_scan_stop_with_an_auth_error_after_a_checkpoint() {
    let (_, s) = world().await;
    let c = connector(config(&s));
    s.servicenow.control.unauthorized_next("sysparm_offset=14&", 1);
    let (result, messages) = read(&c, "incidents", None).await;
    let err = result.unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert!(err.to_string().contains("tandem.integration"), "{err}");
    assert!(
        !err.to_string().contains("t-servicenow"),
        "the password leaked: {err}"
    );
    let state = final_state(&messages);
    assert_eq!(state.scan.map(|s| s.offset), Some(14));
    assert_eq!(s.servicenow.control.request_count(), 3);

    s.servicenow
        .control
        .inject("sysparm_offset=0", tandem_fixtures::Fault::HtmlUnauthorized, 1);
    let (result, _) = read(&c, "incidents", None).await;
    assert!(result.unwrap_err().is_auth());
}

#[tokio::test]
async fn check_and_the_two_ways_to_authenticate() {
    let (_, s) = world().await;
    connector(config(&s)).check().await.unwrap();
    assert_eq!(s.servicenow.control.request_count(), 2);

    let bad_env = SecretEnv::process().with_override(PASSWORD_VAR, "wrong");
    let bad = ServiceNow::new(config(&s), &bad_env, fast()).unwrap();
    let err = bad.check().await.unwrap_err();
    assert!(
        matches!(err, ConnectorError::Unauthorized { status: 401, .. }),
        "{err}"
    );

    // OAuth: the fake accepts its password as a Bearer token.
    let token = ServiceNow::new(
        ServiceNowConfig {
            user: None,
            password_env: None,
            token_env: Some(PASSWORD_VAR.into()),
            ..config(&s)
        },
        &env(),
        fast(),
    )
    .unwrap();
    token.check().await.unwrap();
}

#[tokio::test]
async fn config_mistakes_are_clear_errors() {
    let (_, s) = world().await;
    let build = |c: ServiceNowConfig| {
        ServiceNow::new(c, &env(), fast())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let both = build(ServiceNowConfig {
        token_env: Some(PASSWORD_VAR.into()),
        ..config(&s)
    });
    assert!(both.contains("exactly one of `password_env`"), "{both}");
    let neither = build(ServiceNowConfig {
        password_env: None,
        ..config(&s)
    });
    assert!(neither.contains("exactly one"), "{neither}");
    let no_user = build(ServiceNowConfig {
        user: None,
        ..config(&s)
    });
    assert!(no_user.contains("needs `user`"), "{no_user}");
    let nq = build(ServiceNowConfig {
        incident_query: Some("active=true^NQpriority=1".into()),
        ..config(&s)
    });
    assert!(nq.contains("incident_query"), "{nq}");
    let missing = ServiceNow::new(
        ServiceNowConfig {
            password_env: Some("TANDEM_TEST_SURELY_UNSET_SN".into()),
            ..config(&s)
        },
        &SecretEnv::process(),
        fast(),
    )
    .unwrap_err()
    .to_string();
    assert!(missing.contains("source.snow.password_env"), "{missing}");

    let parsed: Result<ServiceNowConfig, _> = serde_json::from_value(json!({
        "name": "snow", "base_url": "https://acme.service-now.com", "user": "u", "password_env": "P",
    }));
    let parsed = parsed.unwrap();
    assert_eq!(parsed.api_version, ApiVersion::V2);
    assert_eq!((parsed.page_size, parsed.overlap_minutes), (1000, 10));
    let unknown: Result<ServiceNowConfig, _> = serde_json::from_value(json!({
        "name": "snow", "base_url": "https://acme.service-now.com", "token_env": "T", "pagesize": 5,
    }));
    assert!(unknown.unwrap_err().to_string().contains("pagesize"));
    let v1: ServiceNowConfig = serde_json::from_value(json!({
        "name": "snow", "base_url": "https://x", "token_env": "T", "api_version": "v1",
    }))
    .unwrap();
    assert_eq!(v1.api_version, ApiVersion::V1);
}

#[tokio::test]
async fn a_record_changed_mid_scan_is_not_skipped() {
    let (org, s) = world().await;
    // After two pages, the earliest readable incident is updated: every later row moves up one.
    let c = connector(config(&s));
    // Built after the connector, which installs the TLS crypto provider reqwest needs.
    let hook = format!("{}/__fake/shift?table=incident&after=2", s.servicenow.base_url());
    let client = reqwest::Client::new();
    assert!(client.get(&hook).send().await.unwrap().status().is_success());
    let (result, messages) = read(&c, "incidents", None).await;
    result.unwrap();
    let mut want = expected_incident_records(&org);
    let touched = org
        .servicenow
        .incidents
        .iter()
        .filter(|i| !i.acl_hidden)
        .min_by_key(|i| i.sys_updated_on)
        .unwrap();
    let stamp = org.spec.now() - Duration::minutes(1);
    for r in want.values_mut() {
        match r {
            Record::Incident(i) if i.id == format!("snow:{}", touched.sys_id) => i.updated_at = stamp,
            Record::Ticket(t) if t.key == touched.number => t.updated_at = stamp,
            _ => {}
        }
    }
    assert_eq!(by_key(records(&messages)), want);
    // The first pass saw the moved record twice and the range was read once more.
    let rows = org.servicenow.incidents.len();
    assert_eq!(s.servicenow.control.request_count(), 1 + 2 * pages(rows, PAGE));
    assert_eq!(final_state(&messages).high_water, Some(stamp));
}

#[tokio::test]
async fn a_short_page_does_not_end_the_scan() {
    let (org, s) = world().await;
    s.servicenow.control.short_page_next("sysparm_offset=7&", 1);
    let c = connector(config(&s));
    let (result, messages) = read(&c, "change_requests", None).await;
    result.unwrap();
    let rows = org.servicenow.changes.len();
    assert_eq!(s.servicenow.control.request_count(), pages(rows, PAGE));
    let got = by_key(records(&messages));
    let want = expected_change_records(&org);
    // Only what the short page dropped is missing; everything after it was read.
    assert!(got.len() < want.len() && got.len() + PAGE / 2 + 1 >= want.len());
    let last = org
        .servicenow
        .changes
        .iter()
        .filter(|c| !c.acl_hidden)
        .max_by_key(|c| (c.sys_updated_on, c.sys_id.clone()))
        .unwrap();
    assert!(got.contains_key(&format!("snow:{}", last.sys_id)));
}

// ---------------------------------------------------------------------------------------------
// Single rows.

fn offline() -> ServiceNow {
    offline_with(|_| {})
}

fn offline_with(change: impl FnOnce(&mut ServiceNowConfig)) -> ServiceNow {
    let mut config = ServiceNowConfig {
        name: "snow".into(),
        base_url: "https://acme.service-now.com".into(),
        user: Some("u".into()),
        password_env: Some(PASSWORD_VAR.into()),
        token_env: None,
        api_version: ApiVersion::V2,
        page_size: 1000,
        overlap_minutes: 10,
        // The generated organisation lies in 2024: reach back over all of it.
        lookback_days: 36_500,
        incident_query: None,
        change_query: None,
        approved_states: vec!["approved".into()],
        priorities: BTreeMap::new(),
    };
    change(&mut config);
    connector(config)
}

fn incident_row() -> Value {
    json!({
        "sys_id": "a9e3", "number": "INC0000046", "short_description": "Can't access SFA software",
        "state": "6", "priority": "3", "opened_at": "2015-11-02 22:04:15",
        "resolved_at": "2015-11-03 01:10:00", "closed_at": "", "work_start": "",
        "sys_updated_on": "2015-11-03 01:10:02",
        "cmdb_ci": {"link": "https://acme.service-now.com/api/now/table/cmdb_ci/a9c0", "value": "a9c0"},
        "caused_by": "", "caused_by.number": "",
    })
}

#[test]
fn references_come_in_three_shapes() {
    let row = json!({"a": {"link": "x", "value": "abc"}, "b": "abc", "c": "", "d": {"link": "", "value": ""}, "e": 5});
    assert_eq!(reference(&row, "a").unwrap().as_deref(), Some("abc"));
    assert_eq!(reference(&row, "b").unwrap().as_deref(), Some("abc"));
    assert_eq!(reference(&row, "c").unwrap(), None);
    assert_eq!(reference(&row, "d").unwrap(), None);
    assert_eq!(reference(&row, "missing").unwrap(), None);
    assert!(reference(&row, "e").is_err());
}

#[test]
fn an_incident_row_from_the_docs() {
    let c = offline();
    let mut unknown = Unknowns::default();
    let (inc, ticket, open) = c.incident(&incident_row(), &mut unknown).unwrap();
    assert_eq!(inc.number, Some(46));
    assert_eq!(inc.service_ref.as_deref(), Some("a9c0"));
    assert_eq!(inc.severity, Some(Severity::Sev3));
    assert_eq!(inc.status, "Resolved");
    assert_eq!(
        inc.resolved_at,
        Some(parse_instant("2015-11-03 01:10:00").unwrap())
    );
    assert_eq!(inc.acknowledged_at, None);
    assert!(inc.cause_refs.is_empty());
    assert_eq!(ticket.id, "snow:INC0000046");
    assert_eq!(ticket.status_category, "done");
    assert_eq!(ticket.priority.as_deref(), Some("3"));
    assert!(!open);
    // The docs' row names nobody.
    assert_eq!((inc.assignee, inc.acknowledged_by), (None, None));
    assert_eq!((ticket.assignee, ticket.reporter), (None, None));

    // People are dot-walked `sys_user` display names; an empty one is nobody.
    let mut row = incident_row();
    row["assigned_to.name"] = json!("Beth Anglin");
    row["opened_by.name"] = json!("Joe Employee");
    let (inc, ticket, _) = c.incident(&row, &mut unknown).unwrap();
    assert_eq!(
        (inc.assignee.as_deref(), inc.acknowledged_by),
        (Some("Beth Anglin"), None)
    );
    assert_eq!(
        (ticket.assignee.as_deref(), ticket.reporter.as_deref()),
        (Some("Beth Anglin"), Some("Joe Employee"))
    );
    row["assigned_to.name"] = json!("");
    assert_eq!(c.incident(&row, &mut unknown).unwrap().1.assignee, None);
    // People are optional: a people field that is not text is nobody, and the incident is kept.
    row["assigned_to.name"] = json!({"link": "x", "value": "46d4"});
    row["opened_by.name"] = json!(7);
    let (inc, ticket, _) = c.incident(&row, &mut unknown).unwrap();
    assert_eq!(inc.number, Some(46));
    assert_eq!(
        (inc.assignee, ticket.assignee, ticket.reporter),
        (None, None, None)
    );

    // Closed without resolved_at: closed_at stands in; cancelled without either: last update.
    let mut row = incident_row();
    row["state"] = json!("7");
    row["resolved_at"] = json!("");
    row["closed_at"] = json!("2015-11-04 00:00:00");
    let (inc, _, _) = c.incident(&row, &mut unknown).unwrap();
    assert_eq!(
        inc.resolved_at,
        Some(parse_instant("2015-11-04 00:00:00").unwrap())
    );
    row["state"] = json!("8");
    row["closed_at"] = json!("");
    let (inc, ticket, open) = c.incident(&row, &mut unknown).unwrap();
    assert_eq!(inc.resolved_at, Some(inc.updated_at));
    assert_eq!((ticket.status.as_str(), open), ("Canceled", false));

    // Open, with a cause and a custom state and priority.
    let mut row = incident_row();
    row["state"] = json!("2");
    row["priority"] = json!("5");
    row["caused_by"] = json!("c0ffee");
    row["caused_by.number"] = json!("CHG0030042");
    let (inc, ticket, open) = c.incident(&row, &mut unknown).unwrap();
    assert_eq!(inc.resolved_at, None);
    assert_eq!(inc.severity, Some(Severity::Sev4));
    assert_eq!(inc.cause_refs, vec!["c0ffee".to_owned(), "CHG0030042".to_owned()]);
    assert_eq!((ticket.status_category.as_str(), open), ("indeterminate", true));
    row["state"] = json!("-40");
    row["priority"] = json!("9");
    let (inc, ticket, _) = c.incident(&row, &mut unknown).unwrap();
    assert_eq!((inc.status.as_str(), inc.severity), ("-40", None));
    // An unknown state is done when the record says it was resolved.
    assert_eq!(ticket.status_category, "done");
    row["resolved_at"] = json!("");
    let (_, ticket, open) = c.incident(&row, &mut unknown).unwrap();
    assert_eq!((ticket.status_category.as_str(), open), ("indeterminate", true));
}

#[test]
fn bad_rows_are_rejected_with_the_field_named() {
    let c = offline();
    let mut unknown = Unknowns::default();
    let cases = [
        ("opened_at", json!(""), "missing opened_at"),
        (
            "opened_at",
            json!("02/11/2015 22:04"),
            "opened_at: unparsable timestamp",
        ),
        ("sys_id", json!(""), "missing sys_id"),
        ("priority", json!(3), "priority: expected a string"),
        ("cmdb_ci", json!(["a9c0"]), "cmdb_ci: expected a reference"),
    ];
    for (field, value, reason) in cases {
        let mut row = incident_row();
        row[field] = value;
        let err = c.incident(&row, &mut unknown).unwrap_err();
        assert!(err.starts_with(reason), "{field}: {err}");
    }
}

#[test]
fn a_change_request_row_and_unknown_choices() {
    let c = offline();
    let mut unknown = Unknowns::default();
    let row = json!({
        "sys_id": "c1", "number": "CHG0030001", "short_description": "Deploy", "type": "expedited",
        "state": "-1", "approval": "requested", "start_date": "2024-01-02 10:00:00", "end_date": "",
        "work_start": "", "work_end": "", "closed_at": "", "close_code": "successful_with_caveats",
        "cmdb_ci": "ci1", "opened_at": "", "sys_created_on": "2024-01-01 09:00:00",
        "sys_updated_on": "2024-01-02 09:00:00",
    });
    let (chg, open) = c.change_request(&row, &mut unknown).unwrap();
    assert_eq!(chg.change_type, None);
    assert_eq!(chg.close_code, None);
    assert_eq!(chg.state, "Implement");
    assert_eq!(chg.approved, Some(false));
    assert_eq!(chg.planned_end, None);
    assert_eq!(chg.created_at, parse_instant("2024-01-01 09:00:00").unwrap());
    assert_eq!(chg.service_ref.as_deref(), Some("ci1"));
    assert_eq!((chg.requested_by, chg.assigned_to), (None, None));
    assert!(open);
    // Each unknown value is logged once.
    assert_eq!(unknown.values.len(), 2);
    c.change_request(&row, &mut unknown).unwrap();
    assert_eq!(unknown.values.len(), 2);

    let mut row = row;
    row["requested_by.name"] = json!("Abel Tuter");
    row["assigned_to.name"] = json!("David Loo");
    let (chg, _) = c.change_request(&row, &mut unknown).unwrap();
    assert_eq!(
        (chg.requested_by.as_deref(), chg.assigned_to.as_deref()),
        (Some("Abel Tuter"), Some("David Loo"))
    );
    // An odd people field is nobody; the change request is kept.
    row["requested_by.name"] = json!(["Abel Tuter"]);
    row["assigned_to.name"] = json!(true);
    let (chg, _) = c.change_request(&row, &mut unknown).unwrap();
    assert_eq!(chg.number, "CHG0030001");
    assert_eq!((chg.requested_by, chg.assigned_to), (None, None));
}

#[test]
fn next_link_offsets_and_no_record_bodies() {
    assert_eq!(
        offset_in(
            "https://i/api/now/table/incident?sysparm_query=a%3Db&sysparm_offset=1000&sysparm_limit=1000"
        ),
        Some(1000)
    );
    assert_eq!(offset_in("https://i/api/now/table/incident"), None);
    assert!(is_no_record(
        r#"{"error":{"message":"No Record found","detail":"Records matching query not found. Check query parameter or offset parameter"},"status":"failure"}"#
    ));
    assert!(!is_no_record(
        r#"{"error":{"message":"Invalid table incidentx","detail":null},"status":"failure"}"#
    ));
    assert!(!is_no_record("<html><body><h1>404 Not Found</h1></body></html>"));
}

#[tokio::test]
async fn change_requests_without_the_approval_field_leave_approval_unknown_and_warn_once() {
    let (org, s) = world().await;
    // An ACL on change_request.approval: the field is left out of every row.
    s.servicenow
        .control
        .omit_field_next("/change_request", "approval", 1_000_000);
    let c = connector(config(&s));
    let (result, messages) = read(&c, "change_requests", None).await;
    result.unwrap();
    let got = by_key(records(&messages));
    assert_eq!(got.len(), expected_change_records(&org).len());
    for r in got.values() {
        let Record::ChangeRequest(chg) = r else {
            unreachable!()
        };
        // Unknown, not "not approved": nothing says it was refused.
        assert_eq!(chg.approved, None, "{}", chg.number);
    }

    // One warning per read, however many rows lack the field.
    let mut unknown = Unknowns::default();
    let mut row = json!({
        "sys_id": "c1", "number": "CHG0030001", "short_description": "Deploy", "type": "normal",
        "state": "-1", "start_date": "", "end_date": "", "work_start": "", "work_end": "",
        "closed_at": "", "close_code": "", "cmdb_ci": "ci1", "opened_at": "2024-01-01 09:00:00",
        "sys_updated_on": "2024-01-02 09:00:00",
    });
    for _ in 0..3 {
        assert_eq!(
            offline().change_request(&row, &mut unknown).unwrap().0.approved,
            None
        );
    }
    assert_eq!(unknown.missing, HashSet::from(["approval"]));
    assert!(unknown.values.is_empty());
    // Present but empty is no approval asked for: unknown too, and no warning.
    row["approval"] = json!("");
    let mut quiet = Unknowns::default();
    assert_eq!(
        offline().change_request(&row, &mut quiet).unwrap().0.approved,
        None
    );
    assert!(quiet.missing.is_empty() && quiet.values.is_empty());
}

#[test]
fn approved_states_are_configurable() {
    let row = |approval: &str| {
        json!({
            "sys_id": "c1", "number": "CHG0030001", "short_description": "Deploy", "type": "normal",
            "state": "-1", "approval": approval, "start_date": "", "end_date": "", "work_start": "",
            "work_end": "", "closed_at": "", "close_code": "", "cmdb_ci": "ci1",
            "opened_at": "2024-01-01 09:00:00", "sys_updated_on": "2024-01-02 09:00:00",
        })
    };
    let approved = |c: &ServiceNow, a: &str| {
        c.change_request(&row(a), &mut Unknowns::default())
            .unwrap()
            .0
            .approved
    };
    let default = offline();
    assert_eq!(approved(&default, "approved"), Some(true));
    assert_eq!(approved(&default, "cab_approved"), Some(false));
    assert_eq!(approved(&default, "requested"), Some(false));
    let custom = offline_with(|c| c.approved_states = vec!["approved".into(), "CAB_Approved".into()]);
    assert_eq!(approved(&custom, "cab_approved"), Some(true));
    assert_eq!(approved(&custom, "rejected"), Some(false));
}

#[test]
fn servicenow_priorities_are_stored_under_the_sla_names() {
    let c = offline_with(|c| {
        c.priorities = [("1", "P1"), ("3", "Moderate")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
    });
    let mut row = incident_row();
    let (incident, ticket, _) = c.incident(&row, &mut Unknowns::default()).unwrap();
    assert_eq!(ticket.priority.as_deref(), Some("Moderate"));
    // The severity still follows ServiceNow's own priority number.
    assert_eq!(incident.severity, Some(Severity::Sev3));
    row["priority"] = json!("1");
    let (_, ticket, _) = c.incident(&row, &mut Unknowns::default()).unwrap();
    assert_eq!(ticket.priority.as_deref(), Some("P1"));
    row["priority"] = json!("4");
    let (_, ticket, _) = c.incident(&row, &mut Unknowns::default()).unwrap();
    assert_eq!(
        ticket.priority.as_deref(),
        Some("4"),
        "unlisted priorities keep their number"
    );
}

#[tokio::test]
async fn raising_lookback_days_backfills_older_records_and_moves_covers_from() {
    let (org, s) = world().await;
    let all = expected_incident_records(&org);
    // A lookback that ends halfway through the generated incidents.
    let mut updated: Vec<DateTime<Utc>> = org
        .servicenow
        .incidents
        .iter()
        .filter(|i| !i.acl_hidden && i.malformed.is_none())
        .map(|i| i.sys_updated_on)
        .collect();
    updated.sort();
    let middle = updated[updated.len() / 2];
    let days = (Utc::now() - middle).num_days();
    let short = connector(ServiceNowConfig {
        lookback_days: days,
        ..config(&s)
    });
    let (result, first) = read(&short, "incidents", None).await;
    result.unwrap();
    let got = by_key(records(&first));
    assert!(
        !got.is_empty() && got.len() < all.len(),
        "{} of {}",
        got.len(),
        all.len()
    );
    // Every checkpoint says from when the stream is complete, the first read's included.
    for v in checkpoints(&first) {
        assert!(v[crate::contract::COVERS_FROM].is_string(), "{v}");
    }
    let state = checkpoints(&first).last().cloned().unwrap();
    let from = crate::contract::covers_from(&state).unwrap().unwrap();
    assert!((from - (Utc::now() - Duration::days(days))).num_minutes().abs() < 5);

    // Raised: the next sync, without --full, reads what was left out.
    let wide = connector(config(&s));
    let (result, second) = read(&wide, "incidents", Some(state)).await;
    result.unwrap();
    let mut union = got;
    union.extend(by_key(records(&second)));
    assert_eq!(union, all);
    let after = checkpoints(&second).last().cloned().unwrap();
    let moved = crate::contract::covers_from(&after).unwrap().unwrap();
    assert!(
        (moved - (Utc::now() - Duration::days(36_500)))
            .num_minutes()
            .abs()
            < 5
    );

    // A changed filter is a new scope: its history is read again from the lookback.
    let filtered = connector(ServiceNowConfig {
        incident_query: Some("active=true".into()),
        ..config(&s)
    });
    let (result, third) = read(&filtered, "incidents", Some(after)).await;
    result.unwrap();
    let state: State = serde_json::from_value(checkpoints(&third).last().cloned().unwrap()).unwrap();
    assert_eq!(state.covered.unwrap().query, "active=true");
}
