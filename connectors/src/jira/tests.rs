//! The Jira connector against the fake Jira: records equal to what the generator says, request
//! counts, incremental re-polls, resume after a kill, expired page tokens, faults.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::NaiveDate;
use serde_json::{Value, json};
use tandem_fixtures::jira_data::{CORRELATION_FIELD, IN_PROGRESS, JiraData, JiraIssue};
use tandem_fixtures::{FakeOptions, FakeServers, Fault, OrgSpec, Organisation};

use super::*;
use crate::contract::{Message, read_all};
use crate::model::{ChangeRequest, Incident, Severity, Ticket, TicketTransition};

const TOKEN_VAR: &str = "TANDEM_TEST_JIRA_TOKEN";

fn org() -> Arc<Organisation> {
    Arc::new(
        Organisation::generate(OrgSpec {
            seed: 5,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            // Across the March DST change, so responses mix -0800 and -0700.
            weeks: 20,
        })
        .unwrap(),
    )
}

async fn servers(org: &Arc<Organisation>) -> FakeServers {
    tandem_fixtures::start(Arc::clone(org), FakeOptions::with_secret("t"))
        .await
        .unwrap()
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: StdDuration::from_millis(5),
        max_delay: StdDuration::from_millis(20),
        max_rate_limit_wait: StdDuration::from_secs(5),
        timeout: StdDuration::from_secs(10),
        ..RetryPolicy::default()
    }
}

fn config(base: &str, flavor: Flavor) -> JiraConfig {
    JiraConfig {
        name: "jira".into(),
        base_url: base.into(),
        flavor,
        // Cloud: Basic e-mail:token; Data Center: a bearer personal access token.
        email: (flavor == Flavor::Cloud).then(|| "tandem@acme.example".to_owned()),
        token_env: TOKEN_VAR.into(),
        projects: vec!["OPS".into(), "ENG".into()],
        incident_types: default_incident_types(),
        change_types: default_change_types(),
        issue_types: BTreeMap::new(),
        severities: BTreeMap::new(),
        close_codes: BTreeMap::new(),
        planned_start_field: default_planned_start(),
        planned_end_field: default_planned_end(),
        // The PagerDuty integration's URL field on incident issues.
        correlation_field: Some(CORRELATION_FIELD.into()),
        overlap_minutes: 10,
        page_size: 100,
        // The generated organisation lies in 2024: reach back over all of it.
        lookback_days: 3_650,
    }
}

fn connector(config: JiraConfig) -> Jira {
    Jira::new(
        config,
        &SecretEnv::process().with_override(TOKEN_VAR, "t-jira"),
        policy(),
    )
    .unwrap()
}

async fn read(jira: &Jira, bookmark: Option<Value>) -> (Result<(), ConnectorError>, Vec<Message>) {
    read_all(|out| jira.read("issues", bookmark, out)).await
}

/// Everything a read sent, keyed by primary key (the store's upsert does the same).
#[derive(Debug, Default, PartialEq)]
struct Output {
    tickets: BTreeMap<String, Ticket>,
    transitions: BTreeMap<String, TicketTransition>,
    incidents: BTreeMap<String, Incident>,
    changes: BTreeMap<String, ChangeRequest>,
    quarantined: BTreeMap<String, String>,
}

impl Output {
    fn add(&mut self, messages: &[Message]) {
        for m in messages {
            match m {
                Message::Records(rs) => {
                    for r in rs {
                        match r {
                            Record::Ticket(t) => drop(self.tickets.insert(t.id.clone(), t.clone())),
                            Record::TicketTransition(t) => {
                                drop(self.transitions.insert(t.id.clone(), t.clone()))
                            }
                            Record::Incident(i) => drop(self.incidents.insert(i.id.clone(), i.clone())),
                            Record::ChangeRequest(c) => drop(self.changes.insert(c.id.clone(), c.clone())),
                            other => unreachable!("unexpected record {other:?}"),
                        }
                    }
                }
                Message::Quarantine(qs) => {
                    for q in qs {
                        self.quarantined.insert(q.id.clone(), q.reason.clone());
                    }
                }
                Message::Checkpoint(_) | Message::Raw(_) | Message::Requests(_) => {}
            }
        }
    }

    fn of(messages: &[Message]) -> Self {
        let mut o = Self::default();
        o.add(messages);
        o
    }
}

fn checkpoints(messages: &[Message]) -> Vec<(usize, Value)> {
    messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| match m {
            Message::Checkpoint(v) => Some((i, v.clone())),
            _ => None,
        })
        .collect()
}

fn last_state(messages: &[Message]) -> State {
    let (_, v) = checkpoints(messages).pop().unwrap();
    serde_json::from_value(v).unwrap()
}

// ---------------------------------------------------------------------------------------------
// What the generator says the records are.

fn good(data: &JiraData) -> Vec<&JiraIssue> {
    data.issues.iter().filter(|i| i.quirk.is_none()).collect()
}

fn known_category(data: &JiraData, id: Option<&str>) -> Option<String> {
    id.and_then(|id| data.category(id))
        .filter(|c| ["new", "indeterminate", "done"].contains(c))
        .map(str::to_owned)
}

