//! Data quality, in the metric table beside the metrics it qualifies: quarantined records,
//! records no mapping covers, how many changes and incidents could be linked, first deployments
//! without a baseline, and deployments that never finished (stale). Readers of a number can see how much data stands behind it.

use std::collections::BTreeMap;

use polars::prelude::*;
use tandem_connectors::model::{
    ChangeRequest, DeploymentStatus, Incident, Quarantined, ReasonCode, Ticket, TicketTransition,
};

use super::Shared;
use super::core::lead;
use crate::metric::{MetricId, MetricTable};
use crate::pipeline::PipelineError;
use crate::pipeline::attribution::{EXPLICIT, WINDOW};
use crate::pipeline::codec::height;
use crate::pipeline::grid::{Cells, Period, Scope, aggregate, metric_rows_with};
use crate::pipeline::links::link_method;
use crate::store::codec::scan_table;

/// What the figures count, read once for every grid of a computation: each kind of event (with
/// its instant as `at`, and `service`), kept only where it falls within `[from, to)`, the range
/// every grid lies in.
pub(in crate::pipeline) struct Prepared {
    total_quarantined: i64,
    quarantined: DataFrame,
    /// Per reason code: its total and its events.
    by_code: Vec<(ReasonCode, i64, DataFrame)>,
    merged: DataFrame,
    incidents: DataFrame,
    unmapped: DataFrame,
    unclassified: DataFrame,
    uncategorised: DataFrame,
    unapproved: DataFrame,
    baseless: DataFrame,
    stale: DataFrame,
}

