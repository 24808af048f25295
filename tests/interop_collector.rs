//! Interoperability with the OpenTelemetry Collector through Pulsar (DESIGN.md §4, §9): the
//! message contract is meant to be byte-compatible with the Collector's `pulsarexporter` /
//! `pulsarreceiver` `otlp_proto` encoding, and these tests check it against the real thing.
//!
//! * **A, Sluice → Collector**: an ingest-only Sluice writes one tenant's traces, metrics and
//!   logs to its topics; the Collector's `pulsarreceiver` reads those topics and its `file`
//!   exporter writes what arrived (traces as OTLP/JSON lines, metrics and logs as protobuf).
//! * **B, Collector → Sluice**: the Collector (OTLP in, `pulsarexporter` out with its default
//!   producer batching, the window widened to 200 ms so that messages share broker entries)
//!   writes into a Sluice tenant's topics, fed by this test's OTLP client and by
//!   `telemetrygen`; an export-only Sluice reads them and delivers to the in-test backend.
//!
//! Both compare item by item (every span, data point and log record with its resource and
//! scope, exactly), not counts; both also run once per compression of the writing side.
//!
//! * **C, redelivery of the Collector's messages**: a backend that goes down after one
//!   request, and an exporter SIGKILLed at that point; everything not delivered must come
//!   again, with the pulsarexporter's producer batching off and on (batched entries are
//!   acknowledged by the broker as a whole). Sluice's `compression: snappy`, which the
//!   Collector cannot read, is refused by config validation.
//!
//! Needs the peer binaries (`make peers`: `.cache/peers/bin/otelcol-sluice-peer` and
//! `telemetrygen`) and the Pulsar broker (`SLUICE_PULSAR_URL`, `SLUICE_PULSAR_ADMIN_URL`);
//! `make interop` provides all of it. Without them the tests fail, they never skip.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::otlp::{channel, export_traces, kv, kv_str};
use common::pulsar;
use common::{free_port, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, ExponentialHistogram, ExponentialHistogramDataPoint,
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use serde_json::{Map, Value};
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(60);
const TELEMETRYGEN_ITEMS: usize = 25;

// =============================================================================================
// Preconditions and peer processes
// =============================================================================================

fn peers_bin_dir() -> PathBuf {
    std::env::var_os("SLUICE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache"))
        .join("peers")
        .join("bin")
}

struct Peers {
    collector: PathBuf,
    telemetrygen: PathBuf,
}

/// The peer binaries and the broker, or a panic that says how to get them (never a skip).
fn preflight() -> Peers {
    let bin = peers_bin_dir();
    let peers = Peers {
        collector: bin.join("otelcol-sluice-peer"),
        telemetrygen: bin.join("telemetrygen"),
    };
    let mut missing = Vec::new();
    for path in [&peers.collector, &peers.telemetrygen] {
        if !path.is_file() {
            missing.push(format!(
                "{} does not exist: `make peers` builds it",
                path.display()
            ));
        }
    }
    for var in ["SLUICE_PULSAR_URL", "SLUICE_PULSAR_ADMIN_URL"] {
        if std::env::var(var).map_or(true, |v| v.is_empty()) {
            missing.push(format!(
                "{var} is not set: the test needs the Pulsar broker that `make interop` starts"
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "the Collector interoperability test cannot run; run `make interop` (it runs `make \
         peers`, starts a Pulsar broker and then this test):\n  - {}",
        missing.join("\n  - ")
    );
    peers
}

fn peer_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/peers")
        .join(name)
}

/// A Collector child process; its log (stderr and stdout) goes to a file that is printed when
/// the test fails. Killed on drop.
struct Collector {
    child: Option<Child>,
    log_path: PathBuf,
}

impl Collector {
    /// Starts the peer Collector with `deploy/peers/<config>` and `env`, and waits until it
    /// says that every component runs.
    async fn start(bin: &Path, config: &str, env: &[(&str, String)], dir: &Path) -> Collector {
        let log_path = dir.join(format!("collector-{config}.log"));
        let log = File::create(&log_path).expect("create the Collector log");
        let child = Command::new(bin)
            .arg("--config")
            .arg(peer_config(config))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut collector = Collector {
            child: Some(child),
            log_path,
        };
        let what = format!("the Collector ({config}) to start");
        wait_for(&what, WAIT, || {
            let exited = collector
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "the Collector exited at start ({status}); its log:\n{}",
                    collector.log()
                );
            }
            let ready = collector.log().contains("Everything is ready");
            async move {
                if ready {
                    Ok(())
                } else {
                    Err("not ready".to_string())
                }
            }
        })
        .await;
        collector
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Log lines at warning level or above (the Collector logs tab-separated, level second).
    fn problems(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                let level = l.split('\t').nth(1).unwrap_or("");
                matches!(level, "warn" | "error" | "fatal" | "panic")
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- Collector log ({}) ----\n{}\n---- end of Collector log ----",
                self.log_path.display(),
                lines[lines.len().saturating_sub(100)..].join("\n")
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `telemetrygen <signal> --<signal> N` against `endpoint` (OTLP/gRPC, plaintext) and
/// waits for it to finish; panics with its output when it fails.
async fn telemetrygen(bin: &Path, signal: &str, n: usize, endpoint: &str) {
    let mut command = tokio::process::Command::new(bin);
    command
        .arg(signal)
        .arg(format!("--{signal}"))
        .arg(n.to_string())
        .args([
            "--otlp-endpoint",
            endpoint,
            "--otlp-insecure",
            "--workers",
            "1",
            "--rate",
            "0",
        ])
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("telemetrygen {signal} did not finish within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "telemetrygen {signal} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The broker's stats of `topic`, or why not (the topic may not exist yet).
async fn stats(topic: &str, which: &str) -> Result<Value, String> {
    let path = topic.replace("persistent://", "/admin/v2/persistent/") + "/" + which;
    let body = pulsar::admin_get(&path).await?;
    serde_json::from_str(&body).map_err(|e| format!("{which} of {topic}: {e}: {body}"))
}

/// How many entries the broker has stored for `topic` (fewer than messages when batched).
async fn entries(topic: &str) -> u64 {
    let stats = stats(topic, "internalStats")
        .await
        .unwrap_or_else(|e| panic!("internal stats of {topic}: {e}"));
    stats["entriesAddedCounter"].as_u64().unwrap_or_else(|| {
        panic!("no entriesAddedCounter in the internal stats of {topic}: {stats}")
    })
}

/// Waits until `subscription` on `topic` has a connected consumer.
async fn wait_subscribed(topic: &str, subscription: &str) {
    let what = format!("subscription {subscription} on {topic}");
    wait_for(&what, WAIT, || async {
        let stats = stats(topic, "stats").await?;
        let consumers = stats["subscriptions"][subscription]["consumers"]
            .as_array()
            .map_or(0, Vec::len);
        if consumers > 0 {
            Ok(())
        } else {
            Err(format!("{consumers} consumers"))
        }
    })
    .await;
}

// =============================================================================================
// Items: one span / data point / log record with its resource and scope, as the encoding of
// an export request that holds only that item. Equal items have equal bytes.
// =============================================================================================

#[derive(Clone)]
struct Item {
    label: String,
    bytes: Vec<u8>,
    debug: String,
}

fn item(label: String, message: &(impl prost::Message + Debug)) -> Item {
    Item {
        label,
        bytes: message.encode_to_vec(),
        debug: format!("{message:?}"),
    }
}

fn span_items(request: &ExportTraceServiceRequest) -> Vec<Item> {
    let mut items = Vec::new();
    for rs in &request.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let one = ExportTraceServiceRequest {
                    resource_spans: vec![ResourceSpans {
                        scope_spans: vec![ScopeSpans {
                            spans: vec![span.clone()],
                            ..ss.clone()
                        }],
                        ..rs.clone()
                    }],
                };
                let label = format!("span {:?} ({})", span.name, hex(&span.span_id));
                items.push(item(label, &one));
            }
        }
    }
    items
}

/// `metric` holding only its data point number `i` (`None` past the last one).
fn metric_point(metric: &Metric, i: usize) -> Option<Metric> {
    let data = match metric.data.as_ref()? {
        Data::Gauge(g) => Data::Gauge(Gauge {
            data_points: vec![g.data_points.get(i)?.clone()],
        }),
        Data::Sum(s) => Data::Sum(Sum {
            data_points: vec![s.data_points.get(i)?.clone()],
            ..s.clone()
        }),
        Data::Histogram(h) => Data::Histogram(Histogram {
            data_points: vec![h.data_points.get(i)?.clone()],
            ..h.clone()
        }),
        Data::ExponentialHistogram(h) => Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![h.data_points.get(i)?.clone()],
            ..h.clone()
        }),
        Data::Summary(s) => Data::Summary(Summary {
            data_points: vec![s.data_points.get(i)?.clone()],
        }),
    };
    Some(Metric {
        data: Some(data),
        ..metric.clone()
    })
}

