#!/usr/bin/env bash
# Installs Sluice's peer tools from the OpenTelemetry project, pinned, under .cache/peers/:
#
#   .cache/peers/bin/telemetrygen          OTLP load generator (opentelemetry-collector-contrib)
#   .cache/peers/bin/otelcol-sluice-peer   an OpenTelemetry Collector built with the collector
#                                          `builder` from deploy/peers/otelcol-builder.yaml
#   .cache/peers/bin/builder               the builder itself
#
# Everything comes through the Go module proxy (`go install`, `go mod download`); needs Go >= 1.24.
# Idempotent: a stamp file per tool records what was built (version, Go version, and for the
# Collector the manifest's hash), so a second run returns at once. Change the manifest, the
# pinned version or the Go toolchain and the next run rebuilds.
#
# Usage: deploy/peers/install.sh          (what `make peers` runs)
#   PEERS_FORCE=1 deploy/peers/install.sh  rebuild even when the stamps match
#   SLUICE_CACHE=/elsewhere                cache root (default <repo>/.cache); uses $SLUICE_CACHE/peers
#   PEERS_GO_JOBS=2                        parallel compile jobs (GOFLAGS=-p=N; default 2)
# The Go module and build caches are Go's own (GOMODCACHE, GOCACHE): set them to keep a CI
# cache warm, or to measure a cold build.
set -euo pipefail

# One collector release for everything: contrib and core beta modules v0.145.0, core stable
# modules v1.51.0 (the ones contrib v0.145.0's go.mod requires). See otelcol-builder.yaml.
PEERS_VERSION=0.145.0
TELEMETRYGEN_MODULE=github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen
BUILDER_MODULE=go.opentelemetry.io/collector/cmd/builder
GO_MIN_MINOR=24

# The checksum database (sum.golang.org, as reached through this project's module proxy) has no
# entry for pulsarexporter v0.145.0 (lookup answers 404; every other module of the build has
# one). So that one module is exempted from the checksum database (GONOSUMDB) and its hashes
# are pinned here instead: taken from the module proxy's zip on 2026-11-21, checked below
# against the go.sum the builder resolves, before anything is compiled.
NOSUMDB_MODULE=github.com/open-telemetry/opentelemetry-collector-contrib/exporter/pulsarexporter
NOSUMDB_GOSUM="$NOSUMDB_MODULE v0.145.0 h1:68vFTB6vTFIQo8Rxc6/p2uBedv341WQDWmVaCpp2VQE=
$NOSUMDB_MODULE v0.145.0/go.mod h1:lMMKI6n5eMmtzGjkSUuk4asgjrbZ5zlu76/wTX4adDc="

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
MANIFEST=$SCRIPT_DIR/otelcol-builder.yaml
PEERS_DIR=${SLUICE_CACHE:-$REPO_ROOT/.cache}/peers
BIN_DIR=$PEERS_DIR/bin
BUILD_DIR=$PEERS_DIR/build/otelcol-sluice-peer
COLLECTOR_BIN=$BIN_DIR/otelcol-sluice-peer
JOBS=${PEERS_GO_JOBS:-2}

