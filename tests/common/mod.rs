//! Shared set-up: a simulated organisation served by the fake APIs, a config pointing at them, and
//! the tokens the connectors read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use tandem::config::Config;
use tandem::sync::SyncOptions;
use tandem_connectors::{RetryPolicy, SecretEnv};
use tandem_fixtures::{FakeOptions, FakeServers, OrgSpec, Organisation};

pub mod s3;

pub const GITHUB_TOKEN: &str = "test-github-token";
pub const PAGERDUTY_TOKEN: &str = "test-pagerduty-token";

/// A Monday, so the simulated weeks are ISO weeks.
pub fn spec(weeks: u32) -> OrgSpec {
    OrgSpec {
        seed: 7,
        start: NaiveDate::from_ymd_opt(2026, 8, 3).unwrap(),
        weeks,
    }
}

pub struct World {
    pub org: Arc<Organisation>,
    pub servers: FakeServers,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl World {
    pub async fn start(weeks: u32) -> World {
        let org = Arc::new(Organisation::generate(spec(weeks)).unwrap());
        let servers = tandem_fixtures::start(org.clone(), fake_options()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config_path = write_config(dir.path(), &org, &servers);
        World {
            org,
            servers,
            dir,
            config_path,
        }
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path).unwrap()
    }

    /// A config for the same servers whose lake lives in `sub` of the temp dir.
    pub fn config_in(&self, sub: &str) -> Config {
        let dir = self.dir.path().join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        let path = write_config(&dir, &self.org, &self.servers);
        Config::load(&path).unwrap()
    }
}

pub fn fake_options() -> FakeOptions {
    FakeOptions {
        github_token: GITHUB_TOKEN.into(),
        pagerduty_token: PAGERDUTY_TOKEN.into(),
        ..FakeOptions::with_secret("test")
    }
}

pub fn write_config(dir: &Path, org: &Organisation, servers: &FakeServers) -> PathBuf {
    let text = tandem::commands::demo::demo_config(org, servers, &fake_options());
    let path = dir.join("tandem.toml");
    std::fs::write(&path, text).unwrap();
    tandem_fixtures::file_data::write_imports(org, &dir.join("imports")).unwrap();
    path
}

/// The tokens under the names the test config uses.
pub fn env() -> SecretEnv {
    tandem::commands::demo::demo_secrets(&fake_options())
        .into_iter()
        .fold(SecretEnv::process(), |env, (var, value)| {
            env.with_override(var, value)
        })
}

/// Retries fast, so failure tests take milliseconds.
pub fn fast_sync() -> SyncOptions {
    SyncOptions {
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_rate_limit_wait: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            ..RetryPolicy::default()
        },
        ..SyncOptions::default()
    }
}

/// `tandem --config <config> <args>` with the simulated organisation's tokens in its environment
/// (and no failpoint inherited from the test's), ready to spawn.
pub fn tandem_command(config: &Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(tandem::commands::demo::demo_secrets(&fake_options()))
        .env_remove("TANDEM_FAILPOINT");
    command
}

/// Waits for `child` at most `limit`: a child still running then is killed and the test fails
/// naming `what` (a test must never hang on the binary).
pub async fn finish(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: tandem still running after {limit:?}; killed it");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `tandem <args>` on the world's config to completion (bounded), returning the exit code, stdout
/// and stderr (kept in files named after `name` in the world's temp dir).
pub async fn tandem_output(world: &World, args: &[&str], name: &str) -> (i32, String, String) {
    output(tandem_command(&world.config_path, args), world.dir.path(), name).await
}

/// Runs `command` to completion (bounded), its output going to files named after `name` in
/// `dir`; returns the exit code (-1 for a signal), stdout and stderr.
pub async fn output(mut command: std::process::Command, dir: &Path, name: &str) -> (i32, String, String) {
    let stdout = dir.join(format!("{name}.stdout"));
    let stderr = dir.join(format!("{name}.stderr"));
    let mut child = command
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let status = finish(&mut child, Duration::from_secs(120), name).await;
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(&stdout).unwrap(),
        std::fs::read_to_string(&stderr).unwrap_or_default(),
    )
}

/// Every row of the tables a sync of GitHub, GitLab and PagerDuty writes, for equality checks
/// between two lakes.
#[allow(clippy::type_complexity)]
pub fn snapshot(
    store: &tandem::store::Store,
) -> (
    Vec<tandem_connectors::model::Deployment>,
    Vec<tandem_connectors::model::Change>,
    Vec<tandem_connectors::model::Incident>,
    Vec<tandem_connectors::model::Quarantined>,
) {
    let mut quarantined: Vec<tandem_connectors::model::Quarantined> = store.read().unwrap();
    // `seen_at` is when tandem saw the record: it differs between two lakes.
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
