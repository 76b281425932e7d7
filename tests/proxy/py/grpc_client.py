"""A grpcio client for the mesh tests, calling through a sidecar's outbound listener with the
destination as :authority (`grpc.default_authority`), as an app in the mesh would.

Usage: grpc_client.py OUTBOUND_ADDR AUTHORITY PHASE [ARG]
  calls      every call shape, a 4 MiB message each way, trailers, an app error, a deadline;
             exits non-zero on the first wrong answer
  status M   one unary call of method M (e.g. Unary); prints {"code", "details"}
  who N      N calls of Who; prints [{"code", "name", "details"}, ...]
  control M  /test.Control/M (Sick, Well) straight to the app: OUTBOUND_ADDR is the app's
"""
import json
import sys

import grpc

target, authority, phase = sys.argv[1], sys.argv[2], sys.argv[3]
opts = [
    ("grpc.default_authority", authority),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
    # Each call shape on its own: the mesh's retries are what is tested, not grpcio's.
    ("grpc.enable_retries", 0),
]
ch = grpc.insecure_channel(target, options=opts)
grpc.channel_ready_future(ch).result(timeout=20)


def m(kind, name):
    return getattr(ch, kind)(f"/test.Echo/{name}")


def expect(what, got, want):
    if got != want:
        sys.exit(f"FAILED: {what}: got {got!r}, want {want!r}")


def calls():
    expect("unary", m("unary_unary", "Unary")(b"hello", timeout=10), b"hello")
    expect(
        "server streaming",
        list(m("unary_stream", "ServerStream")(b"5", timeout=10)),
        [b"0", b"1", b"2", b"3", b"4"],
    )
    msgs = [b"a" * n for n in (1, 10, 100, 1000, 10000)]
    expect("client streaming", m("stream_unary", "ClientStream")(iter(msgs), timeout=10), b"5,11111")
    expect("bidi", list(m("stream_stream", "Bidi")(iter(msgs), timeout=10)), msgs)
    size = 4 << 20
    expect("4 MiB answer", len(m("unary_unary", "Big")(str(size).encode(), timeout=30)), size)
    payload = bytes(range(256)) * (size // 256)
    expect("4 MiB request", m("unary_unary", "Unary")(payload, timeout=30), payload)
    resp, call = m("unary_unary", "Trailers").with_call(b"t", timeout=10)
    expect("trailers answer", resp, b"t")
    expect(
        "trailing metadata",
        dict(call.trailing_metadata()).get("x-lucid-test"),
        "trailer-value",
    )
    try:
        m("unary_unary", "Fail")(b"NOT_FOUND:no such ledger", timeout=10)
        sys.exit("FAILED: an app error status was not raised")
    except grpc.RpcError as e:
        expect("app status", e.code(), grpc.StatusCode.NOT_FOUND)
        expect("app message", e.details(), "no such ledger")
        expect("app error trailers", dict(e.trailing_metadata()).get("x-lucid-test"), "failed")
    try:
        m("unary_unary", "Slow")(b"3000", timeout=0.5)
        sys.exit("FAILED: a call past its deadline succeeded")
    except grpc.RpcError as e:
        expect("deadline", e.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
    print(json.dumps({"ok": True}))


def one(method):
    try:
        m("unary_unary", method)(b"x", timeout=10)
        return {"code": "OK", "details": ""}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details() or ""}


def who(n):
    out = []
    for _ in range(n):
        try:
            names = list(m("unary_stream", "Who")(b"", timeout=10))
            out.append({"code": "OK", "name": b"".join(names).decode(), "details": ""})
        except grpc.RpcError as e:
            out.append({"code": e.code().name, "name": "", "details": e.details() or ""})
    return out


if phase == "calls":
    calls()
elif phase == "status":
    print(json.dumps(one(sys.argv[4])))
elif phase == "control":
    ch.unary_unary(f"/test.Control/{sys.argv[4]}")(b"", timeout=10)
    print(json.dumps({"ok": True}))
elif phase == "who":
    print(json.dumps(who(int(sys.argv[4]))))
else:
    sys.exit(f"unknown phase {phase}")
