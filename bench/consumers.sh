#!/usr/bin/env bash
# Start-up time and memory with many consumers and API keys.
#
#   bench/consumers.sh [--keys 100000] [--binary target/release/palisade]
#
# Writes a config with N consumers (one hashed API key each, as `palisade keys new` makes
# them) and one api_key route, then measures with the release binary:
#   - `palisade validate`: wall time and peak RSS;
#   - `palisade run`: time until /readyz answers 200, RSS 2 s later, and RSS after each of
#     two SIGHUP reloads (a reload builds the new config beside the old one).
# Everything listens on 127.0.0.1; the gateway started here is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=100000
BIN=target/release/palisade
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS="$2"; shift 2 ;;
    --binary) BIN="$2"; shift 2 ;;
    *) echo "usage: bench/consumers.sh [--keys N] [--binary PATH]" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || cargo build --release -p palisade >/dev/null
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 2; }

dir=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

port=$((20000 + RANDOM % 10000)); admin=$((port + 1)); up=$((port + 2))
python3 - "$dir/p.yaml" "$KEYS" "$port" "$admin" "$up" <<'PY'
import hashlib, sys
path, n, port, admin, up = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
with open(path, "w") as f:
    f.write(f'admin: {{listen: "127.0.0.1:{admin}"}}\nlog: {{access: "off"}}\n')
    f.write("runtime: {watch: false, workers: 1}\n")
    f.write(f'listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]\n')
    f.write(f'upstreams: {{app: {{targets: ["http://127.0.0.1:{up}"]}}}}\nconsumers:\n')
    for i in range(n):
        h = hashlib.sha256(f"pk_bench_{i}".encode()).hexdigest()
        f.write(f'  - name: c{i}\n    api_keys: [{{hash: "sha256:{h}", label: k{i}}}]\n')
    f.write("routes:\n  - {name: all, match: {path_prefix: /}, upstream: app, policies: [{type: api_key}]}\n")
PY
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' "/proc/$1/status"; }

v=$( { /usr/bin/time -f "%e %M" "$BIN" validate "$dir/p.yaml" >/dev/null; } 2>&1 | tail -1)
echo "keys: $KEYS ($(du -h "$dir/p.yaml" | cut -f1) of YAML)"
echo "validate: $(echo "$v" | awk '{printf "%.2f s, peak %.0f MiB", $1, $2 / 1024}')"

start=$(date +%s%N)
"$BIN" run --config "$dir/p.yaml" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" 2>/dev/null | grep -q 200 && break
  sleep 0.02
done
ready=$(( ($(date +%s%N) - start) / 1000000 ))
sleep 2
echo "run: ready after ${ready} ms; RSS $(rss $pid) after start"
for n in 1 2; do
  kill -HUP "$pid"; sleep 3
  echo "run: RSS $(rss $pid) after reload $n"
done
