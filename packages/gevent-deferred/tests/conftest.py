"""Real reactors in real threads, and a way for the test's thread to ask them things."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.epollreactor import EPollReactor
from twisted.python.failure import Failure

from gevent_deferred import HubThread


class RunningReactor:
    """A fresh epoll reactor running in its own real thread (not installed as the global one)."""

    def __init__(self) -> None:
        self.reactor = EPollReactor()
        self.thread_ident: int | None = None
        started = threading.Event()

        def main() -> None:
            self.thread_ident = threading.get_ident()
            self.reactor.callWhenRunning(started.set)
            self.reactor.run(installSignalHandlers=False)

        self.thread = threading.Thread(target=main, name="test-reactor", daemon=True)
        self.thread.start()
        assert started.wait(5), "reactor thread did not start"

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 5.0) -> Any:
        """Run fn in the reactor thread; wait (this thread) for its result, following Deferreds."""
        result = self.outcome(fn, *args, timeout=timeout)
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def outcome(self, fn: Callable[..., Any], *args: Any, timeout: float = 5.0) -> Any:
        """Like call(), but a failure is returned as a Failure instead of raised."""
        answer: queue.Queue[Any] = queue.Queue()

        def run() -> None:
            d: Deferred = maybeDeferred(fn, *args)
            d.addBoth(answer.put)

        self.reactor.callFromThread(run)
        return answer.get(timeout=timeout)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.reactor.callFromThread(self.reactor.stop)
            self.thread.join(5)
        assert not self.thread.is_alive(), "reactor thread did not end"


@pytest.fixture
def running_reactor() -> Iterator[RunningReactor]:
    rr = RunningReactor()
    try:
        yield rr
    finally:
        rr.stop()


@pytest.fixture
def hub_thread() -> Iterator[HubThread]:
    ht = HubThread(name="test-hub-thread")
    ht.start()
    try:
        yield ht
    finally:
        ht.stop()
