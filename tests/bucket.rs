//! A lake in object storage, through the real binary against a real S3-compatible server process
//! (`s3s-fs`, see `common::s3`): everything tandem keeps goes to the bucket, a fresh machine with
//! an empty cache reads it back, writers of different sources commit side by side, a second
//! writer of the same part is refused naming the lease's holder, and a killed holder's lease runs
//! out.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use tandem::store::Store;
use tandem::store::delta::AsOf;
use tandem_connectors::model::{Change, Deployment, Incident, Quarantined};

use crate::common::s3::S3Server;
use crate::common::{World, finish, tandem_command, write_config};

/// Every row of the tables a sync writes, for equality checks.
fn snapshot(store: &Store) -> (Vec<Deployment>, Vec<Change>, Vec<Incident>, Vec<Quarantined>) {
    let mut quarantined: Vec<Quarantined> = store.read().unwrap();
    for q in &mut quarantined {
        q.seen_at = chrono::DateTime::UNIX_EPOCH;
    }
    (
        store.read().unwrap(),
        store.read().unwrap(),
        store.read().unwrap(),
        quarantined,
    )
}

/// A config in `<temp>/<name>` for the world's fakes whose lake is `s3://lake/<prefix>`, cached in
/// `<temp>/<name>/cache`; `extra` goes into its `[store]` section.
fn bucket_config(world: &World, server: &S3Server, name: &str, prefix: &str, extra: &str) -> PathBuf {
    let dir = world.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let config = write_config(&dir, &world.org, &world.servers);
    let text = std::fs::read_to_string(&config).unwrap();
    let local = "[store]\npath = \"lake\"            # the lake of Delta tables\n";
    assert!(text.contains(local), "the demo config's [store] section changed");
    let text = text.replacen(local, &server.store_section(prefix, &dir.join("cache"), extra), 1);
    std::fs::write(&config, text).unwrap();
    config
}

/// `tandem --config <config> <args>` with the server's credentials in its environment.
fn command(config: &Path, args: &[&str]) -> std::process::Command {
    let mut command = tandem_command(config, args);
    command.envs(S3Server::env());
    command
}

fn spawn(world: &World, config: &Path, args: &[&str], name: &str) -> (Child, PathBuf) {
    let stderr = world.dir.path().join(format!("{name}.stderr"));
    let child = command(config, args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    (child, stderr)
}

/// Runs `tandem <args>` to completion (bounded); returns the exit code and stderr.
async fn tandem(world: &World, config: &Path, args: &[&str], name: &str) -> (i32, String) {
    let (mut child, stderr) = spawn(world, config, args, name);
    let status = finish(&mut child, Duration::from_secs(180), name).await;
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(stderr).unwrap_or_default(),
    )
}

