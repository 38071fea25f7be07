//! Typing one row of an import file into a canonical record, generically over the table schema:
//! `Table::COLUMNS` is the only description of what a file may hold, so a column added to the
//! model is importable without touching this module.
//!
//! A row is a JSON object of raw values (CSV cells as strings, NDJSON values as written). This
//! module never reads files and never decides what to do with a bad row: it returns why the row
//! is bad, naming the column, and the caller quarantines it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::model::{
    Change, ChangeRequest, Column, ColumnKind, Commit, Deployment, Incident, Record, Table, Ticket,
    TicketTransition,
};
use crate::time::parse_instant;

/// Columns a file may leave out because tandem fills them (see [`typed`]).
pub(super) const DEFAULTED: &[&str] = &["id", "source", "updated_at"];

/// The entity an import file holds; its name is the stream name and the table name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// `deployments`.
    Deployments,
    /// `changes` (pull/merge requests).
    Changes,
    /// `commits`.
    Commits,
    /// `incidents`.
    Incidents,
    /// `tickets`.
    Tickets,
    /// `ticket_transitions`.
    TicketTransitions,
    /// `change_requests`.
    ChangeRequests,
}

impl Entity {
    /// Every entity, in stream order.
    pub const ALL: [Entity; 7] = [
        Self::Deployments,
        Self::Changes,
        Self::Commits,
        Self::Incidents,
        Self::Tickets,
        Self::TicketTransitions,
        Self::ChangeRequests,
    ];

    /// Stream and table name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Deployments => Deployment::NAME,
            Self::Changes => Change::NAME,
            Self::Commits => Commit::NAME,
            Self::Incidents => Incident::NAME,
            Self::Tickets => Ticket::NAME,
            Self::TicketTransitions => TicketTransition::NAME,
            Self::ChangeRequests => ChangeRequest::NAME,
        }
    }

    /// The entity of a stream name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The entity a file name stem names: the entity name itself, or followed by `-`, `_` or `.`
    /// and anything (`deployments-2024.csv`). Case-insensitive.
    pub fn from_stem(stem: &str) -> Option<Self> {
        let stem = stem.to_ascii_lowercase();
        Self::ALL.into_iter().find(|e| {
            stem.strip_prefix(e.name())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '_', '.']))
        })
    }

    /// The table's columns.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Self::Deployments => Deployment::COLUMNS,
            Self::Changes => Change::COLUMNS,
            Self::Commits => Commit::COLUMNS,
            Self::Incidents => Incident::COLUMNS,
            Self::Tickets => Ticket::COLUMNS,
            Self::TicketTransitions => TicketTransition::COLUMNS,
            Self::ChangeRequests => ChangeRequest::COLUMNS,
        }
    }

    /// Types a row into this entity's record.
    pub fn record(self, row: &Map<String, Value>, source: &str) -> Result<Record, RowError> {
        Ok(match self {
            Self::Deployments => Record::Deployment(typed(row, source)?),
            Self::Changes => Record::Change(typed(row, source)?),
            Self::Commits => Record::Commit(typed(row, source)?),
            Self::Incidents => Record::Incident(typed(row, source)?),
            Self::Tickets => Record::Ticket(typed(row, source)?),
            Self::TicketTransitions => Record::TicketTransition(typed(row, source)?),
            Self::ChangeRequests => Record::ChangeRequest(typed(row, source)?),
        })
    }

    /// The columns an omitted `id` is derived from, in order: `{source}:{a}:{b}…`.
    pub fn natural_key(self) -> &'static [&'static str] {
        natural_key(self.name())
    }
}

fn natural_key(table: &str) -> &'static [&'static str] {
    match table {
        "deployments" => &["repo", "environment", "sha", "created_at"],
        "changes" => &["repo", "number"],
        "commits" => &["repo", "sha"],
        "tickets" => &["key"],
        "ticket_transitions" => &["ticket_id", "at", "to_status"],
        // incidents and change requests: their human number.
        _ => &["number"],
    }
}

