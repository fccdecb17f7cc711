#!/usr/bin/env bash
# A soak with faults: long `bench` and `fetch` runs against the built-in `serve` and nginx while the
# network and the servers misbehave on a schedule, then the invariants that must survive all of it.
#
#   scripts/soak.sh           full: bench 10M requests (4M nginx + 6M serve), fetch 1M URLs (~15 min)
#   scripts/soak.sh --short   the same faults and invariants with small counts (a minute or two; CI)
#
# Needs root (network namespace, nftables, tc), nginx, python3, curl. RINGFETCH=path uses that
# binary instead of building one. SOAK_KEEP=1 keeps the work dir (results, logs) for a post-mortem.
#
# Everything runs inside a network namespace made for this run (removed on exit, also on failure or
# Ctrl-C), on that namespace's own loopback 127.0.0.1: no packet leaves it, and the fault rules
# cannot touch the host. Inside it:
#   nginx  :8080  one worker, /f/1..N files of distinct content, stub_status (counts requests)
#   serve  :8001  the built-in server, SIGKILLed and restarted while loaded
#   serve  :8002  the built-in server under `ulimit -n 24`: at its descriptor limit under load
#   proxy  :8090  scripts/lib/faultproxy.py to nginx: delays, resets, truncates some connections
# Faults, rotated while each load runs (one at a time, on for FAULT_ON s, off for FAULT_OFF s):
#   drop   nft: `numgen random mod 100 < 1 drop` on every TCP packet
#   reset  nft: `reject with tcp reset` on 1 in 1000 non-SYN TCP packets
#   tbf    tc: a token-bucket rate limit on lo
#   kill   SIGKILL of serve :8001 and a restart on the same port
# plus, once, SIGINT to the running fetch (then `--resume` finishes it, its first round still under
# the faults; further rounds, at most 8, without them).
# Invariants, each printed PASS/FAIL with its figures; the exit status is 0 only if all held:
#   fetch lines    exactly one line per index 0..N-1 (after --resume rounds), each 200 body saved
#                  byte for byte as its server sent it, every URL finally 200
#   bench count    bench's responses against nginx <= nginx's count <= responses + what was in
#                  flight (c x p) + what errors can have lost (errors x p). The built-in serve keeps
#                  no count, so this invariant uses nginx.
#   bench serve    bench against serve (killed and restarted) reached its -n count
#   rss            every ringfetch client's peak RSS (VmHWM, polled) stayed under its bound
#   no hang        every run ended within its time bound (a run past it is killed: FAIL "hung")
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib/ringfetch-bin.sh
source "$repo/scripts/lib/ringfetch-bin.sh"

mode=full
case ${1:-} in
    --short) mode=short ;;
    "") ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: scripts/soak.sh [--short]" >&2
        exit 2
        ;;
esac

if [[ $mode == full ]]; then
    BENCH_NGINX=${BENCH_NGINX:-4000000}
    BENCH_SERVE=${BENCH_SERVE:-6000000}
    FETCH_N=${FETCH_N:-1000000}
    FAULT_ON=3 FAULT_OFF=3
    BENCH_LIMIT=600 FETCH_LIMIT=900
    FDLIMIT_SECS=30
    INTERRUPT_AFTER=20
else
    BENCH_NGINX=${BENCH_NGINX:-300000}
    BENCH_SERVE=${BENCH_SERVE:-1000000}
    FETCH_N=${FETCH_N:-40000}
    FAULT_ON=1.5 FAULT_OFF=1
    BENCH_LIMIT=120 FETCH_LIMIT=120
    FDLIMIT_SECS=6
    INTERRUPT_AFTER=2
fi
NFILES=${NFILES:-1000}
BODY_SIZE=64      # serve's body; small, so a million saved bodies stay cheap
BENCH_C=64 BENCH_P=8
RSS_LIMIT_MB=${RSS_LIMIT_MB:-512}
RESUME_ROUNDS=8

for tool in ip nft tc python3 curl; do
    command -v "$tool" >/dev/null || {
        echo "soak: $tool is missing (apt-get install iproute2 nftables python3 curl)" >&2
        exit 2
    }
done
NGINX=${NGINX:-/usr/sbin/nginx}
[[ -x $NGINX ]] || {
    echo "soak: nginx is missing at $NGINX (apt-get install nginx, or NGINX=path)" >&2
    exit 2
}
[[ $(id -u) == 0 ]] || {
    echo "soak: needs root for its network namespace, nftables and tc" >&2
    exit 2
}
ringfetch_bin "$repo"

