//! A lake in object storage, through the real binary against a real S3-compatible server
//! process (`tools/s3-test-server`, see `common::s3`): everything tandem keeps goes to the
//! bucket, a fresh machine with an empty cache reads it back, writers of different sources commit
//! side by side, a second writer of the same part is refused naming the lease's holder, and a
//! killed holder's lease runs out.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use tandem::store::Store;
use tandem::store::delta::AsOf;
use tandem_connectors::model::Deployment;

use crate::common::s3::S3Server;
use crate::common::{World, finish, snapshot, tandem_command};

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

/// How many Parquet files there are under `dir`.
fn parquet_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| e.path())
            .map(|p| {
                if p.is_dir() {
                    parquet_files(&p)
                } else {
                    usize::from(p.to_string_lossy().ends_with(".parquet"))
                }
            })
            .sum()
    })
}

/// The metric table's rows (as the latest version of a lake has them).
fn metric_rows(lake: &Path) -> Vec<tandem::metric::MetricRow> {
    let version = Store::open(lake)
        .unwrap()
        .metrics_version(AsOf::Latest)
        .unwrap()
        .expect("a metric table");
    tandem::pipeline::read_metrics(&version.parquet).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_in_a_bucket_holds_everything_and_gives_the_numbers_of_a_local_lake() {
    let world = World::start(8).await;
    let server = S3Server::start();
    let config = server.write_config(&world, "bucket", "org/tandem", "");

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
        // The run found the lake alone at its end and maintained it (checkpoints in the bucket).
        "state/maintenance.json",
        "tables/deployments/_delta_log/_last_checkpoint",
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
    let metrics = metric_rows(&in_bucket);
    assert!(!metrics.is_empty());
    assert_eq!(metrics, metric_rows(&local));
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
    // The data team's export, too.
    let out = ["export", "--out", "s3://lake/site/data"];
    let (code, stderr) = tandem(&world, &config, &out, "site-export").await;
    assert_eq!(code, 0, "{stderr}");
    let exports: Vec<_> = std::fs::read_dir(server.object("site/data/export"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(exports.len(), 1);
    assert!(
        exports[0].path().join("SCHEMA.md").is_file(),
        "{:?}",
        exports[0].path()
    );
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
    // Of the first run, the second downloaded what the index needs, not the pages and charts.
    let mut runs = runs;
    runs.sort();
    let first = cache.join("out/s3/lake/site/reports/weekly").join(&runs[0]);
    assert!(first.join("meta.json").is_file(), "{}", first.display());
    assert!(!first.join("report.html").exists(), "{}", first.display());
    std::fs::remove_dir_all(&cache).unwrap();
    let before = snapshot(&Store::open(&in_bucket).unwrap());
    let (code, stderr) = tandem(&world, &config, &["sync"], "bucket-sync-again").await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(snapshot(&Store::open(&in_bucket).unwrap()), before);
    // A sync checks the tables against the bucket's listing: it downloads only what it rewrites.
    let (cached, stored) = (parquet_files(&cache), parquet_files(&in_bucket.join("tables")));
    assert!(
        cached < stored / 2,
        "a sync downloaded {cached} of the {stored} data files"
    );

    // A data file of the latest version gone from the bucket stops the sync, naming the table
    // and the file.
    let victim = Store::open(&in_bucket)
        .unwrap()
        .table_files("deployments", AsOf::Latest)
        .unwrap()
        .remove(0);
    std::fs::remove_file(&victim).unwrap();
    let (code, stderr) = tandem(&world, &config, &["sync"], "bucket-sync-missing").await;
    assert_eq!(code, 1, "{stderr}");
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        stderr.contains("deployments") && stderr.contains(&name) && stderr.contains("not in the bucket"),
        "{stderr}"
    );
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

    // Atomic under a race: of eight writers creating one object at once, exactly one succeeds
    // (a server that checks and then writes lets several through, and two Delta commits of one
    // version would both land).
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (bucket, key) = of(&lake.join("race")).unwrap();
            std::thread::spawn(move || {
                bucket
                    .put(&key, format!("writer {i}").into(), PutMode::Create)
                    .unwrap()
            })
        })
        .collect();
    let created = racers.into_iter().filter_map(|r| r.join().unwrap()).count();
    assert_eq!(created, 1, "creates that succeeded in a race");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_of_different_sources_at_once_in_a_bucket_leave_the_lake_of_the_same_syncs_one_after_the_other()
{
    // As the local lake's test (tests/lake.rs): GitHub and GitLab interleave commits on the same
    // tables, PagerDuty writes alongside; here every commit is a conditional PUT in the bucket.
    let world = World::start(8).await;
    let server = S3Server::start();
    let sources = ["github", "gitlab", "pagerduty"];
    let extra = "commit_interval_secs = 0\nlease_secs = 3";

    let serial = server.write_config(&world, "serial", "serial", extra);
    for source in sources {
        let (code, stderr) = tandem(
            &world,
            &serial,
            &["sync", "--source", source],
            &format!("serial-{source}"),
        )
        .await;
        assert_eq!(code, 0, "{source}: {stderr}");
    }
    let expected = snapshot(&Store::open(&server.object("serial")).unwrap());
    assert!(!expected.0.is_empty() && !expected.1.is_empty() && !expected.2.is_empty());

    // Round 1 kills the GitHub sync (kill -9) part-way while the others write on; its leases run
    // out (3 s) and the sync run again finishes the job; rounds 0 and 2 run undisturbed.
    for round in 0..3u64 {
        let prefix = format!("round-{round}");
        let config = server.write_config(&world, &prefix, &prefix, extra);
        let children: Vec<_> = sources
            .iter()
            .map(|source| {
                let args = ["sync", "--source", source];
                (
                    *source,
                    spawn(&world, &config, &args, &format!("{prefix}-{source}")),
                )
            })
            .collect();
        let mut killed = false;
        for (source, (mut child, stderr)) in children {
            if round == 1 && source == "github" {
                tokio::time::sleep(Duration::from_millis(800)).await;
                let _ = child.kill();
                killed = child.wait().unwrap().code().is_none();
                continue;
            }
            let status = finish(&mut child, Duration::from_secs(180), source).await;
            assert!(
                status.success(),
                "{prefix}, {source}: {}",
                std::fs::read_to_string(stderr).unwrap()
            );
        }
        assert_eq!(
            killed,
            round == 1,
            "{prefix}: the GitHub sync was to be killed part-way"
        );
        let lake = server.object(&prefix);
        if killed {
            // Every table stays readable after the kill.
            snapshot(&Store::open(&lake).unwrap());
            let mut code_and_err = (1, String::new());
            // Refused while the killed sync's lease runs; taken over once it ran out.
            for attempt in 0..20 {
                code_and_err = tandem(
                    &world,
                    &config,
                    &["sync", "--source", "github"],
                    &format!("{prefix}-rerun-{attempt}"),
                )
                .await;
                if code_and_err.0 == 0 {
                    break;
                }
                assert!(code_and_err.1.contains("lease runs to"), "{}", code_and_err.1);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            assert_eq!(code_and_err.0, 0, "{}", code_and_err.1);
        }
        assert_eq!(
            snapshot(&Store::open(&lake).unwrap()),
            expected,
            "{prefix}: the rows of the serial syncs"
        );
        // Each stream's bookmark was committed: syncing each source again changes nothing.
        for source in sources {
            let (code, stderr) = tandem(
                &world,
                &config,
                &["sync", "--source", source],
                &format!("{prefix}-{source}-again"),
            )
            .await;
            assert_eq!(code, 0, "{prefix}, {source} again: {stderr}");
        }
        assert_eq!(
            snapshot(&Store::open(&lake).unwrap()),
            expected,
            "{prefix}, after syncing again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_of_a_bucket_lake_is_refused_naming_the_lease_holder_until_a_killed_holders_lease_runs_out()
 {
    let world = World::start(2).await;
    let server = S3Server::start();
    let config = server.write_config(&world, "lease", "lease", "lease_secs = 4");
    // A GitHub sync that stalls on the fake (which never answers) keeps its leases until killed.
    world.servers.github.control.stall_after(0);
    let (mut holder, _) = spawn(&world, &config, &["sync", "--source", "github"], "stalled");
    let lease = server.object("lease/locks/source-github");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let body: serde_json::Value = loop {
        assert!(holder.try_wait().unwrap().is_none(), "the stalled sync ended");
        if let Some(body) = std::fs::read(&lease)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .filter(|b| b["holder"]["pid"] == holder.id())
        {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sync never took its lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["holder"]["command"], "tandem sync");
    // It renews its lease: still held well past one term.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(holder.try_wait().unwrap().is_none());
    // The same source, and what needs the lake alone, are refused, naming the writer; another
    // source's sync and the metric table's writer work alongside.
    for (args, name) in [
        (&["sync", "--source", "github"][..], "same-source"),
        (&["maintain"][..], "maintain"),
    ] {
        let (code, stderr) = tandem(&world, &config, args, name).await;
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("pid {}", holder.id()))
                && stderr.contains("`tandem sync`")
                && stderr.contains("lease runs to")
                && stderr.contains("the lake at s3://lake/lease is in use"),
            "{name}: names the holder: {stderr}"
        );
    }
    for (args, name) in [
        (&["sync", "--source", "pagerduty"][..], "other-source"),
        (&["metrics"][..], "metrics"),
    ] {
        let (code, stderr) = tandem(&world, &config, args, name).await;
        assert_eq!(code, 0, "{name}: {stderr}");
    }
    // kill -9: nothing is released; the lease runs out by itself and is taken over.
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        lease.is_file(),
        "the killed writer's lease is still in the bucket"
    );
    world.servers.github.control.clear_faults();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (code, stderr) = tandem(&world, &config, &["sync", "--source", "github"], "after-kill").await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Taking over a lease"), "{stderr}");
    assert!(!lease.exists(), "a writer that ends cleanly releases its lease");
}

#[test]
fn a_writer_whose_lease_another_took_over_commits_nothing_more() {
    use tandem::store::StoreError;
    use tandem::store::bucket::object_store::PutMode;
    use tandem::store::bucket::{mount_store, of};
    use tandem_connectors::model::DeploymentStatus;

    let deployment = |id: &str| Deployment {
        change_refs: Vec::new(),
        deployed_by: None,
        id: id.into(),
        source: "github".into(),
        repo: "acme/checkout".into(),
        service: None,
        team: None,
        environment: "production".into(),
        is_production: true,
        status: DeploymentStatus::Success,
        sha: "abc".into(),
        created_at: chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        finished_at: None,
        updated_at: chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
    };
    let server = S3Server::start();
    let cache = tempfile::tempdir().unwrap();
    let lake = mount_store(
        "s3://lake/lost",
        server.client(),
        cache.path(),
        Duration::from_secs(2),
    )
    .unwrap();
    let store = Store::open_for_parts(&lake, "tandem sync", &["github"], false).unwrap();
    store.upsert(vec![deployment("d1")]).unwrap();
    // Another writer takes the lease (as one does that found it expired): the holder's next
    // renewal finds it changed.
    let (bucket, key) = of(&lake.join("locks").join("source-github")).unwrap();
    let theirs = serde_json::json!({
        "holder": {"host": "elsewhere", "pid": 1, "started_at": "2026-12-07T00:00:00Z", "command": "tandem sync"},
        "expires_at": "2099-01-01T00:00:00Z",
    });
    bucket
        .put(&key, theirs.to_string().into(), PutMode::Overwrite)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let err = store.upsert(vec![deployment("d2")]).unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    assert!(
        err.to_string().contains("s3://lake/lost/locks/source-github"),
        "{err}"
    );
    let rows: Vec<Deployment> = Store::open(&lake).unwrap().read().unwrap();
    assert_eq!(rows.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d1"]);
    // Its lease is not deleted on the way out: it is the other writer's now.
    drop(store);
    assert!(bucket.get(&key).unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tries_the_bucket_as_a_writer_and_wrong_credentials_fail_naming_the_lake_never_the_secret() {
    let world = World::start(1).await;
    let server = S3Server::start();
    let config = server.write_config(&world, "check", "checked", "");
    let (code, stdout, stderr) = crate::common::output(
        command(&config, &["check", "--source", "github"]),
        world.dir.path(),
        "check",
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok      lake (s3://lake/checked/)"), "{stdout}");
    // The probe cleans up after itself.
    let left = std::fs::read_dir(server.object("checked/locks")).map_or(0, |d| d.count());
    assert_eq!(left, 0);

    let wrong = "not-the-secret-0123456789";
    for (args, name) in [
        (&["check", "--source", "github"][..], "check-wrong"),
        (&["sync"][..], "sync-wrong"),
    ] {
        let mut run = tandem_command(&config, args);
        run.envs(S3Server::env()).env("AWS_SECRET_ACCESS_KEY", wrong);
        let (code, stdout, stderr) = crate::common::output(run, world.dir.path(), name).await;
        assert_eq!(code, 1, "{name}: {stdout}{stderr}");
        let said = format!("{stdout}{stderr}");
        assert!(
            said.contains("s3://lake/checked/"),
            "{name} names the lake: {said}"
        );
        assert!(
            !said.contains(wrong) && !said.contains(crate::common::s3::SECRET_KEY),
            "{name}: {said}"
        );
    }
}
