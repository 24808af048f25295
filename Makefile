# Sluice: build, run and test entry points. `make run` and `make test` are the headline.
# Everything installs what it needs through deploy/scripts/, so a fresh machine works.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
CONFIG ?= config.yaml
SCRIPTS := deploy/scripts
PULSAR := deploy/pulsar/standalone.sh
WITH_BROKER := deploy/pulsar/with-broker.sh

.PHONY: help tools python-env build run test fmt fmt-check lint bench bench-smoke validate clean startup-symbols release-daemon pulsar pulsar-stop nats nats-stop kafka kafka-stop deploy-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

tools: ## install protoc when missing and check that cargo is there
	@bash $(SCRIPTS)/ensure-tools.sh

python-env: ## create .cache/venv with the OpenTelemetry Python SDK (test client)
	@bash $(SCRIPTS)/python-env.sh >/dev/null

build: tools ## debug build of the library and the binary
	$(CARGO) build --all-targets

run: tools ## run sluice (release build) with CONFIG (default config.yaml)
	$(CARGO) run --release -- run --config $(CONFIG)

validate: tools ## check CONFIG without starting anything
	$(CARGO) run -- validate --config $(CONFIG)

fmt: ## format the code
	$(CARGO) fmt --all

fmt-check: ## fail when the code is not formatted
	$(CARGO) fmt --all -- --check

lint: tools ## clippy on every target, warnings are errors
	$(CARGO) clippy --all-targets -- -D warnings

pulsar: ## start a local Apache Pulsar standalone broker (pulsar://127.0.0.1:6650, admin :8080)
	@bash $(PULSAR) start
	@echo "Pulsar is up: pulsar://127.0.0.1:6650 (admin http://127.0.0.1:8080); stop it with make pulsar-stop"

pulsar-stop: ## stop the local Pulsar broker
	@bash $(PULSAR) stop

nats: ## start a local NATS server with JetStream (nats://127.0.0.1:4222, monitoring :8222), built through the Go module proxy
	@bash deploy/nats/server.sh start
	@echo "NATS is up: nats://127.0.0.1:4222; stop it with make nats-stop"

nats-stop: ## stop the local NATS server
	@bash deploy/nats/server.sh stop

kafka: ## start a local Apache Kafka broker in KRaft mode (127.0.0.1:9092), jars from Maven Central
	@bash deploy/kafka/server.sh start
	@echo "Kafka is up: 127.0.0.1:9092 (SASL 9094, TLS 9095; see deploy/kafka/server.sh env); stop it with make kafka-stop"

kafka-stop: ## stop the local Kafka broker
	@bash deploy/kafka/server.sh stop

# The OpenTelemetry Collector as a peer (interop tests, bench comparison): telemetrygen and a
# Collector built with the collector builder from deploy/peers/otelcol-builder.yaml, pinned,
# installed through the Go module proxy into .cache/peers/bin/ (needs Go >= 1.24). A cold build
# takes ~3–5 min on 2 cores; afterwards it is a no-op until the manifest or the Go version changes.
.PHONY: peers interop
peers: ## build the OpenTelemetry Collector peer and telemetrygen (pinned, cached in .cache/peers/)
	@bash deploy/peers/install.sh

# Sluice <-> the Collector's pulsar/kafka exporter and receiver through real Pulsar and Kafka
# brokers, both directions (tests/interop_collector/; `make test` runs it too). Broker handling
# as in `make test`: deploy/pulsar/with-broker.sh.
interop: tools peers ## Sluice <-> OpenTelemetry Collector through Pulsar and Kafka (pulsar/kafka exporter and receiver)
	@bash $(WITH_BROKER) $(CARGO) test --test interop_collector --no-fail-fast

# The integration tests under tests/ run the real binary against real OTLP clients (the Rust
# SDK, and the Python SDK from the venv, located through SLUICE_TEST_PYTHON) and a real Pulsar
# broker: deploy/pulsar/with-broker.sh starts it with fresh data and stops it afterwards, also
# when the tests fail (one already running, e.g. from `make pulsar`, is left running), and
# fails loudly if it cannot start. The Pulsar tests find it through SLUICE_PULSAR_URL /
# SLUICE_PULSAR_ADMIN_URL and fail without them.
# --all-targets also runs every criterion bench once in test mode, so a broken bench fails here
# without paying for a release build.
#
# Each test binary runs under `timeout` (TEST_BINARY_TIMEOUT seconds; the longest,
# broker_restart, takes ~3 min): one that hangs fails by name (exit status 124) and the
# others still run, instead of the whole run waiting for CI's own limit.
TEST_BINARY_TIMEOUT ?= 900
test: tools python-env fmt-check lint peers ## fmt check, clippy, all tests with a Pulsar broker (benches run once as tests)
	@SLUICE_TEST_PYTHON="$$(bash $(SCRIPTS)/python-env.sh)" \
	bash $(WITH_BROKER) $(CARGO) test --all-targets --no-fail-fast \
		--config "target.$$(rustc -vV | sed -n 's/^host: //p').runner = ['timeout', '--kill-after=30', '$(TEST_BINARY_TIMEOUT)']"
	$(MAKE) --no-print-directory deploy-check

