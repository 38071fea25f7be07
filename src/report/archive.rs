//! Report history: every report run writes into its own timestamped folder under the report
//! directory, and `index.html` at the top lists every run, newest first, so a past report can be
//! re-read exactly as it was.
//!
//! Layout: `<out>/<kind>/<YYYY-MM-DDTHHMMSSZ>/` holding the report's files and `meta.json`
//! (kind, title, period, when it was made, its main file), and `<out>/index.html`. Folders are never
//! rewritten: a second run in the same second gets a `-2` suffix.
//!
//! A run is written into a hidden folder (`.partial-<timestamp>-<host>-<pid>-<n>`) and renamed to its
//! name only when complete ([`publish`]), so a killed report leaves no half-made folder under a
//! run's name; the next run of the kind removes partial folders whose process is gone.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, context};
use serde::{Deserialize, Serialize};

use super::ReportError;

/// The file each run folder describes itself in.
pub const META_FILE: &str = "meta.json";
/// The history page at the top of the report directory.
pub const INDEX_FILE: &str = "index.html";

const INDEX_TEMPLATE_NAME: &str = "index.html";
const INDEX_TEMPLATE: &str = include_str!("../../reports/index.html");

/// What a run folder holds, as written to its `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Report kind: `weekly`, `steering`, `nightly`.
    pub kind: String,
    /// Title shown in the index.
    pub title: String,
    /// The period the report covers, as shown to readers (e.g. `2026-Q3`).
    pub period: String,
    /// When the report was made.
    pub generated_at: DateTime<Utc>,
    /// The main file, relative to the run folder (e.g. `report.html`).
    pub main: String,
    /// Other files worth linking from the index (e.g. `digest.md`), relative to the run folder.
    #[serde(default)]
    pub extra: Vec<String>,
    /// The table versions the report read, for `tandem report --as-of` to render it again from
    /// the lake as it was (none: a run of an earlier release, or a lake not yet of Delta tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<TableVersions>,
}

/// The versions of the lake's tables a report read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableVersions {
    /// The metric table's version: the one rendered, or the latest when the report was computed
    /// from the canonical tables (none: no metric table yet).
    pub metrics: Option<i64>,
    /// The canonical tables' versions read, by table name (a table never written is left out).
    pub tables: std::collections::BTreeMap<String, i64>,
}

/// One past run, as listed in the index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The run folder.
    pub dir: PathBuf,
    /// The folder relative to the report directory, with `/` separators.
    pub href: String,
    /// The kind's folder name (the first part of `href`).
    pub kind_dir: String,
    /// The run's folder name (the second part of `href`).
    pub folder: String,
    /// Its description.
    pub meta: Meta,
}

/// The name of a run folder being written starts with this; [`runs`] never lists it.
const PARTIAL_PREFIX: &str = ".partial-";

/// The run folder names' timestamp format.
const STAMP: &str = "%Y-%m-%dT%H%M%SZ";

/// The length of a timestamp in [`STAMP`]'s format (`2026-11-02T063005Z`).
const STAMP_LEN: usize = 18;