/// Reads the events of [`Prepared`] within `[from, to)`.
pub(in crate::pipeline) fn prepare(
    shared: &Shared<'_>,
    (from, to): (i64, i64),
) -> Result<Prepared, PipelineError> {
    let polars = |source| PipelineError::Polars {
        context: format!(
            "computing data-quality figures from {}",
            crate::pipeline::codec::describe(shared.inputs.quarantine)
        ),
        source,
    };
    let quarantine = scan_table::<Quarantined>(shared.inputs.quarantine)?;
    let changes = shared.changes.clone();
    let deployments = shared.deployments.clone();
    let all_incidents = scan_table::<Incident>(shared.inputs.incidents)?;
    let null_service = || lit(NULL).cast(DataType::String).alias("service");

    let within = |events: LazyFrame| {
        events
            .filter(col("at").gt_eq(lit(from)).and(col("at").lt(lit(to))))
            .collect()
    };
    let total_quarantined = height(&quarantine).map_err(polars)?;
    let quarantined = within(
        quarantine
            .clone()
            .select([col("seen_at").alias("at"), null_service()]),
    )
    .map_err(polars)?;
    let (coded, totals) = coded_quarantine(quarantine).map_err(polars)?;
    let mut by_code = Vec::with_capacity(ReasonCode::ALL.len());
    for code in ReasonCode::ALL {
        let events = coded
            .clone()
            .lazy()
            .filter(col("code").eq(lit(code.as_str())))
            .select([col("at"), null_service()]);
        let total = totals.get(&code).copied().unwrap_or(0);
        by_code.push((code, total, within(events).map_err(polars)?));
    }

    // Merged changes, whether they are linked to a deployment, and by which method.
    let links =
        shared
            .change_links
            .clone()
            .select([col("change"), lit(1.0).alias("linked"), col("ancestry")]);
    // The links name a change by its row in the changes table.
    let merged = changes
        .clone()
        .with_row_index("row", None)
        .filter(col("merged_at").is_not_null())
        .select([col("row"), col("service"), col("merged_at").alias("at")])
        .left_join(links, col("row"), col("change"))
        .select([
            col("at"),
            col("service"),
            col("linked").fill_null(lit(0.0)),
            col("ancestry").fill_null(lit(0.0)),
        ])
        .with_column((col("linked") - col("ancestry")).alias("time"));
    let merged = within(merged).map_err(polars)?;

    // Incidents (from the incident sources), whether mapped and whether attributed.
    let attributed = shared.links.clone().select([
        col("incident_id"),
        lit(1.0).alias("attributed"),
        col("link")
            .eq(lit(EXPLICIT))
            .cast(DataType::Float64)
            .alias("explicit"),
        col("link")
            .eq(lit(WINDOW))
            .cast(DataType::Float64)
            .alias("window"),
    ]);
    let incidents = shared
        .incidents
        .clone()
        .left_join(attributed, col("id"), col("incident_id"))
        .select([
            col("started_at").alias("at"),
            col("service"),
            col("service")
                .is_not_null()
                .cast(DataType::Float64)
                .alias("mapped"),
            col("attributed").fill_null(lit(0.0)),
            col("explicit").fill_null(lit(0.0)),
            col("window").fill_null(lit(0.0)),
        ]);
    let incidents = within(incidents).map_err(polars)?;

    // Records no mapping covers (they count for the organisation only).
    let unmapped_events = concat(
        [
            deployments
                .clone()
                .filter(col("service").is_null())
                .select([col("created_at").alias("at"), null_service()]),
            changes
                .filter(col("service").is_null())
                .select([col("created_at").alias("at"), null_service()]),
            all_incidents
                .filter(col("service").is_null())
                .select([col("started_at").alias("at"), null_service()]),
        ],
        UnionArgs::default(),
    )
    .map_err(polars)?;
    let unmapped = within(unmapped_events).map_err(polars)?;

    // What the sources left unsaid: ticket types tandem cannot classify, transitions from or to
    // a status without a known category (deleted statuses), change requests without an approval.
    let unclassified = within(
        scan_table::<Ticket>(shared.inputs.tickets)?
            .filter(col("category").eq(lit(Ticket::OTHER)))
            .select([col("created_at").alias("at"), null_service()]),
    )
    .map_err(polars)?;
    let uncategorised = within(
        scan_table::<TicketTransition>(shared.inputs.ticket_transitions)?
            .filter(
                col("to_category").is_null().or(col("from_status")
                    .is_not_null()
                    .and(col("from_category").is_null())),
            )
            .select([col("at"), null_service()]),
    )
    .map_err(polars)?;
    let unapproved = within(
        scan_table::<ChangeRequest>(shared.inputs.change_requests)?
            .filter(col("approved").is_null())
            .select([col("created_at").alias("at"), null_service()]),
    )
    .map_err(polars)?;

    // The first production deployment of each repo has nothing before it to compare with.
    let first_per_repo = shared
        .production
        .clone()
        .group_by([col("repo")])
        .agg([
            col("finished_at").min().alias("at"),
            col("service")
                .sort_by([col("finished_at")], SortMultipleOptions::default())
                .first(),
        ])
        .select([col("at"), col("service")]);
    let baseless = within(first_per_repo).map_err(polars)?;

    // Deployments that never finished: marked stale by their source, counted here and nowhere
    // else (only successful ones are deployments, only incidents and rollbacks make failures).
    let stale_events = deployments
        .clone()
        .filter(col("status").eq(lit(DeploymentStatus::Stale.as_str())))
        .select([col("created_at").alias("at"), col("service")]);
    let stale = within(stale_events).map_err(polars)?;
    Ok(Prepared {
        total_quarantined,
        quarantined,
        by_code,
        merged,
        incidents,
        unmapped,
        unclassified,
        uncategorised,
        unapproved,
        baseless,
        stale,
    })
}

