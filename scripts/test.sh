#!/usr/bin/env bash
# The test command of README.md, also run by CI (.ci/run): installs what the tests need (nginx for the
# interoperability tests), checks formatting and lints, then runs every test on real loopback sockets.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
# The soak test (tests/integration/soak.rs) builds a network namespace with nftables rules and tc.
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v tc >/dev/null 2>&1 || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "scripts/test.sh: installing ${need_apt[*]} for the interoperability tests"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "scripts/test.sh: ${need_apt[*]} missing and cannot be installed here; the nginx tests will be skipped"
    fi
fi

cargo fmt --all -- --check
cargo clippy --all-targets --release -- -D warnings
# Release: the integration tests push tens of thousands of requests through the real binary.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release -- --test-threads 2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over all test binaries, for people and for CI.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
