//! Secrets: values that must never appear in logs, errors, reports or panics.
//!
//! A [`Secret`] prints as `***` in `Debug` and `Display`; its value is only reachable through
//! [`Secret::expose`], which the HTTP client calls when it builds a header.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::ConnectorError;

/// A credential read from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for building an auth header. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where secrets come from: the process environment, with optional overrides.
///
/// Overrides let `tandem demo` hand its fake tokens to the real connectors without mutating the
/// process environment (which is unsound once threads run).
#[derive(Debug, Clone, Default)]
pub struct SecretEnv {
    overrides: BTreeMap<String, Secret>,
}

impl SecretEnv {
    /// Reads the process environment only.
    pub fn process() -> Self {
        Self::default()
    }

    /// Adds a value that wins over the process environment.
    pub fn with_override(mut self, var: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.insert(var.into(), Secret::new(value));
        self
    }

    /// Whether `var` is set at all, even to nothing: tells an empty variable from a missing one
    /// (which [`SecretEnv::get`] both refuse).
    pub fn is_set(&self, var: &str) -> bool {
        self.overrides.contains_key(var) || std::env::var_os(var).is_some()
    }

    /// Looks `var` up; `config_key` names the config entry that pointed at it, for the error.
    pub fn get(&self, var: &str, config_key: &str) -> Result<Secret, ConnectorError> {
        if let Some(secret) = self.overrides.get(var) {
            return Ok(secret.clone());
        }
        match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Ok(Secret::new(value.trim())),
            _ => Err(ConnectorError::MissingSecret {
                var: var.to_owned(),
                config_key: config_key.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("ghp_supersecret");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
    }

    #[test]
    fn missing_variable_names_var_and_config_key() {
        let err = SecretEnv::process()
            .get("TANDEM_TEST_SURELY_UNSET_VAR", "source.github.token_env")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("TANDEM_TEST_SURELY_UNSET_VAR"), "{err}");
        assert!(err.contains("source.github.token_env"), "{err}");
    }

    #[test]
    fn override_wins() {
        let env = SecretEnv::process().with_override("X_TOKEN", "abc");
        let s = env.get("X_TOKEN", "k").ok();
        assert_eq!(s.as_ref().map(Secret::expose), Some("abc"));
    }
}
