//! `tandem report steering`: the steering-committee report.

use super::{Context, Outcome};
use crate::cli::ReportArgs;
use crate::config::Config;

/// Writes the steering-committee report.
pub fn run(_args: &ReportArgs, _config: &Config, _ctx: &Context) -> anyhow::Result<Outcome> {
    anyhow::bail!("`tandem report steering` is not built yet")
}
