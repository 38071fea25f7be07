//! The `workflow_runs` stream: runs of the configured Actions workflows as deployments.
//! `GET /repos/{o}/{r}/actions/runs?created=>=…` (newest first, wrapped in `{"total_count",
//! "workflow_runs"}`); GitHub serves at most 1,000 runs of a filtered list, so a range holding
//! more is split into smaller `created` windows, read one after the other, all remembered in the
//! bookmark. Runs still going are re-read by id on the next sync.
//!
//! With no deployment workflow configured it reads nothing and sends no request. Runs of other
//! workflows are skipped: they are not deployments.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::walk::{StreamState, Walk, Window};
use super::{GitHub, PER_PAGE, opt_time_field, str_field, time_field};
use crate::contract::Emitter;
use crate::error::ConnectorError;
use crate::model::QuarantineReason;
use crate::model::unusable;
use crate::model::{Deployment, DeploymentStatus, Quarantined, Record};
use crate::people::person;
use crate::time::{format_utc, parse_instant};

const STREAM: &str = "workflow_runs";
/// GitHub's cap on a filtered runs list.
const SEARCH_CAP: u64 = 1000;
/// Runs a split window aims at, well below the cap so new runs do not push it over.
const WINDOW_TARGET: u64 = 800;

impl Window {
    /// The `created` qualifier; `None` for an unbounded window.
    fn created(&self) -> Option<String> {
        match (self.from, self.to) {
            (None, None) => None,
            (Some(f), None) => Some(format!(">={}", format_utc(f))),
            (None, Some(t)) => Some(format!("<={}", format_utc(t))),
            (Some(f), Some(t)) => Some(format!("{}..{}", format_utc(f), format_utc(t))),
        }
    }

    /// `n` consecutive windows covering `from..=upper` in whole seconds, the last one keeping
    /// this window's own end (open when it had none, so runs created meanwhile are not missed).
    fn split(&self, upper: DateTime<Utc>, n: u64) -> Option<Vec<Window>> {
        let from = self.from?;
        let span = (upper - from).num_seconds();
        let n = i64::try_from(n).ok()?.clamp(2, 64).min(span);
        if n < 2 {
            return None;
        }
        let step = span / n;
        let mut out = Vec::new();
        for i in 0..n {
            let start = from + Duration::seconds(i * step);
            let to = if i + 1 == n {
                self.to
            } else {
                Some(from + Duration::seconds((i + 1) * step) - Duration::seconds(1))
            };
            out.push(Window {
                from: Some(start),
                to,
            });
        }
        Some(out)
    }
}

impl GitHub {
    pub(super) async fn read_runs(
        &self,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        if self.config.deployment_workflows.is_empty() {
            return Ok(());
        }
        for repo in &self.config.repos {
            // Still going at an earlier sync first: the walk adds this sync's own.
            self.repoll_runs(repo, state, out).await?;
            self.runs_walk(repo, state, out).await?;
        }
        Ok(())
    }

    fn window_url(&self, repo: &str, window: &Window) -> Result<String, ConnectorError> {
        let mut query = vec![("per_page", PER_PAGE.to_owned())];
        if let Some(created) = window.created() {
            query.push(("created", created));
        }
        self.url_with_query(&format!("/repos/{repo}/actions/runs"), &query)
    }

