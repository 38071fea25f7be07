//! Tests of the file import: every entity from CSV and NDJSON field by field (the samples under
//! `connectors/tests/data/file/`), the conveniences for hand-written files, every quarantine
//! reason, skipping unchanged files and resuming mid-file.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::files::discover;
use super::*;
use crate::contract::{Message, read_all};
use crate::model::{
    Change, ChangeRequest, Commit, Deployment, DeploymentStatus, Incident, Quarantined, Record, Severity,
    Ticket, TicketTransition,
};

fn ts(s: &str) -> DateTime<Utc> {
    crate::time::parse_instant(s).unwrap()
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn some(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn samples(format: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/file")
        .join(format)
}

fn config(path: &Path) -> FileImportConfig {
    FileImportConfig {
        name: "legacy".into(),
        path: path.to_owned(),
        format: None,
        entity: None,
    }
}

fn connector(path: &Path) -> FileImport {
    FileImport::new(config(path), &SecretEnv::process(), RetryPolicy::default()).unwrap()
}

#[derive(Debug)]
struct Output {
    result: Result<(), ConnectorError>,
    records: Vec<Record>,
    quarantined: Vec<Quarantined>,
    checkpoints: Vec<Value>,
    /// Records sent before each checkpoint, cumulative.
    records_at_checkpoint: Vec<usize>,
}

async fn run(c: &FileImport, stream: &str, bookmark: Option<Value>) -> Output {
    let (result, messages) = read_all(|out| c.read(stream, bookmark, out)).await;
    let mut o = Output {
        result,
        records: Vec::new(),
        quarantined: Vec::new(),
        checkpoints: Vec::new(),
        records_at_checkpoint: Vec::new(),
    };
    for m in messages {
        match m {
            Message::Records(r) => o.records.extend(r),
            Message::Quarantine(q) => o.quarantined.extend(q),
            Message::Checkpoint(c) => {
                o.checkpoints.push(c);
                o.records_at_checkpoint.push(o.records.len());
            }
            Message::Raw(_) | Message::Requests(_) => {}
        }
    }
    o
}

/// What the samples hold, for both formats.
fn expected(entity: Entity) -> Vec<Record> {
    match entity {
        Entity::Deployments => vec![
            Record::Deployment(Deployment {
                change_refs: Vec::new(),
                deployed_by: None,
                id: s("legacy:d-1"),
                source: s("legacy"),
                repo: s("acme/checkout"),
                service: some("checkout"),
                team: some("payments"),
                environment: s("production"),
                is_production: true,
                status: DeploymentStatus::Success,
                sha: s("abc123"),
                created_at: ts("2024-03-01T10:00:00Z"),
                finished_at: Some(ts("2024-03-01T10:05:00Z")),
                updated_at: ts("2024-03-01T10:05:00Z"),
            }),
            Record::Deployment(Deployment {
                change_refs: Vec::new(),
                deployed_by: None,
                id: s("legacy:acme/search:staging:def456:2024-03-02T17:00:00Z"),
                source: s("legacy"),
                repo: s("acme/search"),
                service: None,
                team: None,
                environment: s("staging"),
                is_production: false,
                status: DeploymentStatus::InProgress,
                sha: s("def456"),
                created_at: ts("2024-03-02T17:00:00Z"),
                finished_at: None,
                updated_at: ts("2024-03-02T17:00:00Z"),
            }),
        ],
        Entity::Changes => vec![
            Record::Change(Change {
                author: some("jdoe"),
                id: s("legacy:acme/checkout:42"),
                source: s("legacy"),
                repo: s("acme/checkout"),
                service: some("checkout"),
                team: some("payments"),
                number: 42,
                title: s("Fix rounding, again"),
                state: s("merged"),
                created_at: ts("2024-03-01T08:00:00Z"),
                merged_at: Some(ts("2024-03-01T09:30:00Z")),
                merge_commit_sha: some("abc123"),
                first_commit_at: Some(ts("2024-02-28T16:00:00Z")),
                labels: strings(&["bug", "payments"]),
                is_revert: false,
                reverts: None,
                updated_at: ts("2024-03-01T09:30:00Z"),
            }),
            Record::Change(Change {
                author: None,
                id: s("legacy:acme/checkout:43"),
                source: s("legacy"),
                repo: s("acme/checkout"),
                service: None,
                team: None,
                number: 43,
                title: s("Revert rounding"),
                state: s("merged"),
                created_at: ts("2024-03-02T08:00:00Z"),
                merged_at: Some(ts("2024-03-02T08:10:00Z")),
                merge_commit_sha: some("fff000"),
                first_commit_at: None,
                labels: strings(&["revert"]),
                is_revert: true,
                reverts: Some(42),
                updated_at: ts("2024-03-02T08:10:00Z"),
            }),
        ],
        Entity::Commits => vec![
            Record::Commit(Commit {
                author_email: None,
                author_name: None,
                id: s("legacy:acme/checkout:abc123"),
                source: s("legacy"),
                repo: s("acme/checkout"),
                service: some("checkout"),
                team: some("payments"),
                sha: s("abc123"),
                authored_at: ts("2024-02-28T15:00:00Z"),
                parents: strings(&["p1", "p2"]),
                title: s("Fix rounding"),
                deployment_id: some("legacy:d-1"),
                updated_at: ts("2024-03-01T10:05:00Z"),
            }),
            Record::Commit(Commit {
                author_email: None,
                author_name: None,
                id: s("legacy:acme/checkout:p1"),
                source: s("legacy"),
                repo: s("acme/checkout"),
                service: None,
                team: None,
                sha: s("p1"),
                authored_at: ts("2024-02-27T12:00:00Z"),
                parents: Vec::new(),
                title: s("Initial"),
                deployment_id: None,
                updated_at: ts("2024-02-27T12:00:00Z"),
            }),
        ],
        Entity::Incidents => vec![
            Record::Incident(Incident {
                acknowledged_by: None,
                assignee: None,
                id: s("legacy:INC-1"),
                source: s("legacy"),
                number: Some(1),
                title: s("Checkout errors"),
                service_ref: some("PSVC1"),
                team_ref: None,
                service: None,
                team: None,
                severity: Some(Severity::Sev1),
                status: s("resolved"),
                started_at: ts("2024-03-01T10:10:00Z"),
                acknowledged_at: Some(ts("2024-03-01T10:12:00Z")),
                resolved_at: Some(ts("2024-03-01T11:00:00Z")),
                cause_refs: strings(&["legacy:d-1", "abc123"]),
                correlation_id: None,
                updated_at: ts("2024-03-01T11:00:00Z"),
            }),
            Record::Incident(Incident {
                acknowledged_by: None,
                assignee: None,
                id: s("legacy:2"),
                source: s("legacy"),
                number: Some(2),
                title: s("Search slow"),
                service_ref: some("search"),
                team_ref: None,
                service: some("search"),
                team: some("search-team"),
                severity: Some(Severity::Sev3),
                status: s("triggered"),
                started_at: ts("2024-03-02T17:00:00Z"),
                acknowledged_at: None,
                resolved_at: None,
                cause_refs: Vec::new(),
                correlation_id: None,
                updated_at: ts("2024-03-02T17:00:00Z"),
            }),
        ],
        Entity::Tickets => vec![
            Record::Ticket(Ticket {
                assignee: some("Mia Krystof"),
                reporter: some("Jon Doe"),
                id: s("legacy:OPS-1"),
                source: s("legacy"),
                key: s("OPS-1"),
                project: s("OPS"),
                service_ref: some("Checkout"),
                service: None,
                team: None,
                category: s("incident"),
                issue_type: s("Bug"),
                title: s("Checkout down"),
                priority: some("High"),
                status: s("Done"),
                status_category: s("done"),
                labels: strings(&["ops", "urgent"]),
                created_at: ts("2024-03-01T10:00:00Z"),
                resolved_at: Some(ts("2024-03-01T12:00:00Z")),
                updated_at: ts("2024-03-01T12:00:00Z"),
            }),
            Record::Ticket(Ticket {
                assignee: None,
                reporter: None,
                id: s("legacy:OPS-2"),
                source: s("legacy"),
                key: s("OPS-2"),
                project: s("OPS"),
                service_ref: None,
                service: None,
                team: None,
                category: s("request"),
                issue_type: s("Task"),
                title: s("New laptop"),
                priority: None,
                status: s("In Progress"),
                status_category: s("indeterminate"),
                labels: Vec::new(),
                created_at: ts("2024-03-03T09:00:00Z"),
                resolved_at: None,
                updated_at: ts("2024-03-04T09:00:00Z"),
            }),
        ],
        Entity::TicketTransitions => vec![
            Record::TicketTransition(TicketTransition {
                id: s("legacy:legacy:OPS-1:2024-03-01T11:00:00Z:In Progress"),
                source: s("legacy"),
                ticket_id: s("legacy:OPS-1"),
                at: ts("2024-03-01T11:00:00Z"),
                from_status: some("To Do"),
                to_status: s("In Progress"),
                from_category: some("new"),
                to_category: some("indeterminate"),
            }),
            Record::TicketTransition(TicketTransition {
                id: s("legacy:OPS-1:h2"),
                source: s("legacy"),
                ticket_id: s("legacy:OPS-1"),
                at: ts("2024-03-01T12:00:00Z"),
                from_status: some("In Progress"),
                to_status: s("Done"),
                from_category: some("indeterminate"),
                to_category: some("done"),
            }),
        ],
        Entity::ChangeRequests => vec![
            Record::ChangeRequest(ChangeRequest {
                assigned_to: None,
                requested_by: None,
                id: s("legacy:CHG0001"),
                source: s("legacy"),
                number: s("CHG0001"),
                title: s("Upgrade DB"),
                service_ref: some("db-ci"),
                service: None,
                team: None,
                change_type: some("normal"),
                state: s("Closed"),
                approved: Some(true),
                planned_start: Some(ts("2024-03-01T20:00:00Z")),
                planned_end: Some(ts("2024-03-01T22:00:00Z")),
                actual_start: Some(ts("2024-03-01T20:05:00Z")),
                actual_end: Some(ts("2024-03-01T21:00:00Z")),
                closed_at: Some(ts("2024-03-02T08:00:00Z")),
                close_code: some("successful"),
                created_at: ts("2024-02-25T10:00:00Z"),
                updated_at: ts("2024-03-02T08:00:00Z"),
            }),
            Record::ChangeRequest(ChangeRequest {
                assigned_to: None,
                requested_by: None,
                id: s("legacy:CHG0002"),
                source: s("legacy"),
                number: s("CHG0002"),
                title: s("Rotate certs"),
                service_ref: None,
                service: None,
                team: None,
                change_type: None,
                state: s("New"),
                approved: None,
                planned_start: None,
                planned_end: None,
                actual_start: None,
                actual_end: None,
                closed_at: None,
                close_code: None,
                created_at: ts("2024-03-05T10:00:00Z"),
                updated_at: ts("2024-03-05T10:00:00Z"),
            }),
        ],
    }
}

#[tokio::test]
async fn every_entity_round_trips_from_csv_and_ndjson() {
    for format in ["csv", "ndjson"] {
        let c = connector(&samples(format));
        c.check().await.unwrap();
        for entity in Entity::ALL {
            let o = run(&c, entity.name(), None).await;
            o.result.unwrap();
            assert!(
                o.quarantined.is_empty(),
                "{format} {}: {:?}",
                entity.name(),
                o.quarantined
            );
            let want = expected(entity);
            assert_eq!(o.records.len(), want.len(), "{format} {}", entity.name());
            // A file holds what it holds: no lookback limits what the stream covers.
            assert!(!o.checkpoints.is_empty());
            for state in &o.checkpoints {
                assert_eq!(
                    crate::contract::covers_from(state),
                    Some(None),
                    "{format} {state}"
                );
            }
            for (got, want) in o.records.iter().zip(&want) {
                assert_eq!(got, want, "{format} {}", entity.name());
            }
        }
    }
}

#[test]
fn streams_cover_every_entity_and_table() {
    let c = connector(Path::new("."));
    let names: Vec<&str> = c.streams().iter().map(|s| s.name).collect();
    assert_eq!(names, Entity::ALL.map(Entity::name));
    assert!(
        c.streams()
            .iter()
            .all(|s| s.table == s.name && s.primary_key == "id")
    );
}

#[test]
fn the_closed_sets_are_the_model_enums() {
    for v in row::allowed_values("deployments", "status").unwrap() {
        let status: DeploymentStatus = serde_json::from_value(json!(v)).unwrap();
        assert_eq!(status.as_str(), *v);
    }
    for v in row::allowed_values("incidents", "severity").unwrap() {
        let sev: Severity = serde_json::from_value(json!(v)).unwrap();
        assert_eq!(sev.as_str(), *v);
    }
    assert_eq!(row::allowed_values("deployments", "status").unwrap().len(), 6);
    assert_eq!(row::allowed_values("incidents", "severity").unwrap().len(), 4);
}

#[tokio::test]
async fn omitted_id_source_and_updated_at_are_filled() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("deployments.csv"),
        "repo,environment,is_production,status,sha,created_at,finished_at\n\
         acme/a,production,1,Success,s1,2024-03-01T10:00:00Z,2024-03-01T10:07:30.250Z\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tickets.ndjson"),
        r#"{"source":"other","key":"K-1","project":"K","category":"Bug","issue_type":"Bug","title":"t","status":"Open","status_category":"new","created_at":"2024-03-01T10:00:00Z"}"#,
    )
    .unwrap();
    let c = connector(dir.path());
    let o = run(&c, "deployments", None).await;
    let Record::Deployment(d) = &o.records[0] else {
        panic!("{:?}", o.records)
    };
    assert_eq!(d.id, "legacy:acme/a:production:s1:2024-03-01T10:00:00Z");
    assert_eq!(d.source, "legacy");
    assert_eq!(d.status, DeploymentStatus::Success);
    assert_eq!(d.updated_at, ts("2024-03-01T10:07:30.250Z"));
    let o = run(&c, "tickets", None).await;
    let Record::Ticket(t) = &o.records[0] else {
        panic!("{:?}", o)
    };
    // A source given in the file is kept, and the derived id follows it.
    assert_eq!((t.id.as_str(), t.source.as_str()), ("other:K-1", "other"));
    assert_eq!(t.category, "bug");
    assert_eq!(t.updated_at, ts("2024-03-01T10:00:00Z"));
}

