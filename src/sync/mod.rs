//! The sync runner: reads each configured stream through its connector and commits records to the
//! store, saving a stream's checkpoint only after every record before it is on disk (Singer's rule:
//! too early loses data, too late duplicates rows — the store's upsert absorbs the latter).
//!
//! A failing source is reported and the others go on; the caller turns the outcome into an exit
//! code. Service and team mapping from the config is applied here, before records are stored.

use std::time::Instant;

use tandem_connectors::http::RequestCounts;
use tandem_connectors::model::Record;
use tandem_connectors::{Connector, ConnectorError, Emitter, Message, RetryPolicy, SecretEnv};

use crate::config::{Config, ServiceConfig};
pub use crate::store::Tables;
use crate::store::coverage::Coverage;
use crate::store::{Store, StoreError};

/// Which streams to sync.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Only this source.
    pub source: Option<String>,
    /// Only this stream (of every selected source that has it).
    pub stream: Option<String>,
    /// Forget bookmarks first and read everything again.
    pub full: bool,
    /// Retry policy for every source.
    pub retry: RetryPolicy,
    /// Draw a progress line per stream on stderr (for people at a terminal; cron gets none).
    pub progress: bool,
}

/// What happened to one stream.
#[derive(Debug, Clone)]
pub struct StreamOutcome {
    /// Source name.
    pub source: String,
    /// Stream name (`*` when the source failed before any stream).
    pub stream: String,
    /// Records committed.
    pub records: usize,
    /// Records quarantined.
    pub quarantined: usize,
    /// Seconds taken.
    pub seconds: f64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The failure was about credentials or permissions.
    pub auth_failed: bool,
    /// What the stream's read cost in requests (the read's own, whatever else ran at once).
    pub requests: RequestCounts,
}

/// What happened to every stream.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// One entry per stream (or per source that failed to start).
    pub streams: Vec<StreamOutcome>,
}

impl SyncReport {
    /// Streams that failed.
    pub fn failures(&self) -> impl Iterator<Item = &StreamOutcome> {
        self.streams.iter().filter(|s| s.error.is_some())
    }

    /// Whether every stream succeeded.
    pub fn all_ok(&self) -> bool {
        self.failures().next().is_none()
    }

    /// What the streams of source `source` cost in requests, together.
    pub fn requests_of(&self, source: &str) -> RequestCounts {
        let mut total = RequestCounts::default();
        for s in self.streams.iter().filter(|s| s.source == source) {
            total += s.requests;
        }
        total
    }
}

/// The file in the store's `state/` folder that keeps the health of the last `tandem run`.
pub const LAST_RUN_FILE: &str = "last_run.json";

/// How one `tandem run` went, kept in the store (`state/last_run.json`) so that a report made
/// later, by another process, can say how fresh and complete the data behind it is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunHealth {
    /// When the run started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Seconds from the start of the sync to the end of the metrics (to the end of the sync when
    /// the metrics failed).
    pub seconds: f64,
    /// One entry per source, in config order.
    pub sources: Vec<SourceHealth>,
}

/// How one source fared in a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceHealth {
    /// Source name from the config.
    pub source: String,
    /// Streams synced without error.
    pub streams_ok: usize,
    /// Each failed stream as `stream: first line of the error` (`*` when the source failed
    /// before any stream).
    pub failures: Vec<String>,
    /// Records committed to the store.
    pub records: usize,
    /// Records quarantined.
    pub quarantined: usize,
    /// Requests sent (retries included).
    pub requests: u64,
    /// Answers that were rate limits.
    pub rate_limited: u64,
    /// Milliseconds spent waiting on rate limits (pacing and resets).
    pub paced_ms: u64,
}

