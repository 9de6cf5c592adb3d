"""Peers that misbehave and selectables that lie: resets, half-closes, closes from elsewhere, fd reuse.

Every scenario that needs no blocking in a handler runs on Twisted's epoll reactor too, with the
same assertions: GeventReactor must do what epoll does, within the same bounds.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import sys
import termios
import threading
import time
from typing import Any

import gevent
import pytest
from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

sys.path.insert(0, os.path.dirname(__file__))
from faults_support import (
    connect,
    recv_until_eof,
    reset,
    run_with_client,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)


SLEEP = 0.3
# How long a reactor may take to notice what the peer did (epoll: a few milliseconds).
NOTICE = 1.0


def _port(reactor: Any, protocol: type[Protocol], **attrs: Any) -> tuple[int, Factory]:
    factory = Factory.forProtocol(protocol)
    for name, value in attrs.items():
        setattr(factory, name, value)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port
    return port, factory


# -- peer reset ----------------------------------------------------------------------------------


class _ResetWatch(Protocol):
    """Records input and connectionLost; the first dataReceived blocks if the factory says so."""

    def connectionMade(self) -> None:
        self.factory.log.append("made")
        self.blocked_once = False

    def dataReceived(self, data: bytes) -> None:
        self.factory.received += len(data)
        self.factory.got_data.set()
        if self.blocked_once:
            return
        self.blocked_once = True
        if self.factory.block:
            self.factory.log.append("block")
            gevent.sleep(SLEEP)
            self.factory.log.append("woke")
            self.transport.write(b"late reply")
        elif self.factory.unread == "paused":
            # Not reading for a while (as a paused transport): the client's data and its reset
            # arrive meanwhile, so there is input queued before the reset when reading resumes.
            self.transport.pauseProducing()
            self.factory.server_reactor.callLater(SLEEP, self.transport.resumeProducing)

    def connectionLost(self, reason: Any) -> None:
        self.factory.log.append(("lost", reason.type))
        self.factory.lost_at = time.monotonic()
        self.factory.lost.set()


def _unacked(sock: socket.socket) -> int:
    # SIOCOUTQ: bytes sent but not yet acknowledged by the peer.
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


# unread: "no" (nothing queued at the reset), "paused" (the server does not read for a while; the
# data and the reset wait in its kernel), "streaming" (the reset lands while the server is reading
# a stream of input faster than one read can take).
RESET_CASES = [
    ("epoll", "no", False),
    ("epoll", "paused", False),
    ("epoll", "streaming", False),
    ("gevent", "no", False),
    ("gevent", "paused", False),
    ("gevent", "streaming", False),
    ("gevent", "no", True),
    ("gevent", "streaming", True),
]


@pytest.mark.parametrize(
    ("kind", "unread", "block"),
    RESET_CASES,
    ids=[f"{k}-unread-{u}-{'blocked' if b else 'idle'}" for k, u, b in RESET_CASES],
)
def test_peer_reset_ends_the_connection_with_connection_lost(
    any_reactor: Any, kind: str, unread: str, block: bool
) -> None:
    port, factory = _port(
        any_reactor,
        _ResetWatch,
        log=[],
        received=0,
        block=block,
        unread=unread,
        server_reactor=any_reactor,
        got_data=threading.Event(),
        lost=threading.Event(),
        lost_at=None,
    )

    def client() -> float:
        sock = connect(port)
        sock.sendall(b"hello")
        assert factory.got_data.wait(5), "the server never read the first bytes"
        if unread == "paused":
            # Queued behind the reset: the server has not read it when the RST arrives (more
            # than one read's worth), and it is in the server's kernel, not the client's.
            sock.sendall(b"u" * (192 << 10))
            wait_for(lambda: _unacked(sock) == 0, 2)
        elif unread == "streaming":
            sock.sendall(b"u" * (1 << 20))
        reset_at = time.monotonic()
        reset(sock)
        assert factory.lost.wait(SLEEP + 5), "connectionLost never came after the peer's reset"
        return reset_at

    reset_at = run_with_client(any_reactor, client)
    took = factory.lost_at - reset_at
    bound = NOTICE + (SLEEP if block or unread == "paused" else 0.0)
    assert took < bound, f"connectionLost came {took:.2f} s after the reset (bound {bound} s)"
    lost = [e for e in factory.log if isinstance(e, tuple)]
    assert len(lost) == 1, factory.log
    # A reset is an error (ECONNRESET), not a clean close.
    assert lost[0][1] is ConnectionLost, (
        f"connectionLost reason {lost[0][1]}, expected ConnectionLost"
    )
    if block:
        assert factory.log[:3] == ["made", "block", "woke"], factory.log


# -- half-close while the handler blocks --------------------------------------------------------


@implementer(IHalfCloseableProtocol)
class _HalfClose(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.factory.log.append("data")
        self.factory.got_data.set()
        if self.factory.block:
            gevent.sleep(SLEEP)
        self.factory.log.append("replied")
        self.transport.write(b"reply:" + data)

    def readConnectionLost(self) -> None:
        self.factory.log.append("readConnectionLost")
        self.transport.write(b"|bye")
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        self.factory.log.append("writeConnectionLost")

    def connectionLost(self, reason: Any) -> None:
        self.factory.log.append(("lost", reason.type))


HALF_CLOSE_CASES = [("epoll", False), ("gevent", False), ("gevent", True)]


@pytest.mark.parametrize(
    ("kind", "block"),
    HALF_CLOSE_CASES,
    ids=[f"{k}-{'blocked' if b else 'idle'}" for k, b in HALF_CLOSE_CASES],
)
def test_half_close_is_delivered_after_the_handler_returns(
    any_reactor: Any, kind: str, block: bool
) -> None:
    port, factory = _port(any_reactor, _HalfClose, log=[], block=block, got_data=threading.Event())

    def client() -> tuple[bytes, str, float]:
        sock = connect(port)
        started = time.monotonic()
        sock.sendall(b"work")
        assert factory.got_data.wait(5)
        # While dataReceived blocks (blocked case): the FIN waits behind it.
        sock.shutdown(socket.SHUT_WR)
        data, how = recv_until_eof(sock)
        took = time.monotonic() - started
        sock.close()
        return data, how, took

    data, how, took = run_with_client(any_reactor, client)
    assert (data, how) == (b"reply:work|bye", "eof")
    assert took < NOTICE + (SLEEP if block else 0.0)
    assert factory.log == ["data", "replied", "readConnectionLost", ("lost", ConnectionDone)]


# -- loseConnection / abortConnection while the handler blocks -----------------------------------


class _LateReply(Protocol):
    """
    dataReceived ends the connection (factory.how: lose or abort) and writes a reply afterwards.

    factory.where says from where the connection is ended: "inline" (in dataReceived, before the
    write, as a non-blocking protocol would), or "greenlet" (from another greenlet while
    dataReceived blocks, and the reply is written when it wakes).
    """

    in_handler = False

    def _end(self) -> None:
        self.factory.log.append("end")
        if self.factory.how == "lose":
            self.transport.loseConnection()
        else:
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        self.in_handler = True
        try:
            self.factory.log.append("data")
            if self.factory.where == "inline":
                self._end()
            else:
                gevent.spawn(self._end)
                gevent.sleep(SLEEP)
                self.factory.log.append("woke")
            self.transport.write(b"reply")
            self.factory.log.append("returned")
        finally:
            self.in_handler = False

    def connectionLost(self, reason: Any) -> None:
        where = "inside dataReceived" if self.in_handler else "after dataReceived"
        self.factory.log.append(("lost", reason.type, where))


LATE_CASES = [
    ("epoll", "inline", "lose"),
    ("epoll", "inline", "abort"),
    ("gevent", "inline", "lose"),
    ("gevent", "inline", "abort"),
    ("gevent", "greenlet", "lose"),
    ("gevent", "greenlet", "abort"),
]


@pytest.mark.parametrize(
    ("kind", "where", "how"), LATE_CASES, ids=[f"{k}-{w}-{h}" for k, w, h in LATE_CASES]
)
def test_end_of_connection_waits_for_the_handler(
    any_reactor: Any, kind: str, where: str, how: str
) -> None:
    # The contract (Twisted never re-enters a protocol): connectionLost comes after dataReceived
    # returns; what dataReceived wrote before returning is delivered after loseConnection (as
    # epoll does: loseConnection flushes the buffer first) and discarded after abortConnection.
    # An abort from another greenlet ends the connection at once: the blocked handler is killed
    # (GreenletExit), so it neither wakes nor writes, and connectionLost comes as it ends.
    port, factory = _port(any_reactor, _LateReply, log=[], where=where, how=how)

    def client() -> tuple[bytes, str]:
        sock = connect(port)
        sock.sendall(b"go")
        data, ended = recv_until_eof(sock)
        sock.close()
        # connectionLost may come a moment after the client saw the end.
        wait_for(lambda: any(isinstance(e, tuple) for e in factory.log), NOTICE)
        return data, ended

    data, ended = run_with_client(any_reactor, client)
    if how == "lose":
        assert (data, ended) == (b"reply", "eof")
        expected_reason = ConnectionDone
    else:
        assert data == b"" and ended in ("eof", "reset")
        expected_reason = ConnectionAborted
    if where == "inline":
        events = ["data", "end", "returned"]
    elif how == "abort":
        events = ["data", "end"]
    else:
        events = ["data", "end", "woke", "returned"]
    assert factory.log == [*events, ("lost", expected_reason, "after dataReceived")]


# -- fd reuse inside one pass -------------------------------------------------------------------


class _PairReader(FileDescriptor):
    """A reader on one end of a socket pair; ``on_read(self, data)`` runs after each recv."""

    def __init__(self, reactor: Any, sock: socket.socket, name: str, log: list, on_read=None):
        super().__init__(reactor)
        self.sock = sock
        self.name = name
        self.log = log
        self.on_read = on_read
        self.connected = 1

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> Any:
        data = self.sock.recv(4)
        self.log.append((self.name, data))
        if self.on_read is not None:
            return self.on_read(self, data)
        if not data:
            return CONNECTION_DONE
        return None

    def connectionLost(self, reason: Any) -> None:
        FileDescriptor.connectionLost(self, reason)
        self.log.append((self.name, "lost"))
        self.sock.close()


@pytest.mark.parametrize("kind", ["gevent", "epoll"])
def test_fd_reused_inside_one_handler(any_reactor: Any, kind: str) -> None:
    reactor = any_reactor
    log: list = []
    pairs: list[tuple[socket.socket, socket.socket]] = []

    def swap(old: _PairReader, data: bytes) -> None:
        # In the old reader's doRead: drop it, close its fd, and give the same fd number to a new
        # socket whose reader is added at once (unread input is still queued on the old one).
        if old.sock.fileno() == -1:
            log.append(("old read again after close", data))
            return
        reactor.removeReader(old)
        number = old.sock.fileno()
        old.sock.close()
        new_end, new_peer = socket.socketpair()
        if new_end.fileno() == number:
            reused = new_end
        else:
            os.dup2(new_end.fileno(), number)
            new_end.close()
            reused = socket.socket(fileno=number)
        pairs.append((reused, new_peer))
        reactor.addReader(_PairReader(reactor, reused, "new", log))
        new_peer.sendall(b"new!")
        log.append(("reused fd", number))

    old_end, old_peer = socket.socketpair()
    other_end, other_peer = socket.socketpair()
    pairs += [(old_end, old_peer), (other_end, other_peer)]
    old = _PairReader(reactor, old_end, "old", log, on_read=swap)
    other = _PairReader(reactor, other_end, "other", log)
    reactor.addReader(old)
    reactor.addReader(other)
    # Both readable before the reactor runs: their events come in the same pass.
    old_peer.sendall(b"old1old2old3")
    other_peer.sendall(b"oth1")

    def client() -> None:
        assert wait_for(lambda: ("new", b"new!") in log, 5), log
        time.sleep(0.1)  # time for a stale event on the reused number to show up

    try:
        run_with_client(reactor, client)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    assert log[0] == ("old", b"old1") or log[1] == ("old", b"old1"), log
    assert ("other", b"oth1") in log
    # Twisted's reactors disconnect a reader whose fileno() changed during doRead
    # (ConnectionFdescWentAway); the old reader must never be read again.
    assert [e for e in log if e[0] == "old" and e[1] != "lost"] == [("old", b"old1")], log
    assert [e for e in log if e[0] == "new" and e[1] != "lost"] == [("new", b"new!")], log
    assert not [e for e in log if e[0] == "old read again after close"], log


# -- bad selectables ---------------------------------------------------------------------------


class _BadSelectable(FileDescriptor):
    """A selectable whose fileno() lies: -1, raises, or names a closed descriptor."""

    def __init__(self, reactor: Any, bad: str, stale_fd: int):
        super().__init__(reactor)
        self.bad = bad
        self.stale_fd = stale_fd
        self.calls: list[str] = []
        self.lost: list[Any] = []
        self.connected = 1

    def fileno(self) -> int:
        if self.bad == "minus-one":
            return -1
        if self.bad == "raises":
            raise RuntimeError("fileno() is broken")
        return self.stale_fd

    def doRead(self) -> None:
        self.calls.append("doRead")

    def doWrite(self) -> None:
        self.calls.append("doWrite")

    def connectionLost(self, reason: Any) -> None:
        self.lost.append(reason)


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def _stale_fd() -> int:
    # A closed descriptor with a high number, so that nothing opened meanwhile reuses it.
    sock = socket.socket()
    number = os.dup2(sock.fileno(), 900)
    sock.close()
    os.close(number)
    return number


BAD_CASES = [
    (kind, direction, bad)
    for kind in ("gevent", "epoll")
    for direction in ("reader", "writer")
    for bad in ("minus-one", "raises", "closed")
]


@pytest.mark.parametrize(
    ("kind", "direction", "bad"), BAD_CASES, ids=[f"{k}-{d}-{b}" for k, d, b in BAD_CASES]
)
def test_bad_selectable_gets_an_error_or_a_clean_disconnect(
    any_reactor: Any, kind: str, direction: str, bad: str, logged_failures: list
) -> None:
    reactor = any_reactor
    selectable = _BadSelectable(reactor, bad, _stale_fd())
    port = reactor.listenTCP(0, Factory.forProtocol(_Echo), interface="127.0.0.1").getHost().port
    raised: list[BaseException] = []

    def add() -> None:
        try:
            (reactor.addReader if direction == "reader" else reactor.addWriter)(selectable)
        except Exception as e:
            raised.append(e)

    reactor.callWhenRunning(add)

    def client() -> bytes:
        wait_for(lambda: raised or selectable.lost, NOTICE)
        time.sleep(0.2)  # a busy loop, if any, shows up as many calls meanwhile
        sock = connect(port)
        sock.sendall(b"still serving")
        reply = sock.recv(100)
        sock.close()
        return reply

    reply = run_with_client(reactor, client)
    assert reply == b"still serving"
    registered = reactor.getReaders() if direction == "reader" else reactor.getWriters()
    assert selectable not in registered, "a bad selectable stays registered"
    if raised:
        # A clear error, at once, from the call that got the bad selectable.
        assert str(raised[0]), raised
        assert not selectable.lost
    else:
        assert len(selectable.lost) == 1, "neither an error from add nor a disconnect"
    # No busy loop on a descriptor that cannot be polled, and no flood of logged errors.
    assert len(selectable.calls) <= 1, selectable.calls
    assert len(logged_failures) <= 1, [f.getErrorMessage() for f in logged_failures]
