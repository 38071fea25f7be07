//! GitHub (and GitHub Enterprise Server): deployments with their final status, and closed pull
//! requests with the author time of their first commit.
//!
//! Lists come newest first without a `since` filter, so each walk stops below the bookmark (minus
//! an overlap) and resumes from the saved `next` link after a kill. Mapping to services happens in
//! the runner, not here.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{Emitter, StreamDef, state_from_bookmark};
use crate::error::ConnectorError;
use crate::http::{Auth, HttpClient, RetryPolicy};
use crate::model::{Change, Deployment, DeploymentStatus, Quarantined, Record};
use crate::secret::SecretEnv;
use crate::time::parse_instant;

/// Page size: GitHub's maximum, so a walk makes the fewest requests.
const PER_PAGE: &str = "100";
/// Detail requests (statuses, commits) in flight at once per source: far below GitHub's
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
    /// On the first sync, read no further back than this many days (all history when absent).
    #[serde(default)]
    pub lookback_days: Option<i64>,
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

/// The GitHub connector.
#[derive(Debug, Clone)]
pub struct GitHub {
    config: GitHubConfig,
    client: HttpClient,
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
];

/// Bookmark of one stream: a cursor per repo (per repo and environment for deployments).
#[derive(Debug, Default, Serialize, Deserialize)]
struct StreamState {
    cursors: BTreeMap<String, Cursor>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// Newest cursor value of the last completed walk.
    high_water: Option<DateTime<Utc>>,
    /// A walk in progress: where to resume.
    walk: Option<Walk>,
    /// Deployments seen unfinished: re-polled on the next sync even below the bookmark.
    #[serde(default)]
    pending: Vec<Value>,
    /// ETag of the first page of the last completed walk: a `304` to it means nothing changed.
    #[serde(default)]
    etag: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Walk {
    next: String,
    stop_below: Option<DateTime<Utc>>,
    high_water: Option<DateTime<Utc>>,
    /// ETag of this walk's first page, saved when the walk completes.
    #[serde(default)]
    etag: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployments,
    Pulls,
}

impl GitHub {
    /// Builds the connector; fails when the token variable is missing.
    pub fn new(config: GitHubConfig, env: &SecretEnv, policy: RetryPolicy) -> Result<Self, ConnectorError> {
        let key = format!("source.{}.token_env", config.name);
        let token = env.get(&config.token_env, &key)?;
        let client = HttpClient::new(
            &config.name,
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
        Ok(Self { config, client })
    }

    /// The streams offered.
    pub fn streams(&self) -> &'static [StreamDef] {
        STREAMS
    }

