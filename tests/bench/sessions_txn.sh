#!/usr/bin/env bash
# Sessions and transactions (issue 16): a 3-node lucid-registry cluster vs a 3-node etcd
# cluster on loopback, in the same run.
#  1. N lucid sessions (TTL 60s) vs N etcd leases (TTL 60) alive: RSS and CPU of every node
#     while they sit idle, then every one renewed (lucid PUT /v1/session/renew/<id>, etcd
#     POST /v3/lease/keepalive) at RATE/s by the same open-loop generator (open_loop.py):
#     p50 / p99 from when each renewal was due.
#  2. Transactions of 16 KV puts of 100-byte values: lucid PUT /v1/txn vs etcd POST
#     /v3/kv/txn, wrk closed loop, same connections: txn/s, p50, p99.
#
#   tests/bench/sessions_txn.sh            # SESSIONS=1000 RATE=500 DURATION=20s
#   SMOKE=1 tests/bench/sessions_txn.sh    # 50 sessions, 2 s, the debug build: CI's check
#
# Needs: Debian etcd-server, wrk, curl, python3. Builds lucid-registry (--release unless SMOKE).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
if [ -n "${SMOKE:-}" ]; then
  SESSIONS=${SESSIONS:-50}; RATE=${RATE:-50}; DURATION=${DURATION:-2}; IDLE=${IDLE:-2}; PROFILE=debug
else
  SESSIONS=${SESSIONS:-1000}; RATE=${RATE:-500}; DURATION=${DURATION:-20}; IDLE=${IDLE:-10}
  PROFILE=${PROFILE:-release}
fi
CONNS=${CONNS:-16}
THREADS=${THREADS:-2}

. "$here/cluster3.sh"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# "max RSS MiB, summed CPU % of one core" of the given pids over IDLE seconds.
idle_cost() {
  local before=() p i=0 total=0 hz; hz=$(getconf CLK_TCK)
  for p in "$@"; do before+=("$(cpu_ticks "$p")"); done
  sleep "$IDLE"
  for p in "$@"; do total=$((total + $(cpu_ticks "$p") - before[i])); i=$((i + 1)); done
  local rss; rss=$(for p in "$@"; do rss_kib "$p"; done | sort -n | tail -1)
  awk -v r="$rss" -v t="$total" -v hz="$hz" -v s="$IDLE" 'BEGIN { printf "%.1f %.2f\n", r/1024, 100*t/hz/s }'
}

echo "starting lucid-registry x3 and etcd x3 on loopback ..." >&2
for i in 1 2 3; do start_etcd "$i"; done
start_lucid 1; wait_for 200 lucid_leader
start_lucid 2; start_lucid 3; wait_for 300 lucid_voters
wait_for 300 etcd_leader
sleep 2
ll=$(lucid_leader); el=$(etcd_leader)
L="http://${LH[$ll]}"; E="http://${EC[$el]}"

echo "creating $SESSIONS sessions and $SESSIONS leases ..." >&2
python3 - "$L" "$E" "$SESSIONS" "$W" <<'PY'
import json, sys, urllib.request
lucid, etcd, n, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def call(method, url, body):
    req = urllib.request.Request(url, data=body.encode(), method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
with open(f"{w}/lucid.req", "w") as lf, open(f"{w}/etcd.req", "w") as ef:
    for i in range(n):
        s = call("PUT", f"{lucid}/v1/session/create", json.dumps({"Name": f"s{i}", "TTL": "60s"}))
        lf.write(json.dumps(["PUT", f"/v1/session/renew/{s['ID']}", None]) + "\n")
        g = call("POST", f"{etcd}/v3/lease/grant", json.dumps({"TTL": 60}))
        ef.write(json.dumps(["POST", "/v3/lease/keepalive", json.dumps({"ID": g["ID"]})]) + "\n")
PY
alive=$(curl -s "$L/v1/session/list" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$alive" = "$SESSIONS" ] || { echo "only $alive lucid sessions alive" >&2; exit 1; }

echo "idle with them alive: ${IDLE}s each ..." >&2
read -r l_rss l_cpu < <(idle_cost "${PIDS[l1]}" "${PIDS[l2]}" "${PIDS[l3]}")
read -r e_rss e_cpu < <(idle_cost "${PIDS[e1]}" "${PIDS[e2]}" "${PIDS[e3]}")

echo "renewals: $RATE/s for ${DURATION}s, open loop, $CONNS connections ..." >&2
renew() { python3 "$here/open_loop.py" --base "$1" --rate "$RATE" --duration "$DURATION" --conns "$CONNS" "$2"; }
lr=$(renew "$L" "$W/lucid.req"); er=$(renew "$E" "$W/etcd.req")
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
alive=$(curl -s "$L/v1/session/list" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')

echo "transactions of 16 puts: wrk -t$THREADS -c$CONNS -d${DURATION}s ..." >&2
txn() { wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" --latency -s "$here/$2" "$1" |
  awk '/^RESULT/ { split($2,a,"="); split($3,b,"="); split($4,c,"="); split($5,d,"="); print a[2], b[2], c[2], d[2] }'; }
read -r l_tps l_p50 l_p99 l_err < <(txn "$L" lucid_txn.lua)
read -r e_tps e_p50 e_p99 e_err < <(txn "$E" etcd_txn.lua)
[ "$l_err" = 0 ] || { echo "lucid txn errors: $l_err" >&2; exit 1; }

cat <<TABLE
| system (3 nodes, loopback) | alive | idle RSS MiB (max node) | idle CPU % (3 nodes) | renewal p50 / p99 / max ms | renewal errors | txn(16 puts)/s | txn p50 / p99 ms | txn errors |
|---|---|---|---|---|---|---|---|---|
| lucid-registry $(git -C "$root" rev-parse --short HEAD) sessions | $SESSIONS (after: $alive) | $l_rss | $l_cpu | $(field "$lr" p50_ms) / $(field "$lr" p99_ms) / $(field "$lr" max_ms) | $(field "$lr" errors) | $l_tps | $l_p50 / $l_p99 | $l_err |
| etcd $(etcd --version | awk '/etcd Version/ {print $3}') leases | $SESSIONS | $e_rss | $e_cpu | $(field "$er" p50_ms) / $(field "$er" p99_ms) / $(field "$er" max_ms) | $(field "$er" errors) | $e_tps | $e_p50 / $e_p99 | $e_err |

$SESSIONS sessions (TTL 60s) / leases (TTL 60) created through the leader; idle ${IDLE}s; renewals at $RATE/s for ${DURATION}s through the leader (open_loop.py, $CONNS connections, latency from when each was due); txn: wrk -t$THREADS -c$CONNS -d${DURATION}s, 16 puts of 100 bytes each, to each leader.
TABLE
