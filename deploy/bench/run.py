#!/usr/bin/env python3
"""Sluice vs the OpenTelemetry Collector, measured in the same run on the same machine.

`make bench` runs this after the criterion benches (`make peers` first builds the Collector).
For every scenario and load it starts one daemon, drives it with the bench load client, stops
it, then does the same for the other daemon (the order alternates between repetitions), and
prints the medians of the repetitions and the Sluice/Collector ratios.

Scenarios (configs in deploy/bench/configs/):
  S1  OTLP/gRPC -> durable local buffer -> OTLP sink.
      Sluice: disk buffer, fsync: always and fsync: interval.
      Collector: otlp -> batch -> otlp exporter with a file_storage sending queue (fsync false,
      its default; and fsync true at 100 spans/request).
  S2  OTLP/gRPC -> Apache Pulsar -> OTLP sink.
      Sluice: one process with the receiver and the exporter, Pulsar buffer.
      Collector: otlp -> pulsarexporter, and pulsarreceiver -> batch -> otlp (two processes).
  S3  OTLP/gRPC -> OTLP sink, pass-through.
      Sluice has no bufferless mode: its disk buffer with fsync: interval (the S1 runs).
      Collector: otlp -> batch -> otlp exporter with its in-memory queue.
  S4  OTLP/gRPC -> filter + attributes + batch -> OTLP sink, the same processor settings on
      both: filter drops spans with attributes["http.route"] == "/healthz" (OTTL), attributes
      hashes user.email and inserts env=bench. Sluice: disk buffer, fsync: interval (as in S3);
      Collector: in-memory queue (as in S3). The load client sends every span with user.email
      and every HEALTHZ_EVERY-th span (by sequence number, so exactly 10 %) as a health check;
      the sink must receive exactly the other spans ("lost" counts those it did not, "leaked"
      health checks that got through). CPU is per million spans *sent* (acknowledged), and
      "cost against pass-through" is S4 CPU/M divided by the same daemon's S3 CPU/M of the
      same run at the same load: selecting S4 therefore also selects S3.
  S6  OTLP/gRPC -> Apache Kafka -> OTLP sink (the bench's own Kafka 4.x broker, KRaft).
      Sluice: one process with the receiver and the exporter, Kafka buffer (acks=all,
      idempotent producer, offsets committed after export).
      Collector: otlp -> kafka exporter (otlp_proto, its default acks: the leader only), and
      kafka receiver -> batch -> otlp (two processes).
  S7  OTLP/gRPC -> NATS JetStream -> OTLP sink (the bench's own nats-server, file storage).
      Sluice alone: the Collector has no NATS exporter or receiver. Sluice: one process with
      the receiver and the exporter, NATS buffer (each client answered after JetStream's
      publish acknowledgement; one message per request, since batching happens on the read
      side). Its reference is the broker's own ceiling, measured in the same run with natscli
      (deploy/bench/natscli.sh, pinned): `nats bench js pub sync`, CONCURRENCY clients each with
      one acknowledged publish in flight, file storage, messages of the size Sluice publishes
      (the load client's request bytes, plus Sluice's headers) at each spans/request. Reported
      beside Sluice's rows: its published messages/s (acknowledged requests/s) and bytes/s,
      the ceiling's, and Sluice's share of the ceiling. Runs after Sluice's saturation run of
      the same spans/request in every repetition.
  S5  Many tenants through one daemon: QUIET_TENANTS tenants at QUIET_RATE spans/s each
      (1 span/request, open loop, their own 8 connections, tenant in x-scope-orgid) beside one
      tenant ("noisy") at saturation (closed loop, 100 spans/request, 32 in flight over 4
      connections); and the quiet tenants alone as a baseline ("quiet only"). Sluice: its
      default tenancy (tenant from x-scope-orgid), disk buffer fsync: interval, the exporter
      forwarding x-scope-orgid: {tenant}. Collector: otlp receiver include_metadata: true,
      batch with metadata_keys: [x-scope-orgid] (a batcher per tenant), in-memory queue; its
      otlp exporter cannot forward per-request metadata (headers_setter is not in the peer
      build), so the sink sees no tenant header from it (reported, not failed). Reported: the
      daemon's CPU (cores, and CPU-s per million spans delivered), peak RSS, the noisy
      tenant's delivered spans/s, and of the quiet tenants' per-tenant end-to-end p99 the
      median and the worst (with ~10 samples/s per tenant a run's p99 is close to its max).
      Runs last max(BENCH_DURATION, S5_MIN_DURATION) seconds.
  S8  One tenant too big for one exporter process, on Kafka and on Pulsar (the bench's
      brokers): an ingest-only Sluice and 1 or 2 export-only Sluice processes in one consumer
      group (Kafka) or on one shared subscription (Pulsar), the tenant's topic with 4
      partitions of its own (tenant_partitions), batches of 250 spans, and the sink answering
      every export S8_SINK_DELAY_MS late, so one exporter process cannot take the fixed load
      (100 spans/request, 20 000 spans/s). Sluice alone (the Collector's kafka and pulsar
      receivers cannot split one tenant's records over processes by themselves). Reported:
      the spans/s delivered with 1 and 2 exporter processes, and their ratio. The Pulsar
      partitions all live on the one standalone broker, so this shows the exporter side
      scaling, not the broker side.
  S9  OTLP/HTTP -> durable local buffer -> OTLP sink: S1's daemons (Sluice fsync: always,
      Collector file_storage) at 1, 100 and 1 000 spans/request, the requests sent as
      OTLP/HTTP protobuf, OTLP/JSON, and protobuf compressed with gzip (fastest level,
      compressed by the load client per request). HTTP/1.1 as the SDKs' HTTP exporters send:
      one connection per request in flight.
  S10 Steady state, for memory: S1's daemons (Sluice fsync: always, Collector file_storage)
      at the fixed rate of 100 spans/request for BENCH_STEADY_DURATION seconds (default 120),
      one repetition each. Reported: peak RSS, RSS at the end of the load, CPU-s per million
      spans, p99, beside the same daemons' 6 s fixed-rate rows of S1.
  S11 Logs and metrics: S1's daemons (Sluice disk buffer fsync: always, Collector file_storage)
      with a logs and a metrics pipeline (sluice-signals.yaml, otelcol-signals.yaml), at 100
      and 1 000 items/request over OTLP/gRPC: log records like S1's spans (the same
      attributes, a severity and a body), or integer gauge points (4 attributes, 10 points
      per metric). The tables' "spans" are then log records or data points.
  IDLE  Each daemon as a user starts it and then leaves it alone: Sluice with the S3 config
      (disk buffer), the Collector with its S3 config (in-memory queue). Measured IDLE_WINDOW_S
      seconds after it is ready (its timers have all fired by then): resident memory (VmRSS)
      and the CPU it spends on its own wake-ups.

Loads: "saturation" = closed loop, 32 requests in flight over 4 connections, for the window;
"fixed" = open loop at FIXED_RATES spans/s. Every run gets a fresh daemon (so peak RSS is
the run's) and fresh data directory / Pulsar or Kafka topic / NATS streams.

Measured per run (benches/loadgen): items/s delivered end to end (spans the sink received,
over first send -> last receipt), CPU seconds of the daemon process(es) per million spans
(utime+stime from /proc/<pid>/stat over first send -> drained), peak RSS (VmHWM, summed over
the daemon's processes), end-to-end latency p50/p99 (span send time -> sink receipt), and
spans refused, lost (acknowledged, never received) and duplicated.

Environment: BENCH_QUICK=1 (one repetition, shorter windows, 100 spans/request only: ~5 min),
BENCH_REPS, BENCH_DURATION (seconds per run), BENCH_ONLY (comma list of S1,...,S11,IDLE; default
all),
BENCH_OUT (results directory; default target/sluice-bench), BENCH_PORT_BASE (default 24300),
BENCH_PIN=1 (the daemon's processes on CPU 0 and the load client and sink on the other CPUs,
with taskset: saturation then measures what one core of the daemon takes, instead of
inferring it from CPU-seconds).
`run.py --report results-XXX.json` prints the tables of an earlier run again.
Python 3.11 standard library only.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "deploy" / "bench" / "configs"
SLUICE_BIN = REPO / "target" / "release" / "sluice"
LOADGEN_BIN = REPO / "target" / "release" / "examples" / "loadgen"
OTELCOL_BIN = Path(os.environ.get("SLUICE_CACHE", REPO / ".cache")) / "peers" / "bin" / "otelcol-sluice-peer"
PULSAR_SCRIPT = REPO / "deploy" / "pulsar" / "standalone.sh"
KAFKA_SCRIPT = REPO / "deploy" / "kafka" / "server.sh"
NATS_SCRIPT = REPO / "deploy" / "nats" / "server.sh"
NATSCLI_SCRIPT = REPO / "deploy" / "bench" / "natscli.sh"

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
REPS = int(os.environ.get("BENCH_REPS", "1" if QUICK else "3"))
DURATION = float(os.environ.get("BENCH_DURATION", "4" if QUICK else "6"))
ONLY = {s.strip().upper() for s in os.environ.get("BENCH_ONLY", "S1,S2,S3,S4,S5,S6,S7,S8,S9,S10,S11,IDLE").split(",") if s.strip()}
# S4's "cost against pass-through" divides by S3 of the same run.
S3_FOR_S4 = "S4" in ONLY and "S3" not in ONLY
ONLY |= {"S3"} if S3_FOR_S4 else set()
OUT = Path(os.environ.get("BENCH_OUT", REPO / "target" / "sluice-bench"))
PIN = os.environ.get("BENCH_PIN", "") not in ("", "0")
DAEMON_CPUS = "0"
LAST_CPU = max(1, (os.cpu_count() or 2) - 1)
LOAD_CPUS = "1" if LAST_CPU == 1 else f"1-{LAST_CPU}"
PORT = int(os.environ.get("BENCH_PORT_BASE", "24300"))

# Fixed-rate loads, spans/s, per spans/request. 20 000 spans/s at 100 and 1 000 spans/request
# (200 and 20 requests/s) is well inside what both daemons sustain on 2 cores with the load
# client and sink beside them. With 1 span per request the request rate is the cost; 2 000
# requests/s is what the Collector's persistent queue sustains here with room to spare.
FIXED_RATES = {1: 5_000, 100: 20_000, 1000: 20_000}
CONCURRENCY = 32
CONNECTIONS = 4
DRAIN_TIMEOUT = 45.0
WARMUP_S = 5.0 if QUICK else 10.0

# S4: every HEALTHZ_EVERY-th span is a health check the filter drops (10 %).
HEALTHZ_EVERY = 10
S4_LOADGEN = ("--user-email", "--healthz-every", str(HEALTHZ_EVERY))
# S5: 200 quiet tenants at 10 spans/s, one span per request: 2 000 requests/s together, which
# both daemons take on two cores with room for the saturating tenant (S1/S3 sustain 5 000
# requests/s of 1 span). Per-tenant p99 needs samples: S5 runs last at least 10 s.
QUIET_TENANTS = 200
QUIET_RATE = 10
QUIET_CONNECTIONS = 8
NOISY_SPANS = 100
S5_MIN_DURATION = 10.0
S5_DURATION = max(DURATION, S5_MIN_DURATION)
S5_MODES = ("tenants", "quiet-only")
# S8: how late the sink answers each export, and the exporter processes compared.
# 200 ms: one exporter process, 8 deliveries in flight of 250 spans, takes about 10 000 spans/s.
S8_SINK_DELAY_MS = 200
S8_EXPORTERS = (1, 2)
# S8's buffers: the tenant's topic has 4 partitions on each.
S8_BUFFERS = {"kafka": "Kafka", "pulsar": "Pulsar"}


def s8_variant(buffer: str, exporters: int) -> str:
    # Kafka's keeps the name earlier reports used.
    return f"sluice-scale-{exporters}" if buffer == "kafka" else f"sluice-{buffer}-scale-{exporters}"
# S9: the OTLP/HTTP bodies compared (Variant.ingest), with how the tables name them.
S9_INGESTS = (("http/protobuf", "OTLP/HTTP protobuf"), ("http/json", "OTLP/HTTP JSON"),
              ("http/protobuf+gzip", "OTLP/HTTP protobuf gzip"))


def slug(ingest: str) -> str:
    """An ingest as a variant key's part (keys name data directories): http-protobuf-gzip."""
    return re.sub(r"[/+]", "-", ingest)
