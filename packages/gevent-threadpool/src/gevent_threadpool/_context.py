"""One context stack per greenlet: the tracker lives in gevent_deferred, shared by every package."""

from gevent_deferred._context_tracker import (
    GreenletContextTracker,
    install_greenlet_context_tracker,
)

__all__ = ["GreenletContextTracker", "install_greenlet_context_tracker"]
