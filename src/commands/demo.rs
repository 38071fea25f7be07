//! `tandem demo`: the whole job on a simulated organisation, through the real connectors and real
//! HTTP against built-in fake vendor APIs.
//!
//! It writes the config it runs with into the demo directory, so a user can read it, re-run
//! `tandem --config DIR/tandem.toml report`, and copy it as the start of their own.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use chrono::{Duration, NaiveDate, TimeZone as _, Utc};
use tandem_fixtures::{FakeOptions, FakeServers, OrgSpec, Organisation};

use super::{Context, Outcome, export, monday_of, print_nightly, run, steering, write_nightly};
use crate::cli::{DemoArgs, ExportArgs, RangeArgs, ReportArgs, ReportKind};
use crate::config::Config;
use crate::report::nightly::Window;

/// A file marking a directory as made by `tandem demo`, so a re-run may empty it.
const MARKER: &str = ".tandem-demo";
const GITHUB_TOKEN_VAR: &str = "TANDEM_DEMO_GITHUB_TOKEN";
const PAGERDUTY_TOKEN_VAR: &str = "TANDEM_DEMO_PAGERDUTY_TOKEN";
const JIRA_TOKEN_VAR: &str = "TANDEM_DEMO_JIRA_TOKEN";
const SERVICENOW_PASSWORD_VAR: &str = "TANDEM_DEMO_SERVICENOW_PASSWORD";
const GITLAB_TOKEN_VAR: &str = "TANDEM_DEMO_GITLAB_TOKEN";

/// Runs the demo.
pub async fn run(args: &DemoArgs, ctx: &Context) -> anyhow::Result<Outcome> {
    if args.weeks == 0 || args.weeks > 104 {
        bail!("--weeks must be between 1 and 104, not {}", args.weeks);
    }
    prepare_dir(&args.out)?;
    let until = monday_of(Utc::now().date_naive());
    let spec = OrgSpec {
        seed: args.seed,
        start: until - Duration::weeks(i64::from(args.weeks)),
        weeks: args.weeks,
    };
    let org = Organisation::generate(spec).context("cannot generate the simulated organisation")?;
    let tokens = FakeOptions::with_secret(&format!("demo-{}", args.seed));
    let org = Arc::new(org);
    let servers = tandem_fixtures::start(org.clone(), tokens.clone())
        .await
        .context("cannot start the fake APIs on 127.0.0.1")?;
    crate::say!(
        "Simulated organisation: {} services, {} deployments, {} pull requests, {} incidents.",
        org.services.len(),
        org.deployments.len(),
        org.pulls.len(),
        org.incidents.len()
    );
    crate::say!(
        "Fake APIs on 127.0.0.1: GitHub {}, GitLab {}, PagerDuty {}, Jira {}, ServiceNow {}.",
        servers.github.base_url(),
        servers.gitlab.base_url(),
        servers.pagerduty.base_url(),
        servers.jira.base_url(),
        servers.servicenow.base_url()
    );
    tandem_fixtures::file_data::write_imports(&org, &args.out.join("imports"))
        .context("cannot write the demo's import files")?;
    let config_path = args.out.join("tandem.toml");
    let text = demo_config(&org, &servers, &tokens);
    std::fs::write(&config_path, text).with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = Config::load(&config_path)?;
    let ctx = Context {
        env: demo_secrets(&tokens)
            .into_iter()
            .fold(ctx.env.clone(), |env, (var, value)| env.with_override(var, value)),
        progress: ctx.progress,
    };
    let range = RangeArgs {
        weeks: Some(args.weeks),
        until: Some(until),
        ..RangeArgs::default()
    };
    // The nightly job as if cron had run it at 06:00 on the last Thursday and Friday of the
    // simulated history: working days, each describing a working day (the day before), and the
    // second digest has a first to say what changed since. Each digest describes its own run.
    let morning = |day: NaiveDate| {
        config
            .tz()
            .from_local_datetime(&day.and_hms_opt(6, 0, 0).unwrap_or_default())
            .earliest()
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
    };
    let thursday = until - Duration::days(4);
    let outcome = run::job_at(&config, &ctx, &range, None, morning(thursday)).await?;
    let last_morning = morning(thursday + Duration::days(1));
    let health = run::sync_recorded(&config, &ctx, last_morning).await?.health();
    let digest = write_nightly(
        &config,
        None,
        Window::before(last_morning, config.tz()),
        Some(&health),
        last_morning,
    )?;
    print_nightly(&digest);

    // The steering committee's report on the second half of the history, against the first half.
    let half = (args.weeks / 2).max(1);
    let steering_args = ReportArgs {
        kind: ReportKind::Steering,
        range: RangeArgs {
            weeks: Some(half),
            until: Some(until),
            ..RangeArgs::default()
        },
        out: None,
        as_of: None,
    };
    steering::run(&steering_args, &config, &ctx)?;

    // The data team's export of the whole history.
    let export_args = ExportArgs {
        range,
        out: None,
        pseudonymise: false,
    };
    export::run(&export_args, &config, &ctx)?;
    crate::say!("config: {}", config_path.display());
    Ok(outcome)
}

