//! `tandem maintain`: every maintenance step of the lake now (see `store::maintain`), printing
//! what it did. `tandem run` does the same steps when they are due.

use crate::cli::MaintainArgs;
use crate::config::Config;
use crate::store::maintain::MaintenanceReport;

/// Maintains the lake, forcing every step.
pub fn run(_args: &MaintainArgs, config: &Config) -> anyhow::Result<()> {
    let store = super::open_lake_for_writing(config, "tandem maintain")?;
    let report = store.maintain(config.store.retention(), true, chrono::Utc::now())?;
    crate::say!("{}", summary(&report));
    Ok(())
}

/// One line saying what a maintenance pass did.
pub fn summary(report: &MaintenanceReport) -> String {
    let merged: usize = report.compacted.iter().map(|(_, n)| n).sum();
    format!(
        "maintained: {merged} small files merged, {} logs checkpointed, {} expired log entries and {} unreferenced data files removed, {} raw page files past retention removed",
        report.checkpointed, report.log_entries_removed, report.files_vacuumed, report.raw_files_removed
    )
}
