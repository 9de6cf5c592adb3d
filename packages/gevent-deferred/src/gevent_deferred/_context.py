"""Old home of the in-loop/cross-thread decision, the argument checks and the reactor links.

Kept only so that modules still importing from here need no change; new code imports from
``_in_loop``, ``_checks``, ``_errors`` and ``_reactor_links``.
"""

from ._checks import check_deferred, check_reactor, check_timeout, is_coroutine
from ._errors import hub_error, reactor_context_error, reactor_thread_error
from ._in_loop import (
    CROSS_THREAD,
    IN_LOOP,
    installed_reactor,
    set_thread_reactor,
    thread_reactor,
    where_to_wait,
)
from ._reactor_links import ReactorLink, link_for

situation = where_to_wait

__all__ = [
    "CROSS_THREAD",
    "IN_LOOP",
    "ReactorLink",
    "check_deferred",
    "check_reactor",
    "check_timeout",
    "hub_error",
    "installed_reactor",
    "is_coroutine",
    "link_for",
    "reactor_context_error",
    "reactor_thread_error",
    "set_thread_reactor",
    "situation",
    "thread_reactor",
    "where_to_wait",
]