/// The values a text column accepts, where the model documents a closed set (compared
/// case-insensitively, stored lower-case). Metrics group on these, so a typo must not pass.
pub fn allowed_values(table: &str, column: &str) -> Option<&'static [&'static str]> {
    const CATEGORY: &[&str] = &["new", "indeterminate", "done"];
    Some(match (table, column) {
        ("deployments", "status") => &["success", "failure", "error", "in_progress", "cancelled", "stale"],
        ("incidents", "severity") => &["sev1", "sev2", "sev3", "sev4"],
        ("changes", "state") => &["open", "closed", "merged"],
        ("tickets", "category") => &["incident", "request", "change", "problem", "bug", "task", "story"],
        ("tickets", "status_category") => CATEGORY,
        ("ticket_transitions", "from_category" | "to_category") => CATEGORY,
        ("change_requests", "change_type") => &["standard", "normal", "emergency"],
        ("change_requests", "close_code") => &["successful", "successful_issues", "unsuccessful"],
        _ => return None,
    })
}

/// Why a row was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The column at fault, when one is.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl RowError {
    fn column(column: &str, message: impl Into<String>) -> Self {
        Self {
            column: Some(column.to_owned()),
            message: message.into(),
        }
    }

    /// A row-level problem (no single column at fault).
    pub fn row(message: impl Into<String>) -> Self {
        Self {
            column: None,
            message: message.into(),
        }
    }

    /// The quarantine reason: `{file}:{line}: column `{column}`: {message}`.
    pub fn reason(&self, file: &str, line: u64) -> String {
        match &self.column {
            Some(c) => format!("{file}:{line}: column `{c}`: {}", self.message),
            None => format!("{file}:{line}: {}", self.message),
        }
    }
}

/// Types a row into `T`: each column by its [`ColumnKind`], then the file-import conveniences
/// (an omitted `source` is the configured source, an omitted `updated_at` the row's latest
/// timestamp, an omitted `service_ref` the row's `service`, an omitted `id` derived from the
/// natural key), then serde builds the record.
pub fn typed<T: Table>(row: &Map<String, Value>, source: &str) -> Result<T, RowError> {
    if let Some(unknown) = row
        .keys()
        .find(|k| !T::COLUMNS.iter().any(|c| c.name == k.as_str()))
    {
        return Err(RowError::column(
            unknown,
            format!("unknown column; {} has {}", T::NAME, column_list(T::COLUMNS)),
        ));
    }
    let mut out = Map::new();
    let mut latest: Option<DateTime<Utc>> = None;
    for c in T::COLUMNS {
        let value = match typed_value(T::NAME, c, row.get(c.name)).map_err(|m| RowError::column(c.name, m))? {
            Some(Typed::Value(v)) => v,
            Some(Typed::Instant(t)) => {
                latest = Some(latest.map_or(t, |l| l.max(t)));
                Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            None if c.kind == ColumnKind::TextList => Value::Array(Vec::new()),
            None => Value::Null,
        };
        out.insert(c.name.to_owned(), value);
    }
    fill_if_null(&mut out, "source", || Some(Value::String(source.to_owned())));
    fill_if_null(&mut out, "updated_at", || {
        latest.map(|t| Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
    });
    let service = out.get("service").cloned().filter(|v| !v.is_null());
    fill_if_null(&mut out, "service_ref", || service);
    if let Some(c) = T::COLUMNS
        .iter()
        .find(|c| c.name != "id" && !c.nullable && out.get(c.name).is_none_or(Value::is_null))
    {
        return Err(RowError::column(c.name, "missing value (the column is required)"));
    }
    if out.get("id").is_none_or(Value::is_null) {
        let id = derived_id(T::NAME, &out)?;
        out.insert("id".into(), Value::String(id));
    }
    serde_json::from_value(Value::Object(out)).map_err(|e| RowError::row(format!("not a {}: {e}", T::NAME)))
}

/// Replaces a null in a column the table has; a column the table lacks stays absent.
fn fill_if_null(out: &mut Map<String, Value>, column: &str, value: impl FnOnce() -> Option<Value>) {
    if let Some(slot) = out.get_mut(column)
        && slot.is_null()
        && let Some(v) = value()
    {
        *slot = v;
    }
}

fn derived_id(table: &str, out: &Map<String, Value>) -> Result<String, RowError> {
    let source = out.get("source").and_then(Value::as_str).unwrap_or_default();
    let mut id = source.to_owned();
    for k in natural_key(table) {
        let part = match out.get(*k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(RowError::column(
                    "id",
                    format!(
                        "missing value: give `id`, or {} to derive it",
                        backticked(natural_key(table))
                    ),
                ));
            }
        };
        id.push(':');
        id.push_str(&part);
    }
    Ok(id)
}

/// A typed cell: a JSON value ready for serde, or an instant (kept to find the latest).
enum Typed {
    Value(Value),
    Instant(DateTime<Utc>),
}

/// Types one raw value; `None` when it is absent, null or blank.
fn typed_value(table: &str, c: &Column, raw: Option<&Value>) -> Result<Option<Typed>, String> {
    let raw = match raw {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(v) => v,
    };
    let typed = match c.kind {
        ColumnKind::Text => {
            let text = match raw {
                Value::String(s) => s.trim().to_owned(),
                // Hand-written JSON often has numbers where the model keeps text (`"number": 42`).
                Value::Number(n) => n.to_string(),
                other => return Err(format!("expected text, found {}", json_kind(other))),
            };
            match allowed_values(table, c.name) {
                Some(allowed) => {
                    let lower = text.to_ascii_lowercase();
                    if !allowed.contains(&lower.as_str()) {
                        return Err(format!(
                            "unknown value {text:?}; expected one of {}",
                            allowed.join(", ")
                        ));
                    }
                    Value::String(lower)
                }
                None => Value::String(text),
            }
        }
        ColumnKind::Integer => match raw {
            Value::Number(n) => n
                .as_i64()
                .map(Value::from)
                .ok_or_else(|| format!("expected an integer, found {n}"))?,
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("expected an integer, found {s:?}"))?,
            other => return Err(format!("expected an integer, found {}", json_kind(other))),
        },
        ColumnKind::Bool => match raw {
            Value::Bool(b) => Value::Bool(*b),
            Value::String(s) => Value::Bool(parse_bool(s)?),
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Value::Bool(n.as_i64() == Some(1))
            }
            other => return Err(format!("expected true/false, found {other}")),
        },
        ColumnKind::Timestamp => match raw {
            Value::String(s) => return parse_instant(s).map(|t| Some(Typed::Instant(t))),
            other => return Err(format!("expected a timestamp string, found {other}")),
        },
        ColumnKind::TextList => match raw {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => Ok(Value::String(s.trim().to_owned())),
                        other => Err(format!("expected a list of text, found {other} in it")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Value::String(s) => text_list(s)?,
            other => return Err(format!("expected a list of text, found {}", json_kind(other))),
        },
    };
    Ok(Some(Typed::Value(typed)))
}

