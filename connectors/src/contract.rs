//! The connector contract (after Singer and Airbyte): a connector declares its streams, checks its
//! credentials, and reads a stream from a bookmark, yielding records and checkpoints in order.
//!
//! The runner (in the `tandem` crate) saves a checkpoint only after every record sent before it is
//! committed to the store; a connector must therefore send a checkpoint only *after* the records it
//! covers. The raw pages a read fetched and the requests it made travel the same way, ahead of the
//! message that follows them, so the runner archives what a checkpoint covers before saving it.
//! Connectors never touch the store.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::ConnectorError;
use crate::http::{RawPage, RequestCounts, Traffic};
use crate::model::{Quarantined, Record};

/// A stream a connector offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDef {
    /// Stream name, unique within the connector (`deployments`, `pulls`, `incidents`).
    pub name: &'static str,
    /// Canonical table its records go to.
    pub table: &'static str,
    /// Primary key field of the records.
    pub primary_key: &'static str,
    /// Field the incremental bookmark follows.
    pub cursor_field: &'static str,
}

/// What a read yields, in order.
#[derive(Debug)]
pub enum Message {
    /// Canonical records to upsert.
    Records(Vec<Record>),
    /// Records that could not be mapped, with their reasons.
    Quarantine(Vec<Quarantined>),
    /// The stream's state after every message before it: save it once those are committed.
    Checkpoint(serde_json::Value),
    /// Responses the read fetched since the last such message, oldest first: archive them no
    /// later than the next checkpoint, which may cover what they hold.
    Raw(Vec<RawPage>),
    /// What the read's requests came to since the last such message (add them up).
    Requests(RequestCounts),
}

/// The sending half a connector writes to; dropping it ends the stream.
#[derive(Debug)]
pub struct Emitter {
    tx: mpsc::Sender<Message>,
    /// What this read's HTTP client fetched and has not been reported yet.
    traffic: Arc<Traffic>,
    /// Held from taking the traffic to sending the message after it, so that parts of a read
    /// sending at once cannot put a checkpoint ahead of the pages it covers.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Emitter {
    /// A channel whose small capacity keeps the connector at most a page ahead of the store.
    pub fn channel() -> (Self, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(2);
        let emitter = Self {
            tx,
            traffic: Arc::default(),
            turn: Arc::default(),
        };
        (emitter, rx)
    }

    /// Where the HTTP client of this read keeps its pages and counts (see
    /// [`HttpClient::recording`](crate::http::HttpClient::recording)).
    pub(crate) fn traffic(&self) -> &Arc<Traffic> {
        &self.traffic
    }

    /// A second handle on the same stream, for [`Connector::read`](crate::Connector::read), which
    /// reports what the read fetched after the connector is done with it.
    pub(crate) fn share(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            traffic: Arc::clone(&self.traffic),
            turn: Arc::clone(&self.turn),
        }
    }

    /// Sends the pages and counts not reported yet: those of a read that ended, or failed, after
    /// its last message.
    pub(crate) async fn finish(&self) -> Result<(), ConnectorError> {
        let _turn = self.turn.lock().await;
        self.report_traffic().await
    }

    /// Sends records (nothing when empty).
    pub async fn records(&self, records: Vec<Record>) -> Result<(), ConnectorError> {
        if records.is_empty() {
            return Ok(());
        }
        self.send(Message::Records(records)).await
    }

    /// Sends quarantined records (nothing when empty).
    pub async fn quarantine(&self, rejected: Vec<Quarantined>) -> Result<(), ConnectorError> {
        if rejected.is_empty() {
            return Ok(());
        }
        self.send(Message::Quarantine(rejected)).await
    }

    /// Sends the stream state covering everything sent so far.
    pub async fn checkpoint<S: serde::Serialize>(&self, state: &S) -> Result<(), ConnectorError> {
        let value = serde_json::to_value(state).map_err(|e| ConnectorError::Config {
            source_name: String::new(),
            message: format!("cannot serialise a bookmark: {e}"),
        })?;
        self.send(Message::Checkpoint(value)).await
    }

    /// Sends `message` after the pages and counts gathered before it.
    async fn send(&self, message: Message) -> Result<(), ConnectorError> {
        let _turn = self.turn.lock().await;
        self.report_traffic().await?;
        self.send_now(message).await
    }

    async fn report_traffic(&self) -> Result<(), ConnectorError> {
        let (pages, counts) = self.traffic.take();
        if !pages.is_empty() {
            self.send_now(Message::Raw(pages)).await?;
        }
        if !counts.is_zero() {
            self.send_now(Message::Requests(counts)).await?;
        }
        Ok(())
    }

    async fn send_now(&self, message: Message) -> Result<(), ConnectorError> {
        self.tx
            .send(message)
            .await
            .map_err(|_| ConnectorError::SinkClosed)
    }
}

