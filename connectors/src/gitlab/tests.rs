//! The GitLab connector against the fake GitLab: stored records equal what the generator says,
//! request counts equal the pages, and faults, resumes and re-polls behave.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::NaiveDate;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;
use tandem_fixtures::gitlab_data::{GlDeployment, GlMergeRequest};
use tandem_fixtures::{FakeOptions, FakeServers, Fault, OrgSpec, Organisation};

use super::*;
use crate::contract::{Message, covers_from, read_all};

const TOKEN_VAR: &str = "TANDEM_TEST_GITLAB_TOKEN";

struct World {
    org: Arc<Organisation>,
    servers: FakeServers,
}

async fn world(weeks: u32) -> World {
    let org = Arc::new(
        Organisation::generate(OrgSpec {
            seed: 7,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            weeks,
        })
        .unwrap(),
    );
    let servers = tandem_fixtures::start(Arc::clone(&org), FakeOptions::with_secret("t"))
        .await
        .unwrap();
    World { org, servers }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base_delay: StdDuration::from_millis(5),
        max_delay: StdDuration::from_millis(20),
        max_rate_limit_wait: StdDuration::from_secs(10),
        timeout: StdDuration::from_secs(5),
        ..RetryPolicy::default()
    }
}

fn config(w: &World, environments: &[&str]) -> GitLabConfig {
    GitLabConfig {
        name: "gl".into(),
        base_url: w.servers.gitlab.base_url(),
        token_env: TOKEN_VAR.into(),
        projects: vec!["acme/billing".into(), "acme/notifications".into()],
        environments: environments.iter().map(|e| (*e).to_owned()).collect(),
        production_environments: default_production(),
        overlap_minutes: 10,
        lookback_days: None,
        // The simulated world's clock stopped long before today's: nothing it runs is stale.
        stale_after_days: 36_500,
        pagination: Pagination::Keyset,
    }
}

fn connector(config: GitLabConfig) -> GitLab {
    let env = SecretEnv::process().with_override(TOKEN_VAR, "t-gitlab");
    GitLab::new(config, &env, fast()).unwrap()
}

async fn run(c: &GitLab, stream: &str, bookmark: Option<Value>) -> (Result<(), ConnectorError>, Out) {
    let (result, messages) = read_all(|out| c.read(stream, bookmark, out)).await;
    (result, Out::from(messages))
}

#[derive(Default)]
struct Out {
    deployments: Vec<Deployment>,
    changes: Vec<Change>,
    commits: Vec<Commit>,
    quarantined: Vec<Quarantined>,
    checkpoints: Vec<Value>,
}

impl From<Vec<Message>> for Out {
    fn from(messages: Vec<Message>) -> Self {
        let mut out = Out::default();
        for m in messages {
            match m {
                Message::Records(records) => {
                    for r in records {
                        match r {
                            Record::Deployment(d) => out.deployments.push(d),
                            Record::Change(c) => out.changes.push(c),
                            Record::Commit(c) => out.commits.push(c),
                            other => panic!("unexpected record {other:?}"),
                        }
                    }
                }
                Message::Quarantine(q) => out.quarantined.extend(q),
                Message::Checkpoint(c) => out.checkpoints.push(c),
                Message::Raw(_) | Message::Requests(_) => {}
            }
        }
        out
    }
}

impl Out {
    fn deployment_ids(&self) -> BTreeSet<String> {
        self.deployments.iter().map(|d| d.id.clone()).collect()
    }
    fn change_ids(&self) -> BTreeSet<String> {
        self.changes.iter().map(|c| c.id.clone()).collect()
    }
    fn last_checkpoint(&self) -> Value {
        self.checkpoints.last().cloned().unwrap()
    }
}

fn requests(w: &World) -> Vec<String> {
    w.servers.gitlab.control.requests()
}

fn pages(n: usize) -> usize {
    n.div_ceil(100).max(1)
}

/// What the connector must make of a generated deployment.
fn expected_deployment(d: &GlDeployment) -> Deployment {
    let status = match d.status.as_str() {
        "success" => DeploymentStatus::Success,
        "failed" => DeploymentStatus::Failure,
        "canceled" => DeploymentStatus::Cancelled,
        _ => DeploymentStatus::InProgress,
    };
    Deployment {
        change_refs: Vec::new(),
        deployed_by: Some(d.user.clone()),
        id: format!("gl:{}:{}", d.project, d.id),
        source: "gl".into(),
        repo: d.project.clone(),
        service: None,
        team: None,
        environment: d.environment.clone(),
        is_production: d.environment == "production",
        status,
        sha: d.sha.clone(),
        created_at: d.created_at,
        finished_at: d.effective_finished_at(),
        updated_at: d.updated_at,
    }
}

fn expected_change(m: &GlMergeRequest) -> Change {
    Change {
        author: Some(m.author.clone()),
        id: format!("gl:{}:{}", m.project, m.iid),
        source: "gl".into(),
        repo: m.project.clone(),
        service: None,
        team: None,
        number: m.iid as i64,
        title: m.title.clone(),
        state: "merged".into(),
        created_at: m.created_at,
        merged_at: m.merged_at,
        merge_commit_sha: m.landed_sha().map(str::to_owned),
        first_commit_at: m.commits.iter().map(|c| c.authored_at).min(),
        labels: m.labels.clone(),
        is_revert: m.title.starts_with("Revert \""),
        reverts: m.reverts.map(|r| r as i64),
        updated_at: m.updated_at,
    }
}

fn sorted<T: Clone, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut v = items.to_vec();
    v.sort_by_key(key);
    v
}

