//! ops metrics (stub until the family lands): rows for every metric in `MetricId::OPS`.

use super::PipelineError;
use super::weekly::Shared;
use crate::metric::MetricRow;

/// The family's rows for every scope and period of the grid.
pub(super) fn metrics(_shared: &Shared<'_>) -> Result<Vec<MetricRow>, PipelineError> {
    Ok(Vec::new())
}
