//! Hand-computed cases for the ITSM metrics: small record sets written to a temporary lake with
//! the codec, run through the whole weekly pipeline, then every expected value worked out in the
//! comments beside it. The range starts on Monday 3 August 2026; week 0 ends on Monday 10th,
//! week 1 on Monday 17th.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use tandem_connectors::model::{ChangeRequest, Deployment, Ticket, TicketTransition};
use tempfile::TempDir;

use crate::metric::{MetricId, MetricRow};
use crate::pipeline::{Inputs, Options, PipelineError, compute_metrics};
use crate::store::codec::write_table;

use crate::pipeline::testkit::{aug, cell, deployment, options};
use MetricId::*;

fn ticket(
    id: &str,
    service: Option<&str>,
    priority: Option<&str>,
    created: DateTime<Utc>,
    resolved: Option<DateTime<Utc>>,
) -> Ticket {
    Ticket {
        assignee: None,
        reporter: None,
        id: format!("jira:{id}"),
        source: "jira".into(),
        key: id.into(),
        project: "OPS".into(),
        service_ref: None,
        service: service.map(str::to_owned),
        team: None,
        category: "incident".into(),
        issue_type: "Incident".into(),
        title: id.into(),
        priority: priority.map(str::to_owned),
        status: if resolved.is_some() { "Done" } else { "Open" }.into(),
        status_category: if resolved.is_some() { "done" } else { "new" }.into(),
        labels: vec![],
        created_at: created,
        resolved_at: resolved,
        updated_at: resolved.unwrap_or(created),
    }
}

/// A status change of ticket `id` between two categories (`None`: unknown).
fn moved(id: &str, seq: u32, at: DateTime<Utc>, from: Option<&str>, to: Option<&str>) -> TicketTransition {
    TicketTransition {
        id: format!("jira:{id}:{seq}"),
        source: "jira".into(),
        ticket_id: format!("jira:{id}"),
        at,
        from_status: from.map(str::to_owned),
        to_status: to.unwrap_or("Unknown").into(),
        from_category: from.map(str::to_owned),
        to_category: to.map(str::to_owned),
    }
}

fn change_request(
    id: &str,
    service: Option<&str>,
    change_type: Option<&str>,
    closed: Option<DateTime<Utc>>,
    close_code: Option<&str>,
) -> ChangeRequest {
    ChangeRequest {
        assigned_to: None,
        requested_by: None,
        id: format!("snow:{id}"),
        source: "snow".into(),
        number: id.into(),
        title: id.into(),
        service_ref: None,
        service: service.map(str::to_owned),
        team: None,
        change_type: change_type.map(str::to_owned),
        state: if closed.is_some() { "closed" } else { "scheduled" }.into(),
        approved: Some(true),
        planned_start: None,
        planned_end: None,
        actual_start: None,
        actual_end: None,
        closed_at: closed,
        close_code: close_code.map(str::to_owned),
        created_at: aug(1, 0, 0),
        updated_at: closed.unwrap_or(aug(1, 0, 0)),
    }
}

