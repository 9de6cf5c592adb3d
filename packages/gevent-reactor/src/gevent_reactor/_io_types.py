"""The two kinds of object the I/O path handles: Twisted's selectables and gevent's loop watchers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.python.failure import Failure

__all__ = ["LoopWatcher", "Selectable"]


class Selectable(Protocol):
    """
    A reader or a writer as the dispatcher handles it: Twisted's C{IReadDescriptor} or
    C{IWriteDescriptor} (a transport, a listening port).  A reader has C{doRead}, a writer
    C{doWrite}; the dispatcher calls only the one an event is for.
    """

    def fileno(self) -> int: ...

    def logPrefix(self) -> str: ...

    def doRead(self) -> object: ...

    def doWrite(self) -> object: ...

    def connectionLost(self, reason: Failure) -> None: ...


class LoopWatcher(Protocol):
    """A gevent loop I/O watcher (libev's or libuv's C{loop.io(fd, events)})."""

    def start(
        self, callback: Callable[..., None], *args: object, pass_events: bool = ...
    ) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...
