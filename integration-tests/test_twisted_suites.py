"""
Twisted's own test suites, run against GeventReactor and, in the same run, against Twisted's epoll
reactor.  The rule: no test that passes on epoll may fail, error or be skipped on GeventReactor,
unless conformance/exceptions.toml lists it with a reason.

The reactor suites (ReactorBuilder modules and the modules of GLOBAL_MODULES) are judged one module
at a time; test_whole_suite judges every other test module of Twisted, with the reactor installed as
the global one, as `trial --reactor=gevent twisted` would run them.

Each suite runs in a child process (conformance/trial_outcomes.py), killed if it overruns, so a hang
fails one test here instead of stalling the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
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

    # Printed for the record (pytest -s or -rA shows it): how many of the module's tests pass on
    # each reactor, beside the pass/fail comparison that the test asserts.
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


# The whole suite: every test module of Twisted but GLOBAL_MODULES, split into this many chunks per
# reactor, run by WHOLE_WORKERS child processes at a time (CI has 2 cores).
WHOLE_CHUNKS = 6
WHOLE_WORKERS = 2
# A chunk takes 20-160 s on 2 busy cores, the whole run (both reactors) about 8 min; more workers
# than cores gained little there (the tests are mostly CPU-bound: key generation, child processes).
CHUNK_TIMEOUT = 600
WHOLE_TIMEOUT = 1500
# The gevent loops the whole suite runs on (comma-separated).
WHOLE_SUITE_LOOPS = os.environ.get("TWISTED_WHOLE_SUITE_LOOPS", "libev,libuv").split(",")
# Epoll's outcomes do not depend on the gevent loop: the session of the second loop reuses those
# the first recorded (hatch test --all runs the loops one after the other), which halves its time.
EPOLL_OUTCOMES_MAX_AGE = 6 * 3600


def epoll_outcomes_path(modules: list[str]) -> Path:
    """Where epoll's outcomes for these modules, this Twisted, this Python and this runner are kept."""
    import twisted

    key = hashlib.sha256()
    for part in (twisted.__version__, sys.version, RUNNER.read_text(), *modules):
        key.update(part.encode())
        key.update(b"\0")
    return (
        Path(tempfile.gettempdir()) / f"geventreactor-whole-suite-epoll-{key.hexdigest()[:16]}.json"
    )


def recorded_epoll_outcomes(path: Path) -> dict[str, dict] | None:
    try:
        if time.time() - path.stat().st_mtime > EPOLL_OUTCOMES_MAX_AGE:
            return None
        recorded: dict[str, dict] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return recorded


def twisted_test_modules() -> list[str]:
    """
    The test modules that `trial twisted` finds, in trial's own way, without importing them.
    """
    from twisted.python import modules

    return sorted(
        m.name
        for m in modules.getModule("twisted").walkModules()
        if m.name.rsplit(".", 1)[-1].startswith("test_")
    )


