use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::*;
use crate::batch::Batch;
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
    let config: ResourceConfig = serde_yaml::from_str(
        r#"
attributes:
  - { key: k8s.node.name, value: node-1, action: insert }
  - { key: service.name, value: from-agent, action: insert }
"#,
    )
    .unwrap();
    config.validate().unwrap();
    ResourceProcessor {
        actions: compile_all(&config.attributes, "attributes").unwrap(),
    }
}

/// Runs `p` on `batch` as the first processor of a chain (on the wire), or after one that
/// decoded the request (`decoded`).
fn run(p: &ResourceProcessor, batch: Batch, decoded: bool) -> Batch {
    let mut part = Part::from(batch);
    if decoded {
        part.edit(|_| (0, false)).unwrap();
    }
    let mut out = p.process(part).unwrap();
    assert_eq!(out.kept.len(), 1);
    out.kept.remove(0).into_batch()
}

#[test]
fn changes_the_same_on_the_wire_and_decoded() {
    let input = batch(vec![
        Some(Resource {
            attributes: vec![kv("service.name", "checkout")],
            ..Default::default()
        }),
        None,
        Some(Resource {
            attributes: vec![kv("service.name", "a"), kv("k8s.node.name", "n")],
            ..Default::default()
        }),
    ]);
    let on_the_wire = run(&processor(), input.clone(), false);
    let decoded = run(&processor(), input, true);
    assert_eq!(on_the_wire.payload, decoded.payload);
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
    let out = run(&processor(), input, false);
    let decoded = ExportTraceServiceRequest::decode(&out.payload.contiguous()[..]).unwrap();
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
fn leaves_the_bytes_alone_when_nothing_changes() {
    let input = batch(vec![Some(Resource {
        attributes: vec![kv("service.name", "a"), kv("k8s.node.name", "n")],
        ..Default::default()
    })]);
    let before = input.payload.clone();
    for decoded in [false, true] {
        let out = run(&processor(), input.clone(), decoded);
        assert_eq!(
            out.payload.chunks()[0].as_ptr(),
            before.chunks()[0].as_ptr()
        );
    }
}

#[test]
fn every_action_applies_to_resource_attributes() {
    let config: ResourceConfig = serde_yaml::from_str(
        r#"
attributes:
  - { key: cloud.account.id, action: hash }
  - { key: host.ip, action: delete }
  - { key: deployment.environment, value: prod, action: upsert }
"#,
    )
    .unwrap();
    let p = ResourceProcessor {
        actions: compile_all(&config.attributes, "attributes").unwrap(),
    };
    let input = batch(vec![Some(Resource {
        attributes: vec![
            kv("cloud.account.id", "hello"),
            kv("host.ip", "10.0.0.1"),
            kv("deployment.environment", "dev"),
        ],
        ..Default::default()
    })]);
    let out = run(&p, input, false);
    let decoded = ExportTraceServiceRequest::decode(&out.payload.contiguous()[..]).unwrap();
    assert_eq!(
        decoded.resource_spans[0]
            .resource
            .clone()
            .unwrap()
            .attributes,
        vec![
            kv(
                "cloud.account.id",
                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
            ),
            kv("deployment.environment", "prod"),
        ]
    );
    assert_eq!(decoded.resource_spans[0].scope_spans[0].spans[0].name, "s");
}

#[test]
fn config_needs_at_least_one_valid_action() {
    let config: ResourceConfig = serde_yaml::from_str("attributes: []").unwrap();
    assert_eq!(config.validate().unwrap_err().field, "attributes");
    let config: ResourceConfig =
        serde_yaml::from_str("attributes: [ { key: k, action: insert } ]").unwrap();
    assert_eq!(config.validate().unwrap_err().field, "attributes[0].value");
}
