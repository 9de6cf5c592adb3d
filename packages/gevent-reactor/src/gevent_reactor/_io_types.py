"""The two kinds of object the I/O path handles: Twisted's selectables and gevent's loop watchers.

C{LoopWatcher} lives in gevent-deferred, which uses it too; it is named here as well, so that the
I/O path finds both kinds in one place.
"""

from __future__ import annotations

from typing import Protocol

from twisted.python.failure import Failure

from gevent_deferred._loop_types import LoopWatcher

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
