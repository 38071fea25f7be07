//! Crash tests: the real `tandem sync` killed in the middle of its commits — at each step of the
//! commit path through the store's test hook `TANDEM_FAILPOINT`, and by SIGKILL at seeded random
//! moments — then run again. The tables must equal those of a clean sync row for row, every
//! version of every table's log must stay readable (by tandem and by the Python `deltalake`
//! reader, with the same rows), and the data files a killed commit left must never be read and
//! must be removed by maintenance.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tandem::config::Config;
use tandem::store::Store;
use tandem::store::delta::AsOf;
use tandem::store::maintain::Retention;
use tandem_connectors::model::{
    Change, ChangeRequest, Commit, Deployment, Incident, Quarantined, Table, Ticket, TicketTransition,
};

use crate::common::s3::S3Server;
use crate::common::{World, finish, tandem_command, write_config};

/// The organisation's weeks: small, yet several pages and dozens of checkpoints, some of them
/// committing several tables and several partitions.
const WEEKS: u32 = 6;

/// Longer than any sync of [`WEEKS`] takes, even on a loaded machine: a sync still running then
/// has hung, and the test says so instead of waiting for ever.
const SYNC_LIMIT: Duration = Duration::from_secs(240);

/// SIGABRT: how a process stopped by the failpoint hook ends.
const SIGABRT: i32 = 6;
/// SIGKILL: `kill -9`.
const SIGKILL: i32 = 9;

/// One lake of the world, with its own config file.
struct Lake {
    name: String,
    config_path: PathBuf,
    root: PathBuf,
    /// In a bucket of the S3 test server (`root` is then where the server keeps its objects,
    /// which are laid out as a local lake is): a killed writer's leases run for this long.
    lease: Option<Duration>,
}

impl Lake {
    /// A lake whose syncs commit at most every `commit_interval_secs` (0: at every checkpoint,
    /// so the commits a failpoint counts fall where they fall on any machine).
    fn new(world: &World, name: &str, commit_interval_secs: u64) -> Self {
        let dir = world.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = write_config(&dir, &world.org, &world.servers);
        let text = std::fs::read_to_string(&config_path).unwrap();
        let text = text.replacen(
            "[store]\n",
            &format!("[store]\ncommit_interval_secs = {commit_interval_secs}\n"),
            1,
        );
        assert!(
            text.contains("commit_interval_secs"),
            "the config has a [store] section"
        );
        std::fs::write(&config_path, text).unwrap();
        let config = Config::load(&config_path).unwrap();
        let root = config.resolve(&config.store.path);
        Self {
            name: name.to_owned(),
            config_path,
            root,
            lease: None,
        }
    }

    /// [`Lake::new`] with the lake in `server`'s bucket, under the prefix `name`.
    fn in_bucket(world: &World, server: &S3Server, name: &str, commit_interval_secs: u64) -> Self {
        let lease = Duration::from_secs(2);
        let extra = format!(
            "commit_interval_secs = {commit_interval_secs}\nlease_secs = {}",
            lease.as_secs()
        );
        let config_path = server.write_config(world, name, name, &extra);
        Self {
            name: name.to_owned(),
            config_path,
            root: server.object(name),
            lease: Some(lease),
        }
    }

    /// Starts `tandem sync` on this lake, with the failpoint `failpoint` armed when given.
    fn spawn_sync(&self, failpoint: Option<&str>) -> std::process::Child {
        let mut command = tandem_command(&self.config_path, &["--quiet", "sync"]);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        if self.lease.is_some() {
            command.envs(S3Server::env());
        }
        if let Some(failpoint) = failpoint {
            command.env("TANDEM_FAILPOINT", failpoint);
        }
        command.spawn().unwrap()
    }

    /// Runs `tandem sync` to its end (bounded by [`SYNC_LIMIT`]).
    async fn sync(&self, failpoint: Option<&str>) -> ExitStatus {
        let mut child = self.spawn_sync(failpoint);
        finish(&mut child, SYNC_LIMIT, &self.name).await
    }

    fn store(&self) -> Store {
        Store::open(&self.root).unwrap()
    }
}

/// Every row of every table, as tandem reads them.
#[derive(Debug, PartialEq)]
struct Rows {
    deployments: Vec<Deployment>,
    changes: Vec<Change>,
    commits: Vec<Commit>,
    incidents: Vec<Incident>,
    tickets: Vec<Ticket>,
    transitions: Vec<TicketTransition>,
    change_requests: Vec<ChangeRequest>,
    quarantine: Vec<Quarantined>,
}

