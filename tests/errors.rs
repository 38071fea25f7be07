//! What a user sees when the config or the environment is wrong: one clear line and exit code 1.

use std::process::Command;

fn tandem(dir: &std::path::Path, config: &str, args: &[&str]) -> (i32, String, String) {
    let path = dir.join("tandem.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .env_remove("TANDEM_TEST_MISSING_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_source_kind_is_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = tandem(
        dir.path(),
        "[[source]]\nname = \"tickets\"\nkind = \"jora\"\ntoken_env = \"X\"\n",
        &["sync"],
    );
    assert_eq!(code, 1);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("`source[0].kind`") && stderr.contains("\"jora\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("github, gitlab, jira, pagerduty, servicenow, file"),
        "lists the known kinds: {stderr}"
    );
}

#[test]
fn a_missing_token_variable_names_the_variable_and_the_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = tandem(
        dir.path(),
        "[[source]]\nname = \"gh\"\nkind = \"github\"\nbase_url = \"http://127.0.0.1:9\"\ntoken_env = \"TANDEM_TEST_MISSING_TOKEN\"\nrepos = [\"acme/a\"]\n",
        &["sync"],
    );
    assert_eq!(code, 1);
    let stderr_line = stderr.trim();
    assert_eq!(
        stderr_line.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr_line.contains("TANDEM_TEST_MISSING_TOKEN") && stderr_line.contains("source.gh.token_env"),
        "{stderr}"
    );
    assert!(stdout.contains("FAILED gh"), "{stdout}");
}

#[test]
fn a_missing_config_file_says_how_to_get_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["--config", "/nonexistent/tandem.toml", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/tandem.toml") && stderr.contains("tandem demo"),
        "{stderr}"
    );
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "sync", "check", "metrics", "report", "run", "export", "remap", "demo",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: tandem"), "{cmd}: {text}");
    }
}
