#!/usr/bin/env bash
# What the runtime costs a direct-descriptor worker at depth 1, measured (issue 15): tokio-uring's park
# hook, and everything tokio and tokio-uring add over a loop that waits in its own ring.
#
# Each time a tokio-uring runtime parks, its `on_thread_park` hook submits tokio-uring's own ring, and
# io-uring 0.6's `submit()` enters the kernel even when that ring holds nothing. A worker on direct
# descriptors never uses that ring (its I/O goes through its own), so the call is pure cost: about 0.6
# per response at depth 1 against nginx. Nothing in the tree can skip it short of patching tokio-uring
# or leaving its runtime, so this script prices it from outside: an LD_PRELOAD shim (built here, into
# target/) turns every `io_uring_enter` with nothing to submit, nothing to wait for and no flags into a
# no-op. Only the park hook makes such calls: the direct driver enters when it queued something, and
# adds GETEVENTS when it has to move overflowed completions. The shim is for measuring, never for
# running: it changes a library call of the whole process.
#
# The whole of it: benches/ring_floor.rs, ringfetch's direct data path (fixed files, multishot receive
# into a provided-buffer ring, sends that post nothing) in a plain loop that waits in `io_uring_enter`,
# with no runtime, timeouts or statistics: the least a worker outside tokio-uring's runtime could cost.
#
# Rounds of four 5 s runs against one nginx core (scripts/nginx-bench.sh, CPU 0), client on CPU 1,
# bare request heads as issue 15 measured: ringfetch as built (A), ringfetch with the shim (B), the
# ring floor (F), wrk (W); each round starts one place later in the order. Prints each run and the
# medians of client CPU per response, with the ratios between them.
#
#   scripts/runtime-cost.sh [ROUNDS]          # default 8 (about 3 minutes)
#
# Environment: RINGFETCH=path measures that binary instead of building this checkout (the ring floor
# is always built from this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
rounds=${1:-8}
for tool in gcc wrk taskset /usr/bin/time python3; do
    command -v "$tool" > /dev/null || { echo "runtime-cost.sh: $tool is needed" >&2; exit 2; }
done
# shellcheck source=scripts/lib/ringfetch-bin.sh
source scripts/lib/ringfetch-bin.sh
ringfetch_bin "$REPO"
(timeout --foreground 1800 cargo build --release --example ring_floor >&2)
FLOOR="${CARGO_TARGET_DIR:-$REPO/target}/release/examples/ring_floor"

shim="${CARGO_TARGET_DIR:-$REPO/target}/runtime-cost-shim.so"
mkdir -p "$(dirname "$shim")"
gcc -O2 -shared -fPIC -x c -o "$shim" - -ldl <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/syscall.h>

/* io-uring 0.6 enters the kernel through libc's syscall(3). */
long syscall(long nr, ...)
{
    static long (*next)(long, ...);
    long a[6];
    va_list ap;
    va_start(ap, nr);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    /* io_uring_enter(fd, to_submit = 0, min_complete = 0, flags = 0, ...) asks nothing of the kernel. */
    if (nr == SYS_io_uring_enter && a[1] == 0 && a[2] == 0 && a[3] == 0)
        return 0;
    if (!next)
        next = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return next(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
C

# shellcheck source=scripts/nginx-bench.sh
source scripts/nginx-bench.sh
out=$(mktemp -d)
chmod 755 "$out" # nginx's worker runs as nobody when we are root
cleanup() {
    nginx_bench_stop || true
    rm -rf "$out"
}
trap cleanup EXIT INT TERM
NB_NFILES=1 nginx_bench_setup "$out/nginx" > /dev/null
nginx_bench_start > /dev/null
url="http://127.0.0.1:$NB_PORT/1k"

# one LABEL: a 5 s run of client LABEL; prints "LABEL responses µs-per-response".
one() {
    local cpu="$out/cpu" res="$out/res" n
    local preload=()
    [[ $1 != B ]] || preload=(env "LD_PRELOAD=$shim")
    case $1 in
    A | B)
        "${preload[@]}" /usr/bin/time -f '%U %S' -o "$cpu" \
            taskset -c 1 "$RF" bench "$url" -c 256 -t 1 -d 5s -H 'User-Agent:' -H 'Accept:' --json > "$res" 2> /dev/null
        n=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["requests"])' "$res")
        ;;
    F)
        /usr/bin/time -f '%U %S' -o "$cpu" taskset -c 1 "$FLOOR" "$url" 256 5 > "$res" 2> /dev/null
        n=$(cat "$res")
        ;;
    W)
        /usr/bin/time -f '%U %S' -o "$cpu" taskset -c 1 wrk -t1 -c256 -d5s "$url" > "$res" 2> /dev/null
        n=$(awk '/requests in/ { print $1 }' "$res")
        ;;
    esac
    awk -v l="$1" -v n="$n" '{ printf "%s %d %.2f\n", l, n, ($1 + $2) / n * 1e6 }' "$cpu"
}

echo "nginx on $url (CPU $NB_SERVER_CPU); $rounds rounds of A (ringfetch $RF), B (A with the shim), F (the ring floor), W (wrk)"
order=(A B F W)
for ((i = 0; i < rounds; i++)); do
    for k in 0 1 2 3; do
        one "${order[$(((i + k) % 4))]}"
    done
done | tee "$out/runs"
python3 - "$out/runs" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, _, us = line.split()
    runs.setdefault(label, []).append(float(us))
m = {k: statistics.median(v) for k, v in runs.items()}
print(f"medians, µs of client CPU per response: A {m['A']:.2f}, B {m['B']:.2f}, F {m['F']:.2f}, wrk {m['W']:.2f}")
print(f"B/A {m['B'] / m['A']:.3f}; F/A {m['F'] / m['A']:.3f}; A/wrk {m['A'] / m['W']:.3f}; B/wrk {m['B'] / m['W']:.3f}; F/wrk {m['F'] / m['W']:.3f}")
wins = sum(b < a for a, b in zip(runs['A'], runs['B']))
print(f"B below A in {wins} of {min(len(runs['A']), len(runs['B']))} rounds")
PY
