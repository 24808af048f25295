//! Sends Sluice's own spans (`service.telemetry.traces`, docs/contracts.md, "Own traces"):
//! the service builds an OTLP exporter of Sluice's own from the settings and drains the
//! queue that `telemetry::traces` records into, in batches. A batch that cannot be sent is
//! dropped and counted, never retried: own spans must not queue up without bound or slow
//! anything.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use prost::Message;
use tokio::sync::mpsc;

use crate::batch::{now_ms, Batch};
use crate::exporter::otlp::OtlpExporterConfig;
use crate::exporter::otlp_http::OtlpHttpExporterConfig;
use crate::exporter::retry::RetryConfig;
use crate::exporter::sending::SendingQueueConfig;
use crate::exporter::{BuildError, Exporter, ExporterConfig};
use crate::signal::Signal;
use crate::telemetry::traces::{self, Protocol, TracesConfig, OWN_TELEMETRY_HEADER};
use crate::tenant::TenantId;

/// Most spans in one export request.
const MAX_BATCH: usize = 512;
/// Longest a finished span waits for its batch to fill.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Deadline of one export call.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// The exporter's id in logs and metrics.
const ID: &str = "service.telemetry.traces";

/// Turns own tracing on when `config` asks for it, and starts sending. Must run inside a
/// tokio runtime, before the pipelines start.
pub fn start(config: &TracesConfig) -> Result<(), BuildError> {
    if !config.enabled() {
        return Ok(());
    }
    let exporter = build_exporter(config)?;
    if let Some(queue) = traces::install(config) {
        tokio::spawn(send_spans(queue, exporter));
        tracing::info!(ratio = config.sampling_ratio, endpoint = ?config.endpoint, "own traces on");
    }
    Ok(())
}

/// Sluice's `otlp` or `otlphttp` exporter with the settings given, and no retries.
fn build_exporter(config: &TracesConfig) -> Result<Arc<dyn Exporter>, BuildError> {
    let endpoint = config.endpoint.clone().unwrap_or_default();
    let mut headers = config.headers.clone();
    headers.insert(OWN_TELEMETRY_HEADER.to_string(), "true".to_string());
    let retry_on_failure = RetryConfig {
        enabled: false,
        ..RetryConfig::default()
    };
    let handle = match config.protocol {
        Protocol::Grpc => OtlpExporterConfig {
            endpoint,
            tls: config.tls.clone(),
            headers,
            compression: Default::default(),
            timeout: EXPORT_TIMEOUT,
            retry_on_failure,
            sending_queue: SendingQueueConfig::default(),
        }
        .build(ID)?,
        Protocol::HttpProtobuf => OtlpHttpExporterConfig {
            endpoint: Some(endpoint),
            traces_endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            encoding: Default::default(),
            compression: Default::default(),
            headers,
            timeout: EXPORT_TIMEOUT,
            tls: config.tls.clone(),
            retry_on_failure,
            sending_queue: SendingQueueConfig::default(),
        }
        .build(ID)?,
    };
    Ok(handle.exporter)
}

/// Collects finished spans into requests of up to [`MAX_BATCH`], sent at least every
/// [`FLUSH_INTERVAL`], one at a time.
async fn send_spans(mut queue: mpsc::Receiver<ProtoSpan>, exporter: Arc<dyn Exporter>) {
    // The tenant of the batch only fills `{tenant}` in headers; a valid id never fails.
    let Ok(tenant) = TenantId::parse("sluice") else {
        return;
    };
    loop {
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut spans = vec![first];
        let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
        while spans.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(span)) => spans.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let count = spans.len() as u64;
        let batch = Batch {
            tenant: tenant.clone(),
            signal: Signal::Traces,
            payload: traces::request(spans).encode_to_vec().into(),
            items: u32::try_from(count).unwrap_or(u32::MAX),
            received_at_ms: now_ms(),
            traceparent: None,
        };
        match exporter.send(&batch).await {
            Ok(_) => metrics::counter!("sluice_own_spans_exported_total").increment(count),
            Err(e) => {
                metrics::counter!("sluice_own_spans_dropped_total", "reason" => "export_failed")
                    .increment(count);
                tracing::debug!(error = %crate::error::error_chain(&e), spans = count, "cannot send own spans");
            }
        }
    }
}
