//! The one HTTP client every connector uses: auth headers, timeouts, retries with backoff and
//! jitter, `Retry-After` and rate-limit headers, Link-header paging, and the bounds that keep a
//! misbehaving server from running a sync away (page caps, repeated next links, body size).
//!
//! Connectors describe requests; this module decides when to send them and when to give up. It
//! never logs or returns a secret: tokens go into headers only, are sent only to the configured
//! base URL's origin (redirects and next links to another origin go without them), and errors
//! quote URLs and bodies.
//!
//! The pages a read fetches and the requests it costs belong to that read: its client keeps them
//! in the read's [`Traffic`] and its emitter reports them as messages of the contract. Nothing is
//! kept per process but the connection pool, so reads running at once never mix their pages.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use crate::error::ConnectorError;
use crate::secret::Secret;

/// How a source authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>` (GitHub, OAuth).
    Bearer(Secret),
    /// `Authorization: Token token=<key>` (PagerDuty).
    PagerDutyToken(Secret),
    /// `Authorization: Basic base64(user:secret)` (Jira `email:token`, ServiceNow user/password).
    Basic {
        /// User name or e-mail: not a secret, but never logged either.
        user: String,
        /// API token or password.
        secret: Secret,
    },
    /// `PRIVATE-TOKEN: <token>` (GitLab).
    PrivateToken(Secret),
    /// No credentials.
    None,
}

/// When to retry and how long to wait.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base_delay: Duration,
    /// Longest single backoff.
    pub max_delay: Duration,
    /// Longest wait for a rate limit to reset before giving up.
    pub max_rate_limit_wait: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Most pages one stream may fetch in one run (`http.max_pages_per_stream`): a walk that
    /// needs more stops with an error rather than running on.
    pub max_pages_per_stream: u64,
    /// Largest response body read, in bytes (`http.max_response_mb`): the body is read in pieces
    /// and reading stops at this size, so an oversized answer never sits in memory whole.
    pub max_response_bytes: u64,
}

/// Default of `http.max_pages_per_stream`: far more than any real stream needs in one run. The
/// count includes a stream's detail requests (a deployment's statuses and compare, a pull's
/// commits, an issue's changelog), so a first sync of a year of 100 busy repos (some 150,000
/// requests on the deployments stream) stays well within it; repeated links are caught apart.
pub const DEFAULT_MAX_PAGES_PER_STREAM: u64 = 1_000_000;

/// Default of `http.max_response_mb`.
pub const DEFAULT_MAX_RESPONSE_MB: u64 = 64;

/// Redirects followed per request before giving up.
const MAX_REDIRECTS: usize = 10;

impl RetryPolicy {
    /// The backoff delays between attempts: exponential from `base_delay`, capped at `max_delay`,
    /// each with up to as much again of random jitter so clients that failed together retry apart.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        backon::BackoffBuilder::build(
            backon::ExponentialBuilder::default()
                .with_min_delay(self.base_delay)
                .with_max_delay(self.max_delay)
                .with_factor(2.0)
                .with_jitter()
                .with_max_times(usize::try_from(self.max_attempts.saturating_sub(1)).unwrap_or(usize::MAX)),
        )
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(30),
            max_pages_per_stream: DEFAULT_MAX_PAGES_PER_STREAM,
            max_response_bytes: DEFAULT_MAX_RESPONSE_MB * 1024 * 1024,
        }
    }
}

/// A successful JSON response.
#[derive(Debug, Clone)]
pub struct JsonPage {
    /// The URL fetched, query included.
    pub url: String,
    /// Response headers.
    pub headers: HeaderMap,
    /// The parsed body.
    pub body: serde_json::Value,
}

impl JsonPage {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The URL of `rel` in the `Link` header (`<url>; rel="next", …`), as given.
    pub fn link(&self, rel: &str) -> Option<String> {
        parse_link(self.header("link")?, rel)
    }
}

