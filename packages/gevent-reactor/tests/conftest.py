"""Shared fixtures: a fresh GeventReactor per test, running it with a hard timeout, log capture."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from gevent_reactor import GeventReactor

sys.path.insert(0, os.path.dirname(__file__))
from faults_support import captured_failures, reactor_of

# A subprocess that inherits this environment uses the same gevent loop (GEVENT_LOOP) as the tests.
SUBPROCESS_TIMEOUT = 60.0


def _cleanup(reactor: GeventReactor) -> None:
    # As Twisted's ReactorBuilder does after each test: nothing of this reactor may outlive it.
    if reactor._started:
        reactor.crash()
    reactor.disconnectAll()
    for call in reactor.getDelayedCalls():
        call.cancel()
    if reactor.threadpool is not None:
        reactor._stopThreadPool()
    assert not reactor.running
    assert not reactor._watching, "the reactor still watches the loop after cleanup"


@pytest.fixture
def make_reactor() -> Iterator[Callable[..., GeventReactor]]:
    """Build fresh GeventReactors (on this thread's hub); clean each up after the test."""
    made: list[GeventReactor] = []

    def make(**kwargs: Any) -> GeventReactor:
        reactor = GeventReactor(**kwargs)
        made.append(reactor)
        return reactor

    yield make
    for reactor in made:
        _cleanup(reactor)


@pytest.fixture
def reactor(make_reactor: Callable[..., GeventReactor]) -> GeventReactor:
    """A fresh GeventReactor, cleaned up (removeAll, disconnect, not running) afterwards."""
    return make_reactor()


def _run_until(
    reactor: GeventReactor,
    target: Deferred[Any] | Callable[[], object],
    timeout: float = 5.0,
    stop: bool = True,
) -> Any:
    """
    Run ``reactor`` until ``target`` (a Deferred) fires or (a predicate) holds; return the result.

    The reactor is then stopped (``stop=True``) or crashed (``stop=False``, so that it can run
    again). After ``timeout`` seconds a plain gevent timer crashes the reactor and the test fails:
    nothing hangs. A Deferred that fails re-raises its exception here.
    """
    outcome: list[Any] = []
    timed_out: list[bool] = []

    def finish() -> None:
        if not reactor._started:
            return
        if stop:
            reactor.stop()
        else:
            reactor.crash()

    poller = None
    if isinstance(target, Deferred):

        def done(result: Any) -> None:
            outcome.append(result)
            finish()

        reactor.callWhenRunning(target.addBoth, done)
    else:

        def poll() -> None:
            # A plain greenlet on gevent timers: it adds no reactor timer of its own.
            while not target():
                gevent.sleep(0.002)
            outcome.append(True)
            finish()

        poller = gevent.spawn(poll)

    def watchdog() -> None:
        timed_out.append(True)
        if reactor._started:
            reactor.crash()

    # The loop's notion of now is only refreshed when it polls: after a test that blocked this
    # thread (a child process run without gevent), a timer started now would fire early.
    reactor.hub.loop.update_now()
    guard = gevent.spawn_later(timeout, watchdog)
    try:
        reactor.run(installSignalHandlers=False)
    finally:
        guard.kill()
        if poller is not None:
            poller.kill()
    if timed_out:
        pytest.fail(f"timed out after {timeout} s waiting for {target!r}")
    assert outcome, "reactor.run() returned before the target was reached"
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


@pytest.fixture
def run_until() -> Callable[..., Any]:
    """``run_until(reactor, deferred_or_predicate, timeout=5.0, stop=True)``: see ``_run_until``."""
    return _run_until


@pytest.fixture
def spawn() -> Iterator[Callable[..., Deferred[Any]]]:
    """
    ``spawn(fn, *args)``: run ``fn`` in a new plain greenlet; return a Deferred of its outcome.

    The Deferred is fired from that greenlet (an assertion failing in ``fn`` fails it). Greenlets
    still alive at the end of the test are killed.
    """
    greenlets: list[gevent.Greenlet] = []

    def start(fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()

        def body() -> None:
            try:
                result = fn(*args)
            except BaseException:
                d.errback(Failure())
            else:
                d.callback(result)

        greenlets.append(gevent.spawn(body))
        return d

    yield start
    gevent.killall(greenlets, timeout=5)


def _wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait (yielding to the hub) until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {predicate}")
        gevent.sleep(0.002)


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(predicate, timeout=5.0)`` from a greenlet: see ``_wait_until``."""
    return _wait_until


@pytest.fixture
def logged_failures() -> Iterator[list[Failure]]:
    """Failures logged while the test runs (new and legacy logging APIs)."""
    with captured_failures() as failures:
        yield failures


@pytest.fixture
def any_reactor(kind: str) -> Iterator[Any]:
    """A fresh reactor of the test's ``kind`` (gevent or epoll), for tests parametrized on it."""
    with reactor_of(kind) as reactor:
        yield reactor


def _run_python(
    args: list[str], timeout: float = SUBPROCESS_TIMEOUT, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``sys.executable *args`` with this environment; fail (not hang) after ``timeout``."""
    env = dict(os.environ)
    env.update(kwargs.pop("env", {}))
    # pytest-timeout and friends must not leak into the child through PYTHONPATH games.
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


@pytest.fixture
def run_python() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_python(args, timeout=60, cwd=..., env={...})``: see ``_run_python``."""
    return _run_python
