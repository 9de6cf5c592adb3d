"""Closing a gevent loop watcher, also from inside its own callback.

A watcher must be closed, not only stopped: one left to the garbage collector while its loop runs
can crash libuv. But closing a libuv watcher whose callback is still on the hub's stack crashed
the process, or lost events, so from inside a callback the close waits for a later loop callback.
"""

from __future__ import annotations

from typing import Any

__all__ = ["close_watcher"]


def close_watcher(watcher: Any, *, later_on: Any = None) -> None:
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
