//! Tests of the GitHub connector against the fake GitHub: the records equal what the simulated
//! organisation holds, the requests made are counted, faults are survived and a resumed read
//! equals a clean one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use tandem_fixtures::github_data::{self, GitHubData, Workflow};
use tandem_fixtures::{FakeOptions, FakeServers, OrgSpec, Organisation, SimDeployment, SimPull};

use super::{GitHub, GitHubConfig};
use crate::contract::{Message, read_all};
use crate::error::ConnectorError;
use crate::http::RetryPolicy;
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
    /// A config for every repo; `name` must be unique per test (request counters are per source).
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

#[tokio::test]
async fn commits_between_production_deployments_follow_the_history() {
    let w = world(8).await;
    let gh = connector(w.config("gh-compare"));
    let r = read(&gh, "deployments", None).await.ok();
    assert!(r.quarantined().is_empty(), "{:#?}", r.quarantined().first());
    let got: Vec<(String, String)> = r
        .commits()
        .iter()
        .map(|c| (c.deployment_id.clone().unwrap(), c.sha.clone()))
        .collect();
    let expected = expected_commits(&w.org, "gh-compare");
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(got, expected);
}
