"""The scenarios of the suite: kind, unit, direction and what each measures."""

from __future__ import annotations

from typing import NamedTuple


class Scenario(NamedTuple):
    # "net": against a server process kept for the round; "fresh": a server of its own;
    # "inproc": one child process that measures itself.
    kind: str
    unit: str
    higher_is_better: bool
    description: str


SCENARIOS: dict[str, Scenario] = {
    "stream": Scenario(
        "net", "MB/s", True, "TCP stream throughput: 256 KiB writes echoed on one connection"
    ),
    "rr1": Scenario("net", "req/s", True, "request/response, 64 B echoed, 1 connection"),
    "rr10": Scenario("net", "req/s", True, "request/response, 64 B echoed, 10 connections"),
    "rr100": Scenario("net", "req/s", True, "request/response, 64 B echoed, 100 connections"),
    "connect": Scenario("net", "conn/s", True, "connect, 16 B echoed, close; 16 in flight"),
    "web_ka": Scenario("net", "req/s", True, "twisted.web GET, keep-alive, 10 connections"),
    "web_close": Scenario("net", "req/s", True, "twisted.web GET, Connection: close, 16 in flight"),
    "blocking": Scenario(
        "net",
        "p99 ms",
        False,
        "rr over 10 connections while 1% of requests block 10 ms in dataReceived "
        "(gevent.sleep): p99 of the others",
    ),
    "memory": Scenario("fresh", "B/conn", False, "server RSS growth per idle connection (10,000)"),
    "calllater": Scenario("inproc", "calls/s", True, "callLater schedule/cancel/fire churn"),
    "thread_twisted": Scenario(
        "inproc", "rt/s", True, "deferToThread round trips, Twisted's ThreadPool"
    ),
    "thread_gevent": Scenario(
        "inproc", "rt/s", True, "deferToThread round trips, GeventThreadPool"
    ),
    "wfd": Scenario("inproc", "rt/s", True, "waitForDeferred round trips"),
}


def ratio(scenario: str, value: float, reference: float) -> float:
    """How many times better than the reference: > 1 is better, whatever the unit's direction."""
    return value / reference if SCENARIOS[scenario].higher_is_better else reference / value