fn expected_transitions(data: &JiraData, issue: &JiraIssue) -> Vec<TicketTransition> {
    issue
        .status_changes()
        .into_iter()
        .map(|(h, n, item)| TicketTransition {
            id: format!("jira:{}:{}:{n}", issue.key, h.id),
            source: "jira".into(),
            ticket_id: format!("jira:{}", issue.key),
            at: h.at,
            from_status: item.from_string.clone(),
            to_status: item.to_string.clone().unwrap(),
            from_category: known_category(data, item.from.as_deref()),
            to_category: known_category(data, item.to.as_deref()),
        })
        .collect()
}

fn first_into_indeterminate(data: &JiraData, issue: &JiraIssue) -> Option<chrono::DateTime<Utc>> {
    expected_transitions(data, issue)
        .into_iter()
        .find(|t| t.to_category.as_deref() == Some("indeterminate"))
        .map(|t| t.at)
}

/// The author of the changelog entry that first moved the issue into `indeterminate`.
fn acknowledger(data: &JiraData, issue: &JiraIssue) -> Option<String> {
    issue
        .status_changes()
        .into_iter()
        .find(|(_, _, item)| known_category(data, item.to.as_deref()).as_deref() == Some("indeterminate"))
        .map(|(h, _, _)| h.author.clone())
}

fn expected(data: &JiraData) -> Output {
    let mut o = Output::default();
    for issue in good(data) {
        let status = data.status(issue.status_id()).unwrap();
        let id = format!("jira:{}", issue.key);
        let category = match issue.issue_type.as_str() {
            "Service Request" => "request".to_owned(),
            other => other.to_lowercase(),
        };
        o.tickets.insert(
            id.clone(),
            Ticket {
                assignee: issue.assignee.clone(),
                reporter: Some(issue.reporter.clone()),
                id: id.clone(),
                source: "jira".into(),
                key: issue.key.clone(),
                project: issue.project.clone(),
                service_ref: issue.component.clone(),
                service: None,
                team: None,
                category,
                issue_type: issue.issue_type.clone(),
                title: issue.summary.clone(),
                priority: issue.priority.clone(),
                status: status.name.clone(),
                status_category: status.category.clone(),
                labels: issue.labels.clone(),
                created_at: issue.created_at,
                resolved_at: issue.resolved_at(),
                updated_at: issue.updated_at(),
            },
        );
        for t in expected_transitions(data, issue) {
            o.transitions.insert(t.id.clone(), t);
        }
        let severity = match issue.priority.as_deref() {
            Some("Highest") => Some(Severity::Sev1),
            Some("High") => Some(Severity::Sev2),
            Some("Medium") => Some(Severity::Sev3),
            Some(_) => Some(Severity::Sev4),
            None => None,
        };
        if issue.issue_type == "Incident" {
            let mut cause_refs: Vec<String> = issue
                .links
                .iter()
                .filter_map(|l| l.inward_issue.clone())
                .collect();
            cause_refs.extend(
                issue
                    .labels
                    .iter()
                    .filter_map(|l| l.strip_prefix("caused-by:").map(str::to_owned)),
            );
            o.incidents.insert(
                id.clone(),
                Incident {
                    acknowledged_by: acknowledger(data, issue),
                    assignee: issue.assignee.clone(),
                    id: id.clone(),
                    source: "jira".into(),
                    number: Some(issue.number() as i64),
                    title: issue.summary.clone(),
                    service_ref: issue.component.clone(),
                    team_ref: None,
                    service: None,
                    team: None,
                    severity,
                    status: status.name.clone(),
                    started_at: issue.created_at,
                    acknowledged_at: first_into_indeterminate(data, issue),
                    resolved_at: issue.resolved_at(),
                    cause_refs,
                    // The field holds the PagerDuty incident's URL; its last segment is the id.
                    correlation_id: issue.pagerduty_id.clone(),
                    updated_at: issue.updated_at(),
                },
            );
        }
        if issue.issue_type == "Change" {
            o.changes.insert(
                id.clone(),
                ChangeRequest {
                    assigned_to: issue.assignee.clone(),
                    requested_by: Some(issue.reporter.clone()),
                    id: id.clone(),
                    source: "jira".into(),
                    number: issue.key.clone(),
                    title: issue.summary.clone(),
                    service_ref: issue.component.clone(),
                    service: None,
                    team: None,
                    change_type: issue.change_type.clone(),
                    state: status.name.clone(),
                    approved: (status.category != "new").then_some(true),
                    planned_start: issue.planned_start,
                    planned_end: issue.planned_end,
                    actual_start: first_into_indeterminate(data, issue),
                    actual_end: issue.resolved_at(),
                    closed_at: issue.resolved_at(),
                    close_code: issue.resolution().map(|r| {
                        match r {
                            "Done" => "successful",
                            "Successful with issues" => "successful_issues",
                            _ => "unsuccessful",
                        }
                        .to_owned()
                    }),
                    created_at: issue.created_at,
                    updated_at: issue.updated_at(),
                },
            );
        }
    }
    for issue in data.issues.iter().filter(|i| i.quirk.is_some()) {
        let reason = match issue.quirk {
            Some(tandem_fixtures::jira_data::JiraQuirk::CreatedWithoutOffset) => {
                "fields.created: unparsable timestamp"
            }
            _ => "unknown category key \"undefined\"",
        };
        o.quarantined
            .insert(format!("jira:issues:{}", issue.id), reason.into());
    }
    o
}

