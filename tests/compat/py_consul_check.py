"""Drive a live lucid-registry with the real py-consul client (PyPI), as the Lucid services do.

Run by tests/registry/pyconsul.rs with LUCID_HOST / LUCID_PORT set; exits non-zero on the
first failed expectation.
"""
import http.server
import os
import socketserver
import sys
import threading
import time

import consul

host, port = os.environ["LUCID_HOST"], int(os.environ["LUCID_PORT"])
c = consul.Consul(host=host, port=port)


def eventually(what, pred, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    sys.exit(f"FAILED: timed out waiting for {what}")


def expect(what, cond):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


# --- status and agent.self -----------------------------------------------------------------
leader = c.status.leader()
expect("status.leader() is one of status.peers()", leader and leader in c.status.peers())
me = c.agent.self()
expect("agent.self() leader_addr matches status.leader()", me["Stats"]["consul"]["leader_addr"] == leader)
expect("agent.self() Member is in agent.members()", me["Member"] in c.agent.members())

# --- kv ------------------------------------------------------------------------------------
expect("kv.put", c.kv.put("py/a", "1"))
idx, item = c.kv.get("py/a")
expect("kv.get returns the value and an index", item["Value"] == b"1" and int(idx) > 0)
expect("kv.put empty value", c.kv.put("py/empty", None))
expect("kv.get empty value is None", c.kv.get("py/empty")[1]["Value"] is None)
expect("kv.put cas=0 on an existing key is refused", c.kv.put("py/a", "2", cas=0) is False)
expect("kv.put cas=ModifyIndex succeeds", c.kv.put("py/a", "2", cas=item["ModifyIndex"]))
expect("kv.get recurse", len(c.kv.get("py/", recurse=True)[1]) == 2)
expect("kv.get keys", sorted(c.kv.get("py/", keys=True)[1]) == ["py/a", "py/empty"])
expect("kv.delete recurse", c.kv.delete("py/", recurse=True))
expect("kv.get missing key is None", c.kv.get("py/a")[1] is None)


# --- a real HTTP endpoint for the HTTP check -------------------------------------------------
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


srv = socketserver.TCPServer(("127.0.0.1", 0), Ok)
threading.Thread(target=srv.serve_forever, daemon=True).start()
app_port = srv.server_address[1]

# --- registration with HTTP, TCP, TTL and several checks --------------------------------------
Check = consul.Check
c.agent.service.register("web", service_id="web-1", port=app_port, tags=["v1"],
                         check=Check.http(f"http://127.0.0.1:{app_port}/health", "1s", timeout="1s"))
c.agent.service.register("db", service_id="db-1", port=app_port,
                         check=Check.tcp("127.0.0.1", app_port, "1s"))
c.agent.service.register("worker", service_id="w-1", check=Check.ttl("30s"))
c.agent.service.register("multi", service_id="m-1", check=Check.ttl("30s"),
                         extra_checks=[Check.ttl("30s"), Check.ttl("30s")])
checks = c.agent.checks()
expect("several checks get ids service:m-1:1..3",
       all(f"service:m-1:{n}" in checks for n in (1, 2, 3)))
expect("agent.services() lists every instance",
       {"web-1", "db-1", "w-1", "m-1"} <= set(c.agent.services()))
idx, services = c.catalog.services()
expect("catalog.services() maps names to tags", services.get("web") == ["v1"] and "db" in services)

eventually("the HTTP check to pass", lambda: len(c.health.service("web", passing=True)[1]) == 1)
eventually("the TCP check to pass", lambda: len(c.health.service("db", passing=True)[1]) == 1)
idx, nodes = c.health.service("web")
expect("health.service carries serfHealth and the service check",
       [x["CheckID"] for x in nodes[0]["Checks"]] == ["serfHealth", "service:web-1"])

expect("a TTL check starts critical", c.health.service("worker", passing=True)[1] == [])
c.agent.check.ttl_pass("service:w-1", "all good")
expect("ttl_pass makes it pass", len(c.health.service("worker", passing=True)[1]) == 1)
expect("the note becomes the output", c.agent.checks()["service:w-1"]["Output"] == "all good")
c.agent.check.ttl_warn("service:w-1")
expect("ttl_warn drops it from passing=True", c.health.service("worker", passing=True)[1] == [])
c.agent.check.ttl_fail("service:w-1")
expect("ttl_fail makes it critical", c.agent.checks()["service:w-1"]["Status"] == "critical")

# --- prepared queries (py-consul always sends a name_prefix_match template) --------------------
q = c.query.create("db", name="db-near", onlypassing=True, ttl="10s")
expect("query.create answers an ID", len(q["ID"]) == 36)
expect("query.get shows the definition", c.query.get(q["ID"])[0]["Service"]["Service"] == "db")
expect("query.list lists it", [x["ID"] for x in c.query.list()] == [q["ID"]])
r = c.query.execute("db-near")
expect("execute by name answers the healthy instance with the query's TTL",
       [n["Service"]["ID"] for n in r["Nodes"]] == ["db-1"] and r["DNS"]["TTL"] == "10s")
try:
    c.query.execute(q["ID"])
    expect("a template is not executed by its ID (Consul refuses it)", False)
except consul.ConsulException as e:
    expect("a template is not executed by its ID (Consul refuses it)", "resolved up by name" in str(e))
try:
    c.query.create("web", name="db-near")
    expect("a second query with a taken name is refused", False)
except consul.ConsulException as e:
    expect("a second query with a taken name is refused", "aliases an existing query name" in str(e))
c.query.update(q["ID"], "worker", name="db-near", onlypassing=True)
expect("after update it selects the critical worker: nobody", c.query.execute("db-near")["Nodes"] == [])
expect("explain shows the rendered query", c.query.explain("db-near")["Query"]["Service"]["Service"] == "worker")
c.query.delete(q["ID"])
expect("query.delete removes it", c.query.list() == [])

c.agent.service.deregister("web-1")
expect("deregister removes the instance", "web-1" not in c.agent.services())
expect("deregister removes its checks", "service:web-1" not in c.agent.checks())
print("py-consul: all expectations met")
