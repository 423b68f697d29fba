#!/usr/bin/env bash
# Boot-storm benchmark: tftproxy against the TFTP servers a user would pick
# instead, and against a minimal reference responder that only finds the
# machine's ceiling, in the same run, on the same files, on loopback.
#
#   benches/run.sh                      # everything, 3 runs
#   PROXY=0 REUSE=0 benches/run.sh      # issue 11's matrix: phones 50/1,000/5,000 and the
#                                       # firmware case, every server, RSS with 5,000 transfers
#   RUNS=5 PHONES="1000 5000" benches/run.sh
#   SERVERS="tftproxy tftpd-hpa" PROXY=0 benches/run.sh
#   INSTR=auto INSTR_PHONES=50 PROXY=0 REUSE=0 FIRMWARE=0 HOLD=0 benches/run.sh  # instructions/file
#
# Environment:
#   RUNS     storms per (server, phones); medians are reported      (default 3)
#   PHONES   phone counts                                           (default "50 1000 5000")
#   SERVERS  among: reference tftproxy tftproxy-single tftproxy-base tftproxy-base-single
#            dnsmasq dnsmasq-max
#            tftpd-hpa r-tftpd async-tftp
#            (default: reference tftproxy tftproxy-single dnsmasq tftpd-hpa r-tftpd async-tftp;
#            a server whose program is missing is skipped with a warning)
#            reference: benches/reference, the minimal responder (one socket, files in
#              memory, recvmmsg/sendmmsg, no timers); every table has ratios to it
#            tftproxy-single: [tftp] single_port = true, every transfer on the listening port
#            tftproxy-base: another tftproxy binary (BASE=path, e.g. the previous commit's),
#              same configuration, for before/after comparisons; tftproxy-base-single:
#              the same in single-port mode
#            r-tftpd: `cargo install r-tftpd` (into ~/.cargo/bin, never committed) when it is
#              missing and INSTALL_PEERS=1 (default); skipped if the install fails
#   FIRMWARE 1 = also the firmware case: FW_PHONES (10) phones each fetching a 32 MiB
#            file with blksize 1468 and windowsize 8                (default 1)
#   HOLD     1 = also each server's RSS with HOLD_TRANSFERS (5000) transfers held open
#            (phones that ACK every 500 ms), for HOLD_SERVERS (default: SERVERS without
#            tftpd-hpa, which forks a process per transfer), for HOLD_S (10) seconds
#            once all are open                                      (default 1)
#   INSTR    instructions per file: perf (perf stat -e instructions -p PID around each
#            storm), callgrind (the server runs under valgrind; callgrind_control zeroes
#            its counters before the storm and dumps them after; ~50x slower, so use
#            small INSTR_PHONES), auto (perf when `perf stat -e instructions true`
#            counts, else callgrind), 0 = off                       (default 0)
#            With INSTR set, the storms are INSTR_PHONES phones (default 50) with a 10 s
#            phone retransmit; tftpd-hpa's forked children are not counted under callgrind.
#   SYSCALLS 1 = also count, per file served, the server's system calls of each kind
#            that a UDP server makes (recvmmsg, sendmmsg, epoll_wait, futex, write, read,
#            openat2, statx, close), its context switches, page faults and heap
#            allocations (a uprobe on libc's malloc), by
#            `perf stat -e syscalls:…` around each storm (needs tracepoints: root);
#            medians in $OUT/syscalls.md. Tracing slows every call a little: time
#            figures of such a run are not comparable with others      (default 0)
#   WARM     1 = each server serves the same storm once, unmeasured, before the one
#            measured: a daemon that has run before (its memory already mapped), where
#            the default measures a fresh process's first storm           (default 0)
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
SERVERS=${SERVERS:-"reference tftproxy tftproxy-single dnsmasq tftpd-hpa r-tftpd async-tftp"}
FIRMWARE=${FIRMWARE:-1}
FW_PHONES=${FW_PHONES:-10}
HOLD=${HOLD:-1}
HOLD_TRANSFERS=${HOLD_TRANSFERS:-5000}
HOLD_S=${HOLD_S:-10}
HOLD_SERVERS=${HOLD_SERVERS:-$(echo "$SERVERS" | tr ' ' '\n' | grep -vx tftpd-hpa | tr '\n' ' ')}
INSTR=${INSTR:-0}
SYSCALLS=${SYSCALLS:-0}
COUNTING=1 # system calls are counted in the main storms only
WARM=${WARM:-0}
SYSCALL_EVENTS=context-switches,page-faults
for call in recvmmsg sendmmsg epoll_wait futex write read openat2 statx close; do
    SYSCALL_EVENTS="$SYSCALL_EVENTS,syscalls:sys_enter_$call"
