//! The canonical records every connector produces and the store keeps: one struct per entity,
//! all instants in UTC, plus the column schema each table is stored with.
//!
//! Each table is declared once, with [`canonical_table!`](crate::canonical_table): the struct's
//! fields, each with one line for the data team. The struct, its columns ([`Table::COLUMNS`]:
//! name, kind and nullability come from the field and its type) and its stored values
//! ([`Table::cell`]) all come from that one declaration, so the store's codec writes every table,
//! large or small, from them alone.
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

/// One stored value of a record, borrowed from it: what the codec writes in a column's row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// No value.
    Null,
    /// A [`ColumnKind::Text`] value.
    Text(&'a str),
    /// A [`ColumnKind::Integer`] value.
    Integer(i64),
    /// A [`ColumnKind::Bool`] value.
    Bool(bool),
    /// A [`ColumnKind::Timestamp`] value (stored at millisecond precision).
    Timestamp(DateTime<Utc>),
    /// A [`ColumnKind::TextList`] value.
    TextList(&'a [String]),
}

/// A field type a canonical table can store: the kind of its column, whether its type allows
/// null, and its value.
pub trait Stored {
    /// The column's kind.
    const KIND: ColumnKind;
    /// Whether the type can hold no value (an `Option`).
    const NULLABLE: bool = false;
    /// The value as stored.
    fn cell(&self) -> Cell<'_>;
}

impl Stored for String {
    const KIND: ColumnKind = ColumnKind::Text;
    fn cell(&self) -> Cell<'_> {
        Cell::Text(self)
    }
}

impl Stored for i64 {
    const KIND: ColumnKind = ColumnKind::Integer;
    fn cell(&self) -> Cell<'_> {
        Cell::Integer(*self)
    }
}

impl Stored for bool {
    const KIND: ColumnKind = ColumnKind::Bool;
    fn cell(&self) -> Cell<'_> {
        Cell::Bool(*self)
    }
}

impl Stored for DateTime<Utc> {
    const KIND: ColumnKind = ColumnKind::Timestamp;
    fn cell(&self) -> Cell<'_> {
        Cell::Timestamp(*self)
    }
}

impl Stored for Vec<String> {
    const KIND: ColumnKind = ColumnKind::TextList;
    fn cell(&self) -> Cell<'_> {
        Cell::TextList(self)
    }
}

impl<T: Stored> Stored for Option<T> {
    const KIND: ColumnKind = T::KIND;
    const NULLABLE: bool = true;
    fn cell(&self) -> Cell<'_> {
        self.as_ref().map_or(Cell::Null, T::cell)
    }
}

/// A closed set of names stored as text: the name is its serde name (a test per type keeps the
/// two equal), so a record reads back as it was written.
macro_rules! stored_as_text {
    ($($name:ty),*) => {$(
        impl Stored for $name {
            const KIND: ColumnKind = ColumnKind::Text;
            fn cell(&self) -> Cell<'_> {
                Cell::Text(self.as_str())
            }
        }
    )*};
}

stored_as_text!(DeploymentStatus, Severity, ReasonCode);

/// A canonical table: a record type with a name, a primary key and a declared schema.
pub trait Table: Serialize + for<'de> Deserialize<'de> + Clone + Send + 'static {
    /// Table name in the store (`deployments`, `changes`, …).
    const NAME: &'static str;
    /// The columns, in storage order. Every serde field of the record appears here.
    const COLUMNS: &'static [Column];
    /// The value of the record's column `COLUMNS[column]`, as stored ([`Cell::Null`] past the
    /// last column).
    fn cell(&self, column: usize) -> Cell<'_>;
    /// The columns that hold a person (a login, display name or email): exports can replace them
    /// by pseudonyms, and the schema marks them.
    const PEOPLE: &'static [&'static str] = &[];
    /// The primary key, unique within the table.
    fn key(&self) -> &str;
    /// When the source last changed the record: on upsert the newer version wins.
    fn updated_at(&self) -> DateTime<Utc>;
    /// The column [`Table::updated_at`] is stored in.
    const UPDATED_AT: &'static str = "updated_at";
    /// The column of the record's anchor: an instant the source sets when the record is created
    /// and never changes. A table with an anchor is stored partitioned by its month, so an upsert
    /// of recent records touches recent files only; a small table has none.
    const ANCHOR: Option<&'static str> = None;
    /// The value of the [`Table::ANCHOR`] column.
    fn anchor(&self) -> Option<DateTime<Utc>> {
        None
    }
}

