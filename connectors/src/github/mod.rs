//! GitHub (and GitHub Enterprise Server): deployments with their final status and the commits
//! between consecutive production deployments, closed pull requests with the author time of their
//! first commit, issues labelled as incidents, and, when configured, releases and Actions workflow
//! runs as deployments.
//!
//! Deployments, pulls and releases come newest first without a `since` filter, so each walk stops
//! below the bookmark (minus an overlap) and resumes from the saved `next` link after a kill;
//! issues and workflow runs take a time filter instead. Every stream reads back `lookback_days`
//! (a year by default) and backfills per repo when that grows or a repo is added; links saved in
//! bookmarks are relative to `base_url`. Mapping to services happens in the runner, not here;
//! this module never touches the store.

mod deployments;
mod issues;
mod pulls;
mod releases;
mod runs;
mod walk;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{Emitter, EndpointCheck, StreamDef, first_failure};
use crate::error::ConnectorError;
use crate::http::{Auth, HttpClient, RetryPolicy};
use crate::model::QuarantineReason;
use crate::model::unusable;
use crate::model::{DeploymentStatus, Quarantined, Record};
use crate::secret::SecretEnv;
use crate::time::parse_instant;

/// Page size: GitHub's maximum, so a walk makes the fewest requests.
const PER_PAGE: &str = "100";
/// Detail requests (statuses, commits, compares) in flight at once per source: far below GitHub's
/// secondary limit of 100 concurrent requests.
const CONCURRENCY: usize = 8;

/// `[[source]] kind = "github"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    /// Source name, unique in the config (used in bookmarks and record ids).
    pub name: String,
    /// API root: `https://api.github.com`, or `https://HOST/api/v3` for Enterprise Server.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Environment variable holding the token.
    pub token_env: String,
    /// Repositories to read, `owner/name`.
    pub repos: Vec<String>,
    /// Deployment environments to read.
    #[serde(default = "default_environments")]
    pub environments: Vec<String>,
    /// Environment names that count as production (case-insensitive), besides GitHub's own
    /// `production_environment: true`.
    #[serde(default = "default_production")]
    pub production_environments: Vec<String>,
    /// How far each incremental walk reaches back past the bookmark, in minutes.
    #[serde(default = "default_overlap")]
    pub overlap_minutes: i64,
    /// Read no further back than this many days (365 by default). Raising it, or adding a repo,
    /// backfills the missing history on the next sync.
    #[serde(default = "default_lookback")]
    pub lookback_days: Option<i64>,
    /// Deployments and workflow runs still unfinished this many days after they were created are
    /// marked `stale` and no longer re-polled.
    #[serde(default = "default_stale_after")]
    pub stale_after_days: i64,
    /// Emit the commits between consecutive successful production deployments (one compare per
    /// deployment), so lead time can follow commit ancestry.
    #[serde(default = "default_true")]
    pub compare_commits: bool,
    /// Issue labels that mark an incident (any one suffices). Empty: the `issues` stream reads
    /// nothing.
    #[serde(default)]
    pub incident_labels: Vec<String>,
    /// Read published releases as deployments (the `releases` stream).
    #[serde(default)]
    pub releases_as_deployments: bool,
    /// Environment given to release deployments.
    #[serde(default = "default_production_environment")]
    pub release_environment: String,
    /// Actions workflows whose runs are deployments, by name (`deploy`) or file (`deploy.yml`,
    /// `.github/workflows/deploy.yml`). Empty: the `workflow_runs` stream reads nothing.
    #[serde(default)]
    pub deployment_workflows: Vec<String>,
    /// Environment given to workflow-run deployments.
    #[serde(default = "default_production_environment")]
    pub workflow_environment: String,
}

fn default_base_url() -> String {
    "https://api.github.com".into()
}
fn default_environments() -> Vec<String> {
    vec!["production".into()]
}
fn default_production() -> Vec<String> {
    vec!["prod".into(), "production".into()]
}
fn default_overlap() -> i64 {
    60
}
fn default_lookback() -> Option<i64> {
    Some(crate::coverage::DEFAULT_LOOKBACK_DAYS)
}
fn default_stale_after() -> i64 {
    crate::coverage::DEFAULT_STALE_AFTER_DAYS
}
fn default_true() -> bool {
    true
}
fn default_production_environment() -> String {
    "production".into()
}

/// The GitHub connector.
#[derive(Debug, Clone)]
pub struct GitHub {
    config: GitHubConfig,
    client: HttpClient,
    /// The system's clock, or a fixed one (a replay of a frozen world).
    clock: crate::coverage::Clock,
}

