"""DNS propagation: from a registration acknowledged by one node to its instance name
resolving in DNS on every node (each polled over UDP every 0.5 ms). Prints p50/p99/max in ms.
Usage: dns_propagation.py N http://register-via dns-ip:port ..."""
import json
import socket
import struct
import sys
import threading
import time
import urllib.request

n, via, servers = int(sys.argv[1]), sys.argv[2], sys.argv[3:]


def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)


def resolves(sock, server, name, qid):
    host, port = server.rsplit(":", 1)
    sock.sendto(query(name, qid), (host, int(port)))
    while True:
        data, _ = sock.recvfrom(4096)
        rid, flags, _, ancount = struct.unpack(">HHHH", data[:8])
        if rid == qid:
            return flags & 0xF == 0 and ancount > 0


samples = []
for i in range(n):
    sid = f"dnsprop-{i}"
    body = json.dumps({"name": "dnsprop", "id": sid, "address": f"10.77.{i // 250}.{i % 250 + 1}",
                       "port": 1}).encode()
    req = urllib.request.Request(f"{via}/v1/agent/service/register", data=body, method="PUT")
    urllib.request.urlopen(req).read()
    acked = time.perf_counter()
    seen = {}

    def watch(server):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2)
        qid = 0
        while True:
            qid = (qid + 1) % 65536
            if resolves(sock, server, f"{sid}.instance.lucid.internal", qid):
                break
            time.sleep(0.0005)
        seen[server] = time.perf_counter()

    ts = [threading.Thread(target=watch, args=(s,)) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    samples.append((max(seen.values()) - acked) * 1000)
samples.sort()
pct = lambda p: samples[min(len(samples) - 1, int(len(samples) * p))]
print(f"RESULT p50_ms={pct(0.5):.2f} p99_ms={pct(0.99):.2f} max_ms={samples[-1]:.2f} n={n}")
