//! Tests of the GitHub connector against the fake GitHub: the records equal what the simulated
//! organisation holds, the requests made are counted, faults are survived and a resumed read
//! equals a clean one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use tandem_fixtures::github_data::{self, GitHubData, Workflow};
use tandem_fixtures::{FakeOptions, FakeServers, OrgSpec, Organisation, SimDeployment, SimPull};

use super::{GitHub, GitHubConfig};
use crate::Connector;
use crate::contract::{Message, covers_from, read_all};
use crate::error::ConnectorError;
use crate::http::{RawPage, RequestCounts, RetryPolicy};
use crate::model::{Commit, Deployment, DeploymentStatus, Incident, Quarantined, Record, Severity};
use crate::secret::SecretEnv;

const TOKEN_VAR: &str = "TANDEM_GITHUB_CONNECTOR_TEST_TOKEN";

struct World {
    org: Arc<Organisation>,
    data: GitHubData,
    servers: FakeServers,
}

async fn world(weeks: u32) -> World {
    let org = Arc::new(
        Organisation::generate(OrgSpec {
            seed: 3,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            weeks,
        })
        .unwrap(),
    );
    let servers = tandem_fixtures::start(Arc::clone(&org), FakeOptions::with_secret("t"))
        .await
        .unwrap();
    World {
        data: github_data::generate(&org),
        org,
        servers,
    }
}

impl World {
    /// A config for every repo, of source `name`.
    fn config(&self, name: &str) -> GitHubConfig {
        GitHubConfig {
            name: name.to_owned(),
            base_url: self.servers.github.base_url(),
            token_env: TOKEN_VAR.to_owned(),
            repos: self.org.services.iter().map(|s| s.repo.clone()).collect(),
            environments: vec!["production".into()],
            production_environments: vec!["prod".into(), "production".into()],
            overlap_minutes: 60,
            lookback_days: None,
            // The simulated world's clock stopped long before today's: nothing it runs is stale.
            stale_after_days: 36_500,
            compare_commits: true,
            incident_labels: Vec::new(),
            releases_as_deployments: false,
            release_environment: "production".into(),
            deployment_workflows: Vec::new(),
            workflow_environment: "production".into(),
        }
    }

    fn requests(&self) -> Vec<String> {
        self.servers.github.control.requests()
    }

    /// Requests made since `before` requests had been made.
    fn requests_since(&self, before: usize) -> Vec<String> {
        self.requests()[before..].to_vec()
    }
}

fn connector(config: GitHubConfig) -> GitHub {
    let env = SecretEnv::process().with_override(TOKEN_VAR, FakeOptions::with_secret("t").github_token);
    let policy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_rate_limit_wait: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
        ..RetryPolicy::default()
    };
    GitHub::new(config, &env, policy).unwrap()
}

/// What one read sent.
struct Read {
    result: Result<(), ConnectorError>,
    messages: Vec<Message>,
}

impl Read {
    fn ok(self) -> Self {
        if let Err(e) = &self.result {
            panic!("read failed: {e}");
        }
        self
    }

