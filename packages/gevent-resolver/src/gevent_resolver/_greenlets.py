"""Running one lookup in a greenlet and delivering its outcome to the reactor as a Deferred.

Two places a lookup can run:

  - in-loop: a hub-driven reactor (``IHubReactor``) runs in this thread, so the lookup is a
    greenlet on that same hub; no thread is involved.
  - standalone: any other reactor (epoll, select, asyncio); the lookup is a greenlet on the
    process-wide helper hub thread (``gevent_deferred.shared_hub_thread()``), so any number of
    concurrent lookups costs one OS thread.

Either way the Deferred fires through ``reactor.callFromThread``, so callbacks run where Twisted's
callbacks always run (for a GeventReactor: its reactor context, never a throwaway greenlet), and
cancelling it kills the greenlet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent
from gevent import Greenlet, GreenletExit
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from gevent_deferred import IHubReactor, shared_hub_thread


def runs_in_loop(reactor: Any) -> bool:
    """Does ``reactor`` run on the hub of the calling thread?"""
    # providedBy first: for a stock reactor this never creates a hub in the reactor's thread.
    return IHubReactor.providedBy(reactor) and reactor.hub is gevent.get_hub()


def run_lookup(reactor: Any, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Run ``fn(*args)`` in a greenlet; the Deferred fires in the reactor's thread. Never blocks."""
    if runs_in_loop(reactor):
        return _run_in_loop(reactor, fn, args)
    return shared_hub_thread().call(reactor, fn, *args)


def _run_in_loop(reactor: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> Deferred[Any]:
    greenlets: list[Greenlet] = []
    # block=False: cancel() is called from the reactor context, which must never switch away.
    deferred: Deferred[Any] = Deferred(canceller=lambda _: greenlets[0].kill(block=False))
    greenlets.append(Greenlet.spawn(_call_and_deliver, reactor, deferred, fn, args))
    return deferred


def _call_and_deliver(
    reactor: Any, deferred: Deferred[Any], fn: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    try:
        result: Any = fn(*args)
    except GreenletExit:
        # Killed by cancel(): the Deferred has already failed with CancelledError.
        raise
    except BaseException as e:  # every outcome must reach the Deferred, or its caller waits forever
        result = Failure(e)
    reactor.callFromThread(_fire, deferred, result)


def _fire(deferred: Deferred[Any], result: Any) -> None:
    if deferred.called:
        # Cancelled (or timed out) while the answer was on its way.
        return
    if isinstance(result, Failure):
        deferred.errback(result)
    else:
        deferred.callback(result)
