"""C{GeventReactorWorker}: gunicorn's gevent worker with GeventReactor running beside it."""

from __future__ import annotations

from typing import Any

import gevent
from gunicorn.workers.base import Worker
from gunicorn.workers.ggevent import GeventWorker

from gevent_reactor import install, stop_background

from ._gunicorn_common import (
    Heartbeat,
    exit_hard,
    heartbeat_interval,
    log_twisted_to_gunicorn,
    reactor_after_fork,
)

__all__ = ["GeventReactorWorker"]


class GeventReactorWorker(GeventWorker):
    """
    gunicorn's gevent worker (C{-k gevent}) with GeventReactor installed as
    C{twisted.internet.reactor} and running in the same hub, so that a WSGI application can call
    Twisted client code (through C{gevent_deferred.waitForDeferred}) without any setup::

        gunicorn -k geventreactor.gunicorn.GeventReactorWorker module:wsgi_app
    """

    reactor: Any = None

    _heartbeat: Heartbeat | None = None

    def init_process(self) -> None:
        # As GeventWorker.init_process: patch, a fresh hub, then gunicorn's worker start-up.
        self.patch()
        gevent.reinit()
        try:
            Worker.init_process(self)
        finally:
            if self._heartbeat is not None:
                self._heartbeat.stop()
            if self.reactor is not None:
                stop_background(self.reactor, timeout=max(1.0, float(self.cfg.graceful_timeout)))

    def load_wsgi(self) -> None:
        # After gunicorn's signal handlers are in place, before the application is imported: the
        # reactor it imports is GeventReactor, running already.
        self.reactor = reactor_after_fork(type(self).__name__)
        log_twisted_to_gunicorn()
        install(background=True)  # runs the reactor just installed, in a greenlet of this hub
        self._heartbeat = Heartbeat(self.reactor, self._beat, self._orphaned, self.ppid)
        self.reactor.callWhenRunning(self._heartbeat.start, heartbeat_interval(self.timeout))
        super().load_wsgi()

    def notify(self) -> None:
        # GeventWorker.run calls this every second from a greenlet; the heartbeat that counts is
        # sent from the reactor (_beat), so a stuck reactor gets the worker replaced too.
        pass

    def _beat(self) -> None:
        Worker.notify(self)

    def _orphaned(self) -> None:
        self.log.info("Parent changed, shutting down: %s", self)
        self.alive = False

    def handle_abort(self, sig: int, frame: Any) -> None:
        exit_hard(self)
