#!/usr/bin/env bash
# The fuzz targets, built with AddressSanitizer through cargo-fuzz (installed by install.sh):
#   scripts/fuzz.sh build                      build every target (the test command does)
#   scripts/fuzz.sh run TARGET [SECONDS]       fuzz one target (default 60 s); corpus and
#                                              crashes stay in fuzz/corpus and fuzz/artifacts
#   scripts/fuzz.sh smoke [SECONDS]            every target for a few seconds each
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/install.sh
# -Zsanitizer is a nightly flag; cargo-fuzz passes it, RUSTC_BOOTSTRAP lets stable take it.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$FRESHET_FUZZ_TARGET
export PATH="$(dirname "$FRESHET_CARGO_FUZZ"):$PATH"
cd fuzz
targets=$(cargo fuzz list)
case "${1:-build}" in
    build)
        cargo fuzz build --sanitizer address
        ;;
    run)
        cargo fuzz run --sanitizer address "${2:?which target: $targets}" -- \
            -max_total_time="${3:-60}" -print_final_stats=1
        ;;
    smoke)
        for t in $targets; do
            cargo fuzz run --sanitizer address "$t" -- -max_total_time="${2:-5}" 2>&1 | tail -n 3
        done
        ;;
    *)
        echo "usage: scripts/fuzz.sh build | run TARGET [SECONDS] | smoke [SECONDS]" >&2
        exit 2
        ;;
esac
