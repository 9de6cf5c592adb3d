"""
The network server of the suite, one process per subject: ``net_server.py SUBJECT``.

Listens on 127.0.0.1 and prints one JSON line with its ports, then serves until SIGTERM:

- ``echo``: echoes every byte (stream, request/response, connections/s, idle memory).
- ``block``: echoes too, but a chunk starting with ``B`` first blocks the connection's handler for
  10 ms with ``gevent.sleep`` (the mixed blocking case). Under Twisted's own reactors that call
  blocks the whole process, which is the point of comparison.
- ``web``: ``twisted.web`` serving ``hello world\\n`` from a leaf resource, keep-alive or not as the
  client asks (pure gevent: a minimal HTTP/1.1 server producing the same headers).

``rawepoll`` is a hand-written level-triggered ``select.epoll`` loop with no Twisted and no gevent
(echo and block only: it speaks no HTTP): what Python itself can do, the limit for the others.

Echo connections set TCP_NODELAY so that no subject is measured against Nagle's algorithm (web
connections keep the default of every subject: each reply goes out in one send).
"""

from __future__ import annotations

import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from subjects import install, pin, raise_fd_limit, use_source_path

BODY = b"hello world\n"
BLOCK_SECONDS = 0.01


def announce(**ports: int) -> None:
    # The file the reactor came from: the suite checks that it belongs to the tree measured.
    reactor = sys.modules.get("twisted.internet.reactor")
    module = sys.modules.get(type(reactor).__module__) if reactor is not None else None
    source = getattr(module, "__file__", None)
    sys.stdout.write(json.dumps({"pid": os.getpid(), "source": source, "ports": ports}) + "\n")
    sys.stdout.flush()


def twisted_server(subject: str) -> None:
    reactor = install(subject)

    import gevent
    from twisted.internet.protocol import Factory, Protocol
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Echo(Protocol):
        def connectionMade(self) -> None:
            self.transport.setTcpNoDelay(True)

        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data)

    class BlockingEcho(Echo):
        def dataReceived(self, data: bytes) -> None:
            if data[:1] == b"B":
                gevent.sleep(BLOCK_SECONDS)
            self.transport.write(data)

    class Hello(Resource):
        isLeaf = True

        def render_GET(self, request):
            request.setHeader(b"content-type", b"text/plain")
            return BODY

    class QuietSite(Site):
        # The access log is not what is measured; every subject skips it alike.
        def log(self, request) -> None:
            pass

    echo = reactor.listenTCP(0, Factory.forProtocol(Echo), backlog=1024, interface="127.0.0.1")
    block = reactor.listenTCP(
        0, Factory.forProtocol(BlockingEcho), backlog=1024, interface="127.0.0.1"
    )
    web = reactor.listenTCP(0, QuietSite(Hello()), backlog=1024, interface="127.0.0.1")
    reactor.callWhenRunning(
        announce,
        echo=echo.getHost().port,
        block=block.getHost().port,
        web=web.getHost().port,
    )
    reactor.run()


def gevent_server() -> None:
    import signal

    import gevent
    from gevent.server import StreamServer

    def nodelay(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def echo(sock: socket.socket, _addr: object) -> None:
        nodelay(sock)
        recv, sendall = sock.recv, sock.sendall
        while True:
            data = recv(65536)
            if not data:
                return
            sendall(data)

    def block(sock: socket.socket, _addr: object) -> None:
        nodelay(sock)
        while True:
            data = sock.recv(65536)
            if not data:
                return
            if data[:1] == b"B":
                gevent.sleep(BLOCK_SECONDS)
            sock.sendall(data)

    def web(sock: socket.socket, _addr: object) -> None:
        from email.utils import formatdate

        buffer = b""
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                data = sock.recv(65536)
                if not data:
                    return
                buffer += data
                continue
            head, buffer = buffer[:end], buffer[end + 4 :]
            close = b"connection: close" in head.lower() or head.startswith(b"GET / HTTP/1.0")
            response = (
                b"HTTP/1.1 200 OK\r\n"
                b"Date: " + formatdate(usegmt=True).encode() + b"\r\n"
                b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
                b"Content-Type: text/plain\r\n"
                b"Server: TwistedWeb/26.10.0\r\n"
                + (b"Connection: close\r\n" if close else b"")
                + b"\r\n"
                + BODY
            )
            sock.sendall(response)
            if close:
                return

    servers = [
        StreamServer(("127.0.0.1", 0), handler, backlog=1024) for handler in (echo, block, web)
    ]
    for server in servers:
        server.start()
    announce(echo=servers[0].server_port, block=servers[1].server_port, web=servers[2].server_port)
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    stop.wait()
    for server in servers:
        server.stop(timeout=1)


def rawepoll_server() -> None:
    import select
    import time

    epoll = select.epoll()
    poll, modify = epoll.poll, epoll.modify
    EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
    listeners: dict[int, tuple[socket.socket, bool]] = {}
    ports = {}
    for name in ("echo", "block"):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        listener.setblocking(False)
        listeners[listener.fileno()] = (listener, name == "block")
        epoll.register(listener.fileno(), EPOLLIN)
        ports[name] = listener.getsockname()[1]
    conns: dict[int, socket.socket] = {}
    blocking: set[int] = set()
    # Output the socket did not take: the connection stops reading until it is written.
    pending: dict[int, bytes] = {}

    def drop(fd: int) -> None:
        epoll.unregister(fd)
        pending.pop(fd, None)
        blocking.discard(fd)
        conns.pop(fd).close()

    announce(**ports)
    # SIGTERM's default action ends the process: nothing here needs a clean exit.
    while True:
        for fd, mask in poll():
            sock = conns.get(fd)
            if sock is None:
                listener, blocks = listeners[fd]
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[conn.fileno()] = conn
                    if blocks:
                        blocking.add(conn.fileno())
                    epoll.register(conn.fileno(), EPOLLIN)
                continue
            try:
                if mask & EPOLLOUT:
                    data = pending.pop(fd)
                else:
                    data = sock.recv(262144)
                    if not data:
                        drop(fd)
                        continue
                    if fd in blocking and data[:1] == b"B":
                        time.sleep(BLOCK_SECONDS)
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    sent = 0
            except OSError:
                drop(fd)
                continue
            if sent < len(data):
                pending[fd] = data[sent:]
                if not mask & EPOLLOUT:
                    modify(fd, EPOLLOUT)
            elif mask & EPOLLOUT:
                modify(fd, EPOLLIN)


def main() -> None:
    subject = sys.argv[1]
    use_source_path()
    raise_fd_limit()
    pin("BENCH_SERVER_CPU")
    if subject == "rawepoll":
        rawepoll_server()
    elif subject == "puregevent":
        import gevent.event  # noqa: F401

        gevent_server()
    else:
        twisted_server(subject)


if __name__ == "__main__":
    main()
