"""GeventThreadPool vs Twisted's ThreadPool: deferToThread round trips, and 10,000 sleepers.

Subjects are named POOL@REACTOR:

- twisted@epoll: Twisted's epoll reactor with its own default pool (real threads, max 10).
- gevent@epoll: the same reactor after `use_gevent_threadpool(reactor)`: greenlets on the one
  shared helper hub thread (standalone), results back through `reactor.callFromThread`.
- twisted@gevent: geventreactor's GeventReactor with Twisted's default pool (real threads).
- gevent@gevent: GeventReactor with a GeventThreadPool on the reactor's own hub (in-loop).
  (The @gevent subjects are skipped if gevent_reactor does not import.)

Scenarios:

- roundtrip: one `deferToThreadPool(reactor, pool, f)` at a time, each started when the previous
  result arrived in the reactor thread (latency-bound); round trips per second.
- pipelined: 64 calls in flight at all times (throughput-bound); round trips per second.
- sleepers: 10,000 tasks that each `gevent.sleep(0.1)` started at once; seconds until the last
  result arrived, and the peak number of OS threads of the process. GeventThreadPool runs them
  with maxthreads=10000 on one OS thread; Twisted's pool runs them on maxthreads real threads
  (each thread blocked for 0.1 s by its own gevent hub), with maxthreads 100 and 1000 (its default,
  10, would take 100 s).

Every measurement runs in a fresh child process; rounds are interleaved subject by subject; the
table gives medians and, per round, the ratio to the Twisted-pool subject on the same reactor.
Writes benchmarks/results/threadpool.json. Bounded: well under two minutes with the defaults.

    python benchmarks/bench_threadpool.py [--rounds 3] [--seconds 0.6]
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
from typing import Any

RATE_SUBJECTS = ["twisted@epoll", "gevent@epoll", "twisted@gevent", "gevent@gevent"]
SLEEP_SUBJECTS = [
    "twisted-100@epoll",
    "twisted-1000@epoll",
    "gevent-10000@epoll",
    "gevent-10000@gevent",
]
BASELINE = {"epoll": "twisted@epoll", "gevent": "twisted@gevent"}


def thread_count() -> int:
    # Real OS threads, also when threading is monkey-patched.
    return len(os.listdir("/proc/self/task"))


def make(subject: str) -> tuple[Any, Any]:
    """Build (reactor, pool) for a subject; the pool starts when the reactor runs."""
    pool_kind, _, reactor_kind = subject.partition("@")
    if reactor_kind == "epoll":
        from twisted.internet.epollreactor import EPollReactor

        reactor: Any = EPollReactor()
    else:
        from gevent_reactor import GeventReactor

        reactor = GeventReactor()
    kind, _, size = pool_kind.partition("-")
    if kind == "twisted":
        pool = reactor.getThreadPool()
        if size:
            pool.adjustPoolsize(0, int(size))
        return reactor, pool
    from gevent_threadpool import GeventThreadPool, use_gevent_threadpool

    # Placement is automatic: in-loop on GeventReactor (it declares IHubReactor), standalone on
    # the epoll reactor; the "in-loop" column shows what was chosen.
    pool = GeventThreadPool(0, int(size or 1000), reactor=reactor)
    use_gevent_threadpool(reactor, pool)
    return reactor, pool


def child_rate(subject: str, scenario: str, seconds: float) -> dict[str, Any]:
    from twisted.internet.threads import deferToThreadPool

    reactor, pool = make(subject)
    result: dict[str, Any] = {}
    in_flight = 1 if scenario == "roundtrip" else 64

    def work() -> int:
        return 1

    def go() -> None:
        state = {"count": 0, "active": 0, "end": 0.0, "measuring": False, "t0": 0.0}

        def launch() -> None:
            state["active"] += 1
            deferToThreadPool(reactor, pool, work).addCallback(landed)

        def landed(_: object) -> None:
            state["active"] -= 1
            now = time.perf_counter()
            if not state["measuring"] and now >= state["warm"]:
                state.update(measuring=True, t0=now, count=0, end=now + seconds)
            state["count"] += 1
            if state["measuring"] and now >= state["end"]:
                if state["active"] == 0:
                    result["rate"] = state["count"] / (now - state["t0"])
                    reactor.stop()
                return
            launch()

        state["warm"] = time.perf_counter() + min(0.3, seconds / 2)
        for _ in range(in_flight):
            launch()

    reactor.callWhenRunning(go)
    reactor.callLater(seconds * 4 + 10, reactor.stop)
    reactor.run(installSignalHandlers=False)
    result["in_loop"] = getattr(pool, "in_loop", None)
    return result


def child_sleepers(subject: str, tasks: int) -> dict[str, Any]:
    import gevent
    from twisted.internet.defer import gatherResults
    from twisted.internet.threads import deferToThreadPool

    reactor, pool = make(subject)
    result: dict[str, Any] = {"threads_before": thread_count()}
    peak = [0]

    def sample() -> None:
        peak[0] = max(peak[0], thread_count())
        if reactor.running:
            reactor.callLater(0.02, sample)

    def go() -> None:
        t0 = time.perf_counter()
        sample()
        calls = [deferToThreadPool(reactor, pool, gevent.sleep, 0.1) for _ in range(tasks)]

        def done(_: object) -> None:
            result["seconds"] = time.perf_counter() - t0
            reactor.stop()

        gatherResults(calls).addBoth(done)

    reactor.callWhenRunning(go)
    reactor.callLater(100, reactor.stop)
    reactor.run(installSignalHandlers=False)
    result["peak_threads"] = max(peak[0], thread_count())
    return result


def run_child(args: list[str]) -> dict[str, Any] | None:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    if out.returncode != 0:
        sys.stderr.write(f"child {args} failed:\n{out.stderr[-2000:]}\n")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def have_gevent_reactor() -> bool:
    try:
        import gevent_reactor  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.6)
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, subject = args.child[0], args.child[1]
        if kind == "sleepers":
            out = child_sleepers(subject, int(args.child[2]))
        else:
            out = child_rate(subject, kind, float(args.child[2]))
        print(json.dumps(out))
        return

    gevent_ok = have_gevent_reactor()
    rate_subjects = [s for s in RATE_SUBJECTS if gevent_ok or not s.endswith("@gevent")]
    sleep_subjects = [s for s in SLEEP_SUBJECTS if gevent_ok or not s.endswith("@gevent")]
    started = time.monotonic()
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for _ in range(args.rounds):
        for scenario in ("roundtrip", "pipelined"):
            for subject in rate_subjects:
                got = run_child([scenario, subject, str(args.seconds)])
                if got is not None:
                    samples.setdefault(scenario, {}).setdefault(subject, []).append(got)
        for subject in sleep_subjects:
            got = run_child(["sleepers", subject, str(args.tasks)])
            if got is not None:
                samples.setdefault("sleepers", {}).setdefault(subject, []).append(got)

    report: dict[str, Any] = {
        "rounds": args.rounds,
        "seconds": args.seconds,
        "tasks": args.tasks,
        "python": sys.version.split()[0],
        "gevent_loop": os.environ.get("GEVENT_LOOP", "default"),
        "results": {},
    }
    lines = [
        f"{'scenario':<10} {'subject':<20} {'median':>14} {'vs Twisted pool':>16} {'in-loop':>8}",
    ]
    for scenario in ("roundtrip", "pipelined"):
        for subject, runs in samples.get(scenario, {}).items():
            rates = [r["rate"] for r in runs]
            baseline = samples[scenario].get(BASELINE[subject.partition("@")[2]], [])
            ratios = [
                a["rate"] / b["rate"] for a, b in zip(runs, baseline, strict=False) if b["rate"]
            ]
            ratio = statistics.median(ratios) if ratios else None
            report["results"].setdefault(scenario, {})[subject] = {
                "rates_per_s": rates,
                "median_per_s": statistics.median(rates),
                "median_ratio_to_twisted_pool": ratio,
                "in_loop": runs[0].get("in_loop"),
            }
            ratio_text = f"{ratio:.2f}x" if ratio is not None else "-"
            lines.append(
                f"{scenario:<10} {subject:<20} {statistics.median(rates):>10,.0f} /s "
                f"{ratio_text:>16} {runs[0].get('in_loop')!s:>8}"
            )
    for subject, runs in samples.get("sleepers", {}).items():
        secs = [r["seconds"] for r in runs]
        peak = max(r["peak_threads"] for r in runs)
        report["results"].setdefault("sleepers", {})[subject] = {
            "seconds": secs,
            "median_seconds": statistics.median(secs),
            "peak_os_threads": peak,
        }
        lines.append(
            f"{'sleepers':<10} {subject:<20} {statistics.median(secs):>11.2f} s "
            f"{'peak threads ' + str(peak):>16}"
        )
    report["wall_seconds"] = time.monotonic() - started
    print("\n".join(lines))
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "threadpool.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_dir / 'threadpool.json'} ({report['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
