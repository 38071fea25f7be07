//! The `releases` stream: published releases as deployments to the configured release
//! environment, newest first down to the bookmark. A release whose `target_commitish` is a branch
//! gets its sha from the tag (`GET /repos/{o}/{r}/commits/{tag}`); drafts are not deployments and
//! are remembered so the next walks reach down to them until they are published.
//!
//! With `releases_as_deployments = false` (the default) it reads nothing and sends no request.

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use super::walk::{Kind, Mapped, StreamState};
use super::{CONCURRENCY, GitHub, PER_PAGE, encode_ref, is_sha, opt_time_field, str_field, time_field};
use crate::contract::Emitter;
use crate::error::ConnectorError;
use crate::model::QuarantineReason;
use crate::model::unusable;
use crate::model::{Deployment, DeploymentStatus, Record};
use crate::people::person;

const STREAM: &str = "releases";

/// How a release's sha was found.
enum Target {
    Sha(String),
    /// The tag resolves to no commit: the HTTP status and body of the answer.
    Unresolved(u16, String),
}

impl GitHub {
    pub(super) async fn read_releases(
        &self,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        if !self.config.releases_as_deployments {
            return Ok(());
        }
        for repo in &self.config.repos {
            let url = self.url(&format!("/repos/{repo}/releases"));
            let query = vec![("per_page", PER_PAGE.to_owned())];
            self.walk(Kind::Releases, repo, repo, url, query, state, out)
                .await?;
        }
        Ok(())
    }

    /// Maps published releases (resolving branch targets through their tags); returns drafts.
    pub(super) async fn map_releases(&self, repo: &str, items: Vec<Value>) -> Result<Mapped, ConnectorError> {
        let (drafts, published): (Vec<Value>, Vec<Value>) = items.into_iter().partition(|r| {
            r.get("draft").and_then(Value::as_bool).unwrap_or(false)
                || r.get("published_at").is_none_or(Value::is_null)
        });
        let resolved: Vec<(Value, Option<Target>)> =
            stream::iter(published.into_iter().map(|r| async move {
                let target = r
                    .get("target_commitish")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if target.len() == 40 && is_sha(target) {
                    let sha = target.to_ascii_lowercase();
                    return Ok::<_, ConnectorError>((r, Some(Target::Sha(sha))));
                }
                let Some(tag) = r
                    .get("tag_name")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                else {
                    return Ok((r, None));
                };
                let url = self.url(&format!("/repos/{repo}/commits/{}", encode_ref(tag)));
                match self.client.get_json(&url, &[]).await {
                    Ok(page) => {
                        let sha = page.body.get("sha").and_then(Value::as_str).map(str::to_owned);
                        Ok((r, sha.map(Target::Sha)))
                    }
                    // The tag is gone or never pointed at a commit: the release cannot be placed.
                    Err(ConnectorError::Status { status, body, .. }) if status == 404 || status == 422 => {
                        Ok((r, Some(Target::Unresolved(status, body))))
                    }
                    Err(e) => Err(e),
                }
            }))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        for (raw, target) in resolved {
            let sha = match target {
                Some(Target::Sha(sha)) => sha,
                Some(Target::Unresolved(status, body)) => {
                    let reason = format!("the release's tag resolves to no commit (HTTP {status}: {body})");
                    rejected.push(self.reject(STREAM, &raw, QuarantineReason::Message(reason)));
                    continue;
                }
                None => {
                    rejected.push(self.reject(
                        STREAM,
                        &raw,
                        QuarantineReason::Message("no sha: missing tag_name or commit sha".into()),
                    ));
                    continue;
                }
            };
            match self.release(repo, &raw, sha) {
                Ok(d) => records.push(Record::Deployment(d)),
                Err(reason) => rejected.push(self.reject(STREAM, &raw, QuarantineReason::Message(reason))),
            }
        }
        Ok((records, rejected, drafts))
    }

    pub(super) fn release(&self, repo: &str, raw: &Value, sha: String) -> Result<Deployment, String> {
        let id = raw
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| unusable("numeric id", raw.get("id"), "a number"))?;
        let published_at = time_field(raw, "published_at")?;
        let updated_at = opt_time_field(raw, "updated_at")?.map_or(published_at, |u| u.max(published_at));
        let environment = self.config.release_environment.clone();
        str_field(raw, "tag_name")?;
        Ok(Deployment {
            change_refs: Vec::new(),
            deployed_by: person(raw, &["/author/login"]),
            id: format!("{}:{repo}:release-{id}", self.config.name),
            source: self.config.name.clone(),
            repo: repo.to_owned(),
            service: None,
            team: None,
            is_production: self.is_production(&environment, false),
            environment,
            status: DeploymentStatus::Success,
            sha,
            created_at: time_field(raw, "created_at")?,
            finished_at: Some(published_at),
            updated_at,
        })
    }
}
