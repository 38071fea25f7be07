//! The metric catalogue — one entry per metric: id, unit, one-line definition, family, the
//! sources it reads, its tier rule — and the tidy metric row: the one shape every metric leaves
//! the pipeline in and every report reads, with how a value is shown.
//!
//! Plain Rust, no polars, no I/O: the report and the CLI read these rows without knowing how they
//! were computed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tandem_connectors::model::ReasonCode;

/// Samples below this count mark a value as insufficient data (no tier, no colour).
pub const MIN_SAMPLE: i64 = 5;

/// One metric value for one scope and period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// Metric id, e.g. `deployment_frequency` (see [`MetricId`]).
    pub metric: String,
    /// `week` for an ISO week, `range` for the whole reporting range.
    pub grain: String,
    /// `org`, `service` or `team`.
    pub scope_type: String,
    /// `all` for the organisation, else the service or team name.
    pub scope: String,
    /// Period start, inclusive (UTC).
    pub period_start: DateTime<Utc>,
    /// Period end, exclusive (UTC).
    pub period_end: DateTime<Utc>,
    /// The value; `None` when there is nothing to compute it from (e.g. a median of no samples).
    pub value: Option<f64>,
    /// Unit of `value`: `count`, `per_day`, `hours`, `minutes`, `ratio`.
    pub unit: String,
    /// Sample size behind the value.
    pub n: i64,
    /// How the value was derived where a definition allows more than one way (e.g. the link
    /// method behind a lead time, `ancestry` or `time`; the attribution mode behind a change
    /// failure rate); `None` where the definition has one way only.
    pub method: Option<String>,
    /// Why there is no value although the period may well have had events: a source the metric
    /// reads failed, never synced, or its history does not reach back to the period. `None` when
    /// the inputs cover the period. Where set, `value` is `None`: never a zero that looks real.
    #[serde(default)]
    pub no_data: Option<String>,
}

impl MetricRow {
    /// Whether the value rests on too small a sample to judge: `n < 5` for a metric that is a
    /// statistic of a sample ([`MetricId::is_sample`]; an unknown metric is taken to be one).
    pub fn insufficient(&self) -> bool {
        self.no_data.is_none() && insufficient(&self.metric, self.n)
    }
}

/// Whether a value of the metric `metric` computed from `n` items is *insufficient data*: `n < 5`
/// and the metric is a statistic of a sample ([`MetricId::is_sample`]; an unknown metric is taken
/// to be one). The one rule rows, KPIs and reports judge by.
pub fn insufficient(metric: &str, n: i64) -> bool {
    n < MIN_SAMPLE && MetricId::parse(metric).is_none_or(MetricId::is_sample)
}

/// The metrics the pipeline emits, with their ids, units and one-line definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricId {
    /// Successful production deployments finished in the period.
    DeploymentCount,
    /// Production deployments per day in the period.
    DeploymentFrequency,
    /// Median lead time for changes (first commit → first production deployment containing it).
    LeadTimeMedian,
    /// Failed changes ÷ production deployments.
    ChangeFailureRate,
    /// Median time to restore of incidents resolved in the period.
    TimeToRestoreMedian,
    /// Mean time to restore of incidents resolved in the period.
    TimeToRestoreMean,
    /// Minutes of outage (union of sev1–sev2 incident intervals, clipped to the period); for a
    /// team or the organisation, the sum over its services.
    DowntimeMinutes,
    /// Minutes in which any service of the scope was down: the union across its services.
    DowntimeAnyServiceMinutes,
    /// First acknowledgement minus start, of incidents acknowledged in the period; median.
    TimeToAcknowledgeMedian,
    /// First acknowledgement minus start, of incidents acknowledged in the period; mean (MTTA).
    TimeToAcknowledgeMean,
    /// Per service, the gap between consecutive starts of outage-severity incidents, for gaps ending in the period; mean (MTBF).
    TimeBetweenFailuresMean,
    /// Per service, the gap between consecutive starts of outage-severity incidents, for gaps ending in the period; median.
    TimeBetweenFailuresMedian,
    /// One minus downtime divided by the period's length; for a team or the organisation,
    /// service-weighted (the mean of its services' availabilities).
    Availability,
    /// Downtime divided by the error budget, (1 − SLO) × the period's length; above 100% the budget
    /// is spent. For a team or the organisation, summed over its services' downtime and budgets.
    ErrorBudgetConsumed,
    /// Downtime counted over incidents attributed to a deployment only: per service the union of
    /// their intervals, clipped to the period; for a team or the organisation, the sum.
    ChangeCausedDowntimeMinutes,
    /// Spearman's rank correlation between weekly production deployments and weekly downtime minutes over the range; n is the number of weeks.
    DeploymentsDowntimeCorrelation,
    /// Resolution minus start of sev1 incidents resolved in the period, median.
    TimeToRestoreMedianSev1,
    /// Resolution minus start of sev2 incidents resolved in the period, median.
    TimeToRestoreMedianSev2,
    /// Resolution minus start of sev3 incidents resolved in the period, median.
    TimeToRestoreMedianSev3,
    /// Resolution minus start of sev4 incidents resolved in the period, median.
    TimeToRestoreMedianSev4,
    /// Tickets resolved in the period (throughput).
    TicketsResolved,
    /// Tickets open at the end of the period.
    TicketBacklog,
    /// Resolution minus creation of tickets resolved in the period, median.
    TicketLeadTimeMedian,
    /// Resolution minus the first transition into the in-progress status category, of tickets resolved in the period, median.
    TicketCycleTimeMedian,
    /// Tickets resolved in the period whose lead time exceeded the resolution target of their priority, divided by tickets resolved in the period that have a target.
    SlaBreachRate,
    /// Tickets still open at the end of the period whose age already exceeds the resolution target of their priority.
    SlaOpenPastTarget,
    /// Tickets resolved in the period that later moved from the done category back to another, divided by tickets resolved in the period.
    TicketReopenRate,
    /// Change requests closed successful divided by all closed (successful, successful with issues, unsuccessful) in the period.
    ChangeSuccessRate,
    /// Emergency change requests divided by all change requests closed in the period.
    EmergencyChangeRatio,
    /// Production deployments in the period not covered by an approved change request of the same service (planned window ± tolerance) nor referenced by one.
    DeploymentsWithoutChangeRecord,
    /// Source records that could not be mapped and were quarantined, by when tandem saw them.
    QuarantinedRecords,
    /// Quarantined records whose reason code is `missing_field`.
    QuarantinedMissingField,
    /// Quarantined records whose reason code is `bad_timestamp`.
    QuarantinedBadTimestamp,
    /// Quarantined records whose reason code is `bad_value`.
    QuarantinedBadValue,
    /// Quarantined records whose reason code is `bad_shape`.
    QuarantinedBadShape,
    /// Quarantined records whose reason code is `unknown_reference`.
    QuarantinedUnknownReference,
    /// Merged changes linked to a deployment.
    ChangesDeployedShare,
    /// Incidents with a service.
    IncidentsMappedShare,
    /// Incidents attributed to a change.
    IncidentsAttributedShare,
    /// Records without a service.
    UnmappedRecords,
    /// Tickets (by creation) whose issue type tandem cannot classify: category `other`.
    TicketTypesUnclassified,
    /// Ticket status transitions (by when) from or to a status whose category is unknown.
    TicketTransitionsUnknownCategory,
    /// Change requests (by creation) whose approval the source does not say.
    ChangeRequestsApprovalUnknown,
    /// First deployments with no baseline.
    DeploymentsWithoutBaseline,
    /// Deployments marked stale: never finished.
    StaleDeployments,
    /// Median time from a failed production deployment to its remediation.
    FailedDeploymentRecoveryMedian,
    /// Days with at least one production deployment.
    DeployDays,
    /// Median over the ISO weeks of the range of the days with a production deployment (DORA `w`).
    DeployDaysWeeklyMedian,
    /// Median over the calendar months of the range of the days with a production deployment
    /// (DORA `m`).
    DeployDaysMonthlyMedian,
    /// Production deployments that contain rework (a revert, a hotfix, a fix of an incident or
    /// bug ticket), divided by production deployments.
    ReworkRate,
    /// Changes merged in the period.
    ChangesMerged,
    /// Lead time: coding (median).
    LeadTimeCodingMedian,
    /// Lead time: review (median).
    LeadTimeReviewMedian,
    /// Lead time: deploy wait (median).
    LeadTimeDeployWaitMedian,
    /// Failed production deployments finished in the period.
    FailedDeploymentCount,
    /// Incidents started in the period.
    IncidentsOpened,
    /// Incidents resolved in the period.
    IncidentsResolved,
    /// Tickets resolved in the period past their priority's resolution target.
    SlaBreaches,
    /// Resolution minus start of sev1 incidents resolved in the period, mean.
    TimeToRestoreMeanSev1,
    /// Resolution minus start of sev2 incidents resolved in the period, mean.
    TimeToRestoreMeanSev2,
    /// Resolution minus start of sev3 incidents resolved in the period, mean.
    TimeToRestoreMeanSev3,
    /// Resolution minus start of sev4 incidents resolved in the period, mean.
    TimeToRestoreMeanSev4,
    /// Tickets of category `incident` resolved in the period.
    TicketsResolvedIncident,
    /// Tickets of category `request` resolved in the period.
    TicketsResolvedRequest,
    /// Tickets of category `change` resolved in the period.
    TicketsResolvedChange,
    /// Tickets of category `problem` resolved in the period.
    TicketsResolvedProblem,
    /// Tickets of category `bug` resolved in the period.
    TicketsResolvedBug,
    /// Tickets of category `task` resolved in the period.
    TicketsResolvedTask,
    /// Tickets of category `story` resolved in the period.
    TicketsResolvedStory,
    /// Merged changes linked to a deployment by commit ancestry.
    ChangesLinkedAncestryShare,
    /// Merged changes linked to a deployment by time (commits unknown).
    ChangesLinkedTimeShare,
    /// Deployed changes with a negative lead time or stage span, left out of the medians.
    ChangesNegativeSpans,
    /// Lead time for changes, 90th percentile.
    LeadTimeP90,
    /// Time to restore of incidents resolved in the period, 90th percentile.
    TimeToRestoreP90,
    /// Incidents attributed through a cause they name.
    IncidentsAttributedExplicitShare,
    /// Incidents attributed by the window.
    IncidentsAttributedWindowShare,
}

