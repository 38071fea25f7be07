//! Integration tests: one binary, modules grouped by theme.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;
mod bucket;
mod cli;
mod common;
// Kills processes by signal.
#[cfg(unix)]
mod crash;
mod demo;
mod deploy;
mod docs;
mod e2e;
mod errors;
mod export;
mod hostile;
mod kept_links;
mod lake;
mod logs;
mod nightly;
mod no_data;
mod properties;
mod sync;
mod time_travel;
