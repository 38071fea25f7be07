//! The bookmark layout of every GitHub stream and the newest-first walk shared by deployments,
//! pull requests and releases: read pages until one reaches below the bookmark (minus an overlap),
//! a checkpoint after each, resumable from the saved `next` link.
//!
//! Each cursor remembers from when its history is complete (`covered`): a first walk, and a walk
//! on a cursor whose history starts later than the lookback start in force (the lookback was
//! raised), read down to that start, then the cursor covers from it. Links are saved relative to
//! `base_url`, so a moved host is followed.
//!
//! What a page's items become is each stream's business (its own file); this module only decides
//! which pages to read and what the bookmark remembers.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::GitHub;
use super::deployments::CompareState;
use crate::contract::{COVERS_FROM, Emitter};
use crate::coverage::{Covered, lookback_start, stream_covers_from};
use crate::error::ConnectorError;
use crate::model::QuarantineReason;
use crate::model::{Quarantined, Record};
use crate::time::parse_instant;

/// Bookmark of one stream: a cursor per repo (per repo and environment for deployments, per repo
/// and label for issues), and at its top level the stream's `covers_from` over the configured
/// cursors (written, never read back: the cursors' own coverage is what counts).
#[derive(Debug, Default, Deserialize)]
pub(super) struct StreamState {
    pub(super) cursors: BTreeMap<String, Cursor>,
    /// The cursor keys this read is configured for and the time it started: what `covers_from`
    /// is computed over.
    #[serde(skip)]
    pub(super) scopes: Option<(Vec<String>, DateTime<Utc>)>,
}

impl StreamState {
    /// Sets the cursor keys this read covers. A cursor that was read before coverage was kept
    /// is taken as complete from `start` on, as the bookmark then promised.
    pub(super) fn configure(&mut self, keys: Vec<String>, start: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        for key in &keys {
            if let Some(cursor) = self.cursors.get_mut(key)
                && cursor.covered.is_none()
                && cursor.high_water.is_some()
            {
                cursor.covered = Some(Covered { from: start });
            }
        }
        self.scopes = Some((keys, now));
    }

