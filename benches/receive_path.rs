//! The receive hot path: walking a 1 000-span request and splitting it per tenant, without
//! decoding the spans. Full prost decoding of the same request is measured beside it for scale.
//! And OTLP/JSON: a 100-span request decoded into protobuf as the HTTP receiver does it. And
//! the other two signals: 1 000 log records, and 1 000 gauge points, walked and split. And a
//! 1 000-span body that came in 16 KiB HTTP/2 frames joined into one buffer, reused
//! (`batch::recycled`, as the receivers do) and fresh from the allocator.

mod common;

use bytes::Bytes;
use common::{attr, metrics_request};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sluice::batch::Payload;
use sluice::receiver::otlp::http::decode_json;
use sluice::receiver::otlp::UnknownJsonFields;
use sluice::signal::Signal;
use sluice::tenant::{TenancyConfig, TenantResolver};

/// 1 000 spans over 10 resources, each resource naming one of `tenants` tenants.
fn request(tenants: usize) -> Bytes {
    common::traces((0..10).map(|r| {
        let resource = vec![
            attr("service.name", "checkout"),
            attr("tenant.id", &format!("tenant-{}", r % tenants)),
        ];
        (resource, (0..100).map(common::http_span).collect())
    }))
}

fn bench(c: &mut Criterion) {
    let resolver =
        TenantResolver::new(&TenancyConfig::default()).expect("default tenancy is valid");
    let mut group = c.benchmark_group("receive_1000_spans");
    group.throughput(Throughput::Elements(1000));

    let mut with_header = HeaderMap::new();
    with_header.insert("x-scope-orgid", HeaderValue::from_static("acme"));
    let no_header = HeaderMap::new();

    for (name, payload, headers) in [
        ("header_tenant", request(1), &with_header),
        ("attribute_one_tenant", request(1), &no_header),
        ("attribute_split_3_tenants", request(3), &no_header),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || payload.clone(),
                |p| {
                    resolver
                        .split(Signal::Traces, p, headers)
                        .expect("valid request")
                },
                BatchSize::SmallInput,
            )
        });
    }

    let payload = request(1);
    group.bench_function("prost_full_decode_for_scale", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(payload.clone()).expect("valid request"))
    });
    group.finish();
}

/// 100 spans shaped like the bench load client's (`benches/loadgen/template.rs`): 7
/// attributes each, one resource with 6, as OTLP/JSON.
fn json_request() -> Vec<u8> {
    let spans = (0..100u64)
        .map(|i| Span {
            trace_id: vec![0x5b; 16],
            span_id: i.to_be_bytes().to_vec(),
            name: format!("GET /api/v1/items/{}", i % 16),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i,
            end_time_unix_nano: 1_700_000_000_001_000_000 + i,
            attributes: vec![
                attr("http.request.method", "GET"),
                attr("http.route", "/api/v1/items/:id"),
                KeyValue {
                    key: "http.response.status_code".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(200)),
                    }),
                    ..Default::default()
                },
                attr(
                    "url.path",
                    &format!("/api/v1/items/{}", 10_000 + i * 7919 % 90_000),
                ),
                attr("server.address", "checkout.shop.svc"),
                attr("network.peer.address", "10.1.2.3"),
                attr(
                    "user_agent.original",
                    "Mozilla/5.0 (X11; Linux x86_64) bench",
                ),
            ],
            ..Default::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: [
                    ("service.name", "checkout"),
                    ("service.namespace", "shop"),
                    (
                        "service.instance.id",
                        "6f0d3c8e-5b1a-4c1e-9a55-2f1e0d9b7c41",
                    ),
                    ("host.name", "bench-host-01"),
                    ("telemetry.sdk.language", "rust"),
                    ("telemetry.sdk.name", "opentelemetry"),
                ]
                .iter()
                .map(|(k, v)| attr(k, v))
                .collect(),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    serde_json::to_vec(&request).expect("a request serializes")
}

fn bench_json(c: &mut Criterion) {
    let mut group = c.benchmark_group("otlp_json_100_spans");
    group.throughput(Throughput::Elements(100));
    let body = json_request();
    for (name, unknown) in [
        ("decode_ignoring_unknown_fields", UnknownJsonFields::Ignore),
        ("decode_refusing_unknown_fields", UnknownJsonFields::Refuse),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| decode_json(Signal::Traces, &body, unknown).expect("valid request"))
        });
    }
    group.finish();
}

/// 1 000 log records under one resource, each with the attributes of an HTTP server's
/// request and a one-line body (as the load client's S11 logs).
fn logs_request() -> Bytes {
    let log_records = (0..1000u64)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i,
            observed_time_unix_nano: 1_700_000_000_001_000_000 + i,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "GET /api/v1/items/{i} 200 in 3.{}ms",
                    i % 10
                ))),
            }),
            attributes: vec![
                attr("http.request.method", "GET"),
                attr("http.route", "/api/v1/items/:id"),
                attr("url.path", &format!("/api/v1/items/{i}")),
                attr("server.address", "checkout.shop.svc"),
            ],
            trace_id: vec![7; 16],
            span_id: i.to_be_bytes().to_vec(),
            ..Default::default()
        })
        .collect();
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![attr("service.name", "checkout")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(request.encode_to_vec())
}

fn bench_logs_and_metrics(c: &mut Criterion) {
    let resolver =
        TenantResolver::new(&TenancyConfig::default()).expect("default tenancy is valid");
    let mut headers = HeaderMap::new();
    headers.insert("x-scope-orgid", HeaderValue::from_static("acme"));
    let mut group = c.benchmark_group("receive_1000_items");
    group.throughput(Throughput::Elements(1000));
    for (name, signal, payload) in [
        ("logs_header_tenant", Signal::Logs, logs_request()),
        ("metrics_header_tenant", Signal::Metrics, metrics_request()),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || payload.clone(),
                |p| resolver.split(signal, p, &headers).expect("valid request"),
                BatchSize::SmallInput,
            )
        });
    }
    let (logs, metrics) = (logs_request(), metrics_request());
    group.bench_function("logs_prost_full_decode_for_scale", |b| {
        b.iter(|| ExportLogsServiceRequest::decode(logs.clone()).expect("valid request"))
    });
    group.bench_function("metrics_prost_full_decode_for_scale", |b| {
        b.iter(|| ExportMetricsServiceRequest::decode(metrics.clone()).expect("valid request"))
    });
    group.finish();
}

/// Joins the 1 000-span request from 16 KiB chunks and drops it, as a receiver does with a
/// body that arrived in several HTTP/2 frames once its record is written.
fn bench_join(c: &mut Criterion) {
    let body = request(1);
    let mut chunks = Payload::default();
    for start in (0..body.len()).step_by(16 << 10) {
        chunks.append(body.slice(start..body.len().min(start + (16 << 10))).into());
    }
    let mut group = c.benchmark_group("receive_join_1000_spans");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("recycled", |b| {
        b.iter(|| drop(std::hint::black_box(chunks.to_bytes())));
    });
    group.bench_function("allocator", |b| {
        b.iter(|| drop(std::hint::black_box(chunks.contiguous().into_owned())));
    });
    group.finish();
}

criterion_group!(
    benches,
    bench,
    bench_json,
    bench_logs_and_metrics,
    bench_join
);
criterion_main!(benches);