/// Compares everything but the quarantine reasons' exact wording.
fn assert_same(got: &Output, want: &Output) {
    assert_eq!(got.tickets.len(), want.tickets.len(), "ticket count");
    for (id, t) in &want.tickets {
        assert_eq!(got.tickets.get(id), Some(t), "{id}");
    }
    assert_eq!(got.transitions.len(), want.transitions.len(), "transition count");
    for (id, t) in &want.transitions {
        assert_eq!(got.transitions.get(id), Some(t), "{id}");
    }
    assert_eq!(got.incidents, want.incidents);
    assert_eq!(got.changes, want.changes);
    assert_eq!(
        got.quarantined.keys().collect::<Vec<_>>(),
        want.quarantined.keys().collect::<Vec<_>>()
    );
    for (id, reason) in &want.quarantined {
        assert!(
            got.quarantined[id].contains(reason),
            "{id}: {}",
            got.quarantined[id]
        );
    }
}

fn open_keys(data: &JiraData) -> BTreeSet<String> {
    good(data)
        .into_iter()
        .filter(|i| data.category(i.status_id()) != Some("done"))
        .map(|i| i.key.clone())
        .collect()
}

/// Changelog requests a Cloud read makes: one per 100 histories of every issue with more than
/// the 40 its search result carries.
fn changelog_requests(data: &JiraData) -> usize {
    data.issues
        .iter()
        .filter(|i| i.histories.len() > 40)
        .map(|i| i.histories.len().div_ceil(100))
        .sum()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cloud_read_matches_the_generated_issues() {
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), Flavor::Cloud));
    let (result, messages) = read(&jira, None).await;
    result.unwrap();
    let got = Output::of(&messages);
    let want = expected(&org.jira);
    assert_same(&got, &want);

    // The cases the generator plants are really there.
    assert!(
        got.transitions
            .values()
            .any(|t| t.to_status == "In Arbeit" && t.to_category.as_deref() == Some("indeterminate"))
    );
    assert!(
        got.tickets
            .values()
            .any(|t| t.status == "In Arbeit" && t.status_category == "indeterminate")
    );
    assert!(
        got.transitions
            .values()
            .any(|t| t.from_category.as_deref() == Some("done"))
    );
    assert!(got.incidents.values().any(|i| i.cause_refs.len() == 2));
    assert!(
        got.changes
            .values()
            .any(|c| c.change_type.as_deref() == Some("emergency"))
    );
    let long = org.jira.issues.iter().find(|i| i.histories.len() > 40).unwrap();
    let long_transitions = got
        .transitions
        .values()
        .filter(|t| t.ticket_id == format!("jira:{}", long.key))
        .count();
    assert!(
        long_transitions > 40,
        "the changelog beyond 40 histories was fetched"
    );

    // Requests: the statuses, 50-issue pages (Cloud answers fewer than the 100 asked for when
    // changelogs are expanded), and the full changelogs of the long issues.
    let n = org.jira.issues.len();
    assert_eq!(
        s.jira.control.request_count(),
        1 + n.div_ceil(50) + changelog_requests(&org.jira),
        "{:#?}",
        s.jira.control.requests()
    );
    let requests = s.jira.control.requests();
    assert!(requests[0].starts_with("GET /rest/api/3/status"));
    // The first read reaches back `lookback_days`, in epoch milliseconds.
    assert!(
        requests[1].contains(
            "/rest/api/3/search/jql?jql=project+in+%28%22OPS%22%2C+%22ENG%22%29+AND+updated+%3E%3D+"
        ),
        "{}",
        requests[1]
    );
    assert!(
        requests[1].contains("+ORDER+BY+created+ASC%2C+key+ASC"),
        "{}",
        requests[1]
    );
    assert!(requests[1].contains("expand=changelog"));
    assert_eq!(
        requests.iter().filter(|r| r.contains("nextPageToken=")).count(),
        n.div_ceil(50) - 1
    );

    // A checkpoint after every page, and the final state: the server's clock as high water (its
    // Date header), every issue not done as open.
    assert_eq!(checkpoints(&messages).len(), n.div_ceil(50) + 1);
    let state = last_state(&messages);
    assert!(state.walk.is_none());
    assert_eq!(state.open, open_keys(&org.jira));
    let high = state.high_water_ms.unwrap();
    assert!(
        (Utc::now().timestamp_millis() - high).abs() < 120_000,
        "high water {high}"
    );
}

#[tokio::test]
async fn data_center_read_is_the_same_with_start_at_paging() {
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), Flavor::Datacenter));
    let (result, messages) = read(&jira, None).await;
    result.unwrap();
    assert_same(&Output::of(&messages), &expected(&org.jira));
    // Data Center returns whole changelogs in search results: no changelog requests.
    let n = org.jira.issues.len();
    assert_eq!(s.jira.control.request_count(), 1 + n.div_ceil(100));
    let requests = s.jira.control.requests();
    assert!(
        requests
            .iter()
            .skip(1)
            .all(|r| r.starts_with("GET /rest/api/2/search?"))
    );
    // Each page after the first starts one issue early and asks for one more, so the page count
    // is that of plain paging.
    assert!(requests[2].contains("&startAt=99"), "{requests:#?}");
    assert!(requests[2].contains("maxResults=101&"), "{requests:#?}");
    assert_eq!(last_state(&messages).open, open_keys(&org.jira));
}

