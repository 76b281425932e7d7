#!/usr/bin/env bash
# DNS: lucid-registry's responder against dnsmasq serving the same records (SERVICES services x
# PER instances: A for <svc>.lucid.internal, SRV for _<svc>._tcp.lucid.internal with the
# instances' A records as additionals), in the same run on the same machine, with two query
# mixes: A only, and A + SRV half and half.
#   1. max throughput: dnsperf closed loop (-c 4 -q 200) for DURATION seconds, each server;
#   2. latency at a fixed rate: dnsperf -Q RATE (paced, open loop up to -q in flight),
#      per-query latencies from -v, p50/p99/p99.9;
#   3. CPU seconds per 100k answers during (1), and RSS;
#   4. the registry's RSS after growing to BIG instances;
#   5. (RRL=1, the default) response rate limiting as a client outside the exempt networks
#      sees it: dnsperf from 127.0.0.2 paced at 150/s and 190/s (below the default 200/s
#      per source), then flooding closed loop; 127.0.0.1 (steps 1-3) is exempt. RRL=0 runs
#      steps 1-4 only, against a registry built before RRL existed.
# Each server is measured ROUNDS times, alternating, and every round is printed.
#
#   tests/bench/dns.sh        # SERVICES=1000 PER=3 DURATION=10 RATE=20000 ROUNDS=2 BIG=10000
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
SERVICES=${SERVICES:-1000}
PER=${PER:-3}
DURATION=${DURATION:-10}
RATE=${RATE:-20000}
ROUNDS=${ROUNDS:-2}
BIG=${BIG:-10000}
RRL=${RRL:-1}
rrl_flags=(); [ "$RRL" = 1 ] && rrl_flags=(--dns-rrl-exempt 127.0.0.1/32)

for t in dnsperf dnsmasq dig curl python3; do
  command -v $t >/dev/null || { echo "missing $t (apt-get install dnsperf dnsmasq-base dnsutils)" >&2; exit 1; }
