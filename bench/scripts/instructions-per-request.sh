#!/usr/bin/env bash
# Instructions per request, counted by callgrind (repeatable on a noisy machine,
# unlike req/s): hello (2 KiB) through the plugin ABI, the cache's memory hit
# (2 KiB), and bare hyper answering the same 2 KiB from memory, in one run.
#
#     bench/scripts/instructions-per-request.sh [REQUESTS]
#
# Each server runs under callgrind with instrumentation off; after a warm-up
# the window of REQUESTS keep-alive requests (one client connection, Python's
# http.client in another process) is counted, so start-up and the client are not.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-2000}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
cargo build --release --quiet -p plughost -p hello -p plughost-bench
tmp=$(mktemp -d); [ -z "${KEEP:-}" ] || echo "keeping $tmp"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
page=$(python3 -c "print('a' * 2048, end='')")
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
server="[server:main]
use = egg:plughost#http
host = 127.0.0.1
port = %s
threads = 8"

client() { # PORT COUNT PATH
  python3 "$(dirname "$0")/keepalive_client.py" "$@"
}

measure() { # NAME PATH PORT COMMAND...
  local name=$1 path=$2 p=$3; shift 3
  local out="$tmp/${name// /_}.callgrind"
  # Under valgrind wall time means nothing: keep non-blocking apps on the event
  # loop, as they stay at native speed.
  PLUGHOST_INLINE_LIMIT_MS=600000 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$@" >"${out%.callgrind}.log" 2>&1 &
  local pid=$!
  client "$p" 200 "$path"              # warm up (and wait for it to listen)
  callgrind_control -i on "$pid" >/dev/null
  client "$p" "$n" "$path"
  callgrind_control -i off "$pid" >/dev/null
  kill -TERM "$pid"; wait "$pid" || true
  local total
  total=$(grep -E '^totals:' "$out" | awk '{print $2}')
  # The window also holds one connection set-up and one extra request; negligible at n=2000.
  printf '%-34s %8d instructions/request\n' "$name" $((total / n))
}

mkdir -p "$tmp/cache"
hello_ini() { # PORT [FILTER]
  printf '[app:main]\nuse = egg:hello\n%bgreeting = %s\n\n' "${2:+filter-with = cache\n}" "$page"
  if [ -n "${2:-}" ]; then
    printf '[filter:cache]\nuse = egg:wsgi_cache#middleware\ncache_dir = %s\n\n' "$tmp/cache"
  fi
  printf "$server\n" "$1"
}

echo "callgrind, $n keep-alive requests each, 2 KiB bodies"
p=$(port); hello_ini "$p" >"$tmp/hello.ini"
measure "hello via plugin ABI" / "$p" target/release/plughost serve "$tmp/hello.ini"
p=$(port); hello_ini "$p" cache >"$tmp/hit.ini"
measure "cache memory hit" / "$p" target/release/plughost serve "$tmp/hit.ini"
p=$(port)
measure "bare hyper (baseline)" / "$p" target/release/baseline --port "$p" --size 2048