#[tokio::test]
async fn offset_and_utc_timestamps_land_on_the_same_instant() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("deployments.csv"),
        "repo,environment,is_production,status,sha,created_at\n\
         acme/a,production,true,success,s1,2024-01-15T10:23:45.000-0800\n\
         acme/a,production,true,success,s1,2024-01-15T18:23:45Z\n\
         acme/a,production,true,success,s1,2024-01-15 18:23:45\n",
    )
    .unwrap();
    let o = run(&connector(dir.path()), "deployments", None).await;
    let got: Vec<(String, DateTime<Utc>)> = o
        .records
        .iter()
        .map(|r| match r {
            Record::Deployment(d) => (d.id.clone(), d.created_at),
            other => panic!("{other:?}"),
        })
        .collect();
    let want = (
        s("legacy:acme/a:production:s1:2024-01-15T18:23:45Z"),
        ts("2024-01-15T18:23:45Z"),
    );
    assert_eq!(got, vec![want.clone(), want.clone(), want]);
}

#[tokio::test]
async fn every_bad_row_is_quarantined_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("deployments.csv");
    std::fs::write(
        &csv_path,
        "repo,environment,is_production,status,sha,created_at\n\
         acme/a,production,true,success,s1,2024-03-01T10:00:00Z\n\
         acme/a,production,true,success,s2,yesterday\n\
         acme/a,production,true,success,,2024-03-01T10:00:00Z\n\
         acme/a,production,maybe,success,s4,2024-03-01T10:00:00Z\n\
         acme/a,production,true,done,s5,2024-03-01T10:00:00Z\n\
         acme/a,production,true,success,s6,2024-03-01T10:00:00Z,extra\n\
         acme/a,production,true,success,s7,2024-03-01T10:00:00Z\n",
    )
    .unwrap();
    let nd_path = dir.path().join("incidents.ndjson");
    std::fs::write(
        &nd_path,
        [
            r#"{"number":1,"title":"ok","status":"resolved","started_at":"2024-03-01T10:00:00Z"}"#,
            "[1,2]",
            "not json",
            "",
            r#"{"number":4,"title":"x","status":"open","started_at":"2024-03-01T10:00:00Z","severity":"sev9"}"#,
            r#"{"number":"three","title":"x","status":"open","started_at":"2024-03-01T10:00:00Z"}"#,
            r#"{"title":"x","status":"open","started_at":"2024-03-01T10:00:00Z"}"#,
            r#"{"number":8,"title":"x","status":"open","started_at":"2024-03-01T10:00:00Z","colour":"red"}"#,
            r#"{"number":9,"title":"x","status":"open","started_at":1709287200}"#,
            r#"{"number":10,"title":"x","status":"open","started_at":"2024-03-01T10:00:00Z"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let c = connector(dir.path());

    let o = run(&c, "deployments", None).await;
    o.result.unwrap();
    assert_eq!(o.records.len(), 2);
    let f = csv_path.display().to_string();
    let reasons: Vec<&str> = o.quarantined.iter().map(|q| q.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            format!("{f}:3: column `created_at`: unparsable timestamp \"yesterday\""),
            format!("{f}:4: column `sha`: missing value (the column is required)"),
            format!("{f}:5: column `is_production`: expected true/false/1/0/yes/no, found \"maybe\""),
            format!(
                "{f}:6: column `status`: unknown value \"done\"; expected one of success, failure, error, \
                 in_progress, cancelled, stale"
            ),
            format!("{f}:7: the row has 7 cells but the header has 6"),
        ]
    );
    assert!(
        o.quarantined
            .iter()
            .all(|q| q.source == "legacy" && q.stream == "deployments")
    );
    let raw: Value = serde_json::from_str(&o.quarantined[0].raw).unwrap();
    assert_eq!(raw["created_at"], "yesterday");
    let raw: Value = serde_json::from_str(&o.quarantined[4].raw).unwrap();
    assert_eq!(raw["#7"], "extra");
    let codes: Vec<&str> = o
        .quarantined
        .iter()
        .filter_map(|q| q.reason_code.map(|c| c.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            "bad_timestamp",
            "missing_field",
            "bad_value",
            "bad_value",
            "bad_shape"
        ]
    );

    let o = run(&c, "incidents", None).await;
    o.result.unwrap();
    assert_eq!(o.records.len(), 2);
    let f = nd_path.display().to_string();
    let reasons: Vec<&str> = o.quarantined.iter().map(|q| q.reason.as_str()).collect();
    assert_eq!(reasons.len(), 7, "{reasons:#?}");
    assert_eq!(reasons[0], format!("{f}:2: expected a JSON object, found [1,2]"));
    assert!(
        reasons[1].starts_with(&format!("{f}:3: not a JSON object: ")),
        "{}",
        reasons[1]
    );
    assert_eq!(
        reasons[2],
        format!("{f}:5: column `severity`: unknown value \"sev9\"; expected one of sev1, sev2, sev3, sev4")
    );
    assert_eq!(
        reasons[3],
        format!("{f}:6: column `number`: expected an integer, found \"three\"")
    );
    assert_eq!(
        reasons[4],
        format!("{f}:7: column `id`: missing value: give `id`, or `number` to derive it")
    );
    assert!(
        reasons[5].starts_with(&format!(
            "{f}:8: column `colour`: unknown column; incidents has id, "
        )),
        "{}",
        reasons[5]
    );
    assert_eq!(
        reasons[6],
        format!("{f}:9: column `started_at`: expected a timestamp string, found 1709287200")
    );
    assert_eq!(o.quarantined[0].raw, "[1,2]");
    assert_eq!(o.quarantined[1].raw, "\"not json\"");
    let codes: Vec<&str> = o
        .quarantined
        .iter()
        .filter_map(|q| q.reason_code.map(|c| c.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            "bad_shape",
            "bad_shape",
            "bad_value",
            "bad_value",
            "missing_field",
            "bad_shape",
            "bad_timestamp"
        ]
    );
}

