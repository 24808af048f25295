#!/usr/bin/env python3
"""Writes src/startup_symbols.txt: the functions of the release binary that a start and an
idle daemon execute, then those that serving requests adds, for the linker to lay out in
that order, each group together (docs/architecture.md, "Code layout").

The kernel maps a binary's code in 64 KiB windows around every page a process faults in, so
the ~1.8 MB of code a start runs, spread over 17 MB of text, kept ~9 MiB of the binary
resident at idle, and the request path another ~5.5 MiB under load. Listed first, they take
a few windows instead.

How: each config below runs under valgrind's callgrind (every executed function, not a
sample) until /readyz answers and IDLE_SECONDS more; the profile so far is dumped, then the
bench's config, under each fsync policy, serves a little of every kind of request (the
bench's load client, its OTLP sink behind the exporter), and each is stopped with SIGTERM. The functions the binary defines are
written out: the union of the start-and-idle parts first, then what only the requests (and
the shutdown) ran, each sorted so that a rerun's diff shows what changed. Run it through
`make startup-symbols` after dependency upgrades or larger changes; a stale list still links
(names that no longer exist are skipped) and only lays out less of the code together.

Usage: startup_symbols.py <release sluice binary> <release loadgen binary> <output file>
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IDLE_SECONDS = 10
READY_TIMEOUT_S = 120
DRAIN_TIMEOUT_S = 120
DAEMON_GRPC = "127.0.0.1:24917"
DAEMON_HTTP = "127.0.0.1:24918"
SINK = "127.0.0.1:24919"
SINK_CONTROL = "127.0.0.1:24923"
BENCH_HEALTH = "127.0.0.1:24922"

BENCH_ENV = {
    "BENCH_DAEMON_ENDPOINT": DAEMON_GRPC,
    "BENCH_HTTP_ENDPOINT": DAEMON_HTTP,
    "BENCH_SINK_ENDPOINT": SINK,
    "BENCH_ADMIN_ENDPOINT": "127.0.0.1:24920",
    "BENCH_METRICS_ENDPOINT": "127.0.0.1:24921",
    "BENCH_HEALTH_ENDPOINT": BENCH_HEALTH,
}


@dataclass
class Run:
    config: Path
    env: dict[str, str]
    health: str
    # Requests after the idle part; without them, the whole run (shutdown and any timer that
    # fired late included) counts as start and idle.
    serves: bool


RUNS = [
    # The default config of `make run` (its exporter is `debug`, so no requests).
    Run(REPO / "config.yaml", {"SLUICE_GRPC_ENDPOINT": DAEMON_GRPC, "SLUICE_HTTP_ENDPOINT": DAEMON_HTTP},
        "127.0.0.1:13133", serves=False),
    # The bench's, under both fsync policies, which take different append paths.
    *(Run(REPO / "deploy" / "bench" / "configs" / "sluice-disk.yaml", {**BENCH_ENV, "BENCH_FSYNC": fsync},
          BENCH_HEALTH, serves=True) for fsync in ("always", "interval")),
]

# (protocol, compression, signal, items per request, requests/s or 0 for as fast as answered):
# the receivers' paths users take most, and one closed loop that keeps appends queued.
REQUESTS = [
    ("grpc", "none", "traces", 100, 0),
    ("grpc", "none", "traces", 100, 20),
    ("grpc", "gzip", "metrics", 100, 20),
    ("http/protobuf", "none", "logs", 100, 20),
    ("http/protobuf", "gzip", "traces", 10, 20),
    ("http/json", "none", "traces", 10, 20),
]


def ensure_valgrind() -> None:
    if shutil.which("valgrind") and shutil.which("callgrind_control"):
        return
    print("installing valgrind (apt-get)", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "valgrind"], check=True)


def defined_functions(binary: Path) -> set[str]:
    out = subprocess.run(["nm", "--defined-only", str(binary)], capture_output=True, text=True, check=True)
    return {p[2] for p in (line.split() for line in out.stdout.splitlines()) if len(p) == 3 and p[1] in "tTwW"}


def ready(health: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{health}/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def functions_in(profile: Path, binary: Path) -> set[str]:
    """The functions of `binary` a callgrind profile saw run, mangled as the linker knows them."""
    seen: set[str] = set()
    in_binary = False
    for line in profile.read_text(errors="replace").splitlines():
        if line.startswith("ob="):
            in_binary = Path(line[3:].strip()).resolve() == binary.resolve()
        elif line.startswith("fn=") and in_binary:
            seen.add(line[3:].strip())
    return seen


def send_requests(loadgen: Path, daemon_pid: int) -> None:
    for run, (protocol, compression, signal_, items, rate) in enumerate(REQUESTS, start=1):
        endpoint = DAEMON_GRPC if protocol == "grpc" else DAEMON_HTTP
        argv = [str(loadgen), "send", "--endpoint", f"http://{endpoint}", "--protocol", protocol,
                "--compression", compression, "--signal", signal_, "--spans", str(items),
                "--rate", str(rate), "--duration", "2", "--concurrency", "16", "--connections", "2",
                "--sink-control", f"http://{SINK_CONTROL}", "--pids", str(daemon_pid),
                "--drain-timeout", str(DRAIN_TIMEOUT_S), "--clk-tck", str(os.sysconf("SC_CLK_TCK")),
                "--run", str(run)]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=DRAIN_TIMEOUT_S + 60)


def profile(binary: Path, run: Run, work: Path, loadgen: Path) -> tuple[set[str], set[str]]:
    """(functions run by the start and idle, functions only requests and the shutdown ran)."""
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    out = work / "callgrind.out"
    for stale in work.glob("callgrind.out*"):
        stale.unlink()
    env = {**os.environ, **run.env, "SLUICE_DATA_DIR": str(data), "BENCH_DATA_DIR": str(data)}
    argv = ["valgrind", "--tool=callgrind", "--demangle=no", "--dump-instr=no", "--compress-strings=no",
            f"--callgrind-out-file={out}", str(binary), "run", "--config", str(run.config)]
    with open(work / "sluice.log", "ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not ready(run.health):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{run.config} did not become ready under valgrind; see {log.name}")
                time.sleep(0.5)
            time.sleep(IDLE_SECONDS)
            # The start and idle so far go to `<out>.1`; what follows stays in `<out>`.
            subprocess.run(["callgrind_control", "--dump=idle", str(proc.pid)], check=True, capture_output=True)
            if run.serves:
                send_requests(loadgen, proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    idle, after = functions_in(Path(f"{out}.1"), binary), functions_in(out, binary)
    return (idle, after) if run.serves else (idle | after, set())


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    binary, loadgen, target = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    ensure_valgrind()
    defined = defined_functions(binary)
    start: set[str] = set()
    serving: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="sluice-startup-") as tmp:
        work = Path(tmp)
        sink_argv = [str(loadgen), "sink", "--listen", SINK, "--control", SINK_CONTROL]
        with open(work / "sink.log", "wb") as sink_log:
            sink = subprocess.Popen(sink_argv, stdout=sink_log, stderr=subprocess.STDOUT)
            try:
                for run in RUNS:
                    idle, serving_run = profile(binary, run, work, loadgen)
                    start |= idle
                    serving |= serving_run
            finally:
                sink.terminate()
                sink.wait(timeout=30)
    start &= defined
    serving = (serving & defined) - start
    if len(start) < 100 or len(serving) < 100:
        print(f"only {len(start)} + {len(serving)} functions seen: is {binary} built with symbols?",
              file=sys.stderr)
        return 1
    target.write_text("".join(f"{name}\n" for name in [*sorted(start), *sorted(serving)]))
    print(f"{target}: {len(start)} functions of the start and idle, then {len(serving)} of serving")
    return 0


if __name__ == "__main__":
    sys.exit(main())