/// Creates a fresh, hidden folder to write a run of `kind` made at `at` into:
/// `<out>/<kind>/.partial-<timestamp>-<host>-<pid>-<n>/`. [`publish`] gives it its name once complete.
/// Partial folders left by killed runs of the kind are removed first.
pub fn run_dir(out: &Path, kind: &str, at: DateTime<Utc>) -> Result<PathBuf, ReportError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let parent = out.join(kind);
    std::fs::create_dir_all(&parent).map_err(|source| ReportError::Io {
        path: parent.clone(),
        source,
    })?;
    remove_abandoned(&parent);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = parent.join(format!(
        "{PARTIAL_PREFIX}{}-{}-{}-{n}",
        at.format(STAMP),
        this_host(),
        std::process::id()
    ));
    std::fs::create_dir(&dir).map_err(|source| ReportError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Renames a complete run folder made by [`run_dir`] to `<out>/<kind>/<timestamp>/` (with a `-2`,
/// `-3`, … suffix when a run of the same second has the name) and returns its new path. The
/// rename is atomic: the history sees the whole run or nothing.
pub fn publish(partial: &Path) -> Result<PathBuf, ReportError> {
    let io = |source| ReportError::Io {
        path: partial.to_owned(),
        source,
    };
    let (Some(parent), Some(stamp)) = (
        partial.parent(),
        partial
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(PARTIAL_PREFIX))
            .and_then(|n| n.get(..18)),
    ) else {
        return Err(io(std::io::Error::other("not a folder made by run_dir")));
    };
    for attempt in 1.. {
        let dir = if attempt == 1 {
            parent.join(stamp)
        } else {
            parent.join(format!("{stamp}-{attempt}"))
        };
        if dir.exists() {
            continue;
        }
        match std::fs::rename(partial, &dir) {
            Ok(()) => return Ok(dir),
            // Taken between the check and the rename, by a run of the same second.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::DirectoryNotEmpty
                ) => {}
            Err(source) => return Err(io(source)),
        }
    }
    unreachable!("the loop returns or errs")
}

/// The path `path` inside the partial folder `partial` has once the folder is published as
/// `published`.
pub fn moved(path: &Path, partial: &Path, published: &Path) -> PathBuf {
    path.strip_prefix(partial)
        .map(|rest| published.join(rest))
        .unwrap_or_else(|_| path.to_owned())
}

/// This host's name as it goes into a partial folder's name: letters, digits and `-` only.
fn this_host() -> String {
    crate::store::lock::host_name()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Removes the partial folders under `parent` whose process is no longer running (a killed
/// report). Only this host's processes can be told: a folder another host is writing (a report
/// folder shared between pods) is judged by its age, as is every folder where running processes
/// cannot be told (no `/proc`): older than a day, it goes.
fn remove_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let procfs = Path::new("/proc/self").exists();
    let here = this_host();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PARTIAL_PREFIX) else {
            continue;
        };
        // `<timestamp>-<host>-<pid>-<n>`, read from the right (a host name has dashes); a folder
        // named before hosts were part of the name (`<timestamp>-<pid>-<n>`) is this host's.
        let mut parts = rest.rsplitn(3, '-');
        let pid = parts.nth(1).and_then(|p| p.parse::<u32>().ok());
        let host = parts.next().and_then(|head| head.get(STAMP_LEN + 1..));
        let pid = pid.filter(|_| host.is_none_or(|h| h == here));
        let abandoned = match pid {
            Some(pid) if pid == std::process::id() => false,
            Some(pid) if procfs => !Path::new("/proc").join(pid.to_string()).exists(),
            _ => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(24 * 3600)),
        };
        if abandoned {
            tracing::info!(path = %entry.path().display(), "Removing a report folder a killed run left half-made.");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes `meta.json` into a run folder.
pub fn write_meta(dir: &Path, meta: &Meta) -> Result<(), ReportError> {
    let path = dir.join(META_FILE);
    let text = serde_json::to_string_pretty(meta).map_err(|err| ReportError::Io {
        path: path.clone(),
        source: std::io::Error::other(err),
    })?;
    std::fs::write(&path, text).map_err(|source| ReportError::Io { path, source })
}

/// Every run under `out`, newest first (by `generated_at`, then folder name). Folders without a
/// readable `meta.json` (a run that failed half-way, or foreign folders) are skipped.
pub fn runs(out: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    let Ok(kinds) = std::fs::read_dir(out) else {
        return entries;
    };
    for kind in kinds.flatten() {
        let Ok(folders) = std::fs::read_dir(kind.path()) else {
            continue;
        };
        for folder in folders.flatten() {
            // A run being written (or abandoned half-way) is not a run yet.
            if folder.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
                continue;
            }
            let dir = folder.path();
            let Some(meta) = std::fs::read_to_string(dir.join(META_FILE))
                .ok()
                .and_then(|text| serde_json::from_str::<Meta>(&text).ok())
            else {
                continue;
            };
            let kind_dir = kind.file_name().to_string_lossy().into_owned();
            let folder = folder.file_name().to_string_lossy().into_owned();
            entries.push(Entry {
                dir,
                href: format!("{kind_dir}/{folder}"),
                kind_dir,
                folder,
                meta,
            });
        }
    }
    entries.sort_by(|a, b| (b.meta.generated_at, &b.href).cmp(&(a.meta.generated_at, &a.href)));
    entries
}

