//! The lake's Delta tables: copy-on-write upserts that touch only what they must, bookmarks that
//! take effect exactly when their rows do, conversion of a single-file lake, maintenance and time
//! travel.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use tandem_connectors::model::{Deployment, DeploymentStatus, Incident, Quarantined, Severity, Table};

use super::delta::AsOf;
use super::*;

fn day(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, 12, 0, 0).unwrap()
}

/// A production deployment created on `created`, last changed `updated` hours after it.
fn dep(id: &str, created: DateTime<Utc>, updated: i64, status: DeploymentStatus) -> Deployment {
    Deployment {
        change_refs: vec!["r1".into()],
        deployed_by: None,
        id: id.into(),
        source: "gh".into(),
        repo: "acme/a".into(),
        service: None,
        team: None,
        environment: "production".into(),
        is_production: true,
        status,
        sha: "abc".into(),
        created_at: created,
        finished_at: None,
        updated_at: created + Duration::hours(updated),
    }
}

fn incident(id: &str, updated: i64) -> Incident {
    Incident {
        id: id.into(),
        source: "pd".into(),
        number: None,
        title: "Down".into(),
        service_ref: None,
        team_ref: None,
        service: None,
        team: None,
        severity: Some(Severity::Sev1),
        status: "resolved".into(),
        started_at: day(3, 1),
        acknowledged_at: None,
        resolved_at: None,
        cause_refs: Vec::new(),
        correlation_id: None,
        assignee: None,
        acknowledged_by: None,
        updated_at: day(3, 1) + Duration::hours(updated),
    }
}

/// The data files of the deployments table, by path.
fn files(store: &Store) -> Vec<String> {
    let mut files: Vec<String> = store
        .table_files(Deployment::NAME, AsOf::Latest)
        .unwrap()
        .iter()
        .map(|p| {
            p.strip_prefix(store.table_dir(Deployment::NAME))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    files.sort();
    files
}

#[test]
fn an_upsert_rewrites_only_the_files_holding_the_keys_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = store
        .upsert(vec![
            dep("jan-1", day(1, 10), 0, DeploymentStatus::InProgress),
            dep("jan-2", day(1, 20), 0, DeploymentStatus::Success),
            dep("mar-1", day(3, 5), 0, DeploymentStatus::Success),
        ])
        .unwrap();
    assert_eq!(
        s,
        UpsertStats {
            inserted: 3,
            updated: 0
        }
    );
    let first = files(&store);
    assert_eq!(first.len(), 2, "one file per month partition: {first:?}");
    assert!(first[0].starts_with("month=2026-01/") && first[1].starts_with("month=2026-03/"));

    // A new key in March and a newer version of a January row: January's file is rewritten,
    // March gets a new file beside its old one, which is not touched.
    let s = store
        .upsert(vec![
            dep("jan-1", day(1, 10), 5, DeploymentStatus::Success),
            dep("mar-2", day(3, 6), 0, DeploymentStatus::Failure),
        ])
        .unwrap();
    assert_eq!(
        s,
        UpsertStats {
            inserted: 1,
            updated: 1
        }
    );
    let second = files(&store);
    assert_eq!(second.len(), 3, "{second:?}");
    assert!(!second.contains(&first[0]), "January's file was replaced");
    assert!(second.contains(&first[1]), "March's file was not rewritten");
    assert_eq!(
        store.table_version(Deployment::NAME, AsOf::Latest).unwrap(),
        Some(2)
    );

    // A row that comes back exactly as stored (an overlapping re-read) rewrites nothing.
    let s = store
        .upsert(vec![dep("mar-2", day(3, 6), 0, DeploymentStatus::Failure)])
        .unwrap();
    assert_eq!(s, UpsertStats::default());
    assert_eq!(files(&store), second, "no file rewritten");
    assert_eq!(
        store.table_version(Deployment::NAME, AsOf::Latest).unwrap(),
        Some(2)
    );

    // An older version never wins, and a batch that changes nothing commits nothing.
    let s = store
        .upsert(vec![dep("jan-1", day(1, 10), 1, DeploymentStatus::Failure)])
        .unwrap();
    assert_eq!(s, UpsertStats::default());
    assert_eq!(
        store.table_version(Deployment::NAME, AsOf::Latest).unwrap(),
        Some(2)
    );

    let rows = store.read::<Deployment>().unwrap();
    let got: Vec<(&str, DeploymentStatus)> = rows.iter().map(|r| (r.id.as_str(), r.status)).collect();
    assert_eq!(
        got,
        [
            ("jan-1", DeploymentStatus::Success),
            ("jan-2", DeploymentStatus::Success),
            ("mar-1", DeploymentStatus::Success),
            ("mar-2", DeploymentStatus::Failure),
        ]
    );
    // A new process (no key index in memory) sees and replaces the same rows.
    let again = Store::open(dir.path()).unwrap();
    let s = again
        .upsert(vec![dep("mar-2", day(3, 6), 1, DeploymentStatus::Success)])
        .unwrap();
    assert_eq!(
        s,
        UpsertStats {
            inserted: 0,
            updated: 1
        }
    );
    assert_eq!(again.read::<Deployment>().unwrap().len(), 4);
}

#[test]
fn time_travel_reads_each_version_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.upsert(vec![incident("p1", 0)]).unwrap();
    let after_first = Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    store.upsert(vec![incident("p1", 1), incident("p2", 0)]).unwrap();
    assert_eq!(store.read::<Incident>().unwrap().len(), 2);
    let v1 = store.read_as_of::<Incident>(AsOf::Version(1)).unwrap();
    assert_eq!(v1.len(), 1);
    assert_eq!(v1[0].updated_at, day(3, 1));
    let at = store.read_as_of::<Incident>(AsOf::Time(after_first)).unwrap();
    assert_eq!(at, v1, "the latest version at or before the instant");
}

