#!/usr/bin/env bash
# Memory per waiting blocking query: one lucid-registry --dev, N KV watchers (`?index=&wait=`)
# held open by one asyncio client from 40 loopback addresses (below the per-address cap of
# 128), RSS read from /proc before and after every watcher is waiting (the registry's
# lucid_blocking_queries_waiting gauge says when). Then one write to another prefix: how
# many watchers it woke (none should: KV watchers wake per prefix).
#
#   tests/bench/blocking_memory.sh            # N=5000, release build
#   SMOKE=1 tests/bench/blocking_memory.sh    # N=300, debug build: CI's check
#
# Needs: curl, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
if [ -n "${SMOKE:-}" ]; then N=${N:-300}; PROFILE=debug; else N=${N:-5000}; PROFILE=${PROFILE:-release}; fi
if [ "$PROFILE" = release ]; then
  (cd "$root" && cargo build --release --quiet -p lucid-registry)
else
  (cd "$root" && cargo build --quiet -p lucid-registry)
fi
W=$(mktemp -d /tmp/lucid-watch-bench.XXXX)
PID=
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mapfile -t P < <(free_ports 3)
HTTP=127.0.0.1:${P[0]}
"$root/target/$PROFILE/lucid-registry" --dev --data-dir "$W/d" --http-addr "$HTTP" \
  --raft-addr "127.0.0.1:${P[1]}" --dns-addr "127.0.0.1:${P[2]}" >"$W/log" 2>&1 &
PID=$!
wait_for 200 curl -sf "http://$HTTP/v1/status/leader"
curl -sf -XPUT "http://$HTTP/v1/kv/w/0" -d v >/dev/null
IDX=$(curl -sfi "http://$HTTP/v1/kv/w/0" | awk 'tolower($1)=="x-consul-index:" {print $2+0}')
python3 - "$HTTP" "$N" "$IDX" "$PID" <<'PY'
import asyncio, re, sys, urllib.request
http, n, idx, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
host, port = http.split(":")
def rss():
    return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))
def waiting():
    text = urllib.request.urlopen(f"http://{http}/metrics").read().decode()
    m = re.search(r"^lucid_blocking_queries_waiting (\S+)", text, re.M)
    return int(float(m.group(1))) if m else 0
async def park(i):
    src = f"127.0.4.{1 + i % 40}"
    r, w = await asyncio.open_connection(host, int(port), local_addr=(src, 0))
    w.write(f"GET /v1/kv/w/{i % 500}?index={idx}&wait=120s HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await w.drain()
    return r, w
async def main():
    # Warm the code paths once, then measure from a settled process.
    for i in range(50):
        r, w = await asyncio.open_connection(host, int(port))
        w.write(f"GET /v1/kv/w/0?index={idx}&wait=1ms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await r.read()
        w.close()
    await asyncio.sleep(1)
    before = rss()
    conns = [await park(i) for i in range(n)]
    for _ in range(300):
        if waiting() >= n: break
        await asyncio.sleep(0.1)
    got = waiting()
    assert got >= n, f"only {got} of {n} watchers waiting"
    await asyncio.sleep(1)
    after = rss()
    # A write elsewhere must wake nobody.
    urllib.request.urlopen(urllib.request.Request(f"http://{http}/v1/kv/other", data=b"v", method="PUT")).read()
    await asyncio.sleep(0.5)
    woken = 0
    for r, _ in conns[:200]:
        try:
            if await asyncio.wait_for(r.read(1), 0.01): woken += 1
        except asyncio.TimeoutError:
            pass
    per = (after - before) * 1024 / n
    print(f"| {n} watchers | RSS {before} KiB -> {after} KiB | {per/1024:.1f} KiB per waiting query | woken by a write elsewhere: {woken} of 200 sampled |")
    assert woken == 0, "a write to another prefix woke KV watchers"
    for _, w in conns: w.close()
asyncio.run(main())
PY