done
if [ "$SYSCALLS" = 1 ]; then
    # Heap allocations too: a probe on the C library's malloc, which every
    # server here allocates through (Rust's default allocator included).
    LIBC=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ { print $NF; exit }')
    if [ -n "$LIBC" ] && { perf probe -l 2>/dev/null | grep -q 'probe_libc:malloc ' ||
        perf probe -q -x "$LIBC" malloc 2>/dev/null; }; then
        SYSCALL_EVENTS="$SYSCALL_EVENTS,probe_libc:malloc"
    else
        echo "no uprobe on malloc: allocations are not counted" >&2
    fi
fi
INSTR_PHONES=${INSTR_PHONES:-50}
INSTALL_PEERS=${INSTALL_PEERS:-1}
PROXY=${PROXY:-1}
REUSE=${REUSE:-1}
STORM_ARGS=${STORM_ARGS:-}
OUT=${OUT:-$(mktemp -d /tmp/boot-storm.XXXXXX)}
mkdir -p "$OUT"
MAX_PHONES=$(echo "$PHONES" | tr ' ' '\n' | sort -n | tail -1)

PORT_TFTPROXY=16969
PORT_HPA=16970
PORT_ASYNC=16971
PORT_REFERENCE=16972
PORT_RTFTPD=16973
WRAP=() # a command the server runs under (valgrind, for INSTR=callgrind)

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
cargo build --release --bin tftproxy --example async_tftp_dir --bench boot_storm \
    --bench reference --message-format=json 2>"$OUT/build.log" >"$OUT/build.json"
executable() {
    jq -r --arg name "$1" 'select(.reason == "compiler-artifact" and .target.name == $name
                  and .executable != null) | .executable' "$OUT/build.json" | tail -1
}
BENCH=$(executable boot_storm)
REFERENCE=$(executable reference)
[ -x "$BENCH" ] && [ -x "$REFERENCE" ] || { cat "$OUT/build.log" >&2; echo "no bench binary" >&2; exit 1; }
TFTPROXY=target/release/tftproxy
ASYNC_TFTP=target/release/examples/async_tftp_dir

# Keep only the servers this machine has (r-tftpd: installed if asked).
have_server() {
    case $1 in
    dnsmasq | dnsmasq-max) command -v dnsmasq >/dev/null ;;
    tftpd-hpa) [ -x /usr/sbin/in.tftpd ] ;;
    r-tftpd)
        command -v r-tftpd >/dev/null && return 0
        [ "$INSTALL_PEERS" = 1 ] || return 1
        echo "== cargo install r-tftpd (not part of this repository)" >&2
        cargo install --locked r-tftpd >"$OUT/r-tftpd-install.log" 2>&1 ||
            cargo install r-tftpd >>"$OUT/r-tftpd-install.log" 2>&1 || return 1
        command -v r-tftpd >/dev/null
        ;;
    *) return 0 ;;
    esac
}
available=""
for server in $SERVERS; do
    if have_server "$server"; then
        available="$available $server"
    else
        echo "warning: $server is not installed here: skipped" >&2
    fi
done
SERVERS=${available# }
HOLD_SERVERS=$(for s in $HOLD_SERVERS; do case " $SERVERS " in *" $s "*) echo -n "$s " ;; esac; done)