fn rows(lake: &Lake) -> Rows {
    let store = lake.store();
    let mut quarantine: Vec<Quarantined> = store.read().unwrap();
    // When tandem saw a record is the one column that differs between two syncs.
    for q in &mut quarantine {
        q.seen_at = chrono::DateTime::UNIX_EPOCH;
    }
    Rows {
        deployments: store.read().unwrap(),
        changes: store.read().unwrap(),
        commits: store.read().unwrap(),
        incidents: store.read().unwrap(),
        tickets: store.read().unwrap(),
        transitions: store.read().unwrap(),
        change_requests: store.read().unwrap(),
        quarantine,
    }
}

/// Panics naming the scenario, the table and the first row that differs.
fn assert_same_rows(scenario: &str, got: &Rows, clean: &Rows) {
    fn table<T: Table + PartialEq + std::fmt::Debug>(scenario: &str, got: &[T], clean: &[T]) {
        let keys = |rows: &[T]| rows.iter().map(|r| r.key().to_owned()).collect::<Vec<_>>();
        let (got_keys, clean_keys) = (keys(got), keys(clean));
        if got_keys != clean_keys {
            let missing: Vec<_> = clean_keys
                .iter()
                .filter(|k| !got_keys.contains(k))
                .take(5)
                .collect();
            let extra: Vec<_> = got_keys
                .iter()
                .filter(|k| !clean_keys.contains(k))
                .take(5)
                .collect();
            panic!(
                "{scenario}: table {} has {} rows, a clean sync {}; missing {missing:?}, extra {extra:?}",
                T::NAME,
                got.len(),
                clean.len()
            );
        }
        for (g, c) in got.iter().zip(clean) {
            assert_eq!(g, c, "{scenario}: table {} row {}", T::NAME, c.key());
        }
    }
    table(scenario, &got.deployments, &clean.deployments);
    table(scenario, &got.changes, &clean.changes);
    table(scenario, &got.commits, &clean.commits);
    table(scenario, &got.incidents, &clean.incidents);
    table(scenario, &got.tickets, &clean.tickets);
    table(scenario, &got.transitions, &clean.transitions);
    table(scenario, &got.change_requests, &clean.change_requests);
    table(scenario, &got.quarantine, &clean.quarantine);
}

/// The keys of every version of every table: each version `0..=latest` read through
/// `Store::read_as_of`, which fails on a version whose log or data files cannot be read.
fn keys_of_every_version(scenario: &str, lake: &Lake) -> BTreeMap<String, Vec<Vec<String>>> {
    fn table<T: Table>(scenario: &str, store: &Store, out: &mut BTreeMap<String, Vec<Vec<String>>>) {
        let Some(latest) = store.table_version(T::NAME, AsOf::Latest).unwrap() else {
            return;
        };
        let versions = (0..=latest)
            .map(|v| {
                let rows = store
                    .read_as_of::<T>(AsOf::Version(v))
                    .unwrap_or_else(|e| panic!("{scenario}: {} version {v} is unreadable: {e}", T::NAME));
                rows.iter().map(|r| r.key().to_owned()).collect()
            })
            .collect();
        out.insert(T::NAME.to_owned(), versions);
    }
    let store = lake.store();
    let mut out = BTreeMap::new();
    table::<Deployment>(scenario, &store, &mut out);
    table::<Change>(scenario, &store, &mut out);
    table::<Commit>(scenario, &store, &mut out);
    table::<Incident>(scenario, &store, &mut out);
    table::<Ticket>(scenario, &store, &mut out);
    table::<TicketTransition>(scenario, &store, &mut out);
    table::<ChangeRequest>(scenario, &store, &mut out);
    table::<Quarantined>(scenario, &store, &mut out);
    out
}

/// Reads every version of every table with the Python `deltalake` package and prints the sorted
/// `id`s of each, as JSON: `{table: [[ids of version 0], …]}`.
const PYTHON_VERSIONS: &str = r#"
import json, os, sys
from deltalake import DeltaTable

out = {}
for table in sys.argv[2:]:
    path = os.path.join(sys.argv[1], table)
    if not os.path.isdir(os.path.join(path, "_delta_log")):
        continue
    latest = DeltaTable(path).version()
    versions = []
    for v in range(latest + 1):
        dt = DeltaTable(path, version=v)
        ids = dt.to_pyarrow_table(columns=["id"]).column("id").to_pylist()
        versions.append(sorted(ids))
    out[table] = versions
print(json.dumps(out))
sys.stdout.flush()
# Arrow's thread pool may abort a normal interpreter exit (delta-io/delta-rs#2184): the work is
# done, so leave without the teardown.
os._exit(0)
"#;

