//! A buffer stream that says its `next` is cancel-safe gets several deliveries in flight per
//! stream: the export loop drops a pending `next` whenever a send finishes, to settle it at
//! once. This holds each such buffer (disk, Pulsar, Kafka) to the claim, through the library
//! and against the brokers `make test` starts: records trickle in while a reader keeps
//! dropping `next` part-way through its linger, and every record still comes out exactly
//! once. (NATS does not claim it, so its export reads one delivery at a time.) And a Kafka
//! consumer whose reading loop is dropped with its runtime, before it heard the buffer close,
//! still leaves its group.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use common::otlp::{named_spans, trace_request};
use sluice::batch::Batch;
use sluice::buffer::{Buffer, BufferContext, BufferStream, ReadLimits, StreamReceiver, BUFFERS};
use sluice::signal::Signal;
use sluice::tenant::TenantId;

const RECORDS: usize = 60;
const WAIT: Duration = Duration::from_secs(90);

async fn open(kind: &str, yaml: &str) -> Arc<dyn Buffer> {
    let value = serde_yaml::from_str(yaml).expect("test config is YAML");
    let config = BUFFERS
        .parse(kind, value)
        .unwrap_or_else(|e| panic!("{kind} config: {e}"));
    config
        .open(&BufferContext::default())
        .await
        .unwrap_or_else(|e| panic!("open the {kind} buffer: {e}"))
}

fn record(tenant: &TenantId, i: usize) -> Batch {
    let request = trace_request("cancel", None, named_spans(&format!("r{i}"), i as u64, 1));
    Batch {
        tenant: tenant.clone(),
        signal: Signal::Traces,
        payload: request.encode_to_vec().into(),
        items: 1,
        received_at_ms: 1,
        traceparent: None,
    }
}