/// A Data Center read with `by` issues entering (`> 0`) or leaving (`< 0`) the window before
/// page 2 is asked for: the overlap check fails, the window is read again (two requests more:
/// pages 1 and 2 once more), and the output is still exactly the generated issues.
async fn data_center_shifted(by: i64) {
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), Flavor::Datacenter));
    s.jira.control.shift_next("&startAt=99", by, 1);
    let (result, messages) = read(&jira, None).await;
    result.unwrap();
    assert_same(&Output::of(&messages), &expected(&org.jira));
    let n = org.jira.issues.len();
    assert!(n > 200, "{n} issues: too few for three pages");
    let requests = s.jira.control.requests();
    assert_eq!(requests.len(), 1 + n.div_ceil(100) + 2, "{requests:#?}");
    assert!(requests[3].contains("&startAt=0"), "{requests:#?}");
    assert_eq!(last_state(&messages).open, open_keys(&org.jira));
}

#[tokio::test]
async fn an_issue_leaving_the_window_before_page_two_does_not_hide_another() {
    data_center_shifted(-1).await;
}

#[tokio::test]
async fn an_issue_entering_the_window_before_page_two_is_not_read_twice() {
    data_center_shifted(1).await;
}

#[tokio::test]
async fn data_center_offsets_that_keep_moving_are_read_again_twice_then_read_on() {
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), Flavor::Datacenter));
    // Inserted issues only repeat ones already read, so reading on loses nothing.
    s.jira.control.shift_next("&startAt=99", 1, 5);
    let (result, messages) = read(&jira, None).await;
    result.unwrap();
    assert_same(&Output::of(&messages), &expected(&org.jira));
    let n = org.jira.issues.len();
    assert_eq!(s.jira.control.request_count(), 1 + n.div_ceil(100) + 2 * 2);
}

#[tokio::test]
async fn incremental_read_uses_epoch_millis_and_repolls_open_issues() {
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), Flavor::Cloud));
    let (result, first) = read(&jira, None).await;
    result.unwrap();
    let state = last_state(&first);
    let before = s.jira.control.request_count();

    // Nothing changed since: one empty window page, then the open issues by key.
    let bookmark = serde_json::to_value(&state).unwrap();
    let (result, second) = read(&jira, Some(bookmark)).await;
    result.unwrap();
    let open = open_keys(&org.jira);
    let requests: Vec<String> = s.jira.control.requests().split_off(before);
    assert_eq!(
        requests.len(),
        2 + open.len().div_ceil(REPOLL_CHUNK),
        "{requests:#?}"
    );
    let since = state.high_water_ms.unwrap() - 10 * 60_000;
    assert!(
        requests[1].contains(&format!("updated+%3E%3D+{since}"))
            || requests[1].contains(&format!("updated%20%3E%3D%20{since}")),
        "{}",
        requests[1]
    );
    assert!(requests[2].contains("key+in") || requests[2].contains("key%20in"));
    let got = Output::of(&second);
    let want = expected(&org.jira);
    assert_eq!(
        got.tickets.keys().cloned().collect::<BTreeSet<_>>(),
        open.iter().map(|k| format!("jira:{k}")).collect()
    );
    for (id, t) in &got.tickets {
        assert_eq!(Some(t), want.tickets.get(id));
    }
    assert_eq!(last_state(&second).open, open);

    // A bookmark inside the simulated range: the window brings what changed after it.
    let cut = org.spec.start_at() + chrono::Duration::weeks(15);
    let bookmark = json!({"high_water_ms": cut.timestamp_millis()});
    let (result, third) = read(&jira, Some(bookmark)).await;
    result.unwrap();
    let since = cut - chrono::Duration::minutes(10);
    let changed: BTreeSet<String> = good(&org.jira)
        .iter()
        .filter(|i| i.updated_at() >= since)
        .map(|i| format!("jira:{}", i.key))
        .collect();
    assert_eq!(
        Output::of(&third)
            .tickets
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        changed
    );
}

/// Runs a clean read, then "kills" it after checkpoint `n` and resumes from there: what was
/// committed before the kill plus the resumed read equals the clean read.
async fn resume_from(flavor: Flavor, tamper: impl Fn(&mut Value)) -> (Output, Output, Vec<String>) {
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), flavor));
    let (result, clean) = read(&jira, None).await;
    result.unwrap();
    let cps = checkpoints(&clean);
    let (at, mut checkpoint) = cps[1].clone();
    assert!(
        checkpoint["walk"]["page"].is_object(),
        "a mid-window checkpoint: {checkpoint}"
    );
    tamper(&mut checkpoint);
    let before = s.jira.control.request_count();
    let (result, resumed) = read(&jira, Some(checkpoint)).await;
    result.unwrap();
    let mut union = Output::of(&clean[..at]);
    union.add(&resumed);
    let requests = s.jira.control.requests().split_off(before);
    (Output::of(&clean), union, requests)
}

#[tokio::test]
async fn resume_after_a_kill_gives_the_clean_read() {
    let (clean, union, requests) = resume_from(Flavor::Cloud, |_| {}).await;
    assert_same(&union, &clean);
    // It went on from the saved token, not from the start.
    assert!(requests[1].contains("nextPageToken="), "{}", requests[1]);

    let (clean, union, requests) = resume_from(Flavor::Datacenter, |_| {}).await;
    assert_same(&union, &clean);
    // From the saved position, one issue early: the saved last id is checked on resume too.
    assert!(requests[1].ends_with("&startAt=199"), "{}", requests[1]);
}

