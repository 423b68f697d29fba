#!/usr/bin/env bash
# Flood benchmark (issue 10, "Benchmark"): tftproxy under three floods, each
# FLOOD_S seconds on loopback, while 200 legitimate phones (each its own
# 127.1.0.x address) boot once a quarter of the flood has passed:
#   unknown-names  RRQs for distinct unknown names; a cluster answers 404 after 0.5 s
#   unacked        RRQs for a 256 KiB local file from many addresses, never acknowledged
#   http-miss      HTTP-front GETs for distinct unknown names; a cluster hangs
# Reported per flood: the phones' success rate and p99, tftproxy's peak RSS,
# the amplification factor (UDP payload bytes tftproxy sent to the flood's
# sockets ÷ the bytes they sent it) and the HTTP statuses the flood got.
#
#   benches/flood.sh                                 # 3 runs of each flood, 30 s
#   RUNS=1 FLOOD_S=60 KINDS=unacked benches/flood.sh
#
# Environment:
#   RUNS      runs per flood (medians)                       (default 3)
#   KINDS     among unknown-names unacked http-miss           (default all three)
#   FLOOD_S   flood length, seconds (issue 10: 30-60)         (default 30)
#   RATE      flood requests per second                       (default 1000)
#   SOURCES   distinct flood source addresses (127.2.x.y)     (default 1000)
#   PHONES    legitimate phones                               (default 200)
#   FLOOD_ARGS  extra arguments for `boot_storm flood` (e.g. --tftp-extra "max_transfers = 500")
#   OUT       directory for results and tftproxy's logs       (default: a new temporary one)
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
KINDS=${KINDS:-"unknown-names unacked http-miss"}
FLOOD_S=${FLOOD_S:-30}
RATE=${RATE:-1000}
SOURCES=${SOURCES:-1000}
PHONES=${PHONES:-200}
FLOOD_ARGS=${FLOOD_ARGS:-}
OUT=${OUT:-$(mktemp -d /tmp/flood.XXXXXX)}
mkdir -p "$OUT"

echo "== build (release)" >&2
BENCH=$(cargo build --release --bin tftproxy --bench boot_storm --message-format=json \
    2>"$OUT/build.log" |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "boot_storm"
                  and .executable != null) | .executable' | tail -1)
[ -x "$BENCH" ] || { cat "$OUT/build.log" >&2; echo "no bench binary" >&2; exit 1; }

: >"$OUT/flood.txt"
echo "# $(date -u +%FT%TZ) $(uname -sr) nproc=$(nproc) runs=$RUNS flood_s=$FLOOD_S rate=$RATE" \
    >>"$OUT/flood.txt"
for run in $(seq "$RUNS"); do
    for kind in $KINDS; do
        echo "== run $run/$RUNS: flood $kind, $FLOOD_S s at $RATE/s, $PHONES phones" >&2
        dir="$OUT/$kind-$run"
        # shellcheck disable=SC2086
        "$BENCH" flood --tftproxy target/release/tftproxy --kind "$kind" --seconds "$FLOOD_S" \
            --rate "$RATE" --sources "$SOURCES" --phones "$PHONES" --dir "$dir" $FLOOD_ARGS \
            2>>"$OUT/flood-errors.log" | sed "s/ run=1 / run=$run /" | tee -a "$OUT/flood.txt"
        rm -rf "$dir/root"
        sleep 1
    done
done
echo >&2
echo "== medians (raw results: $OUT/flood.txt)" >&2
"$BENCH" summarize "$OUT/flood.txt" | tee "$OUT/flood-table.md"
echo "results in $OUT" >&2
