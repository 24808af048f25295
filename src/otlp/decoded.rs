//! Helpers over decoded OTLP messages, for the few places that decode (processors that look
//! inside items, the debug exporter).

use std::convert::Infallible;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::batch::recycled::SHARED;
use crate::signal::Signal;

/// The data points of a metric, whatever its type.
pub fn data_point_count(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// What `prost`'s `encode_to_vec` does, into a buffer of [`SHARED`].
fn encode(message: &impl Message) -> Bytes {
    let Ok(encoded) = SHARED.filled::<Infallible>(message.encoded_len(), |buf| {
        message.encode_raw(buf);
        Ok(())
    });
    encoded
}

/// A whole export request of one signal, decoded: what processors that look inside items
/// change. The bytes it came from stay the source of truth until it is encoded again.
#[derive(Clone, Debug, PartialEq)]
pub enum DecodedRequest {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

impl DecodedRequest {
    pub fn decode(signal: Signal, bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        Ok(match signal {
            Signal::Traces => Self::Traces(ExportTraceServiceRequest::decode(bytes)?),
            Signal::Logs => Self::Logs(ExportLogsServiceRequest::decode(bytes)?),
            Signal::Metrics => Self::Metrics(ExportMetricsServiceRequest::decode(bytes)?),
        })
    }

    /// The request encoded again, into a buffer that is reused once the bytes are dropped
    /// when it is large ([`crate::batch::recycled`]).
    pub fn encode_to_bytes(&self) -> Bytes {
        match self {
            Self::Traces(r) => encode(r),
            Self::Logs(r) => encode(r),
            Self::Metrics(r) => encode(r),
        }
    }

    /// Whether no resource entry is left.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Traces(r) => r.resource_spans.is_empty(),
            Self::Logs(r) => r.resource_logs.is_empty(),
            Self::Metrics(r) => r.resource_metrics.is_empty(),
        }
    }

    /// The `resource` field of every resource entry, in order (`None` where it is absent).
    pub fn resources_mut(&mut self) -> Vec<&mut Option<Resource>> {
        match self {
            Self::Traces(r) => r
                .resource_spans
                .iter_mut()
                .map(|e| &mut e.resource)
                .collect(),
            Self::Logs(r) => r
                .resource_logs
                .iter_mut()
                .map(|e| &mut e.resource)
                .collect(),
            Self::Metrics(r) => r
                .resource_metrics
                .iter_mut()
                .map(|e| &mut e.resource)
                .collect(),
        }
    }
}
