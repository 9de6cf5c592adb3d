"""Closing a gevent loop watcher, also from inside its own callback.

A watcher must be closed, not only stopped: one left to the garbage collector while its loop runs
can crash libuv. But closing a libuv watcher whose callback is still on the hub's stack crashed
the process, or lost events, so from inside a callback the close waits for a later loop callback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._loop_types import Loop, LoopWatcher

__all__ = ["LaterCloser", "close_watcher"]


def close_watcher(watcher: LoopWatcher, *, later_on: Loop | None = None) -> None:
    """
    Stop ``watcher`` now and close it: at once, or, given its loop as ``later_on``, from a later
    callback of that loop (do that inside any watcher callback of that loop).

    Never blocks. Call it from the loop's own thread.
    """
    watcher.stop()
    if later_on is None:
        watcher.close()
    else:
        later_on.run_callback(watcher.close)


class LaterCloser:
    """
    Closes watchers of one loop from a later callback of that loop, many in one callback.

    For a caller that drops watchers often and usually from inside callbacks (a reactor removing
    a reader from its own C{doRead}): one loop callback per batch, not one per watcher.
    """

    def __init__(self, loop: Loop) -> None:
        self._loop = loop
        self._closing: list[LoopWatcher] = []

    def close_soon(self, watcher: LoopWatcher) -> None:
        """Stop ``watcher`` now; close it from a later loop callback. Never blocks. Call it
        from the loop's own thread."""
        watcher.stop()
        closing = self._closing
        closing.append(watcher)
        if len(closing) == 1:
            self._loop.run_callback(self._close_all)

    def _close_all(self) -> None:
        closing, self._closing = self._closing, []
        for watcher in closing:
            watcher.close()
