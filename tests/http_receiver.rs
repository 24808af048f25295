//! OTLP/HTTP against the real binary, with raw HTTP requests: every signal reaches the
//! backend from protobuf and JSON bodies, plain, gzip and zstd; every refusal gets the
//! status the OTLP/HTTP spec prescribes, a message that says what was wrong, and is counted.

mod common;

use std::time::Duration;

use common::http_client::{self, gzip, post, request, zstd, JSON, PROTOBUF};
use common::otlp::{named_spans, trace_request};
use common::{free_port, temp_dir, Backend, SluiceConfig, SluiceProcess};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;

const WAIT: Duration = Duration::from_secs(30);
const TRACE_JSON: &str = include_str!("../src/receiver/otlp/http/testdata/trace.json");
const METRICS_JSON: &str = include_str!("../src/receiver/otlp/http/testdata/metrics.json");
const LOGS_JSON: &str = include_str!("../src/receiver/otlp/http/testdata/logs.json");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_signal_arrives_from_protobuf_and_json_plain_gzip_and_zstd() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port()).with_http(&[]);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let http = sluice.http_addr.expect("an http endpoint");

    let spans = trace_request("http-svc", None, named_spans("proto", 0, 3)).encode_to_vec();
    let cases: [(&str, &str, &str, &str, Vec<u8>); 6] = [
        ("/v1/traces", PROTOBUF, "gzip", "t-proto", gzip(&spans)),
        (
            "/v1/traces",
            JSON,
            "zstd",
            "t-json",
            zstd(TRACE_JSON.as_bytes()),
        ),
        (
            "/v1/metrics",
            JSON,
            "identity",
            "m-json",
            METRICS_JSON.into(),
        ),
        (
            "/v1/logs",
            JSON,
            "gzip",
            "l-json",
            gzip(LOGS_JSON.as_bytes()),
        ),
        ("/v1/logs", PROTOBUF, "zstd", "l-empty", zstd(&[])),
        ("/v1/metrics", PROTOBUF, "identity", "m-empty", Vec::new()),
    ];
    for (path, content_type, encoding, tenant, body) in cases {
        let headers = [
            ("content-type", content_type),
            ("content-encoding", encoding),
            ("x-scope-orgid", tenant),
        ];
        let reply = request(http, "POST", path, &headers, body).await;
        reply.expect(&format!("{path} {content_type} {encoding}"), 200);
        assert_eq!(http_client::content_type(&reply), content_type, "{path}");
        let want: &[u8] = if content_type == JSON { b"{}" } else { b"" };
        assert_eq!(reply.body, want, "{path}: an empty Export*ServiceResponse");
    }

    // Cleartext HTTP/2 with prior knowledge is served on the same port.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("an HTTP/2 client");
    let reply = h2
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("x-scope-orgid", "h2")
        .body(spans.clone())
        .send()
        .await
        .expect("an HTTP/2 request");
    assert_eq!(
        (reply.version(), reply.status().as_u16()),
        (reqwest::Version::HTTP_2, 200)
    );

    backend.wait_spans("h2", 3, WAIT).await;
    backend.wait_spans("t-proto", 3, WAIT).await;
    backend.wait_spans("t-json", 1, WAIT).await;
    backend.wait_data_points("m-json", 4, WAIT).await;
    backend.wait_log_records("l-json", 1, WAIT).await;

    // The JSON examples arrive with nothing lost.
    let span = backend.spans("t-json").remove(0);
    assert_eq!(hex(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex(&span.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!((span.name.as_str(), span.kind), ("I'm a server span", 2));
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    backend.with(|r| {
        let metrics = &r.metrics[0].request.resource_metrics[0].scope_metrics[0].metrics;
        let Some(Data::Histogram(h)) = &metrics[2].data else {
            panic!("{:?}", metrics[2])
        };
        assert_eq!(h.data_points[0].bucket_counts, [1, 1]);
        assert_eq!(
            (h.data_points[0].sum, h.data_points[0].min),
            (Some(2.0), Some(0.0))
        );
        let record = &r.logs[0].request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.severity_number, 10);
        let attributes: Vec<_> = record.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(attributes.len(), 6, "{attributes:?}");
        let int = record
            .attributes
            .iter()
            .find(|kv| kv.key == "int.attribute");
        let int = int.and_then(|kv| kv.value.clone()).and_then(|v| v.value);
        assert_eq!(int, Some(Value::IntValue(10)));
    });

    let metrics = sluice.metrics().await;
    let accepted = |signal| {
        common::metric_sum(
            &metrics,
            "sluice_receiver_accepted_items_total",
            &[("transport", "http"), ("signal", signal)],
        )
    };
    assert_eq!(
        (accepted("traces"), accepted("metrics"), accepted("logs")),
        (7.0, 4.0, 1.0),
        "{metrics}"
    );
}

/// Method, path, headers, body; the status and words of the message expected.
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<u8>,
    u16,
    &'a str,
);