#[test]
fn a_checkpoint_whose_tables_all_committed_before_a_kill_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut tables = Tables::default();
    tables.incidents.push(incident("p1", 0));
    store
        .commit("pd", "incidents", tables, Some(serde_json::json!({"page": 1})))
        .unwrap();
    assert_eq!(
        store.bookmark("pd", "incidents").unwrap(),
        Some(serde_json::json!({"page": 1}))
    );

    // Checkpoint 2 was saved as pending and both its tables committed it; the process died
    // before it could save the bookmark.
    let key = bookmark_key("pd", "incidents");
    let pending = Pending {
        key: key.clone(),
        seq: 2,
        state: serde_json::json!({"page": 2}),
        tables: vec![Incident::NAME.into(), Quarantined::NAME.into()],
    };
    store.write_json(&store.pending_path(&key), &pending).unwrap();
    let app = txn_app(&key);
    store
        .upsert_txn(vec![incident("p2", 0)], Some((&app, 2)))
        .unwrap();
    store
        .upsert_txn(vec![quarantined("q1")], Some((&app, 2)))
        .unwrap();
    assert_eq!(
        store.bookmark("pd", "incidents").unwrap(),
        Some(serde_json::json!({"page": 1}))
    );

    let next = Store::open(dir.path()).unwrap();
    assert_eq!(
        next.resume("pd", "incidents").unwrap(),
        Some(serde_json::json!({"page": 2})),
        "the rows are in: the sync resumes after them, reading nothing twice"
    );
    assert!(!store.pending_path(&key).exists());
}

#[test]
fn a_checkpoint_killed_before_all_its_tables_committed_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut tables = Tables::default();
    tables.incidents.push(incident("p1", 0));
    store
        .commit("pd", "incidents", tables, Some(serde_json::json!({"page": 1})))
        .unwrap();
    let key = bookmark_key("pd", "incidents");
    let pending = Pending {
        key: key.clone(),
        seq: 2,
        state: serde_json::json!({"page": 2}),
        tables: vec![Incident::NAME.into(), Quarantined::NAME.into()],
    };
    store.write_json(&store.pending_path(&key), &pending).unwrap();
    // Only the incidents committed; the quarantine never did.
    store
        .upsert_txn(vec![incident("p2", 0)], Some((&txn_app(&key), 2)))
        .unwrap();

    let next = Store::open(dir.path()).unwrap();
    assert_eq!(
        next.resume("pd", "incidents").unwrap(),
        Some(serde_json::json!({"page": 1}))
    );
    // The re-read commits under a new number, so its commits are never mistaken for the
    // abandoned checkpoint's.
    let mut tables = Tables::default();
    tables.incidents.push(incident("p2", 0));
    tables.quarantine.push(quarantined("q1"));
    next.commit("pd", "incidents", tables, Some(serde_json::json!({"page": 2})))
        .unwrap();
    assert_eq!(next.sequences().unwrap()[&key], 3);
    assert_eq!(
        next.read::<Incident>().unwrap().len(),
        2,
        "no duplicate of the row committed twice"
    );
    assert_eq!(next.read::<Quarantined>().unwrap().len(), 1);
}