/// Checks that the Python `deltalake` reader reads every version of every table with the rows
/// tandem reads in it.
fn assert_python_reads(scenario: &str, lake: &Lake, tandem: &BTreeMap<String, Vec<Vec<String>>>) {
    crate::export::require_python_readers();
    let out = Command::new("python3")
        .args(["-c", PYTHON_VERSIONS])
        .arg(lake.root.join("tables"))
        .args(tandem.keys())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{scenario}: the Python deltalake reader failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python: BTreeMap<String, Vec<Vec<String>>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        python.keys().collect::<Vec<_>>(),
        tandem.keys().collect::<Vec<_>>(),
        "{scenario}: the same tables"
    );
    for (table, versions) in tandem {
        let sorted: Vec<Vec<String>> = versions
            .iter()
            .map(|keys| {
                // Python sorts by code point, tandem by byte: the same order for UTF-8.
                let mut keys = keys.clone();
                keys.sort();
                keys
            })
            .collect();
        assert_eq!(
            python[table], sorted,
            "{scenario}: Python's deltalake reads table {table}'s versions as tandem does"
        );
    }
}

/// Every Parquet file in a table's directory that no version of its log names: what killed
/// commits left.
fn unreferenced_files(lake: &Lake) -> Vec<PathBuf> {
    let store = lake.store();
    let mut orphans = Vec::new();
    for table in tandem::store::TABLES {
        let Some(latest) = store.table_version(table, AsOf::Latest).unwrap() else {
            continue;
        };
        let mut named = BTreeSet::new();
        for v in 0..=latest {
            named.extend(store.table_files(table, AsOf::Version(v)).unwrap());
        }
        for file in parquet_files(&store.table_dir(table)) {
            if !named.contains(&file) {
                orphans.push(file);
            }
        }
    }
    orphans
}

/// Every Parquet file in a table's directory that its latest version does not name.
fn stray_files(lake: &Lake) -> Vec<PathBuf> {
    let store = lake.store();
    let mut stray = Vec::new();
    for table in tandem::store::TABLES {
        if store.table_version(table, AsOf::Latest).unwrap().is_none() {
            continue;
        }
        let named: BTreeSet<PathBuf> = store
            .table_files(table, AsOf::Latest)
            .unwrap()
            .into_iter()
            .collect();
        stray.extend(
            parquet_files(&store.table_dir(table))
                .into_iter()
                .filter(|f| !named.contains(f)),
        );
    }
    stray
}

/// The Parquet files under `dir`, its `_delta_log` aside.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_name() == "_delta_log" {
            continue;
        }
        if path.is_dir() {
            files.extend(parquet_files(&path));
        } else if path.to_string_lossy().ends_with(".parquet") {
            files.push(path);
        }
    }
    files
}

/// A clean sync of a fresh lake: the reference every crashed lake must end up equal to.
async fn clean_rows(world: &World) -> Rows {
    let clean = Lake::new(world, "clean", 0);
    let status = clean.sync(None).await;
    assert!(status.success(), "a clean sync succeeds: {status}");
    let rows = rows(&clean);
    assert!(
        !rows.deployments.is_empty()
            && !rows.changes.is_empty()
            && !rows.tickets.is_empty()
            && !rows.transitions.is_empty()
            && !rows.quarantine.is_empty(),
        "the world fills the tables this test is about"
    );
    rows
}

/// After a crash: every version readable; then a sync without a failpoint succeeds and leaves
/// the rows of a clean sync.
async fn check_recovery(scenario: &str, lake: &Lake, clean: &Rows, python: bool) {
    let versions = keys_of_every_version(scenario, lake);
    if python {
        assert_python_reads(scenario, lake, &versions);
    }
    if let Some(lease) = lake.lease {
        // The killed writer's leases are still in the bucket: they run out first.
        tokio::time::sleep(lease + Duration::from_millis(500)).await;
    }
    let status = lake.sync(None).await;
    assert!(
        status.success(),
        "{scenario}: the sync after the crash succeeds: {status}"
    );
    assert_same_rows(scenario, &rows(lake), clean);
}

