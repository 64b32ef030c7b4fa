#!/usr/bin/env bash
# Scaling and memory: Palisade with `workers: 2` against nginx with 2 workers and HAProxy with
# 2 threads, same run, on this 2-core machine (the load generator and the upstream share the
# cores: say so with the figures); then memory per idle keep-alive connection and for 10,000
# open ones, against nginx (HAProxy would need more open files than the machine allows).
#
#   bench/scaling.sh [--duration 5] [--reps 3] [--connections 64] [--idle 10000]
#
# Every proxy does the same job as in bench/run.sh (forwarding headers and a request id),
# access logs off. Everything listens on 127.0.0.1, runs bounded, and is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=5
REPS=3
CONNS=64
IDLE=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --connections) CONNS="$2"; shift 2 ;;
    --idle) IDLE="$2"; shift 2 ;;
    *) echo "usage: bench/scaling.sh [--duration S] [--reps N] [--connections C] [--idle N]" >&2; exit 2 ;;
  esac
done
for tool in nginx haproxy wrk python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "needs $tool (bench/run.sh installs it)" >&2; exit 2; }
done
echo "==> building palisade (release)" >&2
cargo build --release --locked -q -p palisade
BIN="$PWD/target/release/palisade"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

UP=18180; NGINX=18181; HAPROXY=18182; PALISADE=18183

mkdir -p "$WORK/up" "$WORK/px"
cat > "$WORK/up/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '{"ok":true,"service":"bench"}'; } }
}
CONF
nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" -g 'daemon off;' & PIDS+=($!)

cat > "$WORK/px/nginx.conf" <<CONF
worker_processes 2;
worker_rlimit_nofile 65536;
pid $WORK/px/nginx.pid;
error_log $WORK/px/error.log warn;
events { worker_connections 32768; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  map \$http_x_request_id \$rid { default \$http_x_request_id; "" \$request_id; }
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header Forwarded "for=\$remote_addr;proto=\$scheme;host=\"\$http_host\"";
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Request-Id \$rid;
      add_header X-Request-Id \$rid always;
    }
  }
}
CONF
nginx -c "$WORK/px/nginx.conf" -p "$WORK/px" -g 'daemon off;' & NGINX_PID=$!; PIDS+=($NGINX_PID)

cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 2
  # two descriptors a connection: within this machine's limit of open files
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 30s
  timeout http-keep-alive 300s
  http-reuse always
  option forwardfor
  unique-id-format %{+X}o%ci%cp%fi%fp%Ts%rt%pid
frontend fe
  bind 127.0.0.1:$HAPROXY
  http-request set-header X-Request-Id %[unique-id] unless { req.hdr(x-request-id) -m found }
  http-request set-var(txn.rid) req.hdr(x-request-id)
  http-request set-header Forwarded "for=%[src];proto=http;host=\\"%[req.hdr(host)]\\""
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-response set-header X-Request-Id %[var(txn.rid)]
  default_backend be
backend be
  server up 127.0.0.1:$UP
CONF
haproxy -f "$WORK/haproxy.cfg" -db & HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)

cat > "$WORK/palisade.yaml" <<CONF
runtime: {workers: 2, watch: false}
log: {access: "off"}
limits: {max_connections: 100000, max_in_flight: 100000, idle_timeout: 300s}
listeners: [{name: bench, listen: "127.0.0.1:$PALISADE"}]
upstreams:
  app: {targets: ["http://127.0.0.1:$UP"]}
routes:
  - {name: plain, upstream: app, public: true}
CONF
PALISADE_LOG=warn "$BIN" run --config "$WORK/palisade.yaml" & PALISADE_PID=$!; PIDS+=($PALISADE_PID)

