//! The receive hot path: walking a 1 000-span request and splitting it per tenant, without
//! decoding the spans. Full prost decoding of the same request is measured beside it for scale.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use sluice::signal::Signal;
use sluice::tenant::{TenancyConfig, TenantResolver};

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// 1 000 spans over 10 resources, each resource naming one of `tenants` tenants.
fn request(tenants: usize) -> Bytes {
    let resource_spans = (0..10)
        .map(|r| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attr("service.name", "checkout"),
                    attr("tenant.id", &format!("tenant-{}", r % tenants)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..100)
                    .map(|i| Span {
                        trace_id: vec![7; 16],
                        span_id: (i as u64).to_be_bytes().to_vec(),
                        name: format!("GET /api/items/{i}"),
                        start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        end_time_unix_nano: 1_700_000_000_000_500_000 + i as u64,
                        attributes: vec![
                            attr("http.method", "GET"),
                            attr("http.route", "/api/items/:id"),
                        ],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    Bytes::from(ExportTraceServiceRequest { resource_spans }.encode_to_vec())
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

criterion_group!(benches, bench);
criterion_main!(benches);
