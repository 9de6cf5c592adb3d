"""How many runner switches the I/O path costs, counted with greenlet's switch trace.

The counts are exact properties of the dispatch, not timings: an echo's request is one read
event, and its reply goes out inline from the same runner, so nothing else needs a runner.
"""

from __future__ import annotations

import socket

import greenlet
import pytest
from twisted.internet.protocol import Factory, Protocol

from gevent_reactor._runners import IORunner

pytestmark = pytest.mark.timeout(60)

REQUESTS = 200


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def test_an_echo_costs_one_runner_switch_per_request(reactor, run_until, spawn) -> None:
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    counted: list[int] = [0]

    def trace(event: str, args: tuple) -> None:
        if event == "switch" and type(args[1]) is IORunner:
            counted[0] += 1

    def client() -> int:
        # A plain blocking socket on a gevent-free path would block the hub: use gevent's.
        from gevent import socket as gsocket

        conn = gsocket.create_connection(("127.0.0.1", port.getHost().port))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn.sendall(b"warm-up")
            assert conn.recv(100) == b"warm-up"
            previous = greenlet.settrace(trace)
            try:
                for i in range(REQUESTS):
                    message = b"%d" % i
                    conn.sendall(message)
                    assert conn.recv(100) == message
            finally:
                greenlet.settrace(previous)
        finally:
            conn.close()
        return counted[0]

    switches = run_until(reactor, spawn(client), timeout=30)
    # One read event per request, its reply written inline: one runner switch each (a few more
    # are allowed for the odd pass where the loop reports two events, never one per reply more).
    assert REQUESTS <= switches <= REQUESTS * 1.1, switches
