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
