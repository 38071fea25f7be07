//! The writers' locks on a lake. Writers that change disjoint parts of the lake work at once: a
//! sync of a source holds `<lake>/locks/source-<name>`, the metric table's writer holds
//! `<lake>/locks/metrics`, and both hold `<lake>/lock` shared; their Delta commits are
//! optimistic and retried on conflict. Whatever rewrites the lake as a whole (maintenance,
//! migration, a remap, the demo) holds `<lake>/lock` exclusively, so it runs alone.
//!
//! Each lock is an OS advisory lock (`flock`), so it dies with its process: a holder killed with
//! `kill -9` leaves nothing to clean up, and the next writer takes over. An exclusive lock's file
//! body (JSON: host, pid, start time, command) only serves the message a refused writer prints;
//! it is emptied when the lock is released, so a body found by a writer that got the lock names a
//! holder that ended without releasing it. Readers (reports, exports) take no lock: every file
//! they read is replaced atomically.
//!
//! A lake in object storage has no file to `flock`: each lock is a lease object in the bucket
//! ([`super::bucket::Lease`]) — `locks/lake` for the lake alone, one `locks/shared/<holder>` per
//! writer of a part, `locks/<scope>` per scope — created only if absent, renewed by its holder,
//! and taken over once expired (a holder killed with `kill -9`). A writer that wants the lake alone
//! and finds a sharer's lease (or the reverse) withdraws its own and is refused.
//!
//! Within one process each lock is shared: `tandem run` opens the lake for its sync, its metrics
//! and its reports, and each opening must not wait for the others.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Utc};

use super::{StoreError, io_error};

/// The lake lock's file name in the lake directory.
pub const LOCK_FILE: &str = "lock";

/// The folder of the scope locks (`source-<name>`, `metrics`) in the lake directory.
pub const LOCKS_DIR: &str = "locks";

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Alone: no other process holds the lock in any mode.
    Exclusive,
    /// With other shared holders, none exclusive.
    Shared,
}

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
    held: Held,
    path: PathBuf,
    key: (PathBuf, Mode),
}

/// What holds a lock: an open lock file, or a lease in the lake's bucket.
#[derive(Debug)]
enum Held {
    File(File),
    /// Released (deleted) when dropped.
    Lease(super::bucket::Lease),
}

/// The locks this process holds, by canonical lock file path and mode.
static HELD: Mutex<BTreeMap<(PathBuf, Mode), Weak<LakeLock>>> = Mutex::new(BTreeMap::new());

impl LakeLock {
    /// Takes the lake's lock exclusively for `command`, or shares the one this process already
    /// holds. Fails with [`StoreError::Locked`] naming the holder when another process has it.
    /// The flag is true when the lock was newly taken (so the caller may clean up after a killed
    /// writer).
    pub fn acquire(root: &Path, command: &str) -> Result<(Arc<Self>, bool), StoreError> {
        Self::take(root, &root.join(LOCK_FILE), Mode::Exclusive, command)
    }

    /// Takes the lake's lock shared, for a writer of part of the lake (with a scope lock).
    pub fn acquire_shared(root: &Path, command: &str) -> Result<Arc<Self>, StoreError> {
        Self::take(root, &root.join(LOCK_FILE), Mode::Shared, command).map(|(lock, _)| lock)
    }

    /// Takes the scope lock `scope` (`source-github`, `metrics`) exclusively; the flag is true
    /// when newly taken.
    pub fn acquire_scope(root: &Path, scope: &str, command: &str) -> Result<(Arc<Self>, bool), StoreError> {
        let dir = root.join(LOCKS_DIR);
        if super::bucket::is_mounted(root) {
            return Self::take(root, &dir.join(scope), Mode::Exclusive, command);
        }
        std::fs::create_dir_all(&dir).map_err(|e| io_error("create directory", &dir, e))?;
        Self::take(root, &dir.join(scope), Mode::Exclusive, command)
    }

    fn take(root: &Path, path: &Path, mode: Mode, command: &str) -> Result<(Arc<Self>, bool), StoreError> {
        if super::bucket::is_mounted(root) {
            return Self::take_lease(root, path, mode, command);
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_error("open", path, e))?;
        let canonical = path.canonicalize().map_err(|e| io_error("resolve", path, e))?;
        // Held across the whole acquisition, and by `drop` across the release, so a lock being
        // released on one thread is never mistaken for another process's on another thread.
        let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // An exclusive lock this process holds covers a shared one.
        for have in [Mode::Exclusive, mode] {
            if let Some(lock) = held.get(&(canonical.clone(), have)).and_then(Weak::upgrade) {
                return Ok((lock, false));
            }
        }
        let taken = match mode {
            Mode::Exclusive => file.try_lock(),
            Mode::Shared => file.try_lock_shared(),
        };
        match taken {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file)
                    .map(|h| h.to_string())
                    .or_else(|| scope_holders(root));
                return Err(StoreError::Locked {
                    lake: root.display().to_string(),
                    holder,
                    lock_file: path.display().to_string(),
                    leased: false,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error("lock", path, e)),
        }
        if mode == Mode::Exclusive {
            if let Some(previous) = read_holder(&mut file) {
                tracing::warn!(
                    lock = %path.display(),
                    previous = %previous,
                    "Taking over a lock from a writer that ended without releasing it (killed?)."
                );
            }
            let me = LockHolder {
                host: host_name(),
                pid: std::process::id(),
                started_at: Utc::now(),
                command: command.to_owned(),
            };
            let body = serde_json::to_vec(&me).map_err(|e| io_error("encode", path, e.into()))?;
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| file.write_all(&body))
                .and_then(|()| file.sync_data())
                .map_err(|e| io_error("write", path, e))?;
        }
        let key = (canonical, mode);
        let lock = Arc::new(Self {
            held: Held::File(file),
            path: path.to_owned(),
            key: key.clone(),
        });
        held.insert(key, Arc::downgrade(&lock));
        Ok((lock, true))
    }
}

