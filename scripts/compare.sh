#!/usr/bin/env bash
# Compare ringfetch's client-side cost with wrk, h2load, aiohttp and curl
# against a private nginx on loopback, and print one Markdown table.
#
#   scripts/compare.sh [--quick]
#
#   --quick   1 run of 2 s per client (default: 3 runs of 5 s, medians)
#
# Environment:
#   RINGFETCH=path   use this binary instead of `cargo build --release`
#                    (RINGFETCH=none skips the ringfetch rows)
#   RINGFETCH_BASE=path  a second ringfetch (e.g. the last release, or main before a change): rows
#                    "base" beside ringfetch's in (a) and (b), both transports, in the same runs
#   RUNS=N DURATION=S   override the number of runs / seconds per run
#   SCENARIOS=abcdefgh  which scenarios to run (default: all)
#   OHA=path            oha binary for rows (a) and (d) (default: `oha` on PATH, else no oha rows;
#                       `cargo install oha` builds it in ~10 min); oha has no pipelining
#   CLIENT_CPU=1 SERVER_CPU=0   CPUs to pin the clients / nginx to
#   NB_SENDFILE=on   nginx sendfile (default off)
#   FLOOR=path          the data-path floor for row (a) (default: cargo build --release --example
#                       floor; FLOOR=none skips it)
#   BULK_URLS=N         URLs of the bulk fetch (g) for ringfetch (default 1000000)
#   BULK_SLOW_URLS=N    URLs of (g) for curl and aiohttp, which are compared per URL (default 100000)
#   BULK_ORIGINS=N      host names of (g)'s many-origin rows (default 10000)
#   BULK_ORIGIN_RUN=N   consecutive URLs of one origin in that list (default 1: round-robin)
#   BULK_LIMIT=S        time limit of one (g) client run (default 900)
#   HEADS=bare          every client sends the bare request head (Host only; h2load and oha add their
#                       User-Agent, which they cannot drop) instead of ringfetch's (the default)
#   BULK_SERVER=serve   (g) against `ringfetch serve` (one thread, SERVER_CPU) instead of nginx:
#                    nginx's one core bounds every ringfetch row of (g), serve's (2x nginx per core
#                    at depth 1) leaves the client the bound, so fetch vs bench measures the client
#
# Every client sends ringfetch's request head (wrk, h2load and oha get its User-Agent and Accept
# with -H), so that nginx does the same work for each.
#
# The metric is client CPU per request: (user + sys) x 1e6 / requests, with
# user/sys from GNU time around the client process and `requests` from the
# client's own output. Everything the server does runs on another CPU, so on
# a 2-core machine the client's CPU time is what distinguishes the tools;
# req/s is reported too but depends mostly on nginx. Each client run is
# cross-checked against nginx's own request counter (stub_status).
#
# Scenarios:
#   (a) 256 keep-alive connections, GET /1k, no pipelining (ringfetch over
#       both transports: tcp, and direct descriptors with multishot receive)
#   (b) the same with 16 pipelined requests per connection
#   (c) fetch 10,000 distinct URLs at concurrency 500 (ringfetch, ringfetch
#       -p 16, aiohttp with one ClientSession per request, curl --parallel)
#   (d) (a) over https (TLS 1.3, nginx's self-signed P-256 certificate), ringfetch
#       over both transports too
#   (e) (b) over https
#   (f) https, a new connection per request (Connection: close), 64 at once:
#       the handshake rate, ringfetch with and without session resumption
#   (g) bulk fetch: BULK_URLS distinct URLs (/1k?i=N) at -p 1 and -p 16 over 256 connections, from
#       one origin and from BULK_ORIGINS origins (names pinned to 127.0.0.1 with --resolve), beside
#       `ringfetch bench` on one URL with the same connections, depth and CPU (the rate to match),
#       `ringfetch bench` on one URL over BULK_ORIGINS connections (what the kernel and the server
#       cost per response when the connections are as many as the origins), curl --parallel and the
#       aiohttp pattern, session per request and shared (on BULK_SLOW_URLS URLs)
#   (h) servers: `ringfetch serve` (both transports) vs nginx, both on SERVER_CPU with one thread,
#       wrk with 256 connections at depth 1 and 16: responses/s and responses per server CPU second
#
# Output goes to stdout and to target/compare-<date>.md. Progress goes to
# stderr. Runs are interleaved (run 1 of every client, then run 2, ...) so
# that slow drift on a shared machine hits all clients alike.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
REPORT_PY="$SCRIPT_DIR/lib/compare_report.py"
PY=/usr/bin/python3 # the system one: it has aiohttp (a pyenv python3 may not)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

QUICK=0
for arg in "$@"; do
    case $arg in
    --quick) QUICK=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
done
if [[ $QUICK == 1 ]]; then
    RUNS=${RUNS:-1}
    DURATION=${DURATION:-2}
else
    RUNS=${RUNS:-3}
    DURATION=${DURATION:-5}
fi
SCENARIOS=${SCENARIOS:-abcdefgh}
CLIENT_CPU=${CLIENT_CPU:-1}
export NB_SERVER_CPU=${SERVER_CPU:-0}
CONNS=256
DEPTH=16
NURLS=10000
FETCH_CONC=500
FETCH_CONNS_PER_HOST=250
# Hard upper bounds so that nothing can hang the script: a duration test gets
# its duration plus 30 s, a fetch test (10,000 URLs) 300 s.
BENCH_LIMIT=$((DURATION + 30))
FETCH_LIMIT=${FETCH_LIMIT:-300}
BULK_URLS=${BULK_URLS:-1000000}
BULK_SLOW_URLS=${BULK_SLOW_URLS:-100000}
BULK_ORIGINS=${BULK_ORIGINS:-10000}
BULK_ORIGIN_RUN=${BULK_ORIGIN_RUN:-1}
BULK_LIMIT=${BULK_LIMIT:-900}
BULK_SERVER=${BULK_SERVER:-nginx}

