//! GitLab REST v4 (gitlab.com or self-managed): deployments per project and environment, and
//! merged merge requests with their commits.
//!
//! Both lists are read oldest change first (`order_by=updated_at&sort=asc`) from
//! `updated_after = bookmark − overlap`, so every page ends at a resumable point: the walk
//! checkpoints after each page with the next page, the newest `updated_at` so far and the last
//! `updated_at` and id committed. Keyset paging (`pagination=keyset`, follow `Link rel="next"`) is
//! asked for by default; where GitLab refuses it (405) or ignores it (answers with `X-Next-Page`)
//! the walk pages by offset, following `X-Next-Page` (empty on the last page) and never `X-Total`,
//! which GitLab omits above 10,000 rows. Deployments left unfinished are re-polled by id at the
//! next sync until `stale_after_days` after their creation, when they are `stale`. Each cursor
//! remembers from when its history is complete; a raised `lookback_days` or an added project
//! walks it back to the lookback start (`updated_after` that start) on the next sync. Mapping to
//! services happens in the runner, not here.
//!
//! Offset pages move when records are added, updated or deleted between two page requests.
//! GitLab's pages are aligned on `per_page`, so a page cannot start one record early to overlap
//! the previous one; instead every offset page after the first must start after the last record
//! of the previous page in the list's `(updated_at, id)` order. A page that repeats a record (an
//! insertion, or an earlier record updated to the end, which is how most shifts happen in a list
//! ordered by update) makes the walk read its query again from the start, at most twice, then read
//! on with a warning. A pure deletion before the position skips a record without a trace on
//! aligned pages; only keyset paging (the default) is immune to it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{COVERS_FROM, Emitter, EndpointCheck, StreamDef, first_failure, state_from_bookmark};
use crate::coverage::{Covered, stream_covers_from};
use crate::error::ConnectorError;
use crate::http::{Auth, HttpClient, JsonPage, RetryPolicy};
use crate::model::QuarantineReason;
use crate::model::unusable;
use crate::model::{Change, Commit, Deployment, DeploymentStatus, Quarantined, Record};
use crate::people::person;
use crate::secret::SecretEnv;
use crate::time::{format_utc, parse_instant, parse_opt_instant};

/// GitLab's largest page.
const PER_PAGE: &str = "100";
/// Commit-list requests in flight at once per source: far below GitLab.com's 2,000 per minute.
const CONCURRENCY: usize = 8;
/// Re-reads of one offset walk whose pages moved before the walk reads on regardless.
const MAX_REREADS: u32 = 2;

/// `[[source]] kind = "gitlab"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitLabConfig {
    /// Source name, unique in the config (used in bookmarks and record ids).
    pub name: String,
    /// GitLab host, `https://gitlab.example.com`; `/api/v4` is appended (and kept if given).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Environment variable holding the token (sent as `PRIVATE-TOKEN`; needs `read_api`).
    pub token_env: String,
    /// Projects to read, by path (`acme/billing`) or numeric id.
    pub projects: Vec<String>,
    /// Deployment environments to read; empty reads every environment.
    #[serde(default = "default_environments")]
    pub environments: Vec<String>,
    /// Environment names that count as production (case-insensitive), besides GitLab's own
    /// deployment tier `production`.
    #[serde(default = "default_production")]
    pub production_environments: Vec<String>,
    /// How far each incremental walk reaches back past the bookmark, in minutes.
    #[serde(default = "default_overlap")]
    pub overlap_minutes: i64,
    /// Read no further back than this many days (365 by default). Raising it, or adding a
    /// project, backfills the missing history on the next sync.
    #[serde(default = "default_lookback")]
    pub lookback_days: Option<i64>,
    /// Deployments still unfinished this many days after they were created are marked `stale`
    /// and no longer re-polled.
    #[serde(default = "default_stale_after")]
    pub stale_after_days: i64,
    /// `keyset` (default: asked for, with a fall-back to offset where GitLab refuses or ignores
    /// it) or `offset`.
    #[serde(default)]
    pub pagination: Pagination,
}

/// How the deployment and merge request lists are paged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pagination {
    /// `pagination=keyset`: stable under concurrent updates; falls back to offset per list.
    #[default]
    Keyset,
    /// `page=N`, following `X-Next-Page`.
    Offset,
}

fn default_base_url() -> String {
    "https://gitlab.com".into()
}
fn default_environments() -> Vec<String> {
    vec!["production".into()]
}
fn default_production() -> Vec<String> {
    vec!["prod".into(), "production".into()]
}
fn default_overlap() -> i64 {
    10
}
fn default_lookback() -> Option<i64> {
    Some(crate::coverage::DEFAULT_LOOKBACK_DAYS)
}
fn default_stale_after() -> i64 {
    crate::coverage::DEFAULT_STALE_AFTER_DAYS
}