started=$(date +%s.%N)
NS=ringfetch-soak-$$-$RANDOM
DIR=$(mktemp -d "${TMPDIR:-/tmp}/ringfetch-soak.XXXXXX")
chmod 755 "$DIR" # nginx's worker runs as nobody
PIDS=()          # every process we started, for the cleanup

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    touch "$DIR/stop-faults"
    local p
    # Our background jobs, then everything living in our namespace (servers, clients, nginx's
    # workers): nothing outlives the run, and nothing outside the namespace is touched.
    for p in "${PIDS[@]}" $(jobs -p); do
        kill -KILL "$p" 2>/dev/null || true
    done
    for p in $(ip netns pids "$NS" 2>/dev/null); do
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    if [[ ${SOAK_KEEP:-0} == 1 ]]; then
        echo "soak: work dir kept: $DIR" >&2
    else
        rm -rf "$DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ns() { ip netns exec "$NS" "$@"; }
log() { printf '[%6.1fs] %s\n' "$(echo "$(date +%s.%N) - $started" | bc)" "$*"; }

ip netns add "$NS"
ns ip link set lo up
ns nft -f - <<'EOF'
table inet soak {
    chain input {
        type filter hook input priority 0; policy accept;
    }
}
EOF

# --- servers -------------------------------------------------------------------------------------

# wait_listen PORT: up to 5 s for something to accept on 127.0.0.1:PORT inside the namespace.
wait_listen() {
    local i
    for ((i = 0; i < 50; i++)); do
        ns bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "soak: nothing listens on :$1" >&2
    return 1
}

# start_serve NAME PORT NOFILE: the built-in server; its pid goes to $DIR/NAME.pid (the kill fault
# replaces it, so the file, not a variable, is the truth).
start_serve() {
    # ip netns exec and bash both exec, so $! ends up being the server itself (not through ns():
    # a function would put a subshell in between, and the kill fault would miss).
    ip netns exec "$NS" bash -c "ulimit -n $3 && exec \"\$0\" serve --addr 127.0.0.1:$2 --body-size $BODY_SIZE -t 1" \
        "$RF" >>"$DIR/$1.out" 2>&1 &
    echo $! >"$DIR/$1.pid"
    disown $! # its death by the kill fault is no news
    wait_listen "$2"
}

mkdir -p "$DIR/www" "$DIR/tmp"
SOAK_NFILES=$NFILES python3 "$repo/scripts/lib/soak_check.py" files "$DIR/www" "$NFILES"
chmod -R a+rX "$DIR/www"
cat >"$DIR/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 16384;
pid $DIR/nginx.master.pid;
error_log $DIR/nginx.error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $DIR/tmp/body;
    proxy_temp_path $DIR/tmp/proxy;
    fastcgi_temp_path $DIR/tmp/fastcgi;
    uwsgi_temp_path $DIR/tmp/uwsgi;
    scgi_temp_path $DIR/tmp/scgi;
    server {
        listen 127.0.0.1:8080 backlog=4096;
        root $DIR/www;
        location = /nginx_status { stub_status; }
    }
}
EOF
ip netns exec "$NS" "$NGINX" -p "$DIR/" -c "$DIR/nginx.conf" -g 'daemon off;' </dev/null >"$DIR/nginx.out" 2>&1 &
PIDS+=($!)
NGINX_PID=$!
disown $!
wait_listen 8080
start_serve serve 8001 20000
start_serve fdlimited 8002 24
ip netns exec "$NS" python3 "$repo/scripts/lib/faultproxy.py" --listen 127.0.0.1:8090 --upstream 127.0.0.1:8080 \
    --stats "$DIR/proxy.stats" --delay 2 --reset 0.5 --truncate 0.5 >"$DIR/proxy.out" 2>&1 &
PIDS+=($!)
disown $!
wait_listen 8090
log "namespace $NS: nginx :8080, serve :8001, serve (ulimit -n 24) :8002, fault proxy :8090"

# nginx's handled-request counter; the status request itself is counted.
nginx_requests() {
    ns curl -s -m 5 http://127.0.0.1:8080/nginx_status | awk 'NR == 3 { print $3 }' || true
}

# --- faults --------------------------------------------------------------------------------------

# nap SECS: sleep, but stop early once the faults are told to stop.
nap() {
    local end
    end=$(echo "$(date +%s.%N) + $1" | bc)
    while [[ ! -e $DIR/stop-faults ]] && (($(echo "$(date +%s.%N) < $end" | bc))); do
        sleep 0.1
    done
}

