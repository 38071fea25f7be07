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

const CATEGORIES: [&str; 7] = ["bug", "task", "story", "request", "problem", "incident", "change"];
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
    categories: BTreeMap<String, String>,
    severities: BTreeMap<String, Severity>,
    close_codes: BTreeMap<String, Option<String>>,
    planned_start_field: String,
    planned_end_field: String,
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
        let mut categories = BTreeMap::new();
        for (issue_type, category) in &config.categories {
            let c = category.to_lowercase();
            if !CATEGORIES.contains(&c.as_str()) {
                return Err(format!(
                    "`categories`: {issue_type:?} maps to {category:?}; use one of {}",
                    CATEGORIES.join(", ")
                ));
            }
            categories.insert(issue_type.to_lowercase(), c);
        }
        let mut severities = BTreeMap::new();
        for (priority, sev) in &config.severities {
            let s = match sev.to_lowercase().as_str() {
                "sev1" => Severity::Sev1,
                "sev2" => Severity::Sev2,
                "sev3" => Severity::Sev3,
                "sev4" => Severity::Sev4,
                _ => {
                    return Err(format!(
                        "`severities`: {priority:?} maps to {sev:?}; use sev1, sev2, sev3 or sev4"
                    ));
                }
            };
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
            categories,
            severities,
            close_codes,
            planned_start_field: config.planned_start_field.clone(),
            planned_end_field: config.planned_end_field.clone(),
        })
    }

    /// Maps one issue; `histories` is its complete changelog, `categories` maps status ids to
    /// category keys.
    pub fn issue(
        &self,
        raw: &Value,
        histories: &[Value],
        categories: &HashMap<String, String>,
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
        let status_category = f
            .pointer("/status/statusCategory/key")
            .and_then(Value::as_str)
            .ok_or("missing fields.status.statusCategory.key")?;
        if !STATUS_CATEGORIES.contains(&status_category) {
            return Err(format!(
                "status {status:?} has the unknown category key {status_category:?} (expected new, indeterminate or done)"
            ));
        }
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
        let category = self.category(issue_type);
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
        let lower_type = issue_type.to_lowercase();
        if self.incident_types.contains(&lower_type) {
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
                updated_at,
            }));
        } else if self.change_types.contains(&lower_type) {
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
        categories: &HashMap<String, String>,
    ) -> Result<Vec<TicketTransition>, String> {
        let category = |id: Option<&str>| {
            id.and_then(|id| categories.get(id))
                .filter(|c| STATUS_CATEGORIES.contains(&c.as_str()))
                .cloned()
        };
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

    fn category(&self, issue_type: &str) -> String {
        let t = issue_type.to_lowercase();
        if self.incident_types.contains(&t) {
            return "incident".into();
        }
        if self.change_types.contains(&t) {
            return "change".into();
        }
        if let Some(c) = self.categories.get(&t) {
            return c.clone();
        }
        let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
        if has(&["bug", "defect"]) {
            "bug"
        } else if has(&["story", "epic"]) {
            "story"
        } else if has(&["incident"]) {
            "incident"
        } else if has(&["change"]) {
            "change"
        } else if has(&["problem"]) {
            "problem"
        } else if has(&["request", "access"]) {
            "request"
        } else {
            "task"
        }
        .into()
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
            categories: BTreeMap::new(),
            severities: BTreeMap::new(),
            close_codes: BTreeMap::new(),
            planned_start_field: "customfield_10050".into(),
            planned_end_field: "customfield_10051".into(),
            overlap_minutes: 10,
            page_size: 100,
            lookback_days: None,
        }
    }

    #[test]
    fn categories_by_name_and_by_config() {
        let mut c = config();
        c.categories.insert("Feature".into(), "story".into());
        let m = Mapper::new(&c).unwrap();
        assert_eq!(m.category("Bug"), "bug");
        assert_eq!(m.category("feature"), "story");
        assert_eq!(m.category("Service Request"), "request");
        assert_eq!(m.category("Sub-task"), "task");
        assert_eq!(m.category("INCIDENT"), "incident");
        c.categories.insert("Feature".into(), "epic".into());
        assert!(Mapper::new(&c).unwrap_err().contains("Feature"));
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
        let cats: HashMap<String, String> = [("1", "new"), ("3", "indeterminate"), ("5", "done")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
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
        let cats: HashMap<String, String> = [("1", "new"), ("3", "indeterminate")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
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
        let cats = HashMap::new();
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
