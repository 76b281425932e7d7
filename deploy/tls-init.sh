#!/usr/bin/env bash
# Make the files a registry cluster needs before its first start, on an operator machine
# (no registry is called): the cluster CA, one certificate per registry node, and the secret
# the mesh CA key is sealed under. Files that already exist are kept, so adding a node later
# is another run with the new node's name.
#
#   deploy/tls-init.sh OUT NAME=IP[,IP...] [NAME=IP...]
#   deploy/tls-init.sh ./lucid-tls registry-1=10.0.0.11 registry-2=10.0.0.12 registry-3=10.0.0.13
#
# Each IP (and the NAME, as a DNS name) goes into the node's certificate: peers verify the
# address they dial (the --advertise IP) against it. LUCIDCTL names the binary (default
# lucidctl on PATH). Writes:
#   OUT/ca/ca.pem, OUT/ca/ca-key.pem  the cluster CA; keep ca-key.pem offline, not on nodes
#   OUT/ca-key.secret                 the mesh CA sealing secret: the same on every node
#   OUT/certs/NAME.pem, NAME-key.pem  each node's certificate and key
# and prints how to install them on each node for deploy/systemd.
set -euo pipefail
ctl=${LUCIDCTL:-lucidctl}
if [ $# -lt 2 ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
out=$1
shift
for spec in "$@"; do
  case $spec in
    ?*=?*) ;;
    *) echo "tls-init.sh: $spec: expected NAME=IP[,IP...]" >&2; exit 2 ;;
  esac
done
umask 077
mkdir -p "$out"
if [ ! -e "$out/ca/ca.pem" ]; then
  "$ctl" tls ca create --out "$out/ca"
fi
if [ ! -e "$out/ca-key.secret" ]; then
  od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$out/ca-key.secret"
  chmod 0600 "$out/ca-key.secret"
fi
for spec in "$@"; do
  name=${spec%%=*}
  ips=${spec#*=}
  if [ ! -e "$out/certs/$name.pem" ]; then
    args=()
    IFS=, read -r -a list <<<"$ips"
    for ip in "${list[@]}"; do args+=(--ip "$ip"); done
    "$ctl" tls cert create --ca "$out/ca" --node "$name" "${args[@]}" --dns "$name" --out "$out/certs"
  fi
done
cat <<TXT

On each registry node (NAME is that node's name), for deploy/systemd/registry.toml:
  install -d -m 0755 /etc/lucid/tls
  install -m 0644 $out/ca/ca.pem /etc/lucid/tls/ca.pem
  install -m 0644 $out/certs/NAME.pem /etc/lucid/tls/node.pem
  install -m 0600 $out/certs/NAME-key.pem /etc/lucid/tls/node-key.pem
  install -m 0600 $out/ca-key.secret /etc/lucid/ca-key.secret
Keep $out/ca/ca-key.pem off the nodes: it is only needed to make more node certificates.
TXT
