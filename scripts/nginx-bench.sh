#!/usr/bin/env bash
# A private, throw-away nginx for benchmarking ringfetch against other clients.
#
# Two ways to use it:
#   * sourced by scripts/compare.sh, which calls nginx_bench_setup / _start /
#     _stop / _requests (all state lives in NB_* variables);
#   * run directly, for poking at by hand:  scripts/nginx-bench.sh [PORT]
#     starts nginx in the foreground on 127.0.0.1 and prints the URLs; Ctrl-C
#     stops it and removes its temp dir.
#
# It never touches a system nginx: its own config, pid file, error log, temp
# paths and document root all live in one temp dir, and it listens on loopback
# only.
#
# The server is deliberately cheap and predictable so that the *client* is
# what the benchmark measures: one worker pinned to one CPU (NB_SERVER_CPU,
# default 0), no access log, sendfile off (NB_SENDFILE=on to change it),
# keep-alive connections that are never closed by request count. With
# NB_TLS=1 it also serves https on NB_TLS_PORT with a self-signed certificate
# for localhost and 127.0.0.1 (made with openssl; clients trust
# $NB_DIR/tls/cert.pem).

# Knobs (environment).
NB_SERVER_CPU=${NB_SERVER_CPU:-0}
NB_SENDFILE=${NB_SENDFILE:-off}
NB_NFILES=${NB_NFILES:-10000}     # number of distinct files /f/1 .. /f/N
NB_FILE_SIZE=${NB_FILE_SIZE:-1024} # bytes in each /f/<i> file
NB_NGINX=${NB_NGINX:-/usr/sbin/nginx}
NB_TLS=${NB_TLS:-0}
# Connections the worker may hold. 8192 covers every client of (a)–(f); the bulk fetch from 10,000
# origins keeps one idle connection per origin, and past this limit nginx closes idle keep-alive
# connections ("worker_connections are not enough, reusing connections"), which the client must then
# reopen: it would measure nginx's limit, not the client.
NB_WORKER_CONNECTIONS=${NB_WORKER_CONNECTIONS:-8192}

# State, filled in by the functions below.
NB_DIR=${NB_DIR:-}
NB_PORT=${NB_PORT:-}
NB_PID=${NB_PID:-}
NB_HAS_STATUS=${NB_HAS_STATUS:-0}
NB_TLS_PORT=${NB_TLS_PORT:-}

# Print a port that was free a moment ago. The kernel picks it (bind to port 0)
# so we don't collide with anything listening; the tiny race with another
# process grabbing it is handled by nginx_bench_start retrying.
nb_free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# nginx wants a CPU *mask* ("1" = CPU 0, "10" = CPU 1, ...), not a number.
nb_cpu_mask() {
    local mask=1 i
    for ((i = 0; i < $1; i++)); do mask="${mask}0"; done
    printf '%s' "$mask"
}

# nginx_bench_setup DIR: document root and everything else nginx needs that
# does not depend on the port.
nginx_bench_setup() {
    NB_DIR=$1
    mkdir -p "$NB_DIR/www/f" "$NB_DIR/tmp"
    # The worker runs as "nobody" when we are root; mktemp -d makes 0700 dirs
    # (the caller must make the parents of DIR searchable too).
    chmod 755 "$NB_DIR" "$NB_DIR/www" "$NB_DIR/www/f"

    local kib fbody
    kib=$(head -c 1024 /dev/zero | tr '\0' 'x')
    printf '%s' "$kib" >"$NB_DIR/www/1k"
    fbody=$(head -c "$NB_FILE_SIZE" /dev/zero | tr '\0' 'y')
    # printf is a builtin: 10,000 files without 10,000 forks (~1 s).
    local i
    for ((i = 1; i <= NB_NFILES; i++)); do
        printf '%s' "$fbody" >"$NB_DIR/www/f/$i"
    done
    chmod -R a+rX "$NB_DIR/www"

    if [[ $NB_TLS == 1 ]]; then
        mkdir -p "$NB_DIR/tls"
        # P-256, as most sites use: the handshake costs are the common ones.
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
            -addext "basicConstraints=critical,CA:FALSE" \
            -keyout "$NB_DIR/tls/key.pem" -out "$NB_DIR/tls/cert.pem" 2>/dev/null
        chmod -R a+rX "$NB_DIR/tls"
    fi

    # stub_status lets us cross-check each client's own request count against
    # what the server saw; it is optional in some nginx builds.
    if "$NB_NGINX" -V 2>&1 | grep -q http_stub_status; then
        NB_HAS_STATUS=1
    else
        NB_HAS_STATUS=0
    fi
}

