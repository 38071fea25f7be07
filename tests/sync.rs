//! Sync against the fake APIs: idempotent re-runs, resuming after a kill, retries, bad credentials.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tandem::store::Store;
use tandem::sync::{SyncOptions, sync};
use tandem_connectors::model::{Change, Deployment, Incident, Quarantined};

use crate::common::{World, env, fast_sync};

/// Every row of every table, for equality checks.
fn snapshot(store: &Store) -> (Vec<Deployment>, Vec<Change>, Vec<Incident>, usize) {
    (
        store.read().unwrap(),
        store.read().unwrap(),
        store.read().unwrap(),
        store.read::<Quarantined>().unwrap().len(),
    )
}

fn store_of(config: &tandem::config::Config) -> Store {
    Store::open(&config.resolve(&config.store.path)).unwrap()
}

fn requests(world: &World) -> usize {
    world.servers.github.control.request_count() + world.servers.pagerduty.control.request_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncing_twice_leaves_the_same_rows() {
    let world = World::start(6).await;
    let config = world.config();
    let store = store_of(&config);
    let report = sync(&config, &store, &env(), &fast_sync()).await.unwrap();
    assert!(report.all_ok(), "{report:?}");
    let first = snapshot(&store);
    let first_requests = requests(&world);
    assert!(!first.0.is_empty() && !first.1.is_empty() && !first.2.is_empty());
    // Exactly the records the simulation breaks on purpose are quarantined, nothing else.
    let broken = world.org.jira.issues.iter().filter(|i| i.quirk.is_some()).count()
        + world
            .org
            .servicenow
            .incidents
            .iter()
            .filter(|i| i.malformed.is_some() && !i.acl_hidden)
            .count();
    assert!(broken > 0);
    assert_eq!(
        first.3, broken,
        "the deliberately malformed records are quarantined"
    );
    let expected_prod = world
        .org
        .deployments
        .iter()
        .filter(|d| d.environment == "production")
        .count();
    let from_github = first.0.iter().filter(|d| d.source == "github").count();
    assert_eq!(from_github, expected_prod, "every production deployment once");
    let expected_incidents = world.org.incidents.len();
    let from_pagerduty = first.2.iter().filter(|i| i.source == "pagerduty").count();
    assert_eq!(from_pagerduty, expected_incidents, "every incident once");

    let report = sync(&config, &store, &env(), &fast_sync()).await.unwrap();
    assert!(report.all_ok(), "{report:?}");
    assert_eq!(snapshot(&store), first, "a second sync changes nothing");
    let second_requests = requests(&world) - first_requests;
    assert!(
        second_requests * 3 < first_requests,
        "an incremental sync must not refetch everything: {second_requests} vs {first_requests} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sync_resumes_to_the_same_store_as_a_clean_one() {
    let world = World::start(26).await;

    // The reference: one uninterrupted sync into its own lake.
    let clean_config = world.config_in("clean");
    let clean_store = store_of(&clean_config);
    let before = requests(&world);
    assert!(
        sync(&clean_config, &clean_store, &env(), &fast_sync())
            .await
            .unwrap()
            .all_ok()
    );
    let clean_requests = requests(&world) - before;
    let clean = snapshot(&clean_store);
    let github_total = world.servers.github.control.request_count();
    assert!(
        world
            .servers
            .github
            .control
            .requests()
            .iter()
            .any(|r| r.contains("page=2")),
        "the organisation must span several pages for this test to mean anything"
    );

    // The same sync as a real process, killed when the fake GitHub stops answering half-way.
    let config = world.config();
    let stall_at = github_total + github_total / 2;
    world.servers.github.control.stall_after(stall_at);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["--quiet", "--config"])
        .arg(&world.config_path)
        .arg("sync")
        .envs(tandem::commands::demo::demo_secrets(
            &crate::common::fake_options(),
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while world.servers.github.control.request_count() <= stall_at {
        assert!(
            Instant::now() < deadline,
            "the sync never reached the stall point"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sync ended before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let it commit what it has, then kill it hard.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let store = store_of(&config);
    let partial = snapshot(&store);
    assert!(
        partial.0.len() + partial.1.len() < clean.0.len() + clean.1.len(),
        "the kill must interrupt the sync"
    );
    assert!(
        store.bookmark("github", "deployments").unwrap().is_some(),
        "checkpoints were saved"
    );

    world.servers.github.control.clear_faults();
    let before = requests(&world);
    let report = sync(&config, &store, &env(), &fast_sync()).await.unwrap();
    assert!(report.all_ok(), "{report:?}");
    assert_eq!(
        snapshot(&store),
        clean,
        "kill + re-run gives the store of one clean run"
    );
    let resumed_requests = requests(&world) - before;
    assert!(
        resumed_requests < clean_requests,
        "the re-run resumes from its checkpoints: {resumed_requests} vs {clean_requests} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_answering_500_twice_then_200_is_retried() {
    let world = World::start(2).await;
    let config = world.config();
    let store = store_of(&config);
    world.servers.github.control.fail_next("/deployments", 500, 2);
    let options = SyncOptions {
        source: Some("github".into()),
        stream: Some("deployments".into()),
        ..fast_sync()
    };
    let report = sync(&config, &store, &env(), &options).await.unwrap();
    assert!(report.all_ok(), "{report:?}");
    let log = world.servers.github.control.requests();
    let first_list = log.iter().find(|r| r.contains("/deployments?")).unwrap().clone();
    assert_eq!(
        log.iter().filter(|r| **r == first_list).count(),
        3,
        "two failures and one success of the same request: {log:?}"
    );
    let prod = world
        .org
        .deployments
        .iter()
        .filter(|d| d.environment == "production")
        .count();
    assert_eq!(store.read::<Deployment>().unwrap().len(), prod);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_stop_that_source_and_the_others_continue() {
    let world = World::start(2).await;
    let config = world.config();
    let store = store_of(&config);
    let env = env().with_override("TANDEM_DEMO_GITHUB_TOKEN", "expired-token");
    let report = sync(&config, &store, &env, &fast_sync()).await.unwrap();
    let failures: Vec<_> = report.failures().collect();
    assert_eq!(
        failures.len(),
        1,
        "one GitHub stream fails, then the source stops: {report:?}"
    );
    let message = failures[0].error.clone().unwrap();
    assert!(
        message.contains("`github`") && message.contains("401"),
        "{message}"
    );
    assert!(
        message.contains("TANDEM_DEMO_GITHUB_TOKEN"),
        "the message says what to check: {message}"
    );
    assert!(
        !message.contains("expired-token"),
        "never print the secret: {message}"
    );
    let from_pagerduty = store
        .read::<Incident>()
        .unwrap()
        .into_iter()
        .filter(|i| i.source == "pagerduty")
        .count();
    assert_eq!(
        from_pagerduty,
        world.org.incidents.len(),
        "the other sources went on"
    );
    assert_eq!(
        tandem::commands::sync::outcome(&report).unwrap(),
        tandem::commands::Outcome::Partial
    );
    // The streams the refusal stopped before they were tried are not covered either: none of
    // GitHub's figures may pass for synced. PagerDuty's are.
    let coverage = tandem::store::coverage::Coverage::load(&store).unwrap().unwrap();
    let github: Vec<_> = coverage
        .streams
        .iter()
        .filter(|(key, _)| key.starts_with("github/"))
        .collect();
    assert_eq!(github.len(), 5, "every GitHub stream: {github:?}");
    assert!(
        github
            .iter()
            .all(|(_, c)| c.failed_at.is_some() && c.last_ok_at.is_none()),
        "{github:?}"
    );
    assert!(coverage.streams["pagerduty/incidents"].failed_at.is_none());
    assert!(coverage.streams["pagerduty/incidents"].last_ok_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_change_resync_costs_one_request_per_stream_and_repo() {
    let world = World::start(4).await;
    let config = world.config();
    let store = store_of(&config);
    assert!(
        sync(&config, &store, &env(), &fast_sync())
            .await
            .unwrap()
            .all_ok()
    );
    let github_before = world.servers.github.control.request_count();
    let pagerduty_before = world.servers.pagerduty.control.request_count();
    let again = sync(&config, &store, &env(), &fast_sync()).await.unwrap();
    assert!(again.all_ok());
    let github_log = world.servers.github.control.requests()[github_before..].to_vec();
    let pagerduty_log = world.servers.pagerduty.control.requests()[pagerduty_before..].to_vec();
    let repos = world.org.services.len();
    // One conditional list request per repo and stream (a 304), plus the status of any
    // deployment that was still running at the first sync.
    let lists: Vec<_> = github_log.iter().filter(|r| !r.contains("/statuses")).collect();
    assert_eq!(lists.len(), 2 * repos, "{github_log:#?}");
    let pending = world
        .org
        .deployments
        .iter()
        .filter(|d| d.environment == "production" && tandem_fixtures::Organisation::finished_at(d).is_none())
        .count();
    assert_eq!(github_log.len() - lists.len(), pending, "{github_log:#?}");
    let not_modified = again.requests_of("github").not_modified;
    assert_eq!(not_modified, 2 * repos as u64, "every list answered 304");
    // PagerDuty has no ETags: one window of incidents (empty: nothing new), and each incident
    // still open at the first sync re-read by id, with its log when it may have been acknowledged.
    let open: Vec<_> = world
        .org
        .incidents
        .iter()
        .filter(|i| i.resolved_at.is_none())
        .collect();
    assert!(!open.is_empty());
    let windows = pagerduty_log
        .iter()
        .filter(|r| r.starts_with("GET /incidents?"))
        .count();
    assert_eq!(windows, 1, "{pagerduty_log:#?}");
    for i in &open {
        assert!(
            pagerduty_log.contains(&format!("GET /incidents/{}?time_zone=UTC", i.id)),
            "{pagerduty_log:#?}"
        );
    }
    let acked = open.iter().filter(|i| i.acknowledged_at.is_some()).count();
    assert_eq!(pagerduty_log.len(), 1 + open.len() + acked, "{pagerduty_log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_keeps_a_run_past_the_advertised_limit_free_of_rate_limit_answers() {
    let org = std::sync::Arc::new(tandem_fixtures::Organisation::generate(crate::common::spec(3)).unwrap());
    let mut options = crate::common::fake_options();
    // Fewer requests per window than the sync needs: it must wait for resets, not hit the wall.
    options.github_rate_limit = Some((60, 2));
    let servers = tandem_fixtures::start(org.clone(), options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = crate::common::write_config(dir.path(), &org, &servers);
    let config = tandem::config::Config::load(&path).unwrap();
    let store = store_of(&config);
    let options = SyncOptions {
        source: Some("github".into()),
        ..fast_sync()
    };
    let report = sync(&config, &store, &env(), &options).await.unwrap();
    assert!(report.all_ok(), "{report:?}");
    let stats = report.requests_of("github");
    let requests = servers.github.control.request_count();
    assert!(
        requests > 60,
        "the sync must need more than one window: {requests}"
    );
    assert_eq!(stats.rate_limited, 0, "no 403/429 rate-limit answers");
    assert!(stats.paced_ms > 0, "it waited for the advertised limit instead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_read_is_archived_raw() {
    let world = World::start(3).await;
    let config = world.config();
    let store = store_of(&config);
    let options = SyncOptions {
        source: Some("github".into()),
        ..fast_sync()
    };
    assert!(sync(&config, &store, &env(), &options).await.unwrap().all_ok());
    let mut pages = store.raw_pages("github", "deployments").unwrap();
    pages.extend(store.raw_pages("github", "pulls").unwrap());
    assert_eq!(
        pages.len(),
        world.servers.github.control.request_count(),
        "one archived page per request"
    );
    let base = world.servers.github.base_url();
    for p in &pages {
        assert!(p.url.starts_with(&base), "{}", p.url);
        assert_eq!(p.status, 200);
        assert!(p.headers.contains_key("x-ratelimit-remaining"));
        assert!(!p.headers.contains_key("authorization"));
        assert!(
            p.body.is_array() || p.body.is_object(),
            "a JSON list or compare result"
        );
    }
}

/// Two syncs at once in one process, into two lakes whose GitHub sources have the same name: each
/// lake archives exactly the pages its own sync read, and each report counts exactly its own
/// requests, stream by stream (pages and counters used to be kept per source name for the whole
/// process, so one sync's checkpoint archived the other's pages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_at_once_of_sources_with_one_name_archive_and_count_only_their_own_pages() {
    let (a, b) = tokio::join!(World::start(2), World::start(3));
    let (config_a, config_b) = (a.config(), b.config());
    let (store_a, store_b) = (store_of(&config_a), store_of(&config_b));
    let options = SyncOptions {
        source: Some("github".into()),
        ..fast_sync()
    };
    let env = env();
    let (report_a, report_b) = tokio::join!(
        sync(&config_a, &store_a, &env, &options),
        sync(&config_b, &store_b, &env, &options)
    );
    for (world, store, report) in [
        (&a, &store_a, report_a.unwrap()),
        (&b, &store_b, report_b.unwrap()),
    ] {
        assert!(report.all_ok(), "{report:?}");
        let base = world.servers.github.base_url();
        let mut archived = 0;
        for outcome in &report.streams {
            let pages = store.raw_pages("github", &outcome.stream).unwrap();
            for p in &pages {
                assert!(p.url.starts_with(&base), "{base}: {}", p.url);
            }
            // No retries here: one request per page, and the stream's own.
            assert_eq!(
                outcome.requests.requests,
                pages.len() as u64,
                "{}",
                outcome.stream
            );
            archived += pages.len();
        }
        let served = world.servers.github.control.request_count();
        assert!(served > 0);
        assert_eq!(archived, served, "every page this sync read, no other");
        assert_eq!(report.requests_of("github").requests, served as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remap_applies_a_new_service_mapping_without_any_request() {
    let world = World::start(2).await;
    let config = world.config();
    let store = store_of(&config);
    assert!(
        sync(&config, &store, &env(), &fast_sync())
            .await
            .unwrap()
            .all_ok()
    );
    let requests_before = requests(&world);

    let text = std::fs::read_to_string(&world.config_path).unwrap().replace(
        "name = \"checkout\"\nteam = \"payments\"",
        "name = \"shop\"\nteam = \"commerce\"",
    );
    std::fs::write(&world.config_path, text).unwrap();
    let config = world.config();
    let changed = tandem::sync::remap(&config, &store).unwrap();

    let deployments: Vec<Deployment> = store.read().unwrap();
    let incidents: Vec<Incident> = store.read().unwrap();
    let shop: Vec<_> = deployments.iter().filter(|d| d.repo == "acme/checkout").collect();
    assert!(!shop.is_empty());
    assert!(
        shop.iter()
            .all(|d| d.service.as_deref() == Some("shop") && d.team.as_deref() == Some("commerce"))
    );
    assert!(
        !deployments
            .iter()
            .any(|d| d.service.as_deref() == Some("checkout"))
    );
    let checkout_pd = &world.org.service("checkout").unwrap().pagerduty_id;
    assert!(
        incidents
            .iter()
            .filter(|i| i.service_ref.as_ref() == Some(checkout_pd))
            .all(|i| i.service.as_deref() == Some("shop"))
    );
    assert!(changed > 0);
    assert_eq!(requests(&world), requests_before, "remap makes no request");
    assert_eq!(
        tandem::sync::remap(&config, &store).unwrap(),
        0,
        "a second remap changes nothing"
    );
}

/// Syncs only GitHub pulls of the world's config.
async fn sync_pulls(world: &World, store: &Store) -> tandem::sync::SyncReport {
    let options = SyncOptions {
        source: Some("github".into()),
        stream: Some("pulls".into()),
        ..fast_sync()
    };
    sync(&world.config(), store, &env(), &options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_cut_off_bodies_are_retried() {
    let world = World::start(2).await;
    let store = store_of(&world.config());
    let control = &world.servers.github.control;
    control.rate_limit_next("/pulls?", 1, Some(1));
    // GitHub's secondary limit: 403 with a message and Retry-After.
    control.rate_limit_next_with_status("/commits", 403, 1, Some(1));
    control.truncate_next("/pulls?", 1);
    let started = std::time::Instant::now();
    let report = sync_pulls(&world, &store).await;
    assert!(report.all_ok(), "{report:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let log = control.requests();
    let first = log.iter().find(|r| r.contains("/pulls?")).unwrap();
    assert_eq!(
        log.iter().filter(|r| *r == first).count(),
        3,
        "429, cut-off body, then the page: {log:#?}"
    );
    let closed = world.org.pulls.iter().filter(|p| p.state == "closed").count();
    assert_eq!(store.read::<Change>().unwrap().len(), closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_401_fails_the_source_at_once_with_a_hint() {
    let world = World::start(2).await;
    let store = store_of(&world.config());
    world
        .servers
        .github
        .control
        .inject("/pulls?", tandem_fixtures::Fault::HtmlUnauthorized, 1);
    let report = sync_pulls(&world, &store).await;
    let failure = report.failures().next().expect("the stream fails");
    let message = failure.error.clone().unwrap();
    assert!(
        message.contains("401") && message.contains("TANDEM_DEMO_GITHUB_TOKEN"),
        "{message}"
    );
    assert_eq!(
        world.servers.github.control.request_count(),
        1,
        "a 401 is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_mid_pagination_keeps_the_pages_before_it_and_resumes() {
    let world = World::start(16).await;
    let store = store_of(&world.config());
    let control = &world.servers.github.control;
    // Page 2 of the first repo's pull list answers 401.
    control.unauthorized_next(
        "/pulls?state=closed&sort=updated&direction=desc&per_page=100&page=2",
        1,
    );
    let report = sync_pulls(&world, &store).await;
    assert!(!report.all_ok(), "the expired token fails the stream");
    let kept = store.read::<Change>().unwrap().len();
    assert!(
        kept >= 100,
        "the first page was committed before the failure: {kept}"
    );
    let bookmark = store.bookmark("github", "pulls").unwrap().unwrap();
    assert!(
        bookmark.to_string().contains("page=2"),
        "the bookmark points at the failed page: {bookmark}"
    );
    let before = control.request_count();
    let report = sync_pulls(&world, &store).await;
    assert!(report.all_ok(), "{report:?}");
    let resumed = &control.requests()[before..];
    assert!(
        resumed[0].contains("page=2"),
        "the re-run starts at the failed page: {resumed:#?}"
    );
    let closed = world.org.pulls.iter().filter(|p| p.state == "closed").count();
    assert_eq!(store.read::<Change>().unwrap().len(), closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_of_one_stream_reads_it_again_from_scratch() {
    let world = World::start(3).await;
    let config = world.config();
    let store = store_of(&config);
    let pulls = SyncOptions {
        source: Some("github".into()),
        stream: Some("pulls".into()),
        ..fast_sync()
    };
    let control = &world.servers.github.control;
    assert!(sync(&config, &store, &env(), &pulls).await.unwrap().all_ok());
    let first = control.request_count();
    let rows = store.read::<Change>().unwrap();
    // Incremental: the list answers 304 once per repo.
    assert!(sync(&config, &store, &env(), &pulls).await.unwrap().all_ok());
    let incremental = control.request_count() - first;
    assert_eq!(incremental, world.org.services.len());
    // --full: the bookmark (and its ETag) is forgotten, every page and detail is read again.
    let full = SyncOptions { full: true, ..pulls };
    assert!(sync(&config, &store, &env(), &full).await.unwrap().all_ok());
    assert_eq!(
        control.request_count() - first - incremental,
        first,
        "the same requests as the first sync"
    );
    assert_eq!(
        store.read::<Change>().unwrap(),
        rows,
        "and the same rows, not duplicated"
    );
    let deployments_bookmark = store.bookmark("github", "deployments").unwrap();
    assert!(
        deployments_bookmark.is_none(),
        "other streams are left alone (never synced here)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_makes_one_cheap_request_per_endpoint_and_names_the_failing_one() {
    let world = World::start(1).await;
    let path = world.config_path.clone();
    let run = |secrets: Vec<(&'static str, String)>| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_tandem"))
                .arg("--config")
                .arg(&path)
                .arg("check")
                .envs(secrets)
                .output()
                .unwrap()
        })
    };
    let secrets = tandem::commands::demo::demo_secrets(&crate::common::fake_options());
    let before = requests(&world);
    let ok = run(secrets.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok")).count(),
        6,
        "{stdout}"
    );
    // One request per endpoint a sync calls (GitHub's per repo), each counted on its line.
    let endpoints: usize = stdout
        .lines()
        .filter(|l| l.contains("(github)") || l.contains("(pagerduty)"))
        .filter_map(|l| l.rsplit(": ").next()?.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(endpoints >= 4 * world.org.services.len() + 3, "{stdout}");
    assert_eq!(requests(&world) - before, endpoints, "{stdout}");

    let expired: Vec<_> = secrets
        .into_iter()
        .map(|(var, value)| {
            if var == "TANDEM_DEMO_GITHUB_TOKEN" {
                (var, "ghp_revoked_4f1c".to_owned())
            } else {
                (var, value)
            }
        })
        .collect();
    let partial = run(expired).await.unwrap();
    let stdout = String::from_utf8_lossy(&partial.stdout);
    assert_eq!(
        partial.status.code(),
        Some(3),
        "partial: the other sources are fine: {stdout}"
    );
    let failed = stdout.lines().find(|l| l.starts_with("FAILED")).unwrap();
    assert!(
        failed.contains("github") && failed.contains("TANDEM_DEMO_GITHUB_TOKEN"),
        "{failed}"
    );
    assert!(!stdout.contains("ghp_revoked_4f1c"), "never print the secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_bookmarks_follow_base_url_to_another_port_and_the_pending_deployments_are_repolled() {
    let world = World::start(4).await;
    let config = world.config();
    let store = store_of(&config);
    let report = sync(&config, &store, &env(), &fast_sync()).await.unwrap();
    assert!(report.all_ok(), "{report:?}");
    let pending: Vec<u64> = world
        .org
        .deployments
        .iter()
        .filter(|d| d.environment == "production" && tandem_fixtures::Organisation::finished_at(d).is_none())
        .map(|d| d.id)
        .collect();
    assert!(!pending.is_empty());

    // The same APIs move to other ports (a renamed host, a proxy): the config follows them.
    let crate::common::World {
        org,
        servers,
        dir,
        config_path,
    } = world;
    servers.shutdown().await;
    let moved = tandem_fixtures::start(org.clone(), crate::common::fake_options())
        .await
        .unwrap();
    assert_eq!(crate::common::write_config(dir.path(), &org, &moved), config_path);
    let config = tandem::config::Config::load(&config_path).unwrap();
    let report = sync(&config, &store, &env(), &fast_sync()).await.unwrap();
    let github: Vec<_> = report.streams.iter().filter(|s| s.source == "github").collect();
    assert!(!github.is_empty());
    assert!(github.iter().all(|s| s.error.is_none()), "{github:#?}");
    // Each deployment still running at the first sync is asked about again, on the new port.
    let log = moved.github.control.requests();
    for id in pending {
        assert!(
            log.iter()
                .any(|r| r.contains(&format!("/deployments/{id}/statuses"))),
            "{id}: {log:#?}"
        );
    }
    moved.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_commits_the_checkpoints_of_its_commit_interval_together() {
    // Two lakes of one organisation: one committing at every checkpoint, one whose interval is
    // longer than the sync, so each stream commits once, at its end, with its last checkpoint.
    let world = World::start(6).await;
    let mut each = world.config();
    each.store.path = world.dir.path().join("each");
    each.store.commit_interval_secs = 0;
    let mut once = world.config();
    once.store.path = world.dir.path().join("once");
    once.store.commit_interval_secs = 3600;
    let (each_store, once_store) = (store_of(&each), store_of(&once));
    let report = sync(&each, &each_store, &env(), &fast_sync()).await.unwrap();
    assert!(report.all_ok(), "{report:?}");
    let first = requests(&world);
    let report = sync(&once, &once_store, &env(), &fast_sync()).await.unwrap();
    assert!(report.all_ok(), "{report:?}");
    assert_eq!(snapshot(&once_store), snapshot(&each_store));

    // One commit per stream that writes a table, against one per checkpoint: fewer versions of
    // every table, and of `changes` (GitHub's pulls, GitLab's merge requests, the file import)
    // at most three.
    let version = |store: &Store, table: &str| {
        store
            .table_version(table, tandem::store::delta::AsOf::Latest)
            .unwrap()
            .unwrap()
    };
    let (mut every, mut together) = (0, 0);
    for table in tandem::store::TABLES {
        let (e, t) = (version(&each_store, table), version(&once_store, table));
        assert!(
            t <= e,
            "{table}: {t} versions committing once per stream, {e} at every checkpoint"
        );
        (every, together) = (every + e, together + t);
    }
    assert!(together < every, "{together} versions in all, against {every}");
    assert!(version(&once_store, "changes") <= 3);

    // The bookmarks committed once per stream are the streams' last: syncing again reads
    // little and changes nothing.
    let before = requests(&world);
    let report = sync(&once, &once_store, &env(), &fast_sync()).await.unwrap();
    assert!(report.all_ok(), "{report:?}");
    assert_eq!(snapshot(&once_store), snapshot(&each_store));
    let again = requests(&world) - before;
    assert!(
        again * 3 < first,
        "{again} requests again, against {first} the first time"
    );
}