fn quarantined(id: &str) -> Quarantined {
    Quarantined {
        id: id.into(),
        source: "pd".into(),
        stream: "incidents".into(),
        reason: "created_at: unparsable timestamp".into(),
        raw: "{}".into(),
        seen_at: day(3, 2),
        reason_code: None,
    }
}

#[test]
fn a_lake_of_single_parquet_files_is_converted_without_a_row_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // The layout an earlier release wrote: one Parquet file per table, by the same codec.
    let deployments = vec![
        dep("jan-1", day(1, 10), 0, DeploymentStatus::Success),
        dep("mar-1", day(3, 5), 0, DeploymentStatus::Failure),
    ];
    super::codec::write_table(&deployments, &store.legacy_table_path(Deployment::NAME)).unwrap();
    super::codec::write_table(&[incident("p1", 0)], &store.legacy_table_path(Incident::NAME)).unwrap();
    store
        .save_bookmark("gh", "deployments", serde_json::json!({"cursor": "x"}))
        .unwrap();
    // Readable before it is converted, as before.
    assert_eq!(store.read::<Deployment>().unwrap(), deployments);
    assert_eq!(store.legacy_tables(), vec![Deployment::NAME, Incident::NAME]);

    let writer = Store::open_for_writing(dir.path(), "test").unwrap();
    assert!(writer.legacy_tables().is_empty());
    assert!(delta::exists(&writer.table_dir(Deployment::NAME)));
    assert_eq!(writer.read::<Deployment>().unwrap(), deployments);
    assert_eq!(writer.read::<Incident>().unwrap(), vec![incident("p1", 0)]);
    assert_eq!(files(&writer).len(), 2, "partitioned by month");
    assert_eq!(
        writer.bookmark("gh", "deployments").unwrap(),
        Some(serde_json::json!({"cursor": "x"})),
        "bookmarks are kept: no source is read again"
    );
}

#[test]
fn a_conversion_killed_after_its_commit_does_not_convert_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let legacy = store.legacy_table_path(Incident::NAME);
    super::codec::write_table(&[incident("p1", 0)], &legacy).unwrap();
    store.migrate().unwrap();
    // Killed before the old file was removed; meanwhile a sync updated the row.
    super::codec::write_table(&[incident("p1", 0)], &legacy).unwrap();
    store.upsert(vec![incident("p1", 3)]).unwrap();
    let version = store.table_version(Incident::NAME, AsOf::Latest).unwrap();
    assert_eq!(Store::open(dir.path()).unwrap().migrate().unwrap(), vec![]);
    assert!(!legacy.exists());
    assert_eq!(
        store.table_version(Incident::NAME, AsOf::Latest).unwrap(),
        version
    );
    assert_eq!(store.read::<Incident>().unwrap(), vec![incident("p1", 3)]);
}

#[test]
fn maintenance_merges_small_files_keeps_rows_and_time_travel_then_vacuums() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..10 {
        store
            .upsert(vec![dep(
                &format!("d{i}"),
                day(1, 1 + i),
                0,
                DeploymentStatus::Success,
            )])
            .unwrap();
    }
    assert_eq!(files(&store).len(), 10);
    let before = store.read::<Deployment>().unwrap();
    let now = Utc::now();
    // Not forced and not yet due: nothing merged below the threshold of small files.
    let quiet = store
        .maintain(maintain::Retention::default(), false, now)
        .unwrap();
    assert_eq!(
        quiet.compacted,
        vec![("deployments".to_owned(), 9)],
        "ten small files are due"
    );
    assert_eq!(files(&store).len(), 1);
    assert_eq!(store.read::<Deployment>().unwrap(), before);
    assert_eq!(
        store.read_as_of::<Deployment>(AsOf::Version(3)).unwrap().len(),
        3,
        "older versions stay readable"
    );
    assert_eq!(quiet.files_vacuumed, 0, "nothing is older than the retention");

    // A second pass the same day is not due for clean-up; a forced one with no retention
    // deletes the merged-away files.
    let again = store
        .maintain(maintain::Retention::default(), false, now)
        .unwrap();
    assert_eq!(again.checkpointed, 0);
    let forced = store
        .maintain(
            maintain::Retention { days: 0, raw_days: 0 },
            true,
            now + Duration::seconds(1),
        )
        .unwrap();
    assert_eq!(forced.files_vacuumed, 10);
    assert_eq!(store.read::<Deployment>().unwrap(), before);
    let on_disk = walk(&store.table_dir(Deployment::NAME));
    assert_eq!(on_disk, 1, "only the merged file is left");
}

/// Parquet files under `dir`.
fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                usize::from(
                    p.extension().is_some_and(|x| x == "parquet")
                        && !p.to_string_lossy().contains("_delta_log"),
                )
            }
        })
        .sum()
}

