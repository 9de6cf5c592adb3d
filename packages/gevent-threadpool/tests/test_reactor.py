"""GeventThreadPool with real reactors: Twisted's epoll, select and asyncio reactors (cross-thread)
and GeventReactor (in-loop), each a fresh instance run in the test's thread."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
from greenlet import GreenletExit
from twisted.internet import threads
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.selectreactor import SelectReactor
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from gevent_deferred import IHubReactor
from gevent_threadpool import (
    BlockingCallFromPoolError,
    GeventThreadPool,
    use_gevent_threadpool,
)
from gevent_threadpool import _install as install_module

try:
    from gevent_reactor import GeventReactor
except ImportError:  # pragma: no cover - the lead's package may not be installed
    GeventReactor = None

REACTORS = ["epoll", "select", "asyncio", "gevent"]


@pytest.fixture(params=REACTORS)
def reactor(request: pytest.FixtureRequest) -> Iterator[Any]:
    name = request.param
    loop = None
    if name == "epoll":
        made: Any = EPollReactor()
    elif name == "select":
        made = SelectReactor()
    elif name == "asyncio":
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        loop = asyncio.new_event_loop()
        made = AsyncioSelectorReactor(loop)
    else:
        if GeventReactor is None:
            pytest.skip("gevent_reactor is not installed")
        made = GeventReactor()
    yield made
    if loop is not None:
        loop.close()


def expect_in_loop(reactor: Any) -> bool:
    return bool(IHubReactor.providedBy(reactor))


def run(reactor: Any, main: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Run ``reactor`` until ``main()`` (a value or a Deferred) has a result; return it."""
    outcome: list[Any] = []

    def go() -> None:
        d = maybeDeferred(main)
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    guard = reactor.callLater(timeout, reactor.stop)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    assert outcome, f"no result within {timeout} s"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def test_defer_to_thread_pool_with_arguments(reactor) -> None:
    pool = use_gevent_threadpool(reactor)
    main_thread = threading.get_ident()
    seen: dict[str, Any] = {}

    def work(a: int, b: int, *, c: int) -> int:
        seen["worker"] = gevent.getcurrent()
        gevent.sleep(0.01)
        return a + b + c

    def main() -> Deferred[Any]:
        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), work, 1, 2, c=3)
        return d.addCallback(lambda value: (value, threading.get_ident()))

    value, callback_thread = run(reactor, main)
    assert value == 6
    assert callback_thread == main_thread  # results arrive in the reactor's thread
    assert pool.in_loop is expect_in_loop(reactor)
    assert isinstance(seen["worker"], gevent.Greenlet)


def test_call_in_thread(reactor) -> None:
    use_gevent_threadpool(reactor)
    got: list[Any] = []

    def main() -> Deferred[None]:
        d: Deferred[None] = Deferred()

        def work(x: int, *, y: int) -> None:
            got.append((x, y, isinstance(gevent.getcurrent(), gevent.Greenlet)))
            reactor.callFromThread(d.callback, None)

        reactor.callInThread(work, 1, y=2)
        return d

    run(reactor, main)
    assert got == [(1, 2, True)]


def test_blocking_call_from_a_pool_greenlet_works(reactor) -> None:
    """Twisted's blockingCallFromThread from a pool greenlet: waits only that greenlet, also for
    a Deferred that needs another pool greenlet (with one OS thread blocked that deadlocks)."""
    pool = use_gevent_threadpool(reactor)

    def later(value: int) -> Deferred[int]:
        d: Deferred[int] = Deferred()
        reactor.callLater(0.01, d.callback, value)
        return d

    def work() -> tuple[int, int, str]:
        direct = threads.blockingCallFromThread(reactor, later, 7)
        nested = threads.blockingCallFromThread(
            reactor, threads.deferToThreadPool, reactor, pool, lambda: 35
        )
        try:
            threads.blockingCallFromThread(reactor, lambda: 1 / 0)
        except ZeroDivisionError as e:
            error = type(e).__name__
        return direct, nested, error

    def main() -> Deferred[Any]:
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), work)

    t0 = time.monotonic()
    assert run(reactor, main) == (7, 35, "ZeroDivisionError")
    assert time.monotonic() - t0 < 5


def test_in_loop_pool_on_gevent_reactor() -> None:
    """A pool forced onto GeventReactor's hub, whatever the reactor declares."""
    if GeventReactor is None:
        pytest.skip("gevent_reactor is not installed")
    reactor = GeventReactor()
    pool = use_gevent_threadpool(reactor, GeventThreadPool(0, 50, hub=reactor.hub))
    main_thread = threading.get_ident()

    def work(x: int) -> tuple[int, int]:
        value = threads.blockingCallFromThread(
            reactor, threads.deferToThreadPool, reactor, pool, lambda: x * 2
        )
        return value, threading.get_ident()

    def main() -> Deferred[Any]:
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), work, 21)

    assert run(reactor, main) == (42, main_thread)
    assert pool.in_loop is True


def test_gevent_reactor_declares_ihubreactor() -> None:
    """The shared contract the automatic in-loop placement relies on."""
    if GeventReactor is None:
        pytest.skip("gevent_reactor is not installed")
    reactor = GeventReactor()
    assert IHubReactor.providedBy(reactor)
    verifyObject(IHubReactor, reactor)
    assert reactor.hub is gevent.get_hub()


