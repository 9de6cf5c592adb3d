"""The timed-call heap (gevent_reactor._timed_calls): Twisted's DelayedCall semantics on tuples."""

from __future__ import annotations

import time

from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred

from gevent_reactor import GeventReactor


def test_equal_times_fire_in_the_order_scheduled(reactor: GeventReactor, run_until) -> None:
    fired: list[int] = []
    for i in range(300):
        reactor.callLater(0, fired.append, i)
    run_until(reactor, lambda: len(fired) == 300)
    assert fired == list(range(300))


def test_calls_made_by_a_timed_call_wait_for_the_next_pass(
    reactor: GeventReactor, run_until
) -> None:
    # As ReactorBase: a callLater(0) made while timed calls run does not run in that same pass,
    # so calls already due go first.
    order: list[str] = []

    def first() -> None:
        order.append("first")
        reactor.callLater(0, order.append, "made by first")

    reactor.callLater(0, first)
    reactor.callLater(0, order.append, "second")
    run_until(reactor, lambda: len(order) == 3)
    assert order == ["first", "second", "made by first"]


def test_moved_sooner_fires_once_at_its_new_time(reactor: GeventReactor, run_until) -> None:
    fired: list[float] = []
    started = time.monotonic()
    call = reactor.callLater(0.4, lambda: fired.append(time.monotonic() - started))
    call.reset(0.05)  # sooner: a second heap entry; the first one is stale
    assert reactor.getDelayedCalls() == [call]
    done: Deferred[None] = Deferred()
    reactor.callLater(0.6, done.callback, None)
    run_until(reactor, done)
    assert len(fired) == 1, fired
    assert 0.04 <= fired[0] < 0.35


def test_sooner_then_later_fires_once(reactor: GeventReactor, run_until) -> None:
    fired: list[float] = []
    started = time.monotonic()
    call = reactor.callLater(0.5, lambda: fired.append(time.monotonic() - started))
    call.reset(0.05)  # sooner
    call.delay(0.1)  # and later again, from the new time: about 0.15 s
    call.delay(-0.02)  # and a little sooner: about 0.13 s
    assert reactor.getDelayedCalls() == [call]
    done: Deferred[None] = Deferred()
    reactor.callLater(0.8, done.callback, None)
    run_until(reactor, done)
    assert len(fired) == 1, fired
    assert 0.12 <= fired[0] < 0.45


def test_cancelled_calls_are_swept_out(reactor: GeventReactor, run_until) -> None:
    calls = [reactor.callLater(60 + i, lambda: None) for i in range(1000)]
    for call in calls[:900]:
        call.cancel()
    assert set(reactor.getDelayedCalls()) == set(calls[900:])
    done: Deferred[None] = Deferred()
    reactor.callLater(0, done.callback, None)
    run_until(reactor, done)
    # A pass of timed calls sweeps dead entries once they are most of the heap, as ReactorBase
    # does for cancelled calls: the heap does not keep the 900.
    assert len(reactor._calls._heap) == 100
    assert reactor.getDelayedCalls()[0].getTime() >= calls[900].getTime() - 1e-6


def test_a_failing_call_is_logged_and_the_rest_run(
    reactor: GeventReactor, run_until, logged_failures
) -> None:
    fired: list[str] = []

    def fail() -> None:
        raise ZeroDivisionError("timed call failed")

    reactor.callLater(0, fired.append, "before")
    reactor.callLater(0, fail)
    reactor.callLater(0, fired.append, "after")
    run_until(reactor, lambda: len(fired) == 2)
    assert fired == ["before", "after"]
    assert [f.type for f in logged_failures] == [ZeroDivisionError]


def test_calls_are_twisted_delayed_calls(reactor: GeventReactor) -> None:
    call = reactor.callLater(10, lambda: None)
    assert isinstance(call, DelayedCall)
    assert call.active()
    assert 9.0 < call.getTime() - reactor.seconds() <= 10.0
    call.cancel()
    assert reactor.getDelayedCalls() == []


def test_timeout_is_the_earliest_live_call(reactor: GeventReactor) -> None:
    soon = reactor.callLater(1, lambda: None)
    reactor.callLater(5, lambda: None)
    assert 0.5 < reactor.timeout() <= 1.0
    soon.cancel()
    assert 4.5 < reactor.timeout() <= 5.0


