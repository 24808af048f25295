use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::*;
use crate::config::Validate;
use crate::signal::Signal;
use crate::tenant::TenantId;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn batch(resources: Vec<Option<Resource>>) -> Batch {
    let request = ExportTraceServiceRequest {
        resource_spans: resources
            .into_iter()
            .map(|resource| ResourceSpans {
                resource,
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "s".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    Batch {
        tenant: TenantId::parse("t").unwrap(),
        signal: Signal::Traces,
        payload: request.encode_to_vec().into(),
        items: 1,
        received_at_ms: 0,
        traceparent: None,
    }
}

fn processor() -> ResourceProcessor {
    ResourceProcessor::new(&ResourceConfig {
        attributes: vec![
            AttributeAction {
                key: "k8s.node.name".into(),
                value: "node-1".into(),
                action: Action::Insert,
            },
            AttributeAction {
                key: "service.name".into(),
                value: "from-agent".into(),
                action: Action::Insert,
            },
        ],
    })
}

#[test]
fn inserts_missing_attributes_and_keeps_existing_ones() {
    let input = batch(vec![
        Some(Resource {
            attributes: vec![kv("service.name", "checkout")],
            ..Default::default()
        }),
        None,
    ]);
    let out = processor().insert_missing(input).unwrap();
    let decoded = ExportTraceServiceRequest::decode(out.payload).unwrap();
    let attrs = |i: usize| {
        decoded.resource_spans[i]
            .resource
            .clone()
            .unwrap_or_default()
            .attributes
    };
    assert_eq!(
        attrs(0),
        vec![
            kv("service.name", "checkout"),
            kv("k8s.node.name", "node-1")
        ]
    );
    assert_eq!(
        attrs(1),
        vec![
            kv("k8s.node.name", "node-1"),
            kv("service.name", "from-agent")
        ]
    );
    // The spans are untouched.
    assert_eq!(decoded.resource_spans[1].scope_spans[0].spans[0].name, "s");
}

#[test]
fn leaves_the_bytes_alone_when_nothing_is_missing() {
    let input = batch(vec![Some(Resource {
        attributes: vec![kv("service.name", "a"), kv("k8s.node.name", "n")],
        ..Default::default()
    })]);
    let before = input.payload.clone();
    assert_eq!(processor().insert_missing(input).unwrap().payload, before);
}

#[test]
fn config_needs_unique_non_empty_keys() {
    let mut config = ResourceConfig { attributes: vec![] };
    assert!(config.validate().is_err());
    let a = AttributeAction {
        key: "k".into(),
        value: "v".into(),
        action: Action::Insert,
    };
    config.attributes = vec![a.clone(), a];
    assert!(config.validate().is_err());
}
