//! Checks of the test harness itself (no sluice involved): the Prometheus parser, the HTTP
//! reader, and the in-test backend with the typed and the raw gRPC clients. When these fail,
//! the other integration tests' verdicts mean nothing.

mod common;

use std::time::Duration;

use common::http::parse_response;
use common::otlp::{channel, export_traces, named_spans, raw_unary, trace_request, TRACE_EXPORT};
use common::{metric_sum, Backend};
use prost::Message;
use tonic::Code;

#[test]
fn metric_sum_adds_matching_series() {
    let text = "# HELP x_total things\n# TYPE x_total counter\n\
        x_total{signal=\"traces\",tenant=\"a\"} 3\n\
        x_total{signal=\"traces\",tenant=\"b\"} 4\n\
        x_total{signal=\"logs\",tenant=\"a\",reason=\"q\\\"uote\"} 5\n\
        x_total_other{tenant=\"a\"} 100\n\
        y_total 7\n";
    assert_eq!(metric_sum(text, "x_total", &[]), 12.0);
    assert_eq!(metric_sum(text, "x_total", &[("tenant", "a")]), 8.0);
    assert_eq!(
        metric_sum(text, "x_total", &[("tenant", "a"), ("signal", "logs")]),
        5.0
    );
    assert_eq!(metric_sum(text, "x_total", &[("reason", "q\"uote")]), 5.0);
    assert_eq!(metric_sum(text, "y_total", &[]), 7.0);
    assert_eq!(metric_sum(text, "z_total", &[]), 0.0);
}

#[test]
fn http_responses_are_read_plain_and_chunked() {
    let plain = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 3\r\n\r\nno!";
    assert_eq!(parse_response(plain).unwrap(), (503, "no!".to_string()));
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    assert_eq!(parse_response(chunked).unwrap(), (200, "abcde".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_records_per_tenant_and_fails_on_demand() {
    let backend = Backend::start().await;
    let endpoint = format!("http://{}", backend.addr);
    let client = channel(&endpoint).await;

    let request = trace_request("svc", None, named_spans("a", 0, 3));
    export_traces(&client, Some("t1"), request).await.unwrap();
    assert_eq!(backend.span_count("t1"), 3);
    assert_eq!(backend.span_count("t2"), 0);

    backend.fail_tenant("bad", Code::InvalidArgument);
    let request = trace_request("svc", None, named_spans("b", 3, 2));
    let status = export_traces(&client, Some("bad"), request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(backend.refused_count("bad"), 1);
    assert_eq!(backend.span_count("bad"), 0);

    // The raw client: a well-formed frame is accepted, garbage is not.
    let valid = trace_request("svc", None, named_spans("raw", 5, 2)).encode_to_vec();
    let status = raw_unary(
        &client,
        TRACE_EXPORT,
        &valid,
        false,
        &[("x-scope-orgid", "raw")],
    )
    .await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    assert_eq!(backend.span_count("raw"), 2);
    let status = raw_unary(&client, TRACE_EXPORT, &[0x0a, 0x05, 0x01], false, &[]).await;
    assert_ne!(status.code(), Code::Ok);
    let status = raw_unary(&client, TRACE_EXPORT, &valid, true, &[]).await;
    assert_ne!(status.code(), Code::Ok, "a plain body flagged gzip");

    // A backend restarted on the same port serves again.
    let port = backend.port();
    backend.stop().await;
    let backend = Backend::start_on(port).await;
    let request = trace_request("svc", None, named_spans("c", 7, 1));
    export_traces(&channel(&endpoint).await, Some("t3"), request)
        .await
        .unwrap();
    backend.wait_spans("t3", 1, Duration::from_secs(5)).await;
}
