#!/usr/bin/env bash
# Catalog on a 3-node loopback cluster: registrations/s through the leader, health queries/s
# (`/v1/health/service/web?passing&stale`) on one follower and on all three nodes at once, and
# propagation time from a registration acknowledged by a follower to it being visible on every
# node (p50/p99), over HTTP and in DNS. No peer runs here: Consul is not a Debian package.
#
#   tests/bench/catalog.sh            # DURATION=10s CONNS=64 PROP_N=200
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PROP_N=${PROP_N:-200}

for t in wrk curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
(cd "$root" && cargo build --release --quiet -p lucid-registry)
LUCID="$root/target/release/lucid-registry"
W=$(mktemp -d /tmp/lucid-catalog.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

declare -a H R D
mapfile -t P < <(free_ports 9)
for i in 1 2 3; do
  H[$i]=127.0.0.1:${P[$((i - 1))]}; R[$i]=127.0.0.1:${P[$((i + 2))]}; D[$i]=127.0.0.1:${P[$((i + 5))]}
done
for i in 1 2 3; do
  if [ "$i" = 1 ]; then extra=(--bootstrap); else extra=(--join "${H[1]}"); fi
  "$LUCID" --node-id "$i" --data-dir "$W/n$i" --http-addr "${H[$i]}" --raft-addr "${R[$i]}" \
    --dns-addr "${D[$i]}" "${extra[@]}" 2>>"$W/n$i.log" &
  pids+=($!)
  if [ "$i" = 1 ]; then wait_for 200 curl -sf "http://${H[1]}/health" -o /dev/null; fi
done
voters() { curl -s "http://${H[1]}/v1/status/peers" | python3 -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin))==3 else 1)'; }
wait_for 300 voters
leader=$(curl -s "http://${H[1]}/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"]["id"])')
f=$(( leader % 3 + 1 ))

# 50 passing instances of "web" to read.
for n in $(seq 1 50); do
  curl -sf -X PUT "http://${H[1]}/v1/agent/service/register" \
    -d "{\"name\":\"web\",\"id\":\"web-$n\",\"port\":80,\"check\":{\"ttl\":\"600s\",\"status\":\"passing\"}}" >/dev/null
done

res() { awk '/^RESULT/ { for (i = 2; i <= NF; i++) { split($i, a, "="); printf "%s ", a[2] } } END { print "" }'; }
read -r reg_rps reg_p50 reg_p99 reg_err < <(wrk -t2 -c"$CONNS" -d"$DURATION" -s "$here/register.lua" "http://${H[$leader]}" | res)
read -r one_rps one_p50 one_p99 one_err < <(wrk -t2 -c"$CONNS" -d"$DURATION" -s "$here/health_get.lua" "http://${H[$f]}" | res)
wrks=()
for i in 1 2 3; do
  wrk -t1 -c$((CONNS / 3)) -d"$DURATION" -s "$here/health_get.lua" "http://${H[$i]}" > "$W/w$i.out" &
  wrks+=($!)
done
wait "${wrks[@]}"
all_rps=$(for i in 1 2 3; do res < "$W/w$i.out" | awk '{print $1}'; done | awk '{s+=$1} END {print s}')
read -r prop_p50 prop_p99 prop_max prop_n < <(python3 "$here/propagation.py" "$PROP_N" "http://${H[$f]}" "http://${H[$leader]}" "http://${H[$(( f % 3 + 1 ))]}" | res)
read -r dprop_p50 dprop_p99 dprop_max dprop_n < <(python3 "$here/dns_propagation.py" "$PROP_N" "http://${H[$f]}" "${D[1]}" "${D[2]}" "${D[3]}" | res)

cat <<TABLE
| measurement (3 nodes, loopback, lucid-registry $(git -C "$root" rev-parse --short HEAD)) | result |
|---|---|
| registrations/s through the leader (wrk -t2 -c$CONNS) | $reg_rps/s, p50 $reg_p50 ms, p99 $reg_p99 ms, errors $reg_err |
| health?passing&stale on one follower (wrk -t2 -c$CONNS) | $one_rps/s, p50 $one_p50 ms, p99 $one_p99 ms, errors $one_err |
| health?passing&stale on all 3 nodes at once (3x wrk -t1 -c$((CONNS / 3))) | $all_rps/s in total |
| propagation, ack on a follower to visible on every node ($prop_n registrations) | p50 $prop_p50 ms, p99 $prop_p99 ms, max $prop_max ms |
| DNS propagation, ack on a follower to the instance name resolving on every node ($dprop_n registrations) | p50 $dprop_p50 ms, p99 $dprop_p99 ms, max $dprop_max ms |
TABLE
