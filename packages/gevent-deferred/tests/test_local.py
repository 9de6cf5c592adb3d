"""Plain gevent, no running reactor: Deferreds fired by greenlets of this thread."""

from __future__ import annotations

import random
import sys
import traceback

import gevent
import greenlet
import pytest
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.python.failure import Failure

from gevent_deferred import (
    GreenletKilledError,
    ReactorStoppedError,
    WaitTimeoutError,
    WrongContextError,
    blockingCallFromGreenlet,
    deferToGreenlet,
    in_greenlet,
    waitForDeferred,
    waitForGreenlet,
)


@pytest.fixture(autouse=True)
def no_global_reactor(monkeypatch):
    # pytest-twisted installs Twisted's default reactor and runs it in a greenlet of this thread;
    # these tests are about plain gevent with no reactor at all, so the global one is hidden.
    monkeypatch.delitem(sys.modules, "twisted.internet.reactor", raising=False)


def in_greenlet_now(fn, *args, timeout=10):
    """Run fn in a fresh greenlet and return its result (the test body must not be the hub)."""
    return gevent.spawn(fn, *args).get(timeout=timeout)


def fire_later(d, seconds, value):
    gevent.spawn_later(seconds, d.callback, value)


class SwitchCounter:
    """Counts greenlet switches made while active (greenlet.settrace)."""

    def __enter__(self):
        self.switches = 0

        def trace(event, args):
            if event in ("switch", "throw"):
                self.switches += 1

        self.previous = greenlet.settrace(trace)
        return self

    def __exit__(self, *exc):
        greenlet.settrace(self.previous)


# -- waitForDeferred ------------------------------------------------------------------------------


def test_wait_returns_result():
    def body():
        d = Deferred()
        fire_later(d, 0.01, "hello")
        return waitForDeferred(d)

    assert in_greenlet_now(body) == "hello"


def test_already_fired_returns_without_switching():
    def body():
        d = succeed(7)
        with SwitchCounter() as counter:
            value = waitForDeferred(d)
        return value, counter.switches

    assert in_greenlet_now(body) == (7, 0)


def test_already_failed_raises_without_switching():
    def body():
        d = fail(ValueError("early"))
        with SwitchCounter() as counter:
            with pytest.raises(ValueError, match="early"):
                waitForDeferred(d)
        return counter.switches

    assert in_greenlet_now(body) == 0


def test_follows_deferreds_that_fire_with_deferreds():
    def body():
        outer, inner = Deferred(), Deferred()
        outer.addCallback(lambda _: inner)
        fire_later(outer, 0.01, None)
        fire_later(inner, 0.03, "inner result")
        return waitForDeferred(outer)

    assert in_greenlet_now(body) == "inner result"


def test_accepts_coroutines():
    async def coro(d):
        value = await d
        return value * 2

    def body():
        d = Deferred()
        fire_later(d, 0.01, 21)
        return waitForDeferred(coro(d))

    assert in_greenlet_now(body) == 42


def test_exception_keeps_original_traceback():
    def raiser():
        raise KeyError("lost?")

    def body():
        d = Deferred()

        def fire():
            d.callback(None)

        d.addCallback(lambda _: raiser())
        gevent.spawn_later(0.01, fire)
        try:
            waitForDeferred(d)
        except KeyError as exc:
            return traceback.extract_tb(exc.__traceback__)
        raise AssertionError("no exception")

    frames = in_greenlet_now(body)
    names = [frame.name for frame in frames]
    assert "raiser" in names, names
    assert "body" in names, names