impl MetricId {
    /// The core DORA and downtime set, computed together by the weekly pipeline.
    pub const CORE: [MetricId; 7] = [
        Self::DeploymentCount,
        Self::DeploymentFrequency,
        Self::LeadTimeMedian,
        Self::ChangeFailureRate,
        Self::TimeToRestoreMedian,
        Self::TimeToRestoreMean,
        Self::DowntimeMinutes,
    ];

    /// Operations metrics beyond the core set.
    pub const OPS: [MetricId; 20] = [
        Self::TimeToRestoreP90,
        Self::TimeToAcknowledgeMedian,
        Self::TimeToAcknowledgeMean,
        Self::TimeBetweenFailuresMean,
        Self::TimeBetweenFailuresMedian,
        Self::Availability,
        Self::ErrorBudgetConsumed,
        Self::DowntimeAnyServiceMinutes,
        Self::ChangeCausedDowntimeMinutes,
        Self::DeploymentsDowntimeCorrelation,
        Self::TimeToRestoreMedianSev1,
        Self::TimeToRestoreMedianSev2,
        Self::TimeToRestoreMedianSev3,
        Self::TimeToRestoreMedianSev4,
        Self::TimeToRestoreMeanSev1,
        Self::TimeToRestoreMeanSev2,
        Self::TimeToRestoreMeanSev3,
        Self::TimeToRestoreMeanSev4,
        Self::IncidentsOpened,
        Self::IncidentsResolved,
    ];

    /// ITSM flow and change management metrics.
    pub const ITSM: [MetricId; 18] = [
        Self::TicketsResolved,
        Self::TicketsResolvedIncident,
        Self::TicketsResolvedRequest,
        Self::TicketsResolvedChange,
        Self::TicketsResolvedProblem,
        Self::TicketsResolvedBug,
        Self::TicketsResolvedTask,
        Self::TicketsResolvedStory,
        Self::TicketBacklog,
        Self::TicketLeadTimeMedian,
        Self::TicketCycleTimeMedian,
        Self::SlaBreachRate,
        Self::SlaBreaches,
        Self::SlaOpenPastTarget,
        Self::TicketReopenRate,
        Self::ChangeSuccessRate,
        Self::EmergencyChangeRatio,
        Self::DeploymentsWithoutChangeRecord,
    ];

    /// Measured outage durations and the figures computed from them: facts about the period,
    /// however few incidents made them, so never insufficient.
    pub const MEASURED: [MetricId; 5] = [
        Self::DowntimeMinutes,
        Self::DowntimeAnyServiceMinutes,
        Self::ChangeCausedDowntimeMinutes,
        Self::Availability,
        Self::ErrorBudgetConsumed,
    ];

    /// Data quality.
    pub const QUALITY: [MetricId; 20] = [
        Self::QuarantinedRecords,
        Self::QuarantinedMissingField,
        Self::QuarantinedBadTimestamp,
        Self::QuarantinedBadValue,
        Self::QuarantinedBadShape,
        Self::QuarantinedUnknownReference,
        Self::ChangesDeployedShare,
        Self::ChangesLinkedAncestryShare,
        Self::ChangesLinkedTimeShare,
        Self::ChangesNegativeSpans,
        Self::IncidentsMappedShare,
        Self::IncidentsAttributedShare,
        Self::IncidentsAttributedExplicitShare,
        Self::IncidentsAttributedWindowShare,
        Self::UnmappedRecords,
        Self::DeploymentsWithoutBaseline,
        Self::TicketTypesUnclassified,
        Self::TicketTransitionsUnknownCategory,
        Self::ChangeRequestsApprovalUnknown,
        Self::StaleDeployments,
    ];

    /// DORA beyond the core set.
    pub const DORA: [MetricId; 11] = [
        Self::LeadTimeP90,
        Self::FailedDeploymentCount,
        Self::FailedDeploymentRecoveryMedian,
        Self::DeployDays,
        Self::DeployDaysWeeklyMedian,
        Self::DeployDaysMonthlyMedian,
        Self::ReworkRate,
        Self::ChangesMerged,
        Self::LeadTimeCodingMedian,
        Self::LeadTimeReviewMedian,
        Self::LeadTimeDeployWaitMedian,
    ];

