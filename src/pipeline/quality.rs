//! Data-quality figures: how many source records were quarantined, per period, for the whole
//! organisation (a record that could not be mapped has no service).

use polars::prelude::*;
use tandem_connectors::model::Quarantined;

use super::PipelineError;
use super::codec::scan_table;
use super::weekly::{Cells, Period, Scope, Shared, aggregate};
use crate::metric::{MetricId, MetricRow};

/// `quarantined_records` for the org: per week by when tandem saw them, and for the range every
/// record in quarantine now (a record seen after the range still needs fixing, so it counts).
pub(super) fn metrics(shared: &Shared<'_>) -> Result<Vec<MetricRow>, PipelineError> {
    let quarantine = scan_table::<Quarantined>(shared.inputs.quarantine)?;
    let total = quarantine
        .clone()
        .select([len().cast(DataType::Int64).alias("n")])
        .collect()
        .and_then(|f| Ok(f.column("n")?.i64()?.get(0).unwrap_or(0)))
        .map_err(|source| PipelineError::Polars {
            context: format!(
                "counting quarantined records in {}",
                shared.inputs.quarantine.display()
            ),
            source,
        })?;
    let events = quarantine.select([
        col("seen_at").alias("at"),
        lit(NULL).cast(DataType::String).alias("service"),
    ]);
    let cells: Cells = aggregate(events, shared.grid, &[]).map_err(|source| PipelineError::Polars {
        context: format!(
            "counting quarantined records in {}",
            shared.inputs.quarantine.display()
        ),
        source,
    })?;
    let metric = MetricId::QuarantinedRecords;
    Ok(shared
        .grid
        .periods()
        .into_iter()
        .map(|period| {
            let n = match period {
                Period::Range => total,
                Period::Unit(_) => cells.n(Scope::Org, period),
            };
            let (period_start, period_end) = shared.grid.instants(period);
            MetricRow {
                metric: metric.as_str().to_owned(),
                grain: shared.grid.grain(period).to_owned(),
                scope_type: "org".into(),
                scope: "all".into(),
                period_start,
                period_end,
                value: Some(n as f64),
                unit: metric.unit().to_owned(),
                n,
            }
        })
        .collect())
}