/// The `MetricId::QUALITY` rows of the grid of `shared`, from its [`prepare`]d events.
pub(in crate::pipeline) fn metrics(
    shared: &Shared<'_>,
    prepared: &Prepared,
) -> Result<MetricTable, PipelineError> {
    let polars = |source| PipelineError::Polars {
        context: format!(
            "computing data-quality figures from {}",
            crate::pipeline::codec::describe(shared.inputs.quarantine)
        ),
        source,
    };
    let grid = shared.grid;
    let count = |events: &DataFrame| aggregate(events.clone().lazy(), grid, &[]);
    let total_quarantined = prepared.total_quarantined;
    let quarantined = count(&prepared.quarantined).map_err(polars)?;
    let mut by_code = Vec::with_capacity(prepared.by_code.len());
    for (code, total, events) in &prepared.by_code {
        by_code.push((*code, *total, count(events).map_err(polars)?));
    }
    let deployed = aggregate(
        prepared.merged.clone().lazy(),
        grid,
        &[
            ("share", col("linked").mean()),
            ("ancestry_share", col("ancestry").mean()),
            ("time_share", col("time").mean()),
            ("linked", col("linked").sum()),
            ("ancestry", col("ancestry").sum()),
        ],
    )
    .map_err(polars)?;
    let incident_cells = aggregate(
        prepared.incidents.clone().lazy(),
        grid,
        &[
            ("mapped", col("mapped").mean()),
            ("attributed", col("attributed").mean()),
            ("explicit", col("explicit").mean()),
            ("window", col("window").mean()),
        ],
    )
    .map_err(polars)?;
    let unmapped = count(&prepared.unmapped).map_err(polars)?;
    let unclassified = count(&prepared.unclassified).map_err(polars)?;
    let uncategorised = count(&prepared.uncategorised).map_err(polars)?;
    let unapproved = count(&prepared.unapproved).map_err(polars)?;
    let baseless = count(&prepared.baseless).map_err(polars)?;
    let stale = count(&prepared.stale).map_err(polars)?;

    let org_count = |cells: &Cells, scope: Scope<'_>, period: Period| -> Option<(Option<f64>, i64)> {
        matches!(scope, Scope::Org).then(|| {
            let n = cells.n(scope, period);
            (Some(n as f64), n)
        })
    };
    Ok(metric_rows_with(
        &shared.opts.wanted(&MetricId::QUALITY),
        shared.services,
        shared.grid,
        |metric, scope, period| {
            if metric == MetricId::ChangesDeployedShare {
                let linked = deployed.value(scope, period, 3).unwrap_or(0.0).round() as i64;
                return Some((
                    deployed.value(scope, period, 0),
                    deployed.n(scope, period),
                    link_method(deployed.value(scope, period, 4), linked),
                ));
            }
            match metric {
                MetricId::QuarantinedRecords => matches!(scope, Scope::Org).then(|| {
                    // The range counts every record in quarantine now: one seen after the range
                    // still needs fixing.
                    let n = match period {
                        Period::Range => total_quarantined,
                        Period::Unit(_) => quarantined.n(scope, period),
                    };
                    (Some(n as f64), n)
                }),
                _ if metric.quarantine_code().is_some() => {
                    let (_, total, cells) = by_code
                        .iter()
                        .find(|(c, ..)| Some(*c) == metric.quarantine_code())?;
                    // Counted as `quarantined_records` is.
                    matches!(scope, Scope::Org).then(|| {
                        let n = match period {
                            Period::Range => *total,
                            Period::Unit(_) => cells.n(scope, period),
                        };
                        (Some(n as f64), n)
                    })
                }
                MetricId::ChangesLinkedAncestryShare => {
                    Some((deployed.value(scope, period, 1), deployed.n(scope, period)))
                }
                MetricId::ChangesLinkedTimeShare => {
                    Some((deployed.value(scope, period, 2), deployed.n(scope, period)))
                }
                // Deployed changes with a negative span, by the shipping deployment's finish.
                MetricId::ChangesNegativeSpans => Some((
                    Some(shared.leads.value(scope, period, lead::NEGATIVE).unwrap_or(0.0)),
                    shared.leads.n(scope, period),
                )),
                // A service's incidents are mapped by definition: the share is the organisation's.
                MetricId::IncidentsMappedShare => matches!(scope, Scope::Org).then(|| {
                    (
                        incident_cells.value(scope, period, 0),
                        incident_cells.n(scope, period),
                    )
                }),
                MetricId::IncidentsAttributedShare => Some((
                    incident_cells.value(scope, period, 1),
                    incident_cells.n(scope, period),
                )),
                MetricId::IncidentsAttributedExplicitShare => Some((
                    incident_cells.value(scope, period, 2),
                    incident_cells.n(scope, period),
                )),
                MetricId::IncidentsAttributedWindowShare => Some((
                    incident_cells.value(scope, period, 3),
                    incident_cells.n(scope, period),
                )),
                MetricId::UnmappedRecords => org_count(&unmapped, scope, period),
                MetricId::TicketTypesUnclassified => org_count(&unclassified, scope, period),
                MetricId::TicketTransitionsUnknownCategory => org_count(&uncategorised, scope, period),
                MetricId::ChangeRequestsApprovalUnknown => org_count(&unapproved, scope, period),
                MetricId::DeploymentsWithoutBaseline => {
                    let n = baseless.n(scope, period);
                    Some((Some(n as f64), n))
                }
                MetricId::StaleDeployments => {
                    let n = stale.n(scope, period);
                    Some((Some(n as f64), n))
                }
                _ => None,
            }
            .map(|(value, n)| (value, n, None))
        },
    ))
}

