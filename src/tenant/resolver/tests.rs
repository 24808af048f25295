use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::*;

fn rs(tenant: Option<&str>, spans: usize) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: tenant
                .map(|t| KeyValue {
                    key: "tenant.id".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(t.into())),
                    }),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![Span::default(); spans],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn request(parts: Vec<ResourceSpans>) -> Bytes {
    Bytes::from(
        ExportTraceServiceRequest {
            resource_spans: parts,
        }
        .encode_to_vec(),
    )
}

fn split(
    cfg: &TenancyConfig,
    headers: &HeaderMap,
    payload: Bytes,
) -> Result<Vec<TenantPart>, ResolveError> {
    TenantResolver::new(cfg)
        .unwrap()
        .split(Signal::Traces, payload, headers)
}

fn summary(batches: &[TenantPart]) -> Vec<(String, u32)> {
    batches
        .iter()
        .map(|b| (b.tenant.to_string(), b.items))
        .collect()
}

#[test]
fn header_wins_for_the_whole_request_and_keeps_the_bytes() {
    let payload = request(vec![rs(Some("a"), 2), rs(Some("b"), 3)]);
    let mut headers = HeaderMap::new();
    headers.insert("x-scope-orgid", HeaderValue::from_static("team-h"));
    let out = split(&TenancyConfig::default(), &headers, payload.clone()).unwrap();
    assert_eq!(summary(&out), vec![("team-h".into(), 5)]);
    assert_eq!(out[0].payload, payload);
}

#[test]
fn resource_attributes_split_the_request_per_tenant() {
    let payload = request(vec![
        rs(Some("a"), 2),
        rs(Some("b"), 3),
        rs(Some("a"), 1),
        rs(None, 4),
    ]);
    let out = split(&TenancyConfig::default(), &HeaderMap::new(), payload).unwrap();
    assert_eq!(
        summary(&out),
        vec![("a".into(), 3), ("b".into(), 3), ("default".into(), 4)]
    );
    let a = ExportTraceServiceRequest::decode(out[0].payload.clone()).unwrap();
    assert_eq!(a.resource_spans, vec![rs(Some("a"), 2), rs(Some("a"), 1)]);
}

#[test]
fn one_tenant_by_attribute_keeps_the_original_bytes() {
    let payload = request(vec![rs(Some("a"), 2), rs(Some("a"), 1)]);
    let out = split(
        &TenancyConfig::default(),
        &HeaderMap::new(),
        payload.clone(),
    )
    .unwrap();
    assert_eq!(out[0].payload, payload);
}

#[test]
fn invalid_ids_are_refused_never_rewritten() {
    let mut headers = HeaderMap::new();
    headers.insert("x-scope-orgid", HeaderValue::from_static("a/b"));
    let err = split(
        &TenancyConfig::default(),
        &headers,
        request(vec![rs(None, 1)]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("header x-scope-orgid"), "{err}");
    assert!(err.to_string().contains("a/b"), "{err}");

    let err = split(
        &TenancyConfig::default(),
        &HeaderMap::new(),
        request(vec![rs(Some("../x"), 1)]),
    )
    .unwrap_err();
    assert!(matches!(err, ResolveError::InvalidTenant { .. }), "{err}");
}

#[test]
fn without_a_default_unassigned_data_is_refused() {
    let cfg = TenancyConfig {
        default: None,
        ..TenancyConfig::default()
    };
    let err = split(
        &cfg,
        &HeaderMap::new(),
        request(vec![rs(Some("a"), 1), rs(None, 1)]),
    )
    .unwrap_err();
    assert!(matches!(err, ResolveError::NoTenant { .. }));
    assert!(err.to_string().contains("x-scope-orgid"), "{err}");
}

#[test]
fn empty_requests_yield_no_batches() {
    let out = split(
        &TenancyConfig::default(),
        &HeaderMap::new(),
        request(vec![]),
    )
    .unwrap();
    assert!(out.is_empty());
}

#[test]
fn attribute_first_then_header() {
    let cfg = TenancyConfig {
        resolve: vec![
            TenantSourceConfig::ResourceAttribute("tenant.id".into()),
            TenantSourceConfig::Header("X-Scope-OrgID".into()),
        ],
        default: None,
        ..TenancyConfig::default()
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-scope-orgid", HeaderValue::from_static("h"));
    let out = split(&cfg, &headers, request(vec![rs(Some("a"), 1), rs(None, 2)])).unwrap();
    assert_eq!(summary(&out), vec![("a".into(), 1), ("h".into(), 2)]);
}

fn auth_config() -> TenancyConfig {
    use crate::tenant::auth::{AuthConfig, Secret, TokenConfig};
    TenancyConfig {
        auth: Some(AuthConfig {
            bearer_tokens: vec![TokenConfig {
                tenant: "team-a".into(),
                token: Some(Secret::new("token-for-team-a-0001")),
                token_env: None,
                token_file: None,
            }],
        }),
        ..TenancyConfig::default()
    }
}

fn with_token(token: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static(token));
    headers
}

#[test]
fn the_token_decides_the_tenant() {
    let payload = request(vec![rs(None, 2), rs(Some("team-a"), 1)]);
    let out = split(
        &auth_config(),
        &with_token("Bearer token-for-team-a-0001"),
        payload.clone(),
    )
    .unwrap();
    assert_eq!(summary(&out), vec![("team-a".into(), 3)]);
    assert_eq!(out[0].payload, payload);
}

#[test]
fn naming_another_tenant_is_refused() {
    let mut headers = with_token("Bearer token-for-team-a-0001");
    headers.insert("x-scope-orgid", HeaderValue::from_static("team-b"));
    let err = split(&auth_config(), &headers, request(vec![rs(None, 1)])).unwrap_err();
    assert!(
        matches!(err, ResolveError::PermissionDenied { .. }),
        "{err}"
    );

    let headers = with_token("Bearer token-for-team-a-0001");
    let err = split(
        &auth_config(),
        &headers,
        request(vec![rs(Some("team-b"), 1)]),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("resource attribute tenant.id"),
        "{err}"
    );
}

#[test]
fn missing_or_wrong_tokens_are_unauthenticated() {
    let err = split(
        &auth_config(),
        &HeaderMap::new(),
        request(vec![rs(None, 1)]),
    )
    .unwrap_err();
    assert!(matches!(err, ResolveError::Unauthenticated(_)));
    let err = split(
        &auth_config(),
        &with_token("Bearer nope-nope-nope-nope"),
        request(vec![rs(None, 1)]),
    )
    .unwrap_err();
    assert!(matches!(err, ResolveError::Unauthenticated(_)));
    assert!(!err.to_string().contains("nope"), "{err}");
}