    /// Every metric, in report order.
    pub const ALL: [MetricId; 76] = [
        Self::DeploymentCount,
        Self::DeploymentFrequency,
        Self::ChangesMerged,
        Self::LeadTimeMedian,
        Self::LeadTimeP90,
        Self::LeadTimeCodingMedian,
        Self::LeadTimeReviewMedian,
        Self::LeadTimeDeployWaitMedian,
        Self::ChangeFailureRate,
        Self::FailedDeploymentCount,
        Self::FailedDeploymentRecoveryMedian,
        Self::DeployDays,
        Self::DeployDaysWeeklyMedian,
        Self::DeployDaysMonthlyMedian,
        Self::ReworkRate,
        Self::TimeToRestoreMedian,
        Self::TimeToRestoreMean,
        Self::TimeToRestoreP90,
        Self::DowntimeMinutes,
        Self::IncidentsOpened,
        Self::IncidentsResolved,
        Self::TimeToAcknowledgeMedian,
        Self::TimeToAcknowledgeMean,
        Self::TimeBetweenFailuresMean,
        Self::TimeBetweenFailuresMedian,
        Self::Availability,
        Self::ErrorBudgetConsumed,
        Self::DowntimeAnyServiceMinutes,
        Self::ChangeCausedDowntimeMinutes,
        Self::DeploymentsDowntimeCorrelation,
        Self::TimeToRestoreMedianSev1,
        Self::TimeToRestoreMedianSev2,
        Self::TimeToRestoreMedianSev3,
        Self::TimeToRestoreMedianSev4,
        Self::TimeToRestoreMeanSev1,
        Self::TimeToRestoreMeanSev2,
        Self::TimeToRestoreMeanSev3,
        Self::TimeToRestoreMeanSev4,
        Self::TicketsResolved,
        Self::TicketsResolvedIncident,
        Self::TicketsResolvedRequest,
        Self::TicketsResolvedChange,
        Self::TicketsResolvedProblem,
        Self::TicketsResolvedBug,
        Self::TicketsResolvedTask,
        Self::TicketsResolvedStory,
        Self::TicketBacklog,
        Self::TicketLeadTimeMedian,
        Self::TicketCycleTimeMedian,
        Self::SlaBreachRate,
        Self::SlaBreaches,
        Self::SlaOpenPastTarget,
        Self::TicketReopenRate,
        Self::ChangeSuccessRate,
        Self::EmergencyChangeRatio,
        Self::DeploymentsWithoutChangeRecord,
        Self::QuarantinedRecords,
        Self::QuarantinedMissingField,
        Self::QuarantinedBadTimestamp,
        Self::QuarantinedBadValue,
        Self::QuarantinedBadShape,
        Self::QuarantinedUnknownReference,
        Self::ChangesDeployedShare,
        Self::ChangesLinkedAncestryShare,
        Self::ChangesLinkedTimeShare,
        Self::ChangesNegativeSpans,
        Self::IncidentsMappedShare,
        Self::IncidentsAttributedShare,
        Self::IncidentsAttributedExplicitShare,
        Self::IncidentsAttributedWindowShare,
        Self::UnmappedRecords,
        Self::DeploymentsWithoutBaseline,
        Self::TicketTypesUnclassified,
        Self::TicketTransitionsUnknownCategory,
        Self::ChangeRequestsApprovalUnknown,
        Self::StaleDeployments,
    ];

    /// Stable id used in the metric table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeploymentCount => "deployment_count",
            Self::DeploymentFrequency => "deployment_frequency",
            Self::LeadTimeMedian => "lead_time_median",
            Self::ChangeFailureRate => "change_failure_rate",
            Self::TimeToRestoreMedian => "time_to_restore_median",
            Self::TimeToRestoreMean => "time_to_restore_mean",
            Self::DowntimeMinutes => "downtime_minutes",
            Self::DowntimeAnyServiceMinutes => "downtime_any_service_minutes",
            Self::TimeToAcknowledgeMedian => "time_to_acknowledge_median",
            Self::TimeToAcknowledgeMean => "time_to_acknowledge_mean",
            Self::TimeBetweenFailuresMean => "time_between_failures_mean",
            Self::TimeBetweenFailuresMedian => "time_between_failures_median",
            Self::Availability => "availability",
            Self::ErrorBudgetConsumed => "error_budget_consumed",
            Self::ChangeCausedDowntimeMinutes => "change_caused_downtime_minutes",
            Self::DeploymentsDowntimeCorrelation => "deployments_downtime_correlation",
            Self::TimeToRestoreMedianSev1 => "time_to_restore_median_sev1",
            Self::TimeToRestoreMedianSev2 => "time_to_restore_median_sev2",
            Self::TimeToRestoreMedianSev3 => "time_to_restore_median_sev3",
            Self::TimeToRestoreMedianSev4 => "time_to_restore_median_sev4",
            Self::TicketsResolved => "tickets_resolved",
            Self::TicketBacklog => "ticket_backlog",
            Self::TicketLeadTimeMedian => "ticket_lead_time_median",
            Self::TicketCycleTimeMedian => "ticket_cycle_time_median",
            Self::SlaBreachRate => "sla_breach_rate",
            Self::SlaOpenPastTarget => "sla_open_past_target",
            Self::TicketReopenRate => "ticket_reopen_rate",
            Self::ChangeSuccessRate => "change_success_rate",
            Self::EmergencyChangeRatio => "emergency_change_ratio",
            Self::DeploymentsWithoutChangeRecord => "deployments_without_change_record",
            Self::QuarantinedRecords => "quarantined_records",
            Self::QuarantinedMissingField => "quarantined_missing_field",
            Self::QuarantinedBadTimestamp => "quarantined_bad_timestamp",
            Self::QuarantinedBadValue => "quarantined_bad_value",
            Self::QuarantinedBadShape => "quarantined_bad_shape",
            Self::QuarantinedUnknownReference => "quarantined_unknown_reference",
            Self::ChangesDeployedShare => "changes_deployed_share",
            Self::IncidentsMappedShare => "incidents_mapped_share",
            Self::IncidentsAttributedShare => "incidents_attributed_share",
            Self::UnmappedRecords => "unmapped_records",
            Self::DeploymentsWithoutBaseline => "deployments_without_baseline",
            Self::TicketTypesUnclassified => "ticket_types_unclassified",
            Self::TicketTransitionsUnknownCategory => "ticket_transitions_unknown_category",
            Self::ChangeRequestsApprovalUnknown => "change_requests_approval_unknown",
            Self::StaleDeployments => "stale_deployments",

