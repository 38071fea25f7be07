//! The lake under failure, through the real binary against the fakes: a store error ends the run
//! (exit 1, the file named) instead of hanging it; one writer at a time; a lost table is read
//! again in full, an unreadable one stops the sync.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tandem::store::Store;
use tandem::store::lock::{LOCKS_DIR, LockHolder};
use tandem::sync::sync;
use tandem_connectors::model::{Change, Deployment, Incident, Quarantined};

use crate::common::{World, env, fast_sync, finish, snapshot, tandem_command, tandem_output};

fn lake(world: &World) -> PathBuf {
    let config = world.config();
    config.resolve(&config.store.path)
}

/// `tandem <args>` on the world's config, its output going to files in the temp dir.
fn spawn(world: &World, args: &[&str], name: &str) -> (Child, PathBuf) {
    let stderr = world.dir.path().join(format!("{name}.stderr"));
    let child = tandem_command(&world.config_path, args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    (child, stderr)
}

/// `tandem <args>` to completion (bounded), returning the exit code and stderr.
async fn tandem(world: &World, args: &[&str], name: &str) -> (i32, String) {
    let (mut child, stderr) = spawn(world, args, name);
    let status = finish(&mut child, Duration::from_secs(120), name).await;
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(stderr).unwrap_or_default(),
    )
}

/// The lock a sync of the source `github` holds.
fn github_lock(world: &World) -> PathBuf {
    lake(world).join(LOCKS_DIR).join("source-github")
}

