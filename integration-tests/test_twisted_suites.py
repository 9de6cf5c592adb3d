"""
Twisted's own reactor test suites, run against GeventReactor and, in the same run, against Twisted's
epoll reactor.  The rule: no test that passes on epoll may fail or be skipped on GeventReactor, unless
conformance/exceptions.toml lists it with a reason.

Each suite runs in a child process (conformance/trial_outcomes.py), killed if it overruns, so a hang
fails one test here instead of stalling the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

HERE = Path(__file__).parent
RUNNER = HERE / "conformance" / "trial_outcomes.py"


def _current_loop() -> str:
    import gevent

    return "libuv" if "libuv" in type(gevent.get_hub().loop).__module__ else "libev"


# An entry may name the one gevent loop it applies to (`loop = "libuv"`).
EXCEPTIONS = {
    entry["test"]: entry["reason"]
    for entry in tomllib.loads((HERE / "conformance" / "exceptions.toml").read_text()).get(
        "exception", []
    )
    if entry.get("loop", _current_loop()) == _current_loop()
}

# Every ReactorBuilder-based module of twisted/internet/test that applies to a Linux reactor.
BUILDER_MODULES = [
    "core",
    "time",
    "threads",
    "fdset",
    "tcp",
    "udp",
    "unix",
    "tls",
    "newtls",
    "process",
    "socket",
    "stdio",
]

# Ordinary test modules that use the global reactor, as `trial --reactor=gevent` runs them.
GLOBAL_MODULES = [
    "twisted.test.test_internet",
    "twisted.test.test_tcp",
    "twisted.test.test_process",
    "twisted.test.test_udp",
    "twisted.test.test_unix",
]

SUITE_TIMEOUT = 600


def run_suite(tmp_path: Path, name: str, global_reactor: str, builders: str, module: str) -> dict:
    out = tmp_path / f"{name}.json"
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    proc = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--global-reactor",
            global_reactor,
            "--builders",
            builders,
            "--out",
            str(out),
            module,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT,
    )
    if proc.returncode != 0 or not out.exists():
        last = proc.stderr.strip().splitlines()[-30:]
        pytest.fail(f"{module} on {global_reactor}: exit {proc.returncode}\n" + "\n".join(last))
    return json.loads(out.read_text())


def normalise(test_id: str) -> tuple[str, str]:
    """
    Split a test id into (id without the reactor part, reactor) for ReactorBuilder classes.
    """
    parts = test_id.split(".")
    cls = parts[-2]
    for reactor in ("GeventReactorTests", "EPollReactorTests"):
        if cls.endswith("_" + reactor):
            parts[-2] = cls[: -len(reactor) - 1]
            return ".".join(parts), reactor
    return test_id, ""


def regressions(epoll: dict[str, dict], gevent: dict[str, dict]) -> list[str]:
    found = []
    for test, result in sorted(epoll.items()):
        if result["outcome"] != "pass" or test in EXCEPTIONS:
            continue
        ours = gevent.get(test)
        if ours is None:
            found.append(f"{test}: not run on GeventReactor")
        elif ours["outcome"] != "pass":
            found.append(f"{test}: {ours['outcome']}\n{ours['detail'][-1500:]}")
    return found


def report(module: str, epoll: dict, gevent: dict) -> None:
    def count(results: dict) -> str:
        passed = sum(r["outcome"] == "pass" for r in results.values())
        return f"{passed}/{len(results)} passed"

    # Printed for the record (pytest -s or -rA shows it); the counts go into the issue notes.
    print(f"{module}: epoll {count(epoll)}, gevent {count(gevent)}")


@pytest.mark.timeout(SUITE_TIMEOUT + 60)
@pytest.mark.parametrize("name", BUILDER_MODULES)
def test_reactor_builder_suite(tmp_path: Path, name: str) -> None:
    module = f"twisted.internet.test.test_{name}"
    outcomes = run_suite(tmp_path, name, "epoll", "gevent,epoll", module)
    split: dict[str, dict[str, dict]] = {"GeventReactorTests": {}, "EPollReactorTests": {}}
    for test_id, result in outcomes.items():
        test, reactor = normalise(test_id)
        if reactor:
            split[reactor][test] = result
    epoll, gevent = split["EPollReactorTests"], split["GeventReactorTests"]
    assert epoll, f"{module}: no epoll tests ran, so nothing was compared"
    report(module, epoll, gevent)
    found = regressions(epoll, gevent)
    assert not found, "\n\n".join(found)


@pytest.mark.timeout(2 * SUITE_TIMEOUT + 60)
@pytest.mark.parametrize("module", GLOBAL_MODULES)
def test_global_reactor_suite(tmp_path: Path, module: str) -> None:
    epoll = run_suite(tmp_path, "epoll", "epoll", "", module)
    gevent = run_suite(tmp_path, "gevent", "gevent", "", module)
    assert epoll, f"{module}: no tests ran, so nothing was compared"
    report(module, epoll, gevent)
    found = regressions(epoll, gevent)
    assert not found, "\n\n".join(found)
