"""Situation 2: Twisted's epoll reactor in its own OS thread, greenlets in this thread."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import gevent
import pytest
from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.epollreactor import EPollReactor

from gevent_deferred import (
    GreenletKilledError,
    ReactorStoppedError,
    ReactorThread,
    WaitTimeoutError,
    WrongContextError,
    blockingCallFromGreenlet,
    deferToGreenlet,
    in_greenlet,
    shared_hub_thread,
    waitForDeferred,
    waitForGreenlet,
)
from gevent_deferred._threads import get_ident


@pytest.fixture
def rt():
    reactor_thread = ReactorThread(EPollReactor(), name="test-epoll").start()
    try:
        yield reactor_thread
    finally:
        reactor_thread.stop()


def run(fn, *args, **kwargs):
    """Run fn in a fresh greenlet of this thread and return its result (within 10 s)."""
    return gevent.spawn(fn, *args, **kwargs).get(timeout=10)


def new_deferred(rt):
    """A Deferred created in the reactor thread (where it must live), handed to this thread."""
    return blockingCallFromGreenlet(rt.reactor, lambda: [Deferred()])[0]


def call_in_reactor(rt, fn, *args):
    """Run fn in the reactor thread; return what it returns (no Deferred following)."""
    return blockingCallFromGreenlet(rt.reactor, lambda: [fn(*args)])[0]


# -- ReactorThread -------------------------------------------------------------------------------


def test_reactor_thread_runs_reactor_in_a_real_thread(rt):
    assert rt.running and rt.reactor.running
    ident = call_in_reactor(rt, get_ident)
    assert ident == rt.thread_ident != get_ident()
    rt.start()  # idempotent


def test_reactor_thread_context_manager_and_stop():
    reactor = EPollReactor()
    with ReactorThread(reactor) as rt:
        assert blockingCallFromGreenlet(reactor, lambda: "inside") == "inside"
    assert not rt.running and not reactor.running
    rt.stop()  # harmless twice
    with pytest.raises(RuntimeError, match="cannot be restarted"):
        ReactorThread(reactor).start()


def test_reactor_thread_misuse(rt):
    with pytest.raises(TypeError, match=r"ReactorThread\(reactor\) expects a Twisted reactor"):
        ReactorThread(object())
    errors = []

    def in_reactor():
        try:
            rt.stop()
        except RuntimeError as exc:
            errors.append(str(exc))

    call_in_reactor(rt, in_reactor)
    assert "reactor's own thread" in errors[0]


# -- blockingCallFromGreenlet --------------------------------------------------------------------


def test_blocking_call_values_deferreds_coroutines(rt):
    reactor = rt.reactor
    assert run(blockingCallFromGreenlet, reactor, lambda x: x + 1, 41) == 42
    assert run(blockingCallFromGreenlet, reactor, task.deferLater, reactor, 0.01, lambda: "later")

    async def coro():
        await task.deferLater(reactor, 0.01, lambda: None)
        return "coro"

    assert run(blockingCallFromGreenlet, reactor, coro) == "coro"


def test_blocking_call_runs_f_in_the_reactor_thread(rt):
    assert run(blockingCallFromGreenlet, rt.reactor, get_ident) == rt.thread_ident


def test_blocking_call_keeps_traceback(rt):
    def fails_in_reactor():
        raise LookupError("from the reactor thread")

    def body():
        try:
            blockingCallFromGreenlet(rt.reactor, fails_in_reactor)
        except LookupError as exc:
            return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]

    names = run(body)
    assert "fails_in_reactor" in names and "body" in names


def test_killing_a_blocking_call_cancels_its_deferred(rt):
    cancelled = threading.Event()

    def slow():
        return Deferred(lambda d: cancelled.set())

    g = gevent.spawn(blockingCallFromGreenlet, rt.reactor, slow)
    gevent.sleep(0.05)
    g.kill(timeout=5)
    assert cancelled.wait(5)


# -- waitForDeferred ------------------------------------------------------------------------------


def test_wait_for_deferred_fired_in_the_reactor_thread(rt):
    d = new_deferred(rt)
    rt.reactor.callFromThread(rt.reactor.callLater, 0.02, d.callback, "fired")
    assert run(waitForDeferred, d, reactor=rt.reactor) == "fired"


def test_one_thousand_greenlets_random_order(rt):
    reactor = rt.reactor
    deferreds = call_in_reactor(rt, lambda: [Deferred() for _ in range(1000)])
    greenlets = [gevent.spawn(waitForDeferred, d, reactor=reactor) for d in deferreds]
    gevent.sleep(0.05)
    order = list(range(1000))
    random.shuffle(order)

    def fire_all():
        for i in order:
            reactor.callLater(random.random() * 0.05, deferreds[i].callback, i)

    reactor.callFromThread(fire_all)
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert [g.value for g in greenlets] == list(range(1000))


def test_hub_is_not_blocked_while_waiting(rt):
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)

    t = gevent.spawn(ticker)
    started = time.monotonic()
    value = run(
        blockingCallFromGreenlet, rt.reactor, task.deferLater, rt.reactor, 0.3, lambda: "slow"
    )
    t.kill()
    assert value == "slow"
    during = [tick for tick in ticks if tick > started]
    assert len(during) >= 10, f"only {len(during)} ticks in 0.3 s: the hub was blocked"


def test_lone_main_greenlet_waits_without_loop_exit(rt):
    # No other greenlet or watcher keeps this hub alive: the pending wait must.
    d = new_deferred(rt)
    rt.reactor.callFromThread(rt.reactor.callLater, 0.05, d.callback, "alone")
    assert waitForDeferred(d, reactor=rt.reactor) == "alone"


def test_timeout_cancels_in_the_reactor_thread(rt):
    cancelled_in = []

    def make():
        return [Deferred(lambda d: cancelled_in.append(get_ident()))]

    d = blockingCallFromGreenlet(rt.reactor, make)[0]
    with pytest.raises(WaitTimeoutError) as info:
        run(waitForDeferred, d, timeout=0.05, reactor=rt.reactor)
    assert isinstance(info.value, TimeoutError)
    deadline = time.monotonic() + 5
    while not cancelled_in and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert cancelled_in == [rt.thread_ident]


def test_killing_the_waiter_cancels_unless_told_not_to(rt):
    d1, d2 = new_deferred(rt), new_deferred(rt)
    g1 = gevent.spawn(waitForDeferred, d1, reactor=rt.reactor)
    g2 = gevent.spawn(waitForDeferred, d2, reactor=rt.reactor, cancel_on_kill=False)
    gevent.sleep(0.05)
    gevent.killall([g1, g2], timeout=5)
    gevent.sleep(0.05)
    assert call_in_reactor(rt, lambda: (d1.called, d2.called)) == (True, False)


def test_reactor_stop_fails_pending_waits():
    reactor = EPollReactor()
    rt = ReactorThread(reactor).start()
    d = new_deferred(rt)
    waiters = [gevent.spawn(waitForDeferred, d, reactor=reactor) for _ in range(3)]
    gevent.sleep(0.05)
    rt.stop()
    for g in waiters:
        with pytest.raises(ReactorStoppedError, match="reactor stopped"):
            g.get(timeout=5)
    with pytest.raises(ReactorStoppedError, match="reactor stopped"):
        run(waitForDeferred, Deferred(), reactor=reactor)
    with pytest.raises(ReactorStoppedError, match="reactor stopped"):
        run(blockingCallFromGreenlet, reactor, lambda: 1)


def test_wait_in_the_reactor_thread_raises_at_once(rt):
    def in_reactor():
        try:
            waitForDeferred(Deferred(), reactor=rt.reactor)
        except WrongContextError as exc:
            return str(exc)

    message = call_in_reactor(rt, in_reactor)
    assert "called in the thread of" in message
    assert "deadlock" in message and "deferToGreenlet" in message


def test_blocking_call_in_the_reactor_thread_raises_at_once(rt):
    def in_reactor():
        try:
            blockingCallFromGreenlet(rt.reactor, lambda: 1)
        except WrongContextError as exc:
            return str(exc)

    assert "called in the thread of" in call_in_reactor(rt, in_reactor)


def test_wait_in_a_main_thread_reactor_raises_at_once():
    # The usual Twisted program: the reactor owns the main thread; waiting there would deadlock.
    reactor = EPollReactor()
    messages = []

    def go():
        try:
            waitForDeferred(Deferred(), reactor=reactor)
        except WrongContextError as exc:
            messages.append(str(exc))
        reactor.stop()

    reactor.callWhenRunning(go)
    reactor.callLater(5, reactor.stop)
    reactor.run(installSignalHandlers=False)
    assert "deadlock" in messages[0]


# -- greenlets for the reactor thread ------------------------------------------------------------


def test_defer_to_greenlet_from_the_reactor_thread(rt):
    def work():
        gevent.sleep(0.01)
        return get_ident()

    def in_reactor():
        return deferToGreenlet(work).addCallback(lambda ident: (ident, get_ident()))

    work_ident, callback_ident = blockingCallFromGreenlet(rt.reactor, in_reactor)
    assert work_ident == shared_hub_thread().thread_ident
    assert callback_ident == rt.thread_ident


def test_in_greenlet_callback_blocks_and_calls_back_into_the_reactor(rt):
    reactor = rt.reactor

    class Handler:
        @in_greenlet
        def handle(self, value):
            gevent.sleep(0.01)  # blocks only this greenlet, in the hub thread
            doubled = blockingCallFromGreenlet(reactor, lambda: value * 2)  # back into Twisted
            return doubled + 1

    def in_reactor():
        return Handler().handle(20)

    assert blockingCallFromGreenlet(reactor, in_reactor) == 41


def test_wait_for_greenlet_of_this_thread_from_the_reactor_thread(rt):
    g = gevent.spawn(lambda: gevent.sleep(0.02) or "from main thread")

    def in_reactor():
        return waitForGreenlet(g, reactor=rt.reactor).addCallback(lambda v: (v, get_ident()))

    value, fired_in = blockingCallFromGreenlet(rt.reactor, in_reactor)
    assert value == "from main thread" and fired_in == rt.thread_ident


def test_cancel_from_the_reactor_thread_kills_the_greenlet(rt):
    g = gevent.spawn(gevent.sleep, 30)
    holder = call_in_reactor(rt, lambda: [waitForGreenlet(g, reactor=rt.reactor)])
    d = holder[0]
    call_in_reactor(rt, d.cancel)
    g.join(5)
    assert g.dead
    with pytest.raises(CancelledError):
        run(waitForDeferred, d, reactor=rt.reactor)


def test_killed_greenlet_fails_with_greenlet_killed(rt):
    g = gevent.spawn(gevent.sleep, 30)
    d = call_in_reactor(rt, lambda: [waitForGreenlet(g, reactor=rt.reactor)])[0]
    gevent.sleep(0.01)
    g.kill()
    with pytest.raises(GreenletKilledError):
        run(waitForDeferred, d, reactor=rt.reactor)


# -- after patch_all ------------------------------------------------------------------------------


def test_cross_thread_waits_after_patch_all_in_a_subprocess():
    script = textwrap.dedent(
        """
        # patch_all() removes select.epoll, so the epoll reactor's module is imported first.
        from twisted.internet.epollreactor import EPollReactor
        from gevent import monkey; monkey.patch_all()
        import threading, time
        import gevent
        from twisted.internet import task
        from twisted.internet.defer import Deferred
        from gevent_deferred import ReactorThread, blockingCallFromGreenlet, waitForDeferred

        reactor = EPollReactor()
        with ReactorThread(reactor) as rt:
            ticks = []
            ticker = gevent.spawn(lambda: [ticks.append(time.sleep(0.01)) for _ in range(1000)])
            slow = blockingCallFromGreenlet(reactor, task.deferLater, reactor, 0.2, lambda: "ok")
            ticker.kill()
            assert slow == "ok" and len(ticks) >= 5, (slow, len(ticks))
            ds = blockingCallFromGreenlet(reactor, lambda: [Deferred() for _ in range(100)])
            gs = [gevent.spawn(waitForDeferred, d, reactor=reactor) for d in ds]
            reactor.callFromThread(lambda: [d.callback(i) for i, d in enumerate(ds)])
            gevent.joinall(gs, timeout=5, raise_error=True)
            assert [g.value for g in gs] == list(range(100))
            pending = gevent.spawn(waitForDeferred, Deferred(), reactor=reactor)
            gevent.sleep(0.05)
        try:
            pending.get(timeout=5)
        except Exception as exc:
            print(type(exc).__name__)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "ReactorStoppedError", proc.stdout + proc.stderr
