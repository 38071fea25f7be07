//! Report history: every report run writes into its own timestamped folder under the report
//! directory, and `index.html` at the top lists every run, newest first, so a past report can be
//! re-read exactly as it was.
//!
//! Layout: `<out>/<kind>/<YYYY-MM-DDTHHMMSSZ>/` holding the report's files and `meta.json`
//! (kind, title, period, when it was made, its main file), and `<out>/index.html`. Folders are never
//! rewritten: a second run in the same second gets a `-2` suffix.

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

/// Creates a fresh folder for a run of `kind` made at `at`: `<out>/<kind>/<timestamp>/`.
pub fn run_dir(out: &Path, kind: &str, at: DateTime<Utc>) -> Result<PathBuf, ReportError> {
    let parent = out.join(kind);
    std::fs::create_dir_all(&parent).map_err(|source| ReportError::Io {
        path: parent.clone(),
        source,
    })?;
    let stamp = at.format("%Y-%m-%dT%H%M%SZ").to_string();
    for attempt in 1.. {
        let name = if attempt == 1 {
            stamp.clone()
        } else {
            format!("{stamp}-{attempt}")
        };
        let dir = parent.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(ReportError::Io { path: dir, source }),
        }
    }
    unreachable!("the loop returns or errs")
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
        }
    }

    #[test]
    fn each_run_gets_its_own_folder_even_within_one_second() {
        let out = tempfile::tempdir().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 2, 6, 30, 5).unwrap();
        let first = run_dir(out.path(), "nightly", at).unwrap();
        let second = run_dir(out.path(), "nightly", at).unwrap();
        assert_eq!(first, out.path().join("nightly/2026-11-02T063005Z"));
        assert_eq!(second, out.path().join("nightly/2026-11-02T063005Z-2"));
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
