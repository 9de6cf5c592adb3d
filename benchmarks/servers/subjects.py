"""
The subjects of the suite, and how a server process installs each one's reactor.

Every server module imports this first, calls L{use_source_path} (the packages measured) and
then L{install} before anything imports C{twisted.internet.reactor}.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any

# The order of the table; epoll is the reference every ratio is taken against.
SUBJECTS = [
    "gevent",
    "epoll",
    "select",
    "asyncio",
    "uvloop",
    "puregevent",
    "rawepoll",
    "gevent_alt",
]
REFERENCE = "epoll"
# Twisted's own reactors: a user can pick any of them today, so GeventReactor is ranked against
# the best of them in each round.
PEERS = ("epoll", "select", "asyncio", "uvloop")
DESCRIPTIONS = {
    "gevent": "GeventReactor (this project)",
    "epoll": "Twisted's epoll reactor",
    "select": "Twisted's select reactor",
    "asyncio": "Twisted's asyncio reactor (stdlib loop)",
    "uvloop": "Twisted's asyncio reactor on uvloop",
    "puregevent": "pure gevent, no Twisted (the ceiling)",
    "rawepoll": "a hand-written select.epoll echo loop, no Twisted (the limit for Python)",
    "gevent_alt": "GeventReactor with $BENCH_ALT_PATH first on the path (to measure a patch)",
}
# Scenarios a subject's server cannot run: the hand-written loop only echoes; select() cannot
# watch the descriptors of 10,000 (or 1,000) idle connections.
UNSUPPORTED = {
    "rawepoll": frozenset(
        {"web_ka", "web_close", "calllater", "thread_twisted", "thread_gevent", "wfd"}
    ),
    "select": frozenset({"memory"}),
}


def available(subject: str) -> bool:
    """Whether C{subject} can run here (uvloop is optional)."""
    if subject == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return False
    if subject == "gevent_alt":
        return bool(os.environ.get("BENCH_ALT_PATH"))
    return True


def use_source_path() -> None:
    """Put C{$BENCH_SRC_PATH}'s directories first on C{sys.path}: the packages measured."""
    path = os.environ.get("BENCH_SRC_PATH")
    if path:
        sys.path[:0] = path.split(os.pathsep)


def raise_fd_limit() -> None:
    """10,000 idle connections need more descriptors than the usual soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pin(cpu_env: str) -> None:
    """Pin this process to the CPU named by the environment variable (the client takes the other)."""
    cpu = os.environ.get(cpu_env)
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {int(cpu)})
        except OSError:
            pass


def install(subject: str) -> Any:
    """Install C{subject}'s reactor and return it (None for pure gevent)."""
    if subject == "gevent":
        import gevent_reactor

        return gevent_reactor.install()
    if subject == "epoll":
        from twisted.internet import epollreactor

        epollreactor.install()
    elif subject == "select":
        from twisted.internet import selectreactor

        selectreactor.install()
    elif subject in ("asyncio", "uvloop"):
        import asyncio

        from twisted.internet import asyncioreactor

        if subject == "uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
    elif subject in ("puregevent", "rawepoll"):
        return None
    else:
        sys.exit(f"unknown subject {subject!r}; expected one of {SUBJECTS}")
    from twisted.internet import reactor

    return reactor
