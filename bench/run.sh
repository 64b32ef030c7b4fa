#!/usr/bin/env bash
# Palisade benchmark: the same route through Palisade, nginx and HAProxy, and a direct
# connection, measured in the same run with the same load generator and equal workers.
#
#   bench/run.sh [--duration 5] [--reps 3] [--connections 32] [--targets direct,nginx,palisade]
#
# `palisade+sidecar_pair` is a call through two sidecars (mutual TLS between them).
# Four scenarios: a small GET and a 2 KiB JSON POST on kept-alive connections, a small GET
# on a new connection per request (plain proxies only), and a SOAP call (a GetOrder envelope
# POSTed to the plain proxies and to the SOAP routes). Each reports rps, p50, p99 and
# p99.9, ratios against direct, nginx and Palisade's plain proxy, and the plain proxy
# against nginx pair by pair.
#
# nginx and HAProxy do the plain proxy's job: they set the same forwarding headers
# (X-Forwarded-For, Forwarded, X-Forwarded-Proto, X-Forwarded-Host) and pass on or make an
# X-Request-Id that they also return. `nginx-xff` is nginx setting X-Forwarded-For only, the
# lighter job many nginx examples show, kept as a reference.
#
# --targets measures only the named rows (direct, nginx and palisade are always kept, as
# the ratios need them), for more repetitions of a focused comparison in the same time.
#
# Everything listens on 127.0.0.1, every run is bounded by --duration, and every process
# started here is stopped by its PID on exit. Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=5
REPS=3
CONNS=32
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --connections) CONNS="$2"; shift 2 ;;
    --targets) ONLY="$2"; shift 2 ;;
    *) echo "usage: bench/run.sh [--duration S] [--reps N] [--connections C] [--targets A,B,...]" >&2; exit 2 ;;
  esac
done

missing=()
for tool in nginx haproxy wrk redis-server curl; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
# nginx + ModSecurity v3 + the OWASP Core Rule Set, the open-source WAF a chain is compared with
[ -f /usr/lib/nginx/modules/ngx_http_modsecurity_module.so ] || missing+=(libnginx-mod-http-modsecurity)
[ -f /etc/modsecurity/crs/crs-setup.conf ] || missing+=(modsecurity-crs)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "==> building palisade and the hyper-floor baseline (release)" >&2
cargo build --release --locked -q -p palisade -p hyper-floor
BIN="$PWD/target/release/palisade"
FLOOR="$PWD/target/release/hyper-floor"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

UP=18080; NGINX=18081; HAPROXY=18082; PALISADE=18083; FLOORPORT=18084; PALISADE_RL=18085
PALISADE_REDIS=18086; REDIS=18087; PALISADE_ID=18088; PALISADE_CHAIN=18089; NGINX_WAF=18090
NGINX_XFF=18091; PALISADE_SIG=18092; PALISADE_SOAP=18093; MESH_OUT=18094; MESH_IN=18095
MESH_ADMIN_A=18096; MESH_ADMIN_B=18097

# The upstream: nginx answering a small JSON body, one worker.
mkdir -p "$WORK/up"
cat > "$WORK/up/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP;
    location / { default_type application/json; return 200 '{"ok":true,"service":"bench"}'; }
    # what a proxy in front passed on, for the same-job check below
    location = /same-job { return 200 "xff=\$http_x_forwarded_for|fwd=\$http_forwarded|proto=\$http_x_forwarded_proto|host=\$http_x_forwarded_host|rid=\$http_x_request_id"; }
  }
}
CONF
nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" -g 'daemon off;' & PIDS+=($!)

# The request headers every proxy here adds, as Palisade's plain proxy does by default, so
# that all of them do the same job: X-Forwarded-For, Forwarded, X-Forwarded-Proto and -Host,
# and an X-Request-Id (the client's, else a new one) sent upstream and returned to the client.
SAME_JOB='      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=\"$http_host\"";
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Request-Id $rid;
      add_header X-Request-Id $rid always;'
# The lighter job nginx examples usually show: X-Forwarded-For only (the `nginx-xff` row).
XFF_ONLY='      proxy_set_header X-Forwarded-For $remote_addr;'

