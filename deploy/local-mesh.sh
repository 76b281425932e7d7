#!/usr/bin/env bash
# The compose topology as plain processes on loopback, for machines without Docker and for
# the end-to-end test: three registry nodes (ACLs and cluster TLS on: the CA, node
# certificates and CA key secret are made with lucidctl in the mesh directory; nodes join
# over HTTPS), the platform's policy and
# circuit-breaker files applied with lucidctl, and three example services (lucid-test-app)
# each behind a lucid-proxy sidecar: api-gateway (plane ops) and blockchain-core (plane chain),
# which speak HTTP, and storage-database (plane chain), a `tcp` service that api-gateway reaches
# through an `--upstream` listener (raw bytes over mTLS; the app happens to speak HTTP/1.1).
# Everything talks to the registries over HTTPS (lucidctl, curl and the sidecars verify the CA).
# Prints how to call one through the other and how to query DNS; Ctrl-C stops everything.
#
#   deploy/local-mesh.sh                 # builds (release) first
#   LUCID_BIN=target/debug LUCID_NO_BUILD=1 LUCID_MESH_DIR=/tmp/m deploy/local-mesh.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${LUCID_BIN:-$root/target/release}
case "$BIN" in /*) ;; *) BIN=$root/$BIN ;; esac
DIR=${LUCID_MESH_DIR:-$(mktemp -d /tmp/lucid-mesh.XXXX)}
mkdir -p "$DIR"
if [ -z "${LUCID_NO_BUILD:-}" ]; then
  (cd "$root" && cargo build --release --quiet -p lucid-registry -p lucid-proxy -p lucid-ctl -p lucid-tests \
    --bin lucid-registry --bin lucid-proxy --bin lucidctl --bin lucid-test-app)
fi
for b in lucid-registry lucid-proxy lucidctl lucid-test-app; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b" >&2; exit 1; }
done
for t in python3 curl; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done

pids=()       # sidecars and apps
reg_pids=()   # registries
stop() {
  trap - INT TERM EXIT
  echo "stopping..."
  # Sidecars and apps first (sidecars deregister and drain), then the registries.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${reg_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; logs and data in $DIR"
}
trap stop INT TERM EXIT

# Free loopback ports, all chosen before any is used.
mapfile -t P < <(python3 -c 'import socket
s=[socket.socket() for _ in range(25)]
[x.bind(("127.0.0.1",0)) for x in s]
print("\n".join(str(x.getsockname()[1]) for x in s))')
TOKEN=${LUCID_MESH_TOKEN:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}
export LUCID_ACL_BOOTSTRAP_TOKEN=$TOKEN

# Cluster TLS files, kept when the directory is reused.
TLS=$DIR/tls
( umask 077; mkdir -p "$TLS"
  [ -e "$TLS/ca/ca.pem" ] || "$BIN/lucidctl" tls ca create --out "$TLS/ca" >/dev/null
  [ -e "$TLS/ca-key.secret" ] || python3 -c 'import secrets; print(secrets.token_hex(32))' >"$TLS/ca-key.secret"
  for i in 1 2 3; do
    [ -e "$TLS/certs/registry-$i.pem" ] ||
      "$BIN/lucidctl" tls cert create --ca "$TLS/ca" --node "registry-$i" --ip 127.0.0.1 --out "$TLS/certs" >/dev/null
  done )
CA=$TLS/ca/ca.pem

REG=()        # plain HTTP API (loopback; the health subcommand)
REG_TLS=()    # HTTPS API (lucidctl, curl, sidecars, joins)
for i in 1 2 3; do
  h=${P[$(( (i-1)*3 ))]}; r=${P[$(( (i-1)*3+1 ))]}; d=${P[$(( (i-1)*3+2 ))]}; s=${P[$(( 16+i ))]}
  REG+=("http://127.0.0.1:$h")
  REG_TLS+=("https://127.0.0.1:$s")
  args=(--node-id "$i" --data-dir "$DIR/registry-$i" --http-addr "127.0.0.1:$h" --raft-addr "127.0.0.1:$r"
        --dns-addr "127.0.0.1:$d" --acl-enabled --https-addr "127.0.0.1:$s"
        --tls-ca-file "$CA" --tls-cert-file "$TLS/certs/registry-$i.pem" --tls-key-file "$TLS/certs/registry-$i-key.pem"
        --ca-key-secret-file "$TLS/ca-key.secret")
  # Joins go to the first node's HTTPS address (a bare IP:PORT means https with TLS on).
  if [ "$i" = 1 ]; then args+=(--bootstrap); DNS=127.0.0.1:$d; else args+=(--join "127.0.0.1:${P[17]}"); fi
  "$BIN/lucid-registry" "${args[@]}" 2>"$DIR/registry-$i.log" &
  reg_pids+=($!)
done
ctl() { "$BIN/lucidctl" --registry "${REG_TLS[0]}" --registry-ca "$CA" --token "$TOKEN" "$@"; }
wait_until() { local what=$1; shift; for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "timed out: $what" >&2; exit 1; }
voters() { curl -sf --cacert "$CA" -H "X-Consul-Token: $TOKEN" "${REG_TLS[0]}/v1/operator/raft/configuration" |
  python3 -c 'import json,sys; sys.exit(0 if sum(1 for s in json.load(sys.stdin)["Servers"] if s.get("Voter")) == 3 else 1)'; }
wait_until "three voters" voters
wait_until "the policy file" ctl policy apply -f "$root/deploy/compose/config/service-mesh-config.yaml"
ctl config apply -f "$root/deploy/compose/config/circuit_breaker.yaml" >/dev/null
# The policy lets ops only GET from chain: an L7 rule, which never opens a raw TCP stream. The
# gateway's TCP access to storage-database is its own intention.
ctl intention create api-gateway storage-database --description "gateway reads the store over TCP" >/dev/null

REGS=$(IFS=,; echo "${REG_TLS[*]}")
start_service() { # name plane app_port inbound outbound admin [sidecar flags...]
  "$BIN/lucid-test-app" --name "$1" --port "$3" 2>"$DIR/$1-app.log" &
  pids+=($!)
  "$BIN/lucid-proxy" --service "$1" --plane "$2" --app-port "$3" --registry "$REGS" --registry-ca "$CA" --token "$TOKEN" \
    --inbound-addr "127.0.0.1:$4" --outbound-addr "127.0.0.1:$5" --admin-addr "127.0.0.1:$6" "${@:7}" 2>"$DIR/$1-sidecar.log" &
  pids+=($!)
}
STORE_UP=127.0.0.1:${P[21]}
start_service api-gateway ops "${P[9]}" "${P[10]}" "${P[11]}" "${P[12]}" --upstream "storage-database=$STORE_UP"
start_service blockchain-core chain "${P[13]}" "${P[14]}" "${P[15]}" "${P[16]}"
start_service storage-database chain "${P[20]}" "${P[22]}" "${P[23]}" "${P[24]}" --app-protocol tcp --health-check tcp
wait_until "api-gateway sidecar ready" curl -sf "http://127.0.0.1:${P[12]}/ready"
wait_until "blockchain-core sidecar ready" curl -sf "http://127.0.0.1:${P[16]}/ready"
wait_until "storage-database sidecar ready" curl -sf "http://127.0.0.1:${P[24]}/ready"
GW_OUT=127.0.0.1:${P[11]}
wait_until "a request across the mesh" curl -sf -H "Host: blockchain-core.lucid.internal" "http://$GW_OUT/blocks/1"
wait_until "a TCP connection across the mesh" curl -sf "http://$STORE_UP/kv/1"

cat <<TXT
Lucid Mesh is up (data and logs in $DIR). Management token: $TOKEN

  # api-gateway -> blockchain-core through both sidecars (GET allowed by the policy):
  curl -H 'Host: blockchain-core.lucid.internal' http://$GW_OUT/blocks/1
  # POST is denied by the platform policy (403 LUCID_ERR_1203):
  curl -X POST -H 'Host: blockchain-core.lucid.internal' http://$GW_OUT/blocks
  # storage-database is a tcp service: api-gateway's --upstream listener carries raw bytes to it
  # over mTLS (any TCP protocol would do; this app speaks HTTP/1.1):
  curl http://$STORE_UP/kv/1
  # DNS from the registry:
  dig @${DNS%:*} -p ${DNS#*:} blockchain-core.lucid.internal +short
  # the catalog over HTTPS, and the sidecars' admin ports:
  curl --cacert $CA -H 'X-Consul-Token: $TOKEN' ${REG_TLS[0]}/v1/health/service/blockchain-core
  $BIN/lucidctl --registry ${REG_TLS[0]} --registry-ca $CA --token $TOKEN services list
  curl http://127.0.0.1:${P[12]}/clusters

Ctrl-C stops everything.
LUCID_MESH_READY registry=${REG[0]} registry_https=${REG_TLS[0]} ca=$CA dns=$DNS outbound=$GW_OUT store_upstream=$STORE_UP gateway_admin=127.0.0.1:${P[12]} chain_admin=127.0.0.1:${P[16]} token=$TOKEN
TXT
wait
