#!/usr/bin/env bash
# The real web's habits, measured against a private nginx on loopback (issue: "Fetch the real web"):
#   redirect   N URLs that each redirect once (-L) against the same N without a redirect
#   gzip       N 16 KiB text files with --compressed (nginx gzip on) against the same without
#   hostrate   --host-rate 50 over 4 origins for 10 s (SIGINT at 10 s): requests per origin
# Rounds are interleaved; nginx runs on CPU 0, ringfetch on CPU 1. CPU is the client's user+sys.
# Timed runs keep no bodies (creating a file per URL would be most of the CPU measured); one more
# run of each scenario saves them, to check every body byte for byte.
#
#   RINGFETCH=target/release/ringfetch scripts/realweb.sh [redirect|gzip|hostrate ...]
# Knobs: N (default 100000 for redirect, 20000 for gzip), ROUNDS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
RINGFETCH=${RINGFETCH:-target/release/ringfetch}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${*:-redirect gzip hostrate}
NGINX=${NGINX:-/usr/sbin/nginx}
[ -x "$RINGFETCH" ] || { echo "build first: cargo build --release" >&2; exit 2; }
[ -x "$NGINX" ] || { echo "needs nginx ($NGINX)" >&2; exit 2; }

dir=$(mktemp -d)
chmod 755 "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null; sleep 0.3; rm -rf "$dir"; }
trap cleanup EXIT
mkdir -p "$dir/www/f" "$dir/www/t" "$dir/tmp"
chmod -R 755 "$dir/www"
python3 - "$dir/www" <<'EOF'
import os, sys
root = sys.argv[1]
for i in range(100000):
    with open(f"{root}/f/{i}", "wb") as f:
        f.write((b"%08d" % i) * 128)          # 1 KiB, distinct per file
words = b"the quick brown fox jumps over the lazy dog while ringfetch fetches the real web "
for i in range(20000):
    with open(f"{root}/t/{i}", "wb") as f:
        f.write((b"%d " % i + words * 200)[:16384])   # 16 KiB of text
EOF
cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    default_type text/plain;
    gzip on;
    gzip_types text/plain;
    gzip_min_length 0;
    server {
        listen 127.0.0.1:$port;
        root $dir/www;
        location /r/ { rewrite ^/r/(.*)\$ /f/\$1 permanent; }
    }
}
EOF
"$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
sleep 0.5

# run NAME ARGS...: one fetch on CPU 1; prints "NAME urls/s cpu_us_per_url lines non200".
run() {
    local name=$1 list=$2; shift 2
    local out="$dir/out-${name// /}.jsonl"
    local t
    /usr/bin/time -o "$dir/time" -f "%e %U %S" taskset -c 1 "$RINGFETCH" fetch "$list" -o "$out" \
        --force -q "$@" >/dev/null 2>&1 || true
    t=$(tail -1 "$dir/time")
    local lines bad
    lines=$(wc -l < "$out")
    bad=$(grep -vc '"status":200' "$out" || true)
    python3 -c "
e,u,s=map(float,'$t'.split()); n=$lines
print(f'$name {n/e:10.0f} URLs/s  {(u+s)/n*1e6:7.2f} us CPU/URL  {n} lines  {$bad} not 200')"
}

for scenario in $SCENARIOS; do
case $scenario in
redirect)
    n=${N:-100000}
    seq 0 $((n - 1)) | sed "s|^|http://127.0.0.1:$port/f/|" > "$dir/plain.txt"
    seq 0 $((n - 1)) | sed "s|^|http://127.0.0.1:$port/r/|" > "$dir/redir.txt"
    echo "== redirect: $n URLs, -p 16 -c 1024, each redirecting once (-L) vs none"
    for r in $(seq "$ROUNDS"); do
        run "plain    " "$dir/plain.txt" -p 16 -t 1
        run "redirect " "$dir/redir.txt" -p 16 -t 1 -L
    done
    run "check    " "$dir/redir.txt" -p 16 -t 1 -L --save-dir "$dir/saved"
    # Every body exact: file i holds "%08d" % i, 128 times.
    python3 - "$dir/saved" "$n" <<'EOF'
import sys, os
d, n = sys.argv[1], int(sys.argv[2])
bad = sum(1 for i in range(n) if open(f"{d}/{i}", "rb").read() != (b"%08d" % i) * 128)
print(f"   bodies after -L: {n - bad} of {n} byte-exact")
EOF
    ;;
gzip)
    n=${N_GZIP:-20000}
    seq 0 $((n - 1)) | sed "s|^|http://127.0.0.1:$port/t/|" > "$dir/text.txt"
    echo "== gzip: $n 16 KiB text files, -p 16: --compressed (nginx gzip on) vs plain"
    for r in $(seq "$ROUNDS"); do
        run "plain     " "$dir/text.txt" -p 16 -t 1
        run "compressed" "$dir/text.txt" -p 16 -t 1 --compressed
    done
    run "check     " "$dir/text.txt" -p 16 -t 1 --compressed --save-dir "$dir/tsaved"
    python3 - "$dir/tsaved" "$dir/www/t" "$n" "$dir/out-check.jsonl" <<'EOF'
import sys, json
d, src, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
bad = sum(1 for i in range(n) if open(f"{d}/{i}", "rb").read() != open(f"{src}/{i}", "rb").read())
wire = sum(json.loads(l)["wire_bytes"] for l in open(out))
print(f"   decoded bodies: {n - bad} of {n} byte-exact; {wire / n:.0f} wire bytes per 16384-byte body")
EOF
    ;;
hostrate)
    echo "== hostrate: --host-rate 50 over 4 origins (names pinned to nginx), SIGINT at 10 s"
    for i in $(seq 0 1999); do
        for h in a b c d; do echo "http://$h.test:$port/f/$i"; done
    done > "$dir/hosts.txt"
    pins=()
    for h in a b c d; do pins+=(--resolve "$h.test:$port:127.0.0.1"); done
    taskset -c 1 timeout -s INT 10 "$RINGFETCH" fetch "$dir/hosts.txt" -o "$dir/out-hosts.jsonl" \
        --force -q --host-rate 50 "${pins[@]}" >/dev/null 2>&1 || true
    for h in a b c d; do
        printf '   %s.test: %s responses in 10 s (500 expected)\n' "$h" \
            "$(grep -c "\"url\":\"http://$h.test:" "$dir/out-hosts.jsonl")"
    done
    ;;
esac
done
