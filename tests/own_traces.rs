//! Sluice's own traces (`service.telemetry.traces`, docs/contracts.md, "Own traces"), seen at
//! an OTLP backend that receives them: a span sent with a `traceparent` yields one trace from
//! receipt to the backend's answer, whose producer and consumer spans join through what the
//! buffer stored (disk record, Pulsar message property); a delivery merged from several
//! requests links every one of them; with sampling off no span is made; and an own-telemetry
//! endpoint that is down never fails or holds up ingest.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;

use common::otlp::{channel, export_traces_with, named_spans, trace_request};
use common::{free_port, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};

const WAIT: Duration = Duration::from_secs(30);

/// Every span the own-traces backend received, of any tenant.
fn own_spans(backend: &Backend) -> Vec<Span> {
    backend.with(|r| {
        r.traces
            .iter()
            .flat_map(|x| x.request.resource_spans.iter())
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter().cloned())
            .collect()
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh sampled `traceparent`: (trace id, span id, header).
fn client_context() -> (String, String, String) {
    let trace: u128 = rand::random::<u128>() | 1;
    let span: u64 = rand::random::<u64>() | 1;
    let (trace, span) = (format!("{trace:032x}"), format!("{span:016x}"));
    let header = format!("00-{trace}-{span}-01");
    (trace, span, header)
}

fn traced(config: SluiceConfig, endpoint: &str, ratio: &str) -> SluiceConfig {
    let mut config = config;
    config.telemetry_extra.push(format!(
        "traces: {{ sampling_ratio: {ratio}, endpoint: \"{endpoint}\" }}"
    ));
    config
}

fn config_on(buffer: &str, dir: &std::path::Path, port: u16, tenant: &str) -> SluiceConfig {
    let config = SluiceConfig::new(dir, port);
    if buffer != "pulsar" {
        return config;
    }
    let topic = format!("topic: 'persistent://public/default/{tenant}-{{signal}}-{{tenant}}'");
    let consumer = format!("consumer: {{ subscription: {tenant} }}");
    config.with_pulsar(
        &common::pulsar::service_url(),
        &[
            topic.as_str(),
            consumer.as_str(),
            "coalesce: { max_linger: 300ms }",
        ],
    )
}

async fn send(sluice: &SluiceProcess, tenant: &str, traceparent: Option<&str>, name: &str) {
    let client = channel(&sluice.otlp_endpoint()).await;
    let mut metadata = vec![("x-scope-orgid", tenant)];
    if let Some(t) = traceparent {
        metadata.push(("traceparent", t));
    }
    export_traces_with(
        &client,
        &metadata,
        trace_request("own", None, named_spans(name, 0, 1)),
    )
    .await
    .unwrap_or_else(|e| panic!("{name} refused: {e}"));
}

/// The spans of `trace` once every stage of the journey is there.
async fn journey(own: &Backend, trace: &str) -> Vec<Span> {
    wait_for("every stage of the batch's trace", WAIT, || async {
        let spans: Vec<Span> = own_spans(own)
            .into_iter()
            .filter(|s| hex(&s.trace_id) == trace)
            .collect();
        let kinds: BTreeSet<i32> = spans.iter().map(|s| s.kind).collect();
        let want = [
            SpanKind::Server,
            SpanKind::Producer,
            SpanKind::Consumer,
            SpanKind::Client,
        ];
        let settled = spans.iter().any(|s| s.name == "settle");
        if want.iter().all(|k| kinds.contains(&(*k as i32))) && settled {
            Ok(spans)
        } else {
            let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            Err(format!("{names:?}"))
        }
    })
    .await
}

fn one(spans: &[Span], kind: SpanKind) -> &Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.kind == kind as i32).collect();
    assert_eq!(found.len(), 1, "one {kind:?} span: {spans:#?}");
    found[0]
}

