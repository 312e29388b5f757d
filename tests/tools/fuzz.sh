#!/usr/bin/env bash
# make fuzz: run every fuzz target (fuzz/fuzz_targets) with cargo-fuzz on the
# nightly toolchain for SECONDS each (default 60), inputs up to 1 MiB, and
# print each target's executions and coverage. Installs cargo-fuzz if
# missing. Exits non-zero if a target finds a crash (its input is saved
# under fuzz/artifacts/TARGET/).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: no nightly toolchain here; cargo-fuzz needs it (rustup toolchain install nightly)" >&2
    exit 1
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^shoal-fuzz$')
cargo +nightly fuzz build --release >/dev/null
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    seeds=()
    case $t in
        bencode|metainfo) seeds=(testdata) ;;
    esac
    log=$(mktemp)
    if ! cargo +nightly fuzz run --release "$t" "fuzz/corpus/$t" ${seeds[@]+"${seeds[@]}"} -- \
        -max_total_time="$seconds" -max_len=1048576 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: $t FAILED (see fuzz/artifacts/$t/)" >&2
        rm -f "$log"
        exit 1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz: $t ok: $execs executions in ${seconds}s, $cov"
    rm -f "$log"
done