done
(cd "$root" && cargo build --release --quiet -p lucid-registry)
LUCID="$root/target/release/lucid-registry"
W=$(mktemp -d /tmp/lucid-dnsbench.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

mapfile -t P < <(free_ports 4)
HTTP=127.0.0.1:${P[0]}; RAFT=127.0.0.1:${P[1]}; LDNS=${P[2]}; MDNS=${P[3]}
"$LUCID" --node-id 1 --bootstrap --data-dir "$W/reg" --http-addr "$HTTP" --raft-addr "$RAFT" \
  --dns-addr "127.0.0.1:$LDNS" "${rrl_flags[@]}" 2>>"$W/reg.log" &
lucid=$!; pids+=("$lucid")
wait_for 200 curl -sf "http://$HTTP/health" -o /dev/null
leads() { curl -s "http://$HTTP/status" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["role"]=="leader" else 1)'; }
wait_for 200 leads
python3 "$here/dns_setup.py" "$HTTP" "$SERVICES" "$PER" "$W"
last="svc-$((SERVICES - 1)).lucid.internal"
has_all() { [ "$(dig @127.0.0.1 -p "$1" +short "$last" A | wc -l)" = "$PER" ]; }
wait_for 100 has_all "$LDNS"

dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$W/hosts" --conf-file="$W/srv.conf" \
  --port="$MDNS" --listen-address=127.0.0.1 --bind-interfaces --local=/lucid.internal/ \
  --user="$(id -un)" --pid-file= 2>>"$W/dnsmasq.log" &
masq=$!; pids+=("$masq")
wait_for 100 has_all "$MDNS"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# dnsperf summary -> "qps avg_ms lost"
summary() {
  awk '/Queries per second:/ {q=$4} /Average Latency/ {a=$4*1000} /Queries lost:/ {l=$3}
       END {printf "%.0f %.3f %s\n", q, a, l}'
}
# dnsperf -v per-query lines ("> NOERROR name type 0.000123") -> "p50 p99 p999 (ms) n"
percentiles() {
  python3 -c '
import sys
v, lost = [], 0
for l in sys.stdin:
    if not l.startswith(">"):
        continue
    try:
        v.append(float(l.split()[-1]) * 1000)
    except ValueError:
        lost += 1  # "> T name type": timed out
v.sort()
p = lambda q: v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")
print(f"{p(.5):.3f} {p(.99):.3f} {p(.999):.3f} {len(v)} {lost}")'
}

rows=()
for round in $(seq 1 "$ROUNDS"); do
  for mix in a a-srv; do
    for who in lucid dnsmasq; do
      if [ "$who" = lucid ]; then port=$LDNS; pid=$lucid; else port=$MDNS; pid=$masq; fi
      t0=$(cpu_ticks "$pid")
      read -r qps avg lost < <(dnsperf -s 127.0.0.1 -p "$port" -d "$W/queries-$mix" -l "$DURATION" -c 4 -q 200 2>&1 | summary)
      t1=$(cpu_ticks "$pid")
      answered=$(python3 -c "print(int($qps * $DURATION))")
      cpu=$(python3 -c "print(f'{($t1 - $t0) / $hz / max($answered, 1) * 100000:.2f}')")
      # -v lines go to a file: through a pipe, dnsperf stalls on stdout and its own socket
      # drops answers.
      dnsperf -s 127.0.0.1 -p "$port" -d "$W/queries-$mix" -l "$DURATION" -Q "$RATE" -q 1000 -v > "$W/lat.txt" 2>/dev/null
      read -r p50 p99 p999 n plost < <(percentiles < "$W/lat.txt")
      rows+=("| $round | $who | ${mix^^} | $qps | $avg | $lost | $cpu | $p50 / $p99 / $p999 ($n answered, $plost lost) | $(( $(rss_kib "$pid") / 1024 )) MiB |")
    done
  done
done

rrl_rows=()
if [ "$RRL" = 1 ]; then
  for load in "-Q 150 -q 20" "-Q 190 -q 20" "-c 4 -q 200"; do
    read -r qps avg lost < <(dnsperf -a 127.0.0.2 -s 127.0.0.1 -p "$LDNS" -d "$W/queries-a" -l "$DURATION" $load 2>&1 | summary)
    rrl_rows+=("| dnsperf $load from 127.0.0.2 | $qps | $lost |")
  done
fi

python3 "$here/dns_setup.py" "$HTTP" $(( (BIG - SERVICES * PER) / PER )) "$PER" "$W/big" "$SERVICES"
last="svc-$((SERVICES + (BIG - SERVICES * PER) / PER - 1)).lucid.internal"
wait_for 100 has_all "$LDNS"
big_rss=$(( $(rss_kib "$lucid") / 1024 ))

cat <<TABLE
DNS, $SERVICES services x $PER instances, A + SRV queries shuffled, loopback, $(nproc) cores, lucid-registry $(git -C "$root" rev-parse --short HEAD), $(dnsmasq --version | head -1 | cut -d' ' -f1-3)

| round | server | queries | max queries/s (dnsperf -c4 -q200, ${DURATION}s) | avg latency ms | lost | CPU s per 100k answers | p50 / p99 / p99.9 ms at $RATE queries/s (dnsperf -Q $RATE) | RSS |
|---|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${rows[@]}")

lucid-registry RSS with $BIG instances registered: $big_rss MiB
TABLE
if [ "$RRL" = 1 ]; then
  cat <<TABLE

Response rate limiting (default --dns-rrl-rate 200 --dns-rrl-slip 2), one source outside the exempt networks, A queries, ${DURATION}s each

| load | answered queries/s | lost (dropped by RRL, or slipped TC answers dnsperf counts as lost) |
|---|---|---|
$(printf '%s\n' "${rrl_rows[@]}")
TABLE
fi
