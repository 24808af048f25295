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

Loads: "saturation" = closed loop, 32 requests in flight over 4 connections, for the window;
"fixed" = open loop at FIXED_RATES spans/s. Every run gets a fresh daemon (so peak RSS is
the run's) and fresh data directory / Pulsar topic.

Measured per run (benches/loadgen): items/s delivered end to end (spans the sink received,
over first send -> last receipt), CPU seconds of the daemon process(es) per million spans
(utime+stime from /proc/<pid>/stat over first send -> drained), peak RSS (VmHWM, summed over
the daemon's processes), end-to-end latency p50/p99 (span send time -> sink receipt), and
spans refused, lost (acknowledged, never received) and duplicated.

Environment: BENCH_QUICK=1 (one repetition, shorter windows, 100 spans/request only: ~3 min),
BENCH_REPS, BENCH_DURATION (seconds per run), BENCH_ONLY (comma list of S1,S2,S3),
BENCH_OUT (results directory; default target/sluice-bench), BENCH_PORT_BASE (default 24300).
`run.py --report results-XXX.json` prints the tables of an earlier run again.
Python 3.11 standard library only.
"""

from __future__ import annotations

import json
import os
import resource
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

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
REPS = int(os.environ.get("BENCH_REPS", "1" if QUICK else "3"))
DURATION = float(os.environ.get("BENCH_DURATION", "4" if QUICK else "6"))
ONLY = {s.strip().upper() for s in os.environ.get("BENCH_ONLY", "S1,S2,S3").split(",") if s.strip()}
OUT = Path(os.environ.get("BENCH_OUT", REPO / "target" / "sluice-bench"))
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

DAEMON_ENDPOINT = f"127.0.0.1:{PORT + 17}"
SINK_ENDPOINT = f"127.0.0.1:{PORT + 117}"
SINK_CONTROL = f"127.0.0.1:{PORT + 119}"
METRICS_PORTS = (PORT + 88, PORT + 89)
HEALTH_ENDPOINT = f"127.0.0.1:{PORT + 33}"
# A broker of the bench's own (ports, run directory), so a developer's `make pulsar` broker or
# a concurrent `make test` is never touched.
PULSAR_ENV = {
    "PULSAR_BROKER_PORT": str(PORT + 50),
    "PULSAR_WEB_PORT": str(PORT + 80),
    "PULSAR_RUN_DIR": str(Path(os.environ.get("SLUICE_CACHE", REPO / ".cache")) / "pulsar" / "bench-run"),
}
PULSAR_URL = f"pulsar://127.0.0.1:{PORT + 50}"
PULSAR_ADMIN = f"http://127.0.0.1:{PORT + 80}"


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
    pulsar: bool = False


def sluice_disk(fsync: str) -> list[ProcSpec]:
    return [
        ProcSpec(
            SLUICE_BIN,
            "sluice-disk.yaml",
            {"BENCH_FSYNC": fsync},
            ("http", f"http://{HEALTH_ENDPOINT}/readyz"),
        )
    ]


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
            [ProcSpec(SLUICE_BIN, "sluice-pulsar.yaml", {}, ("http", f"http://{HEALTH_ENDPOINT}/readyz"))],
            pulsar=True,
        ),
        Variant(
            "otelcol-pulsar",
            "otelcol",
            "Collector, pulsarexporter + pulsarreceiver (2 processes)",
            [
                otelcol("otelcol-pulsar-exporter.yaml", BENCH_METRICS_PORT=str(METRICS_PORTS[1])),
                ProcSpec(OTELCOL_BIN, "otelcol-pulsar-agent.yaml"),
            ],
            pulsar=True,
        ),
    ]
}
# The exporter half must be subscribed before the agent publishes.
VARIANTS["otelcol-pulsar"].procs[0].ready = ("pulsar-sub", "otelcol-bench")


@dataclass
class Comparison:
    """One row of the ratio table: a Sluice variant against a Collector variant."""

    scenario: str
    sluice: str
    collector: str
    spans: tuple[int, ...]
    note: str


COMPARISONS = [
    Comparison("S1", "sluice-always", "otelcol-file", (1, 100, 1000), "fsync: always vs file_storage (default fsync: false)"),
    Comparison("S1", "sluice-interval", "otelcol-file", (1, 100, 1000), "fsync: interval vs file_storage (default fsync: false)"),
    Comparison("S1", "sluice-always", "otelcol-file-fsync", (100,), "fsync: always vs file_storage fsync: true"),
    Comparison("S3", "sluice-interval", "otelcol-memory", (1, 100, 1000), "disk buffer, fsync: interval vs in-memory queue"),
    Comparison("S2", "sluice-pulsar", "otelcol-pulsar", (1, 100, 1000), "Pulsar buffer vs pulsarexporter/pulsarreceiver"),
]
if QUICK:
    COMPARISONS = [
        Comparison(c.scenario, c.sluice, c.collector, (100,), c.note) for c in COMPARISONS
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
        self.topic = f"persistent://public/default/otelcol-bench-{os.getpid()}-{run_no}"
        self.logdir = logdir

    def env(self, spec: ProcSpec) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "BENCH_DAEMON_ENDPOINT": DAEMON_ENDPOINT,
                "BENCH_SINK_ENDPOINT": SINK_ENDPOINT,
                "BENCH_DATA_DIR": str(self.data),
                "BENCH_METRICS_ENDPOINT": f"127.0.0.1:{METRICS_PORTS[0]}",
                "BENCH_METRICS_PORT": str(METRICS_PORTS[0]),
                "BENCH_HEALTH_ENDPOINT": HEALTH_ENDPOINT,
                "BENCH_TENANT": self.tenant,
                "BENCH_TOPIC": self.topic,
                "BENCH_PULSAR_URL": PULSAR_URL,
            }
        )
        env.update(spec.env)
        return env

    def start(self) -> None:
        for i, spec in enumerate(self.variant.procs):
            logfile = self.logdir / f"{self.run_no:03d}-{self.variant.key}-{i}.log"
            self.logs.append(logfile)
            argv = [str(spec.binary)]
            argv += ["run", "--config"] if spec.binary == SLUICE_BIN else ["--config"]
            argv.append(str(CONFIGS / spec.config))
            with open(logfile, "wb") as out:
                self.procs.append(
                    subprocess.Popen(argv, env=self.env(spec), stdout=out, stderr=subprocess.STDOUT)
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


def pulsar_pid() -> int | None:
    try:
        return int((Path(PULSAR_ENV["PULSAR_RUN_DIR"]) / "pulsar.pid").read_text().strip())
    except (OSError, ValueError):
        return None


# The sink's pid, for the CPU accounting of each run (set by main).
SINK_PID: int | None = None


# === one run ===================================================================================


def measure(variant: Variant, spans: int, mode: str, run_no: int, logdir: Path, duration: float = DURATION) -> dict:
    running = Running(variant, run_no, logdir)
    started = time.monotonic()
    try:
        running.start()
        rate = 0 if mode == "saturation" else FIXED_RATES[spans]
        argv = [
            str(LOADGEN_BIN), "send",
            "--endpoint", f"http://{DAEMON_ENDPOINT}",
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
        ]
        if variant.key == "sluice-pulsar":
            argv += ["--header", f"x-scope-orgid={running.tenant}"]
        broker = pulsar_pid() if variant.pulsar else None
        before = (busy_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN), proc_cpu_s(SINK_PID), proc_cpu_s(broker))
        t = time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + DRAIN_TIMEOUT + 60)
        wall = time.monotonic() - t
        after = (busy_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN), proc_cpu_s(SINK_PID), proc_cpu_s(broker))
        if out.returncode != 0:
            raise RuntimeError(f"loadgen failed ({out.returncode}): {out.stderr[-2000:]}")
        result = json.loads(out.stdout)
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
        codes = running.stop()
    result["exit_codes"] = codes
    result["variant"] = variant.key
    result["mode"] = mode
    result["wall_s"] = time.monotonic() - started
    result["logs"] = [str(p) for p in running.logs]
    return result


# === the whole comparison ======================================================================


def cells() -> list[tuple[str, int, str, list[str]]]:
    """(group, spans, mode, variants) in run order; a variant measured once per cell."""
    out: dict[tuple[str, int, str], list[str]] = {}
    for c in COMPARISONS:
        group = "pulsar" if c.scenario == "S2" else "disk"
        for spans in c.spans:
            for mode in MODES:
                vs = out.setdefault((group, spans, mode), [])
                for v in (c.sluice, c.collector):
                    if v not in vs:
                        vs.append(v)
    return [(g, s, m, vs) for (g, s, m), vs in out.items()]


def alternate(variants: list[str], turn: int) -> list[str]:
    """Sluice and Collector variants interleaved, the first daemon alternating by turn."""
    s = [v for v in variants if VARIANTS[v].daemon == "sluice"]
    c = [v for v in variants if VARIANTS[v].daemon == "otelcol"]
    first, second = (s, c) if turn % 2 == 0 else (c, s)
    order = []
    for i in range(max(len(first), len(second))):
        order += first[i : i + 1] + second[i : i + 1]
    return order


def pulsar(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(PULSAR_SCRIPT), cmd], env={**os.environ, **PULSAR_ENV})


def main() -> int:
    for b, hint in [(SLUICE_BIN, "cargo build --release"), (LOADGEN_BIN, "cargo build --release --example loadgen"),
                    (OTELCOL_BIN, "make peers")]:
        if not b.exists():
            log(f"missing {b} (build it with `{hint}`)")
            return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = OUT / "logs" / stamp
    logdir.mkdir(parents=True, exist_ok=True)
    plan = cells()
    runs_total = sum(len(vs) for _, _, _, vs in plan) * REPS
    log(f"{'quick' if QUICK else 'full'} run: {runs_total} runs of {DURATION:g} s, {REPS} repetition(s); logs in {logdir}")

    sink_log = open(logdir / "sink.log", "wb")
    sink = subprocess.Popen(
        [str(LOADGEN_BIN), "sink", "--listen", SINK_ENDPOINT, "--control", SINK_CONTROL],
        stdout=sink_log, stderr=subprocess.STDOUT,
    )
    global SINK_PID
    SINK_PID = sink.pid
    results: list[dict] = []
    failures: list[str] = []
    pulsar_started = False
    run_no = 0  # unique per daemon start (data directories, topics, sink run ids)
    measured = 0
    t0 = time.monotonic()
    try:
        deadline = time.monotonic() + 10
        while not tcp_open(SINK_CONTROL):
            if sink.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bench sink did not start; see " + str(logdir / "sink.log"))
            time.sleep(0.05)
        for group in ("disk", "pulsar"):
            group_cells = [c for c in plan if c[0] == group]
            if not group_cells:
                continue
            if group == "pulsar":
                log("starting the bench's Pulsar standalone broker")
                if pulsar("start").returncode != 0:
                    failures.append("S2: the Pulsar broker did not start")
                    continue
                pulsar_started = True
                # A fresh broker's JVM is cold: its first minute is slower. Warm it with both
                # daemons' traffic before anything is measured (results discarded).
                for key in dict.fromkeys(v for c in group_cells for v in c[3]):
                    run_no += 1
                    try:
                        measure(VARIANTS[key], 100, "saturation", run_no, logdir, duration=WARMUP_S)
                        log(f"warm-up through {key} done")
                    except Exception as e:
                        log(f"warm-up through {key} failed: {e}")
            for rep in range(REPS):
                for i, (_, spans, mode, variants) in enumerate(group_cells):
                    for key in alternate(variants, rep + i):
                        run_no += 1
                        measured += 1
                        what = f"[{measured}/{runs_total}] {key} {spans} spans/request {mode} (rep {rep + 1})"
                        try:
                            r = measure(VARIANTS[key], spans, mode, run_no, logdir)
                        except Exception as e:  # one broken run must not lose the others
                            log(f"{what}: FAILED: {e}")
                            failures.append(f"{what}: {str(e)[:300]}")
                            continue
                        r["rep"] = rep
                        results.append(r)
                        log(f"{what}: {r['delivered_sps']:,.0f} spans/s, "
                            f"{r['cpu_s_per_million']:.2f} CPU-s/M, {r['rss_peak_kib'] / 1024:.0f} MiB, "
                            f"p99 {r['latency']['p99_us'] / 1000:.0f} ms, refused {r['refused_spans']}, "
                            f"lost {r['missing_spans']}, dup {r['duplicate_spans']}"
                            + ("" if r["drained"] else ", NOT DRAINED")
                            + "; cores: " + " ".join(f"{k} {v:.2f}" for k, v in r["machine_cores"].items()))
            if pulsar_started:
                pulsar("stop")
                pulsar_started = False
    finally:
        if pulsar_started:
            pulsar("stop")
        sink.terminate()
        sink.wait()
    elapsed = time.monotonic() - t0

    report = render(results, failures, elapsed, versions())
    print(report)
    (OUT / f"results-{stamp}.json").write_text(json.dumps({"results": results, "failures": failures, "elapsed_s": elapsed, "versions": versions()}, indent=1))
    (OUT / f"results-{stamp}.md").write_text(report)
    (OUT / "latest.md").write_text(report)
    log(f"results: {OUT / f'results-{stamp}.md'} and .json ({elapsed / 60:.1f} min)")
    return 1 if failures else 0


# === report ====================================================================================


def med(rs: list[dict], f) -> float | None:
    vals = [f(r) for r in rs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(rs: list[dict], mode: str) -> dict:
    s = {
        "n": len(rs),
        # Saturation: delivered end to end (first send -> last receipt). Fixed rate: the rate
        # the daemon took on schedule (delivery is checked by `lost`); the end-to-end figure
        # would be short of it by the last batch's linger.
        "sps": med(rs, lambda r: r["delivered_sps"] if mode == "saturation" else r["accepted_sps"]),
        "cpu": med(rs, lambda r: r["cpu_s_per_million"]),
        "rss": med(rs, lambda r: r["rss_peak_kib"] / 1024),
        "p50": med(rs, lambda r: r["latency"]["p50_us"] / 1000),
        "p99": med(rs, lambda r: r["latency"]["p99_us"] / 1000),
        "refused": sum(r["refused_spans"] for r in rs),
        "lost": sum(r["missing_spans"] for r in rs),
        "dup": sum(r["duplicate_spans"] for r in rs),
        "undrained": sum(1 for r in rs if not r["drained"]),
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


def render(results: list[dict], failures: list[str], elapsed: float, measured: dict[str, str] | None = None) -> str:
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
    others = sorted(r["machine_cores"]["other"] for r in results if "machine_cores" in r)
    if others:
        lines.append(f"CPU taken by other processes on the machine during the runs (noise): median "
                     f"{statistics.median(others):.2f} cores, max {others[-1]:.2f} of {os.cpu_count()}.")
    lines.append("")
    lines.append("| scenario | spans/req | load | daemon | spans/s | CPU-s / M spans | peak RSS MiB | p50 ms | p99 ms | refused / lost / dup |")
    lines.append("|---|---:|---|---|---:|---:|---:|---:|---:|---|")
    seen = set()
    for c in COMPARISONS:
        for spans in c.spans:
            for mode in MODES:
                for key in (c.sluice, c.collector):
                    if (c.scenario, key, spans, mode) in seen:
                        continue
                    seen.add((c.scenario, key, spans, mode))
                    rs = by.get((key, spans, mode), [])
                    if not rs:
                        lines.append(f"| {c.scenario} | {spans} | {load_label(mode, spans)} | {VARIANTS[key].label} | no result | | | | | |")
                        continue
                    s = summarize(rs, mode)
                    flags = f"{s['refused']} / {s['lost']} / {s['dup']}"
                    if s["undrained"]:
                        flags += f" ({s['undrained']} not drained)"
                    if mode == "fixed" and not s["sustained"]:
                        flags += " NOT SUSTAINED"
                    lines.append(
                        f"| {c.scenario} | {spans} | {load_label(mode, spans)} | {VARIANTS[key].label} | {fmt(s['sps'])} | "
                        f"{fmt(s['cpu'], 2)} | {fmt(s['rss'])} | {fmt(s['p50'])} | {fmt(s['p99'])} | {flags} |"
                    )
    lines.append("")
    lines.append("Sluice / Collector (below 1 is better for CPU, RSS and p99; above 1 is better for spans/s):")
    lines.append("")
    lines.append("| scenario | comparison | spans/req | load | spans/s | CPU / span | peak RSS | p99 |")
    lines.append("|---|---|---:|---|---:|---:|---:|---:|")
    for c in COMPARISONS:
        for spans in c.spans:
            for mode in MODES:
                a = by.get((c.sluice, spans, mode), [])
                b = by.get((c.collector, spans, mode), [])
                if not a or not b:
                    lines.append(f"| {c.scenario} | {c.note} | {spans} | {load_label(mode, spans)} | – | – | – | – |")
                    continue
                sa, sb = summarize(a, mode), summarize(b, mode)
                lines.append(
                    f"| {c.scenario} | {c.note} | {spans} | {load_label(mode, spans)} | {ratio(sa['sps'], sb['sps'])} | "
                    f"{ratio(sa['cpu'], sb['cpu'])} | {ratio(sa['rss'], sb['rss'])} | {ratio(sa['p99'], sb['p99'])} |"
                )
    if failures:
        lines.append("")
        lines.append("Failed runs:")
        lines += [f"- {f}" for f in failures]
    return "\n".join(lines) + "\n"


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
    return "saturation" if mode == "saturation" else f"fixed {FIXED_RATES[spans]:,}/s"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        # Render the tables again from a results-*.json of an earlier run.
        saved = json.loads(Path(sys.argv[2]).read_text())
        print(render(saved["results"], saved["failures"], saved.get("elapsed_s", 0.0), saved.get("versions")))
        sys.exit(0)
    sys.exit(main())