            Self::FailedDeploymentRecoveryMedian => "failed_deployment_recovery_median",
            Self::DeployDays => "deploy_days",
            Self::DeployDaysWeeklyMedian => "deploy_days_weekly_median",
            Self::DeployDaysMonthlyMedian => "deploy_days_monthly_median",
            Self::ReworkRate => "rework_rate",
            Self::ChangesMerged => "changes_merged",
            Self::LeadTimeCodingMedian => "lead_time_coding_median",
            Self::LeadTimeReviewMedian => "lead_time_review_median",
            Self::LeadTimeDeployWaitMedian => "lead_time_deploy_wait_median",
            Self::FailedDeploymentCount => "failed_deployment_count",
            Self::IncidentsOpened => "incidents_opened",
            Self::IncidentsResolved => "incidents_resolved",
            Self::SlaBreaches => "sla_breaches",
            Self::TimeToRestoreMeanSev1 => "time_to_restore_mean_sev1",
            Self::TimeToRestoreMeanSev2 => "time_to_restore_mean_sev2",
            Self::TimeToRestoreMeanSev3 => "time_to_restore_mean_sev3",
            Self::TimeToRestoreMeanSev4 => "time_to_restore_mean_sev4",
            Self::TicketsResolvedIncident => "tickets_resolved_incident",
            Self::TicketsResolvedRequest => "tickets_resolved_request",
            Self::TicketsResolvedChange => "tickets_resolved_change",
            Self::TicketsResolvedProblem => "tickets_resolved_problem",
            Self::TicketsResolvedBug => "tickets_resolved_bug",
            Self::TicketsResolvedTask => "tickets_resolved_task",
            Self::TicketsResolvedStory => "tickets_resolved_story",
            Self::ChangesLinkedAncestryShare => "changes_linked_ancestry_share",
            Self::ChangesLinkedTimeShare => "changes_linked_time_share",
            Self::ChangesNegativeSpans => "changes_negative_spans",
            Self::LeadTimeP90 => "lead_time_p90",
            Self::TimeToRestoreP90 => "time_to_restore_p90",
            Self::IncidentsAttributedExplicitShare => "incidents_attributed_explicit_share",
            Self::IncidentsAttributedWindowShare => "incidents_attributed_window_share",
        }
    }

    /// Unit of the value.
    pub fn unit(self) -> &'static str {
        match self {
            Self::DeploymentCount => "count",
            Self::DeploymentFrequency => "per_day",
            Self::LeadTimeMedian
            | Self::TimeToRestoreMedian
            | Self::TimeToRestoreMean
            | Self::FailedDeploymentRecoveryMedian
            | Self::LeadTimeCodingMedian
            | Self::LeadTimeReviewMedian
            | Self::LeadTimeDeployWaitMedian => "hours",
            Self::ChangeFailureRate => "ratio",
            Self::DowntimeMinutes | Self::DowntimeAnyServiceMinutes => "minutes",
            Self::TimeToAcknowledgeMedian
            | Self::TimeToAcknowledgeMean
            | Self::TimeBetweenFailuresMean
            | Self::TimeBetweenFailuresMedian
            | Self::TimeToRestoreMedianSev1
            | Self::TimeToRestoreMedianSev2
            | Self::TimeToRestoreMedianSev3
            | Self::TimeToRestoreMedianSev4
            | Self::TimeToRestoreMeanSev1
            | Self::TimeToRestoreMeanSev2
            | Self::TimeToRestoreMeanSev3
            | Self::TimeToRestoreMeanSev4
            | Self::LeadTimeP90
            | Self::TimeToRestoreP90
            | Self::TicketLeadTimeMedian
            | Self::TicketCycleTimeMedian => "hours",
            Self::Availability
            | Self::ErrorBudgetConsumed
            | Self::SlaBreachRate
            | Self::TicketReopenRate
            | Self::ChangeSuccessRate
            | Self::EmergencyChangeRatio => "ratio",
            Self::ChangeCausedDowntimeMinutes => "minutes",
            Self::DeploymentsDowntimeCorrelation => "coefficient",
            Self::TicketsResolved
            | Self::TicketBacklog
            | Self::SlaOpenPastTarget
            | Self::DeploymentsWithoutChangeRecord
            | Self::QuarantinedRecords
            | Self::QuarantinedMissingField
            | Self::QuarantinedBadTimestamp
            | Self::QuarantinedBadValue
            | Self::QuarantinedBadShape
            | Self::QuarantinedUnknownReference
            | Self::UnmappedRecords
            | Self::DeploymentsWithoutBaseline
            | Self::TicketTypesUnclassified
            | Self::TicketTransitionsUnknownCategory
            | Self::ChangeRequestsApprovalUnknown
            | Self::StaleDeployments
            | Self::DeployDays
            | Self::DeployDaysWeeklyMedian
            | Self::DeployDaysMonthlyMedian
            | Self::ChangesMerged
            | Self::FailedDeploymentCount
            | Self::IncidentsOpened
            | Self::IncidentsResolved
            | Self::SlaBreaches
            | Self::TicketsResolvedIncident
            | Self::TicketsResolvedRequest
            | Self::TicketsResolvedChange
            | Self::TicketsResolvedProblem
            | Self::TicketsResolvedBug
            | Self::TicketsResolvedTask
            | Self::TicketsResolvedStory
            | Self::ChangesNegativeSpans => "count",
            Self::ChangesDeployedShare
            | Self::IncidentsMappedShare
            | Self::IncidentsAttributedShare
            | Self::ChangesLinkedAncestryShare
            | Self::ChangesLinkedTimeShare
            | Self::IncidentsAttributedExplicitShare
            | Self::IncidentsAttributedWindowShare
            | Self::ReworkRate => "ratio",
        }
    }

    /// Name a reader understands.
    pub fn title(self) -> &'static str {
        match self {
            Self::DeploymentCount => "Production deployments",
            Self::DeploymentFrequency => "Deployment frequency",
            Self::LeadTimeMedian => "Lead time for changes (median)",
            Self::ChangeFailureRate => "Change failure rate",
            Self::TimeToRestoreMedian => "Time to restore (median)",
            Self::TimeToRestoreMean => "Time to restore (mean)",
            Self::DowntimeMinutes => "Downtime",
            Self::DowntimeAnyServiceMinutes => "Minutes with any service down",
            Self::TimeToAcknowledgeMedian => "Time to acknowledge (median)",
            Self::TimeToAcknowledgeMean => "Time to acknowledge (mean)",
            Self::TimeBetweenFailuresMean => "Time between failures (mean)",
            Self::TimeBetweenFailuresMedian => "Time between failures (median)",
            Self::Availability => "Availability",
            Self::ErrorBudgetConsumed => "Error budget consumed",
            Self::ChangeCausedDowntimeMinutes => "Change-caused downtime",
            Self::DeploymentsDowntimeCorrelation => "Deployments vs downtime (Spearman)",
            Self::TimeToRestoreMedianSev1 => "Time to restore, sev1 (median)",
            Self::TimeToRestoreMedianSev2 => "Time to restore, sev2 (median)",
            Self::TimeToRestoreMedianSev3 => "Time to restore, sev3 (median)",
            Self::TimeToRestoreMedianSev4 => "Time to restore, sev4 (median)",
            Self::TicketsResolved => "Tickets resolved",
            Self::TicketBacklog => "Ticket backlog",
            Self::TicketLeadTimeMedian => "Ticket lead time (median)",
            Self::TicketCycleTimeMedian => "Ticket cycle time (median)",
            Self::SlaBreachRate => "SLA breach rate",
            Self::SlaOpenPastTarget => "Open tickets past target",
            Self::TicketReopenRate => "Reopen rate",
            Self::ChangeSuccessRate => "Change success rate",
            Self::EmergencyChangeRatio => "Emergency change ratio",
            Self::DeploymentsWithoutChangeRecord => "Deployments without a change record",
            Self::QuarantinedRecords => "Quarantined records",
            Self::QuarantinedMissingField => "Quarantined: missing field",
            Self::QuarantinedBadTimestamp => "Quarantined: bad timestamp",
            Self::QuarantinedBadValue => "Quarantined: bad value",
            Self::QuarantinedBadShape => "Quarantined: bad shape",
            Self::QuarantinedUnknownReference => "Quarantined: unknown reference",
            Self::ChangesDeployedShare => "Merged changes linked to a deployment",
            Self::IncidentsMappedShare => "Incidents with a service",
            Self::IncidentsAttributedShare => "Incidents attributed to a change",
            Self::UnmappedRecords => "Records without a service",
            Self::DeploymentsWithoutBaseline => "First deployments with no baseline",
            Self::TicketTypesUnclassified => "Tickets of an unclassified type",
            Self::TicketTransitionsUnknownCategory => "Transitions with an unknown status category",
            Self::ChangeRequestsApprovalUnknown => "Change requests with unknown approval",
            Self::StaleDeployments => "Deployments that never finished",

            Self::FailedDeploymentRecoveryMedian => "Failed deployment recovery time (median)",
            Self::DeployDays => "Days with a production deployment",
            Self::DeployDaysWeeklyMedian => "Deploy days per week (median)",
            Self::DeployDaysMonthlyMedian => "Deploy days per month (median)",
            Self::ReworkRate => "Rework rate",
            Self::ChangesMerged => "Changes merged",
            Self::LeadTimeCodingMedian => "Lead time: coding (median)",
            Self::LeadTimeReviewMedian => "Lead time: review (median)",
            Self::LeadTimeDeployWaitMedian => "Lead time: deploy wait (median)",
            Self::FailedDeploymentCount => "Failed deployments",
            Self::IncidentsOpened => "Incidents opened",
            Self::IncidentsResolved => "Incidents resolved",
            Self::SlaBreaches => "SLA breaches",
            Self::TimeToRestoreMeanSev1 => "Time to restore, sev1 (mean)",
            Self::TimeToRestoreMeanSev2 => "Time to restore, sev2 (mean)",
            Self::TimeToRestoreMeanSev3 => "Time to restore, sev3 (mean)",
            Self::TimeToRestoreMeanSev4 => "Time to restore, sev4 (mean)",
            Self::TicketsResolvedIncident => "Tickets resolved: incident",
            Self::TicketsResolvedRequest => "Tickets resolved: request",
            Self::TicketsResolvedChange => "Tickets resolved: change",
            Self::TicketsResolvedProblem => "Tickets resolved: problem",
            Self::TicketsResolvedBug => "Tickets resolved: bug",
            Self::TicketsResolvedTask => "Tickets resolved: task",
            Self::TicketsResolvedStory => "Tickets resolved: story",
            Self::ChangesLinkedAncestryShare => "Merged changes linked by commit ancestry",
            Self::ChangesLinkedTimeShare => "Merged changes linked by time",
            Self::ChangesNegativeSpans => "Deployed changes with a negative span",
            Self::LeadTimeP90 => "Lead time for changes (p90)",
            Self::TimeToRestoreP90 => "Time to restore (p90)",
            Self::IncidentsAttributedExplicitShare => "Incidents attributed to a cause they name",
            Self::IncidentsAttributedWindowShare => "Incidents attributed by the window",
        }
    }

    /// The definition the glossary prints (after the project's metric definitions).
    pub fn definition(self) -> &'static str {
        match self {
            Self::DeploymentCount => {
                "Successful deployments to a production environment, counted in the period their final status was reached."
            }
            Self::DeploymentFrequency => {
                "Production deployments in the period divided by the days in it (7 for a week)."
            }
            Self::LeadTimeMedian => {
                "For each merged change, the first successful production deployment containing it minus the change's first commit (its opening when that is unknown); median over changes deployed in the period. A deployment contains a change when its known commits include the change's merge commit (method ancestry); where they are unknown, the first production deployment of the repo with unknown commits finished at or after the merge (method time)."
            }
            Self::ChangeFailureRate => {
                "Failed production deployments divided by production deployments in the period. A deployment failed when an incident is attributed to it (first the deployment the incident names: by id, by a commit sha of 7+ hex digits, by a change number (a deployment that shipped the change) or by a change request (a production deployment of its service within its window); of several, the latest that finished at or before the incident started, and never one that finished after it; else the latest production deployment of the same service that finished within 24 hours before the incident started) or it was rolled back (the same service redeployed to an earlier sha within 7 days) or one of its changes was reverted by a change that was itself deployed."
            }
            Self::TimeToRestoreMedian => {
                "Resolution minus start of incidents resolved in the period, median."
            }
            Self::TimeToRestoreMean => "Resolution minus start of incidents resolved in the period, mean.",
            Self::DowntimeMinutes => {
                "Per service, the union of the intervals [start, resolution) of its sev1–sev2 incidents, overlaps merged, open incidents running to the period's end, clipped to the period; for a team or the organisation, the sum of its services' downtime."
            }
            Self::TimeToAcknowledgeMedian => {
                "First acknowledgement minus start, of incidents acknowledged in the period; median."
            }
            Self::TimeToAcknowledgeMean => {
                "First acknowledgement minus start, of incidents acknowledged in the period; mean (MTTA)."
            }
            Self::TimeBetweenFailuresMean => {
                "Per service, the gap between consecutive starts of outage-severity incidents, for gaps ending in the period; mean (MTBF)."
            }
            Self::TimeBetweenFailuresMedian => {
                "Per service, the gap between consecutive starts of outage-severity incidents, for gaps ending in the period; median."
            }
            Self::Availability => {
                "One minus downtime divided by the period's length. For a team or the organisation it is service-weighted: one minus the sum of its services' downtime divided by (services × the period's length), the mean of its services' availabilities; every service counts, one without incidents as fully available."
            }
            Self::DowntimeAnyServiceMinutes => {
                "Minutes in the period during which at least one service of the scope was down: the union of the outage intervals across its services (for the organisation, also outages with no service). With many services it nears the whole period; downtime and availability use the sum per service instead."
            }
            Self::ErrorBudgetConsumed => {
                "Downtime divided by the error budget, (1 − SLO) × the period's length; above 100% the budget is spent. For a team or the organisation, the sum of its services' downtime divided by the sum of their budgets (each service's own SLO, else the default)."
            }
            Self::ChangeCausedDowntimeMinutes => {
                "Downtime counted over incidents attributed to a deployment only: per service the union of their intervals, clipped to the period; for a team or the organisation, the sum over its services."
            }
            Self::DeploymentsDowntimeCorrelation => {
                "Spearman's rank correlation between weekly production deployments and weekly downtime minutes over the range; n is the number of weeks."
            }
            Self::TimeToRestoreMedianSev1 => {
                "Resolution minus start of sev1 incidents resolved in the period, median."
            }
            Self::TimeToRestoreMedianSev2 => {
                "Resolution minus start of sev2 incidents resolved in the period, median."
            }
            Self::TimeToRestoreMedianSev3 => {
                "Resolution minus start of sev3 incidents resolved in the period, median."
            }
            Self::TimeToRestoreMedianSev4 => {
                "Resolution minus start of sev4 incidents resolved in the period, median."
            }
            Self::TicketsResolved => "Tickets resolved in the period (throughput).",
            Self::TicketBacklog => "Tickets open at the end of the period.",
            Self::TicketLeadTimeMedian => {
                "Resolution minus creation of tickets resolved in the period, median."
            }
            Self::TicketCycleTimeMedian => {
                "Resolution minus the first transition into the in-progress status category, of tickets resolved in the period, median."
            }
            Self::SlaBreachRate => {
                "Tickets resolved in the period whose lead time exceeded the resolution target of their priority, divided by tickets resolved in the period that have a target."
            }
            Self::SlaOpenPastTarget => {
                "Tickets still open at the end of the period whose age already exceeds the resolution target of their priority."
            }
            Self::TicketReopenRate => {
                "Tickets resolved in the period that later moved from the done category back to another, divided by tickets resolved in the period."
            }
            Self::ChangeSuccessRate => {
                "Change requests closed successful divided by all closed (successful, successful with issues, unsuccessful) in the period."
            }
            Self::EmergencyChangeRatio => {
                "Emergency change requests divided by all change requests closed in the period."
            }
            Self::DeploymentsWithoutChangeRecord => {
                "Production deployments in the period not covered by an approved change request of the same service (planned window ± tolerance) nor referenced by one."
            }
            Self::FailedDeploymentRecoveryMedian => {
                "For each failed production deployment, its remediation minus its finish: the latest resolution of the incidents attributed to it, or, without one, the finish of the first deployment that undid it: a rollback (the same service redeployed to an earlier sha within 7 days) or the deployment of a revert of one of its changes; median over failed deployments that finished in the period and have been remediated."
            }
            Self::DeployDaysWeeklyMedian => {
                "Whole range only: the median, over every ISO week the range touches (clipped to the range, empty weeks included), of the distinct days (in the report time zone) with a production deployment; DORA's deployment-frequency input w, whatever the grain. n is the number of weeks; its tier (dora-2023) is elite for w ≥ 5, high for w ≥ 1, else medium when the monthly median m ≥ 1, else low."
            }
            Self::DeployDaysMonthlyMedian => {
                "Whole range only: the median, over every calendar month the range touches (clipped to the range, empty months included), of the distinct days (in the report time zone) with a production deployment; DORA's deployment-frequency input m, which separates medium (m ≥ 1) from low when w < 1. n is the number of months."
            }
            Self::DeployDays => {
                "Distinct days (in the report time zone) with at least one production deployment in the period; for the whole range, the median over its periods, empty ones included (DORA's deployment-frequency input w for weeks)."
            }
            Self::ChangesDeployedShare => {
                "Merged changes (by merge time) linked to the production deployment that shipped them (by commit ancestry, else by time), divided by merged changes."
            }
            Self::IncidentsMappedShare => {
                "Incidents (by start) whose source service maps to a service, divided by incidents."
            }
            Self::IncidentsAttributedShare => {
                "Incidents (by start) attributed to a production deployment, divided by incidents."
            }
            Self::UnmappedRecords => {
                "Deployments, changes and incidents in the period whose repo or service reference maps to no configured service."
            }
            Self::DeploymentsWithoutBaseline => {
                "Production deployments that are the first of their repo in the data: no earlier deployment to compare against, so their changes cannot be linked by ancestry."
            }
            Self::TicketTypesUnclassified => {
                "Tickets created in the period whose issue type tandem cannot classify (category `other`): map them with the Jira source's `issue_types`."
            }
            Self::TicketTransitionsUnknownCategory => {
                "Status transitions in the period from or to a status whose category neither the status list nor any issue gives (a deleted status); left without a category, never guessed."
            }
            Self::ChangeRequestsApprovalUnknown => {
                "Change requests created in the period whose approval the source does not say (ServiceNow `approval` empty or unreadable, a Jira change not yet started); they cover no deployment."
            }
            Self::StaleDeployments => {
                "Deployments (by creation) still unfinished when their source stopped asking, `stale_after_days` (default 7) after they began: neither deployed nor failed, so they count in no other metric."
            }
            Self::ReworkRate => {
                "Production deployments that shipped a revert, a change labelled as a hotfix (configurable labels) or a change whose title names an incident or bug ticket by its key, divided by production deployments in the period (DORA 2024)."
            }
            Self::LeadTimeCodingMedian => {
                "Opening minus first commit of changes deployed in the period (by the deploying deployment's finish), median; negative spans are left out."
            }
            Self::LeadTimeReviewMedian => "Merge minus opening of changes deployed in the period, median.",
            Self::LeadTimeDeployWaitMedian => {
                "Deployment finish minus merge of changes deployed in the period, median."
            }
            Self::ChangesMerged => {
                "Pull and merge requests merged in the period: the change velocity set beside deployments and downtime."
            }
            Self::FailedDeploymentCount => {
                "Production deployments finished in the period that failed, by the change failure rate's rule (an attributed incident, a rollback within 7 days, or a deployed revert of one of its changes); n is the production deployments."
            }
            Self::IncidentsOpened => "Incidents (from the incident sources) that started in the period.",
            Self::IncidentsResolved => "Incidents (from the incident sources) resolved in the period.",
            Self::SlaBreaches => {
                "Tickets resolved in the period whose lead time exceeded the resolution target of their priority; n is the tickets resolved in the period that have a target."
            }
            Self::TimeToRestoreMeanSev1 => {
                "Resolution minus start of sev1 incidents resolved in the period, mean (MTTR), beside the median."
            }
            Self::TimeToRestoreMeanSev2 => {
                "Resolution minus start of sev2 incidents resolved in the period, mean (MTTR), beside the median."
            }
            Self::TimeToRestoreMeanSev3 => {
                "Resolution minus start of sev3 incidents resolved in the period, mean (MTTR), beside the median."
            }
            Self::TimeToRestoreMeanSev4 => {
                "Resolution minus start of sev4 incidents resolved in the period, mean (MTTR), beside the median."
            }
            Self::TicketsResolvedIncident => {
                "Tickets of category `incident` resolved in the period (throughput by category)."
            }
            Self::TicketsResolvedRequest => {
                "Tickets of category `request` resolved in the period (throughput by category)."
            }
            Self::TicketsResolvedChange => {
                "Tickets of category `change` resolved in the period (throughput by category)."
            }
            Self::TicketsResolvedProblem => {
                "Tickets of category `problem` resolved in the period (throughput by category)."
            }
            Self::TicketsResolvedBug => {
                "Tickets of category `bug` resolved in the period (throughput by category)."
            }
            Self::TicketsResolvedTask => {
                "Tickets of category `task` resolved in the period (throughput by category)."
            }
            Self::TicketsResolvedStory => {
                "Tickets of category `story` resolved in the period (throughput by category)."
            }
            Self::ChangesLinkedAncestryShare => {
                "Merged changes (by merge time) whose merge commit is among a production deployment's known commits (the first such deployment shipped it), divided by merged changes."
            }
            Self::ChangesLinkedTimeShare => {
                "Merged changes (by merge time) linked by time because no known commits contain them (the first production deployment of the repo with unknown commits finished at or after the merge), divided by merged changes."
            }
            Self::ChangesNegativeSpans => {
                "Changes deployed in the period (by the shipping deployment's finish) with a negative span — lead time, coding, review or deploy wait (a merge after the deployment that contains it, a first commit after the opening) — which the medians leave out."
            }
            Self::LeadTimeP90 => {
                "The 90th percentile (linear interpolation) of the lead times behind the median lead time for changes, over changes deployed in the period."
            }
            Self::TimeToRestoreP90 => {
                "The 90th percentile (linear interpolation) of resolution minus start of incidents resolved in the period."
            }
            Self::IncidentsAttributedExplicitShare => {
                "Incidents (by start) attributed to the production deployment they name (by id, commit sha, change number or change request), divided by incidents."
            }
            Self::IncidentsAttributedWindowShare => {
                "Incidents (by start) attributed by the window (the latest production deployment of their service within the attribution window before they started; DevLake's rule in that mode), divided by incidents."
            }
            Self::QuarantinedMissingField => {
                "Quarantined records whose reason code is missing_field (a field the record needs is absent, null or empty), counted as quarantined_records is: per period by when they were seen; for the whole range, every such record in quarantine now."
            }
            Self::QuarantinedBadTimestamp => {
                "Quarantined records whose reason code is bad_timestamp (a time field that does not parse), counted as quarantined_records is: per period by when they were seen; for the whole range, every such record in quarantine now."
            }
            Self::QuarantinedBadValue => {
                "Quarantined records whose reason code is bad_value (a value tandem does not understand: an unknown state, a wrong type), counted as quarantined_records is: per period by when they were seen; for the whole range, every such record in quarantine now."
            }
            Self::QuarantinedBadShape => {
                "Quarantined records whose reason code is bad_shape (not the expected shape: not a JSON object, a CSV row with too many cells, an unknown column, a row that does not deserialize), counted as quarantined_records is: per period by when they were seen; for the whole range, every such record in quarantine now."
            }
            Self::QuarantinedUnknownReference => {
                "Quarantined records whose reason code is unknown_reference (the record refers to something the source no longer knows: a deployment whose compare answers not found, its commits gone), counted as quarantined_records is: per period by when they were seen; for the whole range, every such record in quarantine now."
            }
            Self::QuarantinedRecords => {
                "Source records tandem could not map (an unparsable time, a missing key, an unknown value) and kept aside with their reason in the quarantine table: per week by when they were seen; for the whole range, every record in quarantine now."
            }
        }
    }

    /// The canonical tables a metric is computed from: a period that a source feeding one of
    /// them does not cover (it failed, never synced, or its history starts later) has no value
    /// for the metric, with the reason (metrics.md, "Sources that did not sync"). Data-quality
    /// figures read none: they describe what the lake holds, whatever it holds.
    pub fn inputs(self) -> &'static [&'static str] {
        const DEPLOYMENTS: &[&str] = &["deployments"];
        const CHANGES: &[&str] = &["changes"];
        const DELIVERY: &[&str] = &["deployments", "changes"];
        const FAILURES: &[&str] = &["deployments", "changes", "incidents"];
        const INCIDENTS: &[&str] = &["incidents"];
        const CHANGE_CAUSED: &[&str] = &["deployments", "incidents"];
        const TICKETS: &[&str] = &["tickets"];
        const FLOW: &[&str] = &["tickets", "ticket_transitions"];
        const CHANGE_REQUESTS: &[&str] = &["change_requests"];
        const GOVERNANCE: &[&str] = &["deployments", "change_requests"];
        if Self::QUALITY.contains(&self) {
            return &[];
        }
        match self {
            Self::DeploymentCount
            | Self::DeploymentFrequency
            | Self::DeployDays
            | Self::DeployDaysWeeklyMedian
            | Self::DeployDaysMonthlyMedian => DEPLOYMENTS,
            Self::ChangesMerged => CHANGES,
            Self::LeadTimeMedian
            | Self::LeadTimeP90
            | Self::LeadTimeCodingMedian
            | Self::LeadTimeReviewMedian
            | Self::LeadTimeDeployWaitMedian
            | Self::ReworkRate => DELIVERY,
            Self::ChangeFailureRate | Self::FailedDeploymentCount | Self::FailedDeploymentRecoveryMedian => {
                FAILURES
            }
            Self::ChangeCausedDowntimeMinutes | Self::DeploymentsDowntimeCorrelation => CHANGE_CAUSED,
            Self::TicketCycleTimeMedian | Self::TicketReopenRate => FLOW,
            Self::ChangeSuccessRate | Self::EmergencyChangeRatio => CHANGE_REQUESTS,
            Self::DeploymentsWithoutChangeRecord => GOVERNANCE,
            m if Self::ITSM.contains(&m) => TICKETS,
            _ => INCIDENTS,
        }
    }

    /// The quarantine reason code a `quarantined_<code>` metric counts.
    pub fn quarantine_code(self) -> Option<ReasonCode> {
        match self {
            Self::QuarantinedMissingField => Some(ReasonCode::MissingField),
            Self::QuarantinedBadTimestamp => Some(ReasonCode::BadTimestamp),
            Self::QuarantinedBadValue => Some(ReasonCode::BadValue),
            Self::QuarantinedBadShape => Some(ReasonCode::BadShape),
            Self::QuarantinedUnknownReference => Some(ReasonCode::UnknownReference),
            _ => None,
        }
    }

    /// Whether the value is a statistic of a sample of `n` items — a median, mean or percentile of
    /// durations, a rate or share of them, a correlation over `n` weeks — and so *insufficient
    /// data* below 5 items. Figures that are not samples are exempt, whatever their `n`:
    /// - measured durations ([`Self::MEASURED`]: downtime, availability, error budget consumed),
    ///   whose `n` counts the outage incidents behind them, so a service without outages is
    ///   measured 100% available, not unknown;
    /// - counts (deployments, merged changes, incidents, tickets, breaches, deploy days) and
    ///   deployment frequency, a count per day of the period;
    /// - data-quality figures ([`Self::QUALITY`]), facts about the data rather than estimates.
    pub fn is_sample(self) -> bool {
        let count = matches!(
            self,
            Self::DeploymentCount
                | Self::DeploymentFrequency
                | Self::ChangesMerged
                | Self::FailedDeploymentCount
                | Self::DeployDays
                | Self::IncidentsOpened
                | Self::IncidentsResolved
                | Self::TicketsResolved
                | Self::TicketsResolvedIncident
                | Self::TicketsResolvedRequest
                | Self::TicketsResolvedChange
                | Self::TicketsResolvedProblem
                | Self::TicketsResolvedBug
                | Self::TicketsResolvedTask
                | Self::TicketsResolvedStory
                | Self::TicketBacklog
                | Self::SlaBreaches
                | Self::SlaOpenPastTarget
                | Self::DeploymentsWithoutChangeRecord
        );
        !(count || Self::MEASURED.contains(&self) || Self::QUALITY.contains(&self))
    }

    /// Looks an id up by its stable name.
    pub fn parse(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == id)
    }
}

