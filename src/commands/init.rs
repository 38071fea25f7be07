//! `tandem init`: writes a commented starter config for the kinds of source a user names, loads
//! it with the real config loader, and says what is left to fill in.
//!
//! The file names environment variables, never a secret: it must not read or write any token.
//! It never overwrites a file without `--force`, and touches nothing but that one file.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use tandem_connectors::SourceConfig;

use super::Context;
use crate::cli::InitArgs;
use crate::config::Config;

/// What a value the user must replace contains, so that the file itself says what is left to do
/// and [`placeholders`] finds every one.
pub const PLACEHOLDER: &str = "CHANGE-ME";

/// A kind of source `--sources` accepts, with the `[[source]]` entry written for it.
#[derive(Debug)]
struct Starter {
    /// The name on the command line (also the source's `name` in the file).
    kind: &'static str,
    /// The `[[source]]` entry, commented.
    entry: &'static str,
    /// The line of the commented `[[service]]` example that maps this kind's records.
    service_key: &'static str,
}

/// Every kind `tandem init` writes: the config's source kinds, Jira in both flavours.
const STARTERS: &[Starter] = &[
    Starter {
        kind: "github",
        entry: r#"[[source]]
name = "github"                   # unique; used in bookmarks and record ids
kind = "github"
base_url = "https://api.github.com"     # GitHub Enterprise Server: https://HOST/api/v3
token_env = "GITHUB_TOKEN"        # the environment variable holding the token (never the token)
repos = ["CHANGE-ME/repo"]        # repositories to read, owner/name
environments = ["production"]     # deployment environments to read
# production_environments = ["prod", "production"]  # names that count as production
# lookback_days = 365             # history read on the first sync
# incident_labels = ["incident"]  # issues with these labels become incidents
# deployment_workflows = ["deploy.yml"]  # Actions runs of these workflows as deployments
"#,
        service_key: r#"# repos = ["CHANGE-ME/repo"]    # GitHub repos and GitLab projects of the service"#,
    },
    Starter {
        kind: "gitlab",
        entry: r#"[[source]]
name = "gitlab"
kind = "gitlab"
base_url = "https://gitlab.com"   # or your own host; /api/v4 is appended
token_env = "GITLAB_TOKEN"        # sent as PRIVATE-TOKEN; needs read_api
projects = ["CHANGE-ME/project"]  # paths or numeric ids
# environments = ["production"]   # [] reads every environment
# lookback_days = 365             # history read on the first sync
"#,
        service_key: r#"# repos = ["CHANGE-ME/repo"]    # GitHub repos and GitLab projects of the service"#,
    },
    Starter {
        kind: "jira",
        entry: r#"[[source]]
name = "jira"
kind = "jira"
base_url = "https://CHANGE-ME.atlassian.net"
flavor = "cloud"
email = "CHANGE-ME@example.com"   # the account the API token belongs to (Basic email:token)
token_env = "JIRA_TOKEN"          # the environment variable holding the API token
projects = ["CHANGE-ME"]          # project keys
incident_types = ["Incident"]     # issue types that are incidents
change_types = ["Change"]         # issue types that are change requests
# correlation_field = "customfield_10070"   # where an incident names the same outage elsewhere
# lookback_days = 365             # history read on the first sync
"#,
        service_key: r#"# jira_components = ["CHANGE-ME"]  # Jira components of the service"#,
    },
    Starter {
        kind: "jira-datacenter",
        entry: r#"[[source]]
name = "jira-datacenter"
kind = "jira"
base_url = "https://CHANGE-ME.example.com/jira"   # the base URL, with any context path
flavor = "datacenter"             # Jira Data Center / Server: REST v2
token_env = "JIRA_DATACENTER_TOKEN"   # a personal access token, sent as Bearer
# email = "user-name"             # set it to send user name and password (in token_env) as Basic
projects = ["CHANGE-ME"]          # project keys
incident_types = ["Incident"]     # issue types that are incidents
change_types = ["Change"]         # issue types that are change requests
# lookback_days = 365             # history read on the first sync
"#,
        service_key: r#"# jira_components = ["CHANGE-ME"]  # Jira components of the service"#,
    },
    Starter {
        kind: "pagerduty",
        entry: r#"[[source]]
name = "pagerduty"
kind = "pagerduty"
base_url = "https://api.pagerduty.com"  # EU service region: https://api.eu.pagerduty.com
token_env = "PAGERDUTY_TOKEN"     # a read-only REST API key
# service_ids = ["PCHK7Q1"]       # only these services (default: all)
# lookback_days = 365             # history read on the first sync
"#,
        service_key: r#"# pagerduty = ["CHANGE-ME"]     # PagerDuty service ids of the service"#,
    },
    Starter {
        kind: "servicenow",
        entry: r#"[[source]]
name = "servicenow"
kind = "servicenow"
base_url = "https://CHANGE-ME.service-now.com"
user = "CHANGE-ME"                # the integration user (Basic user:password; its time zone UTC)
password_env = "SERVICENOW_PASSWORD"   # the environment variable holding its password
# token_env = "SERVICENOW_TOKEN"  # an OAuth bearer token instead of user and password_env
# incident_query = "assignment_group.name=Ops"   # extra encoded-query filter
# lookback_days = 365             # history read on the first sync
"#,
        service_key: r#"# servicenow_cis = ["CHANGE-ME"]   # ServiceNow cmdb_ci sys_ids or names"#,
    },
    Starter {
        kind: "file",
        entry: r#"[[source]]
name = "file"
kind = "file"                     # CSV/NDJSON exports of a system without an API
path = "imports"                  # a file or a directory, relative to this file's directory
# format = "csv"                  # or "ndjson"; by default from each file's extension
# entity = "deployments"          # by default from each file's name (deployments.csv, ...)
"#,
        service_key: r#"# repos = ["CHANGE-ME/repo"]    # GitHub repos and GitLab projects of the service"#,
    },
];

