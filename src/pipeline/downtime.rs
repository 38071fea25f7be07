//! Outages and downtime: the outage incidents' impact intervals, and a scope's downtime in a
//! period as the union of its services' intervals (summed per service, or over any service), the
//! one definition the core `downtime_minutes` and the operations family's availability share.
//!
//! Plain Rust over intervals once polars has selected the outages; it must not emit metric rows.

use std::collections::BTreeSet;

use polars::prelude::*;
use tandem_connectors::model::Severity;

use super::grid::{MINUTE_MS, Scope};
use super::intervals::union_length;

/// One outage incident's impact interval.
#[derive(Debug)]
pub(super) struct Outage {
    /// Service; [`outages`] returns them sorted by it.
    service: Option<String>,
    start: i64,
    /// `i64::MAX` while open, so clipping runs it to the period end.
    end: i64,
}

pub(super) fn outages(incidents: LazyFrame, severities: &[Severity]) -> PolarsResult<Vec<Outage>> {
    let is_outage = severities.iter().fold(lit(false), |any, severity| {
        any.or(col("severity").eq(lit(severity.as_str())))
    });
    let frame = incidents
        .filter(is_outage)
        .select([col("service"), col("started_at"), col("resolved_at")])
        .collect()?;
    let service = frame.column("service")?.str()?;
    let started = frame.column("started_at")?.i64()?;
    let resolved = frame.column("resolved_at")?.i64()?;
    let mut outages: Vec<Outage> = service
        .iter()
        .zip(started.iter())
        .zip(resolved.iter())
        .filter_map(|((service, start), end)| {
            Some(Outage {
                service: service.map(str::to_owned),
                // `started_at` is declared non-nullable; the codec refuses a null there.
                start: start?,
                end: end.unwrap_or(i64::MAX),
            })
        })
        .collect();
    // By service, for [`downtime`].
    outages.sort_unstable_by(|a, b| (&a.service, a.start, a.end).cmp(&(&b.service, b.start, b.end)));
    Ok(outages)
}

/// The downtime of a scope in a period (see [`downtime`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ScopeDowntime {
    /// The sum of the scope's services' downtime minutes (a service's own for a service).
    pub minutes: f64,
    /// The services it sums over: the denominator of a service-weighted availability.
    pub services: usize,
    /// Outage incidents of those services open in the period.
    pub n: i64,
}

/// The outages of one service ([`outages`] sorts them by service).
fn of_service<'o>(outages: &'o [Outage], name: &str) -> &'o [Outage] {
    let first = outages.partition_point(|o| o.service.as_deref() < Some(name));
    let end = outages.partition_point(|o| o.service.as_deref() <= Some(name));
    outages.get(first..end.max(first)).unwrap_or_default()
}

/// The services a scope's service-weighted downtime sums over: a service itself, a team's
/// services in the config mapping, and for the organisation every service with rows (configured
/// or named in any table), so the organisation's availability is the mean of its service rows'.
pub(super) fn scope_services<'a>(scope: Scope<'a>, services: &'a BTreeSet<String>) -> Vec<&'a str> {
    match scope {
        Scope::Org => services.iter().map(String::as_str).collect(),
        Scope::Service(name) => vec![name],
        Scope::Team(_, services) => services.iter().map(String::as_str).collect(),
    }
}

/// Downtime of a scope in `[from, to)`, service-weighted (`reference/metrics.md`, downtime): each
/// service's downtime is the union of its outage intervals, clipped to the period; a team's or the
/// organisation's is the sum over its services (see [`scope_services`]), so that availability can
/// be the mean of the services' availabilities. A service without outages counts, with no
/// downtime; an outage without a service belongs to no service and counts only in
/// [`downtime_any_service`].
pub(super) fn downtime(
    outages: &[Outage],
    scope: Scope<'_>,
    services: &BTreeSet<String>,
    from: i64,
    to: i64,
) -> ScopeDowntime {
    let mut total = ScopeDowntime {
        minutes: 0.0,
        services: 0,
        n: 0,
    };
    for name in scope_services(scope, services) {
        let own = of_service(outages, name);
        total.services += 1;
        total.n += own.iter().filter(|o| o.start.max(from) < o.end.min(to)).count() as i64;
        total.minutes += union_length(own.iter().map(|o| (o.start, o.end)), from, to) as f64 / MINUTE_MS;
    }
    total
}

/// Minutes in `[from, to)` during which any service of the scope was down (the union of the
/// scope's outage intervals; for the organisation, of every outage, with or without a service)
/// and the number of outage incidents open in it. With many services it nears the whole period,
/// which is why the scope's downtime is the sum per service instead ([`downtime`]).
pub(super) fn downtime_any_service(outages: &[Outage], scope: Scope<'_>, from: i64, to: i64) -> (f64, i64) {
    let slices: Vec<&[Outage]> = match scope {
        Scope::Org => vec![outages],
        Scope::Service(name) => vec![of_service(outages, name)],
        Scope::Team(_, services) => services.iter().map(|s| of_service(outages, s)).collect(),
    };
    let in_scope = || slices.iter().flat_map(|s| s.iter());
    let n = in_scope().filter(|o| o.start.max(from) < o.end.min(to)).count();
    let millis = union_length(in_scope().map(|o| (o.start, o.end)), from, to);
    (millis as f64 / MINUTE_MS, n as i64)
}
