"""A Twisted context tracker that keeps one context stack per greenlet instead of per thread.

Twisted's default ``ThreadedContextTracker`` keeps one stack per OS thread. Greenlets share a thread
and interleave: greenlet A pushes its context and blocks, greenlet B pushes its own, A resumes and
reads B's context, and A's pop removes B's entry. One stack per greenlet fixes that; for code that
does not use greenlets, every thread has exactly one greenlet, so nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from greenlet import getcurrent
from twisted.python import context

__all__ = ["GreenletContextTracker", "install_greenlet_context_tracker"]

# The attribute under which each greenlet keeps its own ContextTracker.
_ATTRIBUTE = "_gevent_context_tracker"


class GreenletContextTracker:
    """
    Twisted's context-tracker interface (``currentContext``, ``callWithContext``, ``getContext``)
    with one ``ContextTracker`` per greenlet. Never blocks. Callable from any thread.
    """

    def currentContext(self) -> context.ContextTracker:
        """The calling greenlet's ContextTracker. Never blocks. Callable from any thread."""
        current = getcurrent()
        try:
            return getattr(current, _ATTRIBUTE)
        except AttributeError:
            tracker = context.ContextTracker()
            setattr(current, _ATTRIBUTE, tracker)
            return tracker

    def callWithContext(
        self, ctx: dict[Any, Any], func: Callable[..., Any], /, *args: object, **kw: object
    ) -> Any:
        """Call ``func`` with ``ctx`` pushed on the calling greenlet's stack.

        Blocks the current greenlet only as long as ``func`` does. Callable from any thread.
        """
        return self.currentContext().callWithContext(ctx, func, *args, **kw)

    def getContext(self, key: Any, default: object = None) -> Any:
        """The innermost value for ``key`` in the calling greenlet's context. Never blocks."""
        return self.currentContext().getContext(key, default)


def install_greenlet_context_tracker() -> bool:
    """
    Make ``twisted.python.context`` track contexts per greenlet (idempotent), through Twisted's
    own hook ``context.installContextTracker``. Return True if contexts are now per greenlet.

    ``GeventReactor`` and ``GeventThreadPool.start()`` call it, so that handlers and work items
    that block cooperatively keep their own context. A tracker other than Twisted's default that
    someone installed on purpose is left alone. Never blocks. Callable from any thread.
    """
    current = context.theContextTracker
    if isinstance(current, GreenletContextTracker):
        return True
    if type(current) is not context.ThreadedContextTracker:
        # Someone chose their own tracker; replacing it would silently undo that choice.
        return False
    context.installContextTracker(GreenletContextTracker())
    return True
