"""Running, stopping, crashing, iterating; system event triggers; DelayedCall semantics."""

from __future__ import annotations

import socket
import time

import gevent
import gevent.socket
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import AlreadyCalled, ReactorAlreadyRunning, ReactorNotRunning

from gevent_reactor import GeventReactor


def test_greenlets_run_while_the_reactor_runs(reactor: GeventReactor) -> None:
    count = [0]

    def counter() -> None:
        while True:
            count[0] += 1
            gevent.sleep(0.005)

    worker = gevent.spawn(counter)
    try:
        reactor.callLater(0.3, reactor.stop)
        started = time.monotonic()
        reactor.run(installSignalHandlers=False)
        elapsed = time.monotonic() - started
    finally:
        worker.kill()
    assert 0.25 < elapsed < 2.0
    # About 60 rounds in 0.3 s; a reactor that starved the hub would give at most one.
    assert count[0] > 10


def test_run_returns_after_stop(reactor: GeventReactor) -> None:
    ran = []
    reactor.callWhenRunning(lambda: ran.append(reactor.running))
    reactor.callWhenRunning(reactor.stop)
    guard = gevent.spawn_later(5, reactor.crash)
    reactor.run(installSignalHandlers=False)
    assert guard.dead is False, "run() only returned because the guard crashed the reactor"
    guard.kill()
    assert ran == [True]
    assert not reactor.running


def test_stop_when_not_running_raises(reactor: GeventReactor) -> None:
    with pytest.raises(ReactorNotRunning):
        reactor.stop()


def test_stop_twice_raises(reactor: GeventReactor) -> None:
    errors = []

    def stop_twice() -> None:
        reactor.stop()
        try:
            reactor.stop()
        except ReactorNotRunning as e:
            errors.append(e)

    reactor.callWhenRunning(stop_twice)
    guard = gevent.spawn_later(5, reactor.crash)
    reactor.run(installSignalHandlers=False)
    guard.kill()
    assert len(errors) == 1


def test_run_while_running_raises(reactor: GeventReactor, run_until) -> None:
    d: Deferred[None] = Deferred()

    def nested() -> None:
        try:
            reactor.run(installSignalHandlers=False)
        except ReactorAlreadyRunning:
            d.callback(None)
        else:
            d.errback(AssertionError("nested run() did not raise"))

    # From a greenlet: run() blocks the current greenlet, so the nested call must come from one.
    reactor.callWhenRunning(gevent.spawn, nested)
    run_until(reactor, d)


def test_crash_skips_shutdown_triggers_and_run_works_again(reactor: GeventReactor) -> None:
    events: list[str] = []
    reactor.addSystemEventTrigger("before", "shutdown", events.append, "shutdown")
    reactor.callLater(0.01, reactor.crash)
    guard = gevent.spawn_later(5, reactor.crash)
    reactor.run(installSignalHandlers=False)
    guard.kill()
    assert events == []
    assert not reactor.running

    reactor.callLater(0.01, events.append, "second run")
    reactor.callLater(0.02, reactor.stop)
    guard = gevent.spawn_later(5, reactor.crash)
    reactor.run(installSignalHandlers=False)
    guard.kill()
    assert events == ["second run", "shutdown"]


def test_system_event_triggers_fire_in_order(reactor: GeventReactor) -> None:
    events: list[str] = []
    for event in ("startup", "shutdown"):
        # Added in reverse to show that the phase, not the order of adding, decides.
        for phase in ("after", "during", "before"):
            reactor.addSystemEventTrigger(phase, event, events.append, f"{phase} {event}")
    reactor.callWhenRunning(events.append, "running")
    reactor.callWhenRunning(reactor.stop)
    guard = gevent.spawn_later(5, reactor.crash)
    reactor.run(installSignalHandlers=False)
    guard.kill()
    assert events == [
        "before startup",
        "during startup",
        "after startup",
        "running",
        "before shutdown",
        "during shutdown",
        "after shutdown",
    ]


def test_before_shutdown_trigger_deferred_delays_shutdown(reactor: GeventReactor) -> None:
    events: list[str] = []

    def slow_trigger() -> Deferred[None]:
        d: Deferred[None] = Deferred()
        events.append("before")
        reactor.callLater(0.1, d.callback, None)
        return d

    reactor.addSystemEventTrigger("before", "shutdown", slow_trigger)
    reactor.addSystemEventTrigger("during", "shutdown", events.append, "during")
    reactor.callWhenRunning(reactor.stop)
    started = time.monotonic()
    guard = gevent.spawn_later(5, reactor.crash)
    reactor.run(installSignalHandlers=False)
    guard.kill()
    assert events == ["before", "during"]
    assert time.monotonic() - started >= 0.09


def test_iterate_runs_a_due_call(reactor: GeventReactor) -> None:
    called = []
    reactor.callLater(0, called.append, 1)
    reactor.iterate()
    assert called == [1]


def test_iterate_with_delay_waits_for_a_timer(reactor: GeventReactor) -> None:
    called = []
    reactor.callLater(0.05, called.append, 1)
    deadline = time.monotonic() + 5
    while not called and time.monotonic() < deadline:
        reactor.iterate(0.1)
    assert called == [1]