#[tokio::test]
async fn an_expired_page_token_restarts_the_window() {
    let (clean, union, requests) = resume_from(Flavor::Cloud, |cp| {
        cp["walk"]["page"] = json!({"token": "c3RhbGU6MDA6MQ"});
    })
    .await;
    assert_same(&union, &clean);
    assert!(requests[1].contains("nextPageToken=c3RhbGU6MDA6MQ"));
    assert!(
        !requests[2].contains("nextPageToken="),
        "restarted: {}",
        requests[2]
    );
}

#[tokio::test]
async fn retries_rate_limits_cut_bodies_and_proxy_errors() {
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), Flavor::Cloud));
    let c = &s.jira.control;
    c.unavailable_next("/status", 1, Some(0));
    c.rate_limit_next("/search/jql", 1, Some(0));
    c.rate_limit_next("/search/jql", 1, None);
    c.exhaust_next("nextPageToken", 1, 0);
    c.truncate_next("nextPageToken", 1);
    c.fail_next("/changelog", 502, 1);
    c.inject("/changelog", Fault::Truncated, 1);
    let (result, messages) = read(&jira, None).await;
    result.unwrap();
    assert_same(&Output::of(&messages), &expected(&org.jira));
    let n = org.jira.issues.len();
    assert_eq!(
        c.request_count(),
        1 + n.div_ceil(50) + changelog_requests(&org.jira) + 7
    );
}

#[tokio::test]
async fn expired_credentials_mid_pagination_stop_with_an_auth_error() {
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), Flavor::Cloud));
    s.jira.control.unauthorized_next("nextPageToken", 1);
    let (result, messages) = read(&jira, None).await;
    let err = result.unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert!(err.to_string().contains("$TANDEM_TEST_JIRA_TOKEN"), "{err}");
    // Page 1 was delivered and checkpointed before the failure.
    let got = Output::of(&messages);
    assert!(!got.tickets.is_empty() && got.tickets.len() <= 50);
    assert_eq!(checkpoints(&messages).len(), 1);

    s.jira.control.inject("/status", Fault::HtmlUnauthorized, 1);
    let (result, _) = read(&jira, None).await;
    assert!(result.unwrap_err().is_auth());
}

#[tokio::test]
async fn short_pages_do_not_end_a_data_center_window() {
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), Flavor::Datacenter));
    s.jira.control.short_page_next("/rest/api/2/search", 1);
    let (result, messages) = read(&jira, None).await;
    result.unwrap();
    assert_same(&Output::of(&messages), &expected(&org.jira));
    let n = org.jira.issues.len();
    // The first page held 50: the next starts at 50, one page more than a clean read.
    assert_eq!(s.jira.control.request_count(), 1 + (n - 50).div_ceil(100) + 1);
    // With the one issue of overlap, that page asks from 49.
    assert!(s.jira.control.requests()[2].contains("&startAt=49"));
}

#[tokio::test]
async fn the_removed_legacy_search_gets_a_clear_message() {
    let org = org();
    let s = servers(&org).await;
    let mut jira = connector(config(&s.jira.base_url(), Flavor::Cloud));
    jira.search_path = "/rest/api/3/search".into();
    let (result, _) = read(&jira, None).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("410") && err.contains("flavor = \"cloud\"") && err.contains("/search/jql"),
        "{err}"
    );
    let err = jira.check().await.unwrap_err().to_string();
    assert!(err.contains("410"), "{err}");
}

#[tokio::test]
async fn check_proves_credentials_and_projects() {
    let org = org();
    let s = servers(&org).await;
    connector(config(&s.jira.base_url(), Flavor::Cloud))
        .check()
        .await
        .unwrap();
    connector(config(&s.jira.base_url(), Flavor::Datacenter))
        .check()
        .await
        .unwrap();
    // Per flavor: the search, the status list and one issue's changelog.
    assert_eq!(s.jira.control.request_count(), 2 * 3);

    let wrong = Jira::new(
        config(&s.jira.base_url(), Flavor::Cloud),
        &SecretEnv::process().with_override(TOKEN_VAR, "nope"),
        policy(),
    )
    .unwrap();
    let err = wrong.check().await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert!(!err.to_string().contains("nope"));

    let mut cfg = config(&s.jira.base_url(), Flavor::Cloud);
    cfg.projects.push("NOPE".into());
    let err = connector(cfg).check().await.unwrap_err().to_string();
    assert!(
        err.contains("400") && err.contains("'NOPE' does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn vanished_open_issues_are_dropped_from_the_repoll() {
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), Flavor::Cloud));
    let open = open_keys(&org.jira);
    let real = open.iter().next().unwrap().clone();
    let bookmark = json!({
        "high_water_ms": Utc::now().timestamp_millis(),
        "open": ["OPS-99999", real],
    });
    let (result, messages) = read(&jira, Some(bookmark)).await;
    result.unwrap();
    let got = Output::of(&messages);
    assert_eq!(
        got.tickets.keys().collect::<Vec<_>>(),
        vec![&format!("jira:{real}")]
    );
    let state = last_state(&messages);
    assert_eq!(state.open, BTreeSet::from([real]));
    // Status, an empty window, the re-poll refused for the missing key, the re-poll again.
    assert_eq!(s.jira.control.request_count(), 4);
}

