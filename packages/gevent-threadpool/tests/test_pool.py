"""GeventThreadPool on its own (no reactor), in both placements: cross-thread and in-loop."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import gevent
import gevent.event
import pytest
from greenlet import GreenletExit
from twisted.python import context, log
from twisted.python.failure import Failure

from gevent_deferred import HubThread, shared_hub_thread
from gevent_threadpool import (
    GeventThreadPool,
    GreenletContextTracker,
    PoolKilledError,
    install_greenlet_context_tracker,
)


def collect(results: list[Any]) -> Any:
    def on_result(ok: bool, value: Any) -> None:
        results.append((ok, value))

    return on_result


def test_positional_and_keyword_arguments(make_pool, wait_until) -> None:
    """The 2013 original dropped the arguments; every form must reach the function."""
    pool = make_pool(0, 2)
    pool.start()
    results: list[Any] = []
    pool.callInThreadWithCallback(collect(results), lambda *a, **k: (a, k), 1, 2, c=3)
    pool.callInThreadWithCallback(collect(results), lambda func=None: func, func="kw named func")
    pool.callInThread(results.append, "plain")
    wait_until(lambda: len(results) == 3)
    assert (True, ((1, 2), {"c": 3})) in results
    assert (True, "kw named func") in results
    assert "plain" in results


def test_placement(mode: str, make_pool) -> None:
    pool = make_pool(0, 1)
    assert pool.in_loop is None
    pool.start()
    assert pool.in_loop is (mode == "in-loop")


def test_default_placement_without_gevent_reactor_is_cross_thread(wait_until) -> None:
    """A reactor that is not a GeventReactor (here Twisted's select reactor): workers run in the
    shared helper hub thread."""
    from twisted.internet.selectreactor import SelectReactor

    pool = GeventThreadPool(0, 1, reactor=SelectReactor())
    pool.start()
    try:
        assert pool.in_loop is False
        idents: list[int] = []
        pool.callInThread(lambda: idents.append(threading.get_ident()))
        wait_until(lambda: idents)
        assert idents == [shared_hub_thread().thread_ident]
    finally:
        pool.stop()


def test_at_most_max_at_once_in_fifo_order(make_pool, wait_until) -> None:
    pool = make_pool(0, 3)
    started: list[int] = []
    running = [0]
    peak = [0]

    def work(i: int) -> None:
        started.append(i)
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        gevent.sleep(0.005)
        running[0] -= 1

    pool.start()
    for i in range(12):
        pool.callInThread(work, i)
    wait_until(lambda: len(started) == 12 and running[0] == 0)
    assert peak[0] == 3
    assert started == list(range(12))
    assert pool.workers == 3


def test_work_before_start_gets_workers(make_pool, wait_until) -> None:
    """Twisted's MemoryBackedTests, for greenlets: enough workers for the backlog, up to max."""
    done: list[int] = []
    small = make_pool(0, 10)
    for i in range(5):
        small.callInThread(done.append, i)
    assert small.workers == 0 and small._queue.qsize() == 5
    small.start()
    assert len(small.threads) == 5
    big = make_pool(0, 10)
    for i in range(50):
        big.callInThread(done.append, 100 + i)
    big.start()
    assert len(big.threads) == 10
    wait_until(lambda: len(done) == 55)
    assert [d for d in done if d < 100] == list(range(5))
    assert [d for d in done if d >= 100] == [100 + i for i in range(50)]  # FIFO


def test_start_from_a_thread_without_a_hub(wait_until) -> None:
    """start() and callInThread from a plain thread that has no gevent hub at all."""
    ran: list[str] = []
    pools: list[GeventThreadPool] = []

    def plain_thread() -> None:
        pool = GeventThreadPool(0, 2)
        pools.append(pool)
        pool.callInThread(ran.append, "queued before start")
        pool.start()
        pool.callInThread(ran.append, "after start")

    thread = threading.Thread(target=plain_thread)
    thread.start()
    thread.join(5)
    wait_until(lambda: len(ran) == 2)
    assert ran == ["queued before start", "after start"]
    assert pools[0].in_loop is False
    pools[0].stop()


def test_min_workers_after_start(make_pool, wait_until) -> None:
    pool = make_pool(3, 10)
    pool.start()
    assert len(pool.threads) == 3
    wait_until(lambda: len(pool.waiters) == 3)
    assert pool.working == []


def test_worker_states(make_pool, wait_until) -> None:
    pool = make_pool(0, 1)
    pool.start()
    assert (pool.workers, pool.waiters, pool.working) == (0, [], [])
    release: dict[str, Any] = {}
    working = threading.Event()

    def work() -> None:
        release["event"] = event = gevent.event.Event()
        working.set()
        event.wait(5)

    pool.callInThread(work)
    wait_until(working.is_set)
    assert (pool.workers, len(pool.waiters), len(pool.working)) == (1, 0, 1)
    pool.callInThread(lambda: None)
    assert pool.q.qsize() == 1
    if pool.in_loop:
        release["event"].set()
    else:
        shared_hub_thread().submit(release["event"].set)
    wait_until(lambda: len(pool.waiters) == 1)
    assert (pool.workers, len(pool.working), pool.q.qsize()) == (1, 0, 0)


def test_blocked_workers_do_not_stall_new_work(make_pool, wait_until) -> None:
    """Twisted's RaceConditionTests.test_synchronization with a gevent Event: spare capacity
    runs the item that releases the blocked ones."""
    pool = make_pool(0, 10)
    pool.start()
    shared: dict[str, Any] = {}
    released: list[int] = []
    pool.callInThread(lambda: shared.setdefault("event", gevent.event.Event()))
    wait_until(lambda: "event" in shared)

    def blocked(i: int) -> None:
        shared["event"].wait(5)
        released.append(i)

    for i in range(3):
        pool.callInThread(blocked, i)
    pool.callInThread(lambda: shared["event"].set())
    wait_until(lambda: len(released) == 3, timeout=3)


def test_call_in_thread_never_blocks_from_the_hub(make_pool, wait_until) -> None:
    """callInThread from a loop callback (the hub, where blocking raises) queues and returns."""
    pool = make_pool(0, 2)
    pool.start()
    ran: list[str] = []
    called = gevent.event.Event()

    def in_hub() -> None:
        assert gevent.getcurrent() is gevent.get_hub()
        pool.callInThread(ran.append, "from hub")
        called.set()

    gevent.get_hub().loop.run_callback(in_hub)
    assert called.wait(5)
    wait_until(lambda: ran == ["from hub"])


def test_call_in_thread_from_other_os_threads(make_pool, wait_until) -> None:
    """Work queued from real threads reaches the pool's hub (through its async watcher)."""
    pool = make_pool(0, 4)
    pool.start()
    ran: list[int] = []
    idents: set[int] = set()

    def work(i: int) -> None:
        ran.append(i)
        idents.add(threading.get_ident())

    def producer(base: int) -> None:
        for i in range(50):
            pool.callInThread(work, base + i)

    producers = [threading.Thread(target=producer, args=(n * 100,)) for n in range(4)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join(5)
    wait_until(lambda: len(ran) == 200)
    assert sorted(ran) == sorted(n * 100 + i for n in range(4) for i in range(50))
    expected = threading.get_ident() if pool.in_loop else shared_hub_thread().thread_ident
    assert idents == {expected}


def test_when_stopped(make_pool, wait_until) -> None:
    from twisted.internet.epollreactor import EPollReactor

    reactor = EPollReactor()
    pool = make_pool(0, 2)
    pool.start()
    pool.callInThread(gevent.sleep, 0.05)
    fired: list[object] = []
    pool.when_stopped(reactor).addCallback(fired.append)
    pool.stop(wait=False)

    def done() -> bool:
        reactor.runUntilCurrent()  # runs the callFromThread calls queued by the pool
        return bool(fired)

    wait_until(done)
    assert fired == [None] and pool.workers == 0
    assert pool.when_stopped(reactor).called  # already stopped: fires at once


def test_nested_call_in_thread_from_a_worker(make_pool, wait_until) -> None:
    pool = make_pool(0, 1)
    pool.start()
    ran: list[int] = []
    pool.callInThread(lambda: (ran.append(1), pool.callInThread(ran.append, 2)))
    wait_until(lambda: ran == [1, 2])


def test_stop_from_the_hub_returns_at_once(make_pool, wait_until) -> None:
    pool = make_pool(0, 2)
    pool.start()
    finished: list[str] = []
    pool.callInThread(lambda: (gevent.sleep(0.3), finished.append("work")))
    wait_until(lambda: pool.working)
    took: list[float] = []

    def in_hub() -> None:
        t0 = time.monotonic()
        pool.stop()
        took.append(time.monotonic() - t0)

    gevent.get_hub().loop.run_callback(in_hub)
    wait_until(lambda: took)
    assert took[0] < 0.1
    assert finished == []  # stop() did not wait for it
    wait_until(lambda: finished == ["work"] and pool.workers == 0)


def test_stop_in_loop_from_its_own_thread_never_waits(wait_until) -> None:
    pool = GeventThreadPool(0, 2, hub=gevent.get_hub())
    pool.start()
    finished: list[str] = []
    pool.callInThread(lambda: (gevent.sleep(0.2), finished.append("work")))
    wait_until(lambda: pool.working)
    t0 = time.monotonic()
    pool.stop()
    assert time.monotonic() - t0 < 0.1
    wait_until(lambda: finished == ["work"] and pool.workers == 0)


def test_stop_runs_queued_work_then_ends_workers(make_pool, wait_until) -> None:
    """As Twisted's pool: work queued before stop() still runs; later work is ignored."""
    pool = make_pool(0, 1)
    pool.start()
    ran: list[int] = []
    for i in range(5):
        pool.callInThread(lambda i=i: (gevent.sleep(0.001), ran.append(i)))
    pool.stop(wait=False)
    pool.callInThread(ran.append, 99)
    wait_until(lambda: pool.workers == 0)
    assert ran == [0, 1, 2, 3, 4]
    assert pool.joined and not pool.started


def test_stop_from_a_plain_thread_waits_like_twisted() -> None:
    pool = GeventThreadPool(0, 2, hub=shared_hub_thread())
    pool.start()
    finished: list[str] = []
    pool.callInThread(lambda: (gevent.sleep(0.2), finished.append("work")))
    stopped: list[list[str]] = []

    def stopper() -> None:  # a real thread without a gevent hub
        pool.stop()
        stopped.append(list(finished))

    thread = threading.Thread(target=stopper)
    thread.start()
    thread.join(5)
    assert stopped == [["work"]]


def test_stop_from_a_greenlet_blocks_only_that_greenlet(wait_until) -> None:
    pool = GeventThreadPool(0, 2, hub=shared_hub_thread())
    pool.start()
    pool.callInThread(gevent.sleep, 0.2)
    wait_until(lambda: pool.working)
    ticks = [0]

    def ticker() -> None:
        while True:
            ticks[0] += 1
            gevent.sleep(0.01)

    other = gevent.spawn(ticker)
    try:
        t0 = time.monotonic()
        pool.stop()
        assert time.monotonic() - t0 >= 0.1
        assert ticks[0] >= 5  # this thread's other greenlets ran while stop() waited
        assert pool.workers == 0
    finally:
        other.kill()


def test_errors_reach_twisted_log(make_pool, wait_until, logged_errors) -> None:
    class WorkError(Exception):
        pass

    def fail() -> None:
        raise WorkError("boom")

    pool = make_pool(0, 1)
    pool.callInThread(fail)  # before start: runs, and is logged, after start
    results: list[Any] = []
    pool.callInThreadWithCallback(collect(results), fail)
    pool.start()
    wait_until(lambda: results and logged_errors)
    (ok, failure) = results[0]
    assert ok is False and isinstance(failure, Failure) and failure.check(WorkError)
    assert len(logged_errors) == 1  # onResult got the second one; only the first is logged
    assert logged_errors[0]["failure"].check(WorkError)


def test_error_in_on_result_is_logged(make_pool, wait_until, logged_errors) -> None:
    class ResultError(Exception):
        pass

    def on_result(ok: bool, value: Any) -> None:
        raise ResultError()

    pool = make_pool(0, 1)
    pool.start()
    after: list[str] = []
    pool.callInThreadWithCallback(on_result, lambda: None)
    pool.callInThread(after.append, "next")  # the worker survives
    wait_until(lambda: after and logged_errors)
    assert logged_errors[0]["failure"].check(ResultError)
    assert "onResult" in logged_errors[0]["why"]


def test_context_propagates_per_greenlet(make_pool, wait_until) -> None:
    """Twisted's context: each work item (and its onResult) sees the caller's context, even
    when items interleave on one hub by blocking cooperatively."""
    pool = make_pool(0, 10)
    pool.start()
    seen: list[tuple[str, Any, Any]] = []

    def work(name: str) -> Any:
        before = context.get("request")
        gevent.sleep(0.02)  # the other items run and push their own contexts meanwhile
        return (before, context.get("request"))

    def on_result(ok: bool, value: Any) -> None:
        seen.append((context.get("request"), value[0], value[1]))

    for name in ("a", "b", "c"):
        context.call({"request": name}, pool.callInThreadWithCallback, on_result, work, name)
    wait_until(lambda: len(seen) == 3)
    assert sorted(seen) == [("a", "a", "a"), ("b", "b", "b"), ("c", "c", "c")]
    assert context.get("request") is None


def test_greenlet_context_tracker_install_is_idempotent() -> None:
    assert install_greenlet_context_tracker()
    tracker = context.theContextTracker
    assert isinstance(tracker, GreenletContextTracker)
    assert install_greenlet_context_tracker()
    assert context.theContextTracker is tracker
    ours = context.call({"x": 1}, lambda: context.get("x"))
    other = gevent.spawn(lambda: context.call({"x": 2}, context.get, "x")).get(timeout=5)
    assert (ours, other, context.get("x")) == (1, 2, None)


def test_adjust_pool_size(make_pool, wait_until) -> None:
    pool = make_pool(2, 5)
    pool.adjustPoolsize(3, 6)
    assert (pool.min, pool.max, pool.workers) == (3, 6, 0)  # not started: sizes only
    pool.start()
    assert pool.workers == 3
    pool.adjustPoolsize(4)
    assert pool.workers == 4
    wait_until(lambda: len(pool.waiters) == 4)
    pool.adjustPoolsize(0, 1)
    wait_until(lambda: pool.workers == 1)
    pool.startAWorker()
    assert pool.workers == 1  # max is 1
    pool.adjustPoolsize(0, 3)
    pool.startAWorker()
    assert pool.workers == 2
    pool.stopAWorker()
    wait_until(lambda: pool.workers == 1)


def test_kill(make_pool, wait_until) -> None:
    pool = make_pool(0, 1)
    pool.start()
    results: list[Any] = []
    started = threading.Event()
    pool.callInThreadWithCallback(collect(results), lambda: (started.set(), gevent.sleep(30)))
    pool.callInThreadWithCallback(collect(results), lambda: "never")
    wait_until(started.is_set)
    pool.kill()
    wait_until(lambda: len(results) == 2 and pool.workers == 0)
    kinds = {type(value.value) for ok, value in results if not ok}
    assert kinds == {GreenletExit, PoolKilledError}


def test_restart_after_stop(make_pool, wait_until) -> None:
    pool = make_pool(0, 2)
    pool.start()
    ran: list[int] = []
    pool.callInThread(ran.append, 1)
    wait_until(lambda: ran == [1])
    pool.stop(wait=False)
    wait_until(lambda: pool.workers == 0)
    pool.start()
    pool.callInThread(ran.append, 2)
    wait_until(lambda: ran == [1, 2])


def test_dump_stats_logs(make_pool) -> None:
    messages: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        messages.append(" ".join(map(str, event.get("message", ()))))

    pool = make_pool(0, 1)
    log.addObserver(observer)
    try:
        pool.dumpStats()
    finally:
        log.removeObserver(observer)
    assert [m.split(":")[0] for m in messages] == ["waiters", "workers", "total"]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "words"),
    [
        ((-1, 5), {}, ValueError, "minthreads"),
        ((1, "5"), {}, ValueError, "maxthreads"),
        ((6, 5), {}, ValueError, "must not exceed"),
        ((1, 5, 3), {}, TypeError, "name"),
        ((), {"hub": "hub"}, TypeError, "hub"),
        ((), {"reactor": object()}, TypeError, "reactor"),
    ],
)
def test_bad_constructor_arguments(args, kwargs, error, words) -> None:
    with pytest.raises(error, match=words):
        GeventThreadPool(*args, **kwargs)


