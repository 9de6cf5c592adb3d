"""A WSGI app whose module makes the reactor's thread pool greenlets (TwistedWorker)."""

from twisted.internet import reactor
from twisted_apps import wsgi

from gevent_threadpool import use_gevent_threadpool

use_gevent_threadpool(reactor)

__all__ = ["wsgi"]