def test_failure_before_the_wait_keeps_its_traceback():
    def raiser():
        raise KeyError("early failure")

    def body():
        d = Deferred()
        d.addCallback(lambda _: raiser())
        d.callback(None)  # fails before anyone waits
        try:
            waitForDeferred(d)
        except KeyError as exc:
            return [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
        raise AssertionError("no exception")

    assert "raiser" in in_greenlet_now(body)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes need Python 3.11")
def test_cleaned_failure_keeps_the_traceback_text():
    def raiser():
        raise KeyError("cleaned")

    def body():
        d = Deferred()
        d.addCallback(lambda _: raiser())
        d.callback(None)
        # What a pickled (or cleaned) Failure looks like: frames as text, no traceback object.
        d.result.frames = [("raiser", __file__, 1, (), ())]
        d.result.tb = None
        try:
            waitForDeferred(d)
        except KeyError as exc:
            return exc
        raise AssertionError("no exception")

    exc = in_greenlet_now(body)
    assert any("raiser" in note for note in exc.__notes__)


def test_one_thousand_greenlets_random_order():
    deferreds = [Deferred() for _ in range(1000)]
    greenlets = [gevent.spawn(waitForDeferred, d) for d in deferreds]
    gevent.sleep(0)  # every greenlet is now waiting
    order = list(range(1000))
    random.shuffle(order)

    def fire_all():
        for i in order:
            deferreds[i].callback(i)
            if i % 100 == 0:
                gevent.sleep(0)  # interleave firing with waking

    gevent.spawn(fire_all)
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert [g.value for g in greenlets] == list(range(1000))


def test_timeout_cancels_and_raises_timeout_error():
    cancelled = []

    def body():
        d = Deferred(lambda d: cancelled.append(True))
        with pytest.raises(WaitTimeoutError, match=r"gave up after 0\.05 s") as info:
            waitForDeferred(d, timeout=0.05)
        return info.value, d

    exc, d = in_greenlet_now(body)
    assert isinstance(exc, TimeoutError)
    assert cancelled == [True]
    assert d.called  # failed with CancelledError, swallowed: nothing unhandled is left


def test_timeout_zero_on_fired_deferred_returns():
    assert in_greenlet_now(lambda: waitForDeferred(succeed(1), timeout=0)) == 1


def test_killing_the_waiter_cancels():
    d = Deferred()
    g = gevent.spawn(waitForDeferred, d)
    gevent.sleep(0.01)
    g.kill(timeout=5)
    assert d.called
    failures = []
    d.addErrback(failures.append)
    assert failures == []  # our own CancelledError was swallowed


def test_gevent_timeout_cancels():
    d = Deferred()

    def body():
        with gevent.Timeout(0.05, False):
            waitForDeferred(d)
        return "timed out"

    assert in_greenlet_now(body) == "timed out"
    assert d.called


def test_killing_the_waiter_without_cancel():
    d = Deferred()
    g = gevent.spawn(waitForDeferred, d, cancel_on_kill=False)
    gevent.sleep(0.01)
    g.kill(timeout=5)
    assert not d.called
    d.callback("later")
    results = []
    d.addCallback(results.append)
    assert results == ["later"]  # the result passed on down the chain


def test_cancel_failure_reaches_waiter_when_someone_else_cancels():
    d = Deferred()
    g = gevent.spawn(waitForDeferred, d)
    gevent.sleep(0.01)
    d.cancel()
    with pytest.raises(CancelledError):
        g.get(timeout=5)


# -- waitForGreenlet -------------------------------------------------------------------------------


def wait_result(d):
    return in_greenlet_now(waitForDeferred, d)


def test_wait_for_greenlet_value():
    g = gevent.spawn(lambda: gevent.sleep(0.01) or "done")
    assert wait_result(waitForGreenlet(g)) == "done"


def test_wait_for_dead_greenlet():
    g = gevent.spawn(lambda: "already")
    g.join()
    d = waitForGreenlet(g)
    assert d.called
    assert wait_result(d) == "already"


def test_wait_for_greenlet_failure_keeps_traceback():
    def explode():
        gevent.sleep(0.01)
        raise ZeroDivisionError("in greenlet")

    g = gevent.spawn(explode)
    d = waitForGreenlet(g)
    failures = []
    d.addErrback(failures.append)
    g.join(5)
    gevent.sleep(0.01)
    [failure] = failures
    assert failure.check(ZeroDivisionError)
    assert "explode" in [frame[0] for frame in failure.frames]


def test_wait_for_killed_greenlet():
    g = gevent.spawn(gevent.sleep, 30)
    d = waitForGreenlet(g)
    gevent.sleep(0.01)
    g.kill()
    with pytest.raises(GreenletKilledError, match="was killed"):
        wait_result(d)


def test_cancelling_deferred_kills_greenlet():
    g = gevent.spawn(gevent.sleep, 30)
    d = waitForGreenlet(g)
    gevent.sleep(0.01)
    d.cancel()
    g.join(5)
    assert g.dead
    with pytest.raises(CancelledError):
        wait_result(d)


def test_cancelling_deferred_without_killing():
    g = gevent.spawn(lambda: gevent.sleep(0.05) or "survived")
    d = waitForGreenlet(g, kill_on_cancel=False)
    d.cancel()
    d.addErrback(lambda f: None)
    assert g.get(timeout=5) == "survived"


def test_deferred_fires_from_the_hub():
    where = []
    g = gevent.spawn(lambda: 1)
    d = waitForGreenlet(g)
    d.addCallback(lambda _: where.append(gevent.getcurrent()))
    g.join()
    gevent.sleep(0.01)
    assert where == [gevent.get_hub()]


# -- deferToGreenlet and in_greenlet ---------------------------------------------------------


def test_defer_to_greenlet_runs_in_a_new_greenlet():
    caller = gevent.getcurrent()
    seen = []

    def work(a, b=0):
        seen.append(gevent.getcurrent())
        gevent.sleep(0.01)
        return a + b

    assert wait_result(deferToGreenlet(work, 1, b=2)) == 3
    assert seen[0] is not caller


def test_in_greenlet_on_a_method():
    class Service:
        def __init__(self):
            self.calls = []

        @in_greenlet
        def handle(self, value):
            """Handles a value, blocking."""
            gevent.sleep(0.01)
            self.calls.append(value)
            return value.upper()

    service = Service()
    d = service.handle("x")
    assert isinstance(d, Deferred)
    assert wait_result(d) == "X"
    assert service.calls == ["x"]
    assert Service.handle.__name__ == "handle"
    assert "blocking" in Service.handle.__doc__


def test_in_greenlet_failure_and_cancel():
    @in_greenlet
    def broken():
        raise RuntimeError("nope")

    with pytest.raises(RuntimeError, match="nope"):
        wait_result(broken())

    @in_greenlet
    def slow():
        gevent.sleep(30)

    d = slow()
    d.cancel()
    with pytest.raises(CancelledError):
        wait_result(d)


def test_greenlet_may_wait_on_deferred_of_another():
    @in_greenlet
    def producer():
        gevent.sleep(0.01)
        return "produced"

    @in_greenlet
    def consumer():
        return "got " + waitForDeferred(producer())

    assert wait_result(consumer()) == "got produced"


# -- misuse ------------------------------------------------------------------------------------


def test_wait_from_the_hub_raises_at_once():
    errors = []

    def in_hub():
        try:
            waitForDeferred(Deferred())
        except WrongContextError as exc:
            errors.append(str(exc))

    gevent.get_hub().loop.run_callback(in_hub)
    gevent.sleep(0.01)
    [message] = errors
    assert "called from the gevent hub" in message
    assert "gevent.spawn" in message and "deferToGreenlet" in message


def test_wrong_types():
    with pytest.raises(TypeError, match=r"waitForDeferred\(d\) expects a Deferred or a coroutine"):
        waitForDeferred(42)
    with pytest.raises(TypeError, match=r"timeout=\.\.\.\) expects None or a number"):
        waitForDeferred(Deferred(), timeout="soon")
    with pytest.raises(TypeError, match=r"timeout=\.\.\.\) expects None or a number"):
        waitForDeferred(Deferred(), timeout=-1)
    with pytest.raises(TypeError, match=r"reactor=\.\.\.\) expects a Twisted reactor"):
        waitForDeferred(Deferred(), reactor="epoll")
    with pytest.raises(TypeError, match=r"waitForGreenlet\(g\) expects a gevent.Greenlet"):
        waitForGreenlet(greenlet.greenlet(lambda: None))
    with pytest.raises(TypeError, match=r"deferToGreenlet\(f\) expects a callable"):
        deferToGreenlet(None)
    with pytest.raises(TypeError, match="in_greenlet expects a function"):
        in_greenlet(3)


def test_blocking_call_on_a_reactor_nobody_runs():
    from twisted.internet.epollreactor import EPollReactor

    with pytest.raises(ReactorStoppedError, match="is not running, so f would never be called"):
        in_greenlet_now(blockingCallFromGreenlet, EPollReactor(), len, "")
    with pytest.raises(TypeError, match=r"blockingCallFromGreenlet\(reactor=\.\.\.\) expects"):
        blockingCallFromGreenlet(None, len)
    with pytest.raises(TypeError, match=r"expects a callable f, got str"):
        blockingCallFromGreenlet(EPollReactor(), "len")


def test_failure_objects_pass_through_in_greenlet_results():
    # A greenlet returning a Failure instance is a value like any other for gevent, but a
    # Deferred treats it as a failure: Twisted's rule, kept.
    g = gevent.spawn(lambda: Failure(ValueError("as value")))
    with pytest.raises(ValueError):
        wait_result(waitForGreenlet(g))