log() { printf '%s\n' "$*" >&2; }
die() {
    log "compare.sh: $*"
    exit 1
}
for knob in BULK_URLS BULK_SLOW_URLS BULK_ORIGINS BULK_ORIGIN_RUN BULK_LIMIT; do
    [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob=${!knob}: expected a positive whole number"
done
[[ $BULK_SERVER == nginx || $BULK_SERVER == serve ]] || die "BULK_SERVER=$BULK_SERVER: expected nginx or serve"
if ((BULK_SLOW_URLS > BULK_URLS)); then
    BULK_SLOW_URLS=$BULK_URLS
fi

# ---------------------------------------------------------------- tools
# GNU time gives user/sys/max-RSS of exactly the client process; the shell's
# `time` keyword has no RSS. Install it if missing (Debian package "time").
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time (apt-get install -y time)"
    if [[ $(id -u) == 0 ]]; then
        apt-get install -y time >&2 || { apt-get update >&2 && apt-get install -y time >&2; }
    else
        sudo apt-get install -y time >&2
    fi
    [[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is required"
fi
for tool in nginx:/usr/sbin/nginx wrk:wrk h2load:h2load curl:curl taskset:taskset timeout:timeout; do
    command -v "${tool#*:}" >/dev/null ||
        die "${tool%%:*} not found (Debian: apt-get install -y nginx wrk nghttp2-client curl util-linux coreutils)"
done
OHA=${OHA:-$(command -v oha || true)}
"$PY" -c 'import aiohttp' 2>/dev/null || die "$PY cannot import aiohttp (apt-get install -y python3-aiohttp)"
if (($(nproc) < 2)); then
    log "warning: fewer than 2 CPUs: client and server share CPU 0, numbers will be skewed"
    CLIENT_CPU=0
    NB_SERVER_CPU=0
fi

# Clients open up to ~500 sockets, nginx up to 8192: raise the soft limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d /tmp/ringfetch-compare.XXXXXX)
# nginx's worker runs as "nobody" when we are root and must reach the document
# root below this dir, which mktemp made 0700.
chmod 755 "$TMP"
CLIENT_PID=
SERVE_PIDS=() # the `ringfetch serve` processes of (h)
# shellcheck source=scripts/nginx-bench.sh
source "$SCRIPT_DIR/nginx-bench.sh"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # The client runs under `timeout` in its own process group: a TERM to
    # timeout is forwarded to the client (and that group) by timeout itself.
    if [[ -n $CLIENT_PID ]]; then
        kill -TERM "$CLIENT_PID" 2>/dev/null || true
        wait "$CLIENT_PID" 2>/dev/null || true
    fi
    nginx_bench_stop
    local pid
    for pid in "${SERVE_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
# Ctrl-C / kill: exit (which runs cleanup) instead of carrying on.
trap 'exit 130' INT
trap 'exit 143' TERM

want() { [[ $SCENARIOS == *$1* ]]; }

# ---------------------------------------------------------------- ringfetch
[[ -n ${RINGFETCH:-} ]] || log "building ringfetch (cargo build --release)"
# shellcheck source=scripts/lib/ringfetch-bin.sh
source "$SCRIPT_DIR/lib/ringfetch-bin.sh"
ringfetch_bin "$REPO"
if [[ $RF != none ]]; then
    [[ -x $RF ]] || die "ringfetch binary not found: $RF"
fi

# ---------------------------------------------------------------- the floor
# benches/floor.rs: the least a client on tokio-uring's TcpStream does per request, measured in (a)
# beside ringfetch so the CPU the engine adds over its data path shows in the same run.
FLOOR=${FLOOR:-}
if [[ -z $FLOOR && $RF != none ]] && want a; then
    log "building the data-path floor (cargo build --release --example floor)"
    if (cd "$REPO" && timeout --foreground 1800 cargo build --release --example floor >&2); then
        FLOOR="${CARGO_TARGET_DIR:-$REPO/target}/release/examples/floor"
    fi
fi

# Every client sends the request head `ringfetch bench` sends (User-Agent and Accept after Host). Left
# to themselves wrk sends only Host and h2load its own User-Agent: shorter heads that nginx parses
# faster, which lowers every other cost per request too (measured: a client sending wrk's head spends
# ~5% less CPU per request than the same client sending ringfetch's).
RF_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n 1)
# HEADS=bare instead sends the bare head, as issue 15 measured: Host only from wrk and ringfetch (its
# User-Agent and Accept emptied with -H), h2load its own User-Agent (it cannot drop it), oha its own.
HEADS=${HEADS:-ringfetch}
case $HEADS in
ringfetch)
    SAME_HEAD=(-H "User-Agent: ringfetch/$RF_VERSION" -H "Accept: */*")
    RF_HEAD=()
    ;;
bare)
    SAME_HEAD=()
    RF_HEAD=(-H "User-Agent:" -H "Accept:")
    ;;
*) die "HEADS=$HEADS: expected ringfetch or bare" ;;
esac

# ---------------------------------------------------------------- header
tool_version() { "$@" 2>&1 | head -n 1 || true; }
RF_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null || true) ]]; then
    RF_REV="$RF_REV (with uncommitted changes)"
fi
if [[ -n ${RINGFETCH:-} ]]; then
    RF_REV="$RF_REV; binary: $RINGFETCH"
fi
if [[ $RF != none ]]; then
    RF_REV="$RF_REV; $(tool_version "$RF" --version)"
fi
# The machine may be shared: say so in the report when something else is
# using the CPUs, since that skews every number below. Sampled over 1 s from
# /proc/stat (the load average would also count our own cargo build).
cpu_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
read -r BUSY0 TOTAL0 < <(cpu_busy_ticks)
sleep 1
read -r BUSY1 TOTAL1 < <(cpu_busy_ticks)
BUSY_PCT=$(((BUSY1 - BUSY0) * 100 / (TOTAL1 - TOTAL0 + 1)))
LOAD_NOTE="; CPUs ${BUSY_PCT}% busy just before the runs"
if ((BUSY_PCT > 10)); then
    LOAD_NOTE="$LOAD_NOTE ⚠ something else is running: numbers are noisy"
