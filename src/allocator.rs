//! The binary's allocator: mimalloc, with its arenas committed lazily. The `sluice` binary
//! installs it, and so do the criterion benches, so that they measure allocation as the
//! daemon pays for it (glibc's malloc gives a chain of freed buffers back to the OS on every
//! iteration, where mimalloc keeps them for its purge delay).
//!
//! Measured on S1 (disk buffer, `fsync: always`, 100 spans/request, saturation;
//! docs/performance.md, "What changed" 6), mimalloc spends about a fifth less CPU per span
//! than glibc's malloc, whose `_int_malloc`, `free` and arena locking were spread over the
//! profile. With its default of eagerly committed arenas it also kept what it had touched: 10
//! MiB of anonymous memory at idle instead of 2, and 1.5 times glibc's peak RSS under load.
//! Committing arenas lazily lets it give freed pages back after its purge delay, which keeps
//! RSS at glibc's level and costs no measurable CPU. (An immediate purge, `purge_delay: 0`,
//! cost a third more CPU.)
//!
//! That delay is 250 ms here, against this mimalloc's default of 1 s (v3's `options.c`; its
//! header says 10 ms). The peak under load is largely pages freed within one delay: at 1
//! span/request and saturation, 250 ms took 5–6 MiB (a sixth) off it, and no CPU measurable
//! at the fixed rates (docs/performance.md, "What changed" 29). Much shorter costs CPU at a
//! fixed rate, where the pages of each export batch (one per 200 ms batch timeout) would be
//! given back and faulted in again between batches: 50 ms added an eighth to the CPU per span
//! at 20 000 spans/s ("Observations" 11). `MIMALLOC_PURGE_DELAY` sets it per deployment.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};

/// `mi_option_arena_eager_commit` in the option enum of mimalloc v3 (`mimalloc.h`), which
/// `libmimalloc-sys` does not name; the crate versions are pinned in Cargo.toml.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// `mi_option_purge_delay` in the same enum, in milliseconds.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const PURGE_DELAY_MS: std::ffi::c_long = 250;

static CONFIGURED: AtomicBool = AtomicBool::new(false);

/// mimalloc, with its options set before its first allocation: the first arena (1 GiB of
/// address space, which holds the daemon's memory) is reserved on that allocation, before
/// `main` runs, and an option set later does not change how it was committed. Install it
/// with `#[global_allocator]`.
pub struct LazyCommitMimalloc;

impl LazyCommitMimalloc {
    #[inline]
    fn configure_once() {
        if !CONFIGURED.load(Ordering::Relaxed) {
            configure();
        }
    }
}

#[cold]
fn configure() {
    CONFIGURED.store(true, Ordering::Relaxed);
    // The environment's `MIMALLOC_…` still decides, for whoever measures or tunes.
    for (option, name, value) in [
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0),
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", PURGE_DELAY_MS),
    ] {
        if std::env::var_os(name).is_none() {
            // SAFETY: sets one integer option, which mimalloc allows at any time.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}

// SAFETY: every call is forwarded unchanged to mimalloc's own `GlobalAlloc`.
unsafe impl GlobalAlloc for LazyCommitMimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::configure_once();
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::configure_once();
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two options this module sets, as mimalloc has them now.
    fn options() -> (std::ffi::c_long, std::ffi::c_long) {
        // SAFETY: reads of integer options.
        unsafe {
            (
                libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(PURGE_DELAY),
            )
        }
    }

    #[test]
    fn options_are_the_ones_meant_and_set() {
        // The test binary does not install the allocator, so these are still mimalloc's
        // defaults: the options' numbers are the ones of this mimalloc's enum.
        let defaults = options();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
            && std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none()
        {
            assert_eq!(
                defaults,
                (2, 1000),
                "v3's arena_eager_commit and purge_delay"
            );
            configure();
            assert_eq!(options(), (0, PURGE_DELAY_MS));
        }
    }
}
