#!/usr/bin/env bash
# Bulk intention writes with sidecars following: one lucid-registry, N intentions written by
# 32 concurrent keep-alive HTTP clients (`PUT /v1/connect/intentions/exact`), first with no
# sidecar following, then (N new ones) with two lucid-proxy sidecars following the list. The
# sidecars fetch the list at most every 250 ms, so the second figure should stay near the
# first; the audit measured 873 s for 20,000 when each change re-sent the whole list.
# Also reported: how long after the last write both sidecars hold every intention.
#
#   tests/bench/intentions.sh            # N=20000, release build
#   SMOKE=1 tests/bench/intentions.sh    # N=400, debug build: CI's check
#
# Needs: curl, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
if [ -n "${SMOKE:-}" ]; then N=${N:-400}; PROFILE=debug; else N=${N:-20000}; PROFILE=${PROFILE:-release}; fi
flag=(); [ "$PROFILE" = release ] && flag=(--release)
(cd "$root" && cargo build "${flag[@]}" --quiet -p lucid-registry -p lucid-proxy -p lucid-tests \
  --bin lucid-registry --bin lucid-proxy --bin lucid-test-app)
BIN="$root/target/$PROFILE"
W=$(mktemp -d /tmp/lucid-intentions-bench.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $W" >&2 || rm -rf "$W"; }
trap cleanup EXIT

mapfile -t P < <(free_ports 10)
HTTP=127.0.0.1:${P[0]}
"$BIN/lucid-registry" --node-id 1 --bootstrap --data-dir "$W/reg" --http-addr "$HTTP" \
  --raft-addr "127.0.0.1:${P[1]}" --dns-addr "127.0.0.1:${P[2]}" \
  --ca-key-secret-file "$(ca_secret "$W/ca.secret")" 2>>"$W/reg.log" &
pids+=($!)
wait_for 300 has_ca_root "$HTTP"
APP=${P[3]}
"$BIN/lucid-test-app" --name b --port "$APP" 2>>"$W/app.log" &
pids+=($!)
wait_for 100 curl -sf "http://127.0.0.1:$APP/health"

# Write N intentions `<prefix>-<i> -> ledger`; print the seconds it took.
write() {
  python3 - "$HTTP" "$N" "$1" <<'PY'
import http.client, sys, threading, time
addr, n, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host, port = addr.split(":")
todo, lock, failed = iter(range(n)), threading.Lock(), []
def worker():
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    while True:
        with lock:
            i = next(todo, None)
        if i is None:
            return
        try:
            c.request("PUT", f"/v1/connect/intentions/exact?source={prefix}-{i}&destination=ledger",
                      body=b'{"Action":"allow"}', headers={"Content-Type": "application/json"})
            r = c.getresponse(); r.read()
            if r.status != 200:
                failed.append(r.status)
        except OSError as e:
            failed.append(repr(e))
            c = http.client.HTTPConnection(host, int(port), timeout=30)
t0 = time.monotonic()
ts = [threading.Thread(target=worker) for _ in range(32)]
for t in ts: t.start()
for t in ts: t.join()
if failed:
    sys.exit(f"{len(failed)} writes failed, e.g. {failed[0]}")
print(f"{time.monotonic() - t0:.2f}")
PY
}
# Intentions a sidecar holds, from its admin port.
held() { curl -sf "http://$1/config_dump" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["intentions"]))'; }

alone=$(write s)
echo "no sidecars: $N intentions in ${alone}s" >&2

for s in 0 1; do
  "$BIN/lucid-proxy" --service "web$s" --app-port "$APP" --registry "http://$HTTP" \
    --inbound-addr "127.0.0.1:${P[$((4 + 3 * s))]}" --outbound-addr "127.0.0.1:${P[$((5 + 3 * s))]}" \
    --admin-addr "127.0.0.1:${P[$((6 + 3 * s))]}" 2>>"$W/proxy$s.log" &
  pids+=($!)
done
for s in 0 1; do wait_for 300 curl -sf "http://127.0.0.1:${P[$((6 + 3 * s))]}/ready"; done

followed=$(write t)
t_end=$(now_ms)
for s in 0 1; do
  a="127.0.0.1:${P[$((6 + 3 * s))]}"
  for _ in $(seq 1 600); do [ "$(held "$a")" = $((2 * N)) ] && break; sleep 0.1; done
  [ "$(held "$a")" = $((2 * N)) ] || { echo "sidecar $s holds $(held "$a") of $((2 * N))" >&2; exit 1; }
done
caught=$(( $(now_ms) - t_end ))
echo "two sidecars following: $N more intentions in ${followed}s; both held all $((2 * N)) ${caught} ms after the last write" >&2
python3 - "$N" "$alone" "$followed" "$caught" <<'PY'
import sys
n, a, f, c = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print("| intentions | no sidecars | two sidecars following | writes/s (following) | sidecars hold all after last write |")
print("|---|---|---|---|---|")
print(f"| {n} | {a:.1f} s | {f:.1f} s | {n / f:.0f} | {c} ms |")
PY
