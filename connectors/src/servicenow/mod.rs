//! ServiceNow Table API: the `incident` table as incidents (and as ITSM tickets), the
//! `change_request` table as change requests.
//!
//! Each stream is one scan of its table by `sys_updated_on` (ascending, `sys_id` as tie-breaker)
//! from the bookmark minus an overlap, following `Link: rel="next"` as given. The limit is applied
//! before ACLs, so a page can come back short or empty while more rows exist: only the absence of
//! `rel="next"` ends a scan. API v1 answers "no rows" with a 404 `No Record found`, which is an
//! empty result here; any other 404 is an error. Offsets shift when a record already read changes
//! mid-scan (it jumps to the end, every later row moves up one and one row is skipped): a record
//! seen twice in one scan reveals that, and the scan is read once more from its start. Records
//! left open at one sync (incidents not resolved, change requests not closed) are re-read at the
//! next by `sys_idIN…`.
//!
//! Timestamps in queries are written in UTC and ServiceNow reads them in the integration user's
//! time zone: that user must be set to UTC (System Administration → Users → Time zone), or
//! `overlap_minutes` must exceed the offset. Records are read with `sysparm_display_value=false`,
//! so every value is a string, dates are UTC `YYYY-MM-DD HH:MM:SS` and `""` means empty.
//! Mapping `cmdb_ci` to services happens in the runner, not here.
//!
//! Each stream remembers the query it read and from when its history is complete: a raised
//! `lookback_days` or a changed query reads the older range (`sys_updated_on<…`) after the
//! regular scan, and `covers_from` moves only once it is done.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{CheckOutcome, Emitter, EndpointCheck, StreamDef, first_failure, state_from_bookmark};
use crate::error::ConnectorError;
use crate::http::{Auth, HttpClient, JsonPage, RetryPolicy};
use crate::model::QuarantineReason;
use crate::model::{ChangeRequest, Incident, Quarantined, Record, Severity, Ticket};
use crate::people::person;
use crate::secret::SecretEnv;
use crate::time::{parse_instant, parse_opt_instant};

#[cfg(test)]
mod tests;

/// The largest `sysparm_limit` ServiceNow serves by default.
const MAX_PAGE: usize = 10_000;
/// Open records re-read per `sys_idIN…` request: 50 sys_ids keep the URL under 2 KB.
const REPOLL_CHUNK: usize = 50;

const INCIDENT_FIELDS: &str = "sys_id,number,short_description,state,priority,opened_at,work_start,\
resolved_at,closed_at,sys_updated_on,cmdb_ci,caused_by,caused_by.number,correlation_id,assigned_to.name,opened_by.name";
const CHANGE_FIELDS: &str = "sys_id,number,short_description,type,state,approval,start_date,end_date,\
work_start,work_end,closed_at,close_code,cmdb_ci,opened_at,sys_created_on,sys_updated_on,\
requested_by.name,assigned_to.name";

/// `[[source]] kind = "servicenow"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNowConfig {
    /// Source name, unique in the config (used in bookmarks and record ids).
    pub name: String,
    /// Instance root, `https://acme.service-now.com`.
    pub base_url: String,
    /// Integration user for Basic auth (with `password_env`).
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the user's password (Basic auth).
    #[serde(default)]
    pub password_env: Option<String>,
    /// Environment variable holding an OAuth access token (Bearer), instead of user and password.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Table API version: `v2` (default; no rows is `200 []`) or `v1` (no rows is a 404).
    #[serde(default)]
    pub api_version: ApiVersion,
    /// Rows per request (`sysparm_limit`), 1 to 10,000.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// How far each incremental scan reaches back past the bookmark, in minutes.
    #[serde(default = "default_overlap")]
    pub overlap_minutes: i64,
    /// Keep records updated this many days back. Raising it (or changing a stream's query)
    /// reads the missing history at the next sync.
    #[serde(default = "default_lookback")]
    pub lookback_days: i64,
    /// Extra encoded-query filter for incidents (`assignment_group=…^active=true`), ANDed in.
    #[serde(default)]
    pub incident_query: Option<String>,
    /// Extra encoded-query filter for change requests, ANDed in.
    #[serde(default)]
    pub change_query: Option<String>,
    /// Values of a change request's `approval` that mean approved (case-insensitive); any other
    /// value is not approved, and an empty or unreadable field leaves approval unknown.
    #[serde(default = "default_approved_states")]
    pub approved_states: Vec<String>,
    /// The name an incident priority (`1`–`5`) is stored under, so it meets the names of
    /// `[metrics] sla_hours` (`{ "1" = "P1", "2" = "P2" }`); unlisted priorities keep their number.
    #[serde(default)]
    pub priorities: BTreeMap<String, String>,
}

