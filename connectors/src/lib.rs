//! tandem-connectors: canonical records, the connector contract, the shared HTTP client and one
//! connector per source. Knows nothing of polars, Parquet or reports.

pub mod contract;
pub mod error;
pub mod github;
pub mod http;
pub mod model;
pub mod pagerduty;
pub mod secret;
pub mod time;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use contract::{Emitter, Message, StreamDef};
pub use error::ConnectorError;
pub use http::RetryPolicy;
pub use secret::{Secret, SecretEnv};

/// The source kinds tandem can read, as written in `[[source]] kind = "…"`.
pub const KINDS: &[&str] = &["github", "pagerduty"];

/// One `[[source]]` entry of the config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// GitHub or GitHub Enterprise Server.
    #[serde(rename = "github")]
    GitHub(github::GitHubConfig),
    /// PagerDuty.
    #[serde(rename = "pagerduty")]
    PagerDuty(pagerduty::PagerDutyConfig),
}

impl SourceConfig {
    /// The configured source name.
    pub fn name(&self) -> &str {
        match self {
            Self::GitHub(c) => &c.name,
            Self::PagerDuty(c) => &c.name,
        }
    }

    /// The source kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::GitHub(_) => "github",
            Self::PagerDuty(_) => "pagerduty",
        }
    }
}

/// A ready connector of any kind.
#[derive(Debug, Clone)]
pub enum Connector {
    /// GitHub.
    GitHub(github::GitHub),
    /// PagerDuty.
    PagerDuty(pagerduty::PagerDuty),
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
            SourceConfig::PagerDuty(c) => Self::PagerDuty(pagerduty::PagerDuty::new(c.clone(), env, policy)?),
        })
    }

    /// The streams it offers.
    pub fn streams(&self) -> &'static [StreamDef] {
        match self {
            Self::GitHub(c) => c.streams(),
            Self::PagerDuty(c) => c.streams(),
        }
    }

    /// Verifies credentials and permissions with one cheap request.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        match self {
            Self::GitHub(c) => c.check().await,
            Self::PagerDuty(c) => c.check().await,
        }
    }

    /// Reads one stream from a bookmark; see [`contract`].
    pub async fn read(
        &self,
        stream: &str,
        bookmark: Option<Value>,
        out: Emitter,
    ) -> Result<(), ConnectorError> {
        match self {
            Self::GitHub(c) => c.read(stream, bookmark, out).await,
            Self::PagerDuty(c) => c.read(stream, bookmark, out).await,
        }
    }
}