#[tokio::test]
async fn a_transition_into_the_localised_status_counts_as_in_progress() {
    // The acknowledgement of an incident is its first move into the `indeterminate` category,
    // whatever the status is called; here checked on a ticket that only ever was "In Arbeit".
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), Flavor::Datacenter));
    let (result, messages) = read(&jira, None).await;
    result.unwrap();
    let got = Output::of(&messages);
    let arbeit = good(&org.jira)
        .into_iter()
        .find(|i| i.status_id() == tandem_fixtures::jira_data::IN_ARBEIT)
        .unwrap();
    let t = &got.tickets[&format!("jira:{}", arbeit.key)];
    assert_eq!(
        (t.status.as_str(), t.status_category.as_str()),
        ("In Arbeit", "indeterminate")
    );
    // And incidents acknowledge on "In Progress", by category too.
    let acked = good(&org.jira)
        .into_iter()
        .find(|i| {
            i.issue_type == "Incident"
                && i.status_changes()
                    .iter()
                    .any(|c| c.2.to.as_deref() == Some(IN_PROGRESS))
        })
        .unwrap();
    assert!(
        got.incidents[&format!("jira:{}", acked.key)]
            .acknowledged_at
            .is_some()
    );
}

#[test]
fn config_is_strict_and_validated() {
    let base =
        json!({"name": "j", "base_url": "https://acme.atlassian.net", "token_env": "T", "projects": ["OPS"]});
    let parsed: JiraConfig = serde_json::from_value(base.clone()).unwrap();
    assert_eq!(parsed.flavor, Flavor::Cloud);
    assert_eq!(parsed.overlap_minutes, 10);
    assert_eq!(parsed.page_size, 100);
    assert_eq!(parsed.incident_types, vec!["Incident"]);
    let mut typo = base.clone();
    typo["projcts"] = json!(["OPS"]);
    assert!(serde_json::from_value::<JiraConfig>(typo).is_err());
    let mut dc = base.clone();
    dc["flavor"] = json!("datacenter");
    assert_eq!(
        serde_json::from_value::<JiraConfig>(dc).unwrap().flavor,
        Flavor::Datacenter
    );

    let env = SecretEnv::process().with_override("T", "x");
    let build = |v: Value| Jira::new(serde_json::from_value(v).unwrap(), &env, policy()).map(|_| ());
    let mut none = base.clone();
    none["projects"] = json!([]);
    assert!(build(none).unwrap_err().to_string().contains("projects"));
    let mut bad = base.clone();
    bad["projects"] = json!(["OPS) OR (1=1"]);
    assert!(build(bad).is_err());
    let mut bad = base.clone();
    bad["close_codes"] = json!({"Done": "great"});
    assert!(build(bad).unwrap_err().to_string().contains("close_codes"));
    let mut missing = base;
    missing["token_env"] = json!("TANDEM_TEST_SURELY_UNSET_JIRA");
    assert!(matches!(
        build(missing),
        Err(ConnectorError::MissingSecret { .. })
    ));
}

/// An incident issue as Jira Cloud returns it, with `field` set to `value`.
fn incident_with(field: &str, value: Value) -> Value {
    let mut issue = json!({"id": "10042", "key": "OPS-42", "fields": {
        "issuetype": {"id": "10020", "name": "Incident", "subtask": false, "hierarchyLevel": 0},
        "summary": "Checkout 5xx",
        "status": {"id": "3", "name": "In Progress", "statusCategory": {"id": 4, "key": "indeterminate"}},
        "created": "2024-03-09T10:00:00.000-0800", "updated": "2024-03-09T11:00:00.000-0800",
        "resolutiondate": null, "labels": ["incident", "pagerduty"],
        "components": [{"id": "10100", "name": "checkout"}],
        "priority": {"id": "2", "name": "High"}, "project": {"id": "10000", "key": "OPS"},
    }});
    issue["fields"][field] = value;
    issue
}

fn correlation_of(mapper: &map::Mapper, issue: &Value) -> Option<String> {
    let mapped = mapper
        .issue(issue, &[], &map::StatusCategories::default())
        .unwrap();
    mapped
        .records
        .iter()
        .find_map(|r| match r {
            Record::Incident(i) => Some(i.correlation_id.clone()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn jira_correlation_field_gives_the_incident_id_number_or_last_url_segment() {
    let with_field = JiraConfig {
        correlation_field: Some("customfield_10070".into()),
        ..config("https://acme.atlassian.net", Flavor::Cloud)
    };
    let m = map::Mapper::new(&with_field).unwrap();
    let of = |value: Value| correlation_of(&m, &incident_with("customfield_10070", value));
    let key = Some("PT4KHLK".to_owned());
    // A URL field: the last non-empty path segment, without query or fragment.
    assert_eq!(of(json!("https://acme.pagerduty.com/incidents/PT4KHLK")), key);
    assert_eq!(of(json!(" https://acme.pagerduty.com/incidents/PT4KHLK/ ")), key);
    assert_eq!(
        of(json!(
            "https://acme.pagerduty.com/incidents/PT4KHLK?utm_source=jira#timeline"
        )),
        key
    );
    // A text field with the id or the number, a number field, a select list's option.
    assert_eq!(of(json!("PT4KHLK")), key);
    assert_eq!(of(json!("1234")).as_deref(), Some("1234"));
    assert_eq!(of(json!(1234)).as_deref(), Some("1234"));
    assert_eq!(
        of(
            json!({"self": "https://acme.atlassian.net/rest/api/3/customFieldOption/10400", "value": "PT4KHLK", "id": "10400"})
        ),
        key
    );
    // Optional: empty, unset, a URL without a path or a rich-text document is none, and the
    // incident is still mapped.
    assert_eq!(of(Value::Null), None);
    assert_eq!(of(json!("  ")), None);
    assert_eq!(of(json!("https://acme.pagerduty.com/")), None);
    assert_eq!(
        of(
            json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "PT4KHLK"}]}]})
        ),
        None
    );
    let mut absent = incident_with("customfield_10070", Value::Null);
    absent["fields"]
        .as_object_mut()
        .unwrap()
        .remove("customfield_10070");
    assert_eq!(correlation_of(&m, &absent), None);

    // Without `correlation_field`, no field is read, whatever the issue holds.
    let plain = map::Mapper::new(&JiraConfig {
        correlation_field: None,
        ..config("https://acme.atlassian.net", Flavor::Cloud)
    })
    .unwrap();
    assert_eq!(
        correlation_of(&plain, &incident_with("customfield_10070", json!("PT4KHLK"))),
        None
    );
}

