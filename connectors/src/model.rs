//! The canonical records every connector produces and the store keeps: one struct per entity,
//! all instants in UTC, plus the column schema each table is stored with.
//!
//! This module knows nothing of Parquet or polars: it only declares, per table, which columns exist
//! and of what kind, so the store can write them and the README can document them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The kind of a stored column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// UTF-8 text.
    Text,
    /// A 64-bit signed integer.
    Integer,
    /// true / false.
    Bool,
    /// An instant, stored as UTC with millisecond precision.
    Timestamp,
    /// A list of text values (labels, references).
    TextList,
}

/// One column of a canonical table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Column name, equal to the serde field name of the record.
    pub name: &'static str,
    /// What the column holds.
    pub kind: ColumnKind,
    /// Whether the value may be missing.
    pub nullable: bool,
    /// One line for the data team: what the value means.
    pub doc: &'static str,
}

const fn col(name: &'static str, kind: ColumnKind, nullable: bool, doc: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable,
        doc,
    }
}

/// A canonical table: a record type with a name, a primary key and a declared schema.
pub trait Table: Serialize + for<'de> Deserialize<'de> + Clone + Send + 'static {
    /// Table name in the store (`deployments`, `changes`, …).
    const NAME: &'static str;
    /// The columns, in storage order. Every serde field of the record appears here.
    const COLUMNS: &'static [Column];
    /// The primary key, unique within the table.
    fn key(&self) -> &str;
    /// When the source last changed the record: on upsert the newer version wins.
    fn updated_at(&self) -> DateTime<Utc>;
}

/// Final state of a deployment attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Finished and live.
    Success,
    /// The deployment ran and failed.
    Failure,
    /// The deployment could not run.
    Error,
    /// Not finished yet (queued, pending, in progress): re-polled on the next sync.
    InProgress,
    /// Stopped before it finished.
    Cancelled,
}

impl DeploymentStatus {
    /// The lower-case name stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Error => "error",
            Self::InProgress => "in_progress",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A deployment attempt of a repository to an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// `{source}:{repo}:{vendor id}`.
    pub id: String,
    /// Name of the configured source it came from.
    pub source: String,
    /// Repository (`owner/name`).
    pub repo: String,
    /// Service from the configured mapping; `None` when the repo is unmapped.
    pub service: Option<String>,
    /// Team owning the service.
    pub team: Option<String>,
    /// Environment name as the source reports it.
    pub environment: String,
    /// Whether the environment counts as production.
    pub is_production: bool,
    /// Final status (`success`, `failure`, `error`, `in_progress`, `cancelled`).
    pub status: DeploymentStatus,
    /// Commit deployed.
    pub sha: String,
    /// When the deployment was created.
    pub created_at: DateTime<Utc>,
    /// When it reached its final status; `None` while in progress.
    pub finished_at: Option<DateTime<Utc>>,
    /// When the source last changed it.
    pub updated_at: DateTime<Utc>,
}

impl Table for Deployment {
    const NAME: &'static str = "deployments";
    const COLUMNS: &'static [Column] = &[
        col(
            "id",
            ColumnKind::Text,
            false,
            "Primary key: `{source}:{repo}:{vendor id}`.",
        ),
        col("source", ColumnKind::Text, false, "Configured source name."),
        col("repo", ColumnKind::Text, false, "Repository, `owner/name`."),
        col(
            "service",
            ColumnKind::Text,
            true,
            "Service from the config mapping; null when unmapped.",
        ),
        col("team", ColumnKind::Text, true, "Team owning the service."),
        col(
            "environment",
            ColumnKind::Text,
            false,
            "Environment name as the source reports it.",
        ),
        col(
            "is_production",
            ColumnKind::Bool,
            false,
            "Environment counts as production.",
        ),
        col(
            "status",
            ColumnKind::Text,
            false,
            "success, failure, error, in_progress or cancelled.",
        ),
        col("sha", ColumnKind::Text, false, "Commit deployed."),
        col(
            "created_at",
            ColumnKind::Timestamp,
            false,
            "Deployment created (UTC).",
        ),
        col(
            "finished_at",
            ColumnKind::Timestamp,
            true,
            "Final status reached (UTC); null while in progress.",
        ),
        col(
            "updated_at",
            ColumnKind::Timestamp,
            false,
            "Last changed at the source (UTC).",
        ),
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
}