log() { printf 'peers: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------------
command -v go >/dev/null 2>&1 || die "Go is not installed (need Go 1.$GO_MIN_MINOR or newer: https://go.dev/dl/)"
go_version=$(go env GOVERSION) # e.g. go1.26.8
go_minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")
[[ "$go_minor" =~ ^[0-9]+$ ]] && [ "$go_minor" -ge "$GO_MIN_MINOR" ] ||
    die "$go_version is too old: the collector v$PEERS_VERSION modules need Go 1.$GO_MIN_MINOR or newer"

# The manifest must pin exactly this release: mixing collector releases fails at build time
# with confusing API errors, or worse, builds and misbehaves.
mismatched=$(grep -E '^\s*-\s*gomod:' "$MANIFEST" | grep -vE "\sv$PEERS_VERSION\s*$" || true)
[ -z "$mismatched" ] ||
    die "$MANIFEST pins modules at another version than v$PEERS_VERSION (install.sh's PEERS_VERSION); bump both together:
$mismatched"

# Never fetch another toolchain behind our back; the local Go is new enough (checked above).
export GOTOOLCHAIN=local
# No cgo: static binaries, and no C toolchain needed.
export CGO_ENABLED=0
export GOFLAGS="-p=$JOBS${GOFLAGS:+ $GOFLAGS}"
export GONOSUMDB="$NOSUMDB_MODULE${GONOSUMDB:+,$GONOSUMDB}"

mkdir -p "$BIN_DIR"

# One install at a time (e.g. `make test` and `make bench` started together): the others wait,
# then find everything up to date.
exec 9>"$PEERS_DIR/.lock"
if ! flock -n 9; then
    log "another install is running; waiting for it"
    flock 9
fi

# Prints seconds since $1 (an epoch value from `date +%s`).
since() { echo $(($(date +%s) - $1)); }

# ---------------------------------------------------------------------------------------------
# go install'ed tools: telemetrygen and builder
# ---------------------------------------------------------------------------------------------
# install_tool NAME MODULE: `go install MODULE@vPEERS_VERSION` into BIN_DIR unless the stamp says
# it is already there.
install_tool() {
    local name=$1 module=$2 stamp=$BIN_DIR/.$1.stamp want started
    want="$module@v$PEERS_VERSION $go_version"
    if [ -z "${PEERS_FORCE:-}" ] && [ -x "$BIN_DIR/$name" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    log "installing $name ($module@v$PEERS_VERSION, $go_version)"
    started=$(date +%s)
    rm -f "$stamp"
    if ! GOBIN=$BIN_DIR go install -trimpath -ldflags="-s -w" "$module@v$PEERS_VERSION" >&2; then
        die "go install $module@v$PEERS_VERSION failed (see the Go output above). Is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?"
    fi
    [ -x "$BIN_DIR/$name" ] || die "go install $module@v$PEERS_VERSION did not produce $BIN_DIR/$name"
    echo "$want" >"$stamp"
    log "$name installed in $(since "$started")s"
}

install_tool telemetrygen "$TELEMETRYGEN_MODULE"
install_tool builder "$BUILDER_MODULE"

# ---------------------------------------------------------------------------------------------
# The Collector, from the manifest
# ---------------------------------------------------------------------------------------------
collector_stamp=$BIN_DIR/.otelcol-sluice-peer.stamp
manifest_hash=$(sha256sum "$MANIFEST" | cut -d' ' -f1)
want="manifest=$manifest_hash builder=v$PEERS_VERSION $go_version"
if [ -z "${PEERS_FORCE:-}" ] && [ -x "$COLLECTOR_BIN" ] && [ -f "$collector_stamp" ] &&
    [ "$(cat "$collector_stamp")" = "$want" ]; then
    log "up to date: $COLLECTOR_BIN, $BIN_DIR/telemetrygen (v$PEERS_VERSION)"
    exit 0
fi

log "building the Collector from ${MANIFEST#"$REPO_ROOT"/} (v$PEERS_VERSION, $go_version, GOFLAGS=$GOFLAGS);"
log "a cold build (module download + compiling contrib on few cores) takes several minutes"
rm -f "$collector_stamp"
started=$(date +%s)

# 1. The builder writes main.go, components.go and go.mod, and resolves the modules
#    (`go get`, `go mod tidy`); compiling is done below, with our flags.
#    The manifest's output_path is relative to the repository root, so run from there; and write a
#    copy with the absolute path when SLUICE_CACHE moves the cache elsewhere.
manifest_used=$MANIFEST
if [ "$BUILD_DIR" != "$REPO_ROOT/.cache/peers/build/otelcol-sluice-peer" ]; then
    manifest_used=$PEERS_DIR/otelcol-builder.yaml
    sed -E "s#^(\s*output_path:).*#\1 $BUILD_DIR#" "$MANIFEST" >"$manifest_used"
fi
rm -rf "$BUILD_DIR"
mkdir -p "$(dirname "$BUILD_DIR")" # the builder creates the last level only
if ! (cd "$REPO_ROOT" && "$BIN_DIR/builder" --config "$manifest_used" --skip-compilation >&2); then
    die "the collector builder failed to generate/resolve the Collector sources from $MANIFEST (see above).
  Usual causes: a module version that the Go module proxy does not serve, or versions of core and
  contrib modules that do not belong to the same collector release."
fi
generated=$(date +%s)
got_gosum=$(grep -F "$NOSUMDB_MODULE " "$BUILD_DIR/go.sum" || true)
[ "$got_gosum" = "$NOSUMDB_GOSUM" ] ||
    die "checksum mismatch for $NOSUMDB_MODULE (not in the checksum database, so pinned in install.sh):
  expected:
$NOSUMDB_GOSUM
  got (from the module proxy):
$got_gosum"
log "sources generated and modules resolved in $((generated - started))s; compiling"

# 2. Compile: static, trimmed, stripped. Build into a temporary name and rename, so an
#    interrupted build never leaves a half-written binary behind.
if ! (cd "$BUILD_DIR" && go build -trimpath -ldflags="-s -w" -o "$COLLECTOR_BIN.tmp" . >&2); then
    rm -f "$COLLECTOR_BIN.tmp"
    die "compiling the Collector in $BUILD_DIR failed (see the Go errors above)"
fi
mv -f "$COLLECTOR_BIN.tmp" "$COLLECTOR_BIN"

# 3. It must start and list the components the tests rely on.
components=$("$COLLECTOR_BIN" components 2>&1) || die "$COLLECTOR_BIN does not run: $components"
for c in otlp pulsar kafka file debug otlp_grpc otlp_http batch memory_limiter probabilistic_sampler \
    attributes filter file_storage; do
    grep -qE "^\s*-?\s*name: $c\s*$" <<<"$components" ||
        die "$COLLECTOR_BIN lacks the component '$c' (\`$COLLECTOR_BIN components\`)"
done

echo "$want" >"$collector_stamp"
log "built $COLLECTOR_BIN ($(du -h "$COLLECTOR_BIN" | cut -f1)) in $(since "$started")s" \
    "(resolve $((generated - started))s, compile $(since "$generated")s)"
