"""Sends spans to an OTLP/gRPC endpoint with the official OpenTelemetry Python SDK.

Usage: send_traces.py ENDPOINT COUNT TENANT

Creates COUNT spans named "py-span-<i>" (attribute "seq" = i) under service "py-client",
exports them with opentelemetry-exporter-otlp-proto-grpc using the header
x-scope-orgid: TENANT, and exits non-zero unless the exporter reports success.
"""

import sys

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, count, tenant = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    # Collect the finished spans first, then export them in one call whose result we check:
    # a batch processor would swallow export failures.
    collected = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "py-client"}))
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("sluice-it-python")
    for i in range(count):
        with tracer.start_as_current_span(f"py-span-{i}") as span:
            span.set_attribute("seq", i)
    spans = collected.get_finished_spans()
    if len(spans) != count:
        print(f"expected {count} finished spans, have {len(spans)}", file=sys.stderr)
        return 1

    exporter = OTLPSpanExporter(
        endpoint=endpoint, insecure=True, headers=(("x-scope-orgid", tenant),), timeout=20
    )
    result = exporter.export(spans)
    exporter.shutdown()
    provider.shutdown()
    if result is not SpanExportResult.SUCCESS:
        print(f"export of {count} spans to {endpoint} failed: {result}", file=sys.stderr)
        return 1
    print(f"exported {count} spans to {endpoint} for tenant {tenant}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
