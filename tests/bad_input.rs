//! Malformed and unacceptable requests get the status the OTLP spec prescribes and a message
//! that says what was wrong; each is counted by reason; and sluice keeps serving afterwards.

mod common;

use std::io::Write;
use std::time::Duration;

use common::http_client::{post, PROTOBUF};
use common::otlp::{
    channel, expect_code, export_log, export_traces, named_spans, raw_unary, span, trace_request,
    LOGS_EXPORT, METRICS_EXPORT, TRACE_EXPORT,
};
use common::{free_port, temp_dir, Backend, SluiceConfig, SluiceProcess};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

const WAIT: Duration = Duration::from_secs(30);

fn mentions_any(message: &str, words: &[&str]) -> bool {
    let message = message.to_lowercase();
    words.iter().any(|w| message.contains(w))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_with_the_right_status_and_counted() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port());
    config.max_recv_msg_size_mib = Some(1);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;
    let valid = trace_request("bad-input-svc", None, named_spans("ok", 0, 3)).encode_to_vec();

    // Garbage protobuf: field 1, length 5, but one byte follows.
    let garbage = [0x0a, 0x05, 0x01];
    for path in [TRACE_EXPORT, METRICS_EXPORT, LOGS_EXPORT] {
        let status = raw_unary(&client, path, &garbage, false, &[]).await;
        let message = expect_code(
            &format!("garbage to {path}"),
            &status,
            Code::InvalidArgument,
        );
        assert!(
            mentions_any(
                &message,
                &["decode", "protobuf", "malformed", "invalid", "truncat"]
            ),
            "garbage to {path}: message does not say what is wrong: {message:?}"
        );
    }

    // Invalid tenant id in the header.
    let headers = [("x-scope-orgid", "a/b")];
    let status = raw_unary(&client, TRACE_EXPORT, &valid, false, &headers).await;
    let message = expect_code("tenant a/b in the header", &status, Code::InvalidArgument);
    assert!(
        message.contains("a/b"),
        "message does not name the tenant: {message:?}"
    );

    // Invalid tenant id in the resource attribute (no header).
    let request = trace_request("bad-input-svc", Some("no spaces"), named_spans("x", 10, 2));
    let status = raw_unary(&client, TRACE_EXPORT, &request.encode_to_vec(), false, &[]).await;
    let message = expect_code(
        "tenant.id attribute 'no spaces'",
        &status,
        Code::InvalidArgument,
    );
    assert!(
        message.contains("no spaces"),
        "message does not name the tenant: {message:?}"
    );

    // Larger than max_recv_msg_size_mib (1 MiB).
    let mut big = span("big", 20);
    big.name = "x".repeat(2 * 1024 * 1024);
    let big = trace_request("bad-input-svc", None, vec![big]).encode_to_vec();
    let status = raw_unary(&client, TRACE_EXPORT, &big, false, &[]).await;
    let message = expect_code("a 2 MiB request", &status, Code::ResourceExhausted);
    assert!(
        mentions_any(&message, &["large", "size", "limit", "exceed"]),
        "too large: message does not say so: {message:?}"
    );

    // Flagged gzip, but not gzip.
    let status = raw_unary(&client, TRACE_EXPORT, &valid, true, &[]).await;
    let message = expect_code(
        "grpc-encoding gzip with a plain body",
        &status,
        Code::InvalidArgument,
    );
    assert!(
        mentions_any(&message, &["gzip", "decompress", "compress"]),
        "bad gzip: message does not say so: {message:?}"
    );

    // Real gzip is accepted.
    let request = trace_request("bad-input-svc", None, named_spans("gz", 30, 4));
    let status = raw_unary(
        &client,
        TRACE_EXPORT,
        &gzip(&request.encode_to_vec()),
        true,
        &[("x-scope-orgid", "gz")],
    )
    .await;
    expect_code("a gzip request", &status, Code::Ok);

    // Still serving: a valid request goes through to the backend.
    let request = trace_request("bad-input-svc", None, named_spans("after", 40, 5));
    export_traces(&client, Some("after"), request)
        .await
        .expect("a valid request after the bad ones");
    backend.wait_spans("after", 5, WAIT).await;
    backend.wait_spans("gz", 4, WAIT).await;

    let metrics = sluice.metrics().await;
    let refused = |signal: &str, reason: &str| {
        common::metric_sum(
            &metrics,
            "sluice_receiver_refused_requests_total",
            &[
                ("transport", "grpc"),
                ("signal", signal),
                ("reason", reason),
            ],
        )
    };
    for (signal, reason, want) in [
        ("traces", "malformed", 1.0),
        ("metrics", "malformed", 1.0),
        ("logs", "malformed", 1.0),
        ("traces", "invalid_tenant", 2.0),
        ("traces", "too_large", 1.0),
        ("traces", "decompression", 1.0),
    ] {
        assert_eq!(
            refused(signal, reason),
            want,
            "refused {signal} requests, {reason}\n{metrics}"
        );
    }
    // Items are known for the decodable request whose tenant was invalid.
    let items = common::metric_sum(
        &metrics,
        "sluice_receiver_refused_items_total",
        &[
            ("signal", "traces"),
            ("tenant", "_unknown"),
            ("reason", "invalid_tenant"),
        ],
    );
    assert_eq!(
        items, 5.0,
        "refused items with an invalid tenant\n{metrics}"
    );
    let accepted = common::metric_sum(
        &metrics,
        "sluice_receiver_accepted_items_total",
        &[("transport", "grpc"), ("signal", "traces")],
    );
    assert_eq!(accepted, 9.0, "accepted spans (gz + after)\n{metrics}");
}