/// Every quarantined record as `at` (when seen, ms) and `code`: its stored reason code, or for a
/// row stored before tandem kept codes (null, or a lake without the column), the code its reason
/// text reads as ([`ReasonCode::of_message`]); beside it, the count of each code.
fn coded_quarantine(quarantine: LazyFrame) -> PolarsResult<(DataFrame, BTreeMap<ReasonCode, i64>)> {
    let has_code = quarantine.clone().collect_schema()?.contains("reason_code");
    let code = if has_code {
        col("reason_code")
    } else {
        lit(NULL).cast(DataType::String).alias("reason_code")
    };
    let frame = quarantine
        .select([col("seen_at"), col("reason"), code])
        .collect()?;
    let (seen, reason, stored) = (
        frame.column("seen_at")?.i64()?,
        frame.column("reason")?.str()?,
        frame.column("reason_code")?.str()?,
    );
    let mut at = Vec::with_capacity(frame.height());
    let mut codes = Vec::with_capacity(frame.height());
    let mut totals = BTreeMap::new();
    for i in 0..frame.height() {
        let code = match (stored.get(i).and_then(ReasonCode::parse), reason.get(i)) {
            (Some(code), _) => code,
            (None, text) => ReasonCode::of_message(text.unwrap_or_default()),
        };
        *totals.entry(code).or_insert(0) += 1;
        at.push(seen.get(i));
        codes.push(code.as_str());
    }
    let frame = DataFrame::new_infer_height(vec![
        Column::new("at".into(), at),
        Column::new("code".into(), codes),
    ])?;
    Ok((frame, totals))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;

    use chrono::{DateTime, Utc};
    use tandem_connectors::model::{ChangeRequest, QuarantineReason, Ticket, TicketTransition};

    use super::*;
    use crate::metric::MetricRow;
    use crate::pipeline::testkit::{aug, cell, options};
    use crate::pipeline::{Inputs, compute_metrics};
    use crate::store::codec::write_table;
    use MetricId::*;

    fn entry(id: u32, reason: QuarantineReason, seen_at: DateTime<Utc>) -> Quarantined {
        Quarantined {
            seen_at,
            ..Quarantined::new("gh", "deployments", &serde_json::json!({ "id": id }), reason)
        }
    }

    /// Seven entries over two weeks (3–16 Aug) and beside them: week 0 holds a missing field, a
    /// bad timestamp and a row stored without a code whose text reads as a bad value; week 1 a
    /// missing field and an unknown reference; a bad value seen before the range and a bad shape seen after it count only
    /// in the range's "everything in quarantine now".
    fn entries() -> Vec<Quarantined> {
        let missing = || QuarantineReason::MissingField("numeric id".into());
        vec![
            entry(1, missing(), aug(3, 10, 0)),
            entry(2, missing(), aug(11, 10, 0)),
            entry(
                3,
                QuarantineReason::BadTimestamp {
                    field: "created_at".into(),
                    error: "unparsable timestamp \"soon\"".into(),
                },
                aug(4, 10, 0),
            ),
            entry(
                4,
                QuarantineReason::BadShape("expected a JSON object, found 3".into()),
                aug(20, 0, 0),
            ),
            Quarantined {
                reason_code: None,
                ..entry(
                    5,
                    QuarantineReason::Message("unknown deployment status \"weird\"".into()),
                    aug(5, 10, 0),
                )
            },
            entry(
                6,
                QuarantineReason::BadValue {
                    field: "state".into(),
                    error: "unknown issue state \"gone\"".into(),
                },
                aug(3, 0, 0) - chrono::Duration::days(4),
            ),
            entry(
                7,
                QuarantineReason::UnknownReference(
                    "compare of the deployment with the previous production deployment answered HTTP \
                     404 at http://x/compare/a...b (gone): its commits are unknown"
                        .into(),
                ),
                aug(12, 10, 0),
            ),
        ]
    }

    fn rows(quarantine: &Path, none: &Path) -> Vec<MetricRow> {
        let (quarantine, none) = (&[quarantine.to_owned()], &[none.to_owned()]);
        compute_metrics(
            Inputs {
                deployments: none,
                changes: none,
                commits: none,
                incidents: none,
                tickets: none,
                ticket_transitions: none,
                change_requests: none,
                quarantine,
                prepared: None,
            },
            &options(2, &["web"]),
        )
        .unwrap()
        .to_rows()
    }

    fn assert_counts(rows: &[MetricRow]) {
        let counts =
            |metric| [Some(0), Some(1), None].map(|week| cell(rows, metric, "all", week).0.unwrap() as i64);
        // [week 0, week 1, range]
        assert_eq!(counts(QuarantinedRecords), [3, 2, 7]);
        assert_eq!(counts(QuarantinedMissingField), [1, 1, 2]);
        assert_eq!(counts(QuarantinedBadTimestamp), [1, 0, 1]);
        assert_eq!(counts(QuarantinedBadValue), [1, 0, 2]);
        assert_eq!(counts(QuarantinedBadShape), [0, 0, 1]);
        assert_eq!(counts(QuarantinedUnknownReference), [0, 1, 1]);
        assert_eq!(
            cell(rows, QuarantinedBadValue, "all", None),
            (Some(2.0), 2),
            "n is the count"
        );
        assert!(
            !rows
                .iter()
                .any(|r| r.metric.starts_with("quarantined_") && r.scope_type != "org"),
            "organisation only"
        );
    }

    fn ticket(key: &str, category: &str, issue_type: &str, created_at: DateTime<Utc>) -> Ticket {
        Ticket {
            id: format!("jira:{key}"),
            source: "jira".into(),
            key: key.into(),
            project: "OPS".into(),
            service_ref: None,
            service: None,
            team: None,
            category: category.into(),
            issue_type: issue_type.into(),
            title: "t".into(),
            priority: None,
            status: "待办".into(),
            status_category: "new".into(),
            labels: Vec::new(),
            created_at,
            resolved_at: None,
            assignee: None,
            reporter: None,
            updated_at: created_at,
        }
    }

    fn transition(n: u32, from: Option<&str>, to: Option<&str>, at: DateTime<Utc>) -> TicketTransition {
        TicketTransition {
            id: format!("jira:OPS-1:{n}:0"),
            source: "jira".into(),
            ticket_id: "jira:OPS-1".into(),
            at,
            from_status: Some("A".into()),
            to_status: "B".into(),
            from_category: from.map(str::to_owned),
            to_category: to.map(str::to_owned),
        }
    }

    fn change_request(n: u32, approved: Option<bool>, created_at: DateTime<Utc>) -> ChangeRequest {
        ChangeRequest {
            id: format!("snow:c{n}"),
            source: "snow".into(),
            number: format!("CHG{n}"),
            title: "c".into(),
            service_ref: None,
            service: None,
            team: None,
            change_type: None,
            state: "Implement".into(),
            approved,
            planned_start: None,
            planned_end: None,
            actual_start: None,
            actual_end: None,
            closed_at: None,
            close_code: None,
            requested_by: None,
            assigned_to: None,
            created_at,
            updated_at: created_at,
        }
    }

    #[test]
    fn unclassified_types_unknown_status_categories_and_unknown_approvals_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(format!("{name}.parquet"));
        write_table(
            &[
                ticket("OPS-1", "other", "需求评审", aug(3, 10, 0)),
                ticket("OPS-2", "story", "故事", aug(4, 10, 0)),
                ticket("OPS-3", "other", "Kundenaufgabe", aug(11, 10, 0)),
            ],
            &path("tickets"),
        )
        .unwrap();
        write_table(
            &[
                transition(1, Some("new"), Some("indeterminate"), aug(3, 11, 0)),
                // To and from a deleted status: category unknown.
                transition(2, Some("indeterminate"), None, aug(4, 11, 0)),
                transition(3, None, Some("done"), aug(12, 11, 0)),
            ],
            &path("ticket_transitions"),
        )
        .unwrap();
        write_table(
            &[
                change_request(1, Some(true), aug(3, 9, 0)),
                change_request(2, None, aug(5, 9, 0)),
                change_request(3, None, aug(6, 9, 0)),
                change_request(4, Some(false), aug(12, 9, 0)),
            ],
            &path("change_requests"),
        )
        .unwrap();
        let none = path("none");
        let rows = compute_metrics(
            Inputs {
                deployments: std::slice::from_ref(&none),
                changes: std::slice::from_ref(&none),
                commits: std::slice::from_ref(&none),
                incidents: std::slice::from_ref(&none),
                tickets: std::slice::from_ref(&path("tickets")),
                ticket_transitions: std::slice::from_ref(&path("ticket_transitions")),
                change_requests: std::slice::from_ref(&path("change_requests")),
                quarantine: std::slice::from_ref(&none),
                prepared: None,
            },
            &options(2, &["web"]),
        )
        .unwrap()
        .to_rows();
        let counts =
            |metric| [Some(0), Some(1), None].map(|week| cell(&rows, metric, "all", week).0.unwrap() as i64);
        assert_eq!(counts(TicketTypesUnclassified), [1, 1, 2]);
        assert_eq!(counts(TicketTransitionsUnknownCategory), [1, 1, 2]);
        assert_eq!(counts(ChangeRequestsApprovalUnknown), [2, 0, 2]);
    }

    #[test]
    fn stale_deployments_are_counted_in_data_quality_and_are_neither_deployments_nor_failures() {
        use crate::pipeline::testkit::deployment;
        use tandem_connectors::model::{Deployment, DeploymentStatus};
        let with = |id: &str, service: Option<&str>, status, at| Deployment {
            status,
            created_at: at,
            finished_at: None,
            ..deployment(id, service, at)
        };
        let stale = DeploymentStatus::Stale;
        let deployments = vec![
            // Week 0: web and api stale; a success, a failure and one still running beside them.
            with("1", Some("web"), stale, aug(4, 9, 0)),
            with("2", Some("api"), stale, aug(6, 9, 0)),
            deployment("3", Some("web"), aug(5, 9, 0)),
            with("4", Some("api"), DeploymentStatus::Failure, aug(6, 10, 0)),
            with("5", Some("api"), DeploymentStatus::InProgress, aug(7, 10, 0)),
            // Week 1: web stale, and one of no service (the organisation's only).
            with("6", Some("web"), stale, aug(12, 9, 0)),
            with("7", None, stale, aug(11, 9, 0)),
            // Before the range: not counted.
            with("8", Some("web"), stale, aug(3, 0, 0) - chrono::Duration::days(4)),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployments.parquet");
        write_table(&deployments, &path).unwrap();
        let none = dir.path().join("none.parquet");
        let rows = compute_metrics(
            Inputs {
                deployments: std::slice::from_ref(&path),
                changes: std::slice::from_ref(&none),
                commits: std::slice::from_ref(&none),
                incidents: std::slice::from_ref(&none),
                tickets: std::slice::from_ref(&none),
                ticket_transitions: std::slice::from_ref(&none),
                change_requests: std::slice::from_ref(&none),
                quarantine: std::slice::from_ref(&none),
                prepared: None,
            },
            &options(2, &["web", "api"]),
        )
        .unwrap()
        .to_rows();
        let counts = |scope| [Some(0), Some(1), None].map(|week| cell(&rows, StaleDeployments, scope, week));
        // [week 0, week 1, range]: (value, n).
        assert_eq!(counts("all"), [(Some(2.0), 2), (Some(2.0), 2), (Some(4.0), 4)]);
        assert_eq!(counts("web"), [(Some(1.0), 1), (Some(1.0), 1), (Some(2.0), 2)]);
        assert_eq!(counts("api"), [(Some(1.0), 1), (Some(0.0), 0), (Some(1.0), 1)]);
        // Only the success is a deployment; nothing failed.
        assert_eq!(cell(&rows, DeploymentCount, "all", None).0, Some(1.0));
        assert_eq!(cell(&rows, FailedDeploymentCount, "all", None).0, Some(0.0));
        assert!(
            !rows
                .iter()
                .find(|r| r.metric == "stale_deployments")
                .unwrap()
                .insufficient()
        );
    }

    #[test]
    fn quarantined_records_are_counted_by_reason_code() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.parquet");
        write_table(&entries(), &path).unwrap();
        assert_counts(&rows(&path, &dir.path().join("none.parquet")));
    }

    #[test]
    fn a_quarantine_stored_before_reason_codes_is_coded_by_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.parquet");
        write_table(&entries(), &path).unwrap();
        // The same table as an older tandem wrote it: no `reason_code` column at all.
        let mut old = LazyFrame::scan_parquet(PlRefPath::try_from_path(&path).unwrap(), Default::default())
            .unwrap()
            .drop(cols(["reason_code"]))
            .collect()
            .unwrap();
        assert!(!old.schema().contains("reason_code"));
        let file = std::fs::File::create(&path).unwrap();
        ParquetWriter::new(file).finish(&mut old).unwrap();
        // Entries 1 and 2 read as missing fields, 3 as a bad timestamp, 4 as a bad shape, 5 and 6
        // as bad values, 7 as an unknown reference: the same counts as with the codes stored.
        assert_counts(&rows(&path, &dir.path().join("none.parquet")));
    }
}
