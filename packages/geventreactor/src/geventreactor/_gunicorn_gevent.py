"""C{GeventReactorWorker}: gunicorn's gevent worker with GeventReactor running beside it."""

from __future__ import annotations

from typing import Any

import gevent
from gunicorn.workers.base import Worker
from gunicorn.workers.ggevent import GeventWorker

from ._gunicorn_common import (
    Heartbeat,
    exit_hard,
    heartbeat_interval,
    log_twisted_to_gunicorn,
    reactor_after_fork,
)

__all__ = ["GeventReactorWorker", "start_background_reactor"]


class _BackgroundReactor:
    """A reactor running itself in a greenlet of this thread's hub."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._greenlet = gevent.spawn(reactor.run, installSignalHandlers=False)

    def stop(self, timeout: float) -> None:
        """
        Stop the reactor (its shutdown triggers run) and wait at most C{timeout} seconds for it.

        Blocks the current greenlet. Must not be called from the hub or from the reactor's context.
        """
        if self._greenlet.dead:
            return
        # Through the call queue: works whether or not run() has started yet.
        self.reactor.callFromThread(self._stop_if_running)
        self._greenlet.join(timeout)
        if not self._greenlet.dead:
            self._greenlet.kill(block=False)

    def _stop_if_running(self) -> None:
        if self.reactor.running:
            self.reactor.stop()


def start_background_reactor(reactor: Any) -> _BackgroundReactor:
    """
    Run C{reactor} in a new greenlet of this thread's hub (gunicorn's signal handlers stay in
    place) and return the handle whose C{stop(timeout)} stops it.

    Never blocks (the reactor starts at the next switch to the hub). Must be called from the
    thread whose hub runs the reactor.
    """
    return _BackgroundReactor(reactor)


class GeventReactorWorker(GeventWorker):
    """
    gunicorn's gevent worker (C{-k gevent}) with GeventReactor installed as
    C{twisted.internet.reactor} and running in the same hub, so that a WSGI application can call
    Twisted client code (through C{gevent_deferred.waitForDeferred}) without any setup::

        gunicorn -k geventreactor.gunicorn.GeventReactorWorker module:wsgi_app
    """

    reactor: Any = None

    _background: _BackgroundReactor | None = None
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
            if self._background is not None:
                self._background.stop(timeout=max(1.0, float(self.cfg.graceful_timeout)))

    def load_wsgi(self) -> None:
        # After gunicorn's signal handlers are in place, before the application is imported: the
        # reactor it imports is GeventReactor, running already.
        self.reactor = reactor_after_fork(type(self).__name__)
        log_twisted_to_gunicorn()
        self._background = start_background_reactor(self.reactor)
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
