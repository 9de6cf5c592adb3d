"""A WSGI app whose module makes the reactor's thread pool greenlets (TwistedWorker)."""

from twisted.internet import reactor

from gevent_threadpool import use_gevent_threadpool
from twisted_apps import wsgi

use_gevent_threadpool(reactor)

__all__ = ["wsgi"]
