#!/usr/bin/env bash
# natscli (`nats`) for the bench's S7 reference: `nats bench` measures what the NATS server itself
# takes in acknowledged publishes, on the same machine in the same run as Sluice. Built from
# source through the Go module proxy, pinned, into .cache/tools/bin (like nats-server in
# deploy/nats/server.sh).
#
#   deploy/bench/natscli.sh build      # only build it
#   deploy/bench/natscli.sh ARGS...    # build it if missing, then run `nats ARGS...`
set -euo pipefail

# v0.5.0 exactly: the flags deploy/bench/run.py passes to `nats bench js pub sync` are this
# version's (the bench subcommands were reworked before it and may be again).
VERSION="v0.5.0"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin_dir="$root/.cache/tools/bin"
nats="$bin_dir/nats-$VERSION"

ensure_binary() {
    [ -x "$nats" ] && return 0
    command -v go >/dev/null || { echo "natscli: Go is needed to build natscli ($VERSION)" >&2; exit 1; }
    echo "natscli: building natscli $VERSION through the Go module proxy" >&2
    local gobin
    gobin="$(mktemp -d)"
    GOBIN="$gobin" GOFLAGS=-mod=mod go install "github.com/nats-io/natscli/nats@$VERSION"
    mkdir -p "$bin_dir"
    mv "$gobin/nats" "$nats"
    rm -rf "$gobin"
}

ensure_binary
[ "${1:-}" = build ] && exit 0
# No saved contexts of the developer's (`nats context`) may pick another server or account.
exec "$nats" --no-context "$@"