#[tokio::test]
async fn a_bad_header_or_unreadable_path_is_a_config_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployments.csv");
    std::fs::write(
        &path,
        "repo,environment,status,sha,created_at\nacme/a,prod,success,s,2024-03-01T10:00:00Z\n",
    )
    .unwrap();
    let c = connector(dir.path());
    let want = format!(
        "source `legacy`: file {}: header: missing required column `is_production`",
        path.display()
    );
    assert_eq!(c.check().await.unwrap_err().to_string(), want);
    let o = run(&c, "deployments", None).await;
    assert_eq!(o.result.unwrap_err().to_string(), want);

    std::fs::write(
        &path,
        "repo,environment,is_production,status,sha,created_at,colour\n",
    )
    .unwrap();
    let err = c.check().await.unwrap_err().to_string();
    assert!(err.contains("unknown column `colour`"), "{err}");

    std::fs::write(&path, "id,environment,is_production,status,sha,created_at\n").unwrap();
    let err = c.check().await.unwrap_err().to_string();
    assert!(err.ends_with("header: missing required column `repo`"), "{err}");

    std::fs::write(dir.path().join("incidents.csv"), "title,status,started_at\n").unwrap();
    std::fs::remove_file(&path).unwrap();
    let err = c.check().await.unwrap_err().to_string();
    assert!(
        err.ends_with("no `id` column: give one, or `number` to derive it"),
        "{err}"
    );

    std::fs::write(dir.path().join("incidents.csv"), "").unwrap();
    let err = c.check().await.unwrap_err().to_string();
    assert!(err.contains("incidents.csv: no header row"), "{err}");
    let o = run(&c, "incidents", None).await;
    assert!(o.result.unwrap_err().to_string().contains("no header row"));

    let missing = dir.path().join("nowhere");
    let err = connector(&missing).check().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("cannot read {}", missing.display())),
        "{err}"
    );
    let err = connector(tempfile::tempdir().unwrap().path())
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no file to import"), "{err}");
}

