#!/usr/bin/env bash
# 100,000 URLs over 5,000 host names: every name is resolved (once) by the system resolver while
# requests to the names already resolved keep flowing. The names live in a private /etc/hosts, in a
# mount namespace of this script's own (root needed), so nothing leaves loopback; the built-in server
# answers on 127.0.0.1.
#
#   scripts/dns-scale.sh [NAMES] [URLS]     (default 5000 100000)
#
# The server runs on CPU 1, the client (-t 1) may use CPUs 0 and 1: its worker pins itself to CPU 0
# and the resolver threads use whatever is free.
set -euo pipefail

NAMES=${1:-5000}
URLS=${2:-100000}
PORT=${PORT:-19090}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=scripts/lib/ringfetch-bin.sh
source "$SCRIPT_DIR/lib/ringfetch-bin.sh"
ringfetch_bin "$REPO"
[[ $(id -u) == 0 ]] || { echo "dns-scale.sh: needs root (a private mount namespace for /etc/hosts)" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d /tmp/ringfetch-dns.XXXXXX)
SERVER=
trap '[[ -z $SERVER ]] || kill "$SERVER" 2>/dev/null || true; rm -rf "$TMP"' EXIT
{
    echo "127.0.0.1 localhost"
    for ((i = 0; i < NAMES; i++)); do echo "127.0.0.1 h$i.test"; done
} >"$TMP/hosts"
# No resolver to ask: every name is in the hosts file.
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$TMP/resolv.conf"
for ((i = 0; i < URLS; i++)); do echo "http://h$((i % NAMES)).test:$PORT/$i"; done >"$TMP/urls"

taskset -c 1 "$RF" serve --addr "127.0.0.1:$PORT" -t 1 >"$TMP/serve.out" 2>&1 &
SERVER=$!
sleep 0.5
unshare --mount bash -c "mount --bind '$TMP/hosts' /etc/hosts && mount --bind '$TMP/resolv.conf' /etc/resolv.conf &&
    taskset -c 0,1 /usr/bin/time -f '%e s, peak RSS %M KiB' '$RF' fetch '$TMP/urls' -t 1 -c 2048 -p 4 \
        --conns-per-host 2 -o '$TMP/out.jsonl' --json"
/usr/bin/python3 - "$TMP/out.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
ok = sum(r["status"] == 200 for r in rows)
print(f"{len(rows)} result lines, {len({r['index'] for r in rows})} distinct indexes, {ok} answered 200")
PY