impl MetricRow {
    /// The DORA tier of a whole-range row (`dora-2023` thresholds): lead time, change failure
    /// rate and failed deployment recovery time only; `None` for other metrics and for `n < 5`.
    /// The deployment-frequency tier needs two rows: see [`Self::tier_among`].
    pub fn tier(&self) -> Option<&'static str> {
        use super::tiers::{DEFAULT_THRESHOLDS, TierInput, thresholds};
        let value = self.value?;
        let input = match MetricId::parse(&self.metric)? {
            MetricId::LeadTimeMedian => TierInput::LeadTimeHours(value),
            MetricId::ChangeFailureRate => TierInput::ChangeFailureRate(value),
            MetricId::FailedDeploymentRecoveryMedian => TierInput::RecoveryHours(value),
            _ => return None,
        };
        thresholds(DEFAULT_THRESHOLDS)?
            .tier(input, self.n)
            .map(|t| t.as_str())
    }

    /// The DORA tier of a whole-range row among the rows of its metric table: as [`Self::tier`],
    /// and for `deploy_days_weekly_median` (`w`) the deployment-frequency tier, which also reads
    /// the same scope's `deploy_days_monthly_median` (`m`): elite for `w ≥ 5`, high for `w ≥ 1`,
    /// medium for `m ≥ 1`, else low; `None` for fewer than 5 weeks.
    pub fn tier_among(&self, rows: &[MetricRow]) -> Option<&'static str> {
        use super::tiers::{DEFAULT_THRESHOLDS, TierInput, thresholds};
        if self.metric != MetricId::DeployDaysWeeklyMedian.as_str() {
            return self.tier();
        }
        let monthly = rows.iter().find(|r| {
            r.metric == MetricId::DeployDaysMonthlyMedian.as_str()
                && (&r.grain, &r.scope_type, &r.scope) == (&self.grain, &self.scope_type, &self.scope)
        })?;
        let input = TierInput::DeployDays {
            weekly: self.value?,
            monthly: monthly.value?,
        };
        thresholds(DEFAULT_THRESHOLDS)?
            .tier(input, self.n)
            .map(|t| t.as_str())
    }

    /// The value formatted with its unit for people (see [`format_value`]); [`NO_DATA`] where
    /// the inputs do not cover the period (the reason is in [`Self::no_data`]).
    pub fn display_value(&self) -> String {
        if self.no_data.is_some() {
            return NO_DATA.to_owned();
        }
        format_value(self.value, &self.unit)
    }
}

