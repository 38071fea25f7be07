//! Turning one Jira issue (fields plus its complete changelog) into canonical records: a ticket,
//! its status transitions, and an incident or a change request by issue type.
//!
//! Pure functions of the JSON and the config: no HTTP here. An issue that cannot be mapped whole
//! (missing key, unparsable time, unknown status category) is an `Err` with a reason for the
//! quarantine, never a partial set of records.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::JiraConfig;
use crate::model::unusable;
use crate::model::{ChangeRequest, Incident, Record, Severity, Ticket, TicketTransition};
use crate::people::person;
use crate::time::{parse_instant, parse_opt_instant};

const CATEGORIES: [&str; 8] = [
    "bug", "task", "story", "request", "problem", "incident", "change", "other",
];
/// Issue type names tandem knows in the languages Jira ships (lower-cased): a name here never
/// needs configuring. Anything else is classified by `issue_types`, the sub-task flag and the
/// hierarchy level, or is `other`.
const KNOWN_TYPES: &[(&str, &str)] = &[
    ("bug", "bug"),
    ("defect", "bug"),
    ("缺陷", "bug"),
    ("故障", "bug"),
    ("バグ", "bug"),
    ("fehler", "bug"),
    ("story", "story"),
    ("user story", "story"),
    ("故事", "story"),
    ("用户故事", "story"),
    ("ストーリー", "story"),
    ("epic", "story"),
    ("史诗", "story"),
    ("エピック", "story"),
    ("new feature", "story"),
    ("新功能", "story"),
    ("task", "task"),
    ("improvement", "task"),
    ("改进", "task"),
    ("sub-task", "task"),
    ("subtask", "task"),
    ("任务", "task"),
    ("子任务", "task"),
    ("タスク", "task"),
    ("サブタスク", "task"),
    ("aufgabe", "task"),
    ("unteraufgabe", "task"),
    ("incident", "incident"),
    ("change", "change"),
    ("problem", "problem"),
    ("service request", "request"),
    ("service request with approvals", "request"),
    ("request", "request"),
    ("emailed request", "request"),
    ("it help", "request"),
    ("support", "request"),
    ("access", "request"),
];
const CLOSE_CODES: [&str; 4] = ["successful", "successful_issues", "unsuccessful", "none"];
const STATUS_CATEGORIES: [&str; 3] = ["new", "indeterminate", "done"];
/// Resolutions that mean a change was refused rather than carried out.
const REFUSED: [&str; 6] = [
    "declined",
    "rejected",
    "cancelled",
    "canceled",
    "won't do",
    "won't fix",
];

/// The config, prepared for mapping (names lower-cased, values checked).
#[derive(Debug, Clone)]
pub(super) struct Mapper {
    source: String,
    incident_types: Vec<String>,
    change_types: Vec<String>,
    /// `issue_types`, by lower-cased issue-type id or name.
    issue_types: BTreeMap<String, String>,
    severities: BTreeMap<String, Severity>,
    close_codes: BTreeMap<String, Option<String>>,
    planned_start_field: String,
    planned_end_field: String,
    /// `correlation_field`.
    correlation_field: Option<String>,
}

/// The records of one issue.
pub(super) struct Mapped {
    pub key: String,
    /// Not in the `done` category: re-poll it next time.
    pub open: bool,
    /// `updated`, epoch ms.
    pub updated_ms: i64,
    pub records: Vec<Record>,
}

