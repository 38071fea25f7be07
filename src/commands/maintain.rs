//! `tandem maintain`: every maintenance step of the lake now (see `store::maintain`), printing
//! what it did. `tandem run` does the same steps when they are due.

use crate::cli::MaintainArgs;
use crate::config::Config;

/// Maintains the lake, forcing every step.
pub fn run(_args: &MaintainArgs, config: &Config) -> anyhow::Result<()> {
    let store = super::open_lake_for_writing(config, "tandem maintain")?;
    let report = store.maintain(config.store.retention(), true, chrono::Utc::now())?;
    crate::say!("{}", super::maintenance_summary(&report));
    Ok(())
}
