//! tandem-connectors: canonical records, the connector contract, the shared HTTP client and one
//! connector per source. Knows nothing of polars, Parquet or reports.

pub mod contract;
pub mod coverage;
pub mod error;
pub mod file;
pub mod github;
pub mod gitlab;
pub mod http;
pub mod jira;
pub mod lenient;
pub mod model;
pub mod pagerduty;
mod people;
pub mod secret;
pub mod servicenow;
pub mod time;

#[cfg(test)]
mod bounds_tests;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use contract::{CheckOutcome, Emitter, EndpointCheck, Message, StreamDef};
pub use error::ConnectorError;
pub use http::RetryPolicy;
pub use secret::{Secret, SecretEnv};

/// The source kinds tandem can read, as written in `[[source]] kind = "…"`.
pub const KINDS: &[&str] = &["github", "gitlab", "jira", "pagerduty", "servicenow", "file"];

/// One `[[source]]` entry of the config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// GitHub or GitHub Enterprise Server.
    #[serde(rename = "github")]
    GitHub(github::GitHubConfig),
    /// GitLab (gitlab.com or self-managed).
    #[serde(rename = "gitlab")]
    GitLab(gitlab::GitLabConfig),
    /// Jira Cloud or Data Center.
    #[serde(rename = "jira")]
    Jira(jira::JiraConfig),
    /// PagerDuty.
    #[serde(rename = "pagerduty")]
    PagerDuty(pagerduty::PagerDutyConfig),
    /// ServiceNow.
    #[serde(rename = "servicenow")]
    ServiceNow(servicenow::ServiceNowConfig),
    /// Canonical records from CSV or NDJSON files.
    #[serde(rename = "file")]
    File(file::FileImportConfig),
}

impl SourceConfig {
    /// The configured source name.
    pub fn name(&self) -> &str {
        match self {
            Self::GitHub(c) => &c.name,
            Self::GitLab(c) => &c.name,
            Self::Jira(c) => &c.name,
            Self::PagerDuty(c) => &c.name,
            Self::ServiceNow(c) => &c.name,
            Self::File(c) => &c.name,
        }
    }

    /// Each stream the source syncs with the canonical tables it writes, as configured (GitHub
    /// issues feed incidents only with incident labels, Jira issues feed incidents and change
    /// requests only with those issue types, …). Known without building the connector, so a
    /// source that cannot even start still names what it leaves uncovered.
    pub fn feeds(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        match self {
            Self::GitHub(c) => {
                let mut feeds = vec![
                    ("deployments", vec!["deployments", "commits"]),
                    ("pulls", vec!["changes", "commits"]),
                ];
                if !c.incident_labels.is_empty() {
                    feeds.push(("issues", vec!["incidents"]));
                }
                if c.releases_as_deployments {
                    feeds.push(("releases", vec!["deployments"]));
                }
                if !c.deployment_workflows.is_empty() {
                    feeds.push(("workflow_runs", vec!["deployments"]));
                }
                feeds
            }
            Self::GitLab(_) => vec![
                ("deployments", vec!["deployments", "commits"]),
                ("merge_requests", vec!["changes", "commits"]),
            ],
            Self::Jira(c) => {
                let mut tables = vec!["tickets", "ticket_transitions"];
                if !c.incident_types.is_empty() {
                    tables.push("incidents");
                }
                if !c.change_types.is_empty() {
                    tables.push("change_requests");
                }
                vec![("issues", tables)]
            }
            Self::PagerDuty(_) => vec![("incidents", vec!["incidents"])],
            Self::ServiceNow(_) => vec![
                ("incidents", vec!["incidents", "tickets"]),
                ("change_requests", vec!["change_requests"]),
            ],
            Self::File(_) => [
                "deployments",
                "changes",
                "commits",
                "incidents",
                "tickets",
                "ticket_transitions",
                "change_requests",
            ]
            .into_iter()
            .map(|table| (table, vec![table]))
            .collect(),
        }
    }

    /// The source kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::GitHub(_) => "github",
            Self::GitLab(_) => "gitlab",
            Self::Jira(_) => "jira",
            Self::PagerDuty(_) => "pagerduty",
            Self::ServiceNow(_) => "servicenow",
            Self::File(_) => "file",
        }
    }
}

