"""A grpcio server for the mesh tests: raw-bytes generic handlers, no generated code.

Usage: grpc_app.py NAME [--unavailable] [--fail-in-trailers]
Prints "listening grpc 127.0.0.1:PORT" on stderr once serving, then serves until killed.

Methods (all under /test.Echo/ unless noted):
  Unary          echo the request
  ServerStream   request b"N": N messages b"0".."N-1"
  ClientStream   answer the number of messages and bytes received, b"msgs,bytes"
  Bidi           echo each message as it comes
  Big            request b"N": one message of N bytes of b"x"
  Fail           request b"CODE:message": abort with that status and trailing metadata
  Slow           request b"MS": sleep MS milliseconds, then echo
  Who            answer NAME (which instance took the call); with --unavailable, UNAVAILABLE
                 (Trailers-Only); with --fail-in-trailers, one message then INTERNAL in the
                 trailers
  Trailers       echo, with trailing metadata x-lucid-test: trailer-value
/grpc.health.v1.Health/Check  SERVING, or NOT_SERVING after /test.Control/Sick
/test.Control/Sick, /test.Control/Well   flip the health answer
"""
import sys
import time
from concurrent import futures

import grpc

name = sys.argv[1]
unavailable = "--unavailable" in sys.argv
fail_in_trailers = "--fail-in-trailers" in sys.argv
state = {"serving": True}


def unary(req, ctx):
    return req


def server_stream(req, ctx):
    for i in range(int(req)):
        yield str(i).encode()


def client_stream(it, ctx):
    msgs = total = 0
    for m in it:
        msgs += 1
        total += len(m)
    return f"{msgs},{total}".encode()


def bidi(it, ctx):
    for m in it:
        yield m


def big(req, ctx):
    return b"x" * int(req)


def fail(req, ctx):
    code, _, message = req.decode().partition(":")
    ctx.set_trailing_metadata((("x-lucid-test", "failed"),))
    ctx.abort(getattr(grpc.StatusCode, code), message)


def slow(req, ctx):
    time.sleep(int(req) / 1000)
    return req


def who(req, ctx):
    if unavailable:
        ctx.abort(grpc.StatusCode.UNAVAILABLE, f"{name} is unavailable")
    if fail_in_trailers:
        # A message first: the status only arrives in the trailers.
        ctx.send_initial_metadata(())
        yield name.encode()
        ctx.abort(grpc.StatusCode.INTERNAL, f"{name} failed after answering")
    yield name.encode()


def trailers(req, ctx):
    ctx.set_trailing_metadata((("x-lucid-test", "trailer-value"),))
    return req


def health(req, ctx):
    # HealthCheckResponse { status = SERVING (1) | NOT_SERVING (2) }
    return b"\x08\x01" if state["serving"] else b"\x08\x02"


def sick(req, ctx):
    state["serving"] = False
    return b""


def well(req, ctx):
    state["serving"] = True
    return b""


uu = grpc.unary_unary_rpc_method_handler
handlers = [
    grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Unary": uu(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
            "Big": uu(big),
            "Fail": uu(fail),
            "Slow": uu(slow),
            # A streaming answer, so a failure can come after a message (in the trailers).
            "Who": grpc.unary_stream_rpc_method_handler(who),
            "Trailers": uu(trailers),
        },
    ),
    grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": uu(health)}),
    grpc.method_handlers_generic_handler("test.Control", {"Sick": uu(sick), "Well": uu(well)}),
]

opts = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]
server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), handlers=handlers, options=opts)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(f"listening grpc 127.0.0.1:{port}", file=sys.stderr, flush=True)
server.wait_for_termination()