# S11: the signals besides traces, and their spans/request (items/request).
S11_SIGNALS = ("logs", "metrics")
S11_SPANS = (100, 1000)
# S10: how long the steady-state run lasts, and its daemons (S1's).
STEADY_DURATION = float(os.environ.get("BENCH_STEADY_DURATION", "30" if QUICK else "120"))
STEADY_VARIANTS = ("sluice-always", "otelcol-file")
STEADY_SPANS = 100
# IDLE: how long each daemon is left alone once ready, then measured.
IDLE_WINDOW_S = 10.0
IDLE_VARIANTS = ("sluice-interval", "otelcol-memory")

DAEMON_ENDPOINT = f"127.0.0.1:{PORT + 17}"
HTTP_ENDPOINT = f"127.0.0.1:{PORT + 18}"
SINK_ENDPOINT = f"127.0.0.1:{PORT + 117}"
SINK_CONTROL = f"127.0.0.1:{PORT + 119}"
METRICS_PORTS = (PORT + 88, PORT + 89)
HEALTH_ENDPOINT = f"127.0.0.1:{PORT + 33}"
ADMIN_ENDPOINT = f"127.0.0.1:{PORT + 34}"
# A broker of the bench's own (ports, run directory), so a developer's `make pulsar` broker or
# a concurrent `make test` is never touched.
PULSAR_ENV = {
    "PULSAR_BROKER_PORT": str(PORT + 50),
    "PULSAR_WEB_PORT": str(PORT + 80),
    "PULSAR_RUN_DIR": str(Path(os.environ.get("SLUICE_CACHE", REPO / ".cache")) / "pulsar" / "bench-run"),
}
PULSAR_URL = f"pulsar://127.0.0.1:{PORT + 50}"
PULSAR_ADMIN = f"http://127.0.0.1:{PORT + 80}"
KAFKA_ENV = {
    "KAFKA_PORT": str(PORT + 60),
    "KAFKA_CONTROLLER_PORT": str(PORT + 61),
    "KAFKA_SASL_PORT": str(PORT + 62),
    "KAFKA_SSL_PORT": str(PORT + 63),
    "KAFKA_RUN_DIR": str(Path(os.environ.get("SLUICE_CACHE", REPO / ".cache")) / "kafka" / "bench-run"),
}
KAFKA_BROKERS = f"127.0.0.1:{PORT + 60}"
NATS_ENV = {
    "NATS_PORT": str(PORT + 70),
    "NATS_MONITOR_PORT": str(PORT + 71),
    "NATS_RUN_DIR": str(Path(os.environ.get("SLUICE_CACHE", REPO / ".cache")) / "nats" / "bench-run"),
}
NATS_URL = f"nats://127.0.0.1:{PORT + 70}"
# The headers Sluice puts on every message it publishes (src/buffer/nats; no traceparent: the
# load client sends none), with values as long as in the bench, so that the ceiling's messages
# are as large as Sluice's.
NATS_HEADERS = ("tenant:bench-0000000-000", "signal:traces", "content-type:application/x-protobuf",
                "received-at-ms:1800000000000")
# The ceiling's measured window is sized from a short calibration publish (which also warms
# the stream's first file blocks); never fewer than this many messages per client.
CEILING_MIN_PER_CLIENT = 20


@dataclass
class Broker:
    """A broker the bench starts itself for the scenario that needs it."""

    scenarios: tuple[str, ...]
    label: str
    script: Path
    env: dict[str, str]
    pid_file: Path

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.script), *cmd], env={**os.environ, **self.env})

    def stop(self) -> None:
        """Stops the broker and deletes its data (gigabytes after saturation runs: they would
        fill the disk a later build or CI run needs), keeping its logs."""
        self.run("stop")
        shutil.rmtree(self.pid_file.parent / "data", ignore_errors=True)

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None


BROKERS = {
    "pulsar": Broker(("S2", "S8"), "Pulsar standalone broker", PULSAR_SCRIPT, PULSAR_ENV,
                     Path(PULSAR_ENV["PULSAR_RUN_DIR"]) / "pulsar.pid"),
    "kafka": Broker(("S6", "S8"), "Kafka broker (KRaft)", KAFKA_SCRIPT, KAFKA_ENV,
                    Path(KAFKA_ENV["KAFKA_RUN_DIR"]) / "kafka.pid"),
    "nats": Broker(("S7",), "NATS server (JetStream)", NATS_SCRIPT, NATS_ENV,
                   Path(NATS_ENV["NATS_RUN_DIR"]) / "nats.pid"),
}


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# === daemons ===================================================================================


@dataclass
class ProcSpec:
    binary: Path
    config: str
    env: dict[str, str] = field(default_factory=dict)
    # How to tell it is ready: ("http", url) answering 200, ("tcp", host:port) accepting, or
    # ("pulsar-sub", subscription) existing on the run's topic.
    ready: tuple[str, str] = ("tcp", DAEMON_ENDPOINT)


@dataclass
class Variant:
    key: str
    daemon: str  # "sluice" | "otelcol"
    label: str
    procs: list[ProcSpec]
    # The broker of BROKERS it runs against, if any.
    broker: str = ""
    # Extra arguments of `loadgen send` for this variant's runs (S4's span options).
    loadgen: tuple[str, ...] = ()
    # How late the sink answers each export during this variant's runs (S8).
    sink_delay_ms: int = 0
    # How the load client sends (S9): "grpc", or OTLP/HTTP "http/protobuf" | "http/json",
    # with "+gzip" for compressed bodies.
    ingest: str = "grpc"
    # The OTLP signal the load client sends (S11): "traces", "logs" or "metrics".
    signal: str = "traces"


def sluice(config: str, **env: str) -> list[ProcSpec]:
    """One Sluice process with `config`, ready once /readyz answers 200."""
    return [ProcSpec(SLUICE_BIN, config, dict(env), ("http", f"http://{HEALTH_ENDPOINT}/readyz"))]


def sluice_disk(fsync: str, config: str = "sluice-disk.yaml") -> list[ProcSpec]:
    return sluice(config, BENCH_FSYNC=fsync)


def sluice_scaled(exporters: int, buffer: str) -> list[ProcSpec]:
    """S8: an ingest-only Sluice, then `exporters` export-only ones, each on ports of its own."""
    config = f"sluice-{buffer}-scale.yaml"
    procs = sluice(config, BENCH_RECEIVERS="[otlp]", BENCH_EXPORTERS="[]")
    for i in range(exporters):
        keys = ("BENCH_DAEMON_ENDPOINT", "BENCH_METRICS_ENDPOINT", "BENCH_HEALTH_ENDPOINT", "BENCH_ADMIN_ENDPOINT")
        ports = {key: f"127.0.0.1:{PORT + 140 + 10 * i + n}" for n, key in enumerate(keys)}
        ready = ("http", f"http://{ports['BENCH_HEALTH_ENDPOINT']}/readyz")
        procs.append(ProcSpec(SLUICE_BIN, config, {**ports, "BENCH_RECEIVERS": "[]", "BENCH_EXPORTERS": "[otlp]"}, ready))
    return procs


