#!/usr/bin/env bash
# Unary gRPC through the mesh against nginx `grpc_pass`, same machine, same run, same
# open-loop load generator (lucid-grpc-load: a call every 1/RATE s on a fixed schedule,
# latency from the scheduled start):
#   direct  load -> app (h2c)
#   lucid   load -> lucid-proxy A (outbound, h2c) -> mTLS h2 -> lucid-proxy B -> app (h2c)
#   nginx   load -> nginx A (http2, grpc_pass grpcs://) -> mTLS -> nginx B (ssl http2,
#           ssl_verify_client, grpc_pass grpc://) -> app
# The app is lucid-test-app, which echoes gRPC calls with grpc-status 0 in the trailers; both
# nginx use the mesh's own certificates and verify each other against the mesh root.
# Reports p50/p99/p99.9 at fixed rates, the maximum calls/s (closed loop), and CPU seconds of
# both proxies of a path per 10,000 calls.
#
#   tests/bench/grpc.sh          # RATES="1000 3000" DURATION=10 CONNS=8 CONCURRENCY=64 SIZE=256 PROXY_WORKERS=1
#   SMOKE=1 tests/bench/grpc.sh  # a few seconds, debug build: CI keeps it from rotting
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
RATES=${RATES:-1000 3000}
DURATION=${DURATION:-10}
CONNS=${CONNS:-8}
CONCURRENCY=${CONCURRENCY:-64}
SIZE=${SIZE:-256}
NGINX_WORKERS=${NGINX_WORKERS:-2}
PROXY_WORKERS=${PROXY_WORKERS:-1}
PROFILE=release
if [ -n "${SMOKE:-}" ]; then RATES=200; DURATION=2; PROFILE=debug; fi

for t in nginx curl python3; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install nginx curl)" >&2; exit 1; }
done
flag=(); [ "$PROFILE" = release ] && flag=(--release)
(cd "$root" && cargo build "${flag[@]}" --quiet -p lucid-registry -p lucid-proxy -p lucid-tests \
  --bin lucid-registry --bin lucid-proxy --bin lucid-test-app --bin lucid-grpc-load)
BIN="$root/target/$PROFILE"
W=$(mktemp -d /tmp/lucid-grpc-bench.XXXX)
chmod 755 "$W"
pids=()
cleanup() {
  for n in a b; do [ -f "$W/$n/nginx.pid" ] && kill -TERM "$(cat "$W/$n/nginx.pid")" 2>/dev/null; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"
}
trap cleanup EXIT

mapfile -t P < <(free_ports 12)
HTTP=127.0.0.1:${P[0]}
"$BIN/lucid-registry" --node-id 1 --bootstrap --data-dir "$W/reg" --http-addr "$HTTP" --raft-addr "127.0.0.1:${P[1]}" \
  --dns-addr "127.0.0.1:${P[2]}" --ca-key-secret-file "$(ca_secret "$W/ca.secret")" 2>>"$W/reg.log" &
pids+=($!)
wait_for 300 has_ca_root "$HTTP"

APP=${P[3]}
"$BIN/lucid-test-app" --name b --port "$APP" 2>>"$W/app.log" &
pids+=($!)
wait_for 100 curl -sf "http://127.0.0.1:$APP/health"

"$BIN/lucid-proxy" --service ledger --app-port "$APP" --registry "http://$HTTP" --inbound-addr "127.0.0.1:${P[4]}" \
  --outbound-addr "127.0.0.1:${P[5]}" --admin-addr "127.0.0.1:${P[6]}" --workers "$PROXY_WORKERS" 2>>"$W/b.log" &
B_PID=$!; pids+=($B_PID)
"$BIN/lucid-proxy" --service web --app-port "$APP" --registry "http://$HTTP" --inbound-addr "127.0.0.1:${P[7]}" \
  --outbound-addr "127.0.0.1:${P[8]}" --admin-addr "127.0.0.1:${P[9]}" --workers "$PROXY_WORKERS" 2>>"$W/a.log" &
A_PID=$!; pids+=($A_PID)
wait_for 300 curl -sf "http://127.0.0.1:${P[6]}/ready"
wait_for 300 curl -sf "http://127.0.0.1:${P[9]}/ready"
wait_for 100 curl -sf -H "Host: ledger.lucid.internal" "http://127.0.0.1:${P[8]}/health"

curl -sf "http://$HTTP/v1/connect/ca/roots" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Roots"][0]["RootCert"], end="")' > "$W/root.pem"
for svc in web ledger; do
  curl -sf "http://$HTTP/v1/agent/connect/ca/leaf/$svc" | python3 -c 'import json,sys
