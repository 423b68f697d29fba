#!/usr/bin/env bash
# Boot-storm benchmark: tftproxy against the TFTP servers a user would pick
# instead, in the same run, on the same files, on loopback.
#
#   benches/run.sh                      # everything, 3 runs
#   RUNS=5 PHONES="1000 5000" benches/run.sh
#   SERVERS="tftproxy tftpd-hpa" PROXY=0 benches/run.sh
#
# Environment:
#   RUNS     storms per (server, phones); medians are reported      (default 3)
#   PHONES   phone counts                                           (default "50 1000 5000")
#   SERVERS  among: tftproxy tftproxy-single tftpd-hpa dnsmasq dnsmasq-max async-tftp
#            tftproxy-base (tftproxy-single: the same binary with
#            [tftp] single_port = true, every transfer on the listening port)
#   BASE     for tftproxy-base: another tftproxy binary (e.g. the previous commit's),
#            run with the same configuration, for before/after comparisons
#   PROXY    1 = also the proxy storm and the time-to-first-byte runs (default 1)
#   REUSE    1 = also 1,000-phone storms where each phone reuses one source
#            port for its four files (--reuse-socket)                (default 1)
#   STORM_ARGS  extra arguments for every storm (e.g. "--blksize 1468")
#   OUT      directory for raw results and logs (default: a new temporary one)
#
# Storms run interleaved (run 1 of every server and size, then run 2, ...),
# so that noise from other work on the machine spreads over every server.
# Each server is started fresh before its storm and stopped after it.
# dnsmasq serves TFTP on port 69 only: it needs root and a free port 69.
# Everything this script starts, it stops (trap on exit).
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
PHONES=${PHONES:-"50 1000 5000"}
SERVERS=${SERVERS:-"tftproxy tftpd-hpa dnsmasq dnsmasq-max async-tftp"}
PROXY=${PROXY:-1}
REUSE=${REUSE:-1}
STORM_ARGS=${STORM_ARGS:-}
OUT=${OUT:-$(mktemp -d /tmp/boot-storm.XXXXXX)}
mkdir -p "$OUT"
MAX_PHONES=$(echo "$PHONES" | tr ' ' '\n' | sort -n | tail -1)

PORT_TFTPROXY=16969
PORT_HPA=16970
PORT_ASYNC=16971

SERVER_PGID=""
cleanup() {
    if [ -n "$SERVER_PGID" ]; then
        kill -- "-$SERVER_PGID" 2>/dev/null || true
    fi
    rm -rf "$OUT/root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== build (release)" >&2
BENCH=$(cargo build --release --bin tftproxy --example async_tftp_dir --bench boot_storm \
    --message-format=json 2>"$OUT/build.log" |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "boot_storm"
                  and .executable != null) | .executable' | tail -1)
[ -x "$BENCH" ] || { cat "$OUT/build.log" >&2; echo "no bench binary" >&2; exit 1; }
TFTPROXY=target/release/tftproxy
ASYNC_TFTP=target/release/examples/async_tftp_dir

echo "== files for $MAX_PHONES phones in $OUT/root" >&2
"$BENCH" make-root "$OUT/root" --phones "$MAX_PHONES"
ROOT=$(cd "$OUT/root" && pwd)

cat >"$OUT/tftproxy.toml" <<EOF
[tftp]
listen = ["127.0.0.1:$PORT_TFTPROXY"]
root = "$ROOT"
max_transfers = 10000
[log]
level = "info"
EOF
# Single-port mode: the same, with every transfer on the listening port.
sed 's/^max_transfers = 10000$/max_transfers = 10000\nsingle_port = true/' \
    "$OUT/tftproxy.toml" >"$OUT/tftproxy-single.toml"

# start_server NAME -> sets SERVER_PGID, TARGET, PID
start_server() {
    local name=$1 log="$OUT/$1.log"
    case $name in
    tftproxy)
        TARGET=127.0.0.1:$PORT_TFTPROXY
        setsid "$TFTPROXY" serve -c "$OUT/tftproxy.toml" >>"$log" 2>&1 &
        ;;
    tftproxy-single)
        TARGET=127.0.0.1:$PORT_TFTPROXY
        setsid "$TFTPROXY" serve -c "$OUT/tftproxy-single.toml" >>"$log" 2>&1 &
        ;;
    tftproxy-base)
        # Another tftproxy binary (BASE=path), same config: before/after.
        [ -x "${BASE:-}" ] || { echo "tftproxy-base needs BASE=<tftproxy binary>" >&2; exit 2; }
        TARGET=127.0.0.1:$PORT_TFTPROXY
        setsid "$BASE" serve -c "$OUT/tftproxy.toml" >>"$log" 2>&1 &
        ;;
    tftpd-hpa)
        TARGET=127.0.0.1:$PORT_HPA
        setsid /usr/sbin/in.tftpd -L -u root -s "$ROOT" -a "$TARGET" >>"$log" 2>&1 &
        ;;
    dnsmasq | dnsmasq-max)
        TARGET=127.0.0.1:69
        local max=()
        [ "$name" = dnsmasq-max ] && max=(--tftp-max=10000)
        setsid dnsmasq --no-daemon --conf-file=/dev/null --port=0 --enable-tftp \
            --tftp-root="$ROOT" --listen-address=127.0.0.1 --bind-interfaces \
            --user=root --group=root --pid-file --log-facility=- "${max[@]}" >>"$log" 2>&1 &
        ;;
    async-tftp)
        TARGET=127.0.0.1:$PORT_ASYNC
        setsid "$ASYNC_TFTP" "$ROOT" "$TARGET" >>"$log" 2>&1 &
        ;;
    *)
        echo "unknown server $name" >&2
        exit 2
        ;;
    esac
    PID=$!
    SERVER_PGID=$PID
    "$BENCH" wait --target "$TARGET" --seconds 10
}

