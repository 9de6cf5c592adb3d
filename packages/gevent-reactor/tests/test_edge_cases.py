"""Edge cases of blocking input code: stopping, peers leaving, errors, big writes, other threads."""

from __future__ import annotations

import threading
import time

import gevent
import gevent.socket
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol

from gevent_reactor import GeventReactor


class _Sleeper(Protocol):
    """dataReceived sleeps 0.3 s; ``boom`` raises after the sleep; otherwise replies."""

    def connectionMade(self) -> None:
        self.factory.log.append("made")

    def dataReceived(self, data: bytes) -> None:
        self.factory.log.append(("data", data))
        gevent.sleep(0.3)
        self.factory.log.append(("woke", data))
        if data == b"boom":
            raise ValueError("raised after blocking")
        self.transport.write(b"reply:" + data)

    def connectionLost(self, reason: object) -> None:
        self.factory.log.append(("lost", reason.type.__name__))


def _sleeper_port(reactor: GeventReactor) -> tuple[int, Factory]:
    factory = Factory.forProtocol(_Sleeper)
    factory.log = []
    return reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port, factory


def test_stop_ends_a_blocked_handler_first(reactor: GeventReactor) -> None:
    port, factory = _sleeper_port(reactor)
    stopped_at: list[float] = []

    def client() -> None:
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"x")
        gevent.sleep(0.1)  # dataReceived is asleep now
        stopped_at.append(time.monotonic())
        reactor.stop()
        sock.close()

    worker = gevent.spawn(client)
    guard = gevent.spawn_later(5, reactor.crash)
    reactor.run(installSignalHandlers=False)
    returned_at = time.monotonic()
    assert not guard.dead
    guard.kill()
    worker.join(5)
    # stop() ends blocked input code first (GreenletExit, as gevent.kill), so that its connection
    # is lost within the reactor's life and nothing is left behind; it does not wait for the sleep.
    assert returned_at - stopped_at[0] < 0.25
    assert factory.log == ["made", ("data", b"x"), ("lost", "GreenletExit")]
    gevent.sleep(0.4)
    assert ("woke", b"x") not in factory.log
    assert not reactor._io._held_readers
    assert not reactor._io._blocked_runners


def test_peer_leaves_while_blocked(reactor: GeventReactor, run_until, spawn) -> None:
    port, factory = _sleeper_port(reactor)

    def scenario() -> None:
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"bye")
        gevent.sleep(0.05)
        sock.close()
        deadline = time.monotonic() + 3
        while not any(e[0] == "lost" for e in factory.log if isinstance(e, tuple)):
            assert time.monotonic() < deadline
            gevent.sleep(0.01)

    run_until(reactor, spawn(scenario))
    # connectionLost comes once, after the blocked dataReceived returned.
    assert factory.log == ["made", ("data", b"bye"), ("woke", b"bye"), ("lost", "ConnectionDone")]


def test_error_after_blocking_is_logged_and_drops_the_connection(
    reactor: GeventReactor, run_until, spawn, logged_failures
) -> None:
    port, factory = _sleeper_port(reactor)

    def scenario() -> tuple[bytes, bytes]:
        bad = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        bad.sendall(b"boom")
        closed = bad.recv(100)  # the connection is dropped after the error
        bad.close()
        good = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        good.sendall(b"fine")
        reply = good.recv(100)
        good.close()
        return closed, reply

    closed, reply = run_until(reactor, spawn(scenario))
    assert closed == b""
    assert reply == b"reply:fine"
    assert [f.type for f in logged_failures] == [ValueError]
    assert ("lost", "ValueError") in factory.log
    assert not reactor._io._held_readers


def test_big_write_from_a_greenlet_to_a_slow_reader(
    reactor: GeventReactor, run_until, spawn
) -> None:
    factory = Factory.forProtocol(Protocol)
    factory.made = []
    factory.buildProtocol = lambda addr: factory.made.append(Protocol()) or factory.made[-1]
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port
    chunk = bytes(range(256)) * 4096  # 1 MiB
    total = 16 * len(chunk)

    def scenario() -> int:
        sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=5)
        while not factory.made or factory.made[0].transport is None:
            gevent.sleep(0.005)
        transport = factory.made[0].transport

        def writer() -> None:
            for _ in range(16):
                transport.write(chunk)
                gevent.sleep(0)
            transport.loseConnection()

        gevent.spawn(writer)
        received = 0
        ok = True
        while True:
            data = sock.recv(65536)
            if not data:
                break
            # Bytes arrive in order: check them against the pattern.
            offset = received % len(chunk)
            expected = (chunk + chunk)[offset : offset + len(data)]
            ok = ok and data == expected
            received += len(data)
            if received % (1 << 20) < 65536:
                gevent.sleep(0.002)  # a slow reader: the transport must buffer and resume
        sock.close()
        assert ok
        return received

    assert run_until(reactor, spawn(scenario), timeout=20) == total


def test_reactor_in_another_os_thread_with_its_own_hub() -> None:
    outcome: dict[str, object] = {}

    class Echo(Protocol):
        def dataReceived(self, data: bytes) -> None:
            gevent.sleep(0.01)  # blocks only this connection, in that thread's hub
            self.transport.write(data)

    def body() -> None:
        reactor = GeventReactor()
        outcome["own_hub"] = reactor.hub is gevent.get_hub()
        port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
        from_thread: Deferred[str] = Deferred()

        def client() -> None:
            sock = gevent.socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
            sock.sendall(b"hi")
            outcome["reply"] = sock.recv(10)
            sock.close()
            from_thread.addCallback(lambda ident: outcome.__setitem__("from thread", ident))
            from_thread.addCallback(lambda _: reactor.stop())

        def other_thread() -> None:
            time.sleep(0.1)
            reactor.callFromThread(from_thread.callback, threading.get_ident())

        gevent.spawn(client)
        caller = threading.Thread(target=other_thread)
        reactor.callWhenRunning(caller.start)
        guard = gevent.spawn_later(5, reactor.crash)
        reactor.run(installSignalHandlers=False)
        outcome["guard fired"] = guard.dead
        guard.kill()
        caller.join(5)
        port.stopListening()
        reactor.disconnectAll()
        outcome["main hub"] = gevent.get_hub() is main_hub

    main_hub = gevent.get_hub()
    thread = threading.Thread(target=body)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome["own_hub"] is True
    assert outcome["main hub"] is False
    assert outcome["reply"] == b"hi"
    assert isinstance(outcome["from thread"], int)
    assert outcome["guard fired"] is False


class _SlowClient(Protocol):
    def connectionMade(self) -> None:
        self.factory.log.append("made-start")
        gevent.sleep(0.3)
        self.factory.log.append("made-end")

    def dataReceived(self, data: bytes) -> None:
        self.factory.log.append("data")
        self.factory.done.callback(None)


class _Greeter(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"hello")


def test_client_connection_made_blocks_before_data_received(
    reactor: GeventReactor, run_until
) -> None:
    port = reactor.listenTCP(0, Factory.forProtocol(_Greeter), interface="127.0.0.1")
    factory = ClientFactory.forProtocol(_SlowClient)
    factory.log = []
    factory.done = Deferred()
    reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
    done: Deferred[None] = Deferred()
    factory.done.addCallback(lambda _: reactor.callLater(0.4, done.callback, None))
    run_until(reactor, done)
    assert factory.log == ["made-start", "made-end", "data"]
