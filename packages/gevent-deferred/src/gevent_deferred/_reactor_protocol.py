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
    """

    running: bool

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> IDelayedCall: ...

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kw: object) -> None: ...

    def callWhenRunning(
        self, callable: Callable[..., Any], *args: object, **kw: object
    ) -> object: ...

    def addSystemEventTrigger(
        self,
        phase: str,
        eventType: str,
        callable: Callable[..., Any],
        *args: object,
        **kw: object,
    ) -> Any: ...

    def removeSystemEventTrigger(self, triggerID: Any) -> None: ...


class RunnableReactor(TwistedReactor, Protocol):
    """A L{TwistedReactor} that a L{gevent_deferred.ReactorThread} can run and stop."""

    def run(self, installSignalHandlers: bool = ...) -> None: ...

    def stop(self) -> None: ...