fn span_names(payload: &[u8]) -> Vec<String> {
    let request = ExportTraceServiceRequest::decode(payload).expect("a delivery is OTLP");
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

async fn tenant_stream(streams: &mut StreamReceiver, tenant: &TenantId) -> Box<dyn BufferStream> {
    tokio::time::timeout(WAIT, async {
        loop {
            let stream = streams.recv().await.expect("the tenant's stream");
            if stream.tenant() == tenant {
                return stream;
            }
        }
    })
    .await
    .expect("the tenant's stream appears")
}

async fn every_record_survives_dropped_reads(kind: &str, yaml: &str, tenant: &str) {
    let buffer = open(kind, yaml).await;
    let tenant = TenantId::parse(tenant).expect("valid tenant id");
    let mut streams = buffer
        .take_streams(Signal::Traces)
        .expect("the traces streams");

    // The stream appears with its first record; the others arrive one at a time while the
    // reader works, so `next` is often dropped with a delivery half merged.
    buffer
        .append(record(&tenant, 0))
        .await
        .unwrap_or_else(|e| panic!("{kind}: append: {e}"));
    let mut stream = tenant_stream(&mut streams, &tenant).await;
    let appender = {
        let buffer = Arc::clone(&buffer);
        let tenant = tenant.clone();
        tokio::spawn(async move {
            for i in 1..RECORDS {
                tokio::time::sleep(Duration::from_millis(4)).await;
                buffer
                    .append(record(&tenant, i))
                    .await
                    .unwrap_or_else(|e| panic!("append {i}: {e}"));
            }
        })
    };
    assert!(
        stream.next_is_cancel_safe(),
        "the {kind} stream no longer claims a cancel-safe next: drop it from this test"
    );

    let limits = ReadLimits {
        max_items: 8,
        max_bytes: 1 << 20,
        min_items: 8,
        linger: Duration::from_millis(40),
    };
    // Each read gets a little less time than the last (from 29 ms down to 0, then again),
    // so it is cut at every stage: before a message, between messages, mid-linger.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let (mut dropped, mut round) = (0u32, 0u64);
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < RECORDS {
        if tokio::time::Instant::now() >= deadline {
            let missing: Vec<String> = (0..RECORDS)
                .map(|i| format!("r{i}-0"))
                .filter(|name| !seen.contains_key(name))
                .collect();
            panic!("{kind}: lost after {dropped} dropped reads: {missing:?}");
        }
        round += 1;
        let budget = Duration::from_millis(29 - round % 30);
        let delivery = tokio::select! {
            read = stream.next(&limits) => read
                .unwrap_or_else(|e| panic!("{kind}: read: {e}"))
                .unwrap_or_else(|| panic!("{kind}: the buffer closed")),
            _ = tokio::time::sleep(budget) => {
                dropped += 1;
                continue;
            }
        };
        for name in span_names(&delivery.batch.payload.contiguous()) {
            *seen.entry(name).or_default() += 1;
        }
        stream
            .ack(&delivery)
            .await
            .unwrap_or_else(|e| panic!("{kind}: ack: {e}"));
    }
    appender.await.expect("the appender finished");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{kind}: handed out twice: {twice:?}");
    assert!(dropped > 10, "{kind}: only {dropped} reads were dropped");
    buffer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_next_loses_nothing_when_dropped() {
    let dir = common::temp_dir();
    let yaml = format!("directory: {:?}", dir.path());
    every_record_survives_dropped_reads("disk", &yaml, "cancel-disk").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pulsar_next_loses_nothing_when_dropped() {
    let run = common::pulsar::tenant("cancel");
    let yaml = format!(
        "service_url: {:?}\n\
         topic: 'persistent://public/default/{run}-{{signal}}-{{tenant}}'\n\
         consumer: {{ subscription: {run} }}",
        common::pulsar::service_url()
    );
    every_record_survives_dropped_reads("pulsar", &yaml, &format!("p-{run}")).await;
}

fn kafka_yaml(run: &str) -> String {
    let mut lines = vec![common::kafka::brokers_yaml(&common::kafka::brokers())];
    lines.extend(common::kafka::run_lines(run, ""));
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_next_loses_nothing_when_dropped() {
    let run = common::pulsar::tenant("cancel");
    every_record_survives_dropped_reads("kafka", &kafka_yaml(&run), &format!("k-{run}")).await;
}

/// Leaving the group revokes every partition, and librdkafka waits until the revocation is
/// applied. A process shutting down (or a test's runtime ending) drops the consumer's loop
/// wherever it is, and the consumer goes with it: this once hung on a revocation held for
/// deliveries nobody would settle any more.
#[test]
fn a_kafka_consumer_dropped_with_its_runtime_leaves_its_group() {
    let run = common::pulsar::tenant("leave");
    let tenant = TenantId::parse(&format!("k-{run}")).expect("valid tenant id");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let buffer = runtime.block_on(async {
        let buffer = open("kafka", &kafka_yaml(&run)).await;
        let mut streams = buffer
            .take_streams(Signal::Traces)
            .expect("the traces streams");
        buffer.append(record(&tenant, 0)).await.expect("append");
        // Read and acknowledged: the consumer owns the tenant's partition when it goes.
        let mut stream = tenant_stream(&mut streams, &tenant).await;
        let limits = ReadLimits {
            max_items: 1,
            max_bytes: 1 << 20,
            min_items: 1,
            linger: Duration::ZERO,
        };
        let delivery = tokio::time::timeout(WAIT, stream.next(&limits))
            .await
            .expect("a delivery within the wait")
            .expect("read")
            .expect("the buffer is open");
        stream.ack(&delivery).await.expect("ack");
        buffer
    });
    // The buffer stays open: only the runtime's end stops the loop, which holds the
    // consumer's last handle.
    let (gone, went) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(runtime);
        let _ = gone.send(());
    });
    went.recv_timeout(WAIT)
        .expect("the runtime ended: its Kafka consumer left the group");
    drop(buffer);
}