/// Shown where a metric has no value.
pub const MISSING: &str = "—";

/// Shown where a metric's inputs do not cover the period; the row's `no_data` says why.
pub const NO_DATA: &str = "no data";

/// Formats a value in its unit: hours with one decimal (under an hour, whole minutes: 0.1 h and
/// 0.2 h are 6 and 12 min, not both "0.1 h"-ish), ratios as percent, per-day rates with two
/// decimals, minutes and counts as whole numbers. Unknown units keep two decimals and the unit's
/// name, so a new unit shows up readable instead of wrong.
pub fn format_value(value: Option<f64>, unit: &str) -> String {
    let Some(v) = value.filter(|v| v.is_finite()) else {
        return MISSING.to_owned();
    };
    match unit {
        "hours" if is_minutes(v) => format!("{} min", fixed(v * 60.0, 0)),
        "hours" => format!("{} h", fixed(v, 1)),
        "ratio" => format!("{}%", fixed(v * 100.0, 1)),
        "per_day" => format!("{}/day", fixed(v, 2)),
        "minutes" => format!("{} min", fixed(v, 0)),
        "count" => fixed(v, 0),
        "coefficient" => fixed(v, 2),
        other => format!("{} {other}", fixed(v, 2)),
    }
}

/// A change between two values of a metric in `unit`, signed (`+`, `−`), rounded once for display:
/// `delta` is the difference of the unrounded values, so `30.26 h − 9.93 h` reads `+20.3 h`, not
/// the `+20.4 h` of `30.3 h − 9.9 h`. Ratios change in percentage points (`+0.6 pp`); a change
/// that rounds to nothing is shown without a sign. Not finite is [`MISSING`].
pub fn format_change(delta: f64, unit: &str) -> String {
    if !delta.is_finite() {
        return MISSING.to_owned();
    }
    let magnitude = match unit {
        // Availability moves by hundredths of a point (99.95% → 99.91%): a change one decimal
        // would show as nothing gets a second one.
        "ratio" if fixed(delta.abs() * 100.0, 1) == "0.0" => format!("{} pp", fixed(delta.abs() * 100.0, 2)),
        "ratio" => format!("{} pp", fixed(delta.abs() * 100.0, 1)),
        _ => format_value(Some(delta.abs()), unit),
    };
    signed(delta, magnitude)
}

