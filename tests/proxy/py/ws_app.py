"""A WebSocket server (the `websockets` library) for the mesh tests.

Usage: ws_app.py NAME
Prints "listening ws 127.0.0.1:PORT" on stderr once serving. Every connection: each message
is echoed back; the message "close:CODE:REASON" makes the server close with that code and
reason. A plain GET /health answers 200 (the sidecar's health probe).
"""
import asyncio
import http
import sys

from websockets.asyncio.server import serve

name = sys.argv[1]


async def handler(ws):
    async for msg in ws:
        if isinstance(msg, str) and msg.startswith("close:"):
            _, code, reason = msg.split(":", 2)
            await ws.close(int(code), reason)
            return
        await ws.send(msg)


def health(conn, request):
    if request.path == "/health":
        return conn.respond(http.HTTPStatus.OK, "ok\n")
    return None


async def main():
    async with serve(handler, "127.0.0.1", 0, max_size=8 << 20, process_request=health) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening ws 127.0.0.1:{port}", file=sys.stderr, flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