def otelcol(config: str, **env: str) -> ProcSpec:
    return ProcSpec(OTELCOL_BIN, config, dict(env))


VARIANTS = {
    v.key: v
    for v in [
        Variant("sluice-always", "sluice", "Sluice, disk buffer, fsync: always", sluice_disk("always")),
        Variant("sluice-interval", "sluice", "Sluice, disk buffer, fsync: interval", sluice_disk("interval")),
        Variant("otelcol-file", "otelcol", "Collector, file_storage queue (fsync: false)",
                [otelcol("otelcol-filestorage.yaml", BENCH_FSYNC="false")]),
        Variant("otelcol-file-fsync", "otelcol", "Collector, file_storage queue, fsync: true",
                [otelcol("otelcol-filestorage.yaml", BENCH_FSYNC="true")]),
        Variant("otelcol-memory", "otelcol", "Collector, in-memory queue", [otelcol("otelcol-passthrough.yaml")]),
        Variant(
            "sluice-pulsar",
            "sluice",
            "Sluice, Pulsar buffer (receiver + exporter, 1 process)",
            sluice("sluice-pulsar.yaml"),
            broker="pulsar",
        ),
        Variant(
            "otelcol-pulsar",
            "otelcol",
            "Collector, pulsarexporter + pulsarreceiver (2 processes)",
            [
                otelcol("otelcol-pulsar-exporter.yaml", BENCH_METRICS_PORT=str(METRICS_PORTS[1])),
                ProcSpec(OTELCOL_BIN, "otelcol-pulsar-agent.yaml"),
            ],
            broker="pulsar",
        ),
        Variant(
            "sluice-kafka",
            "sluice",
            "Sluice, Kafka buffer (receiver + exporter, 1 process)",
            sluice("sluice-kafka.yaml"),
            broker="kafka",
        ),
        Variant(
            "otelcol-kafka",
            "otelcol",
            "Collector, kafka exporter + kafka receiver (2 processes)",
            [
                # Reads from the earliest offset: it need not have joined before the agent writes.
                otelcol("otelcol-kafka-exporter.yaml", BENCH_METRICS_PORT=str(METRICS_PORTS[1])),
                ProcSpec(OTELCOL_BIN, "otelcol-kafka-agent.yaml"),
            ],
            broker="kafka",
        ),
        Variant(
            "sluice-nats",
            "sluice",
            "Sluice, NATS JetStream buffer (receiver + exporter, 1 process)",
            sluice("sluice-nats.yaml"),
            broker="nats",
        ),
        Variant("sluice-processors", "sluice", "Sluice, filter + attributes, disk buffer (fsync: interval)",
                sluice_disk("interval", "sluice-processors.yaml"), loadgen=S4_LOADGEN),
        Variant("otelcol-processors", "otelcol", "Collector, filter + attributes, in-memory queue",
                [otelcol("otelcol-processors.yaml")], loadgen=S4_LOADGEN),
        *(Variant(s8_variant(buffer, n), "sluice",
                  f"Sluice, {S8_BUFFERS[buffer]}, {n} exporter process{'es' if n > 1 else ''}",
                  sluice_scaled(n, buffer), broker=buffer, sink_delay_ms=S8_SINK_DELAY_MS)
          for buffer in S8_BUFFERS for n in S8_EXPORTERS),
        *(v for ingest, what in S9_INGESTS for v in (
            Variant(f"sluice-{slug(ingest)}", "sluice", f"Sluice, {what}, disk buffer, fsync: always",
                    sluice_disk("always"), ingest=ingest),
            Variant(f"otelcol-{slug(ingest)}", "otelcol", f"Collector, {what}, file_storage queue (fsync: false)",
                    [otelcol("otelcol-filestorage.yaml", BENCH_FSYNC="false")], ingest=ingest),
        )),
        *(v for signal in S11_SIGNALS for v in (
            Variant(f"sluice-{signal}", "sluice", f"Sluice, {signal}, disk buffer, fsync: always",
                    sluice_disk("always", "sluice-signals.yaml"), signal=signal),
            Variant(f"otelcol-{signal}", "otelcol", f"Collector, {signal}, file_storage queue (fsync: false)",
                    [otelcol("otelcol-signals.yaml", BENCH_FSYNC="false")], signal=signal),
        )),
        Variant("sluice-tenants", "sluice", "Sluice, disk buffer (fsync: interval)",
                sluice_disk("interval", "sluice-tenants.yaml")),
        Variant("otelcol-tenants", "otelcol", "Collector, batch per tenant, in-memory queue",
                [otelcol("otelcol-tenants.yaml")]),
    ]
}
# S4 against the same daemon's S3 (pass-through) variant.
S3_OF = {"sluice-processors": "sluice-interval", "otelcol-processors": "otelcol-memory"}
S5_VARIANTS = ("sluice-tenants", "otelcol-tenants")
S8_VARIANTS = {s8_variant(buffer, n) for buffer in S8_BUFFERS for n in S8_EXPORTERS}
# The exporter half must be subscribed before the agent publishes.
VARIANTS["otelcol-pulsar"].procs[0].ready = ("pulsar-sub", "otelcol-bench")
# The Kafka exporter half has no OTLP port; it is up once its own metrics answer.
VARIANTS["otelcol-kafka"].procs[0].ready = ("tcp", f"127.0.0.1:{METRICS_PORTS[1]}")


@dataclass
class Comparison:
    """One row of the ratio table: a Sluice variant against a Collector variant (none: S7, whose
    reference is the broker's own ceiling)."""

    scenario: str
    sluice: str
    collector: str
    spans: tuple[int, ...]
    note: str
    modes: tuple[str, ...] = ("saturation", "fixed")


COMPARISONS = [
    Comparison("S1", "sluice-always", "otelcol-file", (1, 100, 1000), "fsync: always vs file_storage (default fsync: false)"),
    Comparison("S1", "sluice-interval", "otelcol-file", (1, 100, 1000), "fsync: interval vs file_storage (default fsync: false)"),
    Comparison("S1", "sluice-always", "otelcol-file-fsync", (100,), "fsync: always vs file_storage fsync: true"),
    Comparison("S3", "sluice-interval", "otelcol-memory", (1, 100, 1000), "disk buffer, fsync: interval vs in-memory queue"),
    Comparison("S2", "sluice-pulsar", "otelcol-pulsar", (1, 100, 1000), "Pulsar buffer vs pulsarexporter/pulsarreceiver"),
    Comparison("S6", "sluice-kafka", "otelcol-kafka", (1, 100, 1000), "Kafka buffer vs kafka exporter/receiver"),
    Comparison("S7", "sluice-nats", "", (1, 100, 1000), "NATS buffer vs the broker's own publish ceiling"),
    *(Comparison("S8", s8_variant(buffer, n), "", (100,), f"one tenant, {S8_BUFFERS[buffer]}, {n} exporter process(es)",
                 ("fixed",))
      for buffer in S8_BUFFERS for n in S8_EXPORTERS),
    Comparison("S4", "sluice-processors", "otelcol-processors", (1, 100, 1000),
               "filter + attributes: disk buffer (interval) vs in-memory queue"),
    *(Comparison("S9", f"sluice-{slug(ingest)}", f"otelcol-{slug(ingest)}", (1, 100, 1000), f"{what}: fsync: always vs file_storage")
      for ingest, what in S9_INGESTS),
    *(Comparison("S11", f"sluice-{signal}", f"otelcol-{signal}", S11_SPANS, f"{signal}: fsync: always vs file_storage")
      for signal in S11_SIGNALS),
]
if QUICK:
    COMPARISONS = [
        Comparison(c.scenario, c.sluice, c.collector, (100,), c.note, c.modes) for c in COMPARISONS
    ]
COMPARISONS = [c for c in COMPARISONS if c.scenario in ONLY]
MODES = ("saturation", "fixed")