# nft_packets: packets counted by the (single) fault rule in the chain.
nft_packets() {
    ns nft list chain inet soak input | sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | head -n 1
}

# fault_loop KIND...: one fault at a time, in turn, until $DIR/stop-faults exists. Each line of
# $DIR/faults.log is "KIND COUNT" (packets hit, or 1 for an event).
fault_loop() {
    local kinds=("$@") i=0 kind n
    set +e # one fault that cannot be set must not end the schedule (its error is in faults.err)
    while [[ ! -e $DIR/stop-faults ]]; do
        kind=${kinds[i % ${#kinds[@]}]}
        i=$((i + 1))
        case $kind in
            drop | reset)
                if [[ $kind == drop ]]; then
                    ns nft add rule inet soak input meta l4proto tcp numgen random mod 100 '<' 1 counter drop
                else
                    ns nft add rule inet soak input 'tcp flags & (syn|rst) == 0' \
                        numgen random mod 1000 '<' 1 counter reject with tcp reset
                fi
                nap "$FAULT_ON"
                n=$(nft_packets)
                ns nft flush chain inet soak input
                echo "$kind ${n:-0}" >>"$DIR/faults.log"
                ;;
            tbf)
                ns tc qdisc add dev lo root tbf rate 20mbit burst 32kb latency 50ms
                nap "$FAULT_ON"
                n=$(ns tc -s qdisc show dev lo | sed -n 's/.*(dropped \([0-9]*\),.*/\1/p' | head -n 1)
                ns tc qdisc del dev lo root
                echo "tbf 1" >>"$DIR/faults.log"
                echo "tbf-dropped ${n:-0}" >>"$DIR/faults.log"
                ;;
            kill)
                kill -KILL "$(cat "$DIR/serve.pid")" 2>/dev/null || true
                echo "kill 1" >>"$DIR/faults.log"
                nap 0.5
                start_serve serve 8001 20000 || echo "restart-failed 1" >>"$DIR/faults.log"
                ;;
        esac
        nap "$FAULT_OFF"
    done
}

FAULT_PID=
faults_start() {
    rm -f "$DIR/stop-faults"
    fault_loop "$@" 2>>"$DIR/faults.err" &
    FAULT_PID=$!
    PIDS+=("$FAULT_PID")
}
faults_stop() {
    touch "$DIR/stop-faults"
    wait "$FAULT_PID" 2>/dev/null || true
    # Whatever the loop was doing, leave the namespace clean.
    ns nft flush chain inet soak input
    ns tc qdisc del dev lo root 2>/dev/null || true
}

# --- bounded, measured runs ----------------------------------------------------------------------

# run NAME LIMIT_SECS CMD...: run CMD inside the namespace, stdout to $DIR/NAME.json, stderr to
# $DIR/NAME.err, killed past LIMIT_SECS. Appends "NAME rc hung peak_rss_kb wall_s" to
# $DIR/runs.tsv; sets RUN_RC. The pid is ringfetch's own (ip netns exec execs it), so VmHWM is the
# client's; it is polled because it vanishes with the process.
RUN_RC=0
run() {
    local name=$1 limit=$2 pid hwm=0 h hung=0 t0 now
    shift 2
    t0=$(date +%s.%N)
    # Not through ns(): a function would put a subshell between $! and the client.
    ip netns exec "$NS" "$@" >"$DIR/$name.json" 2>"$DIR/$name.err" &
    pid=$!
    echo "$pid" >"$DIR/client-$name.pid"
    while kill -0 "$pid" 2>/dev/null; do
        h=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status" 2>/dev/null || true)
        [[ -n $h ]] && ((h > hwm)) && hwm=$h
        now=$(date +%s.%N)
        if (($(echo "$now - $t0 > $limit" | bc))); then
            hung=1
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    RUN_RC=0
    wait "$pid" || RUN_RC=$?
    rm -f "$DIR/client-$name.pid"
    printf '%s %s %s %s %.1f\n' "$name" "$RUN_RC" "$hung" "$hwm" \
        "$(echo "$(date +%s.%N) - $t0" | bc)" >>"$DIR/runs.tsv"
}

# jq-free JSON field access: json FILE EXPR (EXPR in Python over `d`).
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

RESULTS=()
verdict() { # verdict PASS|FAIL NAME DETAIL
    RESULTS+=("$1")
    printf '%s  %-14s %s\n' "$1" "$2" "$3"
}

# --- phase 1: bench against nginx, counted by nginx ----------------------------------------------

