//! The sync runner: reads each configured stream through its connector and commits records to the
//! store, saving a stream's checkpoint only after every record before it is on disk (Singer's rule:
//! too early loses data, too late duplicates rows — the store's upsert absorbs the latter).
//!
//! A failing source is reported and the others go on; the caller turns the outcome into an exit
//! code. Service and team mapping from the config (`mapping.rs`) is applied here, before records
//! are stored; `health.rs` summarises a run for later reports; `progress.rs` draws the terminal line.
//!
//! This floor sits above the store and beside the pipeline: it may use the config, the store, the
//! metric catalogue and the connectors, and must not import the pipeline, the reports, the export
//! or the commands, nor use polars (the store's codec does that).

use std::time::{Duration, Instant};

use tandem_connectors::http::RequestCounts;
use tandem_connectors::{Connector, ConnectorError, Emitter, Message, RetryPolicy, SecretEnv};

use crate::config::Config;
use crate::store::coverage::Coverage;
use crate::store::{Store, StoreError, Tables};

mod health;
mod mapping;
mod progress;

pub use health::{LAST_RUN_FILE, RunHealth, SourceHealth};
pub use mapping::{map_service, remap};
use progress::Progress;

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
        // What arrived since the last commit, and the newest checkpoint among it: committed
        // together, as one unit, so the bookmark never runs ahead of the rows.
        let mut pending = Tables::default();
        let mut checkpoint: Option<serde_json::Value> = None;
        // The pages this read fetched since the last commit: archived before its bookmark is saved.
        let mut pages = Vec::new();
        let interval = Duration::from_secs(config.store.commit_interval_secs);
        let mut last_commit = Instant::now();
        // Raw pages first: what a bookmark says was read is then also archived.
        let commit = |tables: Tables, pages: Vec<_>, state: Option<serde_json::Value>| {
            let (store, source, stream) = (store.clone(), source.to_owned(), stream.to_owned());
            blocking(move || {
                if !pages.is_empty() {
                    store.archive_raw(&source, &stream, &pages)?;
                }
                store.commit(&source, &stream, tables, state)
            })
        };
        while let Some(message) = rx.recv().await {
            let mut due = false;
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
                    // A newer checkpoint covers everything an older one did.
                    checkpoint = Some(state);
                    due = last_commit.elapsed() >= interval;
                }
            }
            // A connector that checkpoints rarely must not hold a whole source in memory either:
            // the rows are committed with the newest checkpoint they cover, if any (rows read
            // after it are read again from it).
            if due || pending.len() >= FLUSH_RECORDS {
                commit(
                    std::mem::take(&mut pending),
                    std::mem::take(&mut pages),
                    checkpoint.take(),
                )
                .await?;
                last_commit = Instant::now();
            }
        }
        // The end of the read: what it read since the last commit, with its newest checkpoint.
        // After a failed read, the records past that checkpoint are kept too, like every record
        // before the failure, and read again from the bookmark; its pages are archived: they
        // were read.
        if !pending.is_empty() || !pages.is_empty() || checkpoint.is_some() {
            if pending.is_empty() && checkpoint.is_none() {
                let (store, source, stream) = (store.clone(), source.to_owned(), stream.to_owned());
                blocking(move || store.archive_raw(&source, &stream, &pages)).await?;
            } else {
                commit(pending, pages, checkpoint).await?;
            }
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