echo "== files for $MAX_PHONES phones in $OUT/root" >&2
fw=()
{ [ "$FIRMWARE" = 1 ] || [ "$HOLD" = 1 ]; } && fw=(--firmware)
"$BENCH" make-root "$OUT/root" --phones "$MAX_PHONES" "${fw[@]}"
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
        setsid "${WRAP[@]}" "$TFTPROXY" serve -c "$OUT/tftproxy.toml" >>"$log" 2>&1 &
        ;;
    tftproxy-single)
        TARGET=127.0.0.1:$PORT_TFTPROXY
        setsid "${WRAP[@]}" "$TFTPROXY" serve -c "$OUT/tftproxy-single.toml" >>"$log" 2>&1 &
        ;;
    tftproxy-base | tftproxy-base-single)
        # Another tftproxy binary (BASE=path), same config: before/after.
        [ -x "${BASE:-}" ] || { echo "$name needs BASE=<tftproxy binary>" >&2; exit 2; }
        TARGET=127.0.0.1:$PORT_TFTPROXY
        setsid "${WRAP[@]}" "$BASE" serve -c "$OUT/${name/-base/}.toml" >>"$log" 2>&1 &
        ;;
    tftpd-hpa)
        TARGET=127.0.0.1:$PORT_HPA
        setsid "${WRAP[@]}" /usr/sbin/in.tftpd -L -u root -s "$ROOT" -a "$TARGET" >>"$log" 2>&1 &
        ;;
    dnsmasq | dnsmasq-max)
        TARGET=127.0.0.1:69
        local max=()
        [ "$name" = dnsmasq-max ] && max=(--tftp-max=10000)
        setsid "${WRAP[@]}" /usr/sbin/dnsmasq --no-daemon --conf-file=/dev/null --port=0 --enable-tftp \
            --tftp-root="$ROOT" --listen-address=127.0.0.1 --bind-interfaces \
            --user=root --group=root --pid-file --log-facility=- "${max[@]}" >>"$log" 2>&1 &
        ;;
    async-tftp)
        TARGET=127.0.0.1:$PORT_ASYNC
        setsid "${WRAP[@]}" "$ASYNC_TFTP" "$ROOT" "$TARGET" >>"$log" 2>&1 &
        ;;
    reference)
        TARGET=127.0.0.1:$PORT_REFERENCE
        setsid "${WRAP[@]}" "$REFERENCE" "$ROOT" "$TARGET" >>"$log" 2>&1 &
        ;;
    r-tftpd)
        # It serves its working directory.
        TARGET=127.0.0.1:$PORT_RTFTPD
        (cd "$ROOT" && exec setsid "${WRAP[@]}" "$(command -v r-tftpd)" -l 127.0.0.1 \
            -p "$PORT_RTFTPD" -m 10000 >>"$log" 2>&1) &
        ;;
    *)
        echo "unknown server $name" >&2
        exit 2
        ;;
    esac
    PID=$!
    SERVER_PGID=$PID
    "$BENCH" wait --target "$TARGET" --seconds "${WAIT_S:-10}"
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

# Instructions per file: perf where the machine counts them, else callgrind.
INSTR_MODE=$INSTR
if [ "$INSTR" = auto ]; then
    if perf stat -e instructions true 2>&1 | grep -q 'instructions' &&
        ! perf stat -e instructions true 2>&1 | grep -q 'not supported'; then
        INSTR_MODE=perf
    else
        INSTR_MODE=callgrind
    fi
fi
case $INSTR_MODE in
0) ;;
perf | callgrind)
    echo "== instructions per file by $INSTR_MODE, $INSTR_PHONES phones" >&2
    PHONES=$INSTR_PHONES
    # A server slowed by its instrumentation must not make phones retransmit.
    STORM_ARGS="$STORM_ARGS --retransmit-ms 10000"
    if [ "$INSTR_MODE" = callgrind ]; then
        mkdir -p "$OUT/cg"
        WRAP=(valgrind --tool=callgrind "--callgrind-out-file=$OUT/cg/%p.out")
        WAIT_S=120
    fi
    ;;
*)
    echo "INSTR must be perf, callgrind, auto or 0" >&2
    exit 2
    ;;
esac