    /// Reads the runs created since the bookmark (minus the overlap), window by window.
    async fn runs_walk(
        &self,
        repo: &str,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        let key = repo.to_owned();
        let cursor = state.cursors.entry(key.clone()).or_default();
        let mut conditional = None;
        let mut walk = match cursor.walk.take() {
            Some(mut w) => {
                w.next = self.resolve(STREAM, &w.next)?;
                w
            }
            None => {
                let overlap = Duration::minutes(self.config.overlap_minutes);
                let (from, floor) = cursor.walk_from(self.first_stop(), overlap);
                let window = Window { from, to: None };
                let url = self.window_url(repo, &window)?;
                if cursor.etag_url.as_deref() == Some(url.as_str()) {
                    conditional = cursor.etag.clone();
                }
                Walk {
                    next: url.clone(),
                    high_water: cursor.high_water,
                    first_url: Some(url),
                    window: Some(window),
                    floor,
                    ..Walk::default()
                }
            }
        };
        let mut pager = self.client.pager(STREAM);
        loop {
            pager.next(&walk.next)?;
            let Some(page) = self
                .client
                .get_json_if_changed(&walk.next, &[], conditional.take().as_deref())
                .await?
            else {
                // 304: no run created or changed since the last completed walk.
                // The state still says what the stream covers (a bookmark written before
                // coverage was kept learns it here).
                return out.checkpoint(state).await;
            };
            if walk.etag.is_none() && walk.first_url.as_deref() == Some(walk.next.as_str()) {
                walk.etag = page.header("etag").map(str::to_owned);
            }
            let Some(items) = page.body.get("workflow_runs").and_then(Value::as_array) else {
                return Err(
                    self.decode_error(&page.url, "expected {\"total_count\", \"workflow_runs\": […]}")
                );
            };
            if let Some(window) = walk.window.take() {
                let total = page.body.get("total_count").and_then(Value::as_u64).unwrap_or(0);
                if window.from.is_some() && total >= SEARCH_CAP {
                    // Newest first: the first run bounds an open window from above.
                    let newest = items
                        .iter()
                        .filter_map(|r| r.get("created_at").and_then(Value::as_str))
                        .filter_map(|t| parse_instant(t).ok())
                        .max();
                    let pieces = window
                        .to
                        .or(newest)
                        .and_then(|upper| window.split(upper, total.div_ceil(WINDOW_TARGET)));
                    match pieces {
                        Some(mut pieces) => {
                            pieces.append(&mut walk.windows);
                            let first = pieces.remove(0);
                            walk.next = self.window_url(repo, &first)?;
                            walk.window = Some(first);
                            walk.windows = pieces;
                            continue;
                        }
                        None => tracing::warn!(
                            source = %self.config.name,
                            repo,
                            total,
                            "More workflow runs created within one second than GitHub lists; some are skipped."
                        ),
                    }
                }
            }
            let (records, rejected, pending) = self.map_runs(repo, items, &mut walk.high_water);
            out.records(records).await?;
            out.quarantine(rejected).await?;
            let cursor = state.cursors.entry(key.clone()).or_default();
            for p in pending {
                let id = p.get("id").cloned();
                if !cursor.pending.iter().any(|q| q.get("id") == id.as_ref()) {
                    cursor.pending.push(p);
                }
            }
            let next = match page.link("next") {
                Some(next) => Some((next, None)),
                None if !walk.windows.is_empty() => {
                    let w = walk.windows.remove(0);
                    Some((self.window_url(repo, &w)?, Some(w)))
                }
                None => None,
            };
            match next {
                Some((url, window)) => {
                    walk.next = url;
                    walk.window = window;
                    cursor.walk = Some(Walk {
                        next: self.relative(&walk.next),
                        high_water: walk.high_water,
                        etag: walk.etag.clone(),
                        first_url: walk.first_url.clone(),
                        window: walk.window,
                        windows: walk.windows.clone(),
                        floor: walk.floor,
                        ..Walk::default()
                    });
                    out.checkpoint(state).await?;
                }
                None => {
                    cursor.high_water = walk.high_water;
                    cursor.walk = None;
                    cursor.complete(walk.floor, self.first_stop());
                    // Newest first: a new run changes the first page, so its ETag tells.
                    cursor.etag = walk.etag;
                    cursor.etag_url = walk.first_url;
                    out.checkpoint(state).await?;
                    return Ok(());
                }
            }
        }
    }