/// Declares a canonical table once: the record struct with, after each field's type, the column's
/// one line for the data team (`=> "…"`, or `=> nullable "…"` for a column that a lake written
/// before it existed lacks although the field always has a value), and the table's own items
/// (`NAME`, `key`, …) in an `impl Table { … }` block. It generates the struct, the
/// [`Table`] impl with [`Table::COLUMNS`] (the field names in field order, each kind and
/// nullability from the field's [`Stored`] type) and [`Table::cell`].
///
/// ```
/// use chrono::{DateTime, Utc};
/// use serde::{Deserialize, Serialize};
/// use tandem_connectors::canonical_table;
/// use tandem_connectors::model::{ColumnKind, Table};
///
/// canonical_table! {
///     /// A code review.
///     #[derive(Debug, Clone, Serialize, Deserialize)]
///     pub struct Review {
///         /// Primary key.
///         pub id: String => "Primary key.",
///         /// Who wrote it.
///         pub author: Option<String> => "Login of the author.",
///         /// When it was submitted.
///         pub at: DateTime<Utc> => "Submitted (UTC).",
///     }
///     impl Table {
///         const NAME: &'static str = "reviews";
///         const UPDATED_AT: &'static str = "at";
///         fn key(&self) -> &str {
///             &self.id
///         }
///         fn updated_at(&self) -> DateTime<Utc> {
///             self.at
///         }
///     }
/// }
///
/// assert_eq!(Review::COLUMNS[1].name, "author");
/// assert_eq!(Review::COLUMNS[1].kind, ColumnKind::Text);
/// assert!(Review::COLUMNS[1].nullable && !Review::COLUMNS[2].nullable);
/// ```
#[macro_export]
macro_rules! canonical_table {
    (@nullable $ty:ty) => {
        <$ty as $crate::model::Stored>::NULLABLE
    };
    (@nullable $ty:ty, nullable) => {
        true
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                $field_vis:vis $field:ident : $ty:ty => $($nullable:ident)? $doc:literal
            ),* $(,)?
        }
        $(#[$impl_meta:meta])*
        impl Table {
            $($item:tt)*
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                $(#[$field_meta])*
                $field_vis $field: $ty,
            )*
        }

        $(#[$impl_meta])*
        impl $crate::model::Table for $name {
            const COLUMNS: &'static [$crate::model::Column] = &[$(
                $crate::model::Column {
                    name: stringify!($field),
                    kind: <$ty as $crate::model::Stored>::KIND,
                    nullable: $crate::canonical_table!(@nullable $ty $(, $nullable)?),
                    doc: $doc,
                },
            )*];

            fn cell(&self, column: usize) -> $crate::model::Cell<'_> {
                const CELLS: &[for<'a> fn(&'a $name) -> $crate::model::Cell<'a>] =
                    &[$(|row| $crate::model::Stored::cell(&row.$field)),*];
                CELLS
                    .get(column)
                    .map_or($crate::model::Cell::Null, |cell| cell(self))
            }

            $($item)*
        }
    };
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
    /// Still unfinished long after it was created (the source's `stale_after_days`): no longer
    /// re-polled. Neither a deployment nor a failed attempt: counted in data quality only.
    Stale,
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
            Self::Stale => "stale",
        }
    }
}

canonical_table! {
    /// A deployment attempt of a repository to an environment.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Deployment {
        /// `{source}:{repo}:{vendor id}`.
        pub id: String => "Primary key: `{source}:{repo}:{vendor id}`.",
        /// Name of the configured source it came from.
        pub source: String => "Configured source name.",
        /// Repository (`owner/name`).
        pub repo: String => "Repository, `owner/name`.",
        /// Service from the configured mapping; `None` when the repo is unmapped.
        pub service: Option<String> => "Service from the config mapping; null when unmapped.",
        /// Team owning the service.
        pub team: Option<String> => "Team owning the service.",
        /// Environment name as the source reports it.
        pub environment: String => "Environment name as the source reports it.",
        /// Whether the environment counts as production.
        pub is_production: bool => "Environment counts as production.",
        /// Final status (`success`, `failure`, `error`, `in_progress`, `cancelled`, `stale`).
        pub status: DeploymentStatus
            => "success, failure, error, in_progress, cancelled or stale (never finished).",
        /// Commit deployed.
        pub sha: String => "Commit deployed.",
        /// When the deployment was created.
        pub created_at: DateTime<Utc> => "Deployment created (UTC).",
        /// When it reached its final status; `None` while in progress.
        pub finished_at: Option<DateTime<Utc>>
            => "Final status reached (UTC); null while in progress.",
        /// Who started it: the login of the user or tool that created the deployment, when known.
        pub deployed_by: Option<String>
            => "Login of the user or tool that started it (GitHub `creator`, GitLab `user`); null when unknown.",
        /// The change records the source names for it (change request numbers or ids, as a GitHub
        /// deployment's payload gives them); empty when it names none. A lake written before the
        /// column existed reads it as empty.
        #[serde(default, deserialize_with = "null_as_empty")]
        pub change_refs: Vec<String>
            => nullable "Change records the source names for it (change request numbers or ids, from a GitHub deployment's payload); null in a lake written before the column existed.",
        /// When the source last changed it.
        pub updated_at: DateTime<Utc> => "Last changed at the source (UTC).",
    }
    impl Table {
        const PEOPLE: &'static [&'static str] = &["deployed_by"];
        const NAME: &'static str = "deployments";
        const ANCHOR: Option<&'static str> = Some("created_at");
        fn anchor(&self) -> Option<DateTime<Utc>> {
            Some(self.created_at)
        }
        fn key(&self) -> &str {
            &self.id
        }
        fn updated_at(&self) -> DateTime<Utc> {
            self.updated_at
        }
    }
}

