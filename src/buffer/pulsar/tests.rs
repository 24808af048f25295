//! Unit tests of the Pulsar buffer's pure parts: config validation, topic templates, the
//! message contract, splitting and coalescing. The broker-facing parts are tested against a
//! real broker in `tests/pulsar_*.rs`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;

use super::config::PulsarBufferConfig;
use super::discovery::tenants_in;
use super::limits::BacklogConfig;
use super::message::{self, Coalescer};
use super::topic::{partitioned_topic_of, DeadLetterTemplate, TopicTemplate};
use crate::batch::Batch;
use crate::buffer::BufferError;
use crate::config::Validate;
use crate::signal::Signal;
use crate::tenant::TenantId;

fn config(yaml: &str) -> PulsarBufferConfig {
    crate::config::parse_component(serde_yaml::from_str(yaml).unwrap()).unwrap()
}

fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

fn default_templates() -> (TopicTemplate, DeadLetterTemplate) {
    let c = PulsarBufferConfig::default();
    let topic = c.topic_template().unwrap();
    let dlq = c.dead_letter_template(&topic).unwrap();
    (topic, dlq)
}

// === config ===

#[test]
fn defaults_are_valid_and_documented_values() {
    let c = config("{}");
    c.validate().unwrap();
    assert_eq!(c.service_url, "pulsar://127.0.0.1:6650");
    assert_eq!(
        c.topic,
        "persistent://public/default/otlp-{signal}-{tenant}"
    );
    assert_eq!(c.send_timeout, Duration::from_secs(30));
    assert_eq!(c.coalesce.max_bytes, 1 << 20);
    assert_eq!(c.coalesce.max_linger, Duration::from_millis(5));
    assert_eq!(c.max_message_bytes, 5 * 1024 * 1024 - 64 * 1024);
    assert_eq!(c.producer_idle_timeout, Duration::from_secs(300));
    assert_eq!(c.consumer.subscription, "sluice");
    assert_eq!(c.consumer.max_redeliveries, 10);
    assert_eq!(c.consumer.dead_letter_topic, "{topic}-DLQ");
    assert_eq!(c.consumer.redelivery_delay, Duration::from_secs(1));
    assert_eq!(c.consumer.topic_refresh_interval, Duration::from_secs(30));
    assert!(c.consumer.tenants.is_none());
    assert_eq!(c.consumer.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.consumer.idle_check_interval, Duration::from_secs(60));
    assert_eq!(c.consumer.max_consumers, 1000);
    assert!(c.tls.verify_hostname && !c.tls.allow_insecure_connection);
    assert_eq!(c.partitions, 1);
    assert!(c.tenant_partitions.is_empty());
}

#[test]
fn a_tenant_named_in_tenant_partitions_gets_its_own_count_the_rest_the_default() {
    let c = config("{partitions: 2, tenant_partitions: {acme: 8}}");
    c.validate().unwrap();
    assert_eq!(c.partitions_of(&tenant("acme")), 8);
    assert_eq!(c.partitions_of(&tenant("globex")), 2);
}