fi
DATE_TAG=$(date +%Y%m%d-%H%M%S)
REPORT="$TMP/report.md"
{
    echo "## ringfetch vs wrk / h2load / aiohttp / curl — $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo "- kernel: $(uname -r); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg)$LOAD_NOTE"
    echo "- nginx: $(tool_version /usr/sbin/nginx -v | sed 's/^nginx version: //'); wrk: $(tool_version wrk -v | awk '{print $2}'); h2load: $(tool_version h2load --version | awk '{print $2}'); curl: $(tool_version curl --version | awk '{print $2}'); aiohttp: $("$PY" -c 'import aiohttp; print(aiohttp.__version__)') (Python $("$PY" -c 'import platform; print(platform.python_version())'))"
    echo "- ringfetch: git $RF_REV"
    if [[ $HEADS == bare ]]; then
        echo "- request heads: bare (HEADS=bare): Host only from ringfetch (-H 'User-Agent:' -H 'Accept:') and wrk; h2load and oha add their own User-Agent"
    else
        echo "- request heads: ringfetch's (Host, User-Agent, Accept) from every client"
    fi
    echo "- $RUNS run(s) of ${DURATION} s per client (fetch: all $NURLS URLs once per run), medians; clients pinned to CPU $CLIENT_CPU (taskset), nginx (1 worker, access_log off, sendfile ${NB_SENDFILE:-off}) to CPU $NB_SERVER_CPU"
    if want g; then
        echo "- (g): ringfetch fetches $BULK_URLS URLs per run, curl and aiohttp $BULK_SLOW_URLS (the row says which); URLs/s and µs/URL compare across counts; many origins: $BULK_ORIGINS names h0.test… pinned to 127.0.0.1 with --resolve, $BULK_ORIGIN_RUN consecutive URL(s) per name; nginx worker_connections raised to $((BULK_ORIGINS + 8192)) for the run; server: $BULK_SERVER"
    fi
    if want g || want h; then
        echo "- (g), (h): server CPU = utime + stime of the server's processes (nginx: master and worker; all threads) from /proc/PID/stat over the client's run, in ticks of 1/$(getconf CLK_TCK) s; per core = responses / server CPU seconds"
    fi
    echo "- µs/req = client (user + sys) CPU time × 1e6 / requests (GNU time, which rounds CPU and wall time to 10 ms: ±1 µs/req on a 10,000-URL fetch); requests as counted by the client; req/s = requests / wall time of the client process, start-up included"
    echo
} >"$REPORT"

# ---------------------------------------------------------------- server
log "setting up nginx document root ($NURLS files)"
if want g; then
    # (g)'s many-origin rows keep one idle connection per origin open (beside up to 256 busy ones):
    # at nginx's usual 8192 it would close idle ones to make room, and the client would measure
    # reconnections caused by nginx's limit (seen: one connection per URL, 80% of requests re-sent).
    # A larger table costs nginx nothing per request, so the other scenarios are unaffected.
    export NB_WORKER_CONNECTIONS=$((BULK_ORIGINS + 8192))
fi
NB_TLS=1 NB_NFILES=$NURLS nginx_bench_setup "$TMP/nginx"
NB_TLS=1 nginx_bench_start
BASE="http://127.0.0.1:$NB_PORT"
TLS_BASE="https://localhost:$NB_TLS_PORT"
CACERT="$NB_DIR/tls/cert.pem"
log "nginx pid $NB_PID on $BASE and $TLS_BASE (stub_status: $NB_HAS_STATUS)"

URLS="$TMP/urls.txt"
CURL_CFG="$TMP/curl.cfg"
for ((i = 1; i <= NURLS; i++)); do
    printf '%s/f/%d\n' "$BASE" "$i"
done >"$URLS"
# curl -K: one url/output pair per transfer; output must be given per URL.
for ((i = 1; i <= NURLS; i++)); do
    printf 'url = "%s/f/%d"\noutput = "/dev/null"\n' "$BASE" "$i"
done >"$CURL_CFG"