v=json.load(sys.stdin); open(sys.argv[1]+".crt","w").write(v["CertPEM"]); open(sys.argv[1]+".key","w").write(v["PrivateKeyPEM"])' "$W/$svc"
done
chmod 644 "$W"/*.crt "$W"/*.key "$W/root.pem"
NGX_A=${P[10]}; NGX_B=${P[11]}
nginx_conf() { # name, http body
  mkdir -p "$W/$1"
  cat > "$W/$1/nginx.conf" <<CONF
worker_processes $NGINX_WORKERS;
daemon off;
pid $W/$1/nginx.pid;
error_log $W/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/$1/body; proxy_temp_path $W/$1/proxy;
  fastcgi_temp_path $W/$1/fcgi; uwsgi_temp_path $W/$1/uwsgi; scgi_temp_path $W/$1/scgi;
  keepalive_requests 1000000;
  $2
}
CONF
}
nginx_conf b "
  upstream app { server 127.0.0.1:$APP; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX_B ssl http2;
    ssl_protocols TLSv1.3; ssl_certificate $W/ledger.crt; ssl_certificate_key $W/ledger.key;
    ssl_client_certificate $W/root.pem; ssl_verify_client on;
    location / { grpc_pass grpc://app; }
  }"
nginx_conf a "
  upstream ledger { server 127.0.0.1:$NGX_B; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX_A http2;
    location / { grpc_pass grpcs://ledger;
      grpc_ssl_certificate $W/web.crt; grpc_ssl_certificate_key $W/web.key;
      grpc_ssl_trusted_certificate $W/root.pem; grpc_ssl_verify on; grpc_ssl_name ledger.lucid.internal;
      grpc_ssl_server_name on; grpc_ssl_protocols TLSv1.3; grpc_ssl_session_reuse on; }
  }"
nginx -c "$W/b/nginx.conf" -e "$W/b/error.log" & pids+=($!)
nginx -c "$W/a/nginx.conf" -e "$W/a/error.log" & pids+=($!)
ngx_pids() { for n in a b; do m=$(cat "$W/$n/nginx.pid" 2>/dev/null) || continue; echo "$m"; pgrep -P "$m"; done; }
wait_for 100 "$BIN/lucid-grpc-load" --target "127.0.0.1:$NGX_A" --authority ledger.lucid.internal --rate 10 --duration 0.2 --conns 1

cpu_ticks() { local t=0; for p in "$@"; do s=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0); t=$((t + s)); done; echo $t; }
HZ=$(getconf CLK_TCK)

# run NAME TARGET RATE(0 = closed loop) PIDS...: "ok failed p50 p99 p999 rps cpu_s_per_10k"
run() {
  local name=$1 target=$2 rate=$3; shift 3
  local before; before=$(cpu_ticks "$@")
  "$BIN/lucid-grpc-load" --target "$target" --authority ledger.lucid.internal --size "$SIZE" \
    --rate "$rate" --duration "$DURATION" --conns "$CONNS" --concurrency "$CONCURRENCY" > "$W/$name-$rate.json"
  local after; after=$(cpu_ticks "$@")
  python3 - "$W/$name-$rate.json" "$((after - before))" "$HZ" <<'PY'
import json, sys
v = json.load(open(sys.argv[1])); ticks, hz = int(sys.argv[2]), int(sys.argv[3])
if v["failed"]:
    print(f'{sys.argv[1]}: {v["failed"]} failed, first: {v["first_error"]}', file=sys.stderr)
cpu = ticks / hz / max(v["ok"], 1) * 10000
print(f'{v["ok"]} {v["failed"]} {v["p50_ms"]:.3f} {v["p99_ms"]:.3f} {v["p999_ms"]:.3f} {v["rps"]:.0f} {cpu:.3f}')
PY
}

declare -A R
for rate in $RATES 0; do
  R[direct-$rate]=$(run direct "127.0.0.1:$APP" "$rate")
  R[lucid-$rate]=$(run lucid "127.0.0.1:${P[8]}" "$rate" $A_PID $B_PID)
  R[nginx-$rate]=$(run nginx "127.0.0.1:$NGX_A" "$rate" $(ngx_pids))
  echo "rate $rate: direct ${R[direct-$rate]} | lucid ${R[lucid-$rate]} | nginx ${R[nginx-$rate]}" >&2
done

field() { echo "$1" | awk -v i="$2" '{print $i}'; }
echo
echo "| path, rate | ok / failed | p50 / p99 / p99.9 ms | CPU s per 10k calls (proxies) |"
echo "|---|---|---|---|"
for rate in $RATES; do
  for path in direct lucid nginx; do
    r=${R[$path-$rate]}; cpu=$(field "$r" 7); [ $path = direct ] && cpu="-"
    echo "| $path, $rate/s | $(field "$r" 1) / $(field "$r" 2) | $(field "$r" 3) / $(field "$r" 4) / $(field "$r" 5) | $cpu |"
  done
done
echo
echo "| path | max calls/s (closed loop, $CONCURRENCY in flight, ${DURATION}s) | p99 ms | failed | CPU s per 10k calls (proxies) |"
echo "|---|---|---|---|---|"
for path in direct lucid nginx; do
  r=${R[$path-0]}; cpu=$(field "$r" 7); [ $path = direct ] && cpu="-"
  echo "| $path | $(field "$r" 6) | $(field "$r" 4) | $(field "$r" 2) | $cpu |"
done
echo
echo "unary calls of $SIZE bytes over $CONNS h2c connections; commit $(git -C "$root" rev-parse --short HEAD), $(nproc) cores, $(nginx -v 2>&1 | sed 's/.*\///') with $NGINX_WORKERS workers each, lucid-proxy --workers $PROXY_WORKERS each, $PROFILE build"
