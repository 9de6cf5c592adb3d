"""Twisted's ThreadPool interface with gevent greenlets as workers."""

from ._context import GreenletContextTracker, install_greenlet_context_tracker
from ._pool import GeventThreadPool, PoolKilledError

__all__ = [
    "GeventThreadPool",
    "GreenletContextTracker",
    "PoolKilledError",
    "install_greenlet_context_tracker",
]