const STREAMS: &[StreamDef] = &[
    StreamDef {
        name: "deployments",
        table: "deployments",
        primary_key: "id",
        cursor_field: "updated_at",
    },
    StreamDef {
        name: "merge_requests",
        table: "changes",
        primary_key: "id",
        cursor_field: "updated_at",
    },
];

/// The GitLab connector.
#[derive(Debug, Clone)]
pub struct GitLab {
    config: GitLabConfig,
    client: HttpClient,
    /// `{base}/api/v4`.
    api: String,
    /// The system's clock, or a fixed one (a replay of a frozen world).
    clock: crate::coverage::Clock,
}

/// Bookmark of one stream: a cursor per project (per project and environment for deployments),
/// and at its top level the stream's `covers_from` over the configured cursors (written, never
/// read back: the cursors' own coverage is what counts).
#[derive(Debug, Default, Deserialize)]
struct StreamState {
    #[serde(default)]
    cursors: BTreeMap<String, Cursor>,
    /// The cursor keys of this read known so far, how many it has in all (a project named by
    /// its id is known by its path only once asked), and the time it started.
    #[serde(skip)]
    scopes: Option<(Vec<String>, usize, DateTime<Utc>)>,
}

impl StreamState {
    /// Adds a cursor key this read covers. A cursor that was read before coverage was kept is
    /// taken as complete from `start` on, as the bookmark then promised.
    fn configure(&mut self, key: &str, start: Option<DateTime<Utc>>) {
        if let Some(cursor) = self.cursors.get_mut(key)
            && cursor.covered.is_none()
            && cursor.high_water.is_some()
        {
            cursor.covered = Some(Covered { from: start });
        }
        if let Some((keys, ..)) = self.scopes.as_mut() {
            keys.push(key.to_owned());
        }
    }

    fn covers_from(&self) -> Option<DateTime<Utc>> {
        let (keys, expected, now) = self.scopes.as_ref()?;
        let unknown = expected.saturating_sub(keys.len());
        stream_covers_from(
            keys.iter()
                .map(|k| self.cursors.get(k).and_then(|c| c.covered))
                .chain(std::iter::repeat_n(None, unknown)),
            *now,
        )
    }
}

impl Serialize for StreamState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("cursors", &self.cursors)?;
        map.serialize_entry(COVERS_FROM, &self.covers_from())?;
        map.end()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// Newest `updated_at` of the last completed walk.
    high_water: Option<DateTime<Utc>>,
    /// A walk in progress: where to resume.
    walk: Option<Walk>,
    /// Deployments seen unfinished: re-polled by id at the next sync if the walk does not see them.
    #[serde(default)]
    unfinished: BTreeSet<u64>,
    /// The history this cursor holds completely, once a walk has reached its lookback start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    covered: Option<Covered>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Walk {
    /// `updated_after` of this walk; `None` reads from the beginning.
    since: Option<DateTime<Utc>>,
    /// The page to fetch next.
    next: Next,
    /// Newest `updated_at` seen so far in this walk.
    high_water: Option<DateTime<Utc>>,
    /// `updated_at` and id of the last record committed: where a walk whose saved link no longer
    /// answers starts again.
    last: Option<(DateTime<Utc>, u64)>,
    /// Offset paging: `updated_at` and id of the last record of the previous page of this pass,
    /// which the next page must start after.
    #[serde(default)]
    page_last: Option<(DateTime<Utc>, u64)>,
    /// Offset paging: times this walk was read again from its start because pages moved.
    #[serde(default)]
    rereads: u32,
    /// The coverage the cursor gains when this walk completes: a first walk and a backfill
    /// reach the lookback start; `None` for an incremental walk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    floor: Option<Covered>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Next {
    /// The first page of the walk's query.
    First,
    /// A `Link rel="next"` URL, followed as given.
    Url(String),
    /// An offset page of the walk's query.
    Page(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployments,
    MergeRequests,
}

impl Kind {
    fn stream(self) -> &'static str {
        match self {
            Self::Deployments => "deployments",
            Self::MergeRequests => "merge_requests",
        }
    }
}

/// A configured project: how to address it and what to call it in records.
struct Project {
    /// The `:id` of the URL: the numeric id or the URL-encoded path.
    id: String,
    /// `path_with_namespace`, the `repo` of every record.
    path: String,
}

