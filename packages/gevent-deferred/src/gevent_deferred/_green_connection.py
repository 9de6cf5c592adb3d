"""GreenConnection: a Twisted connection used from a greenlet as a blocking, socket-like object."""

from __future__ import annotations

import errno
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, cast

import gevent
from gevent.exceptions import BlockingSwitchOutError, ConcurrentObjectUseError
from gevent.hub import Waiter
from greenlet import GreenletExit, getcurrent
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.python.failure import Failure

from ._checks import check_timeout
from ._errors import WaitTimeoutError, hub_error, reactor_context_error
from ._green_file import make_file
from ._green_protocol import (
    ACK,
    DATA,
    EOF,
    LOST,
    MADE,
    READ_LIMIT,
    READ_PAUSED,
    STOPPED,
    WRITE_LIMIT,
    GreenProtocol,
)
from ._reactor_protocol import TwistedReactor

__all__ = ["GreenConnection"]

# Direct reads in a row before one wait for the reactor (see recv).
_DIRECT_RUN = 16


class GreenConnection:
    """
    A connected Twisted transport with a blocking, socket-like API for greenlets.

    Made by ``connect()`` (client side) or handed to a ``GreenFactory`` handler (server side).
    Reading and writing block only the calling greenlet. One greenlet at a time may read and one
    at a time may write (they may be two different greenlets). Unread input is bounded: past a
    limit the transport is paused, so a slow reader slows its peer through TCP; ``sendall``
    waits while the transport's write buffer is full.

    In-loop (GeventReactor on this thread's hub) every call goes to the transport directly;
    with a reactor in another thread, transport calls are made there and input comes back
    through this hub's mailbox. ``transport`` is the Twisted transport: in the second case,
    touch it only in the reactor's thread.
    """

    def __init__(
        self,
        hub: Any,
        reactor: TwistedReactor | None,
        *,
        mailbox: Any = None,
        link: Any = None,
        on_made: Callable[[GreenConnection], None] | None = None,
    ) -> None:
        self._hub = hub
        self._reactor = reactor
        self._mailbox = mailbox  # None in-loop
        self._link = link
        self._on_made = on_made
        self._owner: Any = None  # the gevent Greenlet whose death aborts this connection
        self._proto: GreenProtocol | None = None
        self._peer: Any = None
        self._host: Any = None
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # already consumed bytes of _chunks[0]
        self._buffered = 0
        self._consumed_total = 0
        self._reported = 0  # the consumed total last told to the reactor's half
        self._direct_reads = 0  # recv's reads of the socket itself since it last waited
        self._peer_paused = False  # the reactor side paused the transport for us
        self._sent = 0
        self._acked = 0
        self._ack_asked = 0
        self._eof = False  # no more input will come
        self._ended = False  # the connection is over (LOST)
        self.reason: Failure | None = None  #: why the connection ended, once it has
        self._stopped: BaseException | None = None
        self._closed = False  # close() or abort() was called here
        self._write_shut = False
        self._timeout: float | None = None
        self._reader: Any = None
        self._writer: Any = None
        self._read_waiter: Waiter | None = None
        self._write_waiter: Waiter | None = None
        self._close_waiter: Waiter | None = None

    # -- wiring (called by connect() and GreenFactory) ----------------------------------------

    def make_protocol(self, reactor: TwistedReactor | None = None) -> GreenProtocol:
        """The reactor's half; built where the reactor builds protocols."""
        post = self._on_event if self._mailbox is None else self._post_across
        proto = self._proto = GreenProtocol(post, reactor, local=self._mailbox is None)
        return proto

    def _post_across(self, kind: int, value: Any) -> None:
        self._mailbox.post(self, (kind, value))

    def deliver(self, event: tuple[int, Any]) -> None:
        # The mailbox calls this in our hub.
        self._on_event(event[0], event[1])

    def post(self, failure: Failure) -> None:
        # ReactorLink's sweep (any thread): the reactor has gone without a shutdown notice.
        self._mailbox.post(self, (STOPPED, failure.value))

    def _call(self, f: Callable[..., Any], *args: Any) -> None:
        if self._mailbox is None:
            f(*args)
        else:
            self._remote_reactor().callFromThread(f, *args)

    def _remote_reactor(self) -> TwistedReactor:
        # Across threads a connection is always made with its reactor (see connect, GreenFactory).
        reactor = self._reactor
        assert reactor is not None
        return reactor

    def watch_owner(self, owner: Any) -> None:
        """Abort when ``owner`` (a gevent Greenlet) dies of an exception or is killed."""
        rawlink = getattr(owner, "rawlink", None)
        if rawlink is not None:
            rawlink(self._owner_died)
            self._owner = owner

    def _owner_died(self, owner: Any) -> None:
        if not self._ended and (
            owner.exception is not None or isinstance(owner.value, GreenletExit)
        ):
            self.abort()

    # -- events from the reactor's half -------------------------------------------------------

    def _on_event(self, kind: int, value: Any) -> None:
        if kind == DATA:
            self._chunks.append(value)
            self._buffered += len(value)
            waiter = self._read_waiter
            if waiter is not None:
                self._read_waiter = None
                if getcurrent() is self._hub:
                    waiter.switch(None)
                else:
                    self._hub.loop.run_callback(waiter.switch, None)
        elif kind == ACK:
            self._acked = value
            if self._write_waiter is not None:
                self._wake("_write_waiter")
        elif kind == READ_PAUSED:
            self._peer_paused = True
            if self._buffered <= READ_LIMIT // 2:
                self._consumed(0)  # everything was read meanwhile
        elif kind == MADE:
            self._peer, self._host = value
            if self._reactor is None:
                self._reactor = self._proto.reactor  # type: ignore[union-attr]
            if self._on_made is not None:
                self._on_made(self)
        elif kind == EOF:
            self._eof = True
            self._wake_all()
        elif kind == LOST:
            self.reason = value
            self._eof = self._ended = True
            self._forget()
            self._wake_all()
        elif kind == STOPPED:
            if self._stopped is None:
                self._stopped = value
            self._wake_all()

    def _wake(self, slot: str) -> None:
        waiter = getattr(self, slot)
        if waiter is None:
            return
        setattr(self, slot, None)
        if getcurrent() is self._hub:
            waiter.switch(None)
        else:
            # From a reactor's runner greenlet: switch from the hub, never from a greenlet that
            # someone else may switch back into.
            self._hub.loop.run_callback(waiter.switch, None)

    def _wake_all(self) -> None:
        for slot in ("_read_waiter", "_write_waiter", "_close_waiter"):
            self._wake(slot)

    def _forget(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.unregister(self)
        owner, self._owner = self._owner, None
        if owner is not None:
            # A long-lived greenlet that opens many connections must not collect callbacks.
            owner.unlink(self._owner_died)

    # -- blocking -------------------------------------------------------------------------------

    def _deadline(self) -> float | None:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _block(self, api: str, slot: str, deadline: float | None) -> None:
        hub = self._hub
        if getcurrent() is hub:
            raise hub_error(f"GreenConnection.{api}")
        waiter = Waiter(hub)
        setattr(self, slot, waiter)
        mailbox = self._mailbox
        if mailbox is not None:
            mailbox.acquire()  # keeps the hub alive while input may come from another thread
        timer = None
        if deadline is not None:
            timer = gevent.Timeout(max(0.0, deadline - time.monotonic()))
            timer.start()
        try:
            waiter.get()
        except BlockingSwitchOutError as exc:
            raise reactor_context_error(f"GreenConnection.{api}") from exc
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise WaitTimeoutError(
                f"GreenConnection.{api}() timed out after {self._timeout} s (settimeout)"
            ) from None
        except GreenletExit:
            self.abort()  # a killed owner takes its connection with it
            raise
        finally:
            if getattr(self, slot) is waiter:
                setattr(self, slot, None)
            if mailbox is not None:
                mailbox.release()
            if timer is not None:
                timer.close()

    def _begin(self, api: str, role: str) -> Any:
        current = getcurrent()
        other = getattr(self, role)
        if other is not None and other is not current:
            what = "reading from" if role == "_reader" else "writing to"
            raise ConcurrentObjectUseError(
                f"GreenConnection.{api}(): another greenlet ({other!r}) is already {what} this "
                "connection; only one greenlet at a time may read, and one may write"
            )
        setattr(self, role, current)
        return other

    def _check_open(self, api: str) -> None:
        if self._closed:
            raise OSError(
                errno.EBADF,
                f"GreenConnection.{api}(): the connection was closed here (close() or abort())",
            )
        if self._stopped is not None:
            raise self._stopped

    def _at_end(self, api: str) -> bool:
        """True at a clean end of input; raises for a closed, stopped or lost connection."""
        self._check_open(api)
        if not self._eof:
            return False
        reason = self.reason
        if reason is not None and not reason.check(ConnectionDone):
            raise _exception_of(reason)
        return True

    # -- reading --------------------------------------------------------------------------------

    def _consumed(self, n: int) -> None:
        # Tells the reactor's half what has been read: in-loop by setting it (same thread),
        # across threads every half limit, and whenever the transport may resume.
        self._buffered -= n
        total = self._consumed_total = self._consumed_total + n
        proto: GreenProtocol = self._proto  # type: ignore[assignment]
        if self._mailbox is None:
            proto.consumed = total
        if self._ended:
            return
        if self._peer_paused:
            if self._buffered <= READ_LIMIT // 2:
                self._peer_paused = False
                self._reported = total
                self._call(proto.resume_reading, total)
        elif self._mailbox is not None and total - self._reported >= READ_LIMIT // 2:
            self._reported = total
            self._remote_reactor().callFromThread(proto.resume_reading, total)

    def _take(self, n: int) -> bytes:
        chunks = self._chunks
        first = chunks[0]
        offset = self._offset
        available = len(first) - offset
        if available <= n:
            chunks.popleft()
            self._offset = 0
            data = first[offset:] if offset else first
        else:
            data = first[offset : offset + n]
            self._offset = offset + n
        self._consumed(len(data))
        return data

    def _unread(self, data: bytes) -> None:
        # Input a call had taken and does not return (read() timed out): back in front, unread.
        # Across threads the reactor's half may meanwhile have heard of a larger consumed total;
        # it hears the right one again at the next report, so the read limit is only loosened
        # by this much for a while.
        chunks = self._chunks
        if self._offset:
            chunks[0] = chunks[0][self._offset :]
            self._offset = 0
        chunks.appendleft(data)
        self._buffered += len(data)
        total = self._consumed_total = self._consumed_total - len(data)
        if self._mailbox is None:
            self._proto.consumed = total  # type: ignore[union-attr]

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """
        Return up to ``bufsize`` bytes, at least one; ``b""`` once the peer has closed cleanly.

        Blocks the current greenlet. Must not be called from the hub. After a lost connection
        (input received before it is returned first) raises the reason's exception (also kept
        as ``reason``); after ``close()`` raises ``OSError(EBADF)``; after reactor shutdown
        ``ReactorStoppedError``; past ``settimeout``'s time ``WaitTimeoutError``.
        """
        if bufsize.__class__ is not int or bufsize <= 0 or flags:
            _check_size("recv", "bufsize", bufsize, allow_negative=False)
            if flags:
                raise ValueError(
                    f"GreenConnection.recv(flags=...) supports no flags, got {flags!r}"
                )
        # The hot path of every request/response: checks inlined, one getcurrent().
        current = getcurrent()
        other = self._reader
        if other is not None and other is not current:
            self._begin("recv", "_reader")  # raises
        self._reader = current
        try:
            if not self._buffered:
                if bufsize == 0:
                    return b""
                proto = self._proto
                if (
                    self._direct_reads < _DIRECT_RUN
                    and proto is not None
                    and proto.direct
                    and not (self._eof or self._closed or self._stopped)
                ):
                    # In-loop on TCP/UNIX: try the socket first, as a gevent socket does; a
                    # reply is often there already, and waiting for the reactor to deliver it
                    # costs a pass of the loop and two switches.
                    data = proto.read_now(bufsize)
                    if data is not None:
                        total = self._consumed_total = self._consumed_total + len(data)
                        proto.consumed = total
                        self._direct_reads += 1
                        return data
                # After a run of direct reads, wait for the reactor once: the loop and the
                # other greenlets get their turn even while the peer never stops sending.
                self._direct_reads = 0
                deadline = None if self._timeout is None else self._deadline()
                while not self._buffered:
                    if (self._eof or self._closed or self._stopped is not None) and self._at_end(
                        "recv"
                    ):
                        return b""
                    self._block("recv", "_read_waiter", deadline)
            elif bufsize == 0:
                return b""
            return self._take(bufsize)
        finally:
            self._reader = other

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """
        Receive into a writable buffer (as ``recv``); return the number of bytes stored.

        Blocks the current greenlet. Must not be called from the hub.
        """
        view = memoryview(buffer).cast("B")
        _check_size("recv_into", "nbytes", nbytes, allow_negative=False)
        if nbytes > len(view):
            raise ValueError(
                f"GreenConnection.recv_into(nbytes=...) expects at most the buffer's size "
                f"{len(view)}, got {nbytes}"
            )
        data = self.recv(nbytes or len(view), flags)
        view[: len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        """
        Read ``n`` bytes (fewer only at the end of input), or with ``n < 0`` all until the end.

        Blocks the current greenlet. Must not be called from the hub. Input received before a
        lost connection is returned first; the next call raises. When ``settimeout``'s time
        expires first, ``WaitTimeoutError`` is raised and the input received so far stays
        unread, for the next call.
        """
        _check_size("read", "n", n, allow_negative=True)
        other = self._begin("read", "_reader")
        try:
            deadline = self._deadline()
            pieces: list[bytes] = []
            wanted = n if n >= 0 else None
            while wanted is None or wanted > 0:
                if self._buffered:
                    # Taken as it comes, so that flow control sees it read.
                    piece = self._take(wanted if wanted is not None else self._buffered)
                    pieces.append(piece)
                    if wanted is not None:
                        wanted -= len(piece)
                    continue
                try:
                    if self._at_end("read"):
                        break
                except Exception:
                    if pieces:
                        break
                    raise
                try:
                    self._block("read", "_read_waiter", deadline)
                except BaseException:
                    if pieces:
                        self._unread(b"".join(pieces))  # a timeout loses no input
                    raise
            return b"".join(pieces)
        finally:
            self._reader = other

    def _line(self, limit: int) -> bytes | None:
        chunks = self._chunks
        if not chunks:
            return None
        if len(chunks) > 1:
            joined = b"".join([chunks[0][self._offset :], *list(chunks)[1:]])
            chunks.clear()
            chunks.append(joined)
            self._offset = 0
        first = chunks[0]
        offset = self._offset
        end = first.find(b"\n", offset, None if limit < 0 else offset + limit)
        if end >= 0:
            return self._take(end - offset + 1)
        if 0 <= limit <= len(first) - offset:
            return self._take(limit)
        return None

    def readline(self, limit: int = -1) -> bytes:
        """
        Read one line, ending with ``b"\\n"``, or ``limit`` bytes, or what is left at the end.

        Blocks the current greenlet. Must not be called from the hub. ``b""`` at the end.
        """
        _check_size("readline", "limit", limit, allow_negative=True)
        other = self._begin("readline", "_reader")
        try:
            if limit == 0:
                return b""
            deadline = self._deadline()
            while True:
                line = self._line(limit)
                if line is not None:
                    return line
                if self._eof and self._buffered:
                    return self._take(self._buffered)  # the last line, without b"\n"
                if self._at_end("readline"):
                    return b""
                self._block("readline", "_read_waiter", deadline)
        finally:
            self._reader = other

    def __iter__(self) -> Iterator[bytes]:
        """Lines, as ``readline()`` returns them, until the end. Blocks the current greenlet."""
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    # -- writing --------------------------------------------------------------------------------

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """
        Send all of ``data``; return once the transport has taken it.

        Blocks the current greenlet while the transport's write buffer is over its limit (the
        peer reads slowly). Must not be called from the hub. Raises ``OSError(EBADF)`` after
        ``close()``, ``BrokenPipeError`` after ``shutdown(SHUT_WR)`` or the peer's clean close,
        the reason's exception after a lost connection. Past ``settimeout``'s time raises
        ``WaitTimeoutError``; ``data`` had been handed to the transport before the wait, and is
        sent unless the connection is aborted.
        """
        if data.__class__ is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(
                    "GreenConnection.sendall(data) expects bytes, bytearray or memoryview, got "
                    f"{type(data).__name__}: {data!r:.80}"
                )
            data = bytes(data)
        current = getcurrent()
        other = self._writer
        if other is not None and other is not current:
            self._begin("sendall", "_writer")  # raises
        self._writer = current
        try:
            if self._closed or self._ended or self._write_shut or self._stopped is not None:
                self._check_writable("sendall")
            size = len(data)
            if not size:
                return
            proto: GreenProtocol = self._proto  # type: ignore[assignment]
            self._sent += size
            target = self._sent
            if self._mailbox is None:
                proto.write(data)
                if not proto.writing_paused:
                    self._acked = target
                    return
                proto.want_ack()
            else:
                want = self._sent - self._ack_asked >= WRITE_LIMIT // 2
                if want:
                    self._ack_asked = self._sent
                self._remote_reactor().callFromThread(proto.write, data, want)
                target -= WRITE_LIMIT
            deadline = self._deadline()
            while self._acked < target:
                self._check_writable("sendall")
                self._block("sendall", "_write_waiter", deadline)
        finally:
            self._writer = other

    def send(self, data: bytes | bytearray | memoryview) -> int:
        """As ``sendall``; returns ``len(data)``. Blocks the current greenlet."""
        self.sendall(data)
        return memoryview(data).nbytes

    def _check_writable(self, api: str) -> None:
        self._check_open(api)
        if self._write_shut:
            raise BrokenPipeError(
                errno.EPIPE, f"GreenConnection.{api}(): the connection was shut down for writing"
            )
        if self._ended:
            reason = self.reason
            if reason is not None and not reason.check(ConnectionDone):
                raise _exception_of(reason)
            raise BrokenPipeError(
                errno.EPIPE, f"GreenConnection.{api}(): the connection was closed by the peer"
            )

    def shutdown(self, how: int) -> None:
        """
        ``socket.SHUT_WR``: half-close (flush, then end our direction; the peer reads EOF and may
        go on sending). ``socket.SHUT_RDWR``: close both directions without waiting.

        Never blocks.
        """
        if how not in (socket.SHUT_WR, socket.SHUT_RDWR):
            raise ValueError(
                "GreenConnection.shutdown(how) expects socket.SHUT_WR or socket.SHUT_RDWR "
                f"(a Twisted transport cannot stop reading alone), got {how!r}"
            )
        self._check_open("shutdown")
        if self._ended:
            return
        proto: GreenProtocol = self._proto  # type: ignore[assignment]
        if how == socket.SHUT_WR:
            transport = proto.transport
            # TLS wrappers forward loseWriteConnection to the TCP transport below them, which
            # would cut the TLS stream: refuse it there.
            if ISSLTransport.providedBy(transport) or not callable(
                getattr(transport, "loseWriteConnection", None)
            ):
                raise OSError(
                    errno.EOPNOTSUPP,
                    f"GreenConnection.shutdown(SHUT_WR): {type(transport).__name__} "
                    "cannot half-close (TLS cannot)",
                )
            self._write_shut = True
            self._call(proto.half_close)
        else:
            self._write_shut = True
            self._call(proto.close)

    # -- ending ---------------------------------------------------------------------------------

    def close(self) -> None:
        """
        Flush what was sent, close, and wait until the connection has ended.

        Blocks the current greenlet (at most ``settimeout``'s time, then the connection is
        aborted). Called from the hub, it closes without waiting. A second call does nothing.
        Never raises for a connection that ended otherwise.
        """
        if self._closed:
            return
        self._closed = True
        self._wake("_read_waiter")
        self._wake("_write_waiter")
        if self._ended:
            return
        self._call(self._proto.close)  # type: ignore[union-attr]
        if getcurrent() is self._hub or self._stopped is not None:
            return
        deadline = self._deadline()
        try:
            while not self._ended and self._stopped is None:
                self._block("close", "_close_waiter", deadline)
        except WaitTimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once, discarding unsent data. Never blocks. Callable from the hub."""
        self._closed = True
        if not self._ended and self._proto is not None:
            self._call(self._proto.abort)
        self._wake_all()

    def settimeout(self, seconds: float | None) -> None:
        """Limit each later blocking call to ``seconds`` (``None``: no limit). Never blocks."""
        check_timeout("GreenConnection.settimeout", seconds, "seconds")
        self._timeout = seconds

    def gettimeout(self) -> float | None:
        """The limit set by ``settimeout``. Never blocks."""
        return self._timeout

    def makefile(
        self,
        mode: str = "r",
        buffering: int | None = None,
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> Any:
        """
        A file object over this connection, as ``socket.makefile`` returns.

        Never blocks; reading and writing it block the current greenlet. Closing the file leaves
        the connection open.
        """
        return make_file(self, mode, buffering, encoding, errors, newline)

    # -- the transport --------------------------------------------------------------------------

    @property
    def transport(self) -> Any:
        """The Twisted transport (only touch it in the reactor's thread). Never blocks."""
        return None if self._proto is None else self._proto.transport

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``abort()`` was called, or the connection ended."""
        return self._closed or self._ended

    def getPeer(self) -> Any:
        """The peer's address (an ``IAddress``). Never blocks."""
        return self._peer

    def getHost(self) -> Any:
        """This side's address (an ``IAddress``). Never blocks."""
        return self._host

    def __enter__(self) -> GreenConnection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "ended" if self._ended else "open"
        return f"<GreenConnection {state} peer={self._peer} host={self._host}>"


def _check_size(api: str, name: str, value: Any, *, allow_negative: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"GreenConnection.{api}({name}=...) expects an int, got {type(value).__name__}: "
            f"{value!r:.80}"
        )
    if value < 0 and not allow_negative:
        raise ValueError(f"GreenConnection.{api}({name}=...) expects a size >= 0, got {value}")


def _exception_of(reason: Failure) -> BaseException:
    # A Failure always holds its exception; mypy infers "BaseException | None" for value from
    # the first assignment in Twisted's unannotated Failure.__init__.
    return cast(BaseException, reason.value)
