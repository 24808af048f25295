//! The disk buffer's budget of open files, shared by every log (docs/architecture.md,
//! "Disk buffer").
//!
//! Only a log's writer keeps a file open between operations (its active segment, so appends
//! are one `write`); readers and position files open what they need for one blocking section
//! and close it again. So the writers are what can exhaust the process's descriptors when tens
//! of thousands of tenants send at once, and they hold a [`FileSlot`] of this budget while
//! their file is open. A writer that needs a slot while none is free waits, and tells every
//! writer with an open file to close it: idle writers close at once, busy ones after their
//! current group. A writer never waits for a slot while holding one, so the wait always ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// How often a waiting writer repeats its call to close files, for writers that had no file
/// open (or were busy) when it last called.
const RECALL: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub(super) struct FileBudget {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Bumped while someone waits: writers with an open file close it.
    pressure: watch::Sender<u64>,
}

/// Permission to keep one file open; given back when dropped.
#[derive(Debug)]
pub(super) struct FileSlot(#[allow(dead_code)] OwnedSemaphorePermit);

impl FileBudget {
    pub(super) fn new(cap: usize) -> Arc<FileBudget> {
        Arc::new(FileBudget {
            permits: Arc::new(Semaphore::new(cap.max(1))),
            waiting: AtomicUsize::new(0),
            pressure: watch::channel(0).0,
        })
    }

    /// A slot, waiting (in arrival order) for one to be given back if none is free.
    pub(super) async fn acquire(&self) -> FileSlot {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return FileSlot(permit);
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        metrics::counter!("sluice_buffer_file_waits_total", "buffer" => "disk").increment(1);
        let acquire = Arc::clone(&self.permits).acquire_owned();
        tokio::pin!(acquire);
        loop {
            self.pressure.send_modify(|n| *n = n.wrapping_add(1));
            tokio::select! {
                permit = &mut acquire => {
                    // The semaphore is never closed.
                    if let Ok(permit) = permit {
                        return FileSlot(permit);
                    }
                }
                _ = tokio::time::sleep(RECALL) => {}
            }
        }
    }

    /// Whether a writer waits for a slot: a writer with an open file closes it after its group.
    pub(super) fn under_pressure(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Changes while writers wait for slots.
    pub(super) fn pressure(&self) -> watch::Receiver<u64> {
        self.pressure.subscribe()
    }
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The default cap: half of the process's open-files limit (after `main` raised the soft
/// limit to the hard one), leaving the rest to connections, readers and the broker client.
pub(super) fn default_cap() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20);
    usize::try_from(limit / 2).unwrap_or(usize::MAX).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_waiting_writer_signals_pressure_and_gets_the_slot_given_back() {
        let budget = FileBudget::new(1);
        let held = budget.acquire().await;
        assert!(!budget.under_pressure());
        let mut pressure = budget.pressure();
        let waiter = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { budget.acquire().await })
        };
        pressure.changed().await.expect("pressure signalled");
        assert!(budget.under_pressure());
        drop(held);
        let _slot = waiter.await.expect("waiter ends");
        assert!(!budget.under_pressure());
    }
}