/// One endpoint `tandem check` tried: every endpoint a sync calls gets one cheap request, so a
/// missing permission shows at set-up rather than in the night's sync.
#[derive(Debug)]
pub struct EndpointCheck {
    /// What the endpoint serves, e.g. `deployment statuses of acme/api`.
    pub name: String,
    /// What the request found.
    pub outcome: CheckOutcome,
}

/// The outcome of one endpoint check.
#[derive(Debug)]
pub enum CheckOutcome {
    /// The endpoint answered.
    Ok,
    /// The endpoint failed but a sync carries on without it, less well: what is lost and what
    /// to grant.
    Warning(String),
    /// The endpoint failed and the streams that call it will fail.
    Failed {
        /// The error the request met.
        error: ConnectorError,
        /// The permission or scope to grant.
        fix: String,
    },
}

impl EndpointCheck {
    /// The check of endpoint `name` from a request's result: a failure carries `fix`. The
    /// answer is handed back for checks that need a record id from it.
    pub fn of<T>(name: impl Into<String>, result: Result<T, ConnectorError>, fix: &str) -> (Self, Option<T>) {
        let name = name.into();
        match result {
            Ok(answer) => (
                Self {
                    name,
                    outcome: CheckOutcome::Ok,
                },
                Some(answer),
            ),
            Err(error) => (
                Self {
                    name,
                    outcome: CheckOutcome::Failed {
                        error,
                        fix: fix.to_owned(),
                    },
                },
                None,
            ),
        }
    }

    /// Whether the endpoint failed (a warning is not a failure).
    pub fn failed(&self) -> bool {
        matches!(self.outcome, CheckOutcome::Failed { .. })
    }
}

/// The first failure among `checks`, as [`Connector::check`](crate::Connector::check) reports it.
pub fn first_failure(checks: Vec<EndpointCheck>) -> Result<(), ConnectorError> {
    for check in checks {
        if let CheckOutcome::Failed { error, .. } = check.outcome {
            return Err(error);
        }
    }
    Ok(())
}

/// Reads a stream state from a bookmark, falling back to a fresh state when the bookmark is from
/// an older or different layout (a full re-read is safe: the store de-duplicates).
pub fn state_from_bookmark<S: serde::de::DeserializeOwned + Default>(
    bookmark: Option<serde_json::Value>,
) -> S {
    bookmark
        .and_then(|b| serde_json::from_value(b).ok())
        .unwrap_or_default()
}

/// Runs a read to completion and returns its result with every message it sent, in order: for
/// tests and tools that want a stream's output without a store.
pub async fn read_all<F>(read: impl FnOnce(Emitter) -> F) -> (Result<(), ConnectorError>, Vec<Message>)
where
    F: std::future::Future<Output = Result<(), ConnectorError>>,
{
    let (emitter, mut rx) = Emitter::channel();
    let collect = async {
        let mut messages = Vec::new();
        while let Some(m) = rx.recv().await {
            messages.push(m);
        }
        messages
    };
    tokio::join!(read(emitter), collect)
}

/// The key every stream state (the checkpoint a connector sends) carries at its top level: the
/// instant from which the stream's records are complete for every scope it is configured for
/// (every repo, project, service id), as an RFC 3339 string, or `null` when the stream holds the
/// whole history the API offers (no lookback limit). A stream that raises its lookback or gains a
/// scope moves it only once the missing history is backfilled. The runner reads it to tell a
/// period the lake covers from one it does not ("no data" rather than a zero).
pub const COVERS_FROM: &str = "covers_from";

/// What a stream state says about its coverage: `None` when the state does not say (a bookmark
/// written before coverage was kept; treated as complete), `Some(None)` when it holds the whole
/// history, `Some(Some(t))` when it is complete from `t` on.
pub fn covers_from(state: &serde_json::Value) -> Option<Option<chrono::DateTime<chrono::Utc>>> {
    match state.get(COVERS_FROM)? {
        serde_json::Value::Null => Some(None),
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| Some(t.with_timezone(&chrono::Utc))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn covers_from_tells_unknown_whole_history_and_an_instant_apart() {
        assert_eq!(covers_from(&serde_json::json!({"cursor": "x"})), None);
        assert_eq!(covers_from(&serde_json::json!({"covers_from": null})), Some(None));
        assert_eq!(
            covers_from(&serde_json::json!({"covers_from": "2026-01-02T03:04:05+01:00"})),
            Some(Some(
                chrono::DateTime::parse_from_rfc3339("2026-01-02T02:04:05Z")
                    .unwrap()
                    .with_timezone(&chrono::Utc)
            ))
        );
        // A value that is not an instant says nothing rather than something wrong.
        assert_eq!(covers_from(&serde_json::json!({"covers_from": 7})), None);
        assert_eq!(
            covers_from(&serde_json::json!({"covers_from": "last week"})),
            None
        );
    }
}
