"""A one-shot event set from any thread and waited on by one greenlet: a ``LoopWaker`` and a
``Waiter``."""

from __future__ import annotations

from gevent.hub import Hub, Waiter

from gevent_deferred._waker import LoopWaker

__all__ = ["CrossThreadEvent"]


class CrossThreadEvent:
    """Created and waited on in one thread (with a hub); ``set()`` from any thread."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._fired = False
        self._woken = False
        self._waiter = Waiter(hub)
        self._waker = LoopWaker(hub.loop, self._wake)

    def set(self) -> None:
        """Wake the waiter. Never blocks. Callable from any thread."""
        self._fired = True
        self._waker.wake()

    def wait(self) -> None:
        """Blocks the current greenlet until ``set()``. Must not be called from the hub."""
        self._waiter.get()

    def close(self) -> None:
        """Release the waker; call it in the waiting thread once done. Never blocks."""
        self._waker.close()

    def _wake(self) -> None:
        # In the hub. The switch happens from a plain loop callback, after the waker's callback
        # has returned, so that the woken greenlet may close the waker at once.
        if self._fired and not self._woken:
            self._woken = True
            self._hub.loop.run_callback(self._waiter.switch, None)