nb_write_conf() {
    local status_block="" tls_block="" nofile hard
    # Two descriptors per connection (a client socket, a file being read), but no more than the hard
    # limit: an unprivileged raise past it fails, and nginx then keeps the soft limit it started with.
    nofile=$((NB_WORKER_CONNECTIONS * 2))
    hard=$(ulimit -Hn)
    if [[ $hard != unlimited ]] && ((nofile > hard)); then
        nofile=$hard
    fi
    if [[ $NB_HAS_STATUS == 1 ]]; then
        status_block="location = /nginx_status { stub_status; }"
    fi
    if [[ $NB_TLS == 1 ]]; then
        # Session tickets are on by default; the cache lets TLS 1.2 clients resume by id too. nginx
        # 1.22 leaves TLS 1.3 out unless asked.
        tls_block="listen 127.0.0.1:$NB_TLS_PORT ssl backlog=4096;
        ssl_certificate $NB_DIR/tls/cert.pem;
        ssl_certificate_key $NB_DIR/tls/key.pem;
        ssl_session_cache shared:SSL:10m;
        ssl_protocols TLSv1.2 TLSv1.3;"
    fi
    cat >"$NB_DIR/nginx.conf" <<EOF
# Generated by scripts/nginx-bench.sh for benchmarking; deleted on exit.
worker_processes 1;
worker_cpu_affinity $(nb_cpu_mask "$NB_SERVER_CPU");
worker_rlimit_nofile $nofile;
pid $NB_DIR/nginx.pid;
error_log $NB_DIR/error.log warn;

events {
    worker_connections $NB_WORKER_CONNECTIONS;
}

http {
    access_log off;
    sendfile $NB_SENDFILE;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    default_type application/octet-stream;
    # Keep every path nginx might create inside our temp dir, not /var/lib/nginx.
    client_body_temp_path $NB_DIR/tmp/body;
    proxy_temp_path $NB_DIR/tmp/proxy;
    fastcgi_temp_path $NB_DIR/tmp/fastcgi;
    uwsgi_temp_path $NB_DIR/tmp/uwsgi;
    scgi_temp_path $NB_DIR/tmp/scgi;

    server {
        # A large backlog: 500 connects can arrive at once in the fetch test.
        listen 127.0.0.1:$NB_PORT backlog=4096;
        $tls_block
        root $NB_DIR/www;
        $status_block
    }
}
EOF
}

# nginx_bench_start [PORT]: start nginx in the background (pinned with taskset
# as well as worker_cpu_affinity, so the master also stays off the client's
# CPU) and wait until it serves /1k. Sets NB_PORT and NB_PID.
nginx_bench_start() {
    local want_port=${1:-} attempt
    for attempt in 1 2 3 4 5; do
        NB_PORT=${want_port:-$(nb_free_port)}
        if [[ $NB_TLS == 1 ]]; then
            NB_TLS_PORT=$(nb_free_port)
        fi
        nb_write_conf
        : >"$NB_DIR/error.log"
        taskset -c "$NB_SERVER_CPU" "$NB_NGINX" -p "$NB_DIR/" -c "$NB_DIR/nginx.conf" \
            -e "$NB_DIR/error.log" -g 'daemon off;' </dev/null >"$NB_DIR/nginx.out" 2>&1 &
        NB_PID=$!
        # Up to 5 s for it to answer.
        local i
        for ((i = 0; i < 50; i++)); do
            if ! kill -0 "$NB_PID" 2>/dev/null; then
                break
            fi
            if [[ $(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$NB_PORT/1k" || true) == 200 ]]; then
                return 0
            fi
            sleep 0.1
        done
        nginx_bench_stop
        if [[ -n $want_port ]] || ! grep -qs 'in use' "$NB_DIR/error.log" "$NB_DIR/nginx.out"; then
            break # not a port race: retrying won't help
        fi
        echo "nginx-bench: port $NB_PORT taken, retrying ($attempt)" >&2
    done
    echo "nginx-bench: nginx failed to start; its output and error log:" >&2
    tail -n 20 "$NB_DIR/nginx.out" "$NB_DIR/error.log" >&2 || true
    return 1
}

# nginx_bench_stop: fast shutdown of the master (it takes its worker with
# it); bounded: after 5 s, SIGKILL the master and its children. Only ever
# signals the pids we started.
nginx_bench_stop() {
    [[ -n $NB_PID ]] || return 0
    local pid=$NB_PID children i
    NB_PID=
    children=$(pgrep -P "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        # shellcheck disable=SC2086 # $children is a list of pids
        kill -KILL "$pid" $children 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# nginx_bench_requests: the server's total handled-request counter (from
# stub_status), or "" if unavailable. The status request itself is counted,
# so a delta between two reads is (client requests + 1). Retried: right after a
# client run the status request may meet a full accept queue, and a missing
# count only blanks a column, so a second try is worth its 2 s.
nginx_bench_requests() {
    [[ $NB_HAS_STATUS == 1 ]] || return 0
    local n
    for _ in 1 2 3; do
        n=$(curl -s -m 2 "http://127.0.0.1:$NB_PORT/nginx_status" | awk 'NR == 3 { print $3 }' || true)
        if [[ -n $n ]]; then
            echo "$n"
            return 0
        fi
    done
}

# Standalone use.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    NB_DIR=$(mktemp -d /tmp/nginx-bench.XXXXXX)
    chmod 755 "$NB_DIR"
    trap 'nginx_bench_stop; rm -rf "$NB_DIR"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    nginx_bench_setup "$NB_DIR"
    nginx_bench_start "${1:-}"
    echo "nginx (pid $NB_PID, CPU $NB_SERVER_CPU) serving $NB_DIR/www"
    echo "  http://127.0.0.1:$NB_PORT/1k            (1024 bytes)"
    echo "  http://127.0.0.1:$NB_PORT/f/1 .. /f/$NB_NFILES  ($NB_FILE_SIZE bytes each)"
    if [[ $NB_HAS_STATUS == 1 ]]; then
        echo "  http://127.0.0.1:$NB_PORT/nginx_status"
    fi
    if [[ $NB_TLS == 1 ]]; then
        echo "  https://localhost:$NB_TLS_PORT/1k  (--cacert $NB_DIR/tls/cert.pem)"
    fi
    echo "Ctrl-C to stop."
    wait "$NB_PID"
fi
