//! The `issues` stream: issues carrying one of the configured incident labels, as incidents.
//! `GET /repos/{o}/{r}/issues?labels=…&since=…&sort=updated&direction=asc`, one walk per repo and
//! label, oldest update first, a checkpoint after each page; pull requests (which GitHub lists as
//! issues, with a `pull_request` key) are skipped.
//!
//! With no incident label configured it reads nothing and sends no request. It must not attribute
//! incidents: it only passes on the cause references the issue itself names.

use chrono::Duration;
use serde_json::Value;

use super::walk::{StreamState, Walk};
use super::{GitHub, PER_PAGE, is_sha, label_names, opt_time_field, str_field, time_field};
use crate::contract::Emitter;
use crate::error::ConnectorError;
use crate::model::QuarantineReason;
use crate::model::unusable;
use crate::model::{Incident, Record, Severity};
use crate::people::person;
use crate::time::{format_utc, parse_instant};

const STREAM: &str = "issues";

impl GitHub {
    pub(super) async fn read_issues(
        &self,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        for repo in &self.config.repos {
            for label in &self.config.incident_labels {
                self.issues_walk(repo, label, state, out).await?;
            }
        }
        Ok(())
    }

    /// Reads the issues of `repo` labelled `label` updated since the bookmark (minus the overlap).
    async fn issues_walk(
        &self,
        repo: &str,
        label: &str,
        state: &mut StreamState,
        out: &Emitter,
    ) -> Result<(), ConnectorError> {
        let key = format!("{repo}|{label}");
        let cursor = state.cursors.entry(key.clone()).or_default();
        let mut conditional = None;
        let resumed = cursor.walk.is_some();
        let (mut url, first_url, mut high_water, mut first_etag, floor) = match cursor.walk.take() {
            Some(w) => (
                self.resolve(STREAM, &w.next)?,
                w.first_url,
                w.high_water,
                w.etag,
                w.floor,
            ),
            None => {
                let overlap = Duration::minutes(self.config.overlap_minutes);
                let (since, floor) = cursor.walk_from(self.first_stop(), overlap);
                let mut query = vec![
                    ("state", "all".to_owned()),
                    ("labels", label.to_owned()),
                    ("sort", "updated".to_owned()),
                    ("direction", "asc".to_owned()),
                    ("per_page", PER_PAGE.to_owned()),
                ];
                if let Some(since) = since {
                    query.push(("since", format_utc(since)));
                }
                let url = self.url_with_query(&format!("/repos/{repo}/issues"), &query)?;
                if cursor.etag_url.as_deref() == Some(url.as_str()) {
                    conditional = cursor.etag.clone();
                }
                (url.clone(), Some(url), cursor.high_water, None, floor)
            }
        };
        // Pages this walk has read; a resumed walk read at least one before the kill.
        let mut pages = usize::from(resumed);
        let mut pager = self.client.pager(STREAM);
        loop {
            pager.next(&url)?;
            let Some(page) = self
                .client
                .get_json_if_changed(&url, &[], conditional.take().as_deref())
                .await?
            else {
                // 304: the same window as last time, unchanged.
                // The state still says what the stream covers (a bookmark written before
                // coverage was kept learns it here).
                return out.checkpoint(state).await;
            };
            pages += 1;
            if first_etag.is_none() {
                first_etag = page.header("etag").map(str::to_owned);
            }
            let Some(items) = page.body.as_array() else {
                return Err(self.decode_error(&page.url, "expected a JSON array"));
            };
            let mut records = Vec::new();
            let mut rejected = Vec::new();
            for item in items {
                if let Some(reason) = crate::lenient::unreadable(item) {
                    rejected.push(self.reject(STREAM, item, reason));
                    continue;
                }
                if let Some(Ok(at)) = item.get("updated_at").and_then(Value::as_str).map(parse_instant) {
                    high_water = high_water.max(Some(at));
                }
                // A pull request: not an issue, whatever its labels say.
                if item.get("pull_request").is_some() {
                    continue;
                }
                match self.incident(repo, item) {
                    Ok(i) => records.push(Record::Incident(i)),
                    Err(reason) => {
                        rejected.push(self.reject(STREAM, item, QuarantineReason::Message(reason)))
                    }
                }
            }
            out.records(records).await?;
            out.quarantine(rejected).await?;
            let cursor = state.cursors.entry(key.clone()).or_default();
            match page.link("next") {
                Some(next) => {
                    cursor.walk = Some(Walk {
                        next: self.relative(&next),
                        high_water,
                        etag: first_etag.clone(),
                        first_url: first_url.clone(),
                        floor,
                        ..Walk::default()
                    });
                    out.checkpoint(state).await?;
                    url = next;
                }
                None => {
                    cursor.high_water = high_water;
                    cursor.walk = None;
                    cursor.complete(floor, self.first_stop());
                    // Updates land on the last page of an oldest-first list: an unchanged first
                    // page proves nothing changed only when it was the only page.
                    let single = pages == 1 && first_url.is_some();
                    cursor.etag = if single { first_etag } else { None };
                    cursor.etag_url = if single { first_url } else { None };
                    out.checkpoint(state).await?;
                    return Ok(());
                }
            }
        }
    }

