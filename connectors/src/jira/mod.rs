//! Jira Cloud (REST v3) and Jira Data Center (REST v2): every issue of the configured projects as
//! a ticket with its status transitions, plus an incident for the incident issue types and a
//! change request for the change issue types.
//!
//! Cloud is searched with `/rest/api/3/search/jql` (`nextPageToken`; the legacy `/search` answers
//! 410), Data Center with `/rest/api/2/search` (`startAt/maxResults/total`). The window is
//! `updated >= <epoch ms>` (a JQL date without a zone would be read in the account's zone), sorted
//! by `created` then `key` so issues do not jump between pages while they are updated. Changelogs
//! that search results truncate are fetched in full. Issues left open at one sync are re-polled by
//! key at the next. A ticket's status category is the one embedded in the issue; a transition's
//! come from `GET /status`, else from categories seen embedded in issues, never from (localised)
//! names. This module maps nothing to services: `service_ref` is the first component's name.
//!
//! Data Center offsets move when issues enter or leave the window between two page requests:
//! every page after the first starts one issue early (one more asked for) and must begin with the
//! last issue of the previous page; when it does not, the window is read again from its start, at
//! most twice, then read on with a warning. Issues are upserted on their key, so a repeat is
//! harmless.
//!
//! The state remembers, per project, from when its issues are all read: a raised `lookback_days`
//! or an added project reads the older range of those projects (`updated < …`) after the regular
//! window, and `covers_from` moves only once it is done.

mod map;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{CheckOutcome, Emitter, EndpointCheck, StreamDef, first_failure, state_from_bookmark};
use crate::error::ConnectorError;
use crate::http::{Auth, HttpClient, JsonPage, Pager, RetryPolicy};
use crate::model::QuarantineReason;
use crate::model::{Quarantined, Record};
use crate::secret::SecretEnv;

use map::{Mapper, StatusCategories};

/// Changelog requests in flight at once per page of issues.
const CONCURRENCY: usize = 4;
/// Keys per re-poll query: short enough for any URL limit, and one page at Cloud's maximum.
const REPOLL_CHUNK: usize = 50;
/// Cloud's largest search page.
const CLOUD_MAX_PAGE: u32 = 100;
/// Re-reads of one Data Center window whose offsets moved before the walk reads on regardless.
const MAX_REREADS: u32 = 2;

/// Which Jira is spoken to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Jira Cloud: REST v3, `/search/jql` with page tokens.
    #[default]
    Cloud,
    /// Jira Data Center / Server: REST v2, `/search` with `startAt`.
    Datacenter,
}

/// `[[source]] kind = "jira"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JiraConfig {
    /// Source name, unique in the config (used in bookmarks and record ids).
    pub name: String,
    /// Site root: `https://acme.atlassian.net` for Cloud, the base URL (with any context path)
    /// for Data Center, `https://api.atlassian.com/ex/jira/{cloudId}` for Cloud OAuth.
    pub base_url: String,
    /// `cloud` (default) or `datacenter`.
    #[serde(default)]
    pub flavor: Flavor,
    /// Basic-auth user: the Atlassian account e-mail (Cloud API token) or the user name (Data
    /// Center password). Without it the token is sent as `Bearer` (Data Center personal access
    /// token, Cloud OAuth).
    #[serde(default)]
    pub email: Option<String>,
    /// Environment variable holding the API token, password or personal access token.
    pub token_env: String,
    /// Project keys to read (`project in (…)`); at least one.
    pub projects: Vec<String>,
    /// Issue types that are incidents (case-insensitive).
    #[serde(default = "default_incident_types")]
    pub incident_types: Vec<String>,
    /// Issue types that are change requests (case-insensitive).
    #[serde(default = "default_change_types")]
    pub change_types: Vec<String>,
    /// Ticket category per issue-type id (`"10004"`) or name (`"缺陷"`), case-insensitive:
    /// `bug`, `task`, `story`, `request`, `problem`, `incident`, `change` or `other`. Types not
    /// listed are classified by the names tandem knows (Jira's own types in English, Chinese,
    /// Japanese and German: Bug/缺陷 → bug, Story/故事 and Epic/史诗 → story, Task/任务 and
    /// Sub-task/子任务 → task, Service request → request, …), then by `issuetype.subtask` (a
    /// task) and `hierarchyLevel` (1 and above: story; below 0: task); anything else is `other`
    /// and counted in data quality. (`categories` is the older name of this key.)
    #[serde(default, alias = "categories")]
    pub issue_types: BTreeMap<String, String>,
    /// Severity per priority name (case-insensitive): `sev1`…`sev4`. Unlisted names use the
    /// defaults Highest/Blocker → sev1, High/Critical → sev2, Medium/Major → sev3,
    /// Low/Lowest/Minor/Trivial → sev4; other names give no severity.
    #[serde(default)]
    pub severities: BTreeMap<String, String>,
    /// Close code per resolution name of a change issue (case-insensitive): `successful`,
    /// `successful_issues`, `unsuccessful` or `none` (not a completed change). Unlisted names use
    /// the defaults Done/Successful/Fixed/Implemented/Completed → successful; "Successful with
    /// issues"/"Done with issues"/"Partially successful" → successful_issues;
    /// Failed/Unsuccessful/"Backed out"/"Rolled back" → unsuccessful; anything else → none.
    #[serde(default)]
    pub close_codes: BTreeMap<String, String>,
    /// Date-time field holding a change's planned start.
    #[serde(default = "default_planned_start")]
    pub planned_start_field: String,
    /// Date-time field holding a change's planned end.
    #[serde(default = "default_planned_end")]
    pub planned_end_field: String,
    /// Field id (`customfield_10070`) of the field in which an incident issue names the same
    /// outage in another system — the incident id (`PT4KHLK`), its number, or a URL to it
    /// (`https://acme.pagerduty.com/incidents/PT4KHLK`, of which the last non-empty path segment
    /// is taken). It fills the incident's `correlation_id`, by which tandem matches mirrored
    /// incidents. Text, number or an option's `value`; an empty or other value is none. Default:
    /// none (the field is not asked for).
    #[serde(default)]
    pub correlation_field: Option<String>,
    /// How far each incremental window reaches back past the bookmark, in minutes (Jira's
    /// search index is eventually consistent and compares at minute precision).
    #[serde(default = "default_overlap")]
    pub overlap_minutes: i64,
    /// Issues per search page (Cloud answers at most 100, and may answer fewer).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Keep issues updated this many days back. Raising it (or adding a project) reads the
    /// missing history at the next sync.
    #[serde(default = "default_lookback")]
    pub lookback_days: i64,
}

