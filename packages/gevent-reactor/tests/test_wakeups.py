"""Calls into the reactor from a plain greenlet or an OS thread take effect at once.

The reactor runs with no other reactor timer pending (or with an unrelated one far away), so a call
that did not wake the loop up would only take effect at that timer or at the test's 5 s guard.
"""

from __future__ import annotations

import threading
import time

import gevent
import gevent.socket
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol

from gevent_reactor import GeventReactor

# The calls must take effect well before this; a missed wake-up would wait for the 5 s guard.
AT_ONCE = 1.0


def test_call_later_from_a_greenlet(reactor: GeventReactor, run_until) -> None:
    done: Deferred[float] = Deferred()

    def from_greenlet() -> None:
        gevent.sleep(0.1)  # the reactor runs, idle, with nothing scheduled
        assert reactor.getDelayedCalls() == []
        started = time.monotonic()
        reactor.callLater(0.05, lambda: done.callback(time.monotonic() - started))

    reactor.callWhenRunning(gevent.spawn, from_greenlet)
    elapsed = run_until(reactor, done)
    assert 0.045 <= elapsed < AT_ONCE


def test_call_later_zero_from_a_greenlet(reactor: GeventReactor, run_until) -> None:
    done: Deferred[float] = Deferred()

    def from_greenlet() -> None:
        gevent.sleep(0.1)
        started = time.monotonic()
        reactor.callLater(0, lambda: done.callback(time.monotonic() - started))

    reactor.callWhenRunning(gevent.spawn, from_greenlet)
    assert run_until(reactor, done) < AT_ONCE


def test_stop_from_a_greenlet(reactor: GeventReactor) -> None:
    stopped_at: list[float] = []

    def from_greenlet() -> None:
        gevent.sleep(0.1)
        assert reactor.running
        stopped_at.append(time.monotonic())
        reactor.stop()

    reactor.callWhenRunning(gevent.spawn, from_greenlet)
    guard = gevent.spawn_later(5, reactor.crash)
    reactor.run(installSignalHandlers=False)
    returned_at = time.monotonic()
    assert not guard.dead, "run() only returned because the 5 s guard crashed the reactor"
    guard.kill()
    assert returned_at - stopped_at[0] < AT_ONCE


def test_call_from_thread_with_an_unrelated_timer_far_away(
    reactor: GeventReactor, run_until
) -> None:
    done: Deferred[float] = Deferred()
    unrelated = reactor.callLater(5.0, lambda: None)

    def in_thread() -> None:
        time.sleep(0.1)
        started = time.monotonic()
        reactor.callFromThread(
            lambda: done.callback((time.monotonic() - started, threading.current_thread()))
        )

    thread = threading.Thread(target=in_thread, daemon=True)
    reactor.callWhenRunning(thread.start)
    elapsed, ran_in = run_until(reactor, done, timeout=8)
    thread.join(5)
    assert unrelated.active()
    assert elapsed < AT_ONCE
    assert ran_in is threading.main_thread()
    assert thread is not threading.main_thread()


def test_call_from_thread_before_run_runs_when_run(reactor: GeventReactor, run_until) -> None:
    done: Deferred[str] = Deferred()
    thread = threading.Thread(target=reactor.callFromThread, args=(done.callback, "queued"))
    thread.start()
    thread.join(5)
    assert run_until(reactor, done) == "queued"


def test_many_calls_from_threads_all_run(reactor: GeventReactor, run_until) -> None:
    results: list[int] = []
    done: Deferred[None] = Deferred()

    def record(i: int) -> None:
        results.append(i)
        if len(results) == 400 and not done.called:
            done.callback(None)

    def in_thread(base: int) -> None:
        for i in range(100):
            reactor.callFromThread(record, base + i)

    threads = [threading.Thread(target=in_thread, args=(k * 100,)) for k in range(4)]
    reactor.callWhenRunning(lambda: [t.start() for t in threads])
    run_until(reactor, done)
    for t in threads:
        t.join(5)
    assert sorted(results) == list(range(400))


class _Recorder(Protocol):
    def connectionMade(self) -> None:
        self.factory.connected.append(self)
        if not self.factory.made.called:
            self.factory.made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.factory.received.append((time.monotonic(), data))
        waiting, self.factory.waiting = self.factory.waiting, None
        if waiting is not None:
            waiting.callback(data)


def _recorder_factory(client: bool = False) -> Factory:
    factory = ClientFactory() if client else Factory()
    factory.protocol = _Recorder
    factory.connected = []
    factory.received = []
    factory.made = Deferred()
    factory.waiting = None
    return factory


