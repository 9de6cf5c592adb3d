"""Wake one greenlet from any thread, without trusting a single cross-thread wake-up.

The hub loop's ``async_()`` watcher is the fast path: ``send()`` is safe from any thread. With
``GEVENT_LOOP=libuv-cffi`` after ``gevent.monkey.patch_all()``, a ``send()`` from another hub's
thread into the main thread's loop was seen to be lost (about one run in thirty, the loop then
slept until some unrelated event). So a flag is set before each send and a slow timer polls it:
a lost wake-up costs at most ``POLL_INTERVAL`` instead of a hang.
"""

from __future__ import annotations

from typing import Any

from gevent.hub import Hub, Waiter

from ._threads import allocate_lock

__all__ = ["POLL_INTERVAL", "CrossThreadSignal"]

POLL_INTERVAL = 0.05


class CrossThreadSignal:
    """Created and waited on in one thread (with a hub); ``set()`` from any thread."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._fired = False
        self._woken = False
        self._closed = False
        self._lock = allocate_lock()
        self._waiter = Waiter(hub)
        # Both watchers start before anyone can set(): a send to a stopped watcher is lost.
        self._watcher: Any = hub.loop.async_()
        self._watcher.start(self._wake)
        self._timer: Any = hub.loop.timer(POLL_INTERVAL, POLL_INTERVAL)
        self._timer.start(self._poll)

    def set(self) -> None:
        """Wake the waiter. Never blocks. Callable from any thread."""
        self._fired = True
        with self._lock:
            if not self._closed:
                self._watcher.send()

    def wait(self) -> None:
        """Blocks the current greenlet until ``set()``. Must not be called from the hub."""
        self._waiter.get()

    def close(self) -> None:
        """Release the watchers; call it in the waiting thread once done. Never blocks."""
        with self._lock:
            self._closed = True
        for watcher in (self._watcher, self._timer):
            watcher.stop()
            watcher.close()

    def _wake(self) -> None:
        # In the hub (a watcher callback). The switch happens from a plain loop callback, after
        # this watcher callback has returned: the woken greenlet closes the watchers, and closing
        # a libuv watcher whose callback is still on the hub's stack crashed the process.
        if self._fired and not self._woken:
            self._woken = True
            self._hub.loop.run_callback(self._waiter.switch, None)

    def _poll(self) -> None:
        self._wake()