# (h): the built-in server beside nginx, on nginx's CPU with one thread, in both transports (the
# default `auto` is tcp until the fd limit, far above 256 connections). Both idle while not measured.
# serve_start TRANSPORT: start `ringfetch serve`; sets SERVED_URL (its base URL, empty if it did
# not start) and SERVED_PID.
serve_start() {
    local out="$TMP/serve-$1.txt" addr="" i
    taskset -c "$NB_SERVER_CPU" "$RF" serve --addr 127.0.0.1:0 --threads 1 --body-size 1024 \
        --transport "$1" </dev/null >"$out" 2>"$out.err" &
    SERVED_PID=$!
    SERVE_PIDS+=("$SERVED_PID")
    for ((i = 0; i < 50; i++)); do
        addr=$(sed -n 's/^listening on //p' "$out")
        [[ -z $addr ]] || break
        kill -0 "$SERVED_PID" 2>/dev/null || break
        sleep 0.1
    done
    SERVED_URL=${addr:+http://$addr}
    [[ -n $addr ]] || log "ringfetch serve --transport $1 did not start: $(head -c 300 "$out.err")"
}
SERVE_URL=""
SERVE_DIRECT_URL=""
if want h && [[ $RF != none ]]; then
    serve_start auto
    SERVE_URL=$SERVED_URL SERVE_PID=$SERVED_PID
    serve_start direct
    SERVE_DIRECT_URL=$SERVED_URL SERVE_DIRECT_PID=$SERVED_PID
    log "ringfetch serve on ${SERVE_URL:-(none)} (auto) and ${SERVE_DIRECT_URL:-(none)} (direct), CPU $NB_SERVER_CPU"
fi

# (g)'s server: nginx, or `ringfetch serve` (BULK_SERVER=serve) on the same CPU with one thread.
BULK_BASE=$BASE
BULK_PORT=$NB_PORT
BULK_PIDS=""
if want g && [[ $BULK_SERVER == serve ]]; then
    [[ $RF != none ]] || die "BULK_SERVER=serve needs ringfetch (RINGFETCH=none given)"
    serve_start auto
    [[ -n $SERVED_URL ]] || die "BULK_SERVER=serve: ringfetch serve did not start"
    BULK_BASE=$SERVED_URL BULK_PORT=${SERVED_URL##*:} BULK_PIDS=$SERVED_PID
    log "(g) against ringfetch serve on $BULK_BASE, CPU $NB_SERVER_CPU"
fi

# (g): distinct URLs of the 1 KiB file, told apart by a query nginx ignores, so every URL is a new
# one to the client and the same work to nginx. One origin, then BULK_ORIGINS origins: host names
# h0.test… that ringfetch connects to 127.0.0.1 with --resolve HOST:PORT:ADDR (its per-origin pools
# and queues are keyed by scheme, host and port, so each name is an origin of its own with its own
# connections, while everything stays on loopback behind one nginx listener). Names, not addresses:
# 127.0.x.y origins would need one nginx `listen` line per address. --resolve takes no file, so the
# pins go on the command line: ~37 bytes each, 10,000 of them ~370 KB, under ARG_MAX (2 MiB here;
# checked below). Order: BULK_ORIGIN_RUN consecutive URLs per origin, round-robin over the origins
# (1: a crawl frontier's order, no origin twice in a row). With BULK_ORIGINS above the requests in
# flight (256 x depth), no origin then has two URLs waiting at once, so -p 16 cannot pipeline there:
# that row measures 4,096 connections one request deep. So at -p DEPTH a second many-origin row takes
# a list in runs of DEPTH URLs per origin (unless BULK_ORIGIN_RUN already gives runs), which it can
# pipeline.
BULK_ONE="$TMP/bulk-one.txt"
BULK_MANY="$TMP/bulk-many.txt"
BULK_MANY_RUNS="$TMP/bulk-many-runs.txt"
BULK_SLOW="$TMP/bulk-slow.txt"
BULK_CURL_CFG="$TMP/bulk-curl.cfg"
BULK_RESOLVE=()
if want g; then
    log "writing (g)'s URL lists ($BULK_URLS URLs, $BULK_ORIGINS origins)"
    awk -v base="$BULK_BASE" -v n="$BULK_URLS" 'BEGIN { for (i = 0; i < n; i++) printf "%s/1k?i=%d\n", base, i }' >"$BULK_ONE"
    awk -v port="$BULK_PORT" -v n="$BULK_URLS" -v o="$BULK_ORIGINS" -v run="$BULK_ORIGIN_RUN" \
        'BEGIN { for (i = 0; i < n; i++) printf "http://h%d.test:%d/1k?i=%d\n", int(i / run) % o, port, i }' >"$BULK_MANY"
    if ((BULK_ORIGIN_RUN == 1 && DEPTH > 1)); then
        awk -v port="$BULK_PORT" -v n="$BULK_URLS" -v o="$BULK_ORIGINS" -v run="$DEPTH" \
            'BEGIN { for (i = 0; i < n; i++) printf "http://h%d.test:%d/1k?i=%d\n", int(i / run) % o, port, i }' >"$BULK_MANY_RUNS"
    fi
    head -n "$BULK_SLOW_URLS" "$BULK_ONE" >"$BULK_SLOW"
    awk '{ printf "url = \"%s\"\noutput = \"/dev/null\"\n", $0 }' "$BULK_SLOW" >"$BULK_CURL_CFG"
    for ((i = 0; i < BULK_ORIGINS; i++)); do
        BULK_RESOLVE+=(--resolve "h$i.test:$BULK_PORT:127.0.0.1")
    done
    resolve_bytes=$(printf '%s\n' "${BULK_RESOLVE[@]}" | wc -c)
    if ((resolve_bytes + 65536 > $(getconf ARG_MAX))); then
        die "BULK_ORIGINS=$BULK_ORIGINS: the --resolve pins take $resolve_bytes bytes of arguments, over ARG_MAX ($(getconf ARG_MAX)); use fewer origins"
    fi
fi

# ---------------------------------------------------------------- measuring
RESULTS="$TMP/results.tsv"
: >"$RESULTS"

# run_client LIMIT OUT cmd...: run cmd pinned to CLIENT_CPU under GNU time,
# stdout to OUT.out, stderr to OUT.err, "elapsed user sys maxrss" to OUT.time.
# In the background + wait, so that Ctrl-C is handled at once (bash runs traps
# only between commands, but `wait` is interrupted by them). Returns cmd's
# status (124 on timeout).
run_client() {
    local limit=$1 out=$2 rc=0
    shift 2
    timeout -k 5 "$limit" taskset -c "$CLIENT_CPU" \
        /usr/bin/time -o "$out.time" -f '%e %U %S %M' "$@" \
        </dev/null >"$out.out" 2>"$out.err" &
    CLIENT_PID=$!
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=
    return "$rc"
}

# settle_time_wait: wait (at most 65 s, the TIME_WAIT length plus slack) until fewer than
# TW_SETTLED sockets on this machine are in TIME_WAIT.
TW_SETTLED=${TW_SETTLED:-1000}
settle_time_wait() {
    local waited=0 tw
    while :; do
        tw=$(ss -Htan state time-wait 2>/dev/null | wc -l)
        ((tw < TW_SETTLED || waited >= 65)) && break
        ((waited == 0)) && log "  (waiting for $tw TIME_WAIT sockets to expire)"
        sleep 1
        waited=$((waited + 1))
    done
}

# warm_up: an untimed second of load and a read of the document root before every client. This VM
# runs memory reclaim (DAMON) and is shared: after ~60 s of idleness (the TIME_WAIT wait) the first
# client measured ran 2x slower (10–14k instead of 29k req/s for the same fetch), and nginx's
# per-file open()s in (c) hit whatever was reclaimed. Warming before each client puts them all on
# the same footing instead of penalising whichever comes first.
warm_up() {
    cat "$NB_DIR"/www/f/* >/dev/null 2>&1 || true
    timeout 5 taskset -c "$CLIENT_CPU" wrk -t1 -c16 -d1s "${WARM_URL:-$BASE/1k}" >/dev/null 2>&1 || true
}

# server_ticks PID...: the CPU time (utime + stime, clock ticks) the processes have used, all their
# threads included (/proc/PID/stat sums them), or nothing when one is gone. Fields counted after the
# ")" that ends the command name, which may itself hold spaces.
server_ticks() {
    local pid stat total=0 fields
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
        read -r -a fields <<<"${stat##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# measure SCENARIO SCENARIO_LABEL CLIENT CLIENT_LABEL RUN EXPECTED INFLIGHT LIMIT PARSER cmd...
# PARSER is a function that reads $OUT.out/$OUT.err and sets REQS and NOTE.
# Optional, for (g) and (h): SERVER_PIDS (the processes whose CPU time over the run goes in the last column),
# NGINX_COUNTS=0 (the client talks to another server: no stub_status cross-check), WARM_URL (the
# URL warmed up before the run, default nginx's /1k).
measure() {
    local scen=$1 scen_label=$2 client=$3 client_label=$4 run=$5 expected=$6 inflight=$7 limit=$8 parser=$9
    shift 9
    local out="$TMP/$scen-$client-$run" rc=0 before after nginx_reqs="" elapsed user sys rss
    local server_before="" server_after="" server_cpu=""
    # Let the previous client's connections close before counting, and let the TIME_WAIT sockets it
    # left expire: a client's connects pay for every TIME_WAIT socket on the loopback (the port search
    # in inet_hash_connect), so each client should start from the same clean stack. The aiohttp pattern
    # alone leaves ~10,000 of them per run; measured, they cut the next fetch client's req/s by a third.
    sleep 1
    settle_time_wait
    warm_up
    before=$(nginx_bench_requests)
    # shellcheck disable=SC2086 # a list of pids
    [[ -z ${SERVER_PIDS:-} ]] || server_before=$(server_ticks $SERVER_PIDS)
    run_client "$limit" "$out" "$@" || rc=$?
    # shellcheck disable=SC2086
    [[ -z ${SERVER_PIDS:-} ]] || server_after=$(server_ticks $SERVER_PIDS)
    after=$(nginx_bench_requests)
    if [[ -n $before && -n $after && ${NGINX_COUNTS:-1} == 1 ]]; then
        nginx_reqs=$((after - before - 1)) # minus our own status request
    fi
    if [[ -n $server_before && -n $server_after ]]; then
        server_cpu=$(awk -v t=$((server_after - server_before)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')
    fi
    REQS=""
    NOTE=""
    "$parser" "$out"
    case $rc in
    0) ;;
    124 | 137) NOTE="${NOTE:+$NOTE; }⚠ killed after ${limit} s time limit" ;;
    *) NOTE="${NOTE:+$NOTE; }⚠ exit status $rc" ;;
    esac
    if [[ $rc != 0 ]]; then
        NOTE="$NOTE: $(tail -n 2 "$out.err" | tr '\t\n' '  ' | cut -c1-160)"
    fi
    # GNU time prefixes "Command exited with non-zero status N" lines: the
    # numbers are on the last line.
    read -r elapsed user sys rss < <(tail -n 1 "$out.time" 2>/dev/null || true) || true
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$scen" "$scen_label" "$client" "$client_label" "$run" "$REQS" "$expected" \
        "${elapsed:-}" "${user:-}" "${sys:-}" "${rss:-}" "$nginx_reqs" "$inflight" "$NOTE" "$server_cpu" >>"$RESULTS"
    log "  $(printf '%-34s' "$client_label") $(awk -v r="$REQS" -v e="${elapsed:-0}" -v u="${user:-0}" -v s="${sys:-0}" \
        'BEGIN { if (r > 0) printf "%9d req  %9.0f req/s  %7.2f us/req", r, (e > 0 ? r / e : 0), (u + s) * 1e6 / r; else printf "no request count" }') \
        nginx=${nginx_reqs:-?}${server_cpu:+ server_cpu=${server_cpu}s}${NOTE:+  [$NOTE]}"
}

# Parsers: set REQS from the client's own output, NOTE for anything odd.
parse_wrk() {
    REQS=$(sed -n 's/^ *\([0-9]\+\) requests in .*/\1/p' "$1.out")
    local extra
    extra=$(grep -E 'Socket errors|Non-2xx' "$1.out" | tr '\n' ';' | sed 's/ \+/ /g; s/;$//' || true)
    [[ -z $extra ]] || NOTE="⚠ wrk:$extra"
}
parse_h2load() {
    # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
    local line
    line=$(grep '^requests:' "$1.out" || true)
    REQS=$(sed -n 's/.* \([0-9]\+\) succeeded.*/\1/p' <<<"$line")
    if grep -qE ' [1-9][0-9]* (failed|errored|timeout)' <<<"$line"; then
        NOTE="⚠ h2load: ${line#requests: }"
    fi
}
parse_oha() { # --output-format json: 2xx responses counted from statusCodeDistribution
    { read -r REQS && read -r NOTE; } < <("$PY" "$REPORT_PY" oha "$1.out") || true
}
parse_ringfetch() { # its --json summary; the helper flags errors/non-200s
    { read -r REQS && read -r NOTE; } < <("$PY" "$REPORT_PY" ringfetch "$1.out") || true
}
parse_count() { # aiohttp_fetch.py: the count of 200s on stdout, failures on stderr
    REQS=$(tail -n 1 "$1.out" | tr -dc '0-9')
    NOTE=$(grep '^aiohttp_fetch:' "$1.err" | cut -c1-160 || true)
}
parse_curl() { # one %{http_code} per transfer; -sS puts each failure on stderr
    REQS=$(grep -c '^200$' "$1.out" || true)
    local failed
    failed=$(grep -c '^curl: (' "$1.err" || true)
    if ((failed > 0)); then
        NOTE="⚠ curl: $failed transfers failed, e.g. $(grep -m1 '^curl: (' "$1.err" | cut -c1-100)"
    fi
}

SA="(a) ${CONNS} conns, GET /1k"
SB="(b) ${CONNS} conns, pipeline ${DEPTH}"
SC="(c) fetch ${NURLS} URLs, conc ${FETCH_CONC}"
SD="(d) https, ${CONNS} conns"
SE="(e) https, ${CONNS} conns, pipeline ${DEPTH}"
HS_CONNS=64
SF="(f) https, new connection per request, ${HS_CONNS} at once"
# (g): 256 connections as in (a)/(b): fetch -c is requests in flight (256 x depth), --conns-per-host
# lets the one origin have all 256 connections; bench -c is connections.
BULK_CONNS=$CONNS
SG="(g) bulk fetch, ${BULK_CONNS} conns"
[[ $BULK_SERVER == nginx ]] || SG="$SG, against ringfetch serve"
# (h): nginx's processes (master and worker; the master idles) for the server CPU column.
NGINX_PIDS="$NB_PID $(pgrep -P "$NB_PID" | tr '\n' ' ')"
D=$DURATION

# Runs the functions named after the run number in turn, starting at the run's own offset: over the
# runs each client takes each place in the order, so none always runs first (after another
# scenario's last client and the warm-up) or last. Rows are reported by client, not by order.
in_turn() {
    local run=$1 k i
    shift
    for ((k = 0; k < $#; k++)); do
        i=$(((run - 1 + k) % $# + 1))
        "${!i}"
    done
}

# ringfetch's rows of (a) and (b): CLIENT LABEL BINARY [ARG...], reading the loop's $run.
a_rf() {
    local client=$1 label=$2 bin=$3
    shift 3
    measure a "$SA" "$client" "$label" "$run" 0 "$CONNS" "$BENCH_LIMIT" parse_ringfetch \
        "$bin" bench "$BASE/1k" -c "$CONNS" -t 1 -d "${D}s" --json "$@" "${RF_HEAD[@]}"
}
b_rf() {
    local client=$1 label=$2 bin=$3
    shift 3
    measure b "$SB" "$client" "$label" "$run" 0 $((CONNS * DEPTH)) "$BENCH_LIMIT" parse_ringfetch \
        "$bin" bench "$BASE/1k" -c "$CONNS" -p "$DEPTH" -t 1 -d "${D}s" --json "$@" "${RF_HEAD[@]}"
}

# The rows of (a) and (b), one function each (see in_turn).
a_ringfetch() { a_rf ringfetch "ringfetch" "$RF"; }
a_ringfetch_direct() { a_rf ringfetch-direct "ringfetch --transport direct" "$RF" --transport direct; }
a_base() { a_rf base "base ringfetch" "$RINGFETCH_BASE"; }
a_base_direct() { a_rf base-direct "base ringfetch --transport direct" "$RINGFETCH_BASE" --transport direct; }
a_floor() {
    measure a "$SA" floor "data-path floor (benches/floor.rs)" "$run" 0 "$CONNS" "$BENCH_LIMIT" parse_count \
        "$FLOOR" "$BASE/1k" "$CONNS" "$D"
}
a_wrk() {
    measure a "$SA" wrk "wrk" "$run" 0 "$CONNS" "$BENCH_LIMIT" parse_wrk \
        wrk -t1 -c"$CONNS" -d"${D}s" "${SAME_HEAD[@]}" "$BASE/1k"
}
a_h2load() {
    measure a "$SA" h2load "h2load --h1" "$run" 0 "$CONNS" "$BENCH_LIMIT" parse_h2load \
        h2load --h1 -t1 -c"$CONNS" -D "$D" "${SAME_HEAD[@]}" "$BASE/1k"
}
a_oha() {
    measure a "$SA" oha "oha" "$run" 0 "$CONNS" "$BENCH_LIMIT" parse_oha \
        "$OHA" -z "${D}s" -c "$CONNS" --no-tui --output-format json "${SAME_HEAD[@]}" "$BASE/1k"
}
b_ringfetch() { b_rf ringfetch "ringfetch -p $DEPTH" "$RF"; }
b_ringfetch_direct() { b_rf ringfetch-direct "ringfetch -p $DEPTH --transport direct" "$RF" --transport direct; }
b_base() { b_rf base "base ringfetch -p $DEPTH" "$RINGFETCH_BASE"; }
b_base_direct() { b_rf base-direct "base ringfetch -p $DEPTH --transport direct" "$RINGFETCH_BASE" --transport direct; }
b_wrk() {
    measure b "$SB" wrk "wrk (pipeline.lua)" "$run" 0 $((CONNS * DEPTH)) "$BENCH_LIMIT" parse_wrk \
        wrk -t1 -c"$CONNS" -d"${D}s" -s "$SCRIPT_DIR/pipeline.lua" "${SAME_HEAD[@]}" "$BASE/1k" -- "$DEPTH"
}
b_h2load() {
    measure b "$SB" h2load "h2load --h1 -m $DEPTH" "$run" 0 $((CONNS * DEPTH)) "$BENCH_LIMIT" parse_h2load \
        h2load --h1 -t1 -c"$CONNS" -m "$DEPTH" -D "$D" "${SAME_HEAD[@]}" "$BASE/1k"
}

for ((run = 1; run <= RUNS; run++)); do
    log "run $run/$RUNS"
    if want a; then
    log " $SA"
    rows=()
    [[ $RF == none ]] || rows+=(a_ringfetch a_ringfetch_direct)
    [[ -z ${RINGFETCH_BASE:-} ]] || rows+=(a_base a_base_direct)
    [[ -z $FLOOR || $FLOOR == none ]] || rows+=(a_floor)
    rows+=(a_wrk a_h2load)
    [[ -z $OHA ]] || rows+=(a_oha)
    in_turn "$run" "${rows[@]}"
    fi

    if want b; then
    log " $SB"
    rows=()
    [[ $RF == none ]] || rows+=(b_ringfetch b_ringfetch_direct)
    [[ -z ${RINGFETCH_BASE:-} ]] || rows+=(b_base b_base_direct)
    rows+=(b_wrk b_h2load)
    in_turn "$run" "${rows[@]}"
    fi

    if want c; then
    log " $SC"
    if [[ $RF != none ]]; then
        measure c "$SC" ringfetch "ringfetch" "$run" "$NURLS" 0 "$FETCH_LIMIT" parse_ringfetch \
            "$RF" fetch "$URLS" -c "$FETCH_CONC" --conns-per-host "$FETCH_CONNS_PER_HOST" -t 1 --json -o /dev/null
        measure c "$SC" ringfetch-p16 "ringfetch -p $DEPTH" "$run" "$NURLS" 0 "$FETCH_LIMIT" parse_ringfetch \
            "$RF" fetch "$URLS" -c "$FETCH_CONC" --conns-per-host "$FETCH_CONNS_PER_HOST" -p "$DEPTH" -t 1 --json -o /dev/null
    fi
    # Note: curl caps --parallel-max at 300 (MAX_PARALLEL in its source).
    measure c "$SC" curl "curl --parallel (max 300)" "$run" "$NURLS" 0 "$FETCH_LIMIT" parse_curl \
        curl --parallel --parallel-max "$FETCH_CONC" -sS -w '%{http_code}\n' -K "$CURL_CFG"
    # Last: it leaves the most TIME_WAIT sockets behind (see settle_time_wait).
    measure c "$SC" aiohttp "aiohttp (session per request)" "$run" "$NURLS" 0 "$FETCH_LIMIT" parse_count \
        "$PY" "$SCRIPT_DIR/aiohttp_fetch.py" "$URLS" "$FETCH_CONC"
    fi

    if want d; then
        log " $SD"
        if [[ $RF != none ]]; then
            measure d "$SD" ringfetch "ringfetch" "$run" 0 "$CONNS" "$BENCH_LIMIT" parse_ringfetch \
                "$RF" bench "$TLS_BASE/1k" --cacert "$CACERT" -c "$CONNS" -t 1 -d "${D}s" --json
            measure d "$SD" ringfetch-direct "ringfetch --transport direct" "$run" 0 "$CONNS" "$BENCH_LIMIT" parse_ringfetch \
                "$RF" bench "$TLS_BASE/1k" --cacert "$CACERT" -c "$CONNS" -t 1 -d "${D}s" --json --transport direct
        fi
        measure d "$SD" wrk "wrk" "$run" 0 "$CONNS" "$BENCH_LIMIT" parse_wrk \
            wrk -t1 -c"$CONNS" -d"${D}s" "${SAME_HEAD[@]}" "$TLS_BASE/1k"
        measure d "$SD" h2load "h2load --h1" "$run" 0 "$CONNS" "$BENCH_LIMIT" parse_h2load \
            h2load --h1 -t1 -c"$CONNS" -D "$D" "${SAME_HEAD[@]}" "$TLS_BASE/1k"
        if [[ -n $OHA ]]; then
            measure d "$SD" oha "oha" "$run" 0 "$CONNS" "$BENCH_LIMIT" parse_oha \
                "$OHA" -z "${D}s" -c "$CONNS" --no-tui --output-format json --cacert "$CACERT" "${SAME_HEAD[@]}" "$TLS_BASE/1k"
        fi
    fi

    if want e; then
        log " $SE"
        if [[ $RF != none ]]; then
            measure e "$SE" ringfetch "ringfetch -p $DEPTH" "$run" 0 $((CONNS * DEPTH)) "$BENCH_LIMIT" parse_ringfetch \
                "$RF" bench "$TLS_BASE/1k" --cacert "$CACERT" -c "$CONNS" -p "$DEPTH" -t 1 -d "${D}s" --json
            measure e "$SE" ringfetch-direct "ringfetch -p $DEPTH --transport direct" "$run" 0 $((CONNS * DEPTH)) "$BENCH_LIMIT" parse_ringfetch \
                "$RF" bench "$TLS_BASE/1k" --cacert "$CACERT" -c "$CONNS" -p "$DEPTH" -t 1 -d "${D}s" --json --transport direct
        fi
        measure e "$SE" wrk "wrk (pipeline.lua)" "$run" 0 $((CONNS * DEPTH)) "$BENCH_LIMIT" parse_wrk \
            wrk -t1 -c"$CONNS" -d"${D}s" -s "$SCRIPT_DIR/pipeline.lua" "${SAME_HEAD[@]}" "$TLS_BASE/1k" -- "$DEPTH"
        measure e "$SE" h2load "h2load --h1 -m $DEPTH" "$run" 0 $((CONNS * DEPTH)) "$BENCH_LIMIT" parse_h2load \
            h2load --h1 -t1 -c"$CONNS" -m "$DEPTH" -D "$D" "${SAME_HEAD[@]}" "$TLS_BASE/1k"
    fi

    if want f; then
        log " $SF"
        if [[ $RF != none ]]; then
            measure f "$SF" ringfetch "ringfetch --no-keepalive (resumed)" "$run" 0 "$HS_CONNS" "$BENCH_LIMIT" parse_ringfetch \
                "$RF" bench "$TLS_BASE/1k" --cacert "$CACERT" -c "$HS_CONNS" --no-keepalive -t 1 -d "${D}s" --json
            measure f "$SF" ringfetch-full "ringfetch --no-keepalive --no-tls-resume" "$run" 0 "$HS_CONNS" "$BENCH_LIMIT" parse_ringfetch \
                "$RF" bench "$TLS_BASE/1k" --cacert "$CACERT" -c "$HS_CONNS" --no-keepalive --no-tls-resume -t 1 -d "${D}s" --json
        fi
        measure f "$SF" wrk "wrk -H 'Connection: close'" "$run" 0 "$HS_CONNS" "$BENCH_LIMIT" parse_wrk \
            wrk -t1 -c"$HS_CONNS" -d"${D}s" -H "Connection: close" "${SAME_HEAD[@]}" "$TLS_BASE/1k"
    fi

    if want g; then
        log " $SG"
        # The server's CPU over each run, so the table shows which rows its one core bounds.
        SERVER_PIDS=${BULK_PIDS:-$NGINX_PIDS}
        if [[ $BULK_SERVER == serve ]]; then
            NGINX_COUNTS=0 WARM_URL="$BULK_BASE/1k"
        fi
        if [[ $RF != none ]]; then
            for depth in 1 "$DEPTH"; do
                # The rate to match: the same connections, depth and CPU hammering one URL.
                measure g "$SG" "bench-p$depth" "ringfetch bench, one URL, -c $BULK_CONNS -p $depth" "$run" 0 \
                    $((BULK_CONNS * depth)) "$BENCH_LIMIT" parse_ringfetch \
                    "$RF" bench "$BULK_BASE/1k" -c "$BULK_CONNS" -p "$depth" -t 1 -d "${D}s" --json
                measure g "$SG" "fetch-p$depth" "ringfetch fetch -p $depth, 1 origin, $BULK_URLS URLs" "$run" \
                    "$BULK_URLS" 0 "$BULK_LIMIT" parse_ringfetch \
                    "$RF" fetch "$BULK_ONE" -c $((BULK_CONNS * depth)) --conns-per-host "$BULK_CONNS" -p "$depth" \
                    -t 1 --json -o /dev/null
                measure g "$SG" "fetch-many-p$depth" "ringfetch fetch -p $depth, $BULK_ORIGINS origins, $BULK_URLS URLs" \
                    "$run" "$BULK_URLS" 0 "$BULK_LIMIT" parse_ringfetch \
                    "$RF" fetch "$BULK_MANY" "${BULK_RESOLVE[@]}" -c $((BULK_CONNS * depth)) \
                    --conns-per-host "$BULK_CONNS" -p "$depth" -t 1 --json -o /dev/null
                if ((depth > 1)) && [[ -s $BULK_MANY_RUNS ]]; then
                    measure g "$SG" "fetch-many-runs-p$depth" "ringfetch fetch -p $depth, $BULK_ORIGINS origins in runs of $depth, $BULK_URLS URLs" \
                        "$run" "$BULK_URLS" 0 "$BULK_LIMIT" parse_ringfetch \
                        "$RF" fetch "$BULK_MANY_RUNS" "${BULK_RESOLVE[@]}" -c $((BULK_CONNS * depth)) \
                        --conns-per-host "$BULK_CONNS" -p "$depth" -t 1 --json -o /dev/null
                fi
                # One URL again, over a connection per origin: a many-origin fetch keeps BULK_ORIGINS
                # connections open and comes back to each only every BULK_ORIGINS URLs, so each
                # response meets a cold socket at both ends. This row prices that in the same kernel
                # and server without the fetch's own work: the many-origin rows compare with it as the
                # one-origin rows compare with the first bench row. Twice as long as the others, so
                # its BULK_ORIGINS connects weigh on it about as they do on the longer fetch runs.
                measure g "$SG" "bench-many-p$depth" "ringfetch bench, one URL, -c $BULK_ORIGINS -p $depth" "$run" 0 \
                    $((BULK_ORIGINS * depth)) $((BENCH_LIMIT + D)) parse_ringfetch \
                    "$RF" bench "$BULK_BASE/1k" -c "$BULK_ORIGINS" -p "$depth" -t 1 -d "$((2 * D))s" --json
            done
        fi
        measure g "$SG" curl "curl --parallel (max 300), $BULK_SLOW_URLS URLs" "$run" "$BULK_SLOW_URLS" 0 \
            "$BULK_LIMIT" parse_curl \
            curl --parallel --parallel-max "$FETCH_CONC" -sS -w '%{http_code}\n' -K "$BULK_CURL_CFG"
        # The pattern aiohttp's documentation recommends: one session, its connections reused.
        measure g "$SG" aiohttp-shared "aiohttp (one shared session), $BULK_SLOW_URLS URLs" "$run" "$BULK_SLOW_URLS" 0 \
            "$BULK_LIMIT" parse_count \
            "$PY" "$SCRIPT_DIR/aiohttp_fetch.py" "$BULK_SLOW" "$FETCH_CONC" shared
        # Last: it leaves the most TIME_WAIT sockets behind (see settle_time_wait).
        measure g "$SG" aiohttp "aiohttp (session per request), $BULK_SLOW_URLS URLs" "$run" "$BULK_SLOW_URLS" 0 \
            "$BULK_LIMIT" parse_count \
            "$PY" "$SCRIPT_DIR/aiohttp_fetch.py" "$BULK_SLOW" "$FETCH_CONC"
        SERVER_PIDS="" NGINX_COUNTS="" WARM_URL=""
    fi

    if want h; then
        # The same client (wrk, pinned to CLIENT_CPU) against each server in turn, all of them on
        # SERVER_CPU with one thread; the server's CPU time over the run is the cost compared.
        for depth in 1 "$DEPTH"; do
            SH="(h) server, ${CONNS} conns, depth $depth"
            pipe=()
            depth_arg=()
            if ((depth > 1)); then
                pipe=(-s "$SCRIPT_DIR/pipeline.lua")
                depth_arg=(-- "$depth")
            fi
            log " $SH"
            SERVER_PIDS=$NGINX_PIDS measure "h$depth" "$SH" nginx "nginx (1 worker) ← wrk" "$run" 0 \
                $((CONNS * depth)) "$BENCH_LIMIT" parse_wrk \
                wrk -t1 -c"$CONNS" -d"${D}s" "${pipe[@]}" "${SAME_HEAD[@]}" "$BASE/1k" "${depth_arg[@]}"
            if [[ -n $SERVE_URL ]]; then
                SERVER_PIDS=$SERVE_PID NGINX_COUNTS=0 WARM_URL="$SERVE_URL/1k" \
                    measure "h$depth" "$SH" serve "ringfetch serve -t 1 ← wrk" "$run" 0 \
                    $((CONNS * depth)) "$BENCH_LIMIT" parse_wrk \
                    wrk -t1 -c"$CONNS" -d"${D}s" "${pipe[@]}" "${SAME_HEAD[@]}" "$SERVE_URL/1k" "${depth_arg[@]}"
            fi
            if [[ -n $SERVE_DIRECT_URL ]]; then
                SERVER_PIDS=$SERVE_DIRECT_PID NGINX_COUNTS=0 WARM_URL="$SERVE_DIRECT_URL/1k" \
                    measure "h$depth" "$SH" serve-direct "ringfetch serve -t 1 --transport direct ← wrk" "$run" 0 \
                    $((CONNS * depth)) "$BENCH_LIMIT" parse_wrk \
                    wrk -t1 -c"$CONNS" -d"${D}s" "${pipe[@]}" "${SAME_HEAD[@]}" "$SERVE_DIRECT_URL/1k" "${depth_arg[@]}"
            fi
        done
    fi
done

# ---------------------------------------------------------------- report
"$PY" "$REPORT_PY" table "$RESULTS" >>"$REPORT"
{
    echo
    echo "Notes: every client starts once fewer than $TW_SETTLED sockets are in TIME_WAIT (up to 65 s wait), so none pays for another's closed connections, and after an untimed 1 s warm-up load and a read of the document root, so none pays for the idle time before it. Requests for (a)/(b) are what each client counted in its own output; nginx reqs is the stub_status delta over the same run (it may exceed the client's count by up to connections × depth requests that were in flight when the client stopped). curl silently caps --parallel-max at 300. aiohttp opens one ClientSession, so one TCP connection, per URL, as written in scripts/aiohttp_fetch.py; (g)'s aiohttp-shared row uses one session for the run, its connections reused."
    if want h; then
        echo
        echo "(h): not quite the same work: nginx opens and reads the 1 KiB file for each request (sendfile off) and sends a ~250-byte head (Date, Last-Modified, ETag…); ringfetch serve sends a fixed ~85-byte head and body from memory. Server CPU comes from /proc (10 ms ticks): over a ${DURATION} s run, ±1% at most."
    fi
} >>"$REPORT"

mkdir -p "$REPO/target"
OUT_MD="$REPO/target/compare-$DATE_TAG.md"
cp "$REPORT" "$OUT_MD"
echo
cat "$REPORT"
log ""
log "written to $OUT_MD"
