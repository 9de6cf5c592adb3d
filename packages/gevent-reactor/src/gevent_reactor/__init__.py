"""
Twisted on gevent's event loop: a reactor whose protocol code may block with gevent.

Install it before anything imports C{twisted.internet.reactor}::

    import gevent_reactor
    gevent_reactor.install()
    from twisted.internet import reactor
"""

from importlib.metadata import version as _version

from ._background import stop_background
from ._install import WrongReactorInstalledError, ensure_installed, install
from ._reactor import GeventReactor
from ._reactor_context import ReactorContextBlockingError

__version__ = _version("gevent-reactor")

__all__ = [
    "GeventReactor",
    "ReactorContextBlockingError",
    "WrongReactorInstalledError",
    "ensure_installed",
    "install",
    "stop_background",
]
