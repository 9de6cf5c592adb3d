"""Situation 1: GeventReactor runs on this thread's hub; everything happens in-loop."""

from __future__ import annotations

import random
import sys
import threading

import gevent
import greenlet
import pytest
from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred, succeed
from zope.interface import implementer

from gevent_deferred import (
    IHubReactor,
    ReactorStoppedError,
    WaitTimeoutError,
    WrongContextError,
    _reactor_links,
    blockingCallFromGreenlet,
    deferToGreenlet,
    in_greenlet,
    waitForDeferred,
    waitForGreenlet,
)

try:
    from gevent_reactor import GeventReactor
except ImportError as exc:  # the lead's package; these tests run once it imports
    pytest.skip(f"gevent_reactor.GeventReactor is not importable: {exc}", allow_module_level=True)

if IHubReactor.implementedBy(GeventReactor):
    HubReactor = GeventReactor
else:
    # gevent_reactor does not declare IHubReactor yet; the contract says it will. The reactor is
    # the real one, only the declaration is added here.
    @implementer(IHubReactor)
    class HubReactor(GeventReactor):
        pass


# Reactors from earlier tests are kept alive: with GEVENT_LOOP=libuv-cffi, a stopped GeventReactor
# garbage-collected while a later one runs has crashed the process (segfault or hang, reproduced
# without this package). Remove once gevent_reactor closes its watchers when it stops.
_finished_reactors: list = []


@pytest.fixture
def run_reactor(monkeypatch):
    """Run body(reactor) in a greenlet while a fresh GeventReactor runs in this thread."""

    def runner(body, timeout=10):
        reactor = HubReactor()
        _finished_reactors.append(reactor)
        # As after gevent_reactor.install(): the global reactor is this one.
        monkeypatch.setitem(sys.modules, "twisted.internet.reactor", reactor)
        out = {}

        def main():
            try:
                out["value"] = body(reactor)
            except BaseException as exc:
                out["error"] = exc
            finally:
                reactor.stop()

        reactor.callWhenRunning(gevent.spawn, main)
        safety = reactor.callLater(timeout, reactor.stop)
        reactor.run(installSignalHandlers=False)
        if safety.active():
            safety.cancel()
        assert out, "the test body did not finish in time"
        if "error" in out:
            raise out["error"]
        return out["value"]

    return runner


def test_wait_for_a_deferred_fired_by_the_reactor(run_reactor):
    def body(reactor):
        d = task.deferLater(reactor, 0.01, lambda: "in-loop")
        link = _reactor_links.known_link(reactor)
        return waitForDeferred(d), threading.get_ident(), link

    value, ident, link = run_reactor(body)
    assert value == "in-loop"
    assert ident == threading.get_ident()
    # No cross-thread machinery was involved: the reactor's link (which only keeps the wait for
    # the shutdown sweep) knows no reactor thread and no longer holds the wait.
    assert link is None or (link.thread_ident is None and not link.pending)


def test_already_fired_returns_without_switching(run_reactor):
    def body(reactor):
        switches = []
        previous = greenlet.settrace(lambda event, args: switches.append(event))
        try:
            value = waitForDeferred(succeed("now"))
        finally:
            greenlet.settrace(previous)
        return value, switches

    assert run_reactor(body) == ("now", [])


def test_one_thousand_greenlets_random_order(run_reactor):
    def body(reactor):
        deferreds = [Deferred() for _ in range(1000)]
        greenlets = [gevent.spawn(waitForDeferred, d) for d in deferreds]
        order = list(range(1000))
        random.shuffle(order)
        for i in order:
            reactor.callLater(random.random() * 0.05, deferreds[i].callback, i)
        gevent.joinall(greenlets, timeout=10, raise_error=True)
        return [g.value for g in greenlets]

    assert run_reactor(body) == list(range(1000))


