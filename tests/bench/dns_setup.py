#!/usr/bin/env python3
"""Register SERVICES x PER instances in a lucid-registry and write the same records for
dnsmasq (a hosts file and srv-host lines) plus dnsperf query files (A for every service;
A and SRV for every service), shuffled.

    dns_setup.py HTTP_ADDR SERVICES PER OUT_DIR [FIRST_SERVICE]

Instance k of service n is svc-n-k at 10.<n // 250>.<n % 250>.<k + 1>, port 8000 + k.
"""
import http.client
import json
import os
import random
import sys
import threading

http_addr, services, per, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
first = int(sys.argv[5]) if len(sys.argv) > 5 else 0
host, port = http_addr.rsplit(":", 1)
jobs = [(n, k) for n in range(first, first + services) for k in range(per)]
errors = []


def worker(chunk):
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    for n, k in chunk:
        body = json.dumps({"Name": f"svc-{n}", "ID": f"svc-{n}-{k}",
                           "Address": f"10.{n // 250}.{n % 250}.{k + 1}", "Port": 8000 + k})
        conn.request("PUT", "/v1/agent/service/register", body)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            errors.append(r.status)


threads = [threading.Thread(target=worker, args=(jobs[i::8],)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    sys.exit(f"{len(errors)} registrations failed: {errors[:5]}")

if first == 0:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "hosts"), "w") as h, open(os.path.join(out, "srv.conf"), "w") as s:
        for n, k in jobs:
            ip = f"10.{n // 250}.{n % 250}.{k + 1}"
            h.write(f"{ip} svc-{n}.lucid.internal svc-{n}-{k}.instance.lucid.internal\n")
            s.write(f"srv-host=_svc-{n}._tcp.lucid.internal,svc-{n}-{k}.instance.lucid.internal,{8000 + k},1,1\n")
    a = [f"svc-{n}.lucid.internal A" for n in range(services)]
    srv = [f"_svc-{n}._tcp.lucid.internal SRV" for n in range(services)]
    for name, queries in (("queries-a", a), ("queries-a-srv", a + srv)):
        random.Random(1).shuffle(queries)
        with open(os.path.join(out, name), "w") as q:
            q.write("\n".join(queries) + "\n")
