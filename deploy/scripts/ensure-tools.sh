#!/usr/bin/env bash
# Makes sure the tools the build needs are on this machine. Idempotent: does nothing when
# everything is already there.
#
#   protoc  - the `pulsar` crate's build script runs it (Debian: protobuf-compiler)
#   cargo   - the Rust toolchain itself; we never install it, only say clearly that it is missing
set -euo pipefail

log() { printf 'ensure-tools: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root (or sudo) to run: $*"
        return 1
    fi
}

if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found on PATH. Install a Rust toolchain (https://rustup.rs, 1.90 or newer)"
    log "and make sure ~/.cargo/bin is on PATH."
    exit 1
fi

if ! command -v protoc >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        log "protoc not found and apt-get is unavailable: install protobuf-compiler by hand."
        exit 1
    fi
    log "installing protobuf-compiler (protoc)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
    command -v protoc >/dev/null 2>&1 || { log "protoc still missing after install"; exit 1; }
fi

# rustfmt and clippy: `make test` runs both.
for pair in fmt:rustfmt clippy:clippy; do
    subcommand=${pair%%:*}
    component=${pair##*:}
    if ! cargo "$subcommand" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            log "adding rustup component $component"
            rustup component add "$component" >/dev/null 2>&1 || log "could not add $component"
        else
            log "cargo $subcommand is missing and rustup is unavailable"
        fi
    fi
done