    pub(super) fn incident(&self, repo: &str, raw: &Value) -> Result<Incident, String> {
        let number = raw
            .get("number")
            .and_then(Value::as_i64)
            .ok_or_else(|| unusable("number", raw.get("number"), "a number"))?;
        let labels = label_names(raw);
        let body = raw.get("body").and_then(Value::as_str).unwrap_or_default();
        let status = str_field(raw, "state")?;
        if status != "open" && status != "closed" {
            return Err(format!("unknown issue state {status:?}"));
        }
        Ok(Incident {
            // An issue has no acknowledgement.
            acknowledged_by: None,
            assignee: person(raw, &["/assignee/login", "/assignees/0/login"]),
            id: format!("{}:{repo}#{number}", self.config.name),
            source: self.config.name.clone(),
            number: Some(number),
            title: raw
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            service_ref: Some(repo.to_owned()),
            team_ref: None,
            service: None,
            team: None,
            severity: labels.iter().find_map(|l| severity(l)),
            status,
            started_at: time_field(raw, "created_at")?,
            acknowledged_at: None,
            resolved_at: opt_time_field(raw, "closed_at")?,
            cause_refs: cause_refs(body, &labels),
            correlation_id: None,
            updated_at: time_field(raw, "updated_at")?,
        })
    }
}

/// `sev1`…`sev4` or `P1`…`P4`, any case.
fn severity(label: &str) -> Option<Severity> {
    let l = label.trim().to_ascii_lowercase();
    let digit = l.strip_prefix("sev").or_else(|| l.strip_prefix('p'))?;
    match digit {
        "1" => Some(Severity::Sev1),
        "2" => Some(Severity::Sev2),
        "3" => Some(Severity::Sev3),
        "4" => Some(Severity::Sev4),
        _ => None,
    }
}

/// The shas (7+ hex) and `#123` pull request references written after `caused-by:` in the body
/// (on the same line) or in a `caused-by:<ref>` label, in order, without repeats.
fn cause_refs(body: &str, labels: &[String]) -> Vec<String> {
    const MARK: &str = "caused-by:";
    let mut out: Vec<String> = Vec::new();
    let mut push = |token: &str| {
        if let Some(r) = reference(token) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    };
    for line in body.lines() {
        let lower = line.to_ascii_lowercase();
        let mut from = 0;
        while let Some(at) = lower.get(from..).and_then(|rest| rest.find(MARK)) {
            let start = from + at + MARK.len();
            let end = lower
                .get(start..)
                .and_then(|rest| rest.find(MARK))
                .map_or(line.len(), |n| start + n);
            for token in line
                .get(start..end)
                .unwrap_or_default()
                .split([' ', ',', ';', '\t'])
            {
                push(token);
            }
            from = end;
        }
    }
    for label in labels {
        let lower = label.to_ascii_lowercase();
        if lower.starts_with(MARK) {
            push(label.get(MARK.len()..).unwrap_or_default());
        }
    }
    out
}

/// A sha (lower-cased) or a `#123` reference (`owner/repo#123` too), from one token.
fn reference(token: &str) -> Option<String> {
    let t = token
        .trim()
        .trim_matches(|c: char| matches!(c, '.' | ')' | '(' | '[' | ']' | '`' | '"' | '\''));
    if is_sha(t) {
        return Some(t.to_ascii_lowercase());
    }
    let (_, number) = t.rsplit_once('#')?;
    (!number.is_empty() && number.chars().all(|c| c.is_ascii_digit())).then(|| format!("#{number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_from_sev_and_priority_labels() {
        assert_eq!(severity("sev1"), Some(Severity::Sev1));
        assert_eq!(severity("SEV3"), Some(Severity::Sev3));
        assert_eq!(severity("P2"), Some(Severity::Sev2));
        assert_eq!(severity("p4"), Some(Severity::Sev4));
        assert_eq!(severity("sev5"), None);
        assert_eq!(severity("incident"), None);
        assert_eq!(severity("performance"), None);
    }

    #[test]
    fn cause_refs_after_the_marker_and_in_labels() {
        let body = "Impact: checkout down.\n\nCaused-by: 0a1b2c3d4e5f, #123 and acme/checkout#77.\nsha deadbeef1 elsewhere";
        let labels = vec![
            "incident".to_owned(),
            "caused-by:#123".to_owned(),
            "caused-by:ABCDEF0".to_owned(),
        ];
        assert_eq!(
            cause_refs(body, &labels),
            vec!["0a1b2c3d4e5f", "#123", "#77", "abcdef0"]
        );
        assert!(cause_refs("caused-by: unknown, abc12", &[]).is_empty());
        assert!(cause_refs("no marker 0a1b2c3d4e5f", &[]).is_empty());
        assert_eq!(
            cause_refs("caused-by: 1234567 caused-by: #9", &[]),
            vec!["1234567", "#9"]
        );
    }
}
