#!/usr/bin/env bash
# One process, a million connections: starts `ringfetch serve --transport direct` on many loopback
# ports and one `ringfetch bench --hold` that opens N connections to them (direct descriptors, past
# the 20,000 open-file limit), proves each with one request, holds them all, then closes them; prints
# one Markdown table.
#
#   scripts/c1m.sh [N]            N connections (default 1000000; 2000000 is this machine's stretch)
#
# Environment:
#   RINGFETCH=path   use this binary instead of `cargo build --release`
#   HOLD=10s         how long all N stay open
#   CONNECT_RATE=R   pace the ramp at R connections/s (default: as fast as the machine goes)
#   BODY=16          response body bytes (the proof request's answer)
#
# Both ends run on this machine, so each connection costs two kernel sockets (~9 KB together; see
# ../shared/C1M.md and docs/SCALE.md). The script refuses to start when MemAvailable cannot hold
# them with 2 GiB to spare. It changes no sysctl; the bench itself prints a line for every kernel
# limit that would bite at N (fs.file-max, net.ipv4.tcp_mem, conntrack) with the setting to raise.
# Afterwards the kernel needs ~20 s per million sockets to tear them down: the script waits for
# that, so runs can follow each other.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)

case ${1:-} in
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
esac
N=${1:-1000000}
HOLD=${HOLD:-10s}
BODY=${BODY:-16}
[[ $N =~ ^[0-9]+$ && $N -gt 0 ]] || {
    echo "c1m.sh: N must be a positive number of connections, not '$N'" >&2
    exit 2
}

log() { echo "c1m: $*" >&2; }

# shellcheck source=scripts/lib/ringfetch-bin.sh
source "$SCRIPT_DIR/lib/ringfetch-bin.sh"
ringfetch_bin "$REPO"

# ~9 KB of kernel memory per connection for both ends, plus serve's tasks (~1 KB each).
need_kib=$((N * 10 + 2 * 1024 * 1024))
avail_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
if ((avail_kib < need_kib)); then
    echo "c1m.sh: $N connections need about $((need_kib / 1024)) MiB with both ends on this machine;" \
        "MemAvailable is $((avail_kib / 1024)) MiB. Try a smaller N." >&2
    exit 1
fi

# A ring's fixed-file table holds at most the open-file limit. serve gives each listening socket a
# ring of its own, so one port per ~16,000 connections keeps every table below the limit with room
# for uneven spreading; one server thread per CPU runs them all.
fd_limit=$(ulimit -Hn)
ulimit -n "$fd_limit"
per_port=$((fd_limit * 4 / 5))
PORTS=$(((N + per_port - 1) / per_port))
((PORTS < 2)) && PORTS=2
THREADS=$(nproc)
PORT0=${PORT0:-20000}

TMP=$(mktemp -d /tmp/ringfetch-c1m.XXXXXX)
SERVE_PID=
cleanup() {
    [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

tcp_inuse() { awk '/^TCP:/ {print $3}' /proc/net/sockstat; }
wait_teardown() { # until earlier runs' sockets are gone (at most 120 s)
    local t=0
    while (($(tcp_inuse) > 1000 && t < 120)); do
        sleep 1
        t=$((t + 1))
    done
}
wait_teardown

log "serve: $THREADS threads × $PORTS ports from $PORT0, a ring per port and thread (direct descriptors)"
setsid "$RF" serve --transport direct -t "$THREADS" --listeners "$PORTS" \
    --addr "127.0.0.1:$PORT0" --body-size "$BODY" >"$TMP/serve.out" 2>"$TMP/serve.err" &
SERVE_PID=$!
for _ in $(seq 100); do
    [[ -s $TMP/serve.out ]] && break
    sleep 0.1
done
head -1 "$TMP/serve.out" | grep -q "^listening on " || {
    echo "c1m.sh: serve did not start:" >&2
    cat "$TMP/serve.err" >&2
    exit 1
}
for ((p = 0; p < PORTS; p++)); do
    echo "http://127.0.0.1:$((PORT0 + p))/"
done >"$TMP/urls"

rate_args=()
[[ -n ${CONNECT_RATE:-} ]] && rate_args=(--connect-rate "$CONNECT_RATE")
memfree_before=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
log "bench --hold $HOLD -c $N over $PORTS ports"
# Sample the machine while the connections are held: the lowest MemAvailable and serve's RSS.
(
    low=$memfree_before
    srss=0
    while kill -0 "$SERVE_PID" 2>/dev/null && [[ ! -e $TMP/done ]]; do
        m=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
        ((m < low)) && low=$m
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVE_PID/status" 2>/dev/null || echo 0)
        ((r > srss)) && srss=$r
        echo "$low $srss" >"$TMP/sample"
        sleep 0.5
    done
) &
SAMPLER=$!
set +e
/usr/bin/time -f "%e %U %S %M" -o "$TMP/time" \
    "$RF" bench --urls "$TMP/urls" --hold "$HOLD" -c "$N" "${rate_args[@]}" --json -v \
    >"$TMP/summary.json" 2>"$TMP/bench.err"
status=$?
set -e
touch "$TMP/done"
wait "$SAMPLER" 2>/dev/null || true
grep -v "^ringfetch: engine\|^ringfetch: direct rings" "$TMP/bench.err" | sed 's/^/  /' >&2 || true
if [[ $status -ne 0 || ! -s $TMP/summary.json ]]; then
    echo "c1m.sh: bench failed (exit $status):" >&2
    tail -20 "$TMP/bench.err" >&2
    exit 1
fi
read -r wall user sys maxrss <"$TMP/time"
read -r low srss <"$TMP/sample" || true
kill "$SERVE_PID" 2>/dev/null || true
SERVE_PID=

python3 - "$TMP/summary.json" "$N" "$wall" "$user" "$sys" "$maxrss" "${low:-0}" "${srss:-0}" \
    "$memfree_before" "$THREADS x $PORTS" "$HOLD" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
n, wall, user, sys_, maxrss, low, srss, before, threads, hold = sys.argv[2:]
n = int(n)
errors = sum(s["errors"].values())
rate = s.get("connect_rate", 0)
print(f"## ringfetch bench --hold {hold}: {n:,} connections, one process")
print()
print("| connections asked | open and answered at once | errors | connect rate | time to answer all "
      "| user memory / conn | kernel memory / conn (both ends) | client max RSS | serve RSS | MemAvailable low |")
print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
ramp = n / rate if rate else 0
print(f"| {n:,} | {s.get('peak_connections', 0):,} | {errors} | {rate:,.0f}/s | {ramp:.1f} s "
      f"| {s.get('user_bytes_per_conn', 0)} B | {s.get('kernel_bytes_per_conn', 0):,} B "
      f"| {int(maxrss) / 1024:.0f} MiB | {int(srss) / 1024:.0f} MiB | {int(low) / 1048576:.1f} GiB |")
print()
print(f"- client: {s['threads']} workers (one ring each), {float(user) + float(sys_):.1f} s CPU, "
      f"{float(wall):.1f} s wall including the hold and the close; serve: {threads} threads x ports (one ring each)")
print(f"- status: {s['status']}; errors: {s['errors'] or 'none'}")
ok = errors == 0 and s.get("peak_connections") == n
print(f"- verdict: {'every connection open and answered at once' if ok else 'NOT all connections held'}")
sys.exit(0 if ok else 1)
EOF
log "waiting for the kernel to tear the sockets down"
wait_teardown
