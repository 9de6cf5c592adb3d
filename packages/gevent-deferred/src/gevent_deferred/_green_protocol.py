"""The reactor's half of a green connection: a Protocol that hands its events to a greenlet.

Every method here runs where the reactor runs its protocols (its own thread, or this thread's
hub for GeventReactor). The other half, ``GreenConnection``, lives in the greenlet's thread; the
two talk through ``post(kind, value)`` (this side to that) and ``call(f, *args)`` (that side to
this): plain calls in-loop, the hub's mailbox and ``callFromThread`` across threads.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, cast
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IProducer,
    IPushProducer,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.internet.tcp import Connection
from twisted.python.failure import Failure
from zope.interface import implementer

from ._errors import ReactorStoppedError
from ._reactor_protocol import TwistedReactor

# Event kinds posted to the greenlet's side.
DATA = 0  # bytes received
EOF = 1  # the peer half-closed (readConnectionLost)
LOST = 2  # the connection ended: a Failure (ConnectionDone when clean)
READ_PAUSED = 3  # the transport was paused: unread input is over the read limit
ACK = 4  # the written total, once the transport's buffer is under its limit again
STOPPED = 5  # the reactor is shutting down: a ReactorStoppedError
MADE = 6  # the connection is up (server side: the handler may start)

#: Unread input (bytes) above which the transport is paused.
READ_LIMIT = 256 * 1024
#: Bytes sent from another thread and not yet acknowledged by the reactor, before sendall waits.
WRITE_LIMIT = 256 * 1024


def reactor_of(transport: Any) -> Any:
    """The reactor behind a transport (TLS and endpoint wrappers hold it one level down)."""
    seen = 0
    while transport is not None and seen < 5:
        reactor = getattr(transport, "reactor", None)
        if reactor is not None:
            return reactor
        transport = getattr(transport, "transport", None)
        seen += 1
    return None


class GreenTransport(TypingProtocol):
    """
    What a green connection calls on its transport.

    ``ITransport`` names only part of it; the transports green connections run over provide
    all of it: TCP and UNIX connections (``ITCPTransport``, ``IConsumer``, ``IPushProducer``)
    and TLS over them. ``loseWriteConnection`` is only called once ``GreenConnection.shutdown``
    has refused TLS and transports without it.
    """

    def write(self, data: bytes) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def loseWriteConnection(self) -> None: ...
    def getPeer(self) -> IAddress: ...
    def getHost(self) -> IAddress: ...
    def registerProducer(self, producer: IProducer, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...


@implementer(IHalfCloseableProtocol, IPushProducer)
class GreenProtocol(Protocol):
    """
    Feeds a ``GreenConnection``: input, end of input, the end, and flow-control changes.

    It is the transport's producer (so that a full write buffer pauses the greenlet's
    ``sendall``), and pauses the transport when the greenlet leaves too much input unread.
    """

    # ``transport`` as this protocol uses it; set with it in makeConnection.
    _transport: GreenTransport

    def __init__(
        self,
        post: Callable[[int, Any], None],
        reactor: TwistedReactor | None = None,
        local: bool = False,
    ) -> None:
        self.post = post
        self.reactor = reactor
        self.local = local  # the greenlet's side runs in this thread (GeventReactor)
        self.direct = False  # writes may try the socket first (see write)
        self._tcp: Connection | None = None  # the transport, when direct
        self.delivered = 0  # bytes handed over
        self.consumed = 0  # bytes the greenlet said it has read
        self.reading_paused = False
        self.read_pauses = 0  # how often unread input paused the transport
        self.writing_paused = False  # our producer side: the transport's buffer is full
        self.ack_wanted = False
        self.written = 0
        self.ended = False
        self.abandoned = False  # nobody will ever own this connection (connect() gave up)

    # -- Twisted's side ----------------------------------------------------------------------

    def makeConnection(self, transport: ITransport) -> None:
        # Twisted declares an ITransport; see GreenTransport for why this one is more.
        self._transport = cast(GreenTransport, transport)
        super().makeConnection(transport)

    def connectionMade(self) -> None:
        transport = self._transport
        if self.abandoned:
            transport.abortConnection()
            return
        if self.reactor is None:
            self.reactor = reactor_of(transport)
        transport.registerProducer(self, True)
        if self.local and isinstance(self.transport, Connection):
            self._tcp = self.transport
            self.direct = True
        if self.reactor is not None:
            _track(self.reactor, self)
        self.post(MADE, (transport.getPeer(), transport.getHost()))

    def dataReceived(self, data: bytes) -> None:
        self.delivered += len(data)
        self.post(DATA, data)
        if not self.reading_paused and self.delivered - self.consumed > READ_LIMIT:
            self.reading_paused = True
            self.read_pauses += 1
            self._transport.pauseProducing()
            self.post(READ_PAUSED, None)

    def readConnectionLost(self) -> None:
        self.post(EOF, None)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.ended = True
        if self.reactor is not None:
            _untrack(self.reactor, self)
        self.post(LOST, reason)

    # IPushProducer: the transport calls these when its write buffer fills and drains.
    def pauseProducing(self) -> None:
        self.writing_paused = True

    def resumeProducing(self) -> None:
        self.writing_paused = False
        self._maybe_ack()

    def stopProducing(self) -> None:
        pass

    # -- calls from the greenlet's side (in the reactor's thread) ----------------------------

    def write(self, data: bytes, want_ack: bool = False) -> None:
        if self.ended or self.transport is None:
            return
        transport = self._transport
        tcp = self._tcp
        if (
            tcp is not None
            and not tcp.dataBuffer
            and not tcp._tempDataLen
            and tcp.connected
            and not tcp.disconnecting
            and not tcp._writeDisconnected
        ):
            # A greenlet of the reactor's own thread, nothing queued: send now, as a gevent
            # socket would, and queue only what the kernel did not take. Going through the
            # transport's buffer would cost a pass of the reactor's write flush per sendall.
            try:
                sent = tcp.socket.send(data)
            except OSError:
                sent = 0  # the transport's own write finds and reports the error
            if sent < len(data):
                transport.write(data[sent:] if sent else data)
        else:
            transport.write(data)
        self.written += len(data)
        if want_ack:
            self.ack_wanted = True
            self._maybe_ack()

    def read_now(self, size: int) -> bytes | None:
        # In-loop only (direct): what the socket has now, without a pass of the loop; None if
        # nothing is there, or at its end or on an error, which the reactor's own read reports.
        tcp = self._tcp
        if (
            tcp is None
            or self.ended
            or self.reading_paused
            or not tcp.connected
            or tcp.disconnecting
        ):
            return None
        try:
            data = tcp.socket.recv(size)
        except OSError:
            return None
        if not data:
            return None
        self.delivered += len(data)
        return data

    def want_ack(self) -> None:
        self.ack_wanted = True
        self._maybe_ack()

    def _maybe_ack(self) -> None:
        if self.ack_wanted and not self.writing_paused:
            self.ack_wanted = False
            self.post(ACK, self.written)

    def resume_reading(self, consumed: int) -> None:
        self.consumed = consumed
        if not self.reading_paused or self.ended:
            return
        if self.delivered - consumed > READ_LIMIT:
            self.post(READ_PAUSED, None)  # input came meanwhile: ask again later
            return
        self.reading_paused = False
        self._transport.resumeProducing()

    def half_close(self) -> None:
        if not self.ended:
            # A producer still registered (and paused) makes the transport's last write resume
            # it instead of half-closing: nothing more will be written anyway.
            self._transport.unregisterProducer()
            self._transport.loseWriteConnection()

    def close(self) -> None:
        if not self.ended:
            transport = self._transport
            transport.unregisterProducer()
            if self.reading_paused:
                # A paused transport would never see the peer's close and never end.
                self.reading_paused = False
                transport.resumeProducing()
            transport.loseConnection()

    def abort(self) -> None:
        self.abandoned = True
        if self.transport is not None and not self.ended:
            self._transport.abortConnection()

    def reactor_stopping(self) -> None:
        self.post(
            STOPPED,
            ReactorStoppedError(
                f"reactor stopped: {self.reactor!r} is shutting down, so this connection "
                "will carry no more data"
            ),
        )


# Live green connections per reactor, touched only in that reactor's thread: at shutdown every
# one hears of it before the reactor disconnects them, so blocked calls fail with
# ReactorStoppedError rather than with the disconnection that follows.
_live: weakref.WeakKeyDictionary[Any, set[GreenProtocol]] = weakref.WeakKeyDictionary()


def _track(reactor: TwistedReactor, proto: GreenProtocol) -> None:
    protos = _live.get(reactor)
    if protos is None:
        try:
            protos = _live[reactor] = set()
        except TypeError:  # a reactor that cannot be weakly referenced: no shutdown notice
            return
        reactor.addSystemEventTrigger("before", "shutdown", _reactor_stopping, reactor)
    protos.add(proto)


def _untrack(reactor: TwistedReactor, proto: GreenProtocol) -> None:
    protos = _live.get(reactor)
    if protos is not None:
        protos.discard(proto)


def _reactor_stopping(reactor: TwistedReactor) -> None:
    for proto in list(_live.get(reactor, ())):
        proto.reactor_stopping()
