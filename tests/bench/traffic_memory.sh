#!/usr/bin/env bash
# Sidecar memory with long-lived connections: the RSS of the caller's sidecar (A) and of each
# destination's (B: a WebSocket service, C: a tcp service) idle, then with N WebSockets open
# through A to B, then with N raw TCP connections open through A's --upstream to C as well.
# The clients are the `websockets` library and plain sockets speaking redis; the apps are
# tests/proxy/py/ws_app.py and Debian's redis-server.
#
#   tests/bench/traffic_memory.sh          # N=100
#   SMOKE=1 tests/bench/traffic_memory.sh  # N=10, debug build: CI keeps it from rotting
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
N=${N:-100}
PROFILE=release
if [ -n "${SMOKE:-}" ]; then N=10; PROFILE=debug; fi
for t in redis-server curl python3; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done
flag=(); [ "$PROFILE" = release ] && flag=(--release)
(cd "$root" && cargo build "${flag[@]}" --quiet -p lucid-registry -p lucid-proxy --bin lucid-registry --bin lucid-proxy)
BIN="$root/target/$PROFILE"
VENV="$root/target/bench-venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import websockets' 2>/dev/null || "$VENV/bin/pip" install --quiet --disable-pip-version-check websockets==17.4
PY="$VENV/bin/python"
W=$(mktemp -d /tmp/lucid-mem-bench.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

mapfile -t P < <(free_ports 16)
HTTP=127.0.0.1:${P[0]}
"$BIN/lucid-registry" --node-id 1 --bootstrap --data-dir "$W/reg" --http-addr "$HTTP" --raft-addr "127.0.0.1:${P[1]}" \
  --dns-addr "127.0.0.1:${P[2]}" --ca-key-secret-file "$(ca_secret "$W/ca.secret")" 2>>"$W/reg.log" &
pids+=($!)
wait_for 300 has_ca_root "$HTTP"
"$PY" "$root/tests/proxy/py/ws_app.py" chat 2>"$W/ws.log" & pids+=($!)
wait_for 100 grep -q 'listening ws' "$W/ws.log"
WS=$(grep -o '127.0.0.1:[0-9]*' "$W/ws.log" | head -1 | cut -d: -f2)
REDIS=${P[3]}
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --maxclients 10000 >"$W/redis.log" 2>&1 & pids+=($!)
wait_for 100 redis-cli -p "$REDIS" ping

proxy() { # name service app-port n(ports from P) extra...
  local name=$1 svc=$2 app=$3 i=$4; shift 4
  "$BIN/lucid-proxy" --service "$svc" --app-port "$app" --registry "http://$HTTP" --inbound-addr "127.0.0.1:${P[$i]}" \
    --outbound-addr "127.0.0.1:${P[$((i + 1))]}" --admin-addr "127.0.0.1:${P[$((i + 2))]}" "$@" 2>>"$W/$name.log" &
  pids+=($!); eval "${name}_PID=$!"
  wait_for 300 curl -sf "http://127.0.0.1:${P[$((i + 2))]}/ready"
}
UP=${P[13]}
proxy B chat "$WS" 4
proxy C cache "$REDIS" 7 --app-protocol tcp --health-check tcp
proxy A web "$REDIS" 10 --health-check none --upstream "cache=127.0.0.1:$UP"
OUT=127.0.0.1:${P[11]}
wait_for 300 redis-cli -p "$UP" ping
kib() { echo "A $(rss_kib $A_PID) / B $(rss_kib $B_PID) / C $(rss_kib $C_PID)"; }
idle=$(kib)

exec 3> >("$PY" "$root/tests/proxy/py/ws_client.py" "$OUT" chat hold "$N" > "$W/ws-hold.out" 2>&1)
wait_for 600 grep -q open "$W/ws-hold.out"
sleep 1
with_ws=$(kib)
"$PY" - "$UP" "$N" > "$W/tcp-hold.out" 2>&1 <<'PYEOF' &
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PING\r\n")
    assert s.recv(16).startswith(b"+PONG"), "no PONG"
    socks.append(s)
print("open", flush=True)
time.sleep(3600)
PYEOF
pids+=($!)
wait_for 600 grep -q open "$W/tcp-hold.out"
sleep 1
with_both=$(kib)
active=$(curl -sf "http://127.0.0.1:${P[12]}/stats/prometheus" | awk '/^lucid_proxy_upstream_connections_active/ {print $2}')
exec 3>&-

echo
echo "| lucid-proxy RSS, KiB: A (caller) / B (WebSocket service) / C (tcp service) | |"
echo "|---|---|"
echo "| idle | $idle |"
echo "| $N WebSockets open | $with_ws |"
echo "| and $N TCP connections open (upstream active: $active) | $with_both |"
echo
echo "commit $(git -C "$root" rev-parse --short HEAD), $PROFILE build, lucid-proxy --workers 1"