# nginx as a proxy of the upstream, one worker, upstream keep-alive, started in $WORK/$1 on
# port $2; $3 goes before the main context (a module to load), $4 into the server block, $5
# is the request headers it sets (SAME_JOB unless given).
start_nginx_proxy() {
  local dir="$WORK/$1"
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<CONF
${3:-}
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_buffer_size 16k;
  map \$http_x_request_id \$rid { default \$http_x_request_id; "" \$request_id; }
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$2;
${4:-}
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
${5:-$SAME_JOB}
    }
  }
}
CONF
  nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;' & PIDS+=($!)
}

# nginx as the proxy under test, doing the same job; and with X-Forwarded-For only.
start_nginx_proxy px "$NGINX"
start_nginx_proxy pxf "$NGINX_XFF" "" "" "$XFF_ONLY"

# HAProxy: one thread, connection reuse, the same job.
cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
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
haproxy -f "$WORK/haproxy.cfg" -db & PIDS+=($!)

# Palisade: one worker thread, the plain proxy (no policies), access log off like the others.
cat > "$WORK/palisade.yaml" <<CONF
runtime: {workers: 1, watch: false}
log: {access: "off"}
limits: {max_connections: 100000, max_in_flight: 100000}
listeners: [{name: bench, listen: "127.0.0.1:$PALISADE"}]
upstreams:
  app: {targets: ["http://127.0.0.1:$UP"]}
routes:
  - {name: plain, upstream: app, public: true}
CONF
PALISADE_LOG=warn "$BIN" run --config "$WORK/palisade.yaml" & PIDS+=($!)

# Palisade with a local rate limit on every request (set high so that nothing is refused:
# this measures what the check costs).
cat > "$WORK/palisade-rl.yaml" <<CONF
runtime: {workers: 1, watch: false}
log: {access: "off"}
limits: {max_connections: 100000, max_in_flight: 100000}
listeners: [{name: bench, listen: "127.0.0.1:$PALISADE_RL"}]
upstreams:
  app: {targets: ["http://127.0.0.1:$UP"]}
routes:
  - name: limited
    upstream: app
    public: true
    policies:
      - {type: rate_limit, key: client_ip, limits: [{requests: 100000000, per: 1s}, {requests: 1000000000, per: 1h}]}
CONF
PALISADE_LOG=warn "$BIN" run --config "$WORK/palisade-rl.yaml" & PIDS+=($!)

# The same limit shared through Redis (one Lua call per request), with its own redis-server.
redis-server --bind 127.0.0.1 --port "$REDIS" --save "" --appendonly no --dir "$WORK" >/dev/null & PIDS+=($!)
cat > "$WORK/palisade-redis.yaml" <<CONF
runtime: {workers: 1, watch: false}
log: {access: "off"}
limits: {max_connections: 100000, max_in_flight: 100000}
redis: {url: "redis://127.0.0.1:$REDIS"}
listeners: [{name: bench, listen: "127.0.0.1:$PALISADE_REDIS"}]
upstreams:
  app: {targets: ["http://127.0.0.1:$UP"]}
routes:
  - name: limited
    upstream: app
    public: true
    policies:
      - {type: rate_limit, key: client_ip, store: redis, on_store_error: fail_closed,
         limits: [{requests: 100000000, per: 1s}, {requests: 1000000000, per: 1h}]}
CONF
PALISADE_LOG=warn "$BIN" run --config "$WORK/palisade-redis.yaml" & PIDS+=($!)

