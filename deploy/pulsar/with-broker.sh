#!/usr/bin/env bash
# Runs a command with the test brokers: a Pulsar standalone broker
# (deploy/pulsar/standalone.sh), a NATS server with JetStream (deploy/nats/server.sh) and a
# Kafka broker in KRaft mode (deploy/kafka/server.sh), with SLUICE_PULSAR_URL /
# SLUICE_PULSAR_ADMIN_URL / SLUICE_NATS_URL / SLUICE_KAFKA_* pointing at them; `make test`
# and `make interop` use it.
#
# A broker that is not running is started with fresh data and stopped afterwards, also when
# the command fails; one already running (e.g. from `make pulsar`) is used and left running.
# If a broker cannot start, this fails loudly with the tail of its log: the broker tests
# must never be skipped.
#
#   deploy/pulsar/with-broker.sh cargo test --all-targets
set -euo pipefail

broker="$(dirname "$0")/standalone.sh"
nats="$(dirname "$0")/../nats/server.sh"
kafka="$(dirname "$0")/../kafka/server.sh"

was_running=0
bash "$broker" status >/dev/null 2>&1 && was_running=1
if ! bash "$broker" start; then
    echo "the Pulsar broker did not start; last lines of its log:" >&2
    bash "$broker" logs 60 >&2 || true
    exit 1
fi
stops=()
[ "$was_running" = 0 ] && stops+=("bash \"$broker\" stop")
trap 'for s in "${stops[@]}"; do eval "$s"; done' EXIT

nats_running=0
bash "$nats" status >/dev/null 2>&1 && nats_running=1
if ! bash "$nats" start; then
    echo "the NATS server did not start; last lines of its log:" >&2
    bash "$nats" logs 60 >&2 || true
    exit 1
fi
[ "$nats_running" = 0 ] && stops+=("bash \"$nats\" stop")

kafka_running=0
bash "$kafka" status >/dev/null 2>&1 && kafka_running=1
if ! bash "$kafka" start; then
    echo "the Kafka broker did not start; last lines of its log:" >&2
    bash "$kafka" logs 60 >&2 || true
    exit 1
fi
[ "$kafka_running" = 0 ] && stops+=("bash \"$kafka\" stop")

eval "$(bash "$broker" env)"
eval "$(bash "$nats" env)"
eval "$(bash "$kafka" env)"
export SLUICE_PULSAR_URL="$PULSAR_SERVICE_URL" SLUICE_PULSAR_ADMIN_URL="$PULSAR_ADMIN_URL"
export SLUICE_NATS_URL="$NATS_URL"
"$@"
