#!/usr/bin/env bash
# Cross-build the Lucid Mesh binaries for aarch64-unknown-linux-gnu (size-tuned profiles),
# print their sizes (failing above the limits: proxy 10 MB, registry 20 MB), and smoke-run
# each under qemu-aarch64-static: --version, --help, then a three-node registry cluster of
# arm64 binaries that must elect a leader, replicate a write and answer DNS. The binaries end
# up in target/aarch64-unknown-linux-gnu/deploy/.
#
# Needs: rustup, Debian's gcc-aarch64-linux-gnu and qemu-user-static (installed when missing
# and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
BINS=(lucid-registry lucid-proxy lucidctl)
OUT="target/$TARGET/deploy"

if ! rustup target list --installed | grep -qx "$TARGET"; then
  rustup target add "$TARGET"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
  else
    echo "install gcc-aarch64-linux-gnu and qemu-user-static first" >&2
    exit 1
  fi
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# Size-tuned profiles (workspace Cargo.toml): fat LTO, one codegen unit, stripped; panic =
# abort for the registry and lucidctl, unwinding for the sidecar.
cargo build --profile dist --locked --target "$TARGET" --bin lucid-registry --bin lucidctl
cargo build --profile dist-unwind --locked --target "$TARGET" --bin lucid-proxy
mkdir -p "$OUT"
cp "target/$TARGET/dist/lucid-registry" "target/$TARGET/dist/lucidctl" "target/$TARGET/dist-unwind/lucid-proxy" "$OUT/"

QEMU=(qemu-aarch64-static -L /usr/aarch64-linux-gnu)
printf '%-16s %10s\n' binary bytes
for b in "${BINS[@]}"; do
  aarch64-linux-gnu-strip "$OUT/$b"
  file "$OUT/$b" 2>/dev/null | grep -q aarch64 || { command -v file >/dev/null && { echo "$b is not an aarch64 binary" >&2; exit 1; }; }
  printf '%-16s %10s\n' "$b" "$(stat -c %s "$OUT/$b")"
  "${QEMU[@]}" "$OUT/$b" --version
  "${QEMU[@]}" "$OUT/$b" --help >/dev/null
done

# Size limits (issue 7): the sidecar under 10 MB, the registry under 20 MB, stripped.
size() { stat -c %s "$OUT/$1"; }
[ "$(size lucid-proxy)" -lt 10000000 ] || { echo "lucid-proxy is over 10 MB" >&2; exit 1; }
[ "$(size lucid-registry)" -lt 20000000 ] || { echo "lucid-registry is over 20 MB" >&2; exit 1; }

# A three-node registry cluster of arm64 binaries under emulation: it must elect a leader,
# replicate a write made on one node to another, and answer DNS on a third.
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"' EXIT
addr_of() { # node kind
  local a=""
  for _ in $(seq 1 600); do
    a=$(grep -o "listening $2 [0-9.:]*" "$work/n$1.log" 2>/dev/null | awk '{print $3}' || true)
    [ -n "$a" ] && { echo "$a"; return 0; }
    sleep 0.1
  done
  cat "$work/n$1.log" >&2; echo "arm64 node $1 did not start" >&2; return 1
}
start_node() { # id extra...
  local id=$1; shift
  "${QEMU[@]}" "$OUT/lucid-registry" --node-id "$id" --data-dir "$work/d$id" \
    --http-addr 127.0.0.1:0 --raft-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0 "$@" 2>"$work/n$id.log" &
  pids+=($!)
}
start_node 1 --bootstrap
h1=$(addr_of 1 http)
start_node 2 --join "$h1"
start_node 3 --join "$h1"
h2=$(addr_of 2 http); h3=$(addr_of 3 http); dns3=$(addr_of 3 dns)
voters=0
for _ in $(seq 1 300); do
  voters=$(curl -s "http://$h1/v1/operator/raft/configuration" |
    python3 -c 'import json,sys; print(sum(1 for s in json.load(sys.stdin)["Servers"] if s.get("Voter")))' 2>/dev/null || echo 0)
  [ "$voters" = 3 ] && break
  sleep 0.2
done
[ "$voters" = 3 ] || { tail -20 "$work"/n*.log; echo "arm64 cluster: $voters voters" >&2; exit 1; }
leader=$(curl -s "http://$h3/v1/status/leader")
[ -n "$leader" ] && [ "$leader" != '""' ] || { echo "arm64 cluster: no leader" >&2; exit 1; }
echo "arm64 cluster: 3 voters, leader $leader"
ok=""
for _ in $(seq 1 100); do
  ok=$(curl -s -X PUT --data arm64 "http://$h2/v1/kv/smoke" || true)
  [ "$ok" = true ] && break
  sleep 0.2
done
got=""
for _ in $(seq 1 50); do
  got=$(curl -s "http://$h3/v1/kv/smoke?raw&stale" || true)
  [ "$got" = arm64 ] && break
  sleep 0.2
done
[ "$got" = arm64 ] || { echo "arm64 cluster: write on node 2 not on node 3 (got '$got')" >&2; exit 1; }
echo "arm64 cluster: ok (a write through node 2 read back from node 3)"

if command -v dig >/dev/null; then
  curl -sf -X PUT -d '{"Name":"smoke","ID":"smoke-1","Address":"10.64.0.1","Port":1}' \
    "http://$h1/v1/agent/service/register" >/dev/null
  ans=""
  for _ in $(seq 1 50); do
    ans=$(dig @"${dns3%:*}" -p "${dns3##*:}" +short smoke.lucid.internal A || true)
    [ "$ans" = 10.64.0.1 ] && break
    sleep 0.2
  done
  [ "$ans" = 10.64.0.1 ] || { echo "arm64 DNS answer on node 3: got '$ans'" >&2; exit 1; }
  echo "arm64 cluster: ok (smoke.lucid.internal, registered on node 1, resolves on node 3's DNS)"
fi
