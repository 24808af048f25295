//! Which of a log's segments its age and size caps remove (dead letters and retained data).

use std::fs;
use std::path::Path;

use super::super::config::LogCaps;
use super::segment_path;

/// Segments as (first sequence number, size in bytes), oldest first.
type Segments = Vec<(u64, u64)>;

/// Which segments of a log trimmed from its oldest end (`segments`, oldest first, as
/// [`super::list_segments`] gives them) break `caps`: first those whose last write is older than
/// the age cap, then the oldest of the rest until the log is within the size cap. They are
/// taken out of `segments`.
pub(in crate::buffer::disk) fn over_caps(
    dir: &Path,
    segments: &mut Segments,
    caps: LogCaps,
    now: std::time::SystemTime,
) -> (Segments, Segments) {
    let mut too_old = Vec::new();
    if let Some(max_age) = caps.max_age {
        let expired = segments
            .iter()
            .take_while(|(first, _)| {
                fs::metadata(segment_path(dir, *first))
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > max_age)
            })
            .count();
        too_old = segments.drain(..expired).collect();
    }
    let mut too_big = Vec::new();
    if let Some(max) = caps.max_bytes {
        let mut total: u64 = segments.iter().map(|(_, len)| len).sum();
        let mut over = 0;
        while total > max && over < segments.len() {
            total -= segments[over].1;
            over += 1;
        }
        too_big = segments.drain(..over).collect();
    }
    (too_old, too_big)
}
