//! OTLP on the client side: building requests, sending them with the generated tonic
//! clients, raw gRPC calls that can carry anything (malformed bodies, a false compression
//! flag), and the OpenTelemetry Rust SDK wired to a sluice endpoint.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::{Service, ServiceExt};

use super::backend::TENANT_HEADER;

pub const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
pub const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

// === requests ===

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

/// A span whose ids derive from `seq` (unique per `seq`), named `name`.
pub fn span(name: &str, seq: u64) -> Span {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&0x5111_ce00_u64.to_be_bytes());
    trace_id[8..].copy_from_slice(&seq.to_be_bytes());
    let start = 1_700_000_000_000_000_000 + seq * 1_000;
    Span {
        trace_id: trace_id.to_vec(),
        span_id: (seq + 1).to_be_bytes().to_vec(),
        name: name.to_string(),
        kind: 1,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 500,
        attributes: vec![kv("seq", any_value::Value::IntValue(seq as i64))],
        ..Default::default()
    }
}

/// One resource (`service.name` = `service`, plus `tenant.id` when given) holding `spans`.
pub fn trace_request(
    service: &str,
    resource_tenant: Option<&str>,
    spans: Vec<Span>,
) -> ExportTraceServiceRequest {
    let mut attributes = vec![kv_str("service.name", service)];
    if let Some(tenant) = resource_tenant {
        attributes.push(kv_str("tenant.id", tenant));
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "sluice-it".to_string(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `count` spans named `{prefix}-{i}`, with `seq` values from `first_seq` on.
pub fn named_spans(prefix: &str, first_seq: u64, count: usize) -> Vec<Span> {
    (0..count as u64)
        .map(|i| span(&format!("{prefix}-{i}"), first_seq + i))
        .collect()
}

// === typed clients ===

pub async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_string())
        .expect("valid endpoint")
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"))
}

/// One `TraceService/Export` call, with `x-scope-orgid: tenant` when given.
pub async fn export_traces(
    channel: &Channel,
    tenant: Option<&str>,
    request: ExportTraceServiceRequest,
) -> Result<(), Status> {
    let mut client = TraceServiceClient::new(channel.clone())
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    let mut request = tonic::Request::new(request);
    if let Some(tenant) = tenant {
        request
            .metadata_mut()
            .insert(TENANT_HEADER, tenant.parse().expect("ascii tenant"));
    }
    client.export(request).await.map(|_| ())
}

/// One `TraceService/Export` call with the given metadata (`authorization`, tenant headers).
pub async fn export_traces_with(
    channel: &Channel,
    metadata: &[(&'static str, &str)],
    request: ExportTraceServiceRequest,
) -> Result<(), Status> {
    let mut client = TraceServiceClient::new(channel.clone());
    let mut request = tonic::Request::new(request);
    for (name, value) in metadata {
        request
            .metadata_mut()
            .insert(*name, value.parse().expect("ascii"));
    }
    client.export(request).await.map(|_| ())
}

/// One `LogsService/Export` call of one log record with `body`, with `x-scope-orgid: tenant`.
pub async fn export_log(channel: &Channel, tenant: &str, body: &str) -> Result<(), Status> {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    let record = LogRecord {
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        ..Default::default()
    };
    let mut request = tonic::Request::new(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
                ..Default::default()
            }],
            ..Default::default()
        }],
    });
    request
        .metadata_mut()
        .insert(TENANT_HEADER, tenant.parse().expect("ascii tenant"));
    LogsServiceClient::new(channel.clone())
        .export(request)
        .await
        .map(|_| ())
}

// === raw gRPC ===

/// A unary gRPC call with `payload` framed as is: `compressed` sets the frame's compression
/// flag and `grpc-encoding: gzip` without compressing anything. Returns the call's status
/// (`Code::Ok` on success), taken from the headers or the trailers.
pub async fn raw_unary(
    channel: &Channel,
    path: &str,
    payload: &[u8],
    compressed: bool,
    headers: &[(&str, &str)],
) -> Status {
    let mut frame = BytesMut::with_capacity(payload.len() + 5);
    frame.put_u8(u8::from(compressed));
    frame.put_u32(payload.len() as u32);
    frame.put_slice(payload);
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://sluice{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if compressed {
        builder = builder.header("grpc-encoding", "gzip");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = tonic::body::Body::new(http_body_util::Full::new(Bytes::from(frame)));
    let request = builder.body(body).expect("valid request");

    let mut channel = channel.clone();
    let response = match channel.ready().await {
        Ok(svc) => svc.call(request).await,
        Err(e) => Err(e),
    };
    let response = match response {
        Ok(r) => r,
        Err(e) => return Status::unknown(format!("transport error: {e}")),
    };
    if response.status() != http::StatusCode::OK {
        return Status::unknown(format!("HTTP status {}", response.status()));
    }
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status; // trailers-only response
    }
    match response.into_body().collect().await {
        Ok(collected) => match collected.trailers().and_then(Status::from_header_map) {
            Some(status) => status,
            None => Status::unknown("response without grpc-status"),
        },
        Err(e) => Status::unknown(format!("reading the response body: {e}")),
    }
}

/// Panics unless `status` has `code`; returns its message.
pub fn expect_code(what: &str, status: &Status, code: Code) -> String {
    assert_eq!(
        status.code(),
        code,
        "{what}: expected {code:?}, got {:?}: {:?}",
        status.code(),
        status.message()
    );
    status.message().to_string()
}

// === the OpenTelemetry Rust SDK ===

fn tenant_metadata(tenant: &str) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    metadata.insert(TENANT_HEADER, tenant.parse().expect("ascii tenant"));
    metadata
}

fn sdk_resource(service: &str) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_string())
        .build()
}

/// A tracer provider exporting over OTLP/gRPC to `endpoint` with `x-scope-orgid: tenant`.
/// Must be called inside the tokio runtime.
pub fn sdk_tracer_provider(endpoint: &str, tenant: &str, service: &str) -> SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_metadata(tenant_metadata(tenant))
        .with_timeout(Duration::from_secs(20))
        .build()
        .expect("build the span exporter");
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(sdk_resource(service))
        .build()
}

/// A meter provider that exports only when flushed (the period is an hour).
pub fn sdk_meter_provider(endpoint: &str, tenant: &str, service: &str) -> SdkMeterProvider {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_metadata(tenant_metadata(tenant))
        .with_timeout(Duration::from_secs(20))
        .build()
        .expect("build the metric exporter");
    let reader = PeriodicReader::builder(exporter)
        .with_interval(Duration::from_secs(3600))
        .build();
    SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(sdk_resource(service))
        .build()
}

pub fn sdk_logger_provider(endpoint: &str, tenant: &str, service: &str) -> SdkLoggerProvider {
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_metadata(tenant_metadata(tenant))
        .with_timeout(Duration::from_secs(20))
        .build()
        .expect("build the log exporter");
    SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(sdk_resource(service))
        .build()
}

/// Runs a blocking SDK call (flush / shutdown) off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}