const STREAMS: &[StreamDef] = &[
    StreamDef {
        name: "deployments",
        table: "deployments",
        primary_key: "id",
        cursor_field: "created_at",
    },
    StreamDef {
        name: "pulls",
        table: "changes",
        primary_key: "id",
        cursor_field: "updated_at",
    },
    StreamDef {
        name: "issues",
        table: "incidents",
        primary_key: "id",
        cursor_field: "updated_at",
    },
    StreamDef {
        name: "releases",
        table: "deployments",
        primary_key: "id",
        cursor_field: "created_at",
    },
    StreamDef {
        name: "workflow_runs",
        table: "deployments",
        primary_key: "id",
        cursor_field: "created_at",
    },
];

impl GitHub {
    /// Builds the connector; fails when the token variable is missing.
    pub fn new(config: GitHubConfig, env: &SecretEnv, policy: RetryPolicy) -> Result<Self, ConnectorError> {
        let key = format!("source.{}.token_env", config.name);
        let token = env.get(&config.token_env, &key)?;
        let client = HttpClient::new(
            &config.name,
            &config.base_url,
            &Auth::Bearer(token),
            &[
                ("accept", "application/vnd.github+json"),
                ("x-github-api-version", "2022-11-28"),
            ],
            format!(
                "check that the token in ${} is valid, not expired, and can read {}",
                config.token_env,
                config.repos.join(", ")
            ),
            policy,
        )?;
        Ok(Self {
            config,
            client,
            clock: crate::coverage::Clock::default(),
        })
    }

    /// The same connector reading its clock as showing `now`: what counts as stale and where the
    /// lookback starts follow it (for replays of recorded or simulated data).
    pub fn with_now(mut self, now: DateTime<Utc>) -> Self {
        self.clock = crate::coverage::Clock::fixed(now);
        self
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Unfinished records created before this instant are stale.
    fn stale_before(&self) -> DateTime<Utc> {
        self.clock.stale_before(self.config.stale_after_days)
    }

    /// The streams offered; `issues`, `releases` and `workflow_runs` read nothing unless
    /// configured.
    pub fn streams(&self) -> &'static [StreamDef] {
        STREAMS
    }

