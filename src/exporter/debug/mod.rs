//! The debug exporter: logs batches instead of sending them, to see what flows through a
//! pipeline. `basic` never decodes the payload; `normal` and `detailed` decode it with prost,
//! which is fine for a debugging aid but not for production volumes.

mod config;

pub use config::{DebugExporterConfig, Verbosity};

use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::batch::Batch;
use crate::exporter::retry::RetryConfig;
use crate::exporter::{
    Accepted, BuildError, ExportError, Exporter, ExporterConfig, ExporterHandle,
};
use crate::otlp::decoded::data_point_count;
use crate::signal::Signal;

pub struct DebugExporter {
    verbosity: Verbosity,
}

impl ExporterConfig for DebugExporterConfig {
    fn build(&self, id: &str) -> Result<ExporterHandle, BuildError> {
        Ok(ExporterHandle {
            id: id.to_string(),
            exporter: Arc::new(DebugExporter::new(self)),
            // Logging cannot fail transiently, so there is nothing to configure.
            retry: RetryConfig::default(),
            // Writing log lines needs no bound on concurrency.
            slots: None,
        })
    }
}

impl DebugExporter {
    pub fn new(config: &DebugExporterConfig) -> Self {
        DebugExporter {
            verbosity: config.verbosity,
        }
    }
}

#[async_trait]
impl Exporter for DebugExporter {
    async fn send(&self, batch: &Batch) -> Result<Accepted, ExportError> {
        tracing::info!(
            tenant = %batch.tenant, signal = %batch.signal, items = batch.items,
            bytes = batch.payload.len(), "debug exporter: batch"
        );
        match self.verbosity {
            Verbosity::Basic => {}
            Verbosity::Normal => {
                for (index, (attributes, items)) in resources(batch)?.into_iter().enumerate() {
                    tracing::info!(
                        tenant = %batch.tenant, signal = %batch.signal, resource = index,
                        attributes, items, "debug exporter: resource"
                    );
                }
            }
            Verbosity::Detailed => {
                let json = to_json(batch)?;
                tracing::info!(
                    tenant = %batch.tenant, signal = %batch.signal, request = %json,
                    "debug exporter: request"
                );
            }
        }
        Ok(Accepted::ALL)
    }
}

/// A payload that does not decode will not decode on a retry either.
fn undecodable(source: impl std::error::Error + Send + Sync + 'static) -> ExportError {
    ExportError::Permanent {
        reason: "decode",
        source: Box::new(source),
    }
}

fn attribute_count(resource: &Option<Resource>) -> usize {
    resource.as_ref().map_or(0, |r| r.attributes.len())
}

/// `(attribute count, item count)` of each resource in the batch.
fn resources(batch: &Batch) -> Result<Vec<(usize, usize)>, ExportError> {
    let payload = &batch.payload.contiguous()[..];
    Ok(match batch.signal {
        Signal::Traces => ExportTraceServiceRequest::decode(payload)
            .map_err(undecodable)?
            .resource_spans
            .iter()
            .map(|rs| {
                let items = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
                (attribute_count(&rs.resource), items)
            })
            .collect(),
        Signal::Metrics => ExportMetricsServiceRequest::decode(payload)
            .map_err(undecodable)?
            .resource_metrics
            .iter()
            .map(|rm| {
                let items = rm
                    .scope_metrics
                    .iter()
                    .flat_map(|s| &s.metrics)
                    .map(data_point_count)
                    .sum();
                (attribute_count(&rm.resource), items)
            })
            .collect(),
        Signal::Logs => ExportLogsServiceRequest::decode(payload)
            .map_err(undecodable)?
            .resource_logs
            .iter()
            .map(|rl| {
                let items = rl.scope_logs.iter().map(|s| s.log_records.len()).sum();
                (attribute_count(&rl.resource), items)
            })
            .collect(),
    })
}

/// The whole request as one line of OTLP/JSON-shaped JSON (camelCase field names).
fn to_json(batch: &Batch) -> Result<String, ExportError> {
    let payload = &batch.payload.contiguous()[..];
    let json = match batch.signal {
        Signal::Traces => {
            serde_json::to_string(&ExportTraceServiceRequest::decode(payload).map_err(undecodable)?)
        }
        Signal::Metrics => serde_json::to_string(
            &ExportMetricsServiceRequest::decode(payload).map_err(undecodable)?,
        ),
        Signal::Logs => {
            serde_json::to_string(&ExportLogsServiceRequest::decode(payload).map_err(undecodable)?)
        }
    };
    json.map_err(|e| ExportError::Permanent {
        reason: "encode",
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;
    use crate::batch::now_ms;
    use crate::tenant::TenantId;

    fn traces_batch(payload: Bytes) -> Batch {
        Batch {
            tenant: TenantId::parse("t1").unwrap(),
            signal: Signal::Traces,
            payload: payload.into(),
            items: 2,
            received_at_ms: now_ms(),
            traceparent: None,
        }
    }

    fn request() -> ExportTraceServiceRequest {
        let attr = KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("checkout".into())),
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![attr],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(), Span::default()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn exporter(verbosity: Verbosity) -> DebugExporter {
        DebugExporter::new(&DebugExporterConfig { verbosity })
    }

    #[tokio::test]
    async fn logs_at_every_verbosity() {
        let batch = traces_batch(request().encode_to_vec().into());
        for v in [Verbosity::Basic, Verbosity::Normal, Verbosity::Detailed] {
            exporter(v).send(&batch).await.unwrap();
        }
        assert_eq!(resources(&batch).unwrap(), vec![(1, 2)]);
        let json = to_json(&batch).unwrap();
        assert!(
            json.contains("resourceSpans") && json.contains("checkout"),
            "{json}"
        );
    }

    #[tokio::test]
    async fn undecodable_payload_is_permanent_but_basic_never_fails() {
        let batch = traces_batch(Bytes::from_static(b"\xff\xff\xff"));
        exporter(Verbosity::Basic).send(&batch).await.unwrap();
        for v in [Verbosity::Normal, Verbosity::Detailed] {
            let err = exporter(v).send(&batch).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    ExportError::Permanent {
                        reason: "decode",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn config_defaults_to_basic_and_refuses_unknown_fields() {
        let parsed: DebugExporterConfig =
            crate::config::parse_component(serde_yaml::Value::Null).unwrap();
        assert_eq!(parsed.verbosity, Verbosity::Basic);
        let value = serde_yaml::from_str("verbosity: detailed").unwrap();
        let parsed: DebugExporterConfig = crate::config::parse_component(value).unwrap();
        assert_eq!(parsed.verbosity, Verbosity::Detailed);
        let value = serde_yaml::from_str("sampling_initial: 2").unwrap();
        assert!(crate::config::parse_component::<DebugExporterConfig>(value).is_err());
    }
}
