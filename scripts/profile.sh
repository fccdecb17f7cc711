#!/usr/bin/env bash
# A CPU flamegraph of ringfetch's client: builds with frame pointers and full debug info, starts the
# built-in server on CPU 0, records `perf record -e cpu-clock -g` over `ringfetch bench` on CPU 1, and
# renders an SVG with inferno (installed with `cargo install inferno` when missing; works offline once
# built). cpu-clock sampling works where hardware counters are not exposed (as on this project's VMs).
#
#   scripts/profile.sh [OUT.svg] [-- BENCH ARGS...]
#   scripts/profile.sh docs/flamegraph-p16.svg -- -c 256 -p 16 -d 5s
#   scripts/profile.sh out.svg -- http://127.0.0.1:8080/1k -c 256 -d 5s     # another server
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-target/flamegraph.svg}
shift || true
[ "${1:-}" = "--" ] && shift
bench_args=("$@")
[ ${#bench_args[@]} -gt 0 ] || bench_args=(-c 256 -d 5s)

command -v perf >/dev/null || { echo "profile.sh: perf is needed (apt-get install linux-perf)" >&2; exit 2; }
if ! command -v inferno-flamegraph >/dev/null; then
    echo "profile.sh: installing inferno (cargo install inferno --locked)" >&2
    cargo install inferno --locked --quiet
fi

export CARGO_TARGET_DIR=target/profiling
RUSTFLAGS="-C force-frame-pointers=yes" cargo build --profile profiling --quiet
bin=$CARGO_TARGET_DIR/profiling/ringfetch
# shellcheck source=scripts/lib/builtin-server.sh
source scripts/lib/builtin-server.sh
work=$(mktemp -d)
cleanup() {
    builtin_server_stop
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A URL among the bench arguments means another server; otherwise start ours on CPU 0.
if ! printf '%s\n' "${bench_args[@]}" | grep -q '^http'; then
    builtin_server_start "$bin" "$work"
    bench_args=("$BUILTIN_URL" "${bench_args[@]}")
fi

taskset -c 1 perf record -q -e cpu-clock -F 4999 -g -o "$work/perf.data" \
    "$bin" bench -t 1 --json "${bench_args[@]}" >"$work/bench.json"
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf --all >"$work/folded"
mkdir -p "$(dirname "$out")"
inferno-flamegraph --title "ringfetch bench ${bench_args[*]}" <"$work/folded" >"$out"
# perf's cpu-clock samples carry their period in nanoseconds, so the folded weights add up to CPU
# time: divided by the requests they are the cost per request.
python3 - "$work/bench.json" "$work/folded" <<'PY'
import collections, json, sys
summary = json.load(open(sys.argv[1]))
requests = max(summary["requests"], 1)
total = kernel = 0
leaf = collections.Counter()
for line in open(sys.argv[2]):
    stack, _, n = line.rstrip("\n").rpartition(" ")
    n = int(n)
    frames = stack.split(";")
    total += n
    if frames[-1].endswith("_[k]"):
        kernel += n
    leaf[frames[-1]] += n
print(f"{summary['requests']} requests, {summary['rps']:.0f} req/s; "
      f"{total / requests / 1000:.2f} us of CPU per request, {100 * kernel / max(total, 1):.0f}% in the kernel")
print("hottest functions (self time), ns per request:")
for name, n in leaf.most_common(8):
    print(f"  {n / requests:8.0f}  {name[:110]}")
PY
echo "flamegraph: $out"