/// A list that may be null (a column added after the lake was written) as an empty list.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Option::<Vec<String>>::deserialize(d).map(Option::unwrap_or_default)
}

canonical_table! {
    /// A merged or open change: a GitHub pull request or GitLab merge request.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Change {
        /// `{source}:{repo}:{number}`.
        pub id: String => "Primary key: `{source}:{repo}:{number}`.",
        /// Name of the configured source it came from.
        pub source: String => "Configured source name.",
        /// Repository (`owner/name`).
        pub repo: String => "Repository, `owner/name`.",
        /// Service from the configured mapping.
        pub service: Option<String> => "Service from the config mapping; null when unmapped.",
        /// Team owning the service.
        pub team: Option<String> => "Team owning the service.",
        /// Pull/merge request number within the repo.
        pub number: i64 => "Pull/merge request number.",
        /// Title as written by its author.
        pub title: String => "Title as written by its author.",
        /// `open`, `closed` or `merged`.
        pub state: String => "open, closed or merged.",
        /// When it was opened.
        pub created_at: DateTime<Utc> => "Opened (UTC).",
        /// When it was merged; `None` when not merged.
        pub merged_at: Option<DateTime<Utc>> => "Merged (UTC); null when not merged.",
        /// The merge commit.
        pub merge_commit_sha: Option<String> => "Merge commit.",
        /// Author time of its earliest commit, when known.
        pub first_commit_at: Option<DateTime<Utc>> => "Author time of the earliest commit (UTC).",
        /// Labels.
        pub labels: Vec<String> => "Labels.",
        /// Whether the change reverts an earlier one.
        pub is_revert: bool => "The change reverts an earlier one.",
        /// Number of the change it reverts, when known.
        pub reverts: Option<i64> => "Number of the reverted change, when known.",
        /// Login of its author (GitHub `user.login`, GitLab `author.username`).
        pub author: Option<String>
            => "Login of the author (GitHub `user.login`, GitLab `author.username`).",
        /// When the source last changed it.
        pub updated_at: DateTime<Utc> => "Last changed at the source (UTC).",
    }
    impl Table {
        const PEOPLE: &'static [&'static str] = &["author"];
        const NAME: &'static str = "changes";
        const ANCHOR: Option<&'static str> = Some("created_at");
        fn anchor(&self) -> Option<DateTime<Utc>> {
            Some(self.created_at)
        }
        fn key(&self) -> &str {
            &self.id
        }
        fn updated_at(&self) -> DateTime<Utc> {
            self.updated_at
        }
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

    /// The severity a config names (`sev1`…`sev4`, any letter case).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sev1" => Some(Self::Sev1),
            "sev2" => Some(Self::Sev2),
            "sev3" => Some(Self::Sev3),
            "sev4" => Some(Self::Sev4),
            _ => None,
        }
    }
}

canonical_table! {
    /// An incident: something that hurt users, from an incident tool or an ITSM system.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Incident {
        /// `{source}:{vendor id}`.
        pub id: String => "Primary key: `{source}:{vendor id}`.",
        /// Name of the configured source it came from.
        pub source: String => "Configured source name.",
        /// Human-facing number at the source (PagerDuty incident number, …).
        pub number: Option<i64> => "Number at the source.",
        /// Title as written at the source.
        pub title: String => "Title as written at the source.",
        /// The source's own service reference (PagerDuty service id, CI, component).
        pub service_ref: Option<String> => "The source's own service reference.",
        /// The source's own team reference (PagerDuty team id, ServiceNow assignment group).
        pub team_ref: Option<String>
            => "The source's own team reference (PagerDuty team, ServiceNow assignment group).",
        /// Service from the configured mapping.
        pub service: Option<String> => "Service from the config mapping; null when unmapped.",
        /// Team owning the service.
        pub team: Option<String> => "Team owning the service.",
        /// Severity on the common scale; `None` when the source gives none.
        pub severity: Option<Severity> => "sev1 (critical) to sev4; null when unknown.",
        /// Source status (`triggered`, `acknowledged`, `resolved`, …).
        pub status: String => "Status at the source.",
        /// When impact began (the incident's creation at the source).
        pub started_at: DateTime<Utc> => "Impact began (UTC).",
        /// First acknowledgement.
        pub acknowledged_at: Option<DateTime<Utc>> => "First acknowledgement (UTC).",
        /// Resolution; `None` while open.
        pub resolved_at: Option<DateTime<Utc>> => "Resolved (UTC); null while open.",
        /// Explicit cause references the source carries (deployment ids, shas, change numbers).
        pub cause_refs: Vec<String> => "Explicit cause references from the source.",
        /// The key by which the source links this incident to the same outage in another system
        /// (ServiceNow `correlation_id`, which PagerDuty's integration sets to its incident id; the Jira
        /// field named by `correlation_field`); `None` when the source gives none. tandem matches
        /// mirrored incidents on it.
        #[serde(default)]
        pub correlation_id: Option<String>
            => "The source's link to the same outage in another system (ServiceNow `correlation_id`, Jira `correlation_field`); null when none.",
        /// Who the incident is assigned to, as the source names them (display name or login);
        /// `None` when unassigned or when the source clears it on resolution (PagerDuty).
        pub assignee: Option<String>
            => "Assigned responder as the source names them; null when unassigned or cleared on resolution.",
        /// Who acknowledged it first, as the source names them.
        pub acknowledged_by: Option<String>
            => "Who acknowledged it first, as the source names them.",
        /// When the source last changed it.
        pub updated_at: DateTime<Utc> => "Last changed at the source (UTC).",
    }
    impl Table {
        const PEOPLE: &'static [&'static str] = &["assignee", "acknowledged_by"];
        const NAME: &'static str = "incidents";
        fn key(&self) -> &str {
            &self.id
        }
        fn updated_at(&self) -> DateTime<Utc> {
            self.updated_at
        }
    }
}

