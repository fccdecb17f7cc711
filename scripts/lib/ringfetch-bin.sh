# shellcheck shell=bash
# Sourced by the measuring scripts. ringfetch_bin REPO sets RF to $RINGFETCH when given, else builds
# the release binary (30 min at most, Ctrl-C reaching cargo) and points RF at it, as an absolute path.
ringfetch_bin() {
    RF=${RINGFETCH:-}
    if [[ -z $RF ]]; then
        (cd "$1" && timeout --foreground 1800 cargo build --release >&2)
        RF="${CARGO_TARGET_DIR:-$1/target}/release/ringfetch"
    fi
    if [[ $RF != none && $RF != /* ]]; then
        RF="$(cd "$(dirname "$RF")" && pwd)/$(basename "$RF")"
    fi
}