log "bench nginx: $BENCH_NGINX requests, -c $BENCH_C -p $BENCH_P, faults drop/reset/tbf"
before=$(nginx_requests)
faults_start drop reset tbf
run bench-nginx "$BENCH_LIMIT" "$RF" bench http://127.0.0.1:8080/f/1 -c "$BENCH_C" -p "$BENCH_P" \
    -n "$BENCH_NGINX" --timeout 10 --json
faults_stop
sleep 1 # let nginx finish what was in flight before reading its counter
after=$(nginx_requests)
bench_nginx_rc=$RUN_RC

# --- phase 2: bench against serve, killed and restarted; a server at its fd limit -----------------

log "bench serve: $BENCH_SERVE requests with kill/restart, drop/reset/tbf; serve at ulimit -n 24"
faults_start kill drop kill reset kill tbf
run bench-fdlimit $((FDLIMIT_SECS + 60)) "$RF" bench http://127.0.0.1:8002/ -c 64 -d "${FDLIMIT_SECS}s" \
    --timeout 2 --json &
fdl_pid=$!
run bench-serve "$BENCH_LIMIT" "$RF" bench http://127.0.0.1:8001/ -c "$BENCH_C" -p "$BENCH_P" \
    -n "$BENCH_SERVE" --timeout 10 --json
wait "$fdl_pid" || true
faults_stop

# --- phase 3: fetch, interrupted once, resumed until every URL has its answer ---------------------

python3 "$repo/scripts/lib/soak_check.py" list "$FETCH_N" \
    http://127.0.0.1:8001/ http://127.0.0.1:8080/f/ http://127.0.0.1:8001/ http://127.0.0.1:8080/f/ \
    http://127.0.0.1:8001/ http://127.0.0.1:8080/f/ http://127.0.0.1:8001/ http://127.0.0.1:8080/f/ \
    http://127.0.0.1:8090/f/ http://127.0.0.1:8002/ >"$DIR/list.txt"
log "fetch: $FETCH_N URLs (serve, nginx, via the fault proxy, serve at its fd limit), faults" \
    "kill/drop/reset/tbf, SIGINT after ${INTERRUPT_AFTER}s"
fetch_args=(fetch "$DIR/list.txt" -o "$DIR/results.jsonl" --save-dir "$DIR/bodies" --timeout 10 --json)
faults_start kill drop tbf kill reset
(
    sleep "$INTERRUPT_AFTER"
    if p=$(cat "$DIR/client-fetch-0.pid" 2>/dev/null) && kill -INT "$p" 2>/dev/null; then
        echo "client-interrupt 1" >>"$DIR/faults.log"
    fi
) &
int_pid=$!
PIDS+=("$int_pid")
run fetch-0 "$FETCH_LIMIT" "$RF" "${fetch_args[@]}"
wait "$int_pid" || true
rounds=0
fetch_rc=$RUN_RC
# The first --resume (the bulk of the list, after the interruption) runs under the faults too;
# later rounds, without them, let the errors they left converge (the proxy still spoils some).
while ((fetch_rc != 0 && rounds < RESUME_ROUNDS)); do
    rounds=$((rounds + 1))
    log "fetch: exit $fetch_rc, --resume round $rounds"
    run "fetch-$rounds" "$FETCH_LIMIT" "$RF" "${fetch_args[@]}" --resume
    fetch_rc=$RUN_RC
    ((rounds == 1)) && faults_stop
done
((rounds >= 1)) || faults_stop

# --- invariants ----------------------------------------------------------------------------------

log "checking"
echo
set +e

# fetch lines and bodies
check=$(python3 "$repo/scripts/lib/soak_check.py" check "$DIR/list.txt" "$DIR/results.jsonl" \
    "$DIR/bodies" "$BODY_SIZE" 2>"$DIR/check.err")
check_rc=$?
if ((check_rc == 0 && fetch_rc == 0)); then
    verdict PASS "fetch lines" "$check (resume rounds: $rounds)"
else
    verdict FAIL "fetch lines" "$check (last exit $fetch_rc, resume rounds: $rounds)"
    sed 's/^/      /' "$DIR/check.err"
fi

