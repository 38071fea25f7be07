//! Which files a file-import source reads (one file, or the recognised files of one directory),
//! and the fingerprint that tells whether a file changed since it was last read.
//!
//! Blocking file-system calls only: the connector runs these off the async workers. Nothing here
//! parses a row.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::row::Entity;
use super::{FileFormat, FileImportConfig};

/// One file to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its name under the configured path: the bookmark key, so moving the whole directory keeps
    /// the bookmarks.
    pub key: String,
    /// How to parse it.
    pub format: FileFormat,
    /// What it holds.
    pub entity: Entity,
}

/// What the configured path holds: the files to read, and the files of a directory that are
/// skipped with the reason (for `check` to report).
#[derive(Debug, Default)]
pub struct Discovered {
    /// Files to read, sorted by name.
    pub files: Vec<ImportFile>,
    /// Files left out, with why.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

/// The format a file name's extension names: `.csv`, `.ndjson` or `.jsonl` (case-insensitive).
pub fn format_of(path: &Path) -> Option<FileFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Some(FileFormat::Csv),
        "ndjson" | "jsonl" => Some(FileFormat::Ndjson),
        _ => None,
    }
}

/// Lists the files of the configured path. A single file must have a known format and entity
/// (from the config or its name); in a directory (not recursive, hidden files ignored) every
/// file with a recognised extension (and the configured `format`, when set) whose entity is known
/// is read.
pub fn discover(config: &FileImportConfig) -> Result<Discovered, String> {
    let path = &config.path;
    let meta = std::fs::metadata(path).map_err(|e| {
        format!(
            "cannot read {}: {e}; check `path` (relative paths are resolved against the config file's directory)",
            path.display()
        )
    })?;
    if !meta.is_dir() {
        let format = config.format.or_else(|| format_of(path)).ok_or_else(|| {
            format!(
                "cannot tell the format of {}: name it .csv, .ndjson or .jsonl, or set `format`",
                path.display()
            )
        })?;
        let entity = config.entity.or_else(|| stem_entity(path)).ok_or_else(|| {
            format!(
                "cannot tell what {} holds: name it after its entity ({}) or set `entity`",
                path.display(),
                entity_names()
            )
        })?;
        return Ok(Discovered {
            files: vec![ImportFile {
                path: path.clone(),
                key: file_name(path),
                format,
                entity,
            }],
            skipped: Vec::new(),
        });
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("cannot list {}: {e}", path.display()))?;
    let mut found = Discovered::default();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", path.display()))?;
        let p = entry.path();
        let name = file_name(&p);
        // metadata() follows symlinks, so a linked file counts as a file.
        if name.starts_with('.') || !std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Some(format) = format_of(&p) else {
            found.skipped.push((p, "not .csv, .ndjson or .jsonl"));
            continue;
        };
        if config.format.is_some_and(|f| f != format) {
            found.skipped.push((p, "not of the configured `format`"));
            continue;
        }
        let Some(entity) = config.entity.or_else(|| stem_entity(&p)) else {
            found.skipped.push((p, "its name names no entity"));
            continue;
        };
        found.files.push(ImportFile {
            path: p,
            key: name,
            format,
            entity,
        });
    }
    found.files.sort_by(|a, b| a.key.cmp(&b.key));
    found.skipped.sort();
    Ok(found)
}

fn stem_entity(path: &Path) -> Option<Entity> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(Entity::from_stem)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// `deployments, changes, …` for messages.
pub fn entity_names() -> String {
    Entity::ALL.map(Entity::name).join(", ")
}

/// What identifies one version of a file: its size, its modification time and an FNV-1a hash of
/// its whole content. The hash catches a rewrite that keeps size and time (`cp -p`, a restore);
/// FNV is not cryptographic, which is fine: it guards against accidents, not adversaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Size in bytes.
    pub len: u64,
    /// Modification time, when the platform reports one.
    pub modified: Option<DateTime<Utc>>,
    /// FNV-1a 64 of the content, hex.
    pub hash: String,
}

/// Fingerprints the file at `path`.
pub fn fingerprint(path: &Path) -> io::Result<Fingerprint> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        for b in &buf[..n] {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(Fingerprint {
        // The bytes hashed, not the metadata's size: they agree unless the file grew meanwhile,
        // and then the hash is what was read.
        len,
        modified: meta.modified().ok().map(DateTime::<Utc>::from),
        hash: format!("{hash:016x}"),
    })
}
