//! What a scheduler reads from tandem: the log lines on stderr (`--log-format json` or
//! `TANDEM_LOG_FORMAT=json`: one JSON object per line) and the summary line that ends `tandem sync`
//! and `tandem run`, whose counts match what the sync printed and whose exit code is the process's.

use std::collections::BTreeSet;

use serde_json::Value;
use tandem_connectors::SourceConfig;

use crate::common::{World, output, tandem_command, tandem_output};

/// Every line of `stderr`, each parsed as one JSON object with a `level` and a `message`.
fn json_lines(stderr: &str) -> Vec<Value> {
    assert!(!stderr.trim().is_empty(), "nothing on stderr");
    stderr
        .lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(value["level"].is_string(), "no level: {line}");
            assert!(value["message"].is_string(), "no message: {line}");
            assert!(value["timestamp"].is_string(), "no timestamp: {line}");
            value
        })
        .collect()
}

/// What the sync printed on stdout, counted as the summary counts it: sources, failed sources,
/// records and quarantined records (from `synced NAME: stream N, …; Q quarantined (S s)` and
/// `FAILED NAME/STREAM: …` lines).
#[derive(Debug, Default, PartialEq)]
struct Printed {
    sources: BTreeSet<String>,
    failed: BTreeSet<String>,
    records: u64,
    quarantined: u64,
}

fn printed(stdout: &str) -> Printed {
    let mut p = Printed::default();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("synced ") {
            let (source, rest) = rest.split_once(": ").unwrap();
            let (counts, rest) = rest.split_once("; ").unwrap();
            p.sources.insert(source.to_owned());
            if counts != "nothing new" {
                for count in counts.split(", ") {
                    let (_, n) = count.rsplit_once(' ').unwrap();
                    p.records += n.parse::<u64>().unwrap();
                }
            }
            let (quarantined, _) = rest.split_once(" quarantined").unwrap();
            p.quarantined += quarantined.parse::<u64>().unwrap();
        } else if let Some(rest) = line.strip_prefix("FAILED ") {
            let (source, _) = rest.split_once('/').unwrap();
            p.sources.insert(source.to_owned());
            p.failed.insert(source.to_owned());
        }
    }
    p
}

