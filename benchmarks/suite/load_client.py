"""
The network load client: raw non-blocking sockets and ``select.epoll``, in the suite's own process.

Every reply is checked: an echo byte for byte against what was sent (the stream against its
position in a known pattern), an HTTP reply by status, Content-Length and body. A mismatch, a
closed connection, L{STALL} seconds without progress or a dead server raises L{BenchError}.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Callable

from .processes import ServerProcess, rss_bytes
from .records import BenchError, Measurement
from .window import Window

STALL = 10.0  # seconds without progress before a subject is declared stalled
BODY = b"hello world\n"
MSG = 64
CHUNK = 1 << 18  # the stream's writes and reads
IN_FLIGHT = 1 << 21  # the stream's bytes sent and not yet echoed, at most
# Any window of it starting below 256 is a slice: the stream checks data at offset n against
# PATTERN[n % 256:], one memcmp per read.
PATTERN = bytes(range(256)) * (CHUNK // 256 + 1)

# check(received, eof) -> None while a reply is incomplete, True when it is whole and right.
ReplyCheck = Callable[[bytes, bool], "bool | None"]


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def hard_close(sock: socket.socket) -> None:
    # RST instead of FIN: no TIME_WAIT, so thousands of connections a second cannot exhaust the
    # ephemeral ports.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class _Exchange:
    """One connection of request/response: the request in flight and what came back of it."""

    __slots__ = ("expected", "marked", "received", "sent_at", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.expected = b""
        self.received = b""
        self.sent_at = 0.0
        self.marked = False


def request_response(
    server: ServerProcess, port: int, conns: int, warmup: float, seconds: float, mark_every: int = 0
) -> Measurement:
    """One request in flight per connection; every reply compared with its request."""
    socks = [connect(port) for _ in range(conns)]
    ep = select.epoll()
    by_fd: dict[int, _Exchange] = {}
    seq = 0
    window = Window(server, warmup, seconds)
    latencies: list[float] = []
    marked_latencies: list[float] = []
    perf = time.perf_counter

    def send(x: _Exchange) -> None:
        nonlocal seq
        seq += 1
        marked = bool(mark_every) and seq % mark_every == 0
        msg = b"%c%015d" % (66 if marked else 82, seq) + b"x" * (MSG - 16)
        x.expected, x.received, x.marked = msg, b"", marked
        x.sent_at = perf()
        x.sock.send(msg)

    try:
        for sock in socks:
            by_fd[sock.fileno()] = _Exchange(sock)
            ep.register(sock.fileno(), select.EPOLLIN)
        for x in by_fd.values():
            send(x)
        outstanding = conns
        last = perf()
        while outstanding:
            events = ep.poll(0.5)
            now = perf()
            if not events:
                server.check_alive()
                if now - last > STALL:
                    raise BenchError(f"stalled: {outstanding} replies missing for {STALL} s")
                continue
            last = now
            window.tick(now)
            for fd, _ in events:
                x = by_fd[fd]
                data = x.sock.recv(65536)
                if not data:
                    raise BenchError("server closed a connection")
                received = x.received + data
                if len(received) < MSG:
                    x.received = received
                    continue
                if received != x.expected:
                    raise BenchError(f"echo mismatch: sent {x.expected!r}, got {received!r}")
                if window.counting:
                    window.count += 1
                    (marked_latencies if x.marked else latencies).append(now - x.sent_at)
                if window.closed:
                    outstanding -= 1
                    x.received = b""
                else:
                    send(x)
            if window.counting:
                window.tick(perf())
    finally:
        ep.close()
        for sock in socks:
            hard_close(sock)
    result = window.result(window.count)
    if not latencies:
        raise BenchError("no replies in the measuring window")
    result.p50_ms = percentile(latencies, 0.50) * 1e3
    result.p99_ms = percentile(latencies, 0.99) * 1e3
    result.requests = window.count
    if mark_every:
        result.blocked_requests = len(marked_latencies)
    return result


def stream(server: ServerProcess, port: int, warmup: float, seconds: float) -> Measurement:
    """One connection; the client writes 256 KiB chunks and checks every echoed byte."""
    sock = connect(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    ep = select.epoll()
    fd = sock.fileno()
    ep.register(fd, select.EPOLLIN | select.EPOLLOUT)
    window = Window(server, warmup, seconds)
    sent = received = counted_from = measured = 0
    out = memoryview(PATTERN)
    buffer = bytearray(CHUNK)
    into = memoryview(buffer)
    recv_into, send, startswith = sock.recv_into, sock.send, PATTERN.startswith
    EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
    writing = True
    perf = time.perf_counter
    last = perf()
    try:
        while True:
            events = ep.poll(0.5)
            now = perf()
            if not events:
                server.check_alive()
                if now - last > STALL:
                    raise BenchError("stream stalled")
                continue
            last = now
            was_open, was_closed = window.open, window.closed
            window.tick(now)
            if window.open and not was_open:
                counted_from = received
            if window.closed and not was_closed:
                measured = received - counted_from
            mask = events[0][1]
            if mask & EPOLLIN:
                n = recv_into(buffer)
                if not n:
                    raise BenchError("server closed the stream")
                # One memcmp against the pattern (comparing memoryviews goes byte by byte).
                if not startswith(into[:n], received & 255):
                    raise BenchError(f"stream mismatch in the {n} bytes from byte {received}")
                received += n
            if mask & EPOLLOUT and not window.closed:
                off = sent & 255
                try:
                    sent += send(out[off : off + CHUNK])
                except BlockingIOError:
                    pass
            if window.closed:
                if writing:
                    writing = False
                    ep.modify(fd, EPOLLIN)
                if received == sent:
                    break
            elif writing != (sent - received < IN_FLIGHT):
                writing = not writing
                ep.modify(fd, EPOLLIN | (EPOLLOUT if writing else 0))
    finally:
        ep.close()
        hard_close(sock)
    # MB/s of echoed data.
    return window.result(measured / 1e6)


class _Churned:
    """One connection of a churn: opened, written once, read until its reply is whole."""

    __slots__ = ("received", "sent", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = b""
        self.sent = False


def churn(
    server: ServerProcess,
    port: int,
    warmup: float,
    seconds: float,
    in_flight: int,
    request: bytes,
    check: ReplyCheck | None,
) -> Measurement:
    """Connect, send C{request}, read the reply (an echo when C{check} is None), close (RST)."""
    ep = select.epoll()
    conns: dict[int, _Churned] = {}
    window = Window(server, warmup, seconds)
    perf = time.perf_counter
    last = perf()

    def open_one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            raise BenchError(f"connect failed: {os.strerror(err)}")
        conns[sock.fileno()] = _Churned(sock)
        ep.register(sock.fileno(), select.EPOLLOUT)

    try:
        for _ in range(in_flight):
            open_one()
        while conns:
            events = ep.poll(0.5)
            now = perf()
            if not events:
                server.check_alive()
                if now - last > STALL:
                    raise BenchError(f"stalled with {len(conns)} connections open")
                continue
            last = now
            window.tick(now)
            for fd, mask in events:
                c = conns[fd]
                if not c.sent:
                    if mask & (select.EPOLLERR | select.EPOLLHUP):
                        raise BenchError("connection refused or reset")
                    c.sock.send(request)
                    c.sent = True
                    ep.modify(fd, select.EPOLLIN)
                    continue
                data = c.sock.recv(65536)
                received = c.received + data
                if check is None:
                    if not data:
                        raise BenchError("server closed before echoing")
                    if len(received) < len(request):
                        c.received = received
                        continue
                    if received != request:
                        raise BenchError(f"echo mismatch: {received!r}")
                elif check(received, not data) is None:
                    c.received = received
                    continue
                ep.unregister(fd)
                del conns[fd]
                hard_close(c.sock)
                if window.counting:
                    window.count += 1
                if not window.closed:
                    open_one()
    finally:
        ep.close()
        for c in conns.values():
            hard_close(c.sock)
    return window.result(window.count)


def connections(server: ServerProcess, port: int, warmup: float, seconds: float) -> Measurement:
    """Connect, send 16 bytes, read them back, close (RST); 16 in flight."""
    return churn(server, port, warmup, seconds, 16, b"0123456789abcdef", None)


def http_reply_complete(received: bytes, eof: bool) -> bool | None:
    """Parse one response (status 200, Content-Length, body); None while incomplete."""
    end = received.find(b"\r\n\r\n")
    if end < 0:
        if eof:
            raise BenchError(f"connection closed inside the headers: {received!r}")
        return None
    head = received[:end]
    if not head.startswith(b"HTTP/1.1 200 "):
        raise BenchError(f"bad status: {head[:80]!r}")
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at < 0:
        raise BenchError(f"no Content-Length: {head!r}")
    length = int(lower[at + 15 : lower.find(b"\r\n", at) if b"\r\n" in lower[at:] else None])
    body = received[end + 4 :]
    if len(body) < length:
        if eof:
            raise BenchError("connection closed inside the body")
        return None
    if body[:length] != BODY or len(body) > length:
        raise BenchError(f"bad body: {body!r}")
    return True


def web_close(server: ServerProcess, port: int, warmup: float, seconds: float) -> Measurement:
    request = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"

    def check(received: bytes, eof: bool) -> bool | None:
        # The server closes after the reply: wait for that EOF, then check the reply.
        if not eof:
            return None
        return http_reply_complete(received, True)

    return churn(server, port, warmup, seconds, 16, request, check)


def web_keepalive(server: ServerProcess, port: int, warmup: float, seconds: float) -> Measurement:
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    conns = 10
    socks = [connect(port) for _ in range(conns)]
    ep = select.epoll()
    by_fd: dict[int, _Exchange] = {}
    window = Window(server, warmup, seconds)
    perf = time.perf_counter
    last = perf()
    try:
        for sock in socks:
            by_fd[sock.fileno()] = _Exchange(sock)
            ep.register(sock.fileno(), select.EPOLLIN)
            sock.send(request)
        outstanding = conns
        while outstanding:
            events = ep.poll(0.5)
            now = perf()
            if not events:
                server.check_alive()
                if now - last > STALL:
                    raise BenchError("keep-alive stalled")
                continue
            last = now
            window.tick(now)
            for fd, _ in events:
                x = by_fd[fd]
                data = x.sock.recv(65536)
                if not data:
                    raise BenchError("server closed a keep-alive connection")
                received = x.received + data
                if http_reply_complete(received, False) is None:
                    x.received = received
                    continue
                x.received = b""
                if window.counting:
                    window.count += 1
                if window.closed:
                    outstanding -= 1
                else:
                    x.sock.send(request)
    finally:
        ep.close()
        for sock in socks:
            hard_close(sock)
    return window.result(window.count)


def idle_memory(server: ServerProcess, port: int, count: int) -> Measurement:
    """Open C{count} connections, each echoing one byte, and measure the server's RSS growth."""
    # Warm-up: the first connections allocate one-off structures (free lists, runner greenlets).
    warm = [connect(port) for _ in range(50)]
    for sock in warm:
        sock.setblocking(True)
        sock.sendall(b"w")
        if sock.recv(1) != b"w":
            raise BenchError("warm-up echo mismatch")
        hard_close(sock)
    time.sleep(0.2)
    before = rss_bytes(server.pid)
    socks: list[socket.socket] = []
    batch = 500
    deadline = time.perf_counter() + 120
    try:
        while len(socks) < count:
            group = [connect(port) for _ in range(min(batch, count - len(socks)))]
            socks.extend(group)
            for sock in group:
                sock.send(b"m")
            for sock in group:
                sock.setblocking(True)
                sock.settimeout(STALL)
                try:
                    got = sock.recv(1)
                except TimeoutError:
                    raise BenchError(f"no echo at connection {len(socks)}") from None
                if got != b"m":
                    raise BenchError(f"idle echo mismatch: {got!r}")
            if time.perf_counter() > deadline:
                raise BenchError("opening connections took over 120 s")
        time.sleep(0.3)
        server.check_alive()
        after = rss_bytes(server.pid)
    finally:
        for sock in socks:
            hard_close(sock)
    return Measurement(value=(after - before) / count, rss_before=before, rss_after=after)
