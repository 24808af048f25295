use super::*;

// =============================================================================================
// What the test sends: varied on purpose (every attribute value type, events, links, status,
// several resources and scopes, every metric type), so a field lost on the way shows.
// =============================================================================================

pub(crate) fn rich_attributes(seq: u64) -> Vec<KeyValue> {
    use any_value::Value as V;
    vec![
        kv_str("str", &format!("value-{seq}")),
        kv("int", V::IntValue(-(seq as i64) * 1_000_000_007)),
        kv("double", V::DoubleValue(seq as f64 + 0.25)),
        kv("bool", V::BoolValue(seq.is_multiple_of(2))),
        kv("bytes", V::BytesValue(vec![0, 1, 0xfe, 0xff, seq as u8])),
        kv(
            "array",
            V::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(V::StringValue("a".into())),
                    },
                    AnyValue {
                        value: Some(V::IntValue(seq as i64)),
                    },
                ],
            }),
        ),
        kv(
            "kvlist",
            V::KvlistValue(KeyValueList {
                values: vec![kv_str("inner", "x"), kv("n", V::IntValue(7))],
            }),
        ),
        kv_str("utf8", "héllo wörld ✓"),
    ]
}

pub(crate) fn resource(service: &str, extra: &str) -> Resource {
    Resource {
        attributes: vec![kv_str("service.name", service), kv_str("host.name", extra)],
        dropped_attributes_count: 1,
        ..Default::default()
    }
}

pub(crate) fn scope(name: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_string(),
        version: "1.2.3".to_string(),
        attributes: vec![kv_str("scope.attr", name)],
        dropped_attributes_count: 0,
    }
}

pub(crate) fn ids(prefix: u64, seq: u64) -> (Vec<u8>, Vec<u8>) {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&prefix.to_be_bytes());
    trace_id[8..].copy_from_slice(&seq.to_be_bytes());
    let span_id = (prefix.rotate_left(17) ^ (seq + 1)).to_be_bytes().to_vec();
    (trace_id.to_vec(), span_id)
}

pub(crate) fn rich_span(prefix: u64, name: &str, seq: u64) -> Span {
    let (trace_id, span_id) = ids(prefix, seq);
    let start = 1_700_000_000_000_000_000 + seq * 1_000_000;
    let (link_trace, link_span) = ids(prefix, seq + 10_000);
    Span {
        trace_id,
        span_id,
        trace_state: if seq.is_multiple_of(3) {
            "vendor=value".to_string()
        } else {
            String::new()
        },
        parent_span_id: if seq % 2 == 1 {
            ids(prefix, seq - 1).1
        } else {
            Vec::new()
        },
        flags: 0x101,
        name: format!("{name}-{seq}"),
        kind: (seq % 6) as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 123_456,
        attributes: rich_attributes(seq),
        dropped_attributes_count: (seq % 2) as u32,
        events: vec![Event {
            time_unix_nano: start + 10,
            name: format!("event-{seq}"),
            attributes: vec![kv_str("event.attr", "e")],
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 0,
        links: vec![Link {
            trace_id: link_trace,
            span_id: link_span,
            trace_state: String::new(),
            attributes: vec![kv_str("link.attr", "l")],
            dropped_attributes_count: 0,
            flags: 0x100,
        }],
        dropped_links_count: 3,
        status: Some(Status {
            message: if seq % 3 == 2 {
                format!("failed {seq}")
            } else {
                String::new()
            },
            code: (seq % 3) as i32,
        }),
    }
}

/// `requests` trace requests; each has two resources with two scopes of `per_scope` spans.
pub(crate) fn trace_requests(
    prefix: u64,
    name: &str,
    requests: u64,
    per_scope: u64,
) -> Vec<ExportTraceServiceRequest> {
    let mut seq = 0;
    let mut out = Vec::new();
    for r in 0..requests {
        let mut resource_spans = Vec::new();
        for res in 0..2 {
            let scope_spans = (0..2)
                .map(|sc| ScopeSpans {
                    scope: Some(scope(&format!("scope-{sc}"))),
                    spans: (0..per_scope)
                        .map(|_| {
                            seq += 1;
                            rich_span(prefix, name, seq)
                        })
                        .collect(),
                    schema_url: format!("https://opentelemetry.io/schemas/1.{sc}.0"),
                })
                .collect();
            resource_spans.push(ResourceSpans {
                resource: Some(resource(&format!("{name}-svc-{res}"), &format!("host-{r}"))),
                scope_spans,
                schema_url: "https://opentelemetry.io/schemas/1.26.0".to_string(),
            });
        }
        out.push(ExportTraceServiceRequest { resource_spans });
    }
    out
}

pub(crate) fn number_point(seq: u64, value: number_data_point::Value) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![kv_str("route", &format!("/r{seq}"))],
        start_time_unix_nano: 1_700_000_000_000_000_000,
        time_unix_nano: 1_700_000_000_000_000_000 + seq * 1_000,
        exemplars: Vec::new(),
        flags: 0,
        value: Some(value),
    }
}

