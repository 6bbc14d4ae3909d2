#!/bin/sh
# Takes the screenshots of docs/observability.md: starts the showcase cluster
# (scripts/dashboard_showcase.lua), lets it work for a while, and saves each
# dashboard view as docs/dashboard-VIEW.png with headless chromium.
#   sh scripts/dashboard_screenshots.sh [SECONDS_OF_WORK]
set -e
cd "$(dirname "$0")/.."
ready=$(mktemp -u)
build/lray scripts/dashboard_showcase.lua 8265 "$(( ${1:-40} + 60 ))" "$ready" >/dev/null 2>&1 &
pid=$!
i=0
while [ ! -s "$ready" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
url=$(cat "$ready")
sleep "${1:-40}"
for v in cluster actors tasks objects jobs logs; do
  # ?once: draw from one event of the live stream, then stop, so the
  # browser's virtual clock can finish.
  timeout 60 chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1400,900 --virtual-time-budget=4000 \
    --screenshot="$PWD/docs/dashboard-$v.png" "$url/?once#$v" >/dev/null 2>&1
done
kill "$pid"
rm -f "$ready"
ls -l docs/dashboard-*.png