/// Table API version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    /// `/api/now/table/{table}`.
    V1,
    /// `/api/now/v2/table/{table}`.
    #[default]
    V2,
}

fn default_page_size() -> usize {
    1000
}
fn default_overlap() -> i64 {
    10
}
fn default_lookback() -> i64 {
    365
}
fn default_approved_states() -> Vec<String> {
    vec!["approved".into()]
}

const STREAMS: &[StreamDef] = &[
    StreamDef {
        name: "incidents",
        table: "incidents",
        primary_key: "id",
        cursor_field: "updated_at",
    },
    StreamDef {
        name: "change_requests",
        table: "change_requests",
        primary_key: "id",
        cursor_field: "updated_at",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Incidents,
    ChangeRequests,
}

impl Kind {
    fn stream(self) -> &'static str {
        match self {
            Self::Incidents => "incidents",
            Self::ChangeRequests => "change_requests",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Self::Incidents => "incident",
            Self::ChangeRequests => "change_request",
        }
    }

    fn fields(self) -> &'static str {
        match self {
            Self::Incidents => INCIDENT_FIELDS,
            Self::ChangeRequests => CHANGE_FIELDS,
        }
    }
}

/// Bookmark of one stream.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Newest `sys_updated_on` of the last completed scan.
    high_water: Option<DateTime<Utc>>,
    /// A scan in progress: where to resume.
    scan: Option<Scan>,
    /// sys_ids of records seen open: re-read at the next sync.
    #[serde(default)]
    open: BTreeSet<String>,
    /// The filter and the instant from which every record it selects is read, up to
    /// `high_water` (absent in bookmarks written before coverage was kept).
    #[serde(default)]
    covered: Option<Coverage>,
    /// [`crate::contract::COVERS_FROM`]: `covered.from` while the filter is the configured one.
    #[serde(default)]
    covers_from: Option<DateTime<Utc>>,
}

/// What a stream's history is complete for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Coverage {
    /// The stream's configured extra query (`""` for none).
    query: String,
    /// Records updated from this instant on are all read.
    from: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Scan {
    /// Lower bound on `sys_updated_on` (none: the whole table).
    since: Option<DateTime<Utc>>,
    /// Upper bound (exclusive) of a backfill, which leaves the high water alone.
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    /// Offset of the next page.
    offset: usize,
    /// Newest `sys_updated_on` read so far in this scan.
    high_water: Option<DateTime<Utc>>,
    /// 0 for the first pass, 1 when re-reading because offsets shifted.
    #[serde(default)]
    pass: u8,
}

/// The ServiceNow connector.
#[derive(Debug, Clone)]
pub struct ServiceNow {
    config: ServiceNowConfig,
    client: HttpClient,
}