/// The summary's counts as `Printed`, from the JSON line.
fn summary_counts(summary: &Value) -> (u64, u64, u64, u64, u64) {
    let n = |key: &str| {
        summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no count {key}: {summary}"))
    };
    (n("sources"), n("ok"), n("failed"), n("records"), n("quarantined"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_end_with_a_summary_matching_the_sync() {
    let world = World::start(2).await;
    // `-v` logs progress per stream at info level, so there is more than the summary to parse.
    let (code, stdout, stderr) =
        tandem_output(&world, &["--log-format", "json", "-v", "sync"], "json-sync").await;
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(&stderr);
    assert!(lines.len() > 1, "only the summary was logged: {stderr}");
    // A clean sync raises no alarm: the Delta kernel's own error events (a table not written
    // yet) used to be logged at ERROR level on every first sync.
    let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "error lines in a clean sync: {errors:?}");

    let summary = lines.last().unwrap();
    assert_eq!(summary["message"], "summary", "{stderr}");
    assert_eq!(summary["level"], "INFO");
    assert_eq!(summary["exit"], 0);
    assert!(summary["seconds"].as_f64().unwrap() > 0.0, "{summary}");
    let sync = printed(&stdout);
    let sources = world.config().sources.len() as u64;
    assert_eq!(sync.sources.len() as u64, sources, "{stdout}");
    assert!(sync.records > 0, "{stdout}");
    assert_eq!(
        summary_counts(summary),
        (sources, sources, 0, sync.records, sync.quarantined),
        "{summary} against\n{stdout}"
    );
    // One summary, and only at the end.
    assert_eq!(
        lines.iter().filter(|l| l["message"] == "summary").count(),
        1,
        "{stderr}"
    );

    // The whole job too: sync, metrics, reports and upkeep, every line JSON, the summary last.
    let (code, stdout, stderr) =
        tandem_output(&world, &["--log-format", "json", "-v", "run"], "json-run").await;
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(&stderr);
    let summary = lines.last().unwrap();
    assert_eq!(summary["message"], "summary", "{stderr}");
    assert_eq!(summary["exit"], 0);
    let sync = printed(&stdout);
    assert_eq!(
        summary_counts(summary),
        (sources, sources, 0, sync.records, sync.quarantined),
        "{summary} against\n{stdout}"
    );
}

/// The variable that holds the simulated GitHub's token, as the world's config names it.
fn github_token_var(world: &World) -> String {
    world
        .config()
        .sources
        .iter()
        .find_map(|s| match s {
            SourceConfig::GitHub(g) => Some(g.token_env.clone()),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_exits_3_with_failed_1_in_the_summary() {
    let world = World::start(2).await;
    let revoked = "ghp_revoked_summary_7d2e";
    let var = github_token_var(&world);
    let sources = world.config().sources.len() as u64;

    // JSON, chosen by the environment variable.
    let mut command = tandem_command(&world.config_path, &["sync"]);
    command.env("TANDEM_LOG_FORMAT", "json").env(&var, revoked);
    let (code, stdout, stderr) = output(command, world.dir.path(), "partial-sync").await;
    assert_eq!(code, 3, "{stderr}\n{stdout}");
    let lines = json_lines(&stderr);
    let summary = lines.last().unwrap();
    assert_eq!(summary["message"], "summary", "{stderr}");
    assert_eq!(summary["level"], "WARN");
    assert_eq!(summary["exit"], 3);
    let sync = printed(&stdout);
    assert_eq!(sync.failed, BTreeSet::from(["github".to_owned()]), "{stdout}");
    assert_eq!(
        summary_counts(summary),
        (sources, sources - 1, 1, sync.records, sync.quarantined),
        "{summary} against\n{stdout}"
    );
    assert!(
        !stderr.contains(revoked) && !stdout.contains(revoked),
        "never the secret"
    );

    // Only the failing source: every source failed, exit 1, the error and then the summary.
    let mut command = tandem_command(&world.config_path, &["sync", "--source", "github"]);
    command.env("TANDEM_LOG_FORMAT", "json").env(&var, revoked);
    let (code, stdout, stderr) = output(command, world.dir.path(), "failed-sync").await;
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    let lines = json_lines(&stderr);
    let (error, summary) = (&lines[lines.len() - 2], lines.last().unwrap());
    assert_eq!(error["level"], "ERROR", "{stderr}");
    assert!(
        error["message"].as_str().unwrap().contains("every source failed"),
        "{stderr}"
    );
    assert_eq!(summary["message"], "summary", "{stderr}");
    assert_eq!(summary["level"], "ERROR");
    assert_eq!(summary["exit"], 1);
    assert_eq!(summary_counts(summary), (1, 0, 1, 0, 0), "{summary}");
    assert!(
        !stderr.contains(revoked) && !stdout.contains(revoked),
        "never the secret"
    );

    // Text, for `tandem run`: the whole job, then the summary as the last line.
    let mut command = tandem_command(&world.config_path, &["run"]);
    command.env(&var, revoked);
    let (code, stdout, stderr) = output(command, world.dir.path(), "partial-run").await;
    assert_eq!(code, 3, "{stderr}\n{stdout}");
    let last = stderr.lines().last().unwrap();
    let sync = printed(&stdout);
    let expected = format!(
        "summary: sources={sources} ok={} failed=1 records={} quarantined={} seconds=",
        sources - 1,
        sync.records,
        sync.quarantined
    );
    assert!(last.starts_with(&expected), "{last}\nexpected {expected}…");
    assert!(last.ends_with(" exit=3"), "{last}");
    assert!(stderr.contains("Some sources failed"), "{stderr}");
    assert!(
        !stderr.contains(revoked) && !stdout.contains(revoked),
        "never the secret"
    );
}

/// Before any sync there is nothing to summarise: a bad config stays one clear error line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_cannot_start_is_one_json_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let (code, _, stderr) = output(
        tandem_command(&missing, &["--log-format", "json", "sync"]),
        dir.path(),
        "no-config",
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    let lines = json_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(lines[0]["level"], "ERROR");
    assert!(
        lines[0]["message"].as_str().unwrap().contains("missing.toml"),
        "{stderr}"
    );

    // Commands that do not sync end without one.
    let (code, _, stderr) = output(tandem_command(&missing, &["metrics"]), dir.path(), "metrics").await;
    assert_eq!(code, 1, "{stderr}");
    assert!(!stderr.contains("summary"), "{stderr}");
}