fn default_incident_types() -> Vec<String> {
    vec!["Incident".into()]
}
fn default_change_types() -> Vec<String> {
    vec!["Change".into()]
}
fn default_planned_start() -> String {
    "customfield_10050".into()
}
fn default_planned_end() -> String {
    "customfield_10051".into()
}
fn default_overlap() -> i64 {
    10
}
fn default_page_size() -> u32 {
    100
}
fn default_lookback() -> i64 {
    365
}

const STREAMS: &[StreamDef] = &[StreamDef {
    name: "issues",
    table: "tickets",
    primary_key: "id",
    cursor_field: "updated_at",
}];

/// The Jira connector.
#[derive(Debug, Clone)]
pub struct Jira {
    /// Shared, not inline: the config and its prepared mapping are large, and every connector
    /// kind shares one enum.
    config: Arc<JiraConfig>,
    client: HttpClient,
    mapper: Arc<Mapper>,
    /// `/rest/api/3/search/jql` or `/rest/api/2/search` (a field so a test can aim at the
    /// removed legacy endpoint).
    search_path: String,
}

/// The bookmark of the `issues` stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// Where the next window starts (epoch ms, before the overlap): the server's clock when the
    /// last completed window began.
    high_water_ms: Option<i64>,
    /// A read in progress.
    walk: Option<Walk>,
    /// Issues not in the `done` category when last read: re-polled at the next read.
    #[serde(default)]
    open: BTreeSet<String>,
    /// Status id → category key as embedded in issues: the categories of statuses the status
    /// list does not give (unavailable to the account, or a status since deleted).
    #[serde(default)]
    seen_categories: BTreeMap<String, String>,
    /// Per project: the `updated` instant (epoch ms) from which its issues are all read, up to
    /// the high water; null when its whole history is.
    /// Absent in bookmarks written before coverage was kept: those are taken as complete over
    /// the lookback, as the runner takes them, so an upgrade reads nothing twice.
    #[serde(default)]
    projects: Option<BTreeMap<String, Option<i64>>>,
    /// [`crate::contract::COVERS_FROM`]: the latest of the configured projects' starts.
    #[serde(default)]
    covers_from: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Walk {
    /// `updated >= from_ms`; `None` reads everything.
    from_ms: Option<i64>,
    /// The server's clock when the window began: the next high water.
    until_ms: Option<i64>,
    /// Highest `updated` seen, the high water when the server sent no `Date`.
    seen_ms: Option<i64>,
    /// The next search page of the window; `None` once the window is read.
    page: Option<Cursor>,
    /// Issues open at the previous read that the window has not brought: re-polled after it.
    repoll: BTreeSet<String>,
    /// Data Center: id of the last issue of the previous page, which the next page must repeat
    /// (absent in bookmarks written before the check existed).
    #[serde(default)]
    last_id: Option<String>,
    /// Data Center: times this window was read again from its start because offsets moved.
    #[serde(default)]
    rereads: u32,
    /// A backfill of some projects' older history rather than the regular window.
    #[serde(default)]
    backfill: Option<Backfill>,
}