/// The metric table's rows as CSV (as the latest version of a lake has them).
fn metrics_csv(lake: &Path) -> String {
    let version = Store::open(lake)
        .unwrap()
        .metrics_version(AsOf::Latest)
        .unwrap()
        .expect("a metric table");
    std::fs::read_to_string(version.csv).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_in_a_bucket_holds_everything_and_gives_the_numbers_of_a_local_lake() {
    let world = World::start(8).await;
    let server = S3Server::start();
    let config = bucket_config(&world, &server, "bucket", "org/tandem", "");

    let (code, local_err) = tandem(&world, &world.config_path, &["run"], "local-run").await;
    assert_eq!(code, 0, "{local_err}");
    let (code, stderr) = tandem(&world, &config, &["run"], "bucket-run").await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains(crate::common::s3::SECRET_KEY));

    // Everything tandem keeps is in the bucket under the prefix: the tables' logs and data files,
    // the bookmarks, the raw pages, the metric table, the run history. The objects the server
    // keeps form a lake as a local one is laid out, so the store reads them as one.
    let prefix = "org/tandem";
    for key in [
        "tables/deployments/_delta_log/00000000000000000000.json",
        "state/bookmarks.json",
        "state/coverage.json",
        "metrics/table/_delta_log/00000000000000000001.json",
    ] {
        assert!(
            server.object(&format!("{prefix}/{key}")).is_file(),
            "{key} is not in the bucket"
        );
    }
    assert!(
        server.object(&format!("{prefix}/raw/github")).is_dir(),
        "no raw pages in the bucket"
    );
    let in_bucket = server.object(prefix);
    let local = world.dir.path().join("lake");
    let expected = snapshot(&Store::open(&local).unwrap());
    assert!(!expected.0.is_empty() && !expected.2.is_empty());
    assert_eq!(snapshot(&Store::open(&in_bucket).unwrap()), expected);
    assert_eq!(metrics_csv(&in_bucket), metrics_csv(&local));
    // No lease is left behind by a run that ended.
    let leases = std::fs::read_dir(server.object(&format!("{prefix}/locks")))
        .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
        .unwrap_or(0);
    assert_eq!(leases, 0, "a lease was left in the bucket");

    // A fresh machine: no cache. A report reads everything back from the bucket, and a sync
    // again reads nothing new (its bookmarks came from the bucket).
    let cache = config.parent().unwrap().join("cache");
    std::fs::remove_dir_all(&cache).unwrap();
    let (code, stderr) = tandem(&world, &config, &["report"], "bucket-report").await;
    assert_eq!(code, 0, "{stderr}");
    assert!(config.parent().unwrap().join("report/index.html").is_file());
    // Reports go to a bucket prefix too, with the history page on top, twice: the second run's
    // index lists both runs (it read the first from the bucket, with another empty cache).
    for round in 0..2 {
        std::fs::remove_dir_all(&cache).unwrap();
        let out = ["report", "--out", "s3://lake/site/reports"];
        let (code, stderr) = tandem(&world, &config, &out, &format!("site-{round}")).await;
        assert_eq!(code, 0, "{stderr}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let index = std::fs::read_to_string(server.object("site/reports/index.html")).unwrap();
    let runs: Vec<_> = std::fs::read_dir(server.object("site/reports/weekly"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    for run in &runs {
        assert!(index.contains(run.as_str()), "the index does not list {run}");
        let folder = server.object(&format!("site/reports/weekly/{run}"));
        assert!(folder.join("report.html").is_file() && folder.join("meta.json").is_file());
    }
    std::fs::remove_dir_all(&cache).unwrap();
    let before = snapshot(&Store::open(&in_bucket).unwrap());
    let (code, stderr) = tandem(&world, &config, &["sync"], "bucket-sync-again").await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(snapshot(&Store::open(&in_bucket).unwrap()), before);
}

#[test]
fn the_s3_server_honours_the_conditional_writes_that_commits_and_leases_rely_on() {
    use tandem::store::bucket::object_store::{PutMode, UpdateVersion, path::Path as Key};
    use tandem::store::bucket::{Lease, Refused, of};
    use tandem::store::lock::LockHolder;

    let server = S3Server::start();
    let cache = tempfile::tempdir().unwrap();
    let lake = tandem::store::bucket::mount_store(
        "s3://lake/conditional",
        server.client(),
        cache.path(),
        Duration::from_secs(2),
    )
    .unwrap();
    let (bucket, key) = of(&lake.join("probe")).unwrap();
    assert_eq!(key, Key::from("conditional/probe"));

    // If-None-Match: * — created once, refused the second time, the first body kept.
    let first = bucket.put(&key, "one".into(), PutMode::Create).unwrap();
    assert!(first.is_some());
    assert_eq!(bucket.put(&key, "two".into(), PutMode::Create).unwrap(), None);
    assert_eq!(bucket.get(&key).unwrap().unwrap().0, "one");
    // If-Match: written over the version read, refused over a stale one.
    let update = |etag: &Option<String>| {
        PutMode::Update(UpdateVersion {
            e_tag: etag.clone(),
            version: None,
        })
    };
    let second = bucket.put(&key, "three".into(), update(&first)).unwrap();
    assert!(second.is_some() && second != first);
    assert_eq!(bucket.put(&key, "four".into(), update(&first)).unwrap(), None);
    assert_eq!(bucket.get(&key).unwrap().unwrap().0, "three");

    // A lease: refused to another holder while renewed (past its 2 s term), released on drop,
    // and taken over once its holder stops renewing without releasing.
    let holder = |pid: u32| LockHolder {
        host: "test".to_owned(),
        pid,
        started_at: chrono::Utc::now(),
        command: format!("tandem sync ({pid})"),
    };
    let at = lake.join("locks").join("source-github");
    let (lease, taken_over) = Lease::take(&at, &holder(1)).unwrap();
    assert!(!taken_over);
    std::thread::sleep(Duration::from_millis(3500));
    match Lease::take(&at, &holder(2)) {
        Err(Refused::Held(body)) => assert_eq!(body.holder.pid, 1, "{body}"),
        other => panic!("a renewed lease was not refused: {other:?}"),
    }
    assert!(lease.is_held());
    drop(lease);
    let (second, taken_over) = Lease::take(&at, &holder(2)).unwrap();
    assert!(!taken_over, "a released lease is created anew");
    // A holder that stops renewing (as a process killed with SIGKILL does).
    second.abandon();
    assert!(matches!(Lease::take(&at, &holder(3)), Err(Refused::Held(_))));
    std::thread::sleep(Duration::from_millis(2500));
    let (third, taken_over) = Lease::take(&at, &holder(3)).unwrap();
    assert!(taken_over, "an expired lease is taken over");
    assert_eq!(Lease::holder(&at).unwrap().unwrap().holder.pid, 3);
    drop(third);
    assert!(Lease::holder(&at).unwrap().is_none());
}