def test_transport_write_from_a_greenlet_reaches_a_gevent_peer(
    reactor: GeventReactor, run_until
) -> None:
    # The peer is a plain gevent socket, so only the reactor's write path is involved.
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    done: Deferred[tuple[bytes, float]] = Deferred()
    factory = _recorder_factory(client=True)

    def peer() -> None:
        conn, _ = listener.accept()
        try:
            conn.settimeout(5)
            gevent.sleep(0.1)  # the reactor is idle now, with no timer pending
            assert reactor.getDelayedCalls() == []
            transport = factory.connected[0].transport
            started = time.monotonic()
            transport.write(b"from a greenlet")  # made here, in a plain greenlet
            data = b""
            while len(data) < 15:
                chunk = conn.recv(100)
                if not chunk:
                    break
                data += chunk
            done.callback((data, time.monotonic() - started))
        finally:
            conn.close()

    worker = gevent.spawn(peer)
    reactor.connectTCP("127.0.0.1", port, factory)
    try:
        data, elapsed = run_until(reactor, done)
    finally:
        worker.kill()
        listener.close()
    assert data == b"from a greenlet"
    assert elapsed < AT_ONCE


def test_transport_write_from_a_greenlet_reaches_a_twisted_peer(
    reactor: GeventReactor, run_until
) -> None:
    server = _recorder_factory()
    client = _recorder_factory(client=True)
    port = reactor.listenTCP(0, server, interface="127.0.0.1")
    reactor.connectTCP("127.0.0.1", port.getHost().port, client)
    result: Deferred[float] = Deferred()

    def writer() -> None:
        # Wait (outside the reactor) until both ends are connected, then let the reactor idle.
        while not server.connected or not client.connected:
            gevent.sleep(0.005)
        gevent.sleep(0.1)
        server.waiting = Deferred()
        server.waiting.addCallback(lambda _: result.callback(time.monotonic() - started))
        started = time.monotonic()
        client.connected[0].transport.write(b"ping")

    reactor.callWhenRunning(gevent.spawn, writer)
    elapsed = run_until(reactor, result)
    port.stopListening()
    assert elapsed < AT_ONCE
    assert [data for _, data in server.received] == [b"ping"]


def test_listen_and_connect_from_a_greenlet(reactor: GeventReactor, run_until) -> None:
    server = _recorder_factory()
    client = _recorder_factory(client=True)
    done: Deferred[float] = Deferred()

    def from_greenlet() -> None:
        gevent.sleep(0.1)  # the reactor is idle
        started = time.monotonic()
        port = reactor.listenTCP(0, server, interface="127.0.0.1")
        reactor.connectTCP("127.0.0.1", port.getHost().port, client)
        server.waiting = Deferred()
        server.waiting.addCallback(lambda _: done.callback(time.monotonic() - started))
        client.made.addCallback(lambda proto: proto.transport.write(b"hello"))

    reactor.callWhenRunning(gevent.spawn, from_greenlet)
    elapsed = run_until(reactor, done)
    assert elapsed < AT_ONCE
    assert [data for _, data in server.received] == [b"hello"]


def test_listen_from_a_greenlet_serves_a_gevent_client(reactor: GeventReactor, run_until) -> None:
    server = _recorder_factory()
    done: Deferred[bytes] = Deferred()

    def from_greenlet() -> None:
        gevent.sleep(0.05)
        port = reactor.listenTCP(0, server, interface="127.0.0.1")
        server.made.addCallback(lambda proto: proto.transport.write(b"welcome"))
        sock = gevent.socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        try:
            done.callback(sock.recv(100))
        finally:
            sock.close()

    reactor.callWhenRunning(gevent.spawn, from_greenlet)
    assert run_until(reactor, done) == b"welcome"


WAKE_RACE_CHILD = """
import threading, time
from gevent_reactor import GeventReactor

reactor = GeventReactor()
errors = []
done = threading.Event()

def hammer():
    while not done.is_set():
        try:
            reactor.wakeUp()
            reactor.callFromThread(lambda: None)
        except BaseException as e:
            errors.append(repr(e))
            return

thread = threading.Thread(target=hammer)
thread.start()
deadline = time.monotonic() + 1.5
passes = 0
while time.monotonic() < deadline:
    # Each iterate() makes the reactor's waker and closes it again, while the thread wakes it.
    reactor.iterate(0)
    passes += 1
done.set()
thread.join(5)
print("passes", passes, "errors", errors)
assert not errors, errors
"""


def test_wake_up_from_a_thread_races_the_waker_closing(run_python) -> None:
    # A thread's wakeUp() may reach the waker just as the reactor's thread closes it (crash(),
    # iterate(), stop): libuv aborted the process ("Sending to a closed watcher").
    result = run_python(["-c", WAKE_RACE_CHILD], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "errors []" in result.stdout