#[cfg(test)]
#[test]
fn a_change_of_hundredths_of_a_point_is_not_shown_as_no_change() {
    assert_eq!(format_change(0.9991 - 0.9995, "ratio"), "\u{2212}0.04 pp");
    assert_eq!(format_change(0.006, "ratio"), "+0.6 pp");
    assert_eq!(format_change(0.000_01, "ratio"), "0.00 pp");
}

/// `magnitude` (the shown size of `delta`) with the sign of `delta`, or without a sign when every
/// digit shown is zero.
pub fn signed(delta: f64, magnitude: String) -> String {
    if magnitude.chars().filter(char::is_ascii_digit).all(|c| c == '0') {
        return magnitude;
    }
    let sign = if delta < 0.0 { "\u{2212}" } else { "+" };
    format!("{sign}{magnitude}")
}

/// The value as [`format_value`] shows it, rounded the same way but still in its unit, so a
/// change computed from two shown values agrees with them. Not finite stays as it is.
pub fn shown_value(v: f64, unit: &str) -> f64 {
    if !v.is_finite() {
        return v;
    }
    let round = |v: f64, scale: f64| (v * scale).round() / scale + 0.0;
    match unit {
        "hours" if is_minutes(v) => round(v * 60.0, 1.0) / 60.0,
        "hours" => round(v, 10.0),
        "ratio" => round(v, 1000.0),
        "minutes" | "count" => round(v, 1.0),
        _ => round(v, 100.0),
    }
}

