"""Run py-consul's own test suite (from its sdist on PyPI) against lucid-registry.

py-consul's maintainers run these tests against real Consul agents started in Docker by the
sdist's root conftest.py. This driver downloads the pinned sdist, unpacks it into WORKDIR,
puts tests/compat/conftest_lucid.py in place of that conftest (one fresh `lucid-registry
--dev` per test instead of a container; ACL tests get `--acl-enabled` with a bootstrap token),
runs pytest, and compares the failures with tests/compat/expected_failures.txt. It exits 1
when a test fails that is not listed there, and names listed tests that now pass.

    python tests/compat/py_consul_suite.py --registry-bin target/debug/lucid-registry \\
        --workdir target/py-consul-suite [-- extra pytest args, e.g. -k session]

The python running this needs py-consul's test dependencies (pytest, pytest-asyncio,
pytest-timeout, aiohttp, requests); tests/compat/main.rs installs them in a venv.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET

VERSION = "1.8.0"
HERE = os.path.dirname(os.path.abspath(__file__))


def sdist(workdir: str) -> str:
    """The unpacked sdist, fresh: a previous run's files never leak into this one."""
    dl = os.path.join(workdir, "dl")
    name = f"py_consul-{VERSION}.tar.gz"
    if not os.path.exists(os.path.join(dl, name)):
        os.makedirs(dl, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-binary", ":all:", "--no-deps", "--dest", dl, f"py-consul=={VERSION}"],
            check=True,
        )
    src = os.path.join(workdir, f"py_consul-{VERSION}")
    shutil.rmtree(src, ignore_errors=True)
    with tarfile.open(os.path.join(dl, name)) as t:
        t.extractall(workdir, filter="data")
    # The sdist's conftest starts Consul in Docker; ours starts lucid-registry.
    shutil.copy(os.path.join(HERE, "conftest_lucid.py"), os.path.join(src, "conftest.py"))
    return src


def expected(path: str) -> dict[str, str]:
    """`test id<TAB or spaces>reason` per line; `#` comments."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test, _, reason = line.partition(" ")
            out[test] = reason.strip()
    return out


def results(xml_path: str) -> tuple[list[str], dict[str, str]]:
    """(passed, {failed: message}) from pytest's JUnit XML."""
    passed, failed = [], {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        # `tests.api.test_acl.TestConsulAcl` -> `tests/api/test_acl.py::TestConsulAcl`
        parts = case.get("classname", "").split(".")
        cls = [parts.pop()] if parts and parts[-1][:1].isupper() else []
        test = "::".join(["/".join(parts) + ".py", *cls, case.get("name", "")])
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            failed[test] = (bad.get("message") or "").splitlines()[0][:300] if bad.get("message") else ""
        elif case.find("skipped") is None:
            passed.append(test)
    return passed, failed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry-bin", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--expected", default=os.path.join(HERE, "expected_failures.txt"))
    ap.add_argument("--drop-fixed", action="store_true",
                    help="take the listed tests that passed off the list (rewrites it)")
    ap.add_argument("pytest_args", nargs="*")
    a = ap.parse_args()
    workdir = os.path.abspath(a.workdir)
    os.makedirs(workdir, exist_ok=True)
    src = sdist(workdir)
    xml_path = os.path.join(workdir, "results.xml")
    env = dict(os.environ)
    env["LUCID_REGISTRY_BIN"] = os.path.abspath(a.registry_bin)
    env["LUCID_PYCONSUL_LOGS"] = os.path.join(workdir, "logs")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-o", "addopts=",
           "--timeout=120", f"--junitxml={xml_path}", *a.pytest_args, "tests"]
    run = subprocess.run(cmd, cwd=src, env=env, check=False)
    if not os.path.exists(xml_path):
        print(f"pytest wrote no results (exit {run.returncode})")
        return 1
    passed, failed = results(xml_path)
    known = expected(a.expected)
    unexpected = {t: m for t, m in failed.items() if t not in known}
    fixed = sorted(t for t in passed if t in known)
    total = len(passed) + len(failed)
    print(f"\npy-consul {VERSION}'s own suite against lucid-registry: {len(passed)} of {total} passed, "
          f"{len(failed)} failed ({len(failed) - len(unexpected)} of them listed in {os.path.basename(a.expected)})")
    if fixed:
        print("listed as expected to fail, but passed (take them off the list):")
        for t in fixed:
            print(f"  {t}")
        if a.drop_fixed:
            with open(a.expected, encoding="utf-8") as f:
                kept = [line for line in f if line.split(" ", 1)[0].strip() not in fixed]
            with open(a.expected, "w", encoding="utf-8") as f:
                f.writelines(kept)
            print(f"  (taken off {a.expected})")
    if unexpected:
        print("FAILED, and not expected to:")
        for t, m in sorted(unexpected.items()):
            print(f"  {t}: {m}")
        print(f"registry logs per test: {env['LUCID_PYCONSUL_LOGS']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