    /// One cheap request per repo: the repo must exist and be readable with the token.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        first_failure(self.check_endpoints().await)
    }

    /// One cheap request to each endpoint a sync calls, per repo: the repo itself, deployments
    /// and a deployment's statuses, a compare (with `compare_commits`), closed pulls and a pull's
    /// commits, and labelled issues, releases and workflow runs when those streams read anything.
    /// A repo that cannot be read is reported once, not once per endpoint.
    pub async fn check_endpoints(&self) -> Vec<EndpointCheck> {
        const CLASSIC: &str = "(a classic token needs the `repo` scope for private repositories)";
        let mut checks = Vec::new();
        for repo in &self.config.repos {
            let one = |path: &str| {
                (
                    self.url(&format!("/repos/{repo}{path}")),
                    vec![("per_page", "1".to_owned())],
                )
            };
            let get = |(url, query): (String, Vec<(&'static str, String)>)| async move {
                self.client.get_json(&url, &query).await
            };
            let (check, _) = EndpointCheck::of(
                format!("repository {repo} (GET /repos/{repo})"),
                self.client
                    .get_json(&self.url(&format!("/repos/{repo}")), &[])
                    .await,
                &format!("give the token access to {repo} (fine-grained: Metadata read) {CLASSIC}"),
            );
            let unreadable = check.failed();
            checks.push(check);
            if unreadable {
                continue;
            }
            let deployments_fix = format!("grant Deployments: read on {repo} {CLASSIC}");
            let contents_fix = format!("grant Contents: read on {repo} {CLASSIC}");
            let (check, page) = EndpointCheck::of(
                format!("deployments of {repo} (GET /repos/{repo}/deployments)"),
                get(one("/deployments")).await,
                &deployments_fix,
            );
            checks.push(check);
            let first = page.and_then(|p| p.body.as_array().and_then(|a| a.first().cloned()));
            if let Some(id) = first.as_ref().and_then(|d| d.get("id")).and_then(Value::as_u64) {
                checks.push(
                    EndpointCheck::of(
                        format!(
                            "deployment statuses of {repo} (GET /repos/{repo}/deployments/{{id}}/statuses)"
                        ),
                        get(one(&format!("/deployments/{id}/statuses"))).await,
                        &deployments_fix,
                    )
                    .0,
                );
            }
            let sha = first.as_ref().and_then(|d| d.get("sha")).and_then(Value::as_str);
            if let (true, Some(sha)) = (self.config.compare_commits, sha) {
                checks.push(
                    EndpointCheck::of(
                        format!("commit compare of {repo} (GET /repos/{repo}/compare/{{base}}...{{head}})"),
                        get(one(&format!("/compare/{sha}...{sha}"))).await,
                        &contents_fix,
                    )
                    .0,
                );
            }
            let (url, mut query) = one("/pulls");
            query.push(("state", "closed".to_owned()));
            let (check, page) = EndpointCheck::of(
                format!("pull requests of {repo} (GET /repos/{repo}/pulls)"),
                get((url, query)).await,
                &format!("grant Pull requests: read on {repo} {CLASSIC}"),
            );
            checks.push(check);
            let number = page
                .and_then(|p| p.body.as_array().and_then(|a| a.first().cloned()))
                .and_then(|p| p.get("number").and_then(Value::as_u64));
            if let Some(number) = number {
                checks.push(
                    EndpointCheck::of(
                        format!(
                            "pull request commits of {repo} (GET /repos/{repo}/pulls/{{number}}/commits)"
                        ),
                        get(one(&format!("/pulls/{number}/commits"))).await,
                        &contents_fix,
                    )
                    .0,
                );
            }
            if !self.config.incident_labels.is_empty() {
                checks.push(
                    EndpointCheck::of(
                        format!("issues of {repo} (GET /repos/{repo}/issues)"),
                        get(one("/issues")).await,
                        &format!("grant Issues: read on {repo} {CLASSIC}"),
                    )
                    .0,
                );
            }
            if self.config.releases_as_deployments {
                checks.push(
                    EndpointCheck::of(
                        format!("releases of {repo} (GET /repos/{repo}/releases)"),
                        get(one("/releases")).await,
                        &contents_fix,
                    )
                    .0,
                );
            }
            if !self.config.deployment_workflows.is_empty() {
                checks.push(
                    EndpointCheck::of(
                        format!("workflow runs of {repo} (GET /repos/{repo}/actions/runs)"),
                        get(one("/actions/runs")).await,
                        &format!("grant Actions: read on {repo} {CLASSIC}"),
                    )
                    .0,
                );
            }
        }
        checks
    }

    /// This connector for one read, whose pages and requests are kept in `traffic` (see
    /// [`HttpClient::recording`]).
    pub(crate) fn recording(&self, traffic: &std::sync::Arc<crate::http::Traffic>) -> Self {
        Self {
            client: self.client.recording(traffic),
            ..self.clone()
        }
    }

    /// Reads `stream` from `bookmark`, sending records and checkpoints to `out`.
    pub async fn read(
        &self,
        stream: &str,
        bookmark: Option<Value>,
        out: Emitter,
    ) -> Result<(), ConnectorError> {
        let mut state = self.state(stream, bookmark);
        match stream {
            "deployments" => self.read_deployments(&mut state, &out).await,
            "pulls" => self.read_pulls(&mut state, &out).await,
            "issues" => self.read_issues(&mut state, &out).await,
            "releases" => self.read_releases(&mut state, &out).await,
            "workflow_runs" => self.read_runs(&mut state, &out).await,
            other => Err(ConnectorError::Config {
                source_name: self.config.name.clone(),
                message: format!(
                    "no stream `{other}`; GitHub offers {}",
                    STREAMS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// `path` under the API root with `query` encoded into it: the first page of a walk whose URL
    /// is saved in bookmarks and compared for conditional requests.
    fn url_with_query(&self, path: &str, query: &[(&str, String)]) -> Result<String, ConnectorError> {
        reqwest::Url::parse_with_params(&self.url(path), query)
            .map(String::from)
            .map_err(|e| ConnectorError::Config {
                source_name: self.config.name.clone(),
                message: format!(
                    "base_url {:?} does not make a valid URL ({e}): use e.g. https://api.github.com",
                    self.config.base_url
                ),
            })
    }

    /// A link as a bookmark keeps it: relative to the configured API root (`/repositories/1/…`)
    /// when it lies under it, so a later change of `base_url` (a renamed Enterprise host, a
    /// proxy, a new port) moves it along; as given otherwise.
    fn relative(&self, link: &str) -> String {
        let base = self.config.base_url.trim_end_matches('/');
        match link.strip_prefix(base) {
            Some(rest) if rest.starts_with('/') || rest.starts_with('?') => rest.to_owned(),
            _ => link.to_owned(),
        }
    }

    /// A link of a record or a bookmark as a URL under the configured API root: a relative link
    /// is joined to it, and an absolute one (a record's own link, or a bookmark written before
    /// links were kept relative) keeps its path below the root's path, whatever its host. A link
    /// whose path is not under the root's path cannot be placed: an error saying what to do.
    fn resolve(&self, stream: &str, link: &str) -> Result<String, ConnectorError> {
        let base = self.config.base_url.trim_end_matches('/');
        if link.starts_with('/') {
            return Ok(format!("{base}{link}"));
        }
        if link
            .strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
        {
            return Ok(link.to_owned());
        }
        let moved = match (reqwest::Url::parse(link), reqwest::Url::parse(base)) {
            (Ok(url), Ok(root)) => {
                let root_path = root.path().trim_end_matches('/');
                url.path()
                    .strip_prefix(root_path)
                    .filter(|rest| rest.starts_with('/'))
                    .map(|rest| match url.query() {
                        Some(q) => format!("{base}{rest}?{q}"),
                        None => format!("{base}{rest}"),
                    })
            }
            _ => None,
        };
        moved.ok_or_else(|| ConnectorError::Config {
            source_name: self.config.name.clone(),
            message: format!(
                "stream `{stream}`: the bookmark holds the link {link}, whose path does not lie under the path of base_url {base}, so it cannot be moved to the configured host; run `tandem sync --source {} --full` to read the stream again, or restore the base_url it was read with",
                self.config.name
            ),
        })
    }

    /// Says how many of the re-polled `records` became stale: they will not be asked about again.
    fn log_stale(&self, stream: &str, repo: &str, records: &[Record]) {
        let stale = records
            .iter()
            .filter(|r| matches!(r, Record::Deployment(d) if d.status == DeploymentStatus::Stale))
            .count();
        if stale > 0 {
            tracing::info!(
                source = %self.config.name,
                stream,
                repo,
                stale,
                stale_after_days = self.config.stale_after_days,
                "Deployments still unfinished past stale_after_days are marked stale and no longer re-polled."
            );
        }
    }

    /// `raw` with its link `field` kept relative to the API root, for a bookmark.
    fn keep_relative(&self, mut raw: Value, field: &str) -> Value {
        if let Some(link) = raw.get(field).and_then(Value::as_str).map(|l| self.relative(l)) {
            raw[field] = Value::String(link);
        }
        raw
    }

    /// Whether an environment counts as production: GitHub's flag, or a configured name.
    fn is_production(&self, environment: &str, flag: bool) -> bool {
        flag || self
            .config
            .production_environments
            .iter()
            .any(|p| p.eq_ignore_ascii_case(environment))
    }

    fn reject(&self, stream: &str, raw: &Value, reason: QuarantineReason) -> Quarantined {
        Quarantined::new(&self.config.name, stream, raw, reason)
    }

    fn decode_error(&self, url: &str, message: &str) -> ConnectorError {
        ConnectorError::Decode {
            source_name: self.config.name.clone(),
            url: url.to_owned(),
            message: message.to_owned(),
        }
    }

    /// Fetches every page of a list for stream `stream`, following `next` links as given.
    async fn get_all(
        &self,
        stream: &str,
        url: String,
        query: Vec<(&'static str, String)>,
    ) -> Result<Vec<Value>, ConnectorError> {
        let mut all = Vec::new();
        let mut pager = self.client.pager(stream);
        pager.count()?;
        let mut page = self.client.get_json(&url, &query).await?;
        loop {
            match page.body.as_array() {
                Some(items) => all.extend(items.iter().cloned()),
                None => return Err(self.decode_error(&page.url, "expected a JSON array")),
            }
            match page.link("next") {
                Some(next) => {
                    pager.next(&next)?;
                    page = self.client.get_json(&next, &[]).await?;
                }
                None => return Ok(all),
            }
        }
    }
}

fn str_field(v: &Value, field: &str) -> Result<String, String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| unusable(&format!("text field {field}"), v.get(field), "text"))
}

fn time_field(v: &Value, field: &str) -> Result<DateTime<Utc>, String> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| unusable(field, v.get(field), "a timestamp"))?;
    parse_instant(s).map_err(|e| format!("{field}: {e}"))
}

fn opt_time_field(v: &Value, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    crate::time::parse_opt_instant(v.get(field)).map_err(|e| format!("{field}: {e}"))
}

/// The names of an issue's or pull request's labels.
fn label_names(raw: &Value) -> Vec<String> {
    raw.get("labels")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `s` looks like a commit sha or an abbreviation of one (7 to 40 hex digits).
fn is_sha(s: &str) -> bool {
    (7..=40).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Percent-encodes a ref for a URL path, keeping `/` (GitHub takes `tags/v1` and `release/1.0`).
fn encode_ref(r: &str) -> String {
    let mut out = String::with_capacity(r.len());
    for b in r.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
