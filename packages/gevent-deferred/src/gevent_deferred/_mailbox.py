"""Cross-thread wake-ups for greenlets waiting on a reactor in another thread.

One mailbox per hub: a deque and one ``LoopWaker``. Any thread appends ``(wait, result)`` and
wakes the hub (thread-safe, coalescing); the hub drains the deque and switches to the waiting
greenlets. Measured on this project's machines (benchmarks/bench_deferred.py has the
numbers), this beat gevent's thread-safe ``AsyncResult`` (which also ends in ``LoopExit`` when
nothing else keeps the waiting hub alive) and an ``async_()`` watcher per wait.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ._threads import thread_local
from ._waker import LoopWaker

if TYPE_CHECKING:
    from gevent.hub import Hub

_local = thread_local()


class HubMailbox:
    """The mailbox of one hub. ``post`` is callable from any thread; the rest from its thread."""

    __slots__ = ("draining", "hub", "pending", "queue", "referenced", "waker")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.queue: deque[tuple[Any, Any]] = deque()
        self.pending = 0
        self.draining = False
        # Unreferenced while nobody waits, so an idle program can still end with LoopExit.
        self.waker = LoopWaker(hub.loop, self._drain, ref=False)
        self.referenced = False

    def post(self, wait: Any, result: Any) -> None:
        self.queue.append((wait, result))
        self.waker.wake()

    def _drain(self) -> None:
        queue = self.queue
        self.draining = True
        try:
            while queue:
                wait, result = queue.popleft()
                # Switches to the waiting greenlet, which runs until it blocks again (often in
                # its next wait) or ends, then comes back here.
                wait.deliver(result)
        finally:
            self.draining = False
        if self.pending == 0 and self.referenced:
            self._set_ref(False)

    def _set_ref(self, on: bool) -> None:
        self.referenced = on
        self.waker.ref = on

    def acquire(self) -> None:
        # A pending wait must keep the hub alive, or a lone waiting greenlet gets LoopExit.
        self.pending += 1
        if not self.referenced:
            self._set_ref(True)

    def release(self) -> None:
        self.pending -= 1
        # A greenlet woken by _drain that waits again right away keeps the reference: _drain
        # drops it when it is done, once, instead of once per wait (each change costs a call into
        # the loop, and a loop callback would cost a whole extra loop pass under libuv).
        if self.pending == 0 and not self.draining and self.referenced:
            self._set_ref(False)


def mailbox_for(hub: Hub) -> HubMailbox:
    mailbox = getattr(_local, "mailbox", None)
    if mailbox is None or mailbox.hub is not hub:
        # A thread whose hub was destroyed and re-created gets a new mailbox.
        mailbox = _local.mailbox = HubMailbox(hub)
    return mailbox