#[tokio::test]
async fn deployments_equal_the_generator_in_one_request_per_page() {
    let w = world(52).await;
    let c = connector(config(&w, &["production", "staging"]));
    let (result, out) = run(&c, "deployments", None).await;
    result.unwrap();
    let g = &w.org.gitlab;
    let expected: Vec<Deployment> = g.deployments.iter().map(expected_deployment).collect();
    assert!(expected.len() > 250, "{}", expected.len());
    assert_eq!(
        sorted(&out.deployments, |d| d.id.clone()),
        sorted(&expected, |d| d.id.clone())
    );
    assert!(out.quarantined.is_empty());
    // The cases that matter, spelled out.
    let running = out
        .deployments
        .iter()
        .find(|d| d.status == DeploymentStatus::InProgress)
        .unwrap();
    assert_eq!(running.finished_at, None);
    let cancelled = g
        .deployments
        .iter()
        .find(|d| d.status == "canceled" && d.finished_at.is_none())
        .unwrap();
    let mapped = out
        .deployments
        .iter()
        .find(|d| d.id == format!("gl:{}:{}", cancelled.project, cancelled.id))
        .unwrap();
    assert_eq!(mapped.status, DeploymentStatus::Cancelled);
    assert_eq!(mapped.finished_at, Some(cancelled.updated_at));
    assert!(
        out.deployments
            .iter()
            .any(|d| d.status == DeploymentStatus::Failure)
    );
    assert!(
        out.deployments
            .iter()
            .all(|d| d.is_production == (d.environment == "production"))
    );

    // One request per page per project and environment, each asking for keyset paging.
    let mut want = 0;
    for p in &g.projects {
        for env in ["production", "staging"] {
            let n = g
                .deployments
                .iter()
                .filter(|d| d.project_id == p.id && d.environment == env)
                .count();
            want += pages(n);
        }
    }
    let log = requests(&w);
    assert_eq!(log.len(), want, "{log:#?}");
    assert!(log.iter().any(|r| r.contains("cursor=")), "no second keyset page");
    assert!(log.iter().all(|r| r.contains("pagination=keyset")));
    assert!(
        log[0].starts_with(
            "GET /api/v4/projects/acme%2Fbilling/deployments?environment=production&order_by=updated_at&sort=asc&per_page=100"
        ),
        "{}",
        log[0]
    );
    // Unfinished ones are remembered for the next sync.
    let state = out.last_checkpoint();
    let running_gl = g.deployments.iter().find(|d| d.status == "running").unwrap();
    assert_eq!(
        state["cursors"]["acme/billing@production"]["unfinished"],
        json!([running_gl.id])
    );
    assert!(state["cursors"]["acme/billing@production"]["walk"].is_null());
}

#[tokio::test]
async fn offset_paging_reads_the_same_records_following_x_next_page() {
    let w = world(52).await;
    let mut cfg = config(&w, &["production", "staging"]);
    cfg.pagination = Pagination::Offset;
    let (result, out) = run(&connector(cfg), "deployments", None).await;
    result.unwrap();
    let log = requests(&w);
    assert!(log.iter().all(|r| !r.contains("pagination=keyset")));
    assert!(log.iter().any(|r| r.ends_with("&page=2")), "{log:#?}");
    let (_, keyset) = run(
        &connector(config(&w, &["production", "staging"])),
        "deployments",
        None,
    )
    .await;
    assert_eq!(
        sorted(&out.deployments, |d| d.id.clone()),
        sorted(&keyset.deployments, |d| d.id.clone())
    );
    assert_eq!(requests(&w).len(), 2 * log.len());
}

#[tokio::test]
async fn default_config_reads_production_deployments_only() {
    let w = world(8).await;
    let cfg: GitLabConfig = serde_json::from_value(json!({
        "name": "gl",
        "base_url": format!("{}/", w.servers.gitlab.base_url()),
        "token_env": TOKEN_VAR,
        "projects": ["acme/billing"],
    }))
    .unwrap();
    assert_eq!(cfg.environments, ["production"]);
    assert_eq!(cfg.production_environments, ["prod", "production"]);
    assert_eq!(
        (cfg.overlap_minutes, cfg.lookback_days, cfg.stale_after_days),
        (10, Some(365), 7)
    );
    assert_eq!(cfg.pagination, Pagination::Keyset);
    // A year back from the simulated world's "now" holds all of its eight weeks.
    let c = connector(cfg).with_now(w.org.spec.now());
    let (result, out) = run(&c, "deployments", None).await;
    result.unwrap();
    let want = w
        .org
        .gitlab
        .deployments
        .iter()
        .filter(|d| d.project == "acme/billing" && d.environment == "production")
        .count();
    assert_eq!(out.deployments.len(), want);
    assert!(out.deployments.iter().all(|d| d.is_production));
    assert_eq!(requests(&w).len(), pages(want));

    let unknown = serde_json::from_value::<GitLabConfig>(json!({
        "name": "gl", "token_env": "X", "projects": [], "page_size": 5
    }));
    assert!(unknown.unwrap_err().to_string().contains("page_size"));
    let bad = serde_json::from_value::<GitLabConfig>(json!({
        "name": "gl", "token_env": "X", "projects": [], "pagination": "cursor"
    }));
    assert!(bad.is_err());
}