/// The newest run of `kind` under `out`, other than `except` (the run being written now).
pub fn latest(out: &Path, kind: &str, except: Option<&Path>) -> Option<Entry> {
    runs(out)
        .into_iter()
        .find(|e| e.meta.kind == kind && except.is_none_or(|x| x != e.dir))
}

/// Rewrites `<out>/index.html` listing every run, newest first. Returns its path.
pub fn write_index(out: &Path, organisation: &str) -> Result<PathBuf, ReportError> {
    let entries = runs(out);
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let html = env
        .add_template(INDEX_TEMPLATE_NAME, INDEX_TEMPLATE)
        .and_then(|()| env.get_template(INDEX_TEMPLATE_NAME))
        .and_then(|t| {
            t.render(context! {
                organisation => organisation,
                entries => Serde(&entries),
            })
        })
        .map_err(|source| ReportError::Template {
            name: INDEX_TEMPLATE_NAME,
            source,
        })?;
    let path = out.join(INDEX_FILE);
    let io = |at: &Path, source| ReportError::Io {
        path: at.to_path_buf(),
        source,
    };
    crate::atomic::write_atomic(
        &path,
        |file| std::io::Write::write_all(file, html.as_bytes()).map_err(|e| io(&path, e)),
        |_, at, source| io(at, source),
    )?;
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn meta(kind: &str, title: &str, hour: u32) -> Meta {
        Meta {
            kind: kind.to_owned(),
            title: title.to_owned(),
            period: "2026-Q3".to_owned(),
            generated_at: Utc.with_ymd_and_hms(2026, 11, 2, hour, 0, 0).unwrap(),
            main: "report.html".to_owned(),
            extra: vec!["digest.md".to_owned()],
            read: None,
        }
    }

    #[test]
    fn each_run_gets_its_own_folder_even_within_one_second() {
        let out = tempfile::tempdir().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 2, 6, 30, 5).unwrap();
        let first = run_dir(out.path(), "nightly", at).unwrap();
        let second = run_dir(out.path(), "nightly", at).unwrap();
        std::fs::write(first.join("a"), "a").unwrap();
        std::fs::write(second.join("b"), "b").unwrap();
        assert_eq!(
            publish(&second).unwrap(),
            out.path().join("nightly/2026-11-02T063005Z")
        );
        assert_eq!(
            publish(&first).unwrap(),
            out.path().join("nightly/2026-11-02T063005Z-2")
        );
        assert!(out.path().join("nightly/2026-11-02T063005Z-2/a").exists());
    }

    #[test]
    fn a_run_killed_half_way_is_never_listed_and_its_folder_is_removed_by_the_next_run() {
        let out = tempfile::tempdir().unwrap();
        let m = meta("nightly", "Killed", 1);
        let dir = run_dir(out.path(), "nightly", m.generated_at).unwrap();
        // Killed after meta.json but before the rename: a complete-looking folder, still hidden.
        write_meta(&dir, &m).unwrap();
        assert!(runs(out.path()).is_empty(), "a partial folder is not a run");
        // The same folder as a process that is gone would have left it (pid 0 is never a
        // report's; without /proc the folder's age decides, so this is checked on Linux only).
        let gone = out.path().join("nightly/.partial-2026-11-02T010000Z-0-0");
        std::fs::rename(&dir, &gone).unwrap();
        let next = run_dir(out.path(), "nightly", m.generated_at).unwrap();
        if Path::new("/proc/self").exists() {
            assert!(!gone.exists(), "the killed run's folder is removed");
        }
        assert!(next.exists(), "the new run's own folder stays");
    }

    #[test]
    fn a_folder_another_host_is_writing_is_judged_by_its_age_not_by_this_hosts_processes() {
        let out = tempfile::tempdir().unwrap();
        let m = meta("nightly", "Elsewhere", 1);
        let mine = run_dir(out.path(), "nightly", m.generated_at).unwrap();
        let name = mine.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.contains(&format!("-{}-{}-", this_host(), std::process::id())),
            "{name}"
        );
        // A pod elsewhere writes a report with a pid this host does not run (0 never is).
        let theirs = out
            .path()
            .join("nightly/.partial-2026-11-02T010000Z-tandem-7f9c-x2-0-0");
        std::fs::create_dir(&theirs).unwrap();
        // Ours, killed, with a pid that is gone here.
        let killed = out
            .path()
            .join(format!("nightly/.partial-2026-11-02T010000Z-{}-0-0", this_host()));
        std::fs::create_dir(&killed).unwrap();
        run_dir(out.path(), "nightly", m.generated_at).unwrap();
        assert!(theirs.exists(), "a fresh folder of another host stays");
        if Path::new("/proc/self").exists() {
            assert!(!killed.exists(), "this host's killed run is removed");
        }
    }

    #[test]
    fn the_index_lists_runs_newest_first_and_escapes_titles() {
        let out = tempfile::tempdir().unwrap();
        for (kind, title, hour) in [
            ("nightly", "Nightly <b>one</b>", 1),
            ("steering", "Steering", 3),
            ("nightly", "Nightly two", 2),
        ] {
            let m = meta(kind, title, hour);
            let dir = run_dir(out.path(), kind, m.generated_at).unwrap();
            write_meta(&dir, &m).unwrap();
            publish(&dir).unwrap();
        }
        // A folder without meta.json (a run that died half-way) is not listed.
        std::fs::create_dir_all(out.path().join("nightly/broken")).unwrap();

        let listed: Vec<_> = runs(out.path()).into_iter().map(|e| e.meta.title).collect();
        assert_eq!(listed, ["Steering", "Nightly two", "Nightly <b>one</b>"]);
        assert_eq!(
            latest(out.path(), "nightly", None).unwrap().href,
            "nightly/2026-11-02T020000Z"
        );
        let newest = out.path().join("nightly/2026-11-02T020000Z");
        assert_eq!(
            latest(out.path(), "nightly", Some(&newest)).unwrap().meta.title,
            "Nightly <b>one</b>"
        );

        let html = std::fs::read_to_string(write_index(out.path(), "Acme").unwrap()).unwrap();
        assert!(html.contains("Nightly &lt;b&gt;one&lt;"), "{html}");
        assert!(!html.contains("<b>one</b>"));
        assert!(
            html.contains(r#"href="steering/2026-11-02T030000Z/report.html""#),
            "{html}"
        );
        assert!(
            html.contains(r#"href="nightly/2026-11-02T010000Z/digest.md""#),
            "{html}"
        );
        let steering = html.find("Steering").unwrap();
        let nightly_one = html.find("Nightly &lt;b&gt;").unwrap();
        assert!(steering < nightly_one, "newest first");
    }

    #[test]
    fn an_empty_report_directory_has_an_empty_index() {
        let out = tempfile::tempdir().unwrap();
        let html = std::fs::read_to_string(write_index(out.path(), "Acme").unwrap()).unwrap();
        assert!(html.contains("No reports yet"), "{html}");
    }
}
