//! The metric families: each computes the rows of its metrics (`MetricId::CORE`, `DORA`, `OPS`,
//! `ITSM`, `QUALITY`) from the inputs and the frames the engine prepared once ([`Shared`]).
//!
//! A family reads what is shared and the helpers below it (the grid, links, causes, attribution,
//! downtime, the codec); it never imports the engine, which schedules the families, nor writes
//! files. `core` also prepares the lead times and deployment outcomes the DORA and data-quality
//! families read.

use std::collections::BTreeSet;

use polars::prelude::LazyFrame;

use super::downtime::Outage;
use super::grid::{Cells, Grid};
use super::undone::Undone;
use super::{Inputs, Options};

pub(super) mod core;
pub(super) mod dora;
pub(super) mod itsm;
pub(super) mod ops;
pub(super) mod quality;

/// What the DORA, operations and data-quality families read: the inputs and options, the grid, the
/// services, and the frames the engine prepared once for all of them (ITSM needs none of the
/// prepared frames: it takes the inputs, the grid and the production deployments directly).
pub(super) struct Shared<'a> {
    /// The table files.
    pub inputs: Inputs<'a>,
    /// What to compute.
    pub opts: &'a Options,
    /// The weeks and the range.
    pub grid: &'a Grid,
    /// Every service to emit rows for (configured or seen in the data).
    pub services: &'a BTreeSet<String>,
    /// Every deployment, as stored; instants as i64 ms.
    pub deployments: LazyFrame,
    /// Every change, as stored.
    pub changes: LazyFrame,
    /// Incidents from the configured incident sources, each with the cause references its
    /// allowed sources and its mirrors give (the engine resolves mirrors); instants as i64 ms.
    pub incidents: LazyFrame,
    /// Successful production deployments in finish order: `id`, `position`, `repo`, `service`,
    /// `sha`, `finished_at` (ms), `change_refs` (see
    /// [`crate::pipeline::attribution::production_deployments`]).
    pub production: LazyFrame,
    /// Attribution links of incidents to production deployments: `incident_id, deployment_id,
    /// link` (see [`crate::pipeline::attribution::attributions`]).
    pub links: LazyFrame,
    /// Merged changes (`change`: their row in the changes table) with the production deployment
    /// that shipped them (`deployment`: its `position` in `production`) and whether the link is
    /// by `ancestry` (see [`crate::pipeline::links::change_links`]; the instants went into
    /// [`Self::leads`]).
    pub change_links: LazyFrame,
    /// Outage intervals (severities in the outage set), for downtime-based metrics.
    pub outages: &'a [Outage],
    /// Production deployments by scope and period; value 0: the failed ones (the change failure
    /// rate's numerator).
    pub deploy_outcomes: &'a Cells,
    /// Deployed changes by the finish of the deployment that shipped them: the lead time and its
    /// stages (values at the positions in [`core::lead`]).
    pub leads: &'a Cells,
    /// Production deployments undone by a rollback or a deployed revert (worked out once).
    pub undone: &'a Undone,
}
