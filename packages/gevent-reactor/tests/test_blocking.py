"""Protocol input code may block with gevent; only that connection waits.

Servers are Twisted protocols on the reactor under test; clients are plain gevent sockets in
greenlets, so a stalled reactor shows up as a client timeout rather than a hang.
"""

from __future__ import annotations

import socket
import time

import gevent
import gevent.socket
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.protocols.basic import LineReceiver

from gevent_reactor import GeventReactor

SLEEP = 0.5
# Served "meanwhile" means well before the blocked call returns.
MEANWHILE = SLEEP * 0.8


def _client(port: int) -> gevent.socket.socket:
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def _read_lines(sock: gevent.socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\r\n") < count:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[:count]


class SleepyLines(LineReceiver):
    """``sleep`` blocks this connection for SLEEP seconds; other lines are logged and echoed."""

    def lineReceived(self, line: bytes) -> None:
        log = self.factory.log
        if line.startswith(b"sleep"):
            log.append((self.name, "sleep-start", time.monotonic()))
            gevent.sleep(SLEEP)
            log.append((self.name, "sleep-end", time.monotonic()))
            self.sendLine(b"slept")
        else:
            log.append((self.name, line.decode(), time.monotonic()))
            self.sendLine(line)

    def connectionMade(self) -> None:
        self.name = f"conn{len(self.factory.names)}"
        self.factory.names.append(self.name)


def _sleepy_factory() -> Factory:
    factory = Factory.forProtocol(SleepyLines)
    factory.log = []
    factory.names = []
    return factory


def _events(log: list[tuple[str, str, float]], name: str) -> list[str]:
    return [event for who, event, _ in log if who == name]


def _at(log: list[tuple[str, str, float]], name: str, event: str) -> float:
    return next(t for who, what, t in log if who == name and what == event)


def test_line_received_blocks_only_its_connection(reactor: GeventReactor, run_until, spawn) -> None:
    factory = _sleepy_factory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port
    timer_fired: list[float] = []

    def scenario() -> dict[str, object]:
        first = _client(port)
        # Some input in the same segment as "sleep", some sent while it sleeps.
        first.sendall(b"sleep\r\nsame-segment\r\n")
        gevent.sleep(0.1)
        first.sendall(b"during-1\r\n")
        reactor.callLater(0.05, lambda: timer_fired.append(time.monotonic()))
        second = _client(port)
        started = time.monotonic()
        second.sendall(b"other\r\n")
        other_reply = _read_lines(second, 1)
        other_took = time.monotonic() - started
        first.sendall(b"during-2\r\n")
        first_replies = _read_lines(first, 4)
        first.close()
        second.close()
        return {"other": other_reply, "other_took": other_took, "first": first_replies}

    outcome = run_until(reactor, spawn(scenario))
    log = factory.log
    assert outcome["other"] == [b"other"]
    assert outcome["other_took"] < MEANWHILE
    assert outcome["first"] == [b"slept", b"same-segment", b"during-1", b"during-2"]
    assert _events(log, "conn0") == [
        "sleep-start",
        "sleep-end",
        "same-segment",
        "during-1",
        "during-2",
    ]
    sleep_start, sleep_end = _at(log, "conn0", "sleep-start"), _at(log, "conn0", "sleep-end")
    assert sleep_start < _at(log, "conn1", "other") < sleep_end
    assert timer_fired and sleep_start < timer_fired[0] < sleep_end
    assert _at(log, "conn0", "during-1") >= sleep_end


def test_two_connections_block_at_the_same_time(reactor: GeventReactor, run_until, spawn) -> None:
    factory = _sleepy_factory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port

    def one() -> list[bytes]:
        sock = _client(port)
        try:
            sock.sendall(b"sleep\r\nafter\r\n")
            return _read_lines(sock, 2)
        finally:
            sock.close()

    def scenario() -> tuple[list[list[bytes]], float]:
        started = time.monotonic()
        workers = [gevent.spawn(one) for _ in range(5)]
        gevent.joinall(workers, timeout=5, raise_error=True)
        return [w.value for w in workers], time.monotonic() - started

    replies, took = run_until(reactor, spawn(scenario))
    assert replies == [[b"slept", b"after"]] * 5
    # Five sleeps side by side, not one after the other.
    assert took < SLEEP * 3


class _RawThenLines(LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        self.factory.log.append(("line", line))
        if line == b"raw":
            self.setRawMode()

    def rawDataReceived(self, data: bytes) -> None:
        self.factory.log.append(("raw", data))
        gevent.sleep(0.2)
        self.transport.write(b"ok:" + data)


def test_raw_data_received_may_block(reactor: GeventReactor, run_until, spawn) -> None:
    factory = Factory.forProtocol(_RawThenLines)
    factory.log = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port

    def scenario() -> bytes:
        sock = _client(port)
        try:
            sock.sendall(b"raw\r\n")
            gevent.sleep(0.05)
            sock.sendall(b"A")
            gevent.sleep(0.05)  # "B" arrives while rawDataReceived(b"A") sleeps
            sock.sendall(b"B")
            data = b""
            while len(data) < 6:
                data += sock.recv(100)
            return data
        finally:
            sock.close()

    assert run_until(reactor, spawn(scenario)) == b"ok:Aok:B"
    assert factory.log == [("line", b"raw"), ("raw", b"A"), ("raw", b"B")]


class _SlowToStart(Protocol):
    """The first connection's connectionMade blocks; every connection echoes."""

    def connectionMade(self) -> None:
        factory = self.factory
        self.index = len(factory.log_by_conn)
        self.log: list[str] = []
        factory.log_by_conn.append(self.log)
        self.log.append("made-start")
        if self.index == 0:
            gevent.sleep(SLEEP)
        self.log.append("made-end")

    def dataReceived(self, data: bytes) -> None:
        self.log.append("data:" + data.decode())
        self.transport.write(data)


def test_blocking_connection_made_does_not_stall_the_port(
    reactor: GeventReactor, run_until, spawn
) -> None:
    factory = Factory.forProtocol(_SlowToStart)
    factory.log_by_conn = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port

    def scenario() -> dict[str, object]:
        slow = _client(port)
        slow.sendall(b"early")  # arrives before the slow connectionMade returns
        gevent.sleep(0.05)
        started = time.monotonic()
        others = []
        for i in range(3):
            sock = _client(port)
            sock.sendall(f"other{i}".encode())
            others.append(sock.recv(100))
            sock.close()
        others_took = time.monotonic() - started
        slow_reply = slow.recv(100)
        slow.close()
        return {"others": others, "others_took": others_took, "slow": slow_reply}

    outcome = run_until(reactor, spawn(scenario))
    assert outcome["others"] == [b"other0", b"other1", b"other2"]
    assert outcome["others_took"] < MEANWHILE
    assert outcome["slow"] == b"early"
    assert factory.log_by_conn[0] == ["made-start", "made-end", "data:early"]
    assert len(factory.log_by_conn) == 4


class _SleepyDatagrams(DatagramProtocol):
    def __init__(self) -> None:
        self.log: list[tuple[bytes, float]] = []
        self.ended: list[float] = []

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.log.append((data, time.monotonic()))
        if data == b"sleep":
            gevent.sleep(SLEEP)
            self.ended.append(time.monotonic())
        self.transport.write(b"ack:" + data, addr)


def test_datagram_received_may_block(reactor: GeventReactor, run_until, spawn) -> None:
    protocol = _SleepyDatagrams()
    port = reactor.listenUDP(0, protocol, interface="127.0.0.1").getHost().port
    timer_fired: list[float] = []

    def scenario() -> list[bytes]:
        sock = gevent.socket.socket(gevent.socket.AF_INET, gevent.socket.SOCK_DGRAM)
        sock.settimeout(5)
        try:
            sock.sendto(b"sleep", ("127.0.0.1", port))
            gevent.sleep(0.05)
            reactor.callLater(0.05, lambda: timer_fired.append(time.monotonic()))
            for i in range(5):
                sock.sendto(b"d%d" % i, ("127.0.0.1", port))
            return [sock.recvfrom(100)[0] for _ in range(6)]
        finally:
            sock.close()

    acks = run_until(reactor, spawn(scenario))
    assert acks == [b"ack:sleep"] + [b"ack:d%d" % i for i in range(5)]
    assert [data for data, _ in protocol.log] == [b"sleep"] + [b"d%d" % i for i in range(5)]
    sleep_end = protocol.ended[0]
    assert all(t >= sleep_end for data, t in protocol.log[1:])
    assert timer_fired and timer_fired[0] < sleep_end


class _BlockingCallback(Protocol):
    def dataReceived(self, data: bytes) -> None:
        d: Deferred[bytes] = Deferred()

        def slow_upper(value: bytes) -> bytes:
            gevent.sleep(0.2)
            return value.upper()

        d.addCallback(slow_upper)
        d.addCallback(self.transport.write)
        d.callback(data)


def test_deferred_callback_fired_from_data_received_may_block(
    reactor: GeventReactor, run_until, spawn
) -> None:
    port = reactor.listenTCP(0, Factory.forProtocol(_BlockingCallback), interface="127.0.0.1")
    timer_fired: list[bool] = []

    def scenario() -> bytes:
        sock = _client(port.getHost().port)
        try:
            sock.sendall(b"abc")
            reactor.callLater(0.05, timer_fired.append, True)
            return sock.recv(100)
        finally:
            sock.close()

    assert run_until(reactor, spawn(scenario)) == b"ABC"
    assert timer_fired == [True]


class _Proxy(Protocol):
    """Forwards each chunk to a plain gevent server over a gevent socket, inside dataReceived."""

    def dataReceived(self, data: bytes) -> None:
        with gevent.socket.create_connection(("127.0.0.1", self.factory.upstream), 5) as up:
            up.sendall(data)
            reply = up.recv(100)
        self.transport.write(reply)


def test_gevent_socket_inside_data_received(reactor: GeventReactor, run_until, spawn) -> None:
    upstream = gevent.socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen(5)

    def serve_upstream() -> None:
        while True:
            conn, _ = upstream.accept()
            with conn:
                conn.sendall(b"upstream:" + conn.recv(100))

    server = gevent.spawn(serve_upstream)
    factory = Factory.forProtocol(_Proxy)
    factory.upstream = upstream.getsockname()[1]
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port

    def scenario() -> list[bytes]:
        sock = _client(port)
        replies = []
        try:
            for word in (b"one", b"two"):
                sock.sendall(word)
                replies.append(sock.recv(100))
        finally:
            sock.close()
        return replies

    try:
        assert run_until(reactor, spawn(scenario)) == [b"upstream:one", b"upstream:two"]
    finally:
        server.kill()
        upstream.close()


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def test_blocking_twisted_client_protocol(reactor: GeventReactor, run_until) -> None:
    # The client side too: a connectTCP protocol whose dataReceived blocks.
    port = reactor.listenTCP(0, Factory.forProtocol(_Echo), interface="127.0.0.1")
    done: Deferred[list[bytes]] = Deferred()
    received: list[bytes] = []

    class Client(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(b"x")

        def dataReceived(self, data: bytes) -> None:
            gevent.sleep(0.05)
            received.append(data)
            if len(received) < 3:
                self.transport.write(b"x")
            else:
                done.callback(received)

    from twisted.internet.protocol import ClientFactory

    reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(Client))
    assert run_until(reactor, done) == [b"x", b"x", b"x"]


def test_blocking_connection_made_on_a_unix_port(
    reactor: GeventReactor, run_until, spawn, tmp_path
) -> None:
    factory = Factory.forProtocol(_SlowToStart)
    factory.log_by_conn = []
    path = str(tmp_path / "sock")
    reactor.listenUNIX(path, factory)

    def connect() -> gevent.socket.socket:
        sock = gevent.socket.socket(gevent.socket.AF_UNIX)
        sock.settimeout(5)
        sock.connect(path)
        return sock

    def scenario() -> tuple[bytes, float, bytes]:
        slow = connect()
        slow.sendall(b"early")
        gevent.sleep(0.05)
        started = time.monotonic()
        other = connect()
        other.sendall(b"other")
        other_reply = other.recv(100)
        took = time.monotonic() - started
        other.close()
        slow_reply = slow.recv(100)
        slow.close()
        return other_reply, took, slow_reply

    other_reply, took, slow_reply = run_until(reactor, spawn(scenario))
    assert other_reply == b"other"
    assert took < MEANWHILE
    assert slow_reply == b"early"
    assert factory.log_by_conn[0] == ["made-start", "made-end", "data:early"]


class _SleepyPullProducer:
    """A pull producer whose resumeProducing blocks for SLEEP seconds once armed."""

    def __init__(self, transport, log: list[tuple[str, float]]) -> None:
        self.transport = transport
        self.log = log
        self.armed = False

    def resumeProducing(self) -> None:
        if not self.armed:
            return  # registerProducer's own first call
        self.armed = False
        self.log.append(("producer-start", time.monotonic()))
        gevent.sleep(SLEEP)
        self.log.append(("producer-end", time.monotonic()))
        self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        pass


def test_a_blocking_producer_does_not_hold_other_writes_of_its_pass(
    reactor: GeventReactor, run_until, spawn
) -> None:
    # Writes made outside input handling go out together at the end of the loop's pass, in one
    # runner.  Here the first of them resumes a producer that blocks: the other connections'
    # writes must still go out at once, not after it.
    transports: list = []

    class Collect(Protocol):
        def connectionMade(self) -> None:
            transports.append(self.transport)

    port = reactor.listenTCP(0, Factory.forProtocol(Collect), interface="127.0.0.1")
    log: list[tuple[str, float]] = []

    def scenario() -> dict[str, object]:
        clients = [_client(port.getHost().port) for _ in range(3)]
        while len(transports) < 3:
            gevent.sleep(0.01)
        producer = _SleepyPullProducer(transports[0], log)
        transports[0].registerProducer(producer, False)
        producer.armed = True
        started = time.monotonic()
        for transport, data in zip(transports, (b"a", b"b", b"c"), strict=True):
            transport.write(data)  # all three in the same pass
        took = {}
        for name, client in zip(("b", "c"), clients[1:], strict=True):
            assert client.recv(10) == name.encode()
            took[name] = time.monotonic() - started
        assert clients[0].recv(10) == b"a"
        while len(log) < 2:
            gevent.sleep(0.01)
        for client in clients:
            client.close()
        return took

    took = run_until(reactor, spawn(scenario))
    assert took["b"] < MEANWHILE and took["c"] < MEANWHILE, took
    assert [event for event, _ in log] == ["producer-start", "producer-end"]
    assert log[1][1] - log[0][1] >= SLEEP * 0.9


def test_a_blocking_reader_does_not_hold_other_input_of_its_pass(
    reactor: GeventReactor, run_until, spawn
) -> None:
    # Input that arrives together is handled together, in one runner, at the end of the loop's
    # pass (on libev).  Whichever connection's line blocks, wherever it comes in that pass, the
    # others must be answered at once, not after it.
    factory = _sleepy_factory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port

    def scenario() -> list[dict[int, float]]:
        clients = [_client(port) for _ in range(3)]
        rounds = []
        for sleeper in range(len(clients)):
            started = time.monotonic()
            for i, client in enumerate(clients):
                # No switch between these sends: the loop sees all three in one poll.
                client.sendall(b"sleep\r\n" if i == sleeper else b"line%d\r\n" % i)
            took = {}
            for i, client in enumerate(clients):
                if i != sleeper:
                    assert _read_lines(client, 1) == [b"line%d" % i]
                    took[i] = time.monotonic() - started
            assert _read_lines(clients[sleeper], 1) == [b"slept"]
            rounds.append(took)
        for client in clients:
            client.close()
        return rounds

    rounds = run_until(reactor, spawn(scenario), timeout=10)
    for took in rounds:
        assert all(t < MEANWHILE for t in took.values()), rounds


def test_a_connection_accepted_in_a_batch_is_not_held_by_another_connections_block(
    reactor: GeventReactor, run_until, spawn
) -> None:
    # A port's accept and another connection's blocking line in the same pass of the loop: the
    # connection accepted there must be served at once, in whichever order the two are handled.
    factory = _sleepy_factory()
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port

    def fresh_client() -> gevent.socket.socket:
        # A plain socket connects without a switch to the hub, so the accept and the other
        # connection's input reach the loop in the same poll; then it is read as a gevent one.
        plain = socket.create_connection(("127.0.0.1", port), timeout=5)
        plain.sendall(b"hi\r\n")
        sock = gevent.socket.socket(fileno=plain.detach())
        sock.settimeout(5)
        return sock

    def scenario() -> list[float]:
        sleeper = _client(port)
        sleeper.sendall(b"warm-up\r\n")
        assert _read_lines(sleeper, 1) == [b"warm-up"]
        took = []
        for accept_first in (False, True):
            started = time.monotonic()
            if accept_first:
                fresh = fresh_client()
                sleeper.sendall(b"sleep\r\n")
            else:
                sleeper.sendall(b"sleep\r\n")
                fresh = fresh_client()
            assert _read_lines(fresh, 1) == [b"hi"]
            took.append(time.monotonic() - started)
            fresh.close()
            assert _read_lines(sleeper, 1) == [b"slept"]
        sleeper.close()
        return took

    took = run_until(reactor, spawn(scenario), timeout=10)
    assert all(t < MEANWHILE for t in took), took


def test_a_handler_that_returns_after_blocking_leaves_the_others_log_context(
    reactor: GeventReactor, run_until, spawn
) -> None:
    # Twisted's default log context stack is per thread; the reactor makes it per greenlet, so
    # handlers that block and resume interleaved each log under their own transport's prefix.
    from twisted.logger import globalLogPublisher
    from twisted.python import log as legacy_log

    prefixes: dict[bytes, str] = {}
    logged: dict[bytes, str] = {}

    class Sleeper(Protocol):
        def dataReceived(self, data: bytes) -> None:
            prefixes[data] = self.transport.logPrefix()
            gevent.sleep(0.1 if data == b"short" else 0.3)
            legacy_log.msg("woke", marker="woke", which=data)
            self.transport.write(b"ok")

    def observe(event: dict) -> None:
        if event.get("marker") == "woke":
            logged[event["which"]] = event["log_system"]

    port = reactor.listenTCP(0, Factory.forProtocol(Sleeper), interface="127.0.0.1")

    def scenario() -> None:
        short, long = _client(port.getHost().port), _client(port.getHost().port)
        short.sendall(b"short")
        gevent.sleep(0.02)  # the short sleeper blocks first
        long.sendall(b"long")
        assert short.recv(2) == b"ok"
        assert long.recv(2) == b"ok"
        short.close()
        long.close()

    globalLogPublisher.addObserver(observe)
    try:
        run_until(reactor, spawn(scenario))
    finally:
        globalLogPublisher.removeObserver(observe)
    assert prefixes[b"short"] != prefixes[b"long"]
    assert logged[b"long"] == prefixes[b"long"]
    assert logged[b"short"] == prefixes[b"short"]