#[tokio::test]
async fn an_unchanged_file_is_skipped_and_a_changed_one_reread() {
    let dir = tempfile::tempdir().unwrap();
    let src = samples("csv").join("deployments.csv");
    let path = dir.path().join("deployments.csv");
    std::fs::copy(&src, &path).unwrap();
    let c = connector(dir.path());
    let first = run(&c, "deployments", None).await;
    assert_eq!(first.records.len(), 2);
    let bookmark = first.checkpoints.last().cloned();

    let second = run(&c, "deployments", bookmark.clone()).await;
    second.result.unwrap();
    assert!(second.records.is_empty() && second.quarantined.is_empty());
    assert!(second.checkpoints.is_empty(), "nothing changed, nothing to save");

    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(",,acme/x,,,production,true,failure,s9,2024-03-05T10:00:00Z,,\n");
    std::fs::write(&path, text).unwrap();
    let third = run(&c, "deployments", bookmark).await;
    assert!(third.quarantined.is_empty(), "{:?}", third.quarantined);
    assert_eq!(third.records.len(), 3, "a changed file is re-read in full");
    assert_eq!(third.records[..2], expected(Entity::Deployments)[..]);
}

/// A file of `n` deployments with one bad row in the middle, as CSV or NDJSON.
fn big_file(dir: &Path, format: FileFormat, n: usize) -> PathBuf {
    let mut text = String::new();
    let path = match format {
        FileFormat::Csv => {
            text.push_str("repo,environment,is_production,status,sha,created_at\n");
            for i in 0..n {
                let when = if i == 1500 {
                    s("never")
                } else {
                    format!("2024-03-01T10:00:{:02}Z", i % 60)
                };
                text.push_str(&format!("acme/a,production,true,success,sha{i},{when}\n"));
            }
            dir.join("deployments.csv")
        }
        FileFormat::Ndjson => {
            for i in 0..n {
                let when = if i == 1500 {
                    s("never")
                } else {
                    format!("2024-03-01T10:00:{:02}Z", i % 60)
                };
                let row = json!({"repo": "acme/a", "environment": "production", "is_production": true,
                    "status": "success", "sha": format!("sha{i}"), "created_at": when});
                text.push_str(&format!("{row}\n"));
                if i % 700 == 0 {
                    text.push('\n');
                }
            }
            dir.join("deployments.ndjson")
        }
    };
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_read_resumed_from_a_mid_file_checkpoint_equals_a_clean_read() {
    for format in [FileFormat::Csv, FileFormat::Ndjson] {
        let dir = tempfile::tempdir().unwrap();
        big_file(dir.path(), format, 2500);
        let c = connector(dir.path());
        let clean = run(&c, "deployments", None).await;
        clean.result.unwrap();
        assert_eq!(clean.records.len() + clean.quarantined.len(), 2500);
        assert_eq!(clean.quarantined.len(), 1);
        // Batches of 1000 rows, the bad one included: a checkpoint after each.
        assert_eq!(clean.checkpoints.len(), 3, "{format:?}");
        assert_eq!(clean.records_at_checkpoint, vec![1000, 1999, 2499]);

        let resumed = run(&c, "deployments", Some(clean.checkpoints[0].clone())).await;
        resumed.result.unwrap();
        let mut union = clean.records[..1000].to_vec();
        union.extend(resumed.records);
        assert_eq!(union, clean.records, "{format:?}");
        assert_eq!(resumed.quarantined.len(), 1);
        assert_eq!(resumed.quarantined[0].reason, clean.quarantined[0].reason);
        // CSV: the header is line 1; NDJSON: three blank lines come before that row.
        let line = if format == FileFormat::Csv { 1502 } else { 1504 };
        let at = format!(":{line}: column `created_at`");
        assert!(
            clean.quarantined[0].reason.contains(&at),
            "{format:?}: {}",
            clean.quarantined[0].reason
        );
        assert_eq!(resumed.checkpoints.last(), clean.checkpoints.last());
    }
}

#[tokio::test]
async fn a_file_changed_since_the_checkpoint_is_read_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = big_file(dir.path(), FileFormat::Csv, 2500);
    let c = connector(dir.path());
    let clean = run(&c, "deployments", None).await;
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("acme/b,production,true,success,late,2024-03-02T10:00:00Z\n");
    std::fs::write(&path, text).unwrap();
    let resumed = run(&c, "deployments", Some(clean.checkpoints[0].clone())).await;
    assert_eq!(resumed.records.len(), 2500);
    assert_eq!(resumed.records[..1000], clean.records[..1000]);
}

