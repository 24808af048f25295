//! The memory held by requests in flight, bounded for both transports of a receiver
//! (docs/contracts.md, "Limits"): every body chunk as it arrives, and the decompressed
//! payload, take room from one [`InflightBudget`] and give it back when the request is
//! answered. A request that would go past it is refused at once (`UNAVAILABLE` / `503` with
//! a retry hint), so memory stays bounded however many clients upload, stall or flood, and
//! a client whose upload stalls is cut off after `read_timeout`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::batch::recycled::SHARED;
use crate::receiver::ReceiveError;

/// Room is counted in KiB, so a `u32` of permits covers any budget.
const UNIT: usize = 1024;

#[derive(Debug, Clone)]
pub struct InflightBudget {
    permits: Arc<Semaphore>,
    bytes: usize,
}

/// Room held by one request; given back when dropped.
#[derive(Debug, Default)]
pub struct InflightBytes {
    permit: Option<OwnedSemaphorePermit>,
}

impl InflightBudget {
    pub fn new(bytes: usize) -> InflightBudget {
        let units = bytes.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS);
        InflightBudget {
            permits: Arc::new(Semaphore::new(units)),
            bytes,
        }
    }

    /// Takes room for `len` more bytes of the request holding `held`, or refuses it.
    pub fn take(&self, held: &mut InflightBytes, len: usize) -> Result<(), ReceiveError> {
        let units = u32::try_from(len.div_ceil(UNIT)).unwrap_or(u32::MAX);
        if units == 0 {
            return Ok(());
        }
        let permit = Arc::clone(&self.permits)
            .try_acquire_many_owned(units)
            .map_err(|_| ReceiveError::InflightFull {
                budget_bytes: self.bytes,
            })?;
        match &mut held.permit {
            Some(existing) => existing.merge(permit),
            none => *none = Some(permit),
        }
        Ok(())
    }

    /// The next chunk of `body` (`None` at its end), counted against the budget, by
    /// `deadline`.
    pub async fn next_chunk<B>(
        &self,
        body: &mut std::pin::Pin<&mut B>,
        held: &mut InflightBytes,
        deadline: Deadline,
    ) -> Result<Option<Bytes>, ReceiveError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        loop {
            let frame = match tokio::time::timeout_at(deadline.at, body.frame()).await {
                Ok(Some(frame)) => frame.map_err(|e| ReceiveError::BodyRead(e.into()))?,
                Ok(None) => return Ok(None),
                Err(_) => return Err(ReceiveError::BodyTimeout(deadline.timeout)),
            };
            if let Ok(chunk) = frame.into_data() {
                self.take(held, chunk.len())?;
                return Ok(Some(chunk));
            }
            // Trailers: nothing to hold.
        }
    }
}

/// When a request's body must have arrived in full.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    timeout: std::time::Duration,
}

impl Deadline {
    pub fn after(timeout: std::time::Duration) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }
}

/// A body's chunks as they arrived, joined once at the end into a buffer of about their size,
/// reused once the request is done with it ([`crate::batch::recycled`]). A buffer grown as
/// chunks come copies the body again at every doubling, and the allocator may hold the
/// outgrown buffers for a while: with many large uploads at once that showed as peak RSS
/// well above the in-flight budget. A body in one chunk is not copied at all.
#[derive(Debug, Default)]
pub struct BodyChunks {
    parts: Vec<Bytes>,
    len: usize,
}

impl BodyChunks {
    pub fn push(&mut self, chunk: Bytes) {
        self.len = self.len.saturating_add(chunk.len());
        self.parts.push(chunk);
    }

    /// Bytes received so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole body.
    pub fn join(mut self) -> Bytes {
        match self.parts.len() {
            0 => Bytes::new(),
            1 => self.parts.swap_remove(0),
            _ => SHARED.joined(&self.parts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_taken_until_the_request_is_answered() {
        let budget = InflightBudget::new(4 * UNIT);
        let mut first = InflightBytes::default();
        budget.take(&mut first, 3 * UNIT).expect("fits");
        let mut second = InflightBytes::default();
        assert!(matches!(
            budget.take(&mut second, 2 * UNIT),
            Err(ReceiveError::InflightFull { .. })
        ));
        drop(first);
        budget.take(&mut second, 2 * UNIT).expect("room given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_cut_off_at_the_deadline() {
        use futures::StreamExt;
        // One chunk, then nothing more on a connection that stays open.
        let frames = futures::stream::iter([Ok::<_, std::io::Error>(http_body::Frame::data(
            Bytes::from_static(b"partial"),
        ))])
        .chain(futures::stream::pending());
        let body = http_body_util::StreamBody::new(frames);
        let budget = InflightBudget::new(1 << 20);
        let mut held = InflightBytes::default();
        let mut body = std::pin::pin!(body);
        let deadline = Deadline::after(std::time::Duration::from_secs(30));
        let chunk = budget.next_chunk(&mut body, &mut held, deadline).await;
        assert_eq!(chunk.expect("chunk").as_deref(), Some(&b"partial"[..]));
        let stalled = budget.next_chunk(&mut body, &mut held, deadline).await;
        assert!(
            matches!(stalled, Err(ReceiveError::BodyTimeout(_))),
            "{stalled:?}"
        );
    }
}