def test_the_loop_timer_states_follow_the_reactor(reactor: GeventReactor, run_until) -> None:
    from gevent_reactor._loop_timer import ArmState

    timer = reactor._timer
    seen: dict[str, object] = {}
    assert timer.state is ArmState.PAUSED  # not running: calls added arm nothing
    reactor.callLater(0.01, lambda: None)
    assert timer.state is ArmState.PAUSED

    def during_a_timed_call() -> None:
        seen["during"] = timer.state
        seen["later"] = reactor.callLater(30, lambda: None)
        seen["still"] = timer.state  # the pass arms once, at its end

    def after_the_pass() -> None:
        seen["after"] = (timer.state, timer.arm_before)

    reactor.callLater(0.02, during_a_timed_call)
    reactor.callLater(0.05, after_the_pass)
    run_until(reactor, lambda: "after" in seen, timeout=5)
    assert seen["during"] is ArmState.PAUSED
    assert seen["still"] is ArmState.PAUSED
    state, _ = seen["after"]  # in after_the_pass's own pass: paused again
    assert state is ArmState.PAUSED
    assert timer.state is ArmState.PAUSED  # stopped
    assert seen["later"] in reactor.getDelayedCalls()


def test_a_running_reactor_arms_for_its_earliest_call(reactor: GeventReactor, run_until) -> None:
    from gevent_reactor._loop_timer import ArmState

    timer = reactor._timer
    seen: list[object] = []

    def observe() -> None:
        # From a plain greenlet while the reactor runs: no pass of timed calls is running.
        seen.append((timer.state, timer.arm_before))
        far = reactor.callLater(60, lambda: None)
        seen.append((timer.state, timer.arm_before, far.getTime()))
        far.cancel()

    import gevent

    reactor.callWhenRunning(lambda: gevent.spawn_later(0.05, observe))
    run_until(reactor, lambda: len(seen) == 2, timeout=5)
    assert seen[0] == (ArmState.IDLE, float("inf"))  # nothing scheduled: the next call arms
    state, arm_before, when = seen[1]
    assert state is ArmState.ARMED and arm_before == when


def test_call_later_uses_the_reactors_clock_as_it_is_now(reactor: GeventReactor) -> None:
    # Twisted's own tests (test_internet.TimeTests) replace reactor.seconds on the instance.
    original = reactor.seconds
    reactor.seconds = lambda: 100.0  # type: ignore[method-assign]
    try:
        call = reactor.callLater(5, lambda: None)
        assert call.getTime() == 105.0
        assert call.seconds() == 100.0
    finally:
        reactor.seconds = original  # type: ignore[method-assign]
    call.cancel()
    assert reactor.getDelayedCalls() == []


def test_a_wake_up_keeps_the_timer_armed_for_an_unchanged_earliest_call(
    reactor: GeventReactor, run_until
) -> None:
    # Calls from threads run in a pass of their own; the earliest timed call is the same after
    # it, so the loop timer armed for that call stays.
    import threading

    import gevent

    timer = reactor._timer
    seen: dict[str, object] = {}

    def from_thread() -> None:
        # After this pass: from a greenlet, once the pass has armed the timer again.
        gevent.spawn(lambda: seen.setdefault("after", timer._watcher))

    def observe() -> None:
        seen["before"] = timer._watcher
        threading.Thread(target=reactor.callFromThread, args=(from_thread,)).start()

    def start() -> None:
        seen["call"] = reactor.callLater(60, lambda: None)
        gevent.spawn_later(0.05, observe)

    reactor.callWhenRunning(start)
    run_until(reactor, lambda: "after" in seen, timeout=5)
    assert seen["before"] is not None
    assert seen["after"] is seen["before"]
    assert reactor.getDelayedCalls() == [seen["call"]]


def test_calls_due_after_one_poll_share_one_zero_delay_timer(
    reactor: GeventReactor, run_until
) -> None:
    # A callLater(0) made by a timed call waits for one poll of the loop; a chain of them
    # starts the same zero-delay timer again instead of making one each time.
    timer = reactor._timer
    watchers: list[object] = []

    def step(n: int) -> None:
        if n:
            reactor.callLater(0, step, n - 1)
            reactor.callLater(0, lambda: watchers.append(timer._zero))

    reactor.callWhenRunning(reactor.callLater, 0, step, 5)
    run_until(reactor, lambda: len(watchers) == 5, timeout=5)
    assert watchers[0] is not None
    assert all(w is watchers[0] for w in watchers)
    assert timer._zero is None  # closed when the reactor stopped
