"""
The subjects of the suite, and how a server process installs each one's reactor.

Every server module imports this first and calls L{install} before anything imports
C{twisted.internet.reactor}.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any

# The order of the table; epoll is the reference every ratio is taken against.
SUBJECTS = ["gevent", "epoll", "asyncio", "uvloop", "puregevent", "gevent_alt"]
REFERENCE = "epoll"
DESCRIPTIONS = {
    "gevent": "GeventReactor (this project)",
    "epoll": "Twisted's epoll reactor",
    "asyncio": "Twisted's asyncio reactor (stdlib loop)",
    "uvloop": "Twisted's asyncio reactor on uvloop",
    "puregevent": "pure gevent, no Twisted (the ceiling)",
    "gevent_alt": "GeventReactor imported from $BENCH_ALT_PATH (to measure a patch)",
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
    if subject == "gevent_alt":
        # A copy of the gevent_reactor package (e.g. with a proposed patch) shadows the installed one.
        sys.path.insert(0, os.environ["BENCH_ALT_PATH"])
        subject = "gevent"
    if subject == "gevent":
        import gevent_reactor

        return gevent_reactor.install()
    if subject == "epoll":
        from twisted.internet import epollreactor

        epollreactor.install()
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
    elif subject == "puregevent":
        return None
    else:
        sys.exit(f"unknown subject {subject!r}; expected one of {SUBJECTS}")
    from twisted.internet import reactor

    return reactor
