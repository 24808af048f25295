use std::convert::Infallible;

use super::*;

fn recycler() -> &'static Recycler {
    Box::leak(Box::new(Recycler::new()))
}

fn bytes_of(recycler: &'static Recycler, len: usize, byte: u8) -> Bytes {
    recycler
        .filled::<Infallible>(len, |buf| {
            buf.resize(len, byte);
            Ok(())
        })
        .expect("infallible")
}

#[test]
fn a_class_is_its_length_rounded_up_by_at_most_an_eighth() {
    for len in [MIN_LEN, MIN_LEN + 1, 100_000, 340_123, 2_800_000, 64 << 20] {
        let capacity = capacity_for(len);
        assert!(capacity >= len, "{len}");
        assert!(capacity - len <= len / 8 + 4096, "{len}: {capacity}");
    }
    assert_eq!(capacity_for(340_000), capacity_for(350_000), "one class");
}

#[test]
fn a_large_buffer_is_reused_once_its_bytes_are_dropped() {
    let recycler = recycler();
    let first = bytes_of(recycler, 340_000, 1);
    let clone = first.clone();
    let at = first.as_ptr();
    drop(first);
    assert_eq!(recycler.kept_bytes(), 0, "a clone still holds it");
    drop(clone);
    assert_eq!(recycler.kept_bytes(), capacity_for(340_000));

    let second = bytes_of(recycler, 345_000, 2);
    assert_eq!(second.as_ptr(), at, "the same buffer, for the same class");
    assert_eq!(second.len(), 345_000);
    assert!(second.iter().all(|&b| b == 2), "written anew");
    assert_eq!(recycler.kept_bytes(), 0);

    let other_class = bytes_of(recycler, 1_000_000, 3);
    assert_ne!(other_class.as_ptr(), at);
}

#[test]
fn a_buffer_grown_past_its_class_is_not_kept() {
    let recycler = recycler();
    let grown = recycler
        .filled::<Infallible>(100_000, |buf| {
            buf.resize(300_000, 1);
            Ok(())
        })
        .expect("infallible");
    assert_eq!(grown.len(), 300_000, "all that was written");
    drop(grown);
    assert_eq!(recycler.kept_bytes(), 0);
}

#[test]
fn small_buffers_stay_with_the_allocator() {
    let recycler = recycler();
    drop(bytes_of(recycler, MIN_LEN - 1, 1));
    assert_eq!(recycler.kept_bytes(), 0);
}

#[test]
fn a_failed_fill_gives_the_buffer_back() {
    let recycler = recycler();
    let failed = recycler.filled(200_000, |buf| {
        buf.extend_from_slice(&[1; 1000]);
        Err("short read")
    });
    assert_eq!(failed, Err("short read"));
    assert_eq!(recycler.kept_bytes(), capacity_for(200_000));
}

#[test]
fn what_is_kept_stays_within_its_bound() {
    let recycler = recycler();
    let held: Vec<Bytes> = (0..12).map(|_| bytes_of(recycler, 4 << 20, 0)).collect();
    drop(held);
    assert!(recycler.kept_bytes() <= KEEP_BYTES);
    assert_eq!(recycler.kept_bytes(), KEEP_BYTES / (4 << 20) * (4 << 20));
}

#[test]
fn buffers_idle_for_a_second_are_freed() {
    let recycler = recycler();
    drop(bytes_of(recycler, 100_000, 0));
    drop(bytes_of(recycler, 500_000, 0));
    let later = Instant::now();
    recycler.trim_at(later);
    assert_eq!(
        recycler.kept_bytes(),
        capacity_for(100_000) + capacity_for(500_000),
        "not idle yet"
    );
    recycler.trim_at(later + IDLE);
    assert_eq!(recycler.kept_bytes(), 0);
    // Both classes are gone, not only emptied.
    assert!(recycler.kept().by_capacity.is_empty());
}

#[test]
fn a_filling_appends_as_bytes_come_and_an_unfinished_one_gives_its_buffer_back() {
    let recycler = recycler();
    let mut filling = recycler.filling(100_000);
    filling.extend_from_slice(&[1; 60_000]);
    filling.extend_from_slice(&[2; 40_000]);
    let bytes = filling.into_bytes();
    assert_eq!(bytes.len(), 100_000);
    assert_eq!((bytes[59_999], bytes[60_000]), (1, 2));
    drop(bytes);
    assert_eq!(recycler.kept_bytes(), capacity_for(100_000));

    let mut unfinished = recycler.filling(100_000);
    unfinished.extend_from_slice(&[3; 10]);
    assert_eq!(recycler.kept_bytes(), 0, "taken");
    drop(unfinished);
    assert_eq!(recycler.kept_bytes(), capacity_for(100_000), "back");
}
