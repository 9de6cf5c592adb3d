"""LoopingCall on GeventReactor, started and stopped from greenlets, writing to real connections."""

from __future__ import annotations

import gevent
import pytest_twisted
from gevent import socket
from helpers import the_reactor, wait
from twisted.internet import protocol, task

from geventreactor.pytest_plugin import greenlet_test


class Ticker(protocol.Protocol):
    def connectionMade(self):
        self.n = 0
        self.loop = task.LoopingCall(self.tick)
        self.loop.clock = self.factory.reactor
        self.factory.loops.append(self.loop)
        self.done = self.loop.start(0.02, now=True)

    def tick(self):
        # Runs in the reactor's context: it must not block, and it does not need to.
        self.n += 1
        self.transport.write(b"tick %d\n" % self.n)
        if self.n == 5:
            self.loop.stop()
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if self.loop.running:
            self.loop.stop()


@greenlet_test
def test_looping_call_ticks_reach_a_gevent_client():
    reactor = the_reactor()
    factory = protocol.Factory.forProtocol(Ticker)
    factory.reactor = reactor
    factory.loops = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        clients = []
        for _ in range(3):
            clients.append(gevent.spawn(read_all, port.getHost().port))
        gevent.joinall(clients, timeout=10, raise_error=True)
        expected = b"".join(b"tick %d\n" % i for i in range(1, 6))
        assert [c.value for c in clients] == [expected] * 3
        assert all(not loop.running for loop in factory.loops)
    finally:
        wait(port.stopListening())


def read_all(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        chunks = []
        while data := s.recv(1024):
            chunks.append(data)
        return b"".join(chunks)


@greenlet_test
def test_looping_call_started_and_stopped_from_a_greenlet():
    reactor = the_reactor()
    seen = []
    loop = task.LoopingCall(lambda: seen.append(reactor.seconds()))
    loop.clock = reactor
    d = loop.start(0.01)
    gevent.sleep(0.1)  # the loop keeps ticking while this greenlet sleeps
    loop.stop()
    assert wait(d) is loop
    assert len(seen) >= 3
    assert seen == sorted(seen)


@pytest_twisted.inlineCallbacks
def test_looping_call_with_count_in_inline_callbacks():
    reactor = the_reactor()
    counts = []
    loop = task.LoopingCall.withCount(counts.append)
    loop.clock = reactor
    reactor.callLater(0.1, loop.stop)
    yield loop.start(0.02, now=True)
    assert sum(counts) >= 4
