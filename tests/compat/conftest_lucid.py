"""Replacement root conftest.py for py-consul's own test suite (py-consul 1.8.0 sdist).

It provides exactly the fixtures the original root conftest.py provides --
``_unset_consul_token`` (session, autouse), ``consul_instance``,
``acl_consul_instance`` and ``consul_port`` -- with the same shapes, so the
untouched ``tests/conftest.py`` (``acl_consul``, ``consul_obj``) and
``tests/test_aio.py`` (async ``consul_obj``) keep working. Instead of a
``hashicorp/consul:<ver>`` Docker container running ``agent -dev``, every test
gets a fresh ``lucid-registry --dev`` process with its own temporary data dir
(the original fixtures are function-scoped too: one agent per test).

Mapping from the original Docker/Consul setup:

* ``consul agent -dev -client=0.0.0.0`` with CONSUL_LOCAL_CONFIG
  ``{"ports": {"https": -1, "dns": -1, "grpc_tls": -1},
  "performance": {"raft_multiplier": 1}, "enable_script_checks": true}``
  -> ``lucid-registry --dev --data-dir <tmp> --http-addr 127.0.0.1:<p>
  --raft-addr 127.0.0.1:0 --dns-addr 127.0.0.1:0``.
  (The dev agent had script checks enabled: so does `--enable-script-checks`.)
* ACL variant: ``"primary_datacenter": "dc1", "acl": {"enabled": true,
  "tokens": {"initial_management": uuid4().hex}}`` -> ``--acl-enabled
  --acl-bootstrap-token <uuid4().hex>`` (32 chars, >= the 16 lucid needs).
  Note Consul's default_policy stays "allow" there (only ACL/operator-level
  endpoints need the management token); lucid decides its own default.
* Consul's HTTP port inside the container is 8500, and several tests register
  HTTP checks against ``http://localhost:8500`` / ``http://127.0.0.1:8500``
  expecting the agent itself to answer. So the registry's HTTP listener is put
  on 127.0.0.1:8500 when that port is free (override with
  LUCID_PYCONSUL_HTTP_PORT; ``0`` = always ephemeral); otherwise an ephemeral
  port is used and those checks will hit nothing.
* The fixtures' "version" (used by ``tests.utils.should_skip``) is the Consul
  version the instance claims to emulate. Lucid reports its own crate version
  in ``/v1/agent/self`` Config.Version (e.g. 0.1.0). The one version-gated
  test (test_agent_register_check_no_service_id) expects a ConsulException for
  versions <= 1.11.0 and a falsy return after that, so 0.1.0 would steer it into
  pre-1.11 Consul behaviour. Lucid targets current Consul, so the fixtures report
  LUCID_CONSUL_VERSION (default 1.22.0, the newest version in the original
  CONSUL_VERSIONS matrix). Set LUCID_CONSUL_VERSION=agent to use whatever
  /v1/agent/self reports instead.

Environment:
  LUCID_REGISTRY_BIN        binary (default /work/main/target/debug/lucid-registry)
  LUCID_PYCONSUL_HTTP_PORT  preferred HTTP port (default 8500; 0 = ephemeral)
  LUCID_CONSUL_VERSION      version handed to tests (default 1.22.0; "agent")
  LUCID_PYCONSUL_LOGS       where per-test registry logs go (default ./logs)
  LUCID_START_TIMEOUT       seconds to wait for a leader (default 30)
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import warnings

import pytest
import requests
from requests import RequestException

LUCID_BIN = os.environ.get("LUCID_REGISTRY_BIN", "/work/main/target/debug/lucid-registry")
EMULATED_VERSION = os.environ.get("LUCID_CONSUL_VERSION", "1.22.0")
PREFERRED_HTTP_PORT = int(os.environ.get("LUCID_PYCONSUL_HTTP_PORT", "8500"))
START_TIMEOUT = float(os.environ.get("LUCID_START_TIMEOUT", "30"))

# Same parametrisation shape as the original (params=CONSUL_VERSIONS), with one
# entry: test ids read e.g. ``test_kv[lucid]``.
INSTANCE_PARAMS = ["lucid"]

# Same namedtuple as the original; ``container`` holds the LucidProcess.
ConsulInstance = collections.namedtuple("ConsulInstance", ["container", "port", "version"])

LOGS_DIR = os.environ.get("LUCID_PYCONSUL_LOGS", os.path.join(os.path.dirname(__file__), "logs"))
os.makedirs(LOGS_DIR, exist_ok=True)

_LISTEN_RE = re.compile(r"listening (http|raft|dns|https) (\S+)")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="session", autouse=True)
def _unset_consul_token():
    if "CONSUL_HTTP_TOKEN" in os.environ:
        del os.environ["CONSUL_HTTP_TOKEN"]


def _port_free(port: int) -> bool:
    if port <= 0:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LucidProcess:
    """One ``lucid-registry --dev`` child in its own process group."""

    def __init__(self, acl_token: str | None):
        if not os.path.exists(LUCID_BIN):
            pytest.fail(f"lucid-registry binary not found at {LUCID_BIN} (set LUCID_REGISTRY_BIN)")
        self.acl_token = acl_token
        self.data_dir = tempfile.mkdtemp(prefix="lucid-pyconsul-")
        self.log_path = os.path.join(self.data_dir, "registry.log")
        http_port = PREFERRED_HTTP_PORT if _port_free(PREFERRED_HTTP_PORT) else 0
        if PREFERRED_HTTP_PORT and not http_port:
            warnings.warn(f"port {PREFERRED_HTTP_PORT} busy: lucid-registry gets an ephemeral HTTP port", stacklevel=2)
        cmd = [
            LUCID_BIN,
            "--dev",
            "--data-dir",
            os.path.join(self.data_dir, "data"),
            "--http-addr",
            f"127.0.0.1:{http_port}",
            "--raft-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
            # The Consul fixture runs with enable_script_checks.
            "--enable-script-checks",
        ]
        if acl_token:
            cmd += ["--acl-enabled", "--acl-bootstrap-token", acl_token]
        self.cmd = cmd
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUCID_")}
        env.setdefault("RUST_LOG", "info,openraft=warn")
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group, killed as a group at teardown
        )
        self.addrs: dict[str, str] = {}
        try:
            self._wait_listeners()
            self.port = int(self.addrs["http"].rsplit(":", 1)[1])
            self._wait_leader()
            self._verify_startup()
        except BaseException:
            self.stop()
            raise

    def log_text(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return _ANSI_RE.sub("", f.read())
        except OSError:
            return ""

    def _wait_listeners(self) -> None:
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            for kind, addr in _LISTEN_RE.findall(self.log_text()):
                self.addrs[kind] = addr
            if {"http", "raft", "dns"} <= self.addrs.keys():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"lucid-registry exited ({self.proc.returncode}):\n{self.log_text()}")
            time.sleep(0.05)
        raise TimeoutError(f"lucid-registry did not report its listeners:\n{self.log_text()}")

    @property
    def base_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/"

    def _headers(self) -> dict:
        return {"X-Consul-Token": self.acl_token} if self.acl_token else {}

    def _wait_leader(self) -> None:
        # Same readiness rule as the original: /v1/status/leader is 200 with a
        # non-empty JSON string.
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lucid-registry exited ({self.proc.returncode}):\n{self.log_text()}")
            try:
                r = requests.get(self.base_uri + "status/leader", headers=self._headers(), timeout=2)
                if r.status_code == 200 and r.json():
                    return
            except (RequestException, ValueError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"lucid-registry elected no leader:\n{self.log_text()}")

    def _verify_startup(self) -> None:
        # The original also registers a service, waits until /v1/health/service
        # lists it, and deregisters it. Kept (with the management token on an
        # ACL instance, since Consul's default-allow anonymous token did it
        # there), but only warned about, so an incompatibility shows up in the
        # tests themselves rather than as a fixture error on every test.
        for _ in range(10):
            try:
                requests.put(
                    self.base_uri + "agent/service/register",
                    json={"name": "test-service"},
                    headers=self._headers(),
                    timeout=2,
                )
                r = requests.get(self.base_uri + "health/service/test-service", headers=self._headers(), timeout=2)
                if r.status_code == 200 and r.json():
                    requests.put(
                        self.base_uri + "agent/service/deregister/test-service", headers=self._headers(), timeout=2
                    )
                    return
            except (RequestException, ValueError):
                pass
            time.sleep(0.5)
        warnings.warn("lucid-registry: startup register/health/deregister probe did not succeed", stacklevel=2)

    def agent_version(self) -> str:
        try:
            r = requests.get(self.base_uri + "agent/self", headers=self._headers(), timeout=10)
            return str(r.json()["Config"]["Version"]).strip()
        except (RequestException, ValueError, KeyError, TypeError):
            return "unknown"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        else:
            # The registry itself exited (e.g. after /v1/agent/leave); still
            # reap anything left in its group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._log.close()

    def cleanup(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


def setup_and_teardown_consul(request, acl_master_token: str | None = None):
    node = LucidProcess(acl_token=acl_master_token)
    version = node.agent_version() if EMULATED_VERSION == "agent" else EMULATED_VERSION
    instance = ConsulInstance(node, node.port, version)

    try:
        yield instance if acl_master_token is None else (instance, acl_master_token)
    finally:
        node.stop()
        log_file = os.path.join(LOGS_DIR, f"{request.node.name}.log")
        with open(log_file, "w", encoding="utf-8") as f:
            f.write(" ".join(node.cmd) + "\n" + node.log_text())
        node.cleanup()


@pytest.fixture(params=INSTANCE_PARAMS)
def consul_instance(request):
    yield from setup_and_teardown_consul(request)


@pytest.fixture(params=INSTANCE_PARAMS)
def acl_consul_instance(request):
    acl_master_token = uuid.uuid4().hex
    yield from setup_and_teardown_consul(request, acl_master_token=acl_master_token)


@pytest.fixture
def consul_port(consul_instance):
    return consul_instance.port, consul_instance.version