/// The older history of some projects: `from_ms` up to `before_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Backfill {
    projects: Vec<String>,
    /// `updated < before_ms`: where the projects' read history starts.
    before_ms: i64,
}

/// Where a search stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Cursor {
    /// Cloud: the page token (`None` for the first page).
    Token(Option<String>),
    /// Data Center: the next `startAt`.
    StartAt(u64),
}

/// One search page.
struct SearchPage {
    issues: Vec<Value>,
    next: Option<Cursor>,
    /// The server's clock (`Date` header), epoch ms.
    server_ms: Option<i64>,
}

/// What a page of issues became.
#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    rejected: Vec<Quarantined>,
    /// `(key, still open)` of every issue mapped.
    seen: Vec<(String, bool)>,
    /// Highest `updated` among them.
    max_updated_ms: Option<i64>,
}

impl Jira {
    /// Builds the connector; fails when the token variable is missing or the config is invalid.
    pub fn new(config: JiraConfig, env: &SecretEnv, policy: RetryPolicy) -> Result<Self, ConnectorError> {
        let mapper = Mapper::new(&config).map_err(|message| ConnectorError::Config {
            source_name: config.name.clone(),
            message,
        })?;
        validate(&config).map_err(|message| ConnectorError::Config {
            source_name: config.name.clone(),
            message,
        })?;
        let key = format!("source.{}.token_env", config.name);
        let token = env.get(&config.token_env, &key)?;
        let (auth, hint) = match &config.email {
            Some(user) => (
                Auth::Basic {
                    user: user.clone(),
                    secret: token,
                },
                format!(
                    "check that ${} holds a valid API token (or password) of {user} and that the account can browse {}",
                    config.token_env,
                    config.projects.join(", ")
                ),
            ),
            None => (
                Auth::Bearer(token),
                format!(
                    "check that the token in ${} is valid and not expired (a Cloud API token also needs `email`), and that it can browse {}",
                    config.token_env,
                    config.projects.join(", ")
                ),
            ),
        };
        let client = HttpClient::new(
            &config.name,
            &config.base_url,
            &auth,
            &[("accept", "application/json")],
            hint,
            policy,
        )?;
        let search_path = match config.flavor {
            Flavor::Cloud => "/rest/api/3/search/jql",
            Flavor::Datacenter => "/rest/api/2/search",
        }
        .to_owned();
        Ok(Self {
            config: Arc::new(config),
            client,
            mapper: Arc::new(mapper),
            search_path,
        })
    }

