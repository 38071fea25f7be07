//! `tandem export`: the lake and the metrics for the data team, as Parquet and CSV with a schema
//! file, in a fresh folder `<out>/export/<timestamp>/` listed in `<out>/index.html`.
//!
//! The folder describes itself in `meta.json`, written last: an export that fails half-way is
//! removed, and one that could not even be removed has no `meta.json`, so the index never lists it.
//! The pseudonymisation key is read from the environment and goes nowhere but into the hash.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tandem_connectors::model::{
    Change, ChangeRequest, Commit, Deployment, Incident, Quarantined, Ticket, TicketTransition,
};

use super::{Context, Outcome};
use crate::cli::ExportArgs;
use crate::config::Config;
use crate::export::{self, Export, MIN_KEY_BYTES, Pseudonymiser, Schema};
use crate::metric::MetricRow;
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
    let store = Store::open(&config.lake()?)?;
    // The export reads the lake; it does not replace the stored metric table.
    let rows = super::calculate(&args.range, config)?;
    let out = super::out_dir(config, args.out.clone())?;
    let now = Utc::now();
    let (dir, schema) = into_run_folder(&out, now, |dir| {
        write(dir, &store, &rows, config, pseudonymiser, now)
    })?;
    let meta = Meta {
        kind: KIND.to_owned(),
        title: if schema.pseudonymised {
            "Data export (pseudonymised)".to_owned()
        } else {
            "Data export".to_owned()
        },
        period: args.range.period.clone().unwrap_or_else(|| {
            rows.iter()
                .find(|r| r.grain == "range")
                .map(|r| super::period_label(r, config.tz()))
                .unwrap_or_default()
        }),
        generated_at: now,
        main: export::SCHEMA_MD.to_owned(),
        extra: vec![export::SCHEMA_JSON.to_owned()],
        read: None,
    };
    archive::write_meta(&dir, &meta)?;
    let dir = archive::publish(&dir)?;
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

/// Makes a fresh (partial, see [`archive::run_dir`]) export folder under `out` and fills it with
/// `fill`; the caller publishes it. When `fill` fails, the half-made folder is removed and the
/// error says so (and still names what failed).
pub fn into_run_folder<T>(
    out: &Path,
    now: DateTime<Utc>,
    fill: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<(PathBuf, T)> {
    let dir = archive::run_dir(out, KIND, now)
        .with_context(|| format!("cannot create an export folder in {}", out.display()))?;
    match fill(&dir) {
        Ok(value) => Ok((dir, value)),
        Err(err) => {
            // Best effort: without meta.json the folder is not listed anyway.
            let _ = std::fs::remove_dir_all(&dir);
            Err(err.context(format!("export to {} failed and was removed", dir.display())))
        }
    }
}

/// The pseudonymisation key from the variable the config names. The messages tell an unset
/// variable from an empty one and from a key too short, and never show the key.
fn key(config: &Config, ctx: &Context) -> anyhow::Result<Pseudonymiser> {
    let var = &config.export.pseudonymise_key_env;
    let refused = |why: String| {
        anyhow::anyhow!(
            "--pseudonymise needs a key: {why}; set the environment variable {var} (named by \
             `export.pseudonymise_key_env` in the config) to a random secret of at least \
             {MIN_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`), and keep it to give the same \
             people the same pseudonyms in later exports"
        )
    };
    let secret = match ctx.env.get(var, "export.pseudonymise_key_env") {
        Ok(secret) => secret,
        Err(_) if ctx.env.is_set(var) => return Err(refused(format!("the key in {var} is empty"))),
        Err(_) => return Err(refused(format!("{var} is not set"))),
    };
    Pseudonymiser::new(secret.expose()).map_err(|e| refused(format!("the key in {var} {e}")))
}

/// Writes every file pair and the schema into `dir` (which must exist): the canonical tables of
/// `store`, the metric table `rows`, the per-service breakdown and the unmapped records.
pub fn write(
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