fn point_items(request: &ExportMetricsServiceRequest) -> Vec<Item> {
    let mut items = Vec::new();
    for rm in &request.resource_metrics {
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                let mut i = 0;
                while let Some(one_point) = metric_point(metric, i) {
                    let one = ExportMetricsServiceRequest {
                        resource_metrics: vec![ResourceMetrics {
                            scope_metrics: vec![ScopeMetrics {
                                metrics: vec![one_point],
                                ..sm.clone()
                            }],
                            ..rm.clone()
                        }],
                    };
                    items.push(item(format!("metric {:?} point {i}", metric.name), &one));
                    i += 1;
                }
            }
        }
    }
    items
}

fn record_items(request: &ExportLogsServiceRequest) -> Vec<Item> {
    let mut items = Vec::new();
    for rl in &request.resource_logs {
        for sl in &rl.scope_logs {
            for record in &sl.log_records {
                let one = ExportLogsServiceRequest {
                    resource_logs: vec![ResourceLogs {
                        scope_logs: vec![ScopeLogs {
                            log_records: vec![record.clone()],
                            ..sl.clone()
                        }],
                        ..rl.clone()
                    }],
                };
                let label = format!("log record at {}", record.time_unix_nano);
                items.push(item(label, &one));
            }
        }
    }
    items
}

/// Panics unless `got` holds exactly the items of `want`, each as often: lists what is
/// missing and what is extra (or duplicated).
fn assert_same_items(what: &str, want: &[Item], got: &[Item]) {
    let mut counts: BTreeMap<&[u8], (i64, &Item)> = BTreeMap::new();
    for i in want {
        counts.entry(&i.bytes).or_insert((0, i)).0 += 1;
    }
    for i in got {
        counts.entry(&i.bytes).or_insert((0, i)).0 -= 1;
    }
    let missing: Vec<&Item> = counts
        .values()
        .filter(|(n, _)| *n > 0)
        .map(|(_, i)| *i)
        .collect();
    let extra: Vec<&Item> = counts
        .values()
        .filter(|(n, _)| *n < 0)
        .map(|(_, i)| *i)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return;
    }
    let show = |items: &[&Item]| -> String {
        items
            .iter()
            .take(5)
            .map(|i| format!("    {}: {}", i.label, i.debug))
            .collect::<Vec<_>>()
            .join("\n")
    };
    panic!(
        "{what}: {} items wanted, {} got; {} missing, {} extra or duplicated.\n  missing \
         (first 5):\n{}\n  extra (first 5):\n{}",
        want.len(),
        got.len(),
        missing.len(),
        extra.len(),
        show(&missing),
        show(&extra)
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// =============================================================================================
// What the test sends: varied on purpose (every attribute value type, events, links, status,
// several resources and scopes, every metric type), so a field lost on the way shows.
// =============================================================================================

fn rich_attributes(seq: u64) -> Vec<KeyValue> {
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

fn resource(service: &str, extra: &str) -> Resource {
    Resource {
        attributes: vec![kv_str("service.name", service), kv_str("host.name", extra)],
        dropped_attributes_count: 1,
        ..Default::default()
    }
}

fn scope(name: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_string(),
        version: "1.2.3".to_string(),
        attributes: vec![kv_str("scope.attr", name)],
        dropped_attributes_count: 0,
    }
}

fn ids(prefix: u64, seq: u64) -> (Vec<u8>, Vec<u8>) {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&prefix.to_be_bytes());
    trace_id[8..].copy_from_slice(&seq.to_be_bytes());
    let span_id = (prefix.rotate_left(17) ^ (seq + 1)).to_be_bytes().to_vec();
    (trace_id.to_vec(), span_id)
}