canonical_table! {
    /// A commit, as a change's or a deployment's content (GitHub/GitLab commits, compare between
    /// consecutive production deployments).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Commit {
        /// `{source}:{repo}:{sha}`.
        pub id: String => "Primary key: `{source}:{repo}:{sha}`.",
        /// Name of the configured source it came from.
        pub source: String => "Configured source name.",
        /// Repository (`owner/name`, or a GitLab project path).
        pub repo: String => "Repository, `owner/name` or GitLab project path.",
        /// Service from the configured mapping.
        pub service: Option<String> => "Service from the config mapping; null when unmapped.",
        /// Team owning the service.
        pub team: Option<String> => "Team owning the service.",
        /// Commit sha.
        pub sha: String => "Commit sha.",
        /// Author time.
        pub authored_at: DateTime<Utc> => "Author time (UTC).",
        /// Parent shas (two or more for a merge commit).
        pub parents: Vec<String> => "Parent shas.",
        /// First line of the message.
        pub title: String => "First line of the message.",
        /// The production deployment whose range (previous production deployment, this one] brought
        /// the commit, when known from a compare.
        pub deployment_id: Option<String>
            => "Production deployment whose range brought it, when known.",
        /// Author name as written in the commit.
        pub author_name: Option<String> => "Author name as written in the commit.",
        /// Author email as written in the commit.
        pub author_email: Option<String> => "Author email as written in the commit.",
        /// When tandem last saw it change (a commit is immutable: its author time, or when it was
        /// linked to a deployment).
        pub updated_at: DateTime<Utc> => "When tandem last saw it change (UTC).",
    }
    impl Table {
        const PEOPLE: &'static [&'static str] = &["author_name", "author_email"];
        const NAME: &'static str = "commits";
        const ANCHOR: Option<&'static str> = Some("authored_at");
        fn anchor(&self) -> Option<DateTime<Utc>> {
            Some(self.authored_at)
        }
        fn key(&self) -> &str {
            &self.id
        }
        fn updated_at(&self) -> DateTime<Utc> {
            self.updated_at
        }
    }
}

canonical_table! {
    /// A ticket: a Jira issue or a ServiceNow incident/request, for ITSM flow metrics.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Ticket {
        /// `{source}:{key}`.
        pub id: String => "Primary key: `{source}:{key}`.",
        /// Name of the configured source it came from.
        pub source: String => "Configured source name.",
        /// Human key at the source (`OPS-127`, `INC0000046`).
        pub key: String => "Key at the source (`OPS-127`, `INC0000046`).",
        /// Project (Jira project key, ServiceNow table).
        pub project: String => "Jira project key or ServiceNow table.",
        /// The source's own service reference (component, CI).
        pub service_ref: Option<String> => "The source's own service reference (component, CI).",
        /// Service from the configured mapping.
        pub service: Option<String> => "Service from the config mapping; null when unmapped.",
        /// Team owning the service.
        pub team: Option<String> => "Team owning the service.",
        /// `incident`, `request`, `change`, `problem`, `bug`, `task`, `story`, or [`Ticket::OTHER`]
        /// for a type no mapping classifies.
        pub category: String
            => "incident, request, change, problem, bug, task, story, or other (a type tandem cannot classify).",
        /// Issue type / record type as the source names it.
        pub issue_type: String => "Issue or record type as the source names it.",
        /// Title / short description.
        pub title: String => "Title or short description.",
        /// Priority as the source names it (`High`, `P2`, `3`); `None` when unset.
        pub priority: Option<String> => "Priority as the source names it.",
        /// Status as the source names it (may be localised).
        pub status: String => "Status as the source names it.",
        /// `new`, `indeterminate` or `done`.
        pub status_category: String => "new, indeterminate or done.",
        /// Labels.
        pub labels: Vec<String> => "Labels.",
        /// Created.
        pub created_at: DateTime<Utc> => "Created (UTC).",
        /// Resolved; `None` while open.
        pub resolved_at: Option<DateTime<Utc>> => "Resolved (UTC); null while open.",
        /// Who the ticket is assigned to (display name); `None` when unassigned.
        pub assignee: Option<String>
            => "Assignee's display name (Jira `assignee`, ServiceNow `assigned_to`); null when unassigned.",
        /// Who reported or opened it (display name).
        pub reporter: Option<String>
            => "Reporter's display name (Jira `reporter`, ServiceNow `opened_by`).",
        /// Last changed at the source.
        pub updated_at: DateTime<Utc> => "Last changed at the source (UTC).",
    }
    // `key` is the table's primary key (`id`), not the ticket's human key field.
    #[allow(clippy::misnamed_getters)]
    impl Table {
        const PEOPLE: &'static [&'static str] = &["assignee", "reporter"];
        const NAME: &'static str = "tickets";
        const ANCHOR: Option<&'static str> = Some("created_at");
        fn anchor(&self) -> Option<DateTime<Utc>> {
            Some(self.created_at)
        }
        fn key(&self) -> &str {
            &self.id
        }
        fn updated_at(&self) -> DateTime<Utc> {
            self.updated_at
        }
    }
}

