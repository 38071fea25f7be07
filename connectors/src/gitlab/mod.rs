//! GitLab connector (stub until it lands).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{Emitter, StreamDef};
use crate::error::ConnectorError;
use crate::http::RetryPolicy;
use crate::secret::SecretEnv;

/// `[[source]] kind = "gitlab"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GitLabConfig {
    /// Source name, unique in the config.
    pub name: String,
}

/// The GitLab connector.
#[derive(Debug, Clone)]
pub struct GitLab {
    config: GitLabConfig,
}

impl GitLab {
    /// Builds the connector.
    pub fn new(config: GitLabConfig, _env: &SecretEnv, _policy: RetryPolicy) -> Result<Self, ConnectorError> {
        Ok(Self { config })
    }

    /// The streams offered.
    pub fn streams(&self) -> &'static [StreamDef] {
        &[]
    }

    /// One cheap request.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        Err(self.missing())
    }

    /// Reads `stream` from `bookmark`.
    pub async fn read(
        &self,
        _stream: &str,
        _bookmark: Option<Value>,
        _out: Emitter,
    ) -> Result<(), ConnectorError> {
        Err(self.missing())
    }

    fn missing(&self) -> ConnectorError {
        ConnectorError::Config {
            source_name: self.config.name.clone(),
            message: "not implemented yet".into(),
        }
    }
}
