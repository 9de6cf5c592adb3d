"""Cross-thread wake-ups for greenlets waiting on a reactor in another thread.

One mailbox per hub: a deque and one ``async_()`` watcher. Any thread appends ``(wait, result)``
and sends the watcher (thread-safe, coalescing); the hub drains the deque and switches to the
waiting greenlets. Measured on this project's machines (benchmarks/bench_deferred.py has the
numbers), this beat gevent's thread-safe ``AsyncResult`` (which also ends in ``LoopExit`` when
nothing else keeps the waiting hub alive) and an ``async_()`` watcher per wait.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ._threads import get_original

_local = get_original("_thread", "_local")()


class HubMailbox:
    """The mailbox of one hub. ``post`` is callable from any thread; the rest from its thread."""

    __slots__ = ("_unref_scheduled", "hub", "pending", "queue", "watcher")

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.queue: deque[tuple[Any, Any]] = deque()
        self.pending = 0
        self._unref_scheduled = False
        # Unreferenced while nobody waits, so an idle program can still end with LoopExit.
        self.watcher = hub.loop.async_(ref=False)
        self.watcher.start(self._drain)

    def post(self, wait: Any, result: Any) -> None:
        self.queue.append((wait, result))
        self.watcher.send()

    def _drain(self) -> None:
        queue = self.queue
        while queue:
            wait, result = queue.popleft()
            wait.deliver(result)

    def acquire(self) -> None:
        # A pending wait must keep the hub alive, or a lone waiting greenlet gets LoopExit.
        self.pending += 1
        if self.pending == 1 and not self.watcher.ref:
            self.watcher.ref = True

    def release(self) -> None:
        self.pending -= 1
        if self.pending == 0 and not self._unref_scheduled:
            # Toggling ref per wait halves sequential round trips; deferring the unref to the end
            # of this loop pass lets a greenlet that waits again right away keep the reference.
            self._unref_scheduled = True
            self.hub.loop.run_callback(self._maybe_unref)

    def _maybe_unref(self) -> None:
        self._unref_scheduled = False
        if self.pending == 0:
            self.watcher.ref = False


def mailbox_for(hub: Any) -> HubMailbox:
    mailbox = getattr(_local, "mailbox", None)
    if mailbox is None or mailbox.hub is not hub:
        # A thread whose hub was destroyed and re-created gets a new mailbox.
        mailbox = _local.mailbox = HubMailbox(hub)
    return mailbox
