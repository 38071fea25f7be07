//! Atomic file replacement: write a temporary sibling, sync it, rename it over the target. A reader
//! (or a run after a kill) sees either the old file or the new one, never half of either.
//!
//! The one implementation every writer in tandem uses: the store's bookmarks and the pipeline's
//! Parquet and CSV files.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Where a file is written before it is renamed into place: `x.parquet` → `x.parquet.tmp`.
/// The store removes leftovers of interrupted writes by this suffix.
pub fn tmp_path(path: &Path) -> PathBuf {
    let extension = match path.extension() {
        Some(extension) => format!("{}.tmp", extension.to_string_lossy()),
        None => "tmp".to_owned(),
    };
    path.with_extension(extension)
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