def run_chunks(tmp_path: Path, jobs: list[tuple[str, str, list[str]]]) -> tuple[dict, list[str]]:
    """
    Run each (name, global reactor, modules) job in a child process, WHOLE_WORKERS at a time.

    Returns {name: outcomes} and a list of problems (a child that crashed or overran).
    """
    results: dict[str, dict] = {}
    problems: list[str] = []
    pending = list(jobs)
    lock = threading.Lock()
    deadline = time.monotonic() + WHOLE_TIMEOUT

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                name, global_reactor, chunk = pending.pop(0)
            out = tmp_path / f"{name}.json"
            log = tmp_path / f"{name}.stderr"
            timeout = max(1.0, min(CHUNK_TIMEOUT, deadline - time.monotonic()))
            # Without the reactor-specific ReactorBuilder classes: test_reactor_builder_suite
            # compares those, and the ones for Twisted's other reactors do not run ours.
            argv = [sys.executable, str(RUNNER), "--global-reactor", global_reactor]
            argv += ["--builders", "none", "--out", str(out), *chunk]
            with open(log, "w") as err:
                # A session of its own, so that a timeout kills the children of its tests too.
                proc = subprocess.Popen(
                    argv,
                    cwd=tmp_path,
                    env=dict(os.environ, PYTHONFAULTHANDLER="1"),
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    start_new_session=True,
                )
                try:
                    code = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    code = None
            if code == 0 and out.exists():
                with lock:
                    results[name] = json.loads(out.read_text())
                continue
            tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-30:])
            what = f"overran {timeout:.0f} s" if code is None else f"exit {code}"
            with lock:
                problems.append(f"{name} ({global_reactor}) {what}:\n{tail}")

    threads = [threading.Thread(target=worker) for _ in range(WHOLE_WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, problems


def dev_null_intact() -> bool:
    mode = os.stat(os.devnull).st_mode
    return stat.S_ISCHR(mode) and stat.S_IMODE(mode) == 0o666


def counts(results: dict[str, dict]) -> str:
    tally: dict[str, int] = {}
    for r in results.values():
        tally[r["outcome"]] = tally.get(r["outcome"], 0) + 1
    return f"{len(results)} tests: " + ", ".join(f"{n} {k}" for k, n in sorted(tally.items()))


def slowest(results: dict[str, dict], n: int = 8) -> str:
    per_module: dict[str, float] = {}
    for test, r in results.items():
        parts = test.split(".")
        # The module is the first part named test_*: trial loads only modules so named.
        end = next((i for i, p in enumerate(parts) if p.startswith("test_")), len(parts) - 1)
        module = ".".join(parts[: end + 1])
        per_module[module] = per_module.get(module, 0.0) + r.get("seconds", 0.0)
    top = sorted(per_module.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{m} {s:.0f} s" for m, s in top)


@pytest.mark.timeout(WHOLE_TIMEOUT + 120)
@pytest.mark.skipif(
    _current_loop() not in WHOLE_SUITE_LOOPS,
    reason=f"the whole suite runs on {', '.join(WHOLE_SUITE_LOOPS)} (TWISTED_WHOLE_SUITE_LOOPS)",
)
def test_whole_suite(tmp_path: Path) -> None:
    modules = [m for m in twisted_test_modules() if m not in GLOBAL_MODULES]
    assert len(modules) > 100, f"only {len(modules)} test modules found in Twisted"
    # Round robin, so that each chunk takes its share of every package.
    chunks = [modules[i::WHOLE_CHUNKS] for i in range(WHOLE_CHUNKS)]
    cache = epoll_outcomes_path(modules)
    recorded = recorded_epoll_outcomes(cache)
    # The two reactors' runs of one chunk side by side: each runs beside the same load.
    reactors = ("gevent",) if recorded is not None else ("epoll", "gevent")
    jobs = [(f"{r}-{i}", r, chunk) for i, chunk in enumerate(chunks) for r in reactors]
    started = time.monotonic()
    try:
        results, problems = run_chunks(tmp_path, jobs)
    finally:
        if not dev_null_intact():
            # A test broke the machine for every later process: repair it before anything else.
            os.chmod(os.devnull, 0o666)
            pytest.fail(f"{os.devnull} was left with mode {oct(os.stat(os.devnull).st_mode)}")
    elapsed = time.monotonic() - started
    assert not problems, "\n\n".join(problems)
    epoll: dict[str, dict] = dict(recorded or {})
    gevent: dict[str, dict] = {}
    for name, outcomes in results.items():
        (epoll if name.startswith("epoll") else gevent).update(outcomes)
    assert len(epoll) > 5000, f"only {len(epoll)} tests ran on epoll"
    if recorded is None:
        cache.write_text(json.dumps(epoll))
    source = f"recorded {cache}" if recorded is not None else "run now"
    print(f"whole suite, {len(modules)} modules, {elapsed:.0f} s (epoll's outcomes: {source})")
    print(f"epoll: {counts(epoll)}")
    print(f"gevent: {counts(gevent)}")
    print(f"slowest modules on gevent: {slowest(gevent)}")
    print(f"slowest modules on epoll: {slowest(epoll)}")
    found = regressions(epoll, gevent)
    # The list of every regression first, then the tracebacks of the first few.
    summary = "\n".join(f.split("\n", 1)[0] for f in found)
    details = "\n\n".join(found[:20])
    assert not found, f"{len(found)} regressions:\n{summary}\n\n{details}"