#[test]
fn a_store_without_the_lock_sees_what_another_writer_committed_before_it_upserts() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path()).unwrap();
    first
        .upsert(vec![dep("a", day(1, 10), 0, DeploymentStatus::InProgress)])
        .unwrap();
    // Another process (its own store, its own key index) adds and updates rows meanwhile.
    let other = Store::open(dir.path()).unwrap();
    other
        .upsert(vec![
            dep("a", day(1, 10), 2, DeploymentStatus::Success),
            dep("b", day(1, 11), 0, DeploymentStatus::Success),
        ])
        .unwrap();
    // The first store replaces `b` instead of adding a second copy of it.
    let s = first
        .upsert(vec![dep("b", day(1, 11), 1, DeploymentStatus::Failure)])
        .unwrap();
    assert_eq!(
        s,
        UpsertStats {
            inserted: 0,
            updated: 1
        }
    );
    let rows = first.read::<Deployment>().unwrap();
    let got: Vec<(&str, DeploymentStatus)> = rows.iter().map(|r| (r.id.as_str(), r.status)).collect();
    assert_eq!(
        got,
        [("a", DeploymentStatus::Success), ("b", DeploymentStatus::Failure)]
    );
}

#[test]
fn a_checkpoint_number_a_failed_commit_took_is_never_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut tables = Tables::default();
    tables.incidents.push(incident("p1", 0));
    tables.quarantine.push(quarantined("q0"));
    store
        .commit("pd", "incidents", tables, Some(serde_json::json!({"page": 1})))
        .unwrap();
    let corrupt = |table: &str| {
        for file in store.table_files(table, AsOf::Latest).unwrap() {
            std::fs::write(file, b"").unwrap();
        }
    };

    // A commit without a bookmark (rows after the last checkpoint) stops after its first table:
    // the incidents carry its number, the quarantine does not.
    corrupt(Quarantined::NAME);
    let mut tables = Tables::default();
    tables.incidents.push(incident("p2", 0));
    tables.quarantine.push(quarantined("q1"));
    Store::open(dir.path())
        .unwrap()
        .commit("pd", "incidents", tables, None)
        .unwrap_err();

    // The next checkpoint, of the incidents only, saves its bookmark as pending and stops before
    // its table committed.
    corrupt(Incident::NAME);
    let mut tables = Tables::default();
    tables.incidents.push(incident("p3", 0));
    Store::open(dir.path())
        .unwrap()
        .commit("pd", "incidents", tables, Some(serde_json::json!({"page": 3})))
        .unwrap_err();

    // Had it reused the failed commit's number, the incidents would seem to carry it, and the
    // bookmark would skip the rows of page 3, which were never committed.
    assert_eq!(
        Store::open(dir.path())
            .unwrap()
            .resume("pd", "incidents")
            .unwrap(),
        Some(serde_json::json!({"page": 1}))
    );
}

#[test]
fn maintenance_removes_the_data_files_of_a_commit_that_was_killed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .upsert(vec![dep("a", day(1, 1), 0, DeploymentStatus::Success)])
        .unwrap();
    // A killed commit's data file: written, never named by the log.
    let named = store.table_files(Deployment::NAME, AsOf::Latest).unwrap();
    let orphan = named[0].with_file_name("part-killed.zstd.parquet");
    std::fs::copy(&named[0], &orphan).unwrap();
    let rows = store.read::<Deployment>().unwrap();
    assert_eq!(rows.len(), 1, "a file the log does not name is not read");

    let kept = store
        .maintain(maintain::Retention::default(), true, Utc::now())
        .unwrap();
    assert_eq!(kept.files_vacuumed, 0);
    assert!(
        orphan.exists(),
        "younger than the retention: a writer may be about to commit it"
    );
    let swept = store
        .maintain(maintain::Retention { days: 0, raw_days: 0 }, true, Utc::now())
        .unwrap();
    assert_eq!(swept.files_vacuumed, 1);
    assert!(!orphan.exists());
    assert_eq!(store.read::<Deployment>().unwrap(), rows);
}

#[test]
fn a_maintenance_that_removes_log_entries_still_vacuums() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for updated in 0..3 {
        store
            .upsert(vec![dep("a", day(1, 1), updated, DeploymentStatus::Success)])
            .unwrap();
    }
    // No checkpoint yet: the version maintenance reads comes from the very log entries it
    // removes.
    let report = store
        .maintain(maintain::Retention { days: 0, raw_days: 0 }, true, Utc::now())
        .unwrap();
    assert!(report.log_entries_removed > 0, "{report:?}");
    assert_eq!(report.files_vacuumed, 2, "the two replaced files");
    assert_eq!(store.read::<Deployment>().unwrap().len(), 1);
}

