//! `tandem export`: the lake and the metrics for the data team, as Parquet and CSV with a schema
//! file, in a fresh folder `<out>/export/<timestamp>/` listed in `<out>/index.html`.
//!
//! The folder describes itself in `meta.json`, written last: an export that fails half-way is
//! removed, and one that could not even be removed has no `meta.json`, so the index never lists it.
//! The pseudonymisation key is read from the environment and goes nowhere but into the hash.

use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Duration, Utc};
use tandem_connectors::model::{
    Change, ChangeRequest, Commit, Deployment, Incident, Quarantined, Ticket, TicketTransition,
};

use super::{Context, Outcome};
use crate::cli::ExportArgs;
use crate::config::Config;
use crate::metric::MetricRow;
use crate::pipeline::export::{self, Export, Pseudonymiser, Schema};
use crate::report::archive::{self, Meta};
use crate::store::Store;

/// The kind of run folder an export makes (`<out>/export/…`).
pub const KIND: &str = "export";

/// Computes the metric table for the range, then writes the export and says where it went.
pub fn run(args: &ExportArgs, config: &Config, ctx: &Context) -> anyhow::Result<Outcome> {
    // The key first: a missing key must not leave a half-made export behind.
    let pseudonymiser = if args.pseudonymise {
        Some(key(config, ctx)?)
    } else {
        None
    };
    let store = Store::open(&config.resolve(&config.store.path))?;
    // The export reads the lake; it does not replace the stored metric table.
    let rows = super::metrics::calculate(&args.range, config)?;
    let out = config.resolve(args.out.as_ref().unwrap_or(&config.report.out));
    let now = Utc::now();
    let dir = archive::run_dir(&out, KIND, now)
        .with_context(|| format!("cannot create an export folder in {}", out.display()))?;
    let schema = match write(&dir, &store, &rows, config, pseudonymiser, now) {
        Ok(schema) => schema,
        Err(err) => {
            // Best effort: without meta.json the folder is not listed anyway.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(err.context(format!("export to {} failed and was removed", dir.display())));
        }
    };
    let meta = Meta {
        kind: KIND.to_owned(),
        title: if schema.pseudonymised {
            "Data export (pseudonymised)".to_owned()
        } else {
            "Data export".to_owned()
        },
        period: args.range.period.clone().unwrap_or_else(|| period_label(&rows)),
        generated_at: now,
        main: export::SCHEMA_MD.to_owned(),
        extra: vec![export::SCHEMA_JSON.to_owned()],
    };
    archive::write_meta(&dir, &meta)?;
    archive::write_index(&out, &config.organisation.name)?;
    crate::say!("export: {}", dir.display());
    for file in &schema.files {
        crate::say!(
            "{:<20} {:>8} rows  {}, {}",
            file.table,
            file.rows,
            file.parquet,
            file.csv
        );
    }
    Ok(Outcome::Success)
}

/// The pseudonymisation key from the variable the config names.
fn key(config: &Config, ctx: &Context) -> anyhow::Result<Pseudonymiser> {
    let var = &config.export.pseudonymise_key_env;
    let missing = || {
        anyhow::anyhow!(
            "--pseudonymise needs a key: set the environment variable {var} (named by \
             `export.pseudonymise_key_env` in the config) to a long random secret, and keep it to \
             give the same people the same pseudonyms in later exports"
        )
    };
    let secret = ctx
        .env
        .get(var, "export.pseudonymise_key_env")
        .map_err(|_| missing())?;
    Pseudonymiser::new(secret.expose()).ok_or_else(missing)
}

/// Writes every file pair and the schema into `dir`.
fn write(
    dir: &Path,
    store: &Store,
    rows: &[MetricRow],
    config: &Config,
    pseudonymiser: Option<Pseudonymiser>,
    now: DateTime<Utc>,
) -> anyhow::Result<Schema> {
    let deployments = store.read::<Deployment>()?;
    let changes = store.read::<Change>()?;
    let incidents = store.read::<Incident>()?;
    let tickets = store.read::<Ticket>()?;
    let change_requests = store.read::<ChangeRequest>()?;
    let mut export = Export::new(dir, pseudonymiser);
    export.table(&deployments)?;
    export.table(&changes)?;
    export.table(&store.read::<Commit>()?)?;
    export.table(&incidents)?;
    export.table(&tickets)?;
    export.table(&store.read::<TicketTransition>()?)?;
    export.table(&change_requests)?;
    export.table(&store.read::<Quarantined>()?)?;
    export.metrics(rows)?;
    let teams = config
        .services
        .iter()
        .filter_map(|s| s.team.clone().map(|t| (s.name.clone(), t)))
        .collect();
    export.service_breakdown(rows, &teams)?;
    export.unmapped(&export::unmapped(
        &deployments,
        &changes,
        &incidents,
        &tickets,
        &change_requests,
    ))?;
    Ok(export.finish(now)?)
}

/// `2026-08-03 to 2026-10-25`: the first and last day of the range the metric rows cover.
fn period_label(rows: &[MetricRow]) -> String {
    rows.iter()
        .find(|r| r.grain == "range")
        .map(|r| {
            format!(
                "{} to {}",
                r.period_start.format("%Y-%m-%d"),
                (r.period_end - Duration::days(1)).format("%Y-%m-%d")
            )
        })
        .unwrap_or_default()
}
