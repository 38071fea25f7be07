//! PagerDuty REST v2: incidents with their first acknowledgement and resolution times.
//!
//! The incident list filters on creation time and caps `offset + limit` at 10,000, so the range is
//! read in windows (halved when a window holds too many), always with `time_zone=UTC`. Incidents
//! left open at one sync were created before the next sync's range: they are re-read by id. A
//! resolved incident whose payload lacks `resolved_at` (recorded payloads do) is resolved at its
//! latest resolve log entry, else at its last status change.
//!
//! Offsets move when incidents are created or deleted between two page requests. Every page after
//! the first asks for one record of overlap (its offset moved back by one): when that record is not
//! the last one of the previous page, the window is read again from its start, at most twice, and
//! then read on with a warning. Records are upserted on their key, so reading one twice is harmless.
//!
//! The state remembers, per service id (or `*` for all), from when its incidents are all read:
//! a raised `lookback_days` or an added service id reads the older range of those scopes (a
//! backfill) after the regular read, and `covers_from` moves only once it is done.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{Emitter, EndpointCheck, StreamDef, first_failure, state_from_bookmark};
use crate::error::ConnectorError;
use crate::http::{Auth, HttpClient, RetryPolicy};
use crate::model::QuarantineReason;
use crate::model::unusable;
use crate::model::{Incident, Quarantined, Record, Severity};
use crate::people::person;
use crate::secret::SecretEnv;
use crate::time::{format_utc, parse_instant, parse_opt_instant};

/// PagerDuty's largest page.
const LIMIT: usize = 100;
/// `offset + limit` may not pass this.
const OFFSET_CAP: usize = 10_000;
/// Re-reads of one window whose offsets moved before the walk reads on regardless.
const MAX_REREADS: u32 = 2;

/// `[[source]] kind = "pagerduty"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// Source name, unique in the config.
    pub name: String,
    /// API root, `https://api.pagerduty.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Environment variable holding the REST API key.
    pub token_env: String,
    /// Read only these PagerDuty services (all when empty).
    #[serde(default)]
    pub service_ids: Vec<String>,
    /// Keep incidents created this many days back. Raising it (or adding a service id) reads the
    /// missing history at the next sync.
    #[serde(default = "default_lookback")]
    pub lookback_days: i64,
    /// How far each incremental read reaches back past the bookmark, in minutes.
    #[serde(default = "default_overlap")]
    pub overlap_minutes: i64,
    /// Days per request window (PagerDuty allows at most 6 months per query).
    #[serde(default = "default_window")]
    pub window_days: i64,
    /// Severity per priority name (`P1`, `SEV-2`) or urgency (`high`, `low`), case-insensitive:
    /// `sev1`…`sev4`. The priority decides (as configured, else P1 → sev1, P2 → sev2, P3 → sev3,
    /// P4/P5 → sev4); without one it knows, the urgency (as configured, else high → sev2,
    /// low → sev4).
    #[serde(default)]
    pub severities: BTreeMap<String, String>,
}

fn default_base_url() -> String {
    "https://api.pagerduty.com".into()
}
fn default_lookback() -> i64 {
    365
}
fn default_overlap() -> i64 {
    60
}
fn default_window() -> i64 {
    30
}

const STREAMS: &[StreamDef] = &[StreamDef {
    name: "incidents",
    table: "incidents",
    primary_key: "id",
    cursor_field: "created_at",
}];

/// The PagerDuty connector.
#[derive(Debug, Clone)]
pub struct PagerDuty {
    config: PagerDutyConfig,
    client: HttpClient,
    /// `severities`, checked, by lower-cased priority name or urgency.
    severities: BTreeMap<String, Severity>,
}

