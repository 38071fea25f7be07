//! The `deployments` stream: each environment's deployments with their final status (statuses
//! fetched with bounded concurrency, unfinished ones re-polled on the next sync), then the commits
//! each newly seen successful production deployment brought: `compare/{previous sha}...{sha}`
//! against the previous successful production deployment of the same repo and environment.
//!
//! The previous deployment and the deployments still to compare live in the bookmark, so a kill
//! between compares loses nothing. Older deployments a backfill finds (a raised lookback) are
//! compared among themselves and with the earliest one seen before, which then gets its commits
//! too. A deployment still unfinished `stale_after_days` after it was created is `stale` and no
//! longer re-polled. A compare that goes `behind` is a rollback: it brings no commits. This
//! module must not decide lead times: it only links commits to deployments.

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::walk::{Kind, Mapped, StreamState};
use super::{CONCURRENCY, GitHub, PER_PAGE, str_field, time_field};
use crate::contract::Emitter;
use crate::error::ConnectorError;
use crate::model::QuarantineReason;
use crate::model::unusable;
use crate::model::{Commit, Deployment, DeploymentStatus, Quarantined, Record};
use crate::people::person;
use crate::time::parse_instant;

const STREAM: &str = "deployments";
/// Commits sent per batch (and checkpoint) while comparing.
const COMMIT_BATCH: usize = 500;

/// A successful production deployment, as far as compares need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Shipped {
    /// Canonical deployment id.
    id: String,
    sha: String,
    finished_at: DateTime<Utc>,
}

impl Shipped {
    fn order(&self) -> (DateTime<Utc>, &str) {
        (self.finished_at, &self.id)
    }
}

/// Per repo and environment: the last production deployment whose commits are known and the
/// newer ones still to compare.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct CompareState {
    /// The latest deployment compared (or the first ever seen, which has no baseline).
    baseline: Option<Shipped>,
    /// Newly seen successful production deployments, compared in finish order.
    #[serde(default)]
    queue: Vec<Shipped>,
    /// The latest deployment whose compare went `behind`: a rollback to an older commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_rollback: Option<String>,
    /// The earliest deployment seen, which had nothing before it to compare with (unknown in
    /// states written before backfills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    earliest: Option<Shipped>,
    /// Deployments older than `earliest` that a backfill found, still to compare.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    older: Vec<Shipped>,
    /// A backfill's compares in progress: consecutive deployments in finish order, ending with
    /// the former earliest one; each is compared with the one before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    chain: Vec<Shipped>,
}

/// Which compares a pair belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Deployments newer than the baseline.
    Newer,
    /// A backfill's chain of deployments older than the earliest one.
    Older,
}

impl CompareState {
    /// Queues the successful production deployments among `records` that are newer than the
    /// baseline (creating the state at the first one).
    pub(super) fn enqueue_all(state: &mut Option<Self>, records: &[Record]) {
        for r in records {
            let Record::Deployment(d) = r else { continue };
            let Some(finished_at) = d.finished_at else {
                continue;
            };
            if !d.is_production || d.status != DeploymentStatus::Success {
                continue;
            }
            let s = Shipped {
                id: d.id.clone(),
                sha: d.sha.clone(),
                finished_at,
            };
            let compare = state.get_or_insert_with(Self::default);
            // Older than every deployment seen so far: history a backfill brought.
            if compare.earliest.as_ref().is_some_and(|e| s.order() < e.order()) {
                if !compare.older.iter().chain(&compare.chain).any(|o| o.id == s.id) {
                    compare.older.push(s);
                }
                continue;
            }
            let seen = compare.baseline.as_ref().is_some_and(|b| s.order() <= b.order())
                || compare.queue.iter().any(|q| q.id == s.id);
            if !seen {
                compare.queue.push(s);
            }
        }
    }
}

/// One compare's answer, all pages.
struct Compared {
    status: String,
    commits: Vec<Value>,
}

impl GitHub {
    pub(super) async fn read_deployments(
        &self,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        for repo in &self.config.repos {
            for env in &self.config.environments {
                let key = format!("{repo}@{env}");
                let url = self.url(&format!("/repos/{repo}/deployments"));
                let query = vec![("environment", env.clone()), ("per_page", PER_PAGE.to_owned())];
                // Unfinished at an earlier sync first: the walk adds this sync's own.
                self.repoll_pending(repo, &key, state, out).await?;
                self.walk(Kind::Deployments, repo, &key, url, query, state, out)
                    .await?;
                if self.config.compare_commits {
                    self.compare_queued(repo, &key, state, out).await?;
                    self.compare_older(repo, &key, state, out).await?;
                }
            }
        }
        Ok(())
    }

