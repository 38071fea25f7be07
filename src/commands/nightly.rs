//! `tandem report nightly`: the nightly digest of the last full day and the last 7 days, as HTML
//! and as Markdown for a chat channel, in its own folder under the report directory. `tandem run`
//! writes one after every sync through the same shared step ([`super::write_nightly`]).

use anyhow::bail;
use chrono::Utc;

use super::{Context, Outcome, nightly_window, print_nightly, write_nightly};
use crate::cli::ReportArgs;
use crate::config::Config;
use crate::store::Store;
use crate::sync::RunHealth;

// The steps `tandem run` shares, under the names they had here.
pub use super::{nightly_window as window, print_nightly as print_output, write_nightly as write};

/// Writes the digest, with the health of the last `tandem run` as recorded in the store.
pub fn run(args: &ReportArgs, config: &Config, _ctx: &Context) -> anyhow::Result<Outcome> {
    if let Some(spec) = &args.as_of {
        bail!(
            "--as-of {spec} does not apply to the nightly digest: it shows the last run's health \
             and compares with the previous digest, which the lake does not keep versions of; \
             re-render the weekly or steering report instead, or open the digest of that night in \
             the report directory's history"
        );
    }
    let now = Utc::now();
    let window = nightly_window(&args.range, config, now)?;
    let store = Store::open(&config.lake()?)?;
    let health = RunHealth::load(&store);
    let output = write_nightly(config, args.out.clone(), window, health.as_ref(), now)?;
    print_nightly(&output);
    Ok(Outcome::Success)
}
