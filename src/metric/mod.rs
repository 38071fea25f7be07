//! The ground floor: what each metric is, before anything computes it.
//!
//! `catalogue` has one row per metric (its id, unit, one-line definition, family, the sources it
//! reads, whether it is a statistic of a sample) and the tidy [`MetricRow`] every metric leaves
//! the pipeline in; `table` the columnar [`MetricTable`] the pipeline returns; `tiers` the DORA
//! performance tiers; `kpi` the targets a report scores rows against; `calendar` the reporting
//! periods (days, weeks, months, quarters in a time zone).
//!
//! Plain Rust: no polars, no I/O, and nothing from the floors above (`store`, `pipeline`,
//! `report`): the report and the CLI read these types without knowing how the rows were computed.

pub mod calendar;
mod catalogue;
pub mod kpi;
mod table;
pub mod tiers;

pub use catalogue::*;
pub use table::{MetricTable, PeriodIx, ScopeIx};
