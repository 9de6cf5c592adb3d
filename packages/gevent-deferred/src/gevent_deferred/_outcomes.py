"""A greenlet's outcome (a value, or a Failure with its original traceback) and firing a Deferred
with it: the one way every package turns greenlet work into a Deferred's result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gevent import Greenlet
from greenlet import GreenletExit
from twisted.internet.defer import Deferred, NotACoroutineError, ensureDeferred
from twisted.python.failure import Failure

from ._errors import GreenletKilledError

__all__ = ["call_outcome", "fire", "follow", "killed", "outcome_of"]


def killed(what: str, exc: BaseException) -> Failure:
    """The Failure for work killed with ``GreenletExit`` before it returned. Never blocks."""
    return Failure(
        GreenletKilledError(f"{what} was killed ({type(exc).__name__}) before it returned")
    )


def outcome_of(g: Greenlet) -> Any:
    """A dead greenlet's value, or a Failure carrying its exception and original traceback."""
    if g.successful():
        value = g.value
        if isinstance(value, GreenletExit):
            return killed(repr(g), value)
        return value
    exc = g.exception
    tb = exc.__traceback__
    if tb is None:
        info = g.exc_info
        tb = info[2] if info else None
    return Failure(exc, type(exc), tb)


def call_outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` in the current greenlet; return its value, or a Failure of what it raised.

    A ``GreenletExit`` becomes a Failure of ``GreenletKilledError``. Blocks the current greenlet
    as long as ``fn`` does.
    """
    try:
        return fn(*args, **kwargs)
    except GreenletExit as exc:
        return killed(f"the greenlet running {fn!r:.80}", exc)
    except BaseException:  # every outcome must reach the Deferred, or its caller waits forever
        return Failure()


def follow(outcome: Any) -> Any:
    """A Deferred of ``outcome`` if it is a Deferred or a coroutine, else ``outcome``. Never
    blocks."""
    if isinstance(outcome, Failure):
        return outcome
    try:
        return ensureDeferred(outcome)
    except NotACoroutineError:
        return outcome


def fire(d: Deferred, outcome: Any) -> None:
    """Fire ``d`` with an outcome unless it was cancelled meanwhile; follow Deferreds/coroutines.

    Never blocks. Call it where ``d`` may be used (the thread of the reactor it belongs to).
    """
    if d.called:
        return
    if isinstance(outcome, Failure):
        d.errback(outcome)
        return
    inner = follow(outcome)
    if isinstance(inner, Deferred):
        inner.addBoth(lambda result: None if d.called else d.callback(result))
    else:
        d.callback(outcome)