/// Finds `rel` in a Link header value. Entries are split only where a comma is followed by the
/// next `<`, because URLs may themselves contain raw commas (ServiceNow's `sysparm_fields`).
pub fn parse_link(header: &str, rel: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>')?;
        let url = &after[..close];
        let params_and_more = &after[close + 1..];
        // The parameters run up to the next entry: a comma, optional spaces, then `<`.
        let end = params_and_more
            .match_indices(',')
            .find(|(i, _)| params_and_more[i + 1..].trim_start().starts_with('<'))
            .map_or(params_and_more.len(), |(i, _)| i);
        let params = &params_and_more[..end];
        let wanted = format!("rel=\"{rel}\"");
        let unquoted = format!("rel={rel}");
        if params.split(';').any(|p| {
            let p = p.trim();
            p == wanted || p == unquoted
        }) {
            return Some(url.to_owned());
        }
        rest = &params_and_more[end..];
    }
    None
}

/// The HTTP layer of one source: its auth and retry policy over the process-wide reqwest client.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    /// Headers sent with every request.
    headers: HeaderMap,
    /// The credential headers, sent only to `origin`.
    credentials: HeaderMap,
    /// The configured base URL's scheme, host and port: the only place credentials go.
    origin: Option<Origin>,
    /// Pages fetched so far in this run, per stream (a client lives for one run).
    pages: Arc<std::sync::Mutex<HashMap<String, u64>>>,
    source: String,
    auth_hint: String,
    policy: RetryPolicy,
    /// What the last rate-limit headers said: paces requests before the limit is hit.
    rate: Arc<Mutex<RateState>>,
    /// Bounds the requests of this source in flight at once.
    in_flight: Arc<Semaphore>,
    /// Where the read this client serves keeps its pages and request counts (see
    /// [`HttpClient::recording`]); `None` for a client that serves no read (`tandem check`).
    traffic: Option<Arc<Traffic>>,
}

/// Requests of one source in flight at once: far below GitHub's secondary limit of 100
/// concurrent requests and gentle on self-hosted servers.
pub const MAX_IN_FLIGHT: usize = 8;

/// When less than this share of the advertised limit is left, requests are spread evenly over
/// the time until the reset, so a run never reaches the limit itself.
const PACE_BELOW: f64 = 0.10;

#[derive(Debug, Default)]
struct RateState {
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_at: Option<Instant>,
    /// The reset header as sent: two answers with the same value belong to the same window.
    reset_raw: Option<String>,
    /// When pacing, the earliest instant the next request may go: requests take turns, so
    /// concurrent ones do not all leave after the same short wait.
    next_slot: Option<Instant>,
}

/// Request counters of one read, counted as requests go and taken by its emitter.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    not_modified: AtomicU64,
    paced_ms: AtomicU64,
}

/// What the requests of one read, or of part of it, came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Requests that were retries.
    pub retries: u64,
    /// Answers that were rate limits (429, or 403 with a rate-limit signal).
    pub rate_limited: u64,
    /// `304 Not Modified` answers (free on GitHub).
    pub not_modified: u64,
    /// Milliseconds spent waiting on rate limits (pacing and resets).
    pub paced_ms: u64,
}

impl RequestCounts {
    /// Whether no request was counted.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl std::ops::AddAssign for RequestCounts {
    fn add_assign(&mut self, other: Self) {
        self.requests += other.requests;
        self.retries += other.retries;
        self.rate_limited += other.rate_limited;
        self.not_modified += other.not_modified;
        self.paced_ms += other.paced_ms;
    }
}

impl Counters {
    /// The counts so far, leaving zero behind.
    fn take(&self) -> RequestCounts {
        RequestCounts {
            requests: self.requests.swap(0, Ordering::Relaxed),
            retries: self.retries.swap(0, Ordering::Relaxed),
            rate_limited: self.rate_limited.swap(0, Ordering::Relaxed),
            not_modified: self.not_modified.swap(0, Ordering::Relaxed),
            paced_ms: self.paced_ms.swap(0, Ordering::Relaxed),
        }
    }
}

