"""Code in the reactor's own context (callLater and callFromThread functions) must not block.

It fails at once with ReactorContextBlockingError, the failure is logged, and the reactor goes on.
"""

from __future__ import annotations

import threading
import time

import gevent
import gevent.socket
import pytest
from gevent.exceptions import BlockingSwitchOutError
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from gevent_reactor import GeventReactor, ReactorContextBlockingError


def _check_advice(error: BaseException) -> None:
    assert isinstance(error, ReactorContextBlockingError)
    assert isinstance(error, BlockingSwitchOutError)
    message = str(error)
    assert "gevent.spawn" in message
    assert "deferToGreenlet" in message


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def _still_serving(reactor: GeventReactor, done: Deferred[object]) -> None:
    """After the failure: a timer fires and a TCP echo round trip works; then fire ``done``."""
    factory = Factory.forProtocol(_Echo)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")

    def client() -> None:
        sock = gevent.socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        try:
            sock.sendall(b"still here")
            reply = sock.recv(100)
        finally:
            sock.close()
        reactor.callLater(0.01, done.callback, reply)

    gevent.spawn(client)


def test_blocking_in_call_later_fails_at_once(
    reactor: GeventReactor, run_until, logged_failures
) -> None:
    reached: list[str] = []
    started: list[float] = []

    def blocks() -> None:
        started.append(time.monotonic())
        gevent.sleep(3)
        reached.append("after the sleep")

    reactor.callLater(0.01, blocks)
    done: Deferred[bytes] = Deferred()
    reactor.callLater(0.05, _still_serving, reactor, done)
    reply = run_until(reactor, done)
    assert reply == b"still here"
    assert reached == []
    blocking = [f for f in logged_failures if f.check(ReactorContextBlockingError)]
    assert len(blocking) == 1, logged_failures
    _check_advice(blocking[0].value)
    assert time.monotonic() - started[0] < 2.5, "the sleep was not refused at once"


def test_blocking_error_can_be_caught_in_place(reactor: GeventReactor, run_until) -> None:
    done: Deferred[BaseException] = Deferred()

    def blocks() -> None:
        started = time.monotonic()
        try:
            gevent.sleep(3)
        except ReactorContextBlockingError as e:
            assert time.monotonic() - started < 1.0
            done.callback(e)
        else:
            done.errback(AssertionError("gevent.sleep blocked in the reactor's context"))

    reactor.callLater(0, blocks)
    _check_advice(run_until(reactor, done))


def test_joining_a_greenlet_in_call_later_fails_too(reactor: GeventReactor, run_until) -> None:
    done: Deferred[BaseException] = Deferred()

    def joins() -> None:
        worker = gevent.spawn(gevent.sleep, 0.01)
        try:
            worker.join()
        except ReactorContextBlockingError as e:
            done.callback(e)
        else:
            done.errback(AssertionError("join() blocked in the reactor's context"))

    reactor.callLater(0, joins)
    _check_advice(run_until(reactor, done))


def test_other_timers_fire_after_a_refused_block(
    reactor: GeventReactor, run_until, logged_failures
) -> None:
    fired: list[int] = []
    done: Deferred[None] = Deferred()
    reactor.callLater(0.01, gevent.sleep, 1)
    for i in range(5):
        reactor.callLater(0.02 + i * 0.01, fired.append, i)
    reactor.callLater(0.1, done.callback, None)
    run_until(reactor, done)
    assert fired == [0, 1, 2, 3, 4]
    assert [f.type for f in logged_failures] == [ReactorContextBlockingError]


def test_blocking_in_call_from_thread_fails_at_once(
    reactor: GeventReactor, run_until, logged_failures
) -> None:
    reached: list[str] = []
    started: list[float] = []

    def blocks() -> None:
        started.append(time.monotonic())
        gevent.sleep(3)
        reached.append("after the sleep")

    done: Deferred[bytes] = Deferred()

    def in_thread() -> None:
        reactor.callFromThread(blocks)
        reactor.callFromThread(_still_serving, reactor, done)

    thread = threading.Thread(target=in_thread)
    reactor.callWhenRunning(thread.start)
    reply = run_until(reactor, done)
    thread.join(5)
    assert reply == b"still here"
    assert reached == []
    blocking = [f for f in logged_failures if f.check(ReactorContextBlockingError)]
    assert len(blocking) == 1, logged_failures
    _check_advice(blocking[0].value)
    assert time.monotonic() - started[0] < 2.5


def test_spawning_from_call_later_is_the_way(reactor: GeventReactor, run_until) -> None:
    # What the error message recommends works: the blocking part runs in its own greenlet.
    done: Deferred[str] = Deferred()

    def blocking_part() -> None:
        gevent.sleep(0.05)
        reactor.callLater(0, done.callback, "slept")

    reactor.callLater(0, gevent.spawn, blocking_part)
    assert run_until(reactor, done) == "slept"


def test_wait_for_greenlet_from_call_later(reactor: GeventReactor, run_until) -> None:
    # gevent_deferred's helper, told which reactor to use: deferToGreenlet() picks the global
    # reactor, which under pytest-twisted is a running epoll reactor in another greenlet.
    from gevent_deferred import waitForGreenlet

    def blocking_part() -> str:
        gevent.sleep(0.05)
        return "slept"

    done: Deferred[str] = Deferred()
    reactor.callLater(
        0, lambda: waitForGreenlet(gevent.spawn(blocking_part), reactor=reactor).chainDeferred(done)
    )
    assert run_until(reactor, done) == "slept"


def test_run_from_the_hub_raises(reactor: GeventReactor) -> None:
    errors: list[BaseException] = []

    def in_hub() -> None:
        try:
            reactor.run(installSignalHandlers=False)
        except RuntimeError as e:
            errors.append(e)

    gevent.get_hub().loop.run_callback(in_hub)
    gevent.sleep(0.01)
    assert len(errors) == 1
    assert "hub" in str(errors[0])
    assert not reactor.running
    assert not reactor._started


def test_iterate_from_the_hub_does_not_hang(reactor: GeventReactor) -> None:
    # Documented as "Must not be called from the hub": it must fail, not deadlock the hub.
    errors: list[BaseException] = []
    returned: list[bool] = []

    def in_hub() -> None:
        try:
            reactor.iterate(0.01)
            returned.append(True)
        except BaseException as e:
            errors.append(e)

    gevent.get_hub().loop.run_callback(in_hub)
    gevent.sleep(0.05)
    assert errors or returned
    if errors:
        assert isinstance(errors[0], (RuntimeError, BlockingSwitchOutError))


def test_bad_hub_argument() -> None:
    with pytest.raises(TypeError, match=r"\bhub\b"):
        GeventReactor(hub="x")
