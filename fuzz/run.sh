#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the
# stable toolchain (the flags cargo-fuzz passes, without a sanitizer) and runs
# each for SECONDS (default 30) on its corpus in fuzz/corpus/<target>, which
# grows with what libFuzzer finds. A crash stops the run with its input in
# fuzz/artifacts/<target>/ and a non-zero exit status.
#
#   fuzz/run.sh                 # every target, 30 s each
#   SECONDS_EACH=300 fuzz/run.sh packet
set -euo pipefail
cd "$(dirname "$0")"
TARGET_TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
TARGETS=${*:-"packet name config http_request"}
cargo build --release --locked --target "$TARGET_TRIPLE" --bins
for target in $TARGETS; do
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "== fuzz $target for ${SECONDS_EACH:-30} s"
    log="artifacts/$target/last-run.log"
    status=0
    "target/$TARGET_TRIPLE/release/$target" "corpus/$target" \
        -max_total_time="${SECONDS_EACH:-30}" -max_len=4096 -timeout=5 \
        -artifact_prefix="artifacts/$target/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(Done|stat::number_of_executed_units|==[0-9]+==|SUMMARY|thread .* panicked)' "$log" || true
    if [[ $status -ne 0 ]]; then
        tail -40 "$log" >&2
        echo "fuzz target $target failed (exit $status); the input is in fuzz/artifacts/$target/" >&2
        exit "$status"
    fi
done
