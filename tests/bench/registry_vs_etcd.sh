#!/usr/bin/env bash
# Registry writes: a 3-node lucid-registry cluster vs a 3-node etcd cluster, both on loopback,
# in the same run, with the same load generator (wrk, closed loop, same connections and
# threads) sending PUTs of 100-byte values to the leader through the HTTP API (etcd's
# /v3/kv/put JSON gateway). Also: leader failover time (kill -9 to the first successful write
# through a surviving node) and RSS per node idle and at peak under load.
#
#   tests/bench/registry_vs_etcd.sh            # DURATION=20s CONNS=64 TRIALS=3
#   SMOKE=1 tests/bench/registry_vs_etcd.sh    # 2 s, 1 trial, the debug build: CI's check
#
# Needs: Debian etcd-server, wrk, curl, python3. Builds lucid-registry (--release unless SMOKE).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
if [ -n "${SMOKE:-}" ]; then
  DURATION=${DURATION:-2s}; TRIALS=${TRIALS:-1}; PROFILE=debug
else
  DURATION=${DURATION:-20s}; TRIALS=${TRIALS:-3}; PROFILE=${PROFILE:-release}
fi
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}

. "$here/cluster3.sh"

put_lucid() { [ "$(curl -s --max-time 1 -X PUT --data v "http://${LH[$1]}/v1/kv/failover" 2>/dev/null)" = true ]; }
put_etcd() { curl -sf --max-time 1 -X POST "http://${EC[$1]}/v3/kv/put" -d '{"key":"Zm8=","value":"YmFy"}' >/dev/null 2>&1; }

run_load() { # system url script -> "rps p50 p99 errors peak_rss_mib"
  local sys=$1 url=$2 script=$3; shift 3
  local flag="$W/sampling"; touch "$flag"
  sample_peak_rss "$flag" "$@" &
  local sp=$!
  local out; out=$(wrk -t "$THREADS" -c "$CONNS" -d "$DURATION" --latency -s "$here/$script" "$url")
  rm -f "$flag"; wait "$sp" 2>/dev/null || true
  local peak; peak=$(cat "$flag.peak" 2>/dev/null || echo 0)
  echo "$out" | awk -v peak="$peak" '/^RESULT/ { split($2,a,"="); split($3,b,"="); split($4,c,"="); split($5,d,"=");
    printf "%s %s %s %s %.1f\n", a[2], b[2], c[2], d[2], peak/1024 }'
}

# Sets FO_MS: ms from kill -9 of the leader to the first successful write elsewhere. Runs in
# this shell (not a $(...) subshell) so the restarted node's PID is kept.
failover() { # system
  local sys=$1 leader t0 t1
  if [ "$sys" = lucid ]; then leader=$(lucid_leader); else leader=$(etcd_leader); fi
  local key=${sys:0:1}$leader
  kill -9 "${PIDS[$key]}"; wait "${PIDS[$key]}" 2>/dev/null || true
  t0=$(now_ms)
  while :; do
    for i in 1 2 3; do
      [ "$i" = "$leader" ] && continue
      if [ "$sys" = lucid ]; then put_lucid "$i" && break 2; else put_etcd "$i" && break 2; fi
    done
    sleep 0.02
  done
  t1=$(now_ms)
  # Bring the node back and wait until the cluster is whole again.
  if [ "$sys" = lucid ]; then start_lucid "$leader" >/dev/null; wait_for 300 lucid_voters; sleep 2
  else start_etcd "$leader" existing >/dev/null; sleep 3; fi
  FO_MS=$((t1 - t0))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "starting lucid-registry x3 and etcd x3 on loopback ..." >&2
for i in 1 2 3; do start_etcd "$i"; done
start_lucid 1; wait_for 200 lucid_leader
start_lucid 2; start_lucid 3; wait_for 300 lucid_voters
wait_for 300 etcd_leader
sleep 3
idle_l=$(for i in 1 2 3; do rss_kib "${PIDS[l$i]}"; done | sort -n | tail -1)
idle_e=$(for i in 1 2 3; do rss_kib "${PIDS[e$i]}"; done | sort -n | tail -1)

ll=$(lucid_leader); el=$(etcd_leader)
echo "load: wrk -t$THREADS -c$CONNS -d$DURATION against each leader ..." >&2
read -r l_rps l_p50 l_p99 l_err l_peak < <(run_load lucid "http://${LH[$ll]}" lucid_put.lua "${PIDS[l1]}" "${PIDS[l2]}" "${PIDS[l3]}")
read -r e_rps e_p50 e_p99 e_err e_peak < <(run_load etcd "http://${EC[$el]}" etcd_put.lua "${PIDS[e1]}" "${PIDS[e2]}" "${PIDS[e3]}")

echo "failover: $TRIALS trials each ..." >&2
lf=(); ef=()
for _ in $(seq 1 "$TRIALS"); do
  failover lucid; lf+=("$FO_MS")
  failover etcd; ef+=("$FO_MS")
done
l_fo_med=$(printf '%s\n' "${lf[@]}" | median); l_fo_max=$(printf '%s\n' "${lf[@]}" | sort -n | tail -1)
e_fo_med=$(printf '%s\n' "${ef[@]}" | median); e_fo_max=$(printf '%s\n' "${ef[@]}" | sort -n | tail -1)

cat <<TABLE
| system (3 nodes, loopback) | PUT/s | p50 ms | p99 ms | errors | failover median / max ms | idle RSS per node MiB (max) | peak RSS under load MiB (max node) |
|---|---|---|---|---|---|---|---|
| lucid-registry $(git -C "$root" rev-parse --short HEAD) | $l_rps | $l_p50 | $l_p99 | $l_err | $l_fo_med / $l_fo_max | $(awk "BEGIN{printf \"%.1f\", $idle_l/1024}") | $l_peak |
| etcd $(etcd --version | awk '/etcd Version/ {print $3}') | $e_rps | $e_p50 | $e_p99 | $e_err | $e_fo_med / $e_fo_max | $(awk "BEGIN{printf \"%.1f\", $idle_e/1024}") | $e_peak |

wrk -t$THREADS -c$CONNS -d$DURATION, 100-byte values, each system's leader; failover = kill -9 of the leader to the first successful write through a surviving node ($TRIALS trials: ${lf[*]} vs ${ef[*]} ms).
TABLE
