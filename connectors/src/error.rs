//! The errors a connector can raise. Messages name the source and what to check next; they never
//! contain a secret (tokens travel only in headers, never in URLs or bodies we quote).

use std::time::Duration;

/// What went wrong talking to a source.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A token environment variable named in the config is not set.
    #[error(
        "environment variable {var} is not set (named by `{config_key}` in the config): set it to the credential before running tandem"
    )]
    MissingSecret {
        /// The variable.
        var: String,
        /// The config key that names it.
        config_key: String,
    },
    /// The source rejected the credentials (401, or a 403 that is not a rate limit).
    #[error("source `{source_name}`: {status} at {url}: {hint}")]
    Unauthorized {
        /// Configured source name.
        source_name: String,
        /// HTTP status.
        status: u16,
        /// Request URL (no secrets: tokens are sent in headers).
        url: String,
        /// What to check.
        hint: String,
    },
    /// A non-retryable HTTP status, or a retryable one that persisted past the retry budget.
    #[error("source `{source_name}`: HTTP {status} at {url}: {body}")]
    Status {
        /// Configured source name.
        source_name: String,
        /// HTTP status.
        status: u16,
        /// Request URL.
        url: String,
        /// Start of the response body.
        body: String,
    },
    /// The request never got an answer (connection refused, reset, timeout) after all retries.
    #[error("source `{source_name}`: request to {url} failed after {attempts} attempts: {message}")]
    Transport {
        /// Configured source name.
        source_name: String,
        /// Request URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last transport error.
        message: String,
    },
    /// The rate limit would not reset within the longest wait tandem accepts.
    #[error(
        "source `{source_name}`: rate limit exhausted; it resets in {wait:?}, longer than the {max:?} tandem waits: re-run later"
    )]
    RateLimited {
        /// Configured source name.
        source_name: String,
        /// Time until reset.
        wait: Duration,
        /// Longest wait accepted.
        max: Duration,
    },
    /// The response was not the JSON shape expected (a page, not a single record: records that
    /// do not parse are quarantined instead).
    #[error("source `{source_name}`: unexpected response from {url}: {message}")]
    Decode {
        /// Configured source name.
        source_name: String,
        /// Request URL.
        url: String,
        /// What did not match.
        message: String,
    },
    /// A paging walk would not end: a next link or page token came back, or the stream reached
    /// its page cap for the run.
    #[error("source `{source_name}`, stream `{stream}`: {message}")]
    Paging {
        /// Configured source name.
        source_name: String,
        /// The stream whose walk stopped.
        stream: String,
        /// What repeated, or the cap reached, and what to do.
        message: String,
    },
    /// A response body was larger than tandem reads.
    #[error(
        "source `{source_name}`: the response from {url} is larger than {limit}, the most tandem reads: raise `http.max_response_mb` in the config if pages this large are expected"
    )]
    ResponseTooLarge {
        /// Configured source name.
        source_name: String,
        /// Request URL.
        url: String,
        /// The limit, as text (`64 MB`).
        limit: String,
    },
    /// The config asks for something the connector cannot do.
    #[error("source `{source_name}`: {message}")]
    Config {
        /// Configured source name.
        source_name: String,
        /// What is wrong and where.
        message: String,
    },
    /// The runner stopped listening (it failed to store a page); the read stops quietly.
    #[error("the store stopped accepting records")]
    SinkClosed,
}

impl ConnectorError {
    /// Whether the failure is about credentials or permissions.
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::MissingSecret { .. })
    }
}
