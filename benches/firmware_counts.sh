#!/usr/bin/env bash
# Noise-free counts for one server on the firmware path: user-space
# instructions (valgrind --tool=callgrind) and system calls (strace -c) of
# the server process while it sends SIZE_MIB (4) three times, with blksize
# 1468 and windowsize 8, to `tftproxy get` on loopback. Counts do not depend
# on what else the machine is doing, so two binaries can be compared on a
# busy machine:
#
#   BASE=/path/to/old/tftproxy benches/firmware_counts.sh
#
# BASE (optional) is measured first, then target/release/tftproxy (built if
# missing). Needs valgrind and strace. Port PORT (16969) on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-16969}
SIZE_MIB=${SIZE_MIB:-4}
NEW=target/release/tftproxy
[ -x "$NEW" ] || cargo build --release --locked
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir "$WORK/root"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/root/fw.loads"
printf '[tftp]\nlisten = ["127.0.0.1:%s"]\nroot = "%s"\n' "$PORT" "$WORK/root" >"$WORK/tftproxy.toml"

fetch3() {
    for _ in 1 2 3; do
        "$NEW" get --blksize 1468 --windowsize 8 --timeout 5 "127.0.0.1:$PORT" fw.loads 2>/dev/null
    done
}

wait_up() {
    for _ in $(seq 1 200); do
        local answer
        answer=$("$NEW" get "127.0.0.1:$PORT" no-such-file 2>&1 || true)
        [[ $answer == *"File not found"* ]] && return 0
        sleep 0.2
    done
    echo "server did not start" >&2
    return 1
}

count() {
    local label=$1 bin=$2
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$label" "$bin" serve -c "$WORK/tftproxy.toml" \
        >"$WORK/cg.$label.log" 2>&1 &
    local pid=$!
    wait_up
    callgrind_control -z "$pid" >/dev/null 2>&1
    fetch3
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local instructions
    instructions=$(grep -h '^totals:' "$WORK/cg.$label".1 | awk '{print $2}')

    "$bin" serve -c "$WORK/tftproxy.toml" >"$WORK/st.$label.log" 2>&1 &
    pid=$!
    wait_up
    strace -f -c -o "$WORK/strace.$label" -p "$pid" 2>/dev/null &
    local tracer=$!
    sleep 0.5
    fetch3
    sleep 0.3
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local calls sends
    # The total line: % time, seconds, usecs/call, calls, errors, "total".
    calls=$(awk '$NF == "total" {print $4}' "$WORK/strace.$label")
    sends=$(awk '$NF ~ /^send/ {printf "%s %s ", $NF, $4}' "$WORK/strace.$label")
    printf '%-6s user-space instructions %12s   system calls %7s   (%s)\n' "$label" "$instructions" "$calls" "$sends"
}

echo "server process, 3 x ${SIZE_MIB} MiB, blksize 1468, windowsize 8:"
[ -n "${BASE:-}" ] && count base "$BASE"
count new "$NEW"
