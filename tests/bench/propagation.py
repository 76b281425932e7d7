"""Propagation: from a registration acknowledged by one node to it being visible (?stale) on
every node. Prints p50/p99/max in ms. Usage: propagation.py N http://a http://b http://c"""
import json
import sys
import threading
import time
import urllib.request

n, nodes = int(sys.argv[1]), sys.argv[2:]


def visible(base, sid):
    with urllib.request.urlopen(f"{base}/v1/health/service/prop?stale") as r:
        return any(e["Service"]["ID"] == sid for e in json.load(r))


samples = []
for i in range(n):
    sid = f"prop-{i}"
    body = json.dumps({"name": "prop", "id": sid, "port": 1}).encode()
    req = urllib.request.Request(f"{nodes[0]}/v1/agent/service/register", data=body, method="PUT")
    urllib.request.urlopen(req).read()
    acked = time.perf_counter()
    seen = {}

    def watch(base):
        while not visible(base, sid):
            time.sleep(0.0005)
        seen[base] = time.perf_counter()

    ts = [threading.Thread(target=watch, args=(b,)) for b in nodes]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    samples.append((max(seen.values()) - acked) * 1000)
samples.sort()
pct = lambda p: samples[min(len(samples) - 1, int(len(samples) * p))]
print(f"RESULT p50_ms={pct(0.5):.2f} p99_ms={pct(0.99):.2f} max_ms={samples[-1]:.2f} n={n}")
