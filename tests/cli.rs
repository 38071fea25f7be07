//! The habits of a well-kept command line, through the real binary: shell completions and the
//! man page generated from the clap definitions, and `tandem init`'s starter configs.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use clap::CommandFactory as _;
use tandem::cli::Cli;
use tandem::config::Config;

use crate::common::{World, fake_options, finish, tandem_command};

/// The kinds `tandem init --sources` accepts.
const INIT_KINDS: [&str; 7] = [
    "github",
    "gitlab",
    "jira",
    "jira-datacenter",
    "pagerduty",
    "servicenow",
    "file",
];

/// Every subcommand a user can type (clap's own `help` aside).
fn subcommands() -> Vec<String> {
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    for expected in ["sync", "maintain", "init", "completions", "man"] {
        assert!(names.iter().any(|n| n == expected), "{expected} in {names:?}");
    }
    names
}

/// `tandem ARGS` with no config and nothing of the test's environment that tandem reads.
fn tandem(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .current_dir(dir)
        .env_remove("TANDEM_CONFIG")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn completions_for_each_shell_name_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = tandem(&["completions", shell], dir.path());
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.len() > 1000, "{shell}: {script}");
        for sub in subcommands() {
            assert!(script.contains(&sub), "{shell} completes {sub}");
        }
        // Flags of subcommands too, not only their names.
        assert!(script.contains("sources") && script.contains("as-of"), "{shell}");
    }
    let out = tandem(&["completions", "tcsh"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses a shell it has no generator for"
    );
    assert!(stderr(&out).contains("bash"), "{}", stderr(&out));
}

#[test]
fn the_bash_completion_script_parses_and_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = tandem(&["completions", "bash"], dir.path());
    assert!(out.status.success());
    let script = dir.path().join("tandem.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", stderr(&check));
    // What a user's TAB does: bash calls the completion function with the words typed so far.
    let complete = |words: &str, cword: usize| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _tandem tandem \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash").arg("-c").arg(program).output().unwrap();
        assert!(out.status.success(), "{words}: {}", stderr(&out));
        stdout(&out).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(complete("tandem ma", 1), ["maintain", "man"]);
    assert_eq!(complete("tandem init --so", 2), ["--sources"]);
    assert!(complete("tandem report st", 2).contains(&"steering".to_owned()));
}

/// The `.TH` title line of a man page: its name and section.
fn title(page: &str) -> (String, String) {
    let line = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .unwrap_or_else(|| panic!("no .TH line in {page}"));
    let mut fields = line.split_whitespace().skip(1);
    let name = fields.next().unwrap().to_owned();
    let section = fields.next().unwrap().to_owned();
    (name, section)
}

/// Renders a page with groff when the machine has it (man-db brings it): any warning fails.
fn renders(page: &Path) {
    let Ok(out) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .arg(page)
        .output()
    else {
        eprintln!(
            "groff is not installed: {} was checked as text only",
            page.display()
        );
        return;
    };
    assert!(out.status.success(), "groff {}: {}", page.display(), stderr(&out));
    assert!(
        stderr(&out).is_empty(),
        "groff warns on {}: {}",
        page.display(),
        stderr(&out)
    );
    // Without a terminal, grotty marks bold and underline by overstriking (`S\x08S`, `_\x08x`):
    // the character before each backspace goes.
    let raw: Vec<char> = stdout(&out).chars().collect();
    let text: String = (0..raw.len())
        .filter(|&i| raw[i] != '\x08' && raw.get(i + 1) != Some(&'\x08'))
        .map(|i| raw[i])
        .collect();
    assert!(
        text.contains("SYNOPSIS") && text.contains("DESCRIPTION"),
        "{text}"
    );
}