#[test]
fn validate_names_the_field() {
    let cases = [
        ("service_url: http://b:6650", "service_url"),
        ("service_url: 'pulsar://a:1,b:2'", "service_url"),
        ("service_url: 'pulsar://b:0'", "service_url"),
        ("service_url: 'pulsar://b:6650/path'", "service_url"),
        ("service_url: 'pulsar://u:p@b:6650'", "service_url"),
        ("service_url: 'pulsar://::1:6650'", "service_url"),
        ("service_url: 'pulsar://'", "service_url"),
        ("topic: 'persistent://public/default/otlp-{signal}'", "topic"),
        ("topic: 'persistent://public/default/otlp-{tenant}'", "topic"),
        ("topic: 'persistent://public/default/{tenant}-{tenant}-{signal}'", "topic"),
        ("topic: 'persistent://public/default/{tenat}-{signal}'", "topic"),
        ("topic: 'non-persistent://public/default/{tenant}-{signal}'", "topic"),
        ("topic: 'public/default/{tenant}-{signal}'", "topic"),
        ("topic: 'persistent://public/{tenant}-{signal}'", "topic"),
        ("topic: 'persistent://public/default/a b-{tenant}-{signal}'", "topic"),
        ("{consumer: {dead_letter_topic: '{topic}'}}", "consumer.dead_letter_topic"),
        ("{consumer: {dead_letter_topic: 'persistent://p/n/dlq'}}", "consumer.dead_letter_topic"),
        ("{consumer: {tenants: []}}", "consumer.tenants"),
        ("{consumer: {tenants: [ok, 'bad/tenant']}}", "consumer.tenants[1]"),
        ("{consumer: {subscription: 'a b'}}", "consumer.subscription"),
        ("{consumer: {receiver_queue_size: 0}}", "consumer.receiver_queue_size"),
        ("{consumer: {topic_refresh_interval: 0s}}", "consumer.topic_refresh_interval"),
        ("{consumer: {idle_timeout: 0s}}", "consumer.idle_timeout"),
        ("{consumer: {idle_check_interval: 0s}}", "consumer.idle_check_interval"),
        ("{consumer: {max_consumers: 0}}", "consumer.max_consumers"),
        ("{tls: {ca_file: /ca.pem}}", "tls.ca_file"),
        ("{service_url: 'pulsar+ssl://b:6651', tls: {verify_hostname: false}}", "tls.verify_hostname"),
        ("{service_url: 'pulsar+ssl://b:6651', tls: {allow_insecure_connection: true}}", "tls.allow_insecure_connection"),
        ("{auth: {}}", "auth."),
        ("{auth: {token: {value: a, env: B}}}", "auth.token"),
        ("{auth: {token: {}}}", "auth.token"),
        ("{auth: {token: {env: ''}}}", "auth.token.env"),
        ("{auth: {token: {value: x}, oauth2: {issuer_url: 'https://i', credentials_file: /k.json}}}", "auth."),
        ("{auth: {oauth2: {issuer_url: 'i', credentials_file: /k.json}}}", "auth.oauth2.issuer_url"),
        ("{auth: {oauth2: {issuer_url: 'https://i', credentials_file: '/a b.json'}}}", "auth.oauth2.credentials_file"),
        ("send_timeout: 0s", "send_timeout"),
        ("max_message_bytes: 100", "max_message_bytes"),
        ("{max_message_bytes: 2048, coalesce: {max_bytes: 4096}}", "coalesce.max_bytes"),
        ("{coalesce: {max_linger: 2s}}", "coalesce.max_linger"),
        ("producer_idle_timeout: 0s", "producer_idle_timeout"),
        ("partitions: 0", "partitions"),
        ("{tenant_partitions: {acme: 0}}", "tenant_partitions.acme"),
        ("{tenant_partitions: {'a/b': 2}}", "tenant_partitions.a/b"),
    ];
    for (yaml, field) in cases {
        let err = config(yaml).validate().expect_err(yaml);
        assert_eq!(err.field, field, "{yaml}: {err}");
    }
}

#[test]
fn accepts_tls_templates_in_the_namespace_and_fixed_tenants() {
    for yaml in [
        "service_url: 'pulsar+ssl://broker.example:6651'",
        "{service_url: 'pulsar+ssl://b:6651', tls: {ca_file: /ca.pem}}",
        "service_url: 'pulsar://[::1]:6650'",
        "service_url: 'pulsar://broker/'",
        "topic: 'persistent://{tenant}/telemetry/{signal}'",
        "{consumer: {tenants: [acme, globex], subscription_type: key_shared}}",
        "{consumer: {dead_letter_topic: 'persistent://ops/dlq/{signal}-{tenant}'}}",
        "{auth: {token: {file: /var/run/token}}}",
        "{auth: {oauth2: {issuer_url: 'https://auth.example/', credentials_file: /etc/k.json, audience: a}}}",
        "{compression: zstd, coalesce: {max_bytes: 0, max_linger: 0s}}",
    ] {
        config(yaml).validate().unwrap_or_else(|e| panic!("{yaml}: {e}"));
    }
}

#[test]
fn unknown_fields_are_refused() {
    for (yaml, field) in [
        ("{tls: {cert_file: /c.pem}}", "tls"),
        ("{consumer: {subscriptoin: x}}", "consumer"),
        ("{admin_url: 'http://x'}", ""),
    ] {
        let value = serde_yaml::from_str(yaml).unwrap();
        let err = crate::config::parse_component::<PulsarBufferConfig>(value).expect_err(yaml);
        assert!(err.field.starts_with(field), "{yaml}: {err}");
    }
}

