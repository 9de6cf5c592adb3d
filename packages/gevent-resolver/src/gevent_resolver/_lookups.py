"""Running one lookup in a greenlet and delivering its outcome to the reactor as a Deferred.

Two places a lookup can run:

  - in-loop: a hub-driven reactor (``IHubReactor``) runs in this thread, so the lookup is a
    greenlet on that same hub; no thread is involved.
  - cross-thread: any other reactor (epoll, select, asyncio); the lookup is a greenlet on the
    process-wide helper hub thread (``gevent_deferred.shared_hub_thread()``), so any number of
    concurrent lookups costs one OS thread.

Either way the Deferred fires through ``reactor.callFromThread``, so callbacks run where Twisted's
callbacks always run (for a GeventReactor: its reactor context, never a throwaway greenlet), and
cancelling it kills the greenlet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gevent import Greenlet
from twisted.internet.defer import Deferred

from gevent_deferred import shared_hub_thread
from gevent_deferred._in_loop import runs_on_this_hub
from gevent_deferred._outcomes import call_outcome, fire

if TYPE_CHECKING:
    from gevent_deferred._reactor_protocol import TwistedReactor


def run_lookup(reactor: TwistedReactor, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Run ``fn(*args)`` in a greenlet; the Deferred fires in the reactor's thread. Never blocks."""
    if runs_on_this_hub(reactor):
        return _run_in_loop(reactor, fn, args)
    return shared_hub_thread().call(reactor, fn, *args)


def _run_in_loop(
    reactor: TwistedReactor, fn: Callable[..., Any], args: tuple[Any, ...]
) -> Deferred[Any]:
    greenlets: list[Greenlet] = []
    # block=False: cancel() is called from the reactor context, which must never switch away.
    deferred: Deferred[Any] = Deferred(canceller=lambda _: greenlets[0].kill(block=False))
    greenlets.append(Greenlet.spawn(_call_and_deliver, reactor, deferred, fn, args))
    return deferred


def _call_and_deliver(
    reactor: TwistedReactor, deferred: Deferred[Any], fn: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    # Killed by cancel(), the outcome is a failure the Deferred (already cancelled) ignores.
    reactor.callFromThread(fire, deferred, call_outcome(fn, *args))
