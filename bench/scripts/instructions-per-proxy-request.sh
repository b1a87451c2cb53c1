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
# and the client are not. Honours CARGO_TARGET_DIR. SKIP_BUILD=1 reuses the
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
  python3 - "$@" <<'PY'
import http.client, sys, time
port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
deadline = time.time() + 120
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", path); r = c.getresponse(); r.read()
        break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.2)
for _ in range(count):
    c.request("GET", path); r = c.getresponse(); body = r.read()
    assert r.status == 200 and len(body) == 2048, (r.status, len(body))
PY
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

out="$tmp/proxy.callgrind"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
  "$target/release/plughost" serve "$tmp/proxy.ini" >"$tmp/proxy.log" 2>&1 &
pid=$!
client "$p" 200 / # warm up (and wait for it to listen)
callgrind_control -i on "$pid" >/dev/null 2>&1
client "$p" "$n" /
callgrind_control -i off "$pid" >/dev/null 2>&1
kill -TERM "$pid"; wait "$pid" || true
total=$(grep -E '^totals:' "$out" | awk '{print $2}')
# The window also holds one connection set-up and one extra request; negligible at n=2000.
echo "callgrind, $n keep-alive requests, 2 KiB bodies from the baseline backend"
printf '%-34s %8d instructions/request\n' "proxy (egg:plughost#proxy)" $((total / n))
