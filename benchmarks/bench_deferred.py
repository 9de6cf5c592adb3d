"""Greenlets and Deferreds: round trips per second, and a 10,000-greenlet fan-out.

Subjects (each measured in a fresh child process; rounds interleaved; the table gives medians):

Situation 2, Twisted's epoll reactor in a ReactorThread, greenlets in the main thread:
- x-waitForDeferred: a greenlet loops `waitForDeferred(coro(), reactor=r)`; the coroutine is
  started and finished in the reactor thread, the result crosses back (one round trip each).
- x-blockingCall: a greenlet loops `blockingCallFromGreenlet(r, f)`.
- x-deferToGreenlet: Twisted code in the reactor thread chains `deferToGreenlet(f)` calls; each
  runs in a greenlet of the shared hub thread and fires its Deferred back in the reactor thread
  (the situation-2 way for Twisted code to wait for a greenlet).
- x-fanout: 10,000 greenlets, each `blockingCallFromGreenlet(r, f)`, all at once.

Situation 1, GeventReactor on the main thread's hub (skipped if gevent_reactor does not import):
- l-waitForDeferred: a greenlet loops: a Deferred fired by `reactor.callLater(0, ...)`, waited on.
- l-blockingCall: a greenlet loops `blockingCallFromGreenlet(reactor, f)` (f runs in callLater(0)).
- l-waitForGreenlet: a greenlet loops `waitForDeferred(waitForGreenlet(gevent.spawn(f)))`.
- l-fanout: 10,000 greenlets, each waiting on its own Deferred fired by a callLater(0).

References:
- crochet-wait_for: crochet 2 (`crochet.setup()`, epoll reactor in a thread), the main thread
  loops a `@wait_for(timeout=5)` function. crochet-fanout: 10,000 such calls from 100 real
  threads (crochet blocks whole OS threads, so greenlets would serialise).
- twisted-bcft: Twisted's `blockingCallFromThread` from the main thread, the reactor in a thread.

Cross-thread wake-up mechanisms (how a reactor thread wakes a waiting greenlet; the reactor
thread calls back through `callFromThread`): wake-mailbox (one `async_()` watcher per hub and a
deque: what gevent_deferred uses), wake-asyncresult (gevent's thread-safe `AsyncResult`, with a
referenced watcher kept alive, without which it ends in LoopExit), wake-async-per-wait (a new
`async_()` watcher per wait).

Writes benchmarks/results/deferred.json. Bounded: about a minute with the defaults.

    python benchmarks/bench_deferred.py [--rounds 3] [--seconds 0.6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SUBJECTS = [
    "x-waitForDeferred",
    "x-blockingCall",
    "x-deferToGreenlet",
    "x-fanout",
    "l-waitForDeferred",
    "l-blockingCall",
    "l-waitForGreenlet",
    "l-fanout",
    "crochet-wait_for",
    "crochet-fanout",
    "twisted-bcft",
    "wake-mailbox",
    "wake-asyncresult",
    "wake-async-per-wait",
]
FANOUT = 10_000
CHILD_TIMEOUT = 60.0


class SubjectSkippedError(Exception):
    pass


def timed_loop(seconds, one):
    """Call one() repeatedly for about `seconds`; return (operations, elapsed)."""
    for _ in range(50):  # warm-up
        one()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            one()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return count, now - start


def epoll_thread():
    from twisted.internet.epollreactor import EPollReactor

    from gevent_deferred import ReactorThread

    reactor = EPollReactor()
    return reactor, ReactorThread(reactor).start()


def bench_x(subject, seconds):
    import gevent

    from gevent_deferred import blockingCallFromGreenlet, deferToGreenlet, waitForDeferred

    reactor, rt = epoll_thread()
    try:
        if subject == "x-waitForDeferred":

            async def coro():
                return 1

            return gevent.spawn(
                timed_loop, seconds, lambda: waitForDeferred(coro(), reactor=reactor)
            ).get()
        if subject == "x-blockingCall":
            return gevent.spawn(
                timed_loop, seconds, lambda: blockingCallFromGreenlet(reactor, int)
            ).get()
        if subject == "x-deferToGreenlet":
            from twisted.internet.defer import Deferred

            def chain():
                done = Deferred()
                state = {"n": 0, "start": time.perf_counter()}

                def step(_=None):
                    state["n"] += 1
                    if time.perf_counter() - state["start"] >= seconds:
                        done.callback((state["n"], time.perf_counter() - state["start"]))
                        return
                    deferToGreenlet(int).addCallback(step)

                step()
                return done

            # Warm the shared hub thread first.
            blockingCallFromGreenlet(reactor, lambda: deferToGreenlet(int))
            return tuple(blockingCallFromGreenlet(reactor, chain))
        if subject == "x-fanout":
            start = time.perf_counter()
            greenlets = [
                gevent.spawn(blockingCallFromGreenlet, reactor, int, i) for i in range(FANOUT)
            ]
            gevent.joinall(greenlets, timeout=30, raise_error=True)
            elapsed = time.perf_counter() - start
            assert [g.value for g in greenlets] == list(range(FANOUT))
            return FANOUT, elapsed
    finally:
        rt.stop()
    raise ValueError(subject)


def bench_l(subject, seconds):
    import gevent

    try:
        from gevent_reactor import GeventReactor
    except ImportError as exc:
        raise SubjectSkippedError(f"gevent_reactor does not import: {exc}") from None
    from twisted.internet.defer import Deferred
    from zope.interface import implementer

    from gevent_deferred import (
        IHubReactor,
        blockingCallFromGreenlet,
        waitForDeferred,
        waitForGreenlet,
    )

    if not IHubReactor.implementedBy(GeventReactor):

        @implementer(IHubReactor)
        class HubReactor(GeventReactor):
            pass

    else:
        HubReactor = GeventReactor

    reactor = HubReactor()
    out = {}

    def wait_one():
        d = Deferred()
        reactor.callLater(0, d.callback, 1)
        return waitForDeferred(d)

    def body():
        if subject == "l-waitForDeferred":
            return timed_loop(seconds, wait_one)
        if subject == "l-blockingCall":
            return timed_loop(seconds, lambda: blockingCallFromGreenlet(reactor, int))
        if subject == "l-waitForGreenlet":
            return timed_loop(seconds, lambda: waitForDeferred(waitForGreenlet(gevent.spawn(int))))
        if subject == "l-fanout":
            start = time.perf_counter()
            deferreds = [Deferred() for _ in range(FANOUT)]
            greenlets = [gevent.spawn(waitForDeferred, d) for d in deferreds]
            for i, d in enumerate(deferreds):
                reactor.callLater(0, d.callback, i)
            gevent.joinall(greenlets, timeout=30, raise_error=True)
            elapsed = time.perf_counter() - start
            assert [g.value for g in greenlets] == list(range(FANOUT))
            return FANOUT, elapsed
        raise ValueError(subject)

    def main():
        try:
            out["value"] = body()
        except BaseException as exc:
            out["error"] = exc
        finally:
            reactor.stop()

    reactor.callWhenRunning(gevent.spawn, main)
    reactor.run(installSignalHandlers=False)
    if "error" in out:
        raise out["error"]
    return out["value"]


def bench_crochet(subject, seconds):
    try:
        import crochet
    except ImportError as exc:
        raise SubjectSkippedError(f"crochet does not import: {exc}") from None
    crochet.setup()

    @crochet.wait_for(timeout=5)
    def call(i):
        return i

    if subject == "crochet-wait_for":
        return timed_loop(seconds, lambda: call(1))
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(call, range(FANOUT)))
    elapsed = time.perf_counter() - start
    assert results == list(range(FANOUT))
    return FANOUT, elapsed


def bench_twisted_bcft(seconds):
    import threading

    from twisted.internet.epollreactor import EPollReactor
    from twisted.internet.threads import blockingCallFromThread

    reactor = EPollReactor()
    thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False})
    thread.start()
    try:
        return timed_loop(seconds, lambda: blockingCallFromThread(reactor, int))
    finally:
        reactor.callFromThread(reactor.stop)
        thread.join(10)


def bench_wake(subject, seconds):
    from collections import deque

    import gevent
    import gevent.event
    from gevent.hub import Waiter

    reactor, rt = epoll_thread()
    hub = gevent.get_hub()
    loop = hub.loop
    try:
        if subject == "wake-mailbox":
            queue = deque()
            watcher = loop.async_()

            def drain():
                while queue:
                    waiter, value = queue.popleft()
                    waiter.switch(value)

            watcher.start(drain)

            def post(waiter):
                queue.append((waiter, 1))
                watcher.send()

            def one():
                waiter = Waiter(hub)
                reactor.callFromThread(post, waiter)
                return waiter.get()

        elif subject == "wake-asyncresult":
            keep = loop.async_()
            keep.start(lambda: None)  # without a referenced watcher: LoopExit

            def one():
                result = gevent.event.AsyncResult()
                reactor.callFromThread(result.set, 1)
                return result.get()

        else:

            def one():
                waiter = Waiter(hub)
                watcher = loop.async_()
                box = []
                watcher.start(lambda: waiter.switch(box[0]))

                def post():
                    box.append(1)
                    watcher.send()

                reactor.callFromThread(post)
                try:
                    return waiter.get()
                finally:
                    watcher.stop()
                    watcher.close()

        return gevent.spawn(timed_loop, seconds, one).get()
    finally:
        rt.stop()


def child(subject, seconds):
    if subject.startswith("x-"):
        return bench_x(subject, seconds)
    if subject.startswith("l-"):
        return bench_l(subject, seconds)
    if subject.startswith("crochet-"):
        return bench_crochet(subject, seconds)
    if subject == "twisted-bcft":
        return bench_twisted_bcft(seconds)
    if subject.startswith("wake-"):
        return bench_wake(subject, seconds)
    raise ValueError(subject)


def run_child(subject, seconds):
    proc = subprocess.run(
        [sys.executable, __file__, "--child", subject, "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.6)
    parser.add_argument("--subjects", nargs="*", default=SUBJECTS)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        try:
            ops, elapsed = child(args.child, args.seconds)
            print(json.dumps({"ops": ops, "seconds": elapsed}))
        except SubjectSkippedError as exc:
            print(json.dumps({"skipped": str(exc)}))
        return

    started = time.monotonic()
    rates: dict[str, list[float]] = {s: [] for s in args.subjects}
    notes: dict[str, str] = {}
    for _ in range(args.rounds):
        for subject in args.subjects:
            if subject in notes:
                continue
            result = run_child(subject, args.seconds)
            if "ops" in result:
                rates[subject].append(result["ops"] / result["seconds"])
            else:
                notes[subject] = result.get("skipped") or result.get("error", "?")
    rows = []
    for subject in args.subjects:
        values = rates[subject]
        median = statistics.median(values) if values else None
        rows.append(
            {
                "subject": subject,
                "per_second": round(median) if median else None,
                "usec_each": round(1e6 / median, 1) if median else None,
                "rounds": [round(v) for v in values],
                "note": notes.get(subject, ""),
            }
        )
    print(f"{'subject':22} {'ops/s (median)':>15} {'us each':>9}  rounds / note")
    for row in rows:
        if row["per_second"] is None:
            print(f"{row['subject']:22} {'-':>15} {'-':>9}  {row['note']}")
        else:
            rounds = " ".join(str(v) for v in row["rounds"])
            print(f"{row['subject']:22} {row['per_second']:>15,} {row['usec_each']:>9}  {rounds}")
    print(f"fan-out rows: {FANOUT:,} waits in total, ops/s = waits per second of wall time")
    results_dir = Path(__file__).resolve().parent / "results"
    results_dir.mkdir(exist_ok=True)
    payload = {
        "benchmark": "deferred",
        "python": sys.version.split()[0],
        "gevent_loop": os.environ.get("GEVENT_LOOP", "default"),
        "rounds": args.rounds,
        "seconds_per_measurement": args.seconds,
        "fanout": FANOUT,
        "results": rows,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    (results_dir / "deferred.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {results_dir / 'deferred.json'} in {payload['wall_seconds']} s")


if __name__ == "__main__":
    main()
