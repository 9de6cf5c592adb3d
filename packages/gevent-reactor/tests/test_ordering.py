"""The order of due timed calls and ready I/O: as on Twisted's epoll reactor, on both loops.

Twisted's main loop runs the calls that are due, then polls, then handles every event the poll
reported, and only then runs calls again.  Code relies on it: "two callLater(0) hops let the reactor
service ready sockets" (Scrapy's downloader does).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.epollreactor import EPollReactor

from gevent_reactor import GeventReactor

REACTORS = [GeventReactor, EPollReactor]


class _ReadTracker:
    """A selectable on a socket pair whose other end already sent one byte."""

    def __init__(self, on_read: Any = None) -> None:
        self._rx, self._tx = socket.socketpair()
        self._on_read = on_read
        self.reads = 0
        self._tx.send(b"x")

    def fileno(self) -> int:
        return self._rx.fileno()

    def doRead(self) -> None:
        self.reads += 1
        self._rx.recv(1)
        if self._on_read is not None:
            on_read, self._on_read = self._on_read, None
            on_read()

    def connectionLost(self, reason: object) -> None:
        pass

    def logPrefix(self) -> str:
        return "read-tracker"

    def close(self) -> None:
        self._rx.close()
        self._tx.close()


def _hop(reactor: Any) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(0, d.callback, None)
    return d


@pytest.mark.parametrize("reactor_class", REACTORS, ids=lambda c: c.__name__)
def test_two_hops_serve_a_reader_registered_and_ready_inside_a_read(
    reactor_class: type, make_reactor, run_until
) -> None:
    # From inside a doRead (the loop polled just before), register a reader whose socket is
    # already readable, then wait two callLater(0) hops: after them, it has been read.
    reactor = make_reactor() if reactor_class is GeventReactor else reactor_class()
    trackers: list[_ReadTracker] = []
    done: Deferred[int] = Deferred()

    def start() -> None:
        second = _ReadTracker()
        trackers.append(second)
        reactor.addReader(second)
        d = _hop(reactor)
        d.addCallback(lambda _: _hop(reactor))
        d.addCallback(lambda _: done.callback(second.reads))

    first = _ReadTracker(on_read=start)
    trackers.append(first)
    reactor.callWhenRunning(reactor.addReader, first)
    try:
        if reactor_class is GeventReactor:
            reads = run_until(reactor, done)
        else:
            reads = _run_epoll_until(reactor, done)
    finally:
        for tracker in trackers:
            reactor.removeReader(tracker)
            tracker.close()
    assert reads == 1


def _run_epoll_until(reactor: Any, done: Deferred[Any]) -> Any:
    outcome: list[Any] = []
    done.addBoth(outcome.append)
    done.addBoth(lambda _: reactor.stop())
    guard = reactor.callLater(5, reactor.stop)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    assert outcome, "timed out"
    return outcome[0]
