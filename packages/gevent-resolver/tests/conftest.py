"""Fixtures: a real DNS server on loopback, and real reactors each running in its own thread.

Every reactor (Twisted's epoll, select, asyncio; geventreactor's GeventReactor when installed) runs
in a background OS thread it was built in, so the same test body drives all of them, and the
GeventReactor case is "in-loop" (its hub is that thread's hub) while the others are cross-thread.
Tests talk to a reactor only through ``ReactorThread.call``, which waits with a timeout.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IResolutionReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from gevent_resolver.testing import LoopbackDNSServer

WAIT = 10.0  # seconds any single step may take before the test fails instead of hanging


def _gevent_reactor_class() -> Any:
    try:
        from gevent_reactor import GeventReactor
    except ImportError:
        return None
    return GeventReactor


def _build(kind: str) -> Any:
    if kind == "epoll":
        from twisted.internet.epollreactor import EPollReactor

        return EPollReactor()
    if kind == "select":
        from twisted.internet.selectreactor import SelectReactor

        return SelectReactor()
    if kind == "asyncio":
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        return AsyncioSelectorReactor(asyncio.new_event_loop())
    if kind == "gevent":
        return _gevent_reactor_class()()
    raise ValueError(kind)


class ReactorThread:
    """A reactor built and run in its own OS thread; ``call`` runs code there and waits."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.reactor: Any = None
        self.ident: int | None = None
        self._error: BaseException | None = None
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"reactor-{kind}", daemon=True)

    def _main(self) -> None:
        self.ident = threading.get_ident()
        try:
            self.reactor = _build(self.kind)
            self.reactor.callWhenRunning(self._running.set)
            self.reactor.run(installSignalHandlers=False)
        except BaseException as e:
            self._error = e
            self._running.set()

    def start(self) -> ReactorThread:
        self._thread.start()
        if not self._running.wait(WAIT) or self._error is not None:
            raise RuntimeError(f"the {self.kind} reactor did not start") from self._error
        return self

    def stop(self) -> None:
        if self.reactor is not None and self._thread.is_alive():
            self.reactor.callFromThread(self.reactor.stop)
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), f"the {self.kind} reactor did not stop"
        loop = getattr(self.reactor, "_asyncioEventloop", None)
        if loop is not None:
            # Twisted leaves the loop it was given open; its self-pipe sockets would leak.
            loop.close()

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = WAIT, **kw: Any) -> Any:
        """Run ``fn`` in the reactor's thread; wait for its (Deferred's) result; raise its error."""
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            maybeDeferred(fn, *args, **kw).addBoth(lambda r: (box.append(r), done.set()))

        self.reactor.callFromThread(run)
        if not done.wait(timeout):
            raise TimeoutError(f"{fn!r} gave no result within {timeout} s on {self.kind}")
        result = box[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result


REACTOR_KINDS = ["epoll", "select", "asyncio", "gevent"]


@pytest.fixture(params=REACTOR_KINDS)
def reactor_thread(request: pytest.FixtureRequest) -> Iterator[ReactorThread]:
    """Each reactor kind in its own thread; GeventReactor is skipped until it can be imported."""
    if request.param == "gevent" and _gevent_reactor_class() is None:
        pytest.skip("gevent_reactor.GeventReactor is not importable")
    rt = ReactorThread(request.param).start()
    yield rt
    rt.stop()


@pytest.fixture
def epoll_thread() -> Iterator[ReactorThread]:
    rt = ReactorThread("epoll").start()
    yield rt
    rt.stop()


@pytest.fixture(scope="session")
def dns_server() -> Iterator[LoopbackDNSServer]:
    """A twisted.names authoritative server on 127.0.0.1 (UDP+TCP, one port) in its own thread."""
    with LoopbackDNSServer() as server:
        yield server


@pytest.fixture
def ares_options(dns_server: LoopbackDNSServer) -> dict[str, Any]:
    # tries=1 and a short c-ares timeout: the never-answering name fails in about a second
    # even where the test does not set a shorter limit of its own.
    return {**dns_server.ares_options(), "timeout": 1.0, "tries": 1}


@implementer(IResolutionReceiver)
class Receiver:
    """Records what an IHostnameResolver reports; ``done`` fires at resolutionComplete."""

    def __init__(self) -> None:
        self.resolution: Any = None
        self.addresses: list[Any] = []
        self.completed = 0
        self.done: Deferred[Receiver] = Deferred()

    def resolutionBegan(self, resolution: Any) -> None:
        self.resolution = resolution

    def addressResolved(self, address: Any) -> None:
        self.addresses.append(address)

    def resolutionComplete(self) -> None:
        self.completed += 1
        if not self.done.called:
            self.done.callback(self)


def os_thread_count() -> int:
    """Real OS threads of this process (threading.enumerate misses _thread-started ones)."""
    return len(os.listdir("/proc/self/task"))


@pytest.fixture
def make_receiver() -> type[Receiver]:
    """The Receiver class (test modules cannot import conftest under --import-mode=importlib)."""
    return Receiver