/// What one read fetched and has not yet reported: its raw pages, oldest first, and its request
/// counts. Each read has its own (its [`Emitter`](crate::Emitter) makes it and reports it as
/// messages of the contract), so reads that run at once, of one source or of two sources with the
/// same name, never see each other's pages or counts.
#[derive(Debug, Default)]
pub struct Traffic {
    pages: std::sync::Mutex<Vec<RawPage>>,
    counts: Counters,
}

impl Traffic {
    /// The pages fetched and the requests counted since the last call.
    pub fn take(&self) -> (Vec<RawPage>, RequestCounts) {
        let pages = match self.pages.lock() {
            Ok(mut pages) => std::mem::take(&mut *pages),
            // A thread that panicked while pushing a page left the list as it was: take it.
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        (pages, self.counts.take())
    }

    fn keep(&self, page: RawPage) {
        match self.pages.lock() {
            Ok(mut pages) => pages.push(page),
            Err(poisoned) => poisoned.into_inner().push(page),
        }
    }
}

/// A response as fetched, kept so the canonical tables can be audited and rebuilt without
/// refetching. Request headers are never kept (they carry the credentials).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RawPage {
    /// When the response arrived.
    pub fetched_at: chrono::DateTime<Utc>,
    /// `GET`.
    pub method: String,
    /// The URL fetched, query included.
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// Response headers (paging, rate limits, ETag), lower-case names.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The parsed JSON body.
    pub body: serde_json::Value,
}

/// The page as it is archived: the response headers without cookies.
fn raw_page(page: &JsonPage) -> RawPage {
    let headers = page
        .headers
        .iter()
        .filter(|(name, _)| *name != reqwest::header::SET_COOKIE)
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    RawPage {
        fetched_at: Utc::now(),
        method: "GET".into(),
        url: page.url.clone(),
        status: 200,
        headers,
        body: page.body.clone(),
    }
}

/// What to do with a response that is not a success.
enum Verdict {
    Retry { wait: Option<Duration>, why: String },
    Fail(ConnectorError),
}