def test_bad_call_arguments() -> None:
    pool = GeventThreadPool(0, 1)
    with pytest.raises(TypeError, match="callable func, got 42"):
        pool.callInThread(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable onResult"):
        pool.callInThreadWithCallback("nope", print)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="maxthreads"):
        pool.adjustPoolsize(maxthreads=-1)
    with pytest.raises(
        TypeError, match=r"when_stopped\(reactor\) expects a Twisted reactor \(with"
    ):
        pool.when_stopped(None)


def test_foreign_hub_is_rejected_at_start() -> None:
    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.append(gevent.get_hub()))
    thread.start()
    thread.join(5)
    pool = GeventThreadPool(0, 1, hub=other[0])
    with pytest.raises(ValueError, match="not the hub of the thread calling start"):
        pool.start()


def test_private_hub_thread(wait_until) -> None:
    hub_thread = HubThread(name="test-private-hub")
    pool = GeventThreadPool(0, 2, hub=hub_thread)
    pool.start()
    try:
        idents: list[int] = []
        pool.callInThread(lambda: idents.append(threading.get_ident()))
        wait_until(lambda: idents)
        assert idents == [hub_thread.thread_ident]
    finally:
        pool.stop()
        hub_thread.stop()


def test_pickle_keeps_sizes() -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(GeventThreadPool(3, 7, hub=gevent.get_hub())))
    assert (copy.min, copy.max, copy.started) == (3, 7, False)