/// Whether an hours value is shown in minutes: under an hour once rounded to the minute.
fn is_minutes(hours: f64) -> bool {
    (hours * 60.0).round().abs() < 60.0
}

/// `v` with `decimals` digits, never printing `-0` for a tiny negative that rounds to zero.
fn fixed(v: f64, decimals: usize) -> String {
    let scale = 10f64.powi(decimals as i32);
    // Adding 0.0 turns -0.0 into 0.0.
    let rounded = (v * scale).round() / scale + 0.0;
    format!("{rounded:.decimals$}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quality_figures_read_no_source_and_every_other_metric_reads_one() {
        for m in MetricId::ALL {
            assert_eq!(
                MetricId::QUALITY.contains(&m),
                m.inputs().is_empty(),
                "{}",
                m.as_str()
            );
        }
        assert_eq!(MetricId::TicketBacklog.inputs(), ["tickets"]);
        assert_eq!(MetricId::Availability.inputs(), ["incidents"]);
        assert_eq!(
            MetricId::ChangeFailureRate.inputs(),
            ["deployments", "changes", "incidents"]
        );
        assert_eq!(
            MetricId::DeploymentsWithoutChangeRecord.inputs(),
            ["deployments", "change_requests"]
        );
    }

    fn row(unit: &str, value: Option<f64>, n: i64) -> MetricRow {
        MetricRow {
            metric: "m".into(),
            grain: "week".into(),
            scope_type: "org".into(),
            scope: "all".into(),
            period_start: DateTime::<Utc>::from_timestamp(0, 0).unwrap(),
            period_end: DateTime::<Utc>::from_timestamp(0, 0).unwrap(),
            value,
            unit: unit.into(),
            n,
            method: None,
            no_data: None,
        }
    }

    #[test]
    fn values_display_with_their_units() {
        assert_eq!(row("hours", Some(3.456), 9).display_value(), "3.5 h");
        assert_eq!(row("ratio", Some(0.5), 9).display_value(), "50.0%");
        assert_eq!(
            row("per_day", Some(1.0 / 7.0 * 9.0), 9).display_value(),
            "1.29/day"
        );
        assert_eq!(row("minutes", Some(119.6), 9).display_value(), "120 min");
        assert_eq!(row("count", Some(12.0), 12).display_value(), "12");
        assert_eq!(
            row("count", Some(-0.01), 12).display_value(),
            "0",
            "no negative zero"
        );
        assert_eq!(row("furlongs", Some(2.0), 1).display_value(), "2.00 furlongs");
        assert_eq!(row("hours", None, 0).display_value(), MISSING);
        assert_eq!(row("hours", Some(f64::NAN), 0).display_value(), MISSING);
    }

    #[test]
    fn durations_under_an_hour_show_in_minutes() {
        // 0.1 h and 0.2 h would both read "0.1 h"/"0.2 h" at best and "0.0 h" as a change.
        assert_eq!(format_value(Some(0.1), "hours"), "6 min");
        assert_eq!(format_value(Some(0.2), "hours"), "12 min");
        assert_eq!(format_value(Some(0.0), "hours"), "0 min");
        assert_eq!(format_value(Some(59.0 / 60.0), "hours"), "59 min");
        // 59.7 min rounds to 60 min: an hour, shown as hours.
        assert_eq!(format_value(Some(59.7 / 60.0), "hours"), "1.0 h");
        assert_eq!(format_value(Some(1.04), "hours"), "1.0 h");
    }

    #[test]
    fn shown_values_round_as_the_text_does() {
        assert_eq!(shown_value(0.104, "hours"), 6.0 / 60.0);
        assert_eq!(shown_value(3.456, "hours"), 3.5);
        assert_eq!(shown_value(0.12345, "ratio"), 0.123);
        assert_eq!(shown_value(119.6, "minutes"), 120.0);
        assert_eq!(shown_value(1.2857, "per_day"), 1.29);
        assert!(shown_value(f64::NAN, "hours").is_nan());
    }

    #[test]
    fn dora_tiers_apply_to_their_metrics_with_enough_samples() {
        let with = |metric: &str, value: f64, n: i64| MetricRow {
            metric: metric.into(),
            ..row("hours", Some(value), n)
        };
        assert_eq!(with("lead_time_median", 12.0, 9).tier(), Some("elite"));
        assert_eq!(with("change_failure_rate", 0.12, 9).tier(), Some("medium"));
        assert_eq!(
            with("failed_deployment_recovery_median", 30.0, 9).tier(),
            Some("medium")
        );
        assert_eq!(with("lead_time_median", 12.0, 4).tier(), None, "n < 5: no tier");
        assert_eq!(
            with("downtime_minutes", 12.0, 9).tier(),
            None,
            "no tier for other metrics"
        );
    }

    #[test]
    fn fewer_than_five_samples_is_insufficient() {
        assert!(row("hours", Some(1.0), 4).insufficient());
        assert!(!row("hours", Some(1.0), 5).insufficient());
    }

    #[test]
    fn measured_downtime_and_availability_are_never_insufficient() {
        for metric in [
            "availability",
            "downtime_minutes",
            "error_budget_consumed",
            "change_caused_downtime_minutes",
        ] {
            let mut r = row("ratio", Some(1.0), 0);
            r.metric = metric.into();
            assert!(!r.insufficient(), "{metric} with no incidents is a measured fact");
        }
        let mut r = row("ratio", Some(0.5), 2);
        r.metric = "change_failure_rate".into();
        assert!(r.insufficient(), "a rate on 2 deployments is still insufficient");
    }

    #[test]
    fn the_deployment_frequency_tier_reads_the_weekly_and_monthly_medians() {
        let row = |metric: &str, value: f64, n: i64| MetricRow {
            metric: metric.into(),
            grain: "range".into(),
            scope_type: "service".into(),
            scope: "web".into(),
            period_start: DateTime::UNIX_EPOCH,
            period_end: DateTime::UNIX_EPOCH,
            value: Some(value),
            unit: "count".into(),
            n,
            method: None,
            no_data: None,
        };
        let tier = |w: f64, m: f64, weeks: i64| {
            let rows = [
                row("deploy_days_weekly_median", w, weeks),
                row("deploy_days_monthly_median", m, 3),
            ];
            rows[0].tier_among(&rows)
        };
        assert_eq!(tier(5.0, 20.0, 13), Some("elite"));
        assert_eq!(tier(1.0, 4.0, 13), Some("high"));
        assert_eq!(
            tier(0.0, 1.0, 13),
            Some("medium"),
            "no median week, but a median month"
        );
        assert_eq!(
            tier(0.0, 0.5, 13),
            Some("low"),
            "half the months without a deploy"
        );
        assert_eq!(tier(5.0, 20.0, 4), None, "fewer than 5 weeks");
        let alone = row("deploy_days_weekly_median", 5.0, 13);
        assert_eq!(
            alone.tier_among(std::slice::from_ref(&alone)),
            None,
            "no monthly row"
        );
        let other_scope = MetricRow {
            scope: "api".into(),
            ..row("deploy_days_monthly_median", 9.0, 3)
        };
        assert_eq!(alone.tier_among(&[alone.clone(), other_scope]), None);
        let lead = row("lead_time_median", 12.0, 9);
        assert_eq!(lead.tier_among(&[]), Some("elite"), "other metrics as tier()");
        assert_eq!(
            alone.tier(),
            None,
            "one row alone has no deployment-frequency tier"
        );
    }

    #[test]
    fn quarantine_metrics_name_their_reason_code() {
        for code in ReasonCode::ALL {
            let id = MetricId::parse(&format!("quarantined_{}", code.as_str())).unwrap();
            assert_eq!(id.quarantine_code(), Some(code));
            assert!(MetricId::QUALITY.contains(&id));
        }
        assert_eq!(MetricId::QuarantinedRecords.quarantine_code(), None);
    }

    #[test]
    fn ids_round_trip() {
        for m in MetricId::ALL {
            assert_eq!(MetricId::parse(m.as_str()), Some(m));
        }
    }
}