# nginx + ModSecurity + OWASP CRS (paranoia level 1, anomaly threshold 5, blocking), with the
# JSON body processor on, in front of the same upstream: one worker.
mkdir -p "$WORK/waf"
cat > "$WORK/waf/modsec.conf" <<CONF
Include /etc/nginx/modsecurity.conf
SecRuleEngine On
SecAuditEngine Off
SecResponseBodyAccess Off
Include /etc/modsecurity/crs/crs-setup.conf
Include /usr/share/modsecurity-crs/rules/*.conf
CONF
start_nginx_proxy waf "$NGINX_WAF" \
  "load_module /usr/lib/nginx/modules/ngx_http_modsecurity_module.so;" \
  "    modsecurity on;
    modsecurity_rules_file $WORK/waf/modsec.conf;"

# Identity: one gateway with an API-key route and JWT routes (RS256, ES256), each JWT route
# with and without the verified-token cache. Keys and tokens are made here (node), the API
# key with `palisade keys new`.
node bench/mint-tokens.mjs "$WORK"
KEYS_OUT=$("$BIN" keys new)
API_KEY=$(echo "$KEYS_OUT" | sed -n 2p | tr -d ' ')
API_HASH=$(echo "$KEYS_OUT" | grep -o 'sha256:[0-9a-f]*')
cat > "$WORK/palisade-id.yaml" <<CONF
runtime: {workers: 1, watch: false}
log: {access: "off"}
limits: {max_connections: 100000, max_in_flight: 100000}
listeners: [{name: bench, listen: "127.0.0.1:$PALISADE_ID"}]
upstreams:
  app: {targets: ["http://127.0.0.1:$UP"]}
consumers: [{name: bench, api_keys: [{hash: "$API_HASH"}]}]
issuers:
  bench: {issuer: "https://bench.local", audiences: [bench], jwks_file: jwks.json}
routes:
  - {name: apikey, match: {path_prefix: /apikey}, upstream: app, policies: [{type: api_key}]}
  - {name: jwt, match: {path_prefix: /jwt}, upstream: app, policies: [{type: jwt, issuers: [bench]}]}
  - {name: jwt-nocache, match: {path_prefix: /nocache}, upstream: app, policies: [{type: jwt, issuers: [bench], cache: false}]}
CONF
PALISADE_LOG=warn "$BIN" run --config "$WORK/palisade-id.yaml" & PIDS+=($!)
RS256=$(cat "$WORK/rs256.txt"); ES256=$(cat "$WORK/es256.txt")
declare -A PATHS HEADERS
PATHS[palisade+api_key]=/apikey;          HEADERS[palisade+api_key]="x-api-key: $API_KEY"
PATHS[palisade+jwt_rs256]=/jwt;           HEADERS[palisade+jwt_rs256]="Authorization: Bearer $RS256"
PATHS[palisade+jwt_rs256_nocache]=/nocache; HEADERS[palisade+jwt_rs256_nocache]="Authorization: Bearer $RS256"
PATHS[palisade+jwt_es256]=/jwt;           HEADERS[palisade+jwt_es256]="Authorization: Bearer $ES256"
PATHS[palisade+jwt_es256_nocache]=/nocache; HEADERS[palisade+jwt_es256_nocache]="Authorization: Bearer $ES256"

# Request signatures (RFC 9421): a GET signed with Ed25519 and one with HMAC-SHA256, made
# by node (bench/sign-requests.mjs), verified on every request. Only the GET scenario: the
# signature of a POST is remembered, so the same one sent twice is refused as a replay.
node bench/sign-requests.mjs "$WORK" "127.0.0.1:$PALISADE_SIG"
cat > "$WORK/palisade-sig.yaml" <<CONF
runtime: {workers: 1, watch: false}
log: {access: "off"}
limits: {max_connections: 100000, max_in_flight: 100000}
listeners: [{name: bench, listen: "127.0.0.1:$PALISADE_SIG"}]
upstreams:
  app: {targets: ["http://127.0.0.1:$UP"]}
consumers:
  - name: bench
    signature_keys:
      - keyid: bench-ed
        alg: ed25519
        public_key: |
$(sed 's/^/          /' "$WORK/sig-ed.pub.pem")
      - {keyid: bench-hmac, alg: hmac-sha256, secret: "\${file:sig-hmac.secret}"}
routes:
  - {name: sig-ed, match: {path_prefix: /sig-ed}, upstream: app, policies: [{type: signature, max_age: 1h}]}
  - {name: sig-hmac, match: {path_prefix: /sig-hmac}, upstream: app, policies: [{type: signature, max_age: 1h}]}
CONF
PALISADE_LOG=warn "$BIN" run --config "$WORK/palisade-sig.yaml" & PIDS+=($!)
PATHS[palisade+sig_ed25519]=/sig-ed;      HEADERS[palisade+sig_ed25519]=$(cat "$WORK/sig-ed.headers")
PATHS[palisade+sig_hmac]=/sig-hmac;       HEADERS[palisade+sig_hmac]=$(cat "$WORK/sig-hmac.headers")

# The full chain on one route: JWT (ES256, cached) + rate limit + OpenAPI contract
# (bench/chain-api.yaml: the JSON body validated) + injection detection on every input.
cp bench/chain-api.yaml "$WORK/chain-api.yaml"
cat > "$WORK/palisade-chain.yaml" <<CONF
runtime: {workers: 1, watch: false}
log: {access: "off"}
limits: {max_connections: 100000, max_in_flight: 100000}
listeners: [{name: bench, listen: "127.0.0.1:$PALISADE_CHAIN"}]
upstreams:
  app: {targets: ["http://127.0.0.1:$UP"]}
issuers:
  bench: {issuer: "https://bench.local", audiences: [bench], jwks_file: jwks.json}
routes:
  - name: chain
    match: {path_prefix: /chain}
    upstream: app
    strip_prefix: true
    policies:
      - {type: jwt, issuers: [bench]}
      - {type: rate_limit, key: client_ip, limits: [{requests: 100000000, per: 1s}]}
      - {type: contract, spec: chain-api.yaml, base_path: /chain}
      - {type: threat}
CONF
PALISADE_LOG=warn "$BIN" run --config "$WORK/palisade-chain.yaml" & PIDS+=($!)
PATHS[palisade+chain]=/chain;             HEADERS[palisade+chain]="Authorization: Bearer $ES256"

# SOAP: a route with XML limits, the WSDL contract with its schema and injection detection,
# and the same with WS-Security X.509 signatures (a GetOrder envelope zeep signs with
# xmlsec, once: a signed message may be sent again within its Timestamp's window).
PY="$PWD/target/pyenv/bin/python3"
if ! "$PY" -c 'import zeep, xmlsec' 2>/dev/null; then
  echo "==> Python packages for the SOAP signer (target/pyenv)" >&2
  [ -x "$PY" ] || python3 -m venv target/pyenv
  target/pyenv/bin/pip install --quiet -r crates/palisade/tests/python/requirements.txt
fi
cp examples/demo-orders.wsdl "$WORK/orders.wsdl"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -days 2 -subj "/CN=bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$WORK/signer.key" -out "$WORK/signer.csr" -subj "/CN=bench-signer" 2>/dev/null
printf "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n" > "$WORK/signer.ext"
openssl x509 -req -in "$WORK/signer.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -out "$WORK/signer.pem" -days 2 -extfile "$WORK/signer.ext" 2>/dev/null
"$PY" crates/palisade/tests/python/wssec_sign.py "$WORK/signer.key" "$WORK/signer.pem" \
  '<GetOrder xmlns="urn:demo:orders"><id>7</id></GetOrder>' soap11 86400 \
  | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["envelope"], end="")' > "$WORK/soap-x509.xml"
printf '%s' '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><GetOrder xmlns="urn:demo:orders"><id>7</id></GetOrder></s:Body></s:Envelope>' > "$WORK/soap-plain.xml"
cat > "$WORK/palisade-soap.yaml" <<CONF
runtime: {workers: 1, watch: false}
log: {access: "off"}
limits: {max_connections: 100000, max_in_flight: 100000}
listeners: [{name: bench, listen: "127.0.0.1:$PALISADE_SOAP"}]
upstreams:
  app: {targets: ["http://127.0.0.1:$UP"]}
consumers: [{name: bench, certificates: [bench-signer]}]
routes:
  - name: soap
    match: {path_prefix: /soap}
    upstream: app
    public: true
    policies: [{type: xml_protection}, {type: soap_contract, wsdl: orders.wsdl}, {type: threat}]
  - name: soap-x509
    match: {path_prefix: /x509}
    upstream: app
    policies:
      - {type: xml_protection}
      - {type: ws_security, x509: {ca: ca.pem}, max_age: 1d}
      - {type: soap_contract, wsdl: orders.wsdl}
      - {type: threat}
CONF
PALISADE_LOG=warn "$BIN" run --config "$WORK/palisade-soap.yaml" & PIDS+=($!)
PATHS[palisade+soap]=/soap
PATHS[palisade+soap_x509]=/x509

# A sidecar pair (docs/mesh.md): the client is service A and calls its sidecar's outbound
# listener in plain HTTP (Host `app`); A's sidecar calls B's sidecar over mutual TLS with A's
# SVID and checks B's SPIFFE ID; B's sidecar checks A's SVID, authorises it and calls the
# upstream. Two processes, one worker each; SVIDs are P-256, made with openssl.
for who in a b; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/svid-$who.key" \
    -out "$WORK/svid-$who.csr" -subj "/O=bench" 2>/dev/null
  printf "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:spiffe://bench.test/sa/$who\n" > "$WORK/svid-$who.ext"
  openssl x509 -req -in "$WORK/svid-$who.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -out "$WORK/svid-$who.pem" -days 2 -extfile "$WORK/svid-$who.ext" 2>/dev/null
  chmod 600 "$WORK/svid-$who.key"
done
cat > "$WORK/mesh-a.yaml" <<CONF
runtime: {workers: 1, watch: false, state_dir: mesh-a-state}
admin: {listen: "127.0.0.1:$MESH_ADMIN_A"}
log: {access: "off"}
limits: {max_connections: 100000, max_in_flight: 100000}
mesh:
  identity: {cert: svid-a.pem, key: svid-a.key, bundle: ca.pem}
  outbound:
    listen: "127.0.0.1:$MESH_OUT"
    destinations:
      app: {targets: ["https://127.0.0.1:$MESH_IN"], identities: ["spiffe://bench.test/sa/b"]}
CONF
cat > "$WORK/mesh-b.yaml" <<CONF
runtime: {workers: 1, watch: false, state_dir: mesh-b-state}
admin: {listen: "127.0.0.1:$MESH_ADMIN_B"}
log: {access: "off"}
limits: {max_connections: 100000, max_in_flight: 100000}
mesh:
  identity: {cert: svid-b.pem, key: svid-b.key, bundle: ca.pem}
  inbound:
    listen: "127.0.0.1:$MESH_IN"
    service: "http://127.0.0.1:$UP"
    allow: [{services: ["spiffe://bench.test/sa/a"]}]
CONF
PALISADE_LOG=warn "$BIN" run --config "$WORK/mesh-a.yaml" & PIDS+=($!)
PALISADE_LOG=warn "$BIN" run --config "$WORK/mesh-b.yaml" & PIDS+=($!)
HEADERS[palisade+sidecar_pair]="Host: app"

# The smallest hyper proxy (bench/hyper-floor): the HTTP engine alone, without Palisade.
"$FLOOR" "127.0.0.1:$FLOORPORT" "127.0.0.1:$UP" & PIDS+=($!)

for port in $UP $NGINX $NGINX_XFF $HAPROXY $PALISADE $FLOORPORT $PALISADE_RL $REDIS $PALISADE_REDIS $PALISADE_ID $PALISADE_CHAIN $NGINX_WAF $PALISADE_SIG $PALISADE_SOAP $MESH_OUT $MESH_IN; do
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then break; fi
    sleep 0.05
  done
done

# Both firewalls must be armed: the same SQL injection refused by each, a clean request passed.
for t in "palisade+chain:$PALISADE_CHAIN" "nginx+modsecurity_crs:$NGINX_WAF"; do
  n=${t%%:*}; h=(); [ -n "${HEADERS[$n]:-}" ] && h=(-H "${HEADERS[$n]}")
  base="http://127.0.0.1:${t#*:}${PATHS[$n]:-}/bench"
  ok=$(curl -s -o /dev/null -w '%{http_code}' "${h[@]}" -X POST -H 'content-type: application/json' --data '{"data":"hello"}' "$base")
  bad=$(curl -s -o /dev/null -w '%{http_code}' "${h[@]}" -X POST -H 'content-type: application/json' --data "{\"data\":\"1' OR '1'='1\"}" "$base")
  if [ "$ok" != 200 ] || [ "$bad" != 403 ]; then
    echo "$n is not armed: clean POST $ok (want 200), SQL injection $bad (want 403)" >&2
    exit 1
  fi
done

# The proxies compared must do the same job: each passes on all five forwarding and id
# fields, and returns the id it sent upstream to the client.
for t in "nginx:$NGINX" "haproxy:$HAPROXY" "palisade:$PALISADE"; do
  resp=$(curl -s -D - "http://127.0.0.1:${t#*:}/same-job")
  got=$(echo "$resp" | tail -n 1)
  rid=$(echo "$resp" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-request-id"{print $2}')
  if ! [[ "$got" =~ ^xff=127\.0\.0\.1\|fwd=for=127\.0\.0\.1\;proto=http\;host=\"127\.0\.0\.1:[0-9]+\"\|proto=http\|host=127\.0\.0\.1:[0-9]+\|rid=[0-9A-Za-z]+$ ]] \
     || [ -z "$rid" ] || [ "${got##*rid=}" != "$rid" ]; then
    echo "${t%%:*} does not do the same job: upstream saw '$got', client got x-request-id '$rid'" >&2
    exit 1
  fi
done

# The sidecar pair must be armed: A's call passes; the same call straight at B's inbound
# side without a client certificate fails the handshake.
ok=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: app' "http://127.0.0.1:$MESH_OUT/bench")
bad=$(curl -s -o /dev/null -w '%{http_code}' -k "https://127.0.0.1:$MESH_IN/bench" || true)
if [ "$ok" != 200 ] || [ "$bad" != 000 ]; then
  echo "the sidecar pair is not armed: A's call $ok (want 200), without a certificate $bad (want a failed handshake)" >&2
  exit 1
fi

# Both SOAP routes must be armed: the envelope passed, the same with an id off the schema
# refused as a SOAP Fault, and the signed envelope changed by one byte refused.
for t in "soap:soap-plain.xml" "x509:soap-x509.xml"; do
  base="http://127.0.0.1:$PALISADE_SOAP/${t%%:*}/bench"
  hdr=(-H 'content-type: text/xml' -H 'SOAPAction: "urn:demo:orders#GetOrder"')
  ok=$(curl -s -o /dev/null -w '%{http_code}' "${hdr[@]}" --data-binary "@$WORK/${t#*:}" "$base")
  bad=$(sed 's|<id>7</id>|<id>0</id>|' "$WORK/${t#*:}" | curl -s -o /dev/null -w '%{http_code}' "${hdr[@]}" --data-binary @- "$base")
  if [ "$ok" != 200 ] || [ "$bad" = 200 ]; then
    echo "the SOAP route ${t%%:*} is not armed: envelope $ok (want 200), changed $bad (want a refusal)" >&2
    exit 1
  fi
done

head -c 2048 /dev/zero | tr '\0' 'a' | sed 's/^/{"data":"/; s/$/"}/' > "$WORK/body.json"
# wrk prints p99.9 only through a script: every run uses one
cat > "$WORK/tail.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("p99.9 %.0f us\n", latency:percentile(99.9)))
end
LUA
cat > "$WORK/get.lua" <<LUA
dofile("$WORK/tail.lua")
LUA
cat > "$WORK/close.lua" <<LUA
dofile("$WORK/tail.lua")
wrk.headers["Connection"] = "close"
LUA
for f in plain x509; do
cat > "$WORK/soap-$f.lua" <<LUA
dofile("$WORK/tail.lua")
local f = io.open("$WORK/soap-$f.xml", "r")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "text/xml; charset=utf-8"
wrk.headers["SOAPAction"] = '"urn:demo:orders#GetOrder"'
LUA
done
cat > "$WORK/post.lua" <<LUA
dofile("$WORK/tail.lua")
local f = io.open("$WORK/body.json", "r")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
# "steal total" CPU ticks of the whole machine so far (/proc/stat): the share of CPU time the
# hypervisor took from it during a run, since a run on a busy host is slower for reasons of
# its own
cpu_ticks() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
run() { # name port scenario
  local script="$WORK/$3.lua"
  [ "$3" = soap ] && script="$WORK/soap-plain.lua"
  [ "$3:$1" = soap:palisade+soap_x509 ] && script="$WORK/soap-x509.lua"
  local args=(-t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$script")
  while IFS= read -r h; do [ -n "$h" ] && args+=(-H "$h"); done <<< "${HEADERS[$1]:-}"
  local out before after
  before=$(cpu_ticks)
  out=$(wrk "${args[@]}" "http://127.0.0.1:$2${PATHS[$1]:-}/bench" 2>&1)
  after=$(cpu_ticks)
  python3 - "$1" "$3" "$RESULTS" "$before" "$after" <<PY "$out"
import re, sys
name, scenario, path, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[6]
(s0, t0), (s1, t1) = (map(int, v.split()) for v in sys.argv[4:6])
steal = 100 * (s1 - s0) / max(t1 - t0, 1)
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    n, u = float(m.group(1)), m.group(2)
    return {"us": n / 1000, "ms": n, "s": n * 1000, "m": n * 60000}[u]
try:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    p999 = float(re.search(r"^p99\.9 ([\d.]+) us$", out, re.M).group(1)) / 1000
except Exception:
    sys.exit(f"could not read wrk's output for {name} {scenario}:\n{out}")
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
sock = re.search(r"Socket errors: (.*)", out)
bad = int(errs.group(1)) if errs else 0
with open(path, "a") as f:
    f.write(f"{scenario}\t{name}\t{rps}\t{p50}\t{p99}\t{p999}\t{bad}\t{steal:.1f}\t{sock.group(1) if sock else ''}\n")
PY
}

TARGETS=("direct:$UP" "nginx:$NGINX" "nginx-xff:$NGINX_XFF" "haproxy:$HAPROXY" "hyper-floor:$FLOORPORT" "palisade:$PALISADE" "palisade+rate_limit:$PALISADE_RL" "palisade+redis_limit:$PALISADE_REDIS"
         "palisade+api_key:$PALISADE_ID" "palisade+jwt_rs256:$PALISADE_ID" "palisade+jwt_rs256_nocache:$PALISADE_ID" "palisade+jwt_es256:$PALISADE_ID" "palisade+jwt_es256_nocache:$PALISADE_ID"
         "palisade+sig_ed25519:$PALISADE_SIG" "palisade+sig_hmac:$PALISADE_SIG"
         "palisade+chain:$PALISADE_CHAIN" "nginx+modsecurity_crs:$NGINX_WAF"
         "palisade+soap:$PALISADE_SOAP" "palisade+soap_x509:$PALISADE_SOAP" "palisade+sidecar_pair:$MESH_OUT")
if [ -n "$ONLY" ]; then
  kept=()
  for t in "${TARGETS[@]}"; do
    case ",direct,nginx,palisade,$ONLY," in *",${t%%:*},"*) kept+=("$t") ;; esac
  done
  TARGETS=("${kept[@]}")
fi
# `close`: a new connection for every request (clients that do not keep connections
# alive), for the plain proxies only: it measures connection handling, not policies
# `soap`: the plain proxies carry the plain envelope, the SOAP routes their own (the x509
# route the signed one): the lua script of each target is picked below
for scenario in get post close soap; do
  SC_TARGETS=()
  for t in "${TARGETS[@]}"; do
    case "$scenario:${t%%:*}" in
      soap:direct | soap:nginx | soap:palisade | soap:palisade+soap | soap:palisade+soap_x509) SC_TARGETS+=("$t") ;;
      soap:* | *:palisade+soap*) ;;
      close:palisade+* | close:nginx+* | post:palisade+sig_*) ;;
      *) SC_TARGETS+=("$t") ;;
    esac
  done
  # warm every target once, then interleave the measured repetitions
  for t in "${SC_TARGETS[@]}"; do
    n=${t%%:*}; h=()
    while IFS= read -r x; do [ -n "$x" ] && h+=(-H "$x"); done <<< "${HEADERS[$n]:-}"
    wrk -t1 -c"$CONNS" -d1s "${h[@]}" "http://127.0.0.1:${t#*:}${PATHS[$n]:-}/warm" >/dev/null 2>&1 || true
  done
  for rep in $(seq 1 "$REPS"); do
    for t in "${SC_TARGETS[@]}"; do
      echo "==> $scenario rep $rep/$REPS: ${t%%:*}" >&2
      run "${t%%:*}" "${t#*:}" "$scenario"
    done
  done
done

python3 - "$RESULTS" "$DURATION" "$REPS" "$CONNS" <<'PY'
import statistics, sys
from collections import defaultdict, namedtuple
path, dur, reps, conns = sys.argv[1:5]
Run = namedtuple("Run", "rps p50 p99 p999 bad sock steal")
rows = defaultdict(list)
STEAL_CALM = 2.0
for line in open(path):
    sc, name, rps, p50, p99, p999, bad, steal, sock = line.rstrip("\n").split("\t")
    rows[(sc, name)].append(Run(float(rps), float(p50), float(p99), float(p999), int(bad), sock, float(steal)))
stolen = [r.steal for runs in rows.values() for r in runs]
order = ["direct", "nginx", "nginx-xff", "haproxy", "hyper-floor", "palisade", "palisade+rate_limit", "palisade+redis_limit",
         "palisade+api_key", "palisade+jwt_rs256", "palisade+jwt_rs256_nocache", "palisade+jwt_es256", "palisade+jwt_es256_nocache",
         "palisade+sig_ed25519", "palisade+sig_hmac", "palisade+chain", "nginx+modsecurity_crs",
         "palisade+soap", "palisade+soap_x509", "palisade+sidecar_pair"]
titles = {"get": "small GET", "post": "2 KiB JSON POST",
          "close": "small GET, a new connection per request (Connection: close)",
          "soap": "SOAP GetOrder (xml_protection + soap_contract with its schema + threat; _x509: + ws_security X.509 signature)"}

def paired(pairs):
    """Median pairwise rps and p99 ratios, and in how many pairs Palisade's p99 is at or below."""
    return (statistics.median(p.rps / q.rps for p, q in pairs),
            statistics.median(p.p99 / q.p99 for p, q in pairs),
            sum(p.p99 <= q.p99 for p, q in pairs))

for sc in ["get", "post", "close", "soap"]:
    present = [n for n in order if rows[(sc, n)]]
    med = {n: statistics.median(r.rps for r in rows[(sc, n)]) for n in present}
    bases = [b for b in ["direct", "nginx", "nginx-xff", "hyper-floor", "palisade", "nginx+modsecurity_crs"] if b in med]
    print(f"\n### {titles[sc]} (wrk -t1 -c{conns} -d{dur}s, {reps} interleaved reps, median and spread)\n")
    print("| target | rps (median) | rps spread | p50 ms | p99 ms | p99.9 ms | " + " | ".join(f"vs {b}" for b in bases) + " | non-2xx |")
    print("|---|---|---|---|---|---|" + "---|" * len(bases) + "---|")
    for n in present:
        r = rows[(sc, n)]
        rps = [x.rps for x in r]
        p50 = statistics.median(x.p50 for x in r)
        p99 = statistics.median(x.p99 for x in r)
        p999 = statistics.median(x.p999 for x in r)
        bad = sum(x.bad for x in r)
        ratios = " | ".join(f"{med[n]/med[b]:.2f}" for b in bases)
        print(f"| {n} | {med[n]:,.0f} | {min(rps):,.0f}–{max(rps):,.0f} | {p50:.2f} | {p99:.2f} | {p999:.2f} | {ratios} | {bad} |")
    # the plain proxy against nginx rep by rep (each pair ran back to back, so the pairwise
    # ratio is the fairest tail comparison): nginx doing the same job, then X-Forwarded-For only
    for ref in ["nginx", "nginx-xff"]:
        pairs = list(zip(rows[(sc, "palisade")], rows[(sc, ref)]))
        if not pairs:
            continue
        print(f"\npalisade / {ref}, rep by rep: rps " + ", ".join(f"{p.rps/q.rps:.2f}x" for p, q in pairs)
              + "; p99 " + ", ".join(f"{p.p99:.2f}/{q.p99:.2f} ms" for p, q in pairs)
              + "; steal " + ", ".join(f"{p.steal:.1f}/{q.steal:.1f} %" for p, q in pairs))
        rps_ratio, r99, le = paired(pairs)
        r999 = statistics.median(p.p999 / q.p999 for p, q in pairs)
        print(f"palisade p99 at or below {ref}'s in {le} of {len(pairs)} reps; median pairwise ratio rps "
              f"{rps_ratio:.2f}x, p99 {r99:.2f}, p99.9 {r999:.2f}")
        # a pair where the hypervisor took CPU from either run measures the host, not the proxies
        calm = [(p, q) for p, q in pairs if max(p.steal, q.steal) < STEAL_CALM]
        if calm and len(calm) < len(pairs):
            rps_ratio, r99, le = paired(calm)
            print(f"pairs with under {STEAL_CALM:g} % steal in both runs ({len(calm)} of {len(pairs)}): median rps ratio "
                  f"{rps_ratio:.2f}x, p99 ratio {r99:.2f}, p99 at or below {ref}'s in {le}")
if stolen:
    print(f"\nCPU time taken by the hypervisor during the runs (steal): median {statistics.median(stolen):.1f} %, "
          f"max {max(stolen):.1f} % of the machine; figures from a run with much steal are not comparable to others")
PY
