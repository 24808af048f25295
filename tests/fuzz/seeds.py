#!/usr/bin/env python3
"""Seed corpora of the fuzz targets (tests/fuzz/fuzz_targets/), written to the directory given
(one folder per target), from the project's own test data: OTLP requests of every signal as
the SDKs send them (protobuf, OTLP/JSON, gRPC-framed, gzip and zlib compressed), disk buffer
records in the segment format (docs/contracts.md, "Disk buffer"), Pulsar message payloads,
and every shipped Sluice config. Run by `make fuzz-smoke` and `make fuzz` with the test venv's
Python (opentelemetry-proto); the first byte of some seeds selects a signal or encoding, as the
targets read it (src/fuzzing.rs).
"""

import gzip
import pathlib
import struct
import sys
import zlib

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

REPO = pathlib.Path(__file__).resolve().parents[2]


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def requests():
    """One request per signal (selector 0 traces, 1 metrics, 2 logs), with a tenant attribute."""
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "seed"}},
                               {"key": "tenant.id", "value": {"stringValue": "acme"}}]}
    traces = ExportTraceServiceRequest()
    json_format.ParseDict({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [
        {"traceId": "AAECAwQFBgcICQoLDA0ODw==", "spanId": "AAECAwQFBgc=", "name": "GET /",
         "kind": 2, "attributes": [{"key": "http.route", "value": {"stringValue": "/"}}]}]}]}]},
        traces)
    metrics = ExportMetricsServiceRequest()
    json_format.ParseDict({"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [
        {"name": "requests", "sum": {"dataPoints": [{"asInt": "3", "timeUnixNano": "1"}],
                                     "aggregationTemporality": 2, "isMonotonic": True}},
        {"name": "latency", "gauge": {"dataPoints": [{"asDouble": 0.5}]}}]}]}]}, metrics)
    logs = ExportLogsServiceRequest()
    json_format.ParseDict({"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [
        {"severityNumber": 9, "body": {"stringValue": "hello"},
         "attributes": [{"key": "user.id", "value": {"intValue": "7"}}]}]}]}]}, logs)
    return [traces, metrics, logs]


def record(payload: bytes, items: int, traceparent: bytes = b"") -> bytes:
    body = struct.pack("<BIQH", 1, items, 1_700_000_000_000, len(traceparent)) + traceparent
    body += struct.pack("<H", 0) + payload
    return struct.pack("<II", len(body), crc32c(body)) + body


def main(out: pathlib.Path) -> None:
    seeds = {name: [] for name in ("otlp_protobuf", "otlp_json", "grpc_frame", "decompression",
                                   "disk_segment", "pulsar_message", "config_yaml")}
    for selector, request in enumerate(requests()):
        wire = request.SerializeToString()
        seeds["otlp_protobuf"].append(wire)
        seeds["otlp_json"].append(bytes([selector]) + json_format.MessageToJson(request).encode())
        seeds["grpc_frame"].append(b"\x00" + b"\x00" + struct.pack(">I", len(wire)) + wire)
        zipped = gzip.compress(wire)
        seeds["grpc_frame"].append(b"\x01" + b"\x01" + struct.pack(">I", len(zipped)) + zipped)
        seeds["decompression"].append(b"\x01" + zipped)
        seeds["decompression"].append(b"\x03" + zlib.compress(wire))
        seeds["pulsar_message"].append(bytes([selector]) + b"1\n" + wire)
        seeds["pulsar_message"].append(bytes([selector]) + b"\n" + wire)
        seeds["disk_segment"].append(
            record(wire, 1, b"00-000102030405060708090a0b0c0d0e0f-0001020304050607-01")
            + record(wire, 1))
    # Requests in the canonical form the one-pass OTLP/JSON transcoder takes (protojson above
    # writes enums by name, which only the full decoder reads), so the fuzzer starts on both.
    testdata = REPO / "src" / "receiver" / "otlp" / "http" / "testdata"
    for selector, signal in enumerate(("traces", "metrics", "logs")):
        body = (testdata / f"every_field_{signal}.json").read_bytes()
        seeds["otlp_json"].append(bytes([selector]) + body)
    configs = [REPO / "config.yaml", *sorted((REPO / "deploy").glob("**/*.yaml"))]
    for path in configs:
        text = path.read_bytes()
        if b"receivers:" in text and b"pipelines:" in text and b"otelcol" not in path.name.encode():
            seeds["config_yaml"].append(text)
    for name, items in seeds.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(items):
            (folder / f"seed-{i:02}").write_bytes(data)
        print(f"{name}: {len(items)} seeds")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