    fn records(&self) -> Vec<Record> {
        self.messages
            .iter()
            .flat_map(|m| match m {
                Message::Records(r) => r.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn quarantined(&self) -> Vec<Quarantined> {
        self.messages
            .iter()
            .flat_map(|m| match m {
                Message::Quarantine(q) => q.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn checkpoints(&self) -> Vec<Value> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::Checkpoint(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    fn last_checkpoint(&self) -> Option<Value> {
        self.checkpoints().pop()
    }

    /// The raw pages the read reported (only a read through [`crate::Connector`] reports them).
    fn pages(&self) -> Vec<RawPage> {
        self.messages
            .iter()
            .flat_map(|m| match m {
                Message::Raw(pages) => pages.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// What the read's requests came to, as it reported them.
    fn requests(&self) -> RequestCounts {
        let mut total = RequestCounts::default();
        for m in &self.messages {
            if let Message::Requests(counts) = m {
                total += *counts;
            }
        }
        total
    }

    fn deployments(&self) -> Vec<Deployment> {
        self.records()
            .into_iter()
            .filter_map(|r| match r {
                Record::Deployment(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    fn commits(&self) -> Vec<Commit> {
        self.records()
            .into_iter()
            .filter_map(|r| match r {
                Record::Commit(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn incidents(&self) -> Vec<Incident> {
        self.records()
            .into_iter()
            .filter_map(|r| match r {
                Record::Incident(i) => Some(i),
                _ => None,
            })
            .collect()
    }
}

async fn read(gh: &GitHub, stream: &str, bookmark: Option<Value>) -> Read {
    let (result, messages) = read_all(|out| gh.read(stream, bookmark, out)).await;
    Read { result, messages }
}

/// A read through the connector contract's entry point, which also reports the read's raw pages
/// and request counts.
async fn read_reported(gh: &Connector, stream: &str, bookmark: Option<Value>) -> Read {
    let (result, messages) = read_all(|out| gh.read(stream, bookmark, out)).await;
    Read { result, messages }
}

/// The successful production deployments of `repo` in finish order.
fn shipped<'a>(org: &'a Organisation, repo: &str) -> Vec<(&'a SimDeployment, DateTime<Utc>)> {
    let mut out: Vec<_> = org
        .deployments
        .iter()
        .filter(|d| d.repo == repo && Organisation::is_successful_production(d))
        .map(|d| (d, Organisation::finished_at(d).unwrap()))
        .collect();
    out.sort_by_key(|(d, f)| (*f, d.id));
    out
}

/// Ground truth of the compares: for each successful production deployment after the first, the
/// commits of the pull requests merged after the previous one's sha up to its own sha, each pull
/// request's commits then its merge commit; nothing for a rollback.
fn expected_commits(org: &Organisation, source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for service in &org.services {
        let mut merged: Vec<&SimPull> = org
            .pulls
            .iter()
            .filter(|p| p.repo == service.repo && p.merged_at.is_some())
            .collect();
        merged.sort_by_key(|p| (p.merged_at, p.merge_commit_sha.clone()));
        let pos = |sha: &str| {
            merged
                .iter()
                .position(|p| p.merge_commit_sha.as_deref() == Some(sha))
                .unwrap()
        };
        for w in shipped(org, &service.repo).windows(2) {
            let (prev, this) = (w[0].0, w[1].0);
            if this.is_rollback {
                continue;
            }
            let id = format!("{source}:{}:{}", service.repo, this.id);
            for p in &merged[pos(&prev.sha) + 1..=pos(&this.sha)] {
                for c in &p.commits {
                    out.push((id.clone(), c.sha.clone()));
                }
                out.push((id.clone(), p.merge_commit_sha.clone().unwrap()));
            }
        }
    }
    out
}

/// What the store keeps of `records`: one per table and key, the newest `updated_at` winning.
fn stored(records: impl IntoIterator<Item = Record>) -> BTreeMap<(u8, String), Record> {
    fn rank(r: &Record) -> (u8, DateTime<Utc>) {
        match r {
            Record::Deployment(d) => (0, d.updated_at),
            Record::Change(c) => (1, c.updated_at),
            Record::Incident(i) => (2, i.updated_at),
            Record::Commit(c) => (3, c.updated_at),
            _ => (9, DateTime::<Utc>::MIN_UTC),
        }
    }
    let mut out: BTreeMap<(u8, String), Record> = BTreeMap::new();
    for r in records {
        let (table, at) = rank(&r);
        let key = (table, r.key().to_owned());
        if out.get(&key).is_none_or(|old| rank(old).1 <= at) {
            out.insert(key, r);
        }
    }
    out
}

/// The records a read sent before its `n`-th checkpoint (0-based) and that checkpoint.
fn before_checkpoint(read: &Read, n: usize) -> (Vec<Record>, Value) {
    let mut records = Vec::new();
    let mut seen = 0;
    for m in &read.messages {
        match m {
            Message::Records(r) => records.extend(r.iter().cloned()),
            Message::Checkpoint(c) => {
                if seen == n {
                    return (records, c.clone());
                }
                seen += 1;
            }
            Message::Quarantine(_) | Message::Raw(_) | Message::Requests(_) => {}
        }
    }
    panic!("no checkpoint {n}");
}

/// A clean read of `stream` and a read killed after checkpoint `n` then resumed from it leave the
/// same store.
async fn assert_resume_equals_clean(gh: &GitHub, stream: &str, clean: &Read, n: usize) {
    let (before, checkpoint) = before_checkpoint(clean, n);
    let resumed = read(gh, stream, Some(checkpoint)).await.ok();
    let union = stored(before.into_iter().chain(resumed.records()));
    assert_eq!(
        union,
        stored(clean.records()),
        "{stream}: resumed after checkpoint {n}"
    );
}

fn config_all(w: &World, name: &str) -> GitHubConfig {
    GitHubConfig {
        incident_labels: vec!["incident".into()],
        releases_as_deployments: true,
        deployment_workflows: vec!["deploy.yml".into()],
        ..w.config(name)
    }
}

#[tokio::test]
async fn commits_between_production_deployments_follow_the_history() {
    let w = world(8).await;
    let gh = connector(w.config("gh-compare"));
    let r = read(&gh, "deployments", None).await.ok();
    assert!(r.quarantined().is_empty(), "{:#?}", r.quarantined().first());
    let commits = r.commits();
    let got: Vec<(String, String)> = commits
        .iter()
        .map(|c| (c.deployment_id.clone().unwrap(), c.sha.clone()))
        .collect();
    let expected = expected_commits(&w.org, "gh-compare");
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(got, expected);

    // Field by field: a pull request commit and a merge commit.
    let merge = w.data.repos[0].merges.last().unwrap();
    if let Some(c) = commits.iter().find(|c| c.sha == merge.commit.sha) {
        assert_eq!(c.parents, merge.parents.to_vec());
        assert_eq!(c.authored_at, merge.commit.authored_at);
        assert!(c.title.starts_with("Merge pull request #"));
        assert_eq!(c.id, format!("gh-compare:{}:{}", w.data.repos[0].repo, c.sha));
    }
    let mut offsets = 0;
    for c in commits.iter().filter(|c| c.parents.len() == 1).take(200) {
        let p = w
            .org
            .pulls
            .iter()
            .find(|p| p.commits.iter().any(|x| x.sha == c.sha))
            .unwrap();
        let (i, sim) = p
            .commits
            .iter()
            .enumerate()
            .find(|(_, x)| x.sha == c.sha)
            .unwrap();
        assert_eq!(c.authored_at, sim.authored_at);
        assert_eq!(c.title, sim.message.lines().next().unwrap());
        // The simulation writes `jon-doe` as `jon doe <jon-doe@acme.example>`.
        let (name, email) = match &sim.author_login {
            Some(login) => (login.replace('-', " "), format!("{login}@acme.example")),
            None => ("Contractor".to_owned(), "contractor@agency.example".to_owned()),
        };
        assert_eq!(
            (c.author_name.clone(), c.author_email.clone()),
            (Some(name), Some(email))
        );
        let parent = if i == 0 {
            p.base_sha.clone()
        } else {
            p.commits[i - 1].sha.clone()
        };
        assert_eq!(c.parents, vec![parent]);
        assert_eq!(c.repo, p.repo);
        offsets += usize::from(sim.authored_at.timestamp() % 4 == 0);
        // Linked to the deployment that brought it, stamped with its finish time.
        let dep_id: u64 = c
            .deployment_id
            .as_ref()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let d = w.org.deployment(dep_id).unwrap();
        assert_eq!(Some(c.updated_at), Organisation::finished_at(d));
    }
    assert!(offsets > 0);

    // One compare per successful production deployment after the first, one page each.
    let pairs: usize = w
        .org
        .services
        .iter()
        .map(|s| shipped(&w.org, &s.repo).len().saturating_sub(1))
        .sum();
    let compares: Vec<String> = w
        .requests()
        .into_iter()
        .filter(|r| r.contains("/compare/"))
        .collect();
    assert_eq!(compares.len(), pairs, "{compares:#?}");
    assert!(compares.iter().all(|r| r.ends_with("?per_page=100")));

    // Rollbacks brought nothing and are remembered; nothing is left to compare.
    let rollbacks: Vec<&SimDeployment> = w.org.deployments.iter().filter(|d| d.is_rollback).collect();
    assert!(!rollbacks.is_empty());
    for d in &rollbacks {
        let id = format!("gh-compare:{}:{}", d.repo, d.id);
        assert!(
            commits
                .iter()
                .all(|c| c.deployment_id.as_deref() != Some(id.as_str()))
        );
    }
    let bookmark = r.last_checkpoint().unwrap();
    let cursors = bookmark["cursors"].as_object().unwrap();
    assert!(
        cursors
            .values()
            .all(|c| c["compare"]["queue"].as_array().unwrap().is_empty())
    );
    let remembered: Vec<&str> = cursors
        .values()
        .filter_map(|c| c["compare"]["last_rollback"].as_str())
        .collect();
    assert!(!remembered.is_empty());

    // Nothing new: no compare at all.
    let before = w.requests().len();
    let again = read(&gh, "deployments", Some(bookmark)).await.ok();
    assert!(again.commits().is_empty());
    assert!(w.requests_since(before).iter().all(|r| !r.contains("/compare/")));
}

#[tokio::test]
async fn compare_commits_off_sends_no_compare() {
    let w = world(3).await;
    let gh = connector(GitHubConfig {
        compare_commits: false,
        ..w.config("gh-no-compare")
    });
    let r = read(&gh, "deployments", None).await.ok();
    assert!(r.commits().is_empty());
    assert!(!r.deployments().is_empty());
    assert!(w.requests().iter().all(|r| !r.contains("/compare/")));
}

#[tokio::test]
async fn a_compare_that_fails_is_retried_or_quarantined_and_the_rest_continue() {
    let w = world(4).await;
    let gh = connector(w.config("gh-compare-faults"));
    // A proxy error is retried; a 404 (commits gone) is quarantined, not fatal.
    w.servers.github.control.fail_next("/compare/", 502, 1);
    w.servers.github.control.fail_next("/compare/", 404, 1);
    let r = read(&gh, "deployments", None).await.ok();
    let q = r.quarantined();
    assert_eq!(q.len(), 1, "{q:#?}");
    assert!(
        q[0].reason.contains("HTTP 404") && q[0].reason.contains("compare"),
        "{}",
        q[0].reason
    );
    assert_eq!(q[0].stream, "deployments");
    assert_eq!(q[0].reason_code.map(|c| c.as_str()), Some("unknown_reference"));
    let lost: Value = serde_json::from_str(&q[0].raw).unwrap();
    let lost_id = lost["id"].as_str().unwrap().to_owned();
    let expected: Vec<(String, String)> = expected_commits(&w.org, "gh-compare-faults")
        .into_iter()
        .filter(|(d, _)| *d != lost_id)
        .collect();
    let got: Vec<(String, String)> = r
        .commits()
        .iter()
        .map(|c| (c.deployment_id.clone().unwrap(), c.sha.clone()))
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn issues_skip_pull_requests_and_map_severity_and_cause_refs() {
    let w = world(8).await;
    let gh = connector(GitHubConfig {
        incident_labels: vec!["incident".into(), "hotfix".into()],
        ..w.config("gh-issues")
    });
    let r = read(&gh, "issues", None).await.ok();
    assert!(r.quarantined().is_empty());
    let hotfix_pulls = w
        .org
        .pulls
        .iter()
        .filter(|p| p.labels.iter().any(|l| l == "hotfix"))
        .count();
    assert!(
        hotfix_pulls > 0,
        "the label must match pull requests for the skip to mean anything"
    );
    let got: BTreeMap<String, Incident> = r.incidents().into_iter().map(|i| (i.id.clone(), i)).collect();
    let mut expected = BTreeMap::new();
    for extra in &w.data.repos {
        for i in extra
            .issues
            .iter()
            .filter(|i| i.labels.iter().any(|l| l == "incident"))
        {
            let severity = i.severity.map(|s| match s {
                1 => Severity::Sev1,
                2 => Severity::Sev2,
                3 => Severity::Sev3,
                _ => Severity::Sev4,
            });
            let id = format!("gh-issues:{}#{}", extra.repo, i.number);
            expected.insert(
                id.clone(),
                Incident {
                    acknowledged_by: None,
                    assignee: None,
                    id,
                    source: "gh-issues".into(),
                    number: Some(i64::try_from(i.number).unwrap()),
                    title: i.title.clone(),
                    service_ref: Some(extra.repo.clone()),
                    team_ref: None,
                    service: None,
                    team: None,
                    severity,
                    status: i.state().into(),
                    started_at: i.created_at,
                    acknowledged_at: None,
                    resolved_at: i.closed_at,
                    cause_refs: i.cause_refs.clone(),
                    correlation_id: None,
                    updated_at: i.updated_at,
                },
            );
        }
    }
    assert_eq!(got, expected);
    assert!(got.values().any(|i| !i.cause_refs.is_empty()));
    assert!(
        got.values()
            .any(|i| i.cause_refs.iter().any(|c| c.starts_with('#')))
    );
    assert!(got.values().any(|i| i.severity.is_none()));
    assert!(got.values().any(|i| i.status == "open") || got.values().all(|i| i.resolved_at.is_some()));
    // One page per repo and label, oldest update first.
    let log = w.requests();
    assert_eq!(log.len(), 2 * w.org.services.len(), "{log:#?}");
    assert!(
        log.iter()
            .all(|r| r.contains("state=all") && r.contains("sort=updated") && r.contains("direction=asc"))
    );
}

#[tokio::test]
async fn unconfigured_streams_read_nothing_and_send_no_request() {
    let w = world(2).await;
    let gh = connector(w.config("gh-off"));
    assert_eq!(
        gh.streams().iter().map(|s| s.name).collect::<Vec<_>>(),
        vec!["deployments", "pulls", "issues", "releases", "workflow_runs"]
    );
    for stream in ["issues", "releases", "workflow_runs"] {
        let r = read(&gh, stream, None).await.ok();
        assert!(r.messages.is_empty(), "{stream}");
    }
    assert_eq!(w.servers.github.control.request_count(), 0);
    let r = read(&gh, "nope", None).await;
    assert!(r.result.unwrap_err().to_string().contains("workflow_runs"));
}

#[tokio::test]
async fn releases_resolve_branch_targets_through_the_tag_and_skip_drafts() {
    let w = world(8).await;
    let gh = connector(GitHubConfig {
        releases_as_deployments: true,
        release_environment: "prod".into(),
        ..w.config("gh-releases")
    });
    let r = read(&gh, "releases", None).await.ok();
    assert!(r.quarantined().is_empty());
    let got: BTreeMap<String, Deployment> = r.deployments().into_iter().map(|d| (d.id.clone(), d)).collect();
    let mut expected = BTreeMap::new();
    let mut via_tag = 0;
    for extra in &w.data.repos {
        for rel in extra.releases.iter().filter(|r| !r.draft) {
            via_tag += usize::from(rel.target_commitish == "main");
            let id = format!("gh-releases:{}:release-{}", extra.repo, rel.id);
            let published = rel.published_at.unwrap();
            expected.insert(
                id.clone(),
                Deployment {
                    change_refs: Vec::new(),
                    deployed_by: Some(rel.author.clone()),
                    id,
                    source: "gh-releases".into(),
                    repo: extra.repo.clone(),
                    service: None,
                    team: None,
                    environment: "prod".into(),
                    is_production: true,
                    status: DeploymentStatus::Success,
                    sha: rel.sha.clone().unwrap(),
                    created_at: rel.created_at,
                    finished_at: Some(published),
                    updated_at: published,
                },
            );
        }
    }
    assert!(via_tag > 0);
    assert_eq!(got, expected);
    // One list per repo, one commit lookup per release that targets a branch.
    let log = w.requests();
    let lookups: Vec<&String> = log.iter().filter(|r| r.contains("/commits/v1.")).collect();
    assert_eq!(lookups.len(), via_tag, "{log:#?}");
    assert_eq!(log.len(), w.org.services.len() + via_tag, "{log:#?}");
    // Drafts are remembered so later walks reach down to them.
    let bookmark = r.last_checkpoint().unwrap();
    for extra in &w.data.repos {
        let pending = bookmark["cursors"][&extra.repo]["pending"].as_array().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0]["draft"], true);
    }
    // A draft created long ago keeps the walk reaching down to it (when the list changed), so it
    // is seen once published; without it the walk stops at the overlap.
    let mut old_draft = bookmark.clone();
    for cursor in old_draft["cursors"].as_object_mut().unwrap().values_mut() {
        cursor["etag"] = Value::Null;
        cursor["pending"][0]["created_at"] = "2024-01-01T00:00:00Z".into();
    }
    let again = read(&gh, "releases", Some(old_draft)).await.ok();
    assert_eq!(again.deployments().len(), expected.len());
    let mut no_draft = bookmark.clone();
    for cursor in no_draft["cursors"].as_object_mut().unwrap().values_mut() {
        cursor["etag"] = Value::Null;
        cursor["pending"] = serde_json::json!([]);
    }
    let again = read(&gh, "releases", Some(no_draft)).await.ok();
    assert!(again.deployments().len() < expected.len() / 2);
}

#[tokio::test]
async fn workflow_runs_map_conclusions_of_the_configured_workflow_only() {
    let w = world(8).await;
    let expected_for = |source: &str| {
        let mut expected = BTreeMap::new();
        for extra in &w.data.repos {
            for run in extra.runs.iter().filter(|r| r.workflow == Workflow::Deploy) {
                let status = match run.conclusion.as_deref() {
                    Some("success") => DeploymentStatus::Success,
                    Some("failure" | "timed_out") => DeploymentStatus::Failure,
                    Some("cancelled") => DeploymentStatus::Cancelled,
                    None => DeploymentStatus::InProgress,
                    Some(other) => panic!("unexpected conclusion {other}"),
                };
                let id = format!("{source}:{}:run-{}-{}", extra.repo, run.id, run.run_attempt);
                expected.insert(
                    id.clone(),
                    Deployment {
                        change_refs: Vec::new(),
                        deployed_by: Some(run.actor.clone()),
                        id,
                        source: source.into(),
                        repo: extra.repo.clone(),
                        service: None,
                        team: None,
                        environment: "production".into(),
                        is_production: true,
                        status,
                        sha: run.head_sha.clone(),
                        created_at: run.run_started_at,
                        finished_at: run.conclusion.as_ref().map(|_| run.updated_at),
                        updated_at: run.updated_at,
                    },
                );
            }
        }
        expected
    };
    let gh = connector(GitHubConfig {
        deployment_workflows: vec!["deploy.yml".into()],
        ..w.config("gh-runs")
    });
    let r = read(&gh, "workflow_runs", None).await.ok();
    assert!(r.quarantined().is_empty());
    let got: BTreeMap<String, Deployment> = r.deployments().into_iter().map(|d| (d.id.clone(), d)).collect();
    let expected = expected_for("gh-runs");
    assert_eq!(got, expected);
    for status in [
        DeploymentStatus::Success,
        DeploymentStatus::Failure,
        DeploymentStatus::Cancelled,
        DeploymentStatus::InProgress,
    ] {
        assert!(got.values().any(|d| d.status == status), "{status:?}");
    }
    assert!(got.keys().any(|k| k.ends_with("-2")), "a re-run attempt");
    // Every page of every repo, no time filter on a first sync without lookback.
    let pages: usize = w.data.repos.iter().map(|e| e.runs.len().div_ceil(100)).sum();
    let log = w.requests();
    assert_eq!(log.len(), pages, "{log:#?}");
    assert!(log.iter().all(|r| !r.contains("created=")));
    // By name it is the same workflow; another workflow is not a deployment.
    let by_name = connector(GitHubConfig {
        deployment_workflows: vec!["Deploy".into()],
        ..w.config("gh-runs-name")
    });
    let r = read(&by_name, "workflow_runs", None).await.ok();
    assert_eq!(r.deployments().len(), expected.len());
    let full_path = connector(GitHubConfig {
        deployment_workflows: vec![".github/workflows/deploy.yml".into()],
        ..w.config("gh-runs-path")
    });
    assert_eq!(
        read(&full_path, "workflow_runs", None)
            .await
            .ok()
            .deployments()
            .len(),
        expected.len()
    );
    let other = connector(GitHubConfig {
        deployment_workflows: vec!["release.yml".into()],
        ..w.config("gh-runs-other")
    });
    assert!(
        read(&other, "workflow_runs", None)
            .await
            .ok()
            .deployments()
            .is_empty()
    );
}

#[tokio::test]
async fn workflow_runs_split_a_created_range_holding_more_than_github_lists() {
    let org = Arc::new(
        Organisation::generate(OrgSpec {
            seed: 9,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            weeks: 26,
        })
        .unwrap(),
    );
    let servers = tandem_fixtures::start(Arc::clone(&org), FakeOptions::with_secret("t"))
        .await
        .unwrap();
    let w = World {
        data: github_data::generate(&org),
        org,
        servers,
    };
    let repo = "acme/search";
    let runs = &w.data.repo(repo).unwrap().runs;
    assert!(runs.len() > 1000);
    let days = (Utc::now() - w.org.spec.start_at()).num_days() + 7;
    let gh = connector(GitHubConfig {
        repos: vec![repo.into()],
        lookback_days: Some(days),
        // The simulated world's clock stopped long before today's: nothing it runs is stale.
        stale_after_days: 36_500,
        deployment_workflows: vec!["deploy".into()],
        ..w.config("gh-runs-windows")
    });
    let clean = read(&gh, "workflow_runs", None).await.ok();
    let got: Vec<String> = {
        let mut ids: Vec<String> = clean.deployments().into_iter().map(|d| d.id).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let mut expected: Vec<String> = runs
        .iter()
        .filter(|r| r.workflow == Workflow::Deploy)
        .map(|r| format!("gh-runs-windows:{repo}:run-{}-{}", r.id, r.run_attempt))
        .collect();
    expected.sort();
    assert_eq!(got, expected, "every deploy run, none lost to the 1,000 cap");
    let log = w.requests();
    assert!(log[0].contains("created=%3E%3D"), "{}", log[0]);
    let windows = log.iter().filter(|r| r.contains("..")).count();
    assert!(windows >= 2, "{log:#?}");
    // A kill between windows resumes where it stopped.
    let n = clean.checkpoints().len() / 2;
    assert_resume_equals_clean(&gh, "workflow_runs", &clean, n).await;
}

#[tokio::test]
async fn a_no_change_resync_costs_one_request_per_repo_and_stream() {
    let w = world(6).await;
    let gh = Connector::GitHub(connector(config_all(&w, "gh-resync")));
    let repos = w.org.services.len();
    let running_deploys = w
        .org
        .deployments
        .iter()
        .filter(|d| d.production_environment && Organisation::finished_at(d).is_none())
        .count();
    let running_runs = w
        .data
        .repos
        .iter()
        .flat_map(|e| &e.runs)
        .filter(|r| r.workflow == Workflow::Deploy && r.conclusion.is_none())
        .count();
    assert!(running_runs > 0 && running_deploys > 0);
    for (stream, rereads) in [
        ("deployments", running_deploys),
        ("issues", 0),
        ("releases", 0),
        ("workflow_runs", running_runs),
    ] {
        let first = read_reported(&gh, stream, None).await.ok();
        let mut bookmark = first.last_checkpoint().unwrap();
        if matches!(stream, "issues" | "workflow_runs") {
            // The first sync had no time filter; the next one filters from the bookmark and
            // gets the overlap again: still one request per repo.
            let before = w.requests().len();
            let second = read_reported(&gh, stream, Some(bookmark)).await.ok();
            assert_eq!(w.requests_since(before).len(), repos + rereads, "{stream}");
            bookmark = second.last_checkpoint().unwrap();
        }
        let before = w.requests().len();
        let again = read_reported(&gh, stream, Some(bookmark)).await.ok();
        let log = w.requests_since(before);
        assert_eq!(log.len(), repos + rereads, "{stream}: {log:#?}");
        assert_eq!(
            again.requests().not_modified,
            repos as u64,
            "{stream}: every list answered 304: {log:#?}"
        );
        assert_eq!(again.requests().requests, log.len() as u64, "{stream}");
        // Only what was still running comes again.
        assert!(
            again
                .deployments()
                .iter()
                .all(|d| d.status == DeploymentStatus::InProgress),
            "{stream}"
        );
        assert!(
            again.incidents().is_empty() && again.commits().is_empty(),
            "{stream}"
        );
    }
}

/// Two streams of one source read at once: each read reports exactly the pages it fetched and the
/// requests it made, none of the other's (the pages used to go to one buffer per source name, and
/// whichever stream checkpointed first archived both streams' pages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streams_of_one_source_read_at_once_report_only_their_own_pages_and_requests() {
    let w = world(4).await;
    let gh = Connector::GitHub(connector(w.config("gh-together")));
    let (deployments, pulls) = tokio::join!(
        read_reported(&gh, "deployments", None),
        read_reported(&gh, "pulls", None)
    );
    let (deployments, pulls) = (deployments.ok(), pulls.ok());
    let urls = |read: &Read| read.pages().into_iter().map(|p| p.url).collect::<Vec<_>>();
    let (deployment_urls, pull_urls) = (urls(&deployments), urls(&pulls));
    assert!(!deployment_urls.is_empty() && !pull_urls.is_empty());
    // The deployments stream reads deployments, their statuses and compares; the pulls stream
    // reads pulls and their commits.
    for url in &deployment_urls {
        assert!(url.contains("/deployments") || url.contains("/compare/"), "{url}");
    }
    for url in &pull_urls {
        assert!(url.contains("/pulls"), "{url}");
    }
    // Each read counts its own requests: one page per request here (no retry, no 304), and the
    // two together are every request the server saw.
    for (stream, read, urls) in [
        ("deployments", &deployments, &deployment_urls),
        ("pulls", &pulls, &pull_urls),
    ] {
        let counts = read.requests();
        assert_eq!(counts.requests, urls.len() as u64, "{stream}");
        assert_eq!((counts.retries, counts.not_modified), (0, 0), "{stream}");
    }
    assert_eq!(
        deployment_urls.len() + pull_urls.len(),
        w.requests().len(),
        "every request belongs to exactly one of the reads"
    );
}

/// A read reports its pages before the checkpoint that covers them, so a runner that archives
/// the pages it has when a checkpoint arrives archives everything the bookmark says was read.
#[tokio::test]
async fn a_read_reports_its_pages_before_the_checkpoint_that_covers_them() {
    let w = world(2).await;
    let gh = Connector::GitHub(connector(w.config("gh-order")));
    let read = read_reported(&gh, "pulls", None).await.ok();
    let last_checkpoint = read
        .messages
        .iter()
        .rposition(|m| matches!(m, Message::Checkpoint(_)))
        .unwrap();
    let pages_before: usize = read.messages[..last_checkpoint]
        .iter()
        .map(|m| match m {
            Message::Raw(pages) => pages.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(pages_before, w.requests().len(), "every page of the walk");
    // Every record message follows the pages it came from.
    let first_records = read
        .messages
        .iter()
        .position(|m| matches!(m, Message::Records(_)))
        .unwrap();
    assert!(
        read.messages[..first_records]
            .iter()
            .any(|m| matches!(m, Message::Raw(_)))
    );
}

#[tokio::test]
async fn a_read_resumed_from_a_mid_stream_checkpoint_equals_a_clean_one() {
    let w = world(8).await;
    let gh = connector(GitHubConfig {
        incident_labels: vec!["incident".into(), "sev2".into()],
        ..config_all(&w, "gh-resume")
    });
    for stream in ["deployments", "pulls", "issues", "releases", "workflow_runs"] {
        let clean = read(&gh, stream, None).await.ok();
        let n = clean.checkpoints().len();
        assert!(n >= 3, "{stream}: {n} checkpoints");
        for k in [0, n / 2, n - 2] {
            assert_resume_equals_clean(&gh, stream, &clean, k).await;
        }
    }
    // Killed after a walk, before its compares: the queue in the bookmark carries them over.
    let clean = read(&gh, "deployments", None).await.ok();
    let k =
        clean
            .checkpoints()
            .iter()
            .position(|c| {
                c["cursors"].as_object().unwrap().values().any(|c| {
                    c["walk"].is_null() && c["compare"]["queue"].as_array().is_some_and(|q| q.len() > 3)
                })
            })
            .unwrap();
    assert_resume_equals_clean(&gh, "deployments", &clean, k).await;
}

#[tokio::test]
async fn faults_on_the_new_streams_are_retried_or_reported() {
    let w = world(4).await;
    let gh = connector(config_all(&w, "gh-faults"));
    let control = &w.servers.github.control;
    control.truncate_next("/issues", 1);
    control.rate_limit_next("/actions/runs", 1, Some(0));
    control.fail_next("/commits/v1.", 500, 1);
    let issues = read(&gh, "issues", None).await.ok();
    let runs = read(&gh, "workflow_runs", None).await.ok();
    let releases = read(&gh, "releases", None).await.ok();
    // Each fault was met once and its request sent again.
    let log = w.requests();
    for path in ["/issues", "/actions/runs", "/commits/v1."] {
        let repeated = log
            .iter()
            .filter(|r| r.contains(path))
            .any(|r| log.iter().filter(|x| *x == r).count() == 2);
        assert!(repeated, "{path}: {log:#?}");
    }
    let clean = connector(config_all(&w, "gh-faults"));
    assert_eq!(
        stored(issues.records()),
        stored(read(&clean, "issues", None).await.ok().records())
    );
    assert_eq!(
        stored(runs.records()),
        stored(read(&clean, "workflow_runs", None).await.ok().records())
    );
    assert_eq!(
        stored(releases.records()),
        stored(read(&clean, "releases", None).await.ok().records())
    );
    // A short page does not end a walk: the next link is followed.
    control.short_page_next("/actions/runs", 1);
    let before = w.requests().len();
    read(&gh, "workflow_runs", None).await.ok();
    let pages: usize = w.data.repos.iter().map(|e| e.runs.len().div_ceil(100)).sum();
    assert_eq!(w.requests_since(before).len(), pages);
    // Credentials revoked mid-walk: an auth error naming what to check, no bookmark past it.
    control.unauthorized_next("/releases", 1);
    let r = read(&gh, "releases", None).await;
    let e = r.result.unwrap_err();
    assert!(e.is_auth(), "{e}");
    assert!(e.to_string().contains(TOKEN_VAR), "{e}");
}

#[test]
fn configs_without_the_new_keys_keep_working() {
    let c: GitHubConfig = serde_json::from_value(serde_json::json!({
        "name": "github",
        "token_env": "GH",
        "repos": ["acme/checkout"],
    }))
    .unwrap();
    assert!(c.compare_commits);
    assert!(c.incident_labels.is_empty() && c.deployment_workflows.is_empty());
    assert!(!c.releases_as_deployments);
    assert_eq!(
        (c.release_environment.as_str(), c.workflow_environment.as_str()),
        ("production", "production")
    );
    assert_eq!((c.lookback_days, c.stale_after_days), (Some(365), 7));
    let typo = serde_json::from_value::<GitHubConfig>(serde_json::json!({
        "name": "github",
        "token_env": "GH",
        "repos": [],
        "incident_label": ["incident"],
    }));
    assert!(typo.unwrap_err().to_string().contains("incident_label"));
}

#[tokio::test]
async fn malformed_records_of_the_new_streams_are_rejected_with_a_reason() {
    let gh = connector(GitHubConfig {
        deployment_workflows: vec!["deploy".into()],
        ..GitHubConfig {
            name: "gh-malformed".into(),
            base_url: "http://127.0.0.1:9".into(),
            token_env: TOKEN_VAR.into(),
            repos: vec!["acme/a".into()],
            environments: vec!["production".into()],
            production_environments: vec!["production".into()],
            overlap_minutes: 60,
            lookback_days: None,
            // The simulated world's clock stopped long before today's: nothing it runs is stale.
            stale_after_days: 36_500,
            compare_commits: true,
            incident_labels: vec!["incident".into()],
            releases_as_deployments: true,
            release_environment: "production".into(),
            deployment_workflows: Vec::new(),
            workflow_environment: "production".into(),
        }
    });
    let run = serde_json::json!({
        "id": 7, "name": "deploy", "path": ".github/workflows/deploy.yml", "run_attempt": 1,
        "status": "completed", "conclusion": "skipped", "head_sha": "abc", "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:05:00Z", "run_started_at": "2024-01-01T00:00:10Z",
    });
    assert!(gh.run("acme/a", &run).unwrap_err().contains("skipped"));
    let mut ok = run.clone();
    ok["conclusion"] = "startup_failure".into();
    assert_eq!(gh.run("acme/a", &ok).unwrap().status, DeploymentStatus::Error);
    ok["status"] = "exploded".into();
    ok["conclusion"] = Value::Null;
    assert!(gh.run("acme/a", &ok).unwrap_err().contains("exploded"));
    let mut bad_time = run.clone();
    bad_time["conclusion"] = "success".into();
    bad_time["updated_at"] = "yesterday".into();
    assert!(gh.run("acme/a", &bad_time).unwrap_err().contains("updated_at"));
    // A map_runs item with an unparsable creation time is quarantined, not dropped.
    let mut high_water = None;
    let mut no_created = run.clone();
    no_created["created_at"] = Value::Null;
    let (records, rejected, _) = gh.map_runs("acme/a", &[no_created], &mut high_water);
    assert!(records.is_empty() && rejected.len() == 1 && rejected[0].stream == "workflow_runs");

    let issue = serde_json::json!({
        "number": 5, "title": "Down", "state": "weird", "labels": [{"name": "incident"}, {"name": "P3"}],
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "closed_at": null, "body": null,
    });
    assert!(gh.incident("acme/a", &issue).unwrap_err().contains("weird"));
    let mut fine = issue.clone();
    fine["state"] = "open".into();
    let i = gh.incident("acme/a", &fine).unwrap();
    assert_eq!(
        (i.severity, i.id.as_str()),
        (Some(Severity::Sev3), "gh-malformed:acme/a#5")
    );
    let mut late = fine.clone();
    late["closed_at"] = "2024-13-01T00:00:00Z".into();
    assert!(gh.incident("acme/a", &late).unwrap_err().contains("closed_at"));

    let commit = serde_json::json!({"sha": "abc1234", "commit": {"author": {"date": "2007-10-29T02:42:39.000-07:00"}, "message": "Fix it\n\nbody"}, "parents": [{"sha": "p1"}]});
    let shipped: super::deployments::Shipped = serde_json::from_value(
        serde_json::json!({"id": "d", "sha": "abc1234", "finished_at": "2024-01-01T00:00:00Z"}),
    )
    .unwrap();
    let c = gh.commit("acme/a", &shipped, &commit).unwrap();
    assert_eq!(c.authored_at.to_rfc3339(), "2007-10-29T09:42:39+00:00");
    assert_eq!(
        (c.title.as_str(), c.parents.clone()),
        ("Fix it", vec!["p1".to_owned()])
    );
    let mut no_date = commit.clone();
    no_date["commit"]["author"]["date"] = "someday".into();
    assert!(
        gh.commit("acme/a", &shipped, &no_date)
            .unwrap_err()
            .contains("commit.author.date")
    );

    let release = serde_json::json!({"id": 3, "tag_name": "v1", "created_at": "2024-01-01T00:00:00Z", "published_at": "bad"});
    assert!(
        gh.release("acme/a", &release, "abc".into())
            .unwrap_err()
            .contains("published_at")
    );
}

#[test]
fn people_are_read_from_githubs_shapes_and_missing_ones_are_null() {
    let gh = connector(GitHubConfig {
        name: "gh-people".into(),
        base_url: "http://127.0.0.1:9".into(),
        token_env: TOKEN_VAR.into(),
        repos: vec!["acme/a".into()],
        environments: vec!["production".into()],
        production_environments: vec!["production".into()],
        overlap_minutes: 60,
        lookback_days: None,
        // The simulated world's clock stopped long before today's: nothing it runs is stale.
        stale_after_days: 36_500,
        compare_commits: true,
        incident_labels: vec!["incident".into()],
        releases_as_deployments: true,
        release_environment: "production".into(),
        deployment_workflows: vec!["deploy".into()],
        workflow_environment: "production".into(),
    });
    let user = |login: &str| serde_json::json!({"login": login, "id": 1, "type": "User"});

    // Pull request: `user.login` is the author.
    let mut pull = serde_json::json!({
        "number": 9, "title": "Fix", "state": "closed", "user": user("mia-krystof"),
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-02T00:00:00Z",
        "merged_at": "2024-01-02T00:00:00Z", "merge_commit_sha": "abc", "labels": [], "body": null,
    });
    assert_eq!(
        gh.change("acme/a", &pull, &[]).unwrap().author.as_deref(),
        Some("mia-krystof")
    );
    pull["user"] = Value::Null;
    assert_eq!(gh.change("acme/a", &pull, &[]).unwrap().author, None);

    // Deployment: `creator.login`; GitHub sends `creator: null` for a deleted account.
    let mut deployment = serde_json::json!({
        "id": 4, "sha": "abc", "environment": "production", "creator": user("acme-deploy-bot"),
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
    });
    let status = serde_json::json!({"id": 1, "state": "success", "created_at": "2024-01-01T00:05:00Z"});
    let d = gh
        .deployment("acme/a", &deployment, std::slice::from_ref(&status))
        .unwrap();
    assert_eq!(d.deployed_by.as_deref(), Some("acme-deploy-bot"));
    deployment["creator"] = Value::Null;
    assert_eq!(
        gh.deployment("acme/a", &deployment, &[status])
            .unwrap()
            .deployed_by,
        None
    );

    // Compare commit: the git author's name and email as written in the commit.
    let shipped: super::deployments::Shipped = serde_json::from_value(
        serde_json::json!({"id": "d", "sha": "abc", "finished_at": "2024-01-01T00:00:00Z"}),
    )
    .unwrap();
    let mut commit = serde_json::json!({
        "sha": "abc",
        "commit": {"author": {"name": "Jon Doe", "email": "jdoe@acme.example", "date": "2024-01-01T00:00:00Z"}, "message": "Fix"},
        "author": user("jdoe"), "parents": [],
    });
    let c = gh.commit("acme/a", &shipped, &commit).unwrap();
    assert_eq!(
        (c.author_name.as_deref(), c.author_email.as_deref()),
        (Some("Jon Doe"), Some("jdoe@acme.example"))
    );
    commit["commit"]["author"]["name"] = "".into();
    commit["commit"]["author"]
        .as_object_mut()
        .unwrap()
        .remove("email");
    let c = gh.commit("acme/a", &shipped, &commit).unwrap();
    assert_eq!((c.author_name, c.author_email), (None, None));

    // Issue: the assignee's login (else the first of `assignees`); an issue has no acknowledger.
    let mut issue = serde_json::json!({
        "number": 5, "title": "Down", "state": "open", "labels": [{"name": "incident"}],
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "closed_at": null,
        "body": null, "assignee": user("samlee"), "assignees": [user("samlee")],
    });
    let i = gh.incident("acme/a", &issue).unwrap();
    assert_eq!((i.assignee.as_deref(), i.acknowledged_by), (Some("samlee"), None));
    issue["assignee"] = Value::Null;
    issue["assignees"] = serde_json::json!([user("noor-h")]);
    assert_eq!(
        gh.incident("acme/a", &issue).unwrap().assignee.as_deref(),
        Some("noor-h")
    );
    issue["assignees"] = serde_json::json!([]);
    assert_eq!(gh.incident("acme/a", &issue).unwrap().assignee, None);

    // Release: its author published it. Workflow run: who triggered it (a re-run's
    // `triggering_actor`), else `actor`.
    let release = serde_json::json!({
        "id": 3, "tag_name": "v1", "author": user("grace-o"),
        "created_at": "2024-01-01T00:00:00Z", "published_at": "2024-01-01T00:00:00Z",
    });
    assert_eq!(
        gh.release("acme/a", &release, "abc".into())
            .unwrap()
            .deployed_by
            .as_deref(),
        Some("grace-o")
    );
    let mut run = serde_json::json!({
        "id": 7, "name": "deploy", "path": ".github/workflows/deploy.yml", "run_attempt": 2,
        "status": "completed", "conclusion": "success", "head_sha": "abc", "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:05:00Z", "actor": user("lukas-b"), "triggering_actor": user("ravi-p"),
    });
    assert_eq!(
        gh.run("acme/a", &run).unwrap().deployed_by.as_deref(),
        Some("ravi-p")
    );
    run.as_object_mut().unwrap().remove("triggering_actor");
    assert_eq!(
        gh.run("acme/a", &run).unwrap().deployed_by.as_deref(),
        Some("lukas-b")
    );
}

/// Every link a bookmark of `state` keeps: walks' `next`, pending deployments' `statuses_url`
/// and pending runs' `url`.
fn bookmark_links(state: &Value) -> Vec<String> {
    let mut links = Vec::new();
    for cursor in state["cursors"].as_object().into_iter().flat_map(|c| c.values()) {
        if let Some(next) = cursor.pointer("/walk/next").and_then(Value::as_str) {
            links.push(next.to_owned());
        }
        for p in cursor["pending"].as_array().into_iter().flatten() {
            // A deployment is re-polled through its statuses, a run through its own URL.
            let field = if p.get("statuses_url").is_some() {
                "statuses_url"
            } else {
                "url"
            };
            if let Some(link) = p.get(field).and_then(Value::as_str) {
                links.push(link.to_owned());
            }
        }
    }
    links
}

#[tokio::test]
async fn github_pending_deployments_and_runs_are_repolled_after_base_url_moves_to_another_port() {
    let w = world(6).await;
    let name = "gh-moved";
    let old = config_all(&w, name);
    let gh = connector(old.clone());
    let deployments = read(&gh, "deployments", None).await.ok();
    let runs = read(&gh, "workflow_runs", None).await.ok();
    let running = |r: &Read| -> Vec<String> {
        r.deployments()
            .into_iter()
            .filter(|d| d.status == DeploymentStatus::InProgress)
            .map(|d| d.id)
            .collect()
    };
    let (running_deployments, running_runs) = (running(&deployments), running(&runs));
    assert!(!running_deployments.is_empty() && !running_runs.is_empty());
    let deployments_bookmark = deployments.last_checkpoint().unwrap();
    let runs_bookmark = runs.last_checkpoint().unwrap();
    // A kill in the middle of a runs walk leaves its next page in the bookmark.
    let mid_walk = runs
        .checkpoints()
        .into_iter()
        .find(|c| {
            c["cursors"]
                .as_object()
                .unwrap()
                .values()
                .any(|cursor| !cursor["walk"].is_null())
        })
        .expect("a checkpoint taken mid-walk");
    // What the bookmarks keep is relative to base_url: no host, no port.
    for state in [&deployments_bookmark, &runs_bookmark, &mid_walk] {
        let links = bookmark_links(state);
        assert!(!links.is_empty());
        assert!(links.iter().all(|l| l.starts_with('/')), "{links:#?}");
    }

    // The same API moves to another port (a renamed host, a proxy): base_url follows it.
    let old_base = old.base_url.clone();
    let World {
        org,
        data: _,
        servers,
    } = w;
    servers.shutdown().await;
    let moved = tandem_fixtures::start(Arc::clone(&org), FakeOptions::with_secret("t"))
        .await
        .unwrap();
    assert_ne!(moved.github.base_url(), old_base);
    let gh = connector(GitHubConfig {
        base_url: moved.github.base_url(),
        ..old
    });
    let requests = || moved.github.control.requests();

    let again = read(&gh, "deployments", Some(deployments_bookmark.clone()))
        .await
        .ok();
    let ids: Vec<String> = again.deployments().into_iter().map(|d| d.id).collect();
    assert!(running_deployments.iter().all(|id| ids.contains(id)), "{ids:?}");
    // Each vendor id (the last part of the record id) asked of the new port, re-polls first.
    let asked = |log: &[String], ids: &[String], what: &str| {
        for id in ids {
            let vendor = id.rsplit(':').next().unwrap().trim_start_matches("run-");
            let vendor = vendor.split('-').next().unwrap();
            assert!(
                log.iter().any(|r| r.contains(&format!("/{vendor}{what}"))),
                "{id}: {log:#?}"
            );
        }
    };
    asked(&requests(), &running_deployments, "/statuses");
    assert!(requests()[0].contains("/statuses"), "{:#?}", requests());

    let before = requests().len();
    let again = read(&gh, "workflow_runs", Some(runs_bookmark)).await.ok();
    let ids: Vec<String> = again.deployments().into_iter().map(|d| d.id).collect();
    assert!(running_runs.iter().all(|id| ids.contains(id)), "{ids:?}");
    asked(&requests()[before..], &running_runs, "");

    // A walk resumed from its saved next page on the new port.
    read(&gh, "workflow_runs", Some(mid_walk)).await.ok();

    // A bookmark written before links were kept relative holds the old host: moved too.
    let mut legacy = deployments_bookmark;
    for cursor in legacy["cursors"].as_object_mut().unwrap().values_mut() {
        for p in cursor["pending"].as_array_mut().into_iter().flatten() {
            let relative = p["statuses_url"].as_str().unwrap().to_owned();
            p["statuses_url"] = format!("{old_base}{relative}").into();
        }
    }
    let before = requests().len();
    read(&gh, "deployments", Some(legacy)).await.ok();
    asked(&requests()[before..], &running_deployments, "/statuses");
    moved.shutdown().await;
}

#[tokio::test]
async fn a_bookmarked_link_outside_the_base_url_path_fails_the_stream_saying_what_to_do() {
    let w = world(2).await;
    let repo = w.org.services[0].repo.clone();
    // The API now sits under a path the old link does not have (a proxy with a prefix).
    let gh = connector(GitHubConfig {
        base_url: format!("{}/github/api/v3", w.servers.github.base_url()),
        repos: vec![repo.clone()],
        ..w.config("gh-unmovable")
    });
    let link = "https://ghe.example.com/api/v3/repositories/7/pulls?state=closed&page=2";
    let bookmark = serde_json::json!({"cursors": {repo: {"high_water": null, "walk": {
        "next": link, "stop_below": null, "high_water": null
    }}}});
    let before = w.requests().len();
    let r = read(&gh, "pulls", Some(bookmark)).await;
    let message = r.result.unwrap_err().to_string();
    for part in [
        link,
        "gh-unmovable",
        "pulls",
        "tandem sync --source gh-unmovable --full",
        "base_url",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert!(
        w.requests_since(before).is_empty(),
        "nothing asked of a guessed URL"
    );
}

#[tokio::test]
async fn an_in_progress_deployment_eight_days_old_becomes_stale_and_is_no_longer_requested() {
    let w = world(6).await;
    let config = GitHubConfig {
        stale_after_days: 7,
        deployment_workflows: vec!["deploy.yml".into()],
        ..w.config("gh-stale")
    };
    for (stream, by_id) in [("deployments", "/statuses"), ("workflow_runs", "/actions/runs/")] {
        let now = w.org.spec.now();
        let first = read(&connector(config.clone()).with_now(now), stream, None)
            .await
            .ok();
        let running: Vec<Deployment> = first
            .deployments()
            .into_iter()
            .filter(|d| d.status == DeploymentStatus::InProgress)
            .collect();
        assert!(!running.is_empty(), "{stream}");
        // The fake world's clock stands still: eight days on, they are still running.
        let later = running.iter().map(|d| d.created_at).max().unwrap() + chrono::Duration::days(8);
        let before = w.requests().len();
        let second = read(
            &connector(config.clone()).with_now(later),
            stream,
            first.last_checkpoint(),
        )
        .await
        .ok();
        // Asked once more (it may have finished meanwhile), then stale: not success, not failure.
        let asked = w.requests_since(before);
        assert_eq!(
            asked.iter().filter(|r| r.contains(by_id)).count(),
            running.len(),
            "{stream}: {asked:#?}"
        );
        let again = second.deployments();
        for d in &running {
            let now_stale = again.iter().find(|a| a.id == d.id).unwrap();
            assert_eq!(now_stale.status, DeploymentStatus::Stale, "{stream}");
            assert_eq!(now_stale.finished_at, None);
        }
        let bookmark = second.last_checkpoint().unwrap();
        assert!(
            bookmark["cursors"]
                .as_object()
                .unwrap()
                .values()
                .all(|c| c["pending"].as_array().is_none_or(Vec::is_empty)),
            "{stream}: {bookmark}"
        );
        // And no longer requested.
        let before = w.requests().len();
        let third = read(
            &connector(config.clone()).with_now(later + chrono::Duration::days(1)),
            stream,
            Some(bookmark),
        )
        .await
        .ok();
        let asked = w.requests_since(before);
        assert!(!asked.iter().any(|r| r.contains(by_id)), "{stream}: {asked:#?}");
        assert!(third.deployments().is_empty(), "{stream}");
    }
}

/// The instant a record's stream walks by: creation for deployments, last update otherwise.
fn walked_at(r: &Record) -> Option<DateTime<Utc>> {
    match r {
        Record::Deployment(d) => Some(d.created_at),
        Record::Change(c) => Some(c.updated_at),
        Record::Incident(i) => Some(i.updated_at),
        _ => None,
    }
}

#[tokio::test]
async fn raising_lookback_from_30_to_90_days_backfills_every_stream_and_moves_covers_from() {
    let w = world(20).await;
    let now = w.org.spec.now();
    let days = |n| now - chrono::Duration::days(n);
    let with_lookback = |n| {
        connector(GitHubConfig {
            lookback_days: Some(n),
            ..config_all(&w, "gh-backfill")
        })
        .with_now(now)
    };
    for stream in ["deployments", "pulls", "issues", "releases", "workflow_runs"] {
        let first = read(&with_lookback(30), stream, None).await.ok();
        let bookmark = first.last_checkpoint().unwrap();
        assert_eq!(covers_from(&bookmark), Some(Some(days(30))), "{stream}");
        assert!(
            first
                .records()
                .iter()
                .filter_map(walked_at)
                .all(|t| t >= days(31)),
            "{stream}"
        );
        // Lookback raised: the older history arrives without --full, from the bookmark.
        let second = read(&with_lookback(90), stream, Some(bookmark)).await.ok();
        let bookmark = second.last_checkpoint().unwrap();
        assert_eq!(covers_from(&bookmark), Some(Some(days(90))), "{stream}");
        let older: Vec<DateTime<Utc>> = second
            .records()
            .iter()
            .filter_map(walked_at)
            .filter(|t| *t < days(31))
            .collect();
        assert!(!older.is_empty(), "{stream}: nothing older arrived");
        assert!(older.iter().all(|t| *t >= days(91)), "{stream}");
        if stream == "deployments" {
            // The older deployments' commits too: what one read of the 90 days links, no more,
            // no less (the deployment that was the first one seen now has its commits).
            let clean = read(&with_lookback(90), stream, None).await.ok();
            let links = |reads: &[&Read]| {
                reads
                    .iter()
                    .flat_map(|r| r.commits())
                    .map(|c| (c.deployment_id, c.sha))
                    .collect::<std::collections::BTreeSet<_>>()
            };
            assert!(!second.commits().is_empty());
            assert_eq!(links(&[&first, &second]), links(&[&clean]));
        }
        // Then incremental again: nothing old is read twice.
        let third = read(&with_lookback(90), stream, Some(bookmark)).await.ok();
        assert_eq!(
            covers_from(&third.last_checkpoint().unwrap()),
            Some(Some(days(90))),
            "{stream}"
        );
        assert!(
            third
                .records()
                .iter()
                .filter_map(walked_at)
                .all(|t| t >= days(31)),
            "{stream}"
        );
    }
}

#[tokio::test]
async fn a_repo_added_to_the_config_gets_its_history_while_the_others_read_incrementally() {
    let w = world(8).await;
    let now = w.org.spec.now();
    let (kept, added) = (w.org.services[0].repo.clone(), w.org.services[1].repo.clone());
    let with_repos = |repos: Vec<String>| {
        connector(GitHubConfig {
            repos,
            lookback_days: Some(90),
            ..w.config("gh-added")
        })
        .with_now(now)
    };
    let first = read(&with_repos(vec![kept.clone()]), "deployments", None)
        .await
        .ok();
    let start = now - chrono::Duration::days(90);
    assert_eq!(covers_from(&first.last_checkpoint().unwrap()), Some(Some(start)));
    // What the added repo holds, read on its own.
    let alone = read(&with_repos(vec![added.clone()]), "deployments", None)
        .await
        .ok();
    let want: Vec<String> = alone.deployments().into_iter().map(|d| d.id).collect();
    assert!(!want.is_empty());

    let before = w.requests().len();
    let both = with_repos(vec![kept.clone(), added.clone()]);
    let second = read(&both, "deployments", first.last_checkpoint()).await.ok();
    let got: Vec<String> = second
        .deployments()
        .into_iter()
        .filter(|d| d.repo == added)
        .map(|d| d.id)
        .collect();
    assert_eq!(
        got.iter().collect::<std::collections::BTreeSet<_>>(),
        want.iter().collect()
    );
    // The kept repo: its list answered 304 and only what was running is asked again.
    assert!(
        second
            .deployments()
            .iter()
            .filter(|d| d.repo == kept)
            .all(|d| d.status == DeploymentStatus::InProgress)
    );
    let kept_lists = w.requests_since(before);
    let kept_id = w.org.services[0].repo_id;
    let kept_lists: Vec<&String> = kept_lists
        .iter()
        .filter(|r| {
            r.contains(&format!("/repos/{kept}/deployments?"))
                || r.contains(&format!("/repositories/{kept_id}/deployments?"))
        })
        .collect();
    assert_eq!(kept_lists.len(), 1, "{kept_lists:#?}");
    // Until the added repo is read, the stream is complete from now only; then from the start.
    let checkpoints = second.checkpoints();
    assert_eq!(covers_from(&checkpoints[0]), Some(Some(now)));
    assert_eq!(covers_from(checkpoints.last().unwrap()), Some(Some(start)));
}

#[tokio::test]
async fn a_bookmark_from_before_coverage_was_kept_is_read_incrementally() {
    let w = world(8).await;
    let now = w.org.spec.now();
    let gh = connector(GitHubConfig {
        lookback_days: Some(30),
        ..w.config("gh-legacy-coverage")
    })
    .with_now(now);
    let first = read(&gh, "pulls", None).await.ok();
    // The same bookmark as a tandem that kept no coverage wrote it.
    let mut legacy = first.last_checkpoint().unwrap();
    legacy.as_object_mut().unwrap().remove("covers_from");
    for cursor in legacy["cursors"].as_object_mut().unwrap().values_mut() {
        assert!(cursor.as_object_mut().unwrap().remove("covered").is_some());
    }
    let before = w.requests().len();
    let again = read(&gh, "pulls", Some(legacy)).await.ok();
    // Taken as complete from the lookback start: one unchanged first page per repo, no backfill.
    assert!(again.records().is_empty());
    assert_eq!(w.requests_since(before).len(), w.org.services.len());
    assert_eq!(
        covers_from(&again.last_checkpoint().unwrap()),
        Some(Some(now - chrono::Duration::days(30)))
    );
}