/// `true/false/1/0/yes/no`, case-insensitive.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("expected true/false/1/0/yes/no, found {s:?}")),
    }
}

/// A list in one cell: a JSON array of strings (`["a","b"]`) or `;`-separated (`a; b`).
fn text_list(s: &str) -> Result<Value, String> {
    let s = s.trim();
    if s.starts_with('[') {
        let items: Vec<String> =
            serde_json::from_str(s).map_err(|e| format!("not a JSON array of strings: {e}"))?;
        return Ok(items.into_iter().map(Value::String).collect());
    }
    Ok(s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Value::String(p.to_owned()))
        .collect())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn backticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// `id, source, …` for messages.
pub fn column_list(columns: &[Column]) -> String {
    columns.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// Checks a CSV header against the entity's columns: no unknown or repeated column, every
/// required column present (an `id` column, or the columns its derivation needs).
pub fn check_header(entity: Entity, header: &[String]) -> Result<(), String> {
    let columns = entity.columns();
    for (i, h) in header.iter().enumerate() {
        if !columns.iter().any(|c| c.name == h) {
            return Err(format!(
                "unknown column `{h}`; {} has {}",
                entity.name(),
                column_list(columns)
            ));
        }
        if header[..i].contains(h) {
            return Err(format!("column `{h}` appears twice"));
        }
    }
    let has = |name: &str| header.iter().any(|h| h == name);
    let missing: Vec<&str> = columns
        .iter()
        .filter(|c| !c.nullable && c.kind != ColumnKind::TextList && !DEFAULTED.contains(&c.name))
        .map(|c| c.name)
        .filter(|n| !has(n))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing required column{} {}",
            if missing.len() == 1 { "" } else { "s" },
            backticked(&missing).replace(" + ", ", ")
        ));
    }
    let key = entity.natural_key();
    if !has("id") && !key.iter().all(|k| has(k)) {
        return Err(format!(
            "no `id` column: give one, or {} to derive it",
            backticked(key)
        ));
    }
    Ok(())
}