    /// Re-reads runs that were still going at an earlier sync.
    async fn repoll_runs(
        &self,
        repo: &str,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        let Some(cursor) = state.cursors.get_mut(repo) else {
            return Ok(());
        };
        if cursor.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut cursor.pending);
        let mut fresh = Vec::new();
        for p in &pending {
            // The run's own link moved under the configured API root; one that cannot be moved
            // there (kept from before a base_url change) gives way to the id's own URL.
            let own = |id: u64| self.url(&format!("/repos/{repo}/actions/runs/{id}"));
            let url = match (
                p.get("url").and_then(Value::as_str),
                p.get("id").and_then(Value::as_u64),
            ) {
                (Some(url), id) => match (self.resolve(STREAM, url), id) {
                    (Ok(url), _) => url,
                    (Err(_), Some(id)) => own(id),
                    (Err(e), None) => {
                        if let Some(cursor) = state.cursors.get_mut(repo) {
                            cursor.pending = pending;
                        }
                        return Err(e);
                    }
                },
                (None, Some(id)) => own(id),
                (None, None) => continue,
            };
            match self.client.get_json(&url, &[]).await {
                Ok(page) => fresh.push(page.body),
                // Deleted since: nothing left to re-read.
                Err(ConnectorError::Status { status: 404, .. }) => {}
                Err(e) => {
                    if let Some(cursor) = state.cursors.get_mut(repo) {
                        cursor.pending = pending;
                    }
                    return Err(e);
                }
            }
        }
        let mut high_water = None;
        let (records, rejected, still_pending) = self.map_runs(repo, &fresh, &mut high_water);
        self.log_stale(STREAM, repo, &records);
        if let Some(cursor) = state.cursors.get_mut(repo) {
            cursor.pending = still_pending;
        }
        out.records(records).await?;
        out.quarantine(rejected).await?;
        out.checkpoint(state).await
    }

    /// Maps the runs of the deployment workflows, raising `high_water` to the newest creation;
    /// returns the ones still going.
    pub(super) fn map_runs(
        &self,
        repo: &str,
        items: &[Value],
        high_water: &mut Option<DateTime<Utc>>,
    ) -> (Vec<Record>, Vec<Quarantined>, Vec<Value>) {
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        let mut pending = Vec::new();
        for raw in items {
            if let Some(reason) = crate::lenient::unreadable(raw) {
                rejected.push(self.reject(STREAM, raw, reason));
                continue;
            }
            match raw.get("created_at").and_then(Value::as_str).map(parse_instant) {
                Some(Ok(at)) => *high_water = (*high_water).max(Some(at)),
                Some(Err(reason)) => {
                    rejected.push(self.reject(
                        STREAM,
                        raw,
                        QuarantineReason::BadTimestamp {
                            field: "created_at".into(),
                            error: reason,
                        },
                    ));
                    continue;
                }
                None => {
                    rejected.push(self.reject(
                        STREAM,
                        raw,
                        QuarantineReason::MissingField("created_at".into()),
                    ));
                    continue;
                }
            }
            if !self.is_deployment_workflow(raw) {
                continue;
            }
            match self.run(repo, raw) {
                Ok(d) => {
                    if d.status == DeploymentStatus::InProgress {
                        pending.push(self.keep_relative(raw.clone(), "url"));
                    }
                    records.push(Record::Deployment(d));
                }
                Err(reason) => rejected.push(self.reject(STREAM, raw, QuarantineReason::Message(reason))),
            }
        }
        (records, rejected, pending)
    }

    /// Whether a run belongs to a configured workflow, by name or by file (`deploy.yml` matches
    /// `.github/workflows/deploy.yml`).
    fn is_deployment_workflow(&self, raw: &Value) -> bool {
        let name = raw.get("name").and_then(Value::as_str);
        // Runs of reusable workflows carry `@ref` after the path.
        let path = raw
            .get("path")
            .and_then(Value::as_str)
            .map(|p| p.split('@').next().unwrap_or(p));
        self.config.deployment_workflows.iter().any(|w| {
            name.is_some_and(|n| n.eq_ignore_ascii_case(w))
                || path.is_some_and(|p| p == w || p.rsplit('/').next() == Some(w.as_str()))
        })
    }

    pub(super) fn run(&self, repo: &str, raw: &Value) -> Result<Deployment, String> {
        let id = raw
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| unusable("numeric id", raw.get("id"), "a number"))?;
        let attempt = raw.get("run_attempt").and_then(Value::as_u64).unwrap_or(1);
        let status = str_field(raw, "status")?;
        let conclusion = raw.get("conclusion").and_then(Value::as_str);
        let updated_at = time_field(raw, "updated_at")?;
        let (status, finished_at) = match (status.as_str(), conclusion) {
            ("completed", Some("success")) => (DeploymentStatus::Success, Some(updated_at)),
            ("completed", Some("failure" | "timed_out")) => (DeploymentStatus::Failure, Some(updated_at)),
            ("completed", Some("cancelled")) => (DeploymentStatus::Cancelled, Some(updated_at)),
            // The workflow file could not start a run: the deployment could not run.
            ("completed", Some("startup_failure")) => (DeploymentStatus::Error, Some(updated_at)),
            ("completed", Some(other)) => {
                return Err(format!("conclusion {other:?} says nothing about a deployment"));
            }
            ("completed", None) => return Err("completed without a conclusion".into()),
            ("queued" | "in_progress" | "waiting" | "requested" | "pending", _) => {
                (DeploymentStatus::InProgress, None)
            }
            (other, _) => return Err(format!("unknown workflow run status {other:?}")),
        };
        let environment = self.config.workflow_environment.clone();
        let created_at = match opt_time_field(raw, "run_started_at")? {
            Some(t) => t,
            None => time_field(raw, "created_at")?,
        };
        // Still going long after it began: it will not be asked about again.
        let status = if status == DeploymentStatus::InProgress && created_at < self.stale_before() {
            DeploymentStatus::Stale
        } else {
            status
        };
        Ok(Deployment {
            change_refs: Vec::new(),
            deployed_by: person(raw, &["/triggering_actor/login", "/actor/login"]),
            id: format!("{}:{repo}:run-{id}-{attempt}", self.config.name),
            source: self.config.name.clone(),
            repo: repo.to_owned(),
            service: None,
            team: None,
            is_production: self.is_production(&environment, false),
            environment,
            status,
            sha: str_field(raw, "head_sha")?,
            created_at,
            finished_at,
            updated_at,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_instant(s).unwrap()
    }

    #[test]
    fn windows_cover_the_range_without_gaps_and_keep_the_open_end() {
        let w = Window {
            from: Some(t("2024-01-01T00:00:00Z")),
            to: None,
        };
        assert_eq!(w.created().unwrap(), ">=2024-01-01T00:00:00Z");
        let pieces = w.split(t("2024-01-01T00:00:10Z"), 3).unwrap();
        assert_eq!(pieces.len(), 3);
        assert_eq!(
            pieces[0].created().unwrap(),
            "2024-01-01T00:00:00Z..2024-01-01T00:00:02Z"
        );
        assert_eq!(
            pieces[1].created().unwrap(),
            "2024-01-01T00:00:03Z..2024-01-01T00:00:05Z"
        );
        assert_eq!(pieces[2].created().unwrap(), ">=2024-01-01T00:00:06Z");
        // A closed window keeps its end; one second cannot be split.
        let closed = Window {
            from: Some(t("2024-01-01T00:00:00Z")),
            to: Some(t("2024-01-02T00:00:00Z")),
        };
        let pieces = closed.split(t("2024-01-02T00:00:00Z"), 2).unwrap();
        assert_eq!(pieces[1].to, closed.to);
        assert!(closed.split(t("2024-01-01T00:00:01Z"), 5).is_none());
        assert!(
            Window { from: None, to: None }
                .split(t("2024-01-01T00:00:01Z"), 2)
                .is_none()
        );
        assert!(Window { from: None, to: None }.created().is_none());
    }
}