impl Mapper {
    /// Checks and prepares the mapping parts of the config.
    pub fn new(config: &JiraConfig) -> Result<Self, String> {
        let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
        let mut issue_types = BTreeMap::new();
        for (issue_type, category) in &config.issue_types {
            let c = category.to_lowercase();
            if !CATEGORIES.contains(&c.as_str()) {
                return Err(format!(
                    "`issue_types`: {issue_type:?} maps to {category:?}; use one of {}",
                    CATEGORIES.join(", ")
                ));
            }
            issue_types.insert(issue_type.to_lowercase(), c);
        }
        let mut severities = BTreeMap::new();
        for (priority, sev) in &config.severities {
            let s = Severity::parse(sev).ok_or_else(|| {
                format!("`severities`: {priority:?} maps to {sev:?}; use sev1, sev2, sev3 or sev4")
            })?;
            severities.insert(priority.to_lowercase(), s);
        }
        let mut close_codes = BTreeMap::new();
        for (resolution, code) in &config.close_codes {
            let c = code.to_lowercase();
            if !CLOSE_CODES.contains(&c.as_str()) {
                return Err(format!(
                    "`close_codes`: {resolution:?} maps to {code:?}; use one of {}",
                    CLOSE_CODES.join(", ")
                ));
            }
            close_codes.insert(resolution.to_lowercase(), (c != "none").then_some(c));
        }
        Ok(Self {
            source: config.name.clone(),
            incident_types: lower(&config.incident_types),
            change_types: lower(&config.change_types),
            issue_types,
            severities,
            close_codes,
            planned_start_field: config.planned_start_field.clone(),
            planned_end_field: config.planned_end_field.clone(),
            correlation_field: config
                .correlation_field
                .as_deref()
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned),
        })
    }

    /// Maps one issue; `histories` is its complete changelog, `categories` says the category of
    /// a status id.
    pub fn issue(
        &self,
        raw: &Value,
        histories: &[Value],
        categories: &StatusCategories,
    ) -> Result<Mapped, String> {
        let key = raw
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| unusable("key", raw.get("key"), "text"))?;
        let f = raw
            .get("fields")
            .filter(|f| f.is_object())
            .ok_or_else(|| unusable("fields", raw.get("fields"), "an object"))?;
        let issue_type = f
            .pointer("/issuetype/name")
            .and_then(Value::as_str)
            .ok_or_else(|| unusable("fields.issuetype.name", f.pointer("/issuetype/name"), "text"))?;
        let status = f
            .pointer("/status/name")
            .and_then(Value::as_str)
            .ok_or_else(|| unusable("fields.status.name", f.pointer("/status/name"), "text"))?;
        let embedded = f.pointer("/status/statusCategory/key").and_then(Value::as_str);
        let created_at = time(f, "created")?;
        let updated_at = time(f, "updated")?;
        let resolution_date = opt_time(f, "resolutiondate")?;
        let project = f
            .pointer("/project/key")
            .and_then(Value::as_str)
            .or_else(|| key.rsplit_once('-').map(|(p, _)| p))
            .ok_or("missing fields.project.key")?;
        let title = f
            .get("summary")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let priority = f
            .pointer("/priority/name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let labels: Vec<String> = match f.get("labels") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ls)) => ls
                .iter()
                .map(|l| {
                    l.as_str()
                        .map(str::to_owned)
                        .ok_or("fields.labels holds a non-text label")
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("fields.labels is not a list".into()),
        };
        let service_ref = f
            .get("components")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);

        let ticket_id = format!("{}:{key}", self.source);
        let mut transitions = self.transitions(key, &ticket_id, histories, categories)?;
        transitions.sort_by_key(|t| t.at);
        // The current status's category is the one embedded in the issue; without a usable one,
        // the status list's (or one seen on another issue) for its id.
        let status_id = f.pointer("/status/id").and_then(Value::as_str);
        let mut status_category = match embedded.filter(|k| STATUS_CATEGORIES.contains(k)) {
            Some(k) => k.to_owned(),
            None => categories.of(status_id).ok_or_else(|| match embedded {
                Some(k) => format!(
                    "status {status:?} has the unknown category key {k:?} (expected new, indeterminate or done)"
                ),
                None => "missing fields.status.statusCategory.key".to_owned(),
            })?,
        };
        // Resolved, and the last status change went into `done`: done, whatever category the
        // status claims (a workflow status left in the wrong category).
        if status_category == "new"
            && resolution_date.is_some()
            && transitions.last().and_then(|t| t.to_category.as_deref()) == Some("done")
        {
            status_category = "done".to_owned();
        }
        let status_category = status_category.as_str();
        let done = status_category == "done";
        // Jira clears `resolutiondate` when an issue is reopened; a workflow without resolutions
        // leaves it empty even when done: then the last move into `done` is the resolution.
        let resolved_at = resolution_date.or_else(|| {
            done.then(|| {
                transitions
                    .iter()
                    .rev()
                    .find(|t| t.to_category.as_deref() == Some("done"))
                    .map(|t| t.at)
            })
            .flatten()
        });
        let first_into = |category: &str| {
            transitions
                .iter()
                .find(|t| t.to_category.as_deref() == Some(category))
                .map(|t| t.at)
        };
        let category = self.category(f.get("issuetype").unwrap_or(&Value::Null), issue_type);
        let assignee = user(f, "assignee");
        let reporter = user(f, "reporter");
        let mut records = vec![Record::Ticket(Ticket {
            assignee: assignee.clone(),
            reporter: reporter.clone(),
            id: ticket_id.clone(),
            source: self.source.clone(),
            key: key.to_owned(),
            project: project.to_owned(),
            service_ref: service_ref.clone(),
            service: None,
            team: None,
            category: category.clone(),
            issue_type: issue_type.to_owned(),
            title: title.clone(),
            priority: priority.clone(),
            status: status.to_owned(),
            status_category: status_category.to_owned(),
            labels: labels.clone(),
            created_at,
            resolved_at,
            updated_at,
        })];
        if self.is_incident(f) {
            records.push(Record::Incident(Incident {
                acknowledged_by: acknowledger(&transitions, histories),
                assignee,
                id: ticket_id.clone(),
                source: self.source.clone(),
                number: key.rsplit_once('-').and_then(|(_, n)| n.parse().ok()),
                title: title.clone(),
                service_ref: service_ref.clone(),
                team_ref: None,
                service: None,
                team: None,
                severity: priority.as_deref().and_then(|p| self.severity(p)),
                status: status.to_owned(),
                started_at: created_at,
                acknowledged_at: first_into("indeterminate"),
                resolved_at,
                cause_refs: cause_refs(f, &labels),
                correlation_id: self
                    .correlation_field
                    .as_deref()
                    .and_then(|field| correlation(f.get(field)?)),
                updated_at,
            }));
        } else if self.is_change(f) {
            let resolution = f.pointer("/resolution/name").and_then(Value::as_str);
            let refused = resolution.is_some_and(|r| REFUSED.contains(&r.to_lowercase().as_str()));
            records.push(Record::ChangeRequest(ChangeRequest {
                assigned_to: assignee,
                requested_by: reporter,
                id: ticket_id.clone(),
                source: self.source.clone(),
                number: key.to_owned(),
                title,
                service_ref,
                service: None,
                team: None,
                change_type: change_type(&labels),
                state: status.to_owned(),
                // Change workflows gate the start of work on approval: a change that left the
                // `new` category was approved, one resolved as declined or rejected was not.
                approved: if refused {
                    Some(false)
                } else if status_category != "new" {
                    Some(true)
                } else {
                    None
                },
                planned_start: opt_time(f, &self.planned_start_field)?,
                planned_end: opt_time(f, &self.planned_end_field)?,
                actual_start: first_into("indeterminate"),
                actual_end: resolved_at,
                closed_at: resolved_at,
                close_code: resolution.and_then(|r| self.close_code(r)),
                created_at,
                updated_at,
            }));
        }
        records.extend(transitions.into_iter().map(Record::TicketTransition));
        Ok(Mapped {
            key: key.to_owned(),
            open: !done,
            updated_ms: updated_at.timestamp_millis(),
            records,
        })
    }

    /// Status items of the changelog, in history order.
    fn transitions(
        &self,
        key: &str,
        ticket_id: &str,
        histories: &[Value],
        categories: &StatusCategories,
    ) -> Result<Vec<TicketTransition>, String> {
        let category = |id: Option<&str>| categories.of(id);
        let mut out = Vec::new();
        for h in histories {
            let items = h.get("items").and_then(Value::as_array);
            let is_status = |i: &Value| {
                i.get("fieldId").and_then(Value::as_str) == Some("status")
                    || (i.get("field").and_then(Value::as_str) == Some("status")
                        && i.get("fieldtype").and_then(Value::as_str) != Some("custom"))
            };
            let status_items: Vec<(usize, &Value)> = items
                .map(|items| items.iter().enumerate().filter(|(_, i)| is_status(i)).collect())
                .unwrap_or_default();
            if status_items.is_empty() {
                continue;
            }
            let history_id = match h.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err("a changelog history without an id".into()),
            };
            let at = h
                .get("created")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("changelog history {history_id}: missing created"))
                .and_then(|s| {
                    parse_instant(s).map_err(|e| format!("changelog history {history_id}: created: {e}"))
                })?;
            for (n, item) in status_items {
                let from = item.get("from").and_then(Value::as_str);
                let to = item.get("to").and_then(Value::as_str);
                let to_status = item.get("toString").and_then(Value::as_str).ok_or_else(|| {
                    format!("changelog history {history_id}: a status change without toString")
                })?;
                out.push(TicketTransition {
                    id: format!("{}:{key}:{history_id}:{n}", self.source),
                    source: self.source.clone(),
                    ticket_id: ticket_id.to_owned(),
                    at,
                    from_status: item.get("fromString").and_then(Value::as_str).map(str::to_owned),
                    to_status: to_status.to_owned(),
                    from_category: category(from),
                    to_category: category(to),
                });
            }
        }
        Ok(out)
    }

    /// Whether `fields.issuetype` names one of `incident_types` (by name or id).
    fn is_incident(&self, fields: &Value) -> bool {
        type_keys(fields).iter().any(|k| self.incident_types.contains(k))
    }

    /// Whether `fields.issuetype` names one of `change_types` (by name or id).
    fn is_change(&self, fields: &Value) -> bool {
        type_keys(fields).iter().any(|k| self.change_types.contains(k))
    }

    /// The ticket category of `issuetype` (named `name`): the incident and change types, then
    /// `issue_types` by id and by name, then the names tandem knows, then the sub-task flag and
    /// the hierarchy level (epics are stories, sub-tasks tasks); else `other`. Never by words
    /// inside an unknown name, which are often in another language.
    fn category(&self, issuetype: &Value, name: &str) -> String {
        let fields = serde_json::json!({ "issuetype": issuetype });
        if self.is_incident(&fields) || self.incident_types.contains(&name.to_lowercase()) {
            return "incident".into();
        }
        if self.is_change(&fields) || self.change_types.contains(&name.to_lowercase()) {
            return "change".into();
        }
        let id = issuetype.get("id").and_then(Value::as_str).map(str::to_lowercase);
        let lower = name.trim().to_lowercase();
        if let Some(c) = id
            .and_then(|id| self.issue_types.get(&id))
            .or_else(|| self.issue_types.get(&lower))
        {
            return c.clone();
        }
        if let Some((_, c)) = KNOWN_TYPES.iter().find(|(n, _)| *n == lower) {
            return (*c).into();
        }
        if issuetype.get("subtask").and_then(Value::as_bool) == Some(true) {
            return "task".into();
        }
        match issuetype.get("hierarchyLevel").and_then(Value::as_i64) {
            Some(level) if level >= 1 => "story".into(),
            Some(level) if level < 0 => "task".into(),
            _ => Ticket::OTHER.into(),
        }
    }

    fn severity(&self, priority: &str) -> Option<Severity> {
        let p = priority.to_lowercase();
        if let Some(s) = self.severities.get(&p) {
            return Some(*s);
        }
        match p.as_str() {
            "highest" | "blocker" => Some(Severity::Sev1),
            "high" | "critical" => Some(Severity::Sev2),
            "medium" | "major" => Some(Severity::Sev3),
            "low" | "lowest" | "minor" | "trivial" => Some(Severity::Sev4),
            _ => None,
        }
    }

    fn close_code(&self, resolution: &str) -> Option<String> {
        let r = resolution.to_lowercase();
        if let Some(c) = self.close_codes.get(&r) {
            return c.clone();
        }
        match r.as_str() {
            "done" | "successful" | "fixed" | "implemented" | "completed" => Some("successful".into()),
            "successful with issues" | "done with issues" | "partially successful" => {
                Some("successful_issues".into())
            }
            "failed" | "unsuccessful" | "backed out" | "rolled back" => Some("unsuccessful".into()),
            _ => None,
        }
    }
}