#[tokio::test]
async fn merged_merge_requests_and_their_commits_equal_the_generator() {
    let w = world(26).await;
    let c = connector(config(&w, &["production"]));
    let (result, out) = run(&c, "merge_requests", None).await;
    result.unwrap();
    let g = &w.org.gitlab;
    let merged: Vec<&GlMergeRequest> = g.merge_requests.iter().filter(|m| m.state == "merged").collect();
    let expected: Vec<Change> = merged.iter().map(|m| expected_change(m)).collect();
    assert!(expected.len() > 200, "{}", expected.len());
    assert_eq!(
        sorted(&out.changes, |c| c.id.clone()),
        sorted(&expected, |c| c.id.clone())
    );
    assert!(out.quarantined.is_empty());
    let squashed = merged.iter().find(|m| m.squash).unwrap();
    let change = out
        .changes
        .iter()
        .find(|c| c.id == format!("gl:{}:{}", squashed.project, squashed.iid))
        .unwrap();
    assert_eq!(change.merge_commit_sha, squashed.squash_commit_sha);
    let revert = out.changes.iter().find(|c| c.is_revert).unwrap();
    let original = g.merge_requests.iter().find(|m| m.reverts.is_some()).unwrap();
    assert_eq!(revert.reverts, original.reverts.map(|r| r as i64));

    // Commits: every commit of every merged merge request, author times parsed from offsets.
    let mut want_commits: Vec<Commit> = merged
        .iter()
        .flat_map(|m| {
            m.commits.iter().map(|c| Commit {
                // GitLab writes the author's name and email into each commit (`jon-doe` is
                // `Jon Doe`, `jon-doe@acme.example` in the simulation).
                author_email: Some(format!("{}@acme.example", c.author)),
                author_name: Some(
                    c.author
                        .split('-')
                        .map(|w| w[..1].to_uppercase() + &w[1..])
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                id: format!("gl:{}:{}", m.project, c.sha),
                source: "gl".into(),
                repo: m.project.clone(),
                service: None,
                team: None,
                sha: c.sha.clone(),
                authored_at: c.authored_at,
                parents: c.parent_ids.clone(),
                title: c.title.clone(),
                deployment_id: None,
                updated_at: c.authored_at,
            })
        })
        .collect();
    want_commits.sort_by_key(|c| c.id.clone());
    assert_eq!(sorted(&out.commits, |c| c.id.clone()), want_commits);

    // A page per project list plus one commits request per merged merge request.
    let mut want = 0;
    for p in &g.projects {
        let n = merged.iter().filter(|m| m.project_id == p.id).count();
        want += pages(n) + n;
    }
    let log = requests(&w);
    assert_eq!(log.len(), want);
    assert!(
        log.iter()
            .any(|r| r.contains("/merge_requests?state=merged&order_by=updated_at&sort=asc"))
    );
    assert!(
        log.iter()
            .filter(|r| r.contains("/commits"))
            .all(|r| !r.contains("pagination"))
    );
}

#[tokio::test]
async fn the_next_sync_reads_from_the_bookmark_minus_the_overlap() {
    let w = world(52).await;
    let c = connector(config(&w, &["production", "staging"]));
    let (result, first) = run(&c, "deployments", None).await;
    result.unwrap();
    let before = requests(&w).len();
    let state = first.last_checkpoint();
    let (result, second) = run(&c, "deployments", Some(state.clone())).await;
    result.unwrap();
    let log = &requests(&w)[before..];
    // One page per project and environment; the running deployment shows up in the overlap,
    // so it needs no separate re-poll.
    assert_eq!(log.len(), 4, "{log:#?}");
    let hw: DateTime<Utc> =
        serde_json::from_value(state["cursors"]["acme/billing@production"]["high_water"].clone()).unwrap();
    let since = format_utc(hw - Duration::minutes(10)).replace(':', "%3A");
    assert!(log[0].contains(&format!("updated_after={since}")), "{}", log[0]);
    assert!(second.deployments.len() < 10, "{}", second.deployments.len());
    assert!(second.deployment_ids().is_subset(&first.deployment_ids()));
    let billing: Vec<&Deployment> = second
        .deployments
        .iter()
        .filter(|d| d.repo == "acme/billing" && d.environment == "production")
        .collect();
    assert!(!billing.is_empty());
    assert!(billing.iter().all(|d| d.updated_at >= hw - Duration::minutes(10)));
}

#[tokio::test]
async fn a_killed_read_resumes_from_its_checkpoint_to_the_same_records() {
    let w = world(52).await;
    let c = connector(config(&w, &["production"]));
    let (result, clean) = run(&c, "merge_requests", None).await;
    result.unwrap();
    let clean_requests = requests(&w).len();

    // The checkpoint after the first page: a walk in progress with a keyset link.
    let mid = clean.checkpoints[0].clone();
    let next = mid["cursors"]["acme/billing"]["walk"]["next"]["url"].clone();
    assert!(next.as_str().unwrap().contains("cursor="), "{mid}");
    let first_page_requests = 1 + 100;
    // The saved link is rebased onto the configured host: the instance may have moved since.
    let mut mid = mid;
    let moved = next
        .as_str()
        .unwrap()
        .replace(&w.servers.gitlab.base_url(), "https://gitlab.old.example");
    mid["cursors"]["acme/billing"]["walk"]["next"]["url"] = json!(moved);
    let (result, resumed) = run(&c, "merge_requests", Some(mid)).await;
    result.unwrap();
    assert_eq!(
        requests(&w).len() - clean_requests,
        clean_requests - first_page_requests
    );
    let first_page: BTreeSet<String> = clean.changes.iter().take(100).map(|c| c.id.clone()).collect();
    let union: BTreeSet<String> = first_page.union(&resumed.change_ids()).cloned().collect();
    assert_eq!(union, clean.change_ids());

    // The same with offset paging: the checkpoint holds a page number.
    let mut cfg = config(&w, &["production"]);
    cfg.pagination = Pagination::Offset;
    let c = connector(cfg);
    let (_, offset) = run(&c, "deployments", None).await;
    let mid = offset
        .checkpoints
        .iter()
        .find(|s| !s["cursors"]["acme/billing@production"]["walk"].is_null())
        .cloned()
        .unwrap();
    assert_eq!(
        mid["cursors"]["acme/billing@production"]["walk"]["next"],
        json!({"page": 2})
    );
    let (result, resumed) = run(&c, "deployments", Some(mid)).await;
    result.unwrap();
    let first: BTreeSet<String> = offset
        .deployments
        .iter()
        .take(100)
        .map(|d| d.id.clone())
        .collect();
    let union: BTreeSet<String> = first.union(&resumed.deployment_ids()).cloned().collect();
    assert_eq!(union, offset.deployment_ids());
}

#[tokio::test]
async fn unfinished_deployments_are_repolled_by_id() {
    let w = world(8).await;
    let c = connector(config(&w, &["production"]));
    let (result, first) = run(&c, "deployments", None).await;
    result.unwrap();
    let g = &w.org.gitlab;
    let running = g.deployments.iter().find(|d| d.status == "running").unwrap();
    let blocked = g.deployments.iter().find(|d| d.status == "blocked").unwrap();
    // A bookmark past every update: the walk sees nothing, so only the re-poll can.
    let mut state = first.last_checkpoint();
    for key in ["acme/billing@production", "acme/notifications@production"] {
        state["cursors"][key]["high_water"] = json!("2030-01-01T00:00:00Z");
    }
    let before = requests(&w).len();
    let (result, second) = run(&c, "deployments", Some(state)).await;
    result.unwrap();
    let log = &requests(&w)[before..];
    assert_eq!(log.len(), 4, "{log:#?}");
    assert!(log[1].ends_with(&format!("/projects/acme%2Fbilling/deployments/{}", running.id)));
    assert!(log[3].ends_with(&format!(
        "/projects/acme%2Fnotifications/deployments/{}",
        blocked.id
    )));
    assert_eq!(
        sorted(&second.deployments, |d| d.id.clone()),
        sorted(
            &[expected_deployment(running), expected_deployment(blocked)],
            |d| d.id.clone()
        )
    );
    let state = second.last_checkpoint();
    assert_eq!(
        state["cursors"]["acme/billing@production"]["unfinished"],
        json!([running.id])
    );
    assert_eq!(
        state["cursors"]["acme/notifications@production"]["unfinished"],
        json!([blocked.id])
    );
}

#[tokio::test]
async fn transient_faults_are_retried_and_short_pages_do_not_end_the_walk() {
    let w = world(52).await;
    let c = connector(config(&w, &["production", "staging"]));
    let (result, clean) = run(&c, "deployments", None).await;
    result.unwrap();
    let clean_requests = requests(&w).len();
    let control = &w.servers.gitlab.control;
    control.fail_next("/deployments", 502, 2);
    control.unavailable_next("/deployments", 1, None);
    control.truncate_next("/deployments", 1);
    control.rate_limit_next("/deployments", 1, None);
    control.inject("cursor=", Fault::ShortPage, 1);
    let before = requests(&w).len();
    let (result, faulty) = run(&c, "deployments", None).await;
    result.unwrap();
    // Five failed attempts retried, and every page still read after the short one.
    assert_eq!(requests(&w).len() - before, clean_requests + 5);
    let n = w
        .org
        .gitlab
        .deployments
        .iter()
        .filter(|d| d.project == "acme/billing" && d.environment == "production")
        .count();
    let second_page = (n - 100).min(100);
    let withheld = second_page - second_page / 2;
    let missing = clean
        .deployment_ids()
        .difference(&faulty.deployment_ids())
        .count();
    assert_eq!(missing, withheld, "half of one page was withheld, nothing else");
    assert!(faulty.deployment_ids().is_subset(&clean.deployment_ids()));
}

#[tokio::test]
async fn a_throttle_with_retry_after_is_waited_out() {
    let w = world(4).await;
    let c = connector(config(&w, &["production"]));
    w.servers
        .gitlab
        .control
        .rate_limit_next("/deployments", 1, Some(1));
    let started = std::time::Instant::now();
    let (result, out) = run(&c, "deployments", None).await;
    result.unwrap();
    assert!(started.elapsed() >= StdDuration::from_secs(1));
    assert_eq!(requests(&w).len(), 3);
    assert!(!out.deployments.is_empty());
}

#[tokio::test]
async fn expired_credentials_mid_walk_stop_after_the_last_checkpoint() {
    let w = world(26).await;
    let c = connector(config(&w, &["production"]));
    w.servers.gitlab.control.inject("cursor=", Fault::Unauthorized, 1);
    let (result, out) = run(&c, "merge_requests", None).await;
    let err = result.unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert!(err.to_string().contains(TOKEN_VAR), "{err}");
    assert!(!err.to_string().contains("t-gitlab"));
    assert_eq!(out.changes.len(), 100);
    assert_eq!(out.checkpoints.len(), 1);
    // Resuming from that checkpoint finishes the walk.
    let (result, rest) = run(&c, "merge_requests", Some(out.last_checkpoint())).await;
    result.unwrap();
    assert!(rest.change_ids().is_disjoint(&out.change_ids()));

    // An HTML 401 from a proxy is an auth failure too, not a decode error.
    w.servers
        .gitlab
        .control
        .inject("/deployments", Fault::HtmlUnauthorized, 1);
    let (result, _) = run(&c, "deployments", None).await;
    assert!(result.unwrap_err().is_auth());
}

#[tokio::test]
async fn refused_keyset_paging_falls_back_to_offset() {
    let w = world(52).await;
    let c = connector(config(&w, &["production", "staging"]));
    w.servers.gitlab.control.fail_next("pagination=keyset", 405, 1);
    let (result, out) = run(&c, "deployments", None).await;
    result.unwrap();
    let log = requests(&w);
    assert!(log[0].contains("pagination=keyset"));
    assert!(
        log[1..].iter().all(|r| !r.contains("pagination=keyset")),
        "{log:#?}"
    );
    assert!(log.iter().any(|r| r.ends_with("&page=2")));
    let expected: BTreeSet<String> = w
        .org
        .gitlab
        .deployments
        .iter()
        .map(|d| format!("gl:{}:{}", d.project, d.id))
        .collect();
    assert_eq!(out.deployment_ids(), expected);
}

#[tokio::test]
async fn a_saved_link_that_no_longer_answers_restarts_from_the_last_record() {
    let w = world(8).await;
    let c = connector(config(&w, &["production"]));
    let last = w
        .org
        .gitlab
        .deployments
        .iter()
        .filter(|d| d.project == "acme/billing" && d.environment == "production")
        .nth(10)
        .unwrap();
    let base = w.servers.gitlab.base_url();
    let bookmark = json!({"cursors": {"acme/billing@production": {
        "high_water": null,
        "walk": {
            "since": null,
            "next": {"url": format!("{base}/api/v4/projects/acme%2Fbilling/deployments?pagination=keyset&order_by=updated_at&sort=asc&cursor=stale")},
            "high_water": last.updated_at,
            "last": [last.updated_at, last.id],
        },
    }}});
    let (result, out) = run(&c, "deployments", Some(bookmark)).await;
    result.unwrap();
    let log = requests(&w);
    assert!(log[0].contains("cursor=stale"));
    let since = format_utc(last.updated_at - Duration::seconds(1)).replace(':', "%3A");
    assert!(log[1].contains(&format!("updated_after={since}")), "{}", log[1]);
    assert!(
        out.deployment_ids()
            .contains(&format!("gl:acme/billing:{}", last.id))
    );
}

#[tokio::test]
async fn check_needs_a_valid_token_and_readable_projects() {
    let w = world(2).await;
    connector(config(&w, &["production"])).check().await.unwrap();
    // The user, then per project: the project, deployments, merge requests, one's commits.
    assert_eq!(requests(&w).len(), 1 + 2 * 4);
    let env = SecretEnv::process().with_override(TOKEN_VAR, "wrong");
    let bad = GitLab::new(config(&w, &["production"]), &env, fast()).unwrap();
    let err = bad.check().await.unwrap_err();
    assert!(err.is_auth() && err.to_string().contains("read_api"), "{err}");
    let mut cfg = config(&w, &["production"]);
    cfg.projects = vec!["acme/nope".into()];
    let err = connector(cfg).check().await.unwrap_err();
    assert!(err.to_string().contains("404 Project Not Found"), "{err}");
    let missing = GitLab::new(config(&w, &[]), &SecretEnv::process(), fast()).unwrap_err();
    assert!(missing.to_string().contains(TOKEN_VAR));
}

#[tokio::test]
async fn numeric_project_ids_resolve_to_their_path_and_all_environments_read_when_none_is_named() {
    let w = world(4).await;
    let mut cfg = config(&w, &[]);
    cfg.projects = vec!["27183911".into()];
    let (result, out) = run(&connector(cfg), "deployments", None).await;
    result.unwrap();
    let want = w
        .org
        .gitlab
        .deployments
        .iter()
        .filter(|d| d.project_id == 27_183_911)
        .count();
    assert_eq!(out.deployments.len(), want);
    assert!(out.deployments.iter().all(|d| d.repo == "acme/notifications"));
    assert!(out.deployments.iter().any(|d| d.environment == "staging"));
    let log = requests(&w);
    assert_eq!(log[0], "GET /api/v4/projects/27183911");
    assert!(!log[1].contains("environment="));
    assert!(out.last_checkpoint()["cursors"]["acme/notifications"].is_object());
}

#[tokio::test]
async fn unknown_streams_are_a_config_error() {
    let w = world(1).await;
    let (result, _) = run(&connector(config(&w, &[])), "pipelines", None).await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("deployments, merge_requests"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Mapping and paging rules, without a server.

fn offline() -> GitLab {
    let cfg = GitLabConfig {
        name: "gl".into(),
        base_url: "https://gitlab.example.com/api/v4/".into(),
        token_env: TOKEN_VAR.into(),
        projects: vec![],
        environments: vec![],
        production_environments: default_production(),
        overlap_minutes: 10,
        lookback_days: None,
        // The simulated world's clock stopped long before today's: nothing it runs is stale.
        stale_after_days: 36_500,
        pagination: Pagination::Keyset,
    };
    connector(cfg)
}

fn raw_deployment(status: &str) -> Value {
    json!({
        "id": 41, "iid": 3, "ref": "main", "sha": "a91957a8",
        "created_at": "2016-08-11T07:36:40.222Z", "updated_at": "2016-08-11T07:38:12.414Z",
        "finished_at": null, "status": status,
        "environment": {"id": 9, "name": "Prod", "tier": "other"},
    })
}

#[test]
fn deployment_statuses_map_and_unknown_ones_are_rejected() {
    let c = offline();
    assert_eq!(c.api, "https://gitlab.example.com/api/v4");
    for (status, want) in [
        ("success", DeploymentStatus::Success),
        ("failed", DeploymentStatus::Failure),
        ("canceled", DeploymentStatus::Cancelled),
        ("skipped", DeploymentStatus::Cancelled),
        ("running", DeploymentStatus::InProgress),
        ("created", DeploymentStatus::InProgress),
        ("blocked", DeploymentStatus::InProgress),
    ] {
        let d = c.deployment("acme/billing", &raw_deployment(status)).unwrap();
        assert_eq!(d.status, want, "{status}");
        assert_eq!(d.id, "gl:acme/billing:41");
        // "Prod" is production by name, case-insensitively.
        assert!(d.is_production);
        let finished = (want != DeploymentStatus::InProgress).then_some(d.updated_at);
        assert_eq!(d.finished_at, finished, "{status}");
    }
    let err = c
        .deployment("acme/billing", &raw_deployment("exploded"))
        .unwrap_err();
    assert!(err.contains("unknown deployment status"), "{err}");

    let mut raw = raw_deployment("success");
    raw["finished_at"] = json!("2016-08-11T07:38:10.000Z");
    raw["environment"] = json!({"name": "eu-live", "tier": "production"});
    let d = c.deployment("acme/billing", &raw).unwrap();
    assert_eq!(
        d.finished_at.map(|t| t.to_rfc3339()),
        Some("2016-08-11T07:38:10+00:00".into())
    );
    assert!(d.is_production, "tier production counts");
    raw["environment"] = json!({"name": "eu-staging", "tier": "staging"});
    assert!(!c.deployment("acme/billing", &raw).unwrap().is_production);

    raw["environment"] = Value::Null;
    assert!(c.deployment("r", &raw).unwrap_err().contains("environment.name"));
    let mut raw = raw_deployment("success");
    raw["created_at"] = json!("last tuesday");
    assert!(c.deployment("r", &raw).unwrap_err().contains("created_at"));
    let mut raw = raw_deployment("success");
    raw["sha"] = json!(17);
    assert!(c.deployment("r", &raw).unwrap_err().contains("sha"));
}

#[test]
fn merge_request_fields_map_with_their_fallbacks() {
    let c = offline();
    let raw = json!({
        "id": 1, "iid": 12, "title": "Revert \"Add proration\"", "state": "locked",
        "description": "This reverts merge request !9",
        "created_at": "2024-01-02T10:00:00.000Z", "updated_at": "2024-01-02T11:00:00.000Z",
        "merged_at": null, "merge_commit_sha": null, "squash_commit_sha": "5e6f",
        "labels": [{"name": "revert"}, {"name": "billing"}],
    });
    let ch = c.change("acme/billing", &raw, None).unwrap();
    assert_eq!(ch.state, "open");
    assert_eq!(ch.merge_commit_sha.as_deref(), Some("5e6f"));
    assert_eq!(ch.labels, ["revert", "billing"]);
    assert!(ch.is_revert);
    assert_eq!(ch.reverts, Some(9));
    let mut raw2 = raw.clone();
    raw2["merge_commit_sha"] = json!("1a2b");
    raw2["labels"] = json!(["x"]);
    let ch = c.change("acme/billing", &raw2, None).unwrap();
    assert_eq!(ch.merge_commit_sha.as_deref(), Some("1a2b"));
    assert_eq!(ch.labels, ["x"]);
    let mut bad = raw.clone();
    bad["state"] = json!("archived");
    assert!(
        c.change("r", &bad, None)
            .unwrap_err()
            .contains("unknown merge request state")
    );
    let mut bad = raw.clone();
    bad["labels"] = json!("a,b");
    assert!(c.change("r", &bad, None).unwrap_err().contains("labels"));
    let mut bad = raw;
    bad["merged_at"] = json!(12);
    assert!(c.change("r", &bad, None).unwrap_err().contains("merged_at"));

    let commit = c
        .commit(
            "acme/billing",
            &json!({"id": "abc", "message": "Fix it\n\nbody", "authored_date": "2012-09-20T09:06:12.000+03:00"}),
        )
        .unwrap();
    assert_eq!(commit.title, "Fix it");
    assert!(commit.parents.is_empty());
    assert_eq!(commit.authored_at.to_rfc3339(), "2012-09-20T06:06:12+00:00");
    assert!(
        c.commit("r", &json!({"id": "abc", "authored_date": "soon"}))
            .is_err()
    );
    assert_eq!(reverted_iid("nothing"), None);
    assert_eq!(reverted_iid("See: This Reverts merge request !1234."), Some(1234));
}

#[test]
fn people_are_read_from_gitlabs_shapes_and_missing_ones_are_null() {
    let c = offline();
    let user = |name: &str| json!({"id": 7, "username": name, "name": "Display Name", "state": "active"});
    let mut raw = raw_deployment("success");
    raw["user"] = user("ravi-p");
    assert_eq!(
        c.deployment("r", &raw).unwrap().deployed_by.as_deref(),
        Some("ravi-p")
    );
    raw["user"] = Value::Null;
    assert_eq!(c.deployment("r", &raw).unwrap().deployed_by, None);

    let mut mr = json!({
        "id": 1, "iid": 12, "title": "Add proration", "state": "merged", "description": "",
        "created_at": "2024-01-02T10:00:00.000Z", "updated_at": "2024-01-02T11:00:00.000Z",
        "merged_at": "2024-01-02T11:00:00.000Z", "merge_commit_sha": "1a2b", "labels": [],
        "author": user("noor-h"),
    });
    assert_eq!(
        c.change("r", &mr, None).unwrap().author.as_deref(),
        Some("noor-h")
    );
    mr.as_object_mut().unwrap().remove("author");
    assert_eq!(c.change("r", &mr, None).unwrap().author, None);

    let mut commit = json!({
        "id": "abc", "title": "Fix", "authored_date": "2024-01-02T10:00:00.000Z",
        "author_name": "Noor Haddad", "author_email": "noor-h@acme.example",
    });
    let got = c.commit("r", &commit).unwrap();
    assert_eq!(
        (got.author_name.as_deref(), got.author_email.as_deref()),
        (Some("Noor Haddad"), Some("noor-h@acme.example"))
    );
    commit["author_name"] = json!("");
    commit["author_email"] = Value::Null;
    let got = c.commit("r", &commit).unwrap();
    assert_eq!((got.author_name, got.author_email), (None, None));
}

fn page(headers: &[(&'static str, &str)]) -> JsonPage {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    JsonPage {
        url: "http://h/x".into(),
        headers: map,
        body: json!([]),
    }
}

#[test]
fn the_next_page_comes_from_x_next_page_or_the_link_never_from_x_total() {
    let link = r#"<http://h/x?page=3>; rel="next", <http://h/x?page=1>; rel="first""#;
    let keyset = r#"<http://h/x?cursor=abc>; rel="next""#;
    // Offset: X-Next-Page wins; empty means done, whatever X-Total says.
    assert_eq!(
        next_page(&page(&[("x-next-page", "3"), ("link", link)]), false),
        Some(Next::Page(3))
    );
    assert_eq!(
        next_page(
            &page(&[("x-next-page", ""), ("x-total", "900"), ("link", link)]),
            false
        ),
        None
    );
    // Keyset: the Link; none on the last page.
    assert_eq!(
        next_page(&page(&[("link", keyset)]), true),
        Some(Next::Url("http://h/x?cursor=abc".into()))
    );
    assert_eq!(next_page(&page(&[]), true), None);
    // Keyset asked for but ignored: GitLab answered by offset.
    assert_eq!(
        next_page(&page(&[("x-next-page", "2"), ("link", link)]), true),
        Some(Next::Page(2))
    );
    // No X- headers at all (a proxy stripped them): follow the Link.
    assert_eq!(
        next_page(&page(&[("link", link)]), false),
        Some(Next::Url("http://h/x?page=3".into()))
    );
    assert_eq!(encode_id("acme/billing"), "acme%2Fbilling");
    assert_eq!(encode_id("/group/sub group/app/"), "group%2Fsub%20group%2Fapp");
    assert_eq!(encode_id("1234"), "1234");
}

/// An offset read of production and staging deployments with whole pages moving before page 2
/// (the fake can only move GitLab's aligned pages, by one `per_page`): returns the deployments
/// by id (the store's upsert) and how many requests more than a clean offset read it took.
async fn offset_read_shifted(by: i64) -> (BTreeMap<String, Deployment>, BTreeMap<String, Deployment>, usize) {
    let cfg_of = |w: &World| {
        let mut cfg = config(w, &["production", "staging"]);
        cfg.pagination = Pagination::Offset;
        cfg
    };
    // Three years: the first walk with a page 2 also has a page 3, so a page moving on is seen
    // (had page 2 been the last page, the records it moved past would be lost without a trace).
    let clean_world = world(156).await;
    let (result, clean) = run(&connector(cfg_of(&clean_world)), "deployments", None).await;
    result.unwrap();
    let w = world(156).await;
    w.servers.gitlab.control.shift_next("&page=2", by, 1);
    let (result, out) = run(&connector(cfg_of(&w)), "deployments", None).await;
    result.unwrap();
    let by_id = |list: &[Deployment]| list.iter().map(|d| (d.id.clone(), d.clone())).collect();
    let extra = requests(&w).len() - requests(&clean_world).len();
    (by_id(&clean.deployments), by_id(&out.deployments), extra)
}

#[tokio::test]
async fn offset_pages_moving_back_are_read_again_from_the_start() {
    // A page inserted before page 2: page 2 repeats page 1, the walk reads its list again.
    let (clean, got, extra) = offset_read_shifted(1).await;
    assert_eq!(got, clean);
    // Pages 1 and 2 once more.
    assert_eq!(extra, 2);
}

#[tokio::test]
async fn offset_pages_moving_on_are_caught_by_the_repeat_that_follows() {
    // A page deleted before page 2 (and back before page 3): page 2 brings page 3's records and
    // page 3 repeats them, so the walk reads its list again and page 2's records are not lost.
    let (clean, got, extra) = offset_read_shifted(-1).await;
    assert_eq!(got, clean);
    // The repeated page 3, then pages 1 and 2 once more.
    assert_eq!(extra, 3);
}

#[tokio::test]
async fn a_gitlab_deployment_unfinished_eight_days_becomes_stale_and_is_no_longer_requested() {
    let w = world(8).await;
    let cfg = GitLabConfig {
        stale_after_days: 7,
        ..config(&w, &["production"])
    };
    let (result, first) = run(
        &connector(cfg.clone()).with_now(w.org.spec.now()),
        "deployments",
        None,
    )
    .await;
    result.unwrap();
    let running: Vec<&Deployment> = first
        .deployments
        .iter()
        .filter(|d| d.status == DeploymentStatus::InProgress)
        .collect();
    assert!(!running.is_empty());
    // A bookmark past every update: the walk sees nothing, so only the re-poll can.
    let mut state = first.last_checkpoint();
    for key in ["acme/billing@production", "acme/notifications@production"] {
        state["cursors"][key]["high_water"] = json!("2030-01-01T00:00:00Z");
    }
    // The fake world's clock stands still: eight days on, they are still unfinished.
    let later = running.iter().map(|d| d.created_at).max().unwrap() + Duration::days(8);
    let before = requests(&w).len();
    let (result, second) = run(
        &connector(cfg.clone()).with_now(later),
        "deployments",
        Some(state),
    )
    .await;
    result.unwrap();
    // Asked once more by id (it may have finished meanwhile), then stale.
    let log = requests(&w)[before..].to_vec();
    for d in &running {
        let vendor = d.id.rsplit(':').next().unwrap();
        assert!(
            log.iter().any(|r| r.ends_with(&format!("/deployments/{vendor}"))),
            "{log:#?}"
        );
        let now = second.deployments.iter().find(|s| s.id == d.id).unwrap();
        assert_eq!((now.status, now.finished_at), (DeploymentStatus::Stale, None));
    }
    let state = second.last_checkpoint();
    for key in ["acme/billing@production", "acme/notifications@production"] {
        assert_eq!(state["cursors"][key]["unfinished"], json!([]), "{key}");
    }
    // No longer requested.
    let before = requests(&w).len();
    let (result, third) = run(
        &connector(cfg).with_now(later + Duration::days(1)),
        "deployments",
        Some(state),
    )
    .await;
    result.unwrap();
    let log = requests(&w)[before..].to_vec();
    assert_eq!(log.len(), 2, "one empty list per project: {log:#?}");
    assert!(third.deployments.is_empty());
}

#[tokio::test]
async fn gitlab_raising_lookback_from_30_to_90_days_backfills_and_moves_covers_from() {
    let w = world(20).await;
    let now = w.org.spec.now();
    let days = |n| now - Duration::days(n);
    let with_lookback = |n| {
        connector(GitLabConfig {
            lookback_days: Some(n),
            ..config(&w, &["production"])
        })
        .with_now(now)
    };
    for stream in ["deployments", "merge_requests"] {
        let updated = |out: &Out| -> Vec<DateTime<Utc>> {
            out.deployments
                .iter()
                .map(|d| d.updated_at)
                .chain(out.changes.iter().map(|c| c.updated_at))
                .collect()
        };
        let (result, first) = run(&with_lookback(30), stream, None).await;
        result.unwrap();
        assert_eq!(
            covers_from(&first.last_checkpoint()),
            Some(Some(days(30))),
            "{stream}"
        );
        assert!(updated(&first).iter().all(|t| *t >= days(30)), "{stream}");
        // Lookback raised: the older history arrives without --full, from the bookmark.
        let (result, second) = run(&with_lookback(90), stream, Some(first.last_checkpoint())).await;
        result.unwrap();
        assert_eq!(
            covers_from(&second.last_checkpoint()),
            Some(Some(days(90))),
            "{stream}"
        );
        let older: Vec<DateTime<Utc>> = updated(&second).into_iter().filter(|t| *t < days(30)).collect();
        assert!(!older.is_empty(), "{stream}: nothing older arrived");
        assert!(older.iter().all(|t| *t >= days(90)), "{stream}");
        // Then incremental again.
        let (result, third) = run(&with_lookback(90), stream, Some(second.last_checkpoint())).await;
        result.unwrap();
        assert_eq!(
            covers_from(&third.last_checkpoint()),
            Some(Some(days(90))),
            "{stream}"
        );
        assert!(updated(&third).iter().all(|t| *t >= days(30)), "{stream}");
    }
}

#[tokio::test]
async fn a_project_added_to_the_config_gets_its_history_while_the_other_reads_incrementally() {
    let w = world(8).await;
    let now = w.org.spec.now();
    let start = now - Duration::days(90);
    let with_projects = |projects: &[&str]| {
        connector(GitLabConfig {
            projects: projects.iter().map(|p| (*p).to_owned()).collect(),
            lookback_days: Some(90),
            ..config(&w, &["production"])
        })
        .with_now(now)
    };
    let (result, first) = run(&with_projects(&["acme/billing"]), "merge_requests", None).await;
    result.unwrap();
    assert_eq!(covers_from(&first.last_checkpoint()), Some(Some(start)));
    let (result, alone) = run(&with_projects(&["acme/notifications"]), "merge_requests", None).await;
    result.unwrap();
    assert!(!alone.changes.is_empty());

    let before = requests(&w).len();
    let (result, second) = run(
        &with_projects(&["acme/billing", "acme/notifications"]),
        "merge_requests",
        Some(first.last_checkpoint()),
    )
    .await;
    result.unwrap();
    let added: BTreeSet<String> = second
        .changes
        .iter()
        .filter(|c| c.repo == "acme/notifications")
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(added, alone.change_ids());
    // The kept project is read from its bookmark, the added one from the lookback start.
    let lists: Vec<String> = requests(&w)[before..]
        .iter()
        .filter(|r| r.contains("/merge_requests?"))
        .cloned()
        .collect();
    let since = |project: &str| {
        lists
            .iter()
            .find(|r| r.contains(&format!("/projects/{project}/")))
            .and_then(|r| r.split("updated_after=").nth(1))
            .map(|v| v.split('&').next().unwrap().replace("%3A", ":"))
            .unwrap()
    };
    let high_water = first.last_checkpoint()["cursors"]["acme/billing"]["high_water"]
        .as_str()
        .map(|t| parse_instant(t).unwrap())
        .unwrap();
    assert_eq!(
        since("acme%2Fbilling"),
        format_utc(high_water - Duration::minutes(10))
    );
    assert_eq!(since("acme%2Fnotifications"), format_utc(start));
    // Until the added project is read the stream is complete from now only; then from the start.
    assert_eq!(covers_from(&second.checkpoints[0]), Some(Some(now)));
    assert_eq!(covers_from(&second.last_checkpoint()), Some(Some(start)));
}