/// Creates the demo directory, or empties one an earlier demo made; refuses anything else.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let is_empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        if !is_empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and was not made by `tandem demo`; choose another --out",
                dir.display()
            );
        }
        for sub in ["lake", "report", "imports"] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).with_context(|| format!("cannot empty {}", p.display()))?;
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `tandem demo`; it may empty this directory\n",
    )
    .with_context(|| format!("cannot write into {}", dir.display()))?;
    Ok(())
}

/// The environment variables the demo's config names, with the fake servers' credentials.
pub fn demo_secrets(opts: &FakeOptions) -> Vec<(&'static str, String)> {
    vec![
        (GITHUB_TOKEN_VAR, opts.github_token.clone()),
        (PAGERDUTY_TOKEN_VAR, opts.pagerduty_token.clone()),
        (JIRA_TOKEN_VAR, opts.jira_token.clone()),
        (SERVICENOW_PASSWORD_VAR, opts.servicenow_password.clone()),
        (GITLAB_TOKEN_VAR, opts.gitlab_token.clone()),
    ]
}

/// The config the demo runs with: the shape a user writes for their own organisation.
pub fn demo_config(org: &Organisation, servers: &FakeServers, opts: &FakeOptions) -> String {
    let repos: Vec<String> = org.services.iter().map(|s| format!("{:?}", s.repo)).collect();
    let gitlab_projects: Vec<String> = org
        .gitlab
        .projects
        .iter()
        .map(|p| format!("{:?}", p.path))
        .collect();
    let jira_projects: Vec<String> = org.jira.projects.iter().map(|p| format!("{:?}", p.key)).collect();
    let mut out = format!(
        r#"# tandem config written by `tandem demo` for a simulated organisation.
# Relative paths are relative to this file's directory.

[organisation]
name = "Acme (simulated)"

[store]
path = "lake"            # the lake of Delta tables

[report]
out = "report"           # where report.html and the PNG charts go
weeks = {weeks}

[metrics]
attribution_window_hours = 24            # incident -> deployment of the same service
outage_severities = ["sev1", "sev2"]     # incidents that count as downtime
# PagerDuty is the system of record for incidents; Jira and ServiceNow mirror them as tickets.
incident_sources = ["pagerduty", "legacy-exports"]

# Shared KPIs: what IT and operations agreed to be judged on, with the owners.
[[kpi]]
metric = "change_failure_rate"
target = "<= 0.15"
owners = "IT+Ops"

[[kpi]]
metric = "lead_time_median"
target = "<= 72"
owners = "IT"

[[kpi]]
metric = "availability"
target = ">= 0.995"
owners = "Ops"
amber_margin = 0.005             # a margin relative to the target: 0.5% of 99.5%

[[kpi]]
metric = "sla_breach_rate"
scope = "service:checkout"
target = "<= 0.10"
owners = "Ops"

[[source]]
name = "github"
kind = "github"
base_url = "{github}"   # https://api.github.com, or https://HOST/api/v3
token_env = "{GITHUB_TOKEN_VAR}"          # the token is read from this environment variable
repos = [{repos}]
environments = ["production"]
lookback_days = {lookback}
stale_after_days = {stale_after}

[[source]]
name = "gitlab"
kind = "gitlab"
base_url = "{gitlab}"   # https://gitlab.com or your own host
token_env = "{GITLAB_TOKEN_VAR}"
projects = [{gitlab_projects}]
lookback_days = {lookback}
stale_after_days = {stale_after}

[[source]]
name = "pagerduty"
kind = "pagerduty"
base_url = "{pagerduty}"
token_env = "{PAGERDUTY_TOKEN_VAR}"
lookback_days = {lookback}

[[source]]
name = "jira"
kind = "jira"
base_url = "{jira}"   # https://YOUR-SITE.atlassian.net
email = "{jira_email}"
token_env = "{JIRA_TOKEN_VAR}"
projects = [{jira_projects}]
incident_types = ["Incident"]
change_types = ["Change"]
correlation_field = "{jira_correlation}"   # where PagerDuty links its incident
lookback_days = {lookback}

[[source]]
name = "servicenow"
kind = "servicenow"
base_url = "{servicenow}"   # https://YOUR-INSTANCE.service-now.com
user = "{servicenow_user}"
password_env = "{SERVICENOW_PASSWORD_VAR}"
lookback_days = {lookback}

[[source]]
name = "legacy-exports"
kind = "file"
path = "imports"                        # CSV/NDJSON exports of a system without an API
"#,
        weeks = org.spec.weeks,
        github = servers.github.base_url(),
        gitlab = servers.gitlab.base_url(),
        pagerduty = servers.pagerduty.base_url(),
        jira = servers.jira.base_url(),
        servicenow = servers.servicenow.base_url(),
        repos = repos.join(", "),
        gitlab_projects = gitlab_projects.join(", "),
        jira_projects = jira_projects.join(", "),
        jira_email = opts.jira_email,
        jira_correlation = tandem_fixtures::jira_data::CORRELATION_FIELD,
        servicenow_user = opts.servicenow_user,
        // Reach back to the simulation's first day whenever the demo runs.
        lookback = (Utc::now() - org.spec.start_at()).num_days().max(0) + 7,
        // The simulation's clock stops at its last day: a deployment still running then is a
        // week from stale counted from that day, not from today.
        stale_after = (Utc::now() - org.spec.now()).num_days().max(0) + 7,
    );
    for s in &org.services {
        let cis: Vec<String> = org
            .servicenow
            .cis
            .iter()
            .filter(|c| c.service == s.name)
            .map(|c| format!("{:?}", c.sys_id))
            .collect();
        let _ = write!(
            out,
            "\n[[service]]\nname = {:?}\nteam = {:?}\nrepos = [{:?}]\npagerduty = [{:?}]\njira_components = [{:?}]\nservicenow_cis = [{}]\n",
            s.name,
            s.team,
            s.repo,
            s.pagerduty_id,
            s.name,
            cis.join(", ")
        );
    }
    for p in &org.gitlab.projects {
        let _ = write!(
            out,
            "\n[[service]]\nname = {:?}\nteam = {:?}\nrepos = [{:?}]\n",
            p.service, p.team, p.path
        );
    }
    let (name, team, repo) = tandem_fixtures::file_data::LEGACY_SERVICE;
    let _ = write!(
        out,
        "\n[[service]]\nname = {name:?}\nteam = {team:?}\nrepos = [{repo:?}]\n"
    );
    out
}
