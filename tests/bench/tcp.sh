#!/usr/bin/env bash
# Raw TCP through the mesh against nginx `stream`, same machine, same run, same load generator
# (Debian's redis-benchmark, pipelined):
#   direct  redis-benchmark -> redis-server
#   lucid   redis-benchmark -> lucid-proxy A (--upstream) -> mTLS (ALPN lucid-tcp/1)
#           -> lucid-proxy B (a tcp service) -> redis-server
#   nginx   redis-benchmark -> nginx A (stream, proxy_ssl with a client certificate)
#           -> mTLS -> nginx B (stream, ssl_verify_client) -> redis-server
# Both nginx use the mesh's own certificates and verify each other against the mesh root.
# Reports requests/s (SET and GET), CPU seconds of both proxies of a path per million
# requests, and the median of TRIALS runs, taken in rotating order.
#
#   tests/bench/tcp.sh        # REQUESTS=400000 TRIALS=3 PIPELINE=8 CLIENTS=16
#   SMOKE=1 tests/bench/tcp.sh  # a few seconds, debug build: CI keeps it from rotting
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
REQUESTS=${REQUESTS:-400000}
TRIALS=${TRIALS:-3}
PIPELINE=${PIPELINE:-8}
CLIENTS=${CLIENTS:-16}
NGINX_WORKERS=${NGINX_WORKERS:-2}
PROFILE=release
if [ -n "${SMOKE:-}" ]; then REQUESTS=20000; TRIALS=1; PROFILE=debug; fi

for t in redis-server redis-benchmark nginx curl python3; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install redis-server redis-tools nginx libnginx-mod-stream)" >&2; exit 1; }
done
STREAM_MOD=/usr/lib/nginx/modules/ngx_stream_module.so
[ -f "$STREAM_MOD" ] || { echo "missing $STREAM_MOD (apt-get install libnginx-mod-stream)" >&2; exit 1; }
flag=(); [ "$PROFILE" = release ] && flag=(--release)
(cd "$root" && cargo build "${flag[@]}" --quiet -p lucid-registry -p lucid-proxy --bin lucid-registry --bin lucid-proxy)
BIN="$root/target/$PROFILE"
W=$(mktemp -d /tmp/lucid-tcp-bench.XXXX)
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

REDIS=${P[3]}
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no >"$W/redis.log" 2>&1 &
pids+=($!)
wait_for 100 redis-cli -p "$REDIS" ping

# lucid path: B fronts redis (a tcp service), A listens for the app on UP.
UP=${P[4]}
"$BIN/lucid-proxy" --service cache --app-port "$REDIS" --app-protocol tcp --health-check tcp --registry "http://$HTTP" \
  --inbound-addr "127.0.0.1:${P[5]}" --outbound-addr "127.0.0.1:${P[6]}" --admin-addr "127.0.0.1:${P[7]}" 2>>"$W/b.log" &
B_PID=$!; pids+=($B_PID)
"$BIN/lucid-proxy" --service web --app-port "$REDIS" --health-check none --upstream "cache=127.0.0.1:$UP" --registry "http://$HTTP" \
  --inbound-addr "127.0.0.1:${P[8]}" --outbound-addr "127.0.0.1:${P[9]}" --admin-addr "127.0.0.1:${P[10]}" 2>>"$W/a.log" &
A_PID=$!; pids+=($A_PID)
wait_for 300 curl -sf "http://127.0.0.1:${P[7]}/ready"
wait_for 300 curl -sf "http://127.0.0.1:${P[10]}/ready"
wait_for 300 redis-cli -p "$UP" ping

# nginx path, with certificates from the mesh CA.
curl -sf "http://$HTTP/v1/connect/ca/roots" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Roots"][0]["RootCert"], end="")' > "$W/root.pem"
for svc in web cache; do
  curl -sf "http://$HTTP/v1/agent/connect/ca/leaf/$svc" | python3 -c 'import json,sys
