# Sourced by the benchmarks that compare a 3-node lucid-registry cluster with a 3-node etcd
# cluster on loopback: checks the tools, builds lucid-registry (PROFILE, from the sourcing
# script), makes the work directory W and the PIDS killed on exit, then ports and
# start/leader/voter helpers for both. Sets LUCID (the binary).
# shellcheck shell=bash

for t in etcd wrk curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
if [ "$PROFILE" = release ]; then
  (cd "$root" && cargo build --release --quiet -p lucid-registry)
else
  (cd "$root" && cargo build --quiet -p lucid-registry)
fi
LUCID="$root/target/$PROFILE/lucid-registry"
W=$(mktemp -d /tmp/lucid-bench.XXXX)
declare -A PIDS
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

# --- lucid-registry ----------------------------------------------------------------------
declare -a LH LR EC EP
declare -a LD
mapfile -t P < <(free_ports 15)
for i in 1 2 3; do
  LH[$i]=127.0.0.1:${P[$((i - 1))]}; LR[$i]=127.0.0.1:${P[$((i + 2))]}
  EC[$i]=127.0.0.1:${P[$((i + 5))]}; EP[$i]=127.0.0.1:${P[$((i + 8))]}
  LD[$i]=127.0.0.1:${P[$((i + 11))]}
done
start_lucid() { # node-id
  local i=$1 extra=()
  if [ "$i" = 1 ]; then extra=(--bootstrap); else extra=(--join "${LH[1]}"); fi
  "$LUCID" --node-id "$i" --data-dir "$W/l$i" --http-addr "${LH[$i]}" --raft-addr "${LR[$i]}" \
    --dns-addr "${LD[$i]}" "${extra[@]}" 2>>"$W/l$i.log" &
  PIDS[l$i]=$!
}
lucid_leader() { # prints the leader's node id
  for i in 1 2 3; do
    curl -s --max-time 1 "http://${LH[$i]}/status" 2>/dev/null | python3 -c \
      'import json,sys; d=json.load(sys.stdin); l=d.get("leader"); print(l["id"]) if l else sys.exit(1)' && return 0
  done
  return 1
}
lucid_voters() { curl -s "http://${LH[1]}/v1/status/peers" | python3 -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin))==3 else 1)'; }

# --- etcd --------------------------------------------------------------------------------
ECLUSTER="e1=http://${EP[1]},e2=http://${EP[2]},e3=http://${EP[3]}"
start_etcd() { # index, state
  local i=$1 state=${2:-new}
  etcd --name "e$i" --data-dir "$W/e$i" \
    --listen-client-urls "http://${EC[$i]}" --advertise-client-urls "http://${EC[$i]}" \
    --listen-peer-urls "http://${EP[$i]}" --initial-advertise-peer-urls "http://${EP[$i]}" \
    --initial-cluster "$ECLUSTER" --initial-cluster-state "$state" --initial-cluster-token bench \
    --log-level error 2>>"$W/e$i.log" &
  PIDS[e$i]=$!
}
etcd_leader() { # prints the index (1..3) of the leader
  for i in 1 2 3; do
    curl -s --max-time 1 -X POST "http://${EC[$i]}/v3/maintenance/status" -d '{}' 2>/dev/null | python3 -c \
      'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["header"]["member_id"]==d["leader"] else 1)' && { echo "$i"; return 0; }
  done
  return 1
}

