"""Exceptions raised by gevent_deferred; each message says what happened and what to do."""

from __future__ import annotations

from twisted.internet.defer import CancelledError


class GreenletKilledError(CancelledError):
    """The greenlet behind a Deferred was killed (``GreenletExit``) before it returned a value."""


class WaitTimeoutError(TimeoutError):
    """``waitForDeferred`` gave up after its ``timeout``; the Deferred has been cancelled."""


class ReactorStoppedError(RuntimeError):
    """The reactor stopped (or was never going to run) while a greenlet waited on one of its
    Deferreds."""


class WrongContextError(RuntimeError):
    """A blocking call was made where it can only deadlock or fail: the hub, or the reactor's own
    thread or context. The message says what to do instead."""


def hub_error(api: str) -> WrongContextError:
    """The error for a blocking ``api`` called from the hub. Never blocks."""
    return WrongContextError(
        f"{api}() was called from the gevent hub (a loop callback, or code the hub runs "
        "directly), which must never block: it would stop every greenlet of this thread. Run the "
        "waiting code in a greenlet of its own: gevent.spawn(...), or deferToGreenlet(...) / "
        "@in_greenlet from Twisted code."
    )


def reactor_thread_error(api: str, reactor: object) -> WrongContextError:
    """The error for a blocking ``api`` called in a non-gevent reactor's thread. Never blocks."""
    return WrongContextError(
        f"{api}() was called in the thread of {reactor!r}, a reactor not driven by gevent: "
        "blocking here would stop that reactor, and only it can deliver the result, so it would "
        "deadlock. In Twisted code, add callbacks to the Deferred instead, or run the blocking "
        "code in a greenlet with deferToGreenlet(...) / @in_greenlet (it runs in a gevent hub "
        "thread)."
    )


def reactor_context_error(api: str) -> WrongContextError:
    """The error for a blocking ``api`` called in GeventReactor's own context. Never blocks."""
    return WrongContextError(
        f"{api}() was called in the reactor's context (a timed call, callFromThread call or "
        "Deferred callback run by the reactor), which must not block. Add callbacks instead, or "
        "run the blocking code in its own greenlet with deferToGreenlet(...) / @in_greenlet."
    )