/// A change request of `service` planned for `[start, end]` with the given approval.
fn window(
    id: &str,
    service: &str,
    approved: Option<bool>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> ChangeRequest {
    ChangeRequest {
        approved,
        planned_start: start,
        planned_end: end,
        ..change_request(id, Some(service), Some("normal"), None, None)
    }
}

#[derive(Default)]
struct Tables {
    tickets: Vec<Ticket>,
    transitions: Vec<TicketTransition>,
    change_requests: Vec<ChangeRequest>,
    deployments: Vec<Deployment>,
}

/// The tables as files in a temporary lake; an empty table is no file at all, as in a fresh store.
struct Lake {
    dir: TempDir,
}

impl Lake {
    fn new(tables: &Tables) -> Self {
        let lake = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        if !tables.tickets.is_empty() {
            write_table(&tables.tickets, &lake.path("tickets")).unwrap();
        }
        if !tables.transitions.is_empty() {
            write_table(&tables.transitions, &lake.path("ticket_transitions")).unwrap();
        }
        if !tables.change_requests.is_empty() {
            write_table(&tables.change_requests, &lake.path("change_requests")).unwrap();
        }
        if !tables.deployments.is_empty() {
            write_table(&tables.deployments, &lake.path("deployments")).unwrap();
        }
        lake
    }

    fn path(&self, table: &str) -> PathBuf {
        self.dir.path().join(format!("{table}.parquet"))
    }

    fn run(&self, opts: &Options) -> Result<Vec<MetricRow>, PipelineError> {
        let paths = [
            "deployments",
            "changes",
            "incidents",
            "tickets",
            "ticket_transitions",
            "change_requests",
        ]
        .map(|table| self.path(table));
        compute_metrics(
            Inputs {
                deployments: std::slice::from_ref(&paths[0]),
                changes: std::slice::from_ref(&paths[1]),
                commits: std::slice::from_ref(&self.path("commits")),
                incidents: std::slice::from_ref(&paths[2]),
                tickets: std::slice::from_ref(&paths[3]),
                ticket_transitions: std::slice::from_ref(&paths[4]),
                change_requests: std::slice::from_ref(&paths[5]),
                quarantine: std::slice::from_ref(&self.path("quarantine")),
                prepared: None,
            },
            opts,
        )
        .map(|table| table.to_rows())
    }
}

fn run(tables: &Tables, opts: &Options) -> Vec<MetricRow> {
    Lake::new(tables).run(opts).unwrap()
}

#[test]
fn an_empty_lake_has_every_itsm_row_with_zero_counts_and_no_ratios() {
    let rows = run(&Tables::default(), &options(2, &["api"]));

    // Metric, then scope (org, then services), then the weeks and the range.
    let itsm: Vec<&MetricRow> = rows
        .iter()
        .filter(|r| MetricId::parse(&r.metric).is_some_and(|m| MetricId::ITSM.contains(&m)))
        .collect();
    let mut expected = Vec::new();
    for metric in MetricId::ITSM {
        for scope in ["all", "api"] {
            for (grain, start, end) in [
                ("week", aug(3, 0, 0), aug(10, 0, 0)),
                ("week", aug(10, 0, 0), aug(17, 0, 0)),
                ("range", aug(3, 0, 0), aug(17, 0, 0)),
            ] {
                expected.push((metric.as_str(), metric.unit(), scope, grain, start, end));
            }
        }
    }
    let got: Vec<_> = itsm
        .iter()
        .map(|r| {
            (
                r.metric.as_str(),
                r.unit.as_str(),
                r.scope.as_str(),
                r.grain.as_str(),
                r.period_start,
                r.period_end,
            )
        })
        .collect();
    assert_eq!(got, expected);

    for scope in ["all", "api"] {
        for week in [Some(0), Some(1), None] {
            for (metric, empty) in [
                (TicketsResolved, (Some(0.0), 0)),
                (TicketBacklog, (Some(0.0), 0)),
                (TicketLeadTimeMedian, (None, 0)),
                (TicketCycleTimeMedian, (None, 0)),
                (SlaBreachRate, (None, 0)),
                (SlaOpenPastTarget, (Some(0.0), 0)),
                (TicketReopenRate, (None, 0)),
                (ChangeSuccessRate, (None, 0)),
                (EmergencyChangeRatio, (None, 0)),
                (DeploymentsWithoutChangeRecord, (Some(0.0), 0)),
            ] {
                assert_eq!(
                    cell(&rows, metric, scope, week),
                    empty,
                    "{metric:?} {scope} {week:?}"
                );
            }
        }
    }
}

#[test]
fn throughput_backlog_and_lead_time_by_week_and_service() {
    let tables = Tables {
        tickets: vec![
            // Week 0: lead times 24 h, 6 h (api), 3 h (web), 12 h (no service: org only).
            ticket("t1", Some("api"), None, aug(3, 9, 0), Some(aug(4, 9, 0))),
            ticket("t2", Some("api"), None, aug(4, 10, 0), Some(aug(4, 16, 0))),
            ticket("t3", Some("web"), None, aug(5, 0, 0), Some(aug(5, 3, 0))),
            ticket("t4", None, None, aug(6, 0, 0), Some(aug(6, 12, 0))),
            // Open throughout: in every backlog from week 0 on.
            ticket("t5", Some("api"), None, aug(7, 0, 0), None),
            // Open across the end of week 0, resolved in week 1 after 48 h.
            ticket("t6", Some("api"), None, aug(9, 12, 0), Some(aug(11, 12, 0))),
            // Resolved exactly at the end of week 0: still open at that end (resolved at or after
            // it), resolved in week 1 after 24 h.
            ticket("t7", Some("web"), None, aug(9, 0, 0), Some(aug(10, 0, 0))),
            // Created exactly at the range's end: in no backlog.
            ticket("t8", Some("api"), None, aug(17, 0, 0), None),
            // Created and resolved before the range: in nothing.
            ticket("t9", Some("api"), None, aug(1, 0, 0), Some(aug(2, 0, 0))),
        ],
        ..Tables::default()
    };
    let rows = run(&tables, &options(2, &["api", "web"]));

    assert_eq!(cell(&rows, TicketsResolved, "all", Some(0)), (Some(4.0), 4));
    assert_eq!(cell(&rows, TicketsResolved, "api", Some(0)), (Some(2.0), 2));
    assert_eq!(cell(&rows, TicketsResolved, "web", Some(0)), (Some(1.0), 1));
    assert_eq!(cell(&rows, TicketsResolved, "all", Some(1)), (Some(2.0), 2));
    assert_eq!(cell(&rows, TicketsResolved, "all", None), (Some(6.0), 6));

    // Sorted 3, 6, 12, 24: the mean of the middle two is 9 h.
    assert_eq!(cell(&rows, TicketLeadTimeMedian, "all", Some(0)), (Some(9.0), 4));
    assert_eq!(cell(&rows, TicketLeadTimeMedian, "api", Some(0)), (Some(15.0), 2));
    assert_eq!(cell(&rows, TicketLeadTimeMedian, "web", Some(0)), (Some(3.0), 1));
    // Week 1: 48 h (api) and 24 h (web).
    assert_eq!(cell(&rows, TicketLeadTimeMedian, "all", Some(1)), (Some(36.0), 2));
    assert_eq!(cell(&rows, TicketLeadTimeMedian, "api", Some(1)), (Some(48.0), 1));
    // Range: 3, 6, 12, 24, 24, 48 → (12 + 24) / 2.
    assert_eq!(cell(&rows, TicketLeadTimeMedian, "all", None), (Some(18.0), 6));
    assert_eq!(cell(&rows, TicketLeadTimeMedian, "api", None), (Some(24.0), 3));

    // End of week 0: t5, t6 (api) and t7 (web) are open.
    assert_eq!(cell(&rows, TicketBacklog, "all", Some(0)), (Some(3.0), 3));
    assert_eq!(cell(&rows, TicketBacklog, "api", Some(0)), (Some(2.0), 2));
    assert_eq!(cell(&rows, TicketBacklog, "web", Some(0)), (Some(1.0), 1));
    // End of week 1, which is also the range's end: only t5.
    for week in [Some(1), None] {
        assert_eq!(cell(&rows, TicketBacklog, "all", week), (Some(1.0), 1));
        assert_eq!(cell(&rows, TicketBacklog, "api", week), (Some(1.0), 1));
        assert_eq!(cell(&rows, TicketBacklog, "web", week), (Some(0.0), 0));
    }

    // Fewer than five samples: the value is there, with its n, and flagged.
    let row = rows
        .iter()
        .find(|r| r.metric == "ticket_lead_time_median" && r.scope == "api" && r.grain == "range")
        .unwrap();
    assert!(row.insufficient());
}

#[test]
fn throughput_is_split_by_category() {
    let of = |category: &str, ticket: Ticket| Ticket {
        category: category.into(),
        ..ticket
    };
    let tables = Tables {
        tickets: vec![
            // Week 0: two incidents (api, web), a request and a bug (api).
            of(
                "incident",
                ticket("c1", Some("api"), None, aug(3, 0, 0), Some(aug(4, 0, 0))),
            ),
            of(
                "incident",
                ticket("c2", Some("web"), None, aug(3, 0, 0), Some(aug(5, 0, 0))),
            ),
            of(
                "request",
                ticket("c3", Some("api"), None, aug(3, 0, 0), Some(aug(6, 0, 0))),
            ),
            of(
                "bug",
                ticket("c4", Some("api"), None, aug(3, 0, 0), Some(aug(6, 0, 0))),
            ),
            // Week 1: a story, a task, a problem, a change (no service).
            of(
                "story",
                ticket("c5", Some("web"), None, aug(3, 0, 0), Some(aug(11, 0, 0))),
            ),
            of(
                "task",
                ticket("c6", Some("web"), None, aug(3, 0, 0), Some(aug(12, 0, 0))),
            ),
            of(
                "problem",
                ticket("c7", Some("api"), None, aug(3, 0, 0), Some(aug(13, 0, 0))),
            ),
            of(
                "change",
                ticket("c8", None, None, aug(3, 0, 0), Some(aug(14, 0, 0))),
            ),
            // A category outside the canonical set: in the total only.
            of(
                "epic",
                ticket("c9", Some("api"), None, aug(3, 0, 0), Some(aug(14, 0, 0))),
            ),
            // Open: in no throughput.
            of("incident", ticket("c10", Some("api"), None, aug(3, 0, 0), None)),
        ],
        ..Tables::default()
    };
    let rows = run(&tables, &options(2, &["api", "web"]));

    assert_eq!(
        cell(&rows, TicketsResolvedIncident, "all", Some(0)),
        (Some(2.0), 2)
    );
    assert_eq!(
        cell(&rows, TicketsResolvedIncident, "api", Some(0)),
        (Some(1.0), 1)
    );
    assert_eq!(
        cell(&rows, TicketsResolvedIncident, "all", Some(1)),
        (Some(0.0), 0)
    );
    assert_eq!(
        cell(&rows, TicketsResolvedRequest, "api", Some(0)),
        (Some(1.0), 1)
    );
    assert_eq!(cell(&rows, TicketsResolvedBug, "all", None), (Some(1.0), 1));
    assert_eq!(cell(&rows, TicketsResolvedStory, "web", Some(1)), (Some(1.0), 1));
    assert_eq!(cell(&rows, TicketsResolvedTask, "web", None), (Some(1.0), 1));
    assert_eq!(
        cell(&rows, TicketsResolvedProblem, "api", Some(1)),
        (Some(1.0), 1)
    );
    assert_eq!(cell(&rows, TicketsResolvedChange, "all", Some(1)), (Some(1.0), 1));
    assert_eq!(cell(&rows, TicketsResolvedChange, "api", Some(1)), (Some(0.0), 0));
    // The total holds the epic too: 9 resolved, 8 of them in a canonical category.
    assert_eq!(cell(&rows, TicketsResolved, "all", None), (Some(9.0), 9));
    let split: f64 = [
        TicketsResolvedIncident,
        TicketsResolvedRequest,
        TicketsResolvedChange,
        TicketsResolvedProblem,
        TicketsResolvedBug,
        TicketsResolvedTask,
        TicketsResolvedStory,
    ]
    .into_iter()
    .map(|m| cell(&rows, m, "all", None).0.unwrap())
    .sum();
    assert_eq!(split, 8.0);
}

#[test]
fn cycle_time_starts_at_the_first_move_into_progress_and_reopens_follow_the_changelog() {
    let new = Some("new");
    let progress = Some("indeterminate");
    let done = Some("done");
    let tables = Tables {
        tickets: vec![
            ticket("c1", Some("api"), None, aug(3, 8, 0), Some(aug(3, 12, 0))),
            ticket("c2", Some("api"), None, aug(4, 9, 0), Some(aug(4, 10, 0))),
            ticket("c3", Some("web"), None, aug(3, 20, 0), Some(aug(5, 2, 0))),
            ticket("c4", Some("web"), None, aug(5, 0, 0), Some(aug(5, 1, 0))),
            ticket("c5", None, None, aug(5, 0, 0), Some(aug(5, 6, 0))),
            ticket("c6", Some("api"), None, aug(5, 9, 0), Some(aug(5, 11, 0))),
            ticket("c7", Some("api"), None, aug(5, 12, 0), Some(aug(6, 0, 0))),
        ],
        transitions: vec![
            // c1: in progress at 09:00, a move within the category, done at 12:00: 3 h.
            moved("c1", 1, aug(3, 9, 0), new, progress),
            moved("c1", 2, aug(3, 10, 0), progress, progress),
            moved("c1", 3, aug(3, 12, 0), progress, done),
            // c2: straight from new to done, never in progress: no cycle time.
            moved("c2", 1, aug(4, 10, 0), new, done),
            // c3: in progress on the 4th at 00:00, done, reopened, done again on the 5th at 02:00
            // (the ticket's resolution): 26 h from the *first* move into progress. Reopened.
            moved("c3", 1, aug(4, 0, 0), new, progress),
            moved("c3", 2, aug(4, 5, 0), progress, done),
            moved("c3", 3, aug(5, 0, 0), done, progress),
            moved("c3", 4, aug(5, 2, 0), progress, done),
            // c4: its only move into progress is after its resolution: negative, dropped.
            moved("c4", 1, aug(5, 3, 0), new, progress),
            // c5: no transitions at all (a source without a changelog): no cycle time.
            // c6: leaves done at 10:00 before the changelog ever shows it entering done (11:00):
            // not after it first reached done, so not a reopen. In progress from 10:00: 1 h.
            moved("c6", 1, aug(5, 10, 0), done, progress),
            moved("c6", 2, aug(5, 11, 0), progress, done),
            // c7: done on the 6th, a move within done, then reopened in week 1 while its resolution
            // stays on the 6th: a reopen of a ticket resolved in week 0. Never in progress.
            moved("c7", 1, aug(6, 0, 0), new, done),
            moved("c7", 2, aug(6, 1, 0), done, done),
            moved("c7", 3, aug(11, 0, 0), done, new),
            // A move out of done to an unknown category is not a reopen (c1 stays not reopened).
            moved("c1", 4, aug(3, 13, 0), done, None),
            // Transitions of a ticket that is not in the tickets table change nothing.
            moved("ghost", 1, aug(4, 0, 0), new, progress),
        ],
        ..Tables::default()
    };
    let rows = run(&tables, &options(2, &["api", "web"]));

    // Cycle times: c1 3 h, c3 26 h, c6 1 h → median 3 h of 3.
    assert_eq!(cell(&rows, TicketCycleTimeMedian, "all", Some(0)), (Some(3.0), 3));
    // api: c1 3 h, c6 1 h.
    assert_eq!(cell(&rows, TicketCycleTimeMedian, "api", Some(0)), (Some(2.0), 2));
    // web: c3 only (c4 dropped).
    assert_eq!(
        cell(&rows, TicketCycleTimeMedian, "web", Some(0)),
        (Some(26.0), 1)
    );
    assert_eq!(cell(&rows, TicketCycleTimeMedian, "all", Some(1)), (None, 0));
    assert_eq!(cell(&rows, TicketCycleTimeMedian, "all", None), (Some(3.0), 3));
    // Lead times still count every resolved ticket: 4, 1, 30, 1, 6, 2, 12 h → 4 h.
    assert_eq!(cell(&rows, TicketLeadTimeMedian, "all", Some(0)), (Some(4.0), 7));

    // Reopened: c3 and c7, of the 7 resolved in week 0.
    assert_eq!(
        cell(&rows, TicketReopenRate, "all", Some(0)),
        (Some(2.0 / 7.0), 7)
    );
    // api: c1, c2, c6, c7 → c7.
    assert_eq!(cell(&rows, TicketReopenRate, "api", Some(0)), (Some(0.25), 4));
    // web: c3, c4 → c3.
    assert_eq!(cell(&rows, TicketReopenRate, "web", Some(0)), (Some(0.5), 2));
    // Nothing resolved in week 1, although c7's reopen happened then.
    assert_eq!(cell(&rows, TicketReopenRate, "all", Some(1)), (None, 0));
    assert_eq!(cell(&rows, TicketReopenRate, "all", None), (Some(2.0 / 7.0), 7));
}

#[test]
fn sla_targets_match_priorities_regardless_of_case_and_open_tickets_past_target_count_apart() {
    let mut opts = options(2, &["api", "web"]);
    opts.sla_hours = [("P1".to_owned(), 4.0), ("high".to_owned(), 8.0)].into();
    let h = |hours| Duration::hours(hours);
    let tables = Tables {
        tickets: vec![
            // Resolved in week 0 (api).
            ticket(
                "s1",
                Some("api"),
                Some("p1"),
                aug(3, 0, 0),
                Some(aug(3, 0, 0) + h(5)),
            ), // breach
            ticket(
                "s2",
                Some("api"),
                Some("P1"),
                aug(4, 0, 0),
                Some(aug(4, 0, 0) + h(4)),
            ), // exactly: met
            ticket(
                "s3",
                Some("api"),
                Some("HIGH"),
                aug(5, 0, 0),
                Some(aug(5, 0, 0) + h(7)),
            ), // met
            ticket(
                "s4",
                Some("api"),
                Some("High"),
                aug(6, 0, 0),
                Some(aug(6, 0, 0) + h(9)),
            ), // breach
            ticket("s5", Some("api"), Some("Low"), aug(3, 0, 0), Some(aug(7, 4, 0))), // no target
            ticket("s6", Some("api"), None, aug(3, 0, 0), Some(aug(7, 4, 0))),        // no priority
            // Open at the end of week 0 (web), Monday 10th 00:00.
            ticket("o1", Some("web"), Some("p1"), aug(9, 19, 0), None), // 5 h old: past
            ticket("o2", Some("web"), Some("P1"), aug(9, 20, 0), None), // exactly 4 h: not past
            ticket("o3", Some("web"), Some("high"), aug(9, 20, 0), None), // 4 h of 8: not yet
            ticket("o4", Some("web"), Some("Low"), aug(1, 0, 0), None), // no target
            // 24 h old at the end of week 0: past; resolved in week 1 after 72 h: a breach.
            ticket("o5", Some("web"), Some("p1"), aug(9, 0, 0), Some(aug(12, 0, 0))),
        ],
        ..Tables::default()
    };
    let rows = run(&tables, &opts);

    // Week 0: s1–s4 have a target; s1 and s4 breached it.
    assert_eq!(cell(&rows, SlaBreachRate, "all", Some(0)), (Some(0.5), 4));
    assert_eq!(cell(&rows, SlaBreachRate, "api", Some(0)), (Some(0.5), 4));
    assert_eq!(cell(&rows, SlaBreachRate, "web", Some(0)), (None, 0));
    // Week 1: o5 alone.
    assert_eq!(cell(&rows, SlaBreachRate, "all", Some(1)), (Some(1.0), 1));
    // Range: s1–s4 and o5, breached s1, s4, o5.
    assert_eq!(cell(&rows, SlaBreachRate, "all", None), (Some(0.6), 5));
    // The same breaches as counts, over the same samples.
    assert_eq!(cell(&rows, SlaBreaches, "all", Some(0)), (Some(2.0), 4));
    assert_eq!(cell(&rows, SlaBreaches, "web", Some(0)), (Some(0.0), 0));
    assert_eq!(cell(&rows, SlaBreaches, "all", Some(1)), (Some(1.0), 1));
    assert_eq!(cell(&rows, SlaBreaches, "web", Some(1)), (Some(1.0), 1));
    assert_eq!(cell(&rows, SlaBreaches, "all", None), (Some(3.0), 5));

    // End of week 0: o1, o2, o3, o5 have a target; o1 and o5 are past it.
    assert_eq!(cell(&rows, SlaOpenPastTarget, "all", Some(0)), (Some(2.0), 4));
    assert_eq!(cell(&rows, SlaOpenPastTarget, "web", Some(0)), (Some(2.0), 4));
    assert_eq!(cell(&rows, SlaOpenPastTarget, "api", Some(0)), (Some(0.0), 0));
    assert_eq!(cell(&rows, TicketBacklog, "all", Some(0)), (Some(5.0), 5));
    // End of week 1 and of the range: o1, o2, o3 are all a week old, past their targets.
    for week in [Some(1), None] {
        assert_eq!(cell(&rows, SlaOpenPastTarget, "all", week), (Some(3.0), 3));
        assert_eq!(cell(&rows, TicketBacklog, "all", week), (Some(4.0), 4));
    }
}

#[test]
fn sla_targets_that_cannot_apply_are_refused() {
    let lake = Lake::new(&Tables::default());
    let mut opts = options(1, &[]);
    opts.sla_hours = [("P1".to_owned(), 4.0), ("p1".to_owned(), 8.0)].into();
    let err = lake.run(&opts).unwrap_err();
    assert!(matches!(err, PipelineError::Options(_)), "{err}");
    assert!(err.to_string().contains("letter case"), "{err}");

    // The same target under two spellings is harmless.
    opts.sla_hours = [("P1".to_owned(), 4.0), ("p1".to_owned(), 4.0)].into();
    lake.run(&opts).unwrap();

    opts.sla_hours = [("P1".to_owned(), f64::NAN)].into();
    assert!(matches!(lake.run(&opts), Err(PipelineError::Options(_))));
    opts.sla_hours = Default::default();
    opts.change_window_tolerance = Duration::minutes(-1);
    assert!(matches!(lake.run(&opts), Err(PipelineError::Options(_))));
}

#[test]
fn change_success_and_emergency_ratios_of_closed_change_requests() {
    let tables = Tables {
        change_requests: vec![
            change_request(
                "cr1",
                Some("api"),
                Some("normal"),
                Some(aug(4, 0, 0)),
                Some("successful"),
            ),
            change_request(
                "cr2",
                Some("api"),
                Some("emergency"),
                Some(aug(5, 0, 0)),
                Some("unsuccessful"),
            ),
            change_request(
                "cr3",
                Some("web"),
                Some("standard"),
                Some(aug(5, 0, 0)),
                Some("successful_issues"),
            ),
            // Closed without a close code: an emergency change, but out of the success rate.
            change_request("cr4", Some("web"), Some("emergency"), Some(aug(6, 0, 0)), None),
            change_request(
                "cr5",
                None,
                Some("normal"),
                Some(aug(6, 0, 0)),
                Some("successful"),
            ),
            // Not closed: in neither.
            change_request("cr6", Some("api"), Some("emergency"), None, None),
            // Week 1, of unknown type: not an emergency.
            change_request("cr7", Some("api"), None, Some(aug(11, 0, 0)), Some("successful")),
        ],
        ..Tables::default()
    };
    let rows = run(&tables, &options(2, &["api", "web"]));

    // Week 0: cr1, cr2, cr3, cr5 have a close code; cr1 and cr5 were successful.
    assert_eq!(cell(&rows, ChangeSuccessRate, "all", Some(0)), (Some(0.5), 4));
    assert_eq!(cell(&rows, ChangeSuccessRate, "api", Some(0)), (Some(0.5), 2));
    assert_eq!(cell(&rows, ChangeSuccessRate, "web", Some(0)), (Some(0.0), 1));
    assert_eq!(cell(&rows, ChangeSuccessRate, "all", Some(1)), (Some(1.0), 1));
    assert_eq!(cell(&rows, ChangeSuccessRate, "all", None), (Some(0.6), 5));

    // Week 0: cr1–cr5 closed, cr2 and cr4 emergencies.
    assert_eq!(cell(&rows, EmergencyChangeRatio, "all", Some(0)), (Some(0.4), 5));
    assert_eq!(cell(&rows, EmergencyChangeRatio, "api", Some(0)), (Some(0.5), 2));
    assert_eq!(cell(&rows, EmergencyChangeRatio, "web", Some(0)), (Some(0.5), 2));
    assert_eq!(cell(&rows, EmergencyChangeRatio, "all", Some(1)), (Some(0.0), 1));
    assert_eq!(
        cell(&rows, EmergencyChangeRatio, "all", None),
        (Some(2.0 / 6.0), 6)
    );
}

#[test]
fn deployments_are_covered_by_an_approved_window_of_their_service_within_the_tolerance() {
    let ms = Duration::milliseconds(1);
    let mut staging = deployment("staging", Some("api"), aug(6, 20, 0));
    staging.environment = "staging".into();
    staging.is_production = false;
    let tables = Tables {
        change_requests: vec![
            window("w1", "api", Some(true), Some(aug(4, 10, 0)), Some(aug(4, 12, 0))),
            window("w2", "web", Some(true), Some(aug(5, 10, 0)), Some(aug(5, 12, 0))),
            // Approval unknown, refused, or no complete window: these cover nothing.
            window("w3", "api", None, Some(aug(6, 10, 0)), Some(aug(6, 12, 0))),
            window("w4", "api", Some(false), Some(aug(7, 10, 0)), Some(aug(7, 12, 0))),
            window("w5", "api", Some(true), None, Some(aug(8, 12, 0))),
        ],
        deployments: vec![
            deployment("d1", Some("api"), aug(4, 11, 0)), // inside w1
            // w1 with the 1 h tolerance is [09:00, 13:00], both ends included.
            deployment("d2", Some("api"), aug(4, 13, 0)),
            deployment("d3", Some("api"), aug(4, 13, 0) + ms), // just outside
            deployment("d4", Some("api"), aug(4, 9, 0)),
            deployment("d5", Some("api"), aug(4, 9, 0) - ms), // just outside
            deployment("d6", Some("api"), aug(5, 11, 0)),     // inside web's window only
            deployment("d7", Some("api"), aug(6, 11, 0)),     // w3: approval unknown
            deployment("d8", Some("api"), aug(7, 11, 0)),     // w4: not approved
            deployment("d9", Some("api"), aug(8, 11, 0)),     // w5: no planned start
            deployment("d10", None, aug(5, 11, 0)),           // no service: nothing to match
            deployment("d11", Some("web"), aug(5, 11, 0)),    // inside w2
            deployment("d12", Some("api"), aug(11, 0, 0)),    // week 1, no change request
            staging,                                          // not a production deployment
        ],
        ..Tables::default()
    };
    let rows = run(&tables, &options(2, &["api", "web"]));

    // Week 0: 11 production deployments; d3, d5, d6, d7, d8, d9, d10 uncovered.
    assert_eq!(
        cell(&rows, DeploymentsWithoutChangeRecord, "all", Some(0)),
        (Some(7.0), 11)
    );
    // api: d1–d9; d3, d5, d6, d7, d8, d9 uncovered.
    assert_eq!(
        cell(&rows, DeploymentsWithoutChangeRecord, "api", Some(0)),
        (Some(6.0), 9)
    );
    assert_eq!(
        cell(&rows, DeploymentsWithoutChangeRecord, "web", Some(0)),
        (Some(0.0), 1)
    );
    assert_eq!(
        cell(&rows, DeploymentsWithoutChangeRecord, "api", Some(1)),
        (Some(1.0), 1)
    );
    assert_eq!(
        cell(&rows, DeploymentsWithoutChangeRecord, "all", None),
        (Some(8.0), 12)
    );
}

#[test]
fn a_deployment_naming_an_approved_change_request_of_its_service_is_covered_outside_any_window() {
    let named = |id: &str, service: Option<&str>, refs: &[&str]| Deployment {
        change_refs: refs.iter().map(|r| (*r).to_owned()).collect(),
        ..deployment(id, service, aug(4, 11, 0))
    };
    // Vendor id (sys_id) and number differ; none of them has a planned window, so only an
    // explicit reference can cover a deployment.
    let request = |sys_id: &str, number: &str, service: &str, approved: Option<bool>| ChangeRequest {
        number: number.into(),
        approved,
        ..change_request(sys_id, Some(service), Some("normal"), None, None)
    };
    let tables = Tables {
        change_requests: vec![
            request("a1b2c3", "CHG0030001", "api", Some(true)),
            request("d4e5f6", "CHG0030002", "api", Some(false)),
            request("0a0b0c", "CHG0030003", "web", Some(true)),
            request("0d0e0f", "CHG0030004", "api", None),
        ],
        deployments: vec![
            named("e1", Some("api"), &["CHG0030001"]),         // by number
            named("e2", Some("api"), &[" chg0030001 "]),       // letter case and spaces
            named("e3", Some("api"), &["A1B2C3"]),             // by vendor id
            named("e4", Some("api"), &["CHG0030002"]),         // refused
            named("e5", Some("api"), &["CHG0030003"]),         // approved, but web's
            named("e6", Some("api"), &["CHG0030004"]),         // approval unknown
            named("e7", Some("api"), &["CHG9", "CHG0030001"]), // the second one resolves
            named("e8", Some("api"), &[]),                     // names nothing
            named("e9", None, &["CHG0030001"]),                // no service
            named("e10", Some("web"), &["CHG0030003"]),        // web's own
        ],
        ..Tables::default()
    };
    let rows = run(&tables, &options(2, &["api", "web"]));

    // Week 0: ten production deployments; e4, e5, e6, e8 and e9 uncovered.
    assert_eq!(
        cell(&rows, DeploymentsWithoutChangeRecord, "all", Some(0)),
        (Some(5.0), 10)
    );
    // api: e1–e8, of which e4, e5, e6 and e8 uncovered; web: e10, covered.
    assert_eq!(
        cell(&rows, DeploymentsWithoutChangeRecord, "api", Some(0)),
        (Some(4.0), 8)
    );
    assert_eq!(
        cell(&rows, DeploymentsWithoutChangeRecord, "web", Some(0)),
        (Some(0.0), 1)
    );
}
