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

# shellcheck source=deploy/scripts/go-install.sh
source "$root/deploy/scripts/go-install.sh"

ensure_binary() {
    go_install_to "$nats" "github.com/nats-io/natscli/nats@$VERSION"
}

ensure_binary
[ "${1:-}" = build ] && exit 0
# No saved contexts of the developer's (`nats context`) may pick another server or account.
exec "$nats" --no-context "$@"
