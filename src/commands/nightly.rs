//! `tandem report nightly`: the nightly digest of the last full day and the last 7 days, as HTML
//! and as Markdown for a chat channel, in its own folder under the report directory. `tandem run`
//! writes one after every sync through [`write`].

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};

use super::{Context, Outcome, metrics};
use crate::cli::{RangeArgs, ReportArgs};
use crate::config::Config;
use crate::pipeline::calendar::{Grain, parse_period};
use crate::report::nightly::{self, NightlyInput, NightlyOutput, Window};
use crate::store::Store;
use crate::sync::RunHealth;

/// Writes the digest, with the health of the last `tandem run` as recorded in the store.
pub fn run(args: &ReportArgs, config: &Config, _ctx: &Context) -> anyhow::Result<Outcome> {
    let now = Utc::now();
    let window = window(&args.range, config, now)?;
    let store = Store::open(&config.resolve(&config.store.path))?;
    let health = RunHealth::load(&store);
    let output = write(config, args.out.clone(), window, health.as_ref(), now)?;
    print_output(&output);
    Ok(Outcome::Success)
}

/// The days a digest made at `now` covers: `--period DAY` names its last day; without it, the
/// last full day before `now` in the report time zone.
pub fn window(range: &RangeArgs, config: &Config, now: DateTime<Utc>) -> anyhow::Result<Window> {
    const HINT: &str = "the nightly digest covers one day and the 7 days ending with it: pass \
                        --period DAY (e.g. --period 2026-11-21), or nothing for yesterday";
    if range.weeks.is_some() || range.until.is_some() || range.grain.is_some() {
        bail!("--weeks, --until and --grain do not apply: {HINT}");
    }
    match range.period.as_deref() {
        None => Ok(Window::before(now, config.tz())),
        Some(spec) => match parse_period(spec) {
            Ok((Grain::Day, day, _)) => Ok(Window::ending(day)),
            Ok(_) => bail!("--period {spec} is not a single day: {HINT}"),
            Err(e) => bail!("{e}"),
        },
    }
}

/// Computes the metric table of the window at day grain (not stored: the lake's metric table
/// stays the one `tandem metrics` wrote) and writes the digest into a new run folder under the
/// report directory (`out`, else `report.out`), comparing with the previous digest there.
pub fn write(
    config: &Config,
    out: Option<PathBuf>,
    window: Window,
    health: Option<&RunHealth>,
    now: DateTime<Utc>,
) -> anyhow::Result<NightlyOutput> {
    let range = RangeArgs {
        period: Some(window.period()),
        grain: Some("day".to_owned()),
        ..RangeArgs::default()
    };
    let rows = metrics::calculate(&range, config)?;
    let out_dir = super::report::out_dir(config, out);
    let time_zone = config.tz().to_string();
    let input = NightlyInput {
        organisation: &config.organisation.name,
        generated_at: now,
        time_zone: &time_zone,
        window,
        rows: &rows,
        kpis: &config.kpis,
        health,
        previous: None,
        previous_unreadable: false,
    };
    nightly::write(&out_dir, &input)
        .with_context(|| format!("cannot write the nightly digest to {}", out_dir.display()))
}

/// Says where the digest went.
pub fn print_output(output: &NightlyOutput) {
    crate::say!("digest:  {}", output.digest.display());
    crate::say!("nightly: {}", output.html.display());
    crate::say!("index:   {}", output.index.display());
}
