#!/usr/bin/env bash
# Runs every fuzz target (tests/fuzz/fuzz_targets/) for SECONDS each with cargo fuzz (libFuzzer,
# nightly toolchain), starting from seeds made from the test data (tests/fuzz/seeds.py) plus
# the corpus kept from earlier runs (target/fuzz/corpus/). A crash fails the run and names its
# input (target/fuzz/artifacts/<target>/): fix it, and add the input under
# tests/fuzz/regressions/<target>/, which `make test` replays.
#   usage: fuzz.sh SECONDS [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:?usage: fuzz.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(otlp_protobuf otlp_json grpc_frame decompression disk_segment pulsar_message config_yaml)
fi

die() { echo "fuzz: $*" >&2; exit 1; }

# cargo fuzz needs the nightly toolchain (-Z flags); it cannot be downloaded here, so its
# absence is an error, never a skip.
cargo +nightly --version >/dev/null 2>&1 ||
    die "the nightly Rust toolchain is missing (rustup toolchain install nightly)"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked --version 0.13.2 || die "cannot install cargo-fuzz"
fi

python=$(bash deploy/scripts/python-env.sh)
seeds=target/fuzz/seeds
rm -rf "$seeds"
"$python" tests/fuzz/seeds.py "$seeds" >/dev/null || die "cannot write the seed corpora"

flags=(--fuzz-dir tests/fuzz -O -s none --target-dir target/fuzz)
cargo +nightly fuzz build "${flags[@]}" || die "the fuzz targets do not build"

failed=()
for t in "${targets[@]}"; do
    corpus=target/fuzz/corpus/$t
    artifacts=target/fuzz/artifacts/$t/
    mkdir -p "$corpus" "$artifacts"
    echo "fuzz: $t for ${seconds}s"
    if ! cargo +nightly fuzz run "${flags[@]}" "$t" "$corpus" "$seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -artifact_prefix="$artifacts" \
        -print_final_stats=1 2>"target/fuzz/$t.log"; then
        tail -40 "target/fuzz/$t.log" >&2
        failed+=("$t")
    else
        grep -E "stat::number_of_executed_runs|stat::new_units_added" "target/fuzz/$t.log" |
            tr '\n' ' ' | sed "s/^/fuzz: $t: /"
        echo
    fi
done
[ ${#failed[@]} -eq 0 ] || die "crashes in: ${failed[*]} (inputs under target/fuzz/artifacts/)"
echo "fuzz: every target ran ${seconds}s without a crash"