/// The scope name of a read of every service (no `service_ids`).
const ALL_SERVICES: &str = "*";

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// `until` of the last completed read.
    high_water: Option<DateTime<Utc>>,
    /// A read in progress.
    walk: Option<Walk>,
    /// Incidents seen unresolved, with their creation time: re-read by id next time.
    #[serde(default)]
    open: BTreeMap<String, DateTime<Utc>>,
    /// Open incidents of the previous sync not yet re-read in this one (survives a kill).
    #[serde(default)]
    repoll: Vec<String>,
    /// Per scope (service id, or `*` for every service): the creation time from which its
    /// incidents are all read, up to `high_water`. Absent in bookmarks written before coverage
    /// was kept: those are taken as complete over the lookback, as the runner takes them.
    #[serde(default)]
    scopes: Option<BTreeMap<String, DateTime<Utc>>>,
    /// [`crate::contract::COVERS_FROM`]: the latest of the configured scopes' starts.
    #[serde(default)]
    covers_from: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Walk {
    /// Start of the whole range (for the acknowledgement look-up on resume).
    since: DateTime<Utc>,
    /// End of the whole range.
    until: DateTime<Utc>,
    /// Current window.
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    /// Next offset within the window.
    offset: usize,
    /// Id of the last incident of the page before `offset`: the next page asks for it again to
    /// see whether offsets moved (absent in bookmarks written before the check existed).
    #[serde(default)]
    last_id: Option<String>,
    /// Times this window was read again from its start because offsets moved.
    #[serde(default)]
    rereads: u32,
    /// A backfill of these scopes (service ids, `*` for all) rather than the regular read of
    /// the configured ones past the high water.
    #[serde(default)]
    services: Option<Vec<String>>,
}

impl Walk {
    fn new(since: DateTime<Utc>, until: DateTime<Utc>, services: Option<Vec<String>>) -> Self {
        Self {
            since,
            until,
            window_start: since,
            window_end: since,
            offset: 0,
            last_id: None,
            rereads: 0,
            services,
        }
    }
}

/// Where the next page of an offset walk starts and how it is checked.
struct Overlap<'a> {
    /// The offset asked for: one before the next new record when the check applies.
    ask: usize,
    /// The id the first record must have, when the page overlaps the previous one.
    expect: Option<&'a str>,
}

impl<'a> Overlap<'a> {
    /// One record of overlap after the first page of a window, when the last id is known and the
    /// offset cap leaves room.
    fn at(offset: usize, last_id: Option<&'a str>) -> Self {
        match last_id {
            Some(id) if offset > 0 => Self {
                ask: offset - 1,
                expect: Some(id),
            },
            _ => Self {
                ask: offset,
                expect: None,
            },
        }
    }

    /// Whether the page starts where the previous one ended: `Some(true)` when it overlaps as
    /// expected (its first record is a repeat), `Some(false)` when offsets moved, `None` when there
    /// was nothing to check.
    fn check(&self, items: &[Value]) -> Option<bool> {
        let expect = self.expect?;
        Some(items.first().and_then(|i| i.get("id")).and_then(Value::as_str) == Some(expect))
    }
}

