"""Waking a gevent loop's thread from any other thread: one waker, for every repeated wake-up.

``LoopWaker(loop, callback)`` runs ``callback`` in the loop's hub after ``wake()`` was called in
any thread. The fast path is the loop's ``async_()`` watcher, whose ``send()`` is safe from any
thread and coalesces. Three things make it safe to rely on:

  - a flag is set before every send and a slow, unreferenced timer looks at it, so a wake-up whose
    send was lost costs at most ``fallback`` seconds instead of a hang;
  - ``wake()`` sends under a real lock that ``close()`` takes too, so a send never reaches a closed
    watcher (libuv aborts the process with "Sending to a closed watcher");
  - ``close()`` called from the waker's own callback closes the watchers from a later loop callback:
    closing a libuv watcher whose callback is still on the hub's stack crashed the process.

What it covers: a callback that its owner wakes again and again, in a loop whose own thread made
the waker (a watcher is only ever created in its loop's thread). A single call into another
thread's hub that made nothing for it (``waitForGreenlet`` linking to or killing a greenlet of
that hub, closing a resolver in the hub that built it) cannot have a waker there, and uses
gevent's ``loop.run_callback_threadsafe`` instead. That call does not need the fallback: it puts
the callback in the loop's own callback queue, and only then sends the loop's own async watcher.
The send merely shortens the wait, because the loop runs that queue on every pass. On libuv,
gevent also keeps an unreferenced 0.3 s timer in every loop, so a lost send there delays the
callback by at most 0.3 s instead of leaving it behind. A waker's callback, by contrast, runs
only from its own async watcher's callback, which a lost send never calls: hence the timer here.
On libev (no such timer) the call relies on libev's ``ev_async_send``, as the waker's fast path
does. Once the target loop was destroyed, the call raises instead of sending. One thing
gevent's call does that ``wake()`` never does: on libuv it also starts the loop's callback watcher
from the calling thread, which libuv does not promise to be thread-safe; that is why repeated
wake-ups go through a waker, and only these rare single calls through gevent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._threads import allocate_lock
from ._watchers import close_watcher

if TYPE_CHECKING:
    from ._loop_types import AsyncWatcher, Loop, LoopWatcher

__all__ = ["FALLBACK_INTERVAL", "LoopWaker"]

#: Seconds between looks at the wake-up flag, the bound on a lost cross-thread wake-up.
FALLBACK_INTERVAL = 0.05


class LoopWaker:
    """
    Run ``callback()`` in ``loop``'s hub, soon after ``wake()`` was called from any thread.

    Create it in the loop's own thread. Wake-ups coalesce: one run of ``callback`` answers every
    ``wake()`` made before it began; a ``wake()`` made while it runs gets another run. An exception
    from ``callback`` is reported by the hub, as for any watcher callback. ``ref`` says whether the
    waker keeps the loop alive (an unreferenced one lets an idle program end); ``fallback`` is the
    polling interval that bounds a lost wake-up (None: no timer).
    """

    __slots__ = (
        "_async",
        "_callback",
        "_closed",
        "_firing",
        "_lock",
        "_loop",
        "_pending",
        "_timer",
    )

    def __init__(
        self,
        loop: Loop,
        callback: Callable[[], object],
        *,
        ref: bool = True,
        fallback: float | None = FALLBACK_INTERVAL,
    ) -> None:
        if not callable(callback):
            raise TypeError(
                f"LoopWaker(loop, callback) expects a callable callback, got {callback!r:.80}"
            )
        if not callable(getattr(loop, "async_", None)):
            raise TypeError(f"LoopWaker(loop, callback) expects a gevent loop, got {loop!r:.80}")
        if fallback is not None and not (isinstance(fallback, int | float) and fallback > 0):
            raise ValueError(
                f"LoopWaker(fallback=...) expects seconds > 0 or None, got {fallback!r}"
            )
        self._loop = loop
        self._callback = callback
        self._pending = False
        self._closed = False
        self._firing = False
        self._lock = allocate_lock()
        # Both watchers start before anyone can wake(): a send to an unstarted watcher is lost.
        self._async: AsyncWatcher = loop.async_(ref=ref)
        self._async.start(self._fire)
        self._timer: LoopWatcher | None = None
        if fallback is not None:
            self._timer = loop.timer(fallback, fallback, ref=False)
            self._timer.start(self._fire)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("pending" if self._pending else "idle")
        return f"<LoopWaker {self._callback!r:.60} {state}>"

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran. Never blocks. Callable from any thread."""
        return self._closed

    @property
    def ref(self) -> bool:
        """Whether the waker keeps its loop alive. Never blocks. Set it from the loop's thread."""
        return bool(self._async.ref)

    @ref.setter
    def ref(self, on: bool) -> None:
        if not self._closed:
            self._async.ref = on

    def wake(self) -> None:
        """Make ``callback`` run in the loop's hub soon. Never blocks. Callable from any thread.

        Does nothing once closed.
        """
        self._pending = True
        with self._lock:
            if not self._closed:
                self._async.send()

    def close(self) -> None:
        """Stop for good: ``callback`` no longer runs, ``wake()`` does nothing. Never blocks.

        Call it from the loop's thread (also from ``callback`` itself); a second call does nothing.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        later_on = self._loop if self._firing else None
        for watcher in (self._async, self._timer):
            if watcher is not None:
                close_watcher(watcher, later_on=later_on)

    def _fire(self) -> None:
        # In the hub (a watcher callback). The flag is cleared before the callback runs, so that a
        # wake() from another thread during the callback gets a run of its own.
        if self._pending and not self._closed:
            self._pending = False
            self._firing = True
            try:
                self._callback()
            finally:
                self._firing = False
