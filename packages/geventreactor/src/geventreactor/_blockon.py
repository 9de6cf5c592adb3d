"""pytest-twisted's wait for a Deferred, with the wake-up delivered from the hub."""

from __future__ import annotations

from typing import Any

import gevent
from greenlet import getcurrent
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__: list[str] = []


def blockon_via_hub(d: Deferred) -> Any:
    """
    Wait in pytest's greenlet until ``d`` fires, running the reactor meanwhile; return its result.

    Blocks the current greenlet (pytest's main one).  Must not be called from the hub.

    pytest-twisted's own version switches back to the waiting greenlet from wherever ``d`` fires.
    When that is a gevent greenlet (``d.callback`` in ``gevent.spawn``'d code), the rest of that
    greenlet is stranded: nobody ever switches back to it.  Switching from the hub instead strands
    nothing, because pytest-twisted's reactor greenlet resumes the hub whenever it is switched to.
    """
    import pytest_twisted

    current = getcurrent()
    reactor_greenlet = pytest_twisted._instances.gr_twisted
    assert current is not reactor_greenlet, "blockon cannot be called from the twisted greenlet"
    hub = gevent.get_hub()
    result: list[Any] = []

    def deliver(outcome: Any) -> None:
        result.append(outcome)
        if getcurrent() is not current:
            hub.loop.run_callback(current.switch, result)

    d.addBoth(deliver)
    if not result:
        switched_with = reactor_greenlet.switch()
        assert switched_with is result, "illegal switch in blockon"
    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]