impl HttpClient {
    /// Builds the client of source `source`, whose API lives at `base_url`: credentials are
    /// sent only to that URL's origin. `auth_hint` says what to check on a 401/403, e.g.
    /// "check that the token in $GITHUB_TOKEN is valid and can read the repos".
    pub fn new(
        source: &str,
        base_url: &str,
        auth: &Auth,
        extra_headers: &[(&'static str, &str)],
        auth_hint: String,
        policy: RetryPolicy,
    ) -> Result<Self, ConnectorError> {
        let config_err = |message: String| ConnectorError::Config {
            source_name: source.to_owned(),
            message,
        };
        let mut headers = HeaderMap::new();
        let mut credentials = HeaderMap::new();
        let auth_header = match auth {
            Auth::Bearer(s) => Some((reqwest::header::AUTHORIZATION, format!("Bearer {}", s.expose()))),
            Auth::PagerDutyToken(s) => Some((
                reqwest::header::AUTHORIZATION,
                format!("Token token={}", s.expose()),
            )),
            Auth::Basic { user, secret } => Some((
                reqwest::header::AUTHORIZATION,
                format!(
                    "Basic {}",
                    base64(format!("{user}:{}", secret.expose()).as_bytes())
                ),
            )),
            Auth::PrivateToken(s) => Some((HeaderName::from_static("private-token"), s.expose().to_owned())),
            Auth::None => None,
        };
        if let Some((name, v)) = auth_header {
            let mut value = HeaderValue::from_str(&v).map_err(|_| {
                config_err("the token contains characters not allowed in an HTTP header".into())
            })?;
            value.set_sensitive(true);
            credentials.insert(name, value);
        }
        for (name, value) in extra_headers {
            let value = HeaderValue::from_str(value)
                .map_err(|_| config_err(format!("header {name} has an invalid value")))?;
            headers.insert(HeaderName::from_static(name), value);
        }
        let client = shared_client().map_err(|e| config_err(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            headers,
            credentials,
            // A base URL that does not parse gets no credentials at all; the connector reports
            // the bad URL itself when it builds its first request.
            origin: reqwest::Url::parse(base_url).ok().map(|u| Origin::of(&u)),
            pages: Arc::default(),
            source: source.to_owned(),
            auth_hint,
            policy,
            rate: Arc::new(Mutex::new(RateState::default())),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            traffic: None,
        })
    }

    /// This client for one read: the pages it fetches and the requests it sends are kept in
    /// `traffic`, which the read's emitter reports. The pacing state, the bound on requests in
    /// flight and the page counts stay shared with every other client of the source, because the
    /// source's rate limit and `http.max_pages_per_stream` hold for all its reads together.
    pub fn recording(&self, traffic: &Arc<Traffic>) -> Self {
        Self {
            traffic: Some(Arc::clone(traffic)),
            ..self.clone()
        }
    }

    /// Adds one to a counter of the read this client serves.
    fn count(&self, counter: fn(&Counters) -> &AtomicU64, by: u64) {
        if let Some(traffic) = &self.traffic {
            counter(&traffic.counts).fetch_add(by, Ordering::Relaxed);
        }
    }

    /// The configured source name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// GETs `url` with `query` and parses the JSON body, retrying what is worth retrying.
    pub async fn get_json(&self, url: &str, query: &[(&str, String)]) -> Result<JsonPage, ConnectorError> {
        match self.get_json_if_changed(url, query, None).await? {
            Some(page) => Ok(page),
            None => Err(ConnectorError::Decode {
                source_name: self.source.clone(),
                url: url.to_owned(),
                message: "304 Not Modified to a request that was not conditional".into(),
            }),
        }
    }

    /// Like [`HttpClient::get_json`], sending `If-None-Match: etag` when given: `None` means
    /// `304 Not Modified` (nothing changed since the response that carried the ETag; GitHub does
    /// not count it against the rate limit).
    pub async fn get_json_if_changed(
        &self,
        url: &str,
        query: &[(&str, String)],
        etag: Option<&str>,
    ) -> Result<Option<JsonPage>, ConnectorError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| ConnectorError::SinkClosed)?;
        let mut delays = self.policy.delays();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.pace().await?;
            self.count(|c| &c.requests, 1);
            if attempt > 1 {
                self.count(|c| &c.retries, 1);
            }
            let target = match self.client.get(url).query(query).build() {
                Ok(r) => r.url().clone(),
                Err(e) => {
                    return Err(ConnectorError::Transport {
                        source_name: self.source.clone(),
                        url: url.to_owned(),
                        attempts: attempt,
                        message: transport_message(&e),
                    });
                }
            };
            let shown_url = target.to_string();
            let verdict = match self.send(target, etag).await {
                Err(verdict) => verdict,
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let answered_at = Origin::of(response.url());
                    self.note_rate_limit(&headers).await;
                    if status == StatusCode::NOT_MODIFIED {
                        self.count(|c| &c.not_modified, 1);
                        return Ok(None);
                    }
                    match self.read_body(response, &shown_url).await {
                        Err(verdict) => verdict,
                        Ok(body) if status.is_success() => match crate::lenient::parse_page(&body) {
                            Ok(json) => {
                                let page = JsonPage {
                                    url: shown_url,
                                    headers,
                                    body: json,
                                };
                                if let Some(traffic) = &self.traffic {
                                    traffic.keep(raw_page(&page));
                                }
                                return Ok(Some(page));
                            }
                            // A 200 whose body is cut off mid-JSON or is an HTML error page from a
                            // proxy: transient in practice, so it is retried like a 5xx.
                            Err(e) => Verdict::Retry {
                                wait: None,
                                why: format!("HTTP {} with a body that is not JSON ({e})", status.as_u16()),
                            },
                        },
                        Ok(body) => self.judge(status, &headers, &body, &shown_url, &answered_at),
                    }
                }
            };
            match verdict {
                Verdict::Fail(e) => return Err(e),
                Verdict::Retry { wait, why } => {
                    if attempt >= self.policy.max_attempts {
                        return Err(ConnectorError::Transport {
                            source_name: self.source.clone(),
                            url: shown_url,
                            attempts: attempt,
                            message: why,
                        });
                    }
                    let wait = match wait {
                        Some(w) if w > self.policy.max_rate_limit_wait => {
                            return Err(ConnectorError::RateLimited {
                                source_name: self.source.clone(),
                                wait: w,
                                max: self.policy.max_rate_limit_wait,
                            });
                        }
                        Some(w) => w,
                        None => delays.next().unwrap_or(self.policy.max_delay),
                    };
                    tracing::warn!(
                        source = %self.source,
                        url = %shown_url,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        reason = %why,
                        "Retrying request."
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Sends one GET to `url`, following redirects by hand so credentials go only to the
    /// configured origin: reqwest's own policy keeps custom headers such as GitLab's
    /// `PRIVATE-TOKEN` on a redirect to another host.
    async fn send(&self, mut url: reqwest::Url, etag: Option<&str>) -> Result<reqwest::Response, Verdict> {
        let mut last_status = 0;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self
                .client
                .get(url.clone())
                .headers(self.headers.clone())
                .timeout(self.policy.timeout);
            if self.origin.as_ref().is_some_and(|o| *o == Origin::of(&url)) {
                request = request.headers(self.credentials.clone());
            }
            if let Some(etag) = etag {
                request = request.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            let response = request.send().await.map_err(|e| Verdict::Retry {
                wait: None,
                why: transport_message(&e),
            })?;
            let status = response.status();
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                return Ok(response);
            }
            last_status = status.as_u16();
            let Some(next) = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|location| url.join(location).ok())
            else {
                return Ok(response);
            };
            if self.origin.as_ref().is_some_and(|o| *o != Origin::of(&next)) {
                tracing::debug!(source = %self.source, from = %url, to = %next, "Following a redirect to another origin without credentials.");
            }
            url = next;
        }
        Err(Verdict::Fail(ConnectorError::Status {
            source_name: self.source.clone(),
            status: last_status,
            url: url.to_string(),
            body: format!("more than {MAX_REDIRECTS} redirects in a row: check base_url"),
        }))
    }

    /// Reads a body in pieces up to `max_response_bytes`, so an oversized answer fails without
    /// ever being held whole.
    async fn read_body(&self, mut response: reqwest::Response, url: &str) -> Result<Vec<u8>, Verdict> {
        let limit = self.policy.max_response_bytes;
        let too_large = || {
            Verdict::Fail(ConnectorError::ResponseTooLarge {
                source_name: self.source.clone(),
                url: url.to_owned(),
                limit: size_text(limit),
            })
        };
        let announced = response.content_length();
        if announced.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(usize::try_from(announced.unwrap_or(0)).unwrap_or(0));
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() as u64 + chunk.len() as u64 > limit {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(Verdict::Retry {
                        wait: None,
                        why: format!("body cut off: {}", transport_message(&e)),
                    });
                }
            }
        }
    }

    /// A guard for one paging walk of stream `stream`: see [`Pager`].
    pub fn pager(&self, stream: &str) -> Pager {
        Pager {
            source: self.source.clone(),
            stream: stream.to_owned(),
            seen: std::collections::HashSet::new(),
            pages: Arc::clone(&self.pages),
            max: self.policy.max_pages_per_stream,
        }
    }

    /// Decides about a non-success response from `url`, answered at `answered_at` (after any
    /// redirects).
    fn judge(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        url: &str,
        answered_at: &Origin,
    ) -> Verdict {
        let text = String::from_utf8_lossy(body);
        let code = status.as_u16();
        let retry_after = header_str(headers, "retry-after").and_then(|v| v.trim().parse::<u64>().ok());
        let remaining_zero = ["x-ratelimit-remaining", "ratelimit-remaining"]
            .iter()
            .any(|h| header_str(headers, h).is_some_and(|v| v.trim() == "0"));
        let mentions_limit = text.to_ascii_lowercase().contains("rate limit");
        let is_rate_limit = code == 429 || (code == 403 && (remaining_zero || mentions_limit));
        if is_rate_limit {
            self.count(|c| &c.rate_limited, 1);
            let wait = retry_after
                .map(Duration::from_secs)
                .or_else(|| remaining_zero.then(|| reset_wait(headers)).flatten())
                // A bare 429 with a near reset (ServiceNow's per-minute X-RateLimit-Reset) waits for
                // it; a far one (Jira's hourly window) is a burst limit: back off instead.
                .or_else(|| {
                    (code == 429)
                        .then(|| reset_wait(headers))
                        .flatten()
                        .filter(|w| *w <= self.policy.max_delay)
                })
                // A secondary limit without Retry-After: wait at least a minute (GitHub's advice).
                .or_else(|| (mentions_limit && code == 403).then_some(Duration::from_secs(60)));
            return Verdict::Retry {
                wait,
                why: format!("HTTP {code}: rate limited"),
            };
        }
        if status.is_server_error() {
            return Verdict::Retry {
                wait: retry_after.map(Duration::from_secs),
                why: format!("HTTP {code}"),
            };
        }
        // GitHub and GitLab answer a request for a private resource that came without
        // credentials with 404: from another origin (where none are sent) that is a refusal, not
        // "gone", and must not be read as a record that no longer exists.
        let refused_elsewhere = code == 404 && self.origin.as_ref().is_some_and(|home| home != answered_at);
        if code == 401 || code == 403 || refused_elsewhere {
            return Verdict::Fail(ConnectorError::Unauthorized {
                source_name: self.source.clone(),
                status: code,
                url: url.to_owned(),
                hint: match &self.origin {
                    // Sent without credentials on purpose: say so rather than blame the token.
                    Some(home) if home != answered_at => format!(
                        "the server sent tandem to {answered_at}, outside base_url's {home}, and tandem sends credentials only to base_url's origin: set base_url to the address the server uses in its own links"
                    ),
                    _ => self.auth_hint.clone(),
                },
            });
        }
        Verdict::Fail(ConnectorError::Status {
            source_name: self.source.clone(),
            status: code,
            url: url.to_owned(),
            body: snippet(&text),
        })
    }

    /// Remembers what the rate-limit headers advertise.
    async fn note_rate_limit(&self, headers: &HeaderMap) {
        let number = |names: &[&str]| {
            names
                .iter()
                .find_map(|h| header_str(headers, h))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let remaining = number(&["x-ratelimit-remaining", "ratelimit-remaining"]);
        if remaining.is_none() {
            return;
        }
        let mut rate = self.rate.lock().await;
        rate.limit = number(&["x-ratelimit-limit", "ratelimit-limit"]).or(rate.limit);
        // Retry-After, when given, is the server's own word on when to come back: it wins over a
        // coarse reset time (Jira's is minute-precise).
        let retry_after = header_str(headers, "retry-after").and_then(|v| v.trim().parse::<u64>().ok());
        let reset_at = retry_after
            .map(Duration::from_secs)
            .or_else(|| reset_wait(headers))
            .map(|w| Instant::now() + w);
        let reset_raw = ["x-ratelimit-reset", "ratelimit-reset"]
            .iter()
            .find_map(|h| header_str(headers, h))
            .map(str::to_owned);
        // Compare the header as sent, not the instant computed from it: answers processed late
        // under load would otherwise look like a new window and undo the local count.
        let same_window = reset_raw.is_some() && reset_raw == rate.reset_raw;
        if same_window {
            // Answers to concurrent requests arrive out of order: within one window the lowest
            // count is the truest, and requests sent since are already subtracted locally.
            rate.remaining = match (remaining, rate.remaining) {
                (Some(new), Some(old)) => Some(new.min(old)),
                (new, old) => new.or(old),
            };
        } else {
            rate.remaining = remaining;
            rate.reset_at = reset_at;
            rate.reset_raw = reset_raw;
            rate.next_slot = None;
        }
    }

    /// Waits before a request when the advertised limit is exhausted (until the reset) or nearly
    /// so (spreading what is left evenly until the reset), so pacing, not a 429, sets the speed.
    async fn pace(&self) -> Result<(), ConnectorError> {
        let wait = {
            let mut rate = self.rate.lock().await;
            let now = Instant::now();
            if rate.reset_at.is_some_and(|r| r <= now) {
                // The window has reset: forget the old numbers until new headers arrive.
                *rate = RateState::default();
            }
            let until_reset = rate.reset_at.map(|r| r.saturating_duration_since(now));
            let wait = match (rate.remaining, rate.limit, until_reset) {
                (Some(0), _, Some(left)) => left,
                (Some(remaining), Some(limit), Some(left))
                    if limit > 0 && (remaining as f64) < PACE_BELOW * limit as f64 =>
                {
                    let interval = left / u32::try_from(remaining + 1).unwrap_or(u32::MAX);
                    let slot = rate.next_slot.map_or(now, |s| s.max(now));
                    rate.next_slot = Some(slot + interval);
                    slot - now
                }
                _ => Duration::ZERO,
            };
            // Count this request against what is left, so concurrent requests space out too.
            if let Some(r) = rate.remaining.as_mut() {
                *r = r.saturating_sub(1);
            }
            wait
        };
        if wait > self.policy.max_rate_limit_wait {
            return Err(ConnectorError::RateLimited {
                source_name: self.source.clone(),
                wait,
                max: self.policy.max_rate_limit_wait,
            });
        }
        if !wait.is_zero() {
            tracing::debug!(source = %self.source, wait_ms = wait.as_millis() as u64, "Pacing for the rate limit.");
            self.count(
                |c| &c.paced_ms,
                u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            );
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

/// One reqwest client (one connection pool) for every source; auth and timeouts are set per
/// request, so sources never see each other's headers.
fn shared_client() -> Result<reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            install_crypto_provider();
            reqwest::Client::builder()
                .user_agent(concat!("tandem/", env!("CARGO_PKG_VERSION")))
                // Redirects are followed in `HttpClient::send`, which decides per hop whether the
                // credentials may go along.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
}

/// reqwest is built without a default TLS provider so only ring (already in the build) is
/// compiled; it must be installed once per process before the first client is built.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An Err means another provider is already installed, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A URL's scheme, host and port (the default port filled in): where credentials may go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: Option<String>,
    port: Option<u16>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.host.as_deref().unwrap_or_default();
        match self.port {
            Some(port) => write!(f, "{}://{host}:{port}", self.scheme),
            None => write!(f, "{}://{host}", self.scheme),
        }
    }
}

