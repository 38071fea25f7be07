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
/// `mi_option_allow_thp`, by its position in mimalloc 3's `mi_option_e`: whether mimalloc asks
/// the kernel for transparent huge pages (`madvise(MADV_HUGEPAGE)`) on the memory it maps.
const ALLOW_THP: c_int = 44;
/// Its default.
const DEFAULT_ALLOW_THP: c_long = 1;

/// Tunes mimalloc for the metric pipeline: freed memory goes back to the system at once
/// ([`give_back_freed_memory_at_once`]), and no transparent huge pages are asked for. Memory
/// given back and taken again is zeroed by the kernel when first touched, a whole 2 MiB huge
/// page at a time: with huge pages, 16% of a five-year `tandem metrics` was the kernel clearing
/// pages (`perf`), and touching a byte made 2 MiB resident. Measured on the benchmark lake
/// without them (medians of 3 alternating release runs): 20.5 s against 21.0 s, and 1.09 GB of
/// peak memory against 1.21 GB. An option set in the environment (`MIMALLOC_ALLOW_THP`,
/// `MIMALLOC_PURGE_DELAY`) is left as it is.
#[allow(unsafe_code)]
pub fn tune() {
    give_back_freed_memory_at_once();
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: `mi_option_*` as in `give_back_freed_memory_at_once`: one process-wide integer
    // setting. `prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)` sets one flag of this process (inherited by
    // children) and takes no pointer; an error (an old kernel) leaves things as they were.
    unsafe {
        if libmimalloc_sys::mi_option_get(ALLOW_THP) == DEFAULT_ALLOW_THP {
            libmimalloc_sys::mi_option_set(ALLOW_THP, 0);
        }
        // The memory mimalloc mapped before this call was already advised for huge pages; the
        // process's flag makes the kernel ignore that advice too.
        #[cfg(target_os = "linux")]
        let _ = libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Whether mimalloc asks for transparent huge pages (the option in force).
#[allow(unsafe_code)]
pub fn allows_huge_pages() -> bool {
    // SAFETY: reading the setting has no other effect.
    unsafe { libmimalloc_sys::mi_option_get(ALLOW_THP) != 0 }
}

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
    fn tuning_turns_huge_pages_off_unless_the_environment_says() {
        let from_environment = std::env::var("MIMALLOC_ALLOW_THP").ok();
        tune();
        match from_environment {
            None => {
                assert!(!allows_huge_pages());
                // SAFETY: reads one flag of this process.
                #[cfg(target_os = "linux")]
                #[allow(unsafe_code)]
                let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
                #[cfg(target_os = "linux")]
                assert_eq!(disabled, 1, "the kernel gives this process no huge pages");
            }
            Some(value) => assert_eq!(allows_huge_pages(), value != "0"),
        }
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
