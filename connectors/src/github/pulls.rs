//! The `pulls` stream: closed pull requests, newest update first down to the bookmark; merged ones
//! get the author time of their first commit (`pulls/{n}/commits`, bounded concurrency).
//!
//! It must not guess which deployment shipped a pull request: that is the pipeline's job.

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::Value;

use super::walk::{Kind, Mapped, StreamState};
use super::{CONCURRENCY, GitHub, PER_PAGE, label_names, opt_time_field, str_field, time_field};
use crate::contract::Emitter;
use crate::error::ConnectorError;
use crate::model::QuarantineReason;
use crate::model::unusable;
use crate::model::{Change, Record};
use crate::people::person;
use crate::time::parse_instant;

impl GitHub {
    pub(super) async fn read_pulls(
        &self,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        for repo in &self.config.repos {
            let url = self.url(&format!("/repos/{repo}/pulls"));
            let query = vec![
                ("state", "closed".to_owned()),
                ("sort", "updated".to_owned()),
                ("direction", "desc".to_owned()),
                ("per_page", PER_PAGE.to_owned()),
            ];
            self.walk(Kind::Pulls, repo, repo, url, query, state, out).await?;
        }
        Ok(())
    }

    /// Maps closed pull requests; merged ones get their first commit's author time.
    pub(super) async fn map_pulls(&self, repo: &str, items: Vec<Value>) -> Result<Mapped, ConnectorError> {
        let with_commits: Vec<(Value, Vec<Value>)> = stream::iter(items.into_iter().map(|p| async move {
            let merged = p.get("merged_at").is_some_and(|m| !m.is_null());
            let number = p.get("number").and_then(Value::as_u64);
            match (merged, number) {
                (true, Some(n)) => {
                    let url = self.url(&format!("/repos/{repo}/pulls/{n}/commits"));
                    let commits = self
                        .get_all("pulls", url, vec![("per_page", PER_PAGE.to_owned())])
                        .await?;
                    Ok::<_, ConnectorError>((p, commits))
                }
                _ => Ok((p, Vec::new())),
            }
        }))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        for (raw, commits) in with_commits {
            match self.change(repo, &raw, &commits) {
                Ok(c) => records.push(Record::Change(c)),
                Err(reason) => {
                    rejected.push(self.reject(Kind::Pulls.stream(), &raw, QuarantineReason::Message(reason)))
                }
            }
        }
        Ok((records, rejected, Vec::new()))
    }

    pub(super) fn change(&self, repo: &str, raw: &Value, commits: &[Value]) -> Result<Change, String> {
        let number = raw
            .get("number")
            .and_then(Value::as_i64)
            .ok_or_else(|| unusable("number", raw.get("number"), "a number"))?;
        let title = raw
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let merged_at = opt_time_field(raw, "merged_at")?;
        let mut first_commit_at: Option<DateTime<Utc>> = None;
        for c in commits {
            let date = c
                .pointer("/commit/author/date")
                .and_then(Value::as_str)
                .ok_or("a commit without commit.author.date")?;
            let at = parse_instant(date).map_err(|e| format!("commit author date: {e}"))?;
            first_commit_at = Some(first_commit_at.map_or(at, |f| f.min(at)));
        }
        let body = raw.get("body").and_then(Value::as_str).unwrap_or_default();
        let is_revert = title.starts_with("Revert \"") || title.starts_with("Revert '");
        Ok(Change {
            author: person(raw, &["/user/login"]),
            id: format!("{}:{repo}:{number}", self.config.name),
            source: self.config.name.clone(),
            repo: repo.to_owned(),
            service: None,
            team: None,
            number,
            state: if merged_at.is_some() {
                "merged".into()
            } else {
                str_field(raw, "state")?
            },
            created_at: time_field(raw, "created_at")?,
            merged_at,
            merge_commit_sha: raw
                .get("merge_commit_sha")
                .and_then(Value::as_str)
                .map(str::to_owned),
            first_commit_at,
            labels: label_names(raw),
            is_revert,
            reverts: if is_revert { reverted_number(body) } else { None },
            title,
            updated_at: time_field(raw, "updated_at")?,
        })
    }
}

/// GitHub's revert PRs say "Reverts owner/repo#123" in their body.
fn reverted_number(body: &str) -> Option<i64> {
    let rest = body.split("Reverts ").nth(1)?;
    let after_hash = rest.split('#').nth(1)?;
    let digits: String = after_hash.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revert_body_names_the_reverted_pull() {
        assert_eq!(reverted_number("Reverts acme/checkout#123\n\nbecause"), Some(123));
        assert_eq!(reverted_number("nothing here"), None);
    }
}
