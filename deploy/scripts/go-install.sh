# Sourced by scripts that build one Go command from source through the Go module proxy
# (deploy/nats/server.sh, deploy/bench/natscli.sh).
#
# go_install_to DEST PACKAGE@VERSION: builds PACKAGE@VERSION into the file DEST unless DEST
# is there already. Name DEST after the version, so a new pin builds again.
go_install_to() {
    local dest=$1 package=$2 gobin
    [ -x "$dest" ] && return 0
    command -v go >/dev/null || { echo "Go is needed to build $package" >&2; exit 1; }
    echo "building $package through the Go module proxy" >&2
    gobin="$(mktemp -d)"
    GOBIN="$gobin" GOFLAGS=-mod=mod go install "$package"
    mkdir -p "$(dirname "$dest")"
    mv "$gobin"/* "$dest"
    rm -rf "$gobin"
}
