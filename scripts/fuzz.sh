#!/usr/bin/env bash
# Long fuzzing runs of the stable-Rust fuzz targets in tests/fuzz.rs (response, chunked, connection,
# request, list), in release. Each target gets an equal share of the time budget, with a fresh random
# seed, and keeps going after a failure so that one run reports every failing input it meets.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   # default: 300 seconds over all five targets
#   scripts/fuzz.sh 60                      # one minute: 12 s per target
#   FUZZ_SEED=123 scripts/fuzz.sh 600 connection   # one target, a chosen seed
#
# It prints the executions per target and the failures found. Each failing input is written to
# target/fuzz-failures/<target>-<seed>-<iter>.bin; reproduce one with
#   FUZZ_INPUT=target/fuzz-failures/<file>.bin cargo test --release --test fuzz -- --exact <target>
# or regenerate it from its seed and iteration with
#   FUZZ_SEED=<seed> FUZZ_FROM=<iter> FUZZ_ITERS=1 cargo test --release --test fuzz -- --exact <target>
# A real bug's input goes to fuzz/regressions/<target>/ (see docs/FUZZING.md).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(response chunked connection request list)
share=$(( seconds / ${#targets[@]} ))
[ "$share" -ge 1 ] || share=1

cargo test --release --test fuzz --no-run 2>&1 | grep -v '^ *Executable' >&2 || true

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
for target in "${targets[@]}"; do
    seed=${FUZZ_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
    set +e
    FUZZ_SECONDS=$share FUZZ_SEED=$seed FUZZ_KEEP_GOING=1 \
        cargo test --release --test fuzz -q -- --exact "$target" --nocapture >"$log" 2>&1
    code=$?
    set -e
    grep -E '^fuzz |^  ' "$log" || true
    if [ "$code" -ne 0 ]; then
        status=1
        grep -q "^fuzz $target: .* executions" "$log" || cat "$log"
    fi
done
# One closing line over all targets.
echo "scripts/fuzz.sh: ${seconds}s over ${#targets[@]} targets; $([ "$status" = 0 ] && echo 'no failures' || echo 'FAILURES: see above and target/fuzz-failures/')"
exit "$status"