impl Origin {
    fn of(url: &reqwest::Url) -> Self {
        Self {
            scheme: url.scheme().to_ascii_lowercase(),
            host: url.host_str().map(str::to_ascii_lowercase),
            port: url.port_or_known_default(),
        }
    }
}

/// Keeps one paging walk finite. A walk asks it before fetching each next page: a next link or
/// page token already fetched in this walk means the server is sending the walk round in a
/// circle, and every page counts against the stream's cap for the run
/// (`http.max_pages_per_stream`), shared by every walk of the stream.
#[derive(Debug)]
pub struct Pager {
    source: String,
    stream: String,
    seen: std::collections::HashSet<String>,
    pages: Arc<std::sync::Mutex<HashMap<String, u64>>>,
    max: u64,
}

impl Pager {
    /// Counts the page at `key` (its next link, or its page token) before it is fetched; fails
    /// when this walk already fetched it or the stream has used up its pages for the run.
    pub fn next(&mut self, key: &str) -> Result<(), ConnectorError> {
        if !self.seen.insert(key.to_owned()) {
            return Err(ConnectorError::Paging {
                source_name: self.source.clone(),
                stream: self.stream.clone(),
                message: format!(
                    "the server sent the next page {key} a second time in one walk, so paging would never end; the stream stopped (re-run later, and tell the server's administrators if it persists)"
                ),
            });
        }
        self.count()
    }