#[tokio::test]
async fn jira_asks_for_the_correlation_field_only_when_configured() {
    let org = org();
    let s = servers(&org).await;
    // Configured (the default of these tests): asked for, and every mirrored incident carries
    // the PagerDuty incident id from the URL the integration wrote.
    let jira = connector(config(&s.jira.base_url(), Flavor::Cloud));
    let (result, messages) = read(&jira, None).await;
    result.unwrap();
    let searches: Vec<String> = s
        .jira
        .control
        .requests()
        .into_iter()
        .filter(|r| r.contains("/search/jql"))
        .collect();
    assert!(!searches.is_empty());
    assert!(
        searches.iter().all(|r| r.contains(CORRELATION_FIELD)),
        "{searches:?}"
    );
    let got = Output::of(&messages);
    let mirrored: Vec<&Incident> = got
        .incidents
        .values()
        .filter(|i| i.correlation_id.is_some())
        .collect();
    assert!(!mirrored.is_empty());
    for i in mirrored {
        assert!(
            org.incident(i.correlation_id.as_deref().unwrap()).is_some(),
            "{i:?}"
        );
    }

    // Not configured: not asked for, and no incident carries a correlation.
    let s = servers(&org).await;
    let jira = connector(JiraConfig {
        correlation_field: None,
        ..config(&s.jira.base_url(), Flavor::Cloud)
    });
    let (result, messages) = read(&jira, None).await;
    result.unwrap();
    assert!(
        s.jira
            .control
            .requests()
            .iter()
            .all(|r| !r.contains(CORRELATION_FIELD))
    );
    let got = Output::of(&messages);
    assert!(!got.incidents.is_empty());
    assert!(got.incidents.values().all(|i| i.correlation_id.is_none()));
}

