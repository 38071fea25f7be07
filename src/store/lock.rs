//! The writers' lock on a lake: one process at a time may change its tables, bookmarks and metric
//! table, until the table format makes concurrent commits safe.
//!
//! The lock is an OS advisory lock (`flock`) on `<lake>/lock`, so it dies with its process: a
//! holder killed with `kill -9` leaves nothing to clean up, and the next writer takes over. The
//! file's body (JSON: host, pid, start time, command) only serves the message a second writer
//! prints; it is emptied when the lock is released, so a body found by a writer that got the
//! lock names a holder that ended without releasing it. Readers (reports, exports) do not take
//! the lock: every file they read is replaced atomically.
//!
//! Within one process the lock is shared: `tandem run` opens the lake for its sync, its metrics
//! and its reports, and each opening must not wait for the others.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Utc};

use super::{StoreError, io_error};

/// The lock file's name in the lake directory.
pub const LOCK_FILE: &str = "lock";

/// Who holds (or last held) a lake's lock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockHolder {
    /// Host name of the holder's machine.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// When it took the lock.
    pub started_at: DateTime<Utc>,
    /// The command it runs (`tandem sync`, …).
    pub command: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (pid {} on host {}, started {})",
            self.command,
            self.pid,
            self.host,
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// A held writers' lock; released when the last clone of its `Arc` is dropped.
#[derive(Debug)]
pub struct LakeLock {
    file: File,
    path: PathBuf,
    key: PathBuf,
}

/// The locks this process holds, by canonical lake path.
static HELD: Mutex<BTreeMap<PathBuf, Weak<LakeLock>>> = Mutex::new(BTreeMap::new());

impl LakeLock {
    /// Takes the lock of the lake at `root` for `command`, or shares the one this process already
    /// holds. Fails with [`StoreError::Locked`] naming the holder when another process has it.
    /// The flag is true when the lock was newly taken (so the caller may clean up after a killed
    /// writer).
    pub fn acquire(root: &Path, command: &str) -> Result<(Arc<Self>, bool), StoreError> {
        let key = root.canonicalize().map_err(|e| io_error("resolve", root, e))?;
        // Held across the whole acquisition, and by `drop` across the release, so a lock being
        // released on one thread is never mistaken for another process's on another thread.
        let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(lock) = held.get(&key).and_then(Weak::upgrade) {
            return Ok((lock, false));
        }
        let path = root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    lake: root.to_owned(),
                    holder: read_holder(&mut file).map(|h| h.to_string()),
                    lock_file: path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error("lock", &path, e)),
        }
        if let Some(previous) = read_holder(&mut file) {
            tracing::warn!(
                lake = %root.display(),
                previous = %previous,
                "Taking over the lake's lock from a writer that ended without releasing it (killed?)."
            );
        }
        let me = LockHolder {
            host: host_name(),
            pid: std::process::id(),
            started_at: Utc::now(),
            command: command.to_owned(),
        };
        let body = serde_json::to_vec(&me).map_err(|e| io_error("encode", &path, e.into()))?;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(&body))
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error("write", &path, e))?;
        let lock = Arc::new(Self {
            file,
            path,
            key: key.clone(),
        });
        held.insert(key, Arc::downgrade(&lock));
        Ok((lock, true))
    }
}

impl Drop for LakeLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            held.remove(&self.key);
        }
        // An empty body tells the next writer that this one ended cleanly.
        if let Err(e) = self.file.set_len(0) {
            tracing::debug!(path = %self.path.display(), error = %e, "Cannot empty the lock file.");
        }
        let _ = self.file.unlock();
    }
}

/// The holder written in the lock file, if any (empty after a clean release).
fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// This machine's host name, for the message a second writer prints (and the name of a report
/// folder being written, so a run on another host is never judged by this host's processes).
pub(crate) fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_shared_within_a_process_and_its_body_emptied_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let (first, fresh) = LakeLock::acquire(dir.path(), "tandem sync").unwrap();
        assert!(fresh);
        let (second, fresh) = LakeLock::acquire(dir.path(), "tandem metrics").unwrap();
        assert!(!fresh, "the same process shares its lock");
        let body: LockHolder =
            serde_json::from_slice(&std::fs::read(dir.path().join(LOCK_FILE)).unwrap()).unwrap();
        assert_eq!(
            (body.pid, body.command.as_str()),
            (std::process::id(), "tandem sync")
        );
        drop(first);
        drop(second);
        assert!(std::fs::read(dir.path().join(LOCK_FILE)).unwrap().is_empty());
        let (_again, fresh) = LakeLock::acquire(dir.path(), "tandem sync").unwrap();
        assert!(fresh, "released locks are taken anew");
    }

    #[test]
    fn another_open_file_cannot_take_a_held_lock_and_learns_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let (_held, _) = LakeLock::acquire(dir.path(), "tandem sync").unwrap();
        // Another process's view: its own open file description of the lock file.
        let mut other = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join(LOCK_FILE))
            .unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        let holder = read_holder(&mut other).unwrap();
        assert_eq!(holder.pid, std::process::id());
        assert!(holder.to_string().contains("tandem sync"), "{holder}");
    }
}