for port in $UP $NGINX $HAPROXY $PALISADE; do
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
done

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
for rep in $(seq 1 "$REPS"); do
  for t in "direct:$UP" "nginx:$NGINX" "haproxy:$HAPROXY" "palisade:$PALISADE"; do
    echo "==> rep $rep/$REPS: ${t%%:*}" >&2
    out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:${t#*:}/bench" 2>&1)
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    p99=$(echo "$out" | awk '$1=="99%"{print $2}')
    p50=$(echo "$out" | awk '$1=="50%"{print $2}')
    printf '%s\t%s\t%s\t%s\n' "${t%%:*}" "$rps" "$p50" "$p99" >> "$RESULTS"
  done
done

# Memory: the resident set of each proxy (all its processes) with no client, then with
# $IDLE idle keep-alive connections that each made one request.
rss_kib() { # pids...
  local total=0
  for p in "$@"; do
    for q in $p $(pgrep -P "$p" || true); do
      total=$((total + $(awk '/^VmRSS/{print $2}' "/proc/$q/status" 2>/dev/null || echo 0)))
    done
  done
  echo "$total"
}
MEM="$WORK/memory.tsv"
: > "$MEM"
# (HAProxy is left out here: its maxconn must stay within the machine's open-file limit)
for t in "nginx:$NGINX:$NGINX_PID" "palisade:$PALISADE:$PALISADE_PID"; do
  IFS=: read -r name port pid <<< "$t"
  sleep 1
  before=$(rss_kib "$pid")
  python3 - "$port" "$IDLE" "$WORK/hold-$name" <<'PY' &
import socket, sys, time, os
port, n, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
req = b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    socks.append(s)
for s in socks:
    s.settimeout(10)
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
open(flag, "w").write(str(len(socks)))
time.sleep(30)
PY
  holder=$!
  for _ in $(seq 1 600); do [ -f "$WORK/hold-$name" ] && break; sleep 0.1; done
  sleep 1
  after=$(rss_kib "$pid")
  kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true
  printf '%s\t%s\t%s\n' "$name" "$before" "$after" >> "$MEM"
done

python3 - "$RESULTS" "$MEM" "$DURATION" "$REPS" "$CONNS" "$IDLE" <<'PY'
import statistics, sys
res, mem, dur, reps, conns, idle = sys.argv[1:7]
def ms(v):
    n = float(v.rstrip("usm")); return n / 1000 if v.endswith("us") else (n * 1000 if v.endswith("s") and not v.endswith("ms") else n)
rows = {}
for line in open(res):
    name, rps, p50, p99 = line.split("\t")
    rows.setdefault(name, []).append((float(rps), ms(p50.strip()), ms(p99.strip())))
print(f"\n#### 2 workers each, small GET (wrk -t2 -c{conns} -d{dur}s, {reps} interleaved reps, median)\n")
print("| target | rps (median) | rps spread | p50 ms | p99 ms | vs direct | vs nginx | vs haproxy |")
print("|---|---|---|---|---|---|---|---|")
med = {n: statistics.median(r[0] for r in v) for n, v in rows.items()}
for n in ["direct", "nginx", "haproxy", "palisade"]:
    v = rows[n]
    print(f"| {n} | {med[n]:,.0f} | {min(r[0] for r in v):,.0f}–{max(r[0] for r in v):,.0f} | "
          f"{statistics.median(r[1] for r in v):.2f} | {statistics.median(r[2] for r in v):.2f} | "
          f"{med[n]/med['direct']:.2f} | {med[n]/med['nginx']:.2f} | {med[n]/med['haproxy']:.2f} |")
print(f"\n#### Memory with {int(idle):,} idle keep-alive connections (resident set, all processes)\n")
print("| proxy | idle, no client | with the connections | per connection |")
print("|---|---|---|---|")
for line in open(mem):
    name, before, after = line.split("\t")
    b, a = int(before), int(after)
    print(f"| {name} | {b/1024:.1f} MiB | {a/1024:.1f} MiB | {(a-b)*1024/int(idle):,.0f} bytes |")
PY