#[test]
fn debug_hides_the_token() {
    let c = config("{auth: {token: {value: s3cret-token}}}");
    let shown = format!("{c:?}");
    assert!(
        shown.contains("***") && !shown.contains("s3cret"),
        "{shown}"
    );
}

// === topics ===

#[test]
fn topics_render_from_tenant_and_signal_and_parse_back() {
    let (topic, dlq) = default_templates();
    let acme = tenant("acme.prod-1");
    assert_eq!(
        topic.render(&acme, Signal::Metrics),
        "persistent://public/default/otlp-metrics-acme.prod-1"
    );
    assert_eq!(
        dlq.render(&acme, Signal::Logs),
        "persistent://public/default/otlp-logs-acme.prod-1-DLQ"
    );
    for signal in Signal::ALL {
        assert_eq!(
            topic.tenant_of(&topic.render(&acme, signal), signal),
            Some(acme.clone())
        );
        assert_eq!(topic.namespace(signal).as_deref(), Some("public/default"));
    }
    // Another signal's topic is not this signal's.
    assert_eq!(
        topic.tenant_of(&topic.render(&acme, Signal::Traces), Signal::Logs),
        None
    );

    // Characters Pulsar names do not take are encoded, and decoded back.
    let odd = tenant("o'brien(eu)!*");
    let rendered = topic.render(&odd, Signal::Traces);
    assert_eq!(
        rendered,
        "persistent://public/default/otlp-traces-o=27brien=28eu=29=21=2A"
    );
    assert_eq!(topic.tenant_of(&rendered, Signal::Traces), Some(odd));

    let in_namespace = TopicTemplate::parse("persistent://{tenant}/telemetry/{signal}").unwrap();
    assert_eq!(
        in_namespace.render(&acme, Signal::Traces),
        "persistent://acme.prod-1/telemetry/traces"
    );
    assert_eq!(in_namespace.namespace(Signal::Traces), None);
    let by_signal = TopicTemplate::parse("persistent://otel/{signal}/t-{tenant}").unwrap();
    assert_eq!(
        by_signal.namespace(Signal::Logs).as_deref(),
        Some("otel/logs")
    );
}