    /// The streams offered.
    pub fn streams(&self) -> &'static [StreamDef] {
        STREAMS
    }

    /// One cheap request: a one-issue search of the configured projects, which proves the
    /// credentials, the search API of the flavor and that every project exists and is visible.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        first_failure(self.check_endpoints().await)
    }

    /// One cheap request to each endpoint a sync calls: the one-issue search above, the status
    /// list (a warning only: without it transitions take the categories seen on issues) and one
    /// issue's changelog.
    pub async fn check_endpoints(&self) -> Vec<EndpointCheck> {
        let query = vec![
            ("jql", self.project_clause()),
            ("maxResults", "1".to_owned()),
            ("fields", "id".to_owned()),
        ];
        let browse = "grant the account Browse projects on every configured project";
        let (check, page) = EndpointCheck::of(
            format!("issue search (GET {})", self.search_path),
            self.client
                .get_json(&self.url(&self.search_path), &query)
                .await
                .map_err(|e| self.explain(e)),
            browse,
        );
        let refused = check.failed();
        let mut checks = vec![check];
        if refused {
            return checks;
        }
        let status_path = format!("{}/status", self.api());
        let (mut check, _) = EndpointCheck::of(
            format!("status list (GET {status_path})"),
            self.client.get_json(&self.url(&status_path), &[]).await,
            "",
        );
        if let CheckOutcome::Failed { error, .. } = &check.outcome {
            check.outcome = CheckOutcome::Warning(format!(
                "{error}; a sync carries on, taking each transition's category from the statuses seen on issues (statuses no issue shows any more get none): let the account read statuses to fix it"
            ));
        }
        checks.push(check);
        let key = page
            .and_then(|p| {
                p.body
                    .get("issues")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first().cloned())
            })
            // The changelog endpoint takes the id as well as the key; Cloud's search sends the id.
            .and_then(|i| {
                i.get("key")
                    .or_else(|| i.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        if let Some(key) = key {
            let path = format!("{}/issue/{key}/changelog", self.api());
            checks.push(
                EndpointCheck::of(
                    format!("issue changelog (GET {}/issue/{{key}}/changelog)", self.api()),
                    self.client
                        .get_json(&self.url(&path), &[("maxResults", "1".to_owned())])
                        .await,
                    browse,
                )
                .0,
            );
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
        if stream != "issues" {
            return Err(ConnectorError::Config {
                source_name: self.config.name.clone(),
                message: format!("no stream `{stream}`; Jira offers issues"),
            });
        }
        let mut state: State = state_from_bookmark(bookmark);
        let (listed, server_ms) = self.status_categories().await?;
        let mut categories = StatusCategories {
            listed,
            seen: state.seen_categories.clone(),
        };
        let want_from_ms = (Utc::now() - Duration::days(self.config.lookback_days.max(0))).timestamp_millis();
        // A bookmark written before coverage was kept read the configured projects over the
        // lookback (the whole history by default then, more than is claimed here).
        if state.projects.is_none() && state.high_water_ms.is_some() {
            state.projects = Some(
                self.config
                    .projects
                    .iter()
                    .map(|p| (p.clone(), Some(want_from_ms)))
                    .collect(),
            );
        }
        // A project no longer configured stops being read: its coverage goes, and a project added
        // again later reads its history anew instead of claiming the months it was away.
        if let Some(covered) = state.projects.as_mut() {
            covered.retain(|p, _| self.config.projects.contains(p));
        }
        // Until a read completes, what is complete is what was before it.
        self.note_coverage(&mut state);
        let walk = match state.walk.take() {
            Some(mut w) => {
                // A bookmark saved under the other flavor: its cursor means nothing here.
                let fits = matches!(
                    (self.config.flavor, &w.page),
                    (_, None)
                        | (Flavor::Cloud, Some(Cursor::Token(_)))
                        | (Flavor::Datacenter, Some(Cursor::StartAt(_)))
                );
                if !fits {
                    w.page = Some(self.first_cursor());
                }
                w
            }
            None => {
                let overlap = self.config.overlap_minutes.max(0) * 60_000;
                let from_ms = state.high_water_ms.map(|h| h - overlap).unwrap_or(want_from_ms);
                Walk {
                    from_ms: Some(from_ms),
                    until_ms: server_ms,
                    seen_ms: None,
                    page: Some(self.first_cursor()),
                    repoll: state.open.clone(),
                    last_id: None,
                    rereads: 0,
                    backfill: None,
                }
            }
        };
        let mut next = Some(walk);
        while let Some(walk) = next.take() {
            let first = state.high_water_ms.is_none();
            let walk = self.walk(walk, &mut state, &mut categories, &out).await?;
            match &walk.backfill {
                // A backfill completes the history of the projects it read.
                Some(b) => {
                    let covered = state.projects.get_or_insert_default();
                    for project in &b.projects {
                        covered.insert(project.clone(), walk.from_ms);
                    }
                }
                None => {
                    state.high_water_ms = walk.until_ms.or(walk.seen_ms).max(state.high_water_ms);
                    // The first read reaches back `lookback_days` for every project.
                    if first {
                        let covered = state.projects.get_or_insert_default();
                        for project in &self.config.projects {
                            covered.insert(project.clone(), walk.from_ms);
                        }
                    }
                }
            }
            state.walk = None;
            next = self.backfill(&state, want_from_ms);
            self.note_coverage(&mut state);
            out.checkpoint(&state).await?;
        }
        Ok(())
    }

    /// The projects whose history does not reach back to `want_from_ms` (a raised lookback, an
    /// added project) are read from there up to where their history starts (the high water for
    /// a project never read).
    fn backfill(&self, state: &State, want_from_ms: i64) -> Option<Walk> {
        let high_water = state.high_water_ms?;
        let mut before: Option<i64> = None;
        let mut projects = Vec::new();
        for project in &self.config.projects {
            let from = state.projects.as_ref().and_then(|c| c.get(project)).copied();
            let end = match from {
                // The whole history is read.
                Some(None) => continue,
                Some(Some(f)) if f <= want_from_ms => continue,
                Some(Some(f)) => f,
                None => high_water,
            };
            before = Some(before.map_or(end, |b| b.max(end)));
            projects.push(project.clone());
        }
        let before_ms = before.filter(|b| want_from_ms < *b)?;
        Some(Walk {
            from_ms: Some(want_from_ms),
            until_ms: None,
            seen_ms: None,
            page: Some(self.first_cursor()),
            repoll: BTreeSet::new(),
            last_id: None,
            rereads: 0,
            backfill: Some(Backfill { projects, before_ms }),
        })
    }

    /// Sets `covers_from`: the latest start among the configured projects' histories (the high
    /// water for a project not read yet); null when every project's whole history is read.
    fn note_coverage(&self, state: &mut State) {
        let fallback = state
            .high_water_ms
            .unwrap_or_else(|| Utc::now().timestamp_millis());
        let starts: Vec<Option<i64>> = self
            .config
            .projects
            .iter()
            .map(|p| {
                state
                    .projects
                    .as_ref()
                    .and_then(|c| c.get(p))
                    .copied()
                    .unwrap_or(Some(fallback))
            })
            .collect();
        state.covers_from = starts
            .into_iter()
            .flatten()
            .max()
            .and_then(DateTime::<Utc>::from_timestamp_millis);
    }

    /// Reads one window of issues (the regular one past the high water, a backfill, or one in
    /// progress) page by page, then re-polls what it left open; a checkpoint after every page.
    async fn walk(
        &self,
        mut walk: Walk,
        state: &mut State,
        categories: &mut StatusCategories,
        out: &Emitter,
    ) -> Result<Walk, ConnectorError> {
        let window_jql = self.window_jql(walk.from_ms, walk.backfill.as_ref());
        let mut restarted = false;
        let mut pager = self.client.pager("issues");
        while let Some(cursor) = walk.page.clone() {
            // One issue of overlap once the previous page's last issue is known.
            let expect = match (&cursor, &walk.last_id) {
                (Cursor::StartAt(n), Some(id)) if *n > 0 => Some(id.clone()),
                _ => None,
            };
            let page = match self
                .search(&mut pager, &window_jql, &cursor, expect.is_some())
                .await
            {
                Ok(page) => page,
                // A page token expires after 7 days (and a resumed read may carry an old one):
                // start the window again, once; the store de-duplicates what comes twice.
                Err(ConnectorError::Status { status: 400, .. })
                    if matches!(cursor, Cursor::Token(Some(_))) && !restarted =>
                {
                    restarted = true;
                    pager.restart();
                    tracing::warn!(
                        source = %self.config.name,
                        "The saved page token was refused; reading the window again from its start."
                    );
                    walk.page = Some(self.first_cursor());
                    continue;
                }
                Err(e) => return Err(self.explain(e)),
            };
            if walk.until_ms.is_none() {
                walk.until_ms = page.server_ms;
            }
            let mut issues = page.issues;
            let last_id = issues
                .last()
                .and_then(|i| i.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(expect) = &expect {
                let first = issues.first().and_then(|i| i.get("id")).and_then(Value::as_str);
                if first == Some(expect.as_str()) {
                    issues.remove(0);
                } else if walk.rereads < MAX_REREADS {
                    walk.rereads += 1;
                    tracing::warn!(
                        source = %self.config.name,
                        stream = "issues",
                        window = %window_jql,
                        ?cursor,
                        "Issues entered or left the window between two pages; reading the window again from its start."
                    );
                    walk.page = Some(self.first_cursor());
                    walk.last_id = None;
                    pager.restart();
                    state.walk = Some(walk.clone());
                    out.checkpoint(&state).await?;
                    continue;
                } else {
                    tracing::warn!(
                        source = %self.config.name,
                        stream = "issues",
                        window = %window_jql,
                        ?cursor,
                        "Offsets kept moving while the window was read again; reading on, an issue may be missed until the next sync."
                    );
                }
            }
            walk.last_id = last_id;
            let batch = self.map_issues(issues, categories).await?;
            state.seen_categories.clone_from(&categories.seen);
            walk.seen_ms = walk.seen_ms.max(batch.max_updated_ms);
            for (key, open) in &batch.seen {
                walk.repoll.remove(key);
                note_open(&mut state.open, key, *open);
            }
            out.records(batch.records).await?;
            out.quarantine(batch.rejected).await?;
            walk.page = page.next;
            state.walk = Some(walk.clone());
            out.checkpoint(&state).await?;
        }

        while !walk.repoll.is_empty() {
            let chunk: Vec<String> = walk.repoll.iter().take(REPOLL_CHUNK).cloned().collect();
            let issues = match self.search_all(&self.repoll_jql(&chunk)).await {
                Ok(issues) => issues,
                // Deleted, or moved to a project not read: nothing left to re-poll. Only keys of
                // this chunk count, so every retry has fewer keys and the loop ends.
                Err(ConnectorError::Status {
                    status: 400, body, ..
                }) if missing_keys(&body)
                    .iter()
                    .any(|m| chunk.iter().any(|k| k.eq_ignore_ascii_case(m))) =>
                {
                    for missing in missing_keys(&body) {
                        let Some(key) = chunk.iter().find(|k| k.eq_ignore_ascii_case(&missing)) else {
                            continue;
                        };
                        tracing::info!(source = %self.config.name, key = %key, "An open issue no longer exists; it is not re-polled again.");
                        walk.repoll.remove(key);
                        state.open.remove(key);
                    }
                    continue;
                }
                Err(e) => return Err(self.explain(e)),
            };
            let batch = self.map_issues(issues, categories).await?;
            state.seen_categories.clone_from(&categories.seen);
            for key in &chunk {
                walk.repoll.remove(key);
                // Not returned: no longer visible to this account.
                state.open.remove(key);
            }
            for (key, open) in &batch.seen {
                note_open(&mut state.open, key, *open);
            }
            out.records(batch.records).await?;
            out.quarantine(batch.rejected).await?;
            state.walk = Some(walk.clone());
            out.checkpoint(&state).await?;
        }

        Ok(walk)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    fn api(&self) -> &'static str {
        match self.config.flavor {
            Flavor::Cloud => "/rest/api/3",
            Flavor::Datacenter => "/rest/api/2",
        }
    }

    fn first_cursor(&self) -> Cursor {
        match self.config.flavor {
            Flavor::Cloud => Cursor::Token(None),
            Flavor::Datacenter => Cursor::StartAt(0),
        }
    }

    fn page_size(&self) -> u32 {
        match self.config.flavor {
            Flavor::Cloud => self.config.page_size.clamp(1, CLOUD_MAX_PAGE),
            Flavor::Datacenter => self.config.page_size.max(1),
        }
    }

    fn project_clause(&self) -> String {
        format!("project in ({})", quoted_list(&self.config.projects))
    }

    fn window_jql(&self, from_ms: Option<i64>, backfill: Option<&Backfill>) -> String {
        let since = from_ms
            .map(|ms| format!(" AND updated >= {ms}"))
            .unwrap_or_default();
        match backfill {
            Some(b) => format!(
                "project in ({}){since} AND updated < {} ORDER BY created ASC, key ASC",
                quoted_list(&b.projects),
                b.before_ms
            ),
            None => format!("{}{since} ORDER BY created ASC, key ASC", self.project_clause()),
        }
    }

    fn repoll_jql(&self, keys: &[String]) -> String {
        format!(
            "{} AND key in ({}) ORDER BY key ASC",
            self.project_clause(),
            quoted_list(keys)
        )
    }

    /// Status id → category key, from `GET /status` (names may be localised; ids are not), and
    /// the server's clock. When the account may not read the list (403) or the server has none
    /// (404), the categories embedded in issues stand in, with a warning.
    async fn status_categories(&self) -> Result<(HashMap<String, String>, Option<i64>), ConnectorError> {
        let url = self.url(&format!("{}/status", self.api()));
        let page = match self.client.get_json(&url, &[]).await {
            Ok(page) => page,
            Err(
                ConnectorError::Status {
                    status: status @ (403 | 404),
                    ..
                }
                | ConnectorError::Unauthorized {
                    status: status @ 403, ..
                },
            ) => {
                tracing::warn!(
                    source = %self.config.name,
                    stream = "issues",
                    status,
                    url = %url,
                    "The status list is unavailable; status categories come from those embedded in issues, and a transition from or to a status no issue is in has none."
                );
                return Ok((HashMap::new(), None));
            }
            Err(e) => return Err(self.explain(e)),
        };
        let list = page
            .body
            .as_array()
            .ok_or_else(|| self.decode(&page, "expected a JSON array of statuses"))?;
        let map = list
            .iter()
            .filter_map(|s| {
                let id = s.get("id").and_then(Value::as_str)?;
                let key = s.pointer("/statusCategory/key").and_then(Value::as_str)?;
                Some((id.to_owned(), key.to_owned()))
            })
            .collect();
        Ok((map, server_clock(&page)))
    }

    /// One search page; with `overlap`, a Data Center page starts one issue before its cursor
    /// and asks for one more (the caller checks and drops the repeat).
    async fn search(
        &self,
        pager: &mut Pager,
        jql: &str,
        cursor: &Cursor,
        overlap: bool,
    ) -> Result<SearchPage, ConnectorError> {
        match cursor {
            Cursor::Token(Some(token)) => pager.next(token)?,
            _ => pager.count()?,
        }
        let mut fields = vec![
            "summary",
            "issuetype",
            "status",
            "priority",
            "created",
            "updated",
            "resolutiondate",
            "resolution",
            "labels",
            "components",
            "issuelinks",
            "assignee",
            "reporter",
            "project",
            &self.config.planned_start_field,
            &self.config.planned_end_field,
        ];
        fields.extend(self.config.correlation_field.as_deref());
        let fields = fields.join(",");
        let cursor = match cursor {
            Cursor::StartAt(n) if overlap && *n > 0 => &Cursor::StartAt(n - 1),
            other => other,
        };
        let extra = u32::from(overlap && matches!(cursor, Cursor::StartAt(_)));
        let mut query = vec![
            ("jql", jql.to_owned()),
            ("maxResults", (self.page_size() + extra).to_string()),
            ("fields", fields),
            ("expand", "changelog".to_owned()),
        ];
        match cursor {
            Cursor::Token(Some(token)) => query.push(("nextPageToken", token.clone())),
            Cursor::Token(None) => {}
            Cursor::StartAt(n) => query.push(("startAt", n.to_string())),
        }
        let page = self.client.get_json(&self.url(&self.search_path), &query).await?;
        let issues = page
            .body
            .get("issues")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| self.decode(&page, "expected an `issues` array"))?;
        let next = match cursor {
            Cursor::Token(_) => {
                let token = page.body.get("nextPageToken").and_then(Value::as_str);
                let is_last = page.body.get("isLast").and_then(Value::as_bool);
                match (token, is_last) {
                    (Some(t), Some(false) | None) => Some(Cursor::Token(Some(t.to_owned()))),
                    (None, Some(false)) => {
                        tracing::warn!(source = %self.config.name, url = %page.url, "Jira said more pages follow but sent no page token; the window ends here.");
                        None
                    }
                    _ => None,
                }
            }
            Cursor::StartAt(start) => {
                let total = page.body.get("total").and_then(Value::as_u64).unwrap_or(0);
                // A short page is not the end: the total says whether more rows exist.
                let next = start + issues.len() as u64;
                if next < total && !issues.is_empty() {
                    Some(Cursor::StartAt(next))
                } else {
                    if next < total {
                        tracing::warn!(source = %self.config.name, url = %page.url, total, "An empty page before the total was reached; the window ends here.");
                    }
                    None
                }
            }
        };
        Ok(SearchPage {
            issues,
            next,
            server_ms: server_clock(&page),
        })
    }

    /// Every page of a (small) search.
    async fn search_all(&self, jql: &str) -> Result<Vec<Value>, ConnectorError> {
        let mut all = Vec::new();
        let mut cursor = Some(self.first_cursor());
        let mut pager = self.client.pager("issues");
        while let Some(c) = cursor {
            let page = self.search(&mut pager, jql, &c, false).await?;
            all.extend(page.issues);
            cursor = page.next;
        }
        Ok(all)
    }

    /// Completes truncated changelogs, then maps every issue.
    async fn map_issues(
        &self,
        issues: Vec<Value>,
        categories: &mut StatusCategories,
    ) -> Result<Batch, ConnectorError> {
        // Every issue of the page teaches its status's category before any is mapped.
        for issue in &issues {
            categories.learn(issue);
        }
        let with_histories: Vec<(Value, Option<Vec<Value>>)> =
            stream::iter(issues.into_iter().map(|issue| async move {
                let histories = self.full_changelog(&issue).await?;
                Ok::<_, ConnectorError>((issue, histories))
            }))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut batch = Batch::default();
        for (raw, histories) in with_histories {
            let histories = histories.unwrap_or_else(|| {
                raw.pointer("/changelog/histories")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            });
            if let Some(reason) = crate::lenient::unreadable(&raw) {
                batch
                    .rejected
                    .push(Quarantined::new(&self.config.name, "issues", &raw, reason));
                continue;
            }
            match self.mapper.issue(&raw, &histories, categories) {
                Ok(mapped) => {
                    batch.max_updated_ms = batch.max_updated_ms.max(Some(mapped.updated_ms));
                    batch.seen.push((mapped.key, mapped.open));
                    batch.records.extend(mapped.records);
                }
                Err(reason) => batch.rejected.push(Quarantined::new(
                    &self.config.name,
                    "issues",
                    &raw,
                    QuarantineReason::Message(reason),
                )),
            }
        }
        Ok(batch)
    }

    /// The whole changelog when the search result holds fewer histories than `changelog.total`;
    /// `None` when what came is complete.
    async fn full_changelog(&self, issue: &Value) -> Result<Option<Vec<Value>>, ConnectorError> {
        let shown = issue
            .pointer("/changelog/histories")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let total = issue
            .pointer("/changelog/total")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let Some(key) = issue.get("key").and_then(Value::as_str) else {
            return Ok(None);
        };
        if total <= shown as u64 {
            return Ok(None);
        }
        let mut values = Vec::new();
        let first_url = self.url(&format!("{}/issue/{key}/changelog", self.api()));
        let mut url = first_url.clone();
        let mut query = vec![("startAt", "0".to_owned()), ("maxResults", "100".to_owned())];
        let mut pager = self.client.pager("issues");
        pager.count()?;
        loop {
            let page = self
                .client
                .get_json(&url, &query)
                .await
                .map_err(|e| self.explain(e))?;
            let got = page
                .body
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| self.decode(&page, "expected a changelog `values` array"))?;
            values.extend(got.iter().cloned());
            let total = page.body.get("total").and_then(Value::as_u64).unwrap_or(0);
            let is_last = page.body.get("isLast").and_then(Value::as_bool);
            let more = match is_last {
                Some(last) => !last,
                None => (values.len() as u64) < total,
            };
            if !more || got.is_empty() {
                return Ok(Some(values));
            }
            // Follow the page's own link as given; compute it when it sent none, or one outside
            // base_url (credentials go only there, so such a link would be refused).
            let base = self.config.base_url.trim_end_matches('/');
            match page
                .body
                .get("nextPage")
                .and_then(Value::as_str)
                // Under base_url itself: `https://jira.acme.com.evil.example/…` is not.
                .filter(|next| {
                    next.strip_prefix(base)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
                }) {
                Some(next) => {
                    pager.next(next)?;
                    url = next.to_owned();
                    query = Vec::new();
                }
                None => {
                    pager.count()?;
                    // From the changelog's own address: a link followed before carries a
                    // `startAt` of its own, which Jira would read before this one.
                    url = first_url.clone();
                    query = vec![
                        ("startAt", values.len().to_string()),
                        ("maxResults", "100".to_owned()),
                    ]
                }
            }
        }
    }

    fn decode(&self, page: &JsonPage, message: &str) -> ConnectorError {
        ConnectorError::Decode {
            source_name: self.config.name.clone(),
            url: page.url.clone(),
            message: message.to_owned(),
        }
    }

    /// Turns a 410 from a removed search API into advice.
    fn explain(&self, e: ConnectorError) -> ConnectorError {
        match e {
            ConnectorError::Status { status: 410, url, .. } => ConnectorError::Config {
                source_name: self.config.name.clone(),
                message: format!(
                    "stream issues: Jira answered 410 Gone at {url}: Jira Cloud removed its legacy search API \
                     (/rest/api/2/search, /rest/api/3/search); for a Cloud site set `flavor = \"cloud\"` \
                     (tandem then uses /rest/api/3/search/jql), `datacenter` is for Jira Data Center and Server only"
                ),
            },
            other => other,
        }
    }
}

fn validate(config: &JiraConfig) -> Result<(), String> {
    if !(config.base_url.starts_with("https://") || config.base_url.starts_with("http://")) {
        return Err(format!(
            "`base_url` must be an http(s) URL such as https://acme.atlassian.net, not {:?}",
            config.base_url
        ));
    }
    if config.projects.is_empty() {
        return Err("`projects` must name at least one project key (Jira refuses unbounded searches)".into());
    }
    if let Some(bad) = config
        .projects
        .iter()
        .find(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(format!(
            "`projects`: {bad:?} is not a Jira project key (letters, digits, _)"
        ));
    }
    if config.overlap_minutes < 0 {
        return Err("`overlap_minutes` must not be negative".into());
    }
    if config.page_size == 0 {
        return Err("`page_size` must be at least 1".into());
    }
    Ok(())
}

fn note_open(open: &mut BTreeSet<String>, key: &str, is_open: bool) {
    if is_open {
        open.insert(key.to_owned());
    } else {
        open.remove(key);
    }
}

/// `"A", "B"` with JQL string escaping.
fn quoted_list(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The server's clock from its `Date` header, epoch ms.
fn server_clock(page: &JsonPage) -> Option<i64> {
    let date = page.header("date")?;
    DateTime::parse_from_rfc2822(date.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc).timestamp_millis())
}

/// Keys Jira says do not exist: `An issue with key 'OPS-9' does not exist for field 'key'.`
fn missing_keys(body: &str) -> Vec<String> {
    body.split("An issue with key '")
        .skip(1)
        .filter_map(|rest| rest.split_once("' does not exist").map(|(k, _)| k.to_owned()))
        .filter(|k| !k.is_empty())
        .collect()
}