    /// Re-reads the statuses of deployments that were unfinished at an earlier sync.
    async fn repoll_pending(
        &self,
        repo: &str,
        key: &str,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        let Some(cursor) = state.cursors.get_mut(key) else {
            return Ok(());
        };
        if cursor.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut cursor.pending);
        let (records, rejected, still_pending) = self.map_deployments(repo, pending).await?;
        self.log_stale(STREAM, repo, &records);
        if let Some(cursor) = state.cursors.get_mut(key) {
            cursor.pending = still_pending;
            if self.config.compare_commits {
                CompareState::enqueue_all(&mut cursor.compare, &records);
            }
        }
        out.records(records).await?;
        out.quarantine(rejected).await?;
        out.checkpoint(state).await
    }

    /// Fetches each deployment's statuses and maps it; returns the unfinished ones to re-poll.
    pub(super) async fn map_deployments(
        &self,
        repo: &str,
        items: Vec<Value>,
    ) -> Result<Mapped, ConnectorError> {
        let with_statuses: Vec<(Value, Option<Vec<Value>>)> =
            stream::iter(items.into_iter().map(|d| async move {
                let Some(id) = d.get("id").and_then(Value::as_u64) else {
                    return Ok::<_, ConnectorError>((d, None));
                };
                // Follow the record's own statuses_url when it has one (Enterprise hosts, numeric
                // forms), moved under the configured API root. One that cannot be moved there
                // (kept from before a base_url change) gives way to the id's own URL: the id
                // says where the deployment lives, so nothing is lost.
                let own = || self.url(&format!("/repos/{repo}/deployments/{id}/statuses"));
                let url = match d.get("statuses_url").and_then(Value::as_str) {
                    Some(link) => self.resolve(STREAM, link).unwrap_or_else(|_| own()),
                    None => own(),
                };
                let statuses = self
                    .get_all(STREAM, url, vec![("per_page", PER_PAGE.to_owned())])
                    .await?;
                Ok((d, Some(statuses)))
            }))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        let mut pending = Vec::new();
        for (raw, statuses) in with_statuses {
            let Some(statuses) = statuses else {
                rejected.push(self.reject(STREAM, &raw, QuarantineReason::MissingField("numeric id".into())));
                continue;
            };
            match self.deployment(repo, &raw, &statuses) {
                Ok(d) => {
                    if d.status == DeploymentStatus::InProgress {
                        pending.push(self.keep_relative(raw, "statuses_url"));
                    }
                    records.push(Record::Deployment(d));
                }
                Err(reason) => rejected.push(self.reject(STREAM, &raw, QuarantineReason::Message(reason))),
            }
        }
        Ok((records, rejected, pending))
    }

    pub(super) fn deployment(
        &self,
        repo: &str,
        raw: &Value,
        statuses: &[Value],
    ) -> Result<Deployment, String> {
        let id = raw
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| unusable("numeric id", raw.get("id"), "a number"))?;
        let environment = str_field(raw, "environment")?;
        let created_at = time_field(raw, "created_at")?;
        let updated_at = raw
            .get("updated_at")
            .and_then(Value::as_str)
            .map(parse_instant)
            .transpose()?
            .unwrap_or(created_at);
        let mut parsed = Vec::new();
        for s in statuses {
            let state = str_field(s, "state")?;
            let at = time_field(s, "created_at")?;
            let sid = s.get("id").and_then(Value::as_u64).unwrap_or(0);
            parsed.push((at, sid, state));
        }
        // Order is not guaranteed: sort, then take the latest status that is not `inactive`
        // (GitHub marks earlier successful deployments inactive when a newer one succeeds).
        parsed.sort();
        let last_active = parsed.iter().rev().find(|(_, _, s)| s != "inactive");
        let (status, finished_at) = match last_active {
            None if parsed.is_empty() => (DeploymentStatus::InProgress, None),
            // Only `inactive` statuses: the deployment was live and then superseded.
            None => (DeploymentStatus::Success, parsed.first().map(|p| p.0)),
            Some((at, _, state)) => match state.as_str() {
                "success" => (DeploymentStatus::Success, Some(*at)),
                "failure" => (DeploymentStatus::Failure, Some(*at)),
                "error" => (DeploymentStatus::Error, Some(*at)),
                "queued" | "pending" | "in_progress" => (DeploymentStatus::InProgress, None),
                other => return Err(format!("unknown deployment status state {other:?}")),
            },
        };
        // Unfinished long after it began: it will not be asked about again.
        let status = if status == DeploymentStatus::InProgress && created_at < self.stale_before() {
            DeploymentStatus::Stale
        } else {
            status
        };
        let latest_status = parsed.last().map(|p| p.0);
        let production_flag = raw
            .get("production_environment")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Deployment {
            deployed_by: person(raw, &["/creator/login"]),
            change_refs: change_refs(raw.get("payload")),
            id: format!("{}:{repo}:{id}", self.config.name),
            source: self.config.name.clone(),
            repo: repo.to_owned(),
            service: None,
            team: None,
            is_production: self.is_production(&environment, production_flag),
            environment,
            status,
            sha: str_field(raw, "sha")?,
            created_at,
            finished_at,
            updated_at: updated_at.max(latest_status.unwrap_or(updated_at)),
        })
    }

    /// Compares each queued deployment with the one before it, in finish order, a checkpoint after
    /// each batch of commits; the first deployment ever seen only becomes the baseline. What head
    /// has and base has not is what the deployment brought: nothing for a redeploy (`identical`)
    /// or a rollback (`behind`), the head side of a `diverged` history (a force-push).
    async fn compare_queued(
        &self,
        repo: &str,
        key: &str,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        let (mut base, queue, new_baseline) = {
            let Some(compare) = state.cursors.get_mut(key).and_then(|c| c.compare.as_mut()) else {
                return Ok(());
            };
            if compare.queue.is_empty() {
                return Ok(());
            }
            compare.queue.sort_by(|a, b| a.order().cmp(&b.order()));
            let mut queue = compare.queue.clone();
            match compare.baseline.clone() {
                Some(b) => (b, queue, false),
                None => {
                    // No earlier deployment to compare with: no commits for this one, and that
                    // is fine.
                    let first = queue.remove(0);
                    compare.queue.retain(|q| q.id != first.id);
                    compare.baseline = Some(first.clone());
                    compare.earliest = Some(first.clone());
                    (first, queue, true)
                }
            }
        };
        if new_baseline {
            out.checkpoint(state).await?;
        }
        let mut pairs = Vec::with_capacity(queue.len());
        for head in queue {
            pairs.push((base.clone(), head.clone()));
            base = head;
        }
        self.compare_pairs(repo, key, pairs, Side::Newer, state, out)
            .await
    }

    /// Compares the deployments a backfill found before the earliest one seen, in finish order:
    /// the oldest becomes the earliest (nothing before it), each later one is compared with the
    /// one before it, and the former earliest one at last gets its commits too.
    async fn compare_older(
        &self,
        repo: &str,
        key: &str,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        let chain = {
            let Some(compare) = state.cursors.get_mut(key).and_then(|c| c.compare.as_mut()) else {
                return Ok(());
            };
            if compare.chain.is_empty() {
                let Some(earliest) = compare.earliest.clone() else {
                    return Ok(());
                };
                if compare.older.is_empty() {
                    return Ok(());
                }
                let mut chain = std::mem::take(&mut compare.older);
                chain.sort_by(|a, b| a.order().cmp(&b.order()));
                chain.push(earliest);
                compare.earliest = chain.first().cloned();
                compare.chain = chain;
            }
            compare.chain.clone()
        };
        out.checkpoint(state).await?;
        let pairs = chain.windows(2).map(|w| (w[0].clone(), w[1].clone())).collect();
        self.compare_pairs(repo, key, pairs, Side::Older, state, out)
            .await
    }

    /// Fetches the compares of `pairs` (base, head) and sends the commits each head brought, a
    /// checkpoint after each batch; `side` says which part of the state each done pair updates.
    async fn compare_pairs(
        &self,
        repo: &str,
        key: &str,
        pairs: Vec<(Shipped, Shipped)>,
        side: Side,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        // Compares are independent once the pairs are known: fetch several at once, apply in order.
        let mut answers = stream::iter(pairs.into_iter().map(|(base, head)| async move {
            let answer = if base.sha == head.sha {
                // A redeploy of the same commit brings nothing: no need to ask.
                Ok(Compared {
                    status: "identical".into(),
                    commits: Vec::new(),
                })
            } else {
                self.compare(repo, &base.sha, &head.sha).await
            };
            (base, head, answer)
        }))
        .buffered(CONCURRENCY);
        // Commits go out in batches with one checkpoint each: a store write per compare would
        // cost more than the compare.
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        let mut unsaved = false;
        while let Some((base, head, answer)) = answers.next().await {
            let mut rollback = false;
            match answer {
                Ok(c) => {
                    let (r, q) = self.commits(repo, &head, &c.commits);
                    records.extend(r);
                    rejected.extend(q);
                    if c.status == "behind" {
                        rollback = true;
                        tracing::info!(
                            source = %self.config.name,
                            repo,
                            deployment = %head.id,
                            "Deployment returns to an older commit (a rollback): it brings no new commits."
                        );
                    }
                }
                // The commits are gone (force-push, deleted fork): keep the deployment, say why.
                Err(ConnectorError::Status {
                    status, body, url, ..
                }) if status == 404 || status == 422 => {
                    let raw = json!({"id": head.id, "base": base.sha, "head": head.sha});
                    let reason = format!(
                        "compare of the deployment with the previous production deployment answered HTTP {status} at {url} ({body}): its commits are unknown"
                    );
                    rejected.push(self.reject(STREAM, &raw, QuarantineReason::UnknownReference(reason)));
                }
                Err(e) => {
                    // Keep what the earlier compares brought; the rest stays queued.
                    if unsaved {
                        flush(out, state, &mut records, &mut rejected).await?;
                    }
                    return Err(e);
                }
            }
            if let Some(compare) = state.cursors.get_mut(key).and_then(|c| c.compare.as_mut()) {
                match side {
                    Side::Newer => {
                        compare.queue.retain(|q| q.id != head.id);
                        if rollback {
                            compare.last_rollback = Some(head.id.clone());
                        }
                        compare.baseline = Some(head);
                    }
                    Side::Older => {
                        // The base is done with; a chain of one has nothing left to compare.
                        compare.chain.retain(|c| c.id != base.id);
                        if compare.chain.len() < 2 {
                            compare.chain.clear();
                        }
                    }
                }
            }
            unsaved = true;
            if records.len() >= COMMIT_BATCH {
                flush(out, state, &mut records, &mut rejected).await?;
                unsaved = false;
            }
        }
        if unsaved {
            flush(out, state, &mut records, &mut rejected).await?;
        }
        Ok(())
    }

    /// `GET /repos/{repo}/compare/{base}...{head}`, every page of commits.
    async fn compare(&self, repo: &str, base: &str, head: &str) -> Result<Compared, ConnectorError> {
        let url = self.url(&format!("/repos/{repo}/compare/{base}...{head}"));
        let mut pager = self.client.pager(STREAM);
        pager.count()?;
        // A paging parameter makes GitHub page the commits (oldest first) instead of cutting
        // the list at 250.
        let mut page = self
            .client
            .get_json(&url, &[("per_page", PER_PAGE.to_owned())])
            .await?;
        let status = page
            .body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut commits = Vec::new();
        loop {
            match page.body.get("commits").and_then(Value::as_array) {
                Some(items) => commits.extend(items.iter().cloned()),
                None => return Err(self.decode_error(&page.url, "a compare without a `commits` array")),
            }
            match page.link("next") {
                Some(next) => {
                    pager.next(&next)?;
                    page = self.client.get_json(&next, &[]).await?;
                }
                None => return Ok(Compared { status, commits }),
            }
        }
    }

    /// Maps a compare's commits, each linked to the deployment that brought it.
    fn commits(&self, repo: &str, deployment: &Shipped, items: &[Value]) -> (Vec<Record>, Vec<Quarantined>) {
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        for raw in items {
            match self.commit(repo, deployment, raw) {
                Ok(c) => records.push(Record::Commit(c)),
                Err(reason) => rejected.push(self.reject(STREAM, raw, QuarantineReason::Message(reason))),
            }
        }
        (records, rejected)
    }

    pub(super) fn commit(&self, repo: &str, deployment: &Shipped, raw: &Value) -> Result<Commit, String> {
        let sha = str_field(raw, "sha")?;
        let date = raw
            .pointer("/commit/author/date")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                unusable(
                    "commit.author.date",
                    raw.pointer("/commit/author/date"),
                    "a timestamp",
                )
            })?;
        let authored_at = parse_instant(date).map_err(|e| format!("commit.author.date: {e}"))?;
        let parents = raw
            .get("parents")
            .and_then(Value::as_array)
            .ok_or_else(|| unusable("parents", raw.get("parents"), "a list"))?
            .iter()
            .map(|p| {
                p.get("sha")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or("a parent without sha")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let title = raw
            .pointer("/commit/message")
            .and_then(Value::as_str)
            .and_then(|m| m.lines().next())
            .unwrap_or_default()
            .to_owned();
        Ok(Commit {
            author_email: person(raw, &["/commit/author/email"]),
            author_name: person(raw, &["/commit/author/name"]),
            id: format!("{}:{repo}:{sha}", self.config.name),
            source: self.config.name.clone(),
            repo: repo.to_owned(),
            service: None,
            team: None,
            sha,
            authored_at,
            parents,
            title,
            deployment_id: Some(deployment.id.clone()),
            updated_at: deployment.finished_at,
        })
    }
}