impl Ticket {
    /// The category of an issue type no mapping classifies: counted in data quality.
    pub const OTHER: &'static str = "other";
}

canonical_table! {
    /// One status change of a ticket (Jira changelog).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct TicketTransition {
        /// `{source}:{ticket key}:{history id}:{item index}`.
        pub id: String => "Primary key: `{source}:{ticket key}:{history id}:{item}`.",
        /// Name of the configured source it came from.
        pub source: String => "Configured source name.",
        /// The ticket's `id` in the tickets table.
        pub ticket_id: String => "The ticket's id in `tickets`.",
        /// When the status changed.
        pub at: DateTime<Utc> => "When the status changed (UTC).",
        /// Status before (as named at the source).
        pub from_status: Option<String> => "Status before.",
        /// Status after.
        pub to_status: String => "Status after.",
        /// Category before: `new`, `indeterminate` or `done`; `None` when unknown.
        pub from_category: Option<String> => "Category before: new, indeterminate or done.",
        /// Category after; `None` when unknown.
        pub to_category: Option<String> => "Category after.",
    }
    impl Table {
        const NAME: &'static str = "ticket_transitions";
        const UPDATED_AT: &'static str = "at";
        const ANCHOR: Option<&'static str> = Some("at");
        fn anchor(&self) -> Option<DateTime<Utc>> {
            Some(self.at)
        }
        fn key(&self) -> &str {
            &self.id
        }
        fn updated_at(&self) -> DateTime<Utc> {
            self.at
        }
    }
}

canonical_table! {
    /// A change request: ServiceNow `change_request`, a Jira change issue.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ChangeRequest {
        /// `{source}:{vendor id}`.
        pub id: String => "Primary key: `{source}:{vendor id}`.",
        /// Name of the configured source it came from.
        pub source: String => "Configured source name.",
        /// Human number (`CHG0000123`, `CHG-42`).
        pub number: String => "Human number (`CHG0000123`).",
        /// Short description.
        pub title: String => "Short description.",
        /// The source's own service reference (`cmdb_ci`, component).
        pub service_ref: Option<String>
            => "The source's own service reference (cmdb_ci, component).",
        /// Service from the configured mapping.
        pub service: Option<String> => "Service from the config mapping; null when unmapped.",
        /// Team owning the service.
        pub team: Option<String> => "Team owning the service.",
        /// `standard`, `normal` or `emergency`; `None` when the source's value is unknown.
        pub change_type: Option<String> => "standard, normal or emergency.",
        /// State as the source names it.
        pub state: String => "State as the source names it.",
        /// Whether it was approved.
        pub approved: Option<bool> => "Approved.",
        /// Planned window start.
        pub planned_start: Option<DateTime<Utc>> => "Planned window start (UTC).",
        /// Planned window end.
        pub planned_end: Option<DateTime<Utc>> => "Planned window end (UTC).",
        /// Actual work start.
        pub actual_start: Option<DateTime<Utc>> => "Actual work start (UTC).",
        /// Actual work end.
        pub actual_end: Option<DateTime<Utc>> => "Actual work end (UTC).",
        /// Closed.
        pub closed_at: Option<DateTime<Utc>> => "Closed (UTC).",
        /// `successful`, `successful_issues` or `unsuccessful`; `None` while open.
        pub close_code: Option<String> => "successful, successful_issues or unsuccessful.",
        /// Who requested the change (display name).
        pub requested_by: Option<String>
            => "Requester's display name (ServiceNow `requested_by`, Jira `reporter`).",
        /// Who the change is assigned to (display name).
        pub assigned_to: Option<String>
            => "Assignee's display name (ServiceNow `assigned_to`, Jira `assignee`).",
        /// Created.
        pub created_at: DateTime<Utc> => "Created (UTC).",
        /// Last changed at the source.
        pub updated_at: DateTime<Utc> => "Last changed at the source (UTC).",
    }
    impl Table {
        const PEOPLE: &'static [&'static str] = &["requested_by", "assigned_to"];
        const NAME: &'static str = "change_requests";
        const ANCHOR: Option<&'static str> = Some("created_at");
        fn anchor(&self) -> Option<DateTime<Utc>> {
            Some(self.created_at)
        }
        fn key(&self) -> &str {
            &self.id
        }
        fn updated_at(&self) -> DateTime<Utc> {
            self.updated_at
        }
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
    /// A commit.
    Commit(Commit),
    /// A ticket.
    Ticket(Ticket),
    /// A ticket's status change.
    TicketTransition(TicketTransition),
    /// A change request.
    ChangeRequest(ChangeRequest),
}

