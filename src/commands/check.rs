//! `tandem check`: one cheap request per source to verify credentials and permissions.

use tandem_connectors::{Connector, RetryPolicy};

use super::{Context, Outcome};
use crate::cli::CheckArgs;
use crate::config::Config;

/// Checks each selected source and prints `ok` or what is wrong.
pub async fn run(args: &CheckArgs, config: &Config, ctx: &Context) -> anyhow::Result<Outcome> {
    let selected: Vec<_> = config
        .sources
        .iter()
        .filter(|s| args.source.as_deref().is_none_or(|n| n == s.name()))
        .collect();
    if selected.is_empty() {
        anyhow::bail!("no source to check: the config has no matching [[source]] entry");
    }
    let mut failed = 0;
    for source in &selected {
        let result = match Connector::build(source, &ctx.env, config.http.apply(RetryPolicy::default())) {
            Ok(c) => c.check().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => crate::say!("ok      {} ({})", source.name(), source.kind()),
            Err(e) => {
                failed += 1;
                crate::say!("FAILED  {} ({}): {e}", source.name(), source.kind());
            }
        }
    }
    match failed {
        0 => Ok(Outcome::Success),
        n if n == selected.len() => anyhow::bail!("every source failed its check"),
        _ => Ok(Outcome::Partial),
    }
}
