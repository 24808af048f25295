#!/usr/bin/env python3
"""Reference decisions of the OpenTelemetry Collector's `probabilistic_sampler` processor.

Regenerates tests/data/probabilistic_sampler/<case>.tsv: for each case below, the real Collector
(the peer build of deploy/peers/otelcol-builder.yaml, contrib v0.145.0) samples a fixed,
deterministic input, and the file records, item by item, whether it kept the item and what it
wrote into it. Sluice's own `probabilistic_sampler` is tested to make the same decisions.

    bash deploy/peers/install.sh                     # builds .cache/peers/bin/otelcol-sluice-peer
    bash deploy/scripts/python-env.sh                # creates .cache/venv (opentelemetry-proto)
    .cache/venv/bin/python deploy/peers/sampler-reference.py [COLLECTOR_BINARY]

COLLECTOR_BINARY defaults to .cache/peers/bin/otelcol-sluice-peer. Only the standard library and
the opentelemetry-proto protobuf classes are used. The input is fixed (derived from SHA-256 of
fixed strings), so a rerun against the same Collector writes identical files.

Per case the script starts the Collector with an `otlp` receiver (HTTP, a free localhost port),
the `probabilistic_sampler` processor configured for the case and the `file` exporter (OTLP/JSON
lines), and no batch processor. It waits for the receiver's port to accept connections, POSTs the
items as protobuf ExportTraceServiceRequest / ExportLogsServiceRequest to /v1/traces or /v1/logs
(1000 items a request), polls the Collector's own metrics (Prometheus endpoint on another free
port) until the processor has counted every item and the exporter has written every kept item,
then stops the Collector with SIGTERM (which flushes the file), waits for it to exit and reads the
file. The number of items in the file must equal the processor's own count of kept items.

Output format (plain text, tab-separated; lines starting with '#' are comments):

    # probabilistic_sampler: {<the exact processor config given to the Collector>}
    # ... (generator, Collector version, column names)
    trace_id<TAB>input_tracestate<TAB>attribute<TAB>sampled<TAB>output

  trace_id          32 lowercase hex digits; for logs, '-' when the record has no trace id at all
                    (empty bytes) and 32 zeros when it has an all-zero one
  input_tracestate  the span's incoming W3C tracestate, '-' when empty (always '-' for logs)
  attribute         traces: the span's int attribute `sampling.priority`, '-' if absent;
                    logs: the record's string attribute `user.id`, '-' if absent
  sampled           1 if the Collector passed the item on, 0 if it dropped it
  output            traces: the kept span's tracestate as the Collector wrote it;
                    logs: the attributes the sampler added to the kept record, as
                    key=value joined by ';' in key order;
                    '-' for dropped items (and for kept items when empty)

If the Collector rejects a case's configuration, the script says so (with the Collector's
message), writes no file for that case, carries on with the others and exits with status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COLLECTOR = REPO_ROOT / ".cache/peers/bin/otelcol-sluice-peer"
OUT_DIR = REPO_ROOT / "tests/data/probabilistic_sampler"

N_ITEMS = 10_000
ITEMS_PER_REQUEST = 1_000
START_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
POLL_S = 0.05


# ---------------------------------------------------------------------------------------------
# Deterministic input
# ---------------------------------------------------------------------------------------------
def _sha(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def trace_id(i: int) -> bytes:
    tid = _sha(f"sluice-sampler-{i}")[:16]
    assert any(tid), i
    return tid


def span_id(i: int) -> bytes:
    sid = _sha(f"sluice-sampler-span-{i}")[:8]
    assert any(sid), i
    return sid


def explicit_randomness(i: int) -> str:
    """A 14-hex-digit OTEP 235 randomness value (`rv`) for item i."""
    return _sha(f"sluice-sampler-rv-{i}")[:7].hex()


@dataclasses.dataclass
class Item:
    index: int
    trace_id: bytes  # b"" = no trace id (logs only)
    tracestate: str = ""  # traces only
    priority: int | None = None  # traces only: int attribute sampling.priority
    user_id: str | None = None  # logs only: string attribute user.id

    def column3(self, signal_name: str) -> str:
        value = self.priority if signal_name == "traces" else self.user_id
        return "-" if value is None else str(value)

    def trace_id_column(self) -> str:
        return self.trace_id.hex() if self.trace_id else "-"


def plain_traces() -> list[Item]:
    return [Item(i, trace_id(i)) for i in range(N_ITEMS)]


def traces_with_priority() -> list[Item]:
    """Case a: 50 spans with sampling.priority = 0 and 50 with 5, spread over the input."""
    items = plain_traces()
    for item in items:
        if item.index % 200 == 17:
            item.priority = 0
        elif item.index % 200 == 117:
            item.priority = 5
    return items


def traces_with_tracestate() -> list[Item]:
    """Case d: every 3rd span arrives with `ot=th:8` (sampled at 50% upstream), every 7th with
    an explicit randomness `ot=rv:<14 hex>`, every 21st with both."""
    items = plain_traces()
    for item in items:
        fields = []
        if item.index % 3 == 2:
            fields.append("th:8")
        if item.index % 7 == 6:
            fields.append("rv:" + explicit_randomness(item.index))
        if fields:
            item.tracestate = "ot=" + ";".join(fields)
    return items


def logs_items(*, missing_user_id: bool = False, empty_trace_ids: bool = False) -> list[Item]:
    items = [Item(i, trace_id(i), user_id=f"user-{i}") for i in range(N_ITEMS)]
    for item in items:
        if missing_user_id and item.index % 100 == 42:
            item.user_id = None  # 100 records without user.id
        if empty_trace_ids and item.index % 100 == 58:
            # 100 records without a trace id: half with empty bytes, half with 16 zero bytes.
            item.trace_id = b"" if (item.index // 100) % 2 == 0 else bytes(16)
    return items


@dataclasses.dataclass
class Case:
    name: str
    signal: str  # "traces" or "logs"
    processor_config: str  # YAML flow mapping, given verbatim to the Collector
    items: list[Item]
    notes: str = ""


def cases() -> list[Case]:
    return [
        Case(
            "traces_hash_seed_25",
            "traces",
            "{mode: hash_seed, sampling_percentage: 25, hash_seed: 22}",
            traces_with_priority(),
            "every 200th span (index % 200 == 17) has sampling.priority=0, "
            "index % 200 == 117 has sampling.priority=5",
        ),
        Case(
            "traces_hash_seed_default",
            "traces",
            "{sampling_percentage: 33.3}",
            plain_traces(),
        ),
        Case(
            "traces_proportional_10",
            "traces",
            "{mode: proportional, sampling_percentage: 10}",
            plain_traces(),
        ),
        Case(
            "traces_equalizing_25",
            "traces",
            "{mode: equalizing, sampling_percentage: 25}",
            traces_with_tracestate(),
            "index % 3 == 2 arrives with th:8, index % 7 == 6 with an explicit rv",
        ),
        Case(
            "logs_hash_seed_attr_50",
            "logs",
            "{mode: hash_seed, sampling_percentage: 50, hash_seed: 7, "
            "attribute_source: record, from_attribute: user.id}",
            logs_items(missing_user_id=True),
            "index % 100 == 42 has no user.id",
        ),
        Case(
            "logs_hash_seed_traceid_20",
            "logs",
            "{sampling_percentage: 20, hash_seed: 3}",
            logs_items(empty_trace_ids=True),
            "index % 100 == 58 has no trace id (even hundreds: empty bytes, odd: 16 zero bytes)",
        ),
        Case(
            "logs_proportional_30",
            "logs",
            "{mode: proportional, sampling_percentage: 30}",
            logs_items(),
        ),
    ]


# ---------------------------------------------------------------------------------------------
# OTLP requests
# ---------------------------------------------------------------------------------------------
def _resource(case: Case) -> Resource:
    return Resource(
        attributes=[KeyValue(key="service.name", value=AnyValue(string_value=f"sampler-{case.name}"))]
    )


def _scope() -> InstrumentationScope:
    return InstrumentationScope(name="sluice-sampler-reference", version="1")


def trace_request(case: Case, chunk: list[Item]) -> bytes:
    spans = []
    for item in chunk:
        start = 1_700_000_000_000_000_000 + item.index * 1_000_000
        attrs = [KeyValue(key="seq", value=AnyValue(int_value=item.index))]
        if item.priority is not None:
            attrs.append(KeyValue(key="sampling.priority", value=AnyValue(int_value=item.priority)))
        spans.append(
            Span(
                trace_id=item.trace_id,
                span_id=span_id(item.index),
                trace_state=item.tracestate,
                name=f"span-{item.index}",
                kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=start,
                end_time_unix_nano=start + 500_000,
                attributes=attrs,
            )
        )
    req = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=_resource(case), scope_spans=[ScopeSpans(scope=_scope(), spans=spans)])
        ]
    )
    return req.SerializeToString()


def logs_request(case: Case, chunk: list[Item]) -> bytes:
    records = []
    for item in chunk:
        attrs = []
        if item.user_id is not None:
            attrs.append(KeyValue(key="user.id", value=AnyValue(string_value=item.user_id)))
        records.append(
            LogRecord(
                time_unix_nano=1_700_000_000_000_000_000 + item.index * 1_000_000,
                severity_number=9,
                severity_text="INFO",
                body=AnyValue(string_value=f"log-{item.index}"),
                attributes=attrs,
                trace_id=item.trace_id,
                span_id=span_id(item.index) if item.trace_id else b"",
            )
        )
    req = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(resource=_resource(case), scope_logs=[ScopeLogs(scope=_scope(), log_records=records)])
        ]
    )
    return req.SerializeToString()


# ---------------------------------------------------------------------------------------------
# Running the Collector
# ---------------------------------------------------------------------------------------------
class CollectorRejected(Exception):
    """The Collector exited before it was ready (e.g. it rejected the configuration)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def collector_config(case: Case, otlp_port: int, metrics_port: int, out_file: Path) -> str:
    return f"""\
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_port}

processors:
  probabilistic_sampler: {case.processor_config}

exporters:
  file:
    path: {json.dumps(str(out_file))}
    format: json

service:
  pipelines:
    {case.signal}:
      receivers: [otlp]
      processors: [probabilistic_sampler]
      exporters: [file]
  telemetry:
    logs:
      level: info
    metrics:
      level: detailed
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {metrics_port}
"""


