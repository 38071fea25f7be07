//! `tandem remap`: re-apply the service mapping after a `[[service]]` change, from the stored
//! tables alone (no request to any source; every page read stays in the lake's raw archive).

use crate::cli::RemapArgs;
use crate::config::Config;

/// Rewrites every canonical table with the config's current mapping.
pub fn run(_args: &RemapArgs, config: &Config) -> anyhow::Result<()> {
    let store = super::open_lake_for_writing(config, "tandem remap")?;
    let changed = crate::sync::remap(config, &store)?;
    crate::say!("remapped: {changed} records changed service or team");
    Ok(())
}