def test_ten_thousand_sleepers_on_one_thread(make_pool, wait_until) -> None:
    """The case that makes users pick it: 10,000 tasks that each sleep 0.1 s, all at once."""
    pool = make_pool(0, 10000)
    pool.start()
    done = [0]
    idents: set[int] = set()

    def task() -> None:
        gevent.sleep(0.1)
        idents.add(threading.get_ident())
        done[0] += 1

    t0 = time.monotonic()
    for _ in range(10000):
        pool.callInThread(task)
    wait_until(lambda: done[0] == 10000, timeout=20)
    assert time.monotonic() - t0 < 10  # serially it would take 1000 s; typically about 0.5 s
    assert len(idents) == 1


_AFTER_PATCH_ALL = textwrap.dedent(
    """
    from gevent import monkey; monkey.patch_all()
    import faulthandler, threading
    from gevent.monkey import get_original
    from gevent_threadpool import GeventThreadPool
    # A hung child reports where it hung and exits, instead of costing the whole timeout.
    faulthandler.dump_traceback_later(15, exit=True)
    real_ident = get_original("_thread", "get_ident")
    pool = GeventThreadPool(0, 4)
    pool.start()
    got = []
    done = threading.Event()
    pool.callInThreadWithCallback(
        lambda ok, v: (got.append((ok, v)), done.set()), lambda a, b=0: (a + b, real_ident()),
        1, b=2)
    assert done.wait(5), "no result"
    ok, (value, ident) = got[0]
    assert ok and value == 3 and ident != real_ident(), got
    pool.stop()
    print("OK", pool.in_loop)
    """
)


