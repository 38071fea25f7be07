//! `tandem metrics`: compute the metric table from the lake, write it, print it.

use serde::Serialize;

use super::kpis;
use crate::cli::{ByScope, MetricsArgs, MetricsFormat};
use crate::config::Config;
use crate::metric::kpi::Scored;
use crate::metric::{MetricId, MetricRow, MetricTable};
use crate::report::text::{kpi_table, org_table, scope_table};

// The steps other commands share, under the names they had here.
pub use super::{calculate, calculate_only, compute, from_store, from_store_many};

/// Computes, writes and prints the metrics; with `--metrics`, computes and prints only those
/// named (the stored table is left as it is).
pub fn run(args: &MetricsArgs, config: &Config) -> anyhow::Result<()> {
    // The KPIs of metrics not computed are not judged.
    let selected;
    let config = match &args.metrics {
        None => config,
        Some(only) => {
            let mut narrowed = config.clone();
            narrowed
                .kpis
                .retain(|k| MetricId::parse(&k.metric).is_some_and(|m| only.contains(&m)));
            selected = narrowed;
            &selected
        }
    };
    // With --period, the period before (for the KPIs' change) is computed in the same pass.
    let also: Vec<_> = super::kpi_comparison(&args.range, config)?.into_iter().collect();
    let (table, also) = match &args.metrics {
        None => {
            let (table, _, also) = super::compute_version_with(&args.range, config, &also)?;
            (table, also)
        }
        Some(only) => {
            let mut tables = calculate_only(&args.range, config, Some(only), &also)?;
            let table = tables.remove(0);
            (table, tables)
        }
    };
    // Only the rows printed are made into rows: a long range for hundreds of services is
    // millions of them.
    let of_scope_type = |scope_type: &str| table.rows_where(|t, i| t.scope_of(i).0 == scope_type);
    let scopes: Vec<(&str, &str)> = config.kpis.iter().filter_map(|k| k.scope_key().ok()).collect();
    let of_kpis = |table: &MetricTable| table.rows_where(|t, i| scopes.contains(&t.scope_of(i)));
    let kpi_rows = || of_kpis(&table);
    let previous: Option<Vec<MetricRow>> = also.first().map(of_kpis);
    match args.format {
        MetricsFormat::Table if args.by == ByScope::Org => {
            super::out(&org_table(&of_scope_type("org"), config.tz()));
            let (heading, scored) = kpis(&kpi_rows(), &args.range, config, previous.as_deref())?;
            super::out(&kpi_table(&scored, &heading));
        }
        MetricsFormat::Table if args.by == ByScope::Service => {
            super::out(&scope_table(&of_scope_type("service"), "service"));
        }
        MetricsFormat::Table => super::out(&scope_table(&of_scope_type("team"), "team")),
        MetricsFormat::Json => {
            let scope_type = match args.by {
                ByScope::Org => "org",
                ByScope::Service => "service",
                ByScope::Team => "team",
            };
            let (_, kpis) = kpis(&kpi_rows(), &args.range, config, previous.as_deref())?;
            let printed = JsonOutput {
                metrics: of_scope_type(scope_type),
                kpis,
            };
            super::out(&format!("{}\n", serde_json::to_string_pretty(&printed)?));
        }
        MetricsFormat::Csv => {
            // Made from the table just computed and stored, a slice at a time as it is printed:
            // never kept, never held whole as text.
            let mut stdout = std::io::BufWriter::new(super::Stdout);
            crate::pipeline::write_metrics_csv(&table, &mut stdout, std::path::Path::new("stdout"))?;
            std::io::Write::flush(&mut stdout)?;
        }
    }
    Ok(())
}

/// What `tandem metrics --format json` prints.
#[derive(Debug, Serialize)]
pub struct JsonOutput {
    /// The rows of the chosen scope type, as the metric table holds them.
    pub metrics: Vec<MetricRow>,
    /// The shared KPIs judged as the table's KPI block judges them, with status, target, value,
    /// previous value and delta.
    pub kpis: Vec<Scored>,
}