# The fault matrix (tests/fault_matrix.rs, tests/broker_restart.rs), long version: more
# SIGKILL trials per buffer, more broker restarts, a longer backend outage.
CHAOS_TRIALS ?= 25
CHAOS_BROKER_TRIALS ?= 10
CHAOS_OUTAGE_SECS ?= 300
.PHONY: chaos
chaos: tools ## the fault matrix, long: CHAOS_TRIALS SIGKILLs per buffer, CHAOS_BROKER_TRIALS broker restarts, a CHAOS_OUTAGE_SECS backend outage
	SLUICE_CHAOS_TRIALS=$(CHAOS_TRIALS) SLUICE_CHAOS_BROKER_TRIALS=$(CHAOS_BROKER_TRIALS) \
	SLUICE_CHAOS_OUTAGE_SECS=$(CHAOS_OUTAGE_SECS) \
	bash $(WITH_BROKER) $(CARGO) test --test fault_matrix --test broker_restart -- --nocapture

# Coverage-guided fuzzing of every parser of untrusted input (tests/fuzz/, src/fuzzing.rs) with
# cargo fuzz on the nightly toolchain. CI runs fuzz-smoke after make test; a crash fails it.
FUZZ_SECONDS ?= 30
.PHONY: fuzz fuzz-smoke
fuzz-smoke: tools python-env ## a bounded run of every fuzz target (FUZZ_SECONDS each, default 30)
	@bash $(SCRIPTS)/fuzz.sh $(FUZZ_SECONDS)

fuzz: tools python-env ## every fuzz target for 10 minutes each (FUZZ_SECONDS to change)
	@bash $(SCRIPTS)/fuzz.sh $(if $(filter command line,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),600)

deploy-check: tools ## validate deploy/ offline: Dockerfile, Kubernetes manifests, Helm chart, compose, embedded configs
	bash $(SCRIPTS)/validate-deploy.sh

bench-smoke: tools ## run each benchmark once, as a test
	$(CARGO) bench --bench receive_path -- --test
	$(CARGO) bench --bench disk_buffer -- --test
	$(CARGO) bench --bench broker_paths -- --test
	$(CARGO) bench --bench processors -- --test

# The criterion benches, then Sluice against the OpenTelemetry Collector measured in the same
# run (deploy/bench/run.py; the Collector comes from `make peers`). BENCH_QUICK=1: criterion's
# --quick and one short repetition of the comparison (~7 min instead of ~55).
bench: tools ## criterion benches, then Sluice vs the Collector (needs `make peers`; BENCH_QUICK=1 for ~7 min)
	$(CARGO) bench $(if $(filter-out 0,$(BENCH_QUICK)),--bench '*' -- --quick)
	$(MAKE) --no-print-directory release-daemon
	nice -n 10 $(CARGO) build --release --example loadgen
	python3 deploy/bench/run.py

# The daemon as the image builds it: on its own. Built in one cargo invocation with an example or
# a test (`cargo bench` too), it gets other symbol names and loses the code layout
# (docs/architecture.md, "Code layout"), so `bench` builds it again after the criterion benches.
release-daemon:
	nice -n 10 $(CARGO) build --release --bin sluice

# The functions a start and an idle daemon run, then those serving requests adds, which the
# release build's linker lays out in that order (src/build.rs; docs/architecture.md, "Code
# layout"). Rerun after dependency or toolchain upgrades.
startup-symbols: tools release-daemon ## regenerate src/startup_symbols.txt (release build under valgrind, ~3 min)
	$(CARGO) build --release --example loadgen
	python3 $(SCRIPTS)/startup_symbols.py target/release/sluice target/release/examples/loadgen src/startup_symbols.txt

clean: ## remove build output and the local caches (venv)
	$(CARGO) clean
	rm -rf .cache