/// A signal with no pipeline is refused as the OTLP specification has a server refuse what it
/// does not serve (gRPC `UNIMPLEMENTED`, HTTP `404`), with a message naming the signal, and so
/// is a gRPC `grpc-encoding` the receiver cannot decompress; each refusal is counted, and the
/// signal that has a pipeline is still served.
#[tokio::test(flavor = "multi_thread")]
async fn signals_without_a_pipeline_and_unknown_encodings_are_unimplemented_and_counted() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port()).with_http(&[]);
    config.signals = vec!["traces"];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;

    let status = export_log(&client, "no-logs", "a log record")
        .await
        .expect_err("logs have no pipeline");
    let message = expect_code("logs over gRPC", &status, Code::Unimplemented);
    assert!(
        message.contains("logs") && message.contains("pipeline"),
        "message does not say that logs have no pipeline: {message:?}"
    );

    let http = sluice.http_addr.expect("an http endpoint");
    let empty_metrics = ExportMetricsServiceRequest::default().encode_to_vec();
    let reply = post(
        http,
        "/v1/metrics",
        PROTOBUF,
        Some("no-metrics"),
        empty_metrics,
    )
    .await;
    assert_eq!(reply.status, 404, "metrics over HTTP: {}", reply.message());
    let message = reply.message();
    assert!(
        message.contains("metrics") && message.contains("pipeline"),
        "message does not say that metrics have no pipeline: {message:?}"
    );

    let valid = trace_request("no-pipeline-svc", None, named_spans("br", 0, 2)).encode_to_vec();
    let status = raw_unary(
        &client,
        TRACE_EXPORT,
        &valid,
        false,
        &[("grpc-encoding", "br")],
    )
    .await;
    let message = expect_code("grpc-encoding br", &status, Code::Unimplemented);
    assert!(
        message.contains("br") && message.contains("gzip"),
        "message does not name the encoding and the supported ones: {message:?}"
    );

    let request = trace_request("no-pipeline-svc", None, named_spans("served", 10, 3));
    export_traces(&client, Some("served"), request)
        .await
        .expect("traces have a pipeline");
    backend.wait_spans("served", 3, WAIT).await;

    let metrics = sluice.metrics().await;
    for (transport, signal, reason) in [
        ("grpc", "logs", "no_pipeline"),
        ("http", "metrics", "no_pipeline"),
        ("grpc", "traces", "unsupported_encoding"),
    ] {
        let refused = common::metric_sum(
            &metrics,
            "sluice_receiver_refused_requests_total",
            &[
                ("transport", transport),
                ("signal", signal),
                ("reason", reason),
            ],
        );
        assert_eq!(
            refused, 1.0,
            "{signal} refused over {transport}, {reason}\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_without_tenant_is_refused_when_there_is_no_default() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port());
    config.default_tenant = None;
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;

    let request = trace_request("no-tenant-svc", None, named_spans("orphan", 0, 3));
    let status = export_traces(&client, None, request)
        .await
        .expect_err("a request without a tenant must be refused");
    assert_ne!(status.code(), Code::Ok);
    assert!(
        mentions_any(status.message(), &["tenant"]),
        "message does not say the tenant is missing: {status:?}"
    );

    // The resource attribute names the tenant: accepted.
    let request = trace_request(
        "no-tenant-svc",
        Some("attr-team"),
        named_spans("owned", 10, 3),
    );
    export_traces(&client, None, request)
        .await
        .expect("a request whose resource names its tenant");
    backend.wait_spans("attr-team", 3, WAIT).await;

    let metrics = sluice.metrics().await;
    let refused = common::metric_sum(
        &metrics,
        "sluice_receiver_refused_requests_total",
        &[
            ("transport", "grpc"),
            ("signal", "traces"),
            ("reason", "no_tenant"),
        ],
    );
    assert_eq!(refused, 1.0, "{metrics}");
    assert_eq!(backend.span_count("default"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn full_buffer_answers_unavailable_with_retry_info() {
    const TENANT: &str = "full";
    let dir = temp_dir();
    // No backend: nothing drains the buffer.
    let mut config = SluiceConfig::new(dir.path(), free_port());
    config.disk_extra = vec![
        "segment_size_mib: 1".to_string(),
        "max_size_mib: 1".to_string(),
        "retry_after: 2s".to_string(),
        // One tenant fills the buffer as a whole (no share kept for others).
        "tenant_headroom_percent: 0".to_string(),
    ];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;

    // 100 KiB per request: the 1 MiB cap is reached within a dozen requests.
    let mut refused = None;
    let mut accepted = 0;
    for r in 0..40u64 {
        let mut spans = named_spans(&format!("{TENANT}-r{r}"), r * 4, 4);
        for s in &mut spans {
            s.attributes
                .push(common::otlp::kv_str("pad", &"p".repeat(25 * 1024)));
        }
        let request = trace_request("full-svc", None, spans);
        match export_traces(&client, Some(TENANT), request).await {
            Ok(()) => accepted += 1,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("a 1 MiB buffer took 4 MiB without refusing");
    assert!(
        accepted >= 5,
        "refused after only {accepted} requests: {status:?}"
    );
    expect_code("append to a full buffer", &status, Code::Unavailable);
    assert!(mentions_any(status.message(), &["full"]), "{status:?}");
    let retry = status
        .get_details_retry_info()
        .unwrap_or_else(|| panic!("UNAVAILABLE without RetryInfo: {status:?}"));
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(2)), "{retry:?}");

    let metrics = sluice.metrics().await;
    let m = |name: &str, labels: &[(&str, &str)]| common::metric_sum(&metrics, name, labels);
    assert_eq!(
        m(
            "sluice_receiver_refused_requests_total",
            &[
                ("transport", "grpc"),
                ("signal", "traces"),
                ("reason", "buffer_full")
            ]
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        m(
            "sluice_receiver_refused_items_total",
            &[
                ("signal", "traces"),
                ("tenant", TENANT),
                ("reason", "buffer_full")
            ]
        ),
        4.0,
        "{metrics}"
    );
    assert_eq!(
        m(
            "sluice_receiver_accepted_items_total",
            &[("signal", "traces"), ("tenant", TENANT)]
        ),
        (accepted * 4) as f64,
        "{metrics}"
    );
}