@pytest.mark.timeout(600)
def test_after_patch_all_a_first_hub_racing_the_helper_hub_never_hangs() -> None:
    """The main thread creates its first hub (in ``done.wait``) while the helper thread creates
    its own. On libuv that race once corrupted the main loop (it spun inside libuv for ever, about
    one run in ten); 32 runs, four at a time so that they also load the machine, must all pass."""
    runs, at_once = 32, 4
    failures: list[str] = []
    for _ in range(runs // at_once):
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _AFTER_PATCH_ALL],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(at_once)
        ]
        for child in children:
            out, err = child.communicate(timeout=60)
            if child.returncode != 0 or out.split() != ["OK", "False"]:
                failures.append(f"rc={child.returncode} out={out!r} err={err[-2000:]}")
    assert not failures, f"{len(failures)} of {runs} runs failed; first: {failures[0]}"


def test_after_patch_all_workers_stay_on_a_real_helper_thread() -> None:
    script = textwrap.dedent(
        """
        from gevent import monkey; monkey.patch_all()
        import threading
        from gevent.monkey import get_original
        from gevent_threadpool import GeventThreadPool
        real_ident = get_original("_thread", "get_ident")
        pool = GeventThreadPool(0, 4)
        pool.start()
        got = []
        done = threading.Event()
        pool.callInThreadWithCallback(
            lambda ok, v: (got.append((ok, v)), done.set()), lambda a, b=0: (a + b, real_ident()),
            1, b=2)
        assert done.wait(5), "no result"
        ok, (value, ident) = got[0]
        assert ok and value == 3 and ident != real_ident(), got
        pool.stop()
        print("OK", pool.in_loop)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["OK", "False"]
