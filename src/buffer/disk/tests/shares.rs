//! Tenants' shares of the disk buffer's cap (`buffer::share`), through the disk buffer.

use crate::buffer::Amount;
use std::time::Duration;

use super::*;
use crate::buffer::BufferError;

#[tokio::test]
async fn a_tenant_over_its_share_is_refused_alone_and_gets_room_back_when_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = DiskBufferConfig {
        max_size_mib: 2,
        segment_size_mib: 1,
        retry_after: Duration::from_millis(700),
        tenant_headroom_percent: 25,
        ..config(dir.path())
    };
    let buffer = open(&cfg).await;
    let len = 50 * KIB;
    let mut accepted = 0u32;
    let err = loop {
        match buffer.append(batch("noisy", accepted, len)).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "the share must be enforced");
    };
    match &err {
        BufferError::TenantFull {
            tenant,
            held: Amount::Bytes(held_bytes),
            share: Amount::Bytes(share_bytes),
            retry_after,
        } => {
            assert_eq!(tenant.as_str(), "noisy");
            // Alone, its fair share is the cap less the 25 % headroom.
            assert_eq!(*share_bytes, 3 << 19);
            assert!(*held_bytes <= *share_bytes);
            assert_eq!(*retry_after, Duration::from_millis(700));
        }
        other => panic!("expected TenantFull, got {other:?}"),
    }
    assert!(err.is_retryable());

    // Another tenant is accepted from the headroom, on both its signals.
    for i in 0..4 {
        buffer
            .append(batch("quiet", i, len))
            .await
            .expect("quiet tenant has room");
    }
    buffer
        .append(Batch {
            signal: Signal::Logs,
            ..batch("quiet", 4, len)
        })
        .await
        .expect("quiet tenant's logs have room");
    assert!(matches!(
        buffer.append(batch("noisy", 999, len)).await,
        Err(BufferError::TenantFull { .. })
    ));

    // Once the noisy tenant's backlog is acknowledged, it is accepted again.
    let mut stream = streams(&buffer, Signal::Traces)
        .remove("noisy")
        .expect("stream of the noisy tenant");
    drain_ids(&mut stream, accepted as usize).await;
    buffer
        .append(batch("noisy", accepted, len))
        .await
        .expect("room after ack");
}
