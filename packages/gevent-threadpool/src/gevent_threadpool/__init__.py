"""Twisted's ThreadPool interface with gevent greenlets as workers."""

from importlib.metadata import version as _version

from gevent_deferred._context_tracker import (
    GreenletContextTracker,
    install_greenlet_context_tracker,
)

from ._install import BlockingCallFromPoolError, use_gevent_threadpool
from ._pool import GeventThreadPool, PoolKilledError

__version__ = _version("gevent-threadpool")

__all__ = [
    "BlockingCallFromPoolError",
    "GeventThreadPool",
    "GreenletContextTracker",
    "PoolKilledError",
    "install_greenlet_context_tracker",
    "use_gevent_threadpool",
]