#[tokio::test]
async fn a_directory_reads_each_file_by_the_entity_its_name_names() {
    let dir = tempfile::tempdir().unwrap();
    let csv = std::fs::read_to_string(samples("csv").join("deployments.csv")).unwrap();
    let nd = std::fs::read_to_string(samples("ndjson").join("deployments.ndjson")).unwrap();
    let tr = std::fs::read_to_string(samples("csv").join("ticket_transitions.csv")).unwrap();
    std::fs::write(dir.path().join("Deployments-2024.csv"), format!("\u{feff}{csv}")).unwrap();
    std::fs::write(
        dir.path().join("deployments_old.jsonl"),
        nd.replace("d-1", "d-old"),
    )
    .unwrap();
    std::fs::write(dir.path().join("ticket_transitions.csv"), tr).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not data").unwrap();
    std::fs::write(dir.path().join("misc.csv"), "a,b\n").unwrap();
    std::fs::write(dir.path().join(".hidden.csv"), "a,b\n").unwrap();
    std::fs::create_dir(dir.path().join("incidents.csv")).unwrap();

    let found = discover(&config(dir.path())).unwrap();
    let keys: Vec<(&str, Entity)> = found.files.iter().map(|f| (f.key.as_str(), f.entity)).collect();
    assert_eq!(
        keys,
        vec![
            ("Deployments-2024.csv", Entity::Deployments),
            ("deployments_old.jsonl", Entity::Deployments),
            ("ticket_transitions.csv", Entity::TicketTransitions),
        ]
    );
    let skipped: Vec<String> = found
        .skipped
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(skipped, vec!["misc.csv", "notes.txt"]);

    let c = connector(dir.path());
    c.check().await.unwrap();
    let o = run(&c, "deployments", None).await;
    assert_eq!(o.records.len(), 4);
    assert!(o.quarantined.is_empty(), "{:?}", o.quarantined);
    assert_eq!(
        o.records[..2],
        expected(Entity::Deployments)[..],
        "a BOM before the header is ignored"
    );
    assert_eq!(o.records[2].key(), "legacy:d-old");
    let o = run(&c, "ticket_transitions", None).await;
    assert_eq!(o.records, expected(Entity::TicketTransitions));
    let o = run(&c, "incidents", None).await;
    assert!(o.records.is_empty() && o.result.is_ok());

    // A bookmark forgets files that are gone.
    let bookmark = run(&c, "deployments", None).await.checkpoints.pop();
    std::fs::remove_file(dir.path().join("deployments_old.jsonl")).unwrap();
    let o = run(&c, "deployments", bookmark).await;
    assert!(o.records.is_empty());
    let state: StreamState = serde_json::from_value(o.checkpoints[0].clone()).unwrap();
    assert_eq!(
        state.done.keys().collect::<Vec<_>>(),
        vec!["Deployments-2024.csv"]
    );
}

