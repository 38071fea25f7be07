//! The change links a computation keeps in the lake (`lake/prepared/`), as a user meets them: the
//! next command over the same tables reads them, and a sync that brings new changes and
//! deployments makes the next command work them out again, never reusing the old ones.

use std::path::Path;
use std::process::Command;

fn tandem(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--config")
        .arg(dir.join("tandem.toml"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tandem {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The organisation's lead time median for the week of 2 November 2026: `(value, n)`.
fn lead_time(dir: &Path) -> (f64, i64) {
    let json = tandem(
        dir,
        &[
            "metrics",
            "--weeks",
            "1",
            "--until",
            "2026-11-09",
            "--format",
            "json",
        ],
    );
    let out: serde_json::Value = serde_json::from_str(&json).unwrap();
    let row = out["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "lead_time_median" && r["scope_type"] == "org" && r["grain"] == "week")
        .unwrap_or_else(|| panic!("no lead time row in {json}"))
        .clone();
    (row["value"].as_f64().unwrap(), row["n"].as_i64().unwrap())
}

/// The entries kept in the lake.
fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("lake/prepared"))
        .map(|read| read.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(0)
}

#[test]
fn a_sync_that_brings_changes_makes_the_next_command_link_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let imports = dir.path().join("imports");
    std::fs::create_dir_all(&imports).unwrap();
    std::fs::write(
        dir.path().join("tandem.toml"),
        "[store]\npath = \"lake\"\n\n[[source]]\nname = \"legacy\"\nkind = \"file\"\npath = \"imports\"\n",
    )
    .unwrap();
    let deployments = "repo,environment,is_production,status,sha,created_at,finished_at\n\
        acme/shop,production,1,success,a1,2026-11-03T12:00:00Z,2026-11-03T12:00:00Z\n";
    // Opened 06:00, merged 08:00, shipped by the 12:00 deployment (by time: no commits known):
    // 6 h from opening to production.
    let changes = "repo,number,title,state,created_at,merged_at,is_revert\n\
        acme/shop,1,First,merged,2026-11-03T06:00:00Z,2026-11-03T08:00:00Z,false\n";
    std::fs::write(imports.join("deployments.csv"), deployments).unwrap();
    std::fs::write(imports.join("changes.csv"), changes).unwrap();
    tandem(dir.path(), &["sync"]);
    assert_eq!(lead_time(dir.path()), (6.0, 1));
    assert_eq!(entries(dir.path()), 1, "the first computation keeps the links");
    assert_eq!(lead_time(dir.path()), (6.0, 1), "read back");
    assert_eq!(entries(dir.path()), 1, "the same tables: the same entry");

    // A second change (opened 07:00 on the 4th, merged 08:00) and the deployment that shipped it
    // (10:00): 3 h. Linked again, the week's median is 4.5 h over both changes; the old links
    // would have said 6 h over one.
    std::fs::write(
        imports.join("deployments.csv"),
        format!("{deployments}acme/shop,production,1,success,b2,2026-11-04T10:00:00Z,2026-11-04T10:00:00Z\n"),
    )
    .unwrap();
    std::fs::write(
        imports.join("changes.csv"),
        format!("{changes}acme/shop,2,Second,merged,2026-11-04T07:00:00Z,2026-11-04T08:00:00Z,false\n"),
    )
    .unwrap();
    tandem(dir.path(), &["sync"]);
    assert_eq!(lead_time(dir.path()), (4.5, 2));
    assert_eq!(entries(dir.path()), 2, "new tables, a new entry beside the old");
    assert_eq!(lead_time(dir.path()), (4.5, 2));
}