/// Where a status id's category comes from: the status list (`GET /status`), else the category
/// seen embedded on an issue in that status. A status in neither (deleted since) has none.
#[derive(Debug, Clone, Default)]
pub(super) struct StatusCategories {
    /// From the status list; empty when the list was unavailable.
    pub listed: HashMap<String, String>,
    /// Seen embedded in issues (`fields.status`), kept across reads.
    pub seen: BTreeMap<String, String>,
}

impl StatusCategories {
    /// Notes the category an issue carries for its current status.
    pub fn learn(&mut self, issue: &Value) {
        let status = issue.pointer("/fields/status");
        let id = status.and_then(|s| s.get("id")).and_then(Value::as_str);
        let key = status
            .and_then(|s| s.pointer("/statusCategory/key"))
            .and_then(Value::as_str)
            .filter(|k| STATUS_CATEGORIES.contains(k));
        if let (Some(id), Some(key)) = (id, key) {
            self.seen.insert(id.to_owned(), key.to_owned());
        }
    }

    /// The category of status `id`, when the list or an issue says a known one.
    pub fn of(&self, id: Option<&str>) -> Option<String> {
        let id = id?;
        [self.listed.get(id), self.seen.get(id)]
            .into_iter()
            .flatten()
            .find(|c| STATUS_CATEGORIES.contains(&c.as_str()))
            .cloned()
    }
}

