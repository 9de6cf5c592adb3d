"""
Twisted on gevent's event loop: a reactor whose protocol code may block with gevent.

Install it before anything imports C{twisted.internet.reactor}::

    import gevent_reactor
    gevent_reactor.install()
    from twisted.internet import reactor
"""

from importlib.metadata import version as _version

from ._context import ReactorContextBlockingError
from ._reactor import GeventReactor, install

__version__ = _version("gevent-reactor")

__all__ = ["GeventReactor", "ReactorContextBlockingError", "install"]