def test_unrecognised_blocking_call_fails_at_once_in_loop(monkeypatch) -> None:
    """If Twisted's blockingCallFromThread changed shape, in-loop use raises at once instead of
    deadlocking. Simulated by pointing the guard at a function with other closure names."""
    if GeventReactor is None:
        pytest.skip("gevent_reactor is not installed")

    def make() -> Callable[[], int]:
        unrelated = 1

        def _callFromThread() -> int:
            return unrelated

        return _callFromThread

    impostor = make()
    monkeypatch.setattr(install_module, "_BLOCKING_CALL_CODE", impostor.__code__)
    reactor = GeventReactor()
    use_gevent_threadpool(reactor, GeventThreadPool(0, 5, hub=reactor.hub))

    def work() -> str:
        try:
            reactor.callFromThread(impostor)
        except BlockingCallFromPoolError as e:
            return str(e)
        return "no error"

    def main() -> Deferred[Any]:
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), work)

    assert "would deadlock" in run(reactor, main)


def test_shutdown_waits_for_running_work_and_restores_the_reactor(reactor, wait_until) -> None:
    pool = use_gevent_threadpool(reactor)
    previous_resolver = type(reactor.nameResolver)
    finished: list[str] = []

    def main() -> None:
        reactor.callInThread(lambda: (gevent.sleep(0.2), finished.append("work")))
        # returning stops the reactor at once; shutdown must wait for the work

    run(reactor, main)
    assert finished == ["work"]
    assert not pool.started
    wait_until(lambda: pool.workers == 0)  # idle workers end once their hub runs
    assert reactor.threadpool is None
    assert "callFromThread" not in vars(reactor)  # the guard is gone
    assert type(reactor.nameResolver) is previous_resolver


def test_shutdown_timeout_kills_stuck_work(reactor) -> None:
    use_gevent_threadpool(reactor, shutdown_timeout=0.2)
    outcome: list[Any] = []

    def main() -> None:
        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), gevent.sleep, 30)
        d.addBoth(outcome.append)

    t0 = time.monotonic()
    run(reactor, main)
    assert time.monotonic() - t0 < 5
    assert len(outcome) == 1 and isinstance(outcome[0], Failure)
    assert outcome[0].check(GreenletExit)


def test_replaces_a_started_twisted_pool() -> None:
    reactor = EPollReactor()
    replaced: dict[str, Any] = {}

    def main() -> Deferred[Any]:
        old = reactor.getThreadPool()  # Twisted's real-thread pool, started while running
        assert old.started
        replaced["old"] = old
        pool = use_gevent_threadpool(reactor)
        assert pool.started and reactor.getThreadPool() is pool
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), lambda: "ok")

    assert run(reactor, main) == "ok"
    assert replaced["old"].joined


def test_name_resolution_cooperates(reactor) -> None:
    """Twisted's default resolver gets gevent's getaddrinfo; any other resolver (GeventReactor
    installs gevent_resolver's) is left alone. Either way resolution works in the pool."""
    from twisted.internet._resolver import GAIResolver

    before = reactor.nameResolver
    use_gevent_threadpool(reactor)
    if type(before) is GAIResolver:
        assert reactor.nameResolver._getaddrinfo is gevent.socket.getaddrinfo
    else:
        assert reactor.nameResolver is before

    def main() -> Deferred[Any]:
        return reactor.resolve("localhost")

    assert run(reactor, main) in ("127.0.0.1", "::1")


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="ReactorBase"):
        use_gevent_threadpool(object())
    with pytest.raises(TypeError, match="GeventThreadPool or None"):
        use_gevent_threadpool(EPollReactor(), pool="pool")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shutdown_timeout"):
        use_gevent_threadpool(EPollReactor(), shutdown_timeout=-1)


GLOBAL_SCRIPT = """
import sys, threading
{install}
from twisted.internet import reactor, threads
from gevent_threadpool import use_gevent_threadpool
import gevent

use_gevent_threadpool(reactor)  # the one line

def work(a, *, b):
    gevent.sleep(0.01)
    back = threads.blockingCallFromThread(reactor, lambda: "from reactor")
    return (a + b, back, type(gevent.getcurrent()).__name__)

def main():
    d = threads.deferToThread(work, 1, b=2)
    d.addCallback(lambda r: print("RESULT", r))
    d.addErrback(lambda f: print("ERROR", f.getTraceback()))
    d.addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(main)
reactor.callLater(10, reactor.stop)
reactor.run()
"""


@pytest.mark.parametrize(
    "install",
    [
        "from twisted.internet import epollreactor; epollreactor.install()",
        "import gevent_reactor; gevent_reactor.install()",
        # patch_all() removes select.epoll; Twisted's select reactor then uses gevent's select.
        "from gevent import monkey; monkey.patch_all()\n"
        "from twisted.internet import selectreactor; selectreactor.install()",
    ],
    ids=["epoll", "gevent", "select-after-patch_all"],
)
def test_one_line_on_the_global_reactor(install: str) -> None:
    if "gevent_reactor" in install and GeventReactor is None:
        pytest.skip("gevent_reactor is not installed")
    script = GLOBAL_SCRIPT.format(install=install)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "RESULT (3, 'from reactor', 'WorkerGreenlet')" in out.stdout, out.stdout + out.stderr
