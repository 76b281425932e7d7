#!/usr/bin/env bash
# Sidecar data path against nginx, same machine, same run, same open-loop load generator
# (oha -q RATE --latency-correction, so a slow answer cannot hide the queue behind it):
#   direct  oha -> app
#   lucid   oha -> lucid-proxy A (outbound, HTTP/1.1) -> mTLS h2 -> lucid-proxy B -> app
#   nginx   oha -> nginx A (HTTP/1.1) -> mTLS (client cert, keepalive) -> nginx B -> app
# Every path ends at the same lucid-test-app answering 1 KiB. Both nginx use the mesh's own
# certificates (issued by the registry) and verify each other against the mesh root.
# Reports p50/p99/p99.9 added over direct at fixed rates, max throughput, CPU seconds per
# 10,000 requests (both proxies of a path together) and sidecar RSS idle and under load.
#
#   tests/bench/proxy.sh      # RATES="1000 5000" DURATION=15 CONNS=50 MAXCONNS=64
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
RATES=${RATES:-1000 5000}
DURATION=${DURATION:-15}
CONNS=${CONNS:-50}
MAXCONNS=${MAXCONNS:-64}
OHA=${OHA:-oha}
NGINX_WORKERS=${NGINX_WORKERS:-2}
PROXY_WORKERS=${PROXY_WORKERS:-1}

for t in "$OHA" nginx curl python3; do command -v "$t" >/dev/null || { echo "missing $t (oha: cargo install oha; nginx: apt-get install nginx)" >&2; exit 1; }; done
(cd "$root" && cargo build --release --quiet -p lucid-registry -p lucid-proxy -p lucid-tests --bin lucid-registry --bin lucid-proxy --bin lucid-test-app)
BIN="$root/target/release"
W=$(mktemp -d /tmp/lucid-proxy-bench.XXXX)
pids=()
cleanup() {
  # nginx masters first, with TERM: a killed master leaves its workers running.
  for n in a b; do [ -f "$W/$n/nginx.pid" ] && kill -TERM "$(cat "$W/$n/nginx.pid")" 2>/dev/null; done
  sleep 1
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

# lucid path
"$BIN/lucid-proxy" --workers "$PROXY_WORKERS" --service ledger --app-port "$APP" --registry "http://$HTTP" --inbound-addr "127.0.0.1:${P[4]}" \
  --outbound-addr "127.0.0.1:${P[5]}" --admin-addr "127.0.0.1:${P[6]}" 2>>"$W/b.log" &
B_PID=$!; pids+=($B_PID)
"$BIN/lucid-proxy" --workers "$PROXY_WORKERS" --service web --app-port "$APP" --registry "http://$HTTP" --inbound-addr "127.0.0.1:${P[7]}" \
  --outbound-addr "127.0.0.1:${P[8]}" --admin-addr "127.0.0.1:${P[9]}" 2>>"$W/a.log" &
A_PID=$!; pids+=($A_PID)
wait_for 300 curl -sf "http://127.0.0.1:${P[6]}/ready"
wait_for 300 curl -sf "http://127.0.0.1:${P[9]}/ready"
wait_for 100 curl -sf -H "Host: ledger.lucid.internal" "http://127.0.0.1:${P[8]}/?size=1024"

# nginx path, with certificates from the mesh CA
curl -sf "http://$HTTP/v1/connect/ca/roots" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Roots"][0]["RootCert"], end="")' > "$W/root.pem"
for svc in web ledger; do
  curl -sf "http://$HTTP/v1/agent/connect/ca/leaf/$svc" | python3 -c 'import json,sys
v=json.load(sys.stdin); open(sys.argv[1]+".crt","w").write(v["CertPEM"]); open(sys.argv[1]+".key","w").write(v["PrivateKeyPEM"])' "$W/$svc"
done
NGX_A=${P[10]}; NGX_B=${P[11]}
nginx_conf() { # name, body
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
  keepalive_requests 100000;
  $2
}
CONF
}
nginx_conf b "
  upstream app { server 127.0.0.1:$APP; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX_B ssl;
    ssl_protocols TLSv1.3; ssl_certificate $W/ledger.crt; ssl_certificate_key $W/ledger.key;
    ssl_client_certificate $W/root.pem; ssl_verify_client on;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-Client-Cert \$ssl_client_s_dn; }
  }"
nginx_conf a "
  upstream ledger { server 127.0.0.1:$NGX_B; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX_A;
    location / { proxy_pass https://ledger; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_ssl_certificate $W/web.crt; proxy_ssl_certificate_key $W/web.key;
      proxy_ssl_trusted_certificate $W/root.pem; proxy_ssl_verify on; proxy_ssl_name ledger.lucid.internal;
      proxy_ssl_server_name on; proxy_ssl_protocols TLSv1.3; proxy_ssl_session_reuse on; }
  }"
nginx -c "$W/b/nginx.conf" -e "$W/b/error.log" & pids+=($!)
nginx -c "$W/a/nginx.conf" -e "$W/a/error.log" & pids+=($!)
wait_for 100 curl -sf "http://127.0.0.1:$NGX_A/?size=1024"
ngx_pids() { for n in a b; do m=$(cat "$W/$n/nginx.pid"); echo "$m"; pgrep -P "$m"; done; }

cpu_ticks() { local t=0; for p in "$@"; do s=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0); t=$((t + s)); done; echo $t; }
HZ=$(getconf CLK_TCK)

