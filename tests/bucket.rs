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
