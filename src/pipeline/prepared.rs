//! What the metric computation works out from the whole history of three tables — which
//! production deployment shipped each change ([`super::links`]) and which deployments a deployed
//! revert undid ([`super::undone`]) — kept beside the lake (`<lake>/prepared/`), so the next
//! computation over the same versions of those tables reads them instead of walking years of
//! commits again.
//!
//! An entry is named by a digest of what it was computed from: [`FORMAT`], tandem's version and,
//! for the `deployments`, `changes` and `commits` tables, each data file's name, size and
//! modification time in the order the computation reads them. A sync that changes any of these
//! tables names new files, so an entry is never read for tables other than its own; the first
//! computation after the sync works the links out again and keeps them. The entry is written to a
//! temporary directory and renamed into place, so a reader sees a whole entry or none; one that
//! cannot be read, or whose columns or row references do not fit the tables, is worked out again.
//! Only the [`KEEP`] entries written or read last are kept. Failing to keep an entry never fails the
//! computation: it is logged and the next one works the links out again.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use polars::prelude::*;
use sha2::{Digest, Sha256};

use super::Inputs;

/// The layout of an entry and the rules that made it. Bump it whenever [`super::links`] or the
/// revert rule of [`super::undone`] changes what it gives for the same tables: entries of another
/// format are never read.
const FORMAT: u32 = 2;

/// How many entries are kept: the lake's current tables and a few recent versions (a report
/// comparing with an earlier version of the lake reads that version's tables).
const KEEP: usize = 3;

/// The change links' file in an entry.
const LINKS: &str = "change_links.parquet";
/// The deployed reverts' file in an entry: `deployment_id`, `reverted_at` (ms).
const REVERTED: &str = "reverted.parquet";

/// The columns of [`super::links::change_links`], in order, with their types.
fn links_schema() -> [(&'static str, DataType); 6] {
    [
        ("change", IDX_DTYPE),
        ("merged_at", DataType::Int64),
        ("opened_at", DataType::Int64),
        ("first_commit_at", DataType::Int64),
        ("deployment", IDX_DTYPE),
        ("ancestry", DataType::Float64),
    ]
}

/// The place of one entry: the prepared directory and the digest of the tables it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    dir: PathBuf,
    key: String,
}