    /// One cheap request per repo: the repo must exist and be readable with the token.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        for repo in &self.config.repos {
            self.client
                .get_json(&self.url(&format!("/repos/{repo}")), &[])
                .await?;
        }
        Ok(())
    }

    /// Reads `stream` from `bookmark`, sending records and checkpoints to `out`.
    pub async fn read(
        &self,
        stream: &str,
        bookmark: Option<Value>,
        out: Emitter,
    ) -> Result<(), ConnectorError> {
        let kind = match stream {
            "deployments" => Kind::Deployments,
            "pulls" => Kind::Pulls,
            other => {
                return Err(ConnectorError::Config {
                    source_name: self.config.name.clone(),
                    message: format!("no stream `{other}`; GitHub offers deployments, pulls"),
                });
            }
        };
        let mut state: StreamState = state_from_bookmark(bookmark);
        for repo in &self.config.repos {
            match kind {
                Kind::Deployments => {
                    for env in &self.config.environments {
                        let key = format!("{repo}@{env}");
                        let url = self.url(&format!("/repos/{repo}/deployments"));
                        let query = vec![("environment", env.clone()), ("per_page", PER_PAGE.to_owned())];
                        self.walk(kind, repo, &key, url, query, &mut state, &out).await?;
                        self.repoll_pending(repo, &key, &mut state, &out).await?;
                    }
                }
                Kind::Pulls => {
                    let url = self.url(&format!("/repos/{repo}/pulls"));
                    let query = vec![
                        ("state", "closed".to_owned()),
                        ("sort", "updated".to_owned()),
                        ("direction", "desc".to_owned()),
                        ("per_page", PER_PAGE.to_owned()),
                    ];
                    self.walk(kind, repo, repo, url, query, &mut state, &out).await?;
                }
            }
        }
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// Walks a newest-first list down to the bookmark, a checkpoint after every page.
    #[allow(clippy::too_many_arguments)]
    async fn walk(
        &self,
        kind: Kind,
        repo: &str,
        key: &str,
        first_url: String,
        first_query: Vec<(&'static str, String)>,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        let cursor_field = match kind {
            Kind::Deployments => "created_at",
            Kind::Pulls => "updated_at",
        };
        let cursor = state.cursors.entry(key.to_owned()).or_default();
        let mut conditional = None;
        let (mut url, mut query, stop_below, mut high_water, mut first_etag) = match cursor.walk.take() {
            Some(w) => (w.next, Vec::new(), w.stop_below, w.high_water, w.etag),
            None => {
                conditional = cursor.etag.clone();
                let overlap = Duration::minutes(self.config.overlap_minutes);
                let stop = cursor
                    .high_water
                    .map(|h| h - overlap)
                    .or_else(|| self.config.lookback_days.map(|d| Utc::now() - Duration::days(d)));
                (first_url, first_query, stop, cursor.high_water, None)
            }
        };
        loop {
            let Some(page) = self
                .client
                .get_json_if_changed(&url, &query, conditional.take().as_deref())
                .await?
            else {
                // 304: the list is as it was at the last completed walk.
                return Ok(());
            };
            if first_etag.is_none() {
                first_etag = page.header("etag").map(str::to_owned);
            }
            let Some(items) = page.body.as_array() else {
                return Err(ConnectorError::Decode {
                    source_name: self.config.name.clone(),
                    url: page.url.clone(),
                    message: "expected a JSON array".into(),
                });
            };
            let mut reached_bookmark = false;
            let mut kept = Vec::new();
            let mut rejected = Vec::new();
            for item in items {
                match item.get(cursor_field).and_then(Value::as_str).map(parse_instant) {
                    Some(Ok(at)) => {
                        if stop_below.is_some_and(|s| at < s) {
                            reached_bookmark = true;
                            continue;
                        }
                        high_water = high_water.max(Some(at));
                        kept.push(item.clone());
                    }
                    Some(Err(reason)) => {
                        rejected.push(self.reject(kind, item, format!("{cursor_field}: {reason}")))
                    }
                    None => rejected.push(self.reject(kind, item, format!("missing {cursor_field}"))),
                }
            }
            let (records, more_rejected, pending) = match kind {
                Kind::Deployments => self.map_deployments(repo, kept).await?,
                Kind::Pulls => self.map_pulls(repo, kept).await?,
            };
            rejected.extend(more_rejected);
            out.records(records).await?;
            out.quarantine(rejected).await?;
            let cursor = state.cursors.entry(key.to_owned()).or_default();
            for p in pending {
                let id = p.get("id").cloned();
                if !cursor.pending.iter().any(|q| q.get("id") == id.as_ref()) {
                    cursor.pending.push(p);
                }
            }
            match page.link("next") {
                Some(next) if !reached_bookmark => {
                    cursor.walk = Some(Walk {
                        next: next.clone(),
                        stop_below,
                        high_water,
                        etag: first_etag.clone(),
                    });
                    out.checkpoint(state).await?;
                    url = next;
                    query = Vec::new();
                }
                _ => {
                    cursor.high_water = high_water;
                    cursor.walk = None;
                    cursor.etag = first_etag;
                    out.checkpoint(state).await?;
                    return Ok(());
                }
            }
        }
    }

    /// Re-reads the statuses of deployments that were unfinished at an earlier sync.
    async fn repoll_pending(
        &self,
        repo: &str,
        key: &str,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        let Some(cursor) = state.cursors.get_mut(key) else {
            return Ok(());
        };
        if cursor.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut cursor.pending);
        let (records, rejected, still_pending) = self.map_deployments(repo, pending).await?;
        out.records(records).await?;
        out.quarantine(rejected).await?;
        if let Some(cursor) = state.cursors.get_mut(key) {
            cursor.pending = still_pending;
        }
        out.checkpoint(state).await
    }

    fn reject(&self, kind: Kind, raw: &Value, reason: String) -> Quarantined {
        let stream = match kind {
            Kind::Deployments => "deployments",
            Kind::Pulls => "pulls",
        };
        Quarantined::new(&self.config.name, stream, raw, reason)
    }

    /// Fetches each deployment's statuses and maps it; returns the unfinished ones to re-poll.
    async fn map_deployments(
        &self,
        repo: &str,
        items: Vec<Value>,
    ) -> Result<(Vec<Record>, Vec<Quarantined>, Vec<Value>), ConnectorError> {
        let with_statuses: Vec<(Value, Option<Vec<Value>>)> =
            stream::iter(items.into_iter().map(|d| async move {
                let Some(id) = d.get("id").and_then(Value::as_u64) else {
                    return Ok::<_, ConnectorError>((d, None));
                };
                // Follow the record's own statuses_url when it has one (Enterprise hosts, numeric forms).
                let url = d
                    .get("statuses_url")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| self.url(&format!("/repos/{repo}/deployments/{id}/statuses")));
                let statuses = self.get_all(url, vec![("per_page", PER_PAGE.to_owned())]).await?;
                Ok((d, Some(statuses)))
            }))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        let mut pending = Vec::new();
        for (raw, statuses) in with_statuses {
            let Some(statuses) = statuses else {
                rejected.push(self.reject(Kind::Deployments, &raw, "missing numeric id".into()));
                continue;
            };
            match self.deployment(repo, &raw, &statuses) {
                Ok(d) => {
                    if d.status == DeploymentStatus::InProgress {
                        pending.push(raw);
                    }
                    records.push(Record::Deployment(d));
                }
                Err(reason) => rejected.push(self.reject(Kind::Deployments, &raw, reason)),
            }
        }
        Ok((records, rejected, pending))
    }

    fn deployment(&self, repo: &str, raw: &Value, statuses: &[Value]) -> Result<Deployment, String> {
        let id = raw
            .get("id")
            .and_then(Value::as_u64)
            .ok_or("missing numeric id")?;
        let environment = str_field(raw, "environment")?;
        let created_at = time_field(raw, "created_at")?;
        let updated_at = raw
            .get("updated_at")
            .and_then(Value::as_str)
            .map(parse_instant)
            .transpose()?
            .unwrap_or(created_at);
        let mut parsed = Vec::new();
        for s in statuses {
            let state = str_field(s, "state")?;
            let at = time_field(s, "created_at")?;
            let sid = s.get("id").and_then(Value::as_u64).unwrap_or(0);
            parsed.push((at, sid, state));
        }
        // Order is not guaranteed: sort, then take the latest status that is not `inactive`
        // (GitHub marks earlier successful deployments inactive when a newer one succeeds).
        parsed.sort();
        let last_active = parsed.iter().rev().find(|(_, _, s)| s != "inactive");
        let (status, finished_at) = match last_active {
            None if parsed.is_empty() => (DeploymentStatus::InProgress, None),
            // Only `inactive` statuses: the deployment was live and then superseded.
            None => (DeploymentStatus::Success, parsed.first().map(|p| p.0)),
            Some((at, _, state)) => match state.as_str() {
                "success" => (DeploymentStatus::Success, Some(*at)),
                "failure" => (DeploymentStatus::Failure, Some(*at)),
                "error" => (DeploymentStatus::Error, Some(*at)),
                "queued" | "pending" | "in_progress" => (DeploymentStatus::InProgress, None),
                other => return Err(format!("unknown deployment status state {other:?}")),
            },
        };
        let latest_status = parsed.last().map(|p| p.0);
        let production_flag = raw
            .get("production_environment")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let is_production = production_flag
            || self
                .config
                .production_environments
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&environment));
        Ok(Deployment {
            id: format!("{}:{repo}:{id}", self.config.name),
            source: self.config.name.clone(),
            repo: repo.to_owned(),
            service: None,
            team: None,
            environment,
            is_production,
            status,
            sha: str_field(raw, "sha")?,
            created_at,
            finished_at,
            updated_at: updated_at.max(latest_status.unwrap_or(updated_at)),
        })
    }

    /// Maps closed pull requests; merged ones get their first commit's author time.
    async fn map_pulls(
        &self,
        repo: &str,
        items: Vec<Value>,
    ) -> Result<(Vec<Record>, Vec<Quarantined>, Vec<Value>), ConnectorError> {
        let with_commits: Vec<(Value, Vec<Value>)> = stream::iter(items.into_iter().map(|p| async move {
            let merged = p.get("merged_at").is_some_and(|m| !m.is_null());
            let number = p.get("number").and_then(Value::as_u64);
            match (merged, number) {
                (true, Some(n)) => {
                    let url = self.url(&format!("/repos/{repo}/pulls/{n}/commits"));
                    let commits = self.get_all(url, vec![("per_page", PER_PAGE.to_owned())]).await?;
                    Ok::<_, ConnectorError>((p, commits))
                }
                _ => Ok((p, Vec::new())),
            }
        }))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        for (raw, commits) in with_commits {
            match self.change(repo, &raw, &commits) {
                Ok(c) => records.push(Record::Change(c)),
                Err(reason) => rejected.push(self.reject(Kind::Pulls, &raw, reason)),
            }
        }
        Ok((records, rejected, Vec::new()))
    }

    fn change(&self, repo: &str, raw: &Value, commits: &[Value]) -> Result<Change, String> {
        let number = raw
            .get("number")
            .and_then(Value::as_i64)
            .ok_or("missing number")?;
        let title = raw
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let merged_at = opt_time_field(raw, "merged_at")?;
        let mut first_commit_at: Option<DateTime<Utc>> = None;
        for c in commits {
            let date = c
                .pointer("/commit/author/date")
                .and_then(Value::as_str)
                .ok_or("a commit without commit.author.date")?;
            let at = parse_instant(date).map_err(|e| format!("commit author date: {e}"))?;
            first_commit_at = Some(first_commit_at.map_or(at, |f| f.min(at)));
        }
        let labels = raw
            .get("labels")
            .and_then(Value::as_array)
            .map(|ls| {
                ls.iter()
                    .filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let body = raw.get("body").and_then(Value::as_str).unwrap_or_default();
        let is_revert = title.starts_with("Revert \"") || title.starts_with("Revert '");
        Ok(Change {
            id: format!("{}:{repo}:{number}", self.config.name),
            source: self.config.name.clone(),
            repo: repo.to_owned(),
            service: None,
            team: None,
            number,
            state: if merged_at.is_some() {
                "merged".into()
            } else {
                str_field(raw, "state")?
            },
            created_at: time_field(raw, "created_at")?,
            merged_at,
            merge_commit_sha: raw
                .get("merge_commit_sha")
                .and_then(Value::as_str)
                .map(str::to_owned),
            first_commit_at,
            labels,
            is_revert,
            reverts: if is_revert { reverted_number(body) } else { None },
            title,
            updated_at: time_field(raw, "updated_at")?,
        })
    }

    /// Fetches every page of a list, following `next` links as given.
    async fn get_all(
        &self,
        url: String,
        query: Vec<(&'static str, String)>,
    ) -> Result<Vec<Value>, ConnectorError> {
        let mut all = Vec::new();
        let mut page = self.client.get_json(&url, &query).await?;
        loop {
            match page.body.as_array() {
                Some(items) => all.extend(items.iter().cloned()),
                None => {
                    return Err(ConnectorError::Decode {
                        source_name: self.config.name.clone(),
                        url: page.url.clone(),
                        message: "expected a JSON array".into(),
                    });
                }
            }
            match page.link("next") {
                Some(next) => page = self.client.get_json(&next, &[]).await?,
                None => return Ok(all),
            }
        }
    }
}

/// GitHub's revert PRs say "Reverts owner/repo#123" in their body.
fn reverted_number(body: &str) -> Option<i64> {
    let rest = body.split("Reverts ").nth(1)?;
    let after_hash = rest.split('#').nth(1)?;
    let digits: String = after_hash.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn str_field(v: &Value, field: &str) -> Result<String, String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("missing text field {field}"))
}

fn time_field(v: &Value, field: &str) -> Result<DateTime<Utc>, String> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing {field}"))?;
    parse_instant(s).map_err(|e| format!("{field}: {e}"))
}

fn opt_time_field(v: &Value, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    crate::time::parse_opt_instant(v.get(field)).map_err(|e| format!("{field}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revert_body_names_the_reverted_pull() {
        assert_eq!(reverted_number("Reverts acme/checkout#123\n\nbecause"), Some(123));
        assert_eq!(reverted_number("nothing here"), None);
    }
}