#[test]
fn missing_keys_come_out_of_jira_errors() {
    let body = r#"{"errorMessages":["An issue with key 'OPS-9' does not exist for field 'key'.","An issue with key 'ENG-1' does not exist for field 'key'."],"errors":{}}"#;
    assert_eq!(missing_keys(body), vec!["OPS-9", "ENG-1"]);
    assert!(missing_keys(r#"{"errorMessages":["Field 'x' does not exist"]}"#).is_empty());
    assert_eq!(quoted_list(&["A".into(), "b\"c".into()]), r#""A", "b\"c""#);
}

#[tokio::test]
async fn a_server_that_refuses_every_token_fails_instead_of_looping() {
    let org = org();
    let s = servers(&org).await;
    let jira = connector(config(&s.jira.base_url(), Flavor::Cloud));
    s.jira.control.fail_next("nextPageToken", 400, 100);
    let (result, messages) = read(&jira, None).await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("HTTP 400"), "{err}");
    // Page 1 (with the changelogs of its long issues), the refused page 2, page 1 again, page 2
    // refused again: then it gives up.
    let long_on_page_1 = org
        .jira
        .issues
        .iter()
        .take(50)
        .filter(|i| i.histories.len() > 40)
        .count();
    assert!(long_on_page_1 > 0);
    assert_eq!(s.jira.control.request_count(), 1 + 2 * (2 + long_on_page_1));
    assert_eq!(checkpoints(&messages).len(), 2);
}

#[tokio::test]
async fn a_bookmark_from_the_other_flavor_restarts_its_window() {
    let org = org();
    let s = servers(&org).await;
    let dc = connector(config(&s.jira.base_url(), Flavor::Datacenter));
    let (result, clean) = read(&dc, None).await;
    result.unwrap();
    let (at, checkpoint) = checkpoints(&clean)[1].clone();
    assert!(checkpoint["walk"]["page"]["start_at"].is_u64(), "{checkpoint}");
    let cloud = connector(config(&s.jira.base_url(), Flavor::Cloud));
    let (result, resumed) = read(&cloud, Some(checkpoint)).await;
    result.unwrap();
    let mut union = Output::of(&clean[..at]);
    union.add(&resumed);
    assert_same(&union, &Output::of(&clean));
}

#[tokio::test]
async fn jira_status_list_unavailable_degrades_to_embedded_categories() {
    let org = org();
    for (flavor, status, path) in [
        (Flavor::Cloud, 403, "/rest/api/3/status"),
        (Flavor::Datacenter, 404, "/rest/api/2/status"),
    ] {
        let s = servers(&org).await;
        let jira = connector(config(&s.jira.base_url(), flavor));
        let (result, clean) = read(&jira, None).await;
        result.unwrap();
        let clean = Output::of(&clean);

        let s = servers(&org).await;
        let jira = connector(config(&s.jira.base_url(), flavor));
        s.jira.control.fail_next(path, status, 10);
        let (result, messages) = read(&jira, None).await;
        assert!(
            result.is_ok(),
            "HTTP {status} on the status list failed the read: {result:?}"
        );
        let got = Output::of(&messages);
        // The current status's category is embedded: every ticket is as with the list.
        assert_eq!(got.tickets, clean.tickets, "{flavor:?}");
        assert_eq!(got.quarantined.len(), clean.quarantined.len());
        // Transitions take the categories seen in issues: never a different one, only none
        // where no issue read before showed the status.
        assert_eq!(got.transitions.len(), clean.transitions.len());
        let mut known = 0;
        for (id, t) in &got.transitions {
            let want = &clean.transitions[id];
            for (have, want) in [
                (&t.from_category, &want.from_category),
                (&t.to_category, &want.to_category),
            ] {
                if have.is_some() {
                    known += 1;
                    assert_eq!(have, want, "{id}");
                }
            }
        }
        assert!(
            known > got.transitions.len(),
            "{known} of {}",
            2 * got.transitions.len()
        );
        // The categories seen are kept for the next read.
        let state = last_state(&messages);
        assert_eq!(
            state
                .seen_categories
                .get(tandem_fixtures::jira_data::IN_ARBEIT)
                .map(String::as_str),
            Some("indeterminate")
        );
        // ... and serve the next read, still without the list: the re-polled open issues'
        // transitions have the categories a clean read gives them.
        s.jira.control.fail_next(path, status, 10);
        let (result, again) = read(&jira, Some(serde_json::to_value(&state).unwrap())).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(last_state(&again).seen_categories, state.seen_categories);
        let again = Output::of(&again);
        assert!(!again.transitions.is_empty());
        for (id, t) in &again.transitions {
            assert_eq!(t, &clean.transitions[id], "{id}");
        }
    }
}

/// Days back from now to the middle of the generated issues' updates.
fn days_to_middle(org: &Organisation) -> i64 {
    let mut updated: Vec<chrono::DateTime<Utc>> = good(&org.jira).iter().map(|i| i.updated_at()).collect();
    updated.sort();
    (Utc::now() - updated[updated.len() / 2]).num_days()
}

#[tokio::test]
async fn raising_jira_lookback_days_backfills_older_issues_and_moves_covers_from() {
    let org = org();
    let s = servers(&org).await;
    let days = days_to_middle(&org);
    let short = connector(JiraConfig {
        lookback_days: days,
        ..config(&s.jira.base_url(), Flavor::Cloud)
    });
    let (result, first) = read(&short, None).await;
    result.unwrap();
    let got = Output::of(&first);
    let want = expected(&org.jira);
    assert!(!got.tickets.is_empty() && got.tickets.len() < want.tickets.len());
    // Every checkpoint says from when the stream is complete, the first read's included.
    for (_, v) in checkpoints(&first) {
        assert!(v[crate::contract::COVERS_FROM].is_string(), "{v}");
    }
    let (_, state) = checkpoints(&first).pop().unwrap();
    let from = crate::contract::covers_from(&state).unwrap().unwrap();
    assert!(
        (from - (Utc::now() - chrono::Duration::days(days)))
            .num_minutes()
            .abs()
            < 5
    );

    // Raised: the next sync, without --full, reads the older issues.
    let wide = connector(config(&s.jira.base_url(), Flavor::Cloud));
    let (result, second) = read(&wide, Some(state)).await;
    result.unwrap();
    let mut all = got;
    all.add(&second);
    assert_eq!(all.tickets, want.tickets);
    let (_, after) = checkpoints(&second).pop().unwrap();
    let moved = crate::contract::covers_from(&after).unwrap().unwrap();
    assert!(
        (moved - (Utc::now() - chrono::Duration::days(3_650)))
            .num_minutes()
            .abs()
            < 5
    );
    let backfill = s
        .jira
        .control
        .requests()
        .into_iter()
        .filter(|r| r.contains("updated+%3C+"))
        .count();
    assert!(backfill > 0, "the older history is read in a bounded window");
}

#[tokio::test]
async fn adding_a_jira_project_backfills_its_history() {
    let org = org();
    let s = servers(&org).await;
    let ops = connector(JiraConfig {
        projects: vec!["OPS".into()],
        ..config(&s.jira.base_url(), Flavor::Datacenter)
    });
    let (result, first) = read(&ops, None).await;
    result.unwrap();
    let got = Output::of(&first);
    assert!(got.tickets.keys().all(|k| k.starts_with("jira:OPS-")));
    let (_, state) = checkpoints(&first).pop().unwrap();

    let both = connector(config(&s.jira.base_url(), Flavor::Datacenter));
    let (result, second) = read(&both, Some(state)).await;
    result.unwrap();
    let got = Output::of(&second);
    let eng: BTreeSet<&String> = got
        .tickets
        .keys()
        .filter(|k| k.starts_with("jira:ENG-"))
        .collect();
    let want = expected(&org.jira);
    let want_eng: BTreeSet<&String> = want
        .tickets
        .keys()
        .filter(|k| k.starts_with("jira:ENG-"))
        .collect();
    assert!(!want_eng.is_empty());
    assert_eq!(eng, want_eng, "the added project's whole history arrives");
    let state = last_state(&second);
    assert!(state.projects.unwrap().contains_key("ENG"));
}
