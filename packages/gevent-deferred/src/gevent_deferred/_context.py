"""Where are we? Which reactor, which thread, which hub: the two situations, told apart cheaply.

Situation 1 ("in-loop"): a reactor driven by this thread's hub (``IHubReactor``), or no running
reactor at all; Deferreds are fired and waited on in this thread, without thread hops.
Situation 2 ("cross-thread"): a reactor not driven by this thread's hub runs (or will run) in
another OS thread; Deferreds are only touched in that thread.
"""

from __future__ import annotations

import inspect
import sys
import weakref
from asyncio import iscoroutine
from typing import Any

import gevent
from twisted.internet.defer import Deferred
from twisted.python import threadable
from twisted.python.failure import Failure

from ._errors import ReactorStoppedError, WrongContextError
from ._interfaces import IHubReactor
from ._threads import allocate_lock, get_ident, get_original, hub_if_exists

_local = get_original("_thread", "_local")()  # real-thread-local, even after patch_all()


def installed_reactor() -> Any:
    """The global reactor if one is installed, without installing one as importing would."""
    return sys.modules.get("twisted.internet.reactor")


def is_coroutine(value: Any) -> bool:
    # The same test as Twisted's Deferred.fromCoroutine (ensureDeferred).
    return iscoroutine(value) or inspect.isgenerator(value)


def check_deferred(api: str, name: str, value: Any) -> None:
    if not (isinstance(value, Deferred) or is_coroutine(value)):
        raise TypeError(
            f"{api}({name}) expects a Deferred or a coroutine (the result of calling an async def "
            f"function), got {type(value).__name__}: {value!r:.80}"
        )


def check_reactor(api: str, reactor: Any) -> None:
    if not (callable(getattr(reactor, "callFromThread", None)) and hasattr(reactor, "callLater")):
        raise TypeError(
            f"{api}(reactor=...) expects a Twisted reactor (with callFromThread and callLater), "
            f"got {type(reactor).__name__}: {reactor!r:.80}"
        )


def check_timeout(api: str, timeout: Any) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise TypeError(
            f"{api}(timeout=...) expects None or a number of seconds >= 0, got {timeout!r:.80}"
        )


def hub_error(api: str) -> WrongContextError:
    return WrongContextError(
        f"{api}() was called from the gevent hub (a loop callback, or code the hub runs "
        "directly), which must never block: it would stop every greenlet of this thread. Run the "
        "waiting code in a greenlet of its own: gevent.spawn(...), or deferToGreenlet(...) / "
        "@in_greenlet from Twisted code."
    )


def reactor_thread_error(api: str, reactor: Any) -> WrongContextError:
    return WrongContextError(
        f"{api}() was called in the thread of {reactor!r}, a reactor not driven by gevent: "
        "blocking here would stop that reactor, and only it can deliver the result, so it would "
        "deadlock. In Twisted code, add callbacks to the Deferred instead, or run the blocking "
        "code in a greenlet with deferToGreenlet(...) / @in_greenlet (it runs in a gevent hub "
        "thread)."
    )


def reactor_context_error(api: str) -> WrongContextError:
    return WrongContextError(
        f"{api}() was called in the reactor's context (a timed call, callFromThread call or "
        "Deferred callback run by the reactor), which must not block. Add callbacks instead, or "
        "run the blocking code in its own greenlet with deferToGreenlet(...) / @in_greenlet."
    )


class ReactorLink:
    """
    What this package knows about one reactor that runs in another thread.

    It keeps every pending cross-thread wait, so that at reactor shutdown they all fail with
    ``ReactorStoppedError`` instead of hanging: a wait registers under the lock before asking the
    reactor thread for anything, and the shutdown sweep takes the same lock, so none slips through.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor_ref = weakref.ref(reactor)
        self.description = repr(reactor)
        self.lock = allocate_lock()
        self.pending: set[Any] = set()
        self.stopped = False
        self.thread_ident: int | None = None  # known when a ReactorThread runs it
        self.trigger_installed = False
        if getattr(reactor, "_startedBefore", False) and not getattr(reactor, "running", False):
            self.stopped = True  # it ran and stopped before we ever saw it

    def stopped_error(self) -> ReactorStoppedError:
        return ReactorStoppedError(
            f"reactor stopped: {self.description} has shut down, so the Deferred this greenlet "
            "was waiting for will never fire"
        )

    def register(self, wait: Any, reactor: Any, same_thread: bool = False) -> None:
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


def link_for(reactor: Any) -> ReactorLink:
    link = _links.get(reactor)
    if link is None:
        with _links_lock:
            link = _links.get(reactor)
            if link is None:
                link = _links[reactor] = ReactorLink(reactor)
    return link


def set_thread_reactor(reactor: Any) -> None:
    """Record (in the reactor's own thread) which reactor this thread runs."""
    _local.reactor = reactor


def thread_reactor() -> Any:
    """A non-gevent reactor running in this OS thread, if known, else None."""
    reactor = getattr(_local, "reactor", None)
    if reactor is not None:
        return reactor
    reactor = installed_reactor()
    if reactor is None or not getattr(reactor, "running", False):
        return None
    if IHubReactor.providedBy(reactor):
        return None
    link = _links.get(reactor)
    if link is not None and link.thread_ident is not None:
        return reactor if link.thread_ident == get_ident() else None
    return reactor if threadable.isInIOThread() else None


IN_LOOP = "in-loop"
CROSS_THREAD = "cross-thread"


def situation(api: str, reactor: Any) -> tuple[str, Any]:
    """
    Decide how ``api`` must wait for ``reactor``'s Deferreds from the current greenlet.

    Returns ``(IN_LOOP, hub)`` or ``(CROSS_THREAD, link)``; raises ``WrongContextError`` where
    waiting cannot work (the hub, a non-gevent reactor's own thread).
    """
    hub = hub_if_exists()
    if hub is not None and gevent.getcurrent() is hub:
        raise hub_error(api)
    if reactor is None:
        return IN_LOOP, hub or gevent.get_hub()
    if IHubReactor.providedBy(reactor):
        reactor_hub = reactor.hub
        if reactor_hub is hub and hub is not None:
            return IN_LOOP, hub
    link = _links.get(reactor)
    if link is not None and link.thread_ident is not None:
        if link.thread_ident == get_ident():
            raise reactor_thread_error(api, reactor)
        return CROSS_THREAD, link
    if getattr(reactor, "running", False):
        if getattr(_local, "reactor", None) is reactor or threadable.isInIOThread():
            raise reactor_thread_error(api, reactor)
        return CROSS_THREAD, link or link_for(reactor)
    if link is not None or getattr(reactor, "_startedBefore", False):
        return CROSS_THREAD, link or link_for(reactor)  # a stopped reactor: fails at register
    # Nobody runs this reactor: its Deferreds can only be fired by code in this thread.
    return IN_LOOP, hub or gevent.get_hub()
