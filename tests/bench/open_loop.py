#!/usr/bin/env python3
"""Open-loop HTTP load: requests leave on a fixed schedule whatever the server does, and
each one's latency is counted from when it was *due*, so a slow answer cannot hide the queue
behind it (no coordinated omission).

    open_loop.py --base http://127.0.0.1:8500 --rate 200 --duration 10 --conns 8 REQUESTS

REQUESTS holds one JSON list per line: [method, path, body-or-null]; they are sent in turn,
round and round. Prints one JSON object: sent, ok, errors, p50_ms, p99_ms, p999_ms, max_ms.
A worker pool of keep-alive connections (--conns) carries the requests; if every worker is
busy when a request is due, it waits in the queue and that wait is part of its latency.
"""
import argparse
import http.client
import json
import queue
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("requests")
    a = ap.parse_args()
    with open(a.requests) as f:
        reqs = [json.loads(line) for line in f if line.strip()]
    u = urllib.parse.urlparse(a.base)
    q = queue.Queue()
    lat, errors, lock = [], [0], threading.Lock()

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        while True:
            item = q.get()
            if item is None:
                return
            due, (method, path, body) = item
            try:
                conn.request(method, path, body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                ok = 200 <= r.status < 300
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            done = time.monotonic()
            with lock:
                if ok:
                    lat.append(done - due)
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.conns)]
    for t in threads:
        t.start()
    start = time.monotonic()
    n = int(a.rate * a.duration)
    for i in range(n):
        due = start + i / a.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        q.put((due, reqs[i % len(reqs)]))
    for _ in threads:
        q.put(None)
    for t in threads:
        t.join(timeout=30)
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 2) if lat else None

    print(json.dumps({"sent": n, "ok": len(lat), "errors": errors[0], "p50_ms": pct(50),
                      "p99_ms": pct(99), "p999_ms": pct(99.9),
                      "max_ms": round(lat[-1] * 1000, 2) if lat else None}))


if __name__ == "__main__":
    main()
