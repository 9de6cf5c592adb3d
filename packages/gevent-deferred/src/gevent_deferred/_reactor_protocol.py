"""What these packages use of a Twisted reactor, as a type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall

__all__ = ["RunnableReactor", "TwistedReactor"]


class TwistedReactor(Protocol):
    """
    A Twisted reactor as gevent-deferred uses one: timed calls, calls from other threads, its
    running state and its system events.  Every Twisted reactor is one (EPollReactor,
    GeventReactor, the asyncio reactor, ...).

    The methods taking a callable and its arguments are named as read-only members of a callable
    type: Twisted's reactors name the callable parameter differently (C{callable}, C{f}) and take
    any keyword arguments for it, so no one signature matches them all.
    """

    running: bool

    @property
    def callLater(self) -> Callable[..., IDelayedCall]: ...

    @property
    def callFromThread(self) -> Callable[..., None]: ...

    @property
    def callWhenRunning(self) -> Callable[..., object]: ...

    @property
    def addSystemEventTrigger(self) -> Callable[..., Any]: ...

    def removeSystemEventTrigger(self, triggerID: Any, /) -> None: ...


class RunnableReactor(TwistedReactor, Protocol):
    """A L{TwistedReactor} that a L{gevent_deferred.ReactorThread} can run and stop."""

    def run(self, installSignalHandlers: bool = ...) -> None: ...

    def stop(self) -> None: ...