fn rich_span(prefix: u64, name: &str, seq: u64) -> Span {
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
fn trace_requests(
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

fn number_point(seq: u64, value: number_data_point::Value) -> NumberDataPoint {
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
fn metrics_request(name: &str, seq: u64) -> ExportMetricsServiceRequest {
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

fn logs_request(prefix: u64, name: &str, seq: u64, records: u64) -> ExportLogsServiceRequest {
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

async fn export_metrics(
    channel: &Channel,
    tenant: Option<&str>,
    request: ExportMetricsServiceRequest,
) {
    let mut request = tonic::Request::new(request);
    if let Some(tenant) = tenant {
        request
            .metadata_mut()
            .insert("x-scope-orgid", tenant.parse().expect("ascii tenant"));
    }
    MetricsServiceClient::new(channel.clone())
        .export(request)
        .await
        .unwrap_or_else(|status| panic!("metrics export refused: {status:?}"));
}

async fn export_logs(channel: &Channel, tenant: Option<&str>, request: ExportLogsServiceRequest) {
    let mut request = tonic::Request::new(request);
    if let Some(tenant) = tenant {
        request
            .metadata_mut()
            .insert("x-scope-orgid", tenant.parse().expect("ascii tenant"));
    }
    LogsServiceClient::new(channel.clone())
        .export(request)
        .await
        .unwrap_or_else(|status| panic!("logs export refused: {status:?}"));
}

/// Everything the test sends, per signal.
struct Sent {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
}

impl Sent {
    fn new(name: &str) -> Sent {
        let prefix = 0x5111_ce00_0000_0000 | (u64::from(std::process::id()) << 8);
        Sent {
            traces: trace_requests(prefix, name, 4, 3),
            metrics: (0..3).map(|i| metrics_request(name, i)).collect(),
            logs: (0..3).map(|i| logs_request(prefix, name, i, 4)).collect(),
        }
    }

    /// Sends everything to `endpoint` (with `x-scope-orgid: tenant` when given).
    async fn send(&self, endpoint: &str, tenant: Option<&str>) {
        let channel = channel(endpoint).await;
        for request in &self.traces {
            export_traces(&channel, tenant, request.clone())
                .await
                .unwrap_or_else(|status| panic!("trace export refused: {status:?}"));
        }
        for request in &self.metrics {
            export_metrics(&channel, tenant, request.clone()).await;
        }
        for request in &self.logs {
            export_logs(&channel, tenant, request.clone()).await;
        }
    }

    fn spans(&self) -> Vec<Item> {
        self.traces.iter().flat_map(span_items).collect()
    }
    fn points(&self) -> Vec<Item> {
        self.metrics.iter().flat_map(point_items).collect()
    }
    fn records(&self) -> Vec<Item> {
        self.logs.iter().flat_map(record_items).collect()
    }
}

// =============================================================================================
// Reading the Collector's file exporter output
// =============================================================================================

/// The complete records of a `format: proto` file (4-byte big-endian length, then the
/// message); a record still being written is left for the next read.
fn read_proto_file<M: prost::Message + Default>(path: &Path) -> Vec<M> {
    let data = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if at + 4 + len > data.len() {
            break;
        }
        let record = &data[at + 4..at + 4 + len];
        out.push(M::decode(record).unwrap_or_else(|e| {
            panic!(
                "{}: record at byte {at} is not valid protobuf: {e}",
                path.display()
            )
        }));
        at += 4 + len;
    }
    out
}

/// The complete lines of a `format: json` traces file, each parsed strictly (see
/// [`otlp_json`]) into the request it encodes.
fn read_json_traces(path: &Path) -> Vec<ExportTraceServiceRequest> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{} line {}: not JSON: {e}: {line}", path.display(), n + 1)
            });
            otlp_json::traces(&value)
        })
        .collect()
}

/// OTLP/JSON (as the Collector's pdata writes it) into the protobuf types, by hand and
/// strictly: a key this parser does not know is an error, so nothing the Collector wrote can
/// be skipped unnoticed. Independent of Sluice's own OTLP/JSON decoder on purpose.
mod otlp_json {
    use super::*;