def test_blocking_call_runs_f_in_the_reactor_context(run_reactor):
    def body(reactor):
        me = gevent.getcurrent()
        where = []

        def f(x):
            where.append(gevent.getcurrent())
            return task.deferLater(reactor, 0.01, lambda: x * 2)

        return blockingCallFromGreenlet(reactor, f, 21), where[0] is not me

    assert run_reactor(body) == (42, True)


def test_waiting_in_the_reactor_context_raises_at_once(run_reactor):
    def body(reactor):
        outcome = Deferred()

        def in_context():
            try:
                waitForDeferred(Deferred())
            except WrongContextError as exc:
                outcome.callback(str(exc))
            except BaseException as exc:
                outcome.callback(f"wrong exception {exc!r}")

        reactor.callLater(0, in_context)
        return waitForDeferred(outcome, timeout=5)

    message = run_reactor(body)
    assert "reactor's context" in message and "deferToGreenlet" in message


def test_in_greenlet_lets_a_timed_call_block(run_reactor):
    def body(reactor):
        @in_greenlet
        def handler(x):
            gevent.sleep(0.01)
            return waitForDeferred(task.deferLater(reactor, 0.01, lambda: x + 1))

        holder = []
        reactor.callLater(0, lambda: holder.append(handler(1)))
        gevent.sleep(0.005)
        return waitForDeferred(holder[0], timeout=5)

    assert run_reactor(body) == 2


def test_defer_to_greenlet_and_wait_for_greenlet_in_loop(run_reactor):
    def body(reactor):
        d1 = deferToGreenlet(lambda: gevent.sleep(0.01) or threading.get_ident())
        g = gevent.spawn(lambda: "spawned")
        d2 = waitForGreenlet(g)
        return waitForDeferred(d1), waitForDeferred(d2)

    assert run_reactor(body) == (threading.get_ident(), "spawned")


def test_timeout_and_kill_cancel_in_loop(run_reactor):
    def body(reactor):
        d1 = Deferred()
        with pytest.raises(WaitTimeoutError):
            waitForDeferred(d1, timeout=0.02)
        d2 = Deferred()
        g = gevent.spawn(waitForDeferred, d2)
        gevent.sleep(0.01)
        g.kill()
        g3 = gevent.spawn(gevent.sleep, 30)
        d3 = waitForGreenlet(g3)
        d3.cancel()
        g3.join(5)
        with pytest.raises(CancelledError):
            waitForDeferred(d3)
        return d1.called, d2.called, g3.dead

    assert run_reactor(body) == (True, True, True)


def test_blocking_call_from_the_hub_raises(run_reactor):
    def body(reactor):
        errors = []

        def in_hub():
            try:
                blockingCallFromGreenlet(reactor, lambda: 1)
            except WrongContextError as exc:
                errors.append(str(exc))

        gevent.get_hub().loop.run_callback(in_hub)
        gevent.sleep(0.01)
        return errors

    [message] = run_reactor(body)
    assert "called from the gevent hub" in message


def test_pending_in_loop_waits_fail_when_the_reactor_stops(run_reactor):
    """crochet's rule, in-loop too: a wait the reactor can no longer answer fails at shutdown
    (before, it stayed pending for ever)."""
    outcomes: dict[str, object] = {}

    def waiting(name, wait):
        try:
            outcomes[name] = ("returned", wait())
        except BaseException as exc:
            outcomes[name] = exc

    def body(reactor):
        never = Deferred()
        waiters = [
            gevent.spawn(waiting, "waitForDeferred", lambda: waitForDeferred(never)),
            gevent.spawn(
                waiting,
                "blockingCallFromGreenlet",
                lambda: blockingCallFromGreenlet(reactor, Deferred),
            ),
        ]
        gevent.sleep(0.05)  # both are waiting now
        assert not outcomes, outcomes
        return waiters

    waiters = run_reactor(body)
    gevent.joinall(waiters, timeout=5)
    assert set(outcomes) == {"waitForDeferred", "blockingCallFromGreenlet"}, outcomes
    for name, outcome in outcomes.items():
        assert isinstance(outcome, ReactorStoppedError), (name, outcome)
