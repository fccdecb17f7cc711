#!/usr/bin/env bash
# Instructions per request of ringfetch's client, counted by valgrind's callgrind: repeatable on a noisy
# machine, where timings are not. Starts the built-in server on CPU 0, runs `ringfetch bench -n N`
# under callgrind for each pipeline depth, and prints total instructions / requests (connection set-up
# included; use a large N to amortise it).
#
#   scripts/callgrind.sh [N] [DEPTH...]     # defaults: 30000 requests, depths 1 and 16
#   scripts/callgrind.sh 30000 1 16 -- http://127.0.0.1:8080/1k   # against another server
#
# Environment: RINGFETCH=path measures that binary instead of building this checkout (e.g. two
# builds, before and after a change); TRANSPORT=direct measures the direct-descriptor transport.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-30000}
shift || true
depths=()
url=""
while [ $# -gt 0 ]; do
    case $1 in
        --) url=${2:-}; shift $#;;
        *) depths+=("$1"); shift;;
    esac
done
[ ${#depths[@]} -gt 0 ] || depths=(1 16)
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is needed (apt-get install valgrind)" >&2; exit 2; }

if [ -n "${RINGFETCH:-}" ]; then
    bin=$RINGFETCH
else
    cargo build --release --quiet
    bin=target/release/ringfetch
fi
transport=(--transport "${TRANSPORT:-tcp}")
# shellcheck source=scripts/lib/builtin-server.sh
source scripts/lib/builtin-server.sh
out=$(mktemp -d)
cleanup() {
    builtin_server_stop
    rm -rf "$out"
}
trap cleanup EXIT INT TERM

if [ -z "$url" ]; then
    builtin_server_start "$bin" "$out"
    url=$BUILTIN_URL
fi

printf '| depth | requests | instructions | instructions / request |\n|--:|--:|--:|--:|\n'
for p in "${depths[@]}"; do
    taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$out/cg.$p" \
        "$bin" bench "$url" -c 256 -t 1 -p "$p" -n "$n" "${transport[@]}" --json > "$out/bench.$p" 2> "$out/vg.$p"
    total=$(sed -n 's/.*Collected : //p' "$out/vg.$p" | tail -1)
    done_n=$(python3 -c "import json,sys; print(json.load(open('$out/bench.$p'))['requests'])")
    printf '| %s | %s | %s | %s |\n' "$p" "$done_n" "$total" "$((total / done_n))"
done
echo "(target: $url; callgrind output was in $out, removed at exit: rerun with valgrind yourself to annotate)"
