//! `tandem report nightly`: the nightly digest.

use super::{Context, Outcome};
use crate::cli::ReportArgs;
use crate::config::Config;

/// Writes the nightly digest.
pub fn run(_args: &ReportArgs, _config: &Config, _ctx: &Context) -> anyhow::Result<Outcome> {
    anyhow::bail!("`tandem report nightly` is not built yet")
}
