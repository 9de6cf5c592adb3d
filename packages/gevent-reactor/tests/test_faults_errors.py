"""Exceptions and BaseExceptions escaping every kind of handler.

The contract (Twisted's, from ``_doReadOrWrite`` and ``Port.doRead``): what escapes a handler is
logged once; a connection whose ``dataReceived``, ``doWrite`` (a producer's ``resumeProducing``) or
``doRead`` raised is dropped with one ``connectionLost`` whose reason is what was raised; an error in
``connectionMade`` is logged by the port (the connection is then served or closed, never left
silent); and the reactor keeps serving other clients.  BaseExceptions count: a ``gevent.Timeout``, the
``GreenletExit`` of a killed handler greenlet, and any other subclass of BaseException.

Errors raised without blocking are checked on Twisted's epoll reactor too.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Any

import gevent
import pytest
from greenlet import GreenletExit, getcurrent
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

sys.path.insert(0, os.path.dirname(__file__))
from faults_support import (
    connect,
    failures_of,
    reactor_of,
    recv_until_eof,
    run_with_client,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)

# A connection that is neither answered nor closed within this shows up as "timeout".
SILENCE = 2.0


class HandlerAbort(BaseException):
    """A BaseException of the application's own (as KeyboardInterrupt is Python's)."""


ERROR_TYPES = {
    "exception": ValueError,
    "timeout": gevent.Timeout,
    "kill": GreenletExit,
    "base": HandlerAbort,
}


def _fail(how: str) -> None:
    """Make the calling handler end with the error named by ``how``."""
    if how == "exception":
        raise ValueError("the handler failed")
    if how == "base":
        raise HandlerAbort("the handler gave up")
    if how == "timeout":
        with gevent.Timeout(0.05):
            gevent.sleep(3)
    elif how == "kill":
        # Another greenlet kills this one while it blocks.
        gevent.spawn_later(0.05, gevent.kill, getcurrent())
        gevent.sleep(3)
    raise AssertionError(f"_fail({how!r}) returned")


@implementer(IPullProducer)
class _Chunks:
    """A pull producer: the first resumeProducing writes a chunk, the second fails."""

    def __init__(self, transport: Any, how: str) -> None:
        self.transport = transport
        self.how = how
        self.calls = 0

    def resumeProducing(self) -> None:
        self.calls += 1
        if self.calls == 1:
            self.transport.write(b"chunk")
        else:
            _fail(self.how)

    def stopProducing(self) -> None:
        pass


class _Faulty(Protocol):
    """The first connection fails in the handler named by factory.where; the others echo."""

    def connectionMade(self) -> None:
        factory = self.factory
        self.first = not factory.made
        factory.made.append(self)
        if self.first and factory.where == "connectionMade":
            _fail(factory.how)

    def dataReceived(self, data: bytes) -> None:
        factory = self.factory
        if self.first and factory.where == "dataReceived":
            _fail(factory.how)
        if self.first and factory.where == "resumeProducing" and data == b"produce":
            self.transport.registerProducer(_Chunks(self.transport, factory.how), False)
            return
        self.transport.write(data)

    def connectionLost(self, reason: Any) -> None:
        factory = self.factory
        if self.first:
            factory.lost.append(reason)
            factory.lost_event.set()
            if factory.where == "connectionLost":
                _fail(factory.how)


class _FaultyReader(FileDescriptor):
    """A custom reader on a socket pair whose doRead fails."""

    def __init__(self, reactor: Any, sock: socket.socket, how: str) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.how = how
        self.reads = 0
        self.lost: list[Any] = []
        self.connected = 1

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.reads += 1
        self.sock.recv(100)
        _fail(self.how)

    def connectionLost(self, reason: Any) -> None:
        FileDescriptor.connectionLost(self, reason)
        self.lost.append(reason)
        self.sock.close()


CASES = [
    (kind, where, how)
    for where in ("dataReceived", "connectionMade", "connectionLost", "resumeProducing", "doRead")
    for how in ("exception", "timeout", "kill", "base")
    # epoll cannot block in a handler: only errors raised at once compare.
    for kind in (("gevent", "epoll") if how in ("exception", "base") else ("gevent",))
]


def _serve_one_more(port: int) -> bytes:
    good = connect(port)
    good.sendall(b"still serving")
    reply = good.recv(100)
    good.close()
    return reply


@pytest.mark.parametrize(("kind", "where", "how"), CASES, ids=[f"{k}-{w}-{h}" for k, w, h in CASES])
def test_error_in_a_handler_is_logged_once_and_ends_cleanly(
    any_reactor: Any, kind: str, where: str, how: str, logged_failures: list
) -> None:
    reactor = any_reactor
    error_type = ERROR_TYPES[how]
    factory = Factory.forProtocol(_Faulty)
    factory.where, factory.how = where, how
    factory.made, factory.lost, factory.lost_event = [], [], threading.Event()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port
    reader_peer = None
    reader = None
    if where == "doRead":
        reader_end, reader_peer = socket.socketpair()
        reader_peer.settimeout(SILENCE)
        reader = _FaultyReader(reactor, reader_end, how)
        reactor.addReader(reader)

    def client() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        if where == "doRead":
            reader_peer.sendall(b"input")
            seen["peer"] = recv_until_eof(reader_peer)
        else:
            bad = connect(port, timeout=SILENCE)
            if where == "connectionLost":
                bad.sendall(b"echo")
                seen["echo"] = bad.recv(100)
                bad.close()
                wait_for(factory.lost_event.is_set, SILENCE)
            elif where == "connectionMade":
                bad.sendall(b"ping")
                try:
                    seen["bad"] = (bad.recv(100), "data")
                except TimeoutError:
                    seen["bad"] = (b"", "timeout")
                except ConnectionResetError:
                    seen["bad"] = (b"", "reset")
                bad.close()
            else:
                bad.sendall(b"produce" if where == "resumeProducing" else b"fail")
                seen["bad"] = recv_until_eof(bad)
                bad.close()
            wait_for(factory.lost_event.is_set, 0.5)
        seen["good"] = _serve_one_more(port)
        # The error is logged once the handler ends (a killed handler: some time after it began).
        wait_for(lambda: logged_failures, SILENCE)
        time.sleep(0.05)  # a second report of the same error, if any, comes meanwhile
        return seen

    try:
        seen = run_with_client(reactor, client)
    finally:
        if reader_peer is not None:
            reader_peer.close()
            if reader is not None and reader.sock.fileno() != -1:
                reader.sock.close()

    assert seen["good"] == b"still serving", "the reactor stopped serving other clients"
    logged = failures_of(logged_failures, error_type)
    assert len(logged) == 1, (
        f"{error_type.__name__} logged {len(logged)} times: "
        f"{[f.getErrorMessage() for f in logged_failures]}"
    )
    assert len(logged_failures) == 1, [f.type.__name__ for f in logged_failures]

    if where == "doRead":
        assert seen["peer"][1] in ("eof", "reset"), f"the reader was not dropped: {seen['peer']}"
        assert len(reader.lost) == 1 and reader.lost[0].check(error_type), reader.lost
        assert reader not in reactor.getReaders()
        assert reader.reads == 1
        return
    if where == "connectionLost":
        assert seen["echo"] == b"echo"
        assert len(factory.lost) == 1
        assert factory.made[0].transport not in reactor.getReaders()
        return
    if where == "connectionMade":
        data, ended = seen["bad"]
        # Served (as Twisted's reactors do: Port.doRead logs the error and goes on) or closed:
        # never left silent.
        assert ended != "timeout", "the connection whose connectionMade failed was left silent"
        if ended == "data":
            assert data == b"ping"
        else:
            assert len(factory.lost) == 1
        return
    data, ended = seen["bad"]
    expected = b"chunk" if where == "resumeProducing" else b""
    assert (data, ended in ("eof", "reset")) == (expected, True), (
        f"the failed connection was not closed: {seen['bad']}"
    )
    assert len(factory.lost) == 1, factory.lost
    assert factory.lost[0].check(error_type), factory.lost[0]


class _TimedLines(LineReceiver):
    """``slow`` hits a gevent.Timeout in lineReceived; other lines are echoed."""

    def lineReceived(self, line: bytes) -> None:
        self.factory.lines.append(line)
        if line == b"slow":
            with gevent.Timeout(0.1):
                gevent.sleep(2)
        self.sendLine(line)

    def connectionLost(self, reason: Any) -> None:
        self.factory.lost.append(reason)


@pytest.mark.parametrize("segments", ["one-segment", "two-segments"])
def test_line_pipelined_after_a_timed_out_handler_gets_a_clean_close(
    segments: str, logged_failures: list
) -> None:
    with reactor_of("gevent") as reactor:
        factory = Factory.forProtocol(_TimedLines)
        factory.lines, factory.lost = [], []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port

        def client() -> tuple[bytes, str, float]:
            sock = connect(port, timeout=SILENCE)
            started = time.monotonic()
            if segments == "one-segment":
                sock.sendall(b"slow\r\nnext\r\n")
            else:
                sock.sendall(b"slow\r\n")
                time.sleep(0.02)
                sock.sendall(b"next\r\n")
            data, ended = recv_until_eof(sock)
            sock.close()
            return data, ended, time.monotonic() - started

        data, ended, took = run_with_client(reactor, client)
    # As with Twisted's reactors after any error from dataReceived: the connection is closed,
    # the line after the failed one is not answered, and the client is not left waiting.
    assert (data, ended) == (b"", "eof") or (data, ended) == (b"", "reset"), (data, ended)
    assert took < 1.0
    assert factory.lines == [b"slow"]
    assert len(factory.lost) == 1 and factory.lost[0].check(gevent.Timeout)
    assert [f.type for f in logged_failures] == [gevent.Timeout]