_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(metrics_port: int) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if m:
            samples.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return samples


def metric_sum(samples, base: str, **labels: str) -> float:
    """Sum of a counter's samples (name `base` or `base_total`) matching `labels`."""
    return sum(
        value
        for name, got, value in samples
        if name in (base, base + "_total") and all(got.get(k) == v for k, v in labels.items())
    )


def policy_counts(samples, base: str) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for name, labels, value in samples:
        if name in (base, base + "_total") and "policy" in labels:
            key = (labels["policy"], labels.get("sampled", "?"))
            counts[key] = counts.get(key, 0) + int(value)
    return counts


def run_case(collector: Path, case: Case, workdir: Path) -> tuple[list[dict], dict]:
    """Runs the Collector over the case's input; returns the output items (OTLP/JSON dicts of
    spans or log records) and the processor's own counts by (policy, sampled)."""
    otlp_port, metrics_port = free_port(), free_port()
    while metrics_port == otlp_port:
        metrics_port = free_port()
    out_file = workdir / f"{case.name}.jsonl"
    cfg_file = workdir / f"{case.name}.yaml"
    log_file = workdir / f"{case.name}.log"
    cfg_file.write_text(collector_config(case, otlp_port, metrics_port, out_file))

    with open(log_file, "wb") as log:
        proc = subprocess.Popen(
            [str(collector), "--config", str(cfg_file)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        # 1. Ready: both ports accept connections (the receiver starts after the pipeline).
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_open(otlp_port) and port_open(metrics_port)):
            if proc.poll() is not None:
                raise CollectorRejected(
                    f"the Collector exited with status {proc.returncode} before it was ready:\n"
                    + log_file.read_text(errors="replace")
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Collector was not ready after {START_TIMEOUT_S}s:\n{log_file.read_text()}")
            time.sleep(POLL_S)

        # 2. Send.
        build = trace_request if case.signal == "traces" else logs_request
        for start in range(0, len(case.items), ITEMS_PER_REQUEST):
            body = build(case, case.items[start : start + ITEMS_PER_REQUEST])
            req = urllib.request.Request(
                f"http://127.0.0.1:{otlp_port}/v1/{case.signal}",
                data=body,
                headers={"Content-Type": "application/x-protobuf"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"POST /v1/{case.signal} answered {resp.status}")
            except urllib.error.HTTPError as e:
                raise RuntimeError(f"POST /v1/{case.signal} answered {e.code}: {e.read()!r}") from e

        # 3. Drained: the processor counted every item, the exporter wrote every kept one.
        sampler_metric = f"otelcol_processor_probabilistic_sampler_count_{case.signal}_sampled"
        sent_metric = "otelcol_exporter_sent_spans" if case.signal == "traces" else "otelcol_exporter_sent_log_records"
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            samples = scrape(metrics_port)
            seen = metric_sum(samples, sampler_metric)
            kept = metric_sum(samples, sampler_metric, sampled="true")
            sent = metric_sum(samples, sent_metric)
            if seen == len(case.items) and sent == kept:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"not drained after {DRAIN_TIMEOUT_S}s: {sampler_metric}={seen} "
                    f"(of {len(case.items)}), sampled=true {kept}, {sent_metric}={sent}"
                )
            time.sleep(POLL_S)
        policies = policy_counts(samples, sampler_metric)

        # 4. Stop (SIGTERM flushes the file exporter) and wait for the exit.
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the Collector did not exit within {STOP_TIMEOUT_S}s of SIGTERM")
        if rc != 0:
            raise RuntimeError(f"the Collector exited with status {rc}:\n{log_file.read_text()}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # 5. Read the output: one OTLP/JSON document a line.
    out_items: list[dict] = []
    text = out_file.read_text() if out_file.exists() else ""
    for line in text.splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        if case.signal == "traces":
            for rs in doc.get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    out_items.extend(ss.get("spans", []))
        else:
            for rl in doc.get("resourceLogs", []):
                for sl in rl.get("scopeLogs", []):
                    out_items.extend(sl.get("logRecords", []))
    if len(out_items) != int(kept):
        raise RuntimeError(f"the file holds {len(out_items)} items, the processor counted {int(kept)} sampled")
    return out_items, policies


def _json_value(value: dict) -> str:
    if "stringValue" in value:
        return value["stringValue"]
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def decisions(case: Case, out_items: list[dict]) -> list[tuple[bool, str]]:
    """(sampled, output column) per input item, in input order."""
    result: dict[int, str] = {}
    if case.signal == "traces":
        by_span_id = {span_id(item.index).hex(): item for item in case.items}
        for span in out_items:
            item = by_span_id[span["spanId"].lower()]
            if bytes.fromhex(span.get("traceId", "")) != item.trace_id:
                raise RuntimeError(f"span {item.index}: trace id changed")
            if item.index in result:
                raise RuntimeError(f"span {item.index} came out twice")
            result[item.index] = span.get("traceState", "")
    else:
        for record in out_items:
            index = int(record["body"]["stringValue"].removeprefix("log-"))
            item = case.items[index]
            if bytes.fromhex(record.get("traceId", "")) != item.trace_id:
                raise RuntimeError(f"log {index}: trace id changed")
            if index in result:
                raise RuntimeError(f"log {index} came out twice")
            attrs = {a["key"]: _json_value(a.get("value", {})) for a in record.get("attributes", [])}
            if item.user_id is not None and attrs.get("user.id") != item.user_id:
                raise RuntimeError(f"log {index}: user.id changed or lost")
            added = {k: v for k, v in attrs.items() if k != "user.id"}
            result[index] = ";".join(f"{k}={v}" for k, v in sorted(added.items()))
    return [(item.index in result, result.get(item.index, "")) for item in case.items]


def collector_version(collector: Path) -> str:
    try:
        out = subprocess.run([str(collector), "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or out.stderr.strip()
    except OSError as e:
        return f"unknown ({e})"


def write_tsv(path: Path, case: Case, version: str, rows: list[tuple[bool, str]]) -> None:
    if case.signal == "traces":
        columns = "trace_id\tinput_tracestate\tsampling.priority\tsampled\toutput_tracestate"
    else:
        columns = "trace_id\tinput_tracestate\tuser.id\tsampled\tattributes_added_by_sampler"
    lines = [
        f"# probabilistic_sampler: {case.processor_config}",
        f"# {case.signal}, {len(case.items)} items, decided by {version}; "
        "regenerate with deploy/peers/sampler-reference.py",
    ]
    if case.notes:
        lines.append(f"# input: {case.notes}")
    lines.append("# " + columns)
    for item, (sampled, output) in zip(case.items, rows):
        lines.append(
            "\t".join(
                [
                    item.trace_id_column(),
                    item.tracestate or "-",
                    item.column3(case.signal),
                    "1" if sampled else "0",
                    output if (sampled and output) else "-",
                ]
            )
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("collector", nargs="?", default=str(DEFAULT_COLLECTOR), help="Collector binary")
    parser.add_argument("--out-dir", default=str(OUT_DIR), help="where the .tsv files go")
    parser.add_argument("--keep-temp", action="store_true", help="keep the Collector configs, logs, output")
    parser.add_argument("--only", action="append", help="run only this case (repeatable)")
    args = parser.parse_args()

    collector = Path(args.collector).resolve()
    if not os.access(collector, os.X_OK):
        print(f"sampler-reference: {collector} is not an executable (run deploy/peers/install.sh)", file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    version = collector_version(collector)

    status = 0
    workdir = Path(tempfile.mkdtemp(prefix="sampler-reference-"))
    for case in cases():
        if args.only and case.name not in args.only:
            continue
        try:
            out_items, policies = run_case(collector, case, workdir)
        except CollectorRejected as e:
            print(f"{case.name}: REJECTED by the Collector: {e}", file=sys.stderr)
            status = 1
            continue
        rows = decisions(case, out_items)
        path = out_dir / f"{case.name}.tsv"
        write_tsv(path, case, version, rows)
        kept = sum(1 for sampled, _ in rows if sampled)
        by_policy = ", ".join(f"{p}/{s}={n}" for (p, s), n in sorted(policies.items()))
        print(
            f"{case.name}: {kept}/{len(rows)} sampled ({100 * kept / len(rows):.2f}%) -> "
            f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}  [{by_policy}]"
        )
    if args.keep_temp:
        print(f"sampler-reference: Collector configs, logs and output kept in {workdir}", file=sys.stderr)
    else:
        for f in workdir.iterdir():
            f.unlink()
        workdir.rmdir()
    return status


if __name__ == "__main__":
    sys.exit(main())
