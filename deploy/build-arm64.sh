#!/usr/bin/env bash
# Cross-build the Lucid Mesh binaries for aarch64-unknown-linux-gnu, strip them, print their
# sizes, and smoke-run each under qemu-aarch64-static: --version, --help, and a dev registry
# that must answer a KV round trip.
#
# Needs: rustup, Debian's gcc-aarch64-linux-gnu and qemu-user-static (installed when missing
# and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
BINS=(lucid-registry lucid-proxy lucidctl)
OUT="target/$TARGET/release"

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
pkgs=()
for b in "${BINS[@]}"; do pkgs+=(--bin "$b"); done
cargo build --release --locked --target "$TARGET" "${pkgs[@]}"

QEMU=(qemu-aarch64-static -L /usr/aarch64-linux-gnu)
printf '%-16s %10s\n' binary bytes
for b in "${BINS[@]}"; do
  aarch64-linux-gnu-strip "$OUT/$b"
  file "$OUT/$b" 2>/dev/null | grep -q aarch64 || { command -v file >/dev/null && { echo "$b is not an aarch64 binary" >&2; exit 1; }; }
  printf '%-16s %10s\n' "$b" "$(stat -c %s "$OUT/$b")"
  "${QEMU[@]}" "$OUT/$b" --version
  "${QEMU[@]}" "$OUT/$b" --help >/dev/null
done

# A dev registry under emulation must serve a KV round trip.
work=$(mktemp -d)
"${QEMU[@]}" "$OUT/lucid-registry" --dev --data-dir "$work/data" \
  --http-addr 127.0.0.1:0 --raft-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0 2>"$work/log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
http=""
for _ in $(seq 1 300); do
  http=$(grep -o 'listening http [0-9.:]*' "$work/log" | awk '{print $3}' || true)
  [ -n "$http" ] && break
  sleep 0.1
done
[ -n "$http" ] || { cat "$work/log"; echo "arm64 registry did not start" >&2; exit 1; }
for _ in $(seq 1 100); do
  if [ "$(curl -s -X PUT --data arm64 "http://$http/v1/kv/smoke" || true)" = true ]; then break; fi
  sleep 0.2
done
got=$(curl -s "http://$http/v1/kv/smoke?raw")
[ "$got" = arm64 ] || { cat "$work/log"; echo "arm64 KV round trip failed: got '$got'" >&2; exit 1; }
echo "arm64 smoke run: ok (KV round trip through a dev registry under qemu)"

if command -v dig >/dev/null; then
  dns=$(grep -o 'listening dns [0-9.:]*' "$work/log" | awk '{print $3}')
  curl -sf -X PUT -d '{"Name":"smoke","ID":"smoke-1","Address":"10.64.0.1","Port":1}' \
    "http://$http/v1/agent/service/register" >/dev/null
  ans=""
  for _ in $(seq 1 50); do
    ans=$(dig @"${dns%:*}" -p "${dns##*:}" +short smoke.lucid.internal A || true)
    [ "$ans" = 10.64.0.1 ] && break
    sleep 0.2
  done
  [ "$ans" = 10.64.0.1 ] || { cat "$work/log"; echo "arm64 DNS answer: got '$ans'" >&2; exit 1; }
  echo "arm64 smoke run: ok (smoke.lucid.internal resolves through the registry's DNS under qemu)"
fi
