#!/usr/bin/env bash
# What cluster TLS costs the registry's writes: two 3-node lucid-registry clusters on
# loopback in the same run, one plain and one with cluster TLS (Raft over mTLS, peers'
# forwarding over HTTPS), driven by the same load generator (wrk, closed loop, same
# connections and threads) with PUTs of 100-byte values to each leader. The TLS cluster is
# measured twice: clients on its plain HTTP listener (only replication pays for TLS) and on
# its HTTPS listener (clients pay for TLS too). Each round measures the three back to back, so
# drift in the machine's load hits them alike; the ratio column is the median of the
# per-round ratios (on a shared 2-core machine single rounds swing by 20 % or more), the
# other columns the medians over ROUNDS.
#
#   tests/bench/registry_tls.sh             # DURATION=10s CONNS=64 ROUNDS=3, release build
#   SMOKE=1 tests/bench/registry_tls.sh     # 2 s, 1 round, the debug build: CI's check
#
# Needs: wrk, curl, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
if [ -n "${SMOKE:-}" ]; then
  DURATION=${DURATION:-2s}; ROUNDS=${ROUNDS:-1}; PROFILE=debug
else
  DURATION=${DURATION:-10s}; ROUNDS=${ROUNDS:-3}; PROFILE=${PROFILE:-release}
fi
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}

for t in wrk curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
if [ "$PROFILE" = release ]; then
  (cd "$root" && cargo build --release --quiet -p lucid-registry -p lucid-ctl)
else
  (cd "$root" && cargo build --quiet -p lucid-registry -p lucid-ctl)
fi
BIN="$root/target/$PROFILE"
W=$(mktemp -d /tmp/lucid-tls-bench.XXXX)
declare -A PIDS
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  # A failed run shows why: the tail of every node's log.
  if [ "$rc" != 0 ]; then for f in "$W"/*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2; done; fi
  rm -rf "$W"
}
trap cleanup EXIT

"$BIN/lucidctl" tls ca create --out "$W/ca" >/dev/null
for i in 1 2 3; do
  "$BIN/lucidctl" tls cert create --ca "$W/ca" --node "n$i" --ip 127.0.0.1 --out "$W/certs" >/dev/null
done
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/ca-key.secret"

mapfile -t P < <(free_ports 15)
declare -A H R S
for c in plain tls; do
  for i in 1 2 3; do
    base=$([ "$c" = plain ] && echo 0 || echo 9)
    H[$c$i]=127.0.0.1:${P[$((base + i - 1))]}
    R[$c$i]=127.0.0.1:${P[$((base + i + 2))]}
  done
done
for i in 1 2 3; do S[$i]=127.0.0.1:${P[$((5 + i))]}; done

start() { # cluster node-id
  local c=$1 i=$2 extra=()
  if [ "$i" = 1 ]; then extra=(--bootstrap); else extra=(--join "${H[${c}1]}"); fi
  if [ "$c" = tls ]; then
    [ "$i" = 1 ] || extra=(--join "${S[1]}")
    extra+=(--tls-cert-file "$W/certs/n$i.pem" --tls-key-file "$W/certs/n$i-key.pem"
      --tls-ca-file "$W/ca/ca.pem" --https-addr "${S[$i]}")
  fi
  "$BIN/lucid-registry" --node-id "$i" --data-dir "$W/$c$i" --http-addr "${H[$c$i]}" \
    --raft-addr "${R[$c$i]}" --dns-addr 127.0.0.1:0 --ca-key-secret-file "$W/ca-key.secret" \
    "${extra[@]}" 2>>"$W/$c$i.log" &
  PIDS[$c$i]=$!
}
leader() { # cluster -> node id
  curl -s --max-time 1 "http://${H[${1}1]}/status" | python3 -c \
    'import json,sys; d=json.load(sys.stdin); l=d.get("leader"); print(l["id"]) if l else sys.exit(1)'
}
voters() { curl -s "http://${H[${1}1]}/v1/status/peers" | python3 -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin))==3 else 1)'; }

load() { # url -> "rps p50 p99 errors"
  wrk -t "$THREADS" -c "$CONNS" -d "$DURATION" --latency -s "$here/lucid_put.lua" "$1" |
    awk '/^RESULT/ { split($2,a,"="); split($3,b,"="); split($4,c,"="); split($5,d,"=");
      printf "%s %s %s %s\n", a[2], b[2], c[2], d[2] }'
}

echo "starting a plain and a TLS lucid-registry cluster (3 nodes each) on loopback ..." >&2
for c in plain tls; do start "$c" 1; done
wait_for 300 leader plain; wait_for 300 leader tls
for c in plain tls; do start "$c" 2; start "$c" 3; done
# Generous: CI's smoke runs six debug-build nodes joining at once on two cores.
wait_for 1500 voters plain; wait_for 1500 voters tls
sleep 2

# The CA that signed the node certificates verifies the HTTPS listener for wrk's OpenSSL.
export SSL_CERT_FILE="$W/ca/ca.pem"
declare -a PR TR SR RT RS
for r in $(seq 1 "$ROUNDS"); do
  pl=$(leader plain); tl=$(leader tls)
  read -r rps p50 p99 err < <(load "http://${H[plain$pl]}"); PR+=("$rps $p50 $p99 $err")
  read -r rps p50 p99 err < <(load "http://${H[tls$tl]}"); TR+=("$rps $p50 $p99 $err")
  read -r rps p50 p99 err < <(load "https://${S[$tl]}"); SR+=("$rps $p50 $p99 $err")
  RT+=("$(awk -v a="${TR[-1]%% *}" -v b="${PR[-1]%% *}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
  RS+=("$(awk -v a="${SR[-1]%% *}" -v b="${PR[-1]%% *}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')")
  echo "round $r: plain ${PR[-1]} | raft-tls ${TR[-1]} (x${RT[-1]}) | https ${SR[-1]} (x${RS[-1]})" >&2
done
med() { printf '%s\n' "$@" | sort -n -k1 | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
read -r p_rps p_50 p_99 p_err < <(med "${PR[@]}")
read -r t_rps t_50 t_99 t_err < <(med "${TR[@]}")
read -r s_rps s_50 s_99 s_err < <(med "${SR[@]}")
rt=$(med "${RT[@]}"); rs=$(med "${RS[@]}")
rev=$(git -C "$root" rev-parse --short HEAD)
cat <<TABLE
| lucid-registry $rev, 3 nodes, loopback | PUT/s | vs plain | p50 ms | p99 ms | errors |
|---|---|---|---|---|---|
| plain (HTTP API, plain Raft) | $p_rps | 1.00 | $p_50 | $p_99 | $p_err |
| cluster TLS, clients on the HTTP listener | $t_rps | $rt | $t_50 | $t_99 | $t_err |
| cluster TLS, clients on the HTTPS listener | $s_rps | $rs | $s_50 | $s_99 | $s_err |

wrk -t$THREADS -c$CONNS -d$DURATION, 100-byte values, each cluster's leader, $ROUNDS rounds ($PROFILE build); per-round ratios: raft-tls ${RT[*]}, https ${RS[*]}.
TABLE
# Errors mean the comparison is void (a smoke run must also prove every path worked).
for e in "$p_err" "$t_err" "$s_err"; do [ "${e:-1}" = 0 ] || { echo "wrk saw errors" >&2; exit 1; }; done
for v in "$p_rps" "$t_rps" "$s_rps"; do
  awk -v v="$v" 'BEGIN { exit !(v > 0) }' || { echo "no requests completed" >&2; exit 1; }
done