/// The lower-cased name and id of `fields.issuetype`.
fn type_keys(fields: &Value) -> Vec<String> {
    ["/issuetype/name", "/issuetype/id"]
        .iter()
        .filter_map(|p| fields.pointer(p).and_then(Value::as_str))
        .map(str::to_lowercase)
        .collect()
}

/// Explicit causes: issues linked as "is caused by" (link type "Causes"), then `caused-by:<ref>`
/// labels (a deployment sha, a change number), without repeats.
fn cause_refs(fields: &Value, labels: &[String]) -> Vec<String> {
    let mut refs: Vec<String> = Vec::new();
    let links = fields
        .get("issuelinks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for link in links {
        let name = link
            .pointer("/type/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let inward = link
            .pointer("/type/inward")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !(name.eq_ignore_ascii_case("causes") || inward.eq_ignore_ascii_case("is caused by")) {
            continue;
        }
        // On the caused issue the causing one is the `inwardIssue` ("this is caused by that").
        if let Some(k) = link.pointer("/inwardIssue/key").and_then(Value::as_str) {
            refs.push(k.to_owned());
        }
    }
    for label in labels {
        if let Some(r) = label
            .get(..9)
            .filter(|p| p.eq_ignore_ascii_case("caused-by"))
            .and_then(|_| label.get(9..))
            .and_then(|rest| rest.strip_prefix(':'))
            .filter(|r| !r.is_empty())
        {
            refs.push(r.to_owned());
        }
    }
    let mut seen = Vec::new();
    refs.retain(|r| {
        let new = !seen.contains(r);
        seen.push(r.clone());
        new
    });
    refs
}

/// The other system's key in a correlation field's value: text (or an option's `value`, or a
/// number) trimmed, and of a URL its last non-empty path segment — the form incident tools link
/// to (`https://acme.pagerduty.com/incidents/PT4KHLK` → `PT4KHLK`). A field left empty, a URL
/// without a path and any other shape (a rich-text document, a list) give none: the field is
/// optional, so nothing is quarantined for it.
fn correlation(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Object(o) => match o.get("value")? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        },
        _ => return None,
    };
    let text = text.trim();
    let key = match text.split_once("://") {
        Some((_, rest)) => {
            let rest = rest.split(['?', '#']).next().unwrap_or_default();
            let (_, path) = rest.split_once('/')?;
            path.rsplit('/').map(str::trim).find(|s| !s.is_empty())?
        }
        None => text,
    };
    (!key.is_empty()).then(|| key.to_owned())
}

/// `standard`, `normal` or `emergency` from a label of that name (case-insensitive).
fn change_type(labels: &[String]) -> Option<String> {
    labels
        .iter()
        .map(|l| l.to_lowercase())
        .find(|l| matches!(l.as_str(), "standard" | "normal" | "emergency"))
}

fn time(fields: &Value, name: &str) -> Result<DateTime<Utc>, String> {
    let s = fields
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| unusable(&format!("fields.{name}"), fields.get(name), "a timestamp"))?;
    parse_instant(s).map_err(|e| format!("fields.{name}: {e}"))
}

