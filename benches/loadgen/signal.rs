//! Which OTLP signal the load client sends and the sink counts: the bench's "span" is one
//! item of it (a span, a log record, or a metric data point).

/// An OTLP signal, as `--signal` names it.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Signal {
    #[default]
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    /// The gRPC method every request of this signal goes to.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }

    /// The OTLP/HTTP path under the endpoint's base URL.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Logs => "/v1/logs",
            Signal::Metrics => "/v1/metrics",
        }
    }
}