#[test]
fn the_man_page_is_roff_naming_every_subcommand_and_out_writes_a_page_for_each() {
    let dir = tempfile::tempdir().unwrap();
    let out = tandem(&["man"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert_eq!(title(&page), ("tandem".to_owned(), "1".to_owned()));
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
    ] {
        assert!(page.contains(section), "{section}");
    }
    // The environment variable the config path may come from (clap_mangen's `env` feature).
    assert!(page.contains("TANDEM_CONFIG"));
    for sub in subcommands() {
        assert!(
            page.contains(&format!("tandem\\-{sub}(1)")),
            "the page lists {sub}"
        );
    }
    let printed = dir.path().join("printed.1");
    std::fs::write(&printed, &page).unwrap();
    renders(&printed);

    let man1 = dir.path().join("share/man/man1");
    let out = tandem(&["man", "--out", man1.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read_to_string(man1.join("tandem.1")).unwrap();
    assert_eq!(written, page, "--out writes the page that is printed");
    for sub in subcommands() {
        let path = man1.join(format!("tandem-{sub}.1"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(title(&text), (format!("tandem-{sub}"), "1".to_owned()));
        renders(&path);
    }
    let init = std::fs::read_to_string(man1.join("tandem-init.1")).unwrap();
    assert!(
        init.contains("\\-\\-sources") && init.contains("\\-\\-force"),
        "{init}"
    );
}

/// The lines of a config that are settings, not comments.
fn settings(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or_default())
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect()
}

/// A secret planted in the environment under every name a starter config uses.
const PLANTED: &str = "planted-secret-5f2c";
const SECRET_VARS: [&str; 6] = [
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "JIRA_TOKEN",
    "JIRA_DATACENTER_TOKEN",
    "PAGERDUTY_TOKEN",
    "SERVICENOW_PASSWORD",
];

#[test]
fn init_writes_for_every_kind_a_config_that_loads_and_names_only_env_vars() {
    let dir = tempfile::tempdir().unwrap();
    for kind in INIT_KINDS {
        let path = dir.path().join(format!("{kind}.toml"));
        let mut command = tandem_command(&path, &["init", "--sources", kind]);
        command.envs(SECRET_VARS.map(|var| (var, PLANTED)));
        let out = command.output().unwrap();
        assert!(out.status.success(), "{kind}: {}", stderr(&out));
        let text = std::fs::read_to_string(&path).unwrap();
        let said = stdout(&out);
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{kind}: {e}\n{text}"));
        assert_eq!(config.sources.len(), 1, "{kind}");
        assert!(
            !text.contains(PLANTED) && !said.contains(PLANTED),
            "{kind}: a secret leaked"
        );
        // Secrets are only ever named: every `*_env` setting holds a variable name, and no
        // setting is a token, password or key itself.
        for line in settings(&text) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim().trim_matches('"'));
            if key.ends_with("_env") {
                assert!(
                    SECRET_VARS.contains(&value),
                    "{kind}: {key} = {value} is a variable name"
                );
                assert!(said.contains(&format!("export {value}=")), "{kind}: {said}");
                assert!(said.contains("(set in this shell)"), "{kind}: {said}");
            } else {
                for word in ["token", "password", "secret", "key"] {
                    assert!(!key.contains(word), "{kind}: {key} holds a secret");
                }
            }
        }
        // Every placeholder left in a setting is named with its line, so the user can find it.
        for (i, line) in text.lines().enumerate() {
            if settings(line).first().is_some_and(|s| s.contains("CHANGE-ME")) {
                assert!(
                    said.contains(&format!("{}:{}:", path.display(), i + 1)),
                    "{kind}: line {} `{line}` is not named in\n{said}",
                    i + 1
                );
            }
        }
        assert!(said.contains("check"), "{kind}: {said}");
    }
    // The same through --out, several kinds at once, without the variables set.
    let out = tandem_command(
        &dir.path().join("unused.toml"),
        &[
            "init",
            "--sources",
            "github,pagerduty",
            "--out",
            "all/tandem.toml",
        ],
    )
    .current_dir(dir.path())
    .env_remove("GITHUB_TOKEN")
    .env_remove("PAGERDUTY_TOKEN")
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.path().join("unused.toml").exists());
    let config = Config::load(&dir.path().join("all/tandem.toml")).unwrap();
    let names: Vec<&str> = config.sources.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["github", "pagerduty"]);
    let said = stdout(&out);
    assert!(
        said.contains("export GITHUB_TOKEN=") && said.contains("(not set in this shell)"),
        "{said}"
    );
}