# run NAME URL RATE(0 = as fast as possible) PIDS...: prints "ok p50 p99 p999 rps cpu_s_per_10k"
run() {
  local name=$1 url=$2 rate=$3; shift 3
  local args=(-z "${DURATION}s" --no-tui --output-format json -H "Host: ledger.lucid.internal")
  if [ "$rate" -gt 0 ]; then args+=(-q "$rate" --latency-correction -c "$CONNS"); else args+=(-c "$MAXCONNS"); fi
  local before; before=$(cpu_ticks "$@")
  "$OHA" "${args[@]}" "$url" > "$W/$name-$rate.json" 2>"$W/$name-$rate.err"
  local after; after=$(cpu_ticks "$@")
  python3 - "$W/$name-$rate.json" "$((after - before))" "$HZ" <<'PY'
import json, sys
v = json.load(open(sys.argv[1])); ticks = int(sys.argv[2]); hz = int(sys.argv[3])
s = v["summary"]; p = v["latencyPercentiles"]
codes = v.get("statusCodeDistribution", {})
# Requests still in flight when the run's time is up are cut by oha itself, not failures.
errors = {k: n for k, n in v.get("errorDistribution", {}).items() if "deadline" not in k}
if errors or set(codes) - {"200"}:
    print(f"{sys.argv[1]}: statuses {codes}, errors {errors}", file=sys.stderr)
ok = int(codes.get("200", 0)); failed = sum(int(c) for k, c in codes.items() if k != "200") + sum(errors.values())
cpu = ticks / hz / max(ok, 1) * 10000
print(f'{ok} {failed} {p["p50"]*1000:.3f} {p["p99"]*1000:.3f} {p["p99.9"]*1000:.3f} {ok / s["total"]:.0f} {cpu:.3f}')
PY
}

idle_a=$(rss_kib $A_PID); idle_b=$(rss_kib $B_PID)
echo "lucid-proxy idle RSS: A ${idle_a} KiB, B ${idle_b} KiB" >&2
declare -A R
for rate in $RATES; do
  R[direct-$rate]=$(run direct "http://127.0.0.1:$APP/?size=1024" "$rate")
  touch "$W/rss"; sample_peak_rss "$W/rss" $A_PID & sampler=$!
  R[lucid-$rate]=$(run lucid "http://127.0.0.1:${P[8]}/?size=1024" "$rate" $A_PID $B_PID)
  rm -f "$W/rss"; wait $sampler; R[rss-$rate]=$(cat "$W/rss.peak")
  R[nginx-$rate]=$(run nginx "http://127.0.0.1:$NGX_A/?size=1024" "$rate" $(ngx_pids))
  echo "rate $rate: direct ${R[direct-$rate]} | lucid ${R[lucid-$rate]} | nginx ${R[nginx-$rate]}" >&2
done
R[direct-max]=$(run direct "http://127.0.0.1:$APP/?size=1024" 0)
R[lucid-max]=$(run lucid "http://127.0.0.1:${P[8]}/?size=1024" 0 $A_PID $B_PID)
R[nginx-max]=$(run nginx "http://127.0.0.1:$NGX_A/?size=1024" 0 $(ngx_pids))
idle_after=$(rss_kib $A_PID)

field() { echo "$1" | awk -v i="$2" '{print $i}'; }
added() { python3 -c "print(f'{max(0.0, float(\"$1\") - float(\"$2\")):.3f}')"; }
echo
echo "| path, rate | ok / failed | p50 / p99 / p99.9 ms | added over direct p50 / p99 / p99.9 ms | CPU s per 10k requests (proxies) |"
echo "|---|---|---|---|---|"
for rate in $RATES; do
  d=${R[direct-$rate]}
  for path in direct lucid nginx; do
    r=${R[$path-$rate]}
    if [ $path = direct ]; then add="-"; cpu="-"; else
      add="$(added "$(field "$r" 3)" "$(field "$d" 3)") / $(added "$(field "$r" 4)" "$(field "$d" 4)") / $(added "$(field "$r" 5)" "$(field "$d" 5)")"
      cpu=$(field "$r" 7); fi
    echo "| $path, $rate/s | $(field "$r" 1) / $(field "$r" 2) | $(field "$r" 3) / $(field "$r" 4) / $(field "$r" 5) | $add | $cpu |"
  done
done
echo
echo "| path | max throughput (req/s, -c $MAXCONNS, ${DURATION}s) | failed | CPU s per 10k requests (proxies) |"
echo "|---|---|---|---|"
for path in direct lucid nginx; do
  r=${R[$path-max]}; cpu=$(field "$r" 7); [ $path = direct ] && cpu="-"
  echo "| $path | $(field "$r" 6) | $(field "$r" 2) | $cpu |"
done
echo
echo "| lucid-proxy RSS (sidecar A, the caller's) | KiB |"
echo "|---|---|"
echo "| idle, after start | $idle_a (B: $idle_b) |"
for rate in $RATES; do echo "| peak at $rate req/s | ${R[rss-$rate]} |"; done
echo "| idle, after the max-throughput run | $idle_after |"
echo
echo "commit $(git -C "$root" rev-parse --short HEAD), $(nproc) cores, oha $("$OHA" --version | awk '{print $2}'), $(nginx -v 2>&1 | sed 's/.*\///') with $NGINX_WORKERS workers each, lucid-proxy --workers $PROXY_WORKERS each"