/// A merged or open change: a GitHub pull request or GitLab merge request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `{source}:{repo}:{number}`.
    pub id: String,
    /// Name of the configured source it came from.
    pub source: String,
    /// Repository (`owner/name`).
    pub repo: String,
    /// Service from the configured mapping.
    pub service: Option<String>,
    /// Team owning the service.
    pub team: Option<String>,
    /// Pull/merge request number within the repo.
    pub number: i64,
    /// Title as written by its author.
    pub title: String,
    /// `open`, `closed` or `merged`.
    pub state: String,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it was merged; `None` when not merged.
    pub merged_at: Option<DateTime<Utc>>,
    /// The merge commit.
    pub merge_commit_sha: Option<String>,
    /// Author time of its earliest commit, when known.
    pub first_commit_at: Option<DateTime<Utc>>,
    /// Labels.
    pub labels: Vec<String>,
    /// Whether the change reverts an earlier one.
    pub is_revert: bool,
    /// Number of the change it reverts, when known.
    pub reverts: Option<i64>,
    /// When the source last changed it.
    pub updated_at: DateTime<Utc>,
}

impl Table for Change {
    const NAME: &'static str = "changes";
    const COLUMNS: &'static [Column] = &[
        col(
            "id",
            ColumnKind::Text,
            false,
            "Primary key: `{source}:{repo}:{number}`.",
        ),
        col("source", ColumnKind::Text, false, "Configured source name."),
        col("repo", ColumnKind::Text, false, "Repository, `owner/name`."),
        col(
            "service",
            ColumnKind::Text,
            true,
            "Service from the config mapping; null when unmapped.",
        ),
        col("team", ColumnKind::Text, true, "Team owning the service."),
        col("number", ColumnKind::Integer, false, "Pull/merge request number."),
        col(
            "title",
            ColumnKind::Text,
            false,
            "Title as written by its author.",
        ),
        col("state", ColumnKind::Text, false, "open, closed or merged."),
        col("created_at", ColumnKind::Timestamp, false, "Opened (UTC)."),
        col(
            "merged_at",
            ColumnKind::Timestamp,
            true,
            "Merged (UTC); null when not merged.",
        ),
        col("merge_commit_sha", ColumnKind::Text, true, "Merge commit."),
        col(
            "first_commit_at",
            ColumnKind::Timestamp,
            true,
            "Author time of the earliest commit (UTC).",
        ),
        col("labels", ColumnKind::TextList, false, "Labels."),
        col(
            "is_revert",
            ColumnKind::Bool,
            false,
            "The change reverts an earlier one.",
        ),
        col(
            "reverts",
            ColumnKind::Integer,
            true,
            "Number of the reverted change, when known.",
        ),
        col(
            "updated_at",
            ColumnKind::Timestamp,
            false,
            "Last changed at the source (UTC).",
        ),
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
}

/// Severity on tandem's common scale; sources map onto it (PagerDuty P1/P2 or high urgency, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Critical: full outage.
    Sev1,
    /// Major: significant degradation.
    Sev2,
    /// Minor.
    Sev3,
    /// Informational.
    Sev4,
}

impl Severity {
    /// The lower-case name stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sev1 => "sev1",
            Self::Sev2 => "sev2",
            Self::Sev3 => "sev3",
            Self::Sev4 => "sev4",
        }
    }
}

/// An incident: something that hurt users, from an incident tool or an ITSM system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `{source}:{vendor id}`.
    pub id: String,
    /// Name of the configured source it came from.
    pub source: String,
    /// Human-facing number at the source (PagerDuty incident number, …).
    pub number: Option<i64>,
    /// Title as written at the source.
    pub title: String,
    /// The source's own service reference (PagerDuty service id, CI, component).
    pub service_ref: Option<String>,
    /// Service from the configured mapping.
    pub service: Option<String>,
    /// Team owning the service.
    pub team: Option<String>,
    /// Severity on the common scale; `None` when the source gives none.
    pub severity: Option<Severity>,
    /// Source status (`triggered`, `acknowledged`, `resolved`, …).
    pub status: String,
    /// When impact began (the incident's creation at the source).
    pub started_at: DateTime<Utc>,
    /// First acknowledgement.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Resolution; `None` while open.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Explicit cause references the source carries (deployment ids, shas, change numbers).
    pub cause_refs: Vec<String>,
    /// When the source last changed it.
    pub updated_at: DateTime<Utc>,
}