/// Each failpoint of the commit path, at chosen hits of a sync of [`WEEKS`] (a sync that never
/// reaches the hit fails the test rather than testing nothing): the first data file of a commit of
/// two partitions, and the second of a later one; a checkpoint's pending bookmark; a table commit
/// followed by another of the same checkpoint, and one in the middle of five; every table of a
/// checkpoint committed; a bookmark saved; a commit written by delta-rs, first and between two
/// tables of a checkpoint.
const FAILPOINTS: &[(&str, &[u32])] = &[
    ("data-file-written", &[1, 46]),
    ("pending-written", &[20]),
    ("table-committed", &[15, 22]),
    ("tables-committed", &[9, 26]),
    ("bookmark-saved", &[6]),
    ("delta-committed", &[1, 23]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_aborted_at_each_step_of_a_commit_then_run_again_equals_a_clean_sync() {
    let world = World::start(WEEKS).await;
    let clean = clean_rows(&world).await;
    for (point, hits) in FAILPOINTS {
        for nth in *hits {
            let scenario = format!("{point}:{nth}");
            let lake = Lake::new(&world, &format!("{point}-{nth}"), 0);
            let status = lake.sync(Some(&scenario)).await;
            assert_aborted(&scenario, status);
            // The Python reader where a killed commit left files behind and where one was killed
            // inside delta-rs: it costs a process per run.
            let python = matches!(scenario.as_str(), "data-file-written:1" | "delta-committed:23");
            check_recovery(&scenario, &lake, &clean, python).await;
            if *point != "data-file-written" {
                continue;
            }

            // What the killed commit wrote and never committed is not read (the rows above equal
            // a clean sync's) and goes with the next maintenance past its retention.
            let orphans = unreferenced_files(&lake);
            assert!(
                !orphans.is_empty(),
                "{scenario}: the killed commit left a data file"
            );
            let report = lake
                .store()
                .maintain(Retention { days: 0, raw_days: 0 }, true, chrono::Utc::now())
                .unwrap();
            assert!(report.files_vacuumed >= orphans.len(), "{scenario}: {report:?}");
            assert_eq!(
                stray_files(&lake),
                Vec::<PathBuf>::new(),
                "{scenario}: maintenance without retention leaves only the latest version's files"
            );
            assert_same_rows(&format!("{scenario}, after maintenance"), &rows(&lake), &clean);
        }
    }
}

/// Checks that the sync was stopped by its failpoint, not ended before reaching it.
fn assert_aborted(scenario: &str, status: ExitStatus) {
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "{scenario}: the sync must be stopped at the failpoint ({status}); if the sync now reaches \
         it fewer times, pick hits that it reaches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_aborted_again_while_it_recovers_then_run_again_equals_a_clean_sync() {
    let world = World::start(WEEKS).await;
    let clean = clean_rows(&world).await;
    let lake = Lake::new(&world, "twice", 0);
    // Between two tables of a checkpoint, then inside delta-rs in the run that resumes from it.
    for failpoint in ["table-committed:15", "delta-committed:3"] {
        let status = lake.sync(Some(failpoint)).await;
        assert_aborted(failpoint, status);
        keys_of_every_version(failpoint, &lake);
    }
    check_recovery("aborted twice", &lake, &clean, false).await;
}

/// A seeded generator (splitmix64): the same delays on every run of the test.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_at_random_moments_then_run_again_equals_a_clean_sync() {
    let world = World::start(WEEKS).await;
    let started = Instant::now();
    let clean = clean_rows(&world).await;
    // The kills fall within the first 90% of what a clean sync took.
    let clean_time = started.elapsed();
    let mut seed = 11;
    let mut killed = 0;
    for run in 0..5 {
        let delay = clean_time.mul_f64(0.05 + 0.85 * (next(&mut seed) % 1000) as f64 / 1000.0);
        let scenario = format!("SIGKILL after {delay:?}");
        // Every other run commits a second's reading at a time: the kill then also falls among
        // checkpoints read but not committed yet.
        let interval = run % 2;
        let scenario = format!("{scenario}, commits every {interval} s");
        let lake = Lake::new(&world, &format!("kill-{run}"), interval);
        let mut child = lake.spawn_sync(None);
        tokio::time::sleep(delay).await;
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.signal() == Some(SIGKILL) {
            killed += 1;
        }
        check_recovery(&scenario, &lake, &clean, run == 0).await;
    }
    assert!(killed > 0, "at least one kill lands during a sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_in_a_bucket_aborted_at_each_step_of_a_commit_or_killed_then_run_again_equals_a_clean_sync() {
    // The same crashes against the S3 server: Delta commits are conditional PUTs there, data files
    // go up before their commit, state files and leases are objects.
    let world = World::start(WEEKS).await;
    let server = S3Server::start();
    let clean = clean_rows(&world).await;
    for (point, hits) in FAILPOINTS {
        let scenario = format!("{point}:{}", hits[hits.len() - 1]);
        let lake = Lake::in_bucket(&world, &server, &format!("bucket-{point}"), 0);
        let status = lake.sync(Some(&scenario)).await;
        assert_aborted(&scenario, status);
        check_recovery(
            &format!("in a bucket, {scenario}"),
            &lake,
            &clean,
            point == &"delta-committed",
        )
        .await;
    }
    let lake = Lake::in_bucket(&world, &server, "bucket-kill", 1);
    let mut child = lake.spawn_sync(None);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = child.kill();
    assert_eq!(
        child.wait().unwrap().signal(),
        Some(SIGKILL),
        "the kill lands during the sync"
    );
    check_recovery("in a bucket, SIGKILL after 1.5 s", &lake, &clean, false).await;
}