stop_server() {
    if [ -n "$SERVER_PGID" ]; then
        kill -- "-$SERVER_PGID" 2>/dev/null || true
        # Wait for the whole group (forked children too) to be gone.
        for _ in $(seq 100); do
            kill -0 -- "-$SERVER_PGID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$SERVER_PGID" 2>/dev/null || true
        SERVER_PGID=""
    fi
}

udp_counters() { awk '/^Udp:/ { if (h) print; h = 1 }' /proc/net/snmp; }

# storm_matrix FILE PHONES... : RUNS interleaved rounds of every server and size.
storm_matrix() {
    local file=$1
    shift
    : >"$file"
    {
        echo "# $(date -u +%FT%TZ) $(uname -sr) nproc=$(nproc) runs=$RUNS phones=\"$*\""
        echo "# storm args: $STORM_ARGS"
    } >>"$file"
    for run in $(seq "$RUNS"); do
        for phones in "$@"; do
            for server in $SERVERS; do
                echo "== run $run/$RUNS: $server, $phones phones $STORM_ARGS" >&2
                start_server "$server"
                echo "-- $server $phones phones run $run" >>"$OUT/storm-errors.log"
                # shellcheck disable=SC2086
                "$BENCH" storm --target "$TARGET" --phones "$phones" --label "$server" \
                    --server-pid "$PID" $STORM_ARGS 2>>"$OUT/storm-errors.log" |
                    sed "s/ run=1 / run=$run /" | tee -a "$file"
                stop_server
                sleep 1
            done
        done
    done
}

# shellcheck disable=SC2086
storm_matrix "$OUT/results.txt" $PHONES
echo >&2
echo "== medians (raw results: $OUT/results.txt)" >&2
"$BENCH" summarize "$OUT/results.txt" | tee "$OUT/table.md"

if [ "$REUSE" = 1 ]; then
    echo >&2
    echo "== 1,000 phones, one source port per phone for all its files" >&2
    STORM_ARGS="$STORM_ARGS --reuse-socket" storm_matrix "$OUT/reuse.txt" 1000
    "$BENCH" summarize "$OUT/reuse.txt" | tee "$OUT/reuse-table.md"
fi

if [ "$PROXY" = 1 ]; then
    echo >&2
    echo "== proxy storm: 1000 phones, 4 clusters with 20 ms latency, cold then warm" >&2
    : >"$OUT/proxy.txt"
    : >"$OUT/first-byte.txt"
    for run in $(seq "$RUNS"); do
        "$BENCH" proxy --phones 1000 --clusters 4 --delay-ms 20 2>>"$OUT/storm-errors.log" |
            tee -a "$OUT/proxy.txt"
        echo "== time to first byte: 10 clusters, 50 ms each, file on the last" >&2
        "$BENCH" first-byte --clusters 10 --delay-ms 50 --runs 7 | tee -a "$OUT/first-byte.txt"
    done
    "$BENCH" summarize "$OUT/proxy.txt" "$OUT/first-byte.txt" | tee "$OUT/proxy-table.md"
fi
echo "results in $OUT" >&2