#[tokio::test(flavor = "multi_thread")]
async fn refusals_have_the_spec_status_a_message_and_a_count() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config =
        SluiceConfig::new(dir.path(), backend.port()).with_http(&["max_request_body_size_mib: 1"]);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let http = sluice.http_addr.expect("an http endpoint");
    let valid = trace_request("bad-http", None, named_spans("ok", 0, 2)).encode_to_vec();
    let big = vec![b' '; 2 * 1024 * 1024];
    let bomb = gzip(&vec![0u8; 8 * 1024 * 1024]);
    let snake = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"trace_id":"5b8efff798038103d269b633813fc60c","name":"x"}]}]}]}"#;
    let ct = |v| ("content-type", v);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/trace",
            vec![ct(PROTOBUF)],
            valid.clone(),
            404,
            "/v1/traces",
        ),
        ("GET", "/v1/traces", vec![], vec![], 405, "POST"),
        (
            "POST",
            "/v1/logs",
            vec![ct("text/plain")],
            b"hi".to_vec(),
            415,
            "Content-Type",
        ),
        (
            "POST",
            "/v1/traces",
            vec![ct(PROTOBUF), ("content-encoding", "br")],
            valid.clone(),
            415,
            "Content-Encoding",
        ),
        (
            "POST",
            "/v1/traces",
            vec![ct(JSON)],
            big,
            413,
            "larger than the limit",
        ),
        (
            "POST",
            "/v1/traces",
            vec![ct(PROTOBUF), ("content-encoding", "gzip")],
            bomb,
            413,
            "after decompression",
        ),
        (
            "POST",
            "/v1/traces",
            vec![ct(PROTOBUF), ("content-encoding", "gzip")],
            valid.clone(),
            400,
            "gzip",
        ),
        (
            "POST",
            "/v1/metrics",
            vec![ct(PROTOBUF)],
            vec![0x0a, 0x05, 0x01],
            400,
            "malformed",
        ),
        (
            "POST",
            "/v1/traces",
            vec![ct(JSON)],
            snake.into(),
            400,
            "lowerCamelCase",
        ),
        (
            "POST",
            "/v1/traces",
            vec![ct(PROTOBUF), ("x-scope-orgid", "a/b")],
            valid.clone(),
            400,
            "a/b",
        ),
    ];
    for (method, path, headers, body, status, words) in cases {
        let what = format!("{method} {path} {headers:?}");
        let reply = request(http, method, path, &headers, body).await;
        let message = reply.expect(&what, status);
        assert!(
            message.contains(words),
            "{what}: {message:?} does not say {words:?}"
        );
        if status == 405 {
            assert_eq!(reply.header("allow"), Some("POST"), "{what}");
        }
    }
    // The lossy JSON names the field, as a BadRequest detail too.
    let reply = post(http, "/v1/traces", JSON, None, snake.into()).await;
    let field = &reply.json()["details"][0]["fieldViolations"][0]["field"];
    assert_eq!(field, "resourceSpans[0].scopeSpans[0].spans[0].trace_id");

    // Still serving.
    post(http, "/v1/traces", PROTOBUF, Some("after"), valid)
        .await
        .expect("a valid request after the bad ones", 200);
    backend.wait_spans("after", 2, WAIT).await;

    let metrics = sluice.metrics().await;
    let refused = |signal: &str, reason: &str| {
        common::metric_sum(
            &metrics,
            "sluice_receiver_refused_requests_total",
            &[
                ("transport", "http"),
                ("signal", signal),
                ("reason", reason),
            ],
        )
    };
    for (signal, reason, want) in [
        ("_unknown", "unknown_path", 1.0),
        ("traces", "method_not_allowed", 1.0),
        ("logs", "unsupported_content_type", 1.0),
        ("traces", "unsupported_encoding", 1.0),
        ("traces", "too_large", 2.0),
        ("traces", "decompression", 1.0),
        ("metrics", "malformed", 1.0),
        ("traces", "malformed", 2.0),
        ("traces", "invalid_tenant", 1.0),
    ] {
        assert_eq!(
            refused(signal, reason),
            want,
            "{signal} {reason}\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_answers_503_with_retry_after() {
    let dir = temp_dir();
    // No backend: nothing drains the buffer.
    let mut config = SluiceConfig::new(dir.path(), free_port()).with_http(&[]);
    config.disk_extra = vec![
        "segment_size_mib: 1".to_string(),
        "max_size_mib: 1".to_string(),
        "retry_after: 2s".to_string(),
        // One tenant fills the buffer as a whole (no share kept for others).
        "tenant_headroom_percent: 0".to_string(),
    ];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let http = sluice.http_addr.expect("an http endpoint");

    let mut refused = None;
    for r in 0..40u64 {
        let mut spans = named_spans(&format!("full-r{r}"), r * 4, 4);
        for s in &mut spans {
            s.attributes
                .push(common::otlp::kv_str("pad", &"p".repeat(25 * 1024)));
        }
        let body = trace_request("full-svc", None, spans).encode_to_vec();
        let reply = post(http, "/v1/traces", PROTOBUF, Some("full"), body).await;
        if reply.status != 200 {
            refused = Some(reply);
            break;
        }
    }
    let reply = refused.expect("a 1 MiB buffer took 4 MiB without refusing");
    let message = reply.expect("append to a full buffer", 503);
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert!(message.contains("full"), "{message}");
    let metrics = sluice.metrics().await;
    let refused = common::metric_sum(
        &metrics,
        "sluice_receiver_refused_requests_total",
        &[("transport", "http"), ("reason", "buffer_full")],
    );
    assert_eq!(refused, 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_from_an_allowed_origin() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port()).with_http(&[
        "cors: { allowed_origins: ['https://*.example.com'], allowed_headers: [x-scope-orgid], max_age: 7200 }",
    ]);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let http = sluice.http_addr.expect("an http endpoint");

    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "content-type,x-scope-orgid",
        ),
    ];
    let reply = request(http, "OPTIONS", "/v1/traces", &preflight, vec![]).await;
    reply.expect("preflight", 200);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(reply.header("access-control-max-age"), Some("7200"));
    let allowed = reply.header("access-control-allow-headers").unwrap_or("");
    assert!(allowed.contains("x-scope-orgid"), "{allowed}");

    let body = trace_request("browser", None, named_spans("web", 0, 1)).encode_to_vec();
    let headers = [
        ("content-type", PROTOBUF),
        ("origin", "https://app.example.com"),
        ("x-scope-orgid", "web"),
    ];
    let reply = request(http, "POST", "/v1/traces", &headers, body).await;
    reply.expect("a cross-origin export", 200);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    backend.wait_spans("web", 1, WAIT).await;
}
