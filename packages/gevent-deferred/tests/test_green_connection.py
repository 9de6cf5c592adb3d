"""GreenConnection through connect(), against Twisted servers, in both situations."""

from __future__ import annotations

import errno
import socket
import sys
import threading
from pathlib import Path

import gevent
import pytest
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

sys.path.insert(0, str(Path(__file__).parent))
import green_env
from green_env import Firehose, NeverConnects, make_certificate, wait_until

from gevent_deferred import (
    GreenConnection,
    WaitTimeoutError,
    connect,
    listen,
)
from gevent_deferred._green_protocol import READ_LIMIT

pytestmark = pytest.mark.timeout(30)
env = green_env.env  # fixtures
watchdog = green_env.watchdog


class Echo(Protocol):
    def connectionMade(self):
        self.factory.protocols.append(self)
        self.lost = None

    def dataReceived(self, data):
        self.transport.write(data)

    def connectionLost(self, reason):
        self.lost = reason


class Greeter(Protocol):
    """Sends its greeting, then closes (cleanly) or aborts."""

    def connectionMade(self):
        self.transport.write(self.factory.greeting)
        if self.factory.abort:
            # Once the greeting is out: an abort drops unsent data.
            self.factory.reactor_.callLater(0.2, self.transport.abortConnection)
        else:
            self.transport.loseConnection()


class HalfCloseCounter(Protocol):
    """Counts input until the peer half-closes, then answers with the count and closes."""

    def connectionMade(self):
        self.received = 0
        self.factory.protocols.append(self)

    def dataReceived(self, data):
        self.received += len(data)

    def readConnectionLost(self):
        self.transport.write(b"%d\n" % self.received)
        self.transport.loseConnection()

    def writeConnectionLost(self):
        pass


# zope's declaration after the class: Protocol subclasses stay plain.
from twisted.internet.interfaces import IHalfCloseableProtocol  # noqa: E402

implementer(IHalfCloseableProtocol)(HalfCloseCounter)


def addr(port):
    return f"tcp:127.0.0.1:{port}"


# -- reading and writing -------------------------------------------------------------------------


def test_round_trip_every_read_call(env):
    _, port = env.listen_protocol(Echo)
    conn = connect(addr(port), timeout=5)
    assert isinstance(conn, GreenConnection)
    conn.sendall(b"one\ntwo\nthree\n")
    assert conn.readline() == b"one\n"
    assert conn.readline(2) == b"tw"
    assert conn.readline() == b"o\n"
    assert conn.read(3) == b"thr"
    assert conn.recv(100) == b"ee\n"
    conn.sendall(bytearray(b"abcdef"))
    buf = bytearray(10)
    got = 0
    while got < 6:
        got += conn.recv_into(memoryview(buf)[got:])
    assert bytes(buf[:6]) == b"abcdef"
    conn.sendall(memoryview(b"x\ny\n"))
    assert conn.send(b"z\n") == 2
    lines = []
    for line in conn:
        lines.append(line)
        if len(lines) == 3:
            break
    assert lines == [b"x\n", b"y\n", b"z\n"]
    assert conn.recv(0) == b""
    conn.close()
    assert conn.closed
    assert conn.reason.check(ConnectionDone)


def test_peer_host_transport_and_context_manager(env):
    factory, port = env.listen_protocol(Echo)
    with connect(addr(port)) as conn:
        assert conn.getPeer().port == port
        assert conn.getHost().host == "127.0.0.1"
        assert conn.transport is not None and conn.transport.getPeer().port == port
        assert "open" in repr(conn)
    assert conn.closed
    wait_until(lambda: factory.protocols and factory.protocols[0].lost is not None)


def test_clean_close_gives_empty_reads_after_the_data(env):
    _, port = env.listen_protocol(Greeter, greeting=b"hello\nlast", abort=False)
    conn = connect(addr(port))
    assert conn.readline() == b"hello\n"
    assert conn.readline() == b"last"  # the rest, without a newline
    assert conn.recv(10) == b""
    assert conn.read() == b""
    conn.close()
    assert conn.reason.check(ConnectionDone)


