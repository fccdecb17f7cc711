#!/usr/bin/env bash
# Memory per idle connection, https against plain TCP: `fetch` opens N connections to the built-in
# server (which answers after --delay, so the requests pile up on N connections), gets every
# response, then holds the connections idle while its input (a pipe) stays open. The script reads
# the client's RSS while the connections are idle, then again after asking glibc to hand back the
# memory it keeps from freed allocations (malloc_trim(0) through gdb, when gdb is installed: that
# is the memory the idle connections really hold), and GNU time's peak RSS at the end.
#
#   scripts/tls-memory.sh [N]      (default N=10000; needs ulimit -n above N + 100)
#
# Environment: RINGFETCH=path (default: cargo build --release), HOLD=S seconds the connections are
# held idle (default 6), DELAY=S the server's answer delay (default 3).
set -euo pipefail

N=${1:-10000}
HOLD=${HOLD:-6}
DELAY=${DELAY:-3}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=scripts/lib/ringfetch-bin.sh
source "$SCRIPT_DIR/lib/ringfetch-bin.sh"
ringfetch_bin "$REPO"
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < N + 100)); then
    echo "tls-memory.sh: the open-file limit $(ulimit -n) is too low for $N connections" >&2
    exit 2
fi
[[ -x /usr/bin/time ]] || { echo "tls-memory.sh: needs GNU time (apt-get install -y time)" >&2; exit 2; }

TMP=$(mktemp -d /tmp/ringfetch-tlsmem.XXXXXX)
SERVER=
cleanup() {
    [[ -z $SERVER ]] || kill "$SERVER" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# start_server ARGS...: the built-in server on CPU 0, its port in PORT.
start_server() {
    taskset -c 0 "$RF" serve --addr 127.0.0.1:0 -t 1 --delay "${DELAY}s" "$@" >"$TMP/serve.out" 2>&1 &
    SERVER=$!
    for _ in $(seq 50); do
        grep -q '^listening on' "$TMP/serve.out" 2>/dev/null && break
        sleep 0.1
    done
    PORT=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$TMP/serve.out")
    [[ -n $PORT ]] || { cat "$TMP/serve.out" >&2; exit 1; }
}

# measure LABEL SCHEME HOST ARGS...: prints "LABEL idle_rss_kib peak_rss_kib connections".
measure() {
    local label=$1 scheme=$2 host=$3 pid rss=0 trimmed=-
    shift 3
    for ((i = 0; i < N; i++)); do printf '%s://%s:%s/%d\n' "$scheme" "$host" "$PORT" "$i"; done >"$TMP/urls"
    # The list, then an open pipe: connections stay in the pool, idle, until it closes.
    { cat "$TMP/urls"; sleep $((DELAY + 2 + HOLD)); } |
        taskset -c 1 /usr/bin/time -o "$TMP/time" -f '%M' \
            "$RF" fetch -t 1 -c "$N" --conns-per-host "$N" --timeout 60 --json -o "$TMP/out.jsonl" "$@" \
            >"$TMP/summary.json" 2>"$TMP/err" &
    sleep $((DELAY + 2 + HOLD / 2))
    pid=$(pgrep -f -n "ringfetch fetch -t 1 -c $N" || true)
    if [[ -n $pid ]]; then
        rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
        if command -v gdb >/dev/null; then
            gdb -p "$pid" -batch -ex 'call (int) malloc_trim(0)' >/dev/null 2>&1 || true
            trimmed=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
        fi
    fi
    wait
    local ok conns
    ok=$(grep -c '"status":200' "$TMP/out.jsonl" || true)
    conns=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["connections_opened"])' "$TMP/summary.json")
    if ((ok != N)); then
        echo "tls-memory.sh: $label: only $ok of $N answered 200" >&2
        tail -n 3 "$TMP/err" >&2
    fi
    printf '%s %s %s %s %s\n' "$label" "$rss" "$trimmed" "$(tail -n 1 "$TMP/time")" "$conns"
}

start_server
plain=$(measure http http 127.0.0.1)
kill "$SERVER"
wait "$SERVER" 2>/dev/null || true
start_server --tls-self-signed --tls-self-signed-out "$TMP/cert.pem"
tls=$(measure https https localhost --cacert "$TMP/cert.pem")

echo "| transport | connections | RSS while idle (MiB) | same after malloc_trim (MiB) | peak RSS (MiB) |"
echo "|---|--:|--:|--:|--:|"
for row in "$plain" "$tls"; do
    read -r label idle trimmed peak conns <<<"$row"
    awk -v l="$label" -v c="$conns" -v i="$idle" -v t="$trimmed" -v p="$peak" \
        'BEGIN { printf "| %s | %d | %.1f | %s | %.1f |\n", l, c, i / 1024, (t == "-" ? "-" : sprintf("%.1f", t / 1024)), p / 1024 }'
done
read -r _ idle_p trim_p peak_p _ <<<"$plain"
read -r _ idle_t trim_t peak_t conns_t <<<"$tls"
awk -v ip="$idle_p" -v it="$idle_t" -v tp="$trim_p" -v tt="$trim_t" -v pp="$peak_p" -v pt="$peak_t" -v c="$conns_t" \
    'BEGIN {
        printf "\nhttps - http per connection: %.2f KiB at peak, %.2f KiB while idle", (pt - pp) / c, (it - ip) / c
        if (tp != "-" && tt != "-") printf ", %.2f KiB while idle after malloc_trim", (tt - tp) / c
        printf "\n"
    }'
