#!/usr/bin/env python3
"""Writes src/startup_symbols.txt: the functions of the release binary that a start and an
idle daemon execute, for the linker to lay out next to each other (docs/architecture.md,
"Code layout").

The kernel maps a binary's code in 64 KiB windows around every page a process faults in, so
the ~1.8 MB of code a start runs, spread over 17 MB of text, used to keep ~9 MiB of the
binary resident at idle. Listed first, they take a few windows instead.

How: each config below runs under valgrind's callgrind (every executed function, not a
sample) until /readyz answers and then IDLE_SECONDS more, is stopped with SIGTERM, and the
functions it ran that the binary defines are written out, the union over the configs,
sorted so that a rerun's diff shows what changed. Run it through `make startup-symbols`
after dependency upgrades or larger changes to start-up; a stale list still links (names
that no longer exist are skipped) and only lays out less of the start together.

Usage: startup_symbols.py <release binary> <output file>
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IDLE_SECONDS = 10
READY_TIMEOUT_S = 120
HEALTH = "127.0.0.1:24922"

# Each config with the environment it needs: the default config of `make run`, and the one the
# bench measures idle memory with.
CONFIGS = [
    (REPO / "config.yaml", {
        "SLUICE_GRPC_ENDPOINT": "127.0.0.1:24917",
        "SLUICE_HTTP_ENDPOINT": "127.0.0.1:24918",
    }),
    (REPO / "deploy" / "bench" / "configs" / "sluice-disk.yaml", {
        "BENCH_DAEMON_ENDPOINT": "127.0.0.1:24917",
        "BENCH_HTTP_ENDPOINT": "127.0.0.1:24918",
        "BENCH_SINK_ENDPOINT": "127.0.0.1:24919",
        "BENCH_ADMIN_ENDPOINT": "127.0.0.1:24920",
        "BENCH_METRICS_ENDPOINT": "127.0.0.1:24921",
        "BENCH_HEALTH_ENDPOINT": HEALTH,
        "BENCH_FSYNC": "interval",
    }),
]


def ensure_valgrind() -> None:
    if shutil.which("valgrind"):
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


def executed_functions(binary: Path, config: Path, env: dict[str, str], work: Path) -> set[str]:
    """The functions of `binary` that callgrind saw run, mangled as the linker knows them."""
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    out = work / f"callgrind-{config.stem}.out"
    health = env.get("BENCH_HEALTH_ENDPOINT", "127.0.0.1:13133")
    full_env = {**os.environ, **env, "SLUICE_DATA_DIR": str(data), "BENCH_DATA_DIR": str(data)}
    argv = ["valgrind", "--tool=callgrind", "--demangle=no", "--dump-instr=no", "--compress-strings=no",
            f"--callgrind-out-file={out}", str(binary), "run", "--config", str(config)]
    with open(work / f"{config.stem}.log", "wb") as log:
        proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not ready(health):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{config} did not become ready under valgrind; see {log.name}")
                time.sleep(0.5)
            time.sleep(IDLE_SECONDS)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    seen: set[str] = set()
    in_binary = False
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith("ob="):
            in_binary = Path(line[3:].strip()).resolve() == binary.resolve()
        elif line.startswith("fn=") and in_binary:
            seen.add(line.split("=", 1)[1].strip())
    return seen


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, target = Path(sys.argv[1]), Path(sys.argv[2])
    ensure_valgrind()
    defined = defined_functions(binary)
    ran: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="sluice-startup-") as tmp:
        for config, env in CONFIGS:
            ran |= executed_functions(binary, config, env, Path(tmp))
    listed = sorted(ran & defined)
    if len(listed) < 100:
        print(f"only {len(listed)} functions seen: is {binary} built with symbols?", file=sys.stderr)
        return 1
    target.write_text("".join(f"{name}\n" for name in listed))
    print(f"{target}: {len(listed)} functions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