def test_iterate_handles_ready_io(reactor: GeventReactor) -> None:
    ours, theirs = socket.socketpair()
    reads: list[bytes] = []

    class Reader:
        def fileno(self) -> int:
            return ours.fileno()

        def doRead(self) -> None:
            reads.append(ours.recv(100))

        def logPrefix(self) -> str:
            return "Reader"

        def connectionLost(self, reason: object) -> None:
            pass

    reader = Reader()
    try:
        reactor.addReader(reader)
        theirs.sendall(b"ready")
        for _ in range(3):
            # One pass of the loop polls I/O; allow a couple in case of scheduling noise.
            reactor.iterate(0.01)
            if reads:
                break
        assert reads == [b"ready"]
        assert reader in reactor.getReaders()
    finally:
        reactor.removeReader(reader)
        ours.close()
        theirs.close()
    assert reader not in reactor.getReaders()


# -- DelayedCall --------------------------------------------------------------------------


def test_delayed_calls_fire_in_time_order(reactor: GeventReactor, run_until) -> None:
    order: list[int] = []
    done: Deferred[None] = Deferred()
    reactor.callLater(0.03, order.append, 3)
    reactor.callLater(0.01, order.append, 1)
    reactor.callLater(0.02, order.append, 2)
    reactor.callLater(0.04, done.callback, None)
    run_until(reactor, done)
    assert order == [1, 2, 3]


def test_reset_to_earlier_fires_earlier(reactor: GeventReactor, run_until) -> None:
    done: Deferred[float] = Deferred()
    started = time.monotonic()
    call = reactor.callLater(3.0, lambda: done.callback(time.monotonic() - started))
    reactor.callLater(0.05, call.reset, 0.05)
    elapsed = run_until(reactor, done)
    assert 0.09 <= elapsed < 1.0


def test_reset_from_a_greenlet_to_earlier_fires_earlier(reactor: GeventReactor, run_until) -> None:
    # No other reactor timer is pending: only the reset itself can wake the reactor up in time.
    done: Deferred[float] = Deferred()
    started = time.monotonic()
    call = reactor.callLater(3.0, lambda: done.callback(time.monotonic() - started))

    def shorten() -> None:
        gevent.sleep(0.05)
        call.reset(0.05)

    reactor.callWhenRunning(gevent.spawn, shorten)
    elapsed = run_until(reactor, done)
    assert 0.09 <= elapsed < 1.0


def test_reset_to_later_fires_later(reactor: GeventReactor, run_until) -> None:
    done: Deferred[float] = Deferred()
    started = time.monotonic()
    call = reactor.callLater(0.05, lambda: done.callback(time.monotonic() - started))
    call.reset(0.3)
    assert call.getTime() - reactor.seconds() > 0.25
    elapsed = run_until(reactor, done)
    assert 0.29 <= elapsed < 2.0


def test_delay_postpones(reactor: GeventReactor, run_until) -> None:
    done: Deferred[float] = Deferred()
    started = time.monotonic()
    call = reactor.callLater(0.05, lambda: done.callback(time.monotonic() - started))
    call.delay(0.2)
    elapsed = run_until(reactor, done)
    assert 0.24 <= elapsed < 2.0


def test_cancel_and_get_delayed_calls(reactor: GeventReactor, run_until) -> None:
    fired: list[str] = []
    keep = reactor.callLater(0.05, fired.append, "kept")
    drop = reactor.callLater(0.02, fired.append, "cancelled")
    assert set(reactor.getDelayedCalls()) == {keep, drop}
    drop.cancel()
    assert not drop.active()
    assert reactor.getDelayedCalls() == [keep]
    done: Deferred[None] = Deferred()
    reactor.callLater(0.2, done.callback, None)
    run_until(reactor, done)
    assert fired == ["kept"]
    assert not keep.active()
    assert reactor.getDelayedCalls() == []
    with pytest.raises(AlreadyCalled):
        keep.cancel()


def test_seconds_follows_real_time(reactor: GeventReactor) -> None:
    before = reactor.seconds()
    time.sleep(0.05)
    assert reactor.seconds() - before >= 0.04


def test_input_code_logs_under_its_transports_log_prefix(
    reactor: GeventReactor, run_until, spawn
) -> None:
    # As every reactor (log.callWithLogger): legacy log.msg calls made while handling a
    # connection's input carry its transport's logPrefix as "system".
    from twisted.internet.protocol import Factory, Protocol
    from twisted.logger import globalLogPublisher
    from twisted.python import log as legacy_log

    prefixes: list[str] = []
    events: list[dict] = []

    class Logs(Protocol):
        def dataReceived(self, data: bytes) -> None:
            prefixes.append(self.transport.logPrefix())
            legacy_log.msg("got data", marker="input-logged")
            self.transport.write(data)

    def observe(event: dict) -> None:
        if event.get("marker") == "input-logged":
            events.append(event)

    port = reactor.listenTCP(0, Factory.forProtocol(Logs), interface="127.0.0.1")

    def client() -> bytes:
        sock = gevent.socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        try:
            sock.sendall(b"x")
            return sock.recv(1)
        finally:
            sock.close()

    globalLogPublisher.addObserver(observe)
    try:
        assert run_until(reactor, spawn(client)) == b"x"
    finally:
        globalLogPublisher.removeObserver(observe)
    assert prefixes and prefixes[0].startswith("Logs,")
    assert [e["log_system"] for e in events] == prefixes
