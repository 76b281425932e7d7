"""A WebSocket client (the `websockets` library) for the mesh tests, connecting through a
sidecar's outbound listener: the socket goes to the sidecar, the URI names the destination.

Usage: ws_client.py OUTBOUND_ADDR SERVICE PHASE
  echo     500 echoes, a 1 MiB frame, a ping answered by a pong, then the app closes with
           code 4001 and reason "done"; exits non-zero on the first wrong answer
  denied   the handshake must be refused; prints {"status": N, "error": "..."}
  hold N   open N connections, echo once on each, print "open" and keep them until stdin
           closes (for the memory measurement)
"""
import asyncio
import json
import socket
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

host, port = sys.argv[1].rsplit(":", 1)
service, phase = sys.argv[2], sys.argv[3]
uri = f"ws://{service}.lucid.internal/ws"


def expect(what, got, want):
    if got != want:
        sys.exit(f"FAILED: {what}: got {got!r}, want {want!r}")


def sock():
    s = socket.create_connection((host, int(port)))
    return s


async def echo():
    async with connect(uri, sock=sock(), max_size=8 << 20, open_timeout=20) as ws:
        for i in range(500):
            await ws.send(f"m{i}")
            expect("echo", await asyncio.wait_for(ws.recv(), 10), f"m{i}")
        big = bytes(range(256)) * 4096
        await ws.send(big)
        expect("1 MiB frame", await asyncio.wait_for(ws.recv(), 30), big)
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)
        await ws.send("close:4001:done")
        try:
            await asyncio.wait_for(ws.recv(), 10)
            sys.exit("FAILED: the app's close did not arrive")
        except ConnectionClosed as e:
            expect("close code", e.rcvd.code if e.rcvd else None, 4001)
            expect("close reason", e.rcvd.reason if e.rcvd else None, "done")
    print(json.dumps({"ok": True}))


async def denied():
    try:
        async with connect(uri, sock=sock(), open_timeout=20):
            pass
        print(json.dumps({"status": 101, "error": ""}))
    except InvalidStatus as e:
        body = e.response.body.decode(errors="replace") if e.response.body else ""
        print(json.dumps({"status": e.response.status_code, "error": body}))


async def hold(n):
    conns = []
    for i in range(n):
        ws = await connect(uri, sock=sock(), open_timeout=20)
        await ws.send(f"h{i}")
        expect("hold echo", await asyncio.wait_for(ws.recv(), 10), f"h{i}")
        conns.append(ws)
    print("open", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for ws in conns:
        await ws.close()


if phase == "echo":
    asyncio.run(echo())
elif phase == "denied":
    asyncio.run(denied())
elif phase == "hold":
    asyncio.run(hold(int(sys.argv[4])))
else:
    sys.exit(f"unknown phase {phase}")