/// What a user fills in for a kind, here the fake APIs' addresses and the simulated
/// organisation's names: (placeholder setting, value), and the variables to export.
type Filling = (Vec<(String, String)>, Vec<(&'static str, String)>);

fn filled_in(kind: &str, world: &World) -> Filling {
    let opts = fake_options();
    let (org, servers) = (&world.org, &world.servers);
    let set = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| ((*a).to_owned(), b.clone())).collect()
    };
    match kind {
        "github" => (
            set(&[
                (
                    "\"https://api.github.com\"",
                    format!("{:?}", servers.github.base_url()),
                ),
                ("\"CHANGE-ME/repo\"", format!("{:?}", org.services[0].repo)),
            ]),
            vec![("GITHUB_TOKEN", opts.github_token)],
        ),
        "gitlab" => (
            set(&[
                (
                    "\"https://gitlab.com\"",
                    format!("{:?}", servers.gitlab.base_url()),
                ),
                (
                    "\"CHANGE-ME/project\"",
                    format!("{:?}", org.gitlab.projects[0].path),
                ),
            ]),
            vec![("GITLAB_TOKEN", opts.gitlab_token)],
        ),
        "jira" => (
            set(&[
                (
                    "\"https://CHANGE-ME.atlassian.net\"",
                    format!("{:?}", servers.jira.base_url()),
                ),
                ("\"CHANGE-ME@example.com\"", format!("{:?}", opts.jira_email)),
                ("[\"CHANGE-ME\"]", format!("[{:?}]", org.jira.projects[0].key)),
            ]),
            vec![("JIRA_TOKEN", opts.jira_token)],
        ),
        "jira-datacenter" => (
            set(&[
                (
                    "\"https://CHANGE-ME.example.com/jira\"",
                    format!("{:?}", servers.jira.base_url()),
                ),
                ("[\"CHANGE-ME\"]", format!("[{:?}]", org.jira.projects[0].key)),
            ]),
            vec![("JIRA_DATACENTER_TOKEN", opts.jira_token)],
        ),
        "pagerduty" => (
            set(&[(
                "\"https://api.pagerduty.com\"",
                format!("{:?}", servers.pagerduty.base_url()),
            )]),
            vec![("PAGERDUTY_TOKEN", opts.pagerduty_token)],
        ),
        "servicenow" => (
            set(&[
                (
                    "\"https://CHANGE-ME.service-now.com\"",
                    format!("{:?}", servers.servicenow.base_url()),
                ),
                (
                    "user = \"CHANGE-ME\"",
                    format!("user = {:?}", opts.servicenow_user),
                ),
            ]),
            vec![("SERVICENOW_PASSWORD", opts.servicenow_password)],
        ),
        // The import directory the file names; the fixtures write the organisation's exports.
        "file" => {
            tandem_fixtures::file_data::write_imports(org, &world.dir.path().join("imports")).unwrap();
            (Vec::new(), Vec::new())
        }
        other => panic!("no filling for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_config_filled_in_as_it_says_passes_tandem_check_against_each_vendor_api() {
    let world = World::start(2).await;
    for kind in INIT_KINDS {
        let path = world.dir.path().join(format!("{kind}.toml"));
        let out = tandem_command(&path, &["init", "--sources", kind])
            .output()
            .unwrap();
        assert!(out.status.success(), "{kind}: {}", stderr(&out));
        let (replacements, secrets) = filled_in(kind, &world);
        let mut text = std::fs::read_to_string(&path).unwrap();
        for (placeholder, value) in &replacements {
            assert!(text.contains(placeholder.as_str()), "{kind}: {placeholder}");
            text = text.replacen(placeholder.as_str(), value, 1);
        }
        assert!(
            settings(&text).iter().all(|l| !l.contains("CHANGE-ME")),
            "{kind}: a placeholder is left\n{text}"
        );
        std::fs::write(&path, &text).unwrap();
        let mut check = tandem_command(&path, &["check"]);
        check
            .envs(secrets)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = check.spawn().unwrap();
        let status = finish(&mut child, Duration::from_secs(60), kind).await;
        let out = child.wait_with_output().unwrap();
        assert!(
            status.success(),
            "{kind}: tandem check exit {status}\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).starts_with(&format!("ok      {kind} (")),
            "{kind}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn init_refuses_to_overwrite_a_file_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.toml");
    std::fs::write(&path, "# my own config\n").unwrap();
    let out = tandem_command(&path, &["init", "--sources", "github"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&path.display().to_string()) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# my own config\n");

    let out = tandem_command(&path, &["init", "--sources", "github", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(Config::load(&path).is_ok());
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("kind = \"github\"")
    );
}

#[test]
fn init_rejects_an_unknown_kind_a_repeated_one_and_none_naming_the_supported_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.toml");
    let supported = INIT_KINDS.join(", ");
    for (sources, what) in [
        (Some("github,jora"), "\"jora\""),
        (Some("github,GitHub"), "twice"),
        (None, "--sources"),
    ] {
        let mut args = vec!["init"];
        if let Some(sources) = sources {
            args.extend(["--sources", sources]);
        }
        let out = tandem_command(&path, &args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{sources:?}");
        let err = stderr(&out);
        assert!(err.contains(what), "{sources:?}: {err}");
        if what != "twice" {
            assert!(err.contains(&supported), "{sources:?}: {err}");
        }
        assert!(!path.exists(), "{sources:?}: nothing is written");
    }
}

#[test]
fn the_readme_command_table_has_a_row_for_every_subcommand() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for sub in subcommands() {
        assert!(
            readme.contains(&format!("| `tandem {sub}")),
            "README.md's command table lacks `tandem {sub}`"
        );
    }
}
