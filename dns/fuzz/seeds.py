#!/usr/bin/env python3
"""Write seed inputs for the `handler` fuzz target into seeds/: one byte choosing UDP (even)
or TCP (odd), then a DNS query for each name form and record type, with and without EDNS."""
import itertools
import os
import struct

names = ["web.lucid.internal", "v1.web.lucid.internal", "_web._tcp.lucid.internal",
         "web-1.instance.lucid.internal", "big.lucid.internal", "odd.lucid.internal",
         "x.y.instance.lucid.internal", "lucid.internal", "web.service.consul",
         "_big._tcp.service.consul", "nope.lucid.internal", "example.com"]
types = {"A": 1, "AAAA": 28, "SRV": 33, "TXT": 16, "SOA": 6, "ANY": 255, "MX": 15}
out = os.path.join(os.path.dirname(__file__), "seeds")
os.makedirs(out, exist_ok=True)
for i, (name, (tname, t), edns, proto) in enumerate(
        itertools.product(names, types.items(), [None, 512, 4096], [0, 1])):
    q = struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 1 if edns else 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", t, 1)
    if edns:
        q += b"\x00" + struct.pack(">HHIH", 41, edns, 0, 0)
    with open(os.path.join(out, f"{name}-{tname}-{edns}-{proto}"), "wb") as f:
        f.write(bytes([proto]) + q)