/// One span's journey: client → receive → publish ⇒ (buffer) ⇒ process → export, settle.
async fn one_trace_through(buffer: &str) {
    let dir = temp_dir();
    let data = Backend::start().await;
    let own = Backend::start().await;
    let tenant = common::pulsar::tenant(&format!("own{buffer}"));
    let config = traced(
        config_on(buffer, dir.path(), data.port(), &tenant),
        &format!("http://127.0.0.1:{}", own.port()),
        "1.0",
    );
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let (trace, client_span, header) = client_context();
    send(&sluice, &tenant, Some(&header), "journey").await;
    data.wait_spans(&tenant, 1, WAIT).await;

    let spans = journey(&own, &trace).await;
    let receive = one(&spans, SpanKind::Server);
    let publish = one(&spans, SpanKind::Producer);
    let process = one(&spans, SpanKind::Consumer);
    let export = one(&spans, SpanKind::Client);
    let settle = spans.iter().find(|s| s.name == "settle").expect("settle");
    assert_eq!(
        hex(&receive.parent_span_id),
        client_span,
        "receive continues the client"
    );
    assert_eq!(receive.parent_span_id.len(), 8);
    assert_eq!(publish.parent_span_id, receive.span_id);
    // Across the buffer: the consumer's parent is the producer, through the stored context.
    assert_eq!(process.parent_span_id, publish.span_id, "{spans:#?}");
    assert!(
        process.links.iter().any(|l| l.span_id == publish.span_id),
        "the consumer links its producer: {process:#?}"
    );
    assert_eq!(export.parent_span_id, process.span_id);
    assert_eq!(export.name, "export otlp");
    assert_eq!(settle.parent_span_id, process.span_id);
    let settled = settle
        .attributes
        .iter()
        .find(|a| a.key == "sluice.settle")
        .and_then(|a| a.value.as_ref())
        .map(|v| format!("{v:?}"));
    assert!(settled.is_some_and(|v| v.contains("ack")), "{settle:#?}");
    assert!(
        own.with(|r| r.traces.iter().all(|t| t.tenant.is_none())),
        "own spans carry no tenant header"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_from_receipt_to_the_backend_through_the_disk_buffer() {
    one_trace_through("disk").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_from_receipt_to_the_backend_through_pulsar() {
    one_trace_through("pulsar").await;
}

/// Two requests merged into one delivery (held back by a pause on disk; coalesced into one
/// message, or merged by the consumer, on Pulsar): its consumer span links both producers.
async fn merged_delivery_links_every_parent(buffer: &str) {
    let dir = temp_dir();
    let data = Backend::start().await;
    let own = Backend::start().await;
    let tenant = common::pulsar::tenant(&format!("ownlinks{buffer}"));
    let config = traced(
        config_on(buffer, dir.path(), data.port(), &tenant),
        &format!("http://127.0.0.1:{}", own.port()),
        "1.0",
    );
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let admin = |action: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([action, "--tenant", tenant.as_str()])
            .args([
                "--admin-url",
                &format!("http://127.0.0.1:{}", config.admin_port),
            ])
            .output()
            .expect("run sluice");
        assert!(out.status.success(), "{out:?}");
    };
    admin("pause");
    let (first_trace, _, first) = client_context();
    let (second_trace, _, second) = client_context();
    tokio::join!(
        send(&sluice, &tenant, Some(&first), "first"),
        send(&sluice, &tenant, Some(&second), "second"),
    );
    admin("resume");
    data.wait_spans(&tenant, 2, WAIT).await;

    let producers = |spans: &[Span]| -> Vec<Vec<u8>> {
        spans
            .iter()
            .filter(|s| s.kind == SpanKind::Producer as i32)
            .map(|s| s.span_id.clone())
            .collect()
    };
    wait_for("a consumer span linking both producers", WAIT, || async {
        let spans = own_spans(&own);
        let published = producers(&spans);
        let linked = spans.iter().find(|s| {
            s.kind == SpanKind::Consumer as i32
                && published
                    .iter()
                    .all(|p| s.links.iter().any(|l| &l.span_id == p))
        });
        match linked {
            Some(span) if published.len() == 2 => {
                let traces: BTreeSet<String> =
                    span.links.iter().map(|l| hex(&l.trace_id)).collect();
                assert_eq!(
                    traces,
                    BTreeSet::from([first_trace.clone(), second_trace.clone()]),
                    "the links name both clients' traces"
                );
                Ok(())
            }
            _ => Err(format!(
                "{} producers; consumers: {:?}",
                published.len(),
                spans
                    .iter()
                    .filter(|s| s.kind == SpanKind::Consumer as i32)
                    .map(|s| s.links.len())
                    .collect::<Vec<_>>()
            )),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merged_delivery_links_every_parent_on_disk() {
    merged_delivery_links_every_parent("disk").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merged_delivery_links_every_parent_on_pulsar() {
    merged_delivery_links_every_parent("pulsar").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_sampling_off_no_span_is_made() {
    let dir = temp_dir();
    let data = Backend::start().await;
    let own = Backend::start().await;
    let config = traced(
        SluiceConfig::new(dir.path(), data.port()),
        &format!("http://127.0.0.1:{}", own.port()),
        "0",
    );
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let (_, _, header) = client_context();
    send(&sluice, "quiet", Some(&header), "untraced").await;
    send(&sluice, "quiet", None, "untraced-too").await;
    data.wait_spans("quiet", 2, WAIT).await;
    assert_eq!(
        sluice.metric("sluice_own_spans_exported_total", &[]).await,
        0.0
    );
    assert!(
        own_spans(&own).is_empty(),
        "no span is made with sampling off"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_own_telemetry_endpoint_never_fails_ingest() {
    let dir = temp_dir();
    let data = Backend::start().await;
    // Nothing listens there.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let config = traced(SluiceConfig::new(dir.path(), data.port()), &dead, "1.0");
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    for i in 0..20 {
        let (_, _, header) = client_context();
        send(&sluice, "steady", Some(&header), &format!("steady-{i}")).await;
    }
    data.wait_spans("steady", 20, WAIT).await;
    wait_for("own spans counted as dropped", WAIT, || async {
        let dropped = sluice
            .metric(
                "sluice_own_spans_dropped_total",
                &[("reason", "export_failed")],
            )
            .await;
        if dropped > 0.0 {
            Ok(())
        } else {
            Err(dropped.to_string())
        }
    })
    .await;
}
