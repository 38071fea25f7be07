//! The bookmark layout of every GitHub stream and the newest-first walk shared by deployments,
//! pull requests and releases: read pages until one reaches below the bookmark (minus an overlap),
//! a checkpoint after each, resumable from the saved `next` link.
//!
//! What a page's items become is each stream's business (its own file); this module only decides
//! which pages to read and what the bookmark remembers.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::GitHub;
use super::deployments::CompareState;
use crate::contract::Emitter;
use crate::error::ConnectorError;
use crate::model::QuarantineReason;
use crate::model::{Quarantined, Record};
use crate::time::parse_instant;

/// Bookmark of one stream: a cursor per repo (per repo and environment for deployments, per repo
/// and label for issues).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct StreamState {
    pub(super) cursors: BTreeMap<String, Cursor>,
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
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Walk {
    pub(super) next: String,
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
    /// Where a first walk (no bookmark) stops: `lookback_days` back, or nowhere.
    pub(super) fn first_stop(&self) -> Option<DateTime<Utc>> {
        self.config.lookback_days.map(|d| Utc::now() - Duration::days(d))
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
        let (mut url, mut query, stop_below, mut high_water, mut first_etag, mut drafts) =
            match cursor.walk.take() {
                Some(w) => (w.next, Vec::new(), w.stop_below, w.high_water, w.etag, w.drafts),
                None => {
                    conditional = cursor.etag.clone();
                    let overlap = Duration::minutes(self.config.overlap_minutes);
                    let mut stop = cursor
                        .high_water
                        .map(|h| h - overlap)
                        .or_else(|| self.first_stop());
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
                    (first_url, first_query, stop, cursor.high_water, None, Vec::new())
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
                return Ok(());
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
                        next: next.clone(),
                        stop_below,
                        high_water,
                        etag: first_etag.clone(),
                        drafts: drafts.clone(),
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