impl SourceHealth {
    /// Whether every stream of the source synced.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

impl RunHealth {
    /// Summarises a sync per source, its request counts being those its streams' reads reported.
    pub fn from_report(report: &SyncReport, started_at: chrono::DateTime<chrono::Utc>, seconds: f64) -> Self {
        let mut sources: Vec<SourceHealth> = Vec::new();
        for s in &report.streams {
            let i = match sources.iter().position(|h| h.source == s.source) {
                Some(i) => i,
                None => {
                    let stats = report.requests_of(&s.source);
                    sources.push(SourceHealth {
                        source: s.source.clone(),
                        streams_ok: 0,
                        failures: Vec::new(),
                        records: 0,
                        quarantined: 0,
                        requests: stats.requests,
                        rate_limited: stats.rate_limited,
                        paced_ms: stats.paced_ms,
                    });
                    sources.len() - 1
                }
            };
            let Some(h) = sources.get_mut(i) else { continue };
            h.records += s.records;
            h.quarantined += s.quarantined;
            match &s.error {
                None => h.streams_ok += 1,
                Some(e) => h.failures.push(format!(
                    "{}: {}",
                    s.stream,
                    e.lines().next().unwrap_or_default().trim()
                )),
            }
        }
        Self {
            started_at,
            seconds,
            sources,
        }
    }

    /// Writes the health into the store's `state/` folder, atomically.
    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        store.write_state(LAST_RUN_FILE, self)
    }

    /// The health of the last run, if one was recorded. An unreadable file is logged and read as
    /// none: it must not stop a report, and the next run rewrites it.
    pub fn load(store: &Store) -> Option<Self> {
        let path = store.root().join("state").join(LAST_RUN_FILE);
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str(&text) {
            Ok(health) => Some(health),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Last run's health is unreadable; the next run rewrites it.");
                None
            }
        }
    }
}

/// Errors that stop the whole sync (as opposed to one source).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// `--source` names no configured source.
    #[error("no source named {0:?} in the config (see the [[source]] entries)")]
    UnknownSource(String),
    /// `--stream` names no stream of the selected sources.
    #[error("no selected source has a stream named {0:?}")]
    UnknownStream(String),
    /// The config has no sources.
    #[error("the config has no [[source]] entries: nothing to sync")]
    NoSources,
    /// The store failed: the sync stops (every later stream would fail alike).
    #[error("{error}{hint}", error = .0, hint = store_hint(.0))]
    Store(#[from] StoreError),
}

/// What to do about a store failure, for the errors whose message does not say it already.
fn store_hint(error: &StoreError) -> &'static str {
    match error {
        StoreError::Io { .. } | StoreError::Table(_) => {
            "; fix what is named (free space, permissions, the file) and run `tandem sync` again: it resumes from the last saved checkpoint"
        }
        // The others say what to do themselves.
        _ => "",
    }
}

