"""
The in-process scenarios, one process per subject and scenario: ``inproc.py SUBJECT SCENARIO SECONDS``.

Prints one JSON line: ``{"ops": N, "seconds": wall, "cpu": cpu_seconds, "unit": ...}``.

- ``calllater``: ``callLater`` churn. A population of 1,000 far-future calls is kept; each step
  schedules 10 more and cancels the 10 oldest, and schedules 10 ``callLater(0)`` calls whose firing
  drives the next step. Unit: calls scheduled (20 per step; 10 cancelled, 10 fired). Pure gevent:
  the same with the loop's timer watchers.
- ``thread_twisted`` / ``thread_gevent``: ``deferToThread`` round trips, one at a time, through
  Twisted's ThreadPool or a ``GeventThreadPool`` (``use_gevent_threadpool``). The loop is
  ``bench_threadpool.child_rate`` (reused, with a ``make`` that knows every subject). Pure gevent:
  ``hub.threadpool.spawn(f).get()``.
- ``wfd``: ``gevent_deferred.waitForDeferred`` round trips, reusing ``bench_deferred``: on
  GeventReactor a greenlet waits for a Deferred fired by ``callLater(0)`` (``l-waitForDeferred``);
  on the other reactors, which cannot run on the greenlet's hub, the reactor runs in a
  ``ReactorThread`` and the greenlet waits for a coroutine run there (``x-waitForDeferred``). Pure
  gevent: an ``AsyncResult`` set by a loop callback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from subjects import install, use_source_path  # noqa: E402

STEP_CALLS = 10
POPULATION = 1000
# Far-future delays, varied so that the heap does real work; precomputed so that every subject
# pays the same for them.
DELAYS = [5.0 + (i * 7919 % 1000) / 200.0 for i in range(4096)]


def noop() -> None:
    pass


def calllater_twisted(reactor: Any, seconds: float) -> tuple[int, float]:
    call_later = reactor.callLater
    pending: deque[Any] = deque(call_later(DELAYS[i], noop) for i in range(POPULATION))
    state = {"steps": 0, "fired": 0, "t0": 0.0, "end": 0.0, "i": 0}
    result: dict[str, float] = {}

    def tick() -> None:
        state["fired"] += 1
        if state["fired"] == STEP_CALLS:
            step()

    def step() -> None:
        state["fired"] = 0
        state["steps"] += 1
        i = state["i"]
        for k in range(STEP_CALLS):
            pending.append(call_later(DELAYS[(i + k) & 4095], noop))
            pending.popleft().cancel()
        state["i"] = i + STEP_CALLS
        if state["steps"] & 63 == 0 and time.perf_counter() >= state["end"]:
            result["elapsed"] = time.perf_counter() - state["t0"]
            result["steps"] = state["steps"]
            for call in pending:
                call.cancel()
            reactor.stop()
            return
        for _ in range(STEP_CALLS):
            call_later(0, tick)

    def start() -> None:
        state["t0"] = time.perf_counter()
        state["end"] = state["t0"] + seconds
        step()

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    return result["steps"] * 2 * STEP_CALLS, result["elapsed"]


def calllater_gevent(seconds: float) -> tuple[int, float]:
    import gevent

    loop = gevent.get_hub().loop
    timer = loop.timer

    def later(delay: float, fn: Any) -> Any:
        watcher = timer(delay)
        watcher.start(fn)
        return watcher

    pending: deque[Any] = deque(later(DELAYS[i], noop) for i in range(POPULATION))
    # Fired watchers are closed explicitly: libuv crashes on watchers the garbage collector frees
    # while the loop runs.
    fired: list[Any] = []
    state = {"steps": 0, "fired": 0, "t0": 0.0, "end": 0.0, "i": 0}
    done = gevent.event.Event()
    result: dict[str, float] = {}

    def tick() -> None:
        state["fired"] += 1
        if state["fired"] == STEP_CALLS:
            step()

    def step() -> None:
        state["fired"] = 0
        state["steps"] += 1
        for watcher in fired:
            watcher.close()
        fired.clear()
        i = state["i"]
        for k in range(STEP_CALLS):
            pending.append(later(DELAYS[(i + k) & 4095], noop))
            old = pending.popleft()
            old.stop()
            old.close()
        state["i"] = i + STEP_CALLS
        if state["steps"] & 63 == 0 and time.perf_counter() >= state["end"]:
            result["elapsed"] = time.perf_counter() - state["t0"]
            result["steps"] = state["steps"]
            for watcher in pending:
                watcher.stop()
                watcher.close()
            done.set()
            return
        for _ in range(STEP_CALLS):
            fired.append(later(0.0, tick))

    state["t0"] = time.perf_counter()
    state["end"] = state["t0"] + seconds
    loop.run_callback(step)
    done.wait()
    return result["steps"] * 2 * STEP_CALLS, result["elapsed"]


def thread_rate(subject: str, pool_kind: str, seconds: float) -> tuple[int, float]:
    if subject == "puregevent":
        import gevent
        from bench_deferred import timed_loop

        pool = gevent.get_hub().threadpool
        return timed_loop(seconds, lambda: pool.spawn(int).get())

    import bench_threadpool

    reactor = install(subject)

    def make(_name: str) -> tuple[Any, Any]:
        if pool_kind == "twisted":
            return reactor, reactor.getThreadPool()
        from gevent_threadpool import GeventThreadPool, use_gevent_threadpool

        hub = reactor.hub if subject == "gevent" else None
        pool = GeventThreadPool(0, 1000, hub=hub, reactor=reactor)
        use_gevent_threadpool(reactor, pool)
        return reactor, pool

    bench_threadpool.make = make
    rate = bench_threadpool.child_rate(f"{pool_kind}@{subject}", "roundtrip", seconds)["rate"]
    return int(rate * seconds), seconds


def wfd_rate(subject: str, seconds: float) -> tuple[int, float]:
    import bench_deferred

    if subject == "puregevent":
        import gevent
        from gevent.event import AsyncResult

        run_callback = gevent.get_hub().loop.run_callback

        def one() -> Any:
            result = AsyncResult()
            run_callback(result.set, 1)
            return result.get()

        return gevent.spawn(bench_deferred.timed_loop, seconds, one).get()
    if subject == "gevent":
        return bench_deferred.bench_l("l-waitForDeferred", seconds)

    def reactor_thread() -> tuple[Any, Any]:
        from gevent_deferred import ReactorThread

        if subject == "epoll":
            from twisted.internet.epollreactor import EPollReactor

            reactor: Any = EPollReactor()
        elif subject == "select":
            from twisted.internet.selectreactor import SelectReactor

            reactor = SelectReactor()
        else:
            import asyncio

            from twisted.internet.asyncioreactor import AsyncioSelectorReactor

            if subject == "uvloop":
                import uvloop

                loop = uvloop.new_event_loop()
            else:
                loop = asyncio.new_event_loop()
            reactor = AsyncioSelectorReactor(loop)
        return reactor, ReactorThread(reactor).start()

    bench_deferred.epoll_thread = reactor_thread
    return bench_deferred.bench_x("x-waitForDeferred", seconds)


def main() -> None:
    subject, scenario, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    use_source_path()
    cpu0 = time.process_time()
    if scenario == "calllater":
        if subject == "puregevent":
            import gevent.event  # noqa: F401

            ops, elapsed = calllater_gevent(seconds)
        else:
            ops, elapsed = calllater_twisted(install(subject), seconds)
        unit = "calls scheduled/s"
    elif scenario in ("thread_twisted", "thread_gevent"):
        ops, elapsed = thread_rate(subject, scenario.split("_")[1], seconds)
        unit = "round trips/s"
    elif scenario == "wfd":
        ops, elapsed = wfd_rate(subject, seconds)
        unit = "round trips/s"
    else:
        sys.exit(f"unknown scenario {scenario!r}")
    cpu = time.process_time() - cpu0
    sys.stdout.write(json.dumps({"ops": ops, "seconds": elapsed, "cpu": cpu, "unit": unit}) + "\n")


if __name__ == "__main__":
    main()
