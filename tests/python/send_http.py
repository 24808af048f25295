"""Sends spans, logs and metrics to an OTLP/HTTP endpoint with the official OpenTelemetry
Python SDK and its HTTP exporter (opentelemetry-exporter-otlp-proto-http).

Usage: send_http.py BASE_URL COUNT TENANT

Creates COUNT spans "py-http-span-<i>" (attribute "seq" = i, gzip-compressed), COUNT log
records "py-http-log-<i>", and a counter "py.http.requests" of value COUNT, under service
"py-http-client", each exported in one call with the header x-scope-orgid: TENANT to
BASE_URL/v1/{traces,logs,metrics}. Exits non-zero unless every export reports success.
"""

import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def check(what: str, result, success) -> bool:
    if result is not success:
        print(f"export of {what} failed: {result}", file=sys.stderr)
        return False
    return True


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    base, count, tenant = sys.argv[1].rstrip("/"), int(sys.argv[2]), sys.argv[3]
    headers = {"x-scope-orgid": tenant}
    resource = Resource.create({"service.name": "py-http-client"})
    ok = True

    # Collect first, then export in one call whose result is checked: a batch processor
    # would swallow export failures.
    spans = InMemorySpanExporter()
    tracers = TracerProvider(resource=resource)
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracers.get_tracer("sluice-it-python-http")
    for i in range(count):
        with tracer.start_as_current_span(f"py-http-span-{i}") as span:
            span.set_attribute("seq", i)
    exporter = OTLPSpanExporter(
        endpoint=f"{base}/v1/traces", headers=headers, compression=Compression.Gzip, timeout=20
    )
    ok &= check("spans", exporter.export(spans.get_finished_spans()), SpanExportResult.SUCCESS)
    exporter.shutdown()

    logs = InMemoryLogRecordExporter()
    loggers = LoggerProvider(resource=resource)
    loggers.add_log_record_processor(SimpleLogRecordProcessor(logs))
    logger = loggers.get_logger("sluice-it-python-http")
    for i in range(count):
        logger.emit(body=f"py-http-log-{i}", attributes={"seq": i})
    exporter = OTLPLogExporter(endpoint=f"{base}/v1/logs", headers=headers, timeout=20)
    ok &= check("logs", exporter.export(logs.get_finished_logs()), LogRecordExportResult.SUCCESS)
    exporter.shutdown()

    reader = InMemoryMetricReader()
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    counter = meters.get_meter("sluice-it-python-http").create_counter("py.http.requests")
    counter.add(count, {"route": "/x"})
    exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=headers, timeout=20)
    ok &= check("metrics", exporter.export(reader.get_metrics_data()), MetricExportResult.SUCCESS)
    exporter.shutdown()

    tracers.shutdown()
    loggers.shutdown()
    meters.shutdown()
    if not ok:
        return 1
    print(f"exported {count} spans, {count} logs and a counter to {base} for tenant {tenant}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
