//! The CPU-only parts of the broker buffers' hot paths, per 100-span request:
//! * Pulsar publish: 32 requests coalesced into one message and encoded to the message
//!   contract (what a topic task does while receipts are outstanding);
//! * Pulsar consume: a message turned back into a batch, with the `items` property Sluice
//!   writes and without it (what other producers write: the payload is walked);
//! * Kafka and NATS export: 32 records merged into one delivery (`Pending`).

mod common;

use bytes::Bytes;
use common::attr;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice::batch::Batch;
use sluice::buffer::pending::Pending;
use sluice::buffer::pulsar::message::{self, Coalescer};
use sluice::buffer::ReadLimits;
use sluice::signal::Signal;
use sluice::tenant::TenantId;

const SPANS: u32 = 100;
const REQUESTS: usize = 32;

/// One request of [`SPANS`] spans, as the bench's load client sends.
fn request() -> Bytes {
    let spans = (0..u64::from(SPANS)).map(common::http_span).collect();
    common::traces([(vec![attr("service.name", "checkout")], spans)])
}

fn batch(tenant: &TenantId, payload: &Bytes) -> Batch {
    Batch {
        tenant: tenant.clone(),
        signal: Signal::Traces,
        payload: payload.clone().into(),
        items: SPANS,
        received_at_ms: 1_700_000_000_000,
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    }
}

fn pulsar_publish(c: &mut Criterion) {
    let (tenant, payload) = (TenantId::parse("acme").expect("tenant"), request());
    let mut group = c.benchmark_group("pulsar_publish_32_requests");
    group.throughput(Throughput::Elements(u64::from(SPANS) * REQUESTS as u64));
    group.bench_function("coalesce_and_encode", |b| {
        b.iter_batched(
            || {
                (0..REQUESTS)
                    .map(|_| batch(&tenant, &payload))
                    .collect::<Vec<_>>()
            },
            |batches| {
                let mut batches = batches.into_iter();
                let first = batches.next().expect("a first request");
                let mut coalescer = Coalescer::new(first, (), 5 << 20);
                for next in batches {
                    assert!(coalescer.try_add(next, ()).is_ok(), "fits the limit");
                }
                let (merged, links, _) = coalescer.finish();
                message::encode(&merged, &links)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn pulsar_consume(c: &mut Criterion) {
    let (tenant, payload) = (TenantId::parse("acme").expect("tenant"), request());
    let sluice_wrote = message::encode(&batch(&tenant, &payload), &[]).properties;
    let other_producer = Default::default();
    let mut group = c.benchmark_group("pulsar_consume_1_request");
    group.throughput(Throughput::Elements(u64::from(SPANS)));
    for (name, properties) in [
        ("items_property", &sluice_wrote),
        ("payload_walked", &other_producer),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                message::decode(
                    &tenant,
                    Signal::Traces,
                    payload.clone(),
                    properties,
                    Some(1_700_000_000_000),
                    1_700_000_000_001,
                )
                .expect("a valid request")
            });
        });
    }
    group.finish();
}

fn stream_merge(c: &mut Criterion) {
    let (tenant, payload) = (TenantId::parse("acme").expect("tenant"), request());
    let limits = ReadLimits {
        max_items: 8192,
        max_bytes: 8 << 20,
        min_items: 8192,
        linger: std::time::Duration::ZERO,
    };
    let mut group = c.benchmark_group("broker_stream_merge_32_records");
    group.throughput(Throughput::Elements(u64::from(SPANS) * REQUESTS as u64));
    group.bench_function("pending_take", |b| {
        b.iter_batched(
            || {
                let mut pending = Pending::default();
                for offset in 0..REQUESTS {
                    pending.push(offset, batch(&tenant, &payload));
                }
                pending
            },
            |mut pending| pending.take(&limits, 0).expect("a delivery"),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, pulsar_publish, pulsar_consume, stream_merge);
criterion_main!(benches);
