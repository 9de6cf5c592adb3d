"""
Twisted on gevent's event loop: the whole stack under the 2013 geventreactor's names::

    import geventreactor; geventreactor.install()
    from twisted.internet import reactor

or, for a gevent program that never calls reactor.run()::

    import geventreactor; geventreactor.install(background=True)
    conn = geventreactor.connect("tcp:example.com:80")
"""

from importlib.metadata import version as _version

from gevent_deferred import (
    GreenConnection,
    GreenFactory,
    GreenletKilledError,
    ReactorStoppedError,
    ReactorThread,
    WaitTimeoutError,
    WrongContextError,
    blockingCallFromGreenlet,
    connect,
    deferToGreenlet,
    in_greenlet,
    listen,
    waitForDeferred,
    waitForGreenlet,
)
from gevent_reactor import (
    GeventReactor,
    ReactorContextBlockingError,
    WrongReactorInstalledError,
    ensure_installed,
    install,
    stop_background,
)
from gevent_resolver import GeventResolver, install_gevent_resolver
from gevent_threadpool import GeventThreadPool, use_gevent_threadpool

__version__ = _version("geventreactor")

__all__ = [
    "GeventReactor",
    "GeventResolver",
    "GeventThreadPool",
    "GreenConnection",
    "GreenFactory",
    "GreenletKilledError",
    "ReactorContextBlockingError",
    "ReactorStoppedError",
    "ReactorThread",
    "WaitTimeoutError",
    "WrongContextError",
    "WrongReactorInstalledError",
    "blockingCallFromGreenlet",
    "connect",
    "deferToGreenlet",
    "ensure_installed",
    "in_greenlet",
    "install",
    "install_gevent_resolver",
    "listen",
    "stop_background",
    "use_gevent_threadpool",
    "waitForDeferred",
    "waitForGreenlet",
]
