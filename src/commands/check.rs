//! `tandem check`: one cheap request to every endpoint a sync of each source calls, so that a
//! missing permission shows at set-up rather than in the night's sync.

use tandem_connectors::{CheckOutcome, Connector, EndpointCheck, RetryPolicy};

use super::{Context, Outcome};
use crate::cli::CheckArgs;
use crate::config::Config;

/// Checks each selected source and prints `ok`, or each failing endpoint with what to grant;
/// endpoints a sync can do without are `WARNING` lines and do not fail the check.
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
        let checks = match Connector::build(source, &ctx.env, config.http.apply(RetryPolicy::default())) {
            Ok(c) => c.check_endpoints().await,
            Err(error) => vec![EndpointCheck {
                name: "configuration".into(),
                outcome: CheckOutcome::Failed {
                    error,
                    fix: String::new(),
                },
            }],
        };
        let label = format!("{} ({})", source.name(), source.kind());
        if checks.iter().any(EndpointCheck::failed) {
            failed += 1;
        } else {
            crate::say!("ok      {label}: {} endpoint(s) answered", checks.len());
        }
        for check in &checks {
            match &check.outcome {
                CheckOutcome::Ok => {}
                CheckOutcome::Warning(why) => crate::say!("WARNING {label}: {}: {why}", check.name),
                CheckOutcome::Failed { error, fix } if fix.is_empty() => {
                    crate::say!("FAILED  {label}: {}: {error}", check.name);
                }
                CheckOutcome::Failed { error, fix } => {
                    crate::say!("FAILED  {label}: {}: {error}; to fix: {fix}", check.name);
                }
            }
        }
    }
    // A lake in object storage: can this host use it as a writer does?
    let text = config.store.path.to_string_lossy();
    if crate::store::bucket::is_url(&text) {
        match config.lake().and_then(|lake| crate::store::bucket::probe(&lake)) {
            Ok(url) => crate::say!("ok      lake ({url}): conditional write, read, list and delete answered"),
            Err(e) => {
                crate::say!(
                    "FAILED  lake: {e}; to fix: allow reading, writing, listing and deleting objects under the prefix to the credentials in the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*, or the instance's or pod's identity)"
                );
                anyhow::bail!("the lake in object storage cannot be used");
            }
        }
    }
    match failed {
        0 => Ok(Outcome::Success),
        n if n == selected.len() => anyhow::bail!("every source failed its check"),
        _ => Ok(Outcome::Partial),
    }
}