def test_lost_connection_raises_with_its_reason_after_the_data(env):
    _, port = env.listen_protocol(Greeter, greeting=b"partial", abort=True, reactor_=env.reactor)
    conn = connect(addr(port))
    wait_until(lambda: conn.reason is not None)
    assert conn.read(7) == b"partial"
    with pytest.raises(ConnectionLost):
        conn.recv(10)
    assert conn.reason.check(ConnectionLost)
    with pytest.raises(ConnectionLost):
        conn.sendall(b"x")
    conn.close()  # never raises for a connection that ended


def test_read_all_until_the_end(env):
    _, port = env.listen_protocol(Greeter, greeting=b"x" * 300_000, abort=False)
    conn = connect(addr(port))
    assert conn.read() == b"x" * 300_000
    conn.close()


def test_half_close(env):
    _, port = env.listen_protocol(HalfCloseCounter)
    conn = connect(addr(port))
    conn.sendall(b"y" * 1000)
    conn.shutdown(socket.SHUT_WR)
    with pytest.raises(BrokenPipeError):
        conn.sendall(b"more")
    assert conn.readline() == b"1000\n"  # the peer saw our EOF and could still answer
    assert conn.recv(10) == b""
    conn.close()


def test_abort_drops_the_connection(env):
    factory, port = env.listen_protocol(Echo)
    conn = connect(addr(port))
    conn.sendall(b"ping")
    assert conn.read(4) == b"ping"
    conn.abort()
    wait_until(lambda: factory.protocols[0].lost is not None)
    assert factory.protocols[0].lost.check(ConnectionLost)
    with pytest.raises(OSError) as info:
        conn.recv(1)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError) as info:
        conn.sendall(b"x")
    assert info.value.errno == errno.EBADF and "closed" in str(info.value)


def test_close_from_another_greenlet_wakes_a_blocked_reader(env):
    _, port = env.listen_protocol(Echo)
    conn = connect(addr(port))
    reader = gevent.spawn(conn.recv, 10)
    gevent.sleep(0.05)
    conn.close()
    with pytest.raises(OSError) as info:
        reader.get(timeout=5)
    assert info.value.errno == errno.EBADF


def test_makefile(env):
    _, port = env.listen_protocol(Echo)
    conn = connect(addr(port))
    f = conn.makefile("rwb")
    f.write(b"line one\nline two\n")
    f.flush()
    assert f.readline() == b"line one\n"
    assert f.readline() == b"line two\n"
    text = conn.makefile("w", encoding="utf-8")
    text.write("héllo\n")
    text.flush()
    reader = conn.makefile("r", encoding="utf-8")
    assert reader.readline() == "héllo\n"
    raw = conn.makefile("rwb", buffering=0)
    assert raw.write(b"raw\n") == 4
    assert raw.read(4) == b"raw\n"
    for f_ in (f, text, reader, raw):
        f_.close()
    assert not conn.closed  # files leave the connection open, as with sockets
    conn.close()


# -- timeouts and failures -------------------------------------------------------------------


def test_settimeout_limits_each_blocking_call(env):
    _, port = env.listen_protocol(Echo)
    conn = connect(addr(port))
    conn.settimeout(0.1)
    assert conn.gettimeout() == 0.1
    with pytest.raises(WaitTimeoutError) as info:
        conn.recv(10)
    assert isinstance(info.value, TimeoutError)
    assert "settimeout" in str(info.value)
    conn.sendall(b"still usable\n")
    assert conn.readline() == b"still usable\n"
    conn.settimeout(None)
    conn.close()


def test_connect_timeout_cancels_the_attempt(env):
    endpoint = NeverConnects()
    with pytest.raises(WaitTimeoutError):
        connect(endpoint, timeout=0.1, reactor=env.reactor)
    wait_until(lambda: endpoint.cancelled)


def test_connect_refused_raises_twisteds_error(env):
    # Bound and not listening, and kept so: the kernel refuses connections to it, and no other
    # process can take the port meanwhile (a port freed before the connect could be).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            connect(addr(port), timeout=5)


# -- greenlets and the reactor ----------------------------------------------------------------


def test_killing_the_owner_aborts_its_connection(env):
    factory, port = env.listen_protocol(Echo)

    def blocked_in_recv():
        connect(addr(port)).recv(10)

    def blocked_elsewhere():
        conn = connect(addr(port))
        conn.sendall(b"hi")
        gevent.sleep(30)

    for count, body in enumerate((blocked_in_recv, blocked_elsewhere), 1):
        g = gevent.spawn(body)
        wait_until(lambda n=count: len(factory.protocols) == n)
        gevent.sleep(0.05)  # into its blocking call
        g.kill(timeout=5)
    wait_until(lambda: len(factory.protocols) == 2)
    wait_until(lambda: all(p.lost is not None for p in factory.protocols))
    assert all(p.lost.check(ConnectionLost) for p in factory.protocols)


