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

stops=()
trap 'for s in "${stops[@]}"; do eval "$s"; done' EXIT

# Starts a broker with its script unless it runs already (then it is left running), and
# queues its stop; fails loudly with the tail of its log.
start() {
    local name=$1 script=$2 running=0
    bash "$script" status >/dev/null 2>&1 && running=1
    if ! bash "$script" start; then
        echo "the $name did not start; last lines of its log:" >&2
        bash "$script" logs 60 >&2 || true
        exit 1
    fi
    [ "$running" = 0 ] && stops+=("bash \"$script\" stop")
    return 0
}

start "Pulsar broker" "$broker"
start "NATS server" "$nats"
start "Kafka broker" "$kafka"

eval "$(bash "$broker" env)"
eval "$(bash "$nats" env)"
eval "$(bash "$kafka" env)"
export SLUICE_PULSAR_URL="$PULSAR_SERVICE_URL" SLUICE_PULSAR_ADMIN_URL="$PULSAR_ADMIN_URL"
export SLUICE_NATS_URL="$NATS_URL"
"$@"