# storm_once SERVER PHONES RUN [STORM ARGS...]: one storm against the
# running server; prints its RESULT line, with instr_per_file under INSTR.
storm_once() {
    local server=$1 phones=$2 run=$3 perf_pid="" line instr="" files
    shift 3
    case $INSTR_MODE in
    perf)
        perf stat -e instructions -x, -o "$OUT/perf.txt" -p "$PID" &
        perf_pid=$!
        sleep 0.5
        ;;
    callgrind) callgrind_control -z "$PID" >/dev/null ;;
    esac
    local sys_pid=""
    if [ "$SYSCALLS" = 1 ] && [ "$COUNTING" = 1 ]; then
        perf stat -e "$SYSCALL_EVENTS" -x, -o "$OUT/syscalls-perf.txt" -p "$PID" &
        sys_pid=$!
        sleep 0.5
    fi
    line=$("$BENCH" storm --target "$TARGET" --phones "$phones" --label "$server" \
        --server-pid "$PID" "$@" 2>>"$OUT/storm-errors.log" | sed "s/ run=1 / run=$run /")
    case $INSTR_MODE in
    perf)
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        instr=$(awk -F, '/instructions/ { print $1 }' "$OUT/perf.txt")
        ;;
    callgrind)
        # tftpd-hpa's transfers run in forked children, which this does not reach.
        if [ "$server" != tftpd-hpa ]; then
            rm -f "$OUT/cg/$PID.out.1"
            callgrind_control -d "$PID" >/dev/null
            instr=$(awk '/^summary:/ { print $2 }' "$OUT/cg/$PID.out.1" 2>/dev/null || true)
        fi
        ;;
    esac
    files=$(sed -n 's/.* files=\([0-9]*\) .*/\1/p' <<<"$line")
    if [ -n "$sys_pid" ]; then
        kill -INT "$sys_pid"
        wait "$sys_pid" || true
        # One line per storm: server phones files event=count...
        awk -F, -v s="$server" -v p="$phones" -v f="${files:-0}" '
            $1 ~ /^[0-9]+$/ { sub(/^(syscalls:sys_enter_|probe_libc:)/, "", $3); c = c " " $3 "=" $1 }
            END { print s, p, f c }' "$OUT/syscalls-perf.txt" >>"$OUT/syscalls.txt"
    fi
    if [[ "$instr" =~ ^[0-9]+$ ]] && [ "${files:-0}" -gt 0 ]; then
        line="$line instr_per_file=$((instr / files))"
    fi
    echo "$line"
}

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
                if [ "$WARM" = 1 ]; then
                    # The same storm once, unmeasured: the server as it is after its first.
                    # shellcheck disable=SC2086
                    "$BENCH" storm --target "$TARGET" --phones "$phones" --label warm-up \
                        --server-pid "$PID" $STORM_ARGS >/dev/null 2>>"$OUT/storm-errors.log"
                    sleep 1
                fi
                # shellcheck disable=SC2086
                storm_once "$server" "$phones" "$run" $STORM_ARGS | tee -a "$file"
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
if [ "$SYSCALLS" = 1 ] && [ -s "$OUT/syscalls.txt" ]; then
    COUNTING=0
    echo >&2
    echo "== system calls per file served, medians (raw: $OUT/syscalls.txt)" >&2
    python3 - "$OUT/syscalls.txt" <<'PY' | tee "$OUT/syscalls.md"
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    server, phones, files, *counts = line.split()
    if int(files) == 0:
        continue
    per_file = {k: int(v) / int(files) for k, v in (c.split("=") for c in counts)}
    runs.setdefault((int(phones), server), []).append(per_file)
events = sorted({e for rs in runs.values() for r in rs for e in r})
print("| phones | server | " + " | ".join(events) + " |")
print("|---:|---|" + "---:|" * len(events))
for (phones, server), rs in sorted(runs.items(), key=lambda kv: kv[0][0]):
    cells = [f"{statistics.median(r.get(e, 0) for r in rs):.2f}" for e in events]
    print(f"| {phones} | {server} | " + " | ".join(cells) + " |")
PY
fi

if [ "$FIRMWARE" = 1 ]; then
    echo >&2
    echo "== firmware: $FW_PHONES phones, 32 MiB each, blksize 1468, windowsize 8" >&2
    STORM_ARGS="$STORM_ARGS --firmware --blksize 1468 --windowsize 8" \
        storm_matrix "$OUT/firmware.txt" "$FW_PHONES"
    "$BENCH" summarize "$OUT/firmware.txt" | tee "$OUT/firmware-table.md"
fi

if [ "$HOLD" = 1 ] && [ -n "$HOLD_SERVERS" ]; then
    echo >&2
    echo "== RSS with $HOLD_TRANSFERS transfers held open" >&2
    WRAP=()
    : >"$OUT/hold.txt"
    for server in $HOLD_SERVERS; do
        echo "== hold: $server" >&2
        start_server "$server"
        "$BENCH" hold --target "$TARGET" --server-pid "$PID" --transfers "$HOLD_TRANSFERS" \
            --seconds "$HOLD_S" --label "$server" 2>>"$OUT/storm-errors.log" | tee -a "$OUT/hold.txt"
        stop_server
        sleep 1
    done
    "$BENCH" summarize "$OUT/hold.txt" | tee "$OUT/hold-table.md"
fi

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