#[tokio::test]
async fn config_format_and_entity_override_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.txt");
    std::fs::copy(samples("ndjson").join("incidents.ndjson"), &path).unwrap();
    let mut cfg = config(&path);
    assert!(discover(&cfg).unwrap_err().contains("cannot tell the format"));
    cfg.format = Some(FileFormat::Ndjson);
    assert!(discover(&cfg).unwrap_err().contains("cannot tell what"));
    cfg.entity = Some(Entity::Incidents);
    let c = FileImport::new(cfg, &SecretEnv::process(), RetryPolicy::default()).unwrap();
    c.check().await.unwrap();
    assert_eq!(
        run(&c, "incidents", None).await.records,
        expected(Entity::Incidents)
    );
    assert!(run(&c, "nope", None).await.result.is_err());
}

#[test]
fn config_rejects_unknown_keys_and_resolves_relative_paths() {
    let cfg: FileImportConfig = serde_json::from_value(
        json!({"name": "f", "path": "data/deploys.csv", "format": "jsonl", "entity": "ticket_transitions"}),
    )
    .unwrap();
    assert_eq!(cfg.format, Some(FileFormat::Ndjson));
    assert_eq!(cfg.entity, Some(Entity::TicketTransitions));
    let mut resolved = cfg.clone();
    resolved.resolve_paths(Path::new("/etc/tandem"));
    assert_eq!(resolved.path, Path::new("/etc/tandem/data/deploys.csv"));
    let mut absolute = config(Path::new("/srv/x.csv"));
    absolute.resolve_paths(Path::new("/etc/tandem"));
    assert_eq!(absolute.path, Path::new("/srv/x.csv"));
    assert!(
        serde_json::from_value::<FileImportConfig>(json!({"name": "f", "path": "x", "colour": 1})).is_err()
    );
    assert!(
        serde_json::from_value::<FileImportConfig>(json!({"name": "f", "path": "x", "entity": "pulls"}))
            .is_err()
    );
}