/// One request with every metric type, two data points each, names prefixed with `name`.
pub(crate) fn metrics_request(name: &str, seq: u64) -> ExportMetricsServiceRequest {
    use number_data_point::Value as N;
    let t0 = 1_700_000_000_000_000_000;
    let metric = |suffix: &str, data: Data| Metric {
        name: format!("{name}.{suffix}.{seq}"),
        description: format!("{suffix} for the interop test"),
        unit: "1".to_string(),
        metadata: Vec::new(),
        data: Some(data),
    };
    let histogram_point = |i: u64| HistogramDataPoint {
        attributes: vec![kv_str("bucket.set", &format!("h{i}"))],
        start_time_unix_nano: t0,
        time_unix_nano: t0 + i,
        count: 6,
        sum: Some(21.5),
        bucket_counts: vec![1, 2, 3],
        explicit_bounds: vec![1.0, 5.0],
        exemplars: Vec::new(),
        flags: 0,
        min: Some(0.5),
        max: Some(9.0),
    };
    let exp_point = |i: u64| ExponentialHistogramDataPoint {
        attributes: vec![kv_str("exp", &format!("e{i}"))],
        start_time_unix_nano: t0,
        time_unix_nano: t0 + i,
        count: 7,
        sum: Some(12.0),
        scale: 2,
        zero_count: 1,
        positive: Some(Buckets {
            offset: 1,
            bucket_counts: vec![1, 2],
        }),
        negative: Some(Buckets {
            offset: -2,
            bucket_counts: vec![3],
        }),
        flags: 0,
        exemplars: Vec::new(),
        min: Some(-4.0),
        max: Some(6.0),
        zero_threshold: 0.001,
    };
    let summary_point = |i: u64| SummaryDataPoint {
        attributes: vec![kv_str("q", &format!("s{i}"))],
        start_time_unix_nano: t0,
        time_unix_nano: t0 + i,
        count: 10,
        sum: 55.0,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.5,
                value: 5.0,
            },
            ValueAtQuantile {
                quantile: 0.99,
                value: 9.9,
            },
        ],
        flags: 0,
    };
    let metrics = vec![
        metric(
            "gauge",
            Data::Gauge(Gauge {
                data_points: vec![
                    number_point(1, N::AsDouble(1.5)),
                    number_point(2, N::AsInt(-3)),
                ],
            }),
        ),
        metric(
            "sum",
            Data::Sum(Sum {
                data_points: vec![number_point(3, N::AsInt(42)), number_point(4, N::AsInt(43))],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "histogram",
            Data::Histogram(Histogram {
                data_points: vec![histogram_point(1), histogram_point(2)],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "exphistogram",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![exp_point(1), exp_point(2)],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "summary",
            Data::Summary(Summary {
                data_points: vec![summary_point(1), summary_point(2)],
            }),
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(&format!("{name}-svc"), "metrics-host")),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope("metrics-scope")),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

pub(crate) fn logs_request(
    prefix: u64,
    name: &str,
    seq: u64,
    records: u64,
) -> ExportLogsServiceRequest {
    use any_value::Value as V;
    let log_records = (0..records)
        .map(|i| {
            let n = seq * 1000 + i;
            let (trace_id, span_id) = ids(prefix, n);
            let body = if i % 2 == 0 {
                V::StringValue(format!("{name} log {n}"))
            } else {
                V::KvlistValue(KeyValueList {
                    values: vec![kv_str("msg", &format!("{name} structured {n}"))],
                })
            };
            LogRecord {
                time_unix_nano: 1_700_000_000_000_000_000 + n,
                observed_time_unix_nano: 1_700_000_000_000_000_500 + n,
                severity_number: (9 + i % 12) as i32,
                severity_text: "INFO".to_string(),
                body: Some(AnyValue { value: Some(body) }),
                attributes: rich_attributes(n),
                dropped_attributes_count: 0,
                flags: 1,
                trace_id,
                span_id,
                event_name: if i % 3 == 0 {
                    format!("{name}.event")
                } else {
                    String::new()
                },
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(&format!("{name}-svc"), "logs-host")),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope("logs-scope")),
                log_records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// gRPC metadata of one export request, `(name, value)` pairs (`x-scope-orgid` for Sluice, the
/// topic header for the Collector's kafkaexporter).
pub(crate) type Metadata = Vec<(&'static str, String)>;

/// `x-scope-orgid: tenant` when there is a tenant.
pub(crate) fn tenant_header(tenant: Option<&str>) -> Metadata {
    tenant
        .map(|t| ("x-scope-orgid", t.to_string()))
        .into_iter()
        .collect()
}

fn request_with<T>(message: T, metadata: &Metadata) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (name, value) in metadata {
        request
            .metadata_mut()
            .insert(*name, value.parse().expect("ascii metadata value"));
    }
    request
}

pub(crate) async fn export_trace_request(
    channel: &Channel,
    metadata: &Metadata,
    request: ExportTraceServiceRequest,
) {
    TraceServiceClient::new(channel.clone())
        .export(request_with(request, metadata))
        .await
        .unwrap_or_else(|status| panic!("trace export refused: {status:?}"));
}

pub(crate) async fn export_metrics(
    channel: &Channel,
    metadata: &Metadata,
    request: ExportMetricsServiceRequest,
) {
    MetricsServiceClient::new(channel.clone())
        .export(request_with(request, metadata))
        .await
        .unwrap_or_else(|status| panic!("metrics export refused: {status:?}"));
}

pub(crate) async fn export_logs(
    channel: &Channel,
    metadata: &Metadata,
    request: ExportLogsServiceRequest,
) {
    LogsServiceClient::new(channel.clone())
        .export(request_with(request, metadata))
        .await
        .unwrap_or_else(|status| panic!("logs export refused: {status:?}"));
}

/// Everything the test sends, per signal.
pub(crate) struct Sent {
    pub(crate) traces: Vec<ExportTraceServiceRequest>,
    pub(crate) metrics: Vec<ExportMetricsServiceRequest>,
    pub(crate) logs: Vec<ExportLogsServiceRequest>,
}

impl Sent {
    pub(crate) fn new(name: &str) -> Sent {
        let prefix = 0x5111_ce00_0000_0000 | (u64::from(std::process::id()) << 8);
        Sent {
            traces: trace_requests(prefix, name, 4, 3),
            metrics: (0..3).map(|i| metrics_request(name, i)).collect(),
            logs: (0..3).map(|i| logs_request(prefix, name, i, 4)).collect(),
        }
    }

    /// Sends everything to `endpoint` (with `x-scope-orgid: tenant` when given).
    pub(crate) async fn send(&self, endpoint: &str, tenant: Option<&str>) {
        self.send_with(endpoint, |_| tenant_header(tenant)).await;
    }

    /// Sends everything to `endpoint`, each request with the metadata `metadata(signal)`
    /// (`traces`, `metrics`, `logs`).
    pub(crate) async fn send_with(&self, endpoint: &str, metadata: impl Fn(&str) -> Metadata) {
        let channel = channel(endpoint).await;
        let traces = metadata("traces");
        for request in &self.traces {
            export_trace_request(&channel, &traces, request.clone()).await;
        }
        let metrics = metadata("metrics");
        for request in &self.metrics {
            export_metrics(&channel, &metrics, request.clone()).await;
        }
        let logs = metadata("logs");
        for request in &self.logs {
            export_logs(&channel, &logs, request.clone()).await;
        }
    }

    pub(crate) fn spans(&self) -> Vec<Item> {
        self.traces.iter().flat_map(span_items).collect()
    }
    pub(crate) fn points(&self) -> Vec<Item> {
        self.metrics.iter().flat_map(point_items).collect()
    }
    pub(crate) fn records(&self) -> Vec<Item> {
        self.logs.iter().flat_map(record_items).collect()
    }
}