# bench count against nginx
if [[ -s $DIR/bench-nginx.json ]] && [[ -n $before && -n $after ]]; then
    bn=$(json "$DIR/bench-nginx.json" 'd["requests"]')
    be=$(json "$DIR/bench-nginx.json" 'sum(d["errors"].values())')
    served=$((after - before - 1))
    slack=$((BENCH_C * BENCH_P + be * BENCH_P))
    detail="bench $bn responses ($be errors, exit $bench_nginx_rc), nginx served $served; allowed $bn..$((bn + slack))"
    # bench -n counts a request that ended in an error as done too (responses + errors = -n).
    if ((bench_nginx_rc == 0 && bn + be >= BENCH_NGINX && served >= bn && served <= bn + slack)); then
        verdict PASS "bench count" "$detail"
    else
        verdict FAIL "bench count" "$detail"
    fi
else
    verdict FAIL "bench count" "no summary from bench, or no count from nginx ($before, $after)"
    tail -n 5 "$DIR/bench-nginx.err"
fi

# bench against the restarted serve
if [[ -s $DIR/bench-serve.json ]]; then
    sn=$(json "$DIR/bench-serve.json" 'd["requests"]')
    se=$(json "$DIR/bench-serve.json" 'd["errors"]')
    sen=$(json "$DIR/bench-serve.json" 'sum(d["errors"].values())')
    detail="bench $sn responses + $sen errors of $BENCH_SERVE asked, errors $se"
    if ((sn + sen >= BENCH_SERVE && sn > 0)); then verdict PASS "bench serve" "$detail"; else verdict FAIL "bench serve" "$detail"; fi
else
    verdict FAIL "bench serve" "no summary; stderr: $(tail -n 3 "$DIR/bench-serve.err")"
fi
if [[ -s $DIR/bench-fdlimit.json ]]; then
    fn=$(json "$DIR/bench-fdlimit.json" 'd["requests"]')
    fe=$(json "$DIR/bench-fdlimit.json" 'd["errors"]')
    detail="bench -c 64 against serve at ulimit -n 24: $fn responses, errors $fe"
    if ((fn > 0)); then verdict PASS "fd limit" "$detail"; else verdict FAIL "fd limit" "$detail"; fi
else
    verdict FAIL "fd limit" "no summary; stderr: $(tail -n 3 "$DIR/bench-fdlimit.err")"
fi

# every run: in time, and RSS bounded
peak_kb=0
while read -r name rc hung hwm wall; do
    ((hwm > peak_kb)) && peak_kb=$hwm
    detail="$name: exit $rc, ${wall}s, peak RSS $((hwm / 1024)) MiB"
    if ((hung)); then
        verdict FAIL "no hang" "$detail: killed after its bound (hung)"
    elif ((hwm > RSS_LIMIT_MB * 1024)); then
        verdict FAIL "rss" "$detail, over the ${RSS_LIMIT_MB} MiB bound"
    else
        verdict PASS "run" "$detail (bound ${RSS_LIMIT_MB} MiB)"
    fi
done <"$DIR/runs.tsv"

# the servers survived (serve is restarted by the kill fault; the others never should die)
for who in "nginx $NGINX_PID" "fdlimited $(cat "$DIR/fdlimited.pid")" "serve $(cat "$DIR/serve.pid")"; do
    set -- $who
    if kill -0 "$2" 2>/dev/null; then
        verdict PASS "server alive" "$1"
    else
        verdict FAIL "server alive" "$1 died; its output: $(tail -n 3 "$DIR/$1.out" 2>/dev/null)"
    fi
done

echo
# drop and reset: periods on / packets hit; the rest: events.
faults=$(awk '{ n[$1] += $2; e[$1]++ }
    END { for (k in n) if (k ~ /^(drop|reset)$/) printf "%s=%d periods/%d packets ", k, e[k], n[k]; else printf "%s=%d ", k, n[k] }' \
    "$DIR/faults.log" 2>/dev/null)
echo "faults: ${faults}proxy=$(cat "$DIR/proxy.stats" 2>/dev/null)"
total=$((${bn:-0} + ${sn:-0} + ${fn:-0}))
echo "requests: bench $total (nginx ${bn:-?}, serve ${sn:-?}, fd-limited ${fn:-?}), fetch $FETCH_N URLs"
echo "peak RSS: $((peak_kb / 1024)) MiB (largest ringfetch client)"
printf 'wall time: %.0fs (%s)\n' "$(echo "$(date +%s.%N) - $started" | bc)" "$mode"
failed=0
for r in "${RESULTS[@]}"; do [[ $r == PASS ]] || failed=$((failed + 1)); done
if ((failed)); then
    echo "soak: $failed invariant(s) FAILED (SOAK_KEEP=1 keeps $DIR for a look)"
    exit 1
fi
echo "soak: all ${#RESULTS[@]} invariants held"
