"""
Twisted on gevent's event loop: the whole stack under the 2013 geventreactor's names::

    import geventreactor; geventreactor.install()
    from twisted.internet import reactor
"""

from importlib.metadata import version as _version

from gevent_deferred import (
    GreenletKilledError,
    ReactorStoppedError,
    ReactorThread,
    WaitTimeoutError,
    WrongContextError,
    blockingCallFromGreenlet,
    deferToGreenlet,
    in_greenlet,
    waitForDeferred,
    waitForGreenlet,
)
from gevent_reactor import (
    GeventReactor,
    ReactorContextBlockingError,
    WrongReactorInstalledError,
    ensure_installed,
    install,
)
from gevent_resolver import GeventResolver, install_gevent_resolver
from gevent_threadpool import GeventThreadPool, use_gevent_threadpool

__version__ = _version("geventreactor")

__all__ = [
    "GeventReactor",
    "GeventResolver",
    "GeventThreadPool",
    "GreenletKilledError",
    "ReactorContextBlockingError",
    "ReactorStoppedError",
    "ReactorThread",
    "WaitTimeoutError",
    "WrongContextError",
    "WrongReactorInstalledError",
    "blockingCallFromGreenlet",
    "deferToGreenlet",
    "ensure_installed",
    "in_greenlet",
    "install",
    "install_gevent_resolver",
    "use_gevent_threadpool",
    "waitForDeferred",
    "waitForGreenlet",
]
