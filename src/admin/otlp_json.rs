//! Batches as OTLP/JSON, one request per line, for `sluice tap`: the payload (the protobuf the
//! client sent) decoded and written with the OTLP/JSON field names (lowerCamelCase, hex
//! trace and span ids).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::signal::Signal;

/// One line (without its newline). A payload that does not decode, which ingest never
/// stores, becomes `{"error": ...}` rather than ending the tap.
pub fn render(signal: Signal, payload: &[u8]) -> String {
    let json = match signal {
        Signal::Traces => to_json(ExportTraceServiceRequest::decode(payload)),
        Signal::Metrics => to_json(ExportMetricsServiceRequest::decode(payload)),
        Signal::Logs => to_json(ExportLogsServiceRequest::decode(payload)),
    };
    json.unwrap_or_else(|e| serde_json::json!({ "error": e }).to_string())
}

fn to_json<T: serde::Serialize>(decoded: Result<T, prost::DecodeError>) -> Result<String, String> {
    let request = decoded.map_err(|e| format!("undecodable payload: {e}"))?;
    serde_json::to_string(&request).map_err(|e| e.to_string())
}