    fn covers_from(&self) -> Option<DateTime<Utc>> {
        let (keys, now) = self.scopes.as_ref()?;
        stream_covers_from(
            keys.iter().map(|k| self.cursors.get(k).and_then(|c| c.covered)),
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
pub(super) struct Cursor {
    /// Newest cursor value of the last completed walk.
    pub(super) high_water: Option<DateTime<Utc>>,
    /// A walk in progress: where to resume.
    pub(super) walk: Option<Walk>,
    /// Records seen unfinished, re-read on the next sync even below the bookmark: running
    /// deployments and workflow runs, draft releases.
    #[serde(default)]
    pub(super) pending: Vec<Value>,
    /// ETag of the first page of the last completed walk: a `304` to it means nothing changed.
    #[serde(default)]
    pub(super) etag: Option<String>,
    /// The first-page URL that ETag belongs to, for walks whose first URL moves with the bookmark
    /// (issues and runs filter by time): the ETag is sent only to the same URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) etag_url: Option<String>,
    /// Deployments: the last production deployment compared and those still to compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) compare: Option<CompareState>,
    /// The history this cursor holds completely, once a walk has reached its lookback start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) covered: Option<Covered>,
}

impl Cursor {
    /// Where this sync's walk starts reading and the coverage it establishes when complete: from
    /// the bookmark minus `overlap`, or, for a first walk and for a cursor whose history starts
    /// later than the lookback `start` (raised since), from `start` on.
    pub(super) fn walk_from(
        &self,
        start: Option<DateTime<Utc>>,
        overlap: Duration,
    ) -> (Option<DateTime<Utc>>, Option<Covered>) {
        match self.high_water {
            Some(h) if self.covered.is_none_or(|c| c.reaches(start)) => (Some(h - overlap), None),
            _ => (start, Some(Covered { from: start })),
        }
    }

    /// Completes a walk: the cursor now holds what the walk set out to cover. A first walk
    /// begun before coverage was kept is taken to cover from the lookback `start` in force, as
    /// an older bookmark is.
    pub(super) fn complete(&mut self, floor: Option<Covered>, start: Option<DateTime<Utc>>) {
        match floor {
            Some(f) => self.covered = Some(f),
            None if self.covered.is_none() => self.covered = Some(Covered { from: start }),
            None => {}
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Walk {
    /// The page to read next, relative to `base_url` when under it.
    pub(super) next: String,
    /// Where the walk stops: the lowest cursor value it reads.
    pub(super) stop_below: Option<DateTime<Utc>>,
    pub(super) high_water: Option<DateTime<Utc>>,
    /// ETag of this walk's first page, saved when the walk completes.
    #[serde(default)]
    pub(super) etag: Option<String>,
    /// The URL of this walk's first page (issues and runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) first_url: Option<String>,
    /// Releases: the drafts seen so far in this walk, which replace the pending ones when it
    /// completes (a draft not seen again was published or deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) drafts: Vec<Value>,
    /// Workflow runs: the `created` window whose first page `next` is (`None`: a later page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) window: Option<Window>,
    /// Workflow runs: the windows still to read after the current one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) windows: Vec<Window>,
    /// The coverage the cursor gains when this walk completes: a first walk and a backfill reach
    /// the lookback start; `None` for an incremental walk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) floor: Option<Covered>,
}

/// A range of creation times, both ends inclusive; `None` is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Window {
    pub(super) from: Option<DateTime<Utc>>,
    pub(super) to: Option<DateTime<Utc>>,
}

/// The streams read by the newest-first walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Deployments,
    Pulls,
    Releases,
}

impl Kind {
    pub(super) fn stream(self) -> &'static str {
        match self {
            Self::Deployments => "deployments",
            Self::Pulls => "pulls",
            Self::Releases => "releases",
        }
    }

    fn cursor_field(self) -> &'static str {
        match self {
            Self::Deployments | Self::Releases => "created_at",
            Self::Pulls => "updated_at",
        }
    }
}

/// What a page's items became: records, rejects, and the items to look at again later.
pub(super) type Mapped = (Vec<Record>, Vec<Quarantined>, Vec<Value>);

impl GitHub {
    /// Where the lookback starts: `lookback_days` back, or nowhere.
    pub(super) fn first_stop(&self) -> Option<DateTime<Utc>> {
        lookback_start(self.config.lookback_days, self.now())
    }

    /// A fresh state for `stream` from its bookmark, configured with the cursor keys this source
    /// reads for it.
    pub(super) fn state(&self, stream: &str, bookmark: Option<Value>) -> StreamState {
        let mut state: StreamState = crate::contract::state_from_bookmark(bookmark);
        let repos = &self.config.repos;
        let keys: Vec<String> = match stream {
            "deployments" => repos
                .iter()
                .flat_map(|r| self.config.environments.iter().map(move |e| format!("{r}@{e}")))
                .collect(),
            "issues" => repos
                .iter()
                .flat_map(|r| {
                    self.config
                        .incident_labels
                        .iter()
                        .map(move |l| format!("{r}|{l}"))
                })
                .collect(),
            _ => repos.clone(),
        };
        state.configure(keys, self.first_stop(), self.now());
        state
    }

    /// Walks a newest-first list down to the bookmark, a checkpoint after every page.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn walk(
        &self,
        kind: Kind,
        repo: &str,
        key: &str,
        first_url: String,
        first_query: Vec<(&'static str, String)>,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        let cursor_field = kind.cursor_field();
        let cursor = state.cursors.entry(key.to_owned()).or_default();
        let mut conditional = None;
        let (mut url, mut query, stop_below, mut high_water, mut first_etag, mut drafts, floor) =
            match cursor.walk.take() {
                Some(w) => (
                    self.resolve(kind.stream(), &w.next)?,
                    Vec::new(),
                    w.stop_below,
                    w.high_water,
                    w.etag,
                    w.drafts,
                    w.floor,
                ),
                None => {
                    let overlap = Duration::minutes(self.config.overlap_minutes);
                    let (mut stop, floor) = cursor.walk_from(self.first_stop(), overlap);
                    // A backfill must read the pages an unchanged first page would spare.
                    if floor.is_none() {
                        conditional = cursor.etag.clone();
                    }
                    if kind == Kind::Releases {
                        // Reach down to the oldest draft, so it is seen again once published.
                        let oldest_draft = cursor
                            .pending
                            .iter()
                            .filter_map(|d| d.get("created_at").and_then(Value::as_str))
                            .filter_map(|t| parse_instant(t).ok())
                            .min();
                        stop = match (stop, oldest_draft) {
                            (Some(s), Some(d)) => Some(s.min(d)),
                            (s, _) => s,
                        };
                    }
                    (
                        first_url,
                        first_query,
                        stop,
                        cursor.high_water,
                        None,
                        Vec::new(),
                        floor,
                    )
                }
            };
        let mut pager = self.client.pager(kind.stream());
        loop {
            pager.next(&url)?;
            let Some(page) = self
                .client
                .get_json_if_changed(&url, &query, conditional.take().as_deref())
                .await?
            else {
                // 304: the list is as it was at the last completed walk.
                // The state still says what the stream covers (a bookmark written before
                // coverage was kept learns it here).
                return out.checkpoint(state).await;
            };
            if first_etag.is_none() {
                first_etag = page.header("etag").map(str::to_owned);
            }
            let Some(items) = page.body.as_array() else {
                return Err(self.decode_error(&page.url, "expected a JSON array"));
            };
            let mut reached_bookmark = false;
            let mut kept = Vec::new();
            let mut rejected = Vec::new();
            for item in items {
                if let Some(reason) = crate::lenient::unreadable(item) {
                    rejected.push(self.reject(kind.stream(), item, reason));
                    continue;
                }
                match item.get(cursor_field).and_then(Value::as_str).map(parse_instant) {
                    Some(Ok(at)) => {
                        if stop_below.is_some_and(|s| at < s) {
                            reached_bookmark = true;
                            continue;
                        }
                        high_water = high_water.max(Some(at));
                        kept.push(item.clone());
                    }
                    Some(Err(reason)) => rejected.push(self.reject(
                        kind.stream(),
                        item,
                        QuarantineReason::BadTimestamp {
                            field: cursor_field.to_string(),
                            error: reason,
                        },
                    )),
                    None => rejected.push(self.reject(
                        kind.stream(),
                        item,
                        QuarantineReason::MissingField(cursor_field.to_string()),
                    )),
                }
            }
            let (records, more_rejected, pending) = match kind {
                Kind::Deployments => self.map_deployments(repo, kept).await?,
                Kind::Pulls => self.map_pulls(repo, kept).await?,
                Kind::Releases => self.map_releases(repo, kept).await?,
            };
            rejected.extend(more_rejected);
            let cursor = state.cursors.entry(key.to_owned()).or_default();
            if kind == Kind::Deployments && self.config.compare_commits {
                CompareState::enqueue_all(&mut cursor.compare, &records);
            }
            out.records(records).await?;
            out.quarantine(rejected).await?;
            let target = if kind == Kind::Releases {
                &mut drafts
            } else {
                &mut cursor.pending
            };
            for p in pending {
                let id = p.get("id").cloned();
                if !target.iter().any(|q| q.get("id") == id.as_ref()) {
                    target.push(p);
                }
            }
            match page.link("next") {
                Some(next) if !reached_bookmark => {
                    cursor.walk = Some(Walk {
                        next: self.relative(&next),
                        stop_below,
                        high_water,
                        etag: first_etag.clone(),
                        drafts: drafts.clone(),
                        floor,
                        ..Walk::default()
                    });
                    out.checkpoint(state).await?;
                    url = next;
                    query = Vec::new();
                }
                _ => {
                    cursor.high_water = high_water;
                    cursor.walk = None;
                    cursor.etag = first_etag;
                    cursor.complete(floor, self.first_stop());
                    if kind == Kind::Releases {
                        cursor.pending = drafts;
                    }
                    out.checkpoint(state).await?;
                    return Ok(());
                }
            }
        }
    }
}