/// Syncs the selected streams of `config` into `store`. Before any request, the store's tables
/// are checked: an unreadable one stops the sync, a lost one has its streams read again.
pub async fn sync(
    config: &Config,
    store: &Store,
    env: &SecretEnv,
    options: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    if config.sources.is_empty() {
        return Err(SyncError::NoSources);
    }
    let selected: Vec<_> = config
        .sources
        .iter()
        .filter(|s| options.source.as_deref().is_none_or(|n| n == s.name()))
        .collect();
    if let Some(name) = &options.source
        && selected.is_empty()
    {
        return Err(SyncError::UnknownSource(name.clone()));
    }
    // A stream whose table was lost is read again from the start: until that read completes,
    // the lake does not hold its history, whatever its coverage said.
    for (_, streams) in store.check_tables()? {
        Coverage::forget(store, &streams)?;
    }
    let mut report = SyncReport::default();
    let mut stream_found = options.stream.is_none();
    for source in selected {
        let started = Instant::now();
        let connector = match Connector::build(source, env, config.http.apply(options.retry.clone())) {
            Ok(c) => c,
            Err(e) => {
                // The stream may well exist: do not also report it as unknown.
                stream_found = true;
                tracing::error!(source = source.name(), error = %e, "Source cannot start.");
                let streams: Vec<&str> = source
                    .feeds()
                    .into_iter()
                    .map(|(stream, _)| stream)
                    .filter(|s| options.stream.as_deref().is_none_or(|o| o == *s))
                    .collect();
                Coverage::record_failure(store, source.name(), &streams, chrono::Utc::now(), &e.to_string())?;
                report.streams.push(StreamOutcome {
                    source: source.name().to_owned(),
                    stream: "*".into(),
                    records: 0,
                    quarantined: 0,
                    seconds: started.elapsed().as_secs_f64(),
                    error: Some(e.to_string()),
                    auth_failed: e.is_auth(),
                    requests: RequestCounts::default(),
                });
                continue;
            }
        };
        let selected: Vec<&str> = connector
            .streams()
            .iter()
            .map(|def| def.name)
            .filter(|name| options.stream.as_deref().is_none_or(|s| s == *name))
            .collect();
        for (i, stream) in selected.iter().enumerate() {
            stream_found = true;
            let outcome = sync_stream(config, store, &connector, source.name(), stream, options).await?;
            let auth_failed = outcome.auth_failed;
            let error = outcome.error.clone();
            report.streams.push(outcome);
            // Bad credentials fail every stream of the source alike: do not hammer the API. The
            // streams not tried are not synced either: what they hold stops being current.
            if auth_failed {
                let rest = selected.get(i + 1..).unwrap_or_default();
                let error = error.unwrap_or_default();
                Coverage::record_failure(store, source.name(), rest, chrono::Utc::now(), &error)?;
                break;
            }
        }
    }
    if !stream_found {
        return Err(SyncError::UnknownStream(
            options.stream.clone().unwrap_or_default(),
        ));
    }
    Ok(report)
}

/// Runs one stream: the connector reads while this task commits what it yields, in order.
async fn sync_stream(
    config: &Config,
    store: &Store,
    connector: &Connector,
    source: &str,
    stream: &str,
    options: &SyncOptions,
) -> Result<StreamOutcome, SyncError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    if options.full {
        store.clear_bookmark(source, stream)?;
    }
    let progress = Progress::new(options.progress, source, stream);
    let bookmark = store.resume(source, stream)?;
    tracing::info!(source, stream, resume = bookmark.is_some(), "Syncing stream.");
    let (emitter, rx) = Emitter::channel();
    let read = connector.read(stream, bookmark, emitter);
    let commit = async {
        // Owned by this future, so a failed commit drops the receiver on its way out: the reader's
        // next send then fails and `join!` ends, instead of the reader blocking on a full channel
        // that nobody drains (a store error used to hang the whole sync).
        let mut rx = rx;
        let mut records = 0usize;
        let mut quarantined = 0usize;
        let mut requests = RequestCounts::default();
        // What arrived since the last checkpoint: committed with it, as one unit.
        let mut pending = Tables::default();
        // The pages this read fetched since the last checkpoint: archived before it is saved.
        let mut pages = Vec::new();
        while let Some(message) = rx.recv().await {
            match message {
                Message::Records(batch) => {
                    records += batch.len();
                    for mut record in batch {
                        map_service(config, &mut record);
                        pending.push(record);
                    }
                    progress.update(records, quarantined, &requests);
                }
                Message::Quarantine(batch) => {
                    quarantined += batch.len();
                    progress.update(records, quarantined, &requests);
                    for q in &batch {
                        tracing::warn!(source, stream, id = %q.id, reason = %q.reason, "Record quarantined.");
                    }
                    pending.quarantine.extend(batch);
                }
                Message::Raw(batch) => pages.extend(batch),
                Message::Requests(counts) => {
                    requests += counts;
                    progress.update(records, quarantined, &requests);
                }
                Message::Checkpoint(state) => {
                    // Raw pages first: what the bookmark says was read is then also archived.
                    let pages = std::mem::take(&mut pages);
                    let tables = std::mem::take(&mut pending);
                    let (store, source, stream) = (store.clone(), source.to_owned(), stream.to_owned());
                    blocking(move || {
                        store.archive_raw(&source, &stream, &pages)?;
                        store.commit(&source, &stream, tables, Some(state))
                    })
                    .await?;
                }
            }
            if pending.len() >= FLUSH_RECORDS {
                // A connector that checkpoints rarely must not hold a whole source in memory: the
                // rows are committed, the bookmark stays where it was (a re-read upserts them).
                let tables = std::mem::take(&mut pending);
                let (store, source, stream) = (store.clone(), source.to_owned(), stream.to_owned());
                blocking(move || store.commit(&source, &stream, tables, None)).await?;
            }
        }
        // Pages fetched after the last checkpoint (a failed read) are archived too: they were read.
        if !pages.is_empty() {
            let (store, source, stream) = (store.clone(), source.to_owned(), stream.to_owned());
            blocking(move || store.archive_raw(&source, &stream, &pages)).await?;
        }
        // Records after the last checkpoint (the read failed, or ended without one) are kept,
        // like every record before the failure; the bookmark stays, so they are read again.
        if !pending.is_empty() {
            let (store, source, stream) = (store.clone(), source.to_owned(), stream.to_owned());
            blocking(move || store.commit(&source, &stream, pending, None)).await?;
        }
        Ok::<_, StoreError>((records, quarantined, requests))
    };
    let (read_result, commit_result) = tokio::join!(read, commit);
    // A store failure is fatal for the whole sync: later streams would fail the same way.
    let (records, quarantined, requests) = commit_result?;
    let (error, auth_failed) = match read_result {
        Ok(()) | Err(ConnectorError::SinkClosed) => (None, false),
        Err(e) => (Some(e.to_string()), e.is_auth()),
    };
    // What the lake now covers, for metrics that must not show a gap as a zero.
    match &error {
        None => {
            let covers_from = store
                .bookmark(source, stream)?
                .and_then(|state| tandem_connectors::contract::covers_from(&state))
                .flatten();
            Coverage::record_ok(store, source, stream, started_at, covers_from)?;
        }
        Some(e) => Coverage::record_failure(store, source, &[stream], chrono::Utc::now(), e)?,
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.finish(records, quarantined, &requests, error.is_none());
    match &error {
        None => tracing::info!(source, stream, records, quarantined, seconds, "Stream synced."),
        Some(e) => {
            tracing::error!(source, stream, records, error = %e, "Stream failed; records before the failure are kept and the next sync resumes after them.")
        }
    }
    Ok(StreamOutcome {
        source: source.to_owned(),
        stream: stream.to_owned(),
        records,
        quarantined,
        seconds,
        error,
        auth_failed,
        requests,
    })
}