impl LakeLock {
    /// [`LakeLock::take`] for a lake in object storage: by lease.
    fn take_lease(
        root: &Path,
        path: &Path,
        mode: Mode,
        command: &str,
    ) -> Result<(Arc<Self>, bool), StoreError> {
        use super::bucket::{Lease, Refused};
        let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for have in [Mode::Exclusive, mode] {
            if let Some(lock) = held.get(&(path.to_owned(), have)).and_then(Weak::upgrade) {
                return Ok((lock, false));
            }
        }
        let me = LockHolder {
            host: host_name(),
            pid: std::process::id(),
            started_at: Utc::now(),
            command: command.to_owned(),
        };
        let locks = root.join(LOCKS_DIR);
        let shared_dir = locks.join("shared");
        let is_lake = path == root.join(LOCK_FILE);
        let lease_path = match (is_lake, mode) {
            (true, Mode::Exclusive) => locks.join("lake"),
            (true, Mode::Shared) => shared_dir.join(format!(
                "{}-{}-{}",
                super::safe_name(&me.host),
                me.pid,
                me.started_at.timestamp_micros()
            )),
            (false, _) => path.to_owned(),
        };
        let locked = |holder: String| StoreError::Locked {
            lake: super::bucket::url_of_lake(root),
            holder: Some(holder),
            lock_file: super::bucket::url_of_lake(&lease_path),
            leased: true,
        };
        let bucket_error = |e: super::bucket::BucketError| io_error("lock", path, std::io::Error::other(e));
        let (lease, _) = match Lease::take(&lease_path, &me) {
            Ok(taken) => taken,
            Err(Refused::Held(body)) => return Err(locked(body.to_string())),
            Err(Refused::Error(e)) => return Err(bucket_error(e)),
        };
        // The lake alone and a part of it exclude each other: each side looks for the other's
        // lease after taking its own, so of two that race, at least one sees the other.
        if is_lake {
            let others = match mode {
                Mode::Exclusive => Lease::holders_under(&shared_dir).map_err(bucket_error)?,
                Mode::Shared => Lease::holder(&locks.join("lake"))
                    .map_err(bucket_error)?
                    .into_iter()
                    .collect(),
            };
            if !others.is_empty() {
                drop(lease);
                let mut names: Vec<String> = others.iter().map(ToString::to_string).collect();
                names.sort();
                return Err(locked(names.join(" and ")));
            }
        }
        let key = (path.to_owned(), mode);
        let lock = Arc::new(Self {
            held: Held::Lease(lease),
            path: path.to_owned(),
            key: key.clone(),
        });
        held.insert(key, Arc::downgrade(&lock));
        Ok((lock, true))
    }

    /// Whether this process still holds the lock: a lease stays held while its renewals succeed.
    pub fn is_held(&self) -> bool {
        match &self.held {
            Held::File(_) => true,
            Held::Lease(lease) => lease.is_held(),
        }
    }

    /// The lock file, or the lease object's URL.
    pub fn describe(&self) -> String {
        match &self.held {
            Held::File(_) => self.path.display().to_string(),
            Held::Lease(lease) => lease.url(),
        }
    }

    /// How this lock is held (a shared opening within a process that holds the lock exclusively
    /// gets the exclusive lock).
    pub fn mode(&self) -> Mode {
        self.key.1
    }
}

/// The holders of the lake's scope locks, as they wrote themselves (for the message of a writer
/// that wants the lake alone): the writers holding the lake's lock shared.
fn scope_holders(root: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(LOCKS_DIR))
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let mut file = File::open(entry.path()).ok()?;
            // Only a lock still held names a writer at work.
            match file.try_lock_shared() {
                Err(TryLockError::WouldBlock) => read_holder(&mut file).map(|h| h.to_string()),
                _ => None,
            }
        })
        .collect();
    names.sort();
    (!names.is_empty()).then(|| names.join(" and "))
}

impl Drop for LakeLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            held.remove(&self.key);
        }
        let Held::File(file) = &self.held else {
            return;
        };
        // An empty body tells the next writer that this one ended cleanly.
        if self.key.1 == Mode::Exclusive
            && let Err(e) = file.set_len(0)
        {
            tracing::debug!(path = %self.path.display(), error = %e, "Cannot empty the lock file.");
        }
        let _ = file.unlock();
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

    #[test]
    fn writers_of_parts_share_the_lake_lock_and_a_whole_lake_writer_is_told_who_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let _shared = LakeLock::acquire_shared(dir.path(), "tandem sync").unwrap();
        let (_github, fresh) = LakeLock::acquire_scope(dir.path(), "source-github", "tandem sync").unwrap();
        assert!(fresh);
        // Another process's view of the lake's lock: shared again, yes; alone, no.
        let other = File::open(dir.path().join(LOCK_FILE)).unwrap();
        assert!(other.try_lock_shared().is_ok());
        other.unlock().unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        // The scope's holder is written in its file; a writer wanting the lake alone names it.
        let holders = scope_holders(dir.path()).unwrap();
        assert!(
            holders.contains("`tandem sync`") && holders.contains(&format!("pid {}", std::process::id())),
            "{holders}"
        );
        let scope = File::open(dir.path().join(LOCKS_DIR).join("source-github")).unwrap();
        assert!(matches!(scope.try_lock_shared(), Err(TryLockError::WouldBlock)));
    }
}
