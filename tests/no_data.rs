//! No silent zeros: a figure whose source failed or never synced is "no data" with the reason, in
//! the CLI table, the JSON rows, the written metric table and the report — never a 0 that looks
//! real. Tried as a new user would: a working source beside a Jira whose token is missing.

use std::path::Path;
use std::process::Command;

use chrono::{Datelike as _, Duration, Utc};

fn tandem(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--config")
        .arg(dir.join("tandem.toml"))
        .args(args)
        .env_remove("TANDEM_TEST_NO_JIRA_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A lake fed by a file import (deployments in the last days) and a Jira that cannot start.
fn setup(dir: &Path) {
    let imports = dir.join("imports");
    std::fs::create_dir_all(&imports).unwrap();
    let mut csv = String::from("repo,environment,is_production,status,sha,created_at,finished_at\n");
    // The six days before this week's Monday (UTC, the default report time zone): all within
    // the last complete week, whatever weekday the test runs on.
    let today = Utc::now().date_naive();
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    for day in 1..=6 {
        let at = (monday - Duration::days(day)).format("%Y-%m-%dT10:00:00Z");
        csv.push_str(&format!("acme/shop,production,1,success,s{day},{at},{at}\n"));
    }
    std::fs::write(imports.join("deployments.csv"), csv).unwrap();
    std::fs::write(
        dir.join("tandem.toml"),
        "[store]\npath = \"lake\"\n\n\
         [[source]]\nname = \"legacy\"\nkind = \"file\"\npath = \"imports\"\n\n\
         [[source]]\nname = \"servicedesk\"\nkind = \"jira\"\nbase_url = \"http://127.0.0.1:9\"\n\
         token_env = \"TANDEM_TEST_NO_JIRA_TOKEN\"\nprojects = [\"OPS\"]\n\n\
         [[kpi]]\nmetric = \"ticket_backlog\"\nscope = \"org\"\ntarget = \"<= 10\"\nowners = \"Ops\"\n",
    )
    .unwrap();
}

#[test]
fn tickets_from_a_jira_that_never_synced_are_no_data_with_the_reason_not_zero() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let (code, stdout, stderr) = tandem(dir.path(), &["sync"]);
    assert_ne!(code, 0, "a failed source is not a success: {stdout}{stderr}");

    let (code, stdout, stderr) = tandem(dir.path(), &["metrics", "--weeks", "2"]);
    assert_eq!(code, 0, "{stderr}");
    let line = |title: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(title))
            .unwrap_or_else(|| panic!("no {title:?} line in:\n{stdout}"))
            .to_owned()
    };
    // The figures Jira feeds say "no data" and point at the note; none says 0.
    for title in ["Tickets resolved ", "Ticket backlog "] {
        let l = line(title);
        assert!(
            l[title.len()..].trim_start().starts_with("no data"),
            "the value column: {l}"
        );
        assert!(l.ends_with("[1]"), "{l}");
    }
    assert!(
        stdout.contains("[1] no data: servicedesk has never synced (issues:")
            && stdout.contains("TANDEM_TEST_NO_JIRA_TOKEN"),
        "the note names the source and why: {stdout}"
    );
    // What the file source feeds is covered and counted.
    let deployments = line("Production deployments ");
    assert!(!deployments.contains("no data"), "{deployments}");
    assert!(deployments.split_whitespace().any(|w| w == "6"), "{deployments}");

    // JSON rows carry the reason beside a null value.
    let (code, json, stderr) = tandem(dir.path(), &["metrics", "--weeks", "2", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let out: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = out["metrics"].as_array().unwrap();
    // A KPI on a figure without data is not judged: neither green (a backlog of 0) nor red.
    assert_eq!(out["kpis"][0]["status"], "no-data", "{}", out["kpis"]);
    let tickets: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["metric"] == "tickets_resolved")
        .collect();
    assert!(!tickets.is_empty());
    for r in &tickets {
        assert!(r["value"].is_null(), "{r}");
        assert!(
            r["no_data"]
                .as_str()
                .unwrap()
                .starts_with("servicedesk has never synced"),
            "{r}"
        );
    }
    let deployed: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["metric"] == "deployment_count")
        .collect();
    assert!(deployed.iter().all(|r| r["no_data"].is_null()), "{deployed:?}");

    // The written table keeps the reason in its own column, in the CSV as in the Parquet.
    let (code, csv, stderr) = tandem(dir.path(), &["metrics", "--weeks", "2", "--format", "csv"]);
    assert_eq!(code, 0, "{stderr}");
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with(",no_data"), "{header}");
    assert!(
        csv.lines()
            .filter(|l| l.starts_with("tickets_resolved,"))
            .all(|l| l.contains("servicedesk has never synced")),
        "{csv}"
    );

    // The report lists the reason once, and the figure shows "no data".
    let out = dir.path().join("out");
    let (code, _, stderr) = tandem(dir.path(), &["report", "weekly", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let html = find_file(&out, "report.html").unwrap_or_else(|| panic!("no report under {}", out.display()));
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("Figures without data"), "the report says why");
    assert!(html.contains("servicedesk has never synced"));

    // The steering committee's page and the chat digest say it too.
    let (code, _, stderr) = tandem(
        dir.path(),
        &["report", "steering", "--out", out.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    let steering = std::fs::read_to_string(find_file(&out.join("steering"), "report.html").unwrap()).unwrap();
    assert!(steering.contains("Some figures show “no data”"), "steering page");
    assert!(steering.contains("servicedesk has never synced"));
    let (code, _, stderr) = tandem(dir.path(), &["report", "nightly", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let digest = std::fs::read_to_string(find_file(&out.join("nightly"), "digest.md").unwrap()).unwrap();
    assert!(
        digest.contains("No data for some figures: servicedesk has never synced"),
        "{digest}"
    );
    assert!(
        digest.contains("- SLA breaches: no data · 7 days no data"),
        "{digest}"
    );
}

/// The first file named `name` under `dir` (report folders are named after their run).
fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in &entries {
        if path.is_file() && path.file_name().is_some_and(|n| n == name) {
            return Some(path.clone());
        }
    }
    entries
        .iter()
        .filter(|p| p.is_dir())
        .find_map(|p| find_file(p, name))
}