/// A ready connector of any kind.
#[derive(Debug, Clone)]
pub enum Connector {
    /// GitHub.
    GitHub(github::GitHub),
    /// GitLab.
    GitLab(gitlab::GitLab),
    /// Jira.
    Jira(jira::Jira),
    /// PagerDuty.
    PagerDuty(pagerduty::PagerDuty),
    /// ServiceNow.
    ServiceNow(servicenow::ServiceNow),
    /// File import.
    File(file::FileImport),
}

impl Connector {
    /// Builds the connector of a config entry, reading its secret from `env`.
    pub fn build(
        config: &SourceConfig,
        env: &SecretEnv,
        policy: RetryPolicy,
    ) -> Result<Self, ConnectorError> {
        Ok(match config {
            SourceConfig::GitHub(c) => Self::GitHub(github::GitHub::new(c.clone(), env, policy)?),
            SourceConfig::GitLab(c) => Self::GitLab(gitlab::GitLab::new(c.clone(), env, policy)?),
            SourceConfig::Jira(c) => Self::Jira(jira::Jira::new(c.clone(), env, policy)?),
            SourceConfig::PagerDuty(c) => Self::PagerDuty(pagerduty::PagerDuty::new(c.clone(), env, policy)?),
            SourceConfig::ServiceNow(c) => {
                Self::ServiceNow(servicenow::ServiceNow::new(c.clone(), env, policy)?)
            }
            SourceConfig::File(c) => Self::File(file::FileImport::new(c.clone(), env, policy)?),
        })
    }

    /// The streams it offers.
    pub fn streams(&self) -> &'static [StreamDef] {
        match self {
            Self::GitHub(c) => c.streams(),
            Self::GitLab(c) => c.streams(),
            Self::Jira(c) => c.streams(),
            Self::PagerDuty(c) => c.streams(),
            Self::ServiceNow(c) => c.streams(),
            Self::File(c) => c.streams(),
        }
    }

    /// Verifies credentials and permissions: the first endpoint that fails, if any (see
    /// [`Connector::check_endpoints`]).
    pub async fn check(&self) -> Result<(), ConnectorError> {
        contract::first_failure(self.check_endpoints().await)
    }

    /// One cheap request to every endpoint a sync of this source calls, each with its outcome.
    /// When the credentials themselves are refused, only that first check is reported.
    pub async fn check_endpoints(&self) -> Vec<EndpointCheck> {
        match self {
            Self::GitHub(c) => c.check_endpoints().await,
            Self::GitLab(c) => c.check_endpoints().await,
            Self::Jira(c) => c.check_endpoints().await,
            Self::PagerDuty(c) => c.check_endpoints().await,
            Self::ServiceNow(c) => c.check_endpoints().await,
            // The file importer's errors already say what to fix.
            Self::File(c) => vec![EndpointCheck::of("files", c.check().await, "").0],
        }
    }

    /// Reads one stream from a bookmark; see [`contract`]. The raw pages the read fetches and the
    /// requests it makes are sent through `out` as well ([`Message::Raw`], [`Message::Requests`]),
    /// each ahead of the message that follows it, the last ones when the read ends or fails.
    pub async fn read(
        &self,
        stream: &str,
        bookmark: Option<Value>,
        out: Emitter,
    ) -> Result<(), ConnectorError> {
        let traffic = out.traffic();
        let read = out.share();
        let result = match self {
            Self::GitHub(c) => c.recording(traffic).read(stream, bookmark, read).await,
            Self::GitLab(c) => c.recording(traffic).read(stream, bookmark, read).await,
            Self::Jira(c) => c.recording(traffic).read(stream, bookmark, read).await,
            Self::PagerDuty(c) => c.recording(traffic).read(stream, bookmark, read).await,
            Self::ServiceNow(c) => c.recording(traffic).read(stream, bookmark, read).await,
            // Files are read without HTTP: no pages to archive, no requests to count.
            Self::File(c) => c.read(stream, bookmark, read).await,
        };
        // The pages of a failed read are reported too: they were fetched. The read's own error
        // comes first; a runner that stopped listening is reported only after a clean read.
        let finished = out.finish().await;
        result.and(finished)
    }
}