impl Record {
    /// The primary key of the wrapped record.
    pub fn key(&self) -> &str {
        match self {
            Self::Deployment(r) => r.key(),
            Self::Change(r) => r.key(),
            Self::Incident(r) => r.key(),
            Self::Commit(r) => r.key(),
            Self::Ticket(r) => r.key(),
            Self::TicketTransition(r) => r.key(),
            Self::ChangeRequest(r) => r.key(),
        }
    }
}

canonical_table! {
    /// A source record that could not be turned into a canonical record, kept with its reason so it
    /// is counted and can be fixed, never silently dropped.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Quarantined {
        /// `{source}:{stream}:{record key or content hash}`.
        pub id: String => "Primary key: `{source}:{stream}:{record key or hash}`.",
        /// Configured source name.
        pub source: String => "Configured source name.",
        /// Stream it came from.
        pub stream: String => "Stream it came from.",
        /// Why it was rejected (names the field and, where there is one, the value).
        pub reason: String => "Why it was rejected.",
        /// The raw record, as JSON text.
        pub raw: String => "The raw record as JSON text.",
        /// When tandem saw it.
        pub seen_at: DateTime<Utc> => "When tandem saw it (UTC).",
        /// The reason's code, one of [`ReasonCode::ALL`]; `None` only in rows written before tandem
        /// kept codes.
        #[serde(default)]
        pub reason_code: Option<ReasonCode>
            => "The reason's code: `missing_field`, `bad_timestamp`, `bad_value`, `bad_shape` or `unknown_reference`.",
    }
    impl Table {
        const NAME: &'static str = "quarantine";
        const UPDATED_AT: &'static str = "seen_at";
        fn key(&self) -> &str {
            &self.id
        }
        fn updated_at(&self) -> DateTime<Utc> {
            self.seen_at
        }
    }
}

impl Quarantined {
    /// Builds a quarantine entry; the key is the record's own id when it has one, else a hash of
    /// its content, so the same bad record quarantined twice stays one row.
    pub fn new(source: &str, stream: &str, raw: &serde_json::Value, reason: QuarantineReason) -> Self {
        let raw_text = raw.to_string();
        let key = raw
            .get("id")
            .map(|v| v.to_string().trim_matches('"').to_owned())
            .unwrap_or_else(|| format!("{:016x}", fnv1a(raw_text.as_bytes())));
        Self {
            id: format!("{source}:{stream}:{key}"),
            source: source.to_owned(),
            stream: stream.to_owned(),
            reason: reason.text(),
            reason_code: Some(reason.code()),
            raw: raw_text,
            seen_at: Utc::now(),
        }
    }
}

/// Why a record was quarantined, as a closed set of codes: what a data-quality count groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// A field the record needs is absent, null or empty.
    MissingField,
    /// A time field holds something that is not a timestamp.
    BadTimestamp,
    /// A field holds a value tandem does not understand: an unknown state, a wrong type.
    BadValue,
    /// The record as a whole is not the expected shape: not a JSON object, a CSV row with too many
    /// cells, an unknown column, or a row that does not deserialize into the table's record.
    BadShape,
    /// The record refers to something the source no longer knows: the commits of a deployment
    /// whose compare answers "not found" (a force-push, a deleted fork).
    UnknownReference,
}

impl ReasonCode {
    /// Every code, in the order metric ids and documentation list them.
    pub const ALL: [Self; 5] = [
        Self::MissingField,
        Self::BadTimestamp,
        Self::BadValue,
        Self::BadShape,
        Self::UnknownReference,
    ];

    /// The code as stored in the `reason_code` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingField => "missing_field",
            Self::BadTimestamp => "bad_timestamp",
            Self::BadValue => "bad_value",
            Self::BadShape => "bad_shape",
            Self::UnknownReference => "unknown_reference",
        }
    }

    /// Looks a code up by its stored name.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// The code of a rejection message written by a connector's mapping code or the file importer,
    /// from the wording they share: `… commits are unknown` (a compare that answered not found) is
    /// `unknown_reference`; a timestamp error (`unparsable timestamp`, `expected a
    /// timestamp`) is `bad_timestamp`; `missing …` or `… without …` is `missing_field`; `… JSON
    /// object`, `unknown column`, `… cells but the header …` or a message starting `not a ` is
    /// `bad_shape`; anything else (`unknown … state`, `expected …, found …`) is `bad_value`.
    /// Also used for rows stored before tandem kept codes.
    pub fn of_message(message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        if m.contains("commits are unknown") {
            Self::UnknownReference
        } else if m.contains("timestamp") {
            Self::BadTimestamp
        } else if m.starts_with("missing ") || m.contains(": missing ") || m.contains(" without ") {
            Self::MissingField
        } else if m.contains("json object")
            || m.contains("unknown column")
            || m.contains("cells but the header")
            || m.starts_with("not a ")
        {
            Self::BadShape
        } else {
            Self::BadValue
        }
    }
}