    /// The object at `path`, checked to hold no other keys than `known`.
    fn object<'a>(v: &'a Value, path: &str, known: &[&str]) -> &'a Map<String, Value> {
        let map = v
            .as_object()
            .unwrap_or_else(|| panic!("{path}: expected an object, got {v}"));
        for key in map.keys() {
            assert!(
                known.contains(&key.as_str()),
                "{path}: unexpected key {key:?} (the test's OTLP/JSON reader does not know it)"
            );
        }
        map
    }

    fn array<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> &'a [Value] {
        match m.get(key) {
            None => &[],
            Some(Value::Array(a)) => a,
            Some(v) => panic!("{path}.{key}: expected an array, got {v}"),
        }
    }

    fn string(m: &Map<String, Value>, key: &str, path: &str) -> String {
        match m.get(key) {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => panic!("{path}.{key}: expected a string, got {v}"),
        }
    }

    /// A 64-bit integer: a JSON string (the OTLP/JSON form) or a number.
    fn int(m: &Map<String, Value>, key: &str, path: &str) -> i128 {
        match m.get(key) {
            None => 0,
            Some(Value::String(s)) => s
                .parse()
                .unwrap_or_else(|e| panic!("{path}.{key}: {s:?}: {e}")),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .unwrap_or_else(|| panic!("{path}.{key}: not an integer: {n}")),
            Some(v) => panic!("{path}.{key}: expected an integer, got {v}"),
        }
    }

    fn uint(m: &Map<String, Value>, key: &str, path: &str) -> u64 {
        u64::try_from(int(m, key, path)).unwrap_or_else(|e| panic!("{path}.{key}: {e}"))
    }

    fn small(m: &Map<String, Value>, key: &str, path: &str) -> u32 {
        u32::try_from(int(m, key, path)).unwrap_or_else(|e| panic!("{path}.{key}: {e}"))
    }

    fn id(m: &Map<String, Value>, key: &str, path: &str) -> Vec<u8> {
        let s = string(m, key, path);
        assert!(
            s.len().is_multiple_of(2),
            "{path}.{key}: odd hex length: {s:?}"
        );
        (0..s.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&s[i..i + 2], 16)
                    .unwrap_or_else(|e| panic!("{path}.{key}: {s:?}: {e}"))
            })
            .collect()
    }

    fn base64(s: &str, path: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in s.bytes().filter(|c| *c != b'=') {
            let v = ALPHABET
                .iter()
                .position(|a| *a == c)
                .unwrap_or_else(|| panic!("{path}: not base64: {s:?}")) as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        out
    }

    fn any_value(v: &Value, path: &str) -> AnyValue {
        use any_value::Value as V;
        let m = object(
            v,
            path,
            &[
                "stringValue",
                "boolValue",
                "intValue",
                "doubleValue",
                "arrayValue",
                "kvlistValue",
                "bytesValue",
            ],
        );
        assert!(m.len() <= 1, "{path}: more than one value: {v}");
        let value = m.iter().next().map(|(key, inner)| match key.as_str() {
            "stringValue" => V::StringValue(string(m, key, path)),
            "boolValue" => V::BoolValue(
                inner
                    .as_bool()
                    .unwrap_or_else(|| panic!("{path}.boolValue: {inner}")),
            ),
            "intValue" => V::IntValue(
                i64::try_from(int(m, key, path)).unwrap_or_else(|e| panic!("{path}: {e}")),
            ),
            "doubleValue" => V::DoubleValue(
                inner
                    .as_f64()
                    .unwrap_or_else(|| panic!("{path}.doubleValue: {inner}")),
            ),
            "bytesValue" => V::BytesValue(base64(&string(m, key, path), path)),
            "arrayValue" => {
                let p = format!("{path}.arrayValue");
                let a = object(inner, &p, &["values"]);
                V::ArrayValue(ArrayValue {
                    values: array(a, "values", &p)
                        .iter()
                        .enumerate()
                        .map(|(i, x)| any_value(x, &format!("{p}.values[{i}]")))
                        .collect(),
                })
            }
            "kvlistValue" => {
                let p = format!("{path}.kvlistValue");
                let l = object(inner, &p, &["values"]);
                V::KvlistValue(KeyValueList {
                    values: attributes(l, "values", &p),
                })
            }
            _ => unreachable!(),
        });
        AnyValue { value }
    }

    fn attributes(m: &Map<String, Value>, key: &str, path: &str) -> Vec<KeyValue> {
        array(m, key, path)
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let p = format!("{path}.{key}[{i}]");
                let kv = object(x, &p, &["key", "value"]);
                KeyValue {
                    key: string(kv, "key", &p),
                    value: kv.get("value").map(|v| any_value(v, &format!("{p}.value"))),
                    ..Default::default()
                }
            })
            .collect()
    }

    fn resource(v: &Value, path: &str) -> Resource {
        let m = object(v, path, &["attributes", "droppedAttributesCount"]);
        Resource {
            attributes: attributes(m, "attributes", path),
            dropped_attributes_count: small(m, "droppedAttributesCount", path),
            ..Default::default()
        }
    }

    fn scope(v: &Value, path: &str) -> InstrumentationScope {
        let m = object(
            v,
            path,
            &["name", "version", "attributes", "droppedAttributesCount"],
        );
        InstrumentationScope {
            name: string(m, "name", path),
            version: string(m, "version", path),
            attributes: attributes(m, "attributes", path),
            dropped_attributes_count: small(m, "droppedAttributesCount", path),
        }
    }

    fn span(v: &Value, path: &str) -> Span {
        let m = object(
            v,
            path,
            &[
                "traceId",
                "spanId",
                "traceState",
                "parentSpanId",
                "flags",
                "name",
                "kind",
                "startTimeUnixNano",
                "endTimeUnixNano",
                "attributes",
                "droppedAttributesCount",
                "events",
                "droppedEventsCount",
                "links",
                "droppedLinksCount",
                "status",
            ],
        );
        let events = array(m, "events", path)
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let p = format!("{path}.events[{i}]");
                let e = object(
                    e,
                    &p,
                    &[
                        "timeUnixNano",
                        "name",
                        "attributes",
                        "droppedAttributesCount",
                    ],
                );
                Event {
                    time_unix_nano: uint(e, "timeUnixNano", &p),
                    name: string(e, "name", &p),
                    attributes: attributes(e, "attributes", &p),
                    dropped_attributes_count: small(e, "droppedAttributesCount", &p),
                }
            })
            .collect();
        let links = array(m, "links", path)
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let p = format!("{path}.links[{i}]");
                let l = object(
                    l,
                    &p,
                    &[
                        "traceId",
                        "spanId",
                        "traceState",
                        "attributes",
                        "droppedAttributesCount",
                        "flags",
                    ],
                );
                Link {
                    trace_id: id(l, "traceId", &p),
                    span_id: id(l, "spanId", &p),
                    trace_state: string(l, "traceState", &p),
                    attributes: attributes(l, "attributes", &p),
                    dropped_attributes_count: small(l, "droppedAttributesCount", &p),
                    flags: small(l, "flags", &p),
                }
            })
            .collect();
        let status = m.get("status").map(|s| {
            let p = format!("{path}.status");
            let s = object(s, &p, &["message", "code"]);
            Status {
                message: string(s, "message", &p),
                code: small(s, "code", &p) as i32,
            }
        });
        Span {
            trace_id: id(m, "traceId", path),
            span_id: id(m, "spanId", path),
            trace_state: string(m, "traceState", path),
            parent_span_id: id(m, "parentSpanId", path),
            flags: small(m, "flags", path),
            name: string(m, "name", path),
            kind: small(m, "kind", path) as i32,
            start_time_unix_nano: uint(m, "startTimeUnixNano", path),
            end_time_unix_nano: uint(m, "endTimeUnixNano", path),
            attributes: attributes(m, "attributes", path),
            dropped_attributes_count: small(m, "droppedAttributesCount", path),
            events,
            dropped_events_count: small(m, "droppedEventsCount", path),
            links,
            dropped_links_count: small(m, "droppedLinksCount", path),
            // pdata writes an empty status as `{}`, the protobuf encoding as an absent field;
            // both mean the default.
            status: status.filter(|s| *s != Status::default()),
        }
    }

    pub fn traces(v: &Value) -> ExportTraceServiceRequest {
        let m = object(v, "$", &["resourceSpans"]);
        let resource_spans = array(m, "resourceSpans", "$")
            .iter()
            .enumerate()
            .map(|(i, rs)| {
                let p = format!("$.resourceSpans[{i}]");
                let rs = object(rs, &p, &["resource", "scopeSpans", "schemaUrl"]);
                let scope_spans = array(rs, "scopeSpans", &p)
                    .iter()
                    .enumerate()
                    .map(|(j, ss)| {
                        let p = format!("{p}.scopeSpans[{j}]");
                        let ss = object(ss, &p, &["scope", "spans", "schemaUrl"]);
                        ScopeSpans {
                            scope: ss.get("scope").map(|s| scope(s, &format!("{p}.scope"))),
                            spans: array(ss, "spans", &p)
                                .iter()
                                .enumerate()
                                .map(|(k, s)| span(s, &format!("{p}.spans[{k}]")))
                                .collect(),
                            schema_url: string(ss, "schemaUrl", &p),
                        }
                    })
                    .collect();
                ResourceSpans {
                    resource: rs
                        .get("resource")
                        .map(|r| resource(r, &format!("{p}.resource"))),
                    scope_spans,
                    schema_url: string(rs, "schemaUrl", &p),
                }
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }
}

/// Sent spans have a status only when it is not the default, like what comes back.
fn normalise_status(mut items: Vec<ExportTraceServiceRequest>) -> Vec<ExportTraceServiceRequest> {
    for r in &mut items {
        for rs in &mut r.resource_spans {
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    if span.status.as_ref() == Some(&Status::default()) {
                        span.status = None;
                    }
                }
            }
        }
    }
    items
}