impl Entry {
    /// The entry for `inputs`' tables, when they name a prepared directory and every data file
    /// can be looked at (a file that cannot is left to the computation to report).
    pub(crate) fn of(inputs: Inputs<'_>) -> Option<Self> {
        let dir = inputs.prepared?;
        let mut digest = Sha256::new();
        digest.update(format!(
            "tandem {} prepared {FORMAT}\n",
            env!("CARGO_PKG_VERSION")
        ));
        for (table, files) in [
            ("deployments", inputs.deployments),
            ("changes", inputs.changes),
            ("commits", inputs.commits),
        ] {
            digest.update(format!("{table} {}\n", files.len()));
            for file in files {
                let name = file.file_name()?.to_string_lossy();
                match std::fs::metadata(file) {
                    Ok(meta) => {
                        let modified = meta
                            .modified()
                            .ok()
                            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                            .map_or(0, |at| at.as_nanos());
                        digest.update(format!("{name} {} {modified}\n", meta.len()));
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        digest.update(format!("{name} missing\n"));
                    }
                    Err(_) => return None,
                }
            }
        }
        let key: String = digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Some(Self {
            dir: dir.to_owned(),
            key,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(&self.key)
    }

    /// The kept change links and reverted deployments, when the entry exists, reads whole and
    /// fits tables of `changes` rows and `deployments` production deployments.
    pub(crate) fn read(
        &self,
        changes: usize,
        deployments: usize,
    ) -> Option<(DataFrame, HashMap<String, i64>)> {
        let path = self.path();
        if !path.is_dir() {
            return None;
        }
        match read_entry(&path, changes, deployments) {
            Ok(found) => {
                // Eviction keeps the entries used last.
                let _ = File::open(&path).and_then(|dir| dir.set_modified(std::time::SystemTime::now()));
                tracing::debug!(
                    entry = %path.display(),
                    rows = found.0.height(),
                    mb = found.0.estimated_size() / (1 << 20),
                    chunks = found.0.first_col_n_chunks(),
                    "Read the change links kept for these tables."
                );
                Some(found)
            }
            Err(why) => {
                tracing::info!(entry = %path.display(), why, "The change links kept for these tables cannot be used; working them out again.");
                None
            }
        }
    }

    /// Keeps `links` and `reverted` as this entry, then removes all but the [`KEEP`] entries
    /// used last. Logs rather than fails.
    pub(crate) fn write(&self, links: &DataFrame, reverted: &HashMap<String, i64>) {
        if let Err(why) = self.try_write(links, reverted) {
            tracing::warn!(dir = %self.dir.display(), why, "Could not keep the change links for the next computation, which will work them out again; check that this directory is writable and has space.");
        }
        self.evict();
    }

    fn try_write(&self, links: &DataFrame, reverted: &HashMap<String, i64>) -> Result<(), String> {
        let target = self.path();
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create it: {e}"))?;
        let staging = self.dir.join(format!(
            "{}.{}.{}.tmp",
            self.key,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let written = (|| {
            std::fs::create_dir(&staging).map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
            write_parquet(&staging.join(LINKS), &mut links.clone())?;
            let (ids, at): (Vec<&str>, Vec<i64>) = reverted.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
            let mut frame = df!("deployment_id" => ids, "reverted_at" => at).map_err(|e| e.to_string())?;
            write_parquet(&staging.join(REVERTED), &mut frame)?;
            // An entry is written only where none could be read: one in place is damaged, or
            // another computation has just kept the same content.
            if target.is_dir() {
                std::fs::remove_dir_all(&target)
                    .map_err(|e| format!("cannot replace {}: {e}", target.display()))?;
            }
            match std::fs::rename(&staging, &target) {
                Ok(()) => Ok(()),
                Err(_) if target.is_dir() => Ok(()),
                Err(e) => Err(format!("cannot rename {} into place: {e}", staging.display())),
            }
        })();
        if staging.exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        written
    }

    /// Removes all but the [`KEEP`] entries written or read last, and staging directories over an hour old (a
    /// writer killed mid-write). A reader that loses an entry it was about to read works the
    /// links out again.
    fn evict(&self) {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries = Vec::new();
        for dirent in read.flatten() {
            let path = dirent.path();
            let modified = dirent.metadata().and_then(|m| m.modified()).ok();
            let staging = path.extension().is_some_and(|e| e == "tmp");
            if staging {
                let stale = modified
                    .and_then(|at| at.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 3600);
                if stale {
                    let _ = std::fs::remove_dir_all(&path);
                }
                continue;
            }
            if path.is_dir() {
                entries.push((modified, path));
            }
        }
        entries.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        for (_, path) in entries.into_iter().skip(KEEP) {
            if path != self.path() {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

fn write_parquet(path: &Path, frame: &mut DataFrame) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Lz4Raw)
        .finish(frame)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

fn read_parquet(path: &Path) -> Result<DataFrame, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads an entry and checks it against the tables: the columns and types the computation
/// makes, change rows within the changes table and deployment positions within the production
/// deployments.
fn read_entry(
    path: &Path,
    changes: usize,
    deployments: usize,
) -> Result<(DataFrame, HashMap<String, i64>), String> {
    let links = read_parquet(&path.join(LINKS))?;
    let expected = links_schema();
    let names: Vec<&str> = links.get_column_names().iter().map(|n| n.as_str()).collect();
    let wanted: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
    if names != wanted {
        return Err(format!("its columns are {names:?}"));
    }
    for (name, dtype) in &expected {
        let found = links.column(name).map_err(|e| e.to_string())?.dtype();
        if found != dtype {
            return Err(format!("column `{name}` is {found}, not {dtype}"));
        }
    }
    let beyond = |name: &str, bound: usize| -> Result<bool, String> {
        let column = links.column(name).map_err(|e| e.to_string())?;
        let max = column.idx().map_err(|e| e.to_string())?.max();
        Ok(column.null_count() > 0 || max.is_some_and(|m| m as usize >= bound))
    };
    if beyond("change", changes)? {
        return Err(format!("a change row is not within the {changes} changes"));
    }
    if beyond("deployment", deployments)? {
        return Err(format!(
            "a deployment is not within the {deployments} production deployments"
        ));
    }
    let frame = read_parquet(&path.join(REVERTED))?;
    let (ids, at) = (
        frame
            .column("deployment_id")
            .and_then(|c| c.str().cloned())
            .map_err(|e| format!("reverted deployments: {e}"))?,
        frame
            .column("reverted_at")
            .and_then(|c| c.i64().cloned())
            .map_err(|e| format!("reverted deployments: {e}"))?,
    );
    let mut reverted = HashMap::with_capacity(frame.height());
    for (id, at) in ids.iter().zip(at.iter()) {
        let (Some(id), Some(at)) = (id, at) else {
            return Err("a reverted deployment without its id or time".to_owned());
        };
        reverted.insert(id.to_owned(), at);
    }
    Ok((links, reverted))
}
