"""What this package knows about each reactor that runs in another OS thread: a ReactorLink.

A link holds the reactor's pending cross-thread waits, so that they all fail with
``ReactorStoppedError`` when it shuts down, and the reactor's thread once a ReactorThread runs it.
"""

from __future__ import annotations

import weakref
from typing import Any

from twisted.python.failure import Failure

from ._errors import ReactorStoppedError
from ._reactor_protocol import TwistedReactor
from ._threads import allocate_lock

__all__ = ["ReactorLink", "known_link", "link_for", "stopped_for_good"]


def stopped_for_good(reactor: object) -> bool:
    """True if ``reactor`` ran and has stopped: a Twisted reactor never runs again after that.

    Never blocks. Callable from any thread.
    """
    return bool(getattr(reactor, "_startedBefore", False)) and not getattr(
        reactor, "running", False
    )


class ReactorLink:
    """
    What this package knows about one reactor that runs in another thread.

    It keeps every pending cross-thread wait, so that at reactor shutdown they all fail with
    ``ReactorStoppedError`` instead of hanging: a wait registers under the lock before asking the
    reactor thread for anything, and the shutdown sweep takes the same lock, so none slips through.
    """

    def __init__(self, reactor: TwistedReactor) -> None:
        self.reactor_ref = weakref.ref(reactor)
        self.description = repr(reactor)
        self.lock = allocate_lock()
        self.pending: set[Any] = set()
        self.stopped = False
        self.thread_ident: int | None = None  # known when a ReactorThread runs it
        self.trigger_installed = False
        if stopped_for_good(reactor):
            self.stopped = True  # it ran and stopped before we ever saw it

    def stopped_error(self) -> ReactorStoppedError:
        return ReactorStoppedError(
            f"reactor stopped: {self.description} has shut down, so the Deferred this greenlet "
            "was waiting for will never fire"
        )

    def register(self, wait: Any, reactor: TwistedReactor, same_thread: bool = False) -> None:
        """Add a pending wait. ``same_thread``: called in the reactor's own thread (in-loop)."""
        with self.lock:
            if self.stopped:
                raise self.stopped_error()
            self.pending.add(wait)
            install = not self.trigger_installed
            self.trigger_installed = True
        if install:
            if same_thread:
                reactor.addSystemEventTrigger("after", "shutdown", self.sweep)
            else:
                # Twisted's trigger lists belong to the reactor thread.
                reactor.callFromThread(
                    reactor.addSystemEventTrigger, "after", "shutdown", self.sweep
                )

    def unregister(self, wait: Any) -> None:
        with self.lock:
            self.pending.discard(wait)

    def sweep(self) -> None:
        """Fail every pending wait; later waits fail at once. Called at or after shutdown."""
        with self.lock:
            self.stopped = True
            waits = list(self.pending)
            self.pending.clear()
        for wait in waits:
            wait.post(Failure(self.stopped_error()))


_links: weakref.WeakKeyDictionary[Any, ReactorLink] = weakref.WeakKeyDictionary()
_links_lock = allocate_lock()


def known_link(reactor: TwistedReactor) -> ReactorLink | None:
    """The link of ``reactor`` if one was made, else None. Never blocks."""
    return _links.get(reactor)


def link_for(reactor: TwistedReactor) -> ReactorLink:
    """The link of ``reactor``, made on first use. Never blocks. Callable from any thread."""
    link = _links.get(reactor)
    if link is None:
        with _links_lock:
            link = _links.get(reactor)
            if link is None:
                link = _links[reactor] = ReactorLink(reactor)
    return link