class Running:
    def __init__(self, variant: Variant, run_no: int, logdir: Path):
        self.variant = variant
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.run_no = run_no
        self.data = OUT / "data" / f"{variant.key}-{run_no}"
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True)
        self.tenant = f"bench-{os.getpid()}-{run_no}"
        # The Collector's topic of this run: a Pulsar topic name, or a plain Kafka one.
        name = f"otelcol-bench-{os.getpid()}-{run_no}"
        self.topic = f"persistent://public/default/{name}" if variant.broker == "pulsar" else name
        self.logdir = logdir

    def env(self, spec: ProcSpec) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "BENCH_DAEMON_ENDPOINT": DAEMON_ENDPOINT,
                "BENCH_HTTP_ENDPOINT": HTTP_ENDPOINT,
                "BENCH_SINK_ENDPOINT": SINK_ENDPOINT,
                "BENCH_DATA_DIR": str(self.data),
                "BENCH_METRICS_ENDPOINT": f"127.0.0.1:{METRICS_PORTS[0]}",
                "BENCH_METRICS_PORT": str(METRICS_PORTS[0]),
                "BENCH_HEALTH_ENDPOINT": HEALTH_ENDPOINT,
                "BENCH_ADMIN_ENDPOINT": ADMIN_ENDPOINT,
                "BENCH_TENANT": self.tenant,
                "BENCH_TOPIC": self.topic,
                "BENCH_PULSAR_URL": PULSAR_URL,
                "BENCH_PULSAR_ADMIN_URL": PULSAR_ADMIN,
                "BENCH_KAFKA_BROKERS": KAFKA_BROKERS,
                "BENCH_NATS_URL": NATS_URL,
            }
        )
        env.update(spec.env)
        return env

    def start(self) -> None:
        if self.variant.broker == "kafka" and self.variant.daemon == "otelcol":
            # The Collector creates no topics, and the bench's broker auto-creates none.
            if BROKERS["kafka"].run("topic", self.topic).returncode != 0:
                raise RuntimeError(f"cannot create the Kafka topic {self.topic}")
        for i, spec in enumerate(self.variant.procs):
            logfile = self.logdir / f"{self.run_no:03d}-{self.variant.key}-{i}.log"
            self.logs.append(logfile)
            argv = [str(spec.binary)]
            argv += ["run", "--config"] if spec.binary == SLUICE_BIN else ["--config"]
            argv.append(str(CONFIGS / spec.config))
            with open(logfile, "wb") as out:
                self.procs.append(
                    subprocess.Popen(on_cpus(argv, DAEMON_CPUS), env=self.env(spec), stdout=out,
                                     stderr=subprocess.STDOUT)
                )
            self.wait_ready(spec, self.procs[-1], logfile)

    def wait_ready(self, spec: ProcSpec, proc: subprocess.Popen, logfile: Path) -> None:
        deadline = time.monotonic() + 60
        kind, what = spec.ready
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.variant.key} exited with {proc.returncode} at start; log {logfile}:\n"
                                   + logfile.read_text(errors="replace")[-3000:])
            if kind == "http" and http_ok(what):
                return
            if kind == "tcp" and tcp_open(what):
                return
            if kind == "pulsar-sub" and what in pulsar_subscriptions(self.topic):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.variant.key} not ready after 60 s ({kind} {what}); log {logfile}")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def save_metrics(self) -> None:
        """Each Sluice process's /metrics next to its log, for a run that did not drain: what
        its streams and consumers held when the bench stopped waiting."""
        for spec, logfile in zip(self.variant.procs, self.logs):
            if spec.binary != SLUICE_BIN:
                continue
            url = f"http://{self.env(spec)['BENCH_METRICS_ENDPOINT']}/metrics"
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    logfile.with_suffix(".metrics.txt").write_bytes(r.read())
            except (urllib.error.URLError, OSError) as e:
                logfile.with_suffix(".metrics.txt").write_text(f"cannot read {url}: {e}\n")

    def stop(self) -> list[int | None]:
        # Agent first, so nothing is published to a stopped exporter half.
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=30))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                codes.append(None)
        shutil.rmtree(self.data, ignore_errors=True)
        return codes


def sink_delay(ms: int) -> None:
    """Makes the sink answer every export `ms` late (S8), or at once (0)."""
    req = urllib.request.Request(f"http://{SINK_CONTROL}/delay?ms={ms}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as answer:
        answer.read()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def tcp_open(hostport: str) -> bool:
    host, port = hostport.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def pulsar_subscriptions(topic: str) -> list[str]:
    path = topic.replace("persistent://", "persistent/")
    try:
        with urllib.request.urlopen(f"{PULSAR_ADMIN}/admin/v2/{path}/subscriptions", timeout=2) as r:
            return json.load(r)
    except (urllib.error.URLError, OSError, ValueError):
        return []


def busy_cpu_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# The sink's pid, for the CPU accounting of each run (set by main).
SINK_PID: int | None = None
# True when measuring (main), False for `--report`.
LIVE = False


def on_cpus(argv: list[str], cpus: str) -> list[str]:
    """argv run on `cpus` under BENCH_PIN (taskset execs it: the pid stays the process's)."""
    return ["taskset", "-c", cpus, *argv] if PIN else argv


# === one run ===================================================================================


def measure(variant: Variant, spans: int, mode: str, run_no: int, logdir: Path, duration: float = DURATION) -> dict:
    """One run. mode: "saturation" | "fixed" (S1-S4), "tenants" | "quiet-only" (S5), "steady"
    (S10: the fixed rate, for longer)."""
    running = Running(variant, run_no, logdir)
    started = time.monotonic()
    try:
        sink_delay(variant.sink_delay_ms)
        running.start()
        rate = FIXED_RATES[spans] if mode in ("fixed", "steady") else 0
        protocol, _, compression = variant.ingest.partition("+")
        argv = [
            str(LOADGEN_BIN), "send",
            "--endpoint", f"http://{DAEMON_ENDPOINT if protocol == 'grpc' else HTTP_ENDPOINT}",
            "--protocol", protocol,
            "--compression", compression or "none",
            "--signal", variant.signal,
            "--spans", str(spans),
            "--rate", str(rate),
            "--duration", str(duration),
            "--concurrency", str(CONCURRENCY if mode == "saturation" else 1024),
            "--connections", str(CONNECTIONS),
            "--sink-control", f"http://{SINK_CONTROL}",
            "--pids", ",".join(map(str, running.pids())),
            "--drain-timeout", str(DRAIN_TIMEOUT),
            "--clk-tck", str(os.sysconf("SC_CLK_TCK")),
            "--run", str(run_no % 65000 + 1),
            *variant.loadgen,
        ]
        if variant.daemon == "sluice" and variant.broker:
            argv += ["--header", f"x-scope-orgid={running.tenant}"]
        if mode in S5_MODES:
            argv += ["--tenant", "noisy", "--quiet-tenants", str(QUIET_TENANTS), "--quiet-rate", str(QUIET_RATE),
                     "--quiet-spans", "1", "--quiet-connections", str(QUIET_CONNECTIONS)]
            argv += ["--quiet-only"] if mode == "quiet-only" else []
        broker = BROKERS[variant.broker].pid() if variant.broker else None
        before = (busy_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN), proc_cpu_s(SINK_PID), proc_cpu_s(broker))
        t = time.monotonic()
        out = subprocess.run(on_cpus(argv, LOAD_CPUS), capture_output=True, text=True,
                             timeout=duration + DRAIN_TIMEOUT + 60)
        wall = time.monotonic() - t
        after = (busy_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN), proc_cpu_s(SINK_PID), proc_cpu_s(broker))
        if out.returncode != 0:
            dead = [f"{p.args[0]} exited with {p.returncode}" for p in running.procs if p.poll() is not None]
            raise RuntimeError(f"loadgen failed ({out.returncode}){'; ' + ', '.join(dead) if dead else ''}: "
                               f"{out.stderr[-2000:]}; daemon logs {', '.join(map(str, running.logs))}")
        result = json.loads(out.stdout)
        if not result["drained"]:
            running.save_metrics()
        # Where the machine's CPU went during the run, in cores: the daemon(s), the load
        # client, the sink, the broker, and anything else on the machine ("other": noise).
        loadgen = (after[1].ru_utime + after[1].ru_stime) - (before[1].ru_utime + before[1].ru_stime)
        busy = after[0] - before[0]
        split = {
            "daemon": result["cpu_s"],
            "loadgen": loadgen,
            "sink": after[2] - before[2],
            "broker": after[3] - before[3],
        }
        split["other"] = max(0.0, busy - sum(split.values()))
        result["machine_cores"] = {k: v / wall for k, v in split.items()}
    finally:
        if variant.sink_delay_ms:
            sink_delay(0)
        # A daemon that died during the run, or did not stop cleanly, fails the run.
        died = [p.returncode for p in running.procs if p.poll() is not None]
        codes = running.stop()
    if died:
        raise RuntimeError(f"{variant.key} exited during the run with {died}; logs {', '.join(map(str, running.logs))}")
    if any(c != 0 for c in codes):
        raise RuntimeError(f"{variant.key} did not stop cleanly (exit codes {codes}; None = killed after 30 s); "
                           f"logs {', '.join(map(str, running.logs))}")
    result["exit_codes"] = codes
    result["variant"] = variant.key
    result["mode"] = mode
    if PIN:
        result["pinned"] = f"daemon on CPU {DAEMON_CPUS}, load client and sink on CPU {LOAD_CPUS}"
    result["wall_s"] = time.monotonic() - started
    result["logs"] = [str(p) for p in running.logs]
    return result