v=json.load(sys.stdin); open(sys.argv[1]+".crt","w").write(v["CertPEM"]); open(sys.argv[1]+".key","w").write(v["PrivateKeyPEM"])' "$W/$svc"
done
chmod 644 "$W"/*.crt "$W"/*.key "$W/root.pem"
NGX_A=${P[11]}; NGX_B=$(free_ports 1)
nginx_conf() { # name, stream body
  mkdir -p "$W/$1"
  cat > "$W/$1/nginx.conf" <<CONF
load_module $STREAM_MOD;
worker_processes $NGINX_WORKERS;
daemon off;
pid $W/$1/nginx.pid;
error_log $W/$1/error.log warn;
events { worker_connections 4096; }
stream {
  $2
}
CONF
}
nginx_conf b "
  server {
    listen 127.0.0.1:$NGX_B ssl;
    ssl_protocols TLSv1.3; ssl_certificate $W/cache.crt; ssl_certificate_key $W/cache.key;
    ssl_client_certificate $W/root.pem; ssl_verify_client on;
    proxy_pass 127.0.0.1:$REDIS;
  }"
nginx_conf a "
  server {
    listen 127.0.0.1:$NGX_A;
    proxy_pass 127.0.0.1:$NGX_B;
    proxy_ssl on; proxy_ssl_certificate $W/web.crt; proxy_ssl_certificate_key $W/web.key;
    proxy_ssl_trusted_certificate $W/root.pem; proxy_ssl_verify on; proxy_ssl_name cache.lucid.internal;
    proxy_ssl_server_name on; proxy_ssl_protocols TLSv1.3;
  }"
nginx -c "$W/b/nginx.conf" -e "$W/b/error.log" & pids+=($!)
nginx -c "$W/a/nginx.conf" -e "$W/a/error.log" & pids+=($!)
wait_for 100 redis-cli -p "$NGX_A" ping
ngx_pids() { for n in a b; do m=$(cat "$W/$n/nginx.pid"); echo "$m"; pgrep -P "$m"; done; }

cpu_ticks() { local t=0; for p in "$@"; do s=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0); t=$((t + s)); done; echo $t; }
HZ=$(getconf CLK_TCK)

# run PORT PIDS...: "set_rps get_rps cpu_s_per_million"
run() {
  local port=$1; shift
  local before; before=$(cpu_ticks "$@")
  local out; out=$(redis-benchmark -p "$port" -P "$PIPELINE" -c "$CLIENTS" -n "$REQUESTS" -t set,get -r 100000 -d 64 --csv -q 2>"$W/rb.err")
  local after; after=$(cpu_ticks "$@")
  python3 - "$out" "$((after - before))" "$HZ" "$REQUESTS" <<'PY'
import csv, io, sys
rows = {r[0]: float(r[1]) for r in csv.reader(io.StringIO(sys.argv[1])) if len(r) > 1 and r[0] in ("SET", "GET")}
ticks, hz, n = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if set(rows) != {"SET", "GET"}:
    sys.exit(f"redis-benchmark said: {sys.argv[1]!r}")
print(f'{rows["SET"]:.0f} {rows["GET"]:.0f} {ticks / hz / (2 * n) * 1e6:.2f}')
PY
}

declare -A R
paths=(direct lucid nginx)
for trial in $(seq 1 "$TRIALS"); do
  # Rotate who goes first, so a warm-up or a noisy neighbour does not favour one path.
  for k in 0 1 2; do
    path=${paths[$(( (k + trial) % 3 ))]}
    case $path in
      direct) r=$(run "$REDIS") ;;
      lucid) r=$(run "$UP" $A_PID $B_PID) ;;
      nginx) r=$(run "$NGX_A" $(ngx_pids)) ;;
    esac
    R[$path]="${R[$path]:-}$r"$'\n'
    echo "trial $trial $path: $r" >&2
  done
done
median() { # path, field -> the median of that field over the trials
  echo -n "${R[$1]}" | awk -v f="$2" 'NF {print $f}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
echo
echo "| path | SET req/s | GET req/s | vs direct (GET) | CPU s per million requests (both proxies) |"
echo "|---|---|---|---|---|"
dg=$(median direct 2)
for path in "${paths[@]}"; do
  g=$(median "$path" 2); cpu=$(median "$path" 3); [ "$path" = direct ] && cpu="-"
  echo "| $path | $(median "$path" 1) | $g | $(python3 -c "print(f'{$g / $dg * 100:.0f} %')") | $cpu |"
done
echo
echo "redis-benchmark -P $PIPELINE -c $CLIENTS -n $REQUESTS -t set,get -d 64, median of $TRIALS; commit $(git -C "$root" rev-parse --short HEAD), $(nproc) cores, $(nginx -v 2>&1 | sed 's/.*\///') with $NGINX_WORKERS workers each, lucid-proxy --workers 1 each, $PROFILE build"