/// Query parameters of a list request.
type Query = Vec<(&'static str, String)>;

/// Where the next page of a scan is.
struct NextPage {
    url: String,
    /// Empty when `url` is a `rel="next"` link, which carries its own query.
    query: Query,
    offset: usize,
}

/// What one page of rows became.
struct Mapped {
    records: Vec<Record>,
    rejected: Vec<Quarantined>,
    /// sys_id and `sys_updated_on` of every row that had them, mapped or not.
    rows: Vec<(String, Option<DateTime<Utc>>)>,
}

impl ServiceNow {
    /// Builds the connector; fails on an auth setup that is not exactly one of user + password or
    /// token, on a missing secret, and on filters that would break the incremental query.
    pub fn new(
        config: ServiceNowConfig,
        env: &SecretEnv,
        policy: RetryPolicy,
    ) -> Result<Self, ConnectorError> {
        let name = config.name.clone();
        let config_err = |message: String| ConnectorError::Config {
            source_name: name.clone(),
            message,
        };
        if !(config.base_url.starts_with("https://") || config.base_url.starts_with("http://")) {
            return Err(config_err(format!(
                "`base_url` must be the instance URL, like https://acme.service-now.com (found {:?})",
                config.base_url
            )));
        }
        if !(1..=MAX_PAGE).contains(&config.page_size) {
            return Err(config_err(format!(
                "`page_size` must be between 1 and {MAX_PAGE} (found {})",
                config.page_size
            )));
        }
        if config.overlap_minutes < 0 {
            return Err(config_err("`overlap_minutes` must not be negative".into()));
        }
        for (key, q) in [
            ("incident_query", &config.incident_query),
            ("change_query", &config.change_query),
        ] {
            if let Some(q) = q
                && (q.contains("^NQ") || q.contains("ORDERBY"))
            {
                return Err(config_err(format!(
                    "`{key}` may not contain ^NQ or ORDERBY: tandem ANDs it with its own \
                     `sys_updated_on>=…^ORDERBYsys_updated_on`, which either would undo"
                )));
            }
        }
        let (auth, hint) = match (&config.password_env, &config.token_env) {
            (Some(var), None) => {
                let user = config
                    .user
                    .clone()
                    .filter(|u| !u.trim().is_empty())
                    .ok_or_else(|| {
                        config_err("`password_env` needs `user`, the integration user name".into())
                    })?;
                let secret = env.get(var, &format!("source.{}.password_env", config.name))?;
                let hint = format!(
                    "check the user `{user}` and the password in ${var}, and that the user's roles and \
                     ACLs allow reading the incident and change_request tables"
                );
                (Auth::Basic { user, secret }, hint)
            }
            (None, Some(var)) => {
                let secret = env.get(var, &format!("source.{}.token_env", config.name))?;
                let hint = format!(
                    "check that the OAuth access token in ${var} is valid and not expired, and that its \
                     user may read the incident and change_request tables"
                );
                (Auth::Bearer(secret), hint)
            }
            _ => {
                return Err(config_err(
                    "set exactly one of `password_env` (Basic auth, with `user`) or `token_env` \
                     (an OAuth Bearer token)"
                        .into(),
                ));
            }
        };
        let client = HttpClient::new(
            &config.name,
            &config.base_url,
            &auth,
            &[("accept", "application/json")],
            hint,
            policy,
        )?;
        Ok(Self { config, client })
    }

    /// The streams offered.
    pub fn streams(&self) -> &'static [StreamDef] {
        STREAMS
    }

    /// One cheap request per table: the credentials work and the tables are readable.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        first_failure(self.check_endpoints().await)
    }

    /// One cheap request per table a sync reads, with the query and `sysparm_fields` the sync
    /// sends: a refused table fails; fields missing from the answer (hidden by field ACLs) are a
    /// warning naming them.
    pub async fn check_endpoints(&self) -> Vec<EndpointCheck> {
        let mut checks = Vec::new();
        for kind in [Kind::Incidents, Kind::ChangeRequests] {
            let mut query = self.scan_query(kind, None, None);
            for (name, value) in &mut query {
                if *name == "sysparm_limit" {
                    *value = "1".to_owned();
                }
            }
            let table = kind.table();
            let (mut check, page) = EndpointCheck::of(
                format!("table {table} (GET /api/now/table/{table})"),
                self.fetch(&self.table_url(kind), &query).await,
                &format!(
                    "give the integration user the itil role or a read ACL on {table} and its fields {}",
                    kind.fields()
                ),
            );
            let first = page.flatten().and_then(|p| {
                p.body
                    .get("result")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first().cloned())
            });
            if let Some(Value::Object(record)) = first {
                let hidden: Vec<&str> = kind
                    .fields()
                    .split(',')
                    .filter(|f| !record.contains_key(*f))
                    .collect();
                if !hidden.is_empty() {
                    check.outcome = CheckOutcome::Warning(format!(
                        "the answer lacks the fields {}: field ACLs hide them from the integration user, and records will be read without them; grant read on them",
                        hidden.join(", ")
                    ));
                }
            }
            let refused = check.failed() && checks.is_empty() && check_is_auth(&check);
            checks.push(check);
            if refused {
                break;
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
            "incidents" => Kind::Incidents,
            "change_requests" => Kind::ChangeRequests,
            other => {
                return Err(ConnectorError::Config {
                    source_name: self.config.name.clone(),
                    message: format!("no stream `{other}`; ServiceNow offers incidents, change_requests"),
                });
            }
        };
        let mut state: State = state_from_bookmark(bookmark);
        let mut unknown = Unknowns::default();
        let mut seen = HashSet::new();
        let now = Utc::now();
        let want_from = now - Duration::days(self.config.lookback_days.max(0));
        let query = self.extra_query(kind).unwrap_or_default();
        // A bookmark written before coverage was kept is taken as complete over the lookback,
        // as the runner takes it, so an upgrade reads nothing twice.
        if state.covered.is_none() && state.high_water.is_some() {
            state.covered = Some(Coverage {
                query: query.clone(),
                from: want_from,
            });
        }
        self.note_coverage(&mut state, &query);
        let mut next = Some(match state.scan.take() {
            Some(scan) => scan,
            None => Scan {
                since: Some(
                    state
                        .high_water
                        .map(|h| h - Duration::minutes(self.config.overlap_minutes))
                        .unwrap_or(want_from),
                ),
                until: None,
                offset: 0,
                high_water: None,
                pass: 0,
            },
        });
        while let Some(scan) = next.take() {
            let first = state.high_water.is_none();
            let (since, backfill) = (scan.since, scan.until.is_some());
            let complete = self
                .scan(kind, scan, &mut state, &mut seen, &mut unknown, &out)
                .await?;
            if complete
                && (backfill || first)
                && let Some(from) = since
            {
                state.covered = Some(Coverage {
                    query: query.clone(),
                    from,
                });
            }
            // A scan that kept shifting is read again at the next sync rather than looped on.
            next = complete
                .then(|| self.backfill(&state, &query, want_from))
                .flatten();
            self.note_coverage(&mut state, &query);
            out.checkpoint(&state).await?;
        }
        self.repoll(kind, &mut state, &seen, &mut unknown, &out).await
    }

    /// The stream's configured extra query, trimmed; `None` when there is none.
    fn extra_query(&self, kind: Kind) -> Option<String> {
        let extra = match kind {
            Kind::Incidents => self.config.incident_query.as_deref(),
            Kind::ChangeRequests => self.config.change_query.as_deref(),
        };
        extra
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(|q| q.trim_matches('^').to_owned())
    }

    /// The scan that completes the history of the configured query back to `want_from`: from
    /// there up to where its coverage starts (the high water when the query changed).
    fn backfill(&self, state: &State, query: &str, want_from: DateTime<Utc>) -> Option<Scan> {
        let high_water = state.high_water?;
        let until = match &state.covered {
            Some(c) if c.query == query => c.from,
            _ => high_water,
        };
        (want_from < until).then_some(Scan {
            since: Some(want_from),
            until: Some(until),
            offset: 0,
            high_water: None,
            pass: 0,
        })
    }

    /// Sets `covers_from`: where the configured query's history starts, the high water (or now)
    /// when nothing is covered for it yet.
    fn note_coverage(&self, state: &mut State, query: &str) {
        state.covers_from = Some(match &state.covered {
            Some(c) if c.query == query => c.from,
            _ => state.high_water.unwrap_or_else(Utc::now),
        });
    }

    fn table_url(&self, kind: Kind) -> String {
        let base = self.config.base_url.trim_end_matches('/');
        match self.config.api_version {
            ApiVersion::V1 => format!("{base}/api/now/table/{}", kind.table()),
            ApiVersion::V2 => format!("{base}/api/now/v2/table/{}", kind.table()),
        }
    }

    /// The parameters every list request sends, with `encoded` as `sysparm_query`.
    fn list_query(&self, kind: Kind, encoded: String, limit: usize) -> Query {
        vec![
            ("sysparm_query", encoded),
            ("sysparm_fields", kind.fields().to_owned()),
            ("sysparm_display_value", "false".to_owned()),
            ("sysparm_exclude_reference_link", "true".to_owned()),
            ("sysparm_no_count", "true".to_owned()),
            ("sysparm_limit", limit.to_string()),
        ]
    }

    fn scan_query(&self, kind: Kind, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Query {
        let mut parts: Vec<String> = self.extra_query(kind).into_iter().collect();
        if let Some(since) = since {
            parts.push(format!("sys_updated_on>={}", since.format("%Y-%m-%d %H:%M:%S")));
        }
        if let Some(until) = until {
            parts.push(format!("sys_updated_on<{}", until.format("%Y-%m-%d %H:%M:%S")));
        }
        parts.push("ORDERBYsys_updated_on^ORDERBYsys_id".to_owned());
        self.list_query(kind, parts.join("^"), self.config.page_size)
    }

    /// Runs one scan of the table (the regular one past the high water, a backfill, or one in
    /// progress), a checkpoint after every page; records every sys_id read in `seen`. Whether
    /// the range was read whole (offsets did not keep shifting).
    async fn scan(
        &self,
        kind: Kind,
        scan: Scan,
        state: &mut State,
        seen: &mut HashSet<String>,
        unknown: &mut Unknowns,
        out: &Emitter,
    ) -> Result<bool, ConnectorError> {
        let Scan {
            since,
            until,
            mut offset,
            mut high_water,
            mut pass,
        } = scan;
        let base_query = self.scan_query(kind, since, until);
        let table_url = self.table_url(kind);
        // Offsets already must move forward (`next_page`); the page cap bounds the rest.
        let mut pager = self.client.pager(kind.stream());
        loop {
            let mut this_pass: HashSet<String> = HashSet::new();
            let mut moved = 0usize;
            let mut url = table_url.clone();
            let mut query = with_offset(&base_query, offset);
            loop {
                pager.count()?;
                let Some(page) = self.fetch(&url, &query).await? else {
                    break;
                };
                let mapped = self.map_page(kind, &page, state, unknown)?;
                for (id, updated) in mapped.rows {
                    high_water = high_water.max(updated);
                    if !this_pass.insert(id.clone()) {
                        moved += 1;
                    }
                    seen.insert(id);
                }
                out.records(mapped.records).await?;
                out.quarantine(mapped.rejected).await?;
                match self.next_page(&page, offset, &table_url, &base_query)? {
                    Some(next) => {
                        offset = next.offset;
                        state.scan = Some(Scan {
                            since,
                            until,
                            offset,
                            high_water,
                            pass,
                        });
                        out.checkpoint(&*state).await?;
                        url = next.url;
                        query = next.query;
                    }
                    None => break,
                }
            }
            if moved == 0 {
                if until.is_none() {
                    state.high_water = state.high_water.max(high_water);
                }
                state.scan = None;
                return Ok(true);
            }
            if pass == 0 {
                tracing::warn!(
                    source = %self.config.name,
                    stream = kind.stream(),
                    moved,
                    "Records changed during the scan and shifted the offsets; reading the range once more."
                );
                pass = 1;
                offset = 0;
                state.scan = Some(Scan {
                    since,
                    until,
                    offset,
                    high_water,
                    pass,
                });
                out.checkpoint(&*state).await?;
                continue;
            }
            // Still shifting: keep the old bookmark so the next sync reads this range again.
            tracing::warn!(
                source = %self.config.name,
                stream = kind.stream(),
                moved,
                "Records kept changing during the re-read; the next sync reads the same range again."
            );
            break;
        }
        state.scan = None;
        Ok(false)
    }

    /// Re-reads records that were open at an earlier sync and were not read by this scan.
    async fn repoll(
        &self,
        kind: Kind,
        state: &mut State,
        seen: &HashSet<String>,
        unknown: &mut Unknowns,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        let pending: Vec<String> = state
            .open
            .iter()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        let table_url = self.table_url(kind);
        let mut pager = self.client.pager(kind.stream());
        for chunk in pending.chunks(REPOLL_CHUNK) {
            let encoded = format!("sys_idIN{}^ORDERBYsys_updated_on^ORDERBYsys_id", chunk.join(","));
            // One more than the ids asked for: a complete answer is then never a full page, which
            // without a count would invite an empty follow-up request.
            let base_query = self.list_query(kind, encoded, chunk.len() + 1);
            let mut offset = 0;
            let mut url = table_url.clone();
            let mut query = with_offset(&base_query, offset);
            let mut found = HashSet::new();
            loop {
                pager.count()?;
                let Some(page) = self.fetch(&url, &query).await? else {
                    break;
                };
                let mapped = self.map_page(kind, &page, state, unknown)?;
                found.extend(mapped.rows.into_iter().map(|(id, _)| id));
                out.records(mapped.records).await?;
                out.quarantine(mapped.rejected).await?;
                match self.next_page(&page, offset, &table_url, &base_query)? {
                    Some(next) => {
                        offset = next.offset;
                        url = next.url;
                        query = next.query;
                    }
                    None => break,
                }
            }
            let gone: Vec<&String> = chunk.iter().filter(|id| !found.contains(*id)).collect();
            if !gone.is_empty() {
                // Deleted, or no longer readable by the integration user: nothing left to re-poll.
                tracing::info!(
                    source = %self.config.name,
                    stream = kind.stream(),
                    count = gone.len(),
                    "Open records no longer returned; they will not be re-polled."
                );
                for id in gone {
                    state.open.remove(id);
                }
            }
            out.checkpoint(&*state).await?;
        }
        Ok(())
    }

    /// GETs a list page; v1's 404 `No Record found` is an empty result (`None`).
    async fn fetch(&self, url: &str, query: &[(&str, String)]) -> Result<Option<JsonPage>, ConnectorError> {
        match self.client.get_json(url, query).await {
            Ok(page) => Ok(Some(page)),
            Err(ConnectorError::Status {
                status: 404, body, ..
            }) if is_no_record(&body) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Where the next page is: the `rel="next"` link as given. A Link header that names `next`
    /// but that the shared parser cannot split (a raw comma inside a URL) pages on by offset, so
    /// a scan never stops early.
    fn next_page(
        &self,
        page: &JsonPage,
        offset: usize,
        table_url: &str,
        base_query: &[(&'static str, String)],
    ) -> Result<Option<NextPage>, ConnectorError> {
        let limit = base_query
            .iter()
            .find(|(k, _)| *k == "sysparm_limit")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(self.config.page_size);
        if let Some(next) = page.link("next") {
            let next_offset = offset_in(&next).unwrap_or(offset + limit);
            if next_offset <= offset {
                return Err(ConnectorError::Decode {
                    source_name: self.config.name.clone(),
                    url: page.url.clone(),
                    message: format!("the rel=\"next\" link does not move past offset {offset}: {next}"),
                });
            }
            return Ok(Some(NextPage {
                url: next,
                query: Vec::new(),
                offset: next_offset,
            }));
        }
        if page.header("link").is_some_and(|h| h.contains("rel=\"next\"")) {
            tracing::warn!(
                source = %self.config.name,
                url = %page.url,
                "Could not read the next link of the Link header; paging on by offset."
            );
            let next_offset = offset + limit;
            return Ok(Some(NextPage {
                url: table_url.to_owned(),
                query: with_offset(base_query, next_offset),
                offset: next_offset,
            }));
        }
        Ok(None)
    }

    /// Maps one page's rows; keeps `state.open` in step with what each record says.
    fn map_page(
        &self,
        kind: Kind,
        page: &JsonPage,
        state: &mut State,
        unknown: &mut Unknowns,
    ) -> Result<Mapped, ConnectorError> {
        let rows =
            page.body
                .get("result")
                .and_then(Value::as_array)
                .ok_or_else(|| ConnectorError::Decode {
                    source_name: self.config.name.clone(),
                    url: page.url.clone(),
                    message: "expected {\"result\":[…]}".into(),
                })?;
        let mut mapped = Mapped {
            records: Vec::new(),
            rejected: Vec::new(),
            rows: Vec::new(),
        };
        for raw in rows {
            if let Some(id) = raw
                .get("sys_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                let updated = raw
                    .get("sys_updated_on")
                    .and_then(Value::as_str)
                    .and_then(|s| parse_instant(s).ok());
                mapped.rows.push((id.to_owned(), updated));
            }
            if let Some(reason) = crate::lenient::unreadable(raw) {
                // Quarantined with its reason; an open record re-polled by id would come back
                // unreadable on every sync, so it leaves the re-poll list (a later change to it
                // reaches the regular scan).
                if let Some(id) = raw.get("sys_id").and_then(Value::as_str) {
                    state.open.remove(id);
                }
                mapped
                    .rejected
                    .push(Quarantined::new(&self.config.name, kind.stream(), raw, reason));
                continue;
            }
            let result = match kind {
                Kind::Incidents => self.incident(raw, unknown).map(|(incident, ticket, open)| {
                    (vec![Record::Incident(incident), Record::Ticket(ticket)], open)
                }),
                Kind::ChangeRequests => self
                    .change_request(raw, unknown)
                    .map(|(change, open)| (vec![Record::ChangeRequest(change)], open)),
            };
            match result {
                Ok((records, open)) => {
                    if let Some(id) = raw.get("sys_id").and_then(Value::as_str) {
                        if open {
                            state.open.insert(id.to_owned());
                        } else {
                            state.open.remove(id);
                        }
                    }
                    mapped.records.extend(records);
                }
                Err(reason) => mapped.rejected.push(Quarantined::new(
                    &self.config.name,
                    kind.stream(),
                    raw,
                    QuarantineReason::Message(reason),
                )),
            }
        }
        Ok(mapped)
    }

    /// An incident row as an incident and a ticket, and whether it is still open.
    fn incident(&self, raw: &Value, unknown: &mut Unknowns) -> Result<(Incident, Ticket, bool), String> {
        let sys_id = required(raw, "sys_id")?;
        let number = text(raw, "number")?;
        let state = text(raw, "state")?;
        let priority = text(raw, "priority")?;
        let title = text(raw, "short_description")?.to_owned();
        let started_at = time(raw, "opened_at")?.ok_or("missing opened_at")?;
        let updated_at = time(raw, "sys_updated_on")?.ok_or("missing sys_updated_on")?;
        let resolved = time(raw, "resolved_at")?;
        let closed = time(raw, "closed_at")?;
        // ServiceNow has no acknowledgement: `work_start` (when work began) is the closest field,
        // empty on most instances.
        let acknowledged_at = time(raw, "work_start")?;
        let service_ref = reference(raw, "cmdb_ci")?;
        let mut cause_refs = Vec::new();
        for r in [
            reference(raw, "caused_by")?,
            non_empty(text(raw, "caused_by.number")?),
        ]
        .into_iter()
        .flatten()
        {
            if !cause_refs.contains(&r) {
                cause_refs.push(r);
            }
        }
        let label = incident_state(state);
        let resolved_at = match state {
            "1" | "2" | "3" => None,
            "6" | "7" => resolved.or(closed),
            // A cancelled incident has no resolution time; without one it would count as an
            // outage that never ends, so it ends when it was cancelled (its last update).
            "8" => resolved.or(closed).or(Some(updated_at)),
            _ => resolved.or(closed),
        };
        let status = match label {
            Some(l) => l.to_owned(),
            None => {
                unknown.note(&self.config.name, "incidents", "state", state);
                if state.is_empty() {
                    "unknown".to_owned()
                } else {
                    state.to_owned()
                }
            }
        };
        let status_category = match state {
            "1" => "new",
            "2" | "3" => "indeterminate",
            "6" | "7" | "8" => "done",
            _ if resolved_at.is_some() => "done",
            _ => "indeterminate",
        };
        let severity = match priority {
            "1" => Some(Severity::Sev1),
            "2" => Some(Severity::Sev2),
            "3" => Some(Severity::Sev3),
            "4" | "5" => Some(Severity::Sev4),
            "" => None,
            other => {
                unknown.note(&self.config.name, "incidents", "priority", other);
                None
            }
        };
        // People are `sys_user` references; the dot-walked `.name` is the user's display name.
        // They are optional: an odd value is nobody, not a reason to quarantine the incident.
        let assignee = person(raw, &["/assigned_to.name"]);
        let key = if number.is_empty() { sys_id } else { number };
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        let incident = Incident {
            // `work_start` records no person: nobody is known to have acknowledged.
            acknowledged_by: None,
            assignee: assignee.clone(),
            id: format!("{}:{sys_id}", self.config.name),
            source: self.config.name.clone(),
            number: digits.parse().ok(),
            title: title.clone(),
            service_ref: service_ref.clone(),
            team_ref: None,
            service: None,
            team: None,
            severity,
            status: status.clone(),
            started_at,
            acknowledged_at,
            resolved_at,
            cause_refs,
            // Set by integrations that open the incident from another system (PagerDuty's puts
            // its incident id there): how tandem knows the two are one outage.
            correlation_id: non_empty(text(raw, "correlation_id")?),
            updated_at,
        };
        let ticket = Ticket {
            assignee,
            reporter: person(raw, &["/opened_by.name"]),
            id: format!("{}:{key}", self.config.name),
            source: self.config.name.clone(),
            key: key.to_owned(),
            project: "incident".into(),
            service_ref,
            service: None,
            team: None,
            category: "incident".into(),
            issue_type: "incident".into(),
            title,
            priority: non_empty(priority).map(|p| self.config.priorities.get(&p).cloned().unwrap_or(p)),
            status,
            status_category: status_category.into(),
            labels: Vec::new(),
            created_at: started_at,
            resolved_at,
            updated_at,
        };
        Ok((incident, ticket, status_category != "done"))
    }

    /// A change_request row, and whether it is still open.
    fn change_request(&self, raw: &Value, unknown: &mut Unknowns) -> Result<(ChangeRequest, bool), String> {
        let sys_id = required(raw, "sys_id")?;
        let state = text(raw, "state")?;
        let change_type = match text(raw, "type")? {
            t @ ("standard" | "normal" | "emergency") => Some(t.to_owned()),
            "" => None,
            other => {
                unknown.note(&self.config.name, "change_requests", "type", other);
                None
            }
        };
        let close_code = match text(raw, "close_code")? {
            c @ ("successful" | "successful_issues" | "unsuccessful") => Some(c.to_owned()),
            "" => None,
            other => {
                unknown.note(&self.config.name, "change_requests", "close_code", other);
                None
            }
        };
        let closed_at = time(raw, "closed_at")?;
        let state_name = match change_state(state) {
            Some(l) => l.to_owned(),
            None => {
                unknown.note(&self.config.name, "change_requests", "state", state);
                if state.is_empty() {
                    "unknown".to_owned()
                } else {
                    state.to_owned()
                }
            }
        };
        let open = match state {
            "3" | "4" => false,
            s if change_state(s).is_some() => true,
            _ => closed_at.is_none(),
        };
        let created_at = match time(raw, "opened_at")? {
            Some(t) => t,
            None => time(raw, "sys_created_on")?.ok_or("missing opened_at and sys_created_on")?,
        };
        let change = ChangeRequest {
            assigned_to: person(raw, &["/assigned_to.name"]),
            requested_by: person(raw, &["/requested_by.name"]),
            id: format!("{}:{sys_id}", self.config.name),
            source: self.config.name.clone(),
            number: text(raw, "number")?.to_owned(),
            title: text(raw, "short_description")?.to_owned(),
            service_ref: reference(raw, "cmdb_ci")?,
            service: None,
            team: None,
            change_type,
            state: state_name,
            approved: match raw.get("approval") {
                // Left out of the answer: an ACL hides the field, or the instance has none.
                None => {
                    unknown.missing(
                        &self.config.name,
                        "change_requests",
                        "approval",
                        "every deployment counts as without a change record until it is readable: give the \
                         integration user read access to change_request.approval (an ACL on the field)",
                    );
                    None
                }
                Some(_) => match text(raw, "approval")? {
                    "" => None,
                    a => Some(
                        self.config
                            .approved_states
                            .iter()
                            .any(|s| s.eq_ignore_ascii_case(a)),
                    ),
                },
            },
            planned_start: time(raw, "start_date")?,
            planned_end: time(raw, "end_date")?,
            actual_start: time(raw, "work_start")?,
            actual_end: time(raw, "work_end")?,
            closed_at,
            close_code,
            created_at,
            updated_at: time(raw, "sys_updated_on")?.ok_or("missing sys_updated_on")?,
        };
        Ok((change, open))
    }
}

/// Unknown choice values (customised choice lists) and fields left out of the answers, each
/// logged once per read.
#[derive(Debug, Default)]
struct Unknowns {
    /// Unknown values, by field.
    values: HashSet<(&'static str, String)>,
    /// Fields left out.
    missing: HashSet<&'static str>,
}

impl Unknowns {
    /// A field the answers leave out (`what` says what that costs and what to do).
    fn missing(&mut self, source: &str, stream: &str, field: &'static str, what: &str) {
        if self.missing.insert(field) {
            tracing::warn!(
                source,
                stream,
                field,
                "ServiceNow answers without the `{field}` field; {what}."
            );
        }
    }

    fn note(&mut self, source: &str, stream: &str, field: &'static str, value: &str) {
        if self.values.insert((field, value.to_owned())) {
            tracing::warn!(
                source,
                stream,
                field,
                value,
                "Unknown choice value (a customised choice list?); stored as null."
            );
        }
    }
}

/// `query` with `sysparm_offset` appended.
fn with_offset(query: &[(&'static str, String)], offset: usize) -> Query {
    let mut q = query.to_vec();
    q.push(("sysparm_offset", offset.to_string()));
    q
}

/// The `sysparm_offset` of a next link.
fn offset_in(url: &str) -> Option<usize> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "sysparm_offset").then(|| v.parse().ok()).flatten()
    })
}

/// Whether a 404 body is the Table API's "no rows" answer rather than a wrong URL or table.
fn is_no_record(body: &str) -> bool {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => v.pointer("/error/message").and_then(Value::as_str) == Some("No Record found"),
        // The quoted body may be cut short; the message comes first, so look for it as text.
        Err(_) => body.contains(r#""message":"No Record found""#),
    }
}

fn incident_state(state: &str) -> Option<&'static str> {
    Some(match state {
        "1" => "New",
        "2" => "In Progress",
        "3" => "On Hold",
        "6" => "Resolved",
        "7" => "Closed",
        "8" => "Canceled",
        _ => return None,
    })
}

fn change_state(state: &str) -> Option<&'static str> {
    Some(match state {
        "-5" => "New",
        "-4" => "Assess",
        "-3" => "Authorize",
        "-2" => "Scheduled",
        "-1" => "Implement",
        "0" => "Review",
        "3" => "Closed",
        "4" => "Canceled",
        _ => return None,
    })
}

/// A text field: missing, null and `""` are `""`; anything but a string is a wrong type.
fn text<'a>(raw: &'a Value, field: &str) -> Result<&'a str, String> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => Err(format!("{field}: expected a string, found {other}")),
    }
}

fn required<'a>(raw: &'a Value, field: &str) -> Result<&'a str, String> {
    match text(raw, field)? {
        "" => Err(format!("missing {field}")),
        s => Ok(s),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_owned())
}

fn time(raw: &Value, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    parse_opt_instant(raw.get(field)).map_err(|e| format!("{field}: {e}"))
}

/// Whether a check failed on the credentials themselves (then the next table would fail alike).
fn check_is_auth(check: &EndpointCheck) -> bool {
    matches!(&check.outcome, CheckOutcome::Failed { error, .. } if error.is_auth())
}

/// A reference in any of its three shapes: `{"link":…,"value":…}`, a plain sys_id, or `""`.
fn reference(raw: &Value, field: &str) -> Result<Option<String>, String> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(non_empty(s)),
        Some(Value::Object(o)) => match o.get("value") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(non_empty(s)),
            Some(other) => Err(format!("{field}.value: expected a sys_id string, found {other}")),
        },
        Some(other) => Err(format!("{field}: expected a reference, found {other}")),
    }
}