impl Table for Incident {
    const NAME: &'static str = "incidents";
    const COLUMNS: &'static [Column] = &[
        col(
            "id",
            ColumnKind::Text,
            false,
            "Primary key: `{source}:{vendor id}`.",
        ),
        col("source", ColumnKind::Text, false, "Configured source name."),
        col("number", ColumnKind::Integer, true, "Number at the source."),
        col(
            "title",
            ColumnKind::Text,
            false,
            "Title as written at the source.",
        ),
        col(
            "service_ref",
            ColumnKind::Text,
            true,
            "The source's own service reference.",
        ),
        col(
            "service",
            ColumnKind::Text,
            true,
            "Service from the config mapping; null when unmapped.",
        ),
        col("team", ColumnKind::Text, true, "Team owning the service."),
        col(
            "severity",
            ColumnKind::Text,
            true,
            "sev1 (critical) to sev4; null when unknown.",
        ),
        col("status", ColumnKind::Text, false, "Status at the source."),
        col("started_at", ColumnKind::Timestamp, false, "Impact began (UTC)."),
        col(
            "acknowledged_at",
            ColumnKind::Timestamp,
            true,
            "First acknowledgement (UTC).",
        ),
        col(
            "resolved_at",
            ColumnKind::Timestamp,
            true,
            "Resolved (UTC); null while open.",
        ),
        col(
            "cause_refs",
            ColumnKind::TextList,
            false,
            "Explicit cause references from the source.",
        ),
        col(
            "updated_at",
            ColumnKind::Timestamp,
            false,
            "Last changed at the source (UTC).",
        ),
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
}

/// Any canonical record, as a connector yields it.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A deployment attempt.
    Deployment(Deployment),
    /// A pull/merge request.
    Change(Change),
    /// An incident.
    Incident(Incident),
}

impl Record {
    /// The primary key of the wrapped record.
    pub fn key(&self) -> &str {
        match self {
            Self::Deployment(r) => r.key(),
            Self::Change(r) => r.key(),
            Self::Incident(r) => r.key(),
        }
    }
}

/// A source record that could not be turned into a canonical record, kept with its reason so it
/// is counted and can be fixed, never silently dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    /// `{source}:{stream}:{record key or content hash}`.
    pub id: String,
    /// Configured source name.
    pub source: String,
    /// Stream it came from.
    pub stream: String,
    /// Why it was rejected (names the field).
    pub reason: String,
    /// The raw record, as JSON text.
    pub raw: String,
    /// When tandem saw it.
    pub seen_at: DateTime<Utc>,
}

impl Table for Quarantined {
    const NAME: &'static str = "quarantine";
    const COLUMNS: &'static [Column] = &[
        col(
            "id",
            ColumnKind::Text,
            false,
            "Primary key: `{source}:{stream}:{record key or hash}`.",
        ),
        col("source", ColumnKind::Text, false, "Configured source name."),
        col("stream", ColumnKind::Text, false, "Stream it came from."),
        col("reason", ColumnKind::Text, false, "Why it was rejected."),
        col("raw", ColumnKind::Text, false, "The raw record as JSON text."),
        col(
            "seen_at",
            ColumnKind::Timestamp,
            false,
            "When tandem saw it (UTC).",
        ),
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn updated_at(&self) -> DateTime<Utc> {
        self.seen_at
    }
}

impl Quarantined {
    /// Builds a quarantine entry; the key is the record's own id when it has one, else a hash of
    /// its content, so the same bad record quarantined twice stays one row.
    pub fn new(source: &str, stream: &str, raw: &serde_json::Value, reason: impl Into<String>) -> Self {
        let raw_text = raw.to_string();
        let key = raw
            .get("id")
            .map(|v| v.to_string().trim_matches('"').to_owned())
            .unwrap_or_else(|| format!("{:016x}", fnv1a(raw_text.as_bytes())));
        Self {
            id: format!("{source}:{stream}:{key}"),
            source: source.to_owned(),
            stream: stream.to_owned(),
            reason: reason.into(),
            raw: raw_text,
            seen_at: Utc::now(),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