fn opt_time(fields: &Value, name: &str) -> Result<Option<DateTime<Utc>>, String> {
    parse_opt_instant(fields.get(name)).map_err(|e| format!("fields.{name}: {e}"))
}

/// A Jira user's display name, else its Data Center login (`name`), else its Cloud `accountId`
/// (Cloud hides `name`; a privacy setting can hide the display name).
fn user(parent: &Value, field: &str) -> Option<String> {
    person(parent.get(field)?, &["/displayName", "/name", "/accountId"])
}

/// The author of the changelog entry that first moved the issue into `indeterminate` (the
/// acknowledgement), found through the history id inside the transition's id.
fn acknowledger(transitions: &[TicketTransition], histories: &[Value]) -> Option<String> {
    let first = transitions
        .iter()
        .find(|t| t.to_category.as_deref() == Some("indeterminate"))?;
    let history_id = first.id.rsplit(':').nth(1)?;
    histories
        .iter()
        .find(|h| match h.get("id") {
            Some(Value::String(s)) => s == history_id,
            Some(Value::Number(n)) => n.to_string() == history_id,
            _ => false,
        })
        .and_then(|h| user(h, "author"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::jira::Flavor;

    fn config() -> JiraConfig {
        JiraConfig {
            name: "jira".into(),
            base_url: "https://acme.atlassian.net".into(),
            flavor: Flavor::Cloud,
            email: None,
            token_env: "T".into(),
            projects: vec!["OPS".into()],
            incident_types: vec!["Incident".into()],
            change_types: vec!["Change".into()],
            issue_types: BTreeMap::new(),
            severities: BTreeMap::new(),
            close_codes: BTreeMap::new(),
            planned_start_field: "customfield_10050".into(),
            planned_end_field: "customfield_10051".into(),
            correlation_field: None,
            overlap_minutes: 10,
            page_size: 100,
            lookback_days: 365,
        }
    }

    /// A status list giving `pairs` (status id, category key).
    fn listed(pairs: &[(&str, &str)]) -> StatusCategories {
        StatusCategories {
            listed: pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
            seen: BTreeMap::new(),
        }
    }

    /// `fields.issuetype` as Jira Cloud sends it.
    fn issuetype(id: &str, name: &str, subtask: bool, level: i64) -> Value {
        json!({"self": format!("https://acme.atlassian.net/rest/api/3/issuetype/{id}"), "id": id,
            "description": "", "name": name, "subtask": subtask, "hierarchyLevel": level})
    }

    #[test]
    fn issue_types_by_known_name_then_config_then_subtask_and_hierarchy() {
        let mut c = config();
        c.issue_types.insert("Feature".into(), "story".into());
        c.issue_types.insert("10042".into(), "bug".into());
        let m = Mapper::new(&c).unwrap();
        let cat = |id: &str, name: &str, subtask: bool, level: i64| {
            m.category(&issuetype(id, name, subtask, level), name)
        };
        assert_eq!(cat("10004", "Bug", false, 0), "bug");
        assert_eq!(cat("10005", "feature", false, 0), "story");
        assert_eq!(cat("10006", "Service Request", false, 0), "request");
        assert_eq!(cat("10007", "Sub-task", true, -1), "task");
        assert_eq!(cat("10008", "INCIDENT", false, 0), "incident");
        // By id, whatever the name.
        assert_eq!(cat("10042", "Störung", false, 0), "bug");
        // Unknown names: the sub-task flag and the hierarchy decide, never words in the name.
        assert_eq!(cat("10050", "Kundenaufgabe", true, -1), "task");
        assert_eq!(cat("10051", "Initiative", false, 1), "story");
        assert_eq!(cat("10052", "Bugfix Review", false, 0), "other");
        c.issue_types.insert("Feature".into(), "epic".into());
        assert!(Mapper::new(&c).unwrap_err().contains("Feature"));
    }

    #[test]
    fn jira_localised_issue_types_do_not_all_become_task() {
        let m = Mapper::new(&config()).unwrap();
        let cats = listed(&[("1", "new")]);
        // A Chinese Jira Cloud site: the issue types as it names them, with real ids and levels.
        let issue = |key: &str, issuetype: Value| {
            json!({"id": "1", "key": key, "fields": {
                "issuetype": issuetype, "summary": "x",
                "status": {"id": "1", "name": "待办", "statusCategory": {"id": 2, "key": "new", "name": "待办"}},
                "created": "2024-03-09T10:00:00.000+0800", "updated": "2024-03-09T10:00:00.000+0800",
                "resolutiondate": null, "labels": [], "components": [], "priority": null,
            }})
        };
        let category = |raw: Value| {
            let mapped = m.issue(&raw, &[], &cats).unwrap();
            let Record::Ticket(t) = &mapped.records[0] else {
                unreachable!()
            };
            (t.category.clone(), t.issue_type.clone())
        };
        let cases = [
            (issuetype("10001", "故事", false, 0), "story"),
            (issuetype("10004", "缺陷", false, 0), "bug"),
            (issuetype("10003", "子任务", true, -1), "task"),
            (issuetype("10000", "史诗", false, 1), "story"),
            (issuetype("10002", "任务", false, 0), "task"),
            // A type tandem cannot classify stays `other` (and is counted), not `task`.
            (issuetype("10060", "需求评审", false, 0), "other"),
        ];
        for (n, (t, want)) in cases.into_iter().enumerate() {
            let name = t["name"].as_str().unwrap().to_owned();
            assert_eq!(category(issue(&format!("OPS-{n}"), t)), (want.to_owned(), name));
        }
        // Configured by id or by the localised name.
        let mut c = config();
        c.issue_types.insert("10060".into(), "request".into());
        c.issue_types.insert("评审".into(), "task".into());
        let m = Mapper::new(&c).unwrap();
        assert_eq!(
            m.category(&issuetype("10060", "需求评审", false, 0), "需求评审"),
            "request"
        );
        assert_eq!(m.category(&issuetype("10061", "评审", false, 0), "评审"), "task");
        // Incident and change types may be named by id too.
        let mut c = config();
        c.incident_types = vec!["10070".into()];
        let m = Mapper::new(&c).unwrap();
        let mapped = m
            .issue(&issue("OPS-9", issuetype("10070", "事件", false, 0)), &[], &cats)
            .unwrap();
        assert!(mapped.records.iter().any(|r| matches!(r, Record::Incident(_))));
    }

    #[test]
    fn the_older_categories_key_still_reads() {
        let parsed: JiraConfig = serde_json::from_value(json!({
            "name": "j", "base_url": "https://acme.atlassian.net", "token_env": "T",
            "projects": ["OPS"], "categories": {"Feature": "story"}
        }))
        .unwrap();
        assert_eq!(
            parsed.issue_types.get("Feature").map(String::as_str),
            Some("story")
        );
        assert_eq!(parsed.lookback_days, 365);
    }

    /// An issue in status `status` (id, name, embedded category key) with `resolutiondate`.
    fn in_status(status: (&str, &str, &str), resolution: Option<&str>) -> Value {
        json!({"id": "1", "key": "OPS-1", "fields": {
            "issuetype": issuetype("10002", "Task", false, 0), "summary": "x",
            "status": {"id": status.0, "name": status.1,
                "statusCategory": {"id": 2, "key": status.2, "name": status.1}},
            "created": "2024-03-09T10:00:00.000+0000", "updated": "2024-03-12T10:00:00.000+0000",
            "resolutiondate": resolution, "labels": [], "components": [], "priority": null,
        }})
    }

    /// A changelog history moving from status `from` to `to`.
    fn moved(id: &str, at: &str, from: &str, to: &str) -> Value {
        json!({"id": id, "created": at, "items": [{"field": "status", "fieldtype": "jira",
            "fieldId": "status", "from": from, "fromString": from, "to": to, "toString": to}]})
    }

    fn mapped_parts(mapped: &Mapped) -> (&Ticket, Vec<&TicketTransition>) {
        let Record::Ticket(t) = &mapped.records[0] else {
            unreachable!()
        };
        let transitions = mapped
            .records
            .iter()
            .filter_map(|r| match r {
                Record::TicketTransition(t) => Some(t),
                _ => None,
            })
            .collect();
        (t, transitions)
    }

    #[test]
    fn jira_status_categories_follow_one_rule() {
        let m = Mapper::new(&config()).unwrap();
        let histories = vec![
            moved("10", "2024-03-10T10:00:00.000+0000", "1", "3"),
            moved("11", "2024-03-11T10:00:00.000+0000", "3", "77"),
            moved("12", "2024-03-12T10:00:00.000+0000", "77", "5"),
        ];
        // The status list knows 1, 3 and 5 (and says "new" for 5, which the issue contradicts):
        // the current status's category is the embedded one; 77 was deleted: in neither.
        let cats = listed(&[("1", "new"), ("3", "indeterminate"), ("5", "new")]);
        let mapped = m
            .issue(
                &in_status(("5", "Erledigt", "done"), Some("2024-03-12T10:00:00.000+0000")),
                &histories,
                &cats,
            )
            .unwrap();
        let (ticket, transitions) = mapped_parts(&mapped);
        assert_eq!(ticket.status_category, "done");
        let pairs: Vec<(Option<&str>, Option<&str>)> = transitions
            .iter()
            .map(|t| (t.from_category.as_deref(), t.to_category.as_deref()))
            .collect();
        assert_eq!(
            pairs,
            [
                (Some("new"), Some("indeterminate")),
                (Some("indeterminate"), None),
                (None, Some("new")),
            ]
        );

        // Without the status list: the categories seen embedded in issues, for the same ids.
        let mut seen = StatusCategories::default();
        seen.learn(&in_status(("3", "In Arbeit", "indeterminate"), None));
        seen.learn(&in_status(("5", "Erledigt", "done"), None));
        seen.learn(&in_status(("9", "Legacy", "undefined"), None));
        let mapped = m
            .issue(&in_status(("5", "Erledigt", "done"), None), &histories, &seen)
            .unwrap();
        let (ticket, transitions) = mapped_parts(&mapped);
        assert_eq!(ticket.status_category, "done");
        assert_eq!(transitions[0].from_category, None, "status 1 is in no issue");
        assert_eq!(transitions[0].to_category.as_deref(), Some("indeterminate"));
        assert_eq!(transitions[2].to_category.as_deref(), Some("done"));
        assert_eq!(seen.of(Some("9")), None, "an unknown key is no category");
        // The list wins over what was seen.
        let both = StatusCategories {
            listed: cats.listed.clone(),
            seen: seen.seen.clone(),
        };
        assert_eq!(both.of(Some("5")).as_deref(), Some("new"));
        assert_eq!(both.of(Some("77")), None);
    }

    #[test]
    fn jira_resolved_issue_whose_last_transition_goes_to_done_is_not_stored_as_new() {
        let m = Mapper::new(&config()).unwrap();
        let cats = listed(&[("1", "new"), ("3", "indeterminate"), ("5", "done"), ("6", "new")]);
        let histories = vec![
            moved("10", "2024-03-10T10:00:00.000+0000", "1", "3"),
            moved("11", "2024-03-11T10:00:00.000+0000", "3", "5"),
        ];
        // "Closed" left in the `new` category by its workflow, yet resolved, and the issue's
        // last move went into done.
        let raw = in_status(("6", "Closed", "new"), Some("2024-03-11T10:00:00.000+0000"));
        let mapped = m.issue(&raw, &histories, &cats).unwrap();
        let (ticket, _) = mapped_parts(&mapped);
        assert_eq!(ticket.status_category, "done");
        assert!(!mapped.open, "not re-polled as open");
        assert!(ticket.resolved_at.is_some());
        // Unresolved, or the last move not into done: the embedded category stands.
        let raw = in_status(("6", "Closed", "new"), None);
        let mapped = m.issue(&raw, &histories, &cats).unwrap();
        assert_eq!(mapped_parts(&mapped).0.status_category, "new");
        let reopened = vec![
            histories[0].clone(),
            histories[1].clone(),
            moved("12", "2024-03-12T09:00:00.000+0000", "5", "1"),
        ];
        let raw = in_status(("6", "Closed", "new"), Some("2024-03-11T10:00:00.000+0000"));
        let mapped = m.issue(&raw, &reopened, &cats).unwrap();
        assert_eq!(mapped_parts(&mapped).0.status_category, "new");
        // No usable embedded category: the status list's for the current status id.
        let raw = in_status(("3", "In Progress", "undefined"), None);
        let mapped = m.issue(&raw, &histories, &cats).unwrap();
        assert_eq!(mapped_parts(&mapped).0.status_category, "indeterminate");
    }

    #[test]
    fn severity_and_close_code_defaults_and_overrides() {
        let mut c = config();
        c.severities.insert("P1".into(), "sev1".into());
        c.close_codes.insert("Shipped".into(), "successful".into());
        c.close_codes.insert("Done".into(), "none".into());
        let m = Mapper::new(&c).unwrap();
        assert_eq!(m.severity("Highest"), Some(Severity::Sev1));
        assert_eq!(m.severity("critical"), Some(Severity::Sev2));
        assert_eq!(m.severity("p1"), Some(Severity::Sev1));
        assert_eq!(m.severity("Whatever"), None);
        assert_eq!(m.close_code("shipped").as_deref(), Some("successful"));
        assert_eq!(m.close_code("Done"), None);
        assert_eq!(m.close_code("Backed out").as_deref(), Some("unsuccessful"));
        assert_eq!(m.close_code("Won't Do"), None);
        c.severities.insert("P2".into(), "high".into());
        assert!(Mapper::new(&c).is_err());
    }

    #[test]
    fn causes_from_links_and_labels() {
        let fields = json!({"issuelinks": [
            {"type": {"name": "Causes", "inward": "is caused by", "outward": "causes"}, "inwardIssue": {"key": "OPS-3"}},
            {"type": {"name": "Causes", "inward": "is caused by", "outward": "causes"}, "outwardIssue": {"key": "OPS-9"}},
            {"type": {"name": "Blocks", "inward": "is blocked by", "outward": "blocks"}, "inwardIssue": {"key": "OPS-4"}},
        ]});
        let labels = vec![
            "incident".into(),
            "caused-by:abc123def456".into(),
            "Caused-By:OPS-3".into(),
            "caused-by:".into(),
        ];
        assert_eq!(cause_refs(&fields, &labels), vec!["OPS-3", "abc123def456"]);
    }

    #[test]
    fn a_reopened_issue_has_no_resolution_and_stays_open() {
        let m = Mapper::new(&config()).unwrap();
        let cats = listed(&[("1", "new"), ("3", "indeterminate"), ("5", "done")]);
        let issue = json!({"id": "1", "key": "OPS-1", "fields": {
            "issuetype": {"name": "Task"}, "summary": "x",
            "status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
            "created": "2024-03-09T10:00:00.000-0800", "updated": "2024-03-11T10:00:00.000-0700",
            "resolutiondate": null, "labels": [], "components": [], "priority": null,
        }});
        let h = |id: &str, at: &str, from: &str, to: &str| {
            json!({"id": id, "created": at, "items": [
                {"field": "resolution", "fieldtype": "jira", "from": null, "to": "1"},
                {"field": "status", "fieldtype": "jira", "from": from, "fromString": from, "to": to, "toString": to},
            ]})
        };
        let histories = vec![
            h("10", "2024-03-09T11:00:00.000-0800", "1", "3"),
            h("11", "2024-03-10T11:00:00.000-0700", "3", "5"),
            h("12", "2024-03-11T10:00:00.000-0700", "5", "3"),
        ];
        let mapped = m.issue(&issue, &histories, &cats).unwrap();
        assert!(mapped.open);
        let Record::Ticket(t) = &mapped.records[0] else {
            unreachable!()
        };
        assert_eq!(t.resolved_at, None);
        assert_eq!(t.priority, None);
        let transitions: Vec<&TicketTransition> = mapped
            .records
            .iter()
            .filter_map(|r| match r {
                Record::TicketTransition(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(transitions.len(), 3);
        assert_eq!(transitions[0].id, "jira:OPS-1:10:1");
        assert_eq!(transitions[1].at.to_rfc3339(), "2024-03-10T18:00:00+00:00");
        assert_eq!(transitions[2].from_category.as_deref(), Some("done"));
        assert_eq!(transitions[2].to_category.as_deref(), Some("indeterminate"));
    }

    #[test]
    fn people_come_from_display_names_else_the_login_or_account_id() {
        let m = Mapper::new(&config()).unwrap();
        let cats = listed(&[("1", "new"), ("3", "indeterminate")]);
        let issue = |kind: &str, assignee: Value, reporter: Value| {
            json!({"id": "1", "key": "OPS-1", "fields": {
                "issuetype": {"name": kind}, "summary": "x",
                "status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
                "created": "2024-03-09T10:00:00.000Z", "updated": "2024-03-09T12:00:00.000Z",
                "resolutiondate": null, "labels": [], "components": [], "priority": null,
                "assignee": assignee, "reporter": reporter,
            }})
        };
        // Cloud: displayName and accountId; Data Center: displayName and name (the login).
        let cloud = json!({"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Mia Krystof"});
        let dc = json!({"name": "jon.doe", "key": "JIRAUSER1", "displayName": "Jon Doe"});
        let histories = vec![
            json!({"id": "10", "created": "2024-03-09T11:00:00.000Z", "author": {"displayName": "Sam Lee"},
                "items": [{"field": "assignee", "fieldtype": "jira", "from": null, "to": "x"}]}),
            json!({"id": "11", "created": "2024-03-09T11:30:00.000Z", "author": {"accountId": "acc-noor"},
                "items": [{"field": "status", "fieldtype": "jira", "from": "1", "fromString": "Open", "to": "3", "toString": "In Progress"}]}),
        ];
        let mapped = m.issue(&issue("Incident", cloud, dc), &histories, &cats).unwrap();
        let Record::Ticket(t) = &mapped.records[0] else {
            unreachable!()
        };
        assert_eq!(
            (t.assignee.as_deref(), t.reporter.as_deref()),
            (Some("Mia Krystof"), Some("Jon Doe"))
        );
        let Some(Record::Incident(i)) = mapped.records.iter().find(|r| matches!(r, Record::Incident(_)))
        else {
            unreachable!()
        };
        // The acknowledger is the author of the move into `indeterminate`, not of the earlier
        // assignment; a Cloud user whose display name is hidden is known by the account id.
        assert_eq!(
            (i.assignee.as_deref(), i.acknowledged_by.as_deref()),
            (Some("Mia Krystof"), Some("acc-noor"))
        );

        // Unassigned, a Data Center reporter without a display name, a change request.
        let mapped = m
            .issue(
                &issue("Change", Value::Null, json!({"name": "ravi.patel"})),
                &[],
                &cats,
            )
            .unwrap();
        let Some(Record::ChangeRequest(c)) = mapped
            .records
            .iter()
            .find(|r| matches!(r, Record::ChangeRequest(_)))
        else {
            unreachable!()
        };
        assert_eq!(
            (c.assigned_to.as_deref(), c.requested_by.as_deref()),
            (None, Some("ravi.patel"))
        );
    }

    #[test]
    fn bad_times_and_unknown_categories_are_reasons() {
        let m = Mapper::new(&config()).unwrap();
        let cats = StatusCategories::default();
        let base = json!({"key": "OPS-2", "fields": {
            "issuetype": {"name": "Task"},
            "status": {"name": "Legacy", "statusCategory": {"key": "undefined"}},
            "created": "2024-01-01T00:00:00.000+0000", "updated": "2024-01-01T00:00:00.000+0000",
        }});
        assert!(m.issue(&base, &[], &cats).err().unwrap().contains("undefined"));
        let mut bad = base.clone();
        bad["fields"]["status"]["statusCategory"]["key"] = json!("new");
        bad["fields"]["created"] = json!("2024-01-01T00:00:00.000");
        assert!(
            m.issue(&bad, &[], &cats)
                .err()
                .unwrap()
                .starts_with("fields.created")
        );
        let mut bad = base;
        bad["fields"]["status"]["statusCategory"]["key"] = json!("new");
        let history =
            json!({"id": "7", "created": "soon", "items": [{"field": "status", "to": "1", "toString": "x"}]});
        assert!(
            m.issue(&bad, &[history], &cats)
                .err()
                .unwrap()
                .contains("history 7")
        );
    }
}
