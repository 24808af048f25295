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
//! That delay is left at this mimalloc's default, 1 s (v3's `options.c`; its header says 10
//! ms). Shorter lowers the peak at saturation but costs CPU at a fixed rate, where the pages
//! of each export batch would be given back and faulted in again between batches: 50 ms
//! took a fifth off the peak and added an eighth to the CPU per span at 20 000 spans/s
//! (docs/performance.md, "Observations" 11). `MIMALLOC_PURGE_DELAY` sets it per deployment.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};

/// `mi_option_arena_eager_commit` in the option enum of mimalloc v3 (`mimalloc.h`), which
/// `libmimalloc-sys` does not name; the crate versions are pinned in Cargo.toml.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

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
    // `MIMALLOC_ARENA_EAGER_COMMIT` in the environment still decides, for whoever measures.
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        // SAFETY: sets one integer option, which mimalloc allows at any time.
        unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
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