/// The `id` of the last record of a page.
fn last_id(items: &[Value]) -> Option<String> {
    items
        .last()
        .and_then(|i| i.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

impl PagerDuty {
    /// Builds the connector; fails when the token variable is missing.
    pub fn new(
        config: PagerDutyConfig,
        env: &SecretEnv,
        policy: RetryPolicy,
    ) -> Result<Self, ConnectorError> {
        let key = format!("source.{}.token_env", config.name);
        let token = env.get(&config.token_env, &key)?;
        let client = HttpClient::new(
            &config.name,
            &config.base_url,
            &Auth::PagerDutyToken(token),
            &[("accept", "application/vnd.pagerduty+json;version=2")],
            format!(
                "check that the REST API key in ${} is valid and has read access",
                config.token_env
            ),
            policy,
        )?;
        let mut severities = BTreeMap::new();
        for (name, sev) in &config.severities {
            let s = Severity::parse(sev).ok_or_else(|| ConnectorError::Config {
                source_name: config.name.clone(),
                message: format!("`severities`: {name:?} maps to {sev:?}; use sev1, sev2, sev3 or sev4"),
            })?;
            severities.insert(name.to_lowercase(), s);
        }
        Ok(Self {
            config,
            client,
            severities,
        })
    }

    /// The streams offered.
    pub fn streams(&self) -> &'static [StreamDef] {
        STREAMS
    }

    /// One cheap request: the key's abilities.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        first_failure(self.check_endpoints().await)
    }

    /// One cheap request to each endpoint a sync calls: the key's abilities, incidents (of the
    /// configured services) and log entries (acknowledgements).
    pub async fn check_endpoints(&self) -> Vec<EndpointCheck> {
        let read_key = "use a REST API key with read access (a read-only key suffices)";
        let (check, _) = EndpointCheck::of(
            "API key (GET /abilities)",
            self.client.get_json(&self.url("/abilities"), &[]).await,
            read_key,
        );
        let refused = check.failed();
        let mut checks = vec![check];
        if refused {
            return checks;
        }
        let mut query = vec![("limit", "1".to_owned()), ("time_zone", "UTC".to_owned())];
        for id in &self.config.service_ids {
            query.push(("service_ids[]", id.clone()));
        }
        checks.push(
            EndpointCheck::of(
                "incidents (GET /incidents)",
                self.client.get_json(&self.url("/incidents"), &query).await,
                &format!("{read_key}, and check that every id in `service_ids` exists and is visible to it"),
            )
            .0,
        );
        let query = vec![
            ("limit", "1".to_owned()),
            ("is_overview", "true".to_owned()),
            ("time_zone", "UTC".to_owned()),
        ];
        checks.push(
            EndpointCheck::of(
                "log entries (GET /log_entries)",
                self.client.get_json(&self.url("/log_entries"), &query).await,
                &format!("{read_key}; a user token needs a role that can read incident log entries"),
            )
            .0,
        );
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
        if stream != "incidents" {
            return Err(ConnectorError::Config {
                source_name: self.config.name.clone(),
                message: format!("no stream `{stream}`; PagerDuty offers incidents"),
            });
        }
        let mut state: State = state_from_bookmark(bookmark);
        let now = Utc::now();
        let overlap = Duration::minutes(self.config.overlap_minutes);
        let want_from = now - Duration::days(self.config.lookback_days.max(0));
        // A bookmark written before coverage was kept says nothing of how far back its first
        // read reached (the default lookback was 180 days then): its scopes stay unknown, so the
        // backfill below reads the lookback up to the high water once rather than claiming it.
        // A scope no longer configured stops being read: its coverage goes (a configured service
        // covered through `*` keeps that as its own first), so one added again later reads its
        // history anew instead of claiming the months it was away.
        if let Some(covered) = state.scopes.as_mut() {
            let names = self.scope_names();
            if let Some(all) = covered.get(ALL_SERVICES).copied() {
                for name in &names {
                    covered.entry(name.clone()).or_insert(all);
                }
            }
            covered.retain(|scope, _| names.contains(scope));
        }
        let walk = match state.walk.take() {
            Some(w) => w,
            None => {
                let since = state.high_water.map(|h| h - overlap).unwrap_or(want_from);
                // What was open and was created before this range must be re-read by id.
                state.repoll = state
                    .open
                    .iter()
                    .filter(|(_, created)| **created < since)
                    .map(|(id, _)| id.clone())
                    .collect();
                Walk::new(since, now, None)
            }
        };
        let mut next = Some(walk);
        while let Some(walk) = next.take() {
            let scopes = walk.services.clone();
            let since = walk.since;
            let first = state.high_water.is_none();
            self.walk(&mut state, walk, &out).await?;
            match scopes {
                // A backfill completes the history of the scopes it read.
                Some(scopes) => {
                    let covered = state.scopes.get_or_insert_default();
                    for scope in scopes {
                        covered.insert(scope, since);
                    }
                }
                None if first => {
                    // The first read of the stream reaches back `lookback_days` for every scope.
                    let covered = state.scopes.get_or_insert_default();
                    for scope in self.scope_names() {
                        covered.insert(scope, since);
                    }
                }
                None => {}
            }
            next = self.backfill(&state, want_from);
            out.checkpoint(self.with_coverage(&mut state)).await?;
        }
        self.repoll_open(&mut state, &out).await
    }

    /// The scopes the config reads: its service ids, or `*` for every service.
    fn scope_names(&self) -> Vec<String> {
        if self.config.service_ids.is_empty() {
            vec![ALL_SERVICES.to_owned()]
        } else {
            self.config.service_ids.clone()
        }
    }

    /// When one scope's history is complete from: its own backfill, else that of every service.
    fn scope_from(state: &State, scope: &str) -> Option<DateTime<Utc>> {
        let covered = state.scopes.as_ref()?;
        covered.get(scope).or_else(|| covered.get(ALL_SERVICES)).copied()
    }

    /// The read that completes the history of the scopes whose coverage does not reach back to
    /// `want_from` (a raised `lookback_days`, an added service id): from `want_from` up to where
    /// their coverage starts (the high water for a scope never read).
    fn backfill(&self, state: &State, want_from: DateTime<Utc>) -> Option<Walk> {
        let high_water = state.high_water?;
        let mut until: Option<DateTime<Utc>> = None;
        let mut missing = Vec::new();
        for scope in self.scope_names() {
            let from = Self::scope_from(state, &scope);
            if from.is_none_or(|f| f > want_from) {
                let end = from.unwrap_or(high_water);
                until = Some(until.map_or(end, |u| u.max(end)));
                missing.push(scope);
            }
        }
        let until = until?;
        (want_from < until).then(|| Walk::new(want_from, until, Some(missing)))
    }

    /// `state` with `covers_from` brought up to date: the latest instant from which every
    /// configured scope is complete (the high water for a scope not read yet).
    fn with_coverage<'s>(&self, state: &'s mut State) -> &'s State {
        let fallback = state.high_water.unwrap_or_else(Utc::now);
        state.covers_from = self
            .scope_names()
            .iter()
            .map(|scope| Self::scope_from(state, scope).unwrap_or(fallback))
            .max();
        state
    }

    /// Reads one range of incidents window by window, a checkpoint after every page; a regular
    /// read then moves the high water to its end.
    async fn walk(&self, state: &mut State, walk: Walk, out: &Emitter) -> Result<(), ConnectorError> {
        let now = walk.until;
        let services = walk.services.clone();
        let Walk {
            since,
            until,
            mut window_start,
            mut offset,
            last_id: mut last,
            mut rereads,
            ..
        } = walk;
        // Fetched on first need only: a re-sync that finds no incidents costs one request.
        let mut log: Option<Log> = None;
        let window = Duration::days(self.config.window_days.clamp(1, 180));
        let mut window_end = (window_start + window).min(until);
        // Offset paging re-reads on purpose when incidents move, so only the page cap applies.
        let mut pager = self.client.pager("incidents");
        while window_start < until {
            let at = Overlap::at(offset, last.as_deref());
            let mut query = vec![
                ("since", format_utc(window_start)),
                ("until", format_utc(window_end)),
                ("time_zone", "UTC".to_owned()),
                ("sort_by", "created_at:asc".to_owned()),
                ("limit", LIMIT.to_string()),
                ("offset", at.ask.to_string()),
                ("total", (offset == 0).to_string()),
            ];
            let ids = match &services {
                Some(scopes) => scopes.clone(),
                None => self.config.service_ids.clone(),
            };
            for id in ids.into_iter().filter(|id| id != ALL_SERVICES) {
                query.push(("service_ids[]", id));
            }
            pager.count()?;
            let page = self.client.get_json(&self.url("/incidents"), &query).await?;
            let total = page.body.get("total").and_then(Value::as_u64);
            if offset == 0
                && let Some(total) = total
                && usize::try_from(total).unwrap_or(usize::MAX) > OFFSET_CAP
                && window_end - window_start > Duration::hours(1)
            {
                // Too many for one window: halve it and ask again.
                window_end = window_start + (window_end - window_start) / 2;
                continue;
            }
            let items = page
                .body
                .get("incidents")
                .and_then(Value::as_array)
                .ok_or_else(|| ConnectorError::Decode {
                    source_name: self.config.name.clone(),
                    url: page.url.clone(),
                    message: "expected an `incidents` array".into(),
                })?;
            let mut fresh = items.as_slice();
            match at.check(items) {
                Some(true) => fresh = &items[1..],
                Some(false) if rereads < MAX_REREADS => {
                    rereads += 1;
                    tracing::warn!(
                        source = %self.config.name,
                        stream = "incidents",
                        window_start = %format_utc(window_start),
                        window_end = %format_utc(window_end),
                        offset,
                        "Incidents were created or deleted between two pages; reading the window again from its start."
                    );
                    offset = 0;
                    last = None;
                    state.walk = Some(Walk {
                        since,
                        until,
                        window_start,
                        window_end,
                        offset,
                        last_id: None,
                        rereads,
                        services: services.clone(),
                    });
                    out.checkpoint(self.with_coverage(state)).await?;
                    continue;
                }
                Some(false) => tracing::warn!(
                    source = %self.config.name,
                    stream = "incidents",
                    window_start = %format_utc(window_start),
                    window_end = %format_utc(window_end),
                    offset,
                    "Offsets kept moving while the window was read again; reading on, an incident may be missed until the next sync."
                ),
                None => {}
            }
            let needs_acks = fresh
                .iter()
                .any(|i| i.get("status").and_then(Value::as_str) != Some("triggered"));
            if needs_acks && log.is_none() {
                log = Some(self.log(since, Utc::now().max(now)).await?);
            }
            let no_log = Log::default();
            let log_ref = log.as_ref().unwrap_or(&no_log);
            let mut records = Vec::new();
            let mut rejected = Vec::new();
            for raw in fresh {
                if let Some(reason) = crate::lenient::unreadable(raw) {
                    rejected.push(Quarantined::new(&self.config.name, "incidents", raw, reason));
                    continue;
                }
                match self.incident(raw, log_ref) {
                    Ok(incident) => {
                        let vendor_id = incident.id.rsplit(':').next().unwrap_or_default().to_owned();
                        if incident.resolved_at.is_none() {
                            state.open.insert(vendor_id, incident.started_at);
                        } else {
                            state.open.remove(&vendor_id);
                        }
                        records.push(Record::Incident(incident));
                    }
                    Err(reason) => rejected.push(Quarantined::new(
                        &self.config.name,
                        "incidents",
                        raw,
                        QuarantineReason::Message(reason),
                    )),
                }
            }
            let more = page.body.get("more").and_then(Value::as_bool).unwrap_or(false);
            let next_offset = at.ask + items.len();
            out.records(records).await?;
            out.quarantine(rejected).await?;
            if more && !fresh.is_empty() && next_offset - 1 + LIMIT <= OFFSET_CAP {
                offset = next_offset;
                last = last_id(items);
            } else {
                if more {
                    tracing::warn!(
                        source = %self.config.name,
                        window_start = %format_utc(window_start),
                        "A window still had more incidents at PagerDuty's offset cap; lower window_days."
                    );
                }
                window_start = window_end;
                window_end = (window_start + window).min(until);
                offset = 0;
                last = None;
                rereads = 0;
            }
            state.walk = (window_start < until).then(|| Walk {
                since,
                until,
                window_start,
                window_end,
                offset,
                last_id: last.clone(),
                rereads,
                services: services.clone(),
            });
            if state.walk.is_some() {
                out.checkpoint(self.with_coverage(state)).await?;
            }
        }
        if services.is_none() {
            state.high_water = Some(until);
        }
        state.walk = None;
        Ok(())
    }

    /// Re-reads, one request each, the incidents that were open at the previous sync and were
    /// created before this sync's range (the list filters on creation, so it would miss them).
    async fn repoll_open(&self, state: &mut State, out: &Emitter) -> Result<(), ConnectorError> {
        while let Some(id) = state.repoll.last().cloned() {
            let url = self.url(&format!("/incidents/{id}"));
            let found = match self
                .client
                .get_json(&url, &[("time_zone", "UTC".to_owned())])
                .await
            {
                Ok(page) => page.body.get("incident").cloned(),
                // Deleted upstream (or merged into another): stop re-polling it.
                Err(ConnectorError::Status { status: 404, .. }) => None,
                Err(e) => return Err(e),
            };
            match found {
                // Unreadable (a byte that is not UTF-8, nesting too deep): quarantined with its
                // reason, and no longer re-polled — it would come back the same on every sync.
                Some(raw) if crate::lenient::unreadable(&raw).is_some() => {
                    state.open.remove(&id);
                    if let Some(reason) = crate::lenient::unreadable(&raw) {
                        out.quarantine(vec![Quarantined::new(
                            &self.config.name,
                            "incidents",
                            &raw,
                            reason,
                        )])
                        .await?;
                    }
                }
                Some(raw) => {
                    let mut log = Log::default();
                    if raw.get("status").and_then(Value::as_str) != Some("triggered") {
                        log = self.incident_log(&id).await?;
                    }
                    match self.incident(&raw, &log) {
                        Ok(incident) => {
                            if incident.resolved_at.is_some() {
                                state.open.remove(&id);
                            }
                            out.records(vec![Record::Incident(incident)]).await?;
                        }
                        Err(reason) => {
                            state.open.remove(&id);
                            out.quarantine(vec![Quarantined::new(
                                &self.config.name,
                                "incidents",
                                &raw,
                                QuarantineReason::Message(reason),
                            )])
                            .await?;
                        }
                    }
                }
                None => {
                    state.open.remove(&id);
                }
            }
            state.repoll.pop();
            out.checkpoint(&*state).await?;
        }
        Ok(())
    }

    /// First acknowledgement and latest resolution of one incident, from its own log.
    async fn incident_log(&self, id: &str) -> Result<Log, ConnectorError> {
        let url = self.url(&format!("/incidents/{id}/log_entries"));
        let query = [
            ("time_zone", "UTC".to_owned()),
            ("is_overview", "true".to_owned()),
            ("limit", LIMIT.to_string()),
        ];
        let page = self.client.get_json(&url, &query).await?;
        let mut log = Log::default();
        log.read(
            page.body
                .get("log_entries")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        );
        Ok(log)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// First acknowledgement and latest resolution per incident, from the overview log entries
    /// of the range.
    async fn log(&self, since: DateTime<Utc>, until: DateTime<Utc>) -> Result<Log, ConnectorError> {
        let mut log = Log::default();
        let window = Duration::days(self.config.window_days.clamp(1, 180));
        let mut start = since;
        let mut span = window;
        let mut pager = self.client.pager("incidents");
        while start < until {
            let end = (start + span).min(until);
            let mut offset = 0;
            let mut last: Option<String> = None;
            let mut rereads = 0;
            let mut capped = false;
            loop {
                let page_at = Overlap::at(offset, last.as_deref());
                let query = vec![
                    ("since", format_utc(start)),
                    ("until", format_utc(end)),
                    ("time_zone", "UTC".to_owned()),
                    ("is_overview", "true".to_owned()),
                    ("limit", LIMIT.to_string()),
                    ("offset", page_at.ask.to_string()),
                ];
                pager.count()?;
                let page = self.client.get_json(&self.url("/log_entries"), &query).await?;
                let entries = page
                    .body
                    .get("log_entries")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let mut fresh = entries;
                match page_at.check(entries) {
                    Some(true) => fresh = &entries[1..],
                    Some(false) if rereads < MAX_REREADS => {
                        // Earliest-wins merging makes reading entries twice harmless.
                        rereads += 1;
                        tracing::warn!(
                            source = %self.config.name,
                            stream = "incidents",
                            list = "log_entries",
                            window_start = %format_utc(start),
                            window_end = %format_utc(end),
                            offset,
                            "Log entries were added or deleted between two pages; reading the window again from its start."
                        );
                        offset = 0;
                        last = None;
                        continue;
                    }
                    Some(false) => tracing::warn!(
                        source = %self.config.name,
                        stream = "incidents",
                        list = "log_entries",
                        window_start = %format_utc(start),
                        window_end = %format_utc(end),
                        offset,
                        "Offsets kept moving while the log entries were read again; reading on, an acknowledgement may be missed."
                    ),
                    None => {}
                }
                log.read(fresh);
                let more = page.body.get("more").and_then(Value::as_bool).unwrap_or(false);
                offset = page_at.ask + entries.len();
                last = last_id(entries);
                if !more || fresh.is_empty() {
                    break;
                }
                if offset - 1 + LIMIT > OFFSET_CAP {
                    // More entries than PagerDuty pages through in one window: read it again in
                    // halves (what was read merges, earliest wins), as the incident list does.
                    if end - start > Duration::hours(1) {
                        span = (end - start) / 2;
                        capped = true;
                    } else {
                        tracing::warn!(
                            source = %self.config.name,
                            stream = "incidents",
                            list = "log_entries",
                            window_start = %format_utc(start),
                            window_end = %format_utc(end),
                            "An hour of log entries still had more at PagerDuty's offset cap; acknowledgements and resolutions past it are missed."
                        );
                    }
                    break;
                }
            }
            if capped {
                continue;
            }
            start = end;
            span = window;
        }
        Ok(log)
    }

    fn incident(&self, raw: &Value, log: &Log) -> Result<Incident, String> {
        let id = raw
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| unusable("id", raw.get("id"), "text"))?;
        let started_at = raw
            .get("created_at")
            .and_then(Value::as_str)
            .ok_or_else(|| unusable("created_at", raw.get("created_at"), "a timestamp"))
            .map(parse_instant)?
            .map_err(|e| format!("created_at: {e}"))?;
        let status = raw
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| unusable("status", raw.get("status"), "text"))?;
        let last_change = parse_opt_instant(raw.get("last_status_change_at"))
            .map_err(|e| format!("last_status_change_at: {e}"))?;
        // Recorded payloads of resolved incidents can lack `resolved_at`: the resolution is then
        // the latest resolve log entry, else the last status change (the change to resolved).
        let resolved_at = match parse_opt_instant(raw.get("resolved_at"))
            .map_err(|e| format!("resolved_at: {e}"))?
        {
            Some(at) => Some(at),
            None if status == "resolved" => Some(
                log.resolves
                    .get(id)
                    .copied()
                    .or(last_change)
                    .ok_or("status is resolved but resolved_at, a resolve log entry and last_status_change_at are all missing")?,
            ),
            None => None,
        };
        let updated_at = parse_opt_instant(raw.get("updated_at"))
            .map_err(|e| format!("updated_at: {e}"))?
            .or(last_change)
            .unwrap_or(started_at);
        // The record's own acknowledgements list is emptied once the incident resolves: the log
        // entries are the lasting record of who acknowledged first.
        let ack_from_record = raw
            .get("acknowledgements")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .filter_map(|x| {
                        let at = parse_instant(x.get("at").and_then(Value::as_str)?).ok()?;
                        Some(Ack {
                            at,
                            by: person(x, &["/acknowledger/summary"]),
                        })
                    })
                    .min_by_key(|ack| ack.at)
            });
        let ack = log.acks.get(id).cloned().or(ack_from_record);
        let acknowledged_at = ack.as_ref().map(|a| a.at);
        let priority = raw.pointer("/priority/summary").and_then(Value::as_str);
        let urgency = raw.get("urgency").and_then(Value::as_str);
        Ok(Incident {
            acknowledged_by: ack.and_then(|a| a.by),
            // PagerDuty empties `assignments` when an incident resolves: then nobody is assigned.
            assignee: person(raw, &["/assignments/0/assignee/summary"]),
            id: format!("{}:{id}", self.config.name),
            source: self.config.name.clone(),
            number: raw.get("incident_number").and_then(Value::as_i64),
            title: raw
                .get("title")
                .or_else(|| raw.get("summary"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            team_ref: raw
                .pointer("/teams/0/id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            service_ref: raw
                .pointer("/service/id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            service: None,
            team: None,
            severity: self.severity(priority, urgency),
            status: status.to_owned(),
            started_at,
            acknowledged_at,
            resolved_at,
            cause_refs: Vec::new(),
            correlation_id: None,
            updated_at,
        })
    }
}

/// An incident's first acknowledgement: when, and who (the log entry's agent).
#[derive(Debug, Clone, PartialEq)]
struct Ack {
    at: DateTime<Utc>,
    by: Option<String>,
}

impl Ack {
    /// Keeps whichever of the two acknowledgements came first.
    fn keep_earlier(&mut self, other: Ack) {
        if other.at < self.at {
            *self = other;
        }
    }
}

/// What log entries say about incidents: the first acknowledgement and the latest resolution
/// of each.
#[derive(Debug, Default)]
struct Log {
    acks: HashMap<String, Ack>,
    resolves: HashMap<String, DateTime<Utc>>,
}

impl Log {
    /// Merges `entries`: an earlier acknowledgement and a later resolution win, so reading
    /// entries twice is harmless.
    fn read(&mut self, entries: &[Value]) {
        for e in entries {
            let kind = e.get("type").and_then(Value::as_str);
            let (Some(id), Some(Ok(at))) = (
                e.pointer("/incident/id").and_then(Value::as_str),
                e.get("created_at").and_then(Value::as_str).map(parse_instant),
            ) else {
                continue;
            };
            match kind {
                Some("acknowledge_log_entry") => {
                    let ack = Ack {
                        at,
                        by: person(e, &["/agent/summary"]),
                    };
                    let slot = self.acks.entry(id.to_owned()).or_insert_with(|| ack.clone());
                    slot.keep_earlier(ack);
                }
                Some("resolve_log_entry") => {
                    let slot = self.resolves.entry(id.to_owned()).or_insert(at);
                    *slot = (*slot).max(at);
                }
                _ => {}
            }
        }
    }
}

impl PagerDuty {
    /// The priority's severity (configured, else by default), else the urgency's (likewise).
    fn severity(&self, priority: Option<&str>, urgency: Option<&str>) -> Option<Severity> {
        let configured =
            |name: Option<&str>| name.and_then(|n| self.severities.get(&n.to_lowercase()).copied());
        configured(priority)
            .or_else(|| severity(priority, None))
            .or_else(|| configured(urgency))
            .or_else(|| severity(None, urgency))
    }
}

/// Priority wins (P1…P5); without one, high urgency is an outage-grade sev2 and low is sev4.
fn severity(priority: Option<&str>, urgency: Option<&str>) -> Option<Severity> {
    match priority.map(str::to_ascii_uppercase).as_deref() {
        Some("P1") => Some(Severity::Sev1),
        Some("P2") => Some(Severity::Sev2),
        Some("P3") => Some(Severity::Sev3),
        Some("P4" | "P5") => Some(Severity::Sev4),
        _ => match urgency {
            Some("high") => Some(Severity::Sev2),
            Some("low") => Some(Severity::Sev4),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests;
