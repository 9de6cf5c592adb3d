"""In-loop or cross-thread: does a reactor run on the calling thread's gevent hub?

In-loop: the reactor is driven by this thread's hub (``IHubReactor``), or no reactor runs at
all; greenlets and the reactor share the thread, and Deferreds are fired and waited on here.
Cross-thread: the reactor runs (or will run) in another OS thread; its Deferreds are only touched
there, and greenlets working for it run in a gevent hub thread of their own. Every package asks
``runs_on_this_hub(reactor)``; waiting asks ``where_to_wait``, which also refuses the places where
a wait can only deadlock.
"""

from __future__ import annotations

import sys
from typing import Any

import gevent
from twisted.python import threadable

from ._errors import hub_error, reactor_thread_error
from ._interfaces import IHubReactor
from ._reactor_links import known_link, link_for
from ._reactor_protocol import TwistedReactor
from ._threads import get_ident, hub_if_exists, thread_local

__all__ = [
    "CROSS_THREAD",
    "IN_LOOP",
    "installed_reactor",
    "runs_on_this_hub",
    "set_thread_reactor",
    "thread_reactor",
    "where_to_wait",
]

_local = thread_local()  # per OS thread: the non-gevent reactor this thread runs, if any

IN_LOOP = "in-loop"
CROSS_THREAD = "cross-thread"


def installed_reactor() -> Any:
    """The global reactor if one is installed, without installing one as importing would.

    Never blocks. Callable from any thread.
    """
    return sys.modules.get("twisted.internet.reactor")


def runs_on_this_hub(reactor: object) -> bool:
    """True if ``reactor`` is driven by the calling thread's gevent hub (in-loop).

    Any object may be asked about; only an ``IHubReactor`` can be. Never creates a hub. Never
    blocks. Callable from any thread.
    """
    # providedBy first: for a stock reactor this never even looks for a hub.
    if not IHubReactor.providedBy(reactor):
        return False
    hub = hub_if_exists()
    # IHubReactor declares hub; getattr only because the type checker cannot know it from that.
    return hub is not None and getattr(reactor, "hub", None) is hub


def set_thread_reactor(reactor: TwistedReactor | None) -> None:
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
    link = known_link(reactor)
    if link is not None and link.thread_ident is not None:
        return reactor if link.thread_ident == get_ident() else None
    return reactor if threadable.isInIOThread() else None


def where_to_wait(api: str, reactor: TwistedReactor) -> tuple[str, Any]:
    """
    Decide how ``api`` must wait for ``reactor``'s Deferreds from the current greenlet.

    Returns ``(IN_LOOP, hub)`` or ``(CROSS_THREAD, link)``; raises ``WrongContextError`` where
    waiting cannot work (the hub, a non-gevent reactor's own thread). Never blocks.
    """
    hub = hub_if_exists()
    if hub is not None and gevent.getcurrent() is hub:
        raise hub_error(api)
    if reactor is None or runs_on_this_hub(reactor):
        return IN_LOOP, hub or gevent.get_hub()
    link = known_link(reactor)
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