/// A spinner line per stream on a terminal: records, quarantined, requests and rate-limit waits
/// so far. Does nothing when disabled.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(enabled: bool, source: &str, stream: &str) -> Self {
        let bar = enabled.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} {prefix:<28} {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            bar.set_prefix(format!("{source}/{stream}"));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    /// The line after `records` and `quarantined` records and the read's `requests` so far.
    fn message(records: usize, quarantined: usize, requests: &RequestCounts) -> String {
        let waited = requests.paced_ms / 1000;
        let limited = requests.rate_limited;
        let mut msg = format!("{records} records, {} requests", requests.requests);
        if quarantined > 0 {
            msg.push_str(&format!(", {quarantined} quarantined"));
        }
        if waited > 0 || limited > 0 {
            msg.push_str(&format!(", {waited} s waiting for rate limits"));
        }
        msg
    }

    fn update(&self, records: usize, quarantined: usize, requests: &RequestCounts) {
        if let Some(bar) = &self.bar {
            bar.set_message(Self::message(records, quarantined, requests));
        }
    }

    fn finish(&self, records: usize, quarantined: usize, requests: &RequestCounts, ok: bool) {
        if let Some(bar) = &self.bar {
            let mark = if ok { "done" } else { "FAILED" };
            bar.finish_with_message(format!(
                "{} — {mark}",
                Self::message(records, quarantined, requests)
            ));
        }
    }
}

