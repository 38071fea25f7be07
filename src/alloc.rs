//! The allocator's settings, and the process's memory as the kernel counts it. The `tandem` binary
//! (and its benchmarks) allocate with mimalloc (`#[global_allocator]` in `src/main.rs`); this
//! module tunes it for the metric pipeline, which builds and drops frames of hundreds of megabytes
//! one after another, and reads the resident memory the stage log and the benchmark report.

use std::os::raw::{c_int, c_long};

/// `mi_option_purge_delay`, by its position in mimalloc 3's `mi_option_e` (`mimalloc.h`): how
/// long freed memory is kept before it is given back to the system, in milliseconds.
const PURGE_DELAY: c_int = 15;
/// That option's default in mimalloc 3; read back first, so a different option at that position
/// (another mimalloc version) is never changed.
const DEFAULT_PURGE_DELAY: c_long = 1000;

/// Makes mimalloc give freed memory back to the system at once rather than a second later. On a
/// large lake the metric stages free frames of hundreds of megabytes in quick succession, and with
/// the delay the process's resident memory is the sum of several stages instead of the largest
/// (measured: 1.6 GB against 1.1 GB on the benchmark lake, at the same speed). A delay set in the
/// environment (`MIMALLOC_PURGE_DELAY`) is left as it is.
#[allow(unsafe_code)]
pub fn give_back_freed_memory_at_once() {
    // SAFETY: `mi_option_get` and `mi_option_set` read and write one process-wide integer
    // setting; they take no pointers and may be called from any thread at any time.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == DEFAULT_PURGE_DELAY {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        }
    }
}

/// A memory figure of this process in kB from `/proc/self/status` (`VmRSS` now, `VmHWM` the
/// peak); 0 where there is no procfs.
pub fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The purge delay in force, in milliseconds.
#[allow(unsafe_code)]
pub fn purge_delay() -> c_long {
    // SAFETY: as above; reading the setting has no other effect.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_memory_is_read_from_procfs() {
        // Resident now, at most the peak; an unknown key reads as 0.
        let (now, peak) = (status_kb("VmRSS"), status_kb("VmHWM"));
        assert!(now > 0 && now <= peak, "{now} {peak}");
        assert_eq!(status_kb("NoSuchKey"), 0);
    }

    #[test]
    fn the_purge_delay_is_the_option_set_and_becomes_zero() {
        // The position named is mimalloc's purge delay: it had the documented default (or a
        // value from the environment), and is 0 after the call.
        let before = purge_delay();
        let from_environment = std::env::var("MIMALLOC_PURGE_DELAY").ok();
        give_back_freed_memory_at_once();
        match from_environment {
            None => {
                assert!(before == DEFAULT_PURGE_DELAY || before == 0, "{before}");
                assert_eq!(purge_delay(), 0);
            }
            Some(_) => assert_eq!(purge_delay(), before),
        }
    }
}