/// Starts `tandem sync --source github` and waits until it holds the source's lock, stalled on the fake
/// GitHub (which never answers), so that it keeps its locks until killed.
async fn stalled_writer(world: &World) -> (Child, LockHolder) {
    world.servers.github.control.stall_after(0);
    let (mut child, _) = spawn(world, &["sync", "--source", "github"], "stalled");
    let lock = github_lock(world);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(child.try_wait().unwrap().is_none(), "the stalled sync ended");
        if let Some(holder) = std::fs::read(&lock)
            .ok()
            .and_then(|b| serde_json::from_slice::<LockHolder>(&b).ok())
            .filter(|h| h.pid == child.id())
        {
            return (child, holder);
        }
        assert!(Instant::now() < deadline, "the sync never took the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_error_mid_sync_ends_the_run_with_exit_1_instead_of_hanging() {
    let world = World::start(26).await;
    // The raw archive folder of GitHub deployments is a file: the first checkpoint of that
    // stream fails to store while the connector still has pages to send.
    let blocker = lake(&world).join("raw").join("github").join("deployments");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"not a folder").unwrap();
    let (code, stderr) = tandem(&world, &["sync"], "sync").await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&blocker.display().to_string()) && stderr.contains("run `tandem sync` again"),
        "names the file and what to do: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_table_stops_the_sync_with_exit_1_and_is_not_replaced() {
    let world = World::start(6).await;
    let config = world.config();
    let store = Store::open(&lake(&world)).unwrap();
    assert!(
        sync(&config, &store, &env(), &fast_sync())
            .await
            .unwrap()
            .all_ok()
    );
    let path = store
        .table_files("deployments", tandem::store::delta::AsOf::Latest)
        .unwrap()[0]
        .clone();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let (code, stderr) = tandem(&world, &["sync"], "sync").await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&path.display().to_string()) && stderr.contains("move it aside"),
        "names the file and what to do: {stderr}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        &bytes[..bytes.len() / 2],
        "an unreadable table is never silently replaced"
    );
    // The same for an empty file, and for `tandem run`.
    std::fs::write(&path, b"").unwrap();
    let (code, stderr) = tandem(&world, &["run"], "run").await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_table_is_read_again_in_full_by_a_plain_sync() {
    let world = World::start(26).await;
    let config = world.config();
    let store = Store::open(&lake(&world)).unwrap();
    assert!(
        sync(&config, &store, &env(), &fast_sync())
            .await
            .unwrap()
            .all_ok()
    );
    let complete = snapshot(&store);
    assert!(complete.0.len() > 100, "enough deployments to span pages");

    // Removed (after it was found corrupt, say): the bookmarks still say everything was read.
    std::fs::remove_dir_all(store.table_dir("deployments")).unwrap();
    let (code, stderr) = tandem(&world, &["sync"], "sync").await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("table=deployments") && stderr.contains("read again from the start"),
        "a warning names the table: {stderr}"
    );
    assert_eq!(snapshot(&store), complete, "every deployment is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_exits_1_naming_the_holder_and_readers_are_not_blocked() {
    let world = World::start(2).await;
    let (mut holder, written) = stalled_writer(&world).await;
    assert_eq!(written.command, "tandem sync");
    // The same source, and what needs the lake alone, are refused, naming the writer.
    for (command, name) in [
        (&["sync"][..], "second-sync"),
        (&["sync", "--source", "github"][..], "same-source"),
        (&["remap"][..], "remap"),
        (&["maintain"][..], "maintain"),
    ] {
        let (code, stderr) = tandem(&world, command, name).await;
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("pid {}", holder.id()))
                && stderr.contains(&format!("host {}", written.host))
                && stderr.contains(&written.started_at.format("%Y-%m-%d %H:%M:%S").to_string())
                && stderr.contains("`tandem sync`"),
            "{name}: names the holder: {stderr}"
        );
    }
    // Another source's sync and the metric table's writer work alongside it.
    for (command, name) in [
        (&["sync", "--source", "pagerduty"][..], "other-source"),
        (&["metrics"][..], "metrics"),
    ] {
        let (code, stderr) = tandem(&world, command, name).await;
        assert_eq!(code, 0, "{name}: {stderr}");
    }
    let (code, stderr) = tandem(&world, &["report", "weekly", "--weeks", "1"], "report").await;
    assert!(
        !stderr.contains("in use by"),
        "a report only reads the lake: {code} {stderr}"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_of_a_killed_writer_is_taken_over() {
    let world = World::start(2).await;
    let (mut holder, _) = stalled_writer(&world).await;
    // kill -9: the process cannot release anything.
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        !std::fs::read(github_lock(&world)).unwrap().is_empty(),
        "the killed writer's details are still in the lock file"
    );
    world.servers.github.control.clear_faults();
    let (code, stderr) = tandem(&world, &["sync"], "after-kill").await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Taking over a lock"), "{stderr}");
    assert!(
        std::fs::read(github_lock(&world)).unwrap().is_empty(),
        "a writer that ends cleanly empties the lock file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_syncs_leave_the_lake_of_one_serial_run() {
    let world = World::start(13).await;
    let clean_config = world.config_in("clean");
    let clean_store = Store::open(&clean_config.resolve(&clean_config.store.path)).unwrap();
    assert!(
        sync(&clean_config, &clean_store, &env(), &fast_sync())
            .await
            .unwrap()
            .all_ok()
    );
    let clean = snapshot(&clean_store);

    let children: Vec<_> = (0..3)
        .map(|i| spawn(&world, &["sync"], &format!("sync-{i}")))
        .collect();
    let mut succeeded = 0;
    for (mut child, stderr) in children {
        let status = finish(&mut child, Duration::from_secs(180), "a concurrent sync").await;
        let (code, stderr) = (
            status.code().unwrap_or(-1),
            std::fs::read_to_string(stderr).unwrap(),
        );
        match code {
            0 => succeeded += 1,
            1 => assert!(stderr.contains("is in use by"), "{stderr}"),
            _ => panic!("exit {code}: {stderr}"),
        }
    }
    assert!(succeeded >= 1, "one of them synced");
    let store = Store::open(&lake(&world)).unwrap();
    assert_eq!(snapshot(&store), clean, "readable and equal to a serial run");
    // And the lake is not stuck: a later sync works and changes nothing.
    let (code, stderr) = tandem(&world, &["sync"], "after").await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(snapshot(&store), clean);
}

/// The metric table of the lake as a read-only command computes it (no lock, no conversion).
fn metric_rows(world: &World) -> Vec<tandem::metric::MetricRow> {
    let config = world.config();
    let store = Store::open(&lake(world)).unwrap();
    let calendar = tandem::commands::range(
        &tandem::cli::RangeArgs::default(),
        &config,
        chrono::Utc::now().date_naive(),
    )
    .unwrap();
    tandem::commands::metrics::from_store(&store, calendar, &config.metrics, &config.services)
        .unwrap()
        .to_rows()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_of_single_parquet_files_is_migrated_without_a_request_and_gives_the_same_metrics() {
    let world = World::start(8).await;
    let config = world.config();
    let store = Store::open(&lake(&world)).unwrap();
    assert!(
        sync(&config, &store, &env(), &fast_sync())
            .await
            .unwrap()
            .all_ok()
    );
    let synced = snapshot(&store);
    let delta_metrics = metric_rows(&world);

    // The same lake as the release before Delta tables kept it: one Parquet file per table,
    // written by the same codec, sorted by key, beside the same bookmarks.
    fn flatten<T: tandem_connectors::model::Table>(store: &Store) -> usize {
        let rows = store.read::<T>().unwrap();
        tandem::store::codec::write_table(&rows, &store.legacy_table_path(T::NAME)).unwrap();
        std::fs::remove_dir_all(store.table_dir(T::NAME)).unwrap();
        rows.len()
    }
    let deployments = flatten::<Deployment>(&store);
    flatten::<Change>(&store);
    flatten::<Incident>(&store);
    flatten::<Quarantined>(&store);
    flatten::<tandem_connectors::model::Commit>(&store);
    assert!(!store.legacy_tables().is_empty());
    assert_eq!(
        metric_rows(&world),
        delta_metrics,
        "read as it is before conversion"
    );

    let before =
        world.servers.github.control.request_count() + world.servers.pagerduty.control.request_count();
    let (code, stdout, stderr) = tandem_output(&world, &["migrate"], "migrate").await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "migrated: deployments ({deployments} rows) is a Delta table"
        )),
        "{stdout}"
    );
    assert_eq!(
        world.servers.github.control.request_count() + world.servers.pagerduty.control.request_count(),
        before,
        "no request to any source"
    );
    assert!(store.legacy_tables().is_empty());
    assert_eq!(snapshot(&store), synced, "every row as it was");
    assert_eq!(metric_rows(&world), delta_metrics, "the same metric table");
    let (code, stdout, _) = tandem_output(&world, &["migrate"], "migrate-again").await;
    assert_eq!(code, 0);
    assert!(stdout.contains("already made of Delta tables"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tandem_maintain_merges_small_files_and_keeps_every_row() {
    let world = World::start(8).await;
    let config = world.config();
    let store = Store::open(&lake(&world)).unwrap();
    assert!(
        sync(&config, &store, &env(), &fast_sync())
            .await
            .unwrap()
            .all_ok()
    );
    let synced = snapshot(&store);
    let files = |store: &Store| {
        store
            .table_files("deployments", tandem::store::delta::AsOf::Latest)
            .unwrap()
            .len()
    };
    let version = store
        .table_version("deployments", tandem::store::delta::AsOf::Latest)
        .unwrap()
        .unwrap();
    let before = files(&store);
    let (code, stdout, stderr) = tandem_output(&world, &["maintain"], "maintain").await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("maintained: "), "{stdout}");
    assert!(
        files(&store) < before,
        "small files merged: {before} → {}",
        files(&store)
    );
    assert_eq!(snapshot(&store), synced);
    let old: Vec<Deployment> = store
        .read_as_of(tandem::store::delta::AsOf::Version(version))
        .unwrap();
    assert_eq!(old, synced.0, "the version before maintenance is still readable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_of_different_sources_at_once_leave_the_lake_of_the_same_syncs_one_after_the_other() {
    // GitHub and GitLab both write deployments, changes and commits: their commits interleave on
    // the same tables (every checkpoint committed, for as many commits as possible), and the
    // PagerDuty sync writes incidents alongside.
    let world = World::start(8).await;
    let sources = ["github", "gitlab", "pagerduty"];
    let lake_at = |name: &str| {
        let dir = world.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = crate::common::write_config(&dir, &world.org, &world.servers);
        let text = std::fs::read_to_string(&config).unwrap().replacen(
            "[store]\n",
            "[store]\ncommit_interval_secs = 0\n",
            1,
        );
        std::fs::write(&config, text).unwrap();
        (config, dir.join("lake"))
    };
    let sync_of = |config: &PathBuf, source: &str, name: &str| {
        let stderr = world.dir.path().join(format!("{name}.stderr"));
        let child = tandem_command(config, &["sync", "--source", source])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        (child, stderr)
    };

    let (serial_config, serial_lake) = lake_at("serial");
    for source in sources {
        let (mut child, stderr) = sync_of(&serial_config, source, &format!("serial-{source}"));
        let status = finish(&mut child, Duration::from_secs(180), source).await;
        assert!(status.success(), "{}", std::fs::read_to_string(stderr).unwrap());
    }
    let serial = snapshot(&Store::open(&serial_lake).unwrap());
    assert!(!serial.0.is_empty() && !serial.1.is_empty() && !serial.2.is_empty());

    // Rounds 1 and 2 kill the GitHub sync (kill -9) part-way, while the others write on, and
    // run it again afterwards: the lake converges all the same.
    let mut killed = 0;
    for round in 0..3u64 {
        let (config, lake) = lake_at(&format!("round-{round}"));
        let children: Vec<_> = sources
            .iter()
            .map(|source| {
                (
                    source,
                    sync_of(&config, source, &format!("round-{round}-{source}")),
                )
            })
            .collect();
        for (source, (mut child, stderr)) in children {
            if round > 0 && *source == "github" {
                tokio::time::sleep(Duration::from_millis(300 * round)).await;
                let _ = child.kill();
                killed += usize::from(child.wait().unwrap().code().is_none());
                continue;
            }
            let status = finish(&mut child, Duration::from_secs(180), source).await;
            assert!(
                status.success(),
                "round {round}, {source}: {}",
                std::fs::read_to_string(stderr).unwrap()
            );
        }
        if round > 0 {
            // Every table stays readable after the kill; the sync run again finishes the job.
            snapshot(&Store::open(&lake).unwrap());
            let (mut child, stderr) = sync_of(&config, "github", &format!("round-{round}-rerun"));
            let status = finish(&mut child, Duration::from_secs(180), "github again").await;
            assert!(status.success(), "{}", std::fs::read_to_string(stderr).unwrap());
        }
        let store = Store::open(&lake).unwrap();
        assert_eq!(
            snapshot(&store),
            serial,
            "round {round}: the rows of the serial syncs"
        );
        // Each stream's bookmark was committed: syncing each source again reads nothing new.
        for source in sources {
            let (mut child, stderr) = sync_of(&config, source, &format!("round-{round}-{source}-again"));
            assert!(
                finish(&mut child, Duration::from_secs(180), source)
                    .await
                    .success()
            );
            let text = std::fs::read_to_string(stderr).unwrap();
            assert!(!text.contains("error"), "round {round}, {source} again: {text}");
        }
        assert_eq!(snapshot(&store), serial, "round {round}, after syncing again");
    }
    assert!(killed > 0, "a kill landed while the GitHub sync ran");
}
