//! Atomic file replacement: write a temporary sibling, sync it, rename it over the target. A reader
//! (or a run after a kill) sees either the old file or the new one, never half of either.
//!
//! The one implementation every writer in tandem uses: the store's bookmarks and the pipeline's
//! Parquet and CSV files.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a file is written before it is renamed into place: `x.parquet` →
/// `x.parquet.<pid>-<n>.tmp`, unique per process and per call, so two writers (or two threads)
/// never write the same temporary file. The store removes leftovers of interrupted writes by the
/// `.tmp` suffix.
pub fn tmp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let unique = format!("{}-{n}.tmp", std::process::id());
    let extension = match path.extension() {
        Some(extension) => format!("{}.{unique}", extension.to_string_lossy()),
        None => unique,
    };
    path.with_extension(extension)
}

/// The temporary files of `path` left in its folder (for tests: a finished write leaves none).
#[cfg(test)]
pub(crate) fn leftovers(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.starts_with(&prefix) && n.ends_with(".tmp")
        })
        .collect()
}

/// Writes through `write` into the temporary sibling, syncs it, and renames it over `path`. The
/// temporary file is removed when writing fails. `io_error` turns an I/O failure (with what was
/// being done and the file) into the caller's error type.
pub fn write_atomic<E>(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), E>,
    io_error: impl Fn(&'static str, &Path, io::Error) -> E,
) -> Result<(), E> {
    let tmp = tmp_path(path);
    let mut file = File::create(&tmp).map_err(|source| io_error("create", &tmp, source))?;
    let written =
        write(&mut file).and_then(|()| file.sync_all().map_err(|source| io_error("write", &tmp, source)));
    drop(file);
    if let Err(err) = written {
        // Best effort: the write error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        io_error("rename into place", path, source)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_unique_per_call_and_name_the_process() {
        let path = Path::new("/lake/tables/deployments.parquet");
        let (a, b) = (tmp_path(path), tmp_path(path));
        assert_ne!(a, b, "two writes never share a temporary file");
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("deployments.parquet.{}-", std::process::id()))
                && name.ends_with(".tmp"),
            "{name}"
        );
    }
}