#[test]
fn a_writer_killed_mid_write_leaves_no_staging_or_temporary_file_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .upsert(vec![dep("a", day(1, 1), 0, DeploymentStatus::Success)])
        .unwrap();
    // What a kill leaves: the staging copy of a log entry that was never linked into place, and
    // a pending bookmark's temporary file.
    let log = store.table_dir(Deployment::NAME).join("_delta_log");
    let staging = log.join("00000000000000000002.json#1");
    std::fs::write(&staging, b"{\"commitInfo\":").unwrap();
    let pending = dir.path().join("state/pending");
    std::fs::create_dir_all(&pending).unwrap();
    let tmp = pending.join("pd_incidents.json.123-0.tmp");
    std::fs::write(&tmp, b"{").unwrap();

    let writer = Store::open_for_writing(dir.path(), "test").unwrap();
    assert!(!staging.exists() && !tmp.exists());
    assert!(log.join("00000000000000000001.json").exists(), "log entries stay");
    writer
        .upsert(vec![dep("b", day(1, 2), 0, DeploymentStatus::Success)])
        .unwrap();
    assert_eq!(writer.read::<Deployment>().unwrap().len(), 2);
}

#[test]
fn an_instant_finds_the_version_by_its_commit_time_not_by_when_its_log_file_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.upsert(vec![incident("p1", 0)]).unwrap();
    let log = table::open(&store.table_dir(Incident::NAME), AsOf::Latest)
        .unwrap()
        .unwrap();
    let committed = log.committed_at().unwrap();
    // A loaded machine wrote the log entry a while after the commit took its time.
    let entry = store
        .table_dir(Incident::NAME)
        .join("_delta_log/00000000000000000001.json");
    std::fs::File::options()
        .write(true)
        .open(&entry)
        .unwrap()
        .set_modified((committed + Duration::seconds(30)).into())
        .unwrap();
    assert_eq!(
        store
            .table_version(Incident::NAME, AsOf::Time(committed))
            .unwrap(),
        Some(1),
        "as of the time version 1 says it was committed is version 1"
    );
    let created = table::open(&store.table_dir(Incident::NAME), AsOf::Version(0))
        .unwrap()
        .unwrap()
        .committed_at()
        .unwrap();
    if created < committed {
        assert_eq!(
            store.table_version(Incident::NAME, AsOf::Time(created)).unwrap(),
            Some(0)
        );
    }
}

#[test]
fn a_writer_whose_table_another_rewrote_meanwhile_conflicts_and_writers_that_only_add_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, b) = (
        dep("a", day(9, 1), 1, DeploymentStatus::InProgress),
        dep("b", day(9, 2), 1, DeploymentStatus::InProgress),
    );
    store.upsert(vec![a.clone(), b.clone()]).unwrap();
    let table_dir = store.table_dir(Deployment::NAME);
    // Writers that read the table now and commit later.
    let stale = || table::OpenTable::new(table::open(&table_dir, AsOf::Latest).unwrap().unwrap());
    let mut rewriter = stale();

    let a2 = dep("a", day(9, 1), 2, DeploymentStatus::Success);
    store.upsert(vec![a2.clone()]).unwrap();

    // The commit above replaced a file this writer read (delta-rs, without a read predicate,
    // takes every file as read): a conflict, and nothing committed.
    let b2 = dep("b", day(9, 2), 2, DeploymentStatus::Failure);
    let result = table::upsert(&mut rewriter, vec![b2.clone()], None);
    assert!(
        matches!(&result, Err(StoreError::Delta(e)) if e.conflict),
        "expected a conflict, got {result:?}"
    );
    assert_eq!(store.read::<Deployment>().unwrap(), vec![a2.clone(), b.clone()]);

    // Two writers that only add new keys: the later commits on top of the earlier.
    let (mut first, mut second) = (stale(), stale());
    let (c, d) = (
        dep("c", day(9, 3), 1, DeploymentStatus::Success),
        dep("d", day(9, 3), 1, DeploymentStatus::Success),
    );
    table::upsert(&mut first, vec![c.clone()], None).unwrap();
    table::upsert(&mut second, vec![d.clone()], None).unwrap();

    // The conflicting change done again through the store, from the table as it now is: every
    // change, once each.
    store.upsert(vec![b2.clone()]).unwrap();
    assert_eq!(store.read::<Deployment>().unwrap(), vec![a2, b2, c, d]);
}
