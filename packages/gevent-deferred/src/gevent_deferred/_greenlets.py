"""From greenlets to Deferreds: waitForGreenlet, deferToGreenlet and the in_greenlet decorator."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from gevent import Greenlet
from greenlet import GreenletExit
from twisted.internet.defer import Deferred, NotACoroutineError, ensureDeferred
from twisted.python.failure import Failure

from ._context import installed_reactor, thread_reactor
from ._errors import GreenletKilledError
from ._hub_thread import shared_hub_thread
from ._threads import hub_if_exists

__all__ = ["deferToGreenlet", "in_greenlet", "waitForGreenlet"]

F = TypeVar("F", bound=Callable[..., Any])


def outcome_of(g: Greenlet) -> Any:
    """A dead greenlet's value, or a Failure carrying its exception and original traceback."""
    if g.successful():
        value = g.value
        if isinstance(value, GreenletExit):
            return Failure(
                GreenletKilledError(f"{g!r} was killed ({type(value).__name__}) before it returned")
            )
        return value
    exc = g.exception
    tb = exc.__traceback__
    if tb is None:
        info = g.exc_info
        tb = info[2] if info else None
    return Failure(exc, type(exc), tb)


def fire(d: Deferred, outcome: Any) -> None:
    """Fire ``d`` with an outcome unless it was cancelled meanwhile; follow Deferreds/coroutines."""
    if d.called:
        return
    if isinstance(outcome, Failure):
        d.errback(outcome)
        return
    try:
        inner = ensureDeferred(outcome)
    except NotACoroutineError:
        d.callback(outcome)
        return
    inner.addBoth(lambda result: None if d.called else d.callback(result))


def waitForGreenlet(g: Greenlet, *, kill_on_cancel: bool = True, reactor: Any = None) -> Deferred:
    """
    Return a Deferred that fires with greenlet ``g``'s return value or fails with its exception.

    Never blocks. Callable from any thread, and from the hub. The failure keeps the original
    traceback; a greenlet
    killed with ``GreenletExit`` fails it with ``GreenletKilledError`` (a ``CancelledError``).
    Cancelling the Deferred kills ``g`` unless ``kill_on_cancel`` is false.

    Called in ``g``'s own thread (situation 1, or plain gevent), the Deferred fires from that
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
        return _wait_local(g, kill_on_cancel)
    if reactor is None:
        reactor = thread_reactor() or installed_reactor()
    if reactor is None or not callable(getattr(reactor, "callFromThread", None)):
        raise TypeError(
            f"waitForGreenlet(g) was called outside {g!r}'s thread and needs the caller's reactor "
            f"to deliver the result; pass reactor=..., got {reactor!r:.80}"
        )
    return _wait_remote(g, g_hub, reactor, kill_on_cancel)


def _wait_local(g: Greenlet, kill_on_cancel: bool) -> Deferred:
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


def _wait_remote(g: Greenlet, g_hub: Any, reactor: Any, kill_on_cancel: bool) -> Deferred:
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
    (situation 1: GeventReactor; or plain gevent) the greenlet runs here and the Deferred fires
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
    return _wait_local(g, True)


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