def test_second_reader_is_refused(env):
    from gevent.exceptions import ConcurrentObjectUseError

    _, port = env.listen_protocol(Echo)
    conn = connect(addr(port))
    first = gevent.spawn(conn.recv, 10)
    gevent.sleep(0.05)
    with pytest.raises(ConcurrentObjectUseError, match="already reading"):
        conn.readline()
    conn.sendall(b"ok")
    assert first.get(timeout=5) == b"ok"
    conn.close()


# -- back-pressure ------------------------------------------------------------------------------


def bare_factory(protocol, **attrs):
    factory = Factory.forProtocol(protocol)
    factory.protocols = []
    for key, value in attrs.items():
        setattr(factory, key, value)
    return factory


TRANSPORTS = ["tcp", "unix", "tls"]


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_reader_that_stops_pushes_back_on_its_peer(env, kind, tmp_path):
    total = 64 * 1024 * 1024
    factory = bare_factory(Firehose, total=total)
    conn = connect(env.listen_on(kind, factory, tmp_path), timeout=10)
    assert len(conn.read(1000)) == 1000
    gevent.sleep(2)  # the greenlet does not read for a while
    buffered = conn._buffered
    produced = factory.protocols[0].produced
    assert buffered <= 2 * READ_LIMIT, buffered  # memory stays bounded here...
    assert produced < total // 2, produced  # ...because the peer was made to wait
    got = 1000
    while True:
        data = conn.recv(1 << 20)
        if not data:
            break
        got += len(data)
    assert got == total


class Sink(Protocol):
    """Reads nothing until ``factory.reading`` is set; then counts what it gets."""

    def connectionMade(self):
        self.received = 0
        self.factory.protocols.append(self)
        self.transport.pauseProducing()

    def dataReceived(self, data):
        self.received += len(data)


class LateSink(Sink):
    """Reads the first input (over TLS: once the handshake is done), then nothing until resumed."""

    def connectionMade(self):
        self.received = 0
        self.factory.protocols.append(self)

    def dataReceived(self, data):
        if not self.received:
            self.transport.pauseProducing()
        self.received += len(data)


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_sendall_waits_while_the_peer_does_not_read(env, kind, tmp_path):
    factory = bare_factory(LateSink)
    conn = connect(env.listen_on(kind, factory, tmp_path), timeout=10)
    chunk = b"s" * 65536
    sent = []

    def sender():
        for _ in range(1024):  # 64 MiB, far beyond any buffer
            conn.sendall(chunk)
            sent.append(len(chunk))

    g = gevent.spawn(sender)
    gevent.sleep(2)
    assert not g.dead
    queued = sum(sent)
    assert queued < 32 * 1024 * 1024, queued  # blocked long before everything was queued
    server = factory.protocols[0]
    env.call(server.transport.resumeProducing)
    g.get(timeout=20)
    wait_until(lambda: server.received == 1024 * 65536, timeout=20)
    conn.close()


def test_reactor_shutdown_fails_blocked_calls(env):
    _, port = env.listen_protocol(Sink)
    conn = connect(addr(port))
    reader = gevent.spawn(conn.recv, 10)

    def writer():
        while True:
            conn.sendall(b"w" * 65536)

    w = gevent.spawn(writer)
    gevent.sleep(0.3)
    if env.mode == "in-loop":
        env.reactor.stop()
    else:
        env.reactor.callFromThread(env.reactor.stop)
    from gevent_deferred import ReactorStoppedError

    with pytest.raises(ReactorStoppedError):
        reader.get(timeout=5)
    with pytest.raises(ReactorStoppedError):
        w.get(timeout=5)
    with pytest.raises(ReactorStoppedError):
        conn.recv(1)
    conn.close()  # returns: the reactor closes it


# -- other endpoints -----------------------------------------------------------------------------


