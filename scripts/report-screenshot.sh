#!/usr/bin/env bash
# A --rate bench against the built-in server (loopback only, about 3 s), its --report page, and a
# screenshot of that page in headless Chromium, to look at as a person would.
#
#   scripts/report-screenshot.sh [OUT.png]      (default: docs/report-rate.png)
#
# Needs /usr/bin/chromium (or CHROMIUM=path). CI does not run this.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/report-rate.png}
bin=${RINGFETCH:-target/release/ringfetch}
[ -x "$bin" ] || cargo build --release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# 3.5 s so that the last second is partial: the page must not draw it as a collapse.
timeout 60 "$bin" bench --rate 5k -c 16 -d 3500ms --report "$work/report.html" >/dev/null
timeout 60 "${CHROMIUM:-chromium}" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --window-size=900,1200 --hide-scrollbars \
  --screenshot="$work/shot.png" "file://$work/report.html" >/dev/null 2>&1
cp "$work/shot.png" "$out"
echo "$out: $(stat -c %s "$out") bytes"
