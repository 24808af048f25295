#!/usr/bin/env bash
# Prints the path of a pinned Prometheus `promtool`, building it first through the Go module
# proxy when it is not cached (.cache/tools/bin/promtool-<version>). `make deploy-check` uses
# it to check and unit-test the alerting rules under deploy/observability/.
#
#   PROMTOOL_MODULE_VERSION   the github.com/prometheus/prometheus module version (Prometheus
#                             3.x releases are tagged v0.3xx.y there); default below
#   PROMTOOL_GO_JOBS=2        parallel compile jobs (a cold build takes a few minutes; the Go
#                             build cache makes later ones, e.g. in a fresh clone, quick)
set -euo pipefail

VERSION=${PROMTOOL_MODULE_VERSION:-v0.316.0}
JOBS=${PROMTOOL_GO_JOBS:-2}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=$REPO_ROOT/.cache/tools/bin
BIN=$BIN_DIR/promtool-$VERSION

log() { printf 'ensure-promtool: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

if [ -x "$BIN" ]; then
    printf '%s\n' "$BIN"
    exit 0
fi
command -v go >/dev/null 2>&1 || die "go not found: install Go 1.24+ (promtool is built from source)"
mkdir -p "$BIN_DIR"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
log "building promtool (github.com/prometheus/prometheus $VERSION) through the Go module proxy; a cold build takes a few minutes"
# A module of its own: `go install pkg@version` refuses modules with replace directives.
(
    cd "$build"
    go mod init promtool-build >/dev/null 2>&1
    GOFLAGS="-p=$JOBS" go get "github.com/prometheus/prometheus/cmd/promtool@$VERSION" >&2
    GOFLAGS="-p=$JOBS" go build -trimpath -ldflags="-s -w" -o "$BIN.tmp" github.com/prometheus/prometheus/cmd/promtool >&2
) || die "building promtool $VERSION failed (see above). Is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?"
mv -f "$BIN.tmp" "$BIN"
log "promtool ready: $BIN"
printf '%s\n' "$BIN"
