"""Connections that end while their handler blocks, and peers that reset: on both loops."""

from __future__ import annotations

import socket
import struct
import time

import gevent
import gevent.socket
from twisted.internet.protocol import Factory, Protocol

from gevent_reactor import GeventReactor


def _reset(sock: socket.socket) -> None:
    # Closing with a zero linger time sends RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_reset_after_unread_data_ends_the_connection(
    reactor: GeventReactor, run_until, spawn
) -> None:
    # The server reads only after the peer has sent a lot and reset: what was queued before the
    # reset may still be read (libuv stops watching the fd after reporting the error once), and
    # then connectionLost must come.
    lost: list[str] = []
    received: list[int] = []
    transports: list = []

    class Paused(Protocol):
        def connectionMade(self) -> None:
            self.transport.pauseProducing()
            transports.append(self.transport)

        def dataReceived(self, data: bytes) -> None:
            received.append(len(data))

        def connectionLost(self, reason: object) -> None:
            lost.append(reason.type.__name__)

    port = reactor.listenTCP(0, Factory.forProtocol(Paused), interface="127.0.0.1")

    def scenario() -> float:
        client = gevent.socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        while not transports:
            gevent.sleep(0.005)
        client.sendall(b"x" * 400_000)
        gevent.sleep(0.05)
        _reset(client)
        gevent.sleep(0.05)
        started = time.monotonic()
        transports[0].resumeProducing()
        while not lost:
            if time.monotonic() - started > 3:
                break
            gevent.sleep(0.005)
        return time.monotonic() - started

    took = run_until(reactor, spawn(scenario), timeout=10)
    assert lost, f"no connectionLost {took:.1f} s after the reset; read {sum(received)} bytes"
    assert lost == ["ConnectionLost"] or lost == ["ConnectionDone"], lost
    assert took < 1.0


def test_lose_connection_from_another_greenlet_while_the_handler_blocks(
    reactor: GeventReactor, run_until, spawn
) -> None:
    # connectionLost waits until the blocked handler returns, and the reply it writes when it
    # wakes is delivered before the connection closes (as it would be on epoll: data written
    # before the close is sent).
    events: list[str] = []
    transports: list = []

    class Sleeper(Protocol):
        def connectionMade(self) -> None:
            transports.append(self.transport)

        def dataReceived(self, data: bytes) -> None:
            events.append("blocked")
            gevent.sleep(0.2)
            events.append("woke")
            self.transport.write(b"reply")

        def connectionLost(self, reason: object) -> None:
            events.append("lost:" + reason.type.__name__)

    port = reactor.listenTCP(0, Factory.forProtocol(Sleeper), interface="127.0.0.1")

    def scenario() -> bytes:
        client = gevent.socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        client.settimeout(5)
        client.sendall(b"go")
        while "blocked" not in events:
            gevent.sleep(0.005)
        transports[0].loseConnection()
        data = b""
        while True:
            chunk = client.recv(100)
            if not chunk:
                break
            data += chunk
        client.close()
        return data

    data = run_until(reactor, spawn(scenario))
    assert data == b"reply"
    assert events == ["blocked", "woke", "lost:ConnectionDone"]


def test_abort_from_another_greenlet_while_the_handler_blocks(
    reactor: GeventReactor, run_until, spawn
) -> None:
    # abortConnection() ends the connection now: its blocked handler is killed (GreenletExit), and
    # connectionLost comes once, after the handler is over, well before its sleep would end.
    events: list[str] = []
    transports: list = []

    class Sleeper(Protocol):
        def connectionMade(self) -> None:
            transports.append(self.transport)

        def dataReceived(self, data: bytes) -> None:
            events.append("blocked")
            gevent.sleep(0.2)
            events.append("woke")
            self.transport.write(b"late reply")

        def connectionLost(self, reason: object) -> None:
            events.append("lost:" + reason.type.__name__)

    port = reactor.listenTCP(0, Factory.forProtocol(Sleeper), interface="127.0.0.1")

    def scenario() -> None:
        client = gevent.socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        client.settimeout(5)
        client.sendall(b"go")
        while "blocked" not in events:
            gevent.sleep(0.005)
        started = time.monotonic()
        transports[0].abortConnection()
        while not any(e.startswith("lost") for e in events) and time.monotonic() - started < 3:
            gevent.sleep(0.005)
        took = time.monotonic() - started
        # The peer sees the connection end (aborted: reset).
        try:
            assert client.recv(100) == b""
        except ConnectionResetError:
            pass
        client.close()
        return took

    took = run_until(reactor, spawn(scenario))
    assert events == ["blocked", "lost:ConnectionAborted"]
    assert took < 0.15, took
    assert not reactor.getWriters()