def vm_kib(pid: int, key: str) -> int:
    """A `/proc/<pid>/status` size in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key + ":"))


def measure_idle(variant: Variant, run_no: int, logdir: Path) -> dict:
    """A daemon left alone for IDLE_WINDOW_S after it is ready: its RSS and its idle CPU."""
    running = Running(variant, run_no, logdir)
    try:
        running.start()
        cpu_before = sum(proc_cpu_s(pid) for pid in running.pids())
        time.sleep(IDLE_WINDOW_S)  # the measuring window itself, not a wait for a condition
        cpu = sum(proc_cpu_s(pid) for pid in running.pids()) - cpu_before
        rss = {key: sum(vm_kib(pid, key) for pid in running.pids()) for key in ("VmRSS", "RssAnon", "RssFile")}
    finally:
        running.stop()
    return {"variant": variant.key, "mode": "idle", "idle_rss_kib": rss["VmRSS"], "idle_anon_kib": rss["RssAnon"],
            "idle_file_kib": rss["RssFile"], "idle_cpu_ms_per_s": cpu * 1000 / IDLE_WINDOW_S}


def natscli(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(NATSCLI_SCRIPT), "--server", NATS_URL, *args], capture_output=True,
                          text=True, timeout=timeout)


def measure_ceiling(spans: int, message_bytes: int, run_no: int, logdir: Path) -> dict:
    """S7's reference: what the bench's NATS server takes in acknowledged publishes of the size
    Sluice publishes at `spans` spans/request. Sluice's CONCURRENCY requests in flight each wait
    for one publish acknowledgement, hence CONCURRENCY synchronous publishers. Into a fresh
    file-storage stream, removed afterwards (at 1 000 spans/request it holds gigabytes)."""
    stream = f"ceiling-{os.getpid()}-{run_no}"
    headers = [a for h in (*NATS_HEADERS, f"items:{spans}") for a in ("-H", h)]
    logfile = logdir / f"{run_no:03d}-nats-ceiling-{spans}.log"

    def bench(tag: str, msgs: int) -> tuple[list[str], str, float]:
        name = f"{stream}-{tag}"
        # Room for every message with its headers, so the stream's limit (discard: new) never
        # refuses one; natscli's default is 1 GB.
        room = max(64 << 20, 2 * msgs * (message_bytes + 1024))
        argv = ["bench", "js", "pub", "sync", f"ceiling.{run_no}.{tag}", "--stream", name, "--create",
                "--storage", "file", "--clients", str(CONCURRENCY), "--msgs", str(msgs),
                "--size", f"{message_bytes}B", "--maxbytes", f"{room}B", "--no-progress", *headers]
        t = time.monotonic()
        try:
            out = natscli(*argv, timeout=DURATION * 5 + 120)
        finally:
            natscli("stream", "rm", "--force", name, timeout=60)
        wall = time.monotonic() - t
        with open(logfile, "a") as f:
            f.write(f"$ {shlex.join(['nats', '--server', NATS_URL, *argv])}\n{out.stdout}{out.stderr}\n")
        if out.returncode != 0 or "aggregated stats" not in out.stdout:
            raise RuntimeError(f"nats bench failed ({out.returncode}): {(out.stdout + out.stderr)[-1500:]}; log {logfile}")
        return argv, out.stdout, wall

    def number(pattern: str, text: str) -> float:
        m = re.search(pattern, text)
        if not m:
            raise RuntimeError(f"no {pattern!r} in the nats bench output; log {logfile}")
        return float(m.group(1).replace(",", ""))

    rate = r"aggregated stats: ([\d,.]+) msgs/sec"
    # The calibration also warms the server's first file blocks of the size.
    _, text, _ = bench("calibrate", CONCURRENCY * CEILING_MIN_PER_CLIENT)
    msgs = max(CONCURRENCY * CEILING_MIN_PER_CLIENT, round(number(rate, text) * DURATION))
    broker = BROKERS["nats"].pid()
    before = (proc_cpu_s(broker), busy_cpu_s())
    argv, text, wall = bench("measure", msgs)
    after = (proc_cpu_s(broker), busy_cpu_s())
    msgs_per_s = number(rate, text)
    latencies = text[text.find("latencies per operation"):]
    return {
        "spans_per_request": spans,
        "message_bytes": message_bytes,
        "clients": CONCURRENCY,
        "msgs": msgs,
        "msgs_per_s": msgs_per_s,
        "bytes_per_s": msgs_per_s * message_bytes,
        "publish_p50_us": number(r"P50 ([\d,.]+)us", latencies),
        "publish_p99_us": number(r"P99 ([\d,.]+)us", latencies),
        "wall_s": wall,
        "target_s": DURATION,
        "broker_cores": (after[0] - before[0]) / wall,
        "machine_cores": (after[1] - before[1]) / wall,
        "command": shlex.join(["nats", "--server", NATS_URL, *argv]),
        "log": str(logfile),
    }


# === the whole comparison ======================================================================


def cells() -> list[tuple[str, int, str, list[str]]]:
    """(group, spans, mode, variants) in run order; a variant measured once per cell."""
    out: dict[tuple[str, int, str], list[str]] = {}
    for c in COMPARISONS:
        group = VARIANTS[c.sluice].broker or "disk"
        for spans in c.spans:
            for mode in c.modes:
                vs = out.setdefault((group, spans, mode), [])
                for v in (c.sluice, c.collector):
                    if v and v not in vs:
                        vs.append(v)
    if "S5" in ONLY:
        for mode in S5_MODES:
            out[("tenants", NOISY_SPANS, mode)] = list(S5_VARIANTS)
    if "S10" in ONLY:
        out[("steady", STEADY_SPANS, "steady")] = list(STEADY_VARIANTS)
    return [(g, s, m, vs) for (g, s, m), vs in out.items()]


def group_reps(group: str) -> int:
    """S10's runs are long: one repetition (its figures are the run's, not medians)."""
    return 1 if group == "steady" else REPS


def group_duration(group: str) -> float:
    return {"tenants": S5_DURATION, "steady": STEADY_DURATION}.get(group, DURATION)


def alternate(variants: list[str], turn: int) -> list[str]:
    """Sluice and Collector variants interleaved, the first daemon alternating by turn."""
    s = [v for v in variants if VARIANTS[v].daemon == "sluice"]
    c = [v for v in variants if VARIANTS[v].daemon == "otelcol"]
    first, second = (s, c) if turn % 2 == 0 else (c, s)
    order = []
    for i in range(max(len(first), len(second))):
        order += first[i : i + 1] + second[i : i + 1]
    return order


def main() -> int:
    plan = cells()
    needed = [(SLUICE_BIN, "make release-daemon"), (LOADGEN_BIN, "cargo build --release --example loadgen")]
    if "IDLE" in ONLY or any(VARIANTS[v].daemon == "otelcol" for _, _, _, vs in plan for v in vs):
        needed.append((OTELCOL_BIN, "make peers"))
    for b, hint in needed:
        if not b.exists():
            log(f"missing {b} (build it with `{hint}`)")
            return 2
    matched = startup_symbols_matched()
    if matched and matched[0] < 0.9 * matched[1]:
        log(f"warning: only {matched[0]} of the {matched[1]} functions in src/startup_symbols.txt are in {SLUICE_BIN}, "
            f"so its memory is not what a user's build has. {LAYOUT_HINT}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = OUT / "logs" / stamp
    logdir.mkdir(parents=True, exist_ok=True)
    runs_total = sum(len(vs) * group_reps(g) for g, _, _, vs in plan)
    log(f"{'quick' if QUICK else 'full'} run: {runs_total} runs of {DURATION:g} s"
        + (f" (S5: {S5_DURATION:g} s)" if "S5" in ONLY else "")
        + f", {REPS} repetition(s); logs in {logdir}")
    if S3_FOR_S4:
        log("S4 selected: S3 runs too (S4's cost against pass-through divides by S3 of the same run)")

    sink_log = open(logdir / "sink.log", "wb")
    sink = subprocess.Popen(
        on_cpus([str(LOADGEN_BIN), "sink", "--listen", SINK_ENDPOINT, "--control", SINK_CONTROL], LOAD_CPUS),
        stdout=sink_log, stderr=subprocess.STDOUT,
    )
    global SINK_PID, LIVE
    SINK_PID = sink.pid
    LIVE = True
    results: list[dict] = []
    failures: list[str] = []
    ceilings: list[dict] = []
    idle: list[dict] = []
    # Request size per spans/request, from the load client (S7's ceiling publishes that size).
    request_bytes: dict[int, int] = {}
    started_broker: Broker | None = None
    run_no = 0  # unique per daemon start (data directories, topics, sink run ids)
    measured = 0
    t0 = time.monotonic()
    try:
        deadline = time.monotonic() + 10
        while not tcp_open(SINK_CONTROL):
            if sink.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bench sink did not start; see " + str(logdir / "sink.log"))
            time.sleep(0.05)
        if "IDLE" in ONLY:
            for rep in range(REPS):
                for key in alternate(list(IDLE_VARIANTS), rep):
                    run_no += 1
                    what = f"[idle] {key} (rep {rep + 1})"
                    try:
                        r = measure_idle(VARIANTS[key], run_no, logdir)
                    except Exception as e:
                        log(f"{what}: FAILED: {e}")
                        failures.append(f"{what}: {str(e)[:600]}")
                        continue
                    r["rep"] = rep
                    idle.append(r)
                    log(f"{what}: RSS {r['idle_rss_kib'] / 1024:.1f} MiB (anonymous {r['idle_anon_kib'] / 1024:.1f}, "
                        f"file {r['idle_file_kib'] / 1024:.1f}), CPU {r['idle_cpu_ms_per_s']:.2f} ms/s")
        for group in ("disk", "tenants", "steady", *BROKERS):
            group_cells = [c for c in plan if c[0] == group]
            if not group_cells:
                continue
            if group in BROKERS:
                broker = BROKERS[group]
                log(f"starting the bench's {broker.label}")
                if broker.run("start").returncode != 0:
                    failures.append(f"{'/'.join(broker.scenarios)}: the {broker.label} did not start")
                    continue
                started_broker = broker
                # A fresh broker is cold (a JVM's first minute is slower). Warm it with the
                # daemons' traffic before anything is measured (results discarded).
                for key in dict.fromkeys(v for c in group_cells for v in c[3]):
                    if VARIANTS[key].sink_delay_ms:
                        continue  # a slow backend at saturation would not drain; the others warm the broker
                    run_no += 1
                    try:
                        r = measure(VARIANTS[key], 100, "saturation", run_no, logdir, duration=WARMUP_S)
                        request_bytes[100] = r["request_bytes"]
                        log(f"warm-up through {key} done")
                    except Exception as e:
                        log(f"warm-up through {key} failed: {e}")
            for rep in range(group_reps(group)):
                for i, (_, spans, mode, variants) in enumerate(group_cells):
                    for key in alternate(variants, rep + i):
                        run_no += 1
                        measured += 1
                        what = f"[{measured}/{runs_total}] {key} {spans} spans/request {mode} (rep {rep + 1})"
                        if group == "tenants":
                            what = f"[{measured}/{runs_total}] {key} {mode} (rep {rep + 1})"
                        try:
                            r = measure(VARIANTS[key], spans, mode, run_no, logdir, duration=group_duration(group))
                        except Exception as e:  # one broken run must not lose the others
                            log(f"{what}: FAILED: {e}")
                            failures.append(f"{what}: {str(e)[:600]}")
                            continue
                        r["rep"] = rep
                        results.append(r)
                        request_bytes[spans] = r["request_bytes"]
                        log(f"{what}: {run_line(r)}")
                    if group == "nats" and mode == "saturation":
                        run_no += 1
                        what = f"[ceiling] nats bench js pub sync, {spans} spans/request (rep {rep + 1})"
                        try:
                            if spans not in request_bytes:
                                raise RuntimeError("message size unknown: no load client run of this size succeeded")
                            c = measure_ceiling(spans, request_bytes[spans], run_no, logdir)
                        except Exception as e:
                            log(f"{what}: FAILED: {e}")
                            failures.append(f"{what}: {str(e)[:600]}")
                        else:
                            c["rep"] = rep
                            ceilings.append(c)
                            log(f"{what}: {ceiling_line(c)}")
            if started_broker:
                started_broker.stop()
                started_broker = None
    finally:
        if started_broker:
            started_broker.stop()
        sink.terminate()
        sink.wait()
    elapsed = time.monotonic() - t0

    report = render(results, failures, elapsed, versions(), ceilings, idle)
    print(report)
    (OUT / f"results-{stamp}.json").write_text(json.dumps({"results": results, "failures": failures, "elapsed_s": elapsed,
                                                           "versions": versions(), "ceilings": ceilings, "idle": idle},
                                                          indent=1))
    (OUT / f"results-{stamp}.md").write_text(report)
    (OUT / "latest.md").write_text(report)
    log(f"results: {OUT / f'results-{stamp}.md'} and .json ({elapsed / 60:.1f} min)")
    return 1 if failures else 0


def run_line(r: dict) -> str:
    """One run's figures for the progress log."""
    line = (f"{r['delivered_sps']:,.0f} spans/s, "
            f"{r['cpu_s_per_million']:.2f} CPU-s/M, {r['rss_peak_kib'] / 1024:.0f} MiB, "
            f"p99 {r['latency']['p99_us'] / 1000:.0f} ms, refused {r['refused_spans']}, "
            f"lost {r['missing_spans']}, dup {r['duplicate_spans']}")
    if r.get("healthz_every"):
        line += (f", sent {r['accepted_spans']:,} ({r['cpu_s_per_million_accepted']:.2f} CPU-s/M sent), "
                 f"delivered {r['delivered_spans']:,} of {r['expected_spans']:,} expected, "
                 f"health checks leaked {r['healthz_received']}")
    if r.get("quiet_tenants"):
        t = tenant_summary(r)
        line += (f"; noisy {fmt(t['noisy_sps'])} spans/s, quiet p99 median {fmt(t['quiet_p99_median'])} ms, "
                 f"worst {fmt(t['quiet_p99_worst'])} ms ({t['quiet_p99_worst_tenant']}), "
                 f"tenant header forwarded for {t['forwarded']}/{t['tenants']}, mixed requests {r.get('mixed_requests')}")
    line += "" if r["drained"] else ", NOT DRAINED"
    line += "; cores: " + " ".join(f"{k} {v:.2f}" for k, v in r["machine_cores"].items())
    return line