/// What one walk works on.
struct Target<'a> {
    kind: Kind,
    project: &'a Project,
    environment: Option<&'a str>,
    key: String,
}

impl GitLab {
    /// Builds the connector; fails when the token variable is missing.
    pub fn new(config: GitLabConfig, env: &SecretEnv, policy: RetryPolicy) -> Result<Self, ConnectorError> {
        let key = format!("source.{}.token_env", config.name);
        let token = env.get(&config.token_env, &key)?;
        let client = HttpClient::new(
            &config.name,
            &config.base_url,
            &Auth::PrivateToken(token),
            &[("accept", "application/json")],
            format!(
                "check that the token in ${} is valid, not expired, and has the read_api scope on {}",
                config.token_env,
                config.projects.join(", ")
            ),
            policy,
        )?;
        let root = config.base_url.trim_end_matches('/');
        let api = if root.ends_with("/api/v4") {
            root.to_owned()
        } else {
            format!("{root}/api/v4")
        };
        Ok(Self {
            config,
            client,
            api,
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

    /// Where the lookback starts: `lookback_days` back, or nowhere.
    fn lookback_start(&self) -> Option<DateTime<Utc>> {
        crate::coverage::lookback_start(self.config.lookback_days, self.now())
    }

    /// The streams offered.
    pub fn streams(&self) -> &'static [StreamDef] {
        STREAMS
    }

    /// Cheap requests: the token's user, then each project (it must exist and be readable).
    pub async fn check(&self) -> Result<(), ConnectorError> {
        first_failure(self.check_endpoints().await)
    }

    /// One cheap request to each endpoint a sync calls: the token's user, then per project the
    /// project, its deployments, its merged merge requests and one merge request's commits. A
    /// refused token or an unreadable project is reported once, not once per endpoint.
    pub async fn check_endpoints(&self) -> Vec<EndpointCheck> {
        const SCOPE: &str = "the token needs the read_api scope";
        let (check, _) = EndpointCheck::of(
            "token (GET /user)",
            self.client.get_json(&format!("{}/user", self.api), &[]).await,
            &format!("{SCOPE}; create a new token if it expired"),
        );
        let refused = check.failed();
        let mut checks = vec![check];
        if refused {
            return checks;
        }
        let reporter = format!("{SCOPE} and at least the Reporter role on the project");
        for project in &self.config.projects {
            let root = format!("{}/projects/{}", self.api, encode_id(project));
            let (check, _) = EndpointCheck::of(
                format!("project {project} (GET /projects/{{id}})"),
                self.client.get_json(&root, &[]).await,
                &format!("{SCOPE} and membership of {project}"),
            );
            let unreadable = check.failed();
            checks.push(check);
            if unreadable {
                continue;
            }
            let one = vec![("per_page", "1".to_owned())];
            checks.push(
                EndpointCheck::of(
                    format!("deployments of {project} (GET /projects/{{id}}/deployments)"),
                    self.client.get_json(&format!("{root}/deployments"), &one).await,
                    &reporter,
                )
                .0,
            );
            let mut merged = one.clone();
            merged.push(("state", "merged".to_owned()));
            let (check, page) = EndpointCheck::of(
                format!("merge requests of {project} (GET /projects/{{id}}/merge_requests)"),
                self.client
                    .get_json(&format!("{root}/merge_requests"), &merged)
                    .await,
                &reporter,
            );
            checks.push(check);
            let iid = page
                .and_then(|p| p.body.as_array().and_then(|a| a.first().cloned()))
                .and_then(|m| m.get("iid").and_then(Value::as_u64));
            if let Some(iid) = iid {
                checks.push(
                    EndpointCheck::of(
                        format!("merge request commits of {project} (GET /projects/{{id}}/merge_requests/{{iid}}/commits)"),
                        self.client
                            .get_json(&format!("{root}/merge_requests/{iid}/commits"), &one)
                            .await,
                        &reporter,
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
        let kind = match stream {
            "deployments" => Kind::Deployments,
            "merge_requests" => Kind::MergeRequests,
            other => {
                return Err(ConnectorError::Config {
                    source_name: self.config.name.clone(),
                    message: format!("no stream `{other}`; GitLab offers deployments, merge_requests"),
                });
            }
        };
        let mut state: StreamState = state_from_bookmark(bookmark);
        // Deployments: one walk per named environment (all of them when none is named).
        let environments: Vec<Option<&str>> = match kind {
            Kind::Deployments if !self.config.environments.is_empty() => self
                .config
                .environments
                .iter()
                .map(|e| Some(e.as_str()))
                .collect(),
            _ => vec![None],
        };
        state.scopes = Some((
            Vec::new(),
            self.config.projects.len() * environments.len(),
            self.now(),
        ));
        // Whether to ask for keyset paging; cleared for the rest of the read once GitLab refuses it.
        let mut keyset = self.config.pagination == Pagination::Keyset;
        for configured in &self.config.projects {
            let project = self.project(configured).await?;
            for environment in environments.iter().copied() {
                let target = Target {
                    kind,
                    project: &project,
                    environment,
                    key: match environment {
                        Some(env) => format!("{}@{env}", project.path),
                        None => project.path.clone(),
                    },
                };
                state.configure(&target.key, self.lookback_start());
                match kind {
                    Kind::Deployments => {
                        self.sync_deployments(&target, &mut keyset, &mut state, &out)
                            .await?
                    }
                    Kind::MergeRequests => {
                        self.walk(&target, &mut keyset, &mut state, &out).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A configured project; a numeric id costs one request to learn the path records carry.
    async fn project(&self, configured: &str) -> Result<Project, ConnectorError> {
        let id = encode_id(configured);
        if !configured.chars().all(|c| c.is_ascii_digit()) {
            return Ok(Project {
                id,
                path: configured.trim_matches('/').to_owned(),
            });
        }
        let url = format!("{}/projects/{id}", self.api);
        let page = self.client.get_json(&url, &[]).await?;
        let path = page
            .body
            .get("path_with_namespace")
            .and_then(Value::as_str)
            .ok_or_else(|| ConnectorError::Decode {
                source_name: self.config.name.clone(),
                url: page.url.clone(),
                message: "the project has no path_with_namespace".into(),
            })?;
        Ok(Project {
            id,
            path: path.to_owned(),
        })
    }

    /// One deployment walk, then the re-poll of what was unfinished and not seen again.
    async fn sync_deployments(
        &self,
        target: &Target<'_>,
        keyset: &mut bool,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        let seen = self.walk(target, keyset, state, out).await?;
        let cursor = state.cursors.entry(target.key.clone()).or_default();
        let stale: Vec<u64> = cursor.unfinished.difference(&seen).copied().collect();
        if stale.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        for id in stale {
            let url = format!("{}/projects/{}/deployments/{id}", self.api, target.project.id);
            let raw = match self.client.get_json(&url, &[]).await {
                Ok(page) => page.body,
                Err(ConnectorError::Status { status: 404, .. }) => {
                    tracing::info!(source = %self.config.name, deployment = id, "An unfinished deployment is gone; no longer re-polled.");
                    cursor.unfinished.remove(&id);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.deployment(&target.project.path, &raw) {
                Ok(d) => {
                    if d.status == DeploymentStatus::Stale {
                        tracing::info!(source = %self.config.name, deployment = id, stale_after_days = self.config.stale_after_days, "A deployment still unfinished past stale_after_days is marked stale and no longer re-polled.");
                    }
                    if d.status != DeploymentStatus::InProgress {
                        cursor.unfinished.remove(&id);
                    }
                    records.push(Record::Deployment(d));
                }
                Err(reason) => {
                    // Quarantined, so no longer re-polled: it would fail the same way each sync.
                    cursor.unfinished.remove(&id);
                    rejected.push(Quarantined::new(
                        &self.config.name,
                        "deployments",
                        &raw,
                        QuarantineReason::Message(reason),
                    ));
                }
            }
        }
        out.records(records).await?;
        out.quarantine(rejected).await?;
        out.checkpoint(state).await
    }

    /// Walks one ascending list to its end, a checkpoint after every page. Returns the ids seen.
    async fn walk(
        &self,
        target: &Target<'_>,
        keyset: &mut bool,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<BTreeSet<u64>, ConnectorError> {
        let mut seen = BTreeSet::new();
        let cursor = state.cursors.entry(target.key.clone()).or_default();
        let mut resumed = cursor.walk.is_some();
        let mut walk = match cursor.walk.take() {
            Some(w) => w,
            None => {
                let overlap = Duration::minutes(self.config.overlap_minutes.max(0));
                let start = self.lookback_start();
                // From the bookmark minus the overlap; a first walk, and a cursor whose history
                // starts later than the lookback start (raised since), from that start.
                let (since, floor) = match cursor.high_water {
                    Some(h) if cursor.covered.is_none_or(|c| c.reaches(start)) => (Some(h - overlap), None),
                    _ => (start, Some(Covered { from: start })),
                };
                Walk {
                    since,
                    next: Next::First,
                    high_water: cursor.high_water,
                    last: None,
                    page_last: None,
                    rereads: 0,
                    floor,
                }
            }
        };
        let mut pager = self.client.pager(target.kind.stream());
        loop {
            match &walk.next {
                Next::First => pager.count()?,
                Next::Url(url) => pager.next(url)?,
                Next::Page(n) => pager.next(&format!("page {n}"))?,
            }
            let asked_keyset = match &walk.next {
                Next::First => *keyset,
                Next::Url(url) => url.contains("pagination=keyset"),
                Next::Page(_) => false,
            };
            let page = match self.fetch(target, &walk, asked_keyset, resumed).await {
                Ok(page) => page,
                Err(ConnectorError::Status { status, .. }) if status == 405 && asked_keyset => {
                    tracing::warn!(source = %self.config.name, stream = target.kind.stream(), project = %target.project.path, "GitLab refused keyset paging; paging by offset.");
                    *keyset = false;
                    restart(&mut walk);
                    pager.restart();
                    resumed = false;
                    continue;
                }
                Err(ConnectorError::Status { status, url, .. })
                    if resumed && (400..500).contains(&status) =>
                {
                    tracing::warn!(source = %self.config.name, stream = target.kind.stream(), %url, status, "The saved page no longer answers; restarting from the last record committed.");
                    restart(&mut walk);
                    pager.restart();
                    resumed = false;
                    continue;
                }
                Err(e) => return Err(e),
            };
            resumed = false;
            let Some(items) = page.body.as_array() else {
                return Err(ConnectorError::Decode {
                    source_name: self.config.name.clone(),
                    url: page.url.clone(),
                    message: "expected a JSON array".into(),
                });
            };
            let order_key = |item: &Value| {
                let at = item.get("updated_at").and_then(Value::as_str).map(parse_instant);
                match (at, item.get("id").and_then(Value::as_u64)) {
                    (Some(Ok(at)), Some(id)) => Some((at, id)),
                    _ => None,
                }
            };
            let paged_by_offset = matches!(walk.next, Next::Page(_));
            if paged_by_offset
                && let (Some(previous), Some(first)) = (walk.page_last, items.first().and_then(order_key))
                && first <= previous
            {
                if walk.rereads < MAX_REREADS {
                    walk.rereads += 1;
                    tracing::warn!(source = %self.config.name, stream = target.kind.stream(), project = %target.project.path, walk = %target.key, page = ?walk.next, "Records moved between two offset pages; reading the list again from its start.");
                    walk.next = Next::First;
                    walk.page_last = None;
                    pager.restart();
                    let cursor = state.cursors.entry(target.key.clone()).or_default();
                    cursor.walk = Some(walk.clone());
                    out.checkpoint(state).await?;
                    continue;
                }
                tracing::warn!(source = %self.config.name, stream = target.kind.stream(), project = %target.project.path, walk = %target.key, page = ?walk.next, "Offset pages kept moving while the list was read again; reading on, a record may be missed until the next sync.");
            }
            walk.page_last = items.iter().filter_map(order_key).max().or(walk.page_last);
            let mut kept = Vec::new();
            let mut rejected = Vec::new();
            for item in items {
                if let Some(reason) = crate::lenient::unreadable(item) {
                    rejected.push(self.reject(target.kind, item, reason));
                    continue;
                }
                let id = item.get("id").and_then(Value::as_u64);
                let updated = item.get("updated_at").and_then(Value::as_str).map(parse_instant);
                match (id, updated) {
                    (Some(id), Some(Ok(at))) => {
                        walk.high_water = walk.high_water.max(Some(at));
                        walk.last = walk.last.max(Some((at, id)));
                        seen.insert(id);
                        kept.push(item.clone());
                    }
                    (None, _) => rejected.push(self.reject(
                        target.kind,
                        item,
                        QuarantineReason::MissingField("numeric id".into()),
                    )),
                    (_, Some(Err(reason))) => rejected.push(self.reject(
                        target.kind,
                        item,
                        QuarantineReason::BadTimestamp {
                            field: "updated_at".into(),
                            error: reason,
                        },
                    )),
                    (_, None) => rejected.push(self.reject(
                        target.kind,
                        item,
                        QuarantineReason::MissingField("updated_at".into()),
                    )),
                }
            }
            let records = match target.kind {
                Kind::Deployments => {
                    let cursor = state.cursors.entry(target.key.clone()).or_default();
                    let mut records = Vec::new();
                    for raw in kept {
                        match self.deployment(&target.project.path, &raw) {
                            Ok(d) => {
                                let id = raw.get("id").and_then(Value::as_u64).unwrap_or_default();
                                if d.status == DeploymentStatus::InProgress {
                                    cursor.unfinished.insert(id);
                                } else {
                                    cursor.unfinished.remove(&id);
                                }
                                records.push(Record::Deployment(d));
                            }
                            Err(reason) => rejected.push(self.reject(
                                target.kind,
                                &raw,
                                QuarantineReason::Message(reason),
                            )),
                        }
                    }
                    records
                }
                Kind::MergeRequests => {
                    let (records, more_rejected) = self.map_merge_requests(target.project, kept).await?;
                    rejected.extend(more_rejected);
                    records
                }
            };
            out.records(records).await?;
            out.quarantine(rejected).await?;
            let cursor = state.cursors.entry(target.key.clone()).or_default();
            match next_page(&page, asked_keyset) {
                Some(next) => {
                    walk.next = next;
                    cursor.walk = Some(walk.clone());
                    out.checkpoint(state).await?;
                }
                None => {
                    cursor.high_water = walk.high_water;
                    cursor.walk = None;
                    match walk.floor {
                        Some(floor) => cursor.covered = Some(floor),
                        // A first walk begun before coverage was kept: taken to cover from the
                        // lookback in force, as an older bookmark is.
                        None if cursor.covered.is_none() => {
                            cursor.covered = Some(Covered {
                                from: self.lookback_start(),
                            })
                        }
                        None => {}
                    }
                    out.checkpoint(state).await?;
                    return Ok(seen);
                }
            }
        }
    }

    /// Fetches the walk's next page. A link saved in a bookmark is rebased onto the configured
    /// API root: the host may have moved since (a renamed instance, the demo's fresh ports), and
    /// the link's path and query are what carry the position. Within a read, links are followed
    /// as given.
    async fn fetch(
        &self,
        target: &Target<'_>,
        walk: &Walk,
        keyset: bool,
        resumed: bool,
    ) -> Result<JsonPage, ConnectorError> {
        let (path, mut query) = match target.kind {
            Kind::Deployments => {
                let mut query = Vec::new();
                if let Some(env) = target.environment {
                    query.push(("environment", env.to_owned()));
                }
                ("deployments", query)
            }
            Kind::MergeRequests => ("merge_requests", vec![("state", "merged".to_owned())]),
        };
        // GitLab's deployment finder refuses `updated_after` without `order_by=updated_at`.
        query.push(("order_by", "updated_at".to_owned()));
        query.push(("sort", "asc".to_owned()));
        query.push(("per_page", PER_PAGE.to_owned()));
        if let Some(since) = walk.since {
            query.push(("updated_after", format_utc(since)));
        }
        let url = format!("{}/projects/{}/{path}", self.api, target.project.id);
        match &walk.next {
            Next::Url(next) if resumed => self.client.get_json(&self.rebase(next), &[]).await,
            Next::Url(next) => self.client.get_json(next, &[]).await,
            Next::First => {
                if keyset {
                    query.push(("pagination", "keyset".to_owned()));
                }
                self.client.get_json(&url, &query).await
            }
            Next::Page(n) => {
                query.push(("page", n.to_string()));
                self.client.get_json(&url, &query).await
            }
        }
    }

    /// `link` with everything before its `/api/v4/` replaced by the configured API root.
    fn rebase(&self, link: &str) -> String {
        match link.find("/api/v4/") {
            Some(at) => format!("{}{}", self.api, &link[at + "/api/v4".len()..]),
            None => link.to_owned(),
        }
    }

    fn reject(&self, kind: Kind, raw: &Value, reason: QuarantineReason) -> Quarantined {
        Quarantined::new(&self.config.name, kind.stream(), raw, reason)
    }

    fn deployment(&self, repo: &str, raw: &Value) -> Result<Deployment, String> {
        let id = raw
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| unusable("numeric id", raw.get("id"), "a number"))?;
        let environment = raw
            .pointer("/environment/name")
            .and_then(Value::as_str)
            .ok_or_else(|| unusable("environment.name", raw.pointer("/environment/name"), "text"))?
            .to_owned();
        let status_text = str_field(raw, "status")?;
        let status = match status_text.as_str() {
            "success" => DeploymentStatus::Success,
            "failed" => DeploymentStatus::Failure,
            // A skipped deployment never ran: it stopped before it finished, like a cancelled one.
            "canceled" | "skipped" => DeploymentStatus::Cancelled,
            "running" | "created" | "blocked" => DeploymentStatus::InProgress,
            other => return Err(format!("unknown deployment status {other:?}")),
        };
        let created_at = time_field(raw, "created_at")?;
        let updated_at = opt_time_field(raw, "updated_at")?.unwrap_or(created_at);
        // Unfinished long after it began: it will not be asked about again.
        let stale_before = self.clock.stale_before(self.config.stale_after_days);
        let status = if status == DeploymentStatus::InProgress && created_at < stale_before {
            DeploymentStatus::Stale
        } else {
            status
        };
        let finished_at = match status {
            DeploymentStatus::InProgress | DeploymentStatus::Stale => None,
            // Older GitLab versions leave finished_at empty on some final states: the last
            // update is when the status became final.
            _ => Some(opt_time_field(raw, "finished_at")?.unwrap_or(updated_at)),
        };
        let tier_production = raw.pointer("/environment/tier").and_then(Value::as_str) == Some("production");
        let is_production = tier_production
            || self
                .config
                .production_environments
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&environment));
        Ok(Deployment {
            change_refs: Vec::new(),
            deployed_by: person(raw, &["/user/username"]),
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
            updated_at,
        })
    }

    /// Fetches each merge request's commits and maps both.
    async fn map_merge_requests(
        &self,
        project: &Project,
        items: Vec<Value>,
    ) -> Result<(Vec<Record>, Vec<Quarantined>), ConnectorError> {
        let with_commits: Vec<(Value, Option<Vec<Value>>)> =
            stream::iter(items.into_iter().map(|m| async move {
                let Some(iid) = m.get("iid").and_then(Value::as_u64) else {
                    return Ok::<_, ConnectorError>((m, None));
                };
                let url = format!(
                    "{}/projects/{}/merge_requests/{iid}/commits",
                    self.api, project.id
                );
                let commits = self.get_all(Kind::MergeRequests.stream(), url).await?;
                Ok((m, Some(commits)))
            }))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        for (raw, commits) in with_commits {
            let Some(commits) = commits else {
                rejected.push(self.reject(
                    Kind::MergeRequests,
                    &raw,
                    QuarantineReason::MissingField("numeric iid".into()),
                ));
                continue;
            };
            let mut first_commit_at: Option<DateTime<Utc>> = None;
            let mut all_dated = true;
            for c in &commits {
                match self.commit(&project.path, c) {
                    Ok(commit) => {
                        first_commit_at =
                            Some(first_commit_at.map_or(commit.authored_at, |f| f.min(commit.authored_at)));
                        records.push(Record::Commit(commit));
                    }
                    Err(reason) => {
                        all_dated = false;
                        rejected.push(self.reject(
                            Kind::MergeRequests,
                            c,
                            QuarantineReason::Message(format!("commit: {reason}")),
                        ));
                    }
                }
            }
            // With a commit undated the earliest author time is unknown: leave it empty (lead
            // time then falls back to the opening time) rather than guess.
            let first_commit_at = first_commit_at.filter(|_| all_dated);
            match self.change(&project.path, &raw, first_commit_at) {
                Ok(change) => records.push(Record::Change(change)),
                Err(reason) => {
                    rejected.push(self.reject(Kind::MergeRequests, &raw, QuarantineReason::Message(reason)))
                }
            }
        }
        Ok((records, rejected))
    }

    fn change(
        &self,
        repo: &str,
        raw: &Value,
        first_commit_at: Option<DateTime<Utc>>,
    ) -> Result<Change, String> {
        let iid = raw
            .get("iid")
            .and_then(Value::as_i64)
            .ok_or_else(|| unusable("numeric iid", raw.get("iid"), "a number"))?;
        let title = raw
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let state = match str_field(raw, "state")?.as_str() {
            "merged" => "merged",
            "closed" => "closed",
            // `locked` is the short state while a merge is in progress.
            "opened" | "locked" => "open",
            other => return Err(format!("unknown merge request state {other:?}")),
        };
        let labels = match raw.get("labels") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|l| {
                    // Names by default; objects with `with_labels_details=true`.
                    l.as_str()
                        .or_else(|| l.get("name").and_then(Value::as_str))
                        .map(str::to_owned)
                        .ok_or_else(|| format!("labels: unexpected entry {l}"))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("labels: expected a list, found {other}")),
        };
        let merge_commit_sha = ["merge_commit_sha", "squash_commit_sha"]
            .iter()
            .find_map(|f| raw.get(*f).and_then(Value::as_str).filter(|s| !s.is_empty()))
            .map(str::to_owned);
        let description = raw.get("description").and_then(Value::as_str).unwrap_or_default();
        let is_revert = title.starts_with("Revert \"");
        Ok(Change {
            author: person(raw, &["/author/username"]),
            id: format!("{}:{repo}:{iid}", self.config.name),
            source: self.config.name.clone(),
            repo: repo.to_owned(),
            service: None,
            team: None,
            number: iid,
            state: state.to_owned(),
            created_at: time_field(raw, "created_at")?,
            merged_at: opt_time_field(raw, "merged_at")?,
            merge_commit_sha,
            first_commit_at,
            labels,
            is_revert,
            reverts: if is_revert {
                reverted_iid(description)
            } else {
                None
            },
            title,
            updated_at: time_field(raw, "updated_at")?,
        })
    }

    fn commit(&self, repo: &str, raw: &Value) -> Result<Commit, String> {
        let sha = str_field(raw, "id")?;
        let authored_at = time_field(raw, "authored_date")?;
        let parents = match raw.get("parent_ids") {
            // The merge request commits list leaves parents out on most GitLab versions.
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ids)) => ids
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_owned)
                        .ok_or("parent_ids: not a list of shas")
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("parent_ids: expected a list, found {other}")),
        };
        let title = match raw.get("title").and_then(Value::as_str) {
            Some(t) => t.to_owned(),
            None => raw
                .get("message")
                .and_then(Value::as_str)
                .and_then(|m| m.lines().next())
                .unwrap_or_default()
                .to_owned(),
        };
        Ok(Commit {
            author_email: person(raw, &["/author_email"]),
            author_name: person(raw, &["/author_name"]),
            id: format!("{}:{repo}:{sha}", self.config.name),
            source: self.config.name.clone(),
            repo: repo.to_owned(),
            service: None,
            team: None,
            sha,
            authored_at,
            parents,
            title,
            deployment_id: None,
            updated_at: authored_at,
        })
    }

    /// Every page of an offset-paged list (`X-Next-Page`, else `Link rel="next"`) read for
    /// stream `stream`.
    async fn get_all(&self, stream: &str, url: String) -> Result<Vec<Value>, ConnectorError> {
        let base = vec![("per_page", PER_PAGE.to_owned())];
        let mut all = Vec::new();
        let mut pager = self.client.pager(stream);
        pager.count()?;
        let mut page = self.client.get_json(&url, &base).await?;
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
            page = match next_page(&page, false) {
                None | Some(Next::First) => return Ok(all),
                Some(Next::Page(n)) => {
                    pager.next(&format!("page {n}"))?;
                    let mut query = base.clone();
                    query.push(("page", n.to_string()));
                    self.client.get_json(&url, &query).await?
                }
                Some(Next::Url(next)) => {
                    pager.next(&next)?;
                    self.client.get_json(&next, &[]).await?
                }
            };
        }
    }
}

/// Starts a walk over from the last record committed (every record before it, in ascending
/// order, is stored), or from its own beginning when nothing was committed yet. The store
/// de-duplicates what is read twice.
fn restart(walk: &mut Walk) {
    if let Some((at, _)) = walk.last {
        // Whole seconds in the query: step back one so the last record's second is included.
        walk.since = Some(at - Duration::seconds(1));
    }
    walk.next = Next::First;
}

/// Where the next page is. A keyset answer carries only `Link rel="next"`; an offset answer
/// carries `X-Next-Page` (empty on the last page), which wins over the Link; a keyset request
/// GitLab ignored comes back as an offset answer. With neither header (a proxy stripped the
/// `X-` headers) the Link is all there is. `X-Total` is never consulted.
fn next_page(page: &JsonPage, asked_keyset: bool) -> Option<Next> {
    let x_next = page.header("x-next-page").map(str::trim);
    match x_next {
        None if asked_keyset => page.link("next").map(Next::Url),
        Some("") => None,
        Some(n) => n
            .parse::<u64>()
            .ok()
            .map(Next::Page)
            .or_else(|| page.link("next").map(Next::Url)),
        None => page.link("next").map(Next::Url),
    }
}

/// A project's `:id`: digits as they are, a path URL-encoded (`acme/billing` → `acme%2Fbilling`).
fn encode_id(project: &str) -> String {
    let project = project.trim_matches('/');
    let mut out = String::with_capacity(project.len() + 8);
    for b in project.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GitLab's revert merge requests say "This reverts merge request !123".
fn reverted_iid(description: &str) -> Option<i64> {
    let lower = description.to_ascii_lowercase();
    let at = lower.find("reverts merge request")?;
    let rest = description.get(at..)?;
    let after = rest.split('!').nth(1)?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
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
    parse_opt_instant(v.get(field)).map_err(|e| format!("{field}: {e}"))
}

#[cfg(test)]
mod tests;