/// A quarantine reason as the call site knows it: the code and the text naming the field and
/// value both come from it, so no rejection can be stored without a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineReason {
    /// The named field is absent, null or empty (`missing {field}`).
    MissingField(String),
    /// The named time field does not parse (`{field}: {error}`).
    BadTimestamp {
        /// The field.
        field: String,
        /// What the parser said, quoting the value.
        error: String,
    },
    /// The named field holds a value tandem does not understand (`{field}: {error}`).
    BadValue {
        /// The field.
        field: String,
        /// What is wrong, quoting the value.
        error: String,
    },
    /// The record is not the expected shape (the text as given).
    BadShape(String),
    /// The record refers to something the source no longer knows (the text as given).
    UnknownReference(String),
    /// A message from a connector's mapping code or the file importer; its code follows
    /// [`ReasonCode::of_message`].
    Message(String),
}

impl QuarantineReason {
    /// The code stored in `reason_code`.
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::MissingField(_) => ReasonCode::MissingField,
            Self::BadTimestamp { .. } => ReasonCode::BadTimestamp,
            Self::BadValue { .. } => ReasonCode::BadValue,
            Self::BadShape(_) => ReasonCode::BadShape,
            Self::UnknownReference(_) => ReasonCode::UnknownReference,
            Self::Message(m) => ReasonCode::of_message(m),
        }
    }

    /// The text stored in `reason`.
    pub fn text(&self) -> String {
        match self {
            Self::MissingField(field) => format!("missing {field}"),
            Self::BadTimestamp { field, error } | Self::BadValue { field, error } => {
                format!("{field}: {error}")
            }
            Self::BadShape(text) | Self::UnknownReference(text) | Self::Message(text) => text.clone(),
        }
    }
}

/// The rejection text for a field a mapping needs but cannot use: `missing {name}` when it is
/// absent or null, else `{name}: expected {expected}, found {value}`, so that a field of the
/// wrong type is counted as `bad_value` and not as `missing_field`.
pub fn unusable(name: &str, value: Option<&serde_json::Value>, expected: &str) -> String {
    match value {
        None | Some(serde_json::Value::Null) => format!("missing {name}"),
        Some(other) => {
            let shown = other.to_string();
            let shown = if shown.chars().count() > 80 {
                format!("{}…", shown.chars().take(80).collect::<String>())
            } else {
                shown
            };
            format!("{name}: expected {expected}, found {shown}")
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A people column must exist, hold text and allow null (no source names everyone).
    fn people_are_nullable_text<T: Table>() {
        for name in T::PEOPLE {
            let column = T::COLUMNS.iter().find(|c| c.name == *name);
            assert!(
                column.is_some_and(|c| c.kind == ColumnKind::Text && c.nullable),
                "{}.{name} is not a declared nullable text column",
                T::NAME
            );
        }
    }

    /// The codec stores these by `as_str` and reads them back through serde: the two must agree.
    #[test]
    fn names_stored_as_text_are_the_serde_names() {
        use DeploymentStatus::*;
        for status in [Success, Failure, Error, InProgress, Cancelled, Stale] {
            assert_eq!(status.cell(), Cell::Text(status.as_str()));
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(serde_json::json!(status.as_str()))
            );
        }
        for severity in [Severity::Sev1, Severity::Sev2, Severity::Sev3, Severity::Sev4] {
            assert_eq!(
                serde_json::to_value(severity).ok(),
                Some(serde_json::json!(severity.as_str()))
            );
        }
        for code in ReasonCode::ALL {
            assert_eq!(Some(code).cell(), Cell::Text(code.as_str()));
        }
    }

    /// One declaration gives the struct, its columns and its cells: the columns follow the fields
    /// in order, kinds and nullability follow the field types (`nullable` marks the exception),
    /// and each cell is the field's value.
    #[test]
    fn a_declaration_gives_columns_and_cells_from_its_fields() {
        let names: Vec<&str> = Deployment::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "id",
                "source",
                "repo",
                "service",
                "team",
                "environment",
                "is_production",
                "status",
                "sha",
                "created_at",
                "finished_at",
                "deployed_by",
                "change_refs",
                "updated_at"
            ]
        );
        let kinds = |name: &str| {
            Deployment::COLUMNS
                .iter()
                .find(|c| c.name == name)
                .map(|c| (c.kind, c.nullable))
        };
        assert_eq!(kinds("is_production"), Some((ColumnKind::Bool, false)));
        assert_eq!(kinds("finished_at"), Some((ColumnKind::Timestamp, true)));
        assert_eq!(kinds("status"), Some((ColumnKind::Text, false)));
        // A list always has a value, but a lake written before the column existed lacks it.
        assert_eq!(kinds("change_refs"), Some((ColumnKind::TextList, true)));
        assert_eq!(
            Incident::COLUMNS
                .iter()
                .find(|c| c.name == "number")
                .map(|c| (c.kind, c.nullable)),
            Some((ColumnKind::Integer, true))
        );

        let at = DateTime::<Utc>::UNIX_EPOCH;
        let deployment = Deployment {
            id: "gh:a/b:1".into(),
            source: "gh".into(),
            repo: "a/b".into(),
            service: None,
            team: Some("core".into()),
            environment: "production".into(),
            is_production: true,
            status: DeploymentStatus::InProgress,
            sha: "abc".into(),
            created_at: at,
            finished_at: None,
            deployed_by: None,
            change_refs: vec!["CHG1".into()],
            updated_at: at,
        };
        let cells: Vec<Cell<'_>> = (0..=Deployment::COLUMNS.len())
            .map(|i| deployment.cell(i))
            .collect();
        let refs = ["CHG1".to_owned()];
        assert_eq!(
            cells,
            [
                Cell::Text("gh:a/b:1"),
                Cell::Text("gh"),
                Cell::Text("a/b"),
                Cell::Null,
                Cell::Text("core"),
                Cell::Text("production"),
                Cell::Bool(true),
                Cell::Text("in_progress"),
                Cell::Text("abc"),
                Cell::Timestamp(at),
                Cell::Null,
                Cell::Null,
                Cell::TextList(&refs),
                Cell::Timestamp(at),
                // Past the last column.
                Cell::Null,
            ]
        );
        // The serde fields are the columns.
        let fields = serde_json::to_value(&deployment).ok();
        let mut fields: Vec<&str> = fields
            .as_ref()
            .and_then(|v| v.as_object())
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        fields.sort_unstable();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(fields, sorted);
    }

    #[test]
    fn every_people_column_is_a_declared_nullable_text_column() {
        people_are_nullable_text::<Deployment>();
        people_are_nullable_text::<Change>();
        people_are_nullable_text::<Incident>();
        people_are_nullable_text::<Commit>();
        people_are_nullable_text::<Ticket>();
        people_are_nullable_text::<TicketTransition>();
        people_are_nullable_text::<ChangeRequest>();
        people_are_nullable_text::<Quarantined>();
        assert_eq!(Change::PEOPLE, ["author"]);
        assert!(Quarantined::PEOPLE.is_empty());
    }
}

