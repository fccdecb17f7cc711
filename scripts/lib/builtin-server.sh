# shellcheck shell=bash
# Sourced by scripts/callgrind.sh and scripts/profile.sh: start `ringfetch serve` on CPU 0 on a free
# loopback port and stop it at exit.
#
#   builtin_server_start BIN DIR   sets BUILTIN_URL (http://127.0.0.1:PORT/) and BUILTIN_PID;
#                                   DIR receives its stdout
#   builtin_server_stop            kills it (safe to call twice, or when none was started)

BUILTIN_PID=""
BUILTIN_URL=""

builtin_server_start() {
    local bin=$1 dir=$2
    taskset -c 0 "$bin" serve --addr 127.0.0.1:0 -t 1 >"$dir/serve.txt" &
    BUILTIN_PID=$!
    # Its first stdout line is `listening on ADDR`.
    for _ in $(seq 50); do
        grep -q listening "$dir/serve.txt" 2>/dev/null && break
        sleep 0.1
    done
    BUILTIN_URL="http://$(sed -n 's/^listening on //p' "$dir/serve.txt")/"
    [ "$BUILTIN_URL" != "http:///" ] || { echo "the built-in server did not start" >&2; return 1; }
}

builtin_server_stop() {
    [ -n "$BUILTIN_PID" ] && kill "$BUILTIN_PID" 2>/dev/null
    BUILTIN_PID=""
}