/// Sets a record's service and team from the config mapping: repos for deployments, changes and
/// commits; the source's own service reference (PagerDuty service, Jira component, ServiceNow CI)
/// for incidents, tickets and change requests. A record the mapping does not know keeps what its
/// connector gave it (connectors give none, except file imports that name services).
pub fn map_service(config: &Config, record: &mut Record) {
    let by_ref = |source: &str, service_ref: Option<&str>| service_of_ref(config, source, service_ref);
    match record {
        Record::Deployment(r) => assign(&mut r.service, &mut r.team, config.service_of_repo(&r.repo)),
        Record::Change(r) => assign(&mut r.service, &mut r.team, config.service_of_repo(&r.repo)),
        Record::Commit(r) => assign(&mut r.service, &mut r.team, config.service_of_repo(&r.repo)),
        Record::Incident(r) => assign(
            &mut r.service,
            &mut r.team,
            by_ref(&r.source, r.service_ref.as_deref()),
        ),
        Record::Ticket(r) => assign(
            &mut r.service,
            &mut r.team,
            by_ref(&r.source, r.service_ref.as_deref()),
        ),
        Record::ChangeRequest(r) => assign(
            &mut r.service,
            &mut r.team,
            by_ref(&r.source, r.service_ref.as_deref()),
        ),
        Record::TicketTransition(_) => {}
    }
}

/// The service a source's own reference (PagerDuty service, Jira component, ServiceNow CI, repo)
/// maps to, by the kind of the source the record came from.
fn service_of_ref<'c>(
    config: &'c Config,
    source: &str,
    service_ref: Option<&str>,
) -> Option<&'c ServiceConfig> {
    let service_ref = service_ref?;
    let kind = config.sources.iter().find(|s| s.name() == source)?.kind();
    config.service_of(kind, service_ref)
}

fn assign(service: &mut Option<String>, team: &mut Option<String>, found: Option<&ServiceConfig>) {
    if let Some(s) = found {
        *service = Some(s.name.clone());
        team.clone_from(&s.team);
    }
}

/// Re-applies the config's service mapping to every stored record, without any request: after a
/// `[[service]]` change, the tables read as if synced with the new mapping. Returns the number of
/// records whose service or team changed.
pub fn remap(config: &Config, store: &Store) -> Result<usize, StoreError> {
    let mut tables = Tables::default();
    let mut changed = 0;
    for record in Tables::read(store)? {
        let mut mapped = record.clone();
        clear_service(config, &mut mapped);
        map_service(config, &mut mapped);
        if mapped != record {
            changed += 1;
        }
        tables.push(mapped);
    }
    store.replace_all(tables)?;
    Ok(changed)
}

/// Forgets the mapped service of records whose connector never sets one, so a mapping removed
/// from the config is removed from the data too. File imports keep the service they name.
fn clear_service(config: &Config, record: &mut Record) {
    let source = match record {
        Record::Deployment(r) => &r.source,
        Record::Change(r) => &r.source,
        Record::Commit(r) => &r.source,
        Record::Incident(r) => &r.source,
        Record::Ticket(r) => &r.source,
        Record::ChangeRequest(r) => &r.source,
        Record::TicketTransition(_) => return,
    };
    let from_file = config
        .sources
        .iter()
        .any(|s| s.name() == source && s.kind() == "file");
    if from_file {
        return;
    }
    let (service, team) = match record {
        Record::Deployment(r) => (&mut r.service, &mut r.team),
        Record::Change(r) => (&mut r.service, &mut r.team),
        Record::Commit(r) => (&mut r.service, &mut r.team),
        Record::Incident(r) => (&mut r.service, &mut r.team),
        Record::Ticket(r) => (&mut r.service, &mut r.team),
        Record::ChangeRequest(r) => (&mut r.service, &mut r.team),
        Record::TicketTransition(_) => return,
    };
    *service = None;
    *team = None;
}

/// Records held before they are committed without a checkpoint.
const FLUSH_RECORDS: usize = 50_000;

/// Runs store work (polars, file I/O) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Io {
        action: "run a store task",
        path: std::path::PathBuf::new(),
        source: std::io::Error::other(e.to_string()),
    })?
}