#[test]
fn entity_from_file_stem() {
    assert_eq!(Entity::from_stem("tickets"), Some(Entity::Tickets));
    assert_eq!(
        Entity::from_stem("ticket_transitions"),
        Some(Entity::TicketTransitions)
    );
    assert_eq!(
        Entity::from_stem("change_requests-q1"),
        Some(Entity::ChangeRequests)
    );
    assert_eq!(Entity::from_stem("changes.2024"), Some(Entity::Changes));
    assert_eq!(Entity::from_stem("changelog"), None);
    assert_eq!(Entity::from_stem("deploys"), None);
}

#[test]
fn text_lists_take_semicolons_or_a_json_array() {
    let row = |labels: Value| {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("repo", json!("a/b")),
            ("number", json!("7")),
            ("title", json!("t")),
            ("state", json!("OPEN")),
            ("created_at", json!("2024-03-01T10:00:00Z")),
            ("is_revert", json!("No")),
            ("labels", labels),
        ] {
            m.insert(k.into(), v);
        }
        row::typed::<Change>(&m, "src")
    };
    assert_eq!(row(json!(" a ; b;;")).unwrap().labels, strings(&["a", "b"]));
    assert_eq!(
        row(json!(r#"["a;1", "b"]"#)).unwrap().labels,
        strings(&["a;1", "b"])
    );
    assert_eq!(row(json!(["x"])).unwrap().labels, strings(&["x"]));
    assert_eq!(row(json!("")).unwrap().labels, Vec::<String>::new());
    let change = row(json!(null)).unwrap();
    assert_eq!(
        (change.state.as_str(), change.number, change.is_revert),
        ("open", 7, false)
    );
    assert!(
        row(json!("[1, 2]"))
            .unwrap_err()
            .message
            .contains("not a JSON array of strings")
    );
    assert!(row(json!([1])).is_err());
}
