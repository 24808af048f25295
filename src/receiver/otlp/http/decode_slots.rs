//! The slots for the CPU work some OTLP/HTTP bodies need before they can be buffered
//! (OTLP/JSON decoding, decompression), taken before the body is read, not after.
//!
//! The work runs on the blocking pool, a few jobs at once. A request that read its body
//! first and then waited for a slot held its whole body meanwhile: at saturation with 32
//! clients sending 865 KB OTLP/JSON bodies, most of them waited that way, and the peak RSS
//! was 166–184 MiB. Taking the slot first leaves the bodies of the waiting requests where TCP
//! flow control bounds them, in the sockets and the clients: 110–123 MiB, at the same
//! spans/s (docs/performance.md, "What changed" 28). A slot also held while a fast body is
//! read was measured against a queue of as many places as slots in front of them, which
//! kept twice the bodies in memory (126–143 MiB) for no more spans/s.
//!
//! A slot is given up while its upload stalls: a client on a slow link, or one that sends its
//! headers and stops, must not keep the decoding from requests whose bodies arrive as fast
//! as they can be read. Such a request takes a slot again once its body is in, and is
//! bounded meanwhile, like every other, by the receiver's in-flight budget and read timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// How long a body may go without a new chunk before its request gives its slot up. On a
/// local network a body arrives in far less; past it, the upload, not the decoding, is what
/// the request waits for.
const STALL: Duration = Duration::from_millis(10);

/// Decode jobs at once, two per core. Unbounded, S9's OTLP/JSON at saturation grew the
/// blocking pool to ~30 threads, each with its own allocator heap (RSS 178 MiB); one per
/// core left cores idle between jobs (-16 % spans/s); two per core kept the spans/s within a
/// few percent at 132 MiB (docs/performance.md, "S9 after the one-pass OTLP/JSON
/// transcoder").
#[derive(Debug)]
pub struct DecodeSlots(Arc<Semaphore>);

/// A request's slot while its body is read; none for a request that needs no slot, or once
/// its upload stalled.
#[derive(Debug, Default)]
pub struct Slot(Option<OwnedSemaphorePermit>);

impl DecodeSlots {
    pub fn new(slots: usize) -> DecodeSlots {
        DecodeSlots(Arc::new(Semaphore::new(slots)))
    }

    /// Two slots per core of this host.
    pub fn for_this_host() -> DecodeSlots {
        DecodeSlots::new(2 * std::thread::available_parallelism().map_or(2, usize::from))
    }

    /// Waits for a slot, to be taken before the body is read.
    pub async fn take(&self) -> Result<Slot, AcquireError> {
        let permit = Arc::clone(&self.0).acquire_owned().await?;
        Ok(Slot(Some(permit)))
    }

    /// The slot for the work, once the body is in: `slot` if it was kept while the body
    /// arrived, or the next one free.
    pub async fn for_work(&self, slot: Slot) -> Result<OwnedSemaphorePermit, AcquireError> {
        match slot.0 {
            Some(permit) => Ok(permit),
            None => Arc::clone(&self.0).acquire_owned().await,
        }
    }
}

impl Slot {
    /// Awaits `next` (the body's next chunk), giving the slot up if that takes longer than
    /// [`STALL`].
    pub async fn hold_while<F: Future>(&mut self, next: F) -> F::Output {
        if self.0.is_none() {
            return next.await;
        }
        let mut next = std::pin::pin!(next);
        tokio::select! {
            biased;
            out = &mut next => return out,
            () = tokio::time::sleep(STALL) => {}
        }
        self.0 = None;
        next.await
    }

    #[cfg(test)]
    fn is_held(&self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_bound_the_bodies_read_at_once() {
        let slots = Arc::new(DecodeSlots::new(2));
        let first = slots.take().await.unwrap();
        let _second = slots.take().await.unwrap();
        let third = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.take().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished(), "a third body was read with two slots");
        // A slot kept through the read is the one the work runs in.
        let work = slots.for_work(first).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished());
        drop(work);
        third.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_arriving_steadily_keeps_its_slot() {
        let slots = DecodeSlots::new(1);
        let mut slot = slots.take().await.unwrap();
        for _ in 0..100 {
            slot.hold_while(tokio::time::sleep(STALL / 2)).await;
        }
        assert!(slot.is_held());
        assert_eq!(slots.0.available_permits(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_upload_frees_its_slot_at_once_and_still_completes() {
        let slots = Arc::new(DecodeSlots::new(1));
        let mut slot = slots.take().await.unwrap();
        let other = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.take().await.map(drop) }
        });
        let stalled = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "chunk"
        };
        {
            let mut stalled = std::pin::pin!(slot.hold_while(stalled));
            tokio::select! {
                _ = &mut stalled => panic!("the stalled upload finished first"),
                taken = other => taken.unwrap().unwrap(),
            }
            assert_eq!(stalled.await, "chunk");
        }
        assert!(!slot.is_held());
        // Its work waits for a slot like any other and gets one.
        let _work = slots.for_work(slot).await.unwrap();
    }
}