/// Waits until `read()` yields at least `want` items, then waits a little longer (so late
/// duplicates show too) and returns the final read.
async fn wait_items(what: &str, want: usize, read: impl Fn() -> Vec<Item>) -> Vec<Item> {
    wait_for(what, WAIT, || {
        let n = read().len();
        async move {
            if n >= want {
                Ok(())
            } else {
                Err(format!("{n} of {want}"))
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    read()
}

// =============================================================================================
// A: Sluice writes, the Collector reads
// =============================================================================================

/// A Collector reading a fresh tenant's topics into files, and an ingest-only Sluice
/// writing them.
struct SluiceToCollector {
    collector: Collector,
    sluice: SluiceProcess,
    tenant: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl SluiceToCollector {
    /// `pulsar`: extra lines under Sluice's `buffers.pulsar` (e.g. `compression: zstd`).
    async fn start(peers: &Peers, name: &str, pulsar: &[&str]) -> SluiceToCollector {
        let tenant = pulsar::tenant(name);
        let dir = temp_dir();
        let out = dir.path().join("collector-out");
        std::fs::create_dir_all(&out).unwrap();

        // The Collector first: the Pulsar Go client subscribes at the latest position, so it
        // must be subscribed before Sluice publishes.
        let peer_subscription = pulsar::tenant("collector");
        let collector = Collector::start(
            &peers.collector,
            "collector-pulsar-to-file.yaml",
            &[
                ("PEER_PULSAR_URL", pulsar::service_url()),
                ("PEER_TENANT", tenant.clone()),
                ("PEER_SUBSCRIPTION", peer_subscription.clone()),
                ("PEER_OUT_DIR", out.display().to_string()),
            ],
            dir.path(),
        )
        .await;
        for signal in ["traces", "metrics", "logs"] {
            wait_subscribed(&pulsar::topic(signal, &tenant), &peer_subscription).await;
        }

        // Sluice, ingest only, with the default topic template.
        let subscription = format!("consumer: {{ subscription: {} }}", pulsar::tenant("sluice"));
        let mut lines = vec!["send_timeout: 10s", subscription.as_str()];
        lines.extend_from_slice(pulsar);
        let mut config =
            SluiceConfig::new(dir.path(), free_port()).with_pulsar(&pulsar::service_url(), &lines);
        config.export = false;
        let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
        SluiceToCollector {
            collector,
            sluice,
            tenant,
            out,
            _dir: dir,
        }
    }

    /// Waits for the spans of `sent` in the Collector's OTLP/JSON file, and compares.
    async fn assert_spans(&self, what: &str, sent: &[ExportTraceServiceRequest]) {
        let want = normalise_status(sent.to_vec())
            .iter()
            .flat_map(span_items)
            .collect::<Vec<_>>();
        let traces_file = self.out.join("traces.jsonl");
        let got = wait_items("the Collector to write every span", want.len(), || {
            read_json_traces(&traces_file)
                .iter()
                .flat_map(span_items)
                .collect()
        })
        .await;
        assert_same_items(what, &want, &got);
    }

    fn assert_no_collector_problems(&self) {
        let problems = self.collector.problems();
        assert!(
            problems.is_empty(),
            "the Collector logged problems:\n{}",
            problems.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn collector_pulsarreceiver_reads_what_sluice_wrote() {
    let peers = preflight();
    // Sluice's default compression, lz4.
    let a = SluiceToCollector::start(&peers, "interop-a", &[]).await;
    let (tenant, out) = (&a.tenant, &a.out);
    let sent = Sent::new("interop-a");
    sent.send(&a.sluice.otlp_endpoint(), Some(tenant)).await;

    // Traces: OTLP/JSON lines, parsed strictly.
    a.assert_spans("spans the Collector read from Sluice's topic", &sent.traces)
        .await;

    let metrics_file = out.join("metrics.pb");
    let want = sent.points();
    let got = wait_items(
        "the Collector to write every data point",
        want.len(),
        || {
            read_proto_file::<ExportMetricsServiceRequest>(&metrics_file)
                .iter()
                .flat_map(point_items)
                .collect()
        },
    )
    .await;
    assert_same_items("data points the Collector read", &want, &got);

    let logs_file = out.join("logs.pb");
    let want = sent.records();
    let got = wait_items(
        "the Collector to write every log record",
        want.len(),
        || {
            read_proto_file::<ExportLogsServiceRequest>(&logs_file)
                .iter()
                .flat_map(record_items)
                .collect()
        },
    )
    .await;
    assert_same_items("log records the Collector read", &want, &got);

    a.assert_no_collector_problems();
    eprintln!(
        "A: the Collector read {} spans, {} data points, {} log records from {tenant}'s topics, \
         all as sent",
        sent.spans().len(),
        sent.points().len(),
        sent.records().len()
    );
}

/// Sluice with `compression: <compression>` writes traces the Collector reads as sent.
async fn sluice_compression_is_read_by_the_collector(peers: &Peers, compression: &str) {
    let line = format!("compression: {compression}");
    let name = format!("interop-z-{compression}");
    let run = SluiceToCollector::start(peers, &name, &[&line]).await;
    let sent = trace_requests(0x5111_ce00_7a00_0000, compression, 2, 2);
    let channel = channel(&run.sluice.otlp_endpoint()).await;
    for request in &sent {
        export_traces(&channel, Some(&run.tenant), request.clone())
            .await
            .unwrap_or_else(|status| panic!("trace export refused: {status:?}"));
    }
    let what = format!("spans Sluice wrote with compression {compression}");
    run.assert_spans(&what, &sent).await;
    run.assert_no_collector_problems();
}

/// The compressions of Sluice's producer that the Collector's Pulsar (Go) client reads.
#[tokio::test(flavor = "multi_thread")]
async fn collector_pulsarreceiver_reads_sluice_compressions() {
    let peers = preflight();
    for compression in ["none", "lz4", "zstd", "zlib"] {
        sluice_compression_is_read_by_the_collector(&peers, compression).await;
    }
}

// =============================================================================================
// B: the Collector writes, Sluice reads
// =============================================================================================

/// An export-only Sluice reading a fresh tenant's topics into the test backend, and a
/// Collector (OTLP in) writing them.
struct CollectorToSluice {
    collector: Collector,
    sluice: SluiceProcess,
    backend: Backend,
    tenant: String,
    /// The Collector's OTLP/gRPC endpoint, `host:port`.
    otlp: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl CollectorToSluice {
    /// `env`: extra environment of the Collector (PEER_COMPRESSION, PEER_BATCHING_DELAY, …).
    async fn start(peers: &Peers, name: &str, env: &[(&str, String)]) -> CollectorToSluice {
        let tenant = pulsar::tenant(name);
        let dir = temp_dir();
        let out = dir.path().join("collector-out");
        std::fs::create_dir_all(&out).unwrap();
        let backend = Backend::start().await;

        // Sluice, export only, reading this tenant's topics (they do not exist yet: its
        // consumers create them, and start at the earliest message).
        let consumer = format!(
            "consumer: {{ subscription: {}, tenants: [{tenant}] }}",
            pulsar::tenant("sluice")
        );
        let mut config = SluiceConfig::new(dir.path(), backend.port())
            .with_pulsar(&pulsar::service_url(), &["send_timeout: 10s", &consumer]);
        config.receive = false;
        let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

        let otlp = format!("127.0.0.1:{}", free_port());
        let mut collector_env = vec![
            ("PEER_PULSAR_URL", pulsar::service_url()),
            ("PEER_TENANT", tenant.clone()),
            ("PEER_OTLP_ENDPOINT", otlp.clone()),
            ("PEER_OUT_DIR", out.display().to_string()),
        ];
        collector_env.extend(env.iter().cloned());
        let collector = Collector::start(
            &peers.collector,
            "collector-otlp-to-pulsar.yaml",
            &collector_env,
            dir.path(),
        )
        .await;
        CollectorToSluice {
            collector,
            sluice,
            backend,
            tenant,
            otlp,
            out,
            _dir: dir,
        }
    }

    /// The spans the Collector recorded sending, once there are at least `n`.
    async fn sent_spans(&self, n: usize) -> Vec<Item> {
        let file = self.out.join("sent-traces.pb");
        wait_items("the Collector's record of the spans it sent", n, || {
            read_proto_file::<ExportTraceServiceRequest>(&file)
                .iter()
                .flat_map(span_items)
                .collect()
        })
        .await
    }

    /// The spans the backend got, once there are at least `n`.
    async fn delivered_spans(&self, n: usize) -> Vec<Item> {
        wait_items("Sluice to deliver every span", n, || {
            self.backend.with(|r| {
                r.traces
                    .iter()
                    .flat_map(|x| span_items(&x.request))
                    .collect()
            })
        })
        .await
    }

    fn assert_no_collector_problems(&self) {
        let problems = self.collector.problems();
        assert!(
            problems.is_empty(),
            "the Collector logged problems:\n{}",
            problems.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sluice_exports_what_the_collector_pulsarexporter_wrote() {
    let peers = preflight();
    // Wider than the 10 ms default, so that messages share broker entries for sure.
    let env = [("PEER_BATCHING_DELAY", "200ms".to_string())];
    let b = CollectorToSluice::start(&peers, "interop-b", &env).await;
    let (tenant, otlp, out, backend, sluice) = (&b.tenant, &b.otlp, &b.out, &b.backend, &b.sluice);

    // Known data from this test's OTLP client (no tenant header: the Collector would not
    // forward it anyway; the topic is what names the tenant), then telemetrygen's.
    let sent = Sent::new("interop-b");
    sent.send(&format!("http://{otlp}"), None).await;
    for signal in ["traces", "metrics", "logs"] {
        telemetrygen(&peers.telemetrygen, signal, TELEMETRYGEN_ITEMS, otlp).await;
    }

    // What the Collector sent (its file exporter, next to the pulsarexporter in the same
    // pipelines). telemetrygen makes 2 spans per trace (a root and one child).
    let tee = |name: &str| out.join(name);
    let sent_spans = wait_items(
        "the Collector's record of the spans it sent",
        sent.spans().len() + 2 * TELEMETRYGEN_ITEMS,
        || {
            read_proto_file::<ExportTraceServiceRequest>(&tee("sent-traces.pb"))
                .iter()
                .flat_map(span_items)
                .collect()
        },
    )
    .await;
    let sent_points = wait_items(
        "the Collector's record of the data points it sent",
        sent.points().len() + TELEMETRYGEN_ITEMS,
        || {
            read_proto_file::<ExportMetricsServiceRequest>(&tee("sent-metrics.pb"))
                .iter()
                .flat_map(point_items)
                .collect()
        },
    )
    .await;
    let sent_records = wait_items(
        "the Collector's record of the log records it sent",
        sent.records().len() + TELEMETRYGEN_ITEMS,
        || {
            read_proto_file::<ExportLogsServiceRequest>(&tee("sent-logs.pb"))
                .iter()
                .flat_map(record_items)
                .collect()
        },
    )
    .await;

    // Sluice delivers every item with the topic's tenant.
    let got_spans = wait_items("Sluice to deliver every span", sent_spans.len(), || {
        backend.with(|r| {
            r.traces
                .iter()
                .flat_map(|x| span_items(&x.request))
                .collect()
        })
    })
    .await;
    let got_points = wait_items(
        "Sluice to deliver every data point",
        sent_points.len(),
        || {
            backend.with(|r| {
                r.metrics
                    .iter()
                    .flat_map(|x| point_items(&x.request))
                    .collect()
            })
        },
    )
    .await;
    let got_records = wait_items(
        "Sluice to deliver every log record",
        sent_records.len(),
        || {
            backend.with(|r| {
                r.logs
                    .iter()
                    .flat_map(|x| record_items(&x.request))
                    .collect()
            })
        },
    )
    .await;
    assert_same_items("spans Sluice delivered", &sent_spans, &got_spans);
    assert_same_items("data points Sluice delivered", &sent_points, &got_points);
    assert_same_items("log records Sluice delivered", &sent_records, &got_records);

    // The test's own items are among them exactly (the Collector changed nothing either).
    let contains = |what: &str, want: Vec<Item>, got: &[Item]| {
        let got: Vec<Item> = got
            .iter()
            .filter(|g| want.iter().any(|w| w.bytes == g.bytes))
            .cloned()
            .collect();
        assert_same_items(what, &want, &got);
    };
    contains("the test's spans", sent.spans(), &got_spans);
    contains("the test's data points", sent.points(), &got_points);
    contains("the test's log records", sent.records(), &got_records);

    let tenants = backend.with(|r| {
        let mut t: Vec<Option<String>> = r.traces.iter().map(|x| x.tenant.clone()).collect();
        t.extend(r.metrics.iter().map(|x| x.tenant.clone()));
        t.extend(r.logs.iter().map(|x| x.tenant.clone()));
        t
    });
    assert!(
        tenants
            .iter()
            .all(|t| t.as_deref() == Some(tenant.as_str())),
        "every request must carry the topic's tenant {tenant}: {tenants:?}"
    );

    // The item counts Sluice derived (the Collector's messages carry no `items` property, so
    // Sluice walks the payload) and no message refused as undecodable.
    for (signal, n) in [
        ("traces", sent_spans.len()),
        ("metrics", sent_points.len()),
        ("logs", sent_records.len()),
    ] {
        let labels = [("signal", signal), ("tenant", tenant.as_str())];
        let exported = sluice
            .metric("sluice_exporter_sent_items_total", &labels)
            .await;
        assert_eq!(
            exported, n as f64,
            "sluice_exporter_sent_items_total of {signal}"
        );
        let undecodable = sluice
            .metric("sluice_pulsar_undecodable_messages_total", &labels)
            .await;
        assert_eq!(undecodable, 0.0, "undecodable {signal} messages");
    }

    // What the Collector's messages look like next to Sluice's contract (for the record), and
    // that its producer did batch (so batched entries were read above).
    for signal in ["traces", "metrics", "logs"] {
        let topic = pulsar::topic(signal, tenant);
        let messages = pulsar::read_topic(&topic, usize::MAX, Duration::from_secs(2)).await;
        let keys: BTreeSet<Option<String>> = messages.iter().map(|m| m.key.clone()).collect();
        let properties: BTreeSet<BTreeMap<String, String>> = messages
            .iter()
            .map(|m| m.properties.clone().into_iter().collect())
            .collect();
        let entries = entries(&topic).await;
        if signal == "traces" {
            assert!(
                entries < messages.len() as u64,
                "the Collector's producer should have batched ({} messages in {entries} entries)",
                messages.len()
            );
        }
        eprintln!(
            "B: {topic}: {} messages in {entries} broker entries; keys {:?}; properties {:?}",
            messages.len(),
            keys,
            properties,
        );
    }

    b.assert_no_collector_problems();
    eprintln!(
        "B: Sluice delivered {} spans, {} data points, {} log records that the Collector wrote, \
         all as sent",
        got_spans.len(),
        got_points.len(),
        got_records.len()
    );
}

/// Every compression the pulsarexporter offers is one Sluice's consumer reads.
#[tokio::test(flavor = "multi_thread")]
async fn sluice_reads_every_collector_compression() {
    let peers = preflight();
    for compression in ["none", "lz4", "zlib", "zstd"] {
        let env = [("PEER_COMPRESSION", compression.to_string())];
        let run = CollectorToSluice::start(&peers, &format!("interop-y-{compression}"), &env).await;
        let sent = trace_requests(0x5111_ce00_7900_0000, compression, 2, 2);
        let channel = channel(&format!("http://{}", run.otlp)).await;
        for request in &sent {
            export_traces(&channel, None, request.clone())
                .await
                .unwrap_or_else(|status| panic!("the Collector refused: {status:?}"));
        }
        let n = sent.iter().flat_map(span_items).count();
        let written = run.sent_spans(n).await;
        let delivered = run.delivered_spans(written.len()).await;
        let what = format!("spans the Collector wrote with compression {compression}");
        assert_same_items(&what, &written, &delivered);
        let labels = [("signal", "traces"), ("tenant", run.tenant.as_str())];
        let undecodable = run
            .sluice
            .metric("sluice_pulsar_undecodable_messages_total", &labels)
            .await;
        assert_eq!(undecodable, 0.0, "undecodable messages with {compression}");
        run.assert_no_collector_problems();
    }
}

// =============================================================================================
// C: redelivery of the Collector's messages: a backend outage, an exporter SIGKILLed;
// with the pulsarexporter's producer batching off (passes) and on (its default; known gap)
// =============================================================================================

/// An OTLP trace backend that accepts the first `accept` requests, then answers
/// `UNAVAILABLE` (retryable) while `failing` is set, and accepts again once it is cleared;
/// records what it accepted.
struct Flaky {
    addr: std::net::SocketAddr,
    failing: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct FlakySvc {
    accept: usize,
    seen: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for FlakySvc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        if n >= self.accept && self.failing.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("test backend: down for now"));
        }
        self.accepted.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

impl Flaky {
    async fn start(accept: usize) -> Flaky {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let failing = Arc::new(AtomicBool::new(true));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let svc = FlakySvc {
            accept,
            seen: Default::default(),
            failing: failing.clone(),
            accepted: accepted.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(svc)
                        .accept_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Zstd),
                )
                .serve_with_incoming(TcpIncoming::from(listener))
                .await;
        });
        Flaky {
            addr,
            failing,
            accepted,
            task,
        }
    }

    fn recover(&self) {
        self.failing.store(false, Ordering::SeqCst);
    }

    fn spans(&self) -> Vec<Item> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .flat_map(span_items)
            .collect()
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Everything a scenario of C/D needs: a Collector that batches hard (1 s window), ten
/// requests of 20 spans written through it (checked to share broker entries), and an
/// export-only Sluice config for the tenant (no batch processor: one message per delivery;
/// short retries, then a nack).
struct Batched {
    _collector: Collector,
    tenant: String,
    topic: String,
    /// The spans of the messages as the Collector wrote them.
    written: Vec<Item>,
    messages: usize,
    entries: u64,
    subscription: String,
    config: SluiceConfig,
}

impl Batched {
    /// `batching`: the pulsarexporter's default producer batching (a 1 s window here), or
    /// `producer.disable_batching: true` (one message per entry, like Sluice's producer).
    async fn write(
        peers: &Peers,
        name: &str,
        dir: &Path,
        backend_port: u16,
        batching: bool,
    ) -> Batched {
        let tenant = pulsar::tenant(name);
        let out = dir.join("collector-out");
        std::fs::create_dir_all(&out).unwrap();
        let otlp = format!("127.0.0.1:{}", free_port());
        let collector = Collector::start(
            &peers.collector,
            "collector-otlp-to-pulsar.yaml",
            &[
                ("PEER_PULSAR_URL", pulsar::service_url()),
                ("PEER_TENANT", tenant.clone()),
                ("PEER_OTLP_ENDPOINT", otlp.clone()),
                ("PEER_OUT_DIR", out.display().to_string()),
                ("PEER_BATCHING_DELAY", "1s".to_string()),
                ("PEER_DISABLE_BATCHING", (!batching).to_string()),
            ],
            dir,
        )
        .await;
        // Ten requests of 20 spans, back to back: ten messages in one (or very few) entries.
        let client = channel(&format!("http://{otlp}")).await;
        for r in 0..10u64 {
            let spans = common::otlp::named_spans(&format!("{tenant}-r{r}"), r * 20, 20);
            export_traces(
                &client,
                None,
                common::otlp::trace_request(name, None, spans),
            )
            .await
            .unwrap_or_else(|status| panic!("the Collector refused a request: {status:?}"));
        }
        let topic = pulsar::topic("traces", &tenant);
        let messages = pulsar::read_topic(&topic, 10, WAIT).await;
        assert_eq!(messages.len(), 10, "messages on {topic}");
        let entries = entries(&topic).await;
        if batching {
            assert!(
                entries < messages.len() as u64,
                "the Collector's producer should have batched ({} messages in {entries} entries)",
                messages.len()
            );
        } else {
            assert_eq!(
                entries,
                messages.len() as u64,
                "one entry per message on {topic}"
            );
        }
        let written = messages
            .iter()
            .map(|m| ExportTraceServiceRequest::decode(m.payload.as_slice()).expect("OTLP"))
            .flat_map(|r| span_items(&r))
            .collect();

        let subscription = pulsar::tenant("sluice");
        let consumer = format!(
            "consumer: {{ subscription: {subscription}, tenants: [{tenant}], \
             redelivery_delay: 100ms, max_redeliveries: 1000 }}"
        );
        let mut config = SluiceConfig::new(dir, backend_port)
            .with_pulsar(&pulsar::service_url(), &["send_timeout: 10s", &consumer]);
        config.receive = false;
        config.batch_traces = false;
        config.otlp_retry =
            "{ initial_interval: 50ms, max_interval: 100ms, max_elapsed_time: 300ms }".into();
        Batched {
            _collector: collector,
            tenant,
            topic,
            written,
            messages: messages.len(),
            entries,
            subscription,
            config,
        }
    }

    /// The subscription's backlog as the broker sees it.
    async fn backlog(&self) -> String {
        match stats(&self.topic, "stats").await {
            Ok(s) => {
                let sub = &s["subscriptions"][self.subscription.as_str()];
                format!(
                    "msgBacklog {}, unackedMessages {}",
                    sub["msgBacklog"], sub["unackedMessages"]
                )
            }
            Err(e) => e,
        }
    }

    /// Waits until every span written but not in `delivered_before` is among `got()`, or 30 s;
    /// then asserts it (duplicates allowed: at least once).
    async fn assert_rest_arrives(
        &self,
        what: &str,
        delivered_before: &[Item],
        got: impl Fn() -> Vec<Item>,
    ) {
        let want: Vec<Item> = self
            .written
            .iter()
            .filter(|w| !delivered_before.iter().any(|a| a.bytes == w.bytes))
            .cloned()
            .collect();
        let found = |got: &[Item]| -> Vec<Item> {
            let mut found: Vec<Item> = got
                .iter()
                .filter(|g| want.iter().any(|w| w.bytes == g.bytes))
                .cloned()
                .collect();
            found.sort_by(|a, b| a.bytes.cmp(&b.bytes));
            found.dedup_by(|a, b| a.bytes == b.bytes);
            found
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while found(&got()).len() < want.len() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_same_items(what, &want, &found(&got()));
    }
}

async fn wait_metric(sluice: &SluiceProcess, name: &str, labels: &[(&str, &str)], at_least: f64) {
    let what = format!("{name} {labels:?} >= {at_least}");
    wait_for(&what, WAIT, || async {
        let v = sluice.metric(name, labels).await;
        if v >= at_least {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    })
    .await;
}

/// The backend takes the first request and then is down, so the other messages are refused
/// and nacked after their retries; once the backend is back, they must all arrive.
async fn backend_outage(name: &str, batching: bool) {
    let peers = preflight();
    let dir = temp_dir();
    let backend = Flaky::start(1).await;
    let b = Batched::write(&peers, name, dir.path(), backend.addr.port(), batching).await;
    let sluice = SluiceProcess::start(&b.config.yaml(), dir.path()).await;
    let labels = [("signal", "traces"), ("tenant", b.tenant.as_str())];
    wait_metric(&sluice, "sluice_exporter_sent_items_total", &labels, 20.0).await;
    wait_metric(&sluice, "sluice_pulsar_redeliveries_total", &labels, 1.0).await;
    let backlog = b.backlog().await;
    backend.recover();
    let first = backend.spans();
    eprintln!(
        "{name}: {} messages in {} entries; {} spans accepted, then the backend refused and \
         Sluice nacked; subscription at that point: {backlog}",
        b.messages,
        b.entries,
        first.len()
    );
    b.assert_rest_arrives(
        "spans delivered after the backend came back",
        &first,
        || backend.spans(),
    )
    .await;
}

/// The exporter is SIGKILLed while the backend is down, after one message was delivered; a
/// new exporter (and a healthy backend) must deliver everything the first one had not.
async fn exporter_killed(name: &str, batching: bool) {
    let peers = preflight();
    let dir = temp_dir();
    let first = Flaky::start(1).await;
    let mut b = Batched::write(&peers, name, dir.path(), first.addr.port(), batching).await;
    let mut exporter = SluiceProcess::start(&b.config.yaml(), dir.path()).await;
    let labels = [("signal", "traces"), ("tenant", b.tenant.as_str())];
    wait_metric(&exporter, "sluice_exporter_sent_items_total", &labels, 20.0).await;
    wait_metric(&exporter, "sluice_exporter_retries_total", &labels, 1.0).await;
    let backlog = b.backlog().await;
    exporter.kill();
    let accepted = first.spans();
    eprintln!(
        "{name}: {} messages in {} entries; exporter 1 delivered {} spans, then was killed; \
         subscription before the kill: {backlog}",
        b.messages,
        b.entries,
        accepted.len()
    );

    let backend = Backend::start().await;
    b.config.backend_port = backend.port();
    let config = b.config.clone().with_fresh_ports();
    let _exporter = SluiceProcess::start(&config.yaml(), dir.path()).await;
    b.assert_rest_arrives(
        "spans the restarted exporter delivered (everything exporter 1 had not)",
        &accepted,
        || {
            backend.with(|r| {
                r.traces
                    .iter()
                    .flat_map(|x| span_items(&x.request))
                    .collect()
            })
        },
    )
    .await;
}

/// With `producer.disable_batching: true` every Collector message is an entry of its own,
/// and Sluice redelivers exactly what it has not acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn unbatched_collector_messages_survive_a_backend_outage() {
    backend_outage("interop-c", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unbatched_collector_messages_survive_an_exporter_killed() {
    exporter_killed("interop-d", false).await;
}

/// The Collector's default: its producer batches, several messages share one broker entry,
/// and the broker acknowledges an entry as a whole. Sluice must acknowledge an entry only once
/// all its messages are settled, and a nack must bring the whole entry back.
#[tokio::test(flavor = "multi_thread")]
async fn batched_collector_entries_survive_a_backend_outage() {
    backend_outage("interop-e", true).await;
}

/// As above, with the exporter SIGKILLed after the first message: the rest of the entry must
/// still reach the next exporter.
#[tokio::test(flavor = "multi_thread")]
async fn batched_collector_entries_survive_an_exporter_killed_mid_entry() {
    exporter_killed("interop-f", true).await;
}
