"""Reactors one after another on one hub leave nothing behind; idle connections hold no greenlet."""

from __future__ import annotations

import gc
import os

import gevent
import gevent.socket
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.protocols.basic import LineReceiver

from gevent_reactor import GeventReactor
from gevent_reactor._runners import IORunner


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def active_watchers() -> int:
    """Active watchers of this thread's loop (libev: activecnt; libuv: a walk of its handles)."""
    loop = gevent.get_hub().loop
    if hasattr(loop, "debug") and "libuv" in type(loop).__module__:
        # libuv's activecnt is always 0; walk the handles instead.
        return sum(1 for h in loop.debug() if h.active and not h.closing)
    return loop.activecnt


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def connectionLost(self, reason: object) -> None:
        self.factory.lost.callback(None)


class _Client(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"ping")

    def dataReceived(self, data: bytes) -> None:
        self.factory.replies.append(data)
        self.transport.loseConnection()

    def connectionLost(self, reason: object) -> None:
        self.factory.lost.callback(None)


def _one_reactor(run_until) -> list[bytes]:
    reactor = GeventReactor()
    server = Factory.forProtocol(_Echo)
    server.lost = Deferred()
    client = ClientFactory.forProtocol(_Client)
    client.lost = Deferred()
    client.replies = []
    port = reactor.listenTCP(0, server, interface="127.0.0.1")
    reactor.connectTCP("127.0.0.1", port.getHost().port, client)
    both = DeferredList([server.lost, client.lost], fireOnOneErrback=True)
    both.addCallback(lambda _: port.stopListening())
    # A timer still pending and a call from a greenlet at stop time must not leak either.
    reactor.callLater(30, lambda: None)
    run_until(reactor, both)
    assert reactor.removeAll() == []
    for call in reactor.getDelayedCalls():
        call.cancel()
    assert not reactor.running
    return client.replies


def test_reactors_one_after_another_leave_nothing_behind(run_until) -> None:
    # The first run may create lasting process-wide things (resolver, log observers); measure after.
    assert _one_reactor(run_until) == [b"ping"]
    gevent.sleep(0.05)
    gc.collect()
    fds_before, watchers_before = open_fds(), active_watchers()
    for _ in range(5):
        assert _one_reactor(run_until) == [b"ping"]
    gevent.sleep(0.05)
    gc.collect()
    assert open_fds() == fds_before
    assert active_watchers() == watchers_before


def test_active_watcher_count_sees_a_running_reactor(reactor: GeventReactor, run_until) -> None:
    # The measurement above can fail: while a reactor runs it holds at least one watcher.
    before = active_watchers()
    during: list[int] = []
    done: Deferred[None] = Deferred()
    reactor.callLater(0.01, lambda: (during.append(active_watchers()), done.callback(None)))
    run_until(reactor, done)
    assert during[0] > before
    gevent.sleep(0.01)
    assert active_watchers() == before


def test_reactor_with_threads_and_resolver_leaves_no_fd(run_until) -> None:
    # deferToThread and name resolution start helpers; stopping the reactor must end them.
    from twisted.internet.threads import deferToThreadPool

    def once() -> None:
        reactor = GeventReactor()

        def work() -> Deferred[tuple[str, int]]:
            resolved = reactor.resolve("localhost")
            threaded = deferToThreadPool(reactor, reactor.getThreadPool(), lambda: 42)
            return DeferredList([resolved, threaded], fireOnOneErrback=True)

        d: Deferred[object] = Deferred()
        reactor.callWhenRunning(lambda: work().chainDeferred(d))
        (ok1, ip), (ok2, answer) = run_until(reactor, d)
        assert ok1 and ok2
        assert ip.startswith("127.")
        assert answer == 42
        assert reactor.threadpool is None  # stopped by the shutdown trigger

    once()
    gevent.sleep(0.05)
    gc.collect()
    fds_before = open_fds()
    for _ in range(3):
        once()
    gevent.sleep(0.05)
    gc.collect()
    assert open_fds() == fds_before


class _LineEcho(LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        if line == b"sleep":
            gevent.sleep(0.3)
        self.sendLine(line)


def _runners_of(reactor: GeventReactor) -> list[IORunner]:
    gc.collect()
    return [o for o in gc.get_objects() if type(o) is IORunner and o._dispatcher is reactor._io]


def test_idle_connections_hold_no_greenlet(reactor: GeventReactor, run_until, spawn) -> None:
    port = reactor.listenTCP(0, Factory.forProtocol(_LineEcho), interface="127.0.0.1")
    address = ("127.0.0.1", port.getHost().port)
    sockets: list[gevent.socket.socket] = []
    counts: dict[str, int] = {}

    def scenario() -> None:
        for i in range(200):
            sock = gevent.socket.create_connection(address, timeout=5)
            sockets.append(sock)
            sock.sendall(b"line %d\r\n" % i)
            assert sock.recv(100) == b"line %d\r\n" % i
        gevent.sleep(0.05)
        counts["idle"] = len(_runners_of(reactor))
        counts["free"] = len(reactor._io._idle_runners)
        counts["connections"] = len(reactor.getReaders())
        # Contrast: 20 connections blocked at once do hold 20 runners, until they return.
        for sock in sockets[:20]:
            sock.sendall(b"sleep\r\n")
        gevent.sleep(0.1)
        counts["blocked"] = len(_runners_of(reactor))
        for sock in sockets[:20]:
            assert sock.recv(100) == b"sleep\r\n"
        gevent.sleep(0.05)
        counts["after"] = len(reactor._io._idle_runners)

    try:
        run_until(reactor, spawn(scenario), timeout=20)
    finally:
        for sock in sockets:
            sock.close()
    assert counts["connections"] >= 200
    assert 0 < counts["idle"] < 10
    assert counts["free"] < 10
    assert counts["blocked"] >= 20
    # The blocked runners went back to the free list when their jobs were done.
    assert counts["after"] >= 20
    assert not reactor._io._held_readers


def test_runners_kept_after_a_burst_of_blocked_handlers_are_bounded(
    reactor: GeventReactor, run_until, spawn
) -> None:
    # 80 handlers block at once, each in a runner of its own; once they are done, only a bounded
    # number of runners stays on the free list, and the others end.
    from gevent_reactor._runners import MAX_IDLE_RUNNERS

    port = reactor.listenTCP(0, Factory.forProtocol(_LineEcho), interface="127.0.0.1")
    address = ("127.0.0.1", port.getHost().port)
    sockets: list[gevent.socket.socket] = []
    counts: dict[str, int] = {}

    def scenario() -> None:
        for _ in range(80):
            sockets.append(gevent.socket.create_connection(address, timeout=5))
        for sock in sockets:
            sock.sendall(b"sleep\r\n")
        gevent.sleep(0.1)
        counts["blocked"] = len(_runners_of(reactor))
        for sock in sockets:
            assert sock.recv(100) == b"sleep\r\n"
        gevent.sleep(0.05)
        counts["free"] = len(reactor._io._idle_runners)
        counts["alive"] = len([r for r in _runners_of(reactor) if not r.dead])

    try:
        run_until(reactor, spawn(scenario), timeout=20)
    finally:
        for sock in sockets:
            sock.close()
    assert counts["blocked"] >= 80
    assert counts["free"] == MAX_IDLE_RUNNERS
    assert counts["alive"] <= MAX_IDLE_RUNNERS + 2
