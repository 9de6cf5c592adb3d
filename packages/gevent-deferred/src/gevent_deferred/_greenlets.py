"""From greenlets to Deferreds: waitForGreenlet, deferToGreenlet and the in_greenlet decorator."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from gevent import Greenlet
from twisted.internet.defer import Deferred

from ._checks import check_reactor
from ._hub_thread import shared_hub_thread
from ._in_loop import installed_reactor, thread_reactor
from ._outcomes import fire, outcome_of
from ._reactor_protocol import TwistedReactor
from ._threads import hub_if_exists

__all__ = ["deferToGreenlet", "in_greenlet", "waitForGreenlet"]

F = TypeVar("F", bound=Callable[..., Any])


def waitForGreenlet(
    g: Greenlet, *, kill_on_cancel: bool = True, reactor: TwistedReactor | None = None
) -> Deferred:
    """
    Return a Deferred that fires with greenlet ``g``'s return value or fails with its exception.

    Never blocks. Callable from any thread, and from the hub. The failure keeps the original
    traceback; a greenlet
    killed with ``GreenletExit`` fails it with ``GreenletKilledError`` (a ``CancelledError``).
    Cancelling the Deferred kills ``g`` unless ``kill_on_cancel`` is false.

    Called in ``g``'s own thread (in-loop, or plain gevent), the Deferred fires from that
    thread's hub. Called in another thread, typically a non-gevent reactor's thread waiting for a
    greenlet of a gevent thread, the Deferred fires in the caller's reactor thread through
    ``reactor.callFromThread`` (``reactor`` defaults to the installed global reactor).
    """
    if not isinstance(g, Greenlet):
        raise TypeError(
            f"waitForGreenlet(g) expects a gevent.Greenlet, got {type(g).__name__}: {g!r:.80}"
        )
    g_hub = g.parent
    if g_hub is hub_if_exists() or g_hub is None:
        return _deferred_here(g, kill_on_cancel)
    if reactor is None:
        reactor = thread_reactor() or installed_reactor()
    check_reactor(
        "waitForGreenlet",
        reactor,
        "callFromThread",
        also=f", because it was called outside {g!r:.60}'s thread and the caller's reactor "
        "delivers the result",
    )
    return _deferred_across_threads(g, g_hub, reactor, kill_on_cancel)


def _deferred_here(g: Greenlet, kill_on_cancel: bool) -> Deferred:
    def cancel(_d: Deferred) -> None:
        if not g.dead:
            g.kill(block=False)

    d: Deferred = Deferred(cancel if kill_on_cancel else None)
    if g.dead:
        fire(d, outcome_of(g))
    else:
        # rawlink callbacks run in the hub: the Deferred fires from there (see _wait.py on why).
        g.rawlink(lambda dead: fire(d, outcome_of(dead)))
    return d


def _deferred_across_threads(
    g: Greenlet, g_hub: Any, reactor: TwistedReactor, kill_on_cancel: bool
) -> Deferred:
    # Single calls into g's hub, which made no waker for this: run_callback_threadsafe (see
    # _waker's docstring for why that is safe without one).
    loop = g_hub.loop

    def cancel(_d: Deferred) -> None:
        loop.run_callback_threadsafe(functools.partial(g.kill, block=False))

    d: Deferred = Deferred(cancel if kill_on_cancel else None)

    def on_dead(dead: Greenlet) -> None:
        # In g's hub; the Deferred is only touched in the reactor thread.
        reactor.callFromThread(fire, d, outcome_of(dead))

    # rawlink is not thread-safe: ask g's own hub to do it.
    loop.run_callback_threadsafe(g.rawlink, on_dead)
    return d


def deferToGreenlet(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
    """
    Run ``f(*args, **kwargs)`` in a new greenlet; return a Deferred of its outcome.

    Never blocks. Callable from the hub. In a thread with a gevent hub and no other reactor
    (in-loop: GeventReactor; or plain gevent) the greenlet runs here and the Deferred fires
    from this hub. In the thread of a non-gevent reactor (epoll, asyncio, ...), the greenlet runs
    in ``shared_hub_thread()`` and the Deferred fires in the reactor's thread. Cancelling the
    Deferred kills the greenlet; a killed greenlet fails it with ``GreenletKilledError``.
    """
    if not callable(f):
        raise TypeError(
            f"deferToGreenlet(f) expects a callable f, got {type(f).__name__}: {f!r:.80}"
        )
    reactor = thread_reactor()
    if reactor is not None:
        return shared_hub_thread().call(reactor, f, *args, **kwargs)
    g = Greenlet(f, *args, **kwargs)
    g.start()
    return _deferred_here(g, True)


def in_greenlet(fn: F) -> Callable[..., Deferred]:
    """
    Decorate a function or method so that each call runs it in its own greenlet.

    Calling the decorated function never blocks and returns a Deferred of its outcome (see
    ``deferToGreenlet``); the body itself may block the greenlet it runs in (gevent sockets,
    ``waitForDeferred``, ``gevent.sleep``), so it can serve as a Twisted callback or protocol
    method that needs to wait. Callable from the hub.
    """
    if not callable(fn):
        raise TypeError(f"in_greenlet expects a function, got {type(fn).__name__}: {fn!r:.80}")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Deferred:
        return deferToGreenlet(fn, *args, **kwargs)

    return wrapper
