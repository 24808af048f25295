#!/usr/bin/env bash
# Creates the Python virtualenv that the integration tests use as an OTLP client
# (the official OpenTelemetry Python SDK and its gRPC exporter), then prints the path of its
# python on stdout. Idempotent and quick once done: a stamp file records what was installed.
#
# Usage: deploy/scripts/python-env.sh            -> prints e.g. /repo/.cache/venv/bin/python
set -euo pipefail

# One version pair, pinned: the SDK and the exporter are released together.
OTEL_PYTHON_VERSION="1.39.1"
PACKAGES=(
    "opentelemetry-api==${OTEL_PYTHON_VERSION}"
    "opentelemetry-sdk==${OTEL_PYTHON_VERSION}"
    "opentelemetry-exporter-otlp-proto-grpc==${OTEL_PYTHON_VERSION}"
    "opentelemetry-exporter-otlp-proto-http==${OTEL_PYTHON_VERSION}"
)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${SLUICE_VENV:-$root/.cache/venv}"
python="$venv/bin/python"
stamp="$venv/.sluice-stamp"
want="${PACKAGES[*]}"

log() { printf 'python-env: %s\n' "$*" >&2; }

if [ -x "$python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "$python"
    exit 0
fi

base_python="${PYTHON:-}"
if [ -z "$base_python" ]; then
    for candidate in python3 python; do
        if command -v "$candidate" >/dev/null 2>&1; then
            base_python="$(command -v "$candidate")"
            break
        fi
    done
fi
if [ -z "$base_python" ]; then
    log "no python3 found on PATH; install Python 3.9 or newer"
    exit 1
fi

if [ ! -x "$python" ]; then
    log "creating virtualenv at $venv"
    mkdir -p "$(dirname "$venv")"
    if ! "$base_python" -m venv "$venv" >&2; then
        log "'$base_python -m venv' failed; on Debian install python3-venv"
        exit 1
    fi
fi

log "installing ${want}"
"$python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2
"$python" -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc.trace_exporter, opentelemetry.exporter.otlp.proto.http.trace_exporter' >&2
echo "$want" >"$stamp"
echo "$python"
