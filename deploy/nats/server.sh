#!/usr/bin/env bash
# A local NATS server with JetStream for trying Sluice's NATS buffer by hand (`make nats`) and
# for the tests (`make test`, through deploy/pulsar/with-broker.sh). nats-server is built from
# source through the Go module proxy, pinned, into .cache/tools/bin; its JetStream data lives
# in .cache/nats/data.
#
#   deploy/nats/server.sh start|resume|stop|status|env|logs [N]
#
# `start` wipes the JetStream data first; `resume` starts on the data the last run left (the
# broker-restart tests).
#
# Client port 4222 and monitoring port 8222 unless NATS_PORT / NATS_MONITOR_PORT say
# otherwise. NATS_RUN_DIR puts the pid file, log and JetStream data (in its data/) elsewhere, so
# a second server (the bench's) never touches the first one's.
set -euo pipefail

VERSION="v2.15.3"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin_dir="$root/.cache/tools/bin"
server="$bin_dir/nats-server-$VERSION"
if [ -n "${NATS_RUN_DIR:-}" ]; then
    run_dir="$NATS_RUN_DIR"
    data_dir="$NATS_RUN_DIR/data"
else
    run_dir="$root/.cache/nats/run"
    data_dir="$root/.cache/nats/data"
fi
port="${NATS_PORT:-4222}"
monitor="${NATS_MONITOR_PORT:-8222}"
pid_file="$run_dir/nats.pid"
log_file="$run_dir/nats.log"

say() { echo "nats-server: $*" >&2; }

# shellcheck source=deploy/scripts/go-install.sh
source "$root/deploy/scripts/go-install.sh"

ensure_binary() {
    go_install_to "$server" "github.com/nats-io/nats-server/v2@$VERSION"
}

running() {
    [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

healthy() {
    curl -fsS "http://127.0.0.1:$monitor/healthz?js-enabled-only=true" >/dev/null 2>&1
}

start() {
    if running && healthy; then
        say "already running (pid $(cat "$pid_file"))"
        return 0
    fi
    ensure_binary
    mkdir -p "$run_dir"
    [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$data_dir"
    mkdir -p "$data_dir"
    "$server" -a 127.0.0.1 -p "$port" -m "$monitor" -js -sd "$data_dir" >"$log_file" 2>&1 &
    echo $! >"$pid_file"
    for _ in $(seq 1 100); do
        if healthy; then
            say "ready: nats://127.0.0.1:$port (JetStream; monitoring http://127.0.0.1:$monitor, pid $(cat "$pid_file"))"
            return 0
        fi
        running || break
        sleep 0.2
    done
    say "did not become ready; last lines of $log_file:"
    tail -n 30 "$log_file" >&2 || true
    exit 1
}

stop() {
    if running; then
        local pid
        pid="$(cat "$pid_file")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$pid" 2>/dev/null || true
        say "stopped"
    fi
    rm -f "$pid_file"
}

case "${1:-}" in
    start) start ;;
    resume) KEEP_DATA=1 start ;;
    stop) stop ;;
    status) running && healthy ;;
    env) echo "export NATS_URL=nats://127.0.0.1:$port" ;;
    logs) tail -n "${2:-40}" "$log_file" ;;
    build) ensure_binary ;;
    *) echo "usage: $0 start|resume|stop|status|env|logs [N]|build" >&2; exit 2 ;;
esac