/// Sends the records and rejects gathered so far, then the state that covers them.
async fn flush(
    out: &Emitter,
    state: &StreamState,
    records: &mut Vec<Record>,
    rejected: &mut Vec<Quarantined>,
) -> Result<(), ConnectorError> {
    out.records(std::mem::take(records)).await?;
    out.quarantine(std::mem::take(rejected)).await?;
    out.checkpoint(state).await
}

/// The change records a deployment's `payload` names: the value of every top-level key whose name
/// mentions a change (`change_request`, `changeRequest`, `change`, `servicenow_change`, `chg`, any
/// letter case), a text or a number, or a list of them; trimmed, by key name, without repeats. GitHub
/// gives the payload as the object the deployment was created with, or as a string holding one.
/// What a reference names is settled by the pipeline against the change requests it knows.
fn change_refs(payload: Option<&Value>) -> Vec<String> {
    let parsed;
    let payload = match payload {
        Some(Value::String(text)) => {
            parsed = serde_json::from_str::<Value>(text).ok();
            parsed.as_ref()
        }
        other => other,
    };
    let Some(fields) = payload.and_then(Value::as_object) else {
        return Vec::new();
    };
    let text = |value: &Value| match value {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let mut refs: Vec<String> = Vec::new();
    for (key, value) in fields {
        let key = key.to_ascii_lowercase();
        if !(key.contains("change") || key.contains("chg")) {
            continue;
        }
        let found: Vec<String> = match value {
            Value::Array(items) => items.iter().filter_map(text).collect(),
            other => text(other).into_iter().collect(),
        };
        for r in found {
            if !refs.contains(&r) {
                refs.push(r);
            }
        }
    }
    refs
}

#[cfg(test)]
mod payload_tests {
    use super::*;

    #[test]
    fn change_records_come_from_the_payload_keys_that_name_a_change() {
        let payload = json!({
            "change_request": " CHG0030001 ",
            "changeRequests": ["CHG0030002", "CHG0030001", 4711],
            "servicenow_chg": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "deploy_target": "CHG0039999",
            "change": "",
            "changes": {"nested": "CHG0030003"}
        });
        assert_eq!(
            change_refs(Some(&payload)),
            // `changeRequests` sorts before `change_request`.
            [
                "CHG0030002",
                "CHG0030001",
                "4711",
                "a1b2c3d4e5f60718293a4b5c6d7e8f90"
            ]
        );
        // A payload created as a string holding JSON, an empty one, text, or none.
        let as_text = Value::String(r#"{"change": "CHG0030004"}"#.into());
        assert_eq!(change_refs(Some(&as_text)), ["CHG0030004"]);
        assert!(change_refs(Some(&json!({}))).is_empty());
        assert!(change_refs(Some(&Value::String("deploy it".into()))).is_empty());
        assert!(change_refs(None).is_empty());
    }
}