def ceiling_line(c: dict) -> str:
    return (f"{c['msgs_per_s']:,.0f} msgs/s, {c['bytes_per_s'] / 2**20:,.1f} MiB/s, publish p99 "
            f"{c['publish_p99_us'] / 1000:.1f} ms ({c['msgs']:,} messages of {c['message_bytes']:,} B, "
            f"{c['clients']} clients, {c['wall_s']:.1f} s); cores: broker {c['broker_cores']:.2f}, "
            f"machine {c['machine_cores']:.2f}")


# === report ====================================================================================


def med(rs: list[dict], f) -> float | None:
    vals = [f(r) for r in rs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(rs: list[dict], mode: str, per_sent: bool = False) -> dict:
    """Medians of one cell. per_sent (S4): spans/s and CPU per span sent (acknowledged), not
    delivered, since the filter delivers only 90 % of them."""
    sat_sps = "accepted_e2e_sps" if per_sent else "delivered_sps"
    s = {
        "n": len(rs),
        # Saturation: delivered end to end (first send -> last receipt). Fixed rate: the rate
        # the daemon took on schedule (delivery is checked by `lost`); the end-to-end figure
        # would be short of it by the last batch's linger.
        "sps": med(rs, lambda r: r[sat_sps] if mode == "saturation" else r["accepted_sps"]),
        "cpu": med(rs, lambda r: r["cpu_s_per_million_accepted" if per_sent else "cpu_s_per_million"]),
        "rss": med(rs, lambda r: r["rss_peak_kib"] / 1024),
        "p50": med(rs, lambda r: r["latency"]["p50_us"] / 1000),
        "p99": med(rs, lambda r: r["latency"]["p99_us"] / 1000),
        "refused": sum(r["refused_spans"] for r in rs),
        "lost": sum(r["missing_spans"] for r in rs),
        "dup": sum(r["duplicate_spans"] for r in rs),
        "undrained": sum(1 for r in rs if not r["drained"]),
        "leaked": sum(r.get("healthz_received", 0) for r in rs),
        "expected": sum(r.get("expected_spans", r["accepted_spans"]) for r in rs),
        "delivered": sum(r["delivered_spans"] for r in rs),
    }
    if mode == "fixed":
        # Sustained: offered on schedule, nothing refused, everything delivered.
        s["sustained"] = all(
            r["offered_sps"] >= 0.97 * r["rate_target"] and r["refused_spans"] == 0 and r["drained"] for r in rs
        )
    return s


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def render(results: list[dict], failures: list[str], elapsed: float, measured: dict[str, str] | None = None,
           ceilings: list[dict] = (), idle: list[dict] = ()) -> str:
    by: dict[tuple[str, int, str], list[dict]] = {}
    for r in results:
        by.setdefault((r["variant"], r["spans_per_request"], r["mode"]), []).append(r)
    lines = []
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines.append(f"Machine: {os.cpu_count()} vCPU ({cpu}), {mem_gib:.0f} GiB RAM, {os.uname().sysname} {os.uname().release}. "
                 f"{REPS} repetition(s) of {DURATION:g} s per run, medians; {elapsed / 60:.1f} min in all.")
    if measured:
        lines.append(f"Sluice {measured.get('sluice', '?')}; {measured.get('otelcol', 'Collector ?')}.")
    pinned = sorted({r["pinned"] for r in results if r.get("pinned")})
    if pinned:
        lines.append(f"Pinned with taskset: {'; '.join(pinned)}. Saturation spans/s is what one core of the daemon takes.")
    others = sorted(r["machine_cores"]["other"] for r in results if "machine_cores" in r)
    if others:
        lines.append(f"CPU taken by other processes on the machine during the runs (noise): median "
                     f"{statistics.median(others):.2f} cores, max {others[-1]:.2f} of {os.cpu_count()}.")
    if COMPARISONS:
        lines.append("")
        lines.append("| scenario | spans/req | load | daemon | spans/s | CPU-s / M spans | peak RSS MiB | p50 ms | p99 ms | refused / lost / dup |")
        lines.append("|---|---:|---|---|---:|---:|---:|---:|---:|---|")
    seen = set()
    for c in COMPARISONS:
        for spans in c.spans:
            for mode in c.modes:
                for key in (c.sluice, c.collector):
                    if not key or (c.scenario, key, spans, mode) in seen:
                        continue
                    seen.add((c.scenario, key, spans, mode))
                    rs = by.get((key, spans, mode), [])
                    if not rs:
                        lines.append(f"| {c.scenario} | {spans} | {load_label(mode, spans)} | {VARIANTS[key].label} | no result | | | | | |")
                        continue
                    s = summarize(rs, mode, per_sent=c.scenario == "S4")
                    flags = f"{s['refused']} / {s['lost']} / {s['dup']}"
                    if s["leaked"]:
                        flags += f" ({s['leaked']} health checks leaked)"
                    if s["undrained"]:
                        flags += f" ({s['undrained']} not drained)"
                    if mode == "fixed" and not s["sustained"]:
                        flags += " NOT SUSTAINED"
                    lines.append(
                        f"| {c.scenario} | {spans} | {load_label(mode, spans)} | {VARIANTS[key].label} | {fmt(s['sps'])} | "
                        f"{fmt(s['cpu'], 2)} | {fmt(s['rss'])} | {fmt(s['p50'])} | {fmt(s['p99'])} | {flags} |"
                    )
    paired = [c for c in COMPARISONS if c.collector]
    if paired:
        lines.append("")
        lines.append("Sluice / Collector (below 1 is better for CPU, RSS and p99; above 1 is better for spans/s):")
        lines.append("")
        lines.append("| scenario | comparison | spans/req | load | spans/s | CPU / span | peak RSS | p99 |")
        lines.append("|---|---|---:|---|---:|---:|---:|---:|")
    for c in paired:
        for spans in c.spans:
            for mode in MODES:
                a = by.get((c.sluice, spans, mode), [])
                b = by.get((c.collector, spans, mode), [])
                if not a or not b:
                    lines.append(f"| {c.scenario} | {c.note} | {spans} | {load_label(mode, spans)} | – | – | – | – |")
                    continue
                sa, sb = summarize(a, mode, c.scenario == "S4"), summarize(b, mode, c.scenario == "S4")
                lines.append(
                    f"| {c.scenario} | {c.note} | {spans} | {load_label(mode, spans)} | {ratio(sa['sps'], sb['sps'])} | "
                    f"{ratio(sa['cpu'], sb['cpu'])} | {ratio(sa['rss'], sb['rss'])} | {ratio(sa['p99'], sb['p99'])} |"
                )
    # In a live run, a selected scenario's section shows even when its runs failed; `--report`
    # of an earlier run shows the sections it has results for.
    if any(r["variant"] in S3_OF for r in results) or (LIVE and "S4" in ONLY):
        lines += render_s4(by)
    if any(r["variant"] in S5_VARIANTS for r in results) or (LIVE and "S5" in ONLY):
        lines += render_s5(results)
    if any(r["variant"] == "sluice-nats" for r in results) or ceilings or (LIVE and "S7" in ONLY):
        lines += render_s7(by, ceilings)
    if any(r["variant"] in S8_VARIANTS for r in results) or (LIVE and "S8" in ONLY):
        for buffer in S8_BUFFERS:
            lines += render_s8(by, buffer)
    if any(r["mode"] == "steady" for r in results) or (LIVE and "S10" in ONLY):
        lines += render_steady(by)
    if idle or (LIVE and "IDLE" in ONLY):
        lines += render_idle(idle)
    problems = [r for r in results if r["missing_spans"] or r["duplicate_spans"] or r.get("healthz_received")
                or not r["drained"]]
    if problems:
        lines.append("")
        lines.append("Runs that did not deliver exactly what was acknowledged:")
        for r in problems:
            lines.append(f"- {r['variant']} {r['spans_per_request']} spans/request {r['mode']} (rep {r.get('rep', 0) + 1}): "
                         f"acknowledged {r['accepted_spans']:,}, expected at the sink {r.get('expected_spans', r['accepted_spans']):,}, "
                         f"delivered {r['delivered_spans']:,}: lost {r['missing_spans']:,}, duplicated {r['duplicate_spans']:,}"
                         + (f", health checks leaked {r['healthz_received']:,}" if r.get("healthz_received") else "")
                         + ("" if r["drained"] else f", not drained after {r['drain_s']:.0f} s") + f"; logs {', '.join(r['logs'])}")
    if failures:
        lines.append("")
        lines.append("Failed runs:")
        lines += [f"- {f}" for f in failures]
    return "\n".join(lines) + "\n"


def render_s8(by: dict[tuple[str, int, str], list[dict]], buffer: str) -> list[str]:
    lines = ["", f"S8, one tenant (4 partitions) through {S8_BUFFERS[buffer]}, sink answering {S8_SINK_DELAY_MS} ms late, "
                 f"fixed {FIXED_RATES[100]:,} spans/s at 100 spans/request (medians):", "",
             "| exporter processes | spans/s delivered | CPU-s / M spans (all processes) | p99 ms | refused / lost / dup |",
             "|---:|---:|---:|---:|---|"]
    sps = {}
    for n in S8_EXPORTERS:
        rs = by.get((s8_variant(buffer, n), 100, "fixed"), [])
        if not rs:
            lines.append(f"| {n} | no result | | | |")
            continue
        s = summarize(rs, "fixed")
        # Delivered over first send -> last receipt: the export rate, whatever was offered.
        sps[n] = med(rs, lambda r: r["delivered_sps"])
        lines.append(f"| {n} | {fmt(sps[n])} | {fmt(s['cpu'], 2)} | {fmt(s['p99'])} | {s['refused']} / {s['lost']} / {s['dup']} |")
    if len(sps) == len(S8_EXPORTERS):
        lines += ["", f"Delivered with {S8_EXPORTERS[-1]} exporter processes / with {S8_EXPORTERS[0]}: "
                      f"{ratio(sps[S8_EXPORTERS[-1]], sps[S8_EXPORTERS[0]])}."]
    return lines


def render_steady(by: dict[tuple[str, int, str], list[dict]]) -> list[str]:
    rate = FIXED_RATES[STEADY_SPANS]
    lines = ["", f"S10, steady state: fixed {rate:,} spans/s at {STEADY_SPANS} spans/request for "
                 f"{STEADY_DURATION:g} s, one run each (beside the {DURATION:g} s fixed-rate medians of S1):", "",
             "| daemon | spans/s | CPU-s / M spans | peak RSS MiB | RSS after the load MiB | peak RSS in S1 MiB | p99 ms "
             "| refused / lost / dup |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    peaks = {}
    for key in STEADY_VARIANTS:
        rs = by.get((key, STEADY_SPANS, "steady"), [])
        if not rs:
            lines.append(f"| {VARIANTS[key].label} | no result | | | | | | |")
            continue
        s = summarize(rs, "fixed")
        peaks[key] = s["rss"]
        end = med(rs, lambda r: sum(p["rss_kib"] for p in r["processes"]) / 1024)
        s1_runs = by.get((key, STEADY_SPANS, "fixed"))
        s1 = summarize(s1_runs, "fixed")["rss"] if s1_runs else None
        flags = f"{s['refused']} / {s['lost']} / {s['dup']}" + ("" if s["sustained"] else " NOT SUSTAINED")
        lines.append(f"| {VARIANTS[key].label} | {fmt(s['sps'])} | {fmt(s['cpu'], 2)} | {fmt(s['rss'])} | {fmt(end)} | "
                     f"{fmt(s1)} | {fmt(s['p99'])} | {flags} |")
    if len(peaks) == 2:
        lines += ["", f"Peak RSS over the steady run, Sluice / Collector: {ratio(*(peaks[k] for k in STEADY_VARIANTS))}."]
    return lines


def render_idle(idle: list[dict]) -> list[str]:
    lines = ["", f"Idle, {IDLE_WINDOW_S:g} s after ready (medians; RSS is anonymous memory plus the mapped pages of "
                 "files, mostly the binary's code):", "",
             "| daemon | RSS MiB | anonymous MiB | file-backed MiB | CPU ms per s |", "|---|---:|---:|---:|---:|"]
    rss = {}
    for key in IDLE_VARIANTS:
        rs = [r for r in idle if r["variant"] == key]
        rss[key] = med(rs, lambda r: r["idle_rss_kib"] / 1024)
        anon = med(rs, lambda r: r["idle_anon_kib"] / 1024)
        file = med(rs, lambda r: r["idle_file_kib"] / 1024)
        cpu = med(rs, lambda r: r["idle_cpu_ms_per_s"])
        lines.append(f"| {VARIANTS[key].label} | {fmt(rss[key], 1)} | {fmt(anon, 1)} | {fmt(file, 1)} | {fmt(cpu, 2)} |")
    lines += ["", f"Idle RSS, Sluice / Collector: {ratio(*(rss[k] for k in IDLE_VARIANTS))}."]
    matched = startup_symbols_matched()
    if matched:
        lines += ["", f"Code layout: {matched[0]} of the {matched[1]} functions in src/startup_symbols.txt are in the "
                      "Sluice binary measured (the others are laid out anywhere). " + LAYOUT_HINT]
    return lines


# Where many of the list's functions are missing, the binary or the list is not what the image gets.
LAYOUT_HINT = ("When many are missing, either the daemon was built in one cargo invocation with an example (its "
               "dependencies then get the dev-dependencies' features and other symbol names: `make release-daemon` "
               "builds it alone, as the image does), or the list is stale (`make startup-symbols`).")


def startup_symbols_matched() -> tuple[int, int] | None:
    """How much of the linker's start-up list the measured binary still has: a stale list
    shows here before it shows as idle memory (docs/architecture.md, "Code layout")."""
    sys.path.insert(0, str(REPO / "deploy" / "scripts"))
    from startup_symbols import defined_functions  # the list's own reading of the binary

    try:
        listed = (REPO / "src" / "startup_symbols.txt").read_text().split()
        defined = defined_functions(SLUICE_BIN)
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum(name in defined for name in listed), len(listed)


def render_s4(by: dict[tuple[str, int, str], list[dict]]) -> list[str]:
    """S4: per span sent, delivery against expectation, and the cost against pass-through."""
    lines = ["", f"S4 processors (filter drops every {HEALTHZ_EVERY}th span, attributes hashes user.email and inserts env): "
             "spans/s and CPU per span *sent* (acknowledged); the sink must receive exactly the spans that are not "
             "health checks. Cost against pass-through = S4 CPU-s/M sent / the same daemon's S3 CPU-s/M sent, "
             "same load, same run:", ""]
    lines.append("| spans/req | load | daemon | spans/s sent | CPU-s / M sent | peak RSS MiB | p99 ms | delivered / expected "
                 "| lost / leaked / dup | S3 CPU-s / M | S4 / S3 |")
    lines.append("|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for c in COMPARISONS:
        if c.scenario != "S4":
            continue
        for spans in c.spans:
            for mode in MODES:
                for key in (c.sluice, c.collector):
                    rs = by.get((key, spans, mode), [])
                    if not rs:
                        lines.append(f"| {spans} | {load_label(mode, spans)} | {VARIANTS[key].label} | no result (failed) "
                                     f"| | | | | | | |")
                        continue
                    s = summarize(rs, mode, per_sent=True)
                    base = by.get((S3_OF[key], spans, mode), [])
                    b = summarize(base, mode, per_sent=True) if base else None
                    flags = f"{s['lost']} / {s['leaked']} / {s['dup']}"
                    if s["undrained"]:
                        flags += f" ({s['undrained']} not drained)"
                    lines.append(
                        f"| {spans} | {load_label(mode, spans)} | {VARIANTS[key].label} | {fmt(s['sps'])} | {fmt(s['cpu'], 2)} "
                        f"| {fmt(s['rss'])} | {fmt(s['p99'])} | {s['delivered']:,} / {s['expected']:,} | {flags} "
                        f"| {fmt(b['cpu'], 2) if b else 'no S3 result'} | {ratio(s['cpu'], b['cpu']) if b else '–'} |")
    return lines


def render_s7(by: dict[tuple[str, int, str], list[dict]], ceilings: list[dict]) -> list[str]:
    """S7: Sluice through NATS against the broker's own publish ceiling of the same run."""
    lines = ["", f"S7 NATS JetStream, Sluice alone (the Collector has no NATS components). Sluice publishes one "
             "message per request (batching is on the read side), so its published msgs/s are the acknowledged "
             "requests/s, and MiB/s counts the request bytes. The ceiling is the broker's own, same run: natscli "
             f"`nats bench js pub sync`, {CONCURRENCY} clients with one acknowledged publish each in flight (as "
             f"Sluice's {CONCURRENCY} requests), file storage, messages of Sluice's size with its headers; median "
             "of the repetitions. While the ceiling is measured only the broker and natscli run; Sluice's runs also carry "
             "the load client, the sink and Sluice's own export (every message read back, exported, acknowledged). "
             "Sluice / ceiling = published msgs/s over the ceiling's msgs/s (same message size, so also bytes/s):",
             ""]
    lines.append("| spans/req | load | spans/s | published msgs/s | published MiB/s | CPU-s / M spans | peak RSS MiB "
                 "| p99 ms | refused / lost / dup | message bytes | ceiling msgs/s | ceiling MiB/s | ceiling publish p99 ms "
                 "| Sluice / ceiling |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for c in COMPARISONS:
        if c.scenario != "S7":
            continue
        for spans in c.spans:
            cs = [x for x in ceilings if x["spans_per_request"] == spans]
            ceiling = med(cs, lambda x: x["msgs_per_s"])
            ceiling_p99 = med(cs, lambda x: x["publish_p99_us"] / 1000)
            for mode in MODES:
                rs = by.get((c.sluice, spans, mode), [])
                if not rs:
                    lines.append(f"| {spans} | {load_label(mode, spans)} | no result (failed) | | | | | | | | "
                                 f"{fmt(ceiling)} | | | |")
                    continue
                s = summarize(rs, mode)
                size = rs[0]["request_bytes"]
                published = med(rs, lambda r: r["accepted_requests"] / r["duration_s"])
                flags = f"{s['refused']} / {s['lost']} / {s['dup']}"
                if s["undrained"]:
                    flags += f" ({s['undrained']} not drained)"
                if mode == "fixed" and not s["sustained"]:
                    flags += " NOT SUSTAINED"
                lines.append(
                    f"| {spans} | {load_label(mode, spans)} | {fmt(s['sps'])} | {fmt(published)} "
                    f"| {fmt(published * size / 2**20, 1)} | {fmt(s['cpu'], 2)} | {fmt(s['rss'])} | {fmt(s['p99'])} "
                    f"| {flags} | {size:,} | {fmt(ceiling) if cs else 'no ceiling (failed)'} "
                    f"| {fmt(ceiling * size / 2**20, 1) if cs else '–'} | {fmt(ceiling_p99, 1)} | {ratio(published, ceiling)} |")
    if ceilings:
        lines += ["", f"Ceiling command (natscli v0.5.0; --msgs from a calibration publish, to last about "
                  f"{ceilings[0].get('target_s', DURATION):g} s; the stream is removed afterwards): "
                  f"`{ceilings[0]['command']}`"]
    return lines


def tenant_summary(r: dict) -> dict:
    """One S5 run: the noisy tenant's throughput and the quiet tenants' latencies."""
    ts = [t for t in r.get("tenants", []) if t["offered_spans"] > 0]
    noisy = next((t for t in ts if t["tenant"] == 0), None)
    quiet = [t for t in ts if t["tenant"] != 0]
    p99 = sorted(((t["latency"] or {}).get("p99_us", 0) / 1000, t["name"]) for t in quiet if t["delivered_spans"] > 0)
    ack = sorted(t["ack_latency"]["p99_us"] / 1000 for t in quiet if t["accepted_spans"] > 0)
    # Daemon cores while the load ran (the drain can be long when a daemon falls behind).
    cores = (r["cpu_s_sending"] / r["duration_s"] if "cpu_s_sending" in r
             else r["cpu_s"] / (r["duration_s"] + r["drain_s"]))
    return {
        "tenants": len(ts),
        "noisy_sps": noisy["delivered_sps"] if noisy else None,
        "quiet_sps": sum(t["delivered_spans"] for t in quiet) / r["duration_s"] if quiet else None,
        "quiet_p99_median": statistics.median(v for v, _ in p99) if p99 else None,
        "quiet_p99_worst": p99[-1][0] if p99 else None,
        "quiet_p99_worst_tenant": p99[-1][1] if p99 else None,
        "quiet_ack_p99_median": statistics.median(ack) if ack else None,
        "quiet_ack_p99_worst": ack[-1] if ack else None,
        # Quiet tenants of which nothing arrived (or nothing was acknowledged), and the quiet
        # tenants' acknowledged spans that never arrived (their latencies count only what did).
        "quiet_silent": sum(1 for t in quiet if t["delivered_spans"] == 0),
        "quiet_lost": sum(max(0, t["accepted_spans"] - t["delivered_spans"]) for t in quiet),
        "quiet_accepted": sum(t["accepted_spans"] for t in quiet),
        "forwarded": sum(1 for t in ts if t["header_forwarded"]),
        "cores": cores,
    }


def render_s5(results: list[dict]) -> list[str]:
    lines = ["", f"S5 multi-tenant: {QUIET_TENANTS} quiet tenants at {QUIET_RATE} spans/s each (1 span/request) beside "
             f"one noisy tenant at saturation ({NOISY_SPANS} spans/request, {CONCURRENCY} in flight), and the quiet tenants "
             "alone. Quiet p99 = end-to-end p99 of each quiet tenant: the median over tenants and the worst tenant; ack = "
             "the client's wait for the answer. CPU-s / M per span delivered (all tenants):", ""]
    lines.append("| load | daemon | noisy spans/s | quiet spans/s | daemon cores while sending | CPU-s / M | peak RSS MiB "
                 "| quiet p99 median / worst ms | quiet ack p99 median / worst ms | refused / lost / dup | tenant header at sink |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    sums: dict[tuple[str, str], dict] = {}
    for mode in S5_MODES:
        for key in S5_VARIANTS:
            rs = [r for r in results if r["variant"] == key and r["mode"] == mode]
            label = "noisy + quiet" if mode == "tenants" else "quiet only"
            if not rs:
                lines.append(f"| {label} | {VARIANTS[key].label} | no result (failed) | | | | | | | | |")
                continue
            ts = [tenant_summary(r) for r in rs]
            s = {k: med(ts, lambda t, k=k: t[k]) for k in ("noisy_sps", "quiet_sps", "quiet_p99_median", "quiet_p99_worst",
                                                           "quiet_ack_p99_median", "quiet_ack_p99_worst", "cores")}
            s["cpu"] = med(rs, lambda r: r["cpu_s_per_million"])
            s["rss"] = med(rs, lambda r: r["rss_peak_kib"] / 1024)
            sums[(key, mode)] = s
            worst = f" ({ts[0]['quiet_p99_worst_tenant']})" if len(ts) == 1 and ts[0]["quiet_p99_worst_tenant"] else ""
            flags = (f"{sum(r['refused_spans'] for r in rs)} / {sum(r['missing_spans'] for r in rs)} / "
                     f"{sum(r['duplicate_spans'] for r in rs)}")
            if any(not r["drained"] for r in rs):
                flags += f" ({sum(1 for r in rs if not r['drained'])} not drained)"
            if sum(t["quiet_lost"] for t in ts):
                flags += (f" (of them quiet tenants': {sum(t['quiet_lost'] for t in ts):,} of "
                          f"{sum(t['quiet_accepted'] for t in ts):,})")
            if sum(t["quiet_silent"] for t in ts):
                flags += f" ({sum(t['quiet_silent'] for t in ts)} quiet tenants got nothing through)"
            mixed = sum(r.get("mixed_requests") or 0 for r in rs)
            if mixed:
                flags += f" ({mixed} requests mixed tenants)"
            header = f"forwarded for {min(t['forwarded'] for t in ts)} of {ts[0]['tenants']} tenants"
            lines.append(
                f"| {label} | {VARIANTS[key].label} | {fmt(s['noisy_sps'])} | {fmt(s['quiet_sps'])} | {fmt(s['cores'], 2)} "
                f"| {fmt(s['cpu'], 2)} | {fmt(s['rss'])} | {fmt(s['quiet_p99_median'])} / {fmt(s['quiet_p99_worst'])}{worst} "
                f"| {fmt(s['quiet_ack_p99_median'], 1)} / {fmt(s['quiet_ack_p99_worst'], 1)} | {flags} | {header} |")
    lines += ["", "S5, Sluice / Collector:", "",
              "| load | noisy spans/s | CPU-s / M | peak RSS | quiet p99 median | quiet p99 worst |",
              "|---|---:|---:|---:|---:|---:|"]
    for mode in S5_MODES:
        a, b = sums.get((S5_VARIANTS[0], mode)), sums.get((S5_VARIANTS[1], mode))
        label = "noisy + quiet" if mode == "tenants" else "quiet only"
        if not a or not b:
            lines.append(f"| {label} | – | – | – | – | – |")
            continue
        lines.append(f"| {label} | {ratio(a['noisy_sps'], b['noisy_sps'])} | {ratio(a['cpu'], b['cpu'])} | "
                     f"{ratio(a['rss'], b['rss'])} | {ratio(a['quiet_p99_median'], b['quiet_p99_median'])} | "
                     f"{ratio(a['quiet_p99_worst'], b['quiet_p99_worst'])} |")
    return lines


def versions() -> dict[str, str]:
    """What was measured: the Sluice commit (+ "dirty" with local changes) and the Collector build."""
    out = {}
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if commit:
            out["sluice"] = commit + (" (with local changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        out["otelcol"] = subprocess.run([str(OTELCOL_BIN), "--version"], capture_output=True, text=True,
                                        timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def load_label(mode: str, spans: int) -> str:
    if mode == "steady":
        return f"fixed {FIXED_RATES[spans]:,}/s for {STEADY_DURATION:g} s"
    return "saturation" if mode == "saturation" else f"fixed {FIXED_RATES[spans]:,}/s"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        # Render the tables again from a results-*.json of an earlier run.
        saved = json.loads(Path(sys.argv[2]).read_text())
        print(render(saved["results"], saved["failures"], saved.get("elapsed_s", 0.0), saved.get("versions"),
                     saved.get("ceilings", []), saved.get("idle", [])))
        sys.exit(0)
    sys.exit(main())