def test_tls_both_ways_with_a_verified_certificate(env, tmp_path):
    key, cert, ca = make_certificate(tmp_path)

    def upper(conn):
        for line in conn:
            conn.sendall(line.upper())

    port = listen(f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", upper)
    number = port.getHost().port
    conn = connect(f"tls:localhost:{number}:trustRoots={ca}", timeout=10)
    conn.sendall(b"secret\n")
    assert conn.readline() == b"SECRET\n"
    with pytest.raises(OSError) as info:
        conn.shutdown(socket.SHUT_WR)
    assert info.value.errno == errno.EOPNOTSUPP
    conn.close()
    env.call(port.stopListening)


def test_unix_endpoints(env, tmp_path):
    path = tmp_path / "green.sock"

    def hello(conn):
        conn.sendall(b"hello " + conn.readline())

    port = listen(f"unix:{path}", hello)
    conn = connect(f"unix:{path}")
    conn.sendall(b"unix\n")
    assert conn.read() == b"hello unix\n"  # the handler returned: its connection was closed
    conn.close()
    env.call(port.stopListening)


def test_a_greenlet_that_opens_many_connections_keeps_no_links(env):
    _, port = env.listen_protocol(Echo)

    def many():
        for _ in range(20):
            with connect(addr(port)) as conn:
                conn.sendall(b"x")
                assert conn.read(1) == b"x"
        return gevent.getcurrent().has_links()

    g = gevent.spawn(many)
    wait_until(lambda: g.dead, timeout=10)  # not g.get(): that would link to g itself
    assert g.successful(), g.exception
    assert g.value is False


class OnDemand(Protocol):
    """Sends one 64 KiB block for each line it receives."""

    def dataReceived(self, data):
        for _ in range(data.count(b"\n")):
            self.transport.write(b"d" * 65536)


def test_a_reader_that_keeps_up_never_pauses_the_transport(env):
    _, port = env.listen_protocol(OnDemand)
    conn = connect(addr(port))
    for _ in range(32):  # 2 MiB in all, never more than one block unread
        conn.sendall(b"next\n")
        assert len(conn.read(65536)) == 65536
    assert conn._proto.read_pauses == 0
    conn.close()


def pattern_block(offset):
    return bytes((offset + i) % 251 for i in range(4096)) * 16


@implementer(IPullProducer)
class Pattern(Protocol):
    """Writes ``factory.total`` bytes of a counting pattern, then closes."""

    def connectionMade(self):
        self.produced = 0
        self.transport.registerProducer(self, False)

    def resumeProducing(self):
        if self.produced >= self.factory.total:
            self.transport.unregisterProducer()
            self.transport.loseConnection()
            return
        block = pattern_block(self.produced)
        self.transport.write(block)
        self.produced += len(block)

    def stopProducing(self):
        pass


def test_a_fast_stream_arrives_whole_and_in_order(env):
    total = 16 * 1024 * 1024
    _, port = env.listen_protocol(Pattern, total=total)
    conn = connect(addr(port))
    received = bytearray()
    sizes = [65536, 1000, 70000, 1, 65536 * 2]
    i = 0
    while data := conn.recv(sizes[i % len(sizes)]):
        received += data
        i += 1
    assert len(received) == total
    assert received == b"".join(pattern_block(offset) for offset in range(0, total, 65536))
    conn.close()


@pytest.mark.parametrize("size", [65536, 100])
def test_a_greenlet_reading_a_fast_stream_lets_others_run(env, size):
    # The sender is a real OS thread with a plain socket: it never lets the socket run dry
    # (with small reads it is never empty, so a recv that always found data would never yield).
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def sender():
        peer, _ = listener.accept()
        chunk = b"z" * 65536
        try:
            while not stop.is_set():
                peer.sendall(chunk)
        except OSError:
            pass
        finally:
            peer.close()

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    stream = connect(addr(listener.getsockname()[1]))
    reading = [0]

    def reader():
        while data := stream.recv(size):
            reading[0] += len(data)

    r = gevent.spawn(reader)
    try:
        wait_until(lambda: reading[0] > 4 * 1024 * 1024)
        _, echo_port = env.listen_protocol(Echo)
        other = connect(addr(echo_port), timeout=5)
        other.settimeout(5)  # generous: "served at all", not "served fast"
        for _ in range(10):
            other.sendall(b"ping\n")
            assert other.readline() == b"ping\n"
        other.close()
    finally:
        r.kill(timeout=5)
        stop.set()
        thread.join(5)
        listener.close()