/// The kinds `--sources` accepts, as the messages list them.
fn kinds() -> Vec<&'static str> {
    STARTERS.iter().map(|s| s.kind).collect()
}

/// Writes the starter config, loads it, and prints what to fill in next.
pub fn run(args: &InitArgs, config_path: &Path, ctx: &Context) -> anyhow::Result<()> {
    let starters = chosen(&args.sources)?;
    let path = args.out.as_deref().unwrap_or(config_path);
    let text = starter_config(&starters);
    write_new(path, &text, args.force)?;
    let config = Config::load(path).with_context(|| {
        format!(
            "the config `tandem init` wrote to {} does not load; this is a bug in tandem",
            path.display()
        )
    })?;
    crate::say!(
        "Wrote {} with the sources {}; it loads as a valid config.",
        path.display(),
        starters.iter().map(|s| s.kind).collect::<Vec<_>>().join(", ")
    );
    crate::say!("{}", next_steps(&config, path, &text, ctx));
    Ok(())
}

/// The starters named by `--sources`, in the order given; an unknown or repeated kind, or none,
/// is an error naming the kinds supported.
fn chosen(names: &[String]) -> anyhow::Result<Vec<&'static Starter>> {
    let supported = kinds().join(", ");
    if names.is_empty() {
        bail!("name the kinds of source to configure: --sources KIND,... (supported: {supported})");
    }
    let mut out: Vec<&'static Starter> = Vec::new();
    for name in names {
        let name = name.trim();
        let Some(starter) = STARTERS.iter().find(|s| s.kind.eq_ignore_ascii_case(name)) else {
            bail!("unknown source kind {name:?} in --sources; supported: {supported}");
        };
        if out.iter().any(|s| s.kind == starter.kind) {
            bail!("--sources names {:?} twice; name each kind once", starter.kind);
        }
        out.push(starter);
    }
    Ok(out)
}

/// The whole file: the settings every config has, then one entry per starter.
fn starter_config(starters: &[&Starter]) -> String {
    let kinds: Vec<&str> = starters.iter().map(|s| s.kind).collect();
    let mut out = format!(
        r#"# tandem config written by `tandem init` for: {kinds}.
# Secrets never go in this file: each source names the environment variable that holds its
# token or password, to be exported before tandem runs. Replace every {PLACEHOLDER}, then run
# `tandem --config THIS-FILE check`. README.md's configuration reference lists every key.
# Relative paths are relative to this file's directory.

[organisation]
name = "Our organisation"         # shown in report titles

[store]
path = "lake"                     # the lake of Delta tables, or object storage: "s3://bucket/prefix",
                                  # "gs://bucket/prefix", "az://container/prefix" (credentials from
                                  # the cloud's usual environment, never from this file)
# [store.s3]                      # an S3-compatible store (MinIO, Ceph, R2)
# endpoint = "https://minio.example:9000"

[report]
out = "report"                    # where reports are written
weeks = 12                        # ISO weeks covered
# time_zone = "Europe/Berlin"     # days, weeks, months and quarters are counted here (default UTC)

[metrics]
outage_severities = ["sev1", "sev2"]    # incidents that count as downtime
# incident_sources = ["pagerduty"]      # the systems of record that count incidents (default: all)
"#,
        kinds = kinds.join(", ")
    );
    for starter in starters {
        let _ = write!(out, "\n{}", starter.entry);
    }
    out.push_str(
        "\n# The mapping that puts IT's and Ops' records side by side: one [[service]] per service.\n\
         # [[service]]\n\
         # name = \"checkout\"\n\
         # team = \"payments\"\n",
    );
    let mut keys: Vec<&str> = Vec::new();
    for starter in starters {
        if !keys.contains(&starter.service_key) {
            keys.push(starter.service_key);
        }
    }
    for key in keys {
        let _ = writeln!(out, "{key}");
    }
    out
}