#[cfg(test)]
mod quarantine_tests {
    use super::*;

    #[test]
    fn typed_reasons_give_their_code_and_name_the_field() {
        let missing = QuarantineReason::MissingField("numeric id".into());
        assert_eq!(
            (missing.code(), missing.text().as_str()),
            (ReasonCode::MissingField, "missing numeric id")
        );
        let time = QuarantineReason::BadTimestamp {
            field: "updated_at".into(),
            error: "unparsable timestamp \"yesterday\"".into(),
        };
        assert_eq!(time.code().as_str(), "bad_timestamp");
        assert_eq!(time.text(), "updated_at: unparsable timestamp \"yesterday\"");
        let row = Quarantined::new("gh", "deployments", &serde_json::json!({"id": 7}), time);
        assert_eq!(row.id, "gh:deployments:7");
        assert_eq!(row.reason_code, Some(ReasonCode::BadTimestamp));
        assert_eq!(row.reason, "updated_at: unparsable timestamp \"yesterday\"");
    }

    /// One message of each kind the mapping code and the file importer write today.
    #[test]
    fn mapping_messages_are_coded_by_their_wording() {
        let cases = [
            ("missing numeric id", ReasonCode::MissingField),
            ("missing fields.status.name", ReasonCode::MissingField),
            ("a commit without commit.author.date", ReasonCode::MissingField),
            (
                "changelog history 10001: missing created",
                ReasonCode::MissingField,
            ),
            (
                "d.csv:4: column `id`: missing value (the column is required)",
                ReasonCode::MissingField,
            ),
            (
                "created_at: unparsable timestamp \"soon\"",
                ReasonCode::BadTimestamp,
            ),
            (
                "resolved_at: expected a timestamp string, found 3",
                ReasonCode::BadTimestamp,
            ),
            ("unknown deployment status \"weird\"", ReasonCode::BadValue),
            ("labels: expected a list, found 3", ReasonCode::BadValue),
            ("parent_ids: not a list of shas", ReasonCode::BadValue),
            (
                "d.csv:2: column `status`: unknown value \"meh\"; expected one of success",
                ReasonCode::BadValue,
            ),
            (
                "d.csv:2: column `colour`: unknown column; deployments has id, repo",
                ReasonCode::BadShape,
            ),
            ("expected a JSON object, found 3", ReasonCode::BadShape),
            (
                "d.csv:3: the row has 5 cells but the header has 4",
                ReasonCode::BadShape,
            ),
            ("not a deployments: invalid type", ReasonCode::BadShape),
            (
                "compare of the deployment with the previous production deployment answered HTTP 404 at \
                 http://x/compare/a...b (gone): its commits are unknown",
                ReasonCode::UnknownReference,
            ),
        ];
        for (message, code) in cases {
            assert_eq!(ReasonCode::of_message(message), code, "{message}");
            assert_eq!(QuarantineReason::Message(message.into()).text(), message);
        }
    }

    #[test]
    fn codes_round_trip_through_their_names_and_serde() {
        for code in ReasonCode::ALL {
            assert_eq!(ReasonCode::parse(code.as_str()), Some(code));
            assert_eq!(
                serde_json::to_value(code).ok(),
                Some(serde_json::json!(code.as_str()))
            );
        }
        assert_eq!(ReasonCode::parse("no_such_code"), None);
    }
}
