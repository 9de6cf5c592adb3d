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
    A wait interrupted by an exception (a pytest-timeout, ``KeyboardInterrupt``) is detached for
    good: when ``d`` fires later, its outcome passes on down ``d``'s chain and no greenlet is
    switched to.
    """
    from ._pytest_twisted_internals import reactor_greenlet as pytest_twisted_reactor_greenlet

    current = getcurrent()
    reactor_greenlet = pytest_twisted_reactor_greenlet()
    assert current is not reactor_greenlet, "blockon cannot be called from the twisted greenlet"
    hub = gevent.get_hub()
    result: list[Any] = []
    detached = False

    def deliver(outcome: Any) -> Any:
        if detached:
            # The wait was interrupted (a pytest-timeout, ^C): the outcome is no longer ours, and
            # switching now would land in whatever the test's greenlet waits for next.
            return outcome
        result.append(outcome)
        if getcurrent() is not current:
            hub.loop.run_callback(wake)
        return None

    def wake() -> None:
        # Checked again here: the wait may have been interrupted after this was scheduled.
        if not detached:
            current.switch(result)

    d.addBoth(deliver)
    if not result:
        try:
            switched_with = reactor_greenlet.switch()
        except BaseException:
            detached = True
            raise
        assert switched_with is result, "illegal switch in blockon"
    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]
