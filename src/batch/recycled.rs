//! Large buffers given back for reuse instead of to the allocator.
//!
//! Some buffers hold a whole request: a body joined from its HTTP/2 frames, the protobuf an
//! OTLP/JSON body is transcoded into, a request a processor encoded again, a record read back
//! from a segment file, a delivery's chain joined for a broker or compression. At 1 000 spans
//! per request each is about 340 KB, held from a few milliseconds to a delivery's round trip,
//! hundreds a second at saturation with overlapping lives. The allocator answered them with
//! fresh pages while the freed ones waited out its purge delay: a quarter of the daemon's peak
//! RSS at 1 000 spans per request was such freed memory (docs/performance.md, "What changed"
//! 27). Buffers of [`MIN_LEN`] bytes or more now come from a [`Recycler`], and the [`Bytes`]
//! made of one hand the buffer back when the last clone is dropped, so the next buffer of
//! about the same size reuses pages that are already resident.
//!
//! What is kept is bounded ([`KEEP_BYTES`]), and a buffer not reused within [`IDLE`] goes to
//! the allocator after all ([`spawn_trim`], which the daemon runs), so what a load left is
//! not held here past a second or two after it stops.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Smaller buffers stay with the allocator, which serves them from its size classes well
/// (at 100 spans per request a record is about 34 KB).
const MIN_LEN: usize = 16 << 10;
/// Bytes kept for reuse at most: a stream's deliveries in flight at 1 000 spans per request
/// (8 of up to 8 192 spans, about 2.8 MB each) and the request bodies being joined.
const KEEP_BYTES: usize = 32 << 20;
/// A kept buffer not reused for this long is freed.
const IDLE: Duration = Duration::from_secs(1);

/// Where buffers are kept for reuse. The daemon uses one, [`SHARED`].
#[derive(Debug, Default)]
pub struct Recycler {
    kept: Mutex<Kept>,
}

/// Buffers kept, by capacity (a size class: see [`capacity_for`]), oldest first.
#[derive(Debug, Default)]
struct Kept {
    by_capacity: BTreeMap<usize, Vec<(Vec<u8>, Instant)>>,
    bytes: usize,
}

/// The daemon's buffers for reuse, shared by its receivers and buffers.
pub static SHARED: Recycler = Recycler::new();

/// The capacity a buffer for `len` bytes gets: `len` rounded up to a sixteenth of the power of
/// two above it, so less than an eighth of it is unused, and records of about the same size
/// share a class.
fn capacity_for(len: usize) -> usize {
    let grain = (len.next_power_of_two() / 16).max(4096);
    len.div_ceil(grain).saturating_mul(grain)
}

impl Recycler {
    pub const fn new() -> Recycler {
        Recycler {
            kept: Mutex::new(Kept {
                by_capacity: BTreeMap::new(),
                bytes: 0,
            }),
        }
    }

    fn kept(&self) -> MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An empty buffer with room for `len` bytes, to append to as bytes come. One of
    /// [`MIN_LEN`] or more is a kept one when one of its size is here, and comes back here
    /// once the [`Bytes`] made of it are dropped (or the [`Filling`] is, unfinished).
    fn filling(&'static self, len: usize) -> Filling {
        if len < MIN_LEN {
            return Filling(Repr::Plain(Vec::with_capacity(len)));
        }
        Filling(Repr::Reused(Recycled {
            buf: self.take(len),
            home: self,
        }))
    }

    /// `len` bytes written by `fill` into a [`Recycler::filling`] buffer, shared as [`Bytes`].
    pub fn filled<E>(
        &'static self,
        len: usize,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Bytes, E> {
        let mut filling = self.filling(len);
        fill(filling.buf_mut())?;
        Ok(filling.into_bytes())
    }

    /// `chunks` copied into one [`Recycler::filling`] buffer.
    pub fn joined(&'static self, chunks: &[Bytes]) -> Bytes {
        let mut joined = self.filling(chunks.iter().map(Bytes::len).sum());
        chunks.iter().for_each(|c| joined.extend_from_slice(c));
        joined.into_bytes()
    }

    /// An empty buffer with room for `len` bytes: the newest kept one of its class (its pages
    /// most likely still cached), or a new one.
    fn take(&self, len: usize) -> Vec<u8> {
        let capacity = capacity_for(len);
        let reused = {
            let mut kept = self.kept();
            let reused = (kept.by_capacity.get_mut(&capacity))
                .and_then(Vec::pop)
                .map(|(buf, _)| buf);
            if reused.is_some() {
                kept.bytes -= capacity;
            }
            reused
        };
        reused.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Keeps `buf` for reuse, unless that would pass [`KEEP_BYTES`].
    fn give_back(&self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        // A buffer `fill` grew past its class would never be taken again.
        if capacity != capacity_for(capacity) {
            return;
        }
        let mut kept = self.kept();
        if kept.bytes.saturating_add(capacity) > KEEP_BYTES {
            // Freed outside the lock.
            drop(kept);
            return;
        }
        buf.clear();
        kept.bytes += capacity;
        let now = Instant::now();
        kept.by_capacity
            .entry(capacity)
            .or_default()
            .push((buf, now));
    }

    /// Frees kept buffers that were not reused within [`IDLE`] of `now`.
    fn trim_at(&self, now: Instant) {
        let mut freed = Vec::new();
        {
            let mut kept = self.kept();
            let mut bytes = kept.bytes;
            kept.by_capacity.retain(|&capacity, bufs| {
                let idle = bufs.partition_point(|(_, at)| now.duration_since(*at) >= IDLE);
                bytes -= capacity * idle;
                freed.extend(bufs.drain(..idle).map(|(buf, _)| buf));
                !bufs.is_empty()
            });
            kept.bytes = bytes;
        }
        drop(freed);
    }

    #[cfg(test)]
    fn kept_bytes(&self) -> usize {
        self.kept().bytes
    }
}

/// A buffer being written: appended to, then shared as [`Bytes`].
struct Filling(Repr);

enum Repr {
    /// Too small to keep: the allocator's.
    Plain(Vec<u8>),
    Reused(Recycled),
}

impl Filling {
    fn buf_mut(&mut self) -> &mut Vec<u8> {
        match &mut self.0 {
            Repr::Plain(buf) => buf,
            Repr::Reused(recycled) => &mut recycled.buf,
        }
    }

    /// Appends `bytes`; past the room asked for, the allocator grows the buffer (which is then
    /// not kept for reuse).
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf_mut().extend_from_slice(bytes);
    }

    fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::Plain(buf) => Bytes::from(buf),
            Repr::Reused(recycled) => Bytes::from_owner(recycled),
        }
    }
}

/// A buffer that goes back to its recycler when dropped (with the [`Bytes`] made of it).
struct Recycled {
    buf: Vec<u8>,
    home: &'static Recycler,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        self.home.give_back(std::mem::take(&mut self.buf));
    }
}

/// Frees the shared buffers that were not reused within [`IDLE`].
fn trim() {
    SHARED.trim_at(Instant::now());
}

/// Runs [`trim`] every second until `stop`.
pub fn spawn_trim(stop: tokio_util::sync::CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => trim(),
            }
        }
    })
}

#[cfg(test)]
mod tests;