    /// Counts a page that has no key worth remembering: offset paging, where reading a window
    /// again on purpose is how records that moved between pages are caught.
    pub fn count(&mut self) -> Result<(), ConnectorError> {
        let used = match self.pages.lock() {
            Ok(mut pages) => {
                let used = pages.entry(self.stream.clone()).or_default();
                *used += 1;
                *used
            }
            // A poisoned counter only loses the count; the repeat check still holds.
            Err(_) => 0,
        };
        if used > self.max {
            return Err(ConnectorError::Paging {
                source_name: self.source.clone(),
                stream: self.stream.clone(),
                message: format!(
                    "stopped after {} pages in one run, the most `http.max_pages_per_stream` allows: raise it in the config if the stream really holds that many pages",
                    self.max
                ),
            });
        }
        Ok(())
    }

    /// Forgets the keys seen, for a walk that deliberately starts its list again.
    pub fn restart(&mut self) {
        self.seen.clear();
    }
}

/// A byte size for messages: whole megabytes as `64 MB`, anything else in bytes.
fn size_text(bytes: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if bytes >= MB && bytes % MB == 0 {
        format!("{} MB", bytes / MB)
    } else {
        format!("{bytes} bytes")
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Time until the advertised reset: an epoch second (GitHub, ServiceNow) or seconds from now
/// (PagerDuty, GitLab).
fn reset_wait(headers: &HeaderMap) -> Option<Duration> {
    let text = ["x-ratelimit-reset", "ratelimit-reset"]
        .iter()
        .find_map(|h| header_str(headers, h))?
        .trim();
    let secs = match text.parse::<i64>() {
        Ok(raw) if raw > 1_000_000_000 => raw - Utc::now().timestamp(),
        Ok(raw) => raw,
        // Jira: ISO 8601 `yyyy-MM-ddTHH:mmZ`.
        Err(_) => {
            let at = crate::time::parse_instant(text)
                .or_else(|_| crate::time::parse_instant(&text.replace('Z', ":00Z")))
                .ok()?;
            (at - Utc::now()).num_seconds()
        }
    };
    // One extra second: resets are whole seconds and clocks drift.
    Some(Duration::from_secs(u64::try_from(secs.max(0)).unwrap_or(0) + 1))
}

fn transport_message(e: &reqwest::Error) -> String {
    // reqwest's Display includes the URL but never headers, so no token can leak here.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn snippet(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        format!("{}…", one_line.chars().take(300).collect::<String>())
    } else {
        one_line
    }
}

/// Standard base64 with padding, for Basic auth (small enough not to need a crate).
fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_rel_lookup() {
        let h = r#"<http://h/repositories/1/pulls?page=2>; rel="next", <http://h/repositories/1/pulls?page=5>; rel="last""#;
        assert_eq!(
            parse_link(h, "next").as_deref(),
            Some("http://h/repositories/1/pulls?page=2")
        );
        assert_eq!(
            parse_link(h, "last").as_deref(),
            Some("http://h/repositories/1/pulls?page=5")
        );
        assert_eq!(parse_link(h, "prev"), None);
        let sn = r#"<https://i/api/now/table/incident?sysparm_offset=0>;rel="first",<https://i/api/now/table/incident?sysparm_offset=1000>;rel="next""#;
        assert_eq!(
            parse_link(sn, "next").as_deref(),
            Some("https://i/api/now/table/incident?sysparm_offset=1000")
        );
        let commas = r#"<https://i/t?sysparm_fields=a,b,c&o=0>;rel="first",<https://i/t?sysparm_fields=a,b,c&o=5>;rel="next""#;
        assert_eq!(
            parse_link(commas, "next").as_deref(),
            Some("https://i/t?sysparm_fields=a,b,c&o=5")
        );
        assert_eq!(
            parse_link(commas, "first").as_deref(),
            Some("https://i/t?sysparm_fields=a,b,c&o=0")
        );
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("mia@acme.com:tok", "bWlhQGFjbWUuY29tOnRvaw=="),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = RetryPolicy {
            max_attempts: 10,
            ..RetryPolicy::default()
        };
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 9, "one delay before each retry");
        for (i, d) in delays.iter().enumerate() {
            let base = (Duration::from_millis(500) * (1 << i)).min(Duration::from_secs(30));
            assert!(
                *d >= base && *d <= base * 2,
                "retry {}: {d:?} vs base {base:?}",
                i + 1
            );
        }
    }
}
