#!/usr/bin/env bash
# Runs a command with a Pulsar standalone broker (deploy/pulsar/standalone.sh) and
# SLUICE_PULSAR_URL / SLUICE_PULSAR_ADMIN_URL pointing at it; `make test` and `make interop`
# use it.
#
# A broker that is not running is started with fresh data and stopped afterwards, also when
# the command fails; one already running (e.g. from `make pulsar`) is used and left running.
# If the broker cannot start, this fails loudly with the tail of its log: the Pulsar tests
# must never be skipped.
#
#   deploy/pulsar/with-broker.sh cargo test --all-targets
set -euo pipefail

broker="$(dirname "$0")/standalone.sh"

was_running=0
bash "$broker" status >/dev/null 2>&1 && was_running=1
if ! bash "$broker" start; then
    echo "the Pulsar broker did not start; last lines of its log:" >&2
    bash "$broker" logs 60 >&2 || true
    exit 1
fi
if [ "$was_running" = 0 ]; then
    trap 'bash "$broker" stop' EXIT
fi
eval "$(bash "$broker" env)"
export SLUICE_PULSAR_URL="$PULSAR_SERVICE_URL" SLUICE_PULSAR_ADMIN_URL="$PULSAR_ADMIN_URL"
"$@"
