//! Interoperability with the OpenTelemetry Collector through Pulsar (docs/contracts.md, "Pulsar
//! message format") and Kafka ("Kafka buffer"): the message contract is meant to be
//! byte-compatible with the Collector's `pulsarexporter` / `pulsarreceiver` and `kafkaexporter` /
//! `kafkareceiver` `otlp_proto` encoding, and these tests check it against the real thing.
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
//! * **Kafka A and B** (`kafka.rs`): the same two directions and comparisons through Kafka.
//!   A: Sluice writes first, then the Collector's `kafkareceiver` reads the tenant's topics in
//!   a new consumer group from the earliest offset. B: the Collector's `kafkaexporter` writes
//!   each request to the topic its client names in a header (`topic_from_metadata_key`), the
//!   tenant's topic of that signal; Sluice reads them in a consumer group of its own.
//!
//! Needs the peer binaries (`make peers`: `.cache/peers/bin/otelcol-sluice-peer` and
//! `telemetrygen`), the Pulsar broker (`SLUICE_PULSAR_URL`, `SLUICE_PULSAR_ADMIN_URL`) and the
//! Kafka broker (`SLUICE_KAFKA_BROKERS`); `make interop` provides all of it. Without them the
//! tests fail, they never skip.

#[path = "../common/mod.rs"]
mod common;

mod collector_output;
mod collector_to_sluice;
mod items;
mod kafka;
mod peers;
mod redelivery;
mod requests;
mod sluice_to_collector;

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
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
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

use collector_output::*;
use items::*;
use peers::*;
use requests::*;

pub(crate) const WAIT: Duration = Duration::from_secs(60);
pub(crate) const TELEMETRYGEN_ITEMS: usize = 25;
