#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind (repeatable on a noisy
# machine, unlike req/s): a 2 KiB page from the bench's bare hyper baseline
# (native speed, not counted) through `egg:plughost#proxy`, which runs under
# callgrind. Only the proxy process is counted.
#
#     bench/scripts/instructions-per-proxy-request.sh [REQUESTS]
#
# The proxy starts with instrumentation off; after a warm-up (which also fills
# the backend pool) the window of REQUESTS keep-alive requests (one client
# connection, Python's http.client in another process) is counted, so start-up
# and the client are not. With nginx installed, nginx `proxy_pass` to the same
# backend (keep-alive upstream, one worker process, the loadbench front row's
# proxy settings) is counted the same way, for comparison. Honours CARGO_TARGET_DIR. SKIP_BUILD=1 reuses the
# binaries as built; KEEP=1 keeps the callgrind output (for callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-2000}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-target}
[ -n "${SKIP_BUILD:-}" ] ||
  cargo build --release --quiet -p plughost -p plughost-bench --bin plughost --bin baseline
tmp=$(mktemp -d); [ -z "${KEEP:-}" ] || echo "keeping $tmp"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

client() { # PORT COUNT PATH
  python3 "$(dirname "$0")/keepalive_client.py" "$@"
}

# The backend: bare hyper answering 2 KiB from memory, outside valgrind.
bp=$(port)
"$target/release/baseline" --port "$bp" --size 2048 >"$tmp/backend.log" 2>&1 &
client "$bp" 1 / # wait for it to listen

p=$(port)
cat >"$tmp/proxy.ini" <<INI
[app:main]
use = egg:plughost#proxy
address = http://127.0.0.1:$bp/

[server:main]
use = egg:plughost#http
host = 127.0.0.1
port = $p
threads = 8
INI

measure() { # NAME PORT COMMAND...
  local name=$1 p=$2; shift 2
  local out="$tmp/${name%% *}.callgrind"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$@" >"${out%.callgrind}.log" 2>&1 &
  local pid=$!
  client "$p" 200 / # warm up (and wait for it to listen)
  callgrind_control -i on "$pid" >/dev/null 2>&1
  client "$p" "$n" /
  callgrind_control -i off "$pid" >/dev/null 2>&1
  kill -TERM "$pid"; wait "$pid" || true
  local total
  total=$(grep -E '^totals:' "$out" | awk '{print $2}')
  # The window also holds one connection set-up and one extra request; negligible at n=2000.
  printf '%-34s %8d instructions/request\n' "$name" $((total / n))
}

echo "callgrind, $n keep-alive requests, 2 KiB bodies from the baseline backend"
measure "plughost egg:plughost#proxy" "$p" "$target/release/plughost" serve "$tmp/proxy.ini"

if command -v nginx >/dev/null; then
  np=$(port)
  mkdir -p "$tmp/nginx"
  cat >"$tmp/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $tmp/nginx/body; proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi; uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  upstream backend { server 127.0.0.1:$bp; keepalive 64; }
  server {
    listen 127.0.0.1:$np;
    location / {
      proxy_pass http://backend/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$proxy_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_buffering on;
    }
  }
}
CONF
  measure "nginx proxy_pass" "$np" nginx -p "$tmp" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf"
fi