#[test]
fn discovery_skips_dead_letters_and_foreign_topics_and_reads_partitions_as_their_topic() {
    let (topic, dlq) = default_templates();
    let listed: Vec<String> = [
        "persistent://public/default/otlp-traces-acme",
        "persistent://public/default/otlp-traces-acme-DLQ",
        "persistent://public/default/otlp-traces-big-partition-0",
        "persistent://public/default/otlp-traces-big-partition-1",
        "persistent://public/default/otlp-traces-acme-DLQ-partition-0",
        "persistent://public/default/otlp-logs-globex",
        "persistent://public/default/otlp-traces-bad=zz",
        "persistent://public/default/otlp-traces-it=27s",
        "persistent://public/default/__change_events",
        "persistent://public/default/otlp-traces-globex",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let found = tenants_in(&topic, &dlq, Signal::Traces, &listed);
    assert_eq!(
        found,
        vec![
            tenant("acme"),
            tenant("big"),
            tenant("it's"),
            tenant("globex")
        ]
    );
    assert_eq!(partitioned_topic_of("x-partition-12"), Some("x"));
    assert_eq!(partitioned_topic_of("x-partition-"), None);
    assert_eq!(partitioned_topic_of("x-partition-1a"), None);
    assert_eq!(partitioned_topic_of("x"), None);
}

// === the message contract ===

fn request(resources: usize, spans_each: usize, name_len: usize) -> Bytes {
    let request = ExportTraceServiceRequest {
        resource_spans: (0..resources)
            .map(|r| ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans_each)
                        .map(|i| Span {
                            name: format!("r{r}-s{i}-{}", "x".repeat(name_len)),
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    };
    Bytes::from(request.encode_to_vec())
}

fn batch(payload: Bytes, items: u32) -> Batch {
    Batch {
        tenant: tenant("acme"),
        signal: Signal::Traces,
        payload: payload.into(),
        items,
        received_at_ms: 1_700_000_000_123,
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    }
}

fn span_names(payload: &[u8]) -> Vec<String> {
    ExportTraceServiceRequest::decode(payload)
        .unwrap()
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.name.clone())
        .collect()
}

#[test]
fn message_carries_key_event_time_and_properties_per_contract() {
    let b = batch(request(1, 3, 4), 3);
    let m = message::encode(&b, &[]);
    assert_eq!(
        m.payload,
        b.payload.contiguous().to_vec(),
        "payload is the OTLP bytes exactly"
    );
    assert_eq!(m.partition_key.as_deref(), Some("acme"));
    assert_eq!(m.event_time, Some(1_700_000_000_123));
    let want: HashMap<String, String> = [
        ("tenant", "acme"),
        ("signal", "traces"),
        ("items", "3"),
        ("content-type", "application/x-protobuf"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(m.properties, want);

    let untraced = Batch {
        traceparent: None,
        ..b.clone()
    };
    assert!(!message::encode(&untraced, &[])
        .properties
        .contains_key("traceparent"));

    // And back: the topic's tenant, the receive time, the items.
    let decoded = message::decode(
        &b.tenant,
        b.signal,
        b.payload.to_bytes(),
        &m.properties,
        m.event_time,
        5,
    )
    .unwrap()
    .batch;
    assert_eq!(decoded, b);
}

#[test]
fn decode_counts_items_of_foreign_messages_and_refuses_garbage() {
    let acme = tenant("acme");
    let payload = request(2, 3, 1);
    let none = HashMap::new();
    let decoded = message::decode(&acme, Signal::Traces, payload, &none, None, 42).unwrap();
    assert_eq!((decoded.batch.items, decoded.batch.received_at_ms), (6, 42));
    assert!(decoded.batch.traceparent.is_none());
    let garbage = Bytes::from_static(&[0x0a, 0xff, 0xff]);
    assert!(message::decode(&acme, Signal::Traces, garbage, &none, None, 42).is_err());
}

#[test]
fn dead_letters_keep_the_original_and_add_reason_and_topic() {
    let b = batch(request(1, 1, 1), 1);
    let original = message::encode(&b, &[]);
    let dl = message::dead_letter(
        &original.payload,
        &original.properties,
        original.partition_key.clone(),
        original.event_time,
        "otlp: permission denied",
        "persistent://public/default/otlp-traces-acme",
    );
    assert_eq!(dl.payload, original.payload);
    assert_eq!(dl.partition_key, original.partition_key);
    assert_eq!(dl.event_time, original.event_time);
    assert_eq!(dl.properties["reason"], "otlp: permission denied");
    assert_eq!(
        dl.properties["original-topic"],
        "persistent://public/default/otlp-traces-acme"
    );
    for (k, v) in &original.properties {
        assert_eq!(&dl.properties[k], v);
    }
}

// === splitting and coalescing ===

#[test]
fn a_request_that_fits_is_not_touched() {
    let b = batch(request(3, 2, 10), 6);
    let parts = crate::buffer::split::split(b.clone(), b.payload.len()).unwrap();
    assert_eq!(parts, vec![b]);
}

#[test]
fn large_requests_split_at_resource_boundaries() {
    let b = batch(request(10, 5, 200), 50);
    let max = b.payload.len() / 3;
    let parts = crate::buffer::split::split(b.clone(), max).unwrap();
    assert!(parts.len() >= 3, "{} parts", parts.len());
    let mut names = Vec::new();
    for part in &parts {
        assert!(part.payload.len() <= max);
        assert_eq!(part.items % 5, 0, "whole resources only");
        assert_eq!(
            (
                &part.tenant,
                part.signal,
                part.received_at_ms,
                &part.traceparent
            ),
            (&b.tenant, b.signal, b.received_at_ms, &b.traceparent)
        );
        names.extend(span_names(&part.payload.contiguous()));
    }
    assert_eq!(parts.iter().map(|p| p.items).sum::<u32>(), 50);
    assert_eq!(
        names,
        span_names(&b.payload.contiguous()),
        "every span once, in order"
    );
}

#[test]
fn a_resource_larger_than_a_message_is_refused() {
    let b = batch(request(2, 50, 100), 100);
    let one_resource = b.payload.len() / 2;
    let err = crate::buffer::split::split(b, one_resource / 2).unwrap_err();
    assert!(matches!(err, BufferError::RecordTooLarge { size, .. } if size > one_resource / 2));
    assert!(!err.is_retryable());
}

#[test]
fn coalescing_merges_up_to_the_limit() {
    let small = |n: usize, at: u64| Batch {
        received_at_ms: at,
        ..batch(request(1, n, 1), n as u32)
    };
    let (a, b, c) = (small(1, 30), small(2, 10), small(3, 20));
    let limit = a.payload.len() + b.payload.len();
    let mut merged = Coalescer::new(a.clone(), 'a', limit);
    assert!(!merged.is_full());
    merged.try_add(b.clone(), 'b').unwrap();
    assert!(merged.is_full());
    let (back, tag) = merged.try_add(c.clone(), 'c').unwrap_err();
    assert_eq!((back, tag), (c, 'c'));
    let (batch, _, tags) = merged.finish();
    assert_eq!(tags, vec!['a', 'b']);
    assert_eq!(batch.items, 3);
    assert_eq!(batch.received_at_ms, 10, "earliest receive time");
    let mut want = span_names(&a.payload.contiguous());
    want.extend(span_names(&b.payload.contiguous()));
    assert_eq!(
        span_names(&batch.payload.contiguous()),
        want,
        "a valid merged request"
    );

    // A first request larger than the limit still goes out, alone.
    let big = small(4, 1);
    let alone = Coalescer::new(big.clone(), (), 1);
    assert!(alone.is_full());
    assert_eq!(alone.finish().0, big);
}

#[test]
fn snappy_is_refused_because_other_clients_cannot_read_it() {
    let err = config("compression: snappy").validate().unwrap_err();
    assert_eq!(err.field, "compression");
    assert!(err.message.contains("Collector"), "{}", err.message);
    for ok in ["none", "lz4", "zstd", "zlib"] {
        assert!(
            config(&format!("compression: {ok}")).validate().is_ok(),
            "{ok}"
        );
    }
}

impl PulsarBufferConfig {
    fn admin_url(&self) -> String {
        self.backlog.admin_url_for(&self.service_url)
    }
}

#[test]
fn the_admin_url_defaults_to_the_service_hosts_web_port() {
    let with = |service_url: &str, admin_url: Option<&str>| PulsarBufferConfig {
        service_url: service_url.into(),
        backlog: BacklogConfig {
            admin_url: admin_url.map(Into::into),
            ..BacklogConfig::default()
        },
        ..PulsarBufferConfig::default()
    };
    assert_eq!(
        with("pulsar://broker.example:6650", None).admin_url(),
        "http://broker.example:8080"
    );
    assert_eq!(
        with("pulsar+ssl://a:6651,b:6651", None).admin_url(),
        "https://a:8443"
    );
    assert_eq!(
        with("pulsar://x:6650", Some("http://admin:9090/")).admin_url(),
        "http://admin:9090"
    );
    let mut bad = with("pulsar://x:6650", Some("admin:9090"));
    assert_eq!(
        bad.validate().expect_err("scheme").field,
        "backlog.admin_url"
    );
    bad.backlog.admin_url = None;
    bad.backlog.tenant_headroom_percent = 60;
    assert_eq!(
        bad.validate().expect_err("headroom").field,
        "backlog.tenant_headroom_percent"
    );
}

/// What may open a connection runs `detached`: the caller gets its error at the limit, and
/// the operation still runs to its end, because pulsar-rs must never see a connection
/// attempt dropped halfway (tests/broker_restart.rs shows what that did).
#[tokio::test(start_paused = true)]
async fn a_detached_operation_runs_on_after_its_caller_gives_up() {
    let (finished, finished_rx) = tokio::sync::oneshot::channel();
    let operation = async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let _ = finished.send(());
        Ok::<_, std::io::Error>(())
    };
    let started = tokio::time::Instant::now();
    let outcome = super::detached(Duration::from_secs(3), operation).await;
    let error = outcome.expect_err("past its limit");
    assert!(error.to_string().contains("within 3s"), "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    tokio::time::timeout(Duration::from_secs(60), finished_rx)
        .await
        .expect("the operation ran on to its end")
        .expect("and finished");
}
