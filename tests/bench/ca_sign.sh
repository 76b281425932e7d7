#!/usr/bin/env bash
# Leaf signing rate of one registry node: `wrk` POSTs one OpenSSL-made CSR to
# /v1/connect/ca/sign over CONNS connections for DURATION (each answer is a new leaf with a
# fresh serial, recorded through Raft), then OpenSSL verifies a sample of what came back.
# No peer runs here: Consul is not a Debian package (its default CSR rate limit is 50/s).
#
#   tests/bench/ca_sign.sh          # DURATION=10s CONNS=32
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}

for t in wrk curl python3 openssl; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
(cd "$root" && cargo build --release --quiet -p lucid-registry)
LUCID="$root/target/release/lucid-registry"
W=$(mktemp -d /tmp/lucid-sign.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

mapfile -t P < <(free_ports 3)
HTTP=127.0.0.1:${P[0]}
"$LUCID" --node-id 1 --bootstrap --data-dir "$W/reg" --http-addr "$HTTP" --raft-addr "127.0.0.1:${P[1]}" \
  --dns-addr "127.0.0.1:${P[2]}" --ca-key-secret-file "$(ca_secret "$W/ca.secret")" \
  --ca-sign-rate 1000000 --ca-sign-burst 1000000 2>>"$W/reg.log" &
pids+=($!)
wait_for 300 has_ca_root "$HTTP"

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench \
  -keyout "$W/k.pem" -out "$W/csr.pem" 2>/dev/null
python3 -c "import json,sys; print(json.dumps({'csr': open(sys.argv[1]).read(), 'service': 'bench', 'plane': 'ops'}))" \
  "$W/csr.pem" > "$W/body.json"
read -r rps p50 p99 err < <(wrk -t2 -c"$CONNS" -d"$DURATION" -s "$here/sign.lua" "http://$HTTP" -- "$W/body.json" |
  awk '/^RESULT/ { for (i = 2; i <= NF; i++) { split($i, a, "="); printf "%s ", a[2] } } END { print "" }')

# What came back must be real: sign once more and verify it against the root.
curl -sf "http://$HTTP/v1/connect/ca/roots" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Roots"][0]["RootCert"], end="")' > "$W/root.pem"
curl -sf -X POST --data @"$W/body.json" "http://$HTTP/v1/connect/ca/sign" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["cert_pem"], end="")' > "$W/leaf.pem"
verified=$(openssl verify -CAfile "$W/root.pem" "$W/leaf.pem" | awk '{print $2}')
recorded=$(curl -sf "http://$HTTP/certificates" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')

cat <<TABLE
| measurement (1 node, loopback, lucid-registry $(git -C "$root" rev-parse --short HEAD), wrk -t2 -c$CONNS, $DURATION) | result |
|---|---|
| CSR signing, POST /v1/connect/ca/sign | $rps certs/s, p50 $p50 ms, p99 $p99 ms, errors $err |
| leaves recorded in the registry after the run | $recorded |
| a sample leaf against the root (openssl verify) | $verified |
TABLE
