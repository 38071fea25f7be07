//! `tandem migrate`: converts a lake written by an earlier release — one Parquet file per table —
//! to Delta tables, from the files alone (no request to any source). Opening the lake for writing
//! does the conversion; this command does nothing else and says what it converted.

use crate::cli::MigrateArgs;
use crate::config::Config;

/// Converts the lake and prints the tables converted.
pub fn run(_args: &MigrateArgs, config: &Config) -> anyhow::Result<()> {
    let lake = config.lake()?;
    let before = crate::store::Store::open(&lake)?.legacy_tables();
    let store = super::open_lake_for_writing(config, "tandem migrate")?;
    // Another command may have converted it in between: what is left says what this one did.
    let left = store.legacy_tables();
    if before.is_empty() {
        crate::say!(
            "migrate: the lake at {} is already made of Delta tables",
            lake.display()
        );
    } else {
        for table in before.iter().filter(|t| !left.contains(t)) {
            let rows = store.read_count(table)?;
            crate::say!("migrated: {table} ({rows} rows) is a Delta table");
        }
    }
    Ok(())
}