/// Writes `text` to `path`; without `force`, only if no file is there (checked by the creation
/// itself, so a file appearing meanwhile is not overwritten either).
fn write_new(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if force {
        // Replaced whole or not at all: a failed write leaves the old config in place.
        return crate::atomic::write_atomic(
            path,
            |file| {
                file.write_all(text.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))
            },
            |what, file, e| anyhow::Error::from(e).context(format!("cannot {what} {}", file.display())),
        );
    }
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!(
                "{} exists; tandem init does not overwrite it (pass --force to replace it, or --out to write elsewhere)",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    let written = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
    if written.is_err() {
        // A partial file would make the next `tandem init` refuse; the write error is the one
        // worth reporting.
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

/// The environment variables a source reads its secrets from.
fn secret_vars(source: &SourceConfig) -> Vec<&str> {
    match source {
        SourceConfig::GitHub(c) => vec![c.token_env.as_str()],
        SourceConfig::GitLab(c) => vec![c.token_env.as_str()],
        SourceConfig::Jira(c) => vec![c.token_env.as_str()],
        SourceConfig::PagerDuty(c) => vec![c.token_env.as_str()],
        SourceConfig::ServiceNow(c) => [&c.password_env, &c.token_env]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect(),
        SourceConfig::File(_) => Vec::new(),
    }
}

/// The lines of `text` (1-based numbers) that hold a placeholder in a setting, not in a comment.
fn placeholders(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let setting = line.split(" #").next().unwrap_or_default();
            !line.trim_start().starts_with('#') && setting.contains(PLACEHOLDER)
        })
        .map(|(i, line)| (i + 1, line.split(" #").next().unwrap_or_default().trim_end()))
        .collect()
}

/// What the user must do before the first sync: export each secret variable, replace each
/// placeholder, provide the files of a file import; then check and run.
fn next_steps(config: &Config, path: &Path, text: &str, ctx: &Context) -> String {
    let mut out = String::from("Next:\n");
    for source in &config.sources {
        for var in secret_vars(source) {
            let state = if ctx.env.is_set(var) {
                "set in this shell"
            } else {
                "not set in this shell"
            };
            let export = format!("export {var}=...");
            let _ = writeln!(out, "  {export:<34} # source {:?} ({state})", source.name());
        }
        if let SourceConfig::File(f) = source {
            if !f.path.exists() {
                let _ = writeln!(
                    out,
                    "  put the CSV/NDJSON exports of source {:?} in {} (it does not exist yet)",
                    f.name,
                    f.path.display()
                );
            }
        }
    }
    for (line, setting) in placeholders(text) {
        let _ = writeln!(
            out,
            "  replace {PLACEHOLDER} at {}:{line}: {setting}",
            path.display()
        );
    }
    let _ = write!(
        out,
        "  map your services in [[service]] entries (an example is at the end of the file)\n\
         Then: tandem --config {0} check, and tandem --config {0} run.",
        path.display()
    );
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn every_source_kind_of_the_config_has_a_starter() {
        for kind in tandem_connectors::KINDS {
            let starter = STARTERS.iter().find(|s| s.kind == *kind);
            assert!(starter.is_some(), "no `tandem init` starter for kind {kind}");
        }
    }

    #[test]
    fn each_starter_alone_and_all_together_load_and_name_only_env_vars() {
        let mut sets: Vec<Vec<&Starter>> = STARTERS.iter().map(|s| vec![s]).collect();
        sets.push(STARTERS.iter().collect());
        for starters in sets {
            let text = starter_config(&starters);
            let config = Config::parse(&text, Path::new("tandem.toml"), "/etc/tandem".into())
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(config.sources.len(), starters.len());
            for source in &config.sources {
                for var in secret_vars(source) {
                    assert!(
                        var.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                        "{var} is an environment variable name"
                    );
                }
            }
        }
    }

    #[test]
    fn placeholders_are_found_in_settings_not_in_comments() {
        let text =
            "# replace CHANGE-ME\nrepos = [\"CHANGE-ME/repo\"]   # owner/name\nkind = \"x\" # CHANGE-ME\n";
        assert_eq!(placeholders(text), vec![(2, "repos = [\"CHANGE-ME/repo\"]")]);
    }
}
